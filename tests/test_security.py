"""Security hygiene: nothing unpickled, no remote code, offline from any shell, no path
from the parameters leading out of the project by accident."""

import ast
import os
import subprocess
import sys

import pytest

from synthtune.config import TrainingParams, parse
from synthtune.experiments import kedro_parameters

from .conftest import PROJECT_ROOT

SOURCES = sorted((PROJECT_ROOT / "src/synthtune").rglob("*.py"))


def calls(name: str):
    """Every call to a function or method named ``name`` in the package: (file, line, node)."""
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if called == name:
                    yield path.relative_to(PROJECT_ROOT), node.lineno, node


def keyword(node: ast.Call, name: str):
    value = next((k.value for k in node.keywords if k.arg == name), None)
    return value.value if isinstance(value, ast.Constant) else value


def test_no_pickle_is_loaded_anywhere():
    assert not [
        c[:2]
        for name in ("loads", "load", "read_pickle", "Unpickler")
        for c in calls(name)
        if "pickle" in ast.unparse(c[2].func)
    ]
    torch_loads = list(calls("load"))
    unsafe = [
        c[:2] for c in torch_loads if "torch" in ast.unparse(c[2].func) and keyword(c[2], "weights_only") is not True
    ]
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"


def test_remote_code_is_never_trusted():
    trusting = [
        c[:2]
        for name in ("from_pretrained", "AutoTokenizer", "AutoConfig")
        for c in calls(name)
        if keyword(c[2], "trust_remote_code") not in (None, False)
    ]
    assert not trusting


def test_importing_the_package_makes_any_shell_offline():
    """From a plain environment (none of scripts/env.sh's variables), a download is refused
    by huggingface_hub itself instead of reaching the network."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "KEDRO_", "DVC_", "DO_NOT"))
    }
    script = (
        "import synthtune\n"
        "from huggingface_hub import constants, hf_hub_download\n"
        "assert constants.HF_HUB_OFFLINE, 'not offline'\n"
        "try:\n"
        "    hf_hub_download('HuggingFaceTB/SmolLM2-135M', 'config.json', cache_dir='/nonexistent-cache')\n"
        "except Exception as error:\n"
        "    print(type(error).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in {"OfflineModeIsEnabled", "LocalEntryNotFoundError"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"checkpoint": {"dir": "../elsewhere"}}, "training.checkpoint.dir='../elsewhere': Value error, relative path"),
        (
            {"base_model": {"path": "data/../../up"}},
            r"training.base_model.path='data/../../up': Value error, relative path",
        ),
    ],
)
def test_a_relative_path_cannot_leave_the_project(override, message):
    with pytest.raises(ValueError, match=message):
        parse(TrainingParams, kedro_parameters(PROJECT_ROOT, "base", {"training": override})["training"], "training")


def test_an_absolute_path_is_a_choice_and_is_kept(tmp_path):
    params = kedro_parameters(PROJECT_ROOT, "base", {"training": {"checkpoint": {"dir": str(tmp_path)}}})["training"]
    assert parse(TrainingParams, params, "training").checkpoint.dir == str(tmp_path)
