import math

import pytest

from synthtune.metrics import accuracy, format_accuracy, wilson_interval


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (71, 200, 0.2920, 0.4235),  # the README's test figure: 35.5% is 29-42%
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (4, 5, 0.3755, 0.9638),
        (1, 2, 0.0945, 0.9055),
    ],
)
def test_wilson_interval_on_known_values(k, n, low, high):
    assert wilson_interval(k, n) == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_is_symmetric_and_contains_the_estimate():
    lo, hi = wilson_interval(30, 100)
    lo2, hi2 = wilson_interval(70, 100)
    assert (lo, hi) == pytest.approx((1 - hi2, 1 - lo2))
    assert lo < 0.3 < hi


def test_no_trials_give_no_interval():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    assert format_accuracy(accuracy([])) == "0/0"


def test_accuracy_reports_counts_and_interval():
    score = accuracy([True, False, True, True])
    assert (score["k"], score["n"], score["accuracy"]) == (3, 4, 0.75)
    assert score["ci_low"] < 0.75 < score["ci_high"]
    assert format_accuracy(accuracy([True] * 71 + [False] * 129)) == "71/200 = 35.5% [29.2, 42.3]"
