from pathlib import Path

import pytest
import yaml

from synthtune.pipelines.validation.nodes import (
    DataValidationError,
    add_recomputed_labels,
    gate_on_validation,
    run_expectation_suite,
)

from ...conftest import make_rows

SUITE = yaml.safe_load((Path(__file__).parents[3] / "conf/base/expectations/train_rows.yml").read_text())
STOP_ON_CRITICAL = {"stop_on": ["critical"]}


@pytest.fixture
def rows():
    return make_rows(["a a", "be be be be", "dog dog a", "i am fine"], fmt="tally")


def validate(rows, suite=SUITE, task="letter_count"):
    return run_expectation_suite(add_recomputed_labels(rows, task), suite)


def test_clean_rows_pass_every_expectation(rows):
    summary = validate(rows)
    assert summary["success"] is True
    assert summary["rows"] == 4
    assert len(summary["expectations"]) == len(SUITE["expectations"])
    assert all(check["success"] for check in summary["expectations"])
    assert gate_on_validation(summary, rows, STOP_ON_CRITICAL) is rows


def test_wrong_label_stops_the_run_naming_the_expectation(rows):
    rows.loc[2, "label"] = 8  # "dog dog a" has 7 letters (and its answer still says 7)
    summary = validate(rows)
    assert summary["success"] is False
    assert summary["failed_critical"] == 2
    with pytest.raises(DataValidationError) as err:
        gate_on_validation(summary, rows, STOP_ON_CRITICAL)
    message = str(err.value)
    assert "expect_column_pair_values_to_be_equal" in message
    assert "'column_A': 'label', 'column_B': 'label_recomputed'" in message
    assert "'column_A': 'answer_label', 'column_B': 'label'" in message
    assert "unexpected_count': 1" in message
    assert "training was not started" in message


def test_duplicate_and_null_rows_fail(rows):
    rows.loc[1, "text"] = rows.loc[0, "text"]
    rows.loc[3, "prompt"] = None
    summary = validate(rows)
    failed = {(c["type"], c["kwargs"].get("column")) for c in summary["expectations"] if not c["success"]}
    assert ("expect_column_values_to_be_unique", "text") in failed
    assert ("expect_column_values_to_not_be_null", "prompt") in failed


def test_answer_that_disagrees_with_its_label_fails(rows):
    rows.loc[0, "answer"] = "a 1 (1), a 1 (2). Answer: 3"
    failed = [c for c in validate(rows)["expectations"] if not c["success"]]
    assert [(c["type"], c["kwargs"]["column_A"]) for c in failed] == [
        ("expect_column_pair_values_to_be_equal", "answer_label")
    ]


def test_char_count_rows_pass_the_same_suite():
    rows = make_rows(["strawberry", "banana"], task_name="char_count", fmt="spell", letter=["r", "a"])
    assert validate(rows, task="char_count")["success"] is True


def test_missing_column_fails_the_schema_check(rows):
    summary = validate(rows.drop(columns=["template_id"]))
    schema = next(c for c in summary["expectations"] if c["type"] == "expect_table_columns_to_match_set")
    assert schema["success"] is False


def test_warning_is_reported_but_does_not_stop(rows):
    suite = {
        "name": "lenient",
        "expectations": [
            {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 100}, "severity": "warning"}
        ],
    }
    summary = validate(rows, suite)
    assert summary["success"] is True and summary["failed_warning"] == 1
    assert gate_on_validation(summary, rows, STOP_ON_CRITICAL) is rows
    with pytest.raises(DataValidationError, match=r"\[warning\] expect_table_row_count_to_be_between"):
        gate_on_validation(summary, rows, {"stop_on": ["critical", "warning"]})


def test_unknown_expectation_type_is_named(rows):
    suite = {"name": "bad", "expectations": [{"type": "expect_rows_to_be_lovely", "kwargs": {}}]}
    with pytest.raises(
        ValueError, match="Suite 'bad', expectation #0: unknown expectation type 'expect_rows_to_be_lovely'"
    ):
        validate(rows, suite)


def test_unknown_severity_is_named(rows):
    suite = {
        "name": "bad",
        "expectations": [{"type": "expect_table_row_count_to_be_between", "kwargs": {}, "severity": "fatal"}],
    }
    with pytest.raises(ValueError, match="unknown severity 'fatal'"):
        validate(rows, suite)
