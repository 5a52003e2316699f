import copy
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from synthtune.llm import LanguageModel, LoraAdapter, apply_fine_tuning, left_pad
from synthtune.pipelines.evaluation.nodes import (
    compute_metrics,
    greedy_complete,
    predict_eval_set,
    summarise_evaluation,
)
from synthtune.pipelines.training.loop import fine_tune

from ...conftest import TRAIN_PARAMS, make_rows

PARAMS = {
    "device": "cpu",
    "dtype": "float32",
    "system_prompt": "",
    "batch_size": 2,
    "max_batch_tokens": None,
    "max_new_tokens": 12,
    "extra_new_tokens": 2,
}
TRAIN = {**TRAIN_PARAMS, "batch_size": 2, "max_steps": 2, "learning_rate": 1e-2, "warmup_steps": 0}
ROWS = make_rows(["a a", "be be be be", "dog dog a", "i am fine", "mark", "sit down now please"])


@pytest.fixture(scope="module")
def trained(tiny_lm):
    peft_model, _ = fine_tune(
        SimpleNamespace(model=copy.deepcopy(tiny_lm.model), tokenizer=tiny_lm.tokenizer), ROWS, ROWS.iloc[:0], TRAIN
    )
    from peft import get_peft_model_state_dict

    return LoraAdapter(
        config=peft_model.peft_config["default"], weights=get_peft_model_state_dict(peft_model)
    ), peft_model


def base_copy(lm):
    return LanguageModel(copy.deepcopy(lm.model), lm.tokenizer)


def test_compute_metrics_on_literal_predictions():
    predictions = pd.DataFrame(
        {
            "label": [2, 8, 7, 7],
            "predicted": pd.array([2, 0, 8, None], dtype="Int64"),
            "correct": [True, False, False, False],
        }
    )
    metrics = compute_metrics(predictions)
    assert metrics == {
        "exact_match": 0.25,
        "n_examples": 4,
        "n_correct": 1,
        "unparseable_rate": 0.25,
        "mean_abs_error": 3.0,
        "median_abs_error": 1.0,
    }


def test_attached_adapter_reproduces_the_trained_model(tiny_lm, trained):
    adapter, peft_model = trained
    merged = apply_fine_tuning(base_copy(tiny_lm), adapter).model
    batch = left_pad([[1, 2, 3, 4], [5, 6]], tiny_lm.tokenizer.pad_token_id)
    with torch.no_grad():
        expected = peft_model(**batch).logits
        actual = merged(**batch).logits
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_predict_eval_set_scores_every_row(tiny_lm, trained):
    adapter, _ = trained
    out = predict_eval_set(base_copy(tiny_lm), adapter, ROWS, "letter_count", PARAMS)
    assert len(out) == len(ROWS)
    assert {"completion", "predicted", "correct"} <= set(out.columns)
    expected = out["predicted"].notna() & (out["predicted"] == out["label"])
    assert out["correct"].tolist() == expected.fillna(False).tolist()


@pytest.fixture(scope="module")
def memorised(tiny_lm):
    """A fully fine-tuned model that has learned ROWS by heart (and nothing else)."""
    params = {**TRAIN, "method": "full", "max_steps": 40, "batch_size": 5, "learning_rate": 1e-2}
    model, _ = fine_tune(base_copy(tiny_lm), ROWS, ROWS.iloc[:0], params)
    return model


def test_teacher_forced_fast_path_agrees_with_greedy_decoding(tiny_lm, memorised):
    rows = pd.concat([ROWS, make_rows(["zebra crossing", "qq q"])], ignore_index=True)
    out = predict_eval_set(base_copy(tiny_lm), memorised, rows, "letter_count", PARAMS)
    fast = out["teacher_forced"].to_numpy()
    assert fast[: len(ROWS)].all() and not fast[len(ROWS) :].any()  # learned rows take the fast path
    assert out["correct"][: len(ROWS)].all()
    greedy = greedy_complete(
        LanguageModel(memorised, tiny_lm.tokenizer), rows["prompt"].tolist(), PARAMS, [12] * len(rows)
    )
    assert out["completion"][fast].tolist() == [g for g, f in zip(greedy, fast, strict=True) if f]


def test_summary_reports_test_probes_and_each_category():
    test = pd.DataFrame({"label": [2, 7], "predicted": pd.array([2, 7], dtype="Int64"), "correct": [True, True]})
    probes = pd.DataFrame(
        {
            "label": [2, 8, 7],
            "predicted": pd.array([4, 0, 7], dtype="Int64"),
            "correct": [False, False, True],
            "category": ["case_study", "case_study", "sentences"],
        }
    )
    summary = summarise_evaluation(test, probes)
    assert summary["test"]["exact_match"] == 1.0
    assert summary["probes"]["exact_match"] == pytest.approx(1 / 3)
    assert summary["probes_by_category"] == {"case_study": 0.0, "sentences": 1.0}
