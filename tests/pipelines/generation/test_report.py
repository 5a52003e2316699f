import pandas as pd
import pytest

from synthtune.pipelines.generation.nodes import (
    build_vocabulary,
    draw_rows,
    make_probe_set,
    make_train_set,
    split_train_test,
)
from synthtune.pipelines.generation.report import (
    BINS,
    binned_shares,
    build_distribution_report,
    plot_distributions,
    total_variation,
)

from ...conftest import make_rows
from .test_nodes import PARAMS, PROBES


def test_total_variation_on_literal_distributions():
    p = pd.Series([0.5, 0.5, 0.0])
    assert total_variation(p, p) == 0.0
    assert total_variation(p, pd.Series([0.0, 0.0, 1.0])) == 1.0
    assert total_variation(p, pd.Series([0.25, 0.75, 0.0])) == pytest.approx(0.25)


def test_binned_shares_sum_to_one_in_fixed_order():
    shares = binned_shares(pd.Series([1, 1, 2, 7, 200]), BINS["n_words"])
    assert shares.sum() == pytest.approx(1.0)
    assert shares["1"] == 0.4 and shares["2"] == 0.2 and shares["6-10"] == 0.2 and shares[">=101"] == 0.2
    assert list(shares.index) == list(binned_shares(pd.Series([3]), BINS["n_words"]).index)


def test_report_lists_every_set_and_feature():
    sets = {"train": make_rows(["dog cat", "house"]), "probes": make_rows(["a a", "be be be be"])}
    report, shares = build_distribution_report(sets, "letter_count", "usage")
    assert report["rows"] == {"train": 2, "probes": 2}
    assert set(report["tvd_from_train"]["probes"]) == set(BINS)
    assert (
        report["tvd_from_train"]["probes"]["one_letter_share"] == 0.5
    )  # "a a" is all one-letter words, "be be be be" none
    assert report["headline"]["probes"]["strings_with_repeat"] == 1.0
    figure = plot_distributions(shares, report)
    assert len(figure.axes) == len(BINS)


def gaps(profile):
    params = {**PARAMS, "profile": profile, "n_train": 3000}
    vocabulary = build_vocabulary(params["vocabulary"])
    train = make_train_set(split_train_test(draw_rows(vocabulary, params), 50)[0], params)
    report, _ = build_distribution_report(
        {"train": train, "probes": make_probe_set(PROBES, params)}, "letter_count", profile
    )
    return report


def test_naive_shows_the_case_study_gap_and_usage_closes_it():
    naive, usage = gaps("naive"), gaps("usage")
    # one-letter words and repeats: nearly absent from naive train, common in probes
    assert naive["headline"]["train"]["one_letter_word_share"] < 0.002
    assert naive["headline"]["train"]["repeat_heavy_strings"] < 0.005
    assert naive["headline"]["probes"]["one_letter_word_share"] > 0.2
    assert naive["headline"]["probes"]["repeat_heavy_strings"] > 0.2
    assert usage["headline"]["train"]["one_letter_word_share"] > 0.03
    assert usage["headline"]["train"]["repeat_heavy_strings"] > 0.15
    for feature in ("one_letter_share", "n_words", "answer", "max_repeat"):
        assert usage["tvd_from_train"]["probes"][feature] < naive["tvd_from_train"]["probes"][feature], feature
