import json

import pandas as pd
import pytest
from kedro.io import DatasetError

from synthtune.datasets import AtomicCSVDataset, AtomicJSONDataset, AtomicParquetDataset


def test_parquet_round_trips_and_a_failed_save_keeps_the_old_file(tmp_path):
    path = tmp_path / "rows.parquet"
    dataset = AtomicParquetDataset(filepath=str(path))
    rows = pd.DataFrame({"text": ["a a", "dog dog a"], "label": [2, 7]})
    dataset.save(rows)
    pd.testing.assert_frame_equal(dataset.load(), rows)
    before = path.read_bytes()
    with pytest.raises(DatasetError):
        dataset.save(pd.DataFrame({"bad": [object()]}))  # pyarrow cannot write this
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["rows.parquet"]  # no staging file left


def test_json_and_csv_save_through_a_staging_file(tmp_path):
    AtomicJSONDataset(filepath=str(tmp_path / "m.json")).save({"exact_match": 0.5})
    assert json.loads((tmp_path / "m.json").read_text()) == {"exact_match": 0.5}
    AtomicCSVDataset(filepath=str(tmp_path / "log.csv"), save_args={"index": False}).save(pd.DataFrame({"step": [1]}))
    assert (tmp_path / "log.csv").read_text().splitlines() == ["step", "1"]
    with pytest.raises(DatasetError):
        AtomicJSONDataset(filepath=str(tmp_path / "m.json")).save({"not": object()})
    assert json.loads((tmp_path / "m.json").read_text()) == {"exact_match": 0.5}
