"""Training checkpoints: everything a killed run needs to go on as if it never stopped.

Checkpoints exist only while a run is unfinished: a finished run removes them, its result
being the node's output. A checkpoint is a directory ``<dir>/step-NNNNNN`` holding the trainable weights
(safetensors), the optimizer, scheduler and RNG states, and ``state.json`` (step, log,
early-stopping state, and the fingerprint of the run it belongs to). It is written to a
temporary sibling and renamed into place, so a kill mid-save leaves the previous one intact.
"""

import hashlib
import json
import logging
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
# different value of these still continues the same training.
_NOT_FINGERPRINTED = {"checkpoint", "max_minutes", "max_steps"}


# The code that decides what a step computes: a checkpoint made by other code is not resumed.
_TRAINING_CODE = [Path(__file__).with_name(n) for n in ("batching.py", "loop.py", "checkpoint.py")] + [
    Path(__file__).parents[2] / "llm.py"
]


def run_fingerprint(params: dict[str, Any], train_rows: pd.DataFrame, validation_rows: pd.DataFrame, model) -> str:
    """A hash of what determines the training trajectory: parameters, data, base weights, the
    training code and the torch version.

    ``max_steps`` is left out on purpose, but it shapes the learning-rate schedule, so the
    scheduler state restored from a checkpoint keeps the schedule it was made with. Resuming
    with a larger ``max_steps`` is refused by :func:`load_latest` for that reason.
    """
    digest = hashlib.sha256(torch.__version__.encode())
    for source in _TRAINING_CODE:
        digest.update(source.read_bytes())
    kept = {k: v for k, v in params.items() if k not in _NOT_FINGERPRINTED}
    digest.update(json.dumps(kept, sort_keys=True, default=str).encode())
    for rows in (train_rows, validation_rows):
        digest.update(pd.util.hash_pandas_object(rows[["prompt", "answer"]], index=False).to_numpy().tobytes())
    for name, tensor in sorted(model.state_dict().items())[:4]:  # cheap proxy for the base weights
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
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


def save_checkpoint(
    directory: Path, step: int, model, optimizer, scheduler, state: dict[str, Any], keep_last: int = 1
) -> Path:
    """Write the checkpoint of ``step`` atomically, then drop all but the newest ``keep_last``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    target = directory / f"step-{step:06d}"
    with atomic_directory(target) as staging:
        save_file(trainable_state(model), staging / "trainable.safetensors")
        if state.get("best_weights") is not None:
            save_file(state["best_weights"], staging / "best.safetensors")
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()},
            staging / "trainer_state.pt",
        )
        meta = {k: v for k, v in state.items() if k != "best_weights"}
        (staging / "state.json").write_text(json.dumps({"step": step, **meta}, indent=1, default=float))
    for old in sorted(directory.glob("step-*"))[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def remove_checkpoints(directory: Path) -> None:
    """Delete every checkpoint in ``directory`` (and the directory, once empty)."""
    directory = Path(directory)
    for path in directory.glob("step-*"):
        shutil.rmtree(path, ignore_errors=True)
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()


def latest_checkpoint(directory: Path) -> Path | None:
    complete = [p for p in sorted(Path(directory).glob("step-*")) if (p / "state.json").is_file()]
    return complete[-1] if complete else None


def load_latest(directory: Path, fingerprint: str, max_steps: int) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint of this same run, or None (with the reason logged)."""
    path = latest_checkpoint(directory)
    if path is None:
        return None
    state = json.loads((path / "state.json").read_text())
    if state.get("fingerprint") != fingerprint:
        logger.warning("Not resuming from %s: it belongs to a run with other parameters, data or base model", path)
        return None
    if state.get("max_steps") != max_steps:
        logger.warning(
            "Not resuming from %s: it was planned for max_steps=%s, this run for %s (the schedule would differ)",
            path,
            state.get("max_steps"),
            max_steps,
        )
        return None
    return path, state


def restore(path: Path, model, optimizer, scheduler) -> dict[str, torch.Tensor] | None:
    """Load weights, optimizer, scheduler and RNG from ``path``; return the best weights kept there."""
    from safetensors.torch import load_file

    load_weights(model, load_file(path / "trainable.safetensors"))
    trainer = torch.load(path / "trainer_state.pt", weights_only=False)
    optimizer.load_state_dict(trainer["optimizer"])
    scheduler.load_state_dict(trainer["scheduler"])
    set_rng_state(trainer["rng"])
    best = path / "best.safetensors"
    return load_file(best) if best.is_file() else None
