#!/usr/bin/env bash
# Fresh machine -> tests: creates .venv, installs imgstore with its test extra, runs pytest.
# Extra arguments go to pytest, e.g. scripts/test.sh -k decode -x
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
exec .venv/bin/python -m pytest "$@"
