#!/usr/bin/env bash
# Fresh machine -> a store: creates .venv, installs imgstore, generates sample photos (every mode and a few broken
# files), ingests them and prints the store's info. Output goes to demo-out/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
rm -rf demo-out && mkdir -p demo-out
.venv/bin/python -m imgstore.samples demo-out/photos
.venv/bin/imgstore ingest demo-out/photos demo-out/photos.h5 --size 128 --quiet
.venv/bin/imgstore info demo-out/photos.h5 --skipped
