#!/usr/bin/env bash
# Fresh machine -> a store: creates .venv, installs imgstore, generates sample photos (every mode and a few broken
# files), ingests them with folder labels, prints the store's info and draws demo-out/preview.png (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
rm -rf demo-out && mkdir -p demo-out
.venv/bin/python -m imgstore.samples demo-out/photos
.venv/bin/imgstore ingest demo-out/photos demo-out/photos.h5 --size 128 --labels folder --quiet
.venv/bin/imgstore info demo-out/photos.h5 --skipped
.venv/bin/imgstore preview demo-out/photos.h5 demo-out/preview.png --count 64
