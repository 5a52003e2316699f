import re

import numpy as np
import pandas as pd
import pytest

from synthtune.pipelines.evaluation.behaviour import PERTURBATIONS, change_case, make_behaviour_set, shuffle_words
from synthtune.pipelines.evaluation.nodes import score_completions
from synthtune.pipelines.evaluation.scores import score_behaviour
from synthtune.pipelines.generation.nodes import ask
from synthtune.tasks import get_task

from .test_nodes import PARAMS

TASK = get_task("letter_count")
TEXTS = ["the dog sat", "A cat, a hat", "be be be be", "Mark went home today", "one", "i am fine", "x y", "go go"]
VOCABULARY = pd.DataFrame({"word": ["zebra", "a", "house", "it"]})


def literal_test_rows(fmt="direct"):
    rows = pd.DataFrame({"text": TEXTS}).assign(label=lambda r: TASK.label(r))
    return ask(TASK, rows, TASK.train_templates, fmt, np.random.default_rng(3), "test")


@pytest.fixture
def behaviour_set():
    params = {**PARAMS, "behaviour": {"n_strings": 5, "min_words": 2, "max_words": 12}}
    return make_behaviour_set(literal_test_rows(), VOCABULARY, "letter_count", params)


def test_perturbations_keep_or_shift_the_count_as_named(behaviour_set):
    rows = behaviour_set
    assert len(rows) == 5 * 5  # each string: the original and four perturbations
    assert rows["pair"].value_counts().eq(5).all()
    assert not {"one", "be be be be"} & set(rows["text"])  # a shuffle could not change these
    original = rows[rows["check"] == "original"].set_index("pair")
    for check in PERTURBATIONS:
        changed = rows[rows["check"] == check].set_index("pair")
        assert (changed["label"] == original["label"]).all(), check  # invariance: the count stays
        assert (changed["text"] != original["text"]).all(), check
    appended = rows[rows["check"] == "append_word"].set_index("pair")
    added = appended["text"].str.split().str[-1]
    assert added.isin(VOCABULARY["word"]).all()
    assert (appended["label"] - original["label"] == added.str.len()).all()  # directional: + its letters
    # every question is asked with its original's template and answered in its format
    for _, group in rows.groupby("pair"):
        assert group["template_id"].nunique() == 1
    assert all(f'"{t}"' in p for t, p in zip(rows["text"], rows["prompt"], strict=True))
    assert (rows["answer"] == rows["label"].astype(str)).all()


def test_behaviour_set_is_seeded(behaviour_set):
    params = {**PARAMS, "behaviour": {"n_strings": 5, "min_words": 2, "max_words": 12}}
    pd.testing.assert_frame_equal(
        behaviour_set, make_behaviour_set(literal_test_rows(), VOCABULARY, "letter_count", params)
    )


def test_case_change_never_changes_the_number_of_characters():
    assert change_case("Straße dog", np.random.default_rng(0)) == "STRAßE DOG"  # ß would become SS
    assert change_case("DOG", np.random.default_rng(0)) == "dog"
    assert shuffle_words("a b", np.random.default_rng(0)) == "b a"  # never the same order


def answer_with(stub, rows: pd.DataFrame) -> pd.DataFrame:
    """What a model stub writes for each question: it sees the prompt, never the label."""
    texts = [re.search(r'"(.*)"', p).group(1) for p in rows["prompt"]]
    return score_completions(rows.assign(completion=[stub(t) for t in texts], stopped=True), TASK)


STUBS = {
    "counts_letters": lambda t: str(sum(c.isalpha() for c in t)),
    "counts_characters": lambda t: str(len(t.replace(" ", ""))),  # punctuation counts as letters
    "counts_lowercase": lambda t: str(sum(c.islower() for c in t)),  # capitals are missed
    "says_seven": lambda t: "7",
}


def test_checks_on_literal_model_stubs(behaviour_set):
    scores = score_behaviour(**{name: answer_with(stub, behaviour_set) for name, stub in STUBS.items()})
    rate = scores.set_index(["model", "check"])["pass_accuracy"]
    assert (rate["counts_letters"] == 1.0).all()
    assert rate[("counts_characters", "add_punctuation")] == 0.0
    assert rate[("counts_characters", "shuffle_words")] == rate[("counts_characters", "append_word")] == 1.0
    assert rate[("counts_lowercase", "change_case")] == 0.0  # all strings here upper-case to a new count
    assert rate[("counts_lowercase", "shuffle_words")] == 1.0
    assert rate[("says_seven", "shuffle_words")] == 1.0  # a constant answer is invariant...
    assert rate[("says_seven", "append_word")] == 0.0  # ...and fails every directional check
    assert scores.set_index(["model", "check"])["n"].eq(5).all()
    assert (scores["pass_ci_low"] <= scores["pass_accuracy"]).all()


def test_a_malformed_answer_passes_no_check(behaviour_set):
    scores = score_behaviour(
        prose=answer_with(lambda t: f"It has {sum(c.isalpha() for c in t)} letters", behaviour_set)
    )
    assert (scores["pass_k"] == 0).all()
