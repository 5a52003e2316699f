"""Experiments composed with Hydra and run as Kedro sessions: composition, checks, and the
Kedro session a DVC stage or a Hydra job runs (Hydra's command line and sweep comparisons
are in :mod:`synthtune.sweeps`).

``conf/experiments`` is a Hydra config directory. A composed config names a Kedro
environment (``kedro_env``, chosen by the ``budget`` group) and holds overrides, one
section per pipeline, that are deep-merged over that environment's parameters as Kedro
runtime parameters; it never repeats a default of ``conf/base``.

Two ways to run one composition:

- ``synthtune-exp [-m] <overrides>`` (:func:`synthtune.sweeps.main`, ``@hydra.main``): each job is a
  Kedro session over the ``full`` pipeline whose data lives in its own folder
  (``outputs/<time>/data`` or ``multirun/<time>/<job>/data``), with its resolved config
  (``config.yaml``) saved beside its metrics (``metrics.json``). Multirun sweeps, sweeps a
  preset declares (``hydra.sweeper.params``) and launcher plugins
  (``hydra/launcher=joblib``) work as Hydra gives them. A preset may add
  :class:`synthtune.sweeps.CompareJobs` as a callback to compare its jobs when the sweep ends.
- ``dvc exp run -S <overrides>``: DVC composes the same directory into ``params.yaml``
  (``.dvc/config``: ``hydra.enabled``), and each stage of ``dvc.yaml`` runs
  ``synthtune-stage <pipeline>`` (:func:`stage`), which reads it. Stages therefore read only
  what DVC tracks: ``conf/base``, the named environment and ``params.yaml``, never
  ``conf/local`` or ``KEDRO_ENV``. This module is every stage's dependency, so it holds
  only what a stage runs.

Kedro has no Hydra integration of its own (kedro-org/kedro#1303), hence this module.
"""

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

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


def kedro_parameters(
    project_path: Path | str, env: str, runtime_params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The parameters of a Kedro environment (conf/base, then conf/<env>, then
    ``runtime_params`` deep-merged), as a Kedro session merges them."""
    from kedro.config import OmegaConfigLoader

    from synthtune.settings import CONFIG_LOADER_ARGS

    args = {**CONFIG_LOADER_ARGS, "default_run_env": env}
    loader = OmegaConfigLoader(str(Path(project_path) / "conf"), env=env, runtime_params=runtime_params, **args)
    return loader["parameters"]


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
