import pandas as pd

from synthtune.features import BINS, bin_labels, bin_values


def test_word_count_bins_read_as_ranges():
    assert bin_labels(BINS["n_words"]) == ["0", "1", "2", "3", "4", "5", "6-10", "11-20", "21-50", "51-100", ">=101"]
    assert bin_labels(BINS["one_letter_share"])[:2] == ["0", "(0,0.1)"]
    assert bin_labels(None) == ["False", "True"]


def test_bin_values_puts_each_value_in_its_right_open_bin():
    binned = bin_values(pd.Series([0, 1, 5, 6, 10, 11, 100, 101, 500]), BINS["n_words"])
    assert list(binned) == ["0", "1", "5", "6-10", "6-10", "11-20", "51-100", ">=101", ">=101"]
    assert list(bin_values([True, False], None)) == ["True", "False"]
