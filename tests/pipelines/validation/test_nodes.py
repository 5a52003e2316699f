from pathlib import Path

import pandas as pd
import pytest
import yaml

from synthtune.pipelines.validation.nodes import (
    DataValidationError,
    add_check_columns,
    derive_expectation_parameters,
    gate_on_validation,
    run_expectation_suite,
    stable_page,
)

from ...conftest import make_rows

SUITE = yaml.safe_load((Path(__file__).parents[3] / "conf/base/expectations/train_rows.yml").read_text())
STOP_ON_CRITICAL = {"stop_on": ["critical"], "severity_overrides": {}}
EVAL = make_rows(["zebra crossing", "the end"])
SCHEMA_AND_LABELS = {"name": "core", "expectations": [e for e in SUITE["expectations"] if e["group"] != "distribution"]}


@pytest.fixture
def rows():
    # a small table that meets the distribution expectations too
    texts = ["a", "a a", "be be be be", "dog dog a", "i am fine", "house cat", "one two three", "x y z w",
             "five words are in here", "the six words are in here", " ".join(["mark"] * 12), " ".join(["no"] * 30),
             " ".join(["cat"] * 60), "ten words here to make the bucket six to ten"]  # fmt: skip
    return make_rows(texts, fmt="tally")


def validate(rows, suite=SUITE, task="letter_count", params=STOP_ON_CRITICAL, eval_sets=(EVAL, EVAL, EVAL, EVAL)):
    checked = add_check_columns(rows, *eval_sets, task)
    summary, site = run_expectation_suite(checked, suite, derive_expectation_parameters(*eval_sets, task), params)
    return summary, site


def failed(summary):
    return [
        (c["type"], c["kwargs"].get("column", c["kwargs"].get("column_A")))
        for c in summary["expectations"]
        if not c["success"]
    ]


def test_clean_rows_pass_every_expectation_and_render_data_docs(rows):
    summary, site = validate(rows)
    assert failed(summary) == []
    assert summary["success"] is True and summary["rows"] == len(rows)
    assert len(summary["expectations"]) == len(SUITE["expectations"])
    assert "index.html" in site and any(p.startswith("validations/") and p.endswith(".html") for p in site)
    assert gate_on_validation(summary, rows, STOP_ON_CRITICAL) is rows


def test_wrong_label_stops_the_run_naming_the_expectation(rows):
    rows.loc[3, "label"] = 8  # "dog dog a" has 7 letters, and its answer still says 7
    summary, _ = validate(rows)
    assert summary["success"] is False
    assert failed(summary) == [("expect_column_pair_values_to_be_equal", c) for c in ("label", "answer_label")]
    with pytest.raises(DataValidationError) as err:
        gate_on_validation(summary, rows, STOP_ON_CRITICAL)
    message = str(err.value)
    assert "'column_A': 'label', 'column_B': 'label_recomputed'" in message
    assert "'column_A': 'answer_label', 'column_B': 'label'" in message
    assert "unexpected_count': 1" in message and "training was not started" in message


def test_marked_noisy_labels_are_exempt_from_the_label_check(rows):
    rows.loc[3, ["label", "answer", "label_noisy"]] = [8, "dog 3 (3), dog 3 (6), a 1 (8). Answer: 8", True]
    assert failed(validate(rows)[0]) == []


def test_duplicate_and_null_rows_fail(rows):
    rows.loc[1, "text"] = rows.loc[0, "text"]
    rows.loc[3, "prompt"] = None
    assert {("expect_column_values_to_be_unique", "text"), ("expect_column_values_to_not_be_null", "prompt")} <= set(
        failed(validate(rows)[0])
    )


def test_overlap_with_an_evaluation_set_fails(rows):
    summary, _ = validate(rows, eval_sets=(EVAL, make_rows(["Dog dog a"]), EVAL, EVAL))
    assert failed(summary) == [("expect_column_values_to_be_in_set", "in_eval_set")]


def test_missing_column_fails_the_schema_check(rows):
    summary, _ = validate(rows.drop(columns=["template_id"]), SCHEMA_AND_LABELS)
    assert ("expect_table_columns_to_match_set", None) in failed(summary)


def test_naive_like_rows_fail_the_distribution_expectations():
    rows = make_rows([f"word{'s' * i} common english text here" for i in range(20)])
    summary, _ = validate(rows)
    distribution = {
        c["kwargs"]["column"] for c in summary["expectations"] if c["group"] == "distribution" and not c["success"]
    }
    assert distribution == {"has_one_letter_word", "repeat_heavy", "single_word", "n_words_bucket", "label"}
    demoted, _ = validate(rows, params={"stop_on": ["critical"], "severity_overrides": {"distribution": "warning"}})
    assert demoted["success"] is True and demoted["failed_warning"] == 5  # label min fails, label max holds
    gate_on_validation(demoted, rows, STOP_ON_CRITICAL)


def test_warning_is_reported_but_does_not_stop(rows):
    suite = {
        "name": "lenient",
        "expectations": [
            {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 100}, "severity": "warning"}
        ],
    }
    summary, _ = validate(rows, suite)
    assert summary["success"] is True and summary["failed_warning"] == 1
    assert gate_on_validation(summary, rows, STOP_ON_CRITICAL) is rows
    with pytest.raises(DataValidationError, match=r"\[warning\] expect_table_row_count_to_be_between"):
        gate_on_validation(summary, rows, {"stop_on": ["critical", "warning"]})


def test_char_count_rows_pass_the_schema_and_label_checks():
    rows = make_rows(["strawberry", "banana"], task_name="char_count", fmt="spell", letter=["r", "a"])
    evals = (make_rows(["apple"], task_name="char_count", letter=["p"]),) * 4
    assert validate(rows, SCHEMA_AND_LABELS, task="char_count", eval_sets=evals)[0]["success"] is True


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


def test_expectation_parameters_come_from_the_eval_sets():
    params = derive_expectation_parameters(
        make_rows(["a", "."]), make_rows(["dog"] * 19 + ["mark " * 10]), EVAL, EVAL, "letter_count"
    )
    assert params["eval_label_low"] == 1.0
    assert params["eval_label_high"] == pytest.approx(pd.Series([1, 0] + [3] * 19 + [40] + [13, 6] * 2).quantile(0.95))


def test_data_docs_pages_lose_the_clock_and_random_ids_but_keep_their_links():
    def page(clock: str, a: str, b: str) -> bytes:
        return (
            f'<img src="logo.png?d={clock}"><a href="#body-{a}"></a><div id=body-{a}></div><div id=body-{b}></div>'
            f"<span>ge_load_time</span></td><td><span >{clock}</span>"
        ).encode()

    one = page(
        "20261128T225721.665130Z", "f8b774ac-4352-41cd-b212-2d1e9b74f151", "91cb0200-db24-4975-a865-5238a9a92f7e"
    )
    two = page(
        "20261129T010203.000001Z", "0b1e0e5c-1111-4222-8333-444455556666", "7d9f2a10-aaaa-4bbb-8ccc-ddddeeeeffff"
    )
    assert stable_page(one) == stable_page(two)
    stable = stable_page(one).decode()
    assert "2026" not in stable and "?d=" not in stable
    assert stable.count("body-block-0") == 2 and "body-block-1" in stable  # a link still finds its block
