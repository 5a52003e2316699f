import pandas as pd

from synthtune.pipelines.curation.nodes import count_curation, drop_exact_duplicates, normalise_rows, normalise_text
from synthtune.pipelines.generation.nodes import label_texts

ON = {"enabled": True}
OFF = {"enabled": False}


def test_normalise_text_folds_whitespace_and_composes_unicode():
    assert normalise_text("  dog \t dog\n a ") == "dog dog a"
    assert normalise_text("cafe\u0301") == "caf\u00e9"


def test_normalise_rows_rewrites_prompt_but_not_label():
    rows = label_texts(["dog  dog a", " a a"])
    out = normalise_rows(rows, ON)
    assert out["text"].tolist() == ["dog dog a", "a a"]
    assert out["prompt"][0].endswith('"dog dog a"?')
    assert out["letters"].tolist() == [7, 2]


def test_normalise_rows_disabled_is_identity():
    rows = label_texts(["dog  dog a"])
    assert normalise_rows(rows, OFF) is rows


def test_drop_exact_duplicates_keeps_first_and_records_reason():
    rows = normalise_rows(label_texts(["a a", "dog dog a", "a  a", "i am fine", "dog dog a"]), ON)
    kept, dropped = drop_exact_duplicates(rows, ON)
    assert kept["text"].tolist() == ["a a", "dog dog a", "i am fine"]
    assert dropped["text"].tolist() == ["a a", "dog dog a"]
    assert set(dropped["reason"]) == {"duplicate"}
    assert set(dropped["step"]) == {"deduplicate_exact"}
    assert len(kept) + len(dropped) == len(rows)


def test_drop_exact_duplicates_disabled_keeps_all():
    rows = label_texts(["a a", "a a"])
    kept, dropped = drop_exact_duplicates(rows, OFF)
    assert len(kept) == 2 and dropped.empty
    assert list(dropped.columns)[-2:] == ["step", "reason"]


def test_count_curation_counts_per_reason():
    rows = label_texts(["a a", "a a", "dog"])
    kept, dropped = drop_exact_duplicates(rows, ON)
    counts = count_curation(rows, kept, dropped)
    assert counts == {"rows_in": 3, "rows_kept": 2, "rows_dropped": 1, "dropped": {"deduplicate_exact.duplicate": 1}}


def test_count_curation_with_nothing_dropped():
    rows = label_texts(["a"])
    counts = count_curation(rows, rows, pd.DataFrame(columns=["step", "reason"]))
    assert counts["rows_dropped"] == 0 and counts["dropped"] == {}
