"""Nodes of the validation pipeline.

The suite is data (``conf/base/expectations/*.yml``). These nodes compute, once and
vectorised, every column the suite checks (recomputed labels, overlap with the evaluation
sets, distribution features), run the suite in-process with Great Expectations 1.x over the
whole table, render GX Data Docs, and stop the run on a failure of a stopping severity.
"""

import datetime
import hashlib
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthtune.features import BINS, bin_values
from synthtune.tasks import get_task
from synthtune.text import normalise_text, text_features

SEVERITIES = ("critical", "warning")
# The time every validation run is filed under (see content_run_id).
_RUN_TIME = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)


class DataValidationError(RuntimeError):
    """Raised when an expectation of a stopping severity fails: the run stops before training."""


def add_check_columns(
    rows: pd.DataFrame,
    test: pd.DataFrame,
    probes: pd.DataFrame,
    heldout: pd.DataFrame,
    external: pd.DataFrame,
    task_name: str,
) -> pd.DataFrame:
    """Add the columns the suite checks, each computed once for the whole table.

    Labels are computed, never trusted: ``label_recomputed`` comes from the task's
    verifier and ``answer_label`` is what the answer says, read strictly in the row's
    answer format (a malformed answer has none). ``in_eval_set`` marks (normalised,
    curated) texts found in any evaluation set. ``n_words_bucket``, ``has_one_letter_word``,
    ``repeat_heavy`` (half the words repeat an earlier one) and ``single_word`` describe the
    distribution, with the word features every pipeline shares (``synthtune.text``).
    """
    task = get_task(task_name)
    eval_texts = pd.concat([s["text"] for s in (test, probes, heldout, external)]).map(
        lambda t: normalise_text(t).lower()
    )
    features = text_features(rows["text"])
    answers = [task.parse_answer(a, f) for a, f in zip(rows["answer"], rows["answer_format"], strict=True)]
    return rows.assign(
        label_recomputed=task.label(rows),
        answer_label=pd.array(answers, dtype="Int64"),
        in_eval_set=rows["text"].str.lower().isin(set(eval_texts)).to_numpy(dtype=bool),
        n_words_bucket=np.asarray(bin_values(features["n_words"], BINS["n_words"]), dtype=object),
        has_one_letter_word=(features["n_one_letter_words"] > 0).to_numpy(),
        repeat_heavy=(features["repeated_word_share"] >= 0.5).to_numpy(),
        single_word=(features["n_words"] == 1).to_numpy(),
    )


def derive_expectation_parameters(
    test: pd.DataFrame, probes: pd.DataFrame, heldout: pd.DataFrame, external: pd.DataFrame, task_name: str
) -> dict[str, float]:
    """Values the suite compares against, taken from the evaluation sets.

    ``eval_label_high`` is the 95th percentile of their labels (training answers should
    reach it); ``eval_label_low`` the smallest positive label (training should go as low).
    """
    task = get_task(task_name)
    labels = np.concatenate([task.label(s) for s in (test, probes, heldout, external)])
    return {
        "eval_label_high": float(np.percentile(labels, 95)),
        "eval_label_low": float(labels[labels > 0].min()) if (labels > 0).any() else 0.0,
    }


def run_expectation_suite(
    rows: pd.DataFrame, suite_spec: dict[str, Any], expectation_parameters: dict[str, float], params: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Run an expectation suite over the whole table in an ephemeral GX context.

    Args:
        rows: The table to validate, with the columns ``add_check_columns`` adds.
        suite_spec: ``name`` and ``expectations``: a list of ``{type, kwargs, severity,
            group}``; ``severity`` is ``critical`` (stops the run) or ``warning``.
        expectation_parameters: Values for ``{"$PARAMETER": name}`` in kwargs.
        params: ``severity_overrides``: ``{group: severity}``, e.g. to demote the
            ``distribution`` group to warnings and reproduce the case study on purpose.

    Returns:
        A JSON-ready summary (per expectation: type, arguments, severity, success and
        observed values) and the GX Data Docs site as ``{path: bytes}``.

    Raises:
        ValueError: if an expectation has an unknown type or severity.
    """
    import great_expectations as gx  # slow import (~3 s): only when validation runs

    expectations, severities = _build_expectations(suite_spec, params.get("severity_overrides") or {})
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = gx.data_context.types.base.ProgressBarsConfig(globally=False)
    with tempfile.TemporaryDirectory() as docs:
        context.add_data_docs_site(
            site_name="synthtune",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        suite = context.suites.add(gx.ExpectationSuite(name=suite_spec["name"], expectations=expectations))
        batch = (
            context.data_sources.add_pandas("synthtune")
            .add_dataframe_asset("rows")
            .add_batch_definition_whole_dataframe("all")
        )
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=suite_spec["name"], data=batch, suite=suite)
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=suite_spec["name"],
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
                result_format="SUMMARY",
            )
        )
        run = checkpoint.run(
            batch_parameters={"dataframe": rows},
            expectation_parameters=expectation_parameters,
            run_id=content_run_id(rows),
        )
        site = {
            str(p.relative_to(docs)): stable_page(p.read_bytes()) for p in sorted(Path(docs).rglob("*")) if p.is_file()
        }
    (result,) = run.run_results.values()
    checks = [_summarise_result(r, severities) for r in result.results]
    summary = {
        "suite": suite_spec["name"],
        "rows": len(rows),
        "success": all(c["success"] for c in checks if c["severity"] == "critical"),
        "failed_critical": sum(not c["success"] for c in checks if c["severity"] == "critical"),
        "failed_warning": sum(not c["success"] for c in checks if c["severity"] == "warning"),
        "expectation_parameters": expectation_parameters,
        "expectations": checks,
    }
    return _jsonable(summary), site


def content_run_id(rows: pd.DataFrame):
    """The GX run identifier of a validation of ``rows``: named by the table's content, at a
    fixed time. GX names a run by the clock otherwise, and the Data Docs would differ from
    one run to the next (folder names and pages), so DVC would see a changed output after
    every rerun; with this, the same rows give the same site, byte for byte."""
    from great_expectations.core.run_identifier import RunIdentifier

    digest = hashlib.sha256(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes()).hexdigest()
    return RunIdentifier(run_name=f"rows-{digest[:12]}", run_time=_RUN_TIME)


_CLOCK = re.compile(rb"\?d=\d{8}T\d{6}\.\d{6}Z")
_LOAD_TIME = re.compile(rb"(ge_load_time</span>.*?>)\d{8}T\d{6}\.\d{6}Z", re.DOTALL)
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def stable_page(page: bytes) -> bytes:
    """A Data Docs file without what GX takes from the clock or the RNG: the cache-busting
    ``?d=<time>`` of its logo, the batch's ``ge_load_time`` (replaced by the fixed run time)
    and the uuid4 ids of collapsible blocks (numbered in order of appearance instead)."""
    page = _LOAD_TIME.sub(
        lambda m: m.group(1) + _RUN_TIME.strftime("%Y%m%dT%H%M%S.%fZ").encode(), _CLOCK.sub(b"", page)
    )
    ids: dict[bytes, bytes] = {}
    return _UUID.sub(lambda m: ids.setdefault(m.group(0), b"block-%d" % len(ids)), page)


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
            f"{summary['rows']} rows; training was not started.\n{lines}\n"
            "See data/08_reporting/train_validation.json and the Data Docs in data/08_reporting/data_docs/."
        )
    return rows


def describe_check(check: dict[str, Any]) -> str:
    """One line for a check: its type, the columns it looked at and what it observed."""
    columns = {k: v for k, v in check["kwargs"].items() if k.startswith("column") or k.endswith("value")}
    observed = {k: v for k, v in check["observed"].items() if v not in (None, [], {})}
    return f"{check['type']} {columns} observed {observed}" + (f" error {check['error']}" if check["error"] else "")


def _build_expectations(suite_spec: dict[str, Any], overrides: dict[str, str]) -> tuple[list, list[str]]:
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    for group, severity in overrides.items():
        if severity not in SEVERITIES:
            raise ValueError(f"validation.severity_overrides.{group}={severity!r}; expected one of {SEVERITIES}")
    expectations, severities = [], []
    for i, entry in enumerate(suite_spec["expectations"]):
        severity = overrides.get(entry.get("group"), entry.get("severity", "critical"))
        if severity not in SEVERITIES:
            raise ValueError(
                f"Suite {suite_spec['name']!r}, expectation #{i} ({entry.get('type')}): unknown severity "
                f"{severity!r}; expected one of {SEVERITIES}"
            )
        meta = {"severity": severity, "group": entry.get("group", "")}
        config = ExpectationConfiguration(type=entry["type"], kwargs=entry.get("kwargs", {}), meta=meta)
        try:
            expectations.append(config.to_domain_obj())
        except ExpectationNotFoundError as err:
            raise ValueError(
                f"Suite {suite_spec['name']!r}, expectation #{i}: unknown expectation type {entry['type']!r}"
            ) from err
        severities.append(severity)
    # GX can drop malformed entries with only a log line; make sure none went missing.
    if len(expectations) != len(suite_spec["expectations"]):
        raise ValueError(
            f"Suite {suite_spec['name']!r}: built {len(expectations)} of {len(suite_spec['expectations'])} expectations"
        )
    return expectations, severities


def _summarise_result(result, severities: list[str]) -> dict[str, Any]:
    config = result.expectation_config
    observed_keys = ("observed_value", "unexpected_count", "unexpected_percent", "partial_unexpected_list")
    return {
        "type": config.type,
        "group": config.meta.get("group", ""),
        "kwargs": {k: v for k, v in config.kwargs.items() if k != "batch_id"},
        "severity": config.meta.get("severity", "critical"),
        "success": bool(result.success),
        "observed": {k: result.result.get(k) for k in observed_keys if k in result.result},
        "error": _first_error(result.exception_info),
    }


def _first_error(info: Any) -> str | None:
    # GX nests exception info per metric when an expectation computed several.
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return info.get("exception_message")
    return next((e for e in map(_first_error, info.values()) if e), None)


def _jsonable(value: Any) -> Any:
    # GX results carry numpy scalars and tuples; one round-trip through JSON with str()
    # as the fallback makes the summary serialisable and stable.
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
