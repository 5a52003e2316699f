"""dvc.yaml agrees with the Kedro catalog, and `dvc repro` runs the project then does nothing."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog

from synthtune.experiments import compose
from synthtune.pipeline_registry import STAGES, register_pipelines

from .conftest import PROJECT_ROOT, scripts_env

# seconds in one process on a 2-core AVX2 CPU: the suite starts this file first (tests/conftest.py)
pytestmark = pytest.mark.duration(seconds=135)

DVC = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
CATALOG = DataCatalog.from_config(OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env="base")["catalog"])


def filepath(dataset: str) -> str | None:
    """Where the catalog persists a dataset (dataset factories resolved), or None (memory)."""
    config = CATALOG.config_resolver.resolve_pattern(dataset)
    return config.get("filepath") if config else None


def declared(stage: dict) -> list[str]:
    """Every path a stage writes: outs, metrics and plots."""
    paths = []
    for key in ("outs", "metrics", "plots"):
        for entry in stage.get(key, []):
            paths.append(entry if isinstance(entry, str) else next(iter(entry)))
    return paths


def test_one_stage_per_pipeline_running_it():
    """The five stages in order, and ``export`` (the merged model) after training."""
    assert [name for name in DVC if name != "export"] == list(STAGES)
    assert list(DVC).index("export") > list(DVC).index("training")
    registered = register_pipelines()
    for name, stage in DVC.items():
        assert stage["cmd"] == f"synthtune-stage {name}" and name in registered


# Run logs: wall-clock readings that differ from run to run, like Kedro's own logs. As DVC
# outs they would make every rerun look like a change.
RUN_LOGS = {"training_speed"}


def test_every_persisted_dataset_is_an_out_of_the_stage_that_writes_it():
    pipelines = register_pipelines()
    for name, stage in DVC.items():
        written = {filepath(d) for d in pipelines[name].all_outputs() - RUN_LOGS} - {None}
        outs = set(declared(stage))
        # an out is a file the stage writes, or a folder of them (one file per evaluation set)
        assert all(w in outs or str(Path(w).parent) in outs for w in written), name
        assert all(o in written or any(str(Path(w).parent) == o for w in written) for o in outs), name


def test_run_logs_are_no_outs():
    assert all(filepath(d) not in declared(stage) for d in RUN_LOGS for stage in DVC.values())


def test_outs_do_not_overlap():
    paths = [p for stage in DVC.values() for p in declared(stage)]
    assert len(paths) == len(set(paths))
    for a in paths:
        for b in paths:
            assert a == b or not b.startswith(a.rstrip("/") + "/")


def test_data_deps_are_outs_of_earlier_stages_or_config():
    earlier: set[str] = set()
    for stage in DVC.values():
        for dep in stage["deps"]:
            assert dep in earlier or (PROJECT_ROOT / dep).exists(), dep  # data/01_raw/cute: a DVC import
        earlier |= set(declared(stage))


def test_params_name_existing_keys():
    for name, stage in DVC.items():
        if name == "export":  # no parameters of its own: only which environment's catalog
            assert stage["params"] == [{"params.yaml": ["kedro_env"]}]
            continue
        files = [next(iter(entry)) for entry in stage["params"]]
        assert files[0] == f"conf/base/parameters_{name}.yml"  # each stage's own file first
        assert "params.yaml" in files
        for entry in stage["params"]:
            ((path, keys),) = entry.items()
            params = yaml.safe_load((PROJECT_ROOT / path).read_text())
            if path == "params.yaml":  # the composed experiment config: every key always there
                assert keys[:2] == ["kedro_env", name], name
            for key in keys:
                node = params
                for part in key.split("."):
                    assert part in node, (name, path, key)
                    node = node[part]


@pytest.fixture
def dvc_project(project):
    env = scripts_env()  # the stages call synthtune-stage: this interpreter's scripts first on PATH
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=project, check=True, env=env)
    (project / "params.yaml").write_text(yaml.safe_dump(compose(["budget=tiny"])))  # what `dvc exp run -S` writes
    return project, env


def test_dvc_repro_runs_every_stage_then_nothing_and_round_trips_through_a_remote(dvc_project):
    project, env = dvc_project
    first = subprocess.run(["dvc", "repro"], cwd=project, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    for stage in [*STAGES, "export"]:
        assert f"Running stage '{stage}'" in first.stdout
    assert (project / "data/06_models/merged_model/config.json").is_file()
    assert (project / "dvc.lock").is_file()
    assert (project / "data/08_reporting/metrics.json").is_file()
    second = subprocess.run(["dvc", "repro"], cwd=project, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert "Running stage" not in second.stdout
    status = subprocess.run(["dvc", "status"], cwd=project, env=env, capture_output=True, text=True)
    assert "up to date" in status.stdout

    # a remote round trip: push, lose the cache and every out, pull; the same bytes come back
    metrics = (project / "data/08_reporting/metrics.json").read_bytes()
    adapter = sorted((project / "data/06_models/fine_tuned").iterdir())
    adapter_bytes = [p.read_bytes() for p in adapter]
    remote = project.parent / "remote"
    for args in (["remote", "add", "-d", "test", str(remote)], ["push", "-q"]):
        done = subprocess.run(["dvc", *args], cwd=project, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    shutil.rmtree(project / ".dvc/cache")
    shutil.rmtree(project / "data/06_models")
    (project / "data/08_reporting/metrics.json").unlink()
    pulled = subprocess.run(["dvc", "pull", "-q"], cwd=project, env=env, capture_output=True, text=True)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert (project / "data/08_reporting/metrics.json").read_bytes() == metrics
    assert [p.read_bytes() for p in sorted((project / "data/06_models/fine_tuned").iterdir())] == adapter_bytes
    status = subprocess.run(["dvc", "status"], cwd=project, env=env, capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout
