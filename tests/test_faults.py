"""Faults a user meets: Ctrl-C (SIGINT) or a kill (SIGTERM) in the middle of each DVC stage.

One tiny project is reproduced with DVC once; then each stage is run again as DVC runs it
(``synthtune-stage <name>``) and signalled while its nodes run. Every output of every stage
must come through byte for byte, no hidden temporary sibling may be left once the stage has
run again, and DVC must still find the project up to date. A ``dvc repro`` stopped during
training redoes only training (resuming from its checkpoint) and what follows it.
"""

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from synthtune.experiments import compose
from synthtune.pipeline_registry import STAGES

from .conftest import new_project, scripts_env

# seconds in one process on a 2-core AVX2 CPU: the suite starts this file first (tests/conftest.py)
pytestmark = pytest.mark.duration(seconds=575)

# On a tiny project a stage can finish between the log line the test waits for and the
# signal it then sends (CI read the output of curation only after curation had exited).
# This start-up module, put on the signalled process's PYTHONPATH only, makes every node
# wait a few seconds after computing its outputs and before Kedro saves them, so the
# signal always lands mid-stage. Nothing in src/ knows about it.
# (importlib: `import kedro.pipeline.node as m` binds kedro.pipeline's attribute `node`,
# which is the function, so `m.Node` failed and the pause never ran)
SLOW_NODES = """
import importlib as _importlib
import time as _time

_node = _importlib.import_module("kedro.pipeline.node")

_run = _node.Node.run


def _slow_run(self, inputs=None):
    outputs = _run(self, inputs)
    _time.sleep(3)
    return outputs


_node.Node.run = _slow_run
"""


def start(args: list[str], cwd: Path, env: dict[str, str], slow: bool = False) -> subprocess.Popen:
    """A command in a process group of its own (as a terminal runs it), output merged;
    with ``slow``, each Kedro node pauses before its outputs are saved (see ``SLOW_NODES``)."""
    if slow:
        hooks = cwd.parent / "slow_nodes"
        hooks.mkdir(exist_ok=True)
        (hooks / "sitecustomize.py").write_text(SLOW_NODES)
        env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(hooks), env.get("PYTHONPATH")]))}
    return subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=_terminal_signals,
    )


def _terminal_signals() -> None:
    """Ctrl-C as a terminal's foreground command gets it. A shell starts background jobs with
    SIGINT ignored, the ignore is inherited, and Python then installs no KeyboardInterrupt
    handler, so under a test run started with ``&`` (``nohup .ci/run &``) the SIGINT cases
    ran every stage to the end."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_when(process: subprocess.Popen, ready, signum: int, timeout: float = 300) -> tuple[str, int]:
    """Read the process's output until ``ready(output)`` holds, then send ``signum`` to its
    process group (Ctrl-C in a terminal reaches every process of the foreground group);
    return the whole output and the exit status once it has exited."""
    output, deadline = "", time.monotonic() + timeout
    for line in process.stdout:
        output += line
        if ready(output):
            os.killpg(process.pid, signum)
            break
        assert time.monotonic() < deadline, output
    output += process.stdout.read()
    return output, process.wait(timeout=timeout)


def snapshot(data: Path) -> dict[str, str]:
    """md5 of every file under ``data`` (hidden temporary siblings included)."""
    return {str(p.relative_to(data)): hashlib.md5(p.read_bytes()).hexdigest() for p in data.rglob("*") if p.is_file()}


def leftovers(data: Path) -> list[str]:
    return sorted(str(p.relative_to(data)) for p in data.rglob(".*") if ".tmp" in p.name or ".old-" in p.name)


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    """A tiny project after a complete ``dvc repro``."""
    project = new_project(tmp_path_factory.mktemp("faults"))
    env = scripts_env()
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=project, check=True, env=env)
    (project / "params.yaml").write_text(yaml.safe_dump(compose(["budget=tiny"])))
    done = subprocess.run(["dvc", "repro", "-q"], cwd=project, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return project, env


def nodes_started(count: int):
    return lambda output: output.count("Running node:") >= count


# Each stage is signalled once its second node has started (training: once its first
# checkpoint is written), with Ctrl-C or a kill in turn.
@pytest.mark.parametrize(
    "stage, signum",
    [(s, signal.SIGINT if i % 2 == 0 else signal.SIGTERM) for i, s in enumerate(STAGES)]
    + [(s, signal.SIGTERM if i % 2 == 0 else signal.SIGINT) for i, s in enumerate(STAGES)],
    ids=lambda v: v if isinstance(v, str) else signal.Signals(v).name,
)
def test_a_signal_during_a_stage_loses_no_output(reproduced, stage, signum):
    project, env = reproduced
    data = project / "data"
    before = snapshot(data)
    checkpoints = data / "06_models/checkpoints"
    ready = (lambda out: any(checkpoints.glob("step-*"))) if stage == "training" else nodes_started(2)
    output, status = signal_when(
        start(["synthtune-stage", stage], project, env, slow=stage != "training"), ready, signum
    )
    assert "Error in sitecustomize" not in output, output  # the pause (SLOW_NODES) is in place
    assert status != 0 and "Running node:" in output, output  # stopped mid-stage
    after = snapshot(data)
    changed = sorted(p for p in before if after.get(p) != before[p])
    assert not changed, f"{stage}: outputs changed or lost after {signal.Signals(signum).name}: {changed}\n{output}"
    if stage == "training":  # either signal: the step in flight ends, a checkpoint is written
        assert "training interrupted; checkpoint at" in output and "Run again to resume" in output
    # the stage run again completes, resumes where it can, and leaves no temporary sibling
    rerun = subprocess.run(["synthtune-stage", stage], cwd=project, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    if stage == "training":
        assert "Resuming from" in rerun.stdout + rerun.stderr
    assert leftovers(data) == []
    assert not list(checkpoints.glob("step-*"))  # a finished run keeps none
    dvc = subprocess.run(["dvc", "status", "-q"], cwd=project, env=env, capture_output=True, text=True)
    assert dvc.returncode == 0, dvc.stdout + dvc.stderr  # every output has the bytes DVC recorded


def test_dvc_repro_stopped_in_training_redoes_only_training_and_resumes(reproduced):
    project, env = reproduced
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["training"] = {**params.get("training", {}), "max_steps": 16}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    checkpoints = project / "data/06_models/checkpoints"
    output, _ = signal_when(
        start(["dvc", "repro"], project, env),
        lambda out: "Running stage 'training'" in out and any(checkpoints.glob("step-*")),
        signal.SIGINT,
    )
    assert "Running stage 'training'" in output
    again = subprocess.run(["dvc", "repro"], cwd=project, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    ran = [s for s in [*STAGES, "export"] if f"Running stage '{s}'" in again.stdout]
    assert ran == ["training", "evaluation", "export"], again.stdout
    assert "Resuming from" in again.stdout + again.stderr
