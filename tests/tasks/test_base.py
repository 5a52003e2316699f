import pandas as pd
import pytest

from synthtune.tasks.base import text_features


def test_text_features_on_literal_strings():
    features = text_features(["a a", "dog dog a", "Hello, World!", "x", ""])
    assert features["n_words"].tolist() == [2, 3, 2, 1, 0]
    assert features["one_letter_share"].tolist() == pytest.approx([1.0, 1 / 3, 0.0, 1.0, 0.0])
    assert features["repeated_word_share"].tolist() == pytest.approx([0.5, 1 / 3, 0.0, 0.0, 0.0])
    assert features["max_repeat"].tolist() == [2, 2, 1, 1, 0]
    assert features["mean_word_length"].tolist() == pytest.approx([1.0, 7 / 3, 5.0, 1.0, 0.0])
    assert features["has_capital"].tolist() == [False, False, True, False, False]
    assert features["has_punctuation"].tolist() == [False, False, True, False, False]


def test_repeats_ignore_case_and_punctuation():
    features = text_features(["The cat, the CAT."])
    assert features["max_repeat"].tolist() == [2]
    assert features["repeated_word_share"].tolist() == [0.5]


def test_text_features_keeps_row_order():
    texts = pd.Series(["mark " * 100, "a"]).str.strip()
    assert text_features(texts)["max_repeat"].tolist() == [100, 1]
