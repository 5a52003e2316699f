"""Rows -> token ids -> length-bucketed, left-padded batches -> the answer-token loss."""

from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from synthtune.llm import IGNORE_INDEX, encode_answers, encode_prompts, left_pad


def encode_training_rows(rows: pd.DataFrame, tokenizer, system_prompt: str = "") -> list[dict[str, list[int]]]:
    """Tokenize rows into prompt ids and answer ids (answer ends with EOS)."""
    if rows.empty:  # the fast tokenizer fails on an empty list
        return []
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


def to_device(batch: dict[str, Any], device) -> dict[str, Any]:
    """The batch with its tensors on ``device`` (``answer_width`` stays an int)."""
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def answer_logits(model, batch: dict[str, Any], answer_only_head: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits that predict each answer column, and the labels there.

    With left padding the answers fill the last ``answer_width`` columns; the logits that
    predict them sit one column earlier, so ``answer_width + 1`` columns are kept.
    ``answer_only_head=False`` runs the head on every column (the Hugging Face default),
    which costs a fifth more FLOPs on short rows and changes nothing else.
    """
    width = batch["answer_width"]
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        logits_to_keep=width + 1 if answer_only_head else 0,
        use_cache=False,
    ).logits[:, -(width + 1) : -1]
    return logits, batch["labels"][:, -width:]


def answer_loss(model, batch: dict[str, Any], reduction: str = "mean", answer_only_head: bool = True):
    """Cross-entropy over answer tokens, with the output head run only where needed.

    Args:
        reduction: ``mean`` over answer tokens, or ``sum`` (for token-weighted gradient
            accumulation across micro-batches).
    """
    logits, targets = answer_logits(model, batch, answer_only_head)
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction=reduction,
    )


def split_by_tokens(
    idx: np.ndarray, lengths: np.ndarray, max_tokens: int | None, max_rows: int | None = None
) -> list[np.ndarray]:
    """Split a batch into micro-batches of at most ``max_tokens`` padded tokens each.

    A batch within the budget comes back whole and in its order (no rows: no batches). Otherwise its rows are
    taken shortest first and a micro-batch closes before the row that would take it over
    ``max_tokens`` (rows x longest row) or over ``max_rows`` rows; a row longer than the
    budget gets a micro-batch of its own. Hand-written: samplers in the field (fairseq's,
    torchtune's packing) batch a whole dataset by tokens, which would change which rows
    share an optimizer step; here only a step's memory changes, never its gradient.
    """
    idx = np.asarray(idx)
    lengths = np.asarray(lengths)
    if len(idx) == 0:
        return []
    fits_rows = max_rows is None or len(idx) <= max_rows
    if fits_rows and (max_tokens is None or len(idx) * lengths[idx].max() <= max_tokens):
        return [idx]
    parts, current = [], []
    for i in idx[np.argsort(lengths[idx], kind="stable")]:
        full = max_rows is not None and len(current) == max_rows
        if current and (full or (max_tokens is not None and (len(current) + 1) * lengths[i] > max_tokens)):
            parts.append(np.array(current))
            current = []
        current.append(i)
    parts.append(np.array(current))
    return parts


@torch.no_grad()
def score_answers(
    model, examples, pad_id: int, batch_size: int, device, max_tokens: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Teacher-forced scoring of each row's answer in one forward pass per batch.

    Batches hold rows of similar length, at most ``batch_size`` rows and ``max_tokens``
    padded tokens.

    Returns:
        Per row: summed answer-token loss, number of answer tokens (EOS included), and how
        many leading answer tokens are the argmax of the position before them: greedy
        decoding would write exactly that prefix, and exactly the whole answer where it
        equals the number of answer tokens. The model's train/eval mode is left as it was.
    """
    was_training = model.training
    model.eval()
    loss, tokens, matched = (np.zeros(len(examples), dtype=np.int64 if i else np.float64) for i in range(3))
    lengths = np.array([len(e["prompt"]) + len(e["answer"]) for e in examples])
    for rows in split_by_tokens(np.arange(len(examples)), lengths, max_tokens, batch_size):
        logits, targets = answer_logits(model, to_device(collate([examples[i] for i in rows], pad_id), device))
        supervised = targets != IGNORE_INDEX
        per_token = F.cross_entropy(
            logits.float().transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
        )
        loss[rows] = per_token.sum(dim=1).cpu().numpy()
        n_answer = supervised.sum(dim=1)
        tokens[rows] = n_answer.cpu().numpy()
        # Left padding puts each answer in the last columns; the columns before it count as
        # hits, so the run of hits from column 0 is those columns plus the agreeing prefix.
        hits = (logits.argmax(-1) == targets) | ~supervised
        leading = hits.long().cumprod(dim=1).sum(dim=1)
        matched[rows] = (leading - (targets.shape[1] - n_answer)).cpu().numpy()
    model.train(was_training)
    return loss, tokens, matched


def answer_tokens(batch: dict[str, torch.Tensor]) -> int:
    """How many label positions carry loss."""
    return int((batch["labels"] != IGNORE_INDEX).sum())


def batch_order(
    lengths: list[int], batch_size: int, steps: int, seed: int, pool: int = 64, bucketing: bool = True
) -> list[np.ndarray]:
    """Row indices of each batch: seeded shuffles, epoch after epoch, as needed.

    Rows of similar length share a batch (each shuffled run of ``pool`` batches is sorted
    by length, then the batches are shuffled), so left padding wastes little compute: a
    100-word repeat no longer pads fifteen 5-word rows to its length. ``bucketing=False``
    gives plain shuffled batches.

    The order depends only on the arguments, so a resumed run sees the same batches.
    """
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths)
    batch_size = min(batch_size, len(lengths))
    per_epoch = max(len(lengths) // batch_size, 1)
    batches: list[np.ndarray] = []
    while len(batches) < steps:
        order = rng.permutation(len(lengths))[: per_epoch * batch_size]
        epoch = []
        for start in range(0, len(order), pool * batch_size):
            chunk = order[start : start + pool * batch_size]
            if bucketing:
                chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            epoch.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
        batches.extend(epoch[i] for i in rng.permutation(len(epoch)))
    return batches[:steps]
