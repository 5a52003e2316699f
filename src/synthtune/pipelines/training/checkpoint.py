"""Training checkpoints: everything a stopped run needs to go on as if it never stopped.

A checkpoint is a directory ``<dir>/step-NNNNNN-<fingerprint prefix>`` holding the
trainable weights (safetensors), the optimizer, scheduler and RNG states
(``trainer_state.pt``, tensors and plain values only, loaded with ``weights_only=True``)
and ``state.json`` (step, log, early-stopping state, and the fingerprint of the run it
belongs to). It is written to a temporary sibling and renamed into place, so a kill
mid-save leaves the previous one intact.

A directory may hold the checkpoints of several runs (say, one stopped with other
parameters). Each run resumes from, prunes and removes only its own, those whose
``state.json`` carries its fingerprint; the others are left alone with a warning.
Checkpoints exist only while a run is unfinished: a run that reaches ``max_steps`` or stops
early removes its own, its result being the node's output.
"""

import hashlib
import importlib
import json
import logging
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from synthtune.datasets._atomic import atomic_directory

logger = logging.getLogger(__name__)

# Parameters that change how long or how often, not what is learned: a run resumed with a
# different value of these still continues the same training. ``max_steps`` is not one of
# them: the learning-rate schedule is planned over it.
_NOT_FINGERPRINTED = {"checkpoint", "max_minutes"}

# The code that decides what a step computes, and which step's weights are kept (validation
# scores with inference.py): a checkpoint made by other code is not resumed.
_TRAINING_CODE = [Path(__file__).with_name(n) for n in ("batching.py", "loop.py", "checkpoint.py")] + [
    Path(__file__).parents[2] / n for n in ("llm.py", "inference.py")
]
# Libraries whose kernels, initialisation or defaults shape the trajectory.
_LIBRARIES = ("torch", "transformers", "peft")

_TRAINER_STATE = "trainer_state.pt"


def library_versions() -> dict[str, str | None]:
    """The installed version of each library in ``_LIBRARIES`` (None where absent)."""
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            versions[name] = None
    return versions


def hash_state_dict(digest, state_dict: dict[str, torch.Tensor]) -> None:
    """Feed every tensor's name, dtype, shape and bytes to ``digest``.

    The bytes are streamed from the tensors' own memory (no copy for contiguous CPU
    tensors): the 135M-parameter base model's ~650 MB hash in well under a second with
    SHA-256 on a CPU with SHA extensions.
    """
    for name, tensor in sorted(state_dict.items()):
        tensor = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy())


def run_fingerprint(params: dict[str, Any], train_rows: pd.DataFrame, validation_rows: pd.DataFrame, model) -> str:
    """A hash of what determines the training trajectory: parameters (``max_steps`` among
    them), data, every tensor of the base weights, the training code and the versions of
    torch, transformers and peft.

    ``max_minutes`` and ``checkpoint.*`` are left out: a run stopped by its time budget
    goes on with a larger one, and checkpointing more or less often changes nothing learned.
    """
    digest = hashlib.sha256(json.dumps(library_versions(), sort_keys=True).encode())
    for source in _TRAINING_CODE:
        digest.update(source.read_bytes())
    kept = {k: v for k, v in params.items() if k not in _NOT_FINGERPRINTED}
    digest.update(json.dumps(kept, sort_keys=True, default=str).encode())
    for rows in (train_rows, validation_rows):
        digest.update(pd.util.hash_pandas_object(rows[["prompt", "answer"]], index=False).to_numpy().tobytes())
    hash_state_dict(digest, model.state_dict())
    return digest.hexdigest()


def rng_state() -> dict[str, Any]:
    """The torch, numpy, Python (and CUDA) RNG states as tensors and plain values, which
    ``torch.load(weights_only=True)`` accepts."""
    legacy = np.random.get_state(legacy=False)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": legacy["bit_generator"],
            "key": torch.from_numpy(legacy["state"]["key"].astype(np.int64)),
            "pos": int(legacy["state"]["pos"]),
            "has_gauss": int(legacy["has_gauss"]),
            "gauss": float(legacy["gauss"]),
        },
        "python": random.getstate(),  # (version, tuple of ints, None): plain values already
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    saved = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": saved["bit_generator"],
            "state": {"key": saved["key"].numpy().astype(np.uint32), "pos": saved["pos"]},
            "has_gauss": saved["has_gauss"],
            "gauss": saved["gauss"],
        }
    )
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model) -> dict[str, torch.Tensor]:
    """The parameters that training changes, detached and copied to the CPU."""
    return {n: p.detach().to("cpu", copy=True).contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_weights(model, weights: dict[str, torch.Tensor]) -> None:
    """Copy ``weights`` (from :func:`trainable_state`) into the model's parameters, in place."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)


def checkpoints(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every complete checkpoint in ``directory`` with its ``state.json``, by step.

    A directory without a readable ``state.json`` (a foreign or damaged one) is skipped:
    it belongs to no run this code can resume, and is not this code's to delete.
    """
    found = []
    for path in Path(directory).glob("step-*"):
        try:
            state = json.loads((path / "state.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(state, dict) and isinstance(state.get("step"), int):
            found.append((path, state))
    return sorted(found, key=lambda item: (item[1]["step"], item[0].name))


def checkpoints_by_run(directory: Path, fingerprint: str) -> tuple[list[tuple[Path, dict[str, Any]]], list[Path]]:
    """From one scan: this run's checkpoints (same fingerprint) with their ``state.json``,
    oldest step first, and the paths of other runs' checkpoints."""
    own, others = [], []
    for path, state in checkpoints(directory):
        if state.get("fingerprint") == fingerprint:
            own.append((path, state))
        else:
            others.append(path)
    return own, others


def _warn_of_other_runs(directory: Path, others: list[Path], doing: str) -> None:
    if others:
        logger.warning(
            "Checkpoints of a run with other parameters, data, base model, libraries or training code in %s: %s; %s",
            directory,
            ", ".join(path.name for path in others),
            doing,
        )


def save_checkpoint(
    directory: Path, step: int, model, optimizer, scheduler, state: dict[str, Any], keep_last: int = 1
) -> Path:
    """Write the checkpoint of ``step`` atomically, then drop this run's older ones.

    ``state`` must hold the run's ``fingerprint``: the newest ``keep_last`` checkpoints with
    that fingerprint are kept, the one just written always; other runs' are not touched.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    fingerprint = state["fingerprint"]
    # The fingerprint in the name keeps two runs that checkpoint the same step from
    # replacing each other's; state.json, not the name, says whose a checkpoint is.
    target = directory / f"step-{step:06d}-{fingerprint[:12]}"
    with atomic_directory(target) as staging:
        save_file(trainable_state(model), staging / "trainable.safetensors")
        if state.get("best_weights") is not None:
            save_file(state["best_weights"], staging / "best.safetensors")
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()},
            staging / _TRAINER_STATE,
        )
        meta = {k: v for k, v in state.items() if k != "best_weights"}
        (staging / "state.json").write_text(json.dumps({**meta, "step": step}, indent=1, default=float))
    older = [path for path, _ in checkpoints_by_run(directory, fingerprint)[0] if path != target]
    for old in older[: max(len(older) - (keep_last - 1), 0)]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def remove_checkpoints(directory: Path, fingerprint: str) -> None:
    """Delete this run's checkpoints in ``directory`` (and the directory, once empty)."""
    directory = Path(directory)
    own, others = checkpoints_by_run(directory, fingerprint)
    for path, _ in own:
        shutil.rmtree(path, ignore_errors=True)
    _warn_of_other_runs(directory, others, "left in place")
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()


def latest_checkpoint(directory: Path, fingerprint: str) -> Path | None:
    """The checkpoint of the newest step with this fingerprint, or None."""
    own, _ = checkpoints_by_run(directory, fingerprint)
    return own[-1][0] if own else None


def load_latest(directory: Path, fingerprint: str) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint of this same run and its ``state.json``, or None.

    Other runs' checkpoints are never resumed; a warning names them.
    """
    own, others = checkpoints_by_run(directory, fingerprint)
    _warn_of_other_runs(Path(directory), others, "not resuming from them")
    return own[-1] if own else None


def restore(path: Path, model, optimizer, scheduler) -> dict[str, torch.Tensor] | None:
    """Load weights, optimizer, scheduler and RNG from ``path``; return the best weights kept there.

    Raises:
        ValueError: ``trainer_state.pt`` holds anything but tensors and plain values (a
            planted pickle could run code when loaded) or is damaged; it is not executed.
            Or a weights file is missing, truncated or damaged. Nothing is loaded into the
            model, optimizer or schedule before every file has been read whole.
    """
    trainer_file = Path(path) / _TRAINER_STATE
    try:
        trainer = torch.load(trainer_file, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        raise ValueError(
            f"{trainer_file}: refusing to load it; it holds objects other than tensors and plain values, or is "
            f"damaged, so it was not written by this code. Delete {path} to train without it."
        ) from error
    weights = _read_weights(Path(path) / "trainable.safetensors")
    best = Path(path) / "best.safetensors"
    best_weights = _read_weights(best) if best.is_file() else None
    load_weights(model, weights)
    optimizer.load_state_dict(trainer["optimizer"])
    scheduler.load_state_dict(trainer["scheduler"])
    set_rng_state(trainer["rng"])
    return best_weights


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's safetensors file, read whole, or an error naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError) as error:
        raise ValueError(
            f"{path}: the checkpoint is damaged or truncated ({type(error).__name__}: {error}). "
            f"Delete {path.parent} to train without it."
        ) from error
