"""Comparing finished runs: each run's strict accuracy on every evaluation set (``k/n`` with
its 95% Wilson interval, as evaluation wrote them to ``metrics.json``) and its worst slices,
as a table, a Markdown summary and a plot. The case study's sweep ends with it
(``synthtune.sweeps.CompareJobs``)."""

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from synthtune.metrics import format_accuracy  # noqa: E402
from synthtune.pipelines.evaluation.report import interval_bars  # noqa: E402
from synthtune.pipelines.evaluation.scores import worst_slices  # noqa: E402

# The sets in the order a reader asks about them: own test split first, real text last.
SETS = ("test", "probes", "heldout_templates", "external_cute_sentences", "external_cute_words")


def compare(
    metrics: dict[str, dict[str, Any]], slices: dict[str, pd.DataFrame], min_rows: int = 10, count: int = 3
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Strict accuracy of each run's fine-tuned model per set, and each run's worst slices.

    Args:
        metrics: run name -> its ``metrics.json``.
        slices: run name -> its ``evaluation_slices.csv`` (runs without one get no slices).
        min_rows: smallest slice considered for the worst ones.
        count: worst slices kept per run.

    Returns:
        One row per run and set (``run, set, k, n, accuracy, ci_low, ci_high``), and one row
        per worst slice (``run`` then the slice table's columns).
    """
    rows = []
    for run, scores in metrics.items():
        for name in SETS:
            strict = scores.get("tuned", {}).get(name, {}).get("strict")
            if strict is not None:
                rows.append({"run": run, "set": name, **strict})
    table = pd.DataFrame(rows, columns=["run", "set", "k", "n", "accuracy", "ci_low", "ci_high"])
    worst = [worst_slices(frame, "tuned", min_rows, count).assign(run=run) for run, frame in slices.items()]
    worst = pd.concat(worst, ignore_index=True) if worst else pd.DataFrame(columns=["run"])
    return table, worst[["run", *[c for c in worst.columns if c != "run"]]]


def comparison_markdown(table: pd.DataFrame, worst: pd.DataFrame) -> str:
    """The table as Markdown: runs as rows, sets as columns, each cell ``k/n = a% [lo, hi]``."""
    sets = [s for s in SETS if s in set(table["set"])]
    lines = ["| run | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    for run, scores in table.groupby("run", sort=False):
        cells = {row["set"]: format_accuracy(row) for row in scores.to_dict("records")}
        lines.append(f"| {run} | " + " | ".join(cells.get(s, "-") for s in sets) + " |")
    if len(worst):
        lines += ["", "Worst slices (strict, fine-tuned model):", "", "| run | set | feature | bin | accuracy |"]
        lines.append("|---|---|---|---|---|")
        for row in worst.to_dict("records"):
            score = {
                "k": row["strict_k"],
                "n": row["n"],
                "accuracy": row["strict_accuracy"],
                "ci_low": row["strict_ci_low"],
                "ci_high": row["strict_ci_high"],
            }
            lines.append(
                f"| {row['run']} | {row['part']} | {row['feature']} | {row['bin']} | {format_accuracy(score)} |"
            )
    return "\n".join(lines) + "\n"


def plot_comparison(table: pd.DataFrame) -> plt.Figure:
    """Grouped bars: strict accuracy per set, one bar per run, with 95% Wilson intervals."""
    sets = [s for s in SETS if s in set(table["set"])]
    runs = list(dict.fromkeys(table["run"]))
    fig, ax = plt.subplots(figsize=(max(8, 1.8 * len(sets)), 4.5))
    width = 0.8 / max(len(runs), 1)
    for k, run in enumerate(runs):
        rows = table[table["run"] == run].set_index("set").reindex(sets)
        interval_bars(ax, np.arange(len(sets)) + k * width, rows, "", width, label=run)
    ax.set_xticks(np.arange(len(sets)) + 0.4 - width / 2, sets, rotation=15, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("strict accuracy")
    ax.legend(fontsize=8)
    ax.set_title("Fine-tuned model per run and evaluation set (95% Wilson intervals)")
    fig.tight_layout()
    return fig
