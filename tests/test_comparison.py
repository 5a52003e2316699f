"""Comparing runs: strict accuracy per set with counts and intervals, worst slices, plot."""

import pandas as pd

from synthtune.comparison import compare, comparison_markdown, plot_comparison
from synthtune.metrics import accuracy


def metrics(test_k: int, probes_k: int) -> dict:
    return {
        "tuned": {
            "test": {"strict": accuracy([True] * test_k + [False] * (200 - test_k))},
            "probes": {"strict": accuracy([True] * probes_k + [False] * (120 - probes_k))},
        },
        "base": {"test": {"strict": accuracy([False] * 200)}},
    }


def slices(worst_k: int) -> pd.DataFrame:
    rows = []
    for feature, bin_, n, k in [("n_words", "1", 40, 39), ("n_words", "2-5", 40, worst_k), ("n_words", "6-10", 5, 0)]:
        score = accuracy([True] * k + [False] * (n - k))
        rows.append(
            {
                "model": "tuned",
                "part": "probes",
                "feature": feature,
                "bin": bin_,
                "n": n,
                "strict_k": k,
                "strict_accuracy": score["accuracy"],
                "strict_ci_low": score["ci_low"],
                "strict_ci_high": score["ci_high"],
            }
        )
    return pd.DataFrame(rows)


def test_table_holds_each_runs_tuned_scores_per_set_in_reading_order():
    table, _ = compare({"naive": metrics(199, 30), "balanced": metrics(150, 100)}, {})
    assert list(table["run"]) == ["naive", "naive", "balanced", "balanced"]
    assert list(table["set"]) == ["test", "probes", "test", "probes"]
    naive_probes = table[(table["run"] == "naive") & (table["set"] == "probes")].iloc[0]
    assert (naive_probes["k"], naive_probes["n"]) == (30, 120)
    assert naive_probes["ci_low"] < 0.25 < naive_probes["ci_high"]


def test_worst_slices_skip_small_slices_and_name_their_run():
    _, worst = compare({"naive": metrics(199, 30)}, {"naive": slices(worst_k=5)}, min_rows=10, count=1)
    assert len(worst) == 1
    row = worst.iloc[0]
    assert (row["run"], row["bin"], row["strict_k"]) == ("naive", "2-5", 5)  # the 5-row 0/5 slice is too small


def test_markdown_cells_carry_counts_and_intervals():
    table, worst = compare({"naive": metrics(199, 30)}, {"naive": slices(worst_k=5)}, count=1)
    text = comparison_markdown(table, worst)
    assert "| naive | 199/200 = 99.5% [" in text
    assert "30/120 = 25.0% [" in text
    assert "| naive | probes | n_words | 2-5 | 5/40 = 12.5% [" in text


def test_plot_has_one_bar_per_run_and_set():
    table, _ = compare({"a": metrics(100, 60), "b": metrics(150, 90)}, {})
    fig = plot_comparison(table)
    assert len(fig.axes[0].patches) == 4
