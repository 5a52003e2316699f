"""How a model answers: teacher-forced scoring of known answers, budgeted greedy decoding
(speculative where the task guesses how an answer goes on), and the perplexity of plain
text. Training's validation and the evaluation pipeline use the same functions."""

import contextlib
import functools
import inspect
import os
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from synthtune.llm import answer_logits, collate, left_pad, row_loss_sums, split_by_tokens, to_device


class AnswerScores(NamedTuple):
    """What one teacher-forced pass tells of each row's answer (see :func:`score_answers`)."""

    #: summed answer-token loss
    loss: np.ndarray
    #: answer tokens, EOS included
    tokens: np.ndarray
    #: every answer token is the argmax of the position before it: greedy decoding writes
    #: exactly this answer and stops
    exact: np.ndarray
    #: how many leading answer tokens are the argmax (``tokens`` where ``exact``): greedy
    #: decoding writes exactly these first
    agreed: np.ndarray
    #: the argmax where the answer first differs from it: greedy decoding's next token after
    #: the agreed ones (-1 where ``exact``)
    guess: np.ndarray


@torch.no_grad()
def score_answers(
    model, examples, pad_id: int, batch_size: int, device, max_tokens: int | None = None, progress=None
) -> AnswerScores:
    """Teacher-forced scoring of each row's answer in one forward pass per batch.

    Batches hold rows of similar length, at most ``batch_size`` rows and ``max_tokens``
    padded tokens. ``progress``, if given, is called with the number of rows each batch scored.
    The model's train/eval mode is left as it was.
    """
    was_training = model.training
    model.eval()
    loss = np.zeros(len(examples), dtype=np.float64)
    tokens = np.zeros(len(examples), dtype=np.int64)
    exact = np.zeros(len(examples), dtype=bool)
    agreed = np.zeros(len(examples), dtype=np.int64)
    guess = np.full(len(examples), -1, dtype=np.int64)
    lengths = np.array([len(e["prompt"]) + len(e["answer"]) for e in examples])
    for rows in split_by_tokens(np.arange(len(examples)), lengths, max_tokens, batch_size):
        logits, targets, row = answer_logits(model, to_device(collate([examples[i] for i in rows], pad_id), device))
        n = len(rows)
        loss[rows] = row_loss_sums(logits, targets, row, n).cpu().numpy()
        counts = torch.bincount(row, minlength=n)
        tokens[rows] = counts.cpu().numpy()
        predicted = logits.argmax(-1)
        miss = predicted != targets
        # answer tokens are flattened row by row, left to right: a token's place in its row
        # is its index less its row's start; the first miss per row is the smallest such place
        starts = torch.cumsum(counts, 0) - counts
        place = torch.arange(len(row), device=row.device) - starts[row]
        first = counts.clone().scatter_reduce(0, row[miss], place[miss], reduce="amin")
        agreed[rows] = first.cpu().numpy()
        differs = first < counts
        exact[rows] = ~differs.cpu().numpy()  # every answer token (EOS included) is the argmax
        guess[rows[differs.cpu().numpy()]] = predicted[(starts + first)[differs]].cpu().numpy()
        if progress is not None:
            progress(len(rows))
    model.train(was_training)
    return AnswerScores(loss, tokens, exact, agreed, guess)


def greedy_prefixes(
    answers: list[list[int]], scores: AnswerScores, budgets, eos_id: int
) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """What greedy decoding is known to write, from a teacher-forced pass alone.

    Greedy decoding writes a row's ``agreed`` answer tokens and then its ``guess``, so a row
    that failed the fast path need only be decoded from there: exactly what decoding from
    the start would write, without running the model over those tokens one at a time.

    Args:
        answers: Each row's answer tokens (EOS last), as scored.
        scores: :func:`score_answers` of those rows.
        budgets: Each row's budget of new tokens.

    Returns:
        Per row: the tokens known to come first (``guess`` included, within the budget, EOS
        left out), whether the row is decided already (it wrote EOS or spent its budget
        within them) and whether it stopped with EOS.
    """
    known, decided, stopped = [], np.zeros(len(answers), dtype=bool), np.zeros(len(answers), dtype=bool)
    for i, (answer, k, g, budget) in enumerate(zip(answers, scores.agreed, scores.guess, budgets, strict=True)):
        written = list(answer[:k]) + ([int(g)] if g >= 0 else [])
        if eos_id in written[:budget]:
            stopped[i] = decided[i] = True
            written = written[: written.index(eos_id)]
        elif len(written) >= budget:
            decided[i] = True
            written = written[:budget]
        known.append(written)
    return known, decided, stopped


@torch.inference_mode()
def greedy_decode(
    model,
    prompts: list[list[int]],
    budgets,
    eos_id: int,
    pad_id: int,
    batch_size: int,
    device,
    max_tokens: int | None = None,
    progress=None,
    order=None,
    draft: Callable[[int, list[int]], list[int]] | None = None,
    draft_tokens: int = 0,
) -> tuple[list[list[int]], np.ndarray]:
    """Greedy-decode each prompt for at most its own budget of new tokens.

    Rows of similar length (prompt plus budget) share a batch of at most ``batch_size``
    rows and ``max_tokens`` tokens (rows x longest prompt plus budget): short questions go
    in large batches, which a CPU decodes several times faster per token, and long ones in
    small batches, whose KV cache stays in memory. A batch's prompts are read in groups of
    similar length (:func:`_prefill`). A row leaves its batch as soon as it writes EOS or
    spends its budget, and its slice of the KV cache goes with it.
    Hand-written because Hugging Face ``generate`` keeps every row of a batch running until
    the last one stops (measured slower on the CPU: see ``benchmarks/evaluation_speed.py``),
    its continuous batching targets GPUs, and its assisted (speculative) decoding takes one
    row at a time.

    With ``draft``, decoding is speculative (Leviathan et al., 2023, with a guess instead of
    a draft model): each forward pass also reads a guess of how each row goes on and keeps
    the longest run of it that is the argmax at every place, then the argmax after that
    run. What is written is what one token at a time writes; only the number of passes
    changes (up to rounding: a pass over several tokens sums in another order, so a near-tie
    could break otherwise, as in the teacher-forced pass; in fp32 on the default sets none
    did: every prediction came out byte-identical). Up to ``draft_tokens`` guessed tokens are read per pass, shared among the
    batch's rows (a pass costs about its rows times its width on a CPU); a batch wider than
    that decodes one token at a time. Rejected guesses stay in the KV cache, masked, until
    they are half of it; then each row's cache is packed again.

    Args:
        model: A causal LM already on ``device``, in eval mode.
        prompts: Token ids of each prompt (chat form, generation prompt included).
        budgets: The most new tokens each prompt may get (EOS included).
        progress: Optional callable taking the number of rows just finished (a progress bar).
        order: Optional per-prompt key that batches are filled in (default: prompt plus
            budget); memory is bounded by prompt plus budget either way.
        draft: Optional callable ``(prompt index, tokens written so far) -> guessed next tokens``.
        draft_tokens: Guessed tokens per pass, across the batch (0: no guessing).

    Returns:
        Each prompt's new tokens (without the EOS that ended it) and whether it stopped
        with EOS within its budget.
    """
    cache_arg = _cache_argument(model)
    budgets = np.asarray(budgets, dtype=np.int64)
    outputs: list[list[int]] = [[] for _ in prompts]
    stopped = np.zeros(len(prompts), dtype=bool)
    lengths = np.array([len(p) for p in prompts], dtype=np.int64) + budgets
    for rows in split_by_tokens(np.arange(len(prompts)), lengths, max_tokens, batch_size, order):
        cache, mask, positions, first = _prefill(model, [prompts[i] for i in rows], pad_id, device, cache_arg)
        active = list(rows)
        # per row: tokens greedy decoding has chosen that are not yet recorded; the last of
        # them is not yet in the KV cache either
        chosen = [[t] for t in first]
        while active:
            keep = [
                _record(outputs[i], new, budgets[i], eos_id, stopped, i) for i, new in zip(active, chosen, strict=True)
            ]
            if not all(keep):
                if progress is not None:
                    progress(keep.count(False))
                if not any(keep):
                    break
                at = torch.tensor([k for k, kept in enumerate(keep) if kept], device=device)
                cache.batch_select_indices(at)
                mask, positions = mask[at], positions[at]
                active = [i for i, kept in zip(active, keep, strict=True) if kept]
                chosen = [c for c, kept in zip(chosen, keep, strict=True) if kept]
            width = min(draft_tokens // len(active), MAX_DRAFT) if draft is not None else 0
            guesses = [
                draft(i, outputs[i])[: min(width, budgets[i] - len(outputs[i]))] if width else [] for i in active
            ]
            width = max(len(g) for g in guesses)
            feed = torch.tensor(
                [[c[-1], *g, *[pad_id] * (width - len(g))] for c, g in zip(chosen, guesses, strict=True)], device=device
            )
            mask = torch.cat([mask, mask.new_ones((len(active), width + 1))], dim=1)
            with _grouped_query_attention(width > 0 and torch.device(device).type == "cpu"):
                logits = model(
                    input_ids=feed,
                    attention_mask=mask,
                    position_ids=positions + 1 + torch.arange(width + 1, device=device),
                    **{cache_arg: cache},
                    use_cache=True,
                ).logits
            best = logits.argmax(-1)
            # a guessed token stands where it is the argmax after every token before it
            taken = torch.cumprod((best[:, :-1] == feed[:, 1:]).long(), dim=1).sum(1)
            positions = positions + 1 + taken[:, None]
            if width:  # rejected guesses are masked; the cache is packed once they are half of it
                mask[:, -width - 1 :][torch.arange(width + 1, device=device)[None, :] > taken[:, None]] = 0
                if mask.shape[1] > 2 * int(mask.sum(1).max()) + 64:
                    mask = _pack_cache(cache, mask)
            chosen = [
                f[1 : 1 + n] + [b[n]] for f, b, n in zip(feed.tolist(), best.tolist(), taken.tolist(), strict=True)
            ]
    return outputs, stopped


#: the widest guess read per row and pass
MAX_DRAFT = 16
#: padded prompt tokens per forward pass of a prefill (see :func:`_prefill`)
PREFILL_TOKENS = 1024


def _prefill(model, prompts: list[list[int]], pad_id: int, device, cache_arg: str):
    """Read a batch's prompts into one KV cache, left-padded to the longest.

    Prompts are read in groups of similar length (at most ``PREFILL_TOKENS`` padded tokens
    a pass, shortest first) and their caches then laid side by side: a pass costs its padded
    tokens on a CPU, and one pass over a whole batch pads every prompt to the longest: the
    base model's 100 test questions are 3,573 prompt tokens, 11,900 padded, and decoding them
    took 38 s read in groups against 54 s in one pass (2-core AVX2 CPU, fp32; the same
    tokens written). A row's cache is padded on the left and masked, as it is when the
    row is padded in a pass.

    Returns:
        The cache, its attention mask, each row's last position (a column) and the argmax
        after each prompt.
    """
    from transformers import DynamicCache

    whole = to_device(left_pad(prompts, pad_id), device)
    width = whole["input_ids"].shape[1]
    lengths = np.array([len(p) for p in prompts], dtype=np.int64)
    first = [0] * len(prompts)
    layers: list[list[torch.Tensor]] = []  # per layer: keys, values of the whole batch
    for group in split_by_tokens(np.arange(len(prompts)), lengths, PREFILL_TOKENS):
        batch = to_device(left_pad([prompts[i] for i in group], pad_id), device)
        part = DynamicCache()
        logits = model(
            **batch,
            **{cache_arg: part},
            use_cache=True,
            # a position tensor, not the int 1: see answer_logits on slices and the output head
            logits_to_keep=torch.tensor([batch["input_ids"].shape[1] - 1], device=device),
        ).logits
        for i, token in zip(group, logits[:, -1].argmax(-1).tolist(), strict=True):
            first[i] = token
        at = torch.as_tensor(group, device=device)
        start = width - batch["input_ids"].shape[1]
        for n, layer in enumerate(part.layers):
            if n == len(layers):
                shape = (len(prompts), layer.keys.shape[1], width, layer.keys.shape[-1])
                layers.append([layer.keys.new_zeros(shape), layer.values.new_zeros(shape)])
            layers[n][0][at, :, start:] = layer.keys
            layers[n][1][at, :, start:] = layer.values
    cache = DynamicCache()
    cache.layer_class_to_replicate = _growing_layer()
    for n, (keys, values) in enumerate(layers):
        cache.update(keys, values, n)
    return cache, whole["attention_mask"], whole["position_ids"][:, -1:], first


def _record(output: list[int], tokens: list[int], budget: int, eos_id: int, stopped: np.ndarray, i: int) -> bool:
    """Append a row's newly chosen tokens; False once it wrote EOS or spent its budget."""
    for t in tokens:
        if t == eos_id:
            stopped[i] = True
            return False
        output.append(t)
        if len(output) >= budget:
            return False
    return True


def _pack_cache(cache, mask: torch.Tensor) -> torch.Tensor:
    """Drop the KV cache's masked entries (rejected guesses), each row's kept ones in their
    order and left-padded to the longest; returns the matching attention mask."""
    index = torch.argsort(mask, dim=1, stable=True)[:, -int(mask.sum(1).max()) :]  # masked first, then kept
    for layer in cache.layers:
        layer.select_positions(index)
    return mask.gather(1, index)


@contextlib.contextmanager
def _grouped_query_attention(on: bool):
    """Let transformers' SDPA attention read grouped key/value heads as they are (torch's
    ``enable_gqa``) for a pass of several tokens over a KV cache, instead of copying each
    three times (``repeat_kv``): on a 2-core CPU a 25-row, 9-token pass over 1,000 cached
    tokens took 2.8 s with copies and 1.0 s without; the logits were bit-identical. It is
    transformers' own switch, read at each call; only these passes turn it on."""
    if not on:
        yield
        return
    before = os.environ.get("TRANSFORMERS_SDPA_FORCE_GQA")
    os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["TRANSFORMERS_SDPA_FORCE_GQA"]
        else:
            os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] = before


def _cache_argument(model) -> str:
    # transformers 5.24 renamed the forward's `past_key_values` to `cache` (the old name warns)
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@functools.cache
def _growing_layer():
    """A KV-cache layer that grows by doubling a preallocated buffer.

    Hand-written: Hugging Face's ``DynamicLayer`` concatenates every new token onto the whole
    cache, copying it each step (measured on a 2-core CPU, fp32, 32 rows: 591 ms a step at
    1,000 cached tokens against 202 ms with this layer), and its ``StaticLayer`` attends over
    its full length from the first step and cannot drop finished rows.
    """
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
                self._buffers, self._length = None, 0
            new = key_states.shape[-2]
            if self._buffers is None or self._length + new > self._buffers[0].shape[-2]:
                capacity = max(2 * (self._length + new), 64)
                grown = []
                for old, states in zip(self._buffers or (None, None), (key_states, value_states), strict=True):
                    buffer = states.new_empty(*states.shape[:2], capacity, states.shape[-1])
                    if self._length:
                        buffer[:, :, : self._length] = old[:, :, : self._length]
                    grown.append(buffer)
                self._buffers = tuple(grown)
            for buffer, states in zip(self._buffers, (key_states, value_states), strict=True):
                buffer[:, :, self._length : self._length + new] = states
            self._length += new
            self.keys, self.values = (b[:, :, : self._length] for b in self._buffers)
            return self.keys, self.values

        def select_positions(self, index: torch.Tensor) -> None:
            """Keep, per row, the cached positions ``index[row]`` in that order."""
            at = index[:, None, :, None].expand(-1, self._buffers[0].shape[1], -1, self._buffers[0].shape[-1])
            self._buffers = tuple(b[:, :, : self._length].gather(2, at) for b in self._buffers)
            self._length = index.shape[1]
            self.keys, self.values = self._buffers

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if self._length:
                self._buffers = tuple(b[indices] for b in self._buffers)
                self.keys, self.values = (b[:, :, : self._length] for b in self._buffers)

    return GrowingLayer
