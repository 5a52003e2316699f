"""Accuracy as it should be reported: ``k/n`` with a 95% Wilson interval.

71/200 correct is 35.5%, but at 95% confidence anything from 29% to 42%; a slice of 5 rows
with 4 right says little more than "somewhere between 38% and 96%". Every accuracy synthtune
reports carries its counts and this interval.
"""

from typing import Any

import numpy as np


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials (``nan`` for ``n = 0``).

    Delegates to SciPy's ``binomtest(...).proportion_ci(method="wilson")``.
    """
    if n == 0:
        return float("nan"), float("nan")
    from scipy.stats import binomtest  # scipy.stats costs ~0.3 s to import: only when needed

    interval = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def accuracy(correct) -> dict[str, Any]:
    """``k``, ``n``, the accuracy and its 95% Wilson interval for a boolean array."""
    correct = np.asarray(correct, dtype=bool)
    k, n = int(correct.sum()), len(correct)
    low, high = wilson_interval(k, n)
    return {"k": k, "n": n, "accuracy": k / n if n else float("nan"), "ci_low": low, "ci_high": high}


def format_accuracy(score: dict[str, Any]) -> str:
    """``"71/200 = 35.5% [29.2, 42.3]"``: counts, accuracy and interval in percent."""
    if not score["n"]:
        return "0/0"
    return (
        f"{score['k']}/{score['n']} = {100 * score['accuracy']:.1f}% "
        f"[{100 * score['ci_low']:.1f}, {100 * score['ci_high']:.1f}]"
    )
