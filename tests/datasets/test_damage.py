"""A damaged artifact is detected and named on load, never half-read."""

import pandas as pd
import pytest
from kedro.io import DatasetError

from synthtune.datasets import AtomicParquetDataset, FineTunedDataset, HFModelDataset
from synthtune.llm import LoraAdapter


def truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_a_truncated_table_is_named(tmp_path):
    path = tmp_path / "train.parquet"
    AtomicParquetDataset(filepath=str(path)).save(pd.DataFrame({"text": ["dog"] * 100, "label": range(100)}))
    truncate(path)
    with pytest.raises(DatasetError, match=rf"(?s){path}.*the file is corrupted"):  # Kedro and pyarrow's words
        AtomicParquetDataset(filepath=str(path)).load()


def test_a_truncated_base_model_is_named(tmp_path, tiny_lm):
    path = tmp_path / "base_model"
    HFModelDataset(filepath=str(path)).save(tiny_lm)
    truncate(path / "model.safetensors")
    with pytest.raises(DatasetError, match=rf"{path} is damaged or truncated \(SafetensorError: .*\); write it again"):
        HFModelDataset(filepath=str(path)).load()


def test_a_truncated_adapter_is_named(tmp_path, tiny_lm):
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    peft = get_peft_model(tiny_lm.model, LoraConfig(task_type="CAUSAL_LM", r=2, target_modules="all-linear"))
    adapter = LoraAdapter(config=peft.peft_config["default"], weights=get_peft_model_state_dict(peft))
    peft.unload()
    path = tmp_path / "fine_tuned"
    FineTunedDataset(filepath=str(path)).save(adapter)
    truncate(path / "adapter_model.safetensors")
    with pytest.raises(DatasetError, match=rf"{path} is damaged or truncated \(SafetensorError: .*\); write it again"):
        FineTunedDataset(filepath=str(path)).load()


def test_an_unwritable_output_is_named_and_the_old_file_kept(tmp_path):
    path = tmp_path / "reports/metrics.parquet"
    dataset = AtomicParquetDataset(filepath=str(path))
    dataset.save(pd.DataFrame({"k": [1]}))
    (tmp_path / "blocked").write_text("a file where a folder should be")
    with pytest.raises(DatasetError, match=r"(?s)blocked/metrics.parquet.*File exists: .*blocked"):
        AtomicParquetDataset(filepath=str(tmp_path / "blocked/metrics.parquet")).save(pd.DataFrame({"k": [2]}))
    assert dataset.load()["k"].tolist() == [1]


def test_a_full_disk_during_a_save_keeps_the_old_file(tmp_path, monkeypatch):
    import errno

    path = tmp_path / "train.parquet"
    dataset = AtomicParquetDataset(filepath=str(path))
    dataset.save(pd.DataFrame({"k": [1]}))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(DatasetError, match=rf"(?s){path}.*No space left on device"):
        dataset.save(pd.DataFrame({"k": [2]}))
    monkeypatch.undo()
    assert dataset.load()["k"].tolist() == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.parquet"]
