"""Nodes of the evaluation pipeline."""

from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from synthtune.llm import (
    LanguageModel,
    apply_fine_tuning,
    encode_prompts,
    left_pad,
    pick_device,
    pick_dtype,
    set_threads,
)
from synthtune.pipelines.training.batching import encode_training_rows, score_answers
from synthtune.tasks import get_task


@torch.inference_mode()
def greedy_complete(model: LanguageModel, prompts: list[str], params: dict[str, Any], max_new: list[int]) -> list[str]:
    """Greedy-decode each prompt (chat form) and return the completions' text.

    Prompts are decoded in batches of similar expected answer length, each batch for at most
    the largest of its ``max_new`` values.

    Args:
        model: The fine-tuned model and tokenizer, already on its device and in its dtype.
        prompts: Questions as rendered by the task.
        params: ``batch_size``, ``system_prompt``.
        max_new: New-token limit of each prompt.
    """
    net = model.model.eval()
    device = net.device
    tokenizer = model.tokenizer
    encoded = encode_prompts(tokenizer, prompts, params["system_prompt"])
    order = np.argsort(np.asarray(max_new) * 4096 + [len(e) for e in encoded], kind="stable")
    completions = [""] * len(prompts)
    size = params["batch_size"]
    for start in tqdm(range(0, len(order), size), desc="generate", unit="batch"):
        rows = order[start : start + size]
        batch = left_pad([encoded[i] for i in rows], tokenizer.pad_token_id)
        output = net.generate(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
            max_new_tokens=int(max(max_new[i] for i in rows)),
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        texts = tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        for i, text in zip(rows, texts, strict=True):
            completions[i] = text
    return completions


def predict_eval_set(
    base_model: LanguageModel, fine_tuned: Any, rows: pd.DataFrame, task_name: str, params: dict[str, Any]
) -> pd.DataFrame:
    """Answer every row of an evaluation set and score it.

    Greedy decoding is exact but slow on a CPU, so each row is first scored with one
    teacher-forced forward pass: where the argmax at every position of the expected answer
    (EOS included) is that answer, greedy decoding would write it, and it is taken as the
    completion. Only the other rows are decoded, each for the expected answer's length plus
    ``extra_new_tokens``, at most ``max_new_tokens``: a completion that has already strayed
    from the expected text is wrong unless it ends on the right number by chance, and a
    100-word tally would otherwise cost a thousand decoding steps. (Resuming decoding after
    the agreeing prefix was tried and measured slower on a CPU: the batch still decodes as
    long as its row that strays first, over a longer padded cache.)

    Returns:
        The rows with ``completion``, ``predicted`` (the number the completion ends with,
        or missing), ``correct`` (predicted equals the label the task recomputes) and
        ``teacher_forced`` (the completion came from the fast path).
    """
    task = get_task(task_name)
    set_threads()
    device = pick_device(params["device"])
    model = apply_fine_tuning(base_model, fine_tuned)
    model.model.to(device=device, dtype=pick_dtype(params["dtype"], device))
    tokenizer = model.tokenizer
    examples = encode_training_rows(rows, tokenizer, params["system_prompt"])
    _, n_answer, matched = score_answers(
        model.model, examples, tokenizer.pad_token_id, params["batch_size"], device, params["max_batch_tokens"]
    )
    exact = matched == n_answer
    completions = rows["answer"].astype(str).to_numpy(dtype=object, copy=True)
    pending = np.flatnonzero(~exact)
    if len(pending):
        max_new = [
            min(len(examples[i]["answer"]) + params["extra_new_tokens"], params["max_new_tokens"]) for i in pending
        ]
        completions[pending] = greedy_complete(model, rows["prompt"].iloc[pending].tolist(), params, max_new)
    predicted = pd.array([task.parse_answer(c) for c in completions], dtype="Int64")
    correct = (predicted == task.label(rows)).fillna(False).astype(bool)
    return rows.assign(completion=list(completions), predicted=predicted, correct=correct, teacher_forced=exact)


def compute_metrics(predictions: pd.DataFrame) -> dict[str, Any]:
    """Exact-match accuracy and how far off the wrong answers are."""
    answered = predictions["predicted"].notna()
    error = (predictions["predicted"] - predictions["label"]).abs()
    return {
        "exact_match": float(predictions["correct"].mean()),
        "n_examples": len(predictions),
        "n_correct": int(predictions["correct"].sum()),
        "unparseable_rate": float((~answered).mean()),
        "mean_abs_error": float(error[answered].mean()) if answered.any() else None,
        # robust to the odd runaway completion ("1111111111") that dominates the mean
        "median_abs_error": float(error[answered].median()) if answered.any() else None,
    }


def summarise_evaluation(test: pd.DataFrame, probes: pd.DataFrame) -> dict[str, Any]:
    """Metrics of the test split and the probes, with probe accuracy per category.

    The gap between the two is the case study's lesson in one number: a test split drawn
    like the training data can look fine while hand-written probes fail.
    """
    by_category = probes.groupby("category", sort=True)["correct"].mean()
    return {
        "test": compute_metrics(test),
        "probes": compute_metrics(probes),
        "probes_by_category": {str(k): round(float(v), 4) for k, v in by_category.items()},
    }
