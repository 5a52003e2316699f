import pandas as pd
import pytest

from synthtune.pipelines.curation.steps import bag_of_words_key
from synthtune.text import normalise_column, normalise_text, text_features, unseen_word_counts, vocabulary_of, word_keys

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
        ("r2 d2", True),  # each word has exactly one letter
        ("", False),
        ("42", False),
    ],
)
def test_one_letter_words(text, expected):
    assert (text_features([text])["n_one_letter_words"] > 0).tolist() == [expected]


def test_text_features_on_literal_strings():
    features = text_features(["a a", "dog dog a", "Hello, World!", "x", ""])
    assert features["n_words"].tolist() == [2, 3, 2, 1, 0]
    assert features["one_letter_share"].tolist() == pytest.approx([1.0, 1 / 3, 0.0, 1.0, 0.0])
    assert features["repeated_word_share"].tolist() == pytest.approx([0.5, 1 / 3, 0.0, 0.0, 0.0])
    assert features["max_repeat"].tolist() == [2, 2, 1, 1, 0]
    assert features["mean_word_length"].tolist() == pytest.approx([1.0, 7 / 3, 5.0, 1.0, 0.0])
    assert features["max_word_length"].tolist() == [1, 3, 5, 1, 0]
    assert features["has_capital"].tolist() == [False, False, True, False, False]
    assert features["has_punctuation"].tolist() == [False, False, True, False, False]


def test_a_word_is_a_token_with_a_letter():
    # the three meanings the pipelines used to have now agree: "-" and "3" are no words
    features = text_features(["a - b", "3 4 5", "r2-d2 c3po", "don't stop", "x\u00a0y"])
    assert features["n_words"].tolist() == [2, 0, 2, 2, 2]
    assert features["max_repeat"].tolist() == [1, 0, 1, 1, 1]
    assert features["max_word_length"].tolist() == [1, 0, 3, 4, 1]


def test_repeats_ignore_case_and_punctuation():
    features = text_features(["The cat, the CAT."])
    assert features["max_repeat"].tolist() == [2]
    assert features["repeated_word_share"].tolist() == [0.5]


def test_text_features_keeps_row_order_and_agrees_with_a_loop():
    texts = ["mark " * 100, "a", "", "Dog dog, DOG! cat", "Ωμέγα  straße Straße"]
    features = text_features(pd.Series(texts).str.strip())
    assert features["max_repeat"].tolist() == [100, 1, 0, 3, 2]
    for text, n in zip(texts, features["n_words"], strict=True):
        assert n == sum(any(c.isalpha() for c in w) for w in text.split())


def test_unseen_words_count_words_outside_a_vocabulary():
    known = vocabulary_of(["the dog sat", "A cat"])
    assert known == {"the", "dog", "sat", "a", "cat"}
    assert unseen_word_counts(["The DOG ran", "a a a", "zebra zebra", ""], known).tolist() == [1, 0, 2, 0]
