import numpy as np
import pytest

from synthtune.tasks import letter_count


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a a", 2),
        ("be be be be", 8),
        ("dog dog a", 7),
        ("i am fine", 7),
        ("", 0),
        ("Hello, World!", 10),
        ("r2-d2 c3po", 5),
        ("café", 4),
    ],
)
def test_count_letters_counts_alphabetic_characters_only(text, expected):
    assert letter_count.count_letters(text) == expected


def test_render_prompt_quotes_the_text():
    assert letter_count.render_prompt("dog dog a") == 'how many letters are there in the following string: "dog dog a"?'


@pytest.mark.parametrize(
    ("completion", "expected"),
    [("7", 7), (" 12", 12), ("dog 3 (3), dog 3 (6), a 1 (7). Answer: 7", 7), ("no idea", None), ("", None)],
)
def test_parse_answer_reads_the_last_integer(completion, expected):
    assert letter_count.parse_answer(completion) == expected


def test_sample_texts_respects_word_bounds_and_seed():
    words = np.array(["a", "dog", "fine"], dtype=object)
    first = letter_count.sample_texts(words, 200, 2, 4, np.random.default_rng(0))
    again = letter_count.sample_texts(words, 200, 2, 4, np.random.default_rng(0))
    assert first == again
    assert {len(t.split()) for t in first} == {2, 3, 4}
    assert set(" ".join(first).split()) <= set(words)
