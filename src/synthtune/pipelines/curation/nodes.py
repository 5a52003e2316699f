"""Nodes of the curation pipeline.

Each step takes rows and returns the rows it keeps plus the rows it drops, each dropped
row tagged with the step and a reason code (DataTrove's filter contract), so nothing is
silently lost.
"""

import unicodedata
from typing import Any

import pandas as pd

from synthtune.tasks import get_task

REJECT_COLUMNS = ("step", "reason")


def normalise_text(text: str) -> str:
    """Unicode NFC and single spaces; neither changes which characters are letters."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def normalise_rows(rows: pd.DataFrame, task_name: str, params: dict[str, Any]) -> pd.DataFrame:
    """Normalise each row's text, re-ask it with its own template and normalise the answer.

    Args:
        rows: Training rows with ``text``, ``template_id``, ``prompt`` and ``answer``.
        task_name: The task whose training templates asked the rows.
        params: ``enabled`` (bool): ``False`` passes rows through unchanged.

    Returns:
        The rows with normalised ``text``, ``prompt`` and ``answer``. Labels are unchanged:
        NFC and whitespace folding keep every letter.
    """
    if not params["enabled"]:
        return rows
    templates = get_task(task_name).train_templates
    rows = rows.assign(text=rows["text"].map(normalise_text), answer=rows["answer"].map(normalise_text))
    fields = rows.drop(columns=["prompt", "answer", "label"]).to_dict("records")
    return rows.assign(prompt=[templates[f["template_id"]].format(**f) for f in fields])


def drop_exact_duplicates(rows: pd.DataFrame, params: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the first row of each normalised text; drop the rest with reason ``duplicate``.

    Args:
        rows: Normalised task rows.
        params: ``enabled`` (bool): ``False`` keeps every row.

    Returns:
        Kept rows and dropped rows (with ``step`` and ``reason`` columns).
    """
    if not params["enabled"]:
        return rows, _rejected(rows.iloc[:0], "deduplicate_exact", "duplicate")
    repeated = rows["text"].duplicated(keep="first")
    return rows[~repeated].reset_index(drop=True), _rejected(rows[repeated], "deduplicate_exact", "duplicate")


def count_curation(raw: pd.DataFrame, curated: pd.DataFrame, rejected: pd.DataFrame) -> dict[str, Any]:
    """Summarise curation: rows in, rows kept and dropped rows per step and reason."""
    by_reason = rejected.groupby(["step", "reason"]).size() if len(rejected) else pd.Series(dtype="int64")
    return {
        "rows_in": len(raw),
        "rows_kept": len(curated),
        "rows_dropped": len(rejected),
        "dropped": {f"{step}.{reason}": int(n) for (step, reason), n in by_reason.items()},
    }


def _rejected(rows: pd.DataFrame, step: str, reason: str) -> pd.DataFrame:
    return rows.assign(step=step, reason=reason).reset_index(drop=True)
