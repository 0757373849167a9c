#!/usr/bin/env bash
# Fresh machine -> tests: creates .venv, installs imgstore with its test, dask and compression extras, then lints
# (ruff), type-checks (mypy) and runs pytest. Extra arguments go to pytest, e.g. scripts/test.sh -k decode -x
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# dask and hdf5plugin are optional extras whose tests skip without them; CI installs them so those tests run.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,dask,compression]"
.venv/bin/ruff check imgstore scripts tests
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
