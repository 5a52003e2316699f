"""Nodes of the validation pipeline.

The suite is data (``conf/base/expectations/*.yml``); these nodes add the columns it
checks, run it in-process with Great Expectations 1.x and stop the run on a critical
failure.
"""

import json
from typing import Any

import pandas as pd

from synthtune.tasks import get_task

SEVERITIES = ("critical", "warning")


class DataValidationError(RuntimeError):
    """Raised when a critical expectation fails: the run stops before training."""


def add_recomputed_labels(rows: pd.DataFrame, task_name: str) -> pd.DataFrame:
    """Recompute every label so the suite can compare it with the stored one.

    Labels are computed, never trusted: ``label_recomputed`` comes from the task's own
    verifier, ``answer_label`` is the number the stored answer ends with (in any format).
    """
    task = get_task(task_name)
    answer_label = pd.array([task.parse_answer(a) for a in rows["answer"]], dtype="Int64")
    return rows.assign(label_recomputed=task.label(rows), answer_label=answer_label)


def run_expectation_suite(rows: pd.DataFrame, suite_spec: dict[str, Any]) -> dict[str, Any]:
    """Run an expectation suite over the whole table in an ephemeral GX context.

    Args:
        rows: The table to validate.
        suite_spec: ``name`` and ``expectations``: a list of ``{type, kwargs, severity}``
            where ``severity`` is ``critical`` (stops the run) or ``warning`` (reported).

    Returns:
        A JSON-ready summary: overall success, row count and, per expectation, its type,
        arguments, severity, success and observed values.

    Raises:
        ValueError: if an expectation has an unknown type or severity.
    """
    import great_expectations as gx  # slow import (~3 s): only when validation runs

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = gx.data_context.types.base.ProgressBarsConfig(globally=False)
    suite = context.suites.add(
        gx.ExpectationSuite(name=suite_spec["name"], expectations=_build_expectations(suite_spec))
    )
    batch = (
        context.data_sources.add_pandas("synthtune")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("all")
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=suite_spec["name"], data=batch, suite=suite)
    )
    result = definition.run(batch_parameters={"dataframe": rows}, result_format="SUMMARY")
    checks = [_summarise_result(r) for r in result.results]
    return _jsonable(
        {
            "suite": suite_spec["name"],
            "rows": len(rows),
            "success": all(c["success"] for c in checks if c["severity"] == "critical"),
            "failed_critical": sum(not c["success"] for c in checks if c["severity"] == "critical"),
            "failed_warning": sum(not c["success"] for c in checks if c["severity"] == "warning"),
            "expectations": checks,
        }
    )


def gate_on_validation(summary: dict[str, Any], rows: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Pass the rows on to training only if no expectation of a stopping severity failed.

    Args:
        summary: Output of ``run_expectation_suite``.
        rows: The rows that were validated.
        params: ``stop_on``: the severities whose failure stops the run.

    Raises:
        DataValidationError: naming each failed expectation, its column(s) and what was
            observed.
    """
    unknown = set(params["stop_on"]) - set(SEVERITIES)
    if unknown:
        raise ValueError(
            f"validation.stop_on holds unknown severities {sorted(unknown)}; expected a subset of {SEVERITIES}"
        )
    failed = [c for c in summary["expectations"] if c["severity"] in params["stop_on"] and not c["success"]]
    if failed:
        lines = "\n".join(f"  - [{c['severity']}] {describe_check(c)}" for c in failed)
        raise DataValidationError(
            f"Suite {summary['suite']!r}: {len(failed)} expectation(s) failed on "
            f"{summary['rows']} rows; training was not started.\n{lines}"
        )
    return rows


def describe_check(check: dict[str, Any]) -> str:
    """One line for a check: its type, the columns it looked at and what it observed."""
    columns = {k: v for k, v in check["kwargs"].items() if k.startswith("column")}
    observed = {k: v for k, v in check["observed"].items() if v not in (None, [], {})}
    return f"{check['type']} {columns} observed {observed}"


def _build_expectations(suite_spec: dict[str, Any]) -> list:
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    expectations = []
    for i, entry in enumerate(suite_spec["expectations"]):
        severity = entry.get("severity", "critical")
        if severity not in SEVERITIES:
            raise ValueError(
                f"Suite {suite_spec['name']!r}, expectation #{i} ({entry.get('type')}): unknown severity "
                f"{severity!r}; expected one of {SEVERITIES}"
            )
        config = ExpectationConfiguration(
            type=entry["type"], kwargs=entry.get("kwargs", {}), meta={"severity": severity}
        )
        try:
            expectations.append(config.to_domain_obj())
        except ExpectationNotFoundError as err:
            raise ValueError(
                f"Suite {suite_spec['name']!r}, expectation #{i}: unknown expectation type {entry['type']!r}"
            ) from err
    # GX can drop malformed entries with only a log line; make sure none went missing.
    assert len(expectations) == len(suite_spec["expectations"])
    return expectations


def _summarise_result(result) -> dict[str, Any]:
    config = result.expectation_config
    observed_keys = ("observed_value", "unexpected_count", "unexpected_percent", "partial_unexpected_list")
    return {
        "type": config.type,
        "kwargs": {k: v for k, v in config.kwargs.items() if k != "batch_id"},
        "severity": config.meta.get("severity", "critical"),
        "success": bool(result.success),
        "observed": {k: result.result.get(k) for k in observed_keys if k in result.result},
        "error": (result.exception_info or {}).get("exception_message"),
    }


def _jsonable(value: Any) -> Any:
    # GX results carry numpy scalars and tuples; one round-trip through JSON with str()
    # as the fallback makes the summary serialisable and stable.
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
