"""What people would rather see than read: accuracy by slice and by model as figures, and a
one-page HTML report (headline table, behaviour checks, worst slices, example failures with
the model's own completion) that opens in any browser, figures included."""

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: figures are files, never windows
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from markupsafe import Markup

from synthtune.metrics import format_accuracy

from .nodes import MODELS, READINGS, evaluation_params
from .scores import SLICES

COLOURS = {"tuned": "#1f77b4", "base": "#ff7f0e"}
MODEL_NAMES = {"tuned": "fine-tuned", "base": "base"}
#: the headline's score columns: every reading of the fine-tuned model; the base model's
#: strict and lenient (its zero-shot prose is never the verifier's tally, so exact adds nothing)
HEADLINE_COLUMNS = [("tuned", r) for r in READINGS] + [("base", r) for r in READINGS if r != "exact"]
SHOWN_CHARS = 600  # of a completion in the report; the predictions tables hold all of it


def plot_slice_accuracy(slices: pd.DataFrame) -> plt.Figure:
    """One panel per slice feature: the fine-tuned model's strict accuracy per bin over all
    sets pooled, with 95% Wilson intervals as error bars and ``n`` under each bar."""
    pooled = slices[(slices["model"] == "tuned") & (slices["part"] == "all")]
    features = [f for f in SLICES if f in set(pooled["feature"])]
    ncols = 4
    nrows = max(1, -(-len(features) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.6 * nrows), squeeze=False)
    for ax, feature in zip(axes.flat, features, strict=False):
        rows = pooled[pooled["feature"] == feature]
        x = np.arange(len(rows))
        acc = rows["strict_accuracy"].to_numpy()
        errors = np.vstack([acc - rows["strict_ci_low"].to_numpy(), rows["strict_ci_high"].to_numpy() - acc])
        ax.bar(x, acc, yerr=errors, capsize=3, color=COLOURS["tuned"])
        labels = [f"{b}\nn={n}" for b, n in zip(rows["bin"], rows["n"], strict=True)]
        wordy = max((len(str(b)) for b in rows["bin"]), default=0) > 6  # e.g. probe categories
        ax.set_xticks(x, labels, fontsize=7, rotation=30 if wordy else 0, ha="right" if wordy else "center")
        ax.set_ylim(0, 1.05)
        ax.set_title(feature)
        ax.set_ylabel("strict accuracy")
    for ax in list(axes.flat)[len(features) :]:
        ax.axis("off")
    fig.suptitle("Fine-tuned model: strict accuracy by slice, all evaluation sets pooled (95% Wilson intervals)")
    fig.tight_layout()
    return fig


def interval_bars(ax, positions, rows: pd.DataFrame, prefix: str, width: float, **style) -> None:
    """Bars of ``<prefix>accuracy`` with error bars to ``<prefix>ci_low`` and ``<prefix>ci_high``
    (missing rows draw nothing)."""
    acc = rows[f"{prefix}accuracy"].to_numpy(dtype=float)
    errors = np.vstack(
        [acc - rows[f"{prefix}ci_low"].to_numpy(dtype=float), rows[f"{prefix}ci_high"].to_numpy(dtype=float) - acc]
    )
    ax.bar(positions, np.nan_to_num(acc), width, yerr=np.nan_to_num(errors), capsize=2, **style)


def plot_model_comparison(parts: pd.DataFrame) -> plt.Figure:
    """Strict and lenient accuracy of the fine-tuned and the base model on each set part."""
    names = list(dict.fromkeys(parts["part"]))
    fig, ax = plt.subplots(figsize=(max(8, 2.2 * len(names)), 4.5))
    bars = [(m, r) for m in MODELS for r in ("strict", "lenient")]
    width = 0.8 / len(bars)
    for k, (model, reading) in enumerate(bars):
        rows = parts[parts["model"] == model].set_index("part").reindex(names)
        interval_bars(
            ax,
            np.arange(len(names)) + k * width,
            rows,
            f"{reading}_",
            width,
            color=COLOURS[model],
            alpha=1.0 if reading == "strict" else 0.45,
            label=f"{MODEL_NAMES[model]}, {reading}",
        )
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=15, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8, ncols=2)
    ax.set_title("Base model (zero-shot) and fine-tuned model per evaluation set (95% Wilson intervals)")
    fig.tight_layout()
    return fig


def render_evaluation_report(
    metrics: dict[str, Any],
    parts: pd.DataFrame,
    behaviour: pd.DataFrame,
    slices: pd.DataFrame,
    worst: pd.DataFrame,
    predictions: pd.DataFrame,
    task_name: str,
    params: dict[str, Any],
) -> str:
    """The one-page HTML report, figures embedded, so the file can be opened or sent alone."""
    from jinja2 import Environment, PackageLoader

    config = evaluation_params(params)
    env = Environment(loader=PackageLoader("synthtune.pipelines.evaluation"), autoescape=True)
    env.filters["score"] = _score_cell
    return env.get_template("evaluation_report.html.j2").render(
        task=task_name,
        formats=sorted(set(predictions["answer_format"])),
        headline=_headline(parts),
        columns=HEADLINE_COLUMNS,
        model_names=MODEL_NAMES,
        behaviour=_by_model(behaviour, "check", "pass"),
        behaviour_models=[m for m in MODELS if m in set(behaviour["model"])],
        perplexity=metrics["perplexity"],
        worst=[_score_record(r, "strict") for r in worst.to_dict("records")],
        failures=_failures(predictions, config.report.failures_per_set),
        figures={
            "models": _png(plot_model_comparison(parts)),
            "slices": _png(plot_slice_accuracy(slices)),
        },
    )


def _score_cell(score: dict[str, Any]) -> Markup:
    """:func:`format_accuracy` as two halves that do not break inside (the count and accuracy,
    then the interval), so that a table of them wraps between the two on a narrow page."""
    head, _, interval = format_accuracy(score).partition(" [")
    cell = Markup('<span class="nw">{}</span>').format(head)
    return cell + Markup(' <span class="nw">[{}</span>').format(interval) if interval else cell


def _headline(parts: pd.DataFrame) -> list[dict[str, Any]]:
    table = []
    for part in dict.fromkeys(parts["part"]):
        row: dict[str, Any] = {"part": part}
        for record in parts[parts["part"] == part].to_dict("records"):
            row[record["model"]] = {
                **{reading: _score_record(record, reading) for reading in READINGS},
                "teacher_forced": record["teacher_forced"],
                "stopped": record["stopped"],
            }
        table.append(row)
    return table


def _by_model(table: pd.DataFrame, key: str, prefix: str) -> list[dict[str, Any]]:
    rows = []
    for name in dict.fromkeys(table[key]):
        entry: dict[str, Any] = {key: name}
        for record in table[table[key] == name].to_dict("records"):
            entry[record["model"]] = _score_record(record, prefix)
        rows.append(entry)
    return rows


def _score_record(record: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {
        **{k: v for k, v in record.items() if not k.startswith((*(f"{r}_" for r in READINGS), "pass_"))},
        "k": int(record[f"{prefix}_k"]),
        "n": int(record["n"]),
        "accuracy": record[f"{prefix}_accuracy"],
        "ci_low": record[f"{prefix}_ci_low"],
        "ci_high": record[f"{prefix}_ci_high"],
    }


def _failures(predictions: pd.DataFrame, per_part: int) -> dict[str, list[dict[str, Any]]]:
    """Up to ``per_part`` strict failures of the fine-tuned model per set part, in row order."""
    tuned = predictions[(predictions["model"] == "tuned") & ~predictions["strict_correct"]]
    failures = {}
    for part, rows in tuned.groupby("part", sort=False):
        failures[part] = [
            {
                "text": r["text"],
                "label": int(r["label"]),
                "strict": None if pd.isna(r["strict_answer"]) else int(r["strict_answer"]),
                "lenient": None if pd.isna(r["lenient_answer"]) else int(r["lenient_answer"]),
                "completion": r["completion"][:SHOWN_CHARS] + ("…" if len(r["completion"]) > SHOWN_CHARS else ""),
                "stopped": bool(r["stopped"]),
                "new_tokens": int(r["new_tokens"]),
                "budget": int(r["budget"]),
            }
            for r in rows.head(per_part).to_dict("records")
        ]
    return failures


def _png(fig: plt.Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=72)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
