import copy
import json
import logging
import math
import os
import re
import signal
import time

import pytest
import torch

from synthtune.datasets import FineTunedDataset
from synthtune.inference import score_answers
from synthtune.llm import LanguageModel, LoraAdapter, collate, encode_rows
from synthtune.pipelines.training import loop
from synthtune.pipelines.training.batching import answer_loss
from synthtune.pipelines.training.checkpoint import trainable_state
from synthtune.pipelines.training.loop import (
    TrainingInterrupted,
    accumulate_gradients,
    attention_kernels,
    fine_tune,
    lr_factor,
    validation_metrics,
)

from ...conftest import TRAIN_PARAMS, make_rows

# seconds in one process on a 2-core AVX2 CPU: the suite starts this file first (tests/conftest.py)
pytestmark = pytest.mark.duration(seconds=66)

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


def lora_model(tiny_lm):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    return get_peft_model(copy.deepcopy(tiny_lm.model), LoraConfig(task_type="CAUSAL_LM", r=4, init_lora_weights=False))


@pytest.mark.parametrize("weighting", ["token", "row"])
def test_accumulated_micro_batches_give_the_gradient_of_one_batch(tiny_lm, weighting):
    model = lora_model(tiny_lm)
    examples = encode_rows(ROWS, tiny_lm.tokenizer)
    pad = tiny_lm.tokenizer.pad_token_id
    whole = accumulate_gradients(model, [collate(examples, pad)], torch.device("cpu"), True, weighting)
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    split = accumulate_gradients(
        model, [collate(examples[:3], pad), collate(examples[3:], pad)], torch.device("cpu"), True, weighting
    )
    assert split == pytest.approx(whole, rel=1e-5)
    for name, param in model.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(param.grad, expected[name], rtol=1e-3, atol=1e-5)


def test_row_weighting_averages_each_rows_mean_loss(tiny_lm):
    model = lora_model(tiny_lm)
    rows = make_rows(["a", " ".join(["dog"] * 15), "be be"])  # one long answer among short ones
    examples = encode_rows(rows, tiny_lm.tokenizer)
    pad = tiny_lm.tokenizer.pad_token_id
    with torch.no_grad():
        per_row = [answer_loss(model, collate([e], pad)).item() for e in examples]
    by_token = accumulate_gradients(model, [collate(examples, pad)], torch.device("cpu"), True, "token")
    by_row = accumulate_gradients(model, [collate(examples, pad)], torch.device("cpu"), True, "row")
    assert by_row == pytest.approx(sum(per_row) / len(per_row), rel=1e-5)
    assert by_token != pytest.approx(by_row, rel=1e-3)  # the long row no longer dominates


def test_gradient_accumulation_runs_the_micro_batches_of_each_step(tiny_lm):
    params = {**TRAIN_PARAMS, "batch_size": 2, "gradient_accumulation_steps": 3, "max_steps": 2}
    _, log = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, params)
    assert log["step"].tolist() == [1, 2]
    assert (log["tokens"] > 0).all()
    rows_per_step = (log["tokens"] / log["tokens"].mean()).round(1)  # six rows a step, not two
    assert rows_per_step.between(0.5, 1.5).all()


@pytest.mark.parametrize("weighting", ["token", "row"])
def test_a_token_budget_splits_long_batches_without_changing_the_training(tiny_lm, weighting):
    long_rows = make_rows([" ".join(["dog"] * 12), " ".join(["a"] * 14), "be be", "no", "sit down", "mark"])
    params = {**TRAIN_PARAMS, "batch_size": 6, "max_steps": 3, "learning_rate": 1e-2, "loss_weighting": weighting}
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


def test_math_attention_kernel_on_cuda_and_on_short_bf16_cpu_batches():
    bf16, fp32, short = torch.bfloat16, torch.float32, loop.CPU_MATH_ATTENTION_MAX_WIDTH
    with attention_kernels(torch.device("cuda")):
        assert torch.backends.cuda.math_sdp_enabled()
        assert not torch.backends.cuda.flash_sdp_enabled()
        assert not torch.backends.cuda.mem_efficient_sdp_enabled()
    with attention_kernels(torch.device("cuda"), bf16, width=4096):
        assert not torch.backends.cuda.flash_sdp_enabled()  # CUDA: the math kernel at any width
    with attention_kernels(torch.device("cpu"), bf16, width=short):
        assert not torch.backends.cuda.flash_sdp_enabled()  # a short bf16 CPU batch: the math kernel
    for dtype, width in [(bf16, short + 1), (fp32, short), (bf16, None)]:
        with attention_kernels(torch.device("cpu"), dtype, width):
            assert torch.backends.cuda.flash_sdp_enabled()  # else PyTorch's choice


def test_training_picks_the_kernel_by_each_micro_batch_and_dtype(tiny_lm, monkeypatch):
    seen = []
    real = loop.attention_kernels

    def spy(device, dtype=torch.float32, width=None):
        if width is not None:
            seen.append((dtype, width))
        return real(device, dtype, width)

    monkeypatch.setattr(loop, "attention_kernels", spy)
    fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, {**TRAIN_PARAMS, "dtype": "bfloat16", "max_batch_tokens": 12})
    widths = [w for _, w in seen]
    assert {dtype for dtype, _ in seen} == {torch.bfloat16}
    assert len(widths) > TRAIN_PARAMS["max_steps"] and len(set(widths)) > 1  # one call per micro-batch


def test_bf16_training_runs_the_adapter_in_bf16_and_keeps_fp32_weights(tiny_lm, monkeypatch):
    """Mixed precision: peft keeps the adapter's weights in fp32; under autocast their
    products run in bf16 on bf16 inputs (in training and in validation), and the update
    still lands in fp32 weights."""
    seen = []
    real = loop.prepare_model

    def watched(*args, **kwargs):
        model = real(*args, **kwargs)
        lora_a = next(m for n, m in model.named_modules() if n.endswith("q_proj.lora_A.default"))
        lora_a.register_forward_hook(
            lambda module, inputs, output: seen.append((module.weight.dtype, inputs[0].dtype, output.dtype))
        )
        return model

    monkeypatch.setattr(loop, "prepare_model", watched)
    validated = {**TRAIN_PARAMS["validation"], "every_steps": 1}
    params = {**TRAIN_PARAMS, "dtype": "bfloat16", "validation": validated}
    model, log = fine_tune(fresh(tiny_lm), ROWS, HELD_OUT, params)
    # one training and one validation forward per step
    assert len(seen) >= 2 * len(log) and set(seen) == {(torch.float32, torch.bfloat16, torch.bfloat16)}
    assert log["loss"].map(math.isfinite).all() and log["val_loss"].map(math.isfinite).all()
    adapter = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert adapter and all(p.dtype == torch.float32 for p in adapter.values())
    assert any(p.abs().sum() > 0 for n, p in adapter.items() if "lora_B" in n)  # B starts at 0: it trained
    assert all(m.cast_input_dtype_enabled for m in model.modules() if hasattr(m, "cast_input_dtype_enabled"))


def test_bf16_training_reads_the_updated_adapter_at_every_step(tiny_lm):
    """Every step sees all rows, so the loss falls only if each forward pass reads the
    weights the last step wrote (autocast's weight cache, kept for a whole loop, would feed
    every step the first step's adapter and log the same loss at each)."""
    params = {**TRAIN_PARAMS, "dtype": "bfloat16", "batch_size": len(ROWS), "max_steps": 6, "learning_rate": 3e-2}
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a caller's own autocast changes nothing
        _, log = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, params)
    assert log["loss"].iloc[-1] < 0.9 * log["loss"].iloc[1]
    _, fp32 = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, {**params, "dtype": "float32"})
    assert log["loss"].iloc[:3].to_numpy() == pytest.approx(fp32["loss"].iloc[:3].to_numpy(), rel=0.05)


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


def test_probes_are_scored_at_each_validation_only_when_asked(tiny_lm):
    probes = make_rows(["a a", "be be be be", "xyz"])
    validation = {**TRAIN_PARAMS["validation"], "every_steps": 2, "probes": True}
    params = {**TRAIN_PARAMS, "max_steps": 4, "validation": validation}
    model, log = fine_tune(fresh(tiny_lm), ROWS, HELD_OUT, params, probes)
    measured = log.dropna(subset=["val_loss"])
    assert measured["step"].tolist() == [2, 4]
    assert set(measured["probes_exact_match"]) <= {0, 1 / 3, 2 / 3, 1}
    examples = encode_rows(probes, tiny_lm.tokenizer)
    exact = score_answers(model, examples, tiny_lm.tokenizer.pad_token_id, 4, torch.device("cpu")).exact
    assert measured["probes_exact_match"].iloc[-1] == pytest.approx(exact.mean())  # the final weights' score
    quiet = {**params, "validation": {**validation, "probes": False}}
    _, log = fine_tune(fresh(tiny_lm), ROWS, HELD_OUT, quiet, probes)
    assert "probes_exact_match" not in log


def test_a_run_over_its_time_budget_says_so_after_its_first_step(tiny_lm, tmp_path, monkeypatch, caplog):
    _fake_clock(monkeypatch, minutes_per_step=1.0)
    params = {**with_checkpoints(tmp_path, every=0), "max_steps": 6, "max_minutes": 2.5}
    with caplog.at_level("INFO"):
        fine_tune(fresh(tiny_lm), ROWS, HELD_OUT, params)
    estimates = [r for r in caplog.records if "tokens planned" in r.getMessage()]
    assert len(estimates) == 1 and estimates[0].levelname == "WARNING"
    assert "over training.max_minutes=2.5: it will stop early" in estimates[0].getMessage()
    minutes = float(re.search(r"takes ~([0-9.]+) min", estimates[0].getMessage()).group(1))
    assert 3 <= minutes <= 12  # 6 steps of about a minute each (steps differ in tokens)


def test_elapsed_time_counts_each_second_once(tiny_lm, tmp_path):
    started = time.perf_counter()
    _, log = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, with_checkpoints(tmp_path, every=1))
    assert log["elapsed_s"].is_monotonic_increasing
    assert log["elapsed_s"].iloc[-1] <= time.perf_counter() - started  # checkpoints do not count time twice


def test_wall_clock_budget_stops_training(tiny_lm, tmp_path):
    _, log = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, with_checkpoints(tmp_path, max_steps=50, max_minutes=1e-9))
    assert log["step"].tolist() == [1]


def _fake_clock(monkeypatch, minutes_per_step: float):
    """Make each training step take ``minutes_per_step`` of the loop's clock, and nothing else."""
    clock = {"now": 0.0}
    real = loop.train_step

    def step(*args, **kwargs):
        clock["now"] += 60 * minutes_per_step
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "perf_counter", lambda: clock["now"])
    monkeypatch.setattr(loop, "train_step", step)


def test_a_run_out_of_time_keeps_a_checkpoint_and_a_rerun_goes_on_to_the_same_result(
    tiny_lm, tmp_path, monkeypatch, caplog
):
    reference, reference_log = fine_tune(fresh(tiny_lm), ROWS, HELD_OUT, with_checkpoints(tmp_path / "a", every=0))
    assert not (tmp_path / "a" / "ckpt").exists()  # a run that reaches max_steps leaves no checkpoint

    caplog.set_level(logging.INFO, logger=loop.__name__)
    params = with_checkpoints(tmp_path / "b", every=0, max_minutes=2)
    with monkeypatch.context() as patch:
        _fake_clock(patch, minutes_per_step=1)
        _, paused_log = fine_tune(fresh(tiny_lm), ROWS, HELD_OUT, params)
    assert paused_log["step"].tolist() == [1, 2]
    kept = list((tmp_path / "b" / "ckpt").iterdir())
    assert [p.name[:11] for p in kept] == ["step-000002"]
    assert f"{kept[0]} kept" in caplog.text

    caplog.clear()
    resumed, log = fine_tune(fresh(tiny_lm), ROWS, HELD_OUT, {**params, "max_minutes": None})
    assert "Resuming from" in caplog.text and "step 2 of 6" in caplog.text
    assert log["step"].tolist() == list(range(1, 7))  # steps 3 to 6 continue the log of the first session
    assert log["loss"].tolist() == reference_log["loss"].tolist()
    assert log["lr"].tolist() == reference_log["lr"].tolist()  # the same schedule, continued
    expected, actual = trainable_state(reference), trainable_state(resumed)
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    assert not (tmp_path / "b" / "ckpt").exists()  # finished now: checkpoints removed


def test_each_step_logs_the_learning_rate_it_used(tiny_lm, monkeypatch):
    used, real = [], loop.make_optimizer

    def spied(*args, **kwargs):
        optimizer = real(*args, **kwargs)
        optimizer.register_step_pre_hook(lambda opt, a, k: used.append(opt.param_groups[0]["lr"]))
        return optimizer

    monkeypatch.setattr(loop, "make_optimizer", spied)
    params = {**TRAIN_PARAMS, "max_steps": 6, "warmup_steps": 2, "learning_rate": 1e-2}
    _, log = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, params)
    assert log["lr"].tolist() == used
    assert log["lr"].iloc[0] == pytest.approx(1e-2 / 2)  # step 1 learns: 1/warmup of the rate
    assert log["lr"].iloc[1] == pytest.approx(1e-2)
    assert log["lr"].iloc[1:].is_monotonic_decreasing
    assert 0 < log["lr"].iloc[-1] < 0.2 * 1e-2  # the last step still learns, a little


def test_the_schedule_warms_up_from_step_one_and_ends_at_max_steps():
    factors = [lr_factor(k, 4, 20) for k in range(1, 22)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0 and all(a > b for a, b in zip(factors[4:19], factors[5:20], strict=True))
    assert 0 < factors[19] < 0.01  # step 20, the last
    assert factors[20] == pytest.approx(0.0, abs=1e-12)  # the cosine ends right after max_steps
    assert lr_factor(1, 0, 10) == 1.0  # no warm-up: full rate at once
    assert all(math.isfinite(lr_factor(k, 5, 3)) for k in range(1, 4))  # warm-up longer than the run


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


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_killed_run_resumes_to_the_same_adapter_as_an_uninterrupted_one(tiny_lm, tmp_path, monkeypatch, dtype):
    reference, reference_log = fine_tune(fresh(tiny_lm), ROWS, HELD_OUT, with_checkpoints(tmp_path / "a", dtype=dtype))
    assert not (tmp_path / "a" / "ckpt").exists()  # a finished run leaves no checkpoints behind

    params = with_checkpoints(tmp_path / "b", dtype=dtype)
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 5, _crash)
        with pytest.raises(RuntimeError, match="killed"):
            fine_tune(fresh(tiny_lm), ROWS, HELD_OUT, params)
    assert sorted(p.name[:11] for p in (tmp_path / "b" / "ckpt").iterdir()) == ["step-000004"]
    resumed, resumed_log = fine_tune(fresh(tiny_lm), ROWS, HELD_OUT, params)

    expected, actual = trainable_state(reference), trainable_state(resumed)
    assert all(torch.equal(expected[k], actual[k]) for k in expected)  # bit-identical
    assert resumed_log["step"].tolist() == list(range(1, 7))
    assert resumed_log["loss"].tolist() == reference_log["loss"].tolist()


def _plant_stale_checkpoint(directory):
    """A checkpoint a run with other parameters left behind, later than this run's by name."""
    (directory / "step-000080").mkdir(parents=True)
    (directory / "step-000080" / "state.json").write_text(json.dumps({"step": 80, "fingerprint": "0" * 64}))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_the_run_resumes_from_it(
    tiny_lm, tmp_path, monkeypatch, caplog, signum
):
    reference, _ = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, with_checkpoints(tmp_path / "a", every=0))
    params = with_checkpoints(tmp_path / "b", every=0)
    _plant_stale_checkpoint(tmp_path / "b" / "ckpt")
    before = signal.getsignal(signum)  # default, or ignored when run in the background
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 3, lambda: os.kill(os.getpid(), signum))
        with pytest.raises(TrainingInterrupted, match="step-000003") as interrupted:
            fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, params)
    assert signal.getsignal(signum) == before  # our handler removed again
    path = str(interrupted.value).split("checkpoint at ")[1].split(". Run again")[0]
    assert (tmp_path / "b" / "ckpt" / os.path.basename(path)).is_dir()  # the message names a checkpoint that exists
    resumed, log = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, params)
    expected, actual = trainable_state(reference), trainable_state(resumed)
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    assert log["step"].tolist() == list(range(1, 7))
    assert [p.name for p in (tmp_path / "b" / "ckpt").iterdir()] == ["step-000080"]  # only ours removed
    assert "run with other parameters" in caplog.text and "step-000080; left in place" in caplog.text


def test_a_stale_checkpoint_of_another_run_neither_prunes_nor_is_resumed(tiny_lm, tmp_path, monkeypatch):
    reference, reference_log = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, with_checkpoints(tmp_path / "a"))
    params = with_checkpoints(tmp_path / "b")
    _plant_stale_checkpoint(tmp_path / "b" / "ckpt")
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 5, _crash)
        with pytest.raises(RuntimeError, match="killed"):
            fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, params)
    names = sorted(p.name[:11] for p in (tmp_path / "b" / "ckpt").iterdir())
    assert names == ["step-000004", "step-000080"]  # ours pruned to the newest; theirs untouched
    resumed, log = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, params)
    assert log["loss"].tolist() == reference_log["loss"].tolist()
    expected, actual = trainable_state(reference), trainable_state(resumed)
    assert all(torch.equal(expected[k], actual[k]) for k in expected)


@pytest.mark.parametrize("change", [{"learning_rate": 5e-3}, {"max_steps": 8}])
def test_a_checkpoint_of_other_parameters_is_not_resumed(tiny_lm, tmp_path, monkeypatch, caplog, change):
    params = with_checkpoints(tmp_path)
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 5, _crash)
        with pytest.raises(RuntimeError):
            fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, params)
    changed = {**params, **change}
    _, log = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, changed)
    assert "run with other parameters" in caplog.text
    assert "Resuming" not in caplog.text
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
        ({"warmup_steps": -1}, "training.warmup_steps"),
        ({"checkpoint": {**TRAIN_PARAMS["checkpoint"], "keep_last": 0}}, "training.checkpoint.keep_last"),
        ({"loss_weighting": "rows"}, "training.loss_weighting='rows': Input should be 'row' or 'token'"),
        ({"curriculum": 0.5}, "training.curriculum=0.5: Input should be a valid dictionary"),
        (
            {"curriculum": {"warmup_share": 1.5}},
            "training.curriculum.warmup_share=1.5: Input should be less than or equal to 1",
        ),
        ({"curriculum": {"warmup_share": 0}}, "training.curriculum.warmup_share=0: Input should be greater than 0"),
        ({"curriculum": {}}, r"training.curriculum.warmup_share=\(missing\)"),
        ({"curriculum": {"warmup_share": 0.5, "order": "long"}}, "training.curriculum.order='long': Extra inputs"),
        ({"learning_rate": -1}, "training.learning_rate=-1: Input should be greater than 0"),
        ({"lora": {**TRAIN_PARAMS["lora"], "r": 0}}, "training.lora.r=0: Input should be greater than or equal to 1"),
        ({"max_step": 4}, "training.max_step=4: Extra inputs are not permitted"),
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


def test_params_without_the_new_levers_train_as_their_defaults(tiny_lm):
    levers = {"loss_weighting": "token", "curriculum": None}
    _, named = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, {**TRAIN_PARAMS, **levers})
    _, unnamed = fine_tune(fresh(tiny_lm), ROWS, NO_ROWS, {k: v for k, v in TRAIN_PARAMS.items() if k not in levers})
    assert named["loss"].tolist() == unnamed["loss"].tolist()


def test_row_weighting_trains_differently(tiny_lm):
    rows = make_rows(["a", " ".join(["dog"] * 15), "be be", "no", " ".join(["sit"] * 9), "mark"])
    params = {**TRAIN_PARAMS, "batch_size": 6, "max_steps": 2, "learning_rate": 1e-2}
    _, by_token = fine_tune(fresh(tiny_lm), rows, NO_ROWS, params)
    _, by_row = fine_tune(fresh(tiny_lm), rows, NO_ROWS, {**params, "loss_weighting": "row"})
    assert by_row["tokens"].tolist() == by_token["tokens"].tolist()  # the same rows
    assert by_row["loss"].iloc[0] != pytest.approx(by_token["loss"].iloc[0], rel=1e-3)


def test_a_length_curriculum_trains_short_rows_first(tiny_lm):
    rows = make_rows([" ".join(["dog"] * n) for n in (9, 1, 7, 3, 12, 2, 5, 8, 4, 6, 10, 11)])
    params = {**TRAIN_PARAMS, "batch_size": 2, "max_steps": 8, "length_bucketing": False}
    _, plain = fine_tune(fresh(tiny_lm), rows, NO_ROWS, params)
    _, curriculum = fine_tune(fresh(tiny_lm), rows, NO_ROWS, {**params, "curriculum": {"warmup_share": 0.5}})
    assert curriculum["tokens"].iloc[:4].is_monotonic_increasing  # the first half of the steps: short first
    assert not plain["tokens"].iloc[:4].is_monotonic_increasing
    assert sorted(curriculum["tokens"].iloc[:4]) == sorted(plain["tokens"].iloc[:4])  # the same batches, reordered
    assert curriculum["tokens"].iloc[4:].tolist() == plain["tokens"].iloc[4:].tolist()  # then the usual order


def test_trainable_tokens_train_the_embedding_rows_of_the_training_tokens_only(tiny_lm, tmp_path):
    from synthtune.llm import apply_fine_tuning

    base = fresh(tiny_lm)
    embedding = base.model.get_input_embeddings().weight.detach().clone()
    lora = {**TRAIN_PARAMS["lora"], "trainable_tokens": "training_rows"}
    model, _ = fine_tune(base, ROWS, NO_ROWS, {**TRAIN_PARAMS, "lora": lora, "learning_rate": 1e-2})
    used = loop.used_tokens(encode_rows(ROWS, tiny_lm.tokenizer, ""))
    assert model.peft_config["default"].trainable_token_indices == used
    FineTunedDataset(filepath=str(tmp_path / "fine_tuned")).save(model)
    merged = apply_fine_tuning(fresh(tiny_lm), FineTunedDataset(filepath=str(tmp_path / "fine_tuned")).load()).model
    after = merged.get_input_embeddings().weight.detach()
    moved = torch.nonzero((after != embedding).any(dim=1)).flatten().tolist()
    assert moved and set(moved) <= set(used)  # only rows of tokens the training rows use
    assert merged.get_output_embeddings().weight.data_ptr() == merged.get_input_embeddings().weight.data_ptr()
    # the merged model computes what the trained one does
    batch = collate(encode_rows(ROWS.head(3), tiny_lm.tokenizer, ""), tiny_lm.tokenizer.pad_token_id)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        torch.testing.assert_close(merged(**inputs).logits, model(**inputs).logits, rtol=1e-4, atol=1e-4)
