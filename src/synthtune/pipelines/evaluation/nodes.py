"""Nodes of the evaluation pipeline."""

from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from synthtune.llm import LanguageModel, LoraAdapter, encode_prompts, left_pad, pick_device, pick_dtype, set_threads
from synthtune.tasks import get_task


def attach_adapter(base_model: LanguageModel, adapter: LoraAdapter) -> LanguageModel:
    """Put the trained adapter on the base model and merge it in for fast inference."""
    from peft import get_peft_model, set_peft_model_state_dict

    peft_model = get_peft_model(base_model.model, adapter.config)
    result = set_peft_model_state_dict(peft_model, adapter.weights)
    if result.unexpected_keys:
        raise ValueError(f"lora_adapter holds weights the base model has no place for: {result.unexpected_keys[:5]}")
    return LanguageModel(peft_model.merge_and_unload(), base_model.tokenizer)


@torch.inference_mode()
def greedy_complete(model: LanguageModel, prompts: list[str], params: dict[str, Any]) -> list[str]:
    """Greedy-decode each prompt (chat form) and return the completions' text.

    Args:
        model: The fine-tuned model and tokenizer.
        prompts: Questions as rendered by the task.
        params: ``batch_size``, ``max_new_tokens``, ``device``, ``dtype``, ``system_prompt``.
    """
    set_threads()
    device = pick_device(params["device"])
    net = model.model.to(device=device, dtype=pick_dtype(params["dtype"], device)).eval()
    tokenizer = model.tokenizer
    encoded = encode_prompts(tokenizer, prompts, params["system_prompt"])
    completions = []
    size = params["batch_size"]
    for start in tqdm(range(0, len(encoded), size), desc="evaluate", unit="batch"):
        batch = left_pad(encoded[start : start + size], tokenizer.pad_token_id)
        output = net.generate(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
            max_new_tokens=params["max_new_tokens"],
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        completions.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return completions


def predict_eval_set(
    base_model: LanguageModel, adapter: LoraAdapter, rows: pd.DataFrame, task_name: str, params: dict[str, Any]
) -> pd.DataFrame:
    """Answer every row of an evaluation set and score it.

    Returns:
        The rows with ``completion``, ``predicted`` (the number the completion ends with,
        or missing) and ``correct`` (predicted equals the label the task recomputes).
    """
    task = get_task(task_name)
    model = attach_adapter(base_model, adapter)
    completions = greedy_complete(model, rows["prompt"].tolist(), params)
    predicted = pd.array([task.parse_answer(c) for c in completions], dtype="Int64")
    correct = (predicted == task.label(rows)).fillna(False).astype(bool)
    return rows.assign(completion=completions, predicted=predicted, correct=correct)


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
