import copy

import pytest
import torch
from kedro.io import DatasetError

from synthtune.datasets import FineTunedDataset, HFModelDataset
from synthtune.datasets._atomic import atomic_directory
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
