#!/usr/bin/env bash
# Fresh machine -> tests: creates .venv, installs imgstore with its test, dask, compression and torch extras, then lints
# (ruff), type-checks (mypy) and runs pytest. Extra arguments go to pytest, e.g. scripts/test.sh -k decode -x
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# dask, hdf5plugin, torch and scikit-image (bench) are optional extras whose tests skip without them; CI installs them
# so those tests run.
# The torch extra is pinned (torch==2.13.0) so pip takes the CPU wheel found here rather than a CUDA build.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,dask,compression,torch,bench]"
.venv/bin/ruff check imgstore scripts tests
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
