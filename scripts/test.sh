#!/usr/bin/env bash
# Quick start, step 2: set up .venv, then run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The kedro-viz browser test drives Debian's Chromium through Playwright (which cannot
# download its own browser builds here).
if ! command -v chromium >/dev/null 2>&1; then
  echo "==> installing Chromium for the kedro-viz browser test (apt-get install chromium)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "scripts/test.sh: Chromium is missing and installing it needs root (apt-get install chromium)" >&2
    exit 1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
source scripts/env.sh
exec pytest "$@"
