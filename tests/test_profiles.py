"""The generator profiles, checked against the case study's description within sampling error."""

import numpy as np
import pytest

from synthtune import profiles
from synthtune.pipelines.generation.nodes import build_vocabulary
from synthtune.text import text_features

NAIVE = {"p_short": 0.1, "short_max": 9, "long_max": 99}
BALANCED = {**NAIVE, "boost": {1: 50, 2: 10, 3: 2}, "p_subpool": 0.05, "subpool_max": 5}
USAGE = {
    "zipf_temperature": 0.6,
    "short_max": 5,
    "long_max": 12,
    "repeat_max": 100,
    "one_letter_share": 0.5,
    "p_sentence_case": 0.3,
    "p_punctuation": 0.3,
    "strata": {"single_word": 0.15, "short": 0.35, "long": 0.15, "one_letter": 0.15, "repeats": 0.2},
}
N = 20_000


@pytest.fixture(scope="module")
def vocabulary():
    return build_vocabulary({"language": "en", "top_n": 20000})


def sample(name, params, vocabulary, n=N, seed=0):
    return profiles.sample_texts(name, n, vocabulary, np.random.default_rng(seed), params)


def test_naive_list_is_the_case_studys(vocabulary):
    words = profiles.naive_words(vocabulary)
    assert len(words) == 3432 == len(set(words))
    assert sorted(w for w in words if len(w) == 1) == ["a", "i"]
    assert all(w.isalpha() and w.islower() for w in words)


def test_naive_statistics_match_the_case_study(vocabulary):
    features = text_features(sample("naive", NAIVE, vocabulary))
    lengths = features["n_words"]
    # words per string: 1-9 with p=0.1, else 1-99: mean 0.1*5 + 0.9*50 = 45.5, sd ~30.3
    assert abs(lengths.mean() - 45.5) < 4 * 30.3 / np.sqrt(N)
    assert lengths.between(1, 99).all()
    short = 0.1 + 0.9 * 9 / 99
    assert abs((lengths <= 9).mean() - short) < 4 * np.sqrt(short * (1 - short) / N)
    # one-letter words: 2 of 3,432 words, drawn uniformly
    words = lengths.sum()
    one_letter = (features["one_letter_share"] * lengths).sum() / words
    p = 2 / 3432
    assert abs(one_letter - p) < 4 * np.sqrt(p * (1 - p) / words)


def test_balanced_boosts_short_words_and_repeats(vocabulary):
    base = profiles.naive_words(vocabulary)
    by_length = {k: sum(len(w) == k for w in base) for k in (1, 2, 3)}
    pool = len(base) + 50 * by_length[1] + 10 * by_length[2] + 2 * by_length[3]
    p = 51 * by_length[1] / pool
    balanced = text_features(sample("balanced", BALANCED, vocabulary))
    naive = text_features(sample("balanced", {**BALANCED, "p_subpool": 0.0}, vocabulary))
    words = naive["n_words"].sum()
    one_letter = (naive["one_letter_share"] * naive["n_words"]).sum() / words
    assert abs(one_letter - p) < 4 * np.sqrt(p * (1 - p) / words)
    # 5% of strings draw from a 1-5 word sub-pool: nearly all of those repeat a word
    assert (balanced["repeated_word_share"] > 0.5).mean() == pytest.approx(0.05, abs=0.01)


def test_usage_strata_guarantee_coverage(vocabulary):
    features = text_features(sample("usage", USAGE, vocabulary))
    assert (features["n_words"] == 1).mean() == pytest.approx(0.15, abs=0.015)
    assert (features["max_repeat"] >= 10).mean() > 0.04
    assert (features["max_repeat"] >= 50).any()
    assert (features["one_letter_share"] > 0).mean() > 0.15  # the one_letter stratum alone gives ~0.14
    assert features["has_capital"].mean() == pytest.approx(0.3, abs=0.05)
    assert features["has_punctuation"].mean() == pytest.approx(0.3, abs=0.05)


@pytest.mark.parametrize(("name", "params"), [("naive", NAIVE), ("balanced", BALANCED), ("usage", USAGE)])
def test_profiles_are_seeded(vocabulary, name, params):
    assert sample(name, params, vocabulary, 500, seed=3) == sample(name, params, vocabulary, 500, seed=3)
    assert sample(name, params, vocabulary, 500, seed=3) != sample(name, params, vocabulary, 500, seed=4)


def test_usage_writes_a_share_of_words_with_digits_symbols_capitals_or_dots(vocabulary):
    import re

    texts = sample("usage", {**USAGE, "p_non_letter": 0.2}, vocabulary, n=4000)
    words = [w for t in texts for w in t.split()]
    kinds = {
        "number": r"[0-9]+[.!?,]?",
        "letters and digits": r"[a-z']+[0-9]+[.!?,]?",
        "capitals": r"[A-Z']{2,}[.!?,]?",
        "dots": r"(?:[A-Z]\.){2,}",
    }
    for kind, pattern in kinds.items():
        assert any(re.fullmatch(pattern, w) for w in words), kind
    assert any(not any(c.isalpha() for c in t) for t in texts)  # strings that count 0
    plain = sample("usage", USAGE, vocabulary, n=4000)  # p_non_letter absent: none
    assert not any(re.search(r"[0-9]", t) for t in plain)
    # repeats stay one word repeated
    repeats = [t.split() for t in texts if len(t.split()) > 12]
    assert repeats and all(len({w.strip(".!?,").lower() for w in r}) == 1 for r in repeats)
