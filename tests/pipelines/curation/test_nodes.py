import pandas as pd

from synthtune.pipelines.curation.nodes import count_curation, drop_exact_duplicates, normalise_rows, normalise_text

from ...conftest import make_rows

ON = {"enabled": True}
OFF = {"enabled": False}


def test_normalise_text_folds_whitespace_and_composes_unicode():
    assert normalise_text("  dog \t dog\n a ") == "dog dog a"
    assert normalise_text("cafe\u0301") == "caf\u00e9"


def test_normalise_rows_rewrites_prompt_and_answer_but_not_label():
    rows = make_rows(["dog  dog a", " a a"], fmt="tally")
    out = normalise_rows(rows, "letter_count", ON)
    assert out["text"].tolist() == ["dog dog a", "a a"]
    assert out["prompt"].tolist() == make_rows(["dog dog a", "a a"])["prompt"].tolist()
    assert out["answer"][0] == "dog 3 (3), dog 3 (6), a 1 (7). Answer: 7"
    assert out["label"].tolist() == [7, 2]


def test_normalise_rows_disabled_is_identity():
    rows = make_rows(["dog  dog a"])
    assert normalise_rows(rows, "letter_count", OFF) is rows


def test_drop_exact_duplicates_keeps_first_and_records_reason():
    rows = normalise_rows(make_rows(["a a", "dog dog a", "a  a", "i am fine", "dog dog a"]), "letter_count", ON)
    kept, dropped = drop_exact_duplicates(rows, ON)
    assert kept["text"].tolist() == ["a a", "dog dog a", "i am fine"]
    assert dropped["text"].tolist() == ["a a", "dog dog a"]
    assert set(dropped["reason"]) == {"duplicate"}
    assert set(dropped["step"]) == {"deduplicate_exact"}
    assert len(kept) + len(dropped) == len(rows)


def test_drop_exact_duplicates_disabled_keeps_all():
    rows = make_rows(["a a", "a a"])
    kept, dropped = drop_exact_duplicates(rows, OFF)
    assert len(kept) == 2 and dropped.empty
    assert list(dropped.columns)[-2:] == ["step", "reason"]


def test_count_curation_counts_per_reason():
    rows = make_rows(["a a", "a a", "dog"])
    kept, dropped = drop_exact_duplicates(rows, ON)
    counts = count_curation(rows, kept, dropped)
    assert counts == {"rows_in": 3, "rows_kept": 2, "rows_dropped": 1, "dropped": {"deduplicate_exact.duplicate": 1}}


def test_count_curation_with_nothing_dropped():
    rows = make_rows(["a"])
    counts = count_curation(rows, rows, pd.DataFrame(columns=["step", "reason"]))
    assert counts["rows_dropped"] == 0 and counts["dropped"] == {}
