from synthtune.pipelines.curation.nodes import (
    DROPPING_STEPS,
    drop_exact_duplicates,
    filter_quality,
    summarise_curation,
)

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
