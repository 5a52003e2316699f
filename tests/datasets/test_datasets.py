import copy
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from kedro.io import DatasetError

from synthtune.datasets import AtomicJSONDataset, FineTunedDataset, HFModelDataset
from synthtune.datasets._atomic import atomic_directory, remove_stale_siblings
from synthtune.llm import LanguageModel, LoraAdapter


@pytest.fixture
def peft_model(tiny_lm):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    model = get_peft_model(
        copy.deepcopy(tiny_lm.model), LoraConfig(task_type="CAUSAL_LM", r=4, target_modules="all-linear")
    )
    with torch.no_grad():  # non-zero B so the round trip is not trivially all zeros
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    return model


def test_adapter_round_trips_through_the_dataset(tmp_path, peft_model):
    from peft import get_peft_model_state_dict

    dataset = FineTunedDataset(filepath=str(tmp_path / "adapter"))
    assert not dataset.exists()
    dataset.save(peft_model)
    assert dataset.exists()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    loaded = dataset.load()
    assert isinstance(loaded, LoraAdapter)
    assert loaded.config.r == 4
    expected = get_peft_model_state_dict(peft_model)
    assert loaded.weights.keys() == expected.keys()
    for key, tensor in expected.items():
        assert torch.equal(loaded.weights[key], tensor)

    # a loaded adapter saves back to the same bytes
    again = FineTunedDataset(filepath=str(tmp_path / "again"))
    again.save(loaded)
    assert (tmp_path / "again" / "adapter_model.safetensors").read_bytes() == (
        tmp_path / "adapter" / "adapter_model.safetensors"
    ).read_bytes()


def test_missing_fine_tuned_model_names_the_path(tmp_path):
    with pytest.raises(DatasetError, match="Nothing fine-tuned at .*nowhere"):
        FineTunedDataset(filepath=str(tmp_path / "nowhere")).load()


def test_model_round_trips_through_the_dataset(tmp_path, tiny_lm):
    dataset = HFModelDataset(filepath=str(tmp_path / "model"))
    dataset.save(tiny_lm)
    loaded = dataset.load()
    assert isinstance(loaded, LanguageModel)
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, tiny_lm.model.eval()(ids).logits)
    assert loaded.tokenizer("dog dog a")["input_ids"] == tiny_lm.tokenizer("dog dog a")["input_ids"]


def test_atomic_directory_keeps_the_old_version_when_writing_fails(tmp_path):
    target = tmp_path / "out"
    with atomic_directory(target) as staging:
        (staging / "file").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as staging:
            (staging / "file").write_text("half")
            raise RuntimeError("interrupted")
    assert (target / "file").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_directory_swaps_in_one_step(tmp_path, monkeypatch):
    """On Linux the new version is exchanged with the old one (renameat2): no plain rename,
    so there is no moment when the target is missing."""
    target = tmp_path / "out"
    with atomic_directory(target) as staging:
        (staging / "file").write_text("old")

    def no_rename(self, other):
        raise AssertionError(f"two-step rename of {self} used")

    monkeypatch.setattr(Path, "rename", no_rename)
    with atomic_directory(target) as staging:
        (staging / "file").write_text("new")
    assert (target / "file").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_killed_writer_leaves_the_old_version_and_its_leftovers_go_next_time(tmp_path):
    target = tmp_path / "out"
    with atomic_directory(target) as staging:
        (staging / "file").write_text("old")
    script = (
        "import os, signal, sys\n"
        "from synthtune.datasets._atomic import atomic_directory\n"
        f"with atomic_directory({str(target)!r}) as staging:\n"
        "    (staging / 'file').write_text('half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", script], check=False)
    assert killed.returncode == -signal.SIGKILL
    assert (target / "file").read_text() == "old"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "out"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".out.tmp-")
    with atomic_directory(target) as staging:
        (staging / "file").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (target / "file").read_text() == "new"


def test_a_live_writers_staging_is_left_alone(tmp_path):
    target = tmp_path / "out"
    live = tmp_path / f".out.tmp-{os.getppid()}"  # a running process: maybe writing now
    live.mkdir()
    assert remove_stale_siblings(target) == []
    assert live.exists()


def test_an_atomic_file_save_removes_a_killed_runs_temporary_file(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".metrics.json.tmp-{int(dead.stdout)}"
    stale.write_text("{half")
    AtomicJSONDataset(filepath=str(tmp_path / "metrics.json")).save({"k": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_json_report_with_nan_is_refused_and_the_old_file_kept(tmp_path):
    path = tmp_path / "metrics.json"
    dataset = AtomicJSONDataset(filepath=str(path))
    dataset.save({"accuracy": 0.5})
    with pytest.raises(DatasetError, match="metrics.json"):
        dataset.save({"accuracy": float("nan")})  # "NaN" is not JSON: browsers and DVC reject it
    assert json.loads(path.read_text()) == {"accuracy": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
