import pandas as pd
import pytest

from synthtune.pipelines.curation.steps import bag_of_words_key
from synthtune.text import has_one_letter_word, normalise_column, normalise_text, word_keys

TEXTS = ["  dog \t dog\n a ", "cafe\u0301", "x\u00a0y", "", "Hello,   World!", "Ωμέγα  straße"]


def test_normalise_text():
    assert normalise_text("  dog \t dog\n a ") == "dog dog a"
    assert normalise_text("cafe\u0301") == "caf\u00e9"


def test_normalise_column_agrees_with_normalise_text():
    assert normalise_column(pd.Series(TEXTS)).tolist() == [normalise_text(t) for t in TEXTS]


def test_word_keys_keep_unicode_letters_and_agree_with_the_bag_key():
    keys = word_keys(pd.Series(["Dog, dog. A!", "Straße café", "don't stop"]))
    assert keys == ["dog dog a", "straße café", "don't stop"]
    assert [" ".join(sorted(k.split())) for k in keys] == [
        bag_of_words_key(t) for t in ["Dog, dog. A!", "Straße café", "don't stop"]
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a a", True),
        ("I, said", True),
        ("dog é", True),
        ("(a)", True),
        ("dog cat", False),
        ("r2 d2", False),
        ("", False),
        ("42", False),
    ],
)
def test_has_one_letter_word(text, expected):
    assert has_one_letter_word(pd.Series([text])).tolist() == [expected]
