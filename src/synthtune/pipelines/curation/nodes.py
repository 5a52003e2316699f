"""Nodes of the curation pipeline.

Each step takes rows and returns the rows it keeps plus the rows it drops, each dropped
row tagged with the step and a reason code (DataTrove's filter contract), so nothing is
silently lost.
"""

import unicodedata
from typing import Any

import pandas as pd

from synthtune.tasks import letter_count

REJECT_COLUMNS = ("step", "reason")


def normalise_text(text: str) -> str:
    """Unicode NFC and single spaces; neither changes which characters are letters."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def normalise_rows(rows: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Normalise each row's text and re-render its prompt from the normalised text.

    Args:
        rows: Task rows with ``text`` and ``prompt``.
        params: ``enabled`` (bool): ``False`` passes rows through unchanged.

    Returns:
        The rows with normalised ``text`` and ``prompt`` (labels are unchanged: NFC and
        whitespace folding keep the letter count).
    """
    if not params["enabled"]:
        return rows
    text = rows["text"].map(normalise_text)
    return rows.assign(text=text, prompt=text.map(letter_count.render_prompt))


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
