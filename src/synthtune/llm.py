"""What training and evaluation share about the language model: containers, device and
precision choice, the chat format, rows encoded as prompt and answer ids, left-padded
batches (split by a token budget) and the logits that predict each answer token."""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

# Read only where a flag is needed; /proc/cpuinfo is Linux's, elsewhere we assume no bf16.
_CPUINFO = Path("/proc/cpuinfo")
_FAST_BF16_FLAGS = {"amx_bf16", "avx512_bf16"}
IGNORE_INDEX = -100


@dataclass
class LanguageModel:
    """A causal language model with its tokenizer, as the ``base_model`` dataset holds it."""

    model: Any
    tokenizer: Any


@dataclass
class LoraAdapter:
    """A trained adapter as loaded from disk: its peft config and its weights."""

    config: Any
    weights: dict[str, torch.Tensor]


def apply_fine_tuning(base_model: LanguageModel, fine_tuned: Any) -> LanguageModel:
    """The base model with the training result in it, ready for inference.

    Args:
        base_model: The model the training started from, with its tokenizer.
        fine_tuned: A :class:`LoraAdapter` (merged into the base weights, so inference pays
            nothing for it) or, after ``method: full``, the whole fine-tuned model.
    """
    if not isinstance(fine_tuned, LoraAdapter):
        return LanguageModel(fine_tuned, base_model.tokenizer)
    from peft import get_peft_model, set_peft_model_state_dict

    peft_model = get_peft_model(base_model.model, fine_tuned.config)
    result = set_peft_model_state_dict(peft_model, fine_tuned.weights)
    if result.unexpected_keys:
        raise ValueError(f"the adapter holds weights the base model has no place for: {result.unexpected_keys[:5]}")
    return LanguageModel(peft_model.merge_and_unload(), base_model.tokenizer)


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AMX or AVX512-BF16).

    Without either, PyTorch emulates bf16 matmuls and they run ~100x slower than fp32
    (measured 0.001 vs 0.115 TFLOP/s on an AVX2-only EPYC), so fp32 is the fast path.
    """
    try:
        flags = set(_CPUINFO.read_text().split())
    except OSError:
        return False
    return bool(flags & _FAST_BF16_FLAGS)


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` takes CUDA when present, else the CPU; ``cpu``/``cuda`` force one."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {requested!r}")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but torch sees no CUDA device")
    return torch.device(requested)


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """``auto`` takes bf16 where the hardware runs it fast, fp32 elsewhere."""
    choices = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    if requested in choices:
        return choices[requested]
    if requested != "auto":
        raise ValueError(f"dtype must be 'auto', 'float32' or 'bfloat16', got {requested!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


def set_threads() -> None:
    """Use every core the process may run on (torch defaults to physical cores only), or as
    many threads as ``OMP_NUM_THREADS`` says where it is set (processes sharing the cores,
    e.g. the test suite's workers, each take a share)."""
    requested = os.environ.get("OMP_NUM_THREADS", "")
    if requested.isdigit() and int(requested) > 0:
        torch.set_num_threads(int(requested))
    else:
        torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())


def chat_text(tokenizer, prompt: str, system_prompt: str = "") -> str:
    """The model-side text of a question: the tokenizer's chat template, or the bare prompt.

    An explicit (empty) system message keeps SmolLM2's template from inserting its default
    20-token system prompt in every row.
    """
    if not getattr(tokenizer, "chat_template", None):
        return prompt + "\n"
    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompts(tokenizer, prompts: list[str], system_prompt: str = "") -> list[list[int]]:
    """Token ids of each question in chat form, without the answer."""
    texts = [chat_text(tokenizer, p, system_prompt) for p in prompts]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def encode_answers(tokenizer, answers: list[str]) -> list[list[int]]:
    """Token ids of each answer followed by EOS, the token the model must learn to stop with."""
    ids = tokenizer(list(answers), add_special_tokens=False)["input_ids"]
    return [a + [tokenizer.eos_token_id] for a in ids]


def left_pad(sequences: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad token id lists into ``input_ids``, ``attention_mask`` and ``position_ids``.

    Left padding puts every row's end at the same column, so the answers of a batch sit in
    its last columns and the 49k-wide output head runs only there. Positions count from
    each row's first real token.
    """
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        input_ids[i, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[i, width - len(seq) :] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": mask, "position_ids": positions}


def encode_rows(rows: pd.DataFrame, tokenizer, system_prompt: str = "") -> list[dict[str, list[int]]]:
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
    return batch


def to_device(batch: dict[str, Any], device) -> dict[str, Any]:
    """The batch with its tensors on ``device``."""
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def answer_logits(
    model, batch: dict[str, Any], answer_only_head: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The logits that predict the batch's answer tokens, their labels and their rows.

    All three are flattened over the batch's answer tokens, row by row, left to right: a
    tokens x vocabulary matrix, the label of each, and the row it belongs to. The output head
    runs only at the positions that predict an answer token, given to the model as a boolean
    ``logits_to_keep`` mask: its hidden states are gathered into one contiguous matrix, so
    the head is one matrix product over real answer tokens, with no columns of padding.
    (An int ``logits_to_keep`` slices a view that is not contiguous, which ``aten::matmul``
    cannot fold: it copies the 49k x 576 head once per row. Measured on 16 rows x 41 columns
    on a 2-core AMX CPU: 1.46 s against 0.04 s in bf16; a default training step took 1.6x
    as long.) ``answer_only_head=False`` runs the head on every column (the Hugging Face
    default), which costs more FLOPs and changes nothing else.
    """
    labels = batch["labels"]
    predicts = torch.zeros_like(labels, dtype=torch.bool)  # the logits at t predict the token at t + 1
    predicts[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        logits_to_keep=predicts if answer_only_head else 0,
        use_cache=False,
    ).logits
    if not answer_only_head:
        logits = logits[predicts]
    return logits, labels[:, 1:][predicts[:, :-1]], predicts.nonzero()[:, 0]


def per_row_sum(values: torch.Tensor, rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Sum flattened per-token ``values`` into their ``rows`` (as :func:`answer_logits` gives them)."""
    return values.new_zeros(n_rows).index_add_(0, rows, values)


def row_loss_sums(logits: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Each row's summed answer-token cross-entropy, from :func:`answer_logits`' outputs (in fp32)."""
    return per_row_sum(F.cross_entropy(logits.float(), targets, reduction="none"), rows, n_rows)


def split_by_tokens(
    idx: np.ndarray,
    lengths: np.ndarray,
    max_tokens: int | None,
    max_rows: int | None = None,
    order: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Split a batch into micro-batches of at most ``max_tokens`` padded tokens each.

    A batch within the budget comes back whole and in its order (no rows: no batches).
    Otherwise its rows are taken in the order of ``order`` (default: ``lengths``, shortest
    first) and a micro-batch closes before the row that would take it over ``max_tokens``
    (rows x its longest row) or over ``max_rows`` rows; a row longer than the budget gets a
    micro-batch of its own. Hand-written: samplers in the field (fairseq's, torchtune's
    packing) batch a whole dataset by tokens, which would change which rows share an
    optimizer step; here only a step's memory changes, never its gradient. Evaluation uses
    it to batch questions of similar length, and failed rows by the tokens they resume from
    (``order``) within the memory of their prompt plus budget (``lengths``).
    """
    idx = np.asarray(idx)
    lengths = np.asarray(lengths)
    if len(idx) == 0:
        return []
    fits_rows = max_rows is None or len(idx) <= max_rows
    if fits_rows and (max_tokens is None or len(idx) * lengths[idx].max() <= max_tokens):
        return [idx]
    key = lengths if order is None else np.asarray(order)
    parts, current, longest = [], [], 0
    for i in idx[np.argsort(key[idx], kind="stable")]:
        wider = max(longest, int(lengths[i]))
        full = max_rows is not None and len(current) == max_rows
        if current and (full or (max_tokens is not None and (len(current) + 1) * wider > max_tokens)):
            parts.append(np.array(current))
            current, wider = [], int(lengths[i])
        current.append(i)
        longest = wider
    parts.append(np.array(current))
    return parts
