"""Hydra's command line over ``conf/experiments`` (``synthtune-exp``) and the comparison of a
sweep's jobs.

Each job is one Kedro session over the ``full`` pipeline (:func:`synthtune.experiments.kedro_run`)
with its data in the job's own folder and its resolved config saved beside its metrics. A
preset adds :class:`CompareJobs` under ``hydra.callbacks``: when the sweep ends it compares
the jobs (accuracy with Wilson intervals per set, worst slices per job) as a CSV, a Markdown
table and a plot. Kept apart from :mod:`synthtune.experiments` so that DVC stages, which
depend on that module, are not invalidated by changes to sweeps and reports.
"""

import json
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback

from synthtune.experiments import CONFIG_DIR, kedro_run


def job_summary(job_dir: Path) -> dict[str, Any]:
    """A finished job's overrides, resolved config, metrics and slice table (as Hydra and
    :func:`run_job` saved them)."""
    return {
        "overrides": yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or [],
        "config": job_dir / "config.yaml",
        "metrics": json.loads((job_dir / "metrics.json").read_text()),
        "slices": job_dir / "data" / "08_reporting" / "evaluation_slices.csv",
    }


def run_job(cfg: dict[str, Any], job_dir: Path, project_path: Path) -> dict[str, Any]:
    """One Hydra job: the ``full`` pipeline with its data in ``job_dir/data``; its resolved
    config and metrics are saved beside each other in ``job_dir``."""
    from synthtune.datasets import AtomicJSONDataset, AtomicTextDataset

    job_dir.mkdir(parents=True, exist_ok=True)
    AtomicTextDataset(filepath=str(job_dir / "config.yaml")).save(yaml.safe_dump(cfg, sort_keys=False))
    data_dir = job_dir / "data"
    kedro_run(cfg, ["full"], project_path, data_dir)
    metrics = AtomicJSONDataset(filepath=str(data_dir / "08_reporting" / "metrics.json")).load()
    AtomicJSONDataset(filepath=str(job_dir / "metrics.json"), save_args={"indent": 2}).save(metrics)
    return metrics


def main() -> None:
    """``synthtune-exp``: Hydra's command line over conf/experiments (see the module doc)."""
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig, OmegaConf

    project_path = Path.cwd()
    if not (project_path / CONFIG_DIR / "config.yaml").is_file():
        sys.exit(f"synthtune-exp: run it from the project root ({CONFIG_DIR}/config.yaml not found in {project_path})")

    @hydra.main(config_path=str((project_path / CONFIG_DIR).resolve()), config_name="config", version_base="1.3")
    def job(cfg: DictConfig) -> float:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        metrics = run_job(resolved, Path(HydraConfig.get().runtime.output_dir), project_path)
        return metrics["tuned"]["test"]["strict"]["accuracy"]  # what a sweeper would optimise

    job()


class CompareJobs(Callback):
    """A Hydra callback: when a sweep ends, compare its jobs
    (:func:`synthtune.comparison.compare`) and write ``comparison.csv``, ``comparison.md``,
    ``comparison.png`` and ``worst_slices.csv`` into ``report_dir`` (default: the sweep folder), with each job's resolved config and metrics
    under ``jobs/<label>/``. Presets add it under ``hydra.callbacks``; the case study's DVC
    stage points ``report_dir`` at a tracked folder."""

    def __init__(self, by: str = "profile", report_dir: str | None = None) -> None:
        self.by = by
        self.report_dir = report_dir

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = sorted(p.parent for p in sweep_dir.glob("*/metrics.json"))
        if not jobs:
            return
        write_comparison([job_summary(j) for j in jobs], Path(self.report_dir or sweep_dir), self.by)


def job_label(summary: dict[str, Any], by: str) -> str:
    """A job's name in a comparison: the value of its ``by`` override, else all overrides."""
    for override in summary["overrides"]:
        key, _, value = override.partition("=")
        if key.lstrip("+~") == by:
            return value
    return ",".join(summary["overrides"]) or "defaults"


def write_comparison(summaries: list[dict[str, Any]], out_dir: Path, by: str) -> None:
    """The comparison of a sweep's jobs, and each job's config and metrics, into ``out_dir``."""
    import pandas as pd

    from synthtune.comparison import compare, comparison_markdown, plot_comparison
    from synthtune.datasets import AtomicCSVDataset, AtomicJSONDataset, AtomicMatplotlibDataset, AtomicTextDataset

    jobs = {job_label(s, by): s for s in summaries}
    slices = {label: pd.read_csv(s["slices"]) for label, s in jobs.items() if s["slices"].is_file()}
    table, worst = compare({label: s["metrics"] for label, s in jobs.items()}, slices)
    AtomicCSVDataset(filepath=str(out_dir / "comparison.csv")).save(table)
    AtomicCSVDataset(filepath=str(out_dir / "worst_slices.csv")).save(worst)
    AtomicTextDataset(filepath=str(out_dir / "comparison.md")).save(comparison_markdown(table, worst))
    AtomicMatplotlibDataset(filepath=str(out_dir / "comparison.png"), save_args={"dpi": 110}).save(
        plot_comparison(table)
    )
    for label, summary in jobs.items():
        job = out_dir / "jobs" / label
        AtomicJSONDataset(filepath=str(job / "metrics.json"), save_args={"indent": 2}).save(summary["metrics"])
        if summary["config"].is_file():
            AtomicTextDataset(filepath=str(job / "config.yaml")).save(summary["config"].read_text())


if __name__ == "__main__":  # pragma: no cover
    main()
