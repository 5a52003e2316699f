"""Nodes of the evaluation pipeline that make predictions: check the inputs, answer every
evaluation set with the fine-tuned and with the base model, and score each completion.

A completion is read three ways. The *strict* reading (the headline metric) counts it
correct only if it is a well-formed answer in the format the model was trained on and the
model stopped there (EOS within the budget). The *exact* reading asks more: the completion is
the verifier's own answer, every step of a tally included, so a right total reached by
miscounts that cancel is not counted. The *lenient* reading takes its last integer, the
only fair reading of a zero-shot base model's prose. The decoding budget of a question is
read from the question alone: the task's bound on a correct answer's tokens plus a margin.
Decoding is speculative: each forward pass also reads the task's guess of how a row goes on
(a tally's next steps) and keeps what the model's own argmax writes, so it writes what
one token at a time writes, in fewer passes.
"""

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from synthtune.config import EvaluationParams, parse
from synthtune.inference import greedy_decode, greedy_prefixes, score_answers
from synthtune.llm import LanguageModel, apply_fine_tuning, encode_rows, pick_device, pick_dtype, set_threads
from synthtune.tasks import get_task
from synthtune.tasks.base import Task, parse_last_integer

logger = logging.getLogger(__name__)

MODELS = ("tuned", "base")
#: the readings of a completion (see :func:`score_completions`): each row has ``<reading>_correct``
READINGS = ("strict", "exact", "lenient")
REQUIRED_COLUMNS = ("row_id", "text", "prompt", "answer", "answer_format", "label")
INT64_MAX = np.iinfo(np.int64).max


def evaluation_params(params: dict[str, Any]) -> EvaluationParams:
    """The ``evaluation`` block, checked (see :class:`synthtune.config.EvaluationParams`)."""
    return parse(EvaluationParams, params, "evaluation")


def check_evaluation_inputs(task_name: str, params: dict[str, Any], **sets: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Check the parameters and every evaluation set before any model runs.

    Each set must have the columns scoring needs, and its labels must be those the task's
    verifier computes: a set that disagrees is rejected, naming the set and its first bad row.

    Returns:
        The sets, unchanged, keyed by name.
    """
    config = evaluation_params(params)
    if set(sets) != set(config.sets):
        raise ValueError(
            f"evaluation.sets names {sorted(config.sets)}, but the pipeline was built for {sorted(sets)}: the list "
            "shapes the pipeline and is read from conf/base/parameters_evaluation.yml; change it there"
        )
    task = get_task(task_name)
    for name, rows in sets.items():
        check_eval_set(rows, task, name, config.sets[name])
    return sets


def check_eval_set(rows: pd.DataFrame, task: Task, name: str, dataset: str) -> None:
    """Fail unless ``rows`` has the scoring columns and labels equal to the verifier's."""
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(
            f"evaluation set {name!r} ({dataset}): missing column(s) {missing}; it has {list(rows.columns)}"
        )
    if rows.empty:
        raise ValueError(f"evaluation set {name!r} ({dataset}) has no rows")
    unknown = sorted(set(rows["answer_format"]) - set(task.formats))
    if unknown:
        raise ValueError(
            f"evaluation set {name!r} ({dataset}): answer format(s) {unknown} unknown to task {task.name!r}; "
            f"allowed: {list(task.formats)}"
        )
    recomputed = task.label(rows)
    wrong = np.flatnonzero(rows["label"].to_numpy() != recomputed)
    if len(wrong):
        first = rows.iloc[wrong[0]]
        raise ValueError(
            f"evaluation set {name!r} ({dataset}): {len(wrong)} label(s) disagree with the {task.name} verifier; "
            f"first: row {wrong[0]} (row_id {first['row_id']!r}, text {first['text'][:60]!r}) has label "
            f"{first['label']}, the verifier says {recomputed[wrong[0]]}"
        )


def load_tuned_model(base_model: LanguageModel, fine_tuned: Any) -> LanguageModel:
    """The base model with the fine-tuning merged in (LoRA) or the fully fine-tuned model."""
    return apply_fine_tuning(base_model, fine_tuned)


def sample_rows(rows: pd.DataFrame, max_rows: int | None, seed: int, by: str | None) -> pd.DataFrame:
    """A seeded sample of at most ``max_rows`` rows of each part of a set (the values of
    column ``by``, where the set has it), in their original order."""
    if max_rows is None:
        return rows
    parts = rows.groupby(by, sort=True).indices.values() if by in rows.columns else [np.arange(len(rows))]
    rng = np.random.default_rng(seed)
    keep = [idx if len(idx) <= max_rows else rng.choice(idx, max_rows, replace=False) for idx in parts]
    return rows.iloc[np.sort(np.concatenate(keep))]


def decoding_budgets(task: Task, rows: pd.DataFrame, tokenizer, decoding) -> np.ndarray:
    """Each question's new-token budget: the task's bound on a correct answer (from the
    string alone, never the label) plus ``margin_tokens``, within [``min``, ``max_new_tokens``]."""
    bound = np.zeros(len(rows), dtype=np.int64)
    for fmt, idx in rows.groupby("answer_format", sort=True).indices.items():
        bound[idx] = task.max_answer_tokens(rows.iloc[idx], fmt, tokenizer)
    capped = int((bound > decoding.max_new_tokens).sum())
    if capped:
        logger.warning(
            "%d question(s) may need more than evaluation.decoding.max_new_tokens=%d tokens to answer; "
            "their budget is capped there",
            capped,
            decoding.max_new_tokens,
        )
    return np.clip(bound + decoding.margin_tokens, decoding.min_new_tokens, decoding.max_new_tokens)


def predict_eval_set(
    model: LanguageModel,
    rows: pd.DataFrame,
    task_name: str,
    params: dict[str, Any],
    model_name: str,
    set_name: str,
    sample: bool = True,
) -> pd.DataFrame:
    """Answer every row of an evaluation set (or, with ``sample``, the model's sample of it,
    ``evaluation.models.<model>.max_rows``) and score it.

    With the model's ``fast_path``, each row is first scored with one teacher-forced forward pass:
    where the argmax at every position of the expected answer (EOS included) is that
    answer, and the answer fits the row's budget, greedy decoding would write exactly it,
    so it is taken as the completion (``teacher_forced``). Every other row is greedy-decoded
    within its budget, starting after what the same pass shows decoding would write first:
    the answer's tokens up to the first one that is not the argmax, then that argmax
    (:func:`greedy_prefixes`). The fast path changes how long scoring takes, never its result.

    Returns:
        The rows with ``model``, ``set``, ``part`` (the set, or ``set_value`` of its
        ``report_by`` column), ``budget``, ``teacher_forced``, ``completion`` (decoded
        without skipping special tokens), ``new_tokens``, ``stopped`` and the scores of
        :func:`score_completions`.
    """
    config = evaluation_params(params)
    settings = getattr(config.models, model_name)
    task = get_task(task_name)
    if sample:
        rows = sample_rows(rows, settings.max_rows, config.seed, config.report_by)
    rows = rows.reset_index(drop=True)
    set_threads()
    device = pick_device(config.device)
    net = model.model.to(device=device, dtype=pick_dtype(config.dtype, device)).eval()
    tokenizer = model.tokenizer
    budgets = decoding_budgets(task, rows, tokenizer, config.decoding)
    if settings.max_new_tokens is not None:
        budgets = np.minimum(budgets, settings.max_new_tokens)
    examples = encode_rows(rows, tokenizer, config.system_prompt)
    known: list[list[int]] = [[] for _ in examples]
    decided = np.zeros(len(rows), dtype=bool)
    stopped = np.zeros(len(rows), dtype=bool)
    if settings.fast_path and len(rows):
        with tqdm(total=len(rows), desc=f"score {model_name}/{set_name}", unit="row") as bar:
            scores = score_answers(
                net, examples, tokenizer.pad_token_id, config.batch_size, device, config.max_batch_tokens, bar.update
            )
        known, decided, stopped = greedy_prefixes(
            [e["answer"] for e in examples], scores, budgets, tokenizer.eos_token_id
        )
    # a row whose answer greedy decoding writes in full and stops on (within its budget)
    written_first = np.array([len(k) for k in known], dtype=np.int64)
    fast = stopped & (written_first == [len(e["answer"]) - 1 for e in examples])
    pending = np.flatnonzero(~decided)
    remaining = budgets - written_first
    resumed = [examples[i]["prompt"] + known[i] for i in pending]
    # Failed rows are batched by the tokens they resume from (prompt plus agreed answer): a
    # batch is left-padded to its longest, and every step attends over that padding for every
    # row, while a row that stops early leaves the batch. Measured on an earlier default model's
    # failed rows (fp32, 2-core AVX512 CPU, identical outputs): 103 s against 123 s on test
    # and 82 s against 100 s on the probes when batched by the tokens still to write instead.
    # Memory is bounded by each row's prompt plus its whole budget.
    prefill = np.array([len(p) for p in resumed], dtype=np.int64)
    outputs, ended = [None] * len(rows), np.zeros(len(rows), dtype=bool)
    with tqdm(total=len(pending), desc=f"decode {model_name}/{set_name}", unit="row") as bar:
        out, end = greedy_decode(
            net,
            resumed,
            remaining[pending],
            tokenizer.eos_token_id,
            tokenizer.pad_token_id,
            config.decoding.batch_size,
            device,
            config.decoding.max_batch_tokens,
            progress=bar.update,
            order=prefill,
            draft=task_guesses(task, tokenizer, rows.iloc[pending], [known[i] for i in pending]),
            draft_tokens=config.decoding.guess_tokens,
        )
        for i, o, e in zip(pending, out, end, strict=True):
            outputs[i], ended[i] = o, e
    written = list(known)
    for i in pending:
        written[i] = known[i] + outputs[i]
        stopped[i] = ended[i]
    new_tokens = np.array([len(w) for w in written], dtype=np.int64) + stopped
    # special tokens are kept: a stray <|im_start|> is part of what the model wrote
    completions = tokenizer.batch_decode(written, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    completions = np.where(fast, rows["answer"].to_numpy(dtype=object), np.array(completions, dtype=object))
    part = rows[config.report_by].map(lambda v: f"{set_name}_{v}") if config.report_by in rows else set_name
    predictions = rows.assign(
        model=model_name,
        set=set_name,
        part=part,
        budget=budgets,
        teacher_forced=fast,
        completion=completions,
        new_tokens=new_tokens,
        stopped=stopped,
    )
    return score_completions(predictions, task)


def task_guesses(
    task: Task, tokenizer, rows: pd.DataFrame, written: list[list[int]]
) -> Callable[[int, list[int]], list[int]]:
    """What speculative decoding reads (``greedy_decode``'s ``draft``): for row ``k`` of
    ``rows`` and the tokens decoded so far, the task's guess of how its completion goes on
    (:meth:`Task.guess_continuation`), from its string and what it wrote: ``written[k]``
    (the tokens it resumes after), then the new ones."""
    texts, formats = rows["text"].tolist(), rows["answer_format"].tolist()

    def guess(k: int, new: list[int]) -> list[int]:
        so_far = tokenizer.decode(written[k] + new, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        text = task.guess_continuation(texts[k], formats[k], so_far)
        return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    return guess


def score_completions(predictions: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Read each completion strictly, exactly and leniently, and compare with the label.

    Adds ``strict_answer`` (the answer of a completion well-formed in the row's answer
    format, else missing), ``lenient_answer`` (its last integer), ``strict_correct``
    (well-formed, stopped with EOS, and equal to the label), ``exact_correct`` (stopped, and
    the completion is the row's ``answer``, the verifier's own, character for character) and
    ``lenient_correct``.
    Numbers beyond int64 (a runaway ``2222...``) are compared exactly, then stored as
    missing: such an answer is wrong, never a crash.
    """
    strict = [
        task.parse_answer(c, f) for c, f in zip(predictions["completion"], predictions["answer_format"], strict=True)
    ]
    lenient = [parse_last_integer(c) for c in predictions["completion"]]
    labels = predictions["label"].tolist()
    stopped = predictions["stopped"].to_numpy(dtype=bool)
    return predictions.assign(
        strict_answer=as_int64(strict),
        lenient_answer=as_int64(lenient),
        strict_correct=stopped & np.array([s == y for s, y in zip(strict, labels, strict=True)], dtype=bool),
        exact_correct=stopped & (predictions["completion"].to_numpy() == predictions["answer"].to_numpy()),
        lenient_correct=np.array([v == y for v, y in zip(lenient, labels, strict=True)], dtype=bool),
    )


def as_int64(values: list[int | None]) -> pd.arrays.IntegerArray:
    """Python ints as a nullable Int64 array; missing and out-of-range values become NA."""
    return pd.array([v if v is not None and abs(v) <= INT64_MAX else None for v in values], dtype="Int64")


def measure_perplexity(model: LanguageModel, texts: pd.DataFrame, params: dict[str, Any]) -> dict[str, float]:
    """Perplexity of plain text (no chat template) under the model: what fine-tuning cost.

    Each text's tokens after its first are scored given the ones before, in one
    teacher-forced pass per batch; the perplexity is ``exp`` of the mean token loss.
    """
    config = evaluation_params(params)
    set_threads()
    device = pick_device(config.device)
    net = model.model.to(device=device, dtype=pick_dtype(config.dtype, device)).eval()
    ids = model.tokenizer(texts["text"].tolist(), add_special_tokens=False)["input_ids"]
    examples = [{"prompt": t[:1], "answer": t[1:]} for t in ids if len(t) > 1]
    scores = score_answers(
        net, examples, model.tokenizer.pad_token_id, config.batch_size, device, config.max_batch_tokens
    )
    return {
        "perplexity": float(np.exp(scores.loss.sum() / scores.tokens.sum())),
        "tokens": int(scores.tokens.sum()),
        "texts": len(examples),
    }
