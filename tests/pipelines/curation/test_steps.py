import numpy as np
import pandas as pd
import pytest

from synthtune.pipelines.curation import steps

from ...conftest import make_rows


def test_normalise_folds_whitespace_composes_unicode_and_reasks():
    rows = make_rows(["dog  dog a", " a a", "cafe\u0301"], fmt="tally")
    out = steps.normalise(rows, "letter_count")
    assert out["text"].tolist() == ["dog dog a", "a a", "caf\u00e9"]
    assert out["prompt"].tolist() == make_rows(["dog dog a", "a a", "caf\u00e9"])["prompt"].tolist()
    assert out["answer"][0] == "dog 3 (3), dog 3 (6), a 1 (7). Answer: 7"
    assert out["label"].tolist() == [7, 2, 4]


def test_check_columns_names_the_missing_column():
    with pytest.raises(ValueError, match=r"raw_train: missing required column\(s\) \['label'\]"):
        steps.check_columns(make_rows(["a"]).drop(columns="label"), "raw_train")


def test_quality_filter_reasons():
    rows = make_rows(["dog", "x" * 50, "caf\u00e9", "a\u4e00", "i am fine"])
    rows.loc[4, "answer"] = "no number"
    kept, dropped = steps.quality_filter(rows, "letter_count", min_chars=2, max_chars=20, allowed="[ -~\u00c0-\u024f]")
    assert kept["text"].tolist() == ["dog", "caf\u00e9"]
    assert dict(zip(dropped["text"], dropped["reason"], strict=True)) == {
        "x" * 50: "too_long",
        "a\u4e00": "disallowed_characters",
        "i am fine": "answer_unparseable",
    }
    assert set(dropped["step"]) == {"quality_filter"}
    _, short = steps.quality_filter(make_rows(["a"]), "letter_count", 2, 20, "[ -~]")
    assert short["reason"].tolist() == ["too_short"]


def test_verify_labels_drops_mismatches_unless_a_noise_study_keeps_them():
    rows = make_rows(["a a", "dog dog a", "i am fine"])
    rows.loc[1, "label"] = 8
    rows.loc[2, "label"] = 9
    rows.loc[2, "label_noisy"] = True
    kept, dropped = steps.verify_labels(rows, "letter_count", keep_noisy=False)
    assert kept["text"].tolist() == ["a a"]
    assert dropped["reason"].tolist() == ["label_mismatch"] * 2
    kept, dropped = steps.verify_labels(rows, "letter_count", keep_noisy=True)
    assert kept["text"].tolist() == ["a a", "i am fine"]  # the marked noisy row stays
    assert dropped["text"].tolist() == ["dog dog a"]  # an unmarked wrong label never does


def test_pii_rows_are_dropped_for_counting_tasks_and_others_pass_unchanged():
    rows = make_rows(
        ["write to ann@example.com", "see https://x.org/a", "call +1 555 123 4567", "dog dog a", "route 66"]
    )
    kept, dropped = steps.scrub_pii(rows, "letter_count")
    assert kept["text"].tolist() == ["dog dog a", "route 66"]
    assert dropped["reason"].tolist() == ["pii_email", "pii_url", "pii_phone"]
    pd.testing.assert_frame_equal(kept, rows.iloc[3:].reset_index(drop=True))


def test_exact_duplicates_keep_the_first():
    rows = make_rows(["a a", "dog dog a", "a a", "i am fine", "dog dog a"])
    kept, dropped = steps.drop_exact_duplicates(rows)
    assert kept["text"].tolist() == ["a a", "dog dog a", "i am fine"]
    assert dropped["row_id"].tolist() == ["train-0000002", "train-0000004"]
    assert set(dropped["reason"]) == {"duplicate"}


def test_bag_of_words_key_is_order_and_case_insensitive():
    assert steps.bag_of_words_key("dog dog a") == steps.bag_of_words_key("A dog, dog.") == "a dog dog"
    assert steps.bag_of_words_key("dog a") != steps.bag_of_words_key("dog dog a")


def test_near_duplicates_are_capped_per_key_not_removed():
    texts = ["dog dog a", "a dog dog", "dog a dog", "Dog dog a.", "be be be be", "be be be"]
    kept, dropped = steps.drop_near_duplicates(make_rows(texts), 2, 6, 14, 8, 2)
    assert kept["text"].tolist() == ["dog dog a", "a dog dog", "be be be be", "be be be"]
    assert dropped["reason"].tolist() == ["near_duplicate_bag"] * 2


def test_minhash_catches_long_near_duplicates():
    base = "the quick brown fox jumps over the lazy dog near the river bank today"
    texts = [
        base,
        base.replace("today", "tonight"),
        "an entirely different sentence about seven other small things here",
    ]
    kept, dropped = steps.drop_near_duplicates(make_rows(texts), 1, 6, 14, 8, 2)
    assert kept["text"].tolist() == [texts[0], texts[2]]
    assert dropped["reason"].tolist() == ["near_duplicate_minhash"]


def test_decontamination_exact_and_ngram():
    rows = make_rows(
        ["a a", "The Octopus smiled.", "one two three four five six seven eight nine", "dog cat", "fresh words here"]
    )
    eval_texts = ["a a", "the octopus smiled.", "zero one two three four five six seven eight"]
    kept, dropped = steps.decontaminate(rows, eval_texts, ngram=8)
    assert kept["text"].tolist() == ["dog cat", "fresh words here"]
    assert dropped["reason"].tolist() == ["contaminated_exact", "contaminated_exact", "contaminated_ngram"]


def test_balance_caps_each_stratum():
    rows = make_rows(["a"] * 6 + ["a b"] * 2 + ["a b c d e f"] * 2)
    kept, dropped = steps.balance(rows, by="n_words", max_share=0.3)
    assert (kept["text"] == "a").sum() == 3
    assert len(dropped) == 3 and set(dropped["reason"]) == {"stratum_cap"}
    with pytest.raises(ValueError, match="curation.balance.by='colour' is unknown"):
        steps.balance(rows, by="colour", max_share=0.3)
    with pytest.raises(ValueError, match=r"curation.balance.max_share must be in \(0, 1\]"):
        steps.balance(rows, by="label", max_share=0)


def test_split_keeps_every_row_exactly_once():
    rows = make_rows(["a", "b", "c", "d"])
    kept, dropped = steps.split(rows, np.array([True, False, True, False]), "s", "r")
    assert sorted(kept["text"].tolist() + dropped["text"].tolist()) == ["a", "b", "c", "d"]


def test_minhash_signatures_estimate_jaccard_similarity():
    words = [f"w{i}" for i in range(40)]
    a, b, c = " ".join(words[:30]), " ".join(words[10:40]), " ".join(words[:30])
    signatures = steps.minhash_signatures([a, b, c], num_perm=512, shingle=1)
    agreement = lambda x, y: float((signatures[x] == signatures[y]).mean())  # noqa: E731
    assert agreement(0, 2) == 1.0  # identical texts, identical signatures
    assert agreement(0, 1) == pytest.approx(20 / 40, abs=0.07)  # true Jaccard of the word sets: 0.5
    assert (steps.minhash_signatures([a], 512, 1) == signatures[:1]).all()  # seeded


def test_minhash_clusters_join_through_shared_bands():
    base = "one two three four five six seven eight nine ten eleven twelve"
    texts = [base, base + " thirteen", "completely unrelated words make up this other line here", base]
    assert steps.minhash_clusters(texts, bands=14, band_rows=8, shingle=2).tolist() == [0, 0, 2, 0]
