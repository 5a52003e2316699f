"""The fine-tuning loop: LoRA (peft) or full fine-tuning of a causal LM on answer tokens.

The loop is written out (nanoGPT style) rather than delegated to the Hugging Face
``Trainer`` because the Trainer runs the 49k-wide output head over every position, a fifth
of the FLOPs on these short rows, and pads batches it does not group by length; see
``benchmarks/train_throughput.py`` for what each of these costs. Everything else a trainer
is expected to do is here: gradient accumulation, warm-up + cosine schedule, clipping,
token- or row-weighted loss, an optional length curriculum, budgets in steps or minutes,
validation loss with early stopping, checkpoints that resume bit for bit, and a clean stop
on Ctrl-C or SIGTERM.

Reading order: :func:`setup` builds a :class:`Run` (model, encoded rows, the plan of
micro-batches of every step, optimizer, schedule, resumable state); :func:`fine_tune`
loops over the steps: :func:`train_step`, :func:`log_row`, :func:`evaluate` where due,
a checkpoint where due, and :func:`finish`. A run stopped by Ctrl-C or by ``max_minutes``
keeps a checkpoint of its last step, and a rerun with the same parameters goes on from it;
a run that reaches ``max_steps`` or stops early removes its checkpoints.
"""

import logging
import math
import re
import signal
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from synthtune.config import TrainingParams, parse
from synthtune.inference import score_answers
from synthtune.llm import collate, encode_rows, pick_device, pick_dtype, set_threads, split_by_tokens, to_device
from synthtune.perf import ModelShape, measure_matmul_peak, model_shape, training_flops

from .batching import (
    answer_tokens,
    batch_order,
    curriculum_batches,
    loss_units,
    summed_loss,
)
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

# Parameters added after the first configurations were written, with the values that
# keep those configurations' behaviour.
LEVER_DEFAULTS = {"loss_weighting": "token", "curriculum": None}
# Activations kept for the backward pass, in values per token per layer (inputs of the
# seven projections, the MLP intermediates, norms and residuals) — a deliberately rough
# upper estimate, used only to refuse batches that cannot fit before the first step.
_ACTIVATIONS_PER_TOKEN_LAYER = 16
# Longest rows (tokens, padding included) of a bf16 batch that attends with the math
# kernel on a CPU: see attention_kernels.
CPU_MATH_ATTENTION_MAX_WIDTH = 256


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during training, after the checkpoint of the last finished step was saved."""


def with_defaults(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the later levers filled in, so a configuration without them trains
    (and fingerprints) exactly like one that names their defaults."""
    validation = {"probes": False, **params.get("validation", {})}
    return {**LEVER_DEFAULTS, **params, "validation": validation}


def check_training_params(params: dict[str, Any]) -> None:
    """Fail before any work on values the loop cannot use, naming the parameter: the schema
    :class:`synthtune.config.TrainingParams` (types, ranges, unknown keys)."""
    parse(TrainingParams, with_defaults(params), "training")


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


def used_tokens(examples: list[dict[str, list[int]]]) -> list[int]:
    """The sorted ids of every token in the encoded rows' prompts and answers."""
    return sorted({t for e in examples for part in (e["prompt"], e["answer"]) for t in part})


def lora_config(params: dict[str, Any], examples: list[dict[str, list[int]]] | tuple = ()) -> Any:
    """peft's ``LoraConfig`` of ``training.lora``. Its ``trainable_tokens: training_rows``
    (synthtune's switch, not a peft argument) becomes peft's ``trainable_token_indices``:
    the embedding rows of every token in the encoded training ``examples`` train too (with
    SmolLM2's tied embeddings the output head's rows move with them), so each word's token
    can hold its own letter count."""
    from peft import LoraConfig

    lora = dict(params["lora"])
    if lora.pop("trainable_tokens", "none") == "training_rows":
        lora["trainable_token_indices"] = used_tokens(examples)
    return LoraConfig(task_type="CAUSAL_LM", **lora)


def prepare_model(
    base_model,
    params: dict[str, Any],
    device: torch.device,
    dtype: torch.dtype,
    examples: list[dict[str, list[int]]] = (),
):
    """The model to train: the base with a fresh LoRA adapter (:func:`lora_config`), or the
    whole base (``full``)."""
    model = base_model.model.to(device=device, dtype=dtype)
    if params["method"] == "full":
        return model.requires_grad_(True)
    from peft import get_peft_model

    check_target_modules(model, params["lora"]["target_modules"])
    model = get_peft_model(model, lora_config(params, examples))
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
            with torch.random.fork_rng(devices=[device]):  # a training step's forward and backward
                accumulate_gradients(model, [batch], device, answer_only_head=True, dtype=dtype)
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


def attention_kernels(device: torch.device, dtype: torch.dtype = torch.float32, width: int | None = None):
    """The attention kernels for a batch of ``dtype`` rows ``width`` tokens long (None: not
    known): the math kernel on CUDA, and on a CPU for bf16 rows of at most
    ``CPU_MATH_ATTENTION_MAX_WIDTH`` tokens; else PyTorch's choice.

    With left padding, the first columns of a padded row are queries whose every key is
    masked. On CUDA the fused SDPA kernels' backward turns those rows into NaN gradients:
    measured on an H100 in bf16, every LoRA gradient was NaN at step 26 of the default run
    (a batch of 16 x 64 tokens, 8 rows padded), though the forward pass was finite. The
    math kernel handles them, and for a model this small it was faster too (median 4,836
    against 2,938 tokens/s over 100 steps). On a CPU, PyTorch picks its flash kernel, whose
    bf16 backward is slow on short rows: forward and backward of SmolLM2-135M with LoRA
    (2-core AVX512-BF16, bf16 autocast) took 3.26 s with the math kernel against 3.80 s for
    16 rows x 128 tokens and 3.05 against 3.25 s for 8 x 256, but 3.56 against 3.40 s for
    4 x 512 and 5.44 against 3.64 s for 2 x 1,024 (the math kernel holds every score). In
    fp32 the two were within 4% up to 256 tokens, so fp32 runs keep PyTorch's choice.
    """
    short = dtype != torch.float32 and width is not None and width <= CPU_MATH_ATTENTION_MAX_WIDTH
    if device.type != "cuda" and not short:
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


@contextmanager
def mixed_precision(model, device: torch.device, dtype: torch.dtype):
    """Autocast to ``dtype`` when it is not fp32, around forward passes only.

    The base model's weights are already in ``dtype``, but peft keeps a LoRA adapter's in
    fp32 (its ``autocast_adapter_dtype``) and casts each adapter input up to them, so
    without autocast every adapter product runs in fp32 and each adapted layer converts its
    activations twice. Here the products run in ``dtype`` (peft's up-cast is switched off
    while autocast is on: bf16 -> fp32 -> bf16 changes no value), and the gradients still
    reach fp32 weights and AdamW states, as in any mixed-precision training (``method:
    full`` trains bf16 weights, which autocast leaves as they are). Measured on 512 default
    training rows (2-core AVX512-BF16, batch 16, 11 timed steps, a prototype that also took
    the math attention kernel at every width): 458 tokens/s without, 539 with, 614 with the
    math kernel too (see :func:`attention_kernels`); the default run's training took 13:05
    against 16:40. Autocast's cache of cast weights is off: it lives until the
    outermost autocast context exits, so under a caller's own autocast it would feed every
    step the adapter of the first (a loop-wide context made a default run's loss stay at ~2
    for 30 steps, where it falls below 0.5 by step 10), and each adapter weight is cast
    once per forward pass anyway.
    """
    if dtype == torch.float32:
        yield
        return
    from peft.helpers import disable_input_dtype_casting

    with torch.autocast(device.type, dtype=dtype, cache_enabled=False), disable_input_dtype_casting(model):
        yield


def validation_metrics(model, examples, pad_id: int, params: dict[str, Any], device: torch.device) -> dict[str, float]:
    """Mean answer-token loss and teacher-forced exact match on held-out rows."""
    scores = score_answers(model, examples, pad_id, params["batch_size"], device, params["max_batch_tokens"])
    return {
        "val_loss": float(scores.loss.sum() / scores.tokens.sum()),
        "val_exact_match": float(scores.exact.mean()),
    }


@contextmanager
def stop_on_sigint():
    """Turn the first Ctrl-C (SIGINT) or SIGTERM (``kill``, ``timeout``, a job scheduler)
    into a flag the loop reads between steps.

    The step in flight finishes, a checkpoint is saved, and the loop raises
    :class:`TrainingInterrupted`. A second signal acts at once (the previous handlers are
    back). Signals can only be handled on the main thread; elsewhere (a threaded runner)
    they behave as usual.
    """
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in signals}

    def restore():
        for s, handler in previous.items():
            signal.signal(s, handler)

    def handler(signum, frame):
        flag.set()
        restore()
        logger.warning(
            "%s: finishing this step and saving a checkpoint (send it again to stop at once)",
            "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name,
        )

    for s in signals:
        signal.signal(s, handler)
    try:
        yield flag
    finally:
        restore()


def lr_factor(step: int, warmup_steps: int, max_steps: int) -> float:
    """The share of ``learning_rate`` that optimizer step ``step`` (1 to ``max_steps``) uses.

    Linear warm-up, step ``k`` at ``k / warmup_steps`` (so step 1 already learns, unlike
    transformers' schedule, whose first step runs at rate 0), then cosine decay that
    would reach 0 one step after ``max_steps``: the last step still learns a little, and
    the decay steps are those of transformers' ``get_cosine_schedule_with_warmup``.
    """
    if step <= warmup_steps:
        return step / warmup_steps
    progress = (step - 1 - warmup_steps) / max(max_steps - warmup_steps, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(trainable: list[torch.nn.Parameter], params: dict[str, Any]) -> torch.optim.Optimizer:
    """AdamW, fused into one kernel per step (PyTorch has fused AdamW for CPU and CUDA)."""
    return torch.optim.AdamW(
        trainable, lr=params["learning_rate"], weight_decay=params["weight_decay"], fused=params["fused_optimizer"]
    )


def make_scheduler(optimizer: torch.optim.Optimizer, params: dict[str, Any]) -> torch.optim.lr_scheduler.LambdaLR:
    """The :func:`lr_factor` schedule; the optimizer's rate is always that of the next step.

    LambdaLR counts ``scheduler.step()`` calls from 0, so after ``k`` steps it sets the rate
    of step ``k + 1``.
    """
    warmup, max_steps = params["warmup_steps"], params["max_steps"]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: lr_factor(done + 1, warmup, max_steps))


def plan_steps(lengths: np.ndarray, params: dict[str, Any]) -> list[list[np.ndarray]]:
    """Row indices of every step's micro-batches: its accumulated batches, long ones split
    by the token budget. Seeded: a resumed run sees the same plan."""
    accumulation, max_steps = params["gradient_accumulation_steps"], params["max_steps"]
    batches = batch_order(
        lengths,
        params["batch_size"],
        max_steps * accumulation,
        params["seed"],
        bucketing=params["length_bucketing"],
        curriculum_batches=curriculum_batches(params["curriculum"], max_steps, accumulation),
    )
    return [
        [
            part
            for idx in batches[s * accumulation : (s + 1) * accumulation]
            for part in split_by_tokens(idx, lengths, params["max_batch_tokens"])
        ]
        for s in range(max_steps)
    ]


@dataclass
class Run:
    """What one training run works with, built once by :func:`setup`."""

    params: dict[str, Any]  # with the lever defaults filled in
    model: Any
    device: torch.device
    dtype: torch.dtype
    pad_id: int
    examples: list[dict[str, list[int]]]  # encoded training rows
    lengths: np.ndarray  # real (non-pad) tokens of each training row
    held_out: list[dict[str, list[int]]]  # encoded validation rows
    probes: dict[
        str, list[dict[str, list[int]]]
    ]  # monitored sets (name -> encoded rows), where validation.probes is on
    plan: list[list[np.ndarray]]  # row indices of each step's micro-batches
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    # What a checkpoint saves besides weights, optimizer and schedule: fingerprint, log,
    # early-stopping state, the wall time of earlier sessions, and the best weights.
    state: dict[str, Any]
    start_step: int  # steps done before this session (resumed from a checkpoint)
    shape: ModelShape
    peak: float  # measured matmul FLOP/s in this precision, for MFU

    @property
    def max_steps(self) -> int:
        return len(self.plan)

    @property
    def trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def batches(self, step: int) -> list[dict[str, Any]]:
        """The collated micro-batches of optimizer step ``step`` (from 1)."""
        return [collate([self.examples[i] for i in idx], self.pad_id) for idx in self.plan[step - 1]]


def setup(
    base_model,
    train_rows: pd.DataFrame,
    validation_rows: pd.DataFrame,
    params: dict[str, Any],
    probe_rows: pd.DataFrame | dict[str, pd.DataFrame] | None = None,
) -> Run:
    """Check the parameters, build the model, plan every step's micro-batches, refuse a
    batch that cannot fit, and resume from this run's checkpoint where there is one."""
    if train_rows.empty:
        raise ValueError("training: the training table (model_input_train) is empty; nothing to train on")
    params = with_defaults(params)
    check_training_params(params)
    set_threads()
    torch.manual_seed(params["seed"])
    device = pick_device(params["device"])
    dtype = pick_dtype(params["dtype"], device)
    tokenizer = base_model.tokenizer
    fingerprint = run_fingerprint(
        {**params, "device": str(device), "dtype": str(dtype)}, train_rows, validation_rows, base_model.model
    )
    examples = encode_rows(train_rows, tokenizer, params["system_prompt"])
    model = prepare_model(base_model, params, device, dtype, examples)
    trainable = [p for p in model.parameters() if p.requires_grad]
    full = params["method"] == "full"
    shape = model_shape(model.config, adapter_params=0 if full else sum(p.numel() for p in trainable))

    lengths = np.array([len(e["prompt"]) + len(e["answer"]) for e in examples])
    plan = plan_steps(lengths, params)
    largest = max((idx for parts in plan for idx in parts), key=lambda idx: len(idx) * lengths[idx].max())
    check_batch_fits(model, collate([examples[i] for i in largest], tokenizer.pad_token_id), params, dtype)

    optimizer = make_optimizer(trainable, params)
    run = Run(
        params=params,
        model=model,
        device=device,
        dtype=dtype,
        pad_id=tokenizer.pad_token_id,
        examples=examples,
        lengths=lengths,
        held_out=encode_rows(validation_rows, tokenizer, params["system_prompt"]),
        probes={
            name: encode_rows(rows, tokenizer, params["system_prompt"])
            for name, rows in monitored_sets(probe_rows).items()
        }
        if params["validation"]["probes"]
        else {},
        plan=plan,
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, params),
        state={
            "fingerprint": fingerprint,
            "max_steps": params["max_steps"],
            "log": [],
            "best_val": None,
            "best_step": None,
            "bad_evals": 0,
            "elapsed_s": 0.0,
            "best_weights": None,
        },
        start_step=0,
        shape=shape,
        # A GPU needs large products to reach its peak; 1024 x 1024 is already a CPU's.
        peak=measure_matmul_peak(dtype, device, 8192 if device.type == "cuda" else 1024),
    )
    resume(run)  # last: it restores the RNG state, which nothing after it may consume
    return run


def resume(run: Run) -> None:
    """Continue from this run's newest checkpoint, if resuming is on and there is one."""
    checkpoints = run.params["checkpoint"]
    found = load_latest(checkpoints["dir"], run.state["fingerprint"]) if checkpoints["resume"] else None
    if found is None:
        return
    path, saved = found
    best_weights = restore(path, run.model, run.optimizer, run.scheduler)
    run.start_step = saved.pop("step")
    run.state.update(saved, best_weights=best_weights)
    logger.info("Resuming from %s (step %d of %d)", path, run.start_step, run.max_steps)


def accumulate_gradients(
    model,
    batches: list[dict[str, Any]],
    device: torch.device,
    answer_only_head: bool,
    weighting: str = "token",
    dtype: torch.dtype = torch.float32,
) -> float:
    """Backward over micro-batches so the gradient is that of one batch holding all their rows.

    Each micro-batch's summed loss is divided by the loss units (answer tokens, or rows with
    ``weighting="row"``) of *all* of them, so every token, or every row, weighs the same
    however the rows were split. Each forward pass runs under :func:`mixed_precision` of
    ``dtype`` and each backward pass outside it, as PyTorch advises.

    Returns:
        The step's loss: the mean answer-token loss (``token``) or the mean over rows of
        each row's mean answer-token loss (``row``).
    """
    units = sum(loss_units(b, weighting) for b in batches)
    total = 0.0
    for batch in batches:
        width = batch["input_ids"].shape[1]
        with attention_kernels(device, dtype, width), mixed_precision(model, device, dtype):
            loss = summed_loss(model, to_device(batch, device), weighting, answer_only_head) / units
        loss.backward()  # outside autocast, as PyTorch advises; the kernels were picked in the forward
        total += loss.item()
    return total


def train_step(run: Run, step: int, batches: list[dict[str, Any]]) -> tuple[float, float, float]:
    """One optimizer step over ``batches``.

    Returns:
        The step's loss, its gradient norm before clipping, and the learning rate it used.

    Raises:
        FloatingPointError: the gradient is not finite; the weights were not updated.
    """
    params = run.params
    loss = accumulate_gradients(
        run.model, batches, run.device, params["answer_only_head"], params["loss_weighting"], run.dtype
    )
    grad_norm = torch.nn.utils.clip_grad_norm_(run.trainable, params["max_grad_norm"])
    if not torch.isfinite(grad_norm):
        raise FloatingPointError(
            f"training: non-finite gradient at step {step} (loss {loss:.4g}, dtype {run.dtype}); the "
            "weights were not updated. Try training.dtype: float32 or a lower training.learning_rate; "
            "a rerun resumes from the last checkpoint."
        )
    lr = run.optimizer.param_groups[0]["lr"]  # read before scheduler.step() sets the next step's
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    if run.device.type == "cuda":
        torch.cuda.synchronize()  # kernels run asynchronously: time the step, not its launch
    return loss, float(grad_norm), lr


def log_row(
    run: Run, step: int, batches: list[dict[str, Any]], loss: float, grad_norm: float, lr: float, seconds: float
) -> dict[str, float]:
    """The log entry of a step that took ``seconds``; validation columns are NaN until measured."""
    real = [int(n) for b in batches for n in b["attention_mask"].sum(dim=1)]
    padded = sum(b["attention_mask"].numel() for b in batches)
    n_answer = sum(answer_tokens(b) for b in batches)
    flops = training_flops(run.shape, np.array(real), n_answer, run.params["method"] == "full")
    return {
        "step": step,
        "loss": loss,
        "lr": lr,
        "grad_norm": grad_norm,
        "tokens": sum(real),
        "padding_share": 1 - sum(real) / padded,
        "tokens_per_s": sum(real) / seconds,
        "flops": flops,
        "mfu": flops / seconds / run.peak,
        "elapsed_s": math.nan,
        "val_loss": math.nan,
        "val_exact_match": math.nan,
    }


def planned_tokens(run: Run, first: int = 1) -> int:
    """Real (non-pad) tokens of the steps from ``first`` to ``max_steps``."""
    return int(sum(run.lengths[idx].sum() for parts in run.plan[first - 1 :] for idx in parts))


def estimate_minutes(run: Run, row: dict[str, float]) -> float:
    """Wall time the rest of the run will take at the rate of the step just logged.

    Reported after the first step of a session (a few seconds in) with the plan's token
    count, so a configuration that cannot fit its budget on this machine says so at start;
    with ``max_minutes`` set below the estimate, a warning says where it will stop.
    """
    remaining = planned_tokens(run, int(row["step"]) + 1)
    minutes = (row["elapsed_s"] + remaining / row["tokens_per_s"]) / 60
    budget = run.params["max_minutes"]
    message = (
        f"training: {run.max_steps} steps, {planned_tokens(run):,} tokens planned; at {row['tokens_per_s']:.0f} "
        f"tokens/s (step {int(row['step'])}) the run takes ~{minutes:.1f} min on this machine"
    )
    if budget and minutes > budget:
        logger.warning("%s, over training.max_minutes=%s: it will stop early and keep a checkpoint", message, budget)
    else:
        logger.info(message)
    return minutes


def evaluate(run: Run, step: int) -> dict[str, float]:
    """Validation loss and exact match where due (every ``validation.every_steps`` steps and
    at the last), else nothing; with ``validation.probes`` on, the probes' teacher-forced
    exact match too (logged only: it never picks weights or stops training), which makes
    the training log a learning curve on both."""
    every = run.params["validation"]["every_steps"]
    if not run.held_out or not (step == run.max_steps or (every and step % every == 0)):
        return {}
    with mixed_precision(run.model, run.device, run.dtype):
        metrics = validation_metrics(run.model, run.held_out, run.pad_id, run.params, run.device)
        for name, examples in run.probes.items():
            scores = score_answers(
                run.model, examples, run.pad_id, run.params["batch_size"], run.device, run.params["max_batch_tokens"]
            )
            metrics[f"{name}_exact_match"] = float(scores.exact.mean())
    return metrics


def monitored_sets(probe_rows: pd.DataFrame | dict[str, pd.DataFrame] | None) -> dict[str, pd.DataFrame]:
    """The sets scored at each validation: the probe set (logged as ``probes_exact_match``),
    or several named sets (``<name>_exact_match`` each), as the learning-curve benchmark
    passes them."""
    if probe_rows is None:
        return {}
    return dict(probe_rows) if isinstance(probe_rows, dict) else {"probes": probe_rows}


def track_best(run: Run, row: dict[str, float]) -> str | None:
    """Remember the best validation loss (and its weights, for ``restore_best``).

    Returns:
        Why to stop: ``early_stopping_patience`` evaluations without gain; else None.
    """
    state, validation = run.state, run.params["validation"]
    if state["best_val"] is None or row["val_loss"] < state["best_val"] - validation["min_delta"]:
        state.update(best_val=row["val_loss"], best_step=row["step"], bad_evals=0)
        if validation["restore_best"]:
            state["best_weights"] = trainable_state(run.model)
        return None
    state["bad_evals"] += 1
    patience = validation["early_stopping_patience"]
    if patience and state["bad_evals"] >= patience:
        return f"early stopping: no validation gain in {patience} evaluations"
    return None


def save(run: Run, step: int) -> Path:
    """Checkpoint ``step``, keeping this run's newest ``checkpoint.keep_last``."""
    checkpoints = run.params["checkpoint"]
    return save_checkpoint(
        checkpoints["dir"], step, run.model, run.optimizer, run.scheduler, run.state, checkpoints["keep_last"]
    )


def finish(run: Run, step: int, stop: str, kept: Path | None) -> Any:
    """End the run: the best weights back where asked, this run's checkpoints removed unless
    one was ``kept`` to go on from, and the model in eval mode."""
    state = run.state
    if run.params["validation"]["restore_best"] and state["best_weights"] is not None and state["best_step"] != step:
        load_weights(run.model, state["best_weights"])
        logger.info("Restored the weights of step %s (validation loss %.4f)", state["best_step"], state["best_val"])
    if kept is None:
        # The result is saved as the node's output; checkpoints only serve an unfinished run.
        remove_checkpoints(run.params["checkpoint"]["dir"], state["fingerprint"])
    logger.info("Training stopped at step %d of %d: %s", step, run.max_steps, stop)
    return run.model.eval()


def fine_tune(
    base_model,
    train_rows: pd.DataFrame,
    validation_rows: pd.DataFrame,
    params: dict[str, Any],
    probe_rows: pd.DataFrame | dict[str, pd.DataFrame] | None = None,
) -> tuple[Any, pd.DataFrame]:
    """Fine-tune on the answer tokens of ``train_rows``; see ``conf/base/parameters_training.yml``.

    ``probe_rows`` (the probe set, or a mapping of named sets) are scored at each validation
    when ``validation.probes`` is on, for the learning curve; they never steer training.

    Returns:
        The trained model (a peft model holding the adapter, or the whole model for
        ``method: full``) and the per-step log: loss, lr (the rate the step used), grad
        norm, tokens, padding share, tokens/s, MFU, elapsed time, and the validation loss
        and exact match where measured.

    Raises:
        TrainingInterrupted: on Ctrl-C or SIGTERM, after checkpointing the last finished step.
    """
    run = setup(base_model, train_rows, validation_rows, params, probe_rows)
    params, state = run.params, run.state
    budget_s = 60 * params["max_minutes"] if params["max_minutes"] else math.inf
    every = params["checkpoint"]["every_steps"]
    # Wall time of earlier sessions of this run (resumed from a checkpoint) plus this one.
    session_start, elapsed_before = perf_counter(), state["elapsed_s"]
    step, stop, kept = run.start_step, "max_steps reached", None
    bar = tqdm(total=run.max_steps, initial=step, desc=f"train ({params['method']})", unit="step")
    with bar, stop_on_sigint() as interrupted, attention_kernels(run.device):
        while step < run.max_steps:
            step += 1
            batches = run.batches(step)
            tick = perf_counter()
            loss, grad_norm, lr = train_step(run, step, batches)
            row = log_row(run, step, batches, loss, grad_norm, lr, seconds=perf_counter() - tick)
            metrics = evaluate(run, step)
            row.update(metrics, elapsed_s=elapsed_before + perf_counter() - session_start)
            state["log"].append(row)
            state["elapsed_s"] = row["elapsed_s"]
            if step == run.start_step + 1:
                estimate_minutes(run, row)
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss:.3f}", tok_s=f"{row['tokens_per_s']:.0f}", mfu=f"{row['mfu']:.0%}", refresh=False
            )
            early = track_best(run, row) if metrics else None
            if early or step == run.max_steps:  # finished
                stop = early or stop
                break
            if interrupted.is_set():
                raise TrainingInterrupted(
                    f"training interrupted; checkpoint at {save(run, step)}. Run again to resume."
                )
            if row["elapsed_s"] >= budget_s:  # paused: a rerun with a larger budget goes on from here
                kept = save(run, step)
                stop = f"max_minutes={params['max_minutes']} reached; {kept} kept to go on from"
                break
            if every and step % every == 0:
                save(run, step)
    return finish(run, step, stop, kept), pd.DataFrame(state["log"])
