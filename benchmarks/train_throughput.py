"""Training throughput: synthtune's trainer against the Hugging Face Trainer, run by hand.

    python benchmarks/train_throughput.py [--rows 512] [--batch-size 16] [--steps 8]
                                          [--max-row-tokens N] [--device cpu|cuda] [--out FILE]
                                          [--dtype float32|bfloat16|auto] [--compile]
                                          [--exercises data/03_primary/subskill_curated.parquet]

Both train the same LoRA (conf/base training.lora) on the same base model
(data/06_models/base_model, written by the training pipeline) and the same rows
(the first ``--rows`` of data/05_model_input/train.parquet, optionally only those of at
most ``--max-row-tokens`` tokens: 16 rows of 100-word tallies do not fit in 24 GiB),
``--batch-size`` rows a step, answer-only labels. With ``--exercises`` the rows are the
default run's mix instead: the task rows and the curated sub-skill exercises joined as the
training pipeline joins them (63% exercises), ``--rows`` of them drawn by a seeded shuffle.
On the CPU synthtune runs in fp32 unless ``--dtype`` says otherwise; on CUDA it picks bf16
as its ``dtype: auto`` does. The Hugging Face ``Trainer`` runs at its defaults for the
device (``use_cpu=True`` on the CPU; fp32 either way; random batches padded by
``DataCollatorForSeq2Seq``); nothing is tuned. synthtune runs with each speed lever in
turn switched off, to show what it buys. The first step of every run is a warm-up and is
not timed, and a discarded warm-up run goes before all of them. ``--compile`` adds a run
with the model under ``torch.compile`` (inductor, dynamic shapes, as length bucketing makes
every batch's length differ); its table row is the rate after the first step, and the
compile time (the first step's wall time) is printed beside it, since a 240-step run pays it
once.

Tokens are real (non-pad) tokens. MFU counts the FLOPs the loss needs (synthtune.perf:
padding and unread head columns do not count) against the measured square-matmul peak of
this machine in fp32 and in bf16. The last lines give the speed-up, synthtune's MFU in the
precision it trained in, and the MFU that 3x the Trainer's rate would need (a bound: where
it is over 100%, no trainer can be 3x faster on these rows).
"""

import argparse
import contextlib
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from synthtune.datasets import HFModelDataset
from synthtune.llm import IGNORE_INDEX, LanguageModel, encode_rows, pick_dtype, set_threads
from synthtune.perf import measure_matmul_peak, model_shape, training_flops
from synthtune.pipelines.training import loop
from synthtune.pipelines.training.loop import fine_tune
from synthtune.pipelines.training.nodes import add_subskill_rows

LEVERS = {
    "synthtune (all levers)": {},
    "  without length bucketing": {"length_bucketing": False},
    "  without answer-only head": {"answer_only_head": False},
    "  without fused AdamW": {"fused_optimizer": False},
}
# Levers that are not parameters (always on), switched off by replacing a name in the loop
# module for one run: autocast and the math attention kernel on short CPU batches, both of
# which act on bf16 training only (see loop.mixed_precision and loop.attention_kernels), so
# their arms run only when synthtune trains in bf16.
FIXED_LEVERS = {
    "  without autocast (mixed precision)": {"mixed_precision": lambda model, device, dtype: contextlib.nullcontext()},
    "  without math attention on short batches": {"CPU_MATH_ATTENTION_MAX_WIDTH": 0},
}


def training_params(device: torch.device, batch_size: int, steps: int, dtype: str | None = None, **overrides) -> dict:
    params = yaml.safe_load(open("conf/base/parameters_training.yml"))["training"]
    params.update(
        device=device.type,
        dtype=dtype or ("float32" if device.type == "cpu" else "auto"),
        batch_size=batch_size,
        gradient_accumulation_steps=1,
        max_steps=steps,
        max_minutes=None,
        validation={**params["validation"], "fraction": 0.0, "every_steps": 0},
        checkpoint={**params["checkpoint"], "dir": tempfile.mkdtemp(), "every_steps": 0, "resume": False},
        **overrides,
    )
    return params


@contextlib.contextmanager
def replaced(module, **replacements):
    """``module``'s attributes bound to other values inside the block."""
    saved = {name: getattr(module, name) for name in replacements}
    for name, value in replacements.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


@contextlib.contextmanager
def compiled_models():
    """The training loop's model under ``torch.compile``: a lever measured here only, not a
    training parameter, because it did not pay on the CPU (2-core AVX512, fp32: 1.03x the
    tokens/s after a 113 s first step against 1.8 s; see the README's Speed notes).
    ``Module.compile`` compiles in place, so parameters and state-dict keys stay the same."""
    prepare = loop.prepare_model

    def prepare_compiled(*args, **kwargs):
        model = prepare(*args, **kwargs)
        model.compile(dynamic=True)
        return model

    with replaced(loop, prepare_model=prepare_compiled):
        yield


def run_synthtune(base: LanguageModel, rows: pd.DataFrame, params: dict) -> dict:
    _, log = fine_tune(LanguageModel(copy.deepcopy(base.model), base.tokenizer), rows, rows.iloc[:0], params)
    timed = log.iloc[1:]
    step_seconds = log["tokens"] / log["tokens_per_s"]
    return {
        "tokens": int(timed["tokens"].sum()),
        "seconds": float(step_seconds.iloc[1:].sum()),
        "first_step_s": float(step_seconds.iloc[0]),
        "flops": float(timed["flops"].sum()),
        "padding": float((timed["padding_share"] * timed["tokens"]).sum() / timed["tokens"].sum()),
    }


def run_hf_trainer(base: LanguageModel, rows: pd.DataFrame, params: dict, device: torch.device) -> dict:
    """The Hugging Face Trainer + peft at its defaults; returns tokens, seconds and FLOPs."""
    from peft import get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    tokenizer = base.tokenizer
    examples = encode_rows(rows, tokenizer, params["system_prompt"])
    dataset = [
        {"input_ids": e["prompt"] + e["answer"], "labels": [IGNORE_INDEX] * len(e["prompt"]) + e["answer"]}
        for e in examples
    ]
    seen: list[dict] = []
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True)

    def counting_collator(features):
        batch = collator(features)
        seen.append(
            {
                "lengths": batch["attention_mask"].sum(dim=1).tolist(),
                "answer": int((batch["labels"] != IGNORE_INDEX).sum()),
                "padded": batch["attention_mask"].numel(),
            }
        )
        return batch

    stamps: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if device.type == "cuda":
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    torch.manual_seed(params["seed"])
    # the same adapter as synthtune's (conf/base training.lora)
    model = get_peft_model(copy.deepcopy(base.model), loop.lora_config(params, examples))
    shape = model_shape(model.config, sum(p.numel() for p in model.parameters() if p.requires_grad))
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=params["batch_size"],
            max_steps=params["max_steps"],
            learning_rate=params["learning_rate"],
            use_cpu=device.type == "cpu",
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            seed=params["seed"],
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=counting_collator)
        trainer.add_callback(StepClock())
        trainer.train()
    timed = seen[1 : len(stamps)]
    flops = sum(training_flops(shape, np.array(b["lengths"]), b["answer"], full=False) for b in timed)
    tokens = sum(sum(b["lengths"]) for b in timed)
    padding = 1 - tokens / sum(b["padded"] for b in timed)
    return {"tokens": tokens, "seconds": stamps[-1] - stamps[0], "flops": flops, "padding": padding}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--base-model", default="data/06_models/base_model")
    parser.add_argument("--train", default="data/05_model_input/train.parquet")
    parser.add_argument("--max-row-tokens", type=int, help="keep only rows of at most this many tokens")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument(
        "--dtype", choices=["float32", "bfloat16", "auto"], help="synthtune's dtype (default: fp32 on a CPU)"
    )
    parser.add_argument("--compile", action="store_true", help="also time the model under torch.compile")
    parser.add_argument("--exercises", help="also these sub-skill rows, mixed in as training mixes them")
    args = parser.parse_args()
    set_threads()
    base = HFModelDataset(filepath=args.base_model).load()
    rows = pd.read_parquet(args.train)
    if args.exercises:
        rows = add_subskill_rows(rows, pd.read_parquet(args.exercises))
        rows = rows.sample(frac=1.0, random_state=0)
    if args.max_row_tokens:
        examples = encode_rows(rows, base.tokenizer)
        rows = rows[[len(e["prompt"]) + len(e["answer"]) <= args.max_row_tokens for e in examples]]
    rows = rows.iloc[: args.rows].reset_index(drop=True)
    device = torch.device(args.device)
    size = 2048 if device.type == "cpu" else 8192
    peak = {"float32": measure_matmul_peak(torch.float32, device, size, 3.0)}
    peak["bfloat16"] = measure_matmul_peak(torch.bfloat16, device, size // 2 if device.type == "cpu" else size, 3.0)
    print(f"matmul peak: fp32 {peak['float32'] / 1e12:.3f} TFLOP/s, bf16 {peak['bfloat16'] / 1e12:.4f} TFLOP/s")
    # A discarded warm-up run: the first trainer in a process ran ~25% slower than the same
    # trainer right after it (118 then 150 tokens/s on tally rows), untimed first step or not.
    run_synthtune(base, rows, training_params(device, args.batch_size, 3, args.dtype))
    results = {
        name: run_synthtune(base, rows, training_params(device, args.batch_size, args.steps, args.dtype, **overrides))
        for name, overrides in LEVERS.items()
    }
    # the dtype synthtune's runs above resolved to (training_params holds the default)
    bf16 = (
        pick_dtype(training_params(device, args.batch_size, args.steps, args.dtype)["dtype"], device) == torch.bfloat16
    )
    for name, replacements in FIXED_LEVERS.items() if bf16 else ():
        if "CPU_MATH_ATTENTION_MAX_WIDTH" in replacements and device.type == "cuda":
            continue  # CUDA attends with the math kernel at every width
        with replaced(loop, **replacements):
            results[name] = run_synthtune(base, rows, training_params(device, args.batch_size, args.steps, args.dtype))
    if args.compile:
        with compiled_models():
            results["  with torch.compile"] = run_synthtune(
                base, rows, training_params(device, args.batch_size, args.steps, args.dtype)
            )
    params = training_params(device, args.batch_size, args.steps)
    results["HF Trainer (defaults)"] = run_hf_trainer(base, rows, params, device)

    print(
        f"\n{len(rows)} rows{' (task rows and exercises)' if args.exercises else ''}, batch {args.batch_size}, {args.steps} steps (first untimed), {device.type}, LoRA r={params['lora']['r']}"
    )
    print(f"{'trainer':42s} {'tokens/s':>9s} {'padding':>8s} {'MFU fp32':>9s} {'MFU bf16':>9s}")
    for name, run in results.items():
        rate = run["tokens"] / run["seconds"]
        flops_s = run["flops"] / run["seconds"]
        run.update(tokens_per_s=rate, mfu_fp32=flops_s / peak["float32"], mfu_bf16=flops_s / peak["bfloat16"])
        print(f"{name:42s} {rate:9.1f} {run['padding']:8.1%} {run['mfu_fp32']:9.1%} {run['mfu_bf16']:9.1%}")
    for name, run in results.items():
        if "first_step_s" in run:
            print(f"{name.strip()}: first (untimed) step {run['first_step_s']:.1f} s")
    ours, theirs = results["synthtune (all levers)"], results["HF Trainer (defaults)"]
    if args.out:
        Path(args.out).write_text(json.dumps({"peak_flops": peak, "results": results}, indent=1))
    used, mfu = ("bf16", "mfu_bf16") if bf16 else ("fp32", "mfu_fp32")
    print(
        f"speed-up {ours['tokens_per_s'] / theirs['tokens_per_s']:.2f}x vs HF Trainer default, "
        f"MFU {ours[mfu]:.1%} of the {used} peak synthtune trained in"
    )
    # A bound, not a measurement: 3x the Trainer's real tokens a second need 3x its useful FLOPs.
    print(f"3x the HF Trainer would need {3 * theirs[mfu]:.1%} of that peak")


if __name__ == "__main__":
    main()
