import pandas as pd
import pytest

from synthtune.pipelines.generation.nodes import build_word_list, label_texts, sample_rows, split_train_test

PARAMS = {"seed": 7, "n_train": 300, "n_test": 50, "min_words": 1, "max_words": 3}
WORDS = pd.DataFrame({"word": ["a", "i", "am", "be", "dog", "fine", "mark", "house", "letter"]})


def test_label_texts_labels_the_case_study_rows():
    rows = label_texts(["a a", "be be be be", "dog dog a", "i am fine"])
    assert rows["letters"].tolist() == [2, 8, 7, 7]
    assert rows["answer"].tolist() == ["2", "8", "7", "7"]
    assert rows["n_words"].tolist() == [2, 4, 3, 3]
    assert rows["prompt"][2] == 'how many letters are there in the following string: "dog dog a"?'


def test_build_word_list_keeps_lowercase_alphabetic_words():
    words = build_word_list({"language": "en", "top_n": 500, "min_length": 1})["word"]
    assert len(words) > 300
    assert words.is_unique
    assert all(w.isascii() and w.isalpha() and w.islower() for w in words)
    assert {"a", "i", "the"} <= set(words)


def test_build_word_list_fails_clearly_when_filters_leave_nothing():
    with pytest.raises(ValueError, match="generation.word_list: no word left"):
        build_word_list({"language": "en", "top_n": 10, "min_length": 40})


def test_sample_rows_is_seeded():
    first = sample_rows(WORDS, PARAMS)
    assert len(first) == PARAMS["n_train"] + PARAMS["n_test"]
    pd.testing.assert_frame_equal(first, sample_rows(WORDS, PARAMS))
    assert not first.equals(sample_rows(WORDS, {**PARAMS, "seed": 8}))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"n_train": 0}, "generation.n_train must be a positive integer"),
        ({"n_test": -5}, "generation.n_test must be a positive integer"),
        ({"min_words": 4, "max_words": 2}, r"generation.min_words \(4\) must not exceed generation.max_words \(2\)"),
    ],
)
def test_sample_rows_rejects_bad_sizes(override, message):
    with pytest.raises(ValueError, match=message):
        sample_rows(WORDS, {**PARAMS, **override})


def test_split_is_disjoint_and_keeps_repeats_in_train():
    rows = label_texts(["a a", "dog", "a a", "i am fine", "dog", "mark"])
    train, test = split_train_test(rows, n_test=2)
    assert test["text"].tolist() == ["a a", "dog"]
    assert train["text"].tolist() == ["i am fine", "mark"]
    assert set(train["text"]).isdisjoint(test["text"])
    assert train["row_id"].tolist() == ["train-0000000", "train-0000001"]
    assert test["row_id"].is_unique


def test_split_with_repeated_train_draws_keeps_duplicates():
    rows = label_texts(["a", "b c", "b c", "b c"])
    train, _ = split_train_test(rows, n_test=1)
    assert train["text"].tolist() == ["b c", "b c", "b c"]


def test_split_fails_when_too_few_distinct_texts():
    with pytest.raises(ValueError, match="generation.n_test=3 distinct strings"):
        split_train_test(label_texts(["a", "a", "b"]), n_test=3)
