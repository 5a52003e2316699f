import numpy as np
import pandas as pd
import pytest
import yaml

from synthtune.pipelines.generation.nodes import (
    add_label_noise,
    build_vocabulary,
    check_generation_params,
    draw_rows,
    frequent_words,
    make_external_set,
    make_heldout_template_set,
    make_probe_set,
    make_subskill_set,
    make_test_set,
    make_train_set,
    split_train_test,
)
from synthtune.tasks import get_task

from ...conftest import PROJECT_ROOT, make_rows

BASE = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_generation.yml").read_text())["generation"]
# The case study's profiles need 3,432 words (the default reads 1,000); direct answers keep
# the assertions on labels readable.
PARAMS = {
    **BASE,
    "n_train": 300,
    "n_test": 50,
    "vocabulary": {**BASE["vocabulary"], "top_n": 20000},
    "answer_format": "direct",
}
PROBES = yaml.safe_load((PROJECT_ROOT / "conf/base/probes.yml").read_text())
CUTE = PROJECT_ROOT.parent / "shared/benchmarks/cute"


@pytest.fixture(scope="module")
def vocabulary():
    return build_vocabulary(PARAMS["vocabulary"])


def test_build_vocabulary_keeps_lowercase_words_with_frequencies(vocabulary):
    assert len(vocabulary) > 15000
    assert vocabulary["word"].is_unique
    assert vocabulary["word"].str.fullmatch(r"[a-z]+('[a-z]+)?").all()
    assert {"a", "i", "the", "don't"} <= set(vocabulary["word"])
    assert (
        vocabulary["frequency"].is_monotonic_decreasing
        or vocabulary["frequency"].iloc[0] > vocabulary["frequency"].iloc[-1]
    )


def test_build_vocabulary_fails_clearly_on_an_empty_list():
    with pytest.raises(ValueError, match="generation.vocabulary: no word left"):
        build_vocabulary({"language": "ja", "top_n": 10})


def test_build_vocabulary_names_an_unknown_language():
    with pytest.raises(ValueError, match=r"generation.vocabulary.language='zz' is unknown to wordfreq; allowed: \["):
        build_vocabulary({"language": "zz", "top_n": 10})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"task": "poetry"}, "generation.task='poetry' is unknown; allowed: "),
        ({"profile": "clever"}, r"generation.profile='clever': Value error, unknown profile; allowed: \['balanced'"),
        (
            {"answer_format": "essay"},
            r"generation.answer_format='essay' is unknown for task 'letter_count'; allowed: \['direct', 'tally', 'tally_ordinal', 'tally_spelled'\]",
        ),
        ({"n_train": 0}, "generation.n_train=0: Input should be greater than or equal to 1"),
        ({"n_test": -5}, "generation.n_test=-5: Input should be greater than or equal to 1"),
        ({"n_test": "5"}, "generation.n_test='5': Input should be a valid integer"),
        ({"label_noise": 1.5}, "generation.label_noise=1.5: Input should be less than 1"),
        (
            {"profiles": {**PARAMS["profiles"], "usage": {**PARAMS["profiles"]["usage"], "strata": {"poems": 1}}}},
            r"generation.profiles.usage.strata=\{'poems': 1\}: Value error, unknown strata \['poems'\]",
        ),
        (
            {"profiles": {**PARAMS["profiles"], "usage": {**PARAMS["profiles"]["usage"], "strata": {"short": -1}}}},
            "weights must be >= 0 and sum to a positive value",
        ),
        (
            {"profiles": {**PARAMS["profiles"], "naive": {"p_short": 0.1, "short_max": 9, "long_max": 5}}},
            "long_max=5 is below short_max=9",
        ),
        (
            {"subskills": {"letter_count": {"rhyming": {"rows": 5, "words": [1, 2]}}}},
            r"generation.subskills.letter_count.rhyming: task 'letter_count' has no such sub-skill; allowed: \['spe",
        ),
        (
            {"subskills": {"poetry": {}}},
            r"generation.subskills.poetry: no such task; allowed: \['char_count', 'letter_count'\]",
        ),
        (
            {"subskills": {"letter_count": {"spelling": {"rows": -1, "words": [1, 2]}}}},
            "generation.subskills.letter_count.spelling.rows=-1: Input should be greater than or equal to 0",
        ),
        (
            {"subskills": {"letter_count": {"spelling": {"rows": 5, "words": [3, 2]}}}},
            r"generation.subskills.letter_count.spelling=.*words must be \[lo, hi\] with lo <= hi, got \[3, 2\]",
        ),
        (
            {"subskills": {"letter_count": {"spelling": {"rows": 5, "words": [1, 2], "ratio": 0.5}}}},
            "generation.subskills.letter_count.spelling.ratio=0.5: Extra inputs are not permitted",
        ),
    ],
)
def test_bad_parameters_stop_before_generation(override, message):
    with pytest.raises(ValueError, match=message):
        check_generation_params({**PARAMS, **override})


@pytest.mark.parametrize("profile", ["naive", "balanced", "usage"])
def test_draw_rows_is_seeded_and_every_label_verifies(vocabulary, profile):
    params = {**PARAMS, "profile": profile}
    rows = draw_rows(vocabulary, params)
    assert len(rows) == 350
    pd.testing.assert_frame_equal(rows, draw_rows(vocabulary, params))
    assert rows["label"].tolist() == [sum(c.isalpha() for c in t) for t in rows["text"]]


def test_draw_rows_for_char_count_adds_the_letter(vocabulary):
    rows = draw_rows(vocabulary, {**PARAMS, "task": "char_count", "answer_format": "spell"})
    assert rows["label"].tolist() == [t.lower().count(c) for t, c in zip(rows["text"], rows["letter"], strict=True)]


def test_subskill_set_makes_the_asked_rows_of_each_subskill(vocabulary):
    params = {
        **PARAMS,
        "subskills": {
            "letter_count": {"word_lengths": {"rows": 12, "words": [3, 5]}, "spelling": {"rows": 4, "words": [1, 1]}}
        },
    }
    rows = make_subskill_set(vocabulary, params)
    assert rows["subskill"].value_counts().to_dict() == {"word_lengths": 12, "spelling": 4}
    assert set(" ".join(rows["text"]).split()) <= set(vocabulary["word"])
    assert get_task("letter_count").verify_subskill_rows(rows).all()
    pd.testing.assert_frame_equal(rows, make_subskill_set(vocabulary, params))  # seeded
    none = make_subskill_set(vocabulary, {**PARAMS, "subskills": {}})
    assert none.empty and list(none.columns) == list(rows.columns)
    assert make_subskill_set(vocabulary, {**params, "task": "char_count"}).empty  # exercises follow the task


def test_subskill_words_can_come_from_more_of_the_language_and_be_styled(vocabulary):
    spec = {"rows": 400, "words": [5, 5], "top_n": 5000, "capitalise": 0.3, "punctuate": 0.2}
    small = vocabulary.head(300)
    rows = make_subskill_set(small, {**PARAMS, "subskills": {"letter_count": {"word_lengths": spec}}})
    words = " ".join(rows["text"]).split()
    plain = {w.rstrip(".,!?").lower() for w in words}
    assert len(plain - set(small["word"])) > 1000  # words beyond the profile's vocabulary ...
    assert plain <= set(frequent_words("en", 5000))  # ... among the language's 5,000 most frequent
    capitalised = sum(w[0].isupper() for w in words) / len(words)
    punctuated = sum(w[-1] in ".,!?" for w in words) / len(words)
    assert 0.25 < capitalised < 0.35 and 0.15 < punctuated < 0.25
    assert get_task("letter_count").verify_subskill_rows(rows).all()  # "Dog." counts 3, as the answer says
    half = make_subskill_set(
        small, {**PARAMS, "subskills": {"letter_count": {"word_lengths": {**spec, "top_n_share": 0.5}}}}
    )
    words = [w.rstrip(".,!?").lower() for w in " ".join(half["text"]).split()]
    profile = set(small["word"])
    assert set(small["word"]) <= set(words)  # every profile word still practised
    assert 0.4 < sum(w not in profile for w in words) / len(words) < 0.55  # half dealt from the 5,000 (some overlap)


def test_split_is_disjoint_and_keeps_repeats_in_train():
    rows = make_rows(["a a", "dog", "a a", "i am fine", "dog", "mark"])
    train, test = split_train_test(rows, n_test=2)
    assert test["text"].tolist() == ["a a", "dog"]
    assert train["text"].tolist() == ["i am fine", "mark"]
    assert split_train_test(make_rows(["a", "b c", "b c", "b c"]), 1)[0]["text"].tolist() == ["b c"] * 3


def test_split_fails_when_too_few_distinct_texts():
    with pytest.raises(ValueError, match="generation.n_test=3 distinct strings"):
        split_train_test(make_rows(["a", "a", "b"]), n_test=3)


def test_train_and_test_sets_are_asked_and_answered(vocabulary):
    train_draws, test_draws = split_train_test(draw_rows(vocabulary, PARAMS), PARAMS["n_test"])
    train = make_train_set(train_draws, PARAMS)
    test = make_test_set(test_draws, PARAMS)
    assert set(train["text"]).isdisjoint(test["text"])
    assert train["row_id"].is_unique and test["row_id"].str.startswith("test-").all()
    assert train["answer"].tolist() == [str(v) for v in train["label"]]
    assert not train["label_noisy"].any()
    assert train["template_id"].nunique() == len(get_task("letter_count").train_templates)
    assert all(f'"{t}"' in p for t, p in zip(train["text"], train["prompt"], strict=True))


def test_tally_answers_end_with_the_label(vocabulary):
    params = {**PARAMS, "answer_format": "tally"}
    train = make_train_set(split_train_test(draw_rows(vocabulary, params), 50)[0], params)
    assert all(a.endswith(f"Answer: {v}") for a, v in zip(train["answer"], train["label"], strict=True))


def test_label_noise_corrupts_the_asked_share_and_marks_it():
    rows = make_rows(["dog dog a"] * 2000, fmt="tally")
    noisy = add_label_noise(rows, 0.1, np.random.default_rng(0))
    assert noisy["label_noisy"].mean() == pytest.approx(0.1, abs=0.02)
    changed = noisy["label"] != rows["label"]
    assert (changed == noisy["label_noisy"]).all()
    assert (noisy["label"] >= 0).all()
    assert all(a.endswith(f"Answer: {v}") for a, v in zip(noisy["answer"], noisy["label"], strict=True))
    assert add_label_noise(rows, 0.0, np.random.default_rng(0))["label"].equals(rows["label"])


def test_heldout_template_set_reasks_test_strings_with_unseen_templates(vocabulary):
    _, test_draws = split_train_test(draw_rows(vocabulary, PARAMS), PARAMS["n_test"])
    heldout = make_heldout_template_set(test_draws, PARAMS)
    task = get_task("letter_count")
    assert heldout["text"].tolist() == test_draws["text"].tolist()
    for text, prompt, template in zip(heldout["text"], heldout["prompt"], heldout["template_id"], strict=True):
        assert prompt == task.heldout_templates[template].format(text=text)
        assert prompt not in {t.format(text=text) for t in task.train_templates}


def test_probe_set_has_every_category_and_the_case_study():
    probes = make_probe_set(PROBES, PARAMS)
    assert len(probes) >= 100
    assert {
        "case_study",
        "one_letter_words",
        "repeats",
        "capitals_punctuation",
        "single_words",
        "empty_looking",
    } <= set(probes["category"])
    by_text = dict(zip(probes["text"], probes["label"], strict=True))
    assert (
        by_text["a a"] == 2 and by_text["be be be be"] == 8 and by_text["dog dog a"] == 7 and by_text["i am fine"] == 7
    )
    assert by_text[" ".join(["mark"] * 100)] == 400
    repeats = probes[probes["category"] == "repeats"]["text"].str.split().str.len()
    assert repeats.min() == 2 and repeats.max() == 100


def test_a_wrong_hand_written_probe_is_named():
    spec = {"letter_count": {"case_study": [{"text": "a a", "expected": 3}]}}
    with pytest.raises(ValueError, match=r"category 'case_study' text 'a a': expected 3, verifier says 2"):
        make_probe_set(spec, PARAMS)


def test_the_case_study_profile_names_the_vocabulary_it_needs():
    small = build_vocabulary(BASE["vocabulary"])  # the default 1,000 words
    with pytest.raises(ValueError, match="raise generation.vocabulary.top_n"):
        draw_rows(small, {**PARAMS, "profile": "naive"})


def test_char_count_probes():
    probes = make_probe_set(PROBES, {**PARAMS, "task": "char_count"})
    assert len(probes) >= 20
    row = probes[probes["text"] == "strawberry"].iloc[0]
    assert row["prompt"] == 'how many times does the letter r appear in "strawberry"?' and row["label"] == 3


def test_external_set_reads_cute_and_checks_its_counts():
    sentences = pd.read_json(CUTE / "sentences.jsonl", lines=True)
    words = pd.read_json(CUTE / "words.jsonl", lines=True)
    external = make_external_set(sentences, words, PARAMS)
    assert len(external) == len(sentences) + len(words)
    assert set(external["source"]) == {"cute_sentences", "cute_words"}
    assert external["label"].tolist() == sentences["letters"].tolist() + words["letters"].tolist()
    broken = sentences.assign(letters=sentences["letters"] + 1)
    with pytest.raises(ValueError, match="external: 997 CUTE rows disagree"):
        make_external_set(broken, words, PARAMS)
