"""Text helpers shared by every pipeline: normalisation, match keys, and the one definition
of a *word* and of the word features that generation, curation, validation and evaluation
all describe strings by.

A word is a whitespace-separated token holding at least one letter (``str.isalpha``, i.e.
Unicode ``\\p{L}``): in ``"a - b"`` the ``-`` is no word, so the string has 2 words; in
``"3 4 5"`` there are none. A word's *key* is its letters, lowercased: ``"Dog,"`` and
``"dog"`` are the same word, so repeats ignore case and punctuation. Every feature is computed
for whole columns at once with pyarrow and numpy.
"""

import unicodedata
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# RE2 (pyarrow's regex engine): \P{L} is "not a Unicode letter", the complement of str.isalpha.
_NOT_LETTER = r"\P{L}"


def normalise_text(text: str) -> str:
    """Unicode NFC and single spaces; neither changes which characters are letters."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def normalise_column(texts: pd.Series) -> pd.Series:
    """``normalise_text`` for a whole column, with pyarrow's vectorised kernels."""
    arr = pa.array(texts.tolist(), type=pa.string())
    words = pc.utf8_split_whitespace(pc.utf8_normalize(arr, "NFC"))
    folded = pc.utf8_trim_whitespace(pc.binary_join(words, " "))
    return pd.Series(folded.to_pylist(), index=texts.index, dtype=texts.dtype)


def word_keys(texts: pd.Series) -> list[str]:
    """Each text lowercased and stripped of punctuation but apostrophes (vectorised): the
    matching key of near-duplicate and decontamination checks (digits are kept there, since
    "route 66" and "route 67" are different strings)."""
    arr = pc.utf8_lower(pa.array(texts.tolist(), type=pa.string()))
    # RE2's \w and \s are ASCII-only: name the Unicode classes explicitly
    return pc.replace_substring_regex(arr, r"[^\p{L}\p{N}\p{M}_\s\p{Z}']", "").to_pylist()


@dataclass(frozen=True)
class Words:
    """Every word of many strings, flattened: ``row`` (which string), ``key`` (its letters,
    lowercased) and ``letters`` (how many), in string order."""

    n_rows: int
    row: np.ndarray
    key: np.ndarray
    letters: np.ndarray


def split_words(texts) -> Words:
    """The words of each string (see the module docstring), vectorised."""
    arr = pa.array(list(texts), type=pa.string())
    tokens = pc.utf8_split_whitespace(arr)
    flat = pc.list_flatten(tokens)
    letters_only = pc.replace_substring_regex(flat, _NOT_LETTER, "")
    letters = pc.utf8_length(letters_only).to_numpy(zero_copy_only=False).astype(np.int64)
    is_word = letters > 0
    row = pc.list_parent_indices(tokens).to_numpy(zero_copy_only=False).astype(np.int64)[is_word]
    keys = pc.utf8_lower(letters_only).to_numpy(zero_copy_only=False)[is_word]
    return Words(len(arr), row, keys, letters[is_word])


def text_features(texts) -> pd.DataFrame:
    """Word-level features of many strings: the one implementation every pipeline uses.

    Columns: ``n_words``, ``mean_word_length`` and ``max_word_length`` (letters per word),
    ``n_one_letter_words`` and ``one_letter_share`` (words of exactly one letter),
    ``repeated_word_share`` (share of words that repeat an earlier word of the string),
    ``max_repeat`` (most occurrences of one word), ``has_capital``, ``has_punctuation``.
    A string without words has zeros throughout.
    """
    texts = list(texts)
    words = split_words(texts)
    n = words.n_rows
    codes = pd.factorize(words.key)[0].astype(np.int64)
    n_words = np.bincount(words.row, minlength=n).astype(np.int64)
    width = codes.max(initial=0) + 1
    pair, counts = np.unique(words.row * width + codes, return_counts=True)
    pair_row = pair // width
    distinct = np.bincount(pair_row, minlength=n)
    max_repeat = np.zeros(n, dtype=np.int64)
    np.maximum.at(max_repeat, pair_row, counts)
    max_length = np.zeros(n, dtype=np.int64)
    np.maximum.at(max_length, words.row, words.letters)
    one_letter = np.bincount(words.row, weights=words.letters == 1, minlength=n).astype(np.int64)
    safe = np.maximum(n_words, 1)
    arr = pa.array(texts, type=pa.string())
    return pd.DataFrame(
        {
            "n_words": n_words,
            "mean_word_length": np.bincount(words.row, weights=words.letters, minlength=n) / safe,
            "max_word_length": max_length,
            "n_one_letter_words": one_letter,
            "one_letter_share": one_letter / safe,
            "repeated_word_share": (n_words - distinct) / safe,
            "max_repeat": max_repeat,
            "has_capital": pc.match_substring_regex(arr, r"\p{Lu}").to_numpy(zero_copy_only=False),
            "has_punctuation": pc.match_substring_regex(arr, r"\p{P}").to_numpy(zero_copy_only=False),
        }
    )


def vocabulary_of(texts) -> set[str]:
    """The set of word keys used anywhere in ``texts``."""
    return set(split_words(texts).key.tolist())


def unseen_word_counts(texts, known: set[str]) -> np.ndarray:
    """How many words of each string are not in ``known`` (a set of word keys)."""
    words = split_words(texts)
    unseen = ~pd.Series(words.key, dtype=object).isin(known).to_numpy()
    return np.bincount(words.row, weights=unseen, minlength=words.n_rows).astype(np.int64)
