"""Shared fixtures: a throw-away copy of the project and a tiny language model."""

import os
import shutil
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Offline and quiet, as in CI; set before anything imports kedro, transformers or GX.
for key, value in {
    "KEDRO_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "False",
    "MPLBACKEND": "Agg",
}.items():
    os.environ.setdefault(key, value)


def copy_project(destination: Path) -> Path:
    """Copy what a Kedro run needs (config, sources, metadata, DVC files, empty data layers)."""
    for name in ("pyproject.toml", "dvc.yaml", ".telemetry", ".dvcignore"):
        if (PROJECT_ROOT / name).exists():
            shutil.copy2(PROJECT_ROOT / name, destination / name)
    shutil.copytree(
        PROJECT_ROOT / "src", destination / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    shutil.copytree(PROJECT_ROOT / "conf", destination / "conf", ignore=shutil.ignore_patterns("local"))
    (destination / "conf" / "local").mkdir()
    for layer in (PROJECT_ROOT / "data").iterdir():
        if layer.is_dir():
            (destination / "data" / layer.name).mkdir(parents=True)
    return destination


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh copy of the project in a temporary directory."""
    return copy_project(tmp_path)


@pytest.fixture(scope="session")
def tiny_lm():
    """A randomly initialised 2-layer model with SmolLM2's architecture and tokenizer."""
    from kedro.config import OmegaConfigLoader

    from synthtune.pipelines.training.nodes import prepare_base_model

    loader = OmegaConfigLoader(
        str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="smoke", merge_strategy={"parameters": "soft"}
    )
    return prepare_base_model(loader["parameters"]["training"]["base_model"])
