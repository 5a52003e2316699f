import numpy as np
import pandas as pd
import pytest

from synthtune.tasks import get_task
from synthtune.tasks.base import count_letters, count_letters_vectorised, parse_last_integer
from synthtune.tasks.letter_count import spelled_tally, tally

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


def test_ordinal_tally_marks_each_repeat_with_the_time_it_occurs():
    assert tally("dog dog a", ordinals=True) == "dog 3 (3), dog#2 3 (6), a 1 (7). Answer: 7"
    assert tally("to be or not to be", ordinals=True).startswith("to 2 (2), be 2 (4), or 2 (6), not 3 (9), to#2 2")
    assert tally("Dog dog", ordinals=True) == "Dog 3 (3), dog 3 (6). Answer: 6"  # other tokens: no mark


def test_spelled_tally_numbers_every_letter_by_its_place_in_the_string():
    assert spelled_tally("dog dog a") == "dog: d1 o2 g3, dog: d4 o5 g6, a: a7. Answer: 7"
    assert spelled_tally("Hi, 42!") == "Hi,: H1 i2, 42!: -. Answer: 2"  # a word without letters: -
    assert spelled_tally("U.S.A. café") == "U.S.A.: U1 S2 A3, café: c4 a5 f6 é7. Answer: 7"
    assert spelled_tally("") == "Answer: 0"


@pytest.mark.parametrize("fmt", ["direct", "tally", "tally_ordinal", "tally_spelled"])
def test_every_format_parses_back_to_the_label(fmt):
    rows = pd.DataFrame({"text": ["a a", "be be be be", "The end.", "", "x - y", "Hi, 42!"]})
    labels = TASK.label(rows)
    answers = TASK.render_answers(rows, labels, fmt)
    assert [TASK.parse_answer(a, fmt) for a in answers] == labels.tolist()
    assert [parse_last_integer(a) for a in answers] == labels.tolist()


@pytest.mark.parametrize(
    ("completion", "fmt"),
    [
        ("7 7 7 7 7 7", "direct"),  # a repeated answer
        ("dog 3 (3), dog 3 (6), a 1 (7", "tally"),  # a truncated tally
        ("12. No wait: 7", "tally"),  # a second guess
        ("12. No wait: 7", "direct"),
        ("The answer is 7.", "direct"),  # prose
        ("07", "direct"),  # not how a count is written
        ("7", "tally"),  # the right number in the wrong format
        ("Answer: 7", "direct"),
        ("dog 3 (3), dog 3 (6), a 1 (7). Answer: 7 Answer: 7", "tally"),
        ("dog 3 (3), dog 3 (6), a 1 (7). Answer: 7\n", "tally"),  # trailing text after the answer
        ("dog 3 (3) dog 3 (6). Answer: 6", "tally"),  # steps not separated by ", "
        ("-7", "direct"),
        ("dog: d1 o2 g3. Answer: 3", "tally"),  # a spelled tally is not a tally
        ("dog 3 (3). Answer: 3", "tally_spelled"),
        ("dog: d1 o2 g3, a: . Answer: 3", "tally_spelled"),  # a word with no letters shown
        ("dog: d1 o2 g. Answer: 3", "tally_spelled"),  # a letter without its number
        ("٧", "direct"),  # an Arabic-Indic seven is a digit to Python, not to this format
    ],
)
def test_strict_reading_rejects_malformed_answers(completion, fmt):
    assert TASK.parse_answer(completion, fmt) is None


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("7 7 7 7 7 7", 7),  # the lenient reading is fooled by exactly these
        ("dog 3 (3), dog 3 (6), a 1 (7", 7),
        ("12. No wait: 7", 7),
        ("The string has 12 letters.", 12),
        ("no idea", None),
        ("", None),
    ],
)
def test_lenient_reading_takes_the_last_integer(completion, expected):
    assert parse_last_integer(completion) == expected


def test_a_runaway_number_parses_without_overflow():
    runaway = "Answer: " + "2" * 30
    assert TASK.parse_answer(runaway, "tally") == int("2" * 30)
    assert TASK.parse_answer("2" * 30, "direct") == int("2" * 30)


def test_well_formed_answers_read_strictly():
    assert TASK.parse_answer("dog 3 (3), dog 3 (6), a 1 (7). Answer: 7", "tally") == 7
    assert TASK.parse_answer("dog 3 (3), dog 3 (6), a 1 (7). Answer: 9", "tally") == 9  # well-formed, wrong
    assert TASK.parse_answer("Answer: 0", "tally") == 0
    assert TASK.parse_answer("12", "direct") == 12
    with pytest.raises(ValueError, match="answer format 'spell' is unknown"):
        TASK.parse_answer("7", "spell")


@pytest.mark.parametrize("fmt", ["direct", "tally", "tally_ordinal", "tally_spelled"])
def test_answer_token_bound_holds_and_never_reads_the_label(tiny_lm, fmt):
    texts = ["a a", "entertainment", "Hi, 42!", "", "x - y z", " ".join(["mark"] * 100), "Straße café, über-cool!"]
    rows = pd.DataFrame({"text": texts})
    labels = TASK.label(rows)
    answers = TASK.render_answers(rows, labels, fmt)
    needed = [len(ids) + 1 for ids in tiny_lm.tokenizer(answers, add_special_tokens=False)["input_ids"]]
    bound = TASK.max_answer_tokens(rows, fmt, tiny_lm.tokenizer)
    assert (bound >= np.array(needed)).all()
    assert (bound <= 1.5 * np.array(needed) + 4).all()  # and tight
    lying = rows.assign(label=labels + 1000, answer="x")  # what the row says of its answer is not read
    assert (TASK.max_answer_tokens(lying, fmt, tiny_lm.tokenizer) == bound).all()


def test_unknown_format_names_the_allowed_ones():
    with pytest.raises(
        ValueError,
        match=r"answer format 'spell' is unknown for task 'letter_count'; allowed: \['direct', 'tally', 'tally_ordinal', 'tally_spelled'\]",
    ):
        TASK.render_answers(pd.DataFrame({"text": ["a"]}), [1], "spell")


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


@pytest.mark.parametrize("name", sorted(TASK.subskills))
def test_subskill_rows_cover_the_vocabulary_evenly_and_verify(name):
    words = ["dog", "house", "can't", "a", "zebra", "of", "i"]
    rows = TASK.make_subskill_rows(name, words, 30, (2, 5), np.random.default_rng(0))
    assert len(rows) == 30 and rows["row_id"].is_unique and (rows["subskill"] == name).all()
    used = pd.Series([w for t in rows["text"] for w in t.split()]).value_counts()
    assert set(used.index) == set(words) and used.max() - used.min() <= 1  # dealt from whole shuffles
    assert rows["text"].str.split().str.len().between(2, 5).all()
    assert all(f'"{t}"' in p for t, p in zip(rows["text"], rows["prompt"], strict=True))
    assert TASK.verify_subskill_rows(rows).all()
    again = TASK.make_subskill_rows(name, words, 30, (2, 5), np.random.default_rng(0))
    pd.testing.assert_frame_equal(rows, again)


def test_subskill_answers_give_each_word_its_letters():
    lengths = TASK.subskills["word_lengths"].render(["dog", "can't", "a"])
    assert lengths == "dog 3 (3), can't 4 (7), a 1 (8). Answer: 8"
    assert TASK.parse_answer(lengths, "tally") == 8  # the task's own format: one answer to learn
    assert TASK.subskills["spelling"].render(["dog", "can't"]) == "dog = d o g (3), can't = c a n ' t (4)"
    spelled = TASK.subskills["spelled_words"].render(["dog", "can't"])
    assert spelled == "dog: d1 o2 g3, can't: c4 a5 n6 t7. Answer: 7"
    assert TASK.parse_answer(spelled, "tally_spelled") == 7  # the tally_spelled format's own step


def test_a_wrong_or_malformed_subskill_answer_fails_verification():
    rows = pd.DataFrame(
        {
            "subskill": ["word_lengths", "word_lengths", "spelling", "no_such_skill"],
            "text": ["dog a", "dog a", "dog", "dog"],
            "answer": ["dog 3 (3), a 1 (4). Answer: 4", "dog 4 (4), a 1 (5). Answer: 5", "dog = d o g (4)", "dog 3"],
        }
    )
    assert TASK.verify_subskill_rows(rows).tolist() == [True, False, False, False]


@pytest.mark.parametrize(
    ("fmt", "written", "expected"),
    [
        # from the start, and from the middle of a step: the tally's own steps, then the answer
        ("tally", "", "dog 3 (3), dog 3 (6), a 1 (7). Answer: 7"),
        ("tally", "dog 3 (3), dog 3 (", "6), a 1 (7). Answer: 7"),
        # the model's own counts and total carry on: "dog" was given 4, the total is 4
        ("tally", "dog 4 (4), ", "dog 4 (8), a 1 (9). Answer: 9"),
        # past the string's last word, a model that lost its place repeats that word
        ("tally", "dog 3 (3), dog 3 (6), a 1 (7), a 1 (8), ", "a 1 (9), a 1 (10), a 1 (11), "),
        ("tally", "dog 3 (3), dog 3 (6), a 1 (7). ", "Answer: 7"),
        ("tally", "dog 3 (3), dog 3 (6), a 2 (8). Ans", "wer: 8"),
        ("tally_ordinal", "dog 3 (3), ", "dog#2 3 (6), a 1 (7). Answer: 7"),
        # off the tally's shape, or another format: no guess
        ("tally", "Sure! ", ""),
        ("tally", "dog 3 (3), cat 3 (", ""),
        ("direct", "", ""),
        ("tally_spelled", "", ""),
    ],
)
def test_a_guess_continues_the_models_own_tally(fmt, written, expected):
    assert TASK.guess_continuation("dog dog a", fmt, written) == expected


def test_a_guess_looks_a_few_steps_ahead():
    guess = TASK.guess_continuation("one two three four five six", "tally", "one 3 (3), ")
    assert guess == "two 3 (6), three 5 (11), four 4 (15), "
