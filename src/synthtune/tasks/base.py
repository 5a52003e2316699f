"""The task interface: what a skill must say about its rows for the pipelines to work.

A task is one module under ``synthtune.tasks`` exposing ``TASK``, an instance of
:class:`Task`. The pipelines only ever call these methods, so adding a task is one module
plus its parameters; no pipeline changes.
"""

import re
import string
from abc import ABC, abstractmethod

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from synthtune import profiles

_LAST_INTEGER = re.compile(r"(-?\d+)(?!.*\d)", re.DOTALL)


def count_letters(text: str) -> int:
    """Alphabetic characters in ``text`` (``str.isalpha``): spaces, digits, punctuation are not letters."""
    return sum(char.isalpha() for char in text)


# str.isalpha for every code point of the Basic Multilingual Plane, computed once (~10 ms).
_ALPHA_BMP = np.fromiter((chr(i).isalpha() for i in range(0x10000)), dtype=bool, count=0x10000)


def count_letters_vectorised(texts, chunk: int = 20_000) -> np.ndarray:
    """``count_letters`` over many strings at once: the same ``str.isalpha`` test, applied
    with numpy to every code point (chunked so the arrays stay cache-sized)."""
    texts = list(texts)
    return np.concatenate(
        [np.zeros(0, dtype=np.int64)] + [_count_chunk(texts[i : i + chunk]) for i in range(0, len(texts), chunk)]
    )


def _count_chunk(texts: list[str]) -> np.ndarray:
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    alpha = _ALPHA_BMP[np.minimum(codes, 0xFFFF)]
    for i in np.flatnonzero(codes > 0xFFFF):  # rare: letters outside the BMP (e.g. some scripts)
        alpha[i] = chr(codes[i]).isalpha()
    counts = np.zeros(len(texts), dtype=np.int64)
    nonempty = lengths > 0
    if nonempty.any():
        starts = (np.cumsum(lengths) - lengths)[nonempty]
        counts[nonempty] = np.add.reduceat(alpha, starts, dtype=np.int64)
    return counts


def parse_last_integer(completion: str) -> int | None:
    """The final integer of a completion, so one parser reads every answer format."""
    match = _LAST_INTEGER.search(completion)
    return int(match.group(1)) if match else None


class Task(ABC):
    """A narrow skill: how its rows are made, labelled, verified, described and asked."""

    name: str
    #: Paraphrased instructions used for training; each holds ``{text}`` (and task fields).
    train_templates: tuple[str, ...]
    #: Instructions never seen in training, for the ``heldout_templates`` evaluation set.
    heldout_templates: tuple[str, ...]
    #: Answer formats this task renders; ``direct`` is always one of them.
    formats: tuple[str, ...]

    # --- making rows ----------------------------------------------------------------------
    def generate(self, n, profile, vocabulary, rng, profile_params) -> pd.DataFrame:
        """Draw ``n`` rows: strings from the profile, plus the task's own fields."""
        texts = profiles.sample_texts(profile, n, vocabulary, rng, profile_params)
        return self.add_fields(pd.DataFrame({"text": texts}), rng)

    def add_fields(self, rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """Add task-specific fields to rows that have a ``text`` (none by default)."""
        return rows

    @abstractmethod
    def label(self, rows: pd.DataFrame) -> np.ndarray:
        """Recompute the label of every row from its fields: the task's verifier."""

    # --- asking and answering -------------------------------------------------------------
    def render_prompts(self, rows: pd.DataFrame, templates: list[str] | tuple[str, ...], rng) -> pd.DataFrame:
        """Ask each row with a template drawn at random; returns ``prompt`` and ``template_id``."""
        choice = rng.integers(0, len(templates), len(rows))
        prompts = np.empty(len(rows), dtype=object)
        for k, template in enumerate(templates):
            picked = choice == k
            prompts[picked] = fill_template(template, rows[picked])
        return pd.DataFrame({"prompt": prompts, "template_id": choice.astype(np.int64)}, index=rows.index)

    def render_answers(self, rows: pd.DataFrame, labels, fmt: str) -> list[str]:
        """The target completion of each row in answer format ``fmt``."""
        if fmt not in self.formats:
            raise ValueError(f"answer format {fmt!r} is unknown for task {self.name!r}; allowed: {list(self.formats)}")
        if fmt == "direct":
            return [str(int(v)) for v in labels]
        return self.render_steps(rows, labels, fmt)

    def render_steps(self, rows: pd.DataFrame, labels, fmt: str) -> list[str]:
        """Step-by-step answers; tasks with formats beyond ``direct`` override this."""
        raise NotImplementedError(fmt)

    def parse_answer(self, completion: str) -> int | None:
        """The number a completion answers with (its last integer)."""
        return parse_last_integer(completion)

    # --- describing -----------------------------------------------------------------------
    def features(self, rows: pd.DataFrame, labels) -> pd.DataFrame:
        """Per-row features for slicing and distribution checks (see :func:`text_features`)."""
        labels = np.asarray(labels, dtype=np.int64)
        return text_features(rows["text"]).assign(
            answer=labels, answer_digits=np.char.str_len(np.abs(labels).astype(str))
        )


def fill_template(template: str, rows: pd.DataFrame) -> np.ndarray:
    """``template.format(**row)`` for every row, by concatenating whole columns (vectorised)."""
    out = np.full(len(rows), "", dtype=object)
    for literal, field, _, _ in string.Formatter().parse(template):
        out = out + literal
        if field is not None:
            column = rows[field]
            out = out + (column if column.dtype == object else column.astype(str)).to_numpy(dtype=object)
    return out


def text_features(texts) -> pd.DataFrame:
    """Word-level features of many strings, vectorised with pyarrow and numpy.

    Columns: ``n_words``, ``mean_word_length`` (letters per word), ``one_letter_share``
    (share of words with exactly one letter), ``repeated_word_share`` (share of words that
    repeat an earlier word of the string, case-insensitive), ``max_repeat`` (most
    occurrences of one word), ``has_capital``, ``has_punctuation``.
    """
    arr = pa.array(list(texts), type=pa.string())
    n = len(arr)
    tokens = pc.utf8_split_whitespace(arr)
    flat = pc.list_flatten(tokens)
    # splitting "" or surrounding spaces yields empty tokens: they are not words
    nonempty = pc.greater(pc.utf8_length(flat), 0)
    flat = pc.filter(flat, nonempty)
    parent = pc.filter(pc.list_parent_indices(tokens), nonempty).to_numpy(zero_copy_only=False)
    n_words = np.bincount(parent, minlength=n).astype(np.int64)
    letters = pc.utf8_length(pc.replace_substring_regex(flat, r"\P{L}", "")).to_numpy(zero_copy_only=False)
    keys = pd.factorize(pc.utf8_lower(pc.replace_substring_regex(flat, r"\P{L}", "")).to_numpy(zero_copy_only=False))[0]
    pair, counts = np.unique(parent.astype(np.int64) * (keys.max(initial=0) + 1) + keys, return_counts=True)
    pair_row = pair // (keys.max(initial=0) + 1)
    distinct = np.bincount(pair_row, minlength=n)
    max_repeat = np.zeros(n, dtype=np.int64)
    np.maximum.at(max_repeat, pair_row, counts)
    safe = np.maximum(n_words, 1)
    return pd.DataFrame(
        {
            "n_words": n_words,
            "mean_word_length": np.bincount(parent, weights=letters, minlength=n) / safe,
            "one_letter_share": np.bincount(parent, weights=letters == 1, minlength=n) / safe,
            "repeated_word_share": (n_words - distinct) / safe,
            "max_repeat": max_repeat,
            "has_capital": pc.match_substring_regex(arr, r"\p{Lu}").to_numpy(zero_copy_only=False),
            "has_punctuation": pc.match_substring_regex(arr, r"\p{P}").to_numpy(zero_copy_only=False),
        }
    )
