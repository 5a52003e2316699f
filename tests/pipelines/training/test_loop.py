import copy
import os
import signal
import time

import pytest
import torch

from synthtune.datasets import FineTunedDataset
from synthtune.llm import LanguageModel, LoraAdapter, collate, encode_rows
from synthtune.pipelines.training import loop
from synthtune.pipelines.training.checkpoint import trainable_state
from synthtune.pipelines.training.loop import (
    TrainingInterrupted,
    accumulate_gradients,
    attention_kernels,
    fine_tune,
    validation_metrics,
)

from ...conftest import TRAIN_PARAMS, make_rows

ROWS = make_rows(["a a", "be be be be", "dog dog a", "i am fine", "mark", "the cat sat", "no", "sit down now"])
HELD_OUT = make_rows(["a cat", "be", "dogs sit"])
NO_ROWS = ROWS.iloc[:0]


def fresh(lm):
    return LanguageModel(copy.deepcopy(lm.model), lm.tokenizer)


def with_checkpoints(tmp_path, every=2, **overrides):
    """Parameters of a 6-step run that checkpoints every ``every`` steps into ``tmp_path``."""
    checkpoint = {"dir": str(tmp_path / "ckpt"), "every_steps": every, "keep_last": 1, "resume": True}
    return {**TRAIN_PARAMS, "max_steps": 6, "learning_rate": 1e-2, "checkpoint": checkpoint, **overrides}


def test_fine_tune_trains_only_the_adapter_and_logs_each_step(tiny_lm):
    base = fresh(tiny_lm)
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    model, log = fine_tune(base, ROWS, NO_ROWS, TRAIN_PARAMS)
    assert log["step"].tolist() == [1, 2, 3, 4]
    columns = {"loss", "lr", "grad_norm", "tokens", "padding_share", "tokens_per_s", "mfu", "elapsed_s", "val_loss"}
    assert columns <= set(log.columns)
    assert (log["mfu"] > 0).all() and (log["tokens"] > 0).all()
    assert model.peft_config["default"].base_model_name_or_path == "base_model"  # no machine path
    modules = model.peft_config["default"].target_modules
    assert modules == sorted(modules) and any(m.endswith("q_proj") for m in modules)  # saved in a stable order
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    frozen = model.get_base_model().state_dict()
    for name, tensor in before.items():
        key = name.replace("q_proj.weight", "q_proj.base_layer.weight")
        if key in frozen:
            assert torch.equal(frozen[key], tensor)


def test_fine_tune_is_reproducible(tiny_lm):
    first_model, first = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, TRAIN_PARAMS)
    second_model, second = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, TRAIN_PARAMS)
    assert first["loss"].tolist() == second["loss"].tolist()
    a, b = trainable_state(first_model), trainable_state(second_model)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_adapter_round_trips_through_the_catalog_dataset(tiny_lm, tmp_path):
    model, _ = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, TRAIN_PARAMS)
    FineTunedDataset(filepath=str(tmp_path / "fine_tuned")).save(model)
    loaded = FineTunedDataset(filepath=str(tmp_path / "fine_tuned")).load()
    assert isinstance(loaded, LoraAdapter)
    assert (tmp_path / "fine_tuned" / "adapter_model.safetensors").is_file()
    trained = {k.replace(".default", ""): v for k, v in trainable_state(model).items()}
    assert set(loaded.weights) == set(trained)
    assert all(torch.equal(loaded.weights[k], trained[k]) for k in trained)


def test_accumulated_micro_batches_give_the_gradient_of_one_batch(tiny_lm):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(
        copy.deepcopy(tiny_lm.model), LoraConfig(task_type="CAUSAL_LM", r=4, init_lora_weights=False)
    )
    examples = encode_rows(ROWS, tiny_lm.tokenizer)
    pad = tiny_lm.tokenizer.pad_token_id
    whole = accumulate_gradients(model, [collate(examples, pad)], torch.device("cpu"), True)
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    split = accumulate_gradients(
        model, [collate(examples[:3], pad), collate(examples[3:], pad)], torch.device("cpu"), True
    )
    assert split == pytest.approx(whole, rel=1e-5)
    for name, param in model.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(param.grad, expected[name], rtol=1e-3, atol=1e-5)


def test_gradient_accumulation_runs_the_micro_batches_of_each_step(tiny_lm):
    params = {**TRAIN_PARAMS, "batch_size": 2, "gradient_accumulation_steps": 3, "max_steps": 2}
    _, log = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, params)
    assert log["step"].tolist() == [1, 2]
    assert (log["tokens"] > 0).all()
    rows_per_step = (log["tokens"] / log["tokens"].mean()).round(1)  # six rows a step, not two
    assert rows_per_step.between(0.5, 1.5).all()


def test_a_token_budget_splits_long_batches_without_changing_the_training(tiny_lm):
    long_rows = make_rows([" ".join(["dog"] * 12), " ".join(["a"] * 14), "be be", "no", "sit down", "mark"])
    params = {**TRAIN_PARAMS, "batch_size": 6, "max_steps": 3, "learning_rate": 1e-2}
    whole_model, whole = fine_tune(fresh(tiny_lm), long_rows, NO_ROWS, params)
    split_model, split = fine_tune(fresh(tiny_lm), long_rows, NO_ROWS, {**params, "max_batch_tokens": 60})
    assert split["padding_share"].mean() < whole["padding_share"].mean()  # short rows no longer pad to long ones
    assert split["tokens"].tolist() == whole["tokens"].tolist()  # the same rows each step
    assert split["loss"].tolist() == pytest.approx(whole["loss"].tolist(), rel=1e-4)
    for (name, a), (_, b) in zip(
        trainable_state(whole_model).items(), trainable_state(split_model).items(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5, msg=name)


def test_a_non_finite_gradient_stops_training_at_its_step(tiny_lm, monkeypatch):
    real, calls = loop.accumulate_gradients, []

    def poisoned(model, *args, **kwargs):
        value = real(model, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            next(p for p in model.parameters() if p.requires_grad).grad.fill_(float("nan"))
        return value

    monkeypatch.setattr(loop, "accumulate_gradients", poisoned)
    with pytest.raises(FloatingPointError, match="non-finite gradient at step 2.*training.dtype"):
        fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, TRAIN_PARAMS)
    assert len(calls) == 2


def test_cuda_training_uses_the_math_attention_kernel():
    with attention_kernels(torch.device("cuda")):
        assert torch.backends.cuda.math_sdp_enabled()
        assert not torch.backends.cuda.flash_sdp_enabled()
        assert not torch.backends.cuda.mem_efficient_sdp_enabled()
    with attention_kernels(torch.device("cpu")):
        assert torch.backends.cuda.flash_sdp_enabled()  # the CPU run keeps PyTorch's choice


def test_validation_loss_is_logged_and_early_stopping_restores_the_best(tiny_lm):
    validation = {**TRAIN_PARAMS["validation"], "every_steps": 1, "early_stopping_patience": 2}
    params = {**TRAIN_PARAMS, "max_steps": 30, "learning_rate": 0.5, "warmup_steps": 0, "validation": validation}
    model, log = fine_tune(fresh(tiny_lm), ROWS, HELD_OUT, params)
    assert log["val_loss"].notna().all() and log["val_exact_match"].between(0, 1).all()
    assert len(log) < 30  # a learning rate this high makes validation loss climb: stopped early
    examples = encode_rows(HELD_OUT, tiny_lm.tokenizer)
    final = validation_metrics(
        model,
        examples,
        tiny_lm.tokenizer.pad_token_id,
        {"batch_size": 4, "max_batch_tokens": None},
        torch.device("cpu"),
    )
    assert final["val_loss"] == pytest.approx(log["val_loss"].min(), rel=1e-4)


def test_elapsed_time_counts_each_second_once(tiny_lm, tmp_path):
    started = time.perf_counter()
    _, log = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, with_checkpoints(tmp_path, every=1))
    assert log["elapsed_s"].is_monotonic_increasing
    assert log["elapsed_s"].iloc[-1] <= time.perf_counter() - started  # checkpoints do not count time twice


def test_wall_clock_budget_stops_training(tiny_lm):
    _, log = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, {**TRAIN_PARAMS, "max_steps": 50, "max_minutes": 1e-9})
    assert log["step"].tolist() == [1]


def _interrupt_at(monkeypatch, call: int, action):
    """Run ``action`` when the loop computes its ``call``-th micro-batch gradient."""
    real, calls = loop.accumulate_gradients, {"n": 0}

    def patched(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            action()
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "accumulate_gradients", patched)


def _crash():
    raise RuntimeError("killed")


def test_a_killed_run_resumes_to_the_same_adapter_as_an_uninterrupted_one(tiny_lm, tmp_path, monkeypatch):
    reference, reference_log = fine_tune(fresh(tiny_lm), ROWS, HELD_OUT, with_checkpoints(tmp_path / "a"))
    assert not (tmp_path / "a" / "ckpt").exists()  # a finished run leaves no checkpoints behind

    params = with_checkpoints(tmp_path / "b")
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 5, _crash)
        with pytest.raises(RuntimeError, match="killed"):
            fine_tune(fresh(tiny_lm), ROWS, HELD_OUT, params)
    assert sorted(p.name for p in (tmp_path / "b" / "ckpt").iterdir()) == ["step-000004"]
    resumed, resumed_log = fine_tune(fresh(tiny_lm), ROWS, HELD_OUT, params)

    expected, actual = trainable_state(reference), trainable_state(resumed)
    assert all(torch.equal(expected[k], actual[k]) for k in expected)  # bit-identical
    assert resumed_log["step"].tolist() == list(range(1, 7))
    assert resumed_log["loss"].tolist() == reference_log["loss"].tolist()


def test_ctrl_c_saves_a_checkpoint_and_the_run_resumes_from_it(tiny_lm, tmp_path, monkeypatch):
    reference, _ = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, with_checkpoints(tmp_path / "a", every=0))
    params = with_checkpoints(tmp_path / "b", every=0)
    before = signal.getsignal(signal.SIGINT)  # default, or ignored when run in the background
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 3, lambda: os.kill(os.getpid(), signal.SIGINT))
        with pytest.raises(TrainingInterrupted, match="step-000003"):
            fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, params)
    assert signal.getsignal(signal.SIGINT) == before  # our handler removed again
    resumed, log = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, params)
    expected, actual = trainable_state(reference), trainable_state(resumed)
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    assert log["step"].tolist() == list(range(1, 7))


def test_a_checkpoint_of_other_parameters_is_not_resumed(tiny_lm, tmp_path, monkeypatch, caplog):
    params = with_checkpoints(tmp_path)
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 5, _crash)
        with pytest.raises(RuntimeError):
            fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, params)
    changed = {**params, "learning_rate": 5e-3}
    _, log = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, changed)
    assert "belongs to a run with other parameters" in caplog.text
    _, fresh_log = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, {**changed, "checkpoint": TRAIN_PARAMS["checkpoint"]})
    assert log["loss"].tolist() == fresh_log["loss"].tolist()


def test_full_fine_tuning_trains_every_weight(tiny_lm, tmp_path):
    base = fresh(tiny_lm)
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    model, log = fine_tune(base, ROWS, NO_ROWS, {**TRAIN_PARAMS, "method": "full", "learning_rate": 1e-3})
    assert not hasattr(model, "peft_config")
    after = model.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before if k.endswith("q_proj.weight"))
    FineTunedDataset(filepath=str(tmp_path / "full")).save(model)
    assert (tmp_path / "full" / "config.json").is_file()
    loaded = FineTunedDataset(filepath=str(tmp_path / "full")).load()
    torch.testing.assert_close(
        loaded.state_dict()["model.layers.0.self_attn.q_proj.weight"], after["model.layers.0.self_attn.q_proj.weight"]
    )


def test_fine_tune_rejects_an_empty_table(tiny_lm):
    with pytest.raises(ValueError, match="model_input_train\\) is empty"):
        fine_tune(fresh(tiny_lm), NO_ROWS, NO_ROWS, TRAIN_PARAMS)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"method": "qlora"}, "training.method"),
        ({"batch_size": 0}, "training.batch_size"),
        ({"gradient_accumulation_steps": 0}, "training.gradient_accumulation_steps"),
        ({"max_minutes": 0}, "training.max_minutes"),
        ({"max_batch_tokens": 0}, "training.max_batch_tokens"),
        ({"lora": {**TRAIN_PARAMS["lora"], "target_modules": ["q_proj", "no_such_proj"]}}, "no_such_proj"),
    ],
)
def test_fine_tune_names_the_bad_parameter(tiny_lm, override, message):
    with pytest.raises(ValueError, match=message):
        fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, {**TRAIN_PARAMS, **override})


def test_a_batch_that_cannot_fit_fails_before_the_first_step(tiny_lm, monkeypatch):
    monkeypatch.setattr(loop, "available_memory_bytes", lambda: 1024)
    calls = []
    monkeypatch.setattr(loop, "accumulate_gradients", lambda *a, **k: calls.append(1))
    with pytest.raises(ValueError, match="training.max_batch_tokens.*training.batch_size"):
        fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, TRAIN_PARAMS)
    assert not calls
