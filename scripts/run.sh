#!/usr/bin/env bash
# Quick start, step 1: set up .venv, then run the whole pipeline on the default
# (CPU-sized) profile. Extra arguments go to `kedro run`, e.g. `--env smoke`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
exec kedro run --pipelines full "$@"
