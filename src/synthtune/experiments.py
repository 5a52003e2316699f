"""Experiments composed with Hydra and run as Kedro sessions, directly or as DVC stages.

``conf/experiments`` is a Hydra config directory. A composed config names a Kedro
environment (``kedro_env``, chosen by the ``budget`` group) and holds overrides, one
section per pipeline, that are deep-merged over that environment's parameters as Kedro
runtime parameters; it never repeats a default of ``conf/base``.

Two ways to run one composition:

- ``synthtune-exp [-m] <overrides>`` (:func:`main`, built on ``@hydra.main``): each job is a
  Kedro session over the ``full`` pipeline whose data lives in its own folder
  (``outputs/<time>/data`` or ``multirun/<time>/<job>/data``), with its resolved config
  (``config.yaml``) saved beside its metrics (``metrics.json``). Multirun sweeps, sweeps a
  preset declares (``hydra.sweeper.params``) and launcher plugins
  (``hydra/launcher=joblib``) work as Hydra gives them. A preset may add
  :class:`CompareJobs` as a callback to compare its jobs when the sweep ends.
- ``dvc exp run -S <overrides>``: DVC composes the same directory into ``params.yaml``
  (``.dvc/config``: ``hydra.enabled``), and each stage of ``dvc.yaml`` runs
  ``synthtune-stage <pipeline>`` (:func:`stage`), which reads it. Stages therefore read only
  what DVC tracks: ``conf/base``, the named environment and ``params.yaml``, never
  ``conf/local`` or ``KEDRO_ENV``.

Kedro has no Hydra integration of its own (kedro-org/kedro#1303), hence this module.
"""

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback

CONFIG_DIR = Path("conf") / "experiments"
SECTIONS = ("generation", "curation", "validation", "training", "evaluation")
PARAMS_FILE = "params.yaml"


def compose(overrides: Iterable[str] = (), project_path: Path | str = ".") -> dict[str, Any]:
    """The config ``overrides`` compose (Hydra's compose API), as plain data.

    Raises:
        ValueError: an unknown group option or key, with Hydra's message (it names the key,
            the value and the options available); a sweep (``a=x,y``), which only
            ``synthtune-exp -m`` or ``dvc exp run --queue`` can expand.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    config_dir = (Path(project_path) / CONFIG_DIR).resolve()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise ValueError(f"{config_dir}: {error}") from error
    return OmegaConf.to_container(cfg, resolve=True)


def check_composed(cfg: dict[str, Any], project_path: Path | str = ".") -> None:
    """Refuse a composed config Kedro cannot run, naming the key and what is allowed."""
    unknown = sorted(set(cfg) - {"kedro_env", *SECTIONS})
    if unknown:
        raise ValueError(
            f"experiment config: unknown top-level keys {unknown}; allowed: kedro_env, {', '.join(SECTIONS)}"
        )
    env = cfg.get("kedro_env")
    conf = Path(project_path) / "conf"
    envs = sorted(p.name for p in conf.iterdir() if p.is_dir() and p.name not in ("experiments", "local"))
    if env not in envs:
        raise ValueError(f"experiment config: kedro_env={env!r} is not an environment in {conf}; allowed: {envs}")
    for section in SECTIONS:
        if not isinstance(cfg.get(section, {}), dict):
            raise ValueError(f"experiment config: {section} must be a mapping of parameters, got {cfg[section]!r}")
    params = kedro_parameters(project_path, env)
    for section in SECTIONS:
        check_keys(cfg.get(section) or {}, params.get(section), section)


def kedro_parameters(project_path: Path | str, env: str) -> dict[str, Any]:
    """The parameters of a Kedro environment (conf/base, then conf/<env>), as Kedro merges them."""
    from kedro.config import OmegaConfigLoader

    from synthtune.settings import CONFIG_LOADER_ARGS

    args = {**CONFIG_LOADER_ARGS, "default_run_env": env}
    return OmegaConfigLoader(str(Path(project_path) / "conf"), env=env, **args)["parameters"]


def check_keys(overrides: dict[str, Any], defaults: Any, path: str) -> None:
    """Refuse an override of a parameter Kedro does not have (a typo would otherwise be
    merged in and ignored). Below a parameter whose default is empty or null (a free-form
    block such as ``training.curriculum``) any key goes."""
    if not isinstance(defaults, dict) or not defaults:
        return
    for key, value in overrides.items():
        if key not in defaults:
            raise ValueError(
                f"experiment config: unknown parameter {path}.{key} (= {value!r}); {path} has: {', '.join(sorted(defaults))}"
            )
        if isinstance(value, dict):
            check_keys(value, defaults[key], f"{path}.{key}")


def runtime_params(cfg: dict[str, Any], data_dir: Path | str | None = None) -> dict[str, Any]:
    """The Kedro runtime parameters of a composed config: its non-empty sections, and the
    data folder (``data_dir``, read by conf/base/catalog.yml) when it is not ``data``."""
    params = {section: cfg[section] for section in SECTIONS if cfg.get(section)}
    if data_dir is not None:
        params["data_dir"] = str(data_dir)
    return params


def kedro_run(
    cfg: dict[str, Any],
    pipelines: list[str],
    project_path: Path | str = ".",
    data_dir: Path | str | None = None,
) -> None:
    """Check the composed ``cfg`` (:func:`check_composed`), then run ``pipelines`` in one Kedro
    session configured by it."""
    project_path = Path(project_path).resolve()
    check_composed(cfg, project_path)
    run_session(cfg, pipelines, project_path, data_dir)


def run_session(
    cfg: dict[str, Any], pipelines: list[str], project_path: Path, data_dir: Path | str | None = None
) -> None:
    """Run ``pipelines`` in one Kedro session configured by an already checked ``cfg``."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    if data_dir is not None:
        make_data_layers(project_path / "data", Path(data_dir))
    bootstrap_project(project_path)
    with KedroSession.create(
        project_path=project_path, env=cfg["kedro_env"], runtime_params=runtime_params(cfg, data_dir)
    ) as session:
        session.run(pipeline_names=pipelines)


def make_data_layers(template: Path, data_dir: Path) -> None:
    """Create ``data_dir`` with the project's data layers (Kedro's numbered folders), and the
    external benchmark (imported by DVC into the project's data) linked in."""
    for layer in sorted(p for p in template.iterdir() if p.is_dir()):
        (data_dir / layer.name).mkdir(parents=True, exist_ok=True)
    external = template / "01_raw" / "cute"
    link = data_dir / "01_raw" / "cute"
    if external.exists() and not link.exists():
        link.symlink_to(external.resolve(), target_is_directory=True)


def stage(argv: list[str] | None = None) -> None:
    """``synthtune-stage <pipeline> [--params params.yaml]``: one DVC stage.

    Runs the pipeline with the config DVC composed into ``params.yaml`` (``dvc exp run``
    writes it; it is committed with the default composition).
    """
    parser = argparse.ArgumentParser(prog="synthtune-stage", description=stage.__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", help="a pipeline of the project, e.g. generation")
    parser.add_argument("--params", default=PARAMS_FILE, help="the composed config (default: params.yaml)")
    args = parser.parse_args(argv)
    path = Path(args.params)
    if not path.is_file():
        sys.exit(f"synthtune-stage: {path} not found; compose it with `dvc exp run` or `synthtune-exp --cfg job`")
    cfg = yaml.safe_load(path.read_text()) or {}
    try:
        check_composed(cfg)
    except ValueError as error:
        sys.exit(f"synthtune-stage: {path}: {error}")
    run_session(cfg, [args.pipeline], Path.cwd().resolve())


def job_summary(job_dir: Path) -> dict[str, Any]:
    """A finished job's overrides, metrics and slice table (as :func:`main` saved them)."""
    return {
        "overrides": yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or [],
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
    """A Hydra callback: when a sweep ends, compare its jobs (see :func:`compare`) and write
    ``comparison.csv``, ``comparison.md``, ``comparison.png`` and ``worst_slices.csv`` into the
    sweep folder. Presets add it under ``hydra.callbacks``."""

    def __init__(self, by: str = "profile") -> None:
        self.by = by

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = sorted(p.parent for p in sweep_dir.glob("*/metrics.json"))
        if not jobs:
            return
        write_comparison([job_summary(j) for j in jobs], sweep_dir, self.by)


def job_label(summary: dict[str, Any], by: str) -> str:
    """A job's name in a comparison: the value of its ``by`` override, else all overrides."""
    for override in summary["overrides"]:
        key, _, value = override.partition("=")
        if key.lstrip("+~") == by:
            return value
    return ",".join(summary["overrides"]) or "defaults"


def write_comparison(summaries: list[dict[str, Any]], out_dir: Path, by: str) -> None:
    import pandas as pd

    from synthtune.comparison import compare, comparison_markdown, plot_comparison
    from synthtune.datasets import AtomicCSVDataset, AtomicMatplotlibDataset, AtomicTextDataset

    labels = [job_label(s, by) for s in summaries]
    slices = {
        label: pd.read_csv(s["slices"]) for label, s in zip(labels, summaries, strict=True) if s["slices"].is_file()
    }
    table, worst = compare({label: s["metrics"] for label, s in zip(labels, summaries, strict=True)}, slices)
    AtomicCSVDataset(filepath=str(out_dir / "comparison.csv")).save(table)
    AtomicCSVDataset(filepath=str(out_dir / "worst_slices.csv")).save(worst)
    AtomicTextDataset(filepath=str(out_dir / "comparison.md")).save(comparison_markdown(table, worst))
    AtomicMatplotlibDataset(filepath=str(out_dir / "comparison.png"), save_args={"dpi": 110}).save(
        plot_comparison(table)
    )


if __name__ == "__main__":  # pragma: no cover
    main()
