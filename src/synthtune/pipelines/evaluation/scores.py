"""Scores of the evaluation pipeline: accuracy per set and per slice, each as ``k/n`` with a
95% Wilson interval, and the metrics that DVC tracks.

Slices use the same word features and bins as generation and validation
(``synthtune.text``, ``synthtune.features``), plus two that only make sense against the
training data: words the training strings never used, and strings longer than any of them.
"""

from typing import Any

import numpy as np
import pandas as pd

from synthtune.features import BINS, bin_values
from synthtune.metrics import accuracy
from synthtune.tasks import get_task
from synthtune.text import text_features, unseen_word_counts, vocabulary_of

from .nodes import READINGS, evaluation_params

COUNT_BINS = [0, 1, 2, np.inf]  # none, one, several
# feature -> bin edges (None: booleans; "category": the column's own values)
SLICES: dict[str, Any] = {
    "n_words": BINS["n_words"],
    "max_word_length": BINS["max_word_length"],
    "repeated_word_share": BINS["repeated_word_share"],
    "max_repeat": BINS["max_repeat"],
    "n_one_letter_words": COUNT_BINS,
    "has_capital": None,
    "has_punctuation": None,
    "answer_digits": BINS["answer_digits"],
    "unseen_words": COUNT_BINS,
    "longer_than_train": None,
    "category": "category",
}


def describe_predictions(
    train_rows: pd.DataFrame, subskill_rows: pd.DataFrame, task_name: str, **predictions: pd.DataFrame
) -> pd.DataFrame:
    """Every prediction of every model and set in one table, with the features slices use.

    ``unseen_words`` counts a string's words that no training string and no sub-skill
    exercise uses; ``longer_than_train`` marks strings with more words than any training string.
    """
    rows = pd.concat(list(predictions.values()), ignore_index=True)
    task = get_task(task_name)
    features = task.features(rows, rows["label"])
    train_words = text_features(train_rows["text"])["n_words"].to_numpy()
    return pd.concat(
        [
            rows,
            features.drop(columns=[c for c in features.columns if c in rows.columns]),
            pd.DataFrame(
                {
                    "unseen_words": unseen_word_counts(
                        rows["text"], vocabulary_of(pd.concat([train_rows["text"], subskill_rows["text"]]))
                    ),
                    "longer_than_train": features["n_words"].to_numpy() > train_words.max(initial=0),
                }
            ),
        ],
        axis=1,
    )


def score_parts(rows: pd.DataFrame) -> pd.DataFrame:
    """Accuracy of each model on each set part, strict, exact and lenient, with how it was answered.

    Columns: ``model``, ``part``, ``n``; ``strict_k``/``strict_accuracy``/``strict_ci_low``/
    ``strict_ci_high`` and the same for ``exact`` and ``lenient``; ``teacher_forced`` and ``stopped``
    (shares of rows); ``median_abs_error`` (lenient answer against the label).
    """
    records = []
    for (model, part), group in rows.groupby(["model", "part"], sort=False):
        error = (group["lenient_answer"].astype("Float64") - group["label"]).abs().dropna()
        records.append(
            {
                "model": model,
                "part": part,
                "n": len(group),
                **{k: v for r in READINGS for k, v in _flat(r, accuracy(group[f"{r}_correct"]), with_n=False).items()},
                "teacher_forced": float(group["teacher_forced"].mean()),
                "stopped": float(group["stopped"].mean()),
                "median_abs_error": float(error.median()) if len(error) else None,
            }
        )
    return pd.DataFrame(records)


def score_slices(rows: pd.DataFrame) -> pd.DataFrame:
    """Strict accuracy per slice, for each model, on each set part and on all parts pooled.

    Columns: ``model``, ``part`` (a set part or ``all``), ``feature``, ``bin``, ``n``,
    ``strict_k``, ``strict_accuracy``, ``strict_ci_low``, ``strict_ci_high``,
    ``lenient_k``, ``lenient_accuracy``. Empty bins are left out.
    """
    binned = pd.DataFrame({feature: _bins(rows, feature, edges) for feature, edges in SLICES.items()})
    records = []
    pooled = rows.assign(part="all")
    for frame in (rows, pooled):
        for (model, part), idx in frame.groupby(["model", "part"], sort=False).indices.items():
            for feature in SLICES:
                column = binned[feature].iloc[idx]
                for bin_name, at in column.groupby(column, observed=True, sort=True).indices.items():
                    group = rows.iloc[idx[at]]
                    strict = accuracy(group["strict_correct"])
                    records.append(
                        {
                            "model": model,
                            "part": part,
                            "feature": feature,
                            "bin": str(bin_name),
                            "n": strict["n"],
                            **_flat("strict", strict, with_n=False),
                            "lenient_k": int(group["lenient_correct"].sum()),
                            "lenient_accuracy": float(group["lenient_correct"].mean()),
                        }
                    )
    return pd.DataFrame(records)


def worst_slices(slices: pd.DataFrame, model: str, min_rows: int, count: int) -> pd.DataFrame:
    """The ``count`` slices of a set part where ``model`` is least accurate (strict), among
    slices of at least ``min_rows`` rows that are not the whole part."""
    own = slices[(slices["model"] == model) & (slices["part"] != "all") & (slices["n"] >= min_rows)]
    whole = own.groupby(["part", "feature"])["n"].transform("sum") == own["n"]  # one bin holds every row
    return own[~whole].sort_values(["strict_accuracy", "n"], ascending=[True, False], kind="stable").head(count)


def score_behaviour(**predictions: pd.DataFrame) -> pd.DataFrame:
    """Pass rate of each CheckList-style check, per model.

    A perturbed string passes when both it and its original got a strict answer and the
    answers differ by exactly what the verifier says the perturbation changed (0 for the
    invariance checks, the appended word's letters for the directional one).

    Args:
        predictions: Each model's predictions on the behaviour set, keyed by model name.
    """
    records = []
    for model, rows in predictions.items():
        original = rows[rows["check"] == "original"].set_index("pair")
        perturbed = rows[rows["check"] != "original"]
        base = original.loc[perturbed["pair"]]
        expected = perturbed["label"].to_numpy() - base["label"].to_numpy()
        answered = perturbed["strict_answer"].notna().to_numpy() & base["strict_answer"].notna().to_numpy()
        answered &= perturbed["stopped"].to_numpy() & base["stopped"].to_numpy()
        change = perturbed["strict_answer"].astype("Float64").to_numpy(na_value=np.nan) - base["strict_answer"].astype(
            "Float64"
        ).to_numpy(na_value=np.nan)
        passed = answered & (change == expected)
        for check, idx in perturbed.groupby("check", sort=True).indices.items():
            records.append({"model": model, "check": check, **_flat("pass", accuracy(passed[idx]))})
    # with the checks off (evaluation.behaviour.n_strings: 0) there are no records, but the
    # report and metrics still read these columns
    columns = ["model", "check", *_flat("pass", accuracy([]))]
    return pd.DataFrame(records, columns=columns)


def summarise_evaluation(
    parts: pd.DataFrame,
    behaviour: pd.DataFrame,
    tuned_perplexity: dict[str, float],
    base_perplexity: dict[str, float],
) -> dict[str, Any]:
    """The metrics DVC tracks (``metrics.json``): per model and set part, strict, exact and
    lenient accuracy with counts and intervals; behaviour pass rates; perplexity of plain text."""
    metrics: dict[str, Any] = {}
    for record in parts.to_dict("records"):
        metrics.setdefault(record["model"], {})[record["part"]] = {
            **{reading: _nested(reading, record) for reading in READINGS},
            "teacher_forced": round(record["teacher_forced"], 4),
            "stopped": round(record["stopped"], 4),
            # None where no completion had a number (the DataFrame holds it as NaN)
            "median_abs_error": None if pd.isna(record["median_abs_error"]) else record["median_abs_error"],
        }
    metrics["behaviour"] = {}
    for record in behaviour.to_dict("records"):
        metrics["behaviour"].setdefault(record["model"], {})[record["check"]] = _nested("pass", record)
    metrics["perplexity"] = {
        "tuned": round(tuned_perplexity["perplexity"], 3),
        "base": round(base_perplexity["perplexity"], 3),
        "ratio": round(tuned_perplexity["perplexity"] / base_perplexity["perplexity"], 4),
        "tokens": tuned_perplexity["tokens"],
    }
    return metrics


def select_worst_slices(slices: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """The fine-tuned model's worst slices, as ``evaluation.slices`` asks."""
    config = evaluation_params(params).slices
    return worst_slices(slices, "tuned", config.min_rows, config.worst)


def _bins(rows: pd.DataFrame, feature: str, edges) -> pd.Series:
    if edges == "category":
        values = rows[feature] if feature in rows else pd.Series(np.nan, index=rows.index)
        return values.astype("category")
    return pd.Series(bin_values(rows[feature], edges), index=rows.index)


def _flat(prefix: str, score: dict[str, Any], with_n: bool = True) -> dict[str, Any]:
    out = {f"{prefix}_k": score["k"], f"{prefix}_accuracy": score["accuracy"]}
    out |= {f"{prefix}_ci_low": score["ci_low"], f"{prefix}_ci_high": score["ci_high"]}
    return ({"n": score["n"]} if with_n else {}) | out


def _nested(prefix: str, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "k": int(record[f"{prefix}_k"]),
        "n": int(record["n"]),
        "accuracy": round(float(record[f"{prefix}_accuracy"]), 4),
        "ci_low": round(float(record[f"{prefix}_ci_low"]), 4),
        "ci_high": round(float(record[f"{prefix}_ci_high"]), 4),
    }
