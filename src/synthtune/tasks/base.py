"""The task interface: what a skill must say about its rows for the pipelines to work.

A task is one module under ``synthtune.tasks`` exposing ``TASK``, an instance of
:class:`Task`. The pipelines only ever call these methods, so adding a task is one module
plus its parameters; no pipeline changes.
"""

import functools
import re
import string
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from synthtune import profiles
from synthtune.text import text_features

_LAST_INTEGER = re.compile(r"(-?\d+)(?!.*\d)", re.DOTALL)
#: The columns of a sub-skill exercise table.
SUBSKILL_COLUMNS = ["row_id", "subskill", "text", "prompt", "template_id", "answer"]
#: A count as a well-formed answer writes it: ASCII digits, no sign, no leading zero.
COUNT = r"(0|[1-9][0-9]*)"


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
    """The lenient reading of a completion: its last integer, whatever surrounds it.

    It reads any format and any prose (what a zero-shot base model can be judged on), and
    so it is fooled by ``"7 7 7 7"``, a truncated tally ending ``(7`` or ``"12. No wait:
    7"``; the strict reading is :meth:`Task.parse_answer`.
    """
    match = _LAST_INTEGER.search(completion)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Subskill:
    """An exercise of one step the task's answers rely on, made from a list of words.

    Attributes:
        templates: Instructions, each holding ``{text}`` (the row's words joined by spaces).
        render: The words of a row -> its answer; it is also the verifier of the row.
        pattern: A pattern a well-formed answer matches in full.
    """

    templates: tuple[str, ...]
    render: Callable[[list[str]], str]
    pattern: str


class Task(ABC):
    """A narrow skill: how its rows are made, labelled, verified, described and asked."""

    name: str
    #: Paraphrased instructions used for training; each holds ``{text}`` (and task fields).
    train_templates: tuple[str, ...]
    #: Instructions never seen in training, for the ``heldout_templates`` evaluation set.
    heldout_templates: tuple[str, ...]
    #: Answer formats this task renders; ``direct`` is always one of them.
    formats: tuple[str, ...]
    #: Per format, a pattern a well-formed answer matches in full; group 1 is the answer.
    answer_patterns: dict[str, str]
    #: Sub-skills the task declares: exercises made from the vocabulary (e.g. each word's
    #: letter count), mixed into training at a ratio set in parameters.
    subskills: dict[str, Subskill] = {}

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

    def parse_answer(self, completion: str, fmt: str) -> int | None:
        """The strict reading: the answer of a completion that is well-formed in ``fmt``.

        The whole completion must match the format's pattern (``answer_patterns``): for
        ``direct`` the number alone, for a step format its steps and then ``Answer: N``.
        Anything else (prose, a repeated or truncated answer, a second guess) is ``None``.
        """
        if fmt not in self.answer_patterns:
            raise ValueError(f"answer format {fmt!r} is unknown for task {self.name!r}; allowed: {list(self.formats)}")
        match = _compiled(self.answer_patterns[fmt]).fullmatch(completion)
        return int(match.group(1)) if match else None

    def max_answer_tokens(self, rows: pd.DataFrame, fmt: str, tokenizer) -> np.ndarray:
        """An upper bound, per row, on the tokens a correct answer in ``fmt`` takes (EOS included).

        It is read from the question alone (the string's characters and tokens), never from
        the label, so a decoding budget built on it cannot tell a model the answer's length.
        ``direct``: the digits of the largest count the string allows, plus EOS.
        """
        if fmt != "direct":
            return self.max_step_tokens(rows, fmt, tokenizer)
        return count_digits(rows["text"].str.len().to_numpy()) + 1

    def max_step_tokens(self, rows: pd.DataFrame, fmt: str, tokenizer) -> np.ndarray:
        """``max_answer_tokens`` of the step formats; tasks with such formats override this."""
        raise NotImplementedError(fmt)

    def guess_continuation(self, text: str, fmt: str, written: str) -> str:
        """A guess of how a completion in ``fmt`` goes on after ``written``, from the string and
        what was written alone (never the label), for speculative decoding: a guess only
        saves forward passes where the model writes it, and costs one pass where it does
        not, so it never changes what is written. None by default (``""``)."""
        return ""

    # --- sub-skills -----------------------------------------------------------------------
    def make_subskill_rows(
        self,
        name: str,
        words: list[str],
        n_rows: int,
        words_per_row: tuple[int, int],
        rng: np.random.Generator,
        capitalise: float = 0.0,
        punctuate: float = 0.0,
        extra_words: list[str] | None = None,
        extra_share: float = 0.0,
    ) -> pd.DataFrame:
        """``n_rows`` exercises of sub-skill ``name``, covering ``words`` evenly.

        Words are dealt from seeded shuffles of the whole list, one shuffle after another, so
        every word appears as often as any other (give or take one) whatever ``n_rows`` is:
        a rare word is practised as much as a common one. An ``extra_share`` of the places is
        dealt the same way from ``extra_words`` instead (e.g. a wider list of the language's
        words, each seen less often). A ``capitalise`` share of the dealt words is written with
        a capital first letter and a ``punctuate`` share is followed by a mark, as real text
        writes them (``Dog`` and ``dog.`` are other tokens than ``dog``).

        Returns:
            ``row_id``, ``subskill``, ``text``, ``prompt``, ``template_id``, ``answer``.
        """
        skill = self.subskills[name]
        lo, hi = words_per_row
        sizes = rng.integers(lo, hi + 1, n_rows)
        needed = int(sizes.sum())
        extra = rng.random(needed) < extra_share if extra_words and extra_share else np.zeros(needed, dtype=bool)
        pool = np.empty(needed, dtype=object)
        pool[~extra] = deal(words, int((~extra).sum()), rng)
        pool[extra] = deal(extra_words or [], int(extra.sum()), rng)
        pool = style_words(pool, rng, capitalise, punctuate)
        chunks = np.split(pool, np.cumsum(sizes)[:-1]) if n_rows else []
        rows = pd.DataFrame({"text": [" ".join(c) for c in chunks]})
        rows = pd.concat([rows, self.render_prompts(rows, skill.templates, rng)], axis=1)
        return rows.assign(
            row_id=[f"{name}-{i:07d}" for i in range(n_rows)],
            subskill=name,
            answer=[skill.render(list(c)) for c in chunks],
        )[SUBSKILL_COLUMNS]

    def verify_subskill_rows(self, rows: pd.DataFrame) -> np.ndarray:
        """Whether each sub-skill row's answer is the one its words give and is well-formed."""
        ok = []
        for name, text, answer in zip(rows["subskill"], rows["text"], rows["answer"], strict=True):
            skill = self.subskills.get(name)
            ok.append(
                skill is not None
                and answer == skill.render(text.split())
                and _compiled(skill.pattern).fullmatch(answer) is not None
            )
        return np.array(ok, dtype=bool)

    # --- describing -----------------------------------------------------------------------
    def features(self, rows: pd.DataFrame, labels) -> pd.DataFrame:
        """Per-row features for slicing and distribution checks (see :func:`text_features`)."""
        labels = np.asarray(labels, dtype=np.int64)
        return text_features(rows["text"]).assign(
            answer=labels, answer_digits=np.char.str_len(np.abs(labels).astype(str))
        )


def deal(words: list[str], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` words dealt from seeded shuffles of ``words``, one shuffle after another, so each
    word comes as often as any other, give or take one."""
    deck = np.concatenate(
        [np.zeros(0, dtype=np.int64)] + [rng.permutation(len(words)) for _ in range(-(-n // max(len(words), 1)))]
    )
    return np.asarray(words, dtype=object)[deck[:n]]


def style_words(words: np.ndarray, rng: np.random.Generator, capitalise: float, punctuate: float) -> np.ndarray:
    """``words`` with a ``capitalise`` share capitalised and a ``punctuate`` share followed by
    ``.``, ``,``, ``!`` or ``?``; no draw is made for a share of 0 (the words come back as
    they are, and the RNG is untouched)."""
    words = words.copy()
    if capitalise:
        hit = rng.random(len(words)) < capitalise
        words[hit] = [w[:1].upper() + w[1:] for w in words[hit]]
    if punctuate:
        hit = rng.random(len(words)) < punctuate
        words[hit] = words[hit] + np.array([".", ",", "!", "?"], dtype=object)[rng.integers(0, 4, int(hit.sum()))]
    return words


def fill_template(template: str, rows: pd.DataFrame) -> np.ndarray:
    """``template.format(**row)`` for every row, by concatenating whole columns (vectorised)."""
    out = np.full(len(rows), "", dtype=object)
    for literal, field, _, _ in string.Formatter().parse(template):
        out = out + literal
        if field is not None:
            column = rows[field]
            out = out + (column if column.dtype == object else column.astype(str)).to_numpy(dtype=object)
    return out


def count_digits(values) -> np.ndarray:
    """Decimal digits of each non-negative integer (``0`` has one)."""
    return np.char.str_len(np.asarray(values, dtype=np.int64).astype(str)).astype(np.int64)


def token_counts(tokenizer, texts: list[str]) -> np.ndarray:
    """How many tokens each text takes (no special tokens)."""
    if not texts:  # the fast tokenizer fails on an empty list
        return np.zeros(0, dtype=np.int64)
    return np.array([len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]], dtype=np.int64)


@functools.cache
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.DOTALL)
