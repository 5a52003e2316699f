import numpy as np
import pandas as pd
import pytest

from synthtune.tasks import available_tasks, get_task
from synthtune.tasks.char_count import spell

TASK = get_task("char_count")


def test_both_tasks_are_found_by_name():
    assert available_tasks() == ["char_count", "letter_count"]


def test_unknown_task_names_the_allowed_ones():
    with pytest.raises(
        ValueError, match=r"generation.task='word_count' is unknown; allowed: \['char_count', 'letter_count'\]"
    ):
        get_task("word_count")


@pytest.mark.parametrize(
    ("text", "letter", "expected"),
    [("strawberry", "r", 3), ("banana", "a", 3), ("Apple", "a", 1), ("hello", "z", 0), ("a a", "a", 2)],
)
def test_label_counts_one_letter_case_insensitively(text, letter, expected):
    assert TASK.label(pd.DataFrame({"text": [text], "letter": [letter]})).tolist() == [expected]


def test_spell_format_numbers_each_hit():
    assert spell("strawberry", "r") == "s t r(1) a w b e r(2) r(3) y. Answer: 3"
    assert spell("a-a", "a") == "a(1) a(2). Answer: 2"


def test_add_fields_mostly_asks_about_present_letters():
    rows = pd.DataFrame({"text": ["strawberry", "banana", "dog"] * 200})
    with_letters = TASK.add_fields(rows, np.random.default_rng(0))
    present = [c in t for t, c in zip(with_letters["text"], with_letters["letter"], strict=True)]
    assert 0.65 < np.mean(present) < 0.9
    assert all(len(c) == 1 and c.isalpha() for c in with_letters["letter"])


def test_prompts_name_the_letter_and_the_text():
    rows = pd.DataFrame({"text": ["strawberry"], "letter": ["r"]})
    prompt = TASK.render_prompts(rows, TASK.train_templates[:1], np.random.default_rng(0))["prompt"][0]
    assert prompt == 'how many times does the letter r appear in "strawberry"?'


@pytest.mark.parametrize("fmt", ["direct", "spell"])
def test_answers_read_strictly_and_fit_the_token_bound(tiny_lm, fmt):
    texts = ["strawberry", "a-a", "", "Straße über", "r " * 40]
    rows = pd.DataFrame({"text": texts, "letter": ["r", "a", "a", "s", "r"]})
    labels = TASK.label(rows)
    answers = TASK.render_answers(rows, labels, fmt)
    assert [TASK.parse_answer(a, fmt) for a in answers] == labels.tolist()
    needed = np.array([len(ids) + 1 for ids in tiny_lm.tokenizer(answers, add_special_tokens=False)["input_ids"]])
    assert (TASK.max_answer_tokens(rows, fmt, tiny_lm.tokenizer) >= needed).all()


def test_malformed_spelled_answers_read_as_none():
    assert TASK.parse_answer("s t r(1) a w b e r(2) r(3) y. Answer: 3", "spell") == 3
    for bad in ["s t r(1) a w b e r(2) r(3", "3", "s t r(1). Answer: 1 Answer: 1", "st r(1). Answer: 1"]:
        assert TASK.parse_answer(bad, "spell") is None
