"""Text normalisation shared by curation and validation."""

import unicodedata

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


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
    """Each text lowercased and stripped of punctuation but apostrophes (vectorised)."""
    arr = pc.utf8_lower(pa.array(texts.tolist(), type=pa.string()))
    # RE2's \w and \s are ASCII-only: name the Unicode classes explicitly
    return pc.replace_substring_regex(arr, r"[^\p{L}\p{N}\p{M}_\s\p{Z}']", "").to_pylist()


def has_one_letter_word(texts: pd.Series) -> np.ndarray:
    """Whether each text holds a word of exactly one letter (punctuation aside): "a", "I,"."""
    arr = pa.array(texts.tolist(), type=pa.string())
    pattern = r"(?:^|[\s\p{Z}])[^\p{L}\p{N}\s\p{Z}]*\p{L}[^\p{L}\p{N}\s\p{Z}]*(?:[\s\p{Z}]|$)"
    return pc.match_substring_regex(arr, pattern).to_numpy(zero_copy_only=False)
