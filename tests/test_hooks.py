import json
from pathlib import Path

from synthtune.hooks import run_summary
from synthtune.metrics import accuracy


def test_run_summary_lists_outputs_scores_and_how_to_open_them(tmp_path):
    metrics = tmp_path / "08_reporting/metrics.json"
    metrics.parent.mkdir()
    metrics.write_text(
        json.dumps(
            {
                "tuned": {"test": {"strict": accuracy([True] * 144 + [False] * 56)}},
                "base": {"test": {"strict": accuracy([False] * 100)}},
            }
        )
    )
    written = {
        "metrics": metrics,
        "evaluation_report": tmp_path / "08_reporting/evaluation_report.html",
        "train_set": tmp_path / "03_primary/train.parquet",
    }
    text = run_summary(written)
    assert "3 outputs written" in text
    assert f"{tmp_path / '08_reporting'}/: evaluation_report.html, metrics.json" in text
    assert f"{tmp_path / '03_primary'}/: train.parquet" in text
    assert "test                     144/200 = 72.0% [65.4, 77.8] | 0/100 = 0.0% [0.0, 3.7]" in text
    assert f"open {tmp_path / '08_reporting/evaluation_report.html'} in a browser" in text
    assert "kedro viz run" in text


def test_run_summary_without_metrics_gives_no_scores():
    text = run_summary({"vocabulary": Path("data/01_raw/vocabulary.parquet")})
    assert "data/01_raw/: vocabulary.parquet" in text and "Strict accuracy" not in text
