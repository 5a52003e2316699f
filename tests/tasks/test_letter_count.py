import numpy as np
import pandas as pd
import pytest

from synthtune.tasks import get_task
from synthtune.tasks.base import count_letters, count_letters_vectorised
from synthtune.tasks.letter_count import tally

TASK = get_task("letter_count")
CASES = [
    ("a a", 2),
    ("be be be be", 8),
    ("dog dog a", 7),
    ("i am fine", 7),
    ("", 0),
    ("Hello, World!", 10),
    ("r2-d2 c3po", 5),
    ("café", 4),
    ("cafe\u0301", 4),  # decomposed é: the combining accent is not a letter
    ("Ωμέγα straße", 11),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_count_letters_counts_alphabetic_characters_only(text, expected):
    assert count_letters(text) == expected


def test_vectorised_count_agrees_with_isalpha():
    texts = [t for t, _ in CASES]
    assert count_letters_vectorised(texts).tolist() == [e for _, e in CASES]


def test_label_recomputes_from_text():
    rows = pd.DataFrame({"text": ["a a", "dog dog a"]})
    assert TASK.label(rows).tolist() == [2, 7]


def test_tally_format_runs_a_total_per_word():
    assert tally("dog dog a") == "dog 3 (3), dog 3 (6), a 1 (7). Answer: 7"
    assert tally("Hi, 42!") == "Hi, 2 (2), 42! 0 (2). Answer: 2"
    assert tally("") == "Answer: 0"


@pytest.mark.parametrize("fmt", ["direct", "tally"])
def test_every_format_parses_back_to_the_label(fmt):
    rows = pd.DataFrame({"text": ["a a", "be be be be", "The end."]})
    labels = TASK.label(rows)
    answers = TASK.render_answers(rows, labels, fmt)
    assert [TASK.parse_answer(a) for a in answers] == labels.tolist()


def test_unknown_format_names_the_allowed_ones():
    with pytest.raises(
        ValueError, match=r"answer format 'spell' is unknown for task 'letter_count'; allowed: \['direct', 'tally'\]"
    ):
        TASK.render_answers(pd.DataFrame({"text": ["a"]}), [1], "spell")


@pytest.mark.parametrize(
    ("completion", "expected"),
    [("7", 7), (" 12", 12), ("dog 3 (3), dog 3 (6), a 1 (7). Answer: 7", 7), ("no idea", None), ("", None)],
)
def test_parse_answer_reads_the_last_integer(completion, expected):
    assert TASK.parse_answer(completion) == expected


def test_templates_hold_the_text_and_heldout_ones_are_new():
    assert all("{text}" in t for t in TASK.train_templates + TASK.heldout_templates)
    assert set(TASK.train_templates).isdisjoint(TASK.heldout_templates)
    assert TASK.train_templates[0] == 'how many letters are there in the following string: "{text}"?'


def test_render_prompts_is_seeded():
    rows = pd.DataFrame({"text": ["a a"] * 20})
    first = TASK.render_prompts(rows, TASK.train_templates, np.random.default_rng(1))
    again = TASK.render_prompts(rows, TASK.train_templates, np.random.default_rng(1))
    pd.testing.assert_frame_equal(first, again)
    assert first["template_id"].nunique() > 1
    assert all('"a a"' in p for p in first["prompt"])
