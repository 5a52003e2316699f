"""Distribution report: how each evaluation set differs from the training rows.

The case study's model scored 99.937% on a test split drawn like its training data and
failed on "a a": one-letter words and repeats were nearly absent from training. This report
makes such gaps visible before training: per feature, the binned distribution of every set
and its total variation distance (TVD) from train.
"""

from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: figures are files, never windows
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from synthtune.features import BINS, bin_labels, bin_values
from synthtune.tasks import get_task


def describe_set(rows: pd.DataFrame, task_name: str) -> pd.DataFrame:
    """Per-row features of one set, from the task, computed on the true labels."""
    task = get_task(task_name)
    return task.features(rows, task.label(rows))


def binned_shares(values: pd.Series, edges: list[float] | None) -> pd.Series:
    """Share of rows per bin (booleans: per value), in a fixed bin order."""
    binned = pd.Series(bin_values(values, edges))
    return binned.value_counts(sort=False).reindex(bin_labels(edges), fill_value=0) / max(len(values), 1)


def total_variation(p: pd.Series, q: pd.Series) -> float:
    """Half the L1 distance between two distributions over the same bins (0 same, 1 disjoint)."""
    return float(0.5 * (p - q).abs().sum())


def build_distribution_report(sets: dict[str, pd.DataFrame], task_name: str, profile: str) -> tuple[dict, pd.DataFrame]:
    """Feature distributions of every set and each evaluation set's TVD from train.

    Returns:
        The report (a metrics dict: rows per set, TVD per set and feature, headline shares)
        and the long table of shares (set, feature, bin, share) the figure is drawn from.
    """
    features = {name: describe_set(rows, task_name) for name, rows in sets.items()}
    shares = pd.concat(
        [
            binned_shares(f[feature], edges)
            .rename("share")
            .rename_axis("bin")
            .reset_index()
            .assign(set=name, feature=feature)
            for name, f in features.items()
            for feature, edges in BINS.items()
        ],
        ignore_index=True,
    )
    shares["bin"] = shares["bin"].astype(str)
    tvd = {
        name: {
            feature: round(total_variation(_shares(shares, "train", feature), _shares(shares, name, feature)), 4)
            for feature in BINS
        }
        for name in sets
        if name != "train"
    }
    headline = {
        name: {
            "one_letter_word_share": round(
                float((f["one_letter_share"] * f["n_words"]).sum() / max(f["n_words"].sum(), 1)), 5
            ),
            "strings_with_repeat": round(float((f["max_repeat"] > 1).mean()), 4),
            # half or more of the words repeat an earlier one ("a a", "be be be be")
            "repeat_heavy_strings": round(float((f["repeated_word_share"] >= 0.5).mean()), 4),
            "single_word_strings": round(float((f["n_words"] == 1).mean()), 4),
            "mean_words": round(float(f["n_words"].mean()), 2),
        }
        for name, f in features.items()
    }
    report = {
        "task": task_name,
        "profile": profile,
        "rows": {name: len(rows) for name, rows in sets.items()},
        "tvd_from_train": tvd,
        "max_tvd": {name: max(v.values()) for name, v in tvd.items()},
        "headline": headline,
    }
    return report, shares


def plot_distributions(shares: pd.DataFrame, report: dict[str, Any]) -> plt.Figure:
    """One panel per feature: grouped bars of each set's share per bin, TVD in the legend."""
    features = list(BINS)
    sets = list(dict.fromkeys(shares["set"]))
    fig, axes = plt.subplots(2, 5, figsize=(28, 10))
    width = 0.8 / len(sets)
    for ax, feature in zip(axes.flat, features, strict=True):
        bins = list(dict.fromkeys(shares.loc[shares["feature"] == feature, "bin"]))
        for k, name in enumerate(sets):
            values = _shares(shares, name, feature).reindex(bins).to_numpy()
            tvd = report["tvd_from_train"].get(name, {}).get(feature)
            label = name if tvd is None else f"{name} (TVD {tvd:.2f})"
            ax.bar(np.arange(len(bins)) + k * width, values, width, label=label)
        ax.set_xticks(np.arange(len(bins)) + 0.4 - width / 2, bins, rotation=45, ha="right", fontsize=8)
        ax.set_title(feature)
        ax.set_ylabel("share of rows")
        ax.legend(fontsize=7)
    fig.suptitle(f"{report['task']}: feature distributions, profile '{report['profile']}' (TVD = distance from train)")
    fig.tight_layout()
    return fig


def _shares(shares: pd.DataFrame, name: str, feature: str) -> pd.Series:
    rows = shares[(shares["set"] == name) & (shares["feature"] == feature)]
    return rows.set_index("bin")["share"]
