"""How features are binned, shared by the distribution report (generation) and the
accuracy slices (evaluation), so "51-100 words" means the same rows in both."""

import numpy as np
import pandas as pd

INF = np.inf
# Bins per feature: right-open edges for numbers, None for booleans.
BINS: dict[str, list[float] | None] = {
    "n_words": [0, 1, 2, 3, 4, 5, 6, 11, 21, 51, 101, INF],
    "mean_word_length": [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, INF],
    "max_word_length": [0, 1, 2, 3, 4, 5, 6, 8, 10, 13, INF],
    "one_letter_share": [0, 1e-9, 0.1, 0.25, 0.5, 1.0 + 1e-9],
    "repeated_word_share": [0, 1e-9, 0.1, 0.25, 0.5, 1.0 + 1e-9],
    "max_repeat": [0, 1, 2, 3, 5, 10, 20, 50, 101, INF],
    "has_capital": None,
    "has_punctuation": None,
    "answer": [0, 1, 5, 10, 20, 50, 100, 200, 500, INF],
    "answer_digits": [1, 2, 3, 4, INF],
}


def bin_labels(edges: list[float] | None) -> list[str]:
    """The label of each bin, in order (``["False", "True"]`` for booleans)."""
    if edges is None:
        return ["False", "True"]
    return [_bin_label(lo, hi) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def bin_values(values, edges: list[float] | None) -> pd.Categorical:
    """Each value's bin label, as an ordered categorical over every bin of ``edges``."""
    labels = bin_labels(edges)
    values = pd.Series(values).reset_index(drop=True)
    if edges is None:
        return pd.Categorical(values.astype(bool).astype(str), categories=labels, ordered=True)
    return pd.cut(values.astype(float), bins=edges, right=False, labels=labels, ordered=True).array


def _bin_label(lo: float, hi: float) -> str:
    if hi == INF:
        return f">={lo:g}"
    if lo == 0 and hi <= 1e-8:
        return "0"
    if 0 < lo <= 1e-8:  # the bin just above zero
        return f"(0,{hi:g})"
    if hi - lo == 1 and float(lo).is_integer():
        return f"{lo:g}"
    if float(lo).is_integer() and float(hi).is_integer():
        return f"{lo:g}-{hi - 1:g}"
    return f"[{lo:g},{hi:g})"
