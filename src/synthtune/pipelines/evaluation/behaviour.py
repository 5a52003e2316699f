"""CheckList-style behaviour checks (Ribeiro et al., 2020): perturb strings of the test
split in ways whose effect on the count is known, and see whether the model's answers move
accordingly.

- Invariance: shuffling the words, changing case (upper-casing) and adding a punctuation
  mark leave the letter count as it was.
- Directional: appending a word of k letters adds k.

The verifier labels every perturbed string, so "what should change" is computed, never
assumed; scoring is in :func:`synthtune.pipelines.evaluation.scores.score_behaviour`.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from synthtune.tasks import get_task
from synthtune.tasks.base import fill_template
from synthtune.text import text_features

from .nodes import evaluation_params

PUNCTUATION = tuple(",.;:!?")


def shuffle_words(text: str, rng: np.random.Generator) -> str:
    """The same words in another order (a rotation when the shuffle gives back the original)."""
    words = text.split()
    shuffled = [words[i] for i in rng.permutation(len(words))]
    if shuffled == words:
        shuffled = words[1:] + words[:1]
    return " ".join(shuffled)


def change_case(text: str, rng: np.random.Generator) -> str:
    """Upper-cased (lower-cased if it already is), character by character, keeping only
    changes that leave one character one character (``ß`` would become ``SS``)."""
    change = str.lower if text == text.upper() else str.upper
    return "".join(c2 if len(c2 := change(c)) == 1 else c for c in text)


def add_punctuation(text: str, rng: np.random.Generator) -> str:
    """One punctuation mark attached to the end of a random word."""
    words = text.split()
    at = int(rng.integers(len(words)))
    words[at] += PUNCTUATION[int(rng.integers(len(PUNCTUATION)))]
    return " ".join(words)


PERTURBATIONS: dict[str, Callable[[str, np.random.Generator], str]] = {
    "shuffle_words": shuffle_words,
    "change_case": change_case,
    "add_punctuation": add_punctuation,
}


def make_behaviour_set(
    test_rows: pd.DataFrame, vocabulary: pd.DataFrame, task_name: str, params: dict[str, Any]
) -> pd.DataFrame:
    """Original and perturbed questions for the behaviour checks.

    A seeded sample of ``n_strings`` test strings of ``min_words``-``max_words`` words (not
    all the same word) is
    perturbed by each invariance check and by appending a word drawn from the vocabulary
    (``append_word``). Every row is asked with its original's template and answered in its
    format, and labelled by the task's verifier.

    Returns:
        The questions with ``pair`` (the original string's number) and ``check``
        (``original`` or the perturbation's name).
    """
    config = evaluation_params(params)
    behaviour = config.behaviour
    task = get_task(task_name)
    rng = np.random.default_rng([config.seed, 1])
    features = text_features(test_rows["text"])
    n_words = features["n_words"].to_numpy()
    # two different words at least, so that a shuffle changes the string
    pool = np.flatnonzero(
        (n_words >= behaviour.min_words) & (n_words <= behaviour.max_words) & (features["max_repeat"] < n_words)
    )
    picked = test_rows.iloc[np.sort(rng.choice(pool, min(behaviour.n_strings, len(pool)), replace=False))]
    picked = picked.reset_index(drop=True).assign(pair=np.arange(len(picked)), check="original")
    variants = [picked]
    for name, perturb in PERTURBATIONS.items():
        variants.append(picked.assign(text=[perturb(t, rng) for t in picked["text"]], check=name))
    words = vocabulary["word"].to_numpy(dtype=object)
    appended = words[rng.integers(0, len(words), len(picked))] if len(words) else np.array([], dtype=object)
    variants.append(picked.assign(text=picked["text"] + " " + appended, check="append_word"))
    rows = pd.concat(variants, ignore_index=True)
    rows["label"] = task.label(rows)
    templates = task.train_templates
    prompts = np.empty(len(rows), dtype=object)
    for k, idx in rows.groupby("template_id", sort=True).indices.items():
        prompts[idx] = fill_template(templates[int(k)], rows.iloc[idx])
    answers = np.empty(len(rows), dtype=object)
    for fmt, idx in rows.groupby("answer_format", sort=True).indices.items():
        answers[idx] = task.render_answers(rows.iloc[idx], rows["label"].iloc[idx], fmt)
    return rows.assign(
        prompt=prompts,
        answer=answers,
        row_id=[f"behaviour-{c}-{p:05d}" for c, p in zip(rows["check"], rows["pair"], strict=True)],
    )
