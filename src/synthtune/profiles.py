"""Generator profiles: how the strings a task asks about are drawn.

A profile turns a word table and a seeded RNG into ``n`` strings. Three ship:

- ``naive``: the case study's original generator, reproduced: a fixed list of 3,432
  common lowercase words (``a`` and ``i`` its only one-letter words) drawn uniformly with
  replacement; with probability 0.1 a string has 1-9 words, otherwise 1-``long_max``
  (99 in the case study and in ``conf/gpu``; 12 in ``conf/base``, sized for a CPU).
- ``balanced``: the case study's fix: 1-, 2- and 3-letter words added to the pool 50, 10
  and 2 extra times; with probability 0.05 a string draws from a random sub-pool of 1-5
  words, so repetitions occur.
- ``usage``: aimed at real text: words drawn by real frequency (Zipf-tempered), explicit
  strata that guarantee coverage, capitals and punctuation as in sentences, and a share of
  words written with digits, symbols, capitals or dots (``42``, ``&``, ``b4``, ``NASA``,
  ``U.S.A.``).

Everything is vectorised over rows (one RNG call per quantity, not per row) so a million
strings take seconds.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

NAIVE_LIST_SIZE = 3432


# --- shared vectorised helpers ------------------------------------------------------------
def join_words(words: np.ndarray, lengths: np.ndarray) -> list[str]:
    """Join a flat word array into strings of ``lengths`` words each."""
    flat = words.tolist()  # slicing a list is cheaper than np.split's per-row arrays
    ends = np.cumsum(lengths).tolist()
    return [" ".join(flat[start:end]) for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def draw_lengths(n: int, rng: np.random.Generator, p_short: float, short_max: int, long_max: int) -> np.ndarray:
    """Words per string: 1..short_max with probability ``p_short``, else 1..long_max."""
    short = rng.random(n) < p_short
    return np.where(short, rng.integers(1, short_max + 1, n), rng.integers(1, long_max + 1, n))


def naive_words(vocabulary: pd.DataFrame, size: int = NAIVE_LIST_SIZE) -> np.ndarray:
    """The case study's list: the ``size`` most frequent lowercase alphabetic words, with
    ``a`` and ``i`` its only one-letter words."""
    words = vocabulary["word"]
    keep = words.str.fullmatch(r"[a-z]+") & ((words.str.len() > 1) | words.isin(["a", "i"]))
    chosen = words[keep].to_numpy(dtype=object)[:size]
    if len(chosen) < size:
        raise ValueError(
            f"generation.vocabulary holds only {len(chosen)} plain lowercase words; the case study's list needs "
            f"{size}: raise generation.vocabulary.top_n (20000 is enough)"
        )
    return chosen


# --- the three profiles -------------------------------------------------------------------
def sample_naive(n: int, vocabulary: pd.DataFrame, rng: np.random.Generator, params: dict[str, Any]) -> list[str]:
    """The case study's original generator (see module docstring)."""
    words = naive_words(vocabulary)
    lengths = draw_lengths(n, rng, params["p_short"], params["short_max"], params["long_max"])
    return join_words(words[rng.integers(0, len(words), int(lengths.sum()))], lengths)


def sample_balanced(n: int, vocabulary: pd.DataFrame, rng: np.random.Generator, params: dict[str, Any]) -> list[str]:
    """The case study's fix: short words boosted, and a few strings from a tiny sub-pool."""
    base = naive_words(vocabulary)
    extra = [np.repeat(base[[len(w) == k for w in base]], times) for k, times in params["boost"].items()]
    pool = np.concatenate([base, *extra])
    lengths = draw_lengths(n, rng, params["p_short"], params["short_max"], params["long_max"])
    flat = pool[rng.integers(0, len(pool), int(lengths.sum()))]
    # Rows drawing from a sub-pool of 1..subpool_max words: redraw their words from it.
    row_of_word = np.repeat(np.arange(n), lengths)
    tiny = rng.random(n) < params["p_subpool"]
    subpool_size = rng.integers(1, params["subpool_max"] + 1, n)
    subpool = pool[rng.integers(0, len(pool), (n, params["subpool_max"]))]
    pick = (rng.random(len(flat)) * subpool_size[row_of_word]).astype(np.int64)
    in_tiny = tiny[row_of_word]
    flat[in_tiny] = subpool[row_of_word[in_tiny], pick[in_tiny]]
    return join_words(flat, lengths)


def sample_usage(n: int, vocabulary: pd.DataFrame, rng: np.random.Generator, params: dict[str, Any]) -> list[str]:
    """Real-frequency words in explicit strata, styled like sentences.

    Strata (``params["strata"]``, weights normalised): ``single_word``, ``short``
    (2..short_max words), ``long`` (short_max+1..long_max), ``one_letter`` (short strings
    rich in ``a``/``i``), ``repeats`` (one word repeated 2..repeat_max times).
    ``p_sentence_case`` and ``p_punctuation`` style a share of all strings;
    ``p_non_letter`` rewrites a share of all words with digits, symbols, capitals or dots.
    """
    words = vocabulary["word"].to_numpy(dtype=object)
    weights = vocabulary["frequency"].to_numpy(dtype=float) ** params["zipf_temperature"]
    cumulative = np.cumsum(weights / weights.sum())
    names = list(params["strata"])
    mix = np.array([params["strata"][k] for k in names], dtype=float)
    stratum = rng.choice(len(names), size=n, p=mix / mix.sum())
    lengths = np.ones(n, dtype=np.int64)
    for k, name in enumerate(names):
        rows = stratum == k
        lengths[rows] = _STRATUM_LENGTHS[name](int(rows.sum()), rng, params)
    flat = words[np.minimum(np.searchsorted(cumulative, rng.random(int(lengths.sum()))), len(words) - 1)]
    row_of_word = np.repeat(np.arange(n), lengths)
    stratum_of_word = stratum[row_of_word]
    if "one_letter" in names:
        hit = (stratum_of_word == names.index("one_letter")) & (rng.random(len(flat)) < params["one_letter_share"])
        flat[hit] = np.array(["a", "i"], dtype=object)[rng.integers(0, 2, int(hit.sum()))]
    if "repeats" in names:
        first = np.r_[0, np.cumsum(lengths)[:-1]]
        repeat = stratum_of_word == names.index("repeats")
        flat[repeat] = flat[first[row_of_word[repeat]]]
    flat = _style(flat, row_of_word, lengths, rng, params)
    # repeats stay one word repeated, as the probes of that category are
    plain = stratum_of_word != names.index("repeats") if "repeats" in names else np.ones(len(flat), dtype=bool)
    flat = _add_non_letters(flat, plain, rng, params.get("p_non_letter", 0.0))
    return join_words(flat, lengths)


def _add_non_letters(flat: np.ndarray, eligible: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    """Rewrite a ``share`` of the ``eligible`` words as real text also writes them: a number (``42``), a
    symbol (``&``, ``...``), letters and digits (``b4``, ``mp3``), capitals (``NASA``) or an
    abbreviation with dots (``U.S.A.``). Only the letters count, so a model must learn that
    digits, symbols and dots add nothing, and that a string of them counts 0."""
    hit = np.flatnonzero((rng.random(len(flat)) < share) & eligible)
    if not len(hit):
        return flat
    flat = flat.copy()
    kind = rng.integers(0, len(_NON_LETTER_KINDS), len(hit))
    numbers = rng.integers(0, 1000, len(hit))
    symbols = np.array(_SYMBOLS, dtype=object)[rng.integers(0, len(_SYMBOLS), len(hit))]
    cut = rng.integers(1, 4, len(hit))
    for i, k, number, symbol, keep in zip(hit, kind, numbers.tolist(), symbols, cut.tolist(), strict=True):
        word = flat[i]
        flat[i] = _NON_LETTER_KINDS[k](word, number, symbol, keep)
    return flat


_SYMBOLS = ("-", "&", "%", "...", "?!", "#", "+", "=", "/", "*", "@", "$5", "(", ")")
_NON_LETTER_KINDS: tuple[Callable[[str, int, str, int], str], ...] = (
    lambda word, number, symbol, keep: str(number),
    lambda word, number, symbol, keep: symbol,
    lambda word, number, symbol, keep: word[:keep] + str(number % 100),
    lambda word, number, symbol, keep: word.upper(),
    lambda word, number, symbol, keep: "".join(f"{c.upper()}." for c in word[: keep + 1] if c.isalpha()) or word,
)


def _style(flat: np.ndarray, row_of_word: np.ndarray, lengths: np.ndarray, rng, params) -> np.ndarray:
    """Capitalise a share of strings like sentences and give a share punctuation."""
    n = len(lengths)
    first = np.r_[0, np.cumsum(lengths)[:-1]]
    last = first + lengths - 1
    flat = flat.copy()
    sentence = rng.random(n) < params["p_sentence_case"]
    flat[first[sentence]] = [w[:1].upper() + w[1:] for w in flat[first[sentence]]]
    flat[(flat == "i") & sentence[row_of_word]] = "I"
    punct = rng.random(n) < params["p_punctuation"]
    marks = np.array([".", ".", ".", "!", "?", ","], dtype=object)[rng.integers(0, 6, n)]
    flat[last[punct]] = flat[last[punct]] + marks[punct]
    # an inner comma in some longer punctuated strings
    inner = punct & (lengths > 3) & (rng.random(n) < 0.3)
    at = first[inner] + (rng.random(int(inner.sum())) * (lengths[inner] - 2)).astype(np.int64)
    flat[at] = flat[at] + ","
    return flat


_STRATUM_LENGTHS: dict[str, Callable[[int, np.random.Generator, dict], np.ndarray]] = {
    "single_word": lambda m, rng, p: np.ones(m, dtype=np.int64),
    "short": lambda m, rng, p: rng.integers(2, p["short_max"] + 1, m),
    "long": lambda m, rng, p: rng.integers(p["short_max"] + 1, p["long_max"] + 1, m),
    "one_letter": lambda m, rng, p: rng.integers(2, p["short_max"] + 1, m),
    # log-uniform: short repeats are common in real text, yet 100-word ones still occur
    "repeats": lambda m, rng, p: np.exp(rng.uniform(np.log(2), np.log(p["repeat_max"] + 1), m)).astype(np.int64),
}

PROFILES: dict[str, Callable[..., list[str]]] = {
    "naive": sample_naive,
    "balanced": sample_balanced,
    "usage": sample_usage,
}
STRATA = tuple(_STRATUM_LENGTHS)


def profile_words(profile: str, vocabulary: pd.DataFrame) -> list[str]:
    """The words a profile draws its strings from: the case study's 3,432-word list for
    ``naive`` and ``balanced``, the whole vocabulary for ``usage``. Sub-skill exercises
    cover exactly these."""
    if profile in ("naive", "balanced"):
        return naive_words(vocabulary).tolist()
    return vocabulary["word"].tolist()


def sample_texts(profile: str, n: int, vocabulary: pd.DataFrame, rng: np.random.Generator, params: dict) -> list[str]:
    """Draw ``n`` strings with the named profile and its parameters."""
    return PROFILES[profile](n, vocabulary, rng, params)
