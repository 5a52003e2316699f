"""Shared fixtures (a throw-away copy of the project, a tiny language model) and how the suite
shares the cores among pytest-xdist workers."""

import os
import shutil
import sys
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

# pytest-xdist runs one worker per core. Each worker's models, and the pipelines it starts,
# take a share of the cores (synthtune.llm.set_threads reads OMP_NUM_THREADS) instead of all
# of them each: threads oversubscribing the cores spin, and cost the suite a third more CPU.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // _WORKERS)))


def pytest_collection_modifyitems(items):
    """Modules marked ``duration(seconds=...)`` run first, longest first, the rest after in
    collection order: pytest-xdist (``--dist loadfile --no-loadscope-reorder``) then hands out
    the long files before the short ones and its workers finish together."""

    def cost(item) -> float:
        marker = item.get_closest_marker("duration")
        return -marker.kwargs["seconds"] if marker else 0.0

    items.sort(key=cost)  # stable: tests keep their order within a module


def copy_project(destination: Path) -> Path:
    """Copy what a Kedro run needs (config, sources, metadata, DVC files, empty data layers)."""
    for name in ("pyproject.toml", "dvc.yaml", "params.yaml", ".telemetry", ".dvcignore"):
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
    # the external benchmark DVC imports (data/01_raw/cute.dvc), and its import record
    shutil.copytree(PROJECT_ROOT / "data/01_raw/cute", destination / "data/01_raw/cute")
    shutil.copy2(PROJECT_ROOT / "data/01_raw/cute.dvc", destination / "data/01_raw/cute.dvc")
    return destination


def new_project(parent: Path) -> Path:
    """A fresh copy of the project at ``parent/project``, with ``parent/shared`` beside it
    as the real project has (DVC imports the external benchmark from ``../shared``)."""
    (parent / "shared").symlink_to(PROJECT_ROOT.parent / "shared")
    (parent / "project").mkdir()
    return copy_project(parent / "project")


def scripts_env() -> dict[str, str]:
    """The environment with this interpreter's scripts (synthtune-exp, dvc, kedro) first."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HYDRA_FULL_ERROR": "1"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh copy of the project in a temporary directory."""
    return new_project(tmp_path)


@pytest.fixture(scope="session")
def tiny_lm():
    """A randomly initialised 2-layer model with SmolLM2's architecture and tokenizer."""
    from kedro.config import OmegaConfigLoader

    from synthtune.pipelines.training.nodes import prepare_base_model

    loader = OmegaConfigLoader(
        str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="smoke", merge_strategy={"parameters": "soft"}
    )
    return prepare_base_model(loader["parameters"]["training"]["base_model"])


def make_rows(texts, task_name: str = "letter_count", fmt: str = "direct", **fields):
    """Task rows for literal texts, asked with the task's first template (as generation does)."""
    import numpy as np
    import pandas as pd

    from synthtune.pipelines.generation.nodes import ask
    from synthtune.tasks import get_task

    task = get_task(task_name)
    rows = pd.DataFrame({"text": list(texts), **fields})
    rows = rows.assign(label=task.label(rows))
    asked = ask(task, rows, task.train_templates[:1], fmt, np.random.default_rng(0), "train")
    return asked.assign(label_noisy=False)


# Training parameters for tests on the tiny model (the fields parameters_training.yml has).
TRAIN_PARAMS = {
    "seed": 0,
    "method": "lora",
    "device": "cpu",
    "dtype": "float32",
    "system_prompt": "",
    "lora": {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": "all-linear"},
    "batch_size": 3,
    "gradient_accumulation_steps": 1,
    "max_batch_tokens": None,
    "max_steps": 4,
    "max_minutes": None,
    "learning_rate": 1e-3,
    "warmup_steps": 1,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "length_bucketing": True,
    "answer_only_head": True,
    "fused_optimizer": True,
    "validation": {
        "fraction": 0.0,
        "max_rows": 0,
        "every_steps": 0,
        "early_stopping_patience": 0,
        "min_delta": 0.0,
        "restore_best": True,
    },
    "checkpoint": {"dir": "checkpoints-unused", "every_steps": 0, "keep_last": 1, "resume": False},
}
