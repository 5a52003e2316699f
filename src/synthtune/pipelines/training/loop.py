"""The fine-tuning loop: LoRA (peft) or full fine-tuning of a causal LM on answer tokens.

The loop is written out (nanoGPT style) rather than delegated to the Hugging Face
``Trainer`` because the Trainer runs the 49k-wide output head over every position, a fifth
of the FLOPs on these short rows, and pads batches it does not group by length; see
``benchmarks/train_throughput.py`` for what each of these costs. Everything else a trainer
is expected to do is here: gradient accumulation, warm-up + cosine schedule, clipping,
budgets in steps or minutes, validation loss with early stopping, checkpoints that resume
bit for bit, and a clean stop on Ctrl-C.
"""

import logging
import math
import re
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from synthtune.inference import score_answers
from synthtune.llm import collate, encode_rows, pick_device, pick_dtype, set_threads, split_by_tokens, to_device
from synthtune.perf import measure_matmul_peak, model_shape, training_flops

from .batching import answer_loss, answer_tokens, batch_order
from .checkpoint import (
    load_latest,
    load_weights,
    remove_checkpoints,
    restore,
    run_fingerprint,
    save_checkpoint,
    trainable_state,
)

logger = logging.getLogger(__name__)

METHODS = ("lora", "full")
# Activations kept for the backward pass, in values per token per layer (inputs of the
# seven projections, the MLP intermediates, norms and residuals) — a deliberately rough
# upper estimate, used only to refuse batches that cannot fit before the first step.
_ACTIVATIONS_PER_TOKEN_LAYER = 16


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the checkpoint of the last finished step was saved."""


def check_training_params(params: dict[str, Any]) -> None:
    """Fail before any work on values the loop cannot use, naming the parameter."""
    if params["method"] not in METHODS:
        raise ValueError(f"training.method must be one of {METHODS}, got {params['method']!r}")
    for key in ("batch_size", "gradient_accumulation_steps", "max_steps"):
        if not isinstance(params[key], int) or params[key] < 1:
            raise ValueError(f"training.{key} must be an integer >= 1, got {params[key]!r}")
    tokens = params["max_batch_tokens"]
    if tokens is not None and (not isinstance(tokens, int) or tokens < 1):
        raise ValueError(f"training.max_batch_tokens must be null or an integer >= 1, got {tokens!r}")
    if params["max_minutes"] is not None and params["max_minutes"] <= 0:
        raise ValueError(f"training.max_minutes must be null or > 0, got {params['max_minutes']!r}")
    for key in ("every_steps", "early_stopping_patience"):
        if params["validation"][key] < 0:
            raise ValueError(f"training.validation.{key} must be >= 0, got {params['validation'][key]!r}")
    if params["checkpoint"]["every_steps"] < 0:
        raise ValueError(f"training.checkpoint.every_steps must be >= 0, got {params['checkpoint']['every_steps']!r}")


def check_target_modules(model, target_modules: str | list[str]) -> None:
    """Each named target module must match some module of the base model.

    peft itself only complains when *none* matches, so a typo in one name of a list would
    silently train fewer layers than asked for.
    """
    if target_modules == "all-linear":
        return
    names = [name for name, _ in model.named_modules()]
    if isinstance(target_modules, str):  # peft treats a string as a full-match regex
        if not any(re.fullmatch(target_modules, n) for n in names):
            raise ValueError(f"training.lora.target_modules={target_modules!r} matches no module of the base model")
        return
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
    missing = [t for t in target_modules if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise ValueError(
            f"training.lora.target_modules: {missing} match no module of the base model; its linear layers are {linear}"
        )


def prepare_model(base_model, params: dict[str, Any], device: torch.device, dtype: torch.dtype):
    """The model to train: the base with a fresh LoRA adapter, or the whole base (``full``)."""
    model = base_model.model.to(device=device, dtype=dtype)
    if params["method"] == "full":
        return model.requires_grad_(True)
    from peft import LoraConfig, get_peft_model

    check_target_modules(model, params["lora"]["target_modules"])
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **params["lora"]))
    # peft would record the base model's absolute load path (filled in at save time when
    # empty), making the adapter's bytes depend on the machine. Name the catalog entry
    # that pairs adapter and base model instead.
    model.peft_config["default"].base_model_name_or_path = "base_model"
    # peft keeps the matched module names as a set, whose order (and so the saved JSON)
    # changes with Python's hash seed; a sorted list saves the same bytes every run.
    model.peft_config["default"].target_modules = sorted(model.peft_config["default"].target_modules)
    return model


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from /proc/meminfo (Linux), or None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_batch_fits(model, batch: dict[str, torch.Tensor], params: dict[str, Any], dtype: torch.dtype) -> None:
    """Refuse, before the first step, the largest micro-batch if it cannot fit in memory.

    On CUDA it is tried for real (forward and backward, RNG untouched); on the CPU an
    out-of-memory kill cannot be caught, so its activations are estimated instead.
    """
    rows, width = batch["input_ids"].shape
    advice = (
        f"the largest micro-batch ({rows} rows x {width} tokens) does not fit; lower training.max_batch_tokens "
        f"(now {params['max_batch_tokens']}), which splits long batches without changing the step, or "
        f"training.batch_size (now {params['batch_size']})"
    )
    device = next(model.parameters()).device
    if device.type == "cuda":
        try:
            with torch.random.fork_rng(devices=[device]):
                answer_loss(model, to_device(batch, device), reduction="sum").backward()
        except torch.cuda.OutOfMemoryError as error:
            raise ValueError(f"training.max_batch_tokens: {advice}") from error
        finally:
            model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
        return
    config = model.config
    per_token = config.num_hidden_layers * (
        _ACTIVATIONS_PER_TOKEN_LAYER * config.hidden_size + 2 * config.num_attention_heads * width
    )
    needed = rows * width * per_token * torch.finfo(dtype).bits // 8
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise ValueError(
            f"training.max_batch_tokens: {advice} (needs ~{needed / 2**30:.1f} GiB, {available / 2**30:.1f} free)"
        )


def attention_kernels(device: torch.device):
    """The attention kernels to train with: PyTorch's choice, except on CUDA.

    With left padding, the first columns of a padded row are queries whose every key is
    masked. On CUDA the fused SDPA kernels' backward turns those rows into NaN gradients:
    measured on an H100 in bf16, every LoRA gradient was NaN at step 26 of the default run
    (a batch of 16 x 64 tokens, 8 rows padded), though the forward pass was finite. The
    math kernel handles them, and for a model this small it was faster too (median 4,836
    against 2,938 tokens/s over 100 steps).
    """
    if device.type != "cuda":
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def validation_metrics(model, examples, pad_id: int, params: dict[str, Any], device: torch.device) -> dict[str, float]:
    """Mean answer-token loss and teacher-forced exact match on held-out rows."""
    loss, tokens, exact = score_answers(
        model, examples, pad_id, params["batch_size"], device, params["max_batch_tokens"]
    )
    return {"val_loss": float(loss.sum() / tokens.sum()), "val_exact_match": float(exact.mean())}


@contextmanager
def stop_on_sigint():
    """Turn the first Ctrl-C into a flag the loop reads between steps.

    The step in flight finishes, a checkpoint is saved, and the loop raises
    :class:`TrainingInterrupted`. A second Ctrl-C interrupts at once. Signals can only be
    handled on the main thread; elsewhere (a threaded runner) Ctrl-C behaves as usual.
    """
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        flag.set()
        signal.signal(signal.SIGINT, previous)
        logger.warning("Ctrl-C: finishing this step and saving a checkpoint (press again to stop at once)")

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def accumulate_gradients(model, batches: list[dict[str, Any]], device: torch.device, answer_only_head: bool) -> float:
    """Backward over micro-batches so the gradient is that of one batch holding all their rows.

    Each micro-batch's summed loss is divided by the answer tokens of *all* of them, so
    every answer token weighs the same however the rows were split.

    Returns:
        The mean answer-token loss over all the micro-batches.
    """
    n_answer = sum(answer_tokens(b) for b in batches)
    total = 0.0
    for batch in batches:
        loss = (
            answer_loss(model, to_device(batch, device), reduction="sum", answer_only_head=answer_only_head) / n_answer
        )
        loss.backward()
        total += loss.item()
    return total


def make_optimizer(trainable: list[torch.nn.Parameter], params: dict[str, Any]) -> torch.optim.Optimizer:
    """AdamW, fused into one kernel per step (PyTorch has fused AdamW for CPU and CUDA)."""
    return torch.optim.AdamW(
        trainable, lr=params["learning_rate"], weight_decay=params["weight_decay"], fused=params["fused_optimizer"]
    )


def fine_tune(
    base_model, train_rows: pd.DataFrame, validation_rows: pd.DataFrame, params: dict[str, Any]
) -> tuple[Any, pd.DataFrame]:
    """Fine-tune on the answer tokens of ``train_rows``; see ``conf/base/parameters_training.yml``.

    Returns:
        The trained model (a peft model holding the adapter, or the whole model for
        ``method: full``) and the per-step log: loss, lr, grad norm, tokens, padding share,
        tokens/s, MFU, elapsed time, and the validation loss and exact match where measured.
    """
    from transformers import get_cosine_schedule_with_warmup

    if train_rows.empty:
        raise ValueError("training: the training table (model_input_train) is empty; nothing to train on")
    check_training_params(params)
    set_threads()
    torch.manual_seed(params["seed"])
    device = pick_device(params["device"])
    dtype = pick_dtype(params["dtype"], device)
    tokenizer = base_model.tokenizer
    fingerprint = run_fingerprint(
        {**params, "device": str(device), "dtype": str(dtype)}, train_rows, validation_rows, base_model.model
    )
    model = prepare_model(base_model, params, device, dtype)
    trainable = [p for p in model.parameters() if p.requires_grad]
    full = params["method"] == "full"
    shape = model_shape(model.config, adapter_params=0 if full else sum(p.numel() for p in trainable))

    examples = encode_rows(train_rows, tokenizer, params["system_prompt"])
    held_out = encode_rows(validation_rows, tokenizer, params["system_prompt"])
    lengths = np.array([len(e["prompt"]) + len(e["answer"]) for e in examples])
    accumulation, max_steps = params["gradient_accumulation_steps"], params["max_steps"]
    batches_of_step = batch_order(
        lengths, params["batch_size"], max_steps * accumulation, params["seed"], bucketing=params["length_bucketing"]
    )
    # Each step's micro-batches: its accumulated batches, long ones split by token budget.
    micro_batches = [
        [
            part
            for idx in batches_of_step[s * accumulation : (s + 1) * accumulation]
            for part in split_by_tokens(idx, lengths, params["max_batch_tokens"])
        ]
        for s in range(max_steps)
    ]
    largest = max((idx for parts in micro_batches for idx in parts), key=lambda idx: len(idx) * lengths[idx].max())
    with attention_kernels(device):
        check_batch_fits(model, collate([examples[i] for i in largest], tokenizer.pad_token_id), params, dtype)

    optimizer = make_optimizer(trainable, params)
    scheduler = get_cosine_schedule_with_warmup(optimizer, params["warmup_steps"], max_steps)
    validation, checkpoints = params["validation"], params["checkpoint"]
    state: dict[str, Any] = {
        "fingerprint": fingerprint,
        "max_steps": max_steps,
        "log": [],
        "best_val": None,
        "best_step": None,
        "bad_evals": 0,
        "elapsed_s": 0.0,
        "stopped": None,
        "best_weights": None,
    }
    start_step = 0
    found = load_latest(checkpoints["dir"], fingerprint, max_steps) if checkpoints["resume"] else None
    if found is not None:
        path, saved = found
        state.update(saved, best_weights=restore(path, model, optimizer, scheduler))
        start_step = state.pop("step")
        logger.info("Resuming from %s (step %d of %d)", path, start_step, max_steps)
    # A GPU needs large products to reach its peak; 1024 x 1024 is already a CPU's.
    peak = measure_matmul_peak(dtype, device, 8192 if device.type == "cuda" else 1024)

    def checkpoint(step: int) -> Path:
        return save_checkpoint(checkpoints["dir"], step, model, optimizer, scheduler, state, checkpoints["keep_last"])

    model.train()
    bar = tqdm(total=max_steps, initial=start_step, desc=f"train ({params['method']})", unit="step")
    # Wall time of earlier sessions of this run (resumed from a checkpoint) plus this one.
    session_start, elapsed_before, step = time.perf_counter(), state["elapsed_s"], start_step
    with stop_on_sigint() as interrupted, attention_kernels(device):
        while state["stopped"] is None and step < max_steps:
            step += 1
            batches = [collate([examples[i] for i in idx], tokenizer.pad_token_id) for idx in micro_batches[step - 1]]
            n_answer = sum(answer_tokens(b) for b in batches)
            tick = time.perf_counter()
            loss_value = accumulate_gradients(model, batches, device, params["answer_only_head"])
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, params["max_grad_norm"])
            if not torch.isfinite(grad_norm):
                bar.close()
                raise FloatingPointError(
                    f"training: non-finite gradient at step {step} (loss {loss_value:.4g}, dtype {dtype}); the "
                    "weights were not updated. Try training.dtype: float32 or a lower training.learning_rate; "
                    "a rerun resumes from the last checkpoint."
                )
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()  # kernels run asynchronously: time the step, not its launch
            step_s = time.perf_counter() - tick
            real = [int(n) for b in batches for n in b["attention_mask"].sum(dim=1)]
            padded = sum(b["attention_mask"].numel() for b in batches)
            flops = training_flops(shape, np.array(real), n_answer, full)
            row = {
                "step": step,
                "loss": loss_value,
                "lr": scheduler.get_last_lr()[0],
                "grad_norm": float(grad_norm),
                "tokens": sum(real),
                "padding_share": 1 - sum(real) / padded,
                "tokens_per_s": sum(real) / step_s,
                "flops": flops,
                "mfu": flops / step_s / peak,
                "elapsed_s": elapsed_before + time.perf_counter() - session_start,
                "val_loss": math.nan,
                "val_exact_match": math.nan,
            }
            if held_out and (
                step == max_steps or (validation["every_steps"] and step % validation["every_steps"] == 0)
            ):
                row.update(validation_metrics(model, held_out, tokenizer.pad_token_id, params, device))
                _track_best(state, row, model, validation)
            state["log"].append(row)
            if params["max_minutes"] and row["elapsed_s"] >= 60 * params["max_minutes"]:
                state["stopped"] = f"max_minutes={params['max_minutes']} reached"
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss_value:.3f}", tok_s=f"{row['tokens_per_s']:.0f}", mfu=f"{row['mfu']:.0%}", refresh=False
            )
            if interrupted.is_set() and step < max_steps and state["stopped"] is None:
                state["elapsed_s"] = row["elapsed_s"]
                path = checkpoint(step)
                bar.close()
                raise TrainingInterrupted(f"training interrupted; checkpoint at {path}. Run again to resume.")
            if checkpoints["every_steps"] and step % checkpoints["every_steps"] == 0 and step < max_steps:
                state["elapsed_s"] = row["elapsed_s"]
                checkpoint(step)
    bar.close()
    state["stopped"] = state["stopped"] or "max_steps reached"
    if validation["restore_best"] and state["best_weights"] is not None and state["best_step"] != step:
        load_weights(model, state["best_weights"])
        logger.info("Restored the weights of step %s (validation loss %.4f)", state["best_step"], state["best_val"])
    # The result is saved as the node's output; checkpoints only serve an unfinished run.
    remove_checkpoints(checkpoints["dir"])
    logger.info("Training stopped at step %d: %s", step, state["stopped"])
    model.eval()
    return model, pd.DataFrame(state["log"])


def _track_best(state: dict[str, Any], row: dict[str, float], model, validation: dict[str, Any]) -> None:
    """Remember the best validation loss; stop after ``early_stopping_patience`` evaluations without gain."""
    if state["best_val"] is None or row["val_loss"] < state["best_val"] - validation["min_delta"]:
        state.update(best_val=row["val_loss"], best_step=row["step"], bad_evals=0)
        if validation["restore_best"]:
            state["best_weights"] = trainable_state(model)
        return
    state["bad_evals"] += 1
    patience = validation["early_stopping_patience"]
    if patience and state["bad_evals"] >= patience:
        state["stopped"] = f"early stopping: no validation gain in {patience} evaluations"
