"""Kedro hooks: parameters checked before the first node, a one-screen summary after the last.

- ``before_pipeline_run``: every parameter block is parsed by its schema
  (:func:`synthtune.config.check_parameters`). A run with ``--params
  training.learning_rate=-1`` stops here, naming the key, its value and what is allowed,
  before any node has read or written a file (without the hook the value would reach torch
  after the base model's conversion, and a bad ``generation.profile`` would be found only
  after the vocabulary was rewritten).
- ``after_pipeline_run``: :func:`run_summary` prints where the run's outputs are, the
  headline metrics with their intervals when the run scored the model, and how to open the
  evaluation report and kedro-viz.
"""

import json
import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from synthtune.config import check_parameters
from synthtune.metrics import format_accuracy

logger = logging.getLogger(__name__)


class RunHooks:
    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        check_parameters(catalog.load("parameters"))

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], run_result, pipeline, catalog) -> None:
        written = {}
        for name in sorted(pipeline.outputs() | {d for n in pipeline.nodes for d in n.outputs}):
            path = (catalog.get(name)._describe() or {}).get("filepath") if name in catalog else None
            if path:
                written[name] = Path(path)
        print(run_summary(written), flush=True)  # print: the summary is for the person at the terminal


def run_summary(written: dict[str, Path]) -> str:
    """The end-of-run screen: outputs by folder, headline scores (when the run wrote
    ``metrics``: the fine-tuned model's strict accuracy per set beside the base model's), and
    the commands that open the report and the pipeline view."""
    lines = ["", f"synthtune: run finished, {len(written)} outputs written"]
    folders: dict[Path, list[str]] = {}
    for path in written.values():
        folders.setdefault(path.parent, []).append(path.name)
    lines += [f"  {folder}/: {', '.join(sorted(names))}" for folder, names in sorted(folders.items())]
    metrics_path = written.get("metrics")
    if metrics_path is not None and metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        lines.append("Strict accuracy, 95% Wilson interval (fine-tuned | base zero-shot):")
        for part, score in metrics.get("tuned", {}).items():
            base = metrics.get("base", {}).get(part, {}).get("strict")
            lines.append(
                f"  {part:<24} {format_accuracy(score['strict'])}" + (f" | {format_accuracy(base)}" if base else "")
            )
    report = written.get("evaluation_report")
    if report is not None:
        lines.append(f"Report:   open {report} in a browser")
    lines.append("Pipeline: kedro viz run   (the flowchart, with previews of every dataset)")
    return "\n".join(lines)
