import json

import numpy as np
import pandas as pd
import pytest

from synthtune.pipelines.evaluation.nodes import score_completions
from synthtune.pipelines.evaluation.scores import (
    describe_predictions,
    score_parts,
    score_slices,
    summarise_evaluation,
    worst_slices,
)
from synthtune.tasks import get_task
from synthtune.tasks.letter_count import tally

TASK = get_task("letter_count")


def predictions(model, set_name, texts, completions, part=None, **extra):
    rows = pd.DataFrame({"text": texts, "completion": completions, **extra})
    rows["label"] = TASK.label(rows)
    rows["answer"] = rows["label"].astype(str)  # the verifier's answer in the direct format
    rows = rows.assign(
        model=model,
        set=set_name,
        part=part or set_name,
        answer_format="direct",
        stopped=True,
        teacher_forced=False,
        new_tokens=1,
        budget=32,
    )
    return score_completions(rows, TASK)


TRAIN = pd.DataFrame({"text": ["dog cat", "a dog", "cat cat cat"]})
EXERCISES = pd.DataFrame({"text": ["be house"]})  # sub-skill rows: their words are seen too
TEST = predictions("tuned", "test", ["dog dog a", "a a", "cat", "zebra cat"], ["7", "4", "3", "8"])
PROBES = predictions(
    "tuned", "probes", ["a a", "be be be be", "dog dog a dog"], ["2", "0", "10"], category=["case_study"] * 3
)
BASE = predictions("base", "test", ["dog dog a", "a a"], ["It has 7 letters.", "4"])


@pytest.fixture
def described():
    return describe_predictions(TRAIN, EXERCISES, "letter_count", tuned_test=TEST, tuned_probes=PROBES, base_test=BASE)


def test_slice_features_come_from_the_shared_definitions_and_the_training_rows(described):
    assert described["n_words"].tolist() == [3, 2, 1, 2, 2, 4, 4, 3, 2]
    assert described["unseen_words"].tolist()[:4] == [0, 0, 0, 1]  # "zebra" is in no training string
    assert described["unseen_words"].tolist()[5] == 0  # "be" is in an exercise
    assert described["longer_than_train"].tolist()[:6] == [False, False, False, False, False, True]
    assert described["answer_digits"].tolist()[:4] == [1, 1, 1, 1]


def test_parts_report_strict_and_lenient_counts(described):
    parts = score_parts(described).set_index(["model", "part"])
    assert parts.loc[("tuned", "test"), ["n", "strict_k", "lenient_k"]].tolist() == [4, 3, 3]
    assert parts.loc[("tuned", "probes"), ["n", "strict_k"]].tolist() == [3, 2]
    assert parts.loc[("base", "test"), ["strict_k", "lenient_k"]].tolist() == [0, 1]  # prose: lenient only
    assert parts.loc[("tuned", "test"), "strict_ci_low"] < 0.75 < parts.loc[("tuned", "test"), "strict_ci_high"]


def test_parts_count_exact_answers_apart_from_strict_ones():
    right = tally("dog dog a")
    cancelling = "dog 2 (2), dog 4 (6), a 1 (7). Answer: 7"  # the right total from two miscounts
    rows = predictions("tuned", "test", ["dog dog a"] * 2, [right, cancelling])
    rows = score_completions(rows.assign(answer_format="tally", answer=right), TASK)
    record = score_parts(rows).iloc[0]
    assert record[["n", "strict_k", "exact_k", "lenient_k"]].tolist() == [2, 2, 1, 2]
    assert record["exact_ci_low"] < 0.5 < record["exact_ci_high"]


def test_slices_on_literal_predictions(described):
    slices = score_slices(described)
    tuned_test = slices[(slices["model"] == "tuned") & (slices["part"] == "test")].set_index(["feature", "bin"])
    assert tuned_test.loc[("n_one_letter_words", "0"), ["n", "strict_k"]].tolist() == [2, 2]  # cat, zebra cat
    assert tuned_test.loc[("n_one_letter_words", ">=2"), ["n", "strict_k"]].tolist() == [1, 0]  # "a a" said 4
    assert tuned_test.loc[("unseen_words", "1"), ["n", "strict_k"]].tolist() == [1, 1]
    pooled = slices[(slices["model"] == "tuned") & (slices["part"] == "all")].set_index(["feature", "bin"])
    assert pooled.loc[("category", "case_study"), ["n", "strict_k"]].tolist() == [3, 2]
    assert ("category", "case_study") not in tuned_test.index  # test rows have no category
    assert pooled.loc[("n_words", "2"), "n"] == 3
    # every row of a part falls in exactly one bin of each feature
    counts = slices[slices["feature"] == "n_words"].groupby(["model", "part"])["n"].sum()
    assert counts[("tuned", "all")] == 7 and counts[("base", "test")] == 2


def test_worst_slices_skip_small_and_whole_part_slices(described):
    slices = score_slices(described)
    worst = worst_slices(slices, "tuned", min_rows=1, count=3)
    assert (worst["part"] != "all").all() and (worst["model"] == "tuned").all()
    assert worst["strict_accuracy"].is_monotonic_increasing
    assert worst["strict_accuracy"].iloc[0] == 0.0
    whole = slices[(slices["feature"] == "category") & (slices["part"] == "probes")]
    assert not worst.set_index(["part", "feature"]).index.isin(whole.set_index(["part", "feature"]).index).any()
    assert worst_slices(slices, "tuned", min_rows=100, count=3).empty


def test_metrics_nest_model_part_and_reading(described):
    parts = score_parts(described)
    behaviour = pd.DataFrame(
        [{"model": "tuned", "check": "shuffle_words", "n": 4, "pass_k": 3, "pass_accuracy": 0.75}]
    ).assign(pass_ci_low=0.3, pass_ci_high=0.95)
    metrics = summarise_evaluation(
        parts, behaviour, {"perplexity": 30.0, "tokens": 10}, {"perplexity": 20.0, "tokens": 10}
    )
    assert metrics["tuned"]["test"]["strict"] == {
        "k": 3,
        "n": 4,
        "accuracy": 0.75,
        "ci_low": pytest.approx(0.3006, abs=1e-4),
        "ci_high": pytest.approx(0.9544, abs=1e-4),
    }
    assert metrics["base"]["test"]["lenient"]["k"] == 1
    assert metrics["tuned"]["test"]["exact"]["k"] == 3  # direct answers: exact where strict
    assert metrics["behaviour"]["tuned"]["shuffle_words"]["k"] == 3
    assert metrics["perplexity"] == {"tuned": 30.0, "base": 20.0, "ratio": 1.5, "tokens": 10}
    assert np.isfinite(metrics["tuned"]["test"]["median_abs_error"])


def test_a_part_without_any_number_has_no_median_error_and_stays_valid_json():
    prose = predictions("base", "probes", ["a a", "dog"], ["I cannot tell.", "Many letters."])
    parts = score_parts(describe_predictions(TRAIN, EXERCISES, "letter_count", base_probes=prose))
    metrics = summarise_evaluation(
        parts,
        pd.DataFrame(columns=["model", "check"]),
        {"perplexity": 3.0, "tokens": 1},
        {"perplexity": 3.0, "tokens": 1},
    )
    assert metrics["base"]["probes"]["median_abs_error"] is None
    json.dumps(metrics, allow_nan=False)  # what metrics.json is saved with
