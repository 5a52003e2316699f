"""The README's worked example of adding a task runs as written, through every pipeline."""

import json
import re
import shlex
import subprocess

import pandas as pd
import pytest
import yaml

from .conftest import PROJECT_ROOT, new_project, scripts_env

# seconds in one process on a 2-core AVX2 CPU: the suite starts this file first (tests/conftest.py)
pytestmark = pytest.mark.duration(seconds=56)

SECTION = PROJECT_ROOT.joinpath("README.md").read_text().split("## Adding a task", 1)[1].split("\n## ", 1)[0]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", SECTION, re.DOTALL)


def test_the_readme_task_example_runs_through_the_whole_pipeline(tmp_path):
    (module,) = blocks("python")
    (probes,) = blocks("yaml")
    (command,) = blocks("bash")
    project = new_project(tmp_path)
    (project / "src/synthtune/tasks/word_count.py").write_text(module)
    spec = yaml.safe_load((project / "conf/base/probes.yml").read_text())
    spec.update(yaml.safe_load(probes))
    (project / "conf/base/probes.yml").write_text(yaml.safe_dump(spec))
    # the README's command as written, in the tiny environment, with the copy's sources first
    env = {**scripts_env(), "PYTHONPATH": str(project / "src")}
    done = subprocess.run(
        [*shlex.split(command), "--env", "smoke"], cwd=project, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    test = pd.read_parquet(project / "data/03_primary/test.parquet")
    assert (test["label"] == test["text"].str.split().str.len()).all()
    assert test["prompt"].str.startswith(("how many words", "Count the words")).all()
    probes = pd.read_parquet(project / "data/03_primary/probes.parquet")
    assert sorted(probes["label"]) == [2, 3, 100]
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    assert metrics["tuned"]["probes"]["strict"]["n"] == 3
