"""Training batches: the order rows are seen in (length-bucketed, seeded) and the
answer-token loss. Encoding rows and collating them is shared with evaluation
(``synthtune.llm``), and so is teacher-forced scoring (``synthtune.inference``)."""

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from synthtune.llm import IGNORE_INDEX, answer_logits


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
