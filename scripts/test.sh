#!/usr/bin/env bash
# Quick start, step 2: set up .venv, then run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
exec pytest "$@"
