"""Evaluation speed: items/s of the teacher-forced fast path and of greedy decoding, run by hand.

    python benchmarks/evaluation_speed.py [--set external] [--rows 1000] [--model tuned|base]
                                          [--decoders ours,hf_generate] [--dtype D] [--device D]
                                          [--decode-batch-size N] [--project DIR] [--out FILE]
                                          [--recorded]

Run from the repository root; reads a finished run's artifacts (``--project``, default the
working directory):
``data/06_models/base_model``, ``data/06_models/fine_tuned`` (for ``--model tuned``) and
``data/03_primary/<set>.parquet``, of which the first ``--rows`` rows are taken. Then, with
the evaluation parameters of ``conf/base`` (batch size, token budgets):

- ``fast path``: one teacher-forced pass over every row (``synthtune.inference.score_answers``).
- each decoder in ``--decoders``, greedy-decoding every row within its budget (from the
  question alone, as the pipeline does):
  - ``ours``: ``synthtune.inference.greedy_decode`` (rows leave their batch at EOS);
  - ``ours_guessed``: the same, speculative: each pass also reads the task's guess of how
    each row goes on (``decoding.guess_tokens``);
  - ``hf_generate``: Hugging Face ``generate``, ``decoding.batch_size`` rows at a time in
    order of budget (each batch for its
    largest budget; a row's output is cut at its own budget afterwards);
  - ``hf_continuous``: Hugging Face continuous batching (``generate_batch``), each row with
    its own budget.
  Decoders are compared on what they wrote: rows whose tokens differ from ``ours`` are counted.

``floor``: one teacher-forced pass over every token the first decoder wrote (prompt and
completion, batched as the fast path): what running the model over those tokens costs at
the least, so no greedy decoder of this model can take less. With ``--recorded``, only
that, over every prediction table a run recorded for ``--model``
(``data/07_model_output/<model>/``): each table's rows, tokens and seconds, and their sum.

Also reports how often the fast path's verdict disagrees with what decoding wrote (bf16 may
break near-ties differently from a teacher-forced pass), and ``failed_rows``: the rows the
fast path does not answer, decoded with ``ours`` from the start and from where the
teacher-forced pass shows greedy decoding first leaves the expected answer
(``synthtune.inference.greedy_prefixes``), without and with the task's guesses (as the
evaluation pipeline decodes them): seconds each, and rows whose tokens differ. From
the start, rows are batched by prompt plus budget; resumed, by the tokens each may still
write, as the evaluation pipeline batches them.
Prints the results as JSON.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from synthtune.datasets import FineTunedDataset, HFModelDataset
from synthtune.inference import greedy_decode, greedy_prefixes, score_answers
from synthtune.llm import apply_fine_tuning, encode_rows, left_pad, pick_device, pick_dtype, set_threads
from synthtune.pipelines.evaluation.nodes import decoding_budgets, evaluation_params, task_guesses
from synthtune.tasks import get_task


def hf_generate(model, prompts, budgets, eos, pad, batch_size, device):
    order = np.lexsort(([len(p) for p in prompts], budgets))
    outputs, stopped = [None] * len(prompts), np.zeros(len(prompts), dtype=bool)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = left_pad([prompts[i] for i in rows], pad)
        generated = model.generate(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
            max_new_tokens=int(budgets[rows].max()),
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=eos,
        )[:, batch["input_ids"].shape[1] :].tolist()
        for i, tokens in zip(rows, generated, strict=True):
            tokens = tokens[: budgets[i]]
            stopped[i] = eos in tokens
            outputs[i] = tokens[: tokens.index(eos)] if eos in tokens else tokens
    return outputs, stopped


def hf_continuous(model, prompts, budgets, eos, pad, batch_size, device):
    from transformers import GenerationConfig

    config = GenerationConfig(do_sample=False, eos_token_id=eos, pad_token_id=pad, max_new_tokens=int(budgets.max()))
    manager = model.init_continuous_batching(generation_config=config)
    manager.start()
    try:
        ids = [manager.add_request(p, max_new_tokens=int(b)) for p, b in zip(prompts, budgets, strict=True)]
        results = {}
        while len(results) < len(ids):
            result = manager.get_result(timeout=1)
            if result is not None and result.is_finished():
                results[result.request_id] = result.generated_tokens
    finally:
        manager.stop(block=True)
    outputs, stopped = [], np.zeros(len(prompts), dtype=bool)
    for k, request in enumerate(ids):
        tokens = list(results[request])
        stopped[k] = eos in tokens
        outputs.append(tokens[: tokens.index(eos)] if eos in tokens else tokens)
    return outputs, stopped


DECODERS = {"hf_generate": hf_generate, "hf_continuous": hf_continuous}  # besides ours and ours_guessed


def decode(name, model, prompts, budgets, eos, pad, decoding, device, guess):
    if name in ("ours", "ours_guessed"):
        return greedy_decode(
            model, prompts, budgets, eos, pad, decoding.batch_size, device, decoding.max_batch_tokens,
            draft=guess if name == "ours_guessed" else None, draft_tokens=decoding.guess_tokens,
        )  # fmt: skip
    return DECODERS[name](model, prompts, budgets, eos, pad, decoding.batch_size, device)


def time_floor(model, tokenizer, prompts, written, stopped, config, device) -> dict:
    """The least any greedy decoder of this model can spend on these rows: one
    teacher-forced pass over each prompt and what was written (EOS where it stopped),
    batched as the fast path is."""
    eos = tokenizer.eos_token_id
    examples = [{"prompt": p, "answer": w + [eos] * bool(s)} for p, w, s in zip(prompts, written, stopped, strict=True)]
    start = time.perf_counter()
    score_answers(model, examples, tokenizer.pad_token_id, config.batch_size, device, config.max_batch_tokens)
    return {
        "rows": len(examples),
        "prompt_tokens": sum(map(len, prompts)),
        "written_tokens": sum(len(e["answer"]) for e in examples),
        "seconds": time.perf_counter() - start,
    }


def recorded_floor(model, tokenizer, folder: Path, config, device) -> dict:
    """:func:`time_floor` of every recorded prediction table in ``folder`` (one model's), over
    the completions the run wrote."""
    tables = {}
    for path in sorted(folder.glob("*_predictions.parquet")):
        rows = pd.read_parquet(path)
        prompts = [e["prompt"] for e in encode_rows(rows, tokenizer, config.system_prompt)]
        written = tokenizer(rows["completion"].tolist(), add_special_tokens=False)["input_ids"]
        tables[path.name] = time_floor(model, tokenizer, prompts, written, rows["stopped"], config, device)
    totals = {k: sum(t[k] for t in tables.values()) for k in ("rows", "prompt_tokens", "written_tokens", "seconds")}
    return {"tables": tables, "all": totals}


def cpu_flags() -> str:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    return ",".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", default="external")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--model", choices=("tuned", "base"), default="tuned")
    parser.add_argument("--decoders", default="ours,hf_generate")
    parser.add_argument("--dtype", help="evaluation.dtype (default: conf/base)")
    parser.add_argument("--device", help="evaluation.device (default: conf/base)")
    parser.add_argument("--decode-batch-size", type=int, help="evaluation.decoding.batch_size (default: conf/base)")
    parser.add_argument("--project", default=".")
    parser.add_argument(
        "--recorded",
        action="store_true",
        help="only time the floor of every recorded prediction table of --model (data/07_model_output/<model>/)",
    )
    parser.add_argument("--out", help="also write the results to this JSON file")
    args = parser.parse_args()

    project = Path(args.project)
    params = yaml.safe_load(Path("conf/base/parameters_evaluation.yml").read_text())["evaluation"]
    task_name = yaml.safe_load(Path("conf/base/parameters_generation.yml").read_text())["generation"]["task"]
    if args.decode_batch_size:
        params["decoding"]["batch_size"] = args.decode_batch_size
    config = evaluation_params(
        {**params, "dtype": args.dtype or params["dtype"], "device": args.device or params["device"]}
    )
    task = get_task(task_name)
    set_threads()
    device = pick_device(config.device)
    dtype = pick_dtype(config.dtype, device)
    lm = HFModelDataset(filepath=str(project / "data/06_models/base_model")).load()
    if args.model == "tuned":
        lm = apply_fine_tuning(lm, FineTunedDataset(filepath=str(project / "data/06_models/fine_tuned")).load())
    model = lm.model.to(device=device, dtype=dtype).eval()
    tokenizer = lm.tokenizer
    if args.recorded:
        tables = recorded_floor(model, tokenizer, project / "data/07_model_output" / args.model, config, device)
        results = {"model": args.model, "dtype": str(dtype), "cpu_flags": cpu_flags(), "recorded_floor": tables}
        print(json.dumps(results, indent=2))
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        return
    rows = pd.read_parquet(project / f"data/03_primary/{args.set}.parquet").head(args.rows).reset_index(drop=True)
    budgets = decoding_budgets(task, rows, tokenizer, config.decoding)
    examples = encode_rows(rows, tokenizer, config.system_prompt)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id

    results = {
        "set": args.set,
        "rows": len(rows),
        "model": args.model,
        "dtype": str(dtype),
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "cpu_flags": cpu_flags(),
        "threads": torch.get_num_threads(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "mean_budget": float(budgets.mean()),
        "decode_batch_size": config.decoding.batch_size,
    }
    start = time.perf_counter()
    scores = score_answers(model, examples, pad, config.batch_size, device, config.max_batch_tokens)
    exact, n_answer = scores.exact, scores.tokens
    seconds = time.perf_counter() - start
    results["fast_path"] = {"seconds": seconds, "items_per_s": len(rows) / seconds, "exact": int(exact.sum())}
    prompts = [e["prompt"] for e in examples]
    reference = None
    for name in args.decoders.split(","):
        start = time.perf_counter()
        with torch.inference_mode():
            outputs, stopped = decode(
                name, model, prompts, budgets, eos, pad, config.decoding, device, task_guesses(task, tokenizer, rows, [[]] * len(rows))
            )  # fmt: skip
        seconds = time.perf_counter() - start
        tokens = sum(len(o) + int(s) for o, s in zip(outputs, stopped, strict=True))
        entry = {
            "seconds": seconds,
            "items_per_s": len(rows) / seconds,
            "new_tokens_per_s": tokens / seconds,
            "stopped": int(stopped.sum()),
        }
        if reference is None:
            reference, reference_stopped = outputs, stopped
            # the fast path's verdict against what decoding wrote
            wrote_answer = np.array(
                [o + [eos] == e["answer"] and s for o, e, s in zip(outputs, examples, stopped, strict=True)]
            )
            entry["fast_path_disagrees"] = int((wrote_answer != (exact & (n_answer <= budgets))).sum())
        else:
            entry["rows_differing_from_first"] = int(sum(a != b for a, b in zip(outputs, reference, strict=True)))
        results[name] = entry
    if reference is not None:  # over what the first decoder wrote
        results["floor"] = time_floor(model, tokenizer, prompts, reference, reference_stopped, config, device)
        results["floor"]["items_per_s"] = len(rows) / results["floor"]["seconds"]
    # the rows the fast path does not answer, decoded from the start and from where the
    # teacher-forced pass shows decoding would first leave the expected answer
    known, decided, _ = greedy_prefixes([e["answer"] for e in examples], scores, budgets, eos)
    failed = np.flatnonzero(~(exact & (n_answer <= budgets)))
    resumed = failed[~decided[failed]]
    timings = {}
    left = budgets[resumed] - [len(known[i]) for i in resumed]
    resumed_guess = task_guesses(task, tokenizer, rows.iloc[resumed], [known[i] for i in resumed])
    for how, rows_prompts, rows_budgets, order, guess in (
        ("from_start", [prompts[i] for i in failed], budgets[failed], None, None),
        ("from_divergence", [prompts[i] + known[i] for i in resumed], left, left, None),
        ("from_divergence_guessed", [prompts[i] + known[i] for i in resumed], left, left, resumed_guess),
    ):
        start = time.perf_counter()
        outputs, _ = greedy_decode(
            model,
            rows_prompts,
            rows_budgets,
            eos,
            pad,
            config.decoding.batch_size,
            device,
            config.decoding.max_batch_tokens,
            order=order,
            draft=guess,
            draft_tokens=config.decoding.guess_tokens,
        )
        timings[how] = {"rows": len(rows_prompts), "seconds": time.perf_counter() - start}
        if how == "from_start":
            whole = dict(zip(failed.tolist(), outputs, strict=True))
        else:
            redone = {i: known[i] + o for i, o in zip(resumed.tolist(), outputs, strict=True)}
            timings[how]["rows_differing"] = int(sum(redone[i] != whole[i] for i in resumed.tolist()))
    timings["skipped_tokens"] = int(sum(len(known[i]) for i in failed))
    results["failed_rows"] = timings
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
