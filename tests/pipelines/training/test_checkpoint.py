import copy
import json
import logging
import random

import numpy as np
import pytest
import torch

from synthtune.pipelines.training import checkpoint
from synthtune.pipelines.training.checkpoint import (
    latest_checkpoint,
    load_latest,
    remove_checkpoints,
    restore,
    run_fingerprint,
    save_checkpoint,
    set_rng_state,
)

from ...conftest import TRAIN_PARAMS, make_rows

ROWS = make_rows(["a a", "dog dog a", "the cat sat"])
OURS, THEIRS = "a" * 64, "b" * 64


def trainer():
    """A one-layer model with its optimizer and schedule, one step in."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: 1 / (done + 1))
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def plant(directory, name, step, fingerprint):
    """A checkpoint directory of another run: only its state.json matters here."""
    (directory / name).mkdir(parents=True)
    (directory / name / "state.json").write_text(json.dumps({"step": step, "fingerprint": fingerprint}))


def save(directory, step, fingerprint=OURS, keep_last=1, best=False):
    model, optimizer, scheduler = trainer()
    best_weights = {n: p.detach().clone() for n, p in model.named_parameters()} if best else None
    state = {"fingerprint": fingerprint, "log": [], "best_weights": best_weights}
    return save_checkpoint(directory, step, model, optimizer, scheduler, state, keep_last)


def test_pruning_keeps_this_runs_newest_and_leaves_other_runs_alone(tmp_path):
    plant(tmp_path, "step-000080", 80, THEIRS)  # a stale run with other parameters, later by name
    written = [save(tmp_path, step, keep_last=2) for step in (20, 40, 60)]
    assert all(path.name.startswith(f"step-0000{s}") for path, s in zip(written, (20, 40, 60), strict=True))
    assert not written[0].exists()
    assert written[1].is_dir() and written[2].is_dir()  # the newest two of this run, the last one written
    assert (tmp_path / "step-000080").is_dir()


def test_the_checkpoint_just_written_is_never_pruned(tmp_path):
    plant(tmp_path, "step-000080", 80, THEIRS)
    newer_of_ours = save(tmp_path, 60)
    written = save(tmp_path, 20)  # a rerun without resume, behind its own older checkpoint
    assert written.is_dir() and (written / "trainer_state.pt").is_file()
    assert not newer_of_ours.exists()
    assert (tmp_path / "step-000080").is_dir()


def test_two_runs_checkpointing_the_same_step_keep_both(tmp_path):
    ours, theirs = save(tmp_path, 20, OURS), save(tmp_path, 20, THEIRS)
    assert ours != theirs and ours.is_dir() and theirs.is_dir()


def test_latest_checkpoint_is_the_newest_of_this_run(tmp_path, caplog):
    plant(tmp_path, "step-000080", 80, THEIRS)
    save(tmp_path, 20, keep_last=5)
    newest = save(tmp_path, 40, keep_last=5)
    assert latest_checkpoint(tmp_path, OURS) == newest
    with caplog.at_level(logging.WARNING):
        path, state = load_latest(tmp_path, OURS)
    assert path == newest and state["step"] == 40
    assert "step-000080" in caplog.text and "run with other parameters" in caplog.text
    assert load_latest(tmp_path, "c" * 64) is None


def test_remove_checkpoints_removes_only_this_runs(tmp_path, caplog):
    plant(tmp_path, "step-000080", 80, THEIRS)
    save(tmp_path, 20)
    with caplog.at_level(logging.WARNING):
        remove_checkpoints(tmp_path, OURS)
    assert [p.name for p in tmp_path.iterdir()] == ["step-000080"]
    assert "left in place" in caplog.text
    remove_checkpoints(tmp_path / "never-made", OURS)  # nothing to remove is fine


def test_remove_checkpoints_removes_the_directory_once_empty(tmp_path):
    save(tmp_path / "ckpt", 20)
    remove_checkpoints(tmp_path / "ckpt", OURS)
    assert not (tmp_path / "ckpt").exists()


def fingerprint(model, **overrides):
    return run_fingerprint({**TRAIN_PARAMS, **overrides}, ROWS, ROWS.iloc[:0], model)


def test_fingerprint_covers_every_base_tensor(tiny_lm):
    model = copy.deepcopy(tiny_lm.model)
    before = fingerprint(model)
    assert fingerprint(model) == before
    with torch.no_grad():
        model.model.norm.weight[0] += 1  # the last tensor by name, beyond any sampled prefix
    assert fingerprint(model) != before


def test_fingerprint_covers_library_versions(tiny_lm, monkeypatch):
    import peft
    import transformers

    before = fingerprint(tiny_lm.model)
    for module in (torch, transformers, peft):
        with monkeypatch.context() as patch:
            patch.setattr(module, "__version__", "0.0.0-other")
            assert fingerprint(tiny_lm.model) != before, module.__name__


def test_fingerprint_covers_the_code_that_trains_and_picks_the_best_step(tiny_lm, monkeypatch):
    import inspect
    from pathlib import Path

    from synthtune import inference, llm
    from synthtune.pipelines.training import batching, checkpoint, loop

    before = fingerprint(tiny_lm.model)
    read_bytes = Path.read_bytes
    for module in (batching, loop, checkpoint, llm, inference):
        source = Path(inspect.getsourcefile(module)).resolve()
        with monkeypatch.context() as patch:
            patch.setattr(Path, "read_bytes", lambda p, s=source: read_bytes(p) + (b"#" if p.resolve() == s else b""))
            assert fingerprint(tiny_lm.model) != before, module.__name__


def test_fingerprint_covers_max_steps_but_not_time_budget_or_checkpointing(tiny_lm):
    before = fingerprint(tiny_lm.model)
    assert fingerprint(tiny_lm.model, max_steps=TRAIN_PARAMS["max_steps"] + 1) != before  # the schedule depends on it
    assert fingerprint(tiny_lm.model, max_minutes=5) == before
    assert fingerprint(tiny_lm.model, checkpoint={**TRAIN_PARAMS["checkpoint"], "every_steps": 7}) == before


def test_trainer_state_loads_with_weights_only_and_rng_round_trips(tmp_path):
    model, optimizer, scheduler = trainer()
    np.random.seed(2)
    random.seed(3)
    state = {"fingerprint": OURS, "log": [], "best_weights": None}
    path = save_checkpoint(tmp_path, 20, model, optimizer, scheduler, state)
    expected = (torch.rand(3), np.random.rand(3), np.random.randn(), [random.random() for _ in range(3)])

    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    saved = torch.load(path / "trainer_state.pt", weights_only=True)  # tensors and plain values only
    assert set(saved) >= {"optimizer", "scheduler", "rng"}
    set_rng_state(saved["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and np.random.randn() == expected[2]
    assert [random.random() for _ in range(3)] == expected[3]


def test_restore_loads_what_was_saved(tmp_path):
    path = save(tmp_path, 20)
    model, optimizer, scheduler = trainer()
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    restore(path, model, torch.optim.AdamW(model.parameters(), lr=1e-2), scheduler)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in reference.items())


class Payload:
    """Unpickling this creates a file: proof that loading ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_planted_trainer_state_is_refused_without_running_it(tmp_path):
    path = save(tmp_path / "ckpt", 20)
    marker = tmp_path / "payload-ran"
    torch.save({"optimizer": Payload(marker), "scheduler": {}, "rng": {}}, path / "trainer_state.pt")
    model, optimizer, scheduler = trainer()
    with pytest.raises(ValueError, match=r"trainer_state\.pt: refusing to load"):
        restore(path, model, optimizer, scheduler)
    assert not marker.exists()


def test_hash_state_dict_streams_every_byte():
    digests = []
    for value in (0.0, 1.0):
        tensors = {"a": torch.zeros(4), "b": torch.full((2, 3), value)}
        digest = checkpoint.hashlib.sha256()
        checkpoint.hash_state_dict(digest, tensors)
        digests.append(digest.hexdigest())
    assert digests[0] != digests[1]


@pytest.mark.parametrize("damaged", ["trainable.safetensors", "best.safetensors"])
def test_a_truncated_checkpoint_is_named_and_nothing_is_loaded(tmp_path, damaged):
    path = save(tmp_path / "ckpt", 20, best=True)
    file = path / damaged
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    model, optimizer, scheduler = trainer()
    with torch.no_grad():
        model.weight.zero_()  # differs from the saved weights: a partial load would show
    before = copy.deepcopy((model.state_dict(), optimizer.state_dict(), scheduler.state_dict()))
    with pytest.raises(ValueError, match=rf"{damaged}: the checkpoint is damaged or truncated.*Delete .*ckpt"):
        restore(path, model, optimizer, scheduler)
    assert torch.equal(model.weight, before[0]["weight"])
    assert str(optimizer.state_dict()) == str(before[1]) and scheduler.state_dict() == before[2]
