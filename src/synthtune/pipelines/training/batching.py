"""Training batches: the order rows are seen in (length-bucketed, seeded, optionally a
length curriculum) and the answer-token loss, weighted by token or by row. Encoding rows
and collating them is shared with evaluation (``synthtune.llm``), and so is teacher-forced
scoring (``synthtune.inference``)."""

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from synthtune.llm import IGNORE_INDEX, answer_logits, row_loss_sums


def answer_loss(model, batch: dict[str, Any], reduction: str = "mean", answer_only_head: bool = True):
    """Cross-entropy over answer tokens, with the output head run only where needed.

    Args:
        reduction: ``mean`` over answer tokens, ``sum`` (for token-weighted gradient
            accumulation across micro-batches), or ``row``: each row's mean answer-token
            loss, one value per row.
    """
    logits, targets, rows = answer_logits(model, batch, answer_only_head)
    if reduction != "row":
        return F.cross_entropy(logits.float(), targets, reduction=reduction)
    n = len(batch["input_ids"])
    return row_loss_sums(logits, targets, rows, n) / torch.bincount(rows, minlength=n)


def answer_tokens(batch: dict[str, torch.Tensor]) -> int:
    """How many label positions carry loss."""
    return int((batch["labels"] != IGNORE_INDEX).sum())


def loss_units(batch: dict[str, torch.Tensor], weighting: str) -> int:
    """What a step's loss is the mean over: answer tokens (``token``) or rows (``row``)."""
    return answer_tokens(batch) if weighting == "token" else len(batch["input_ids"])


def summed_loss(model, batch: dict[str, Any], weighting: str, answer_only_head: bool = True) -> torch.Tensor:
    """The batch's loss summed over its :func:`loss_units`, to be divided by the step's total.

    ``token`` sums every answer token's loss, so each token weighs the same across the
    step. ``row`` sums each row's mean answer-token loss, so each row weighs the same: a
    1,100-token tally no longer outweighs fifty short answers. Both are sums, which is what
    keeps a step's gradient the same however its rows are split into micro-batches.
    """
    if weighting == "token":
        return answer_loss(model, batch, reduction="sum", answer_only_head=answer_only_head)
    return answer_loss(model, batch, reduction="row", answer_only_head=answer_only_head).sum()


def batch_order(
    lengths: list[int],
    batch_size: int,
    steps: int,
    seed: int,
    pool: int = 64,
    bucketing: bool = True,
    curriculum_batches: int = 0,
) -> list[np.ndarray]:
    """Row indices of each batch: seeded shuffles, epoch after epoch, as needed.

    Rows of similar length share a batch (each shuffled run of ``pool`` batches is sorted
    by length, then the batches are shuffled), so left padding wastes little compute: a
    100-word repeat no longer pads fifteen 5-word rows to its length. ``bucketing=False``
    gives plain shuffled batches. The first ``curriculum_batches`` batches are then put in
    increasing length order (:func:`length_curriculum`).

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
    return length_curriculum(batches[:steps], lengths, curriculum_batches)


def length_curriculum(batches: list[np.ndarray], lengths: np.ndarray, count: int) -> list[np.ndarray]:
    """The batches with the first ``count`` of them sorted by mean row length, shortest first.

    Only the order changes: the same batches, so the same rows each epoch, and the batches
    after the first ``count`` stay where the seeded shuffle put them. A stable sort keeps
    batches of equal length in their seeded order.
    """
    lengths = np.asarray(lengths)
    head = sorted(batches[:count], key=lambda idx: float(lengths[idx].mean()))
    return head + batches[count:]


def curriculum_batches(curriculum: dict[str, float] | None, max_steps: int, accumulation: int) -> int:
    """How many batches the length curriculum orders: those of the first ``warmup_share`` of
    the optimizer steps (rounded up to whole steps), or none without a curriculum."""
    if not curriculum:
        return 0
    # The tolerance keeps float noise (0.3 * 10 = 3.0000000000000004) from adding a step.
    return math.ceil(curriculum["warmup_share"] * max_steps - 1e-9) * accumulation
