"""Nodes of the generation pipeline."""

from typing import Any

import numpy as np
import pandas as pd
import wordfreq

from synthtune.tasks import letter_count


def build_word_list(params: dict[str, Any]) -> pd.DataFrame:
    """Take the most frequent words of a language from wordfreq (offline, in the wheel).

    Args:
        params: ``language``, ``top_n`` (how many frequent words to read) and
            ``min_length`` (shortest word kept).

    Returns:
        One column ``word``: lowercase ASCII alphabetic words, most frequent first.

    Raises:
        ValueError: if no word survives the filters.
    """
    _require_positive(params, "generation.word_list", ("top_n", "min_length"))
    raw = wordfreq.top_n_list(params["language"], params["top_n"])
    words = [w for w in raw if w.isascii() and w.isalpha() and w.islower() and len(w) >= params["min_length"]]
    words = list(dict.fromkeys(words))
    if not words:
        raise ValueError(
            f"generation.word_list: no word left after filtering {len(raw)} words of language "
            f"{params['language']!r} (top_n={params['top_n']}, min_length={params['min_length']}); "
            "expected at least one lowercase ASCII alphabetic word"
        )
    return pd.DataFrame({"word": words})


def sample_rows(word_list: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Draw ``n_train + n_test`` labelled rows from the word list with a seeded RNG.

    Args:
        word_list: Table with a ``word`` column.
        params: ``seed``, ``n_train``, ``n_test``, ``min_words``, ``max_words``.

    Returns:
        Rows ``text``, ``prompt``, ``answer``, ``letters``, ``n_words`` in draw order;
        the same text may be drawn more than once.
    """
    _require_positive(params, "generation", ("n_train", "n_test", "min_words", "max_words"))
    if params["min_words"] > params["max_words"]:
        raise ValueError(
            f"generation.min_words ({params['min_words']}) must not exceed generation.max_words ({params['max_words']})"
        )
    rng = np.random.default_rng(params["seed"])
    texts = letter_count.sample_texts(
        word_list["word"].to_numpy(dtype=object),
        params["n_train"] + params["n_test"],
        params["min_words"],
        params["max_words"],
        rng,
    )
    return label_texts(texts)


def label_texts(texts: list[str]) -> pd.DataFrame:
    """Turn texts into task rows: prompt, direct answer and letter count."""
    letters = [letter_count.count_letters(t) for t in texts]
    return pd.DataFrame(
        {
            "text": texts,
            "prompt": [letter_count.render_prompt(t) for t in texts],
            "answer": [letter_count.render_answer(n) for n in letters],
            "letters": pd.array(letters, dtype="int64"),
            "n_words": pd.array([len(t.split()) for t in texts], dtype="int64"),
        }
    )


def split_train_test(rows: pd.DataFrame, n_test: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split drawn rows into a test split of distinct texts and a disjoint train split.

    The first ``n_test`` distinct texts (in draw order) form the test split; every other
    draw whose text is not in it is a train row. Repeated draws stay in train, so curation
    has real duplicates to remove.

    Raises:
        ValueError: if fewer than ``n_test`` distinct texts were drawn.
    """
    distinct = rows.drop_duplicates("text")
    if len(distinct) < n_test:
        raise ValueError(
            f"generation.n_test={n_test} distinct strings were asked for but only "
            f"{len(distinct)} were drawn; lower generation.n_test or widen the word range"
        )
    test = distinct.iloc[:n_test]
    train = rows[~rows["text"].isin(set(test["text"]))]
    return _with_ids(train, "train"), _with_ids(test, "test")


def _with_ids(rows: pd.DataFrame, split: str) -> pd.DataFrame:
    ids = [f"{split}-{i:07d}" for i in range(len(rows))]
    return rows.reset_index(drop=True).assign(row_id=ids)[["row_id", *rows.columns]]


def _require_positive(params: dict[str, Any], prefix: str, keys: tuple[str, ...]) -> None:
    for key in keys:
        value = params.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{prefix}.{key} must be a positive integer, got {value!r}")
