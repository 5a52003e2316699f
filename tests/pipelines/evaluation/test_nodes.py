import copy
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from synthtune.llm import LanguageModel, LoraAdapter, apply_fine_tuning, encode_rows, left_pad
from synthtune.pipelines.evaluation.nodes import (
    check_evaluation_inputs,
    decoding_budgets,
    evaluation_params,
    measure_perplexity,
    predict_eval_set,
    sample_rows,
    score_completions,
    task_guesses,
)
from synthtune.pipelines.training.loop import fine_tune
from synthtune.tasks import get_task

from ...conftest import PROJECT_ROOT, TRAIN_PARAMS, make_rows

TASK = get_task("letter_count")
BASE = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_evaluation.yml").read_text())["evaluation"]
PARAMS = {
    **BASE,
    "device": "cpu",
    "dtype": "float32",
    "batch_size": 3,
    "max_batch_tokens": None,
    "models": {
        "tuned": {"max_rows": None, "fast_path": True, "max_new_tokens": None},
        "base": {"max_rows": 3, "fast_path": False, "max_new_tokens": None},
    },
    "decoding": {**BASE["decoding"], "batch_size": 4, "max_batch_tokens": 400},
}
TEXTS = ["a a", "be be be be", "dog dog a", "i am fine", "mark", "sit down now please"]
ROWS = make_rows(TEXTS, fmt="tally")


def literal(completions, labels, stopped=None, fmt="direct", answers=None):
    """Completions to score, with their labels and the verifier's answers (``direct``: the label)."""
    return pd.DataFrame(
        {
            "completion": completions,
            "label": labels,
            "answer": [str(label) for label in labels] if answers is None else answers,
            "answer_format": fmt,
            "stopped": [True] * len(completions) if stopped is None else stopped,
        }
    )


def test_strict_and_lenient_readings_of_literal_completions():
    scored = score_completions(
        literal(
            ["7", "7 7 7 7 7 7", "12. No wait: 7", "The answer is 7", "7", "8", "2" * 30],
            [7, 7, 7, 7, 7, 7, 7],
            stopped=[True, True, True, True, False, True, True],
        ),
        TASK,
    )
    assert scored["strict_correct"].tolist() == [True, False, False, False, False, False, False]
    assert scored["exact_correct"].tolist() == [True, False, False, False, False, False, False]
    assert scored["lenient_correct"].tolist() == [True, True, True, True, True, False, False]
    assert scored["strict_answer"].tolist()[:2] == [7, pd.NA]
    assert scored["lenient_answer"].isna().tolist() == [False] * 6 + [True]  # 30 digits: beyond int64, no crash


def test_a_truncated_tally_is_wrong_however_it_ends():
    scored = score_completions(
        literal(["dog 3 (3), dog 3 (6), a 1 (7", "dog 3 (3), dog 3 (6), a 1 (7). Answer: 7"], [7, 7], fmt="tally"),
        TASK,
    )
    assert scored["strict_correct"].tolist() == [False, True]
    assert scored["lenient_correct"].tolist() == [True, True]


def test_a_right_total_from_wrong_steps_is_strict_but_not_exact():
    right = "dog 3 (3), dog 3 (6), a 1 (7). Answer: 7"
    cancelling = "dog 2 (2), dog 4 (6), a 1 (7). Answer: 7"  # two miscounts that cancel
    requoted = "dog. 3 (3), dog 3 (6), a 1 (7). Answer: 7"  # a word quoted as it is not written
    scored = score_completions(
        literal(
            [right, cancelling, requoted, right],
            [7] * 4,
            stopped=[True, True, True, False],
            fmt="tally",
            answers=[right] * 4,
        ),
        TASK,
    )
    assert scored["strict_correct"].tolist() == [True, True, True, False]
    assert scored["exact_correct"].tolist() == [True, False, False, False]  # the last never stopped


def test_a_runaway_completion_counts_as_wrong():
    scored = score_completions(literal(["Answer: " + "2" * 26], [22], fmt="tally"), TASK)
    assert not scored["strict_correct"].any() and not scored["lenient_correct"].any()
    assert scored["strict_answer"].isna().all()


def test_an_eval_set_that_disagrees_with_the_verifier_is_rejected_before_scoring():
    bad = ROWS.copy()
    bad.loc[2, "label"] = 8
    sets = {"test": ROWS, "probes": bad, "heldout_templates": ROWS, "external": ROWS}
    with pytest.raises(
        ValueError,
        match=r"evaluation set 'probes' \(probe_set\): 1 label\(s\) disagree.*row 2 .*'dog dog a'.*label 8, the verifier says 7",
    ):
        check_evaluation_inputs("letter_count", PARAMS, **sets)


def test_a_set_missing_a_column_is_named():
    sets = {"test": ROWS.drop(columns="answer_format"), "probes": ROWS, "heldout_templates": ROWS, "external": ROWS}
    with pytest.raises(
        ValueError, match=r"evaluation set 'test' \(test_set\): missing column\(s\) \['answer_format'\]"
    ):
        check_evaluation_inputs("letter_count", PARAMS, **sets)


def test_bad_evaluation_parameters_fail_before_any_work():
    with pytest.raises(ValueError, match=r"evaluation\.decoding\.max_new_tokens=0"):
        check_evaluation_inputs("letter_count", {**PARAMS, "decoding": {**PARAMS["decoding"], "max_new_tokens": 0}})


def test_sample_rows_is_seeded_per_part_and_keeps_order():
    rows = pd.DataFrame({"x": range(20), "source": ["a"] * 12 + ["b"] * 8})
    picked = sample_rows(rows, 5, seed=1, by="source")
    assert picked["source"].value_counts().to_dict() == {"a": 5, "b": 5}
    assert picked["x"].is_monotonic_increasing
    assert picked.equals(sample_rows(rows, 5, seed=1, by="source"))
    assert sample_rows(rows, None, seed=1, by="source").equals(rows)


def test_budgets_come_from_the_question_and_stay_in_range(tiny_lm):
    config = evaluation_params(PARAMS).decoding
    budgets = decoding_budgets(TASK, ROWS, tiny_lm.tokenizer, config)
    needed = np.array([len(e["answer"]) for e in encode_rows(ROWS, tiny_lm.tokenizer)])
    assert (budgets >= needed).all() and (budgets >= config.min_new_tokens).all()
    relabelled = ROWS.assign(label=ROWS["label"] * 10, answer="7")
    assert (decoding_budgets(TASK, relabelled, tiny_lm.tokenizer, config) == budgets).all()


@pytest.fixture(scope="module")
def memorised(tiny_lm):
    """A fully fine-tuned model that has learned ROWS' tallies by heart (and nothing else)."""
    params = {**TRAIN_PARAMS, "method": "full", "max_steps": 60, "batch_size": 6, "learning_rate": 1e-2}
    model, _ = fine_tune(LanguageModel(copy.deepcopy(tiny_lm.model), tiny_lm.tokenizer), ROWS, ROWS.iloc[:0], params)
    return model


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_fast_path_writes_what_generate_writes(tiny_lm, memorised, dtype):
    # rows it never learned, and learned strings whose expected answer is changed near its end,
    # so the fast path fails them there and decoding resumes from its own next token
    changed = ROWS.iloc[[1, 3]].assign(answer=lambda r: r["answer"].str.replace(r"(\d+)$", r"1\1", regex=True))
    rows = pd.concat([ROWS, make_rows(["zebra crossing", "qq q"], fmt="tally"), changed], ignore_index=True)
    params = {**PARAMS, "dtype": dtype}
    model = LanguageModel(copy.deepcopy(memorised), tiny_lm.tokenizer)
    fast = predict_eval_set(model, rows, "letter_count", params, "tuned", "test")
    slow = predict_eval_set(model, rows, "letter_count", params, "base", "test", sample=False)  # no fast path
    assert fast["teacher_forced"][: len(ROWS)].all()  # learned rows take the fast path
    assert not fast["teacher_forced"][len(ROWS) :].any() and not slow["teacher_forced"].any()
    assert fast["strict_correct"].tail(2).all()  # the changed rows' own answers, decoded
    assert fast["strict_correct"][: len(ROWS)].all()
    for column in ("completion", "stopped", "new_tokens"):
        assert fast[column].tolist() == slow[column].tolist(), column
    # and what Hugging Face generate writes, one unpadded prompt at a time, within the same budget
    tok = tiny_lm.tokenizer
    net = model.model.eval()
    for prompt, row in zip(encode_rows(rows, tok), fast.itertuples(), strict=True):
        ids = torch.tensor([prompt["prompt"]])
        with torch.no_grad():
            out = net.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=int(row.budget),
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )[0, ids.shape[1] :].tolist()
        stopped = tok.eos_token_id in out
        written = out[: out.index(tok.eos_token_id)] if stopped else out
        assert tok.decode(written, skip_special_tokens=False) == row.completion and stopped == row.stopped


def test_predictions_name_model_set_and_part(tiny_lm):
    rows = pd.concat(
        [
            make_rows(["a b", "c"], fmt="tally").assign(source="words"),
            make_rows(["d e f"], fmt="tally").assign(source="x"),
        ],
        ignore_index=True,
    )
    model = LanguageModel(copy.deepcopy(tiny_lm.model), tiny_lm.tokenizer)
    out = predict_eval_set(model, rows, "letter_count", PARAMS, "base", "external")
    assert out["part"].tolist() == ["external_words", "external_words", "external_x"]
    assert (out["model"] == "base").all() and (out["set"] == "external").all()
    assert (out["new_tokens"] <= out["budget"]).all()
    assert not out["strict_correct"].any()  # a random model answers nothing well-formed


def test_attached_adapter_reproduces_the_trained_model(tiny_lm):
    peft_model, _ = fine_tune(
        SimpleNamespace(model=copy.deepcopy(tiny_lm.model), tokenizer=tiny_lm.tokenizer),
        ROWS,
        ROWS.iloc[:0],
        {**TRAIN_PARAMS, "max_steps": 2, "learning_rate": 1e-2, "warmup_steps": 0},
    )
    from peft import get_peft_model_state_dict

    adapter = LoraAdapter(config=peft_model.peft_config["default"], weights=get_peft_model_state_dict(peft_model))
    merged = apply_fine_tuning(LanguageModel(copy.deepcopy(tiny_lm.model), tiny_lm.tokenizer), adapter).model
    batch = left_pad([[1, 2, 3, 4], [5, 6]], tiny_lm.tokenizer.pad_token_id)
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, peft_model(**batch).logits, rtol=1e-4, atol=1e-4)


def test_perplexity_is_the_exponent_of_the_mean_token_loss(tiny_lm):
    texts = pd.DataFrame({"text": ["The octopus smiled.", "When she finished, she hung the collage on the wall.", "x"]})
    model = LanguageModel(copy.deepcopy(tiny_lm.model), tiny_lm.tokenizer)
    measured = measure_perplexity(model, texts, PARAMS)
    assert measured["texts"] == 2  # a one-token text has nothing to predict
    total, count = 0.0, 0
    with torch.no_grad():
        for text in texts["text"][:2]:  # Hugging Face's own loss: mean NLL of tokens 2..n
            ids = torch.tensor([tiny_lm.tokenizer(text, add_special_tokens=False)["input_ids"]])
            total += model.model(input_ids=ids, labels=ids).loss.item() * (ids.shape[1] - 1)
            count += ids.shape[1] - 1
    assert measured["tokens"] == count
    assert measured["perplexity"] == pytest.approx(np.exp(total / count), rel=1e-4)


def test_guesses_read_what_a_row_wrote_and_come_back_as_tokens(tiny_lm):
    """The guess of a row that resumed after part of its tally, and after new tokens since."""
    tok = tiny_lm.tokenizer
    rows = make_rows(["dog dog a", "i am fine"], fmt="tally")
    resumed_after = [tok("dog 3 (3), ", add_special_tokens=False)["input_ids"], []]
    guess = task_guesses(get_task("letter_count"), tok, rows, resumed_after)
    assert tok.decode(guess(0, [])) == "dog 3 (6), a 1 (7). Answer: 7"
    assert tok.decode(guess(0, tok("dog 3 (6", add_special_tokens=False)["input_ids"])) == "), a 1 (7). Answer: 7"
    assert tok.decode(guess(1, tok("Sure", add_special_tokens=False)["input_ids"])) == ""  # not a tally
