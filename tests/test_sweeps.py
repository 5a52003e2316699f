"""Hydra's command line (synthtune-exp): a two-job sweep of the case-study preset, each job a
Kedro session with its own data, compared when the sweep ends; run as the case study's DVC
stage declares it (experiments/dvc.yaml), shrunk to the tiny environment."""

import json
import shlex
import subprocess

import pytest
import yaml

from .conftest import PROJECT_ROOT, scripts_env

# seconds in one process on a 2-core AVX2 CPU: the suite starts this file first (tests/conftest.py)
pytestmark = pytest.mark.duration(seconds=178)

CASE_STUDY = yaml.safe_load((PROJECT_ROOT / "experiments/dvc.yaml").read_text())["stages"]["case_study"]


def test_case_study_stage_runs_each_job_in_its_own_folder_and_writes_its_declared_report(project):
    """The stage's own command, with the tiny budget, two profiles and the joblib launcher
    (a Hydra plugin, jobs in worker processes, no code for it) appended."""
    command = [
        *shlex.split(CASE_STUDY["cmd"]),
        "budget=tiny",
        "profile=naive,usage",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    ]
    result = subprocess.run(
        command, cwd=project, env=scripts_env(), capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    sweep = project / "multirun" / "case_study"
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2
    for job, profile in zip(jobs, ["naive", "usage"], strict=True):
        config = yaml.safe_load((job / "config.yaml").read_text())
        assert config["generation"]["profile"] == profile and config["kedro_env"] == "smoke"
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["tuned"]["test"]["strict"]["n"] > 0
        assert (job / "data/06_models/fine_tuned").is_dir()
    assert not (project / "data/08_reporting/metrics.json").exists()  # the jobs never touch data/

    (report,) = CASE_STUDY["outs"]  # the stage's one out: the report, nothing of the sweep's scratch
    report = project / report
    table = (report / "comparison.csv").read_text()
    assert "naive,test," in table and "usage,probes," in table
    assert (report / "comparison.png").stat().st_size > 0
    assert "| naive |" in (report / "comparison.md").read_text()
    assert (report / "worst_slices.csv").is_file()
    for job, profile in zip(jobs, ["naive", "usage"], strict=True):  # each job's config and metrics, kept
        assert (report / "jobs" / profile / "config.yaml").read_text() == (job / "config.yaml").read_text()
        kept = json.loads((report / "jobs" / profile / "metrics.json").read_text())
        assert kept == json.loads((job / "metrics.json").read_text())
    assert not (sweep / "comparison.csv").exists()  # written where report_dir says, not twice
