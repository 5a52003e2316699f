"""Nodes of the curation pipeline: one per step of ``steps.py``, then a summary.

Each step node takes rows and its parameters and returns the rows it keeps and the rows it
drops (with ``step`` and ``reason``); ``enabled: false`` makes it pass everything through.
"""

from typing import Any

import pandas as pd

from . import steps

# The steps that drop rows, in pipeline order (summarise_curation receives their drops so).
DROPPING_STEPS = (
    "quality_filter",
    "verify_labels",
    "scrub_pii",
    "drop_exact_duplicates",
    "drop_near_duplicates",
    "decontaminate",
    "balance",
)


def _off(rows: pd.DataFrame, params: dict[str, Any], step: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The pass-through result of a disabled step, or ``None`` when it is enabled."""
    if params.get("enabled", True):
        return None
    return rows, rows.iloc[:0].assign(step=step, reason="")


def normalise_rows(rows: pd.DataFrame, task_name: str, params: dict[str, Any]) -> pd.DataFrame:
    """Check the table's columns, then normalise text (NFC, whitespace), prompt and answer."""
    steps.check_columns(rows, "raw_train (data/01_raw/train_raw.parquet)")
    return steps.normalise(rows, task_name) if params["enabled"] else rows


def filter_quality(rows: pd.DataFrame, task_name: str, params: dict[str, Any]):
    """Length bounds, allowed characters and a parseable answer."""
    return _off(rows, params, "quality_filter") or steps.quality_filter(
        rows, task_name, params["min_chars"], params["max_chars"], params["allowed"]
    )


def verify_row_labels(rows: pd.DataFrame, task_name: str, params: dict[str, Any]):
    """Recompute every label with the task's verifier; drop mismatches."""
    return _off(rows, params, "verify_labels") or steps.verify_labels(rows, task_name, params["keep_noisy"])


def scrub_row_pii(rows: pd.DataFrame, task_name: str, params: dict[str, Any]):
    """Scrub (free text) or drop (counting tasks) rows holding e-mails, URLs or phone numbers."""
    return _off(rows, params, "scrub_pii") or steps.scrub_pii(rows, task_name)


def drop_exact_duplicates(rows: pd.DataFrame, params: dict[str, Any]):
    """Exact de-duplication on the normalised text."""
    return _off(rows, params, "drop_exact_duplicates") or steps.drop_exact_duplicates(rows)


def drop_near_duplicates(rows: pd.DataFrame, params: dict[str, Any]):
    """Bag-of-words keys for short strings, MinHash LSH for long ones, capped per key."""
    return _off(rows, params, "drop_near_duplicates") or steps.drop_near_duplicates(
        rows,
        params["max_per_key"],
        params["minhash_min_distinct"],
        params["bands"],
        params["band_rows"],
        params["shingle"],
    )


def decontaminate_rows(
    rows: pd.DataFrame,
    test: pd.DataFrame,
    probes: pd.DataFrame,
    heldout: pd.DataFrame,
    external: pd.DataFrame,
    params: dict[str, Any],
):
    """Drop training rows found in, or sharing a long n-gram with, any evaluation set."""
    eval_texts = pd.concat([s["text"] for s in (test, probes, heldout, external)], ignore_index=True)
    return _off(rows, params, "decontaminate") or steps.decontaminate(rows, eval_texts, params["ngram"])


def curate_subskill_rows(
    rows: pd.DataFrame,
    task_name: str,
    test: pd.DataFrame,
    probes: pd.DataFrame,
    heldout: pd.DataFrame,
    external: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Curate sub-skill rows as training rows are curated: answers recomputed by the task,
    exact duplicates dropped, and rows found in or sharing an n-gram with any evaluation set
    dropped (a one-word exercise on a CUTE word is that word's evaluation row).

    Returns:
        The kept rows and the dropped ones with ``step`` and ``reason``.
    """
    kept, dropped = rows, [rows.iloc[:0].assign(step="", reason="")]
    for step, run in (
        ("verify_labels", lambda r: steps.verify_subskill_answers(r, task_name)),
        ("deduplicate_exact", steps.drop_exact_duplicates),
        ("decontaminate", lambda r: decontaminate_rows(r, test, probes, heldout, external, params["decontaminate"])),
    ):
        if params[step].get("enabled", True):
            kept, out = run(kept)
            dropped.append(out)
    return kept, pd.concat(dropped, ignore_index=True)


def balance_rows(rows: pd.DataFrame, params: dict[str, Any]):
    """Cap each stratum so none dominates."""
    return _off(rows, params, "balance") or steps.balance(rows, params["by"], params["max_share"])


def summarise_curation(raw: pd.DataFrame, curated: pd.DataFrame, *dropped: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """All dropped rows in one table, and the counts per step and reason (a DVC metric).

    Args:
        raw: The rows curation started from.
        curated: The rows it kept.
        *dropped: Each step's dropped rows, in the order of ``DROPPING_STEPS``.
    """
    rejected = pd.concat(dropped, ignore_index=True)
    remaining = len(raw)
    per_step = []
    for step, table in zip(DROPPING_STEPS, dropped, strict=True):
        reasons = table["reason"].value_counts().sort_index()
        per_step.append({"step": step, "rows_in": remaining, "dropped": {str(k): int(v) for k, v in reasons.items()}})
        remaining -= len(table)
    counts = {
        "rows_in": len(raw),
        "rows_kept": len(curated),
        "rows_dropped": len(rejected),
        "kept_share": round(len(curated) / max(len(raw), 1), 4),
        "dropped_by_reason": {str(k): int(v) for k, v in rejected["reason"].value_counts().sort_index().items()},
        "steps": per_step,
    }
    return rejected, counts
