import numpy as np
import pandas as pd

from synthtune.pipelines.curation.nodes import (
    DROPPING_STEPS,
    curate_subskill_rows,
    drop_exact_duplicates,
    filter_quality,
    summarise_curation,
)
from synthtune.tasks import get_task

from ...conftest import make_rows


def test_disabled_step_passes_everything_through():
    rows = make_rows(["a a", "a a"])
    kept, dropped = drop_exact_duplicates(rows, {"enabled": False})
    assert kept is rows and dropped.empty and set(dropped.columns) >= {"step", "reason"}
    kept, _ = filter_quality(rows, "letter_count", {"enabled": False})
    assert kept is rows


def test_summary_counts_every_step_and_reason():
    raw = make_rows(["a a", "a a", "dog", "i am fine"])
    kept, dup = drop_exact_duplicates(raw, {"enabled": True})
    empty = raw.iloc[:0].assign(step="", reason="")
    drops = [empty, empty, empty, dup, empty, empty, empty]
    rejected, counts = summarise_curation(raw, kept, *drops)
    assert len(rejected) == 1
    assert counts["rows_in"] == 4 and counts["rows_kept"] == 3 and counts["rows_dropped"] == 1
    assert counts["dropped_by_reason"] == {"duplicate": 1}
    assert [s["step"] for s in counts["steps"]] == list(DROPPING_STEPS)
    assert [s["rows_in"] for s in counts["steps"]] == [4, 4, 4, 4, 3, 3, 3]


def test_subskill_rows_are_verified_deduplicated_and_decontaminated():
    task = get_task("letter_count")
    rows = task.make_subskill_rows("word_lengths", ["dog", "house", "zebra", "of"], 6, (1, 2), np.random.default_rng(3))
    rows = pd.concat([rows, rows.iloc[[0]]], ignore_index=True)  # an exact duplicate
    rows.loc[1, "answer"] = "wrong 9"  # a wrong answer
    evaluation = make_rows([rows.loc[2, "text"].upper()])  # an evaluation text, in other case
    on = {"enabled": True}
    params = {"verify_labels": on, "deduplicate_exact": on, "decontaminate": {"enabled": True, "ngram": 8}}
    kept, dropped = curate_subskill_rows(rows, "letter_count", evaluation, evaluation, evaluation, evaluation, params)
    assert dropped.set_index("row_id")["reason"].to_dict() == {
        rows.loc[1, "row_id"]: "wrong_answer",
        rows.loc[0, "row_id"]: "duplicate",
        rows.loc[2, "row_id"]: "contaminated_exact",
    }
    assert len(kept) + len(dropped) == len(rows) and task.verify_subskill_rows(kept).all()
