"""kedro-viz builds a static site that lists every pipeline."""

import json
import subprocess
import sys

from synthtune.pipeline_registry import STAGES


def test_kedro_viz_build_lists_all_pipelines(project):
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "viz", "build"], cwd=project, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    main = json.loads((project / "build/api/main").read_text())
    assert {p["id"] for p in main["pipelines"]} >= {*STAGES, "full"}
    for stage in STAGES:
        assert (project / "build/api/pipelines" / stage).is_file()
    node_names = {n["name"] for n in main["nodes"] if n["type"] == "task"}
    assert {
        "build_vocabulary",
        "report_distributions",
        "run_expectation_suite",
        "fine_tune",
        "predict_tuned_test",
        "predict_base_external",
        "render_evaluation_report",
    } <= node_names
    assert "circular" not in result.stdout + result.stderr
