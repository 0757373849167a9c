#!/usr/bin/env python3
"""Crash test: kill -9 a writer at random moments, many times, and check what survives.

Each trial starts a child process that appends images to a new store through ``ImageIndexer`` forever (a flush
every ``--buffer`` images, a skipped record every 5), kills it with SIGKILL after a random delay, then checks:

  raw      the variable-length ``image_names`` dataset read directly with h5py (what a reader without the journal
           sees): does it read, and hold the right names for the first ``count`` rows?
  store    ``imgstore.open``: every counted image, name and skipped row reads and is right;
  reopen   ``ImageIndexer.reopen`` (what --resume and --append do) appends one more image and closes cleanly.

Prints the failures of each check. "raw" failures are HDF5's variable-length heap left torn by the kill; the
journal is what keeps "store" and "reopen" at zero.

Usage: python scripts/crash_test.py [--trials 150] [--buffer 50] [--min 0.3] [--max 1.5]
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WRITER = r"""
import sys, numpy as np
from imgstore.writer import ImageIndexer
out, buf = sys.argv[1], int(sys.argv[2])
img = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
with ImageIndexer(out, size=(32, 32), buffer_size=buf) as ix:
    i = 0
    while True:
        ix.add(f"dir/img{i:07d}.jpg", img, sha256=bytes(32))
        if i % 5 == 0:
            ix.skip(f"bad{i}.jpg", "truncated JPEG")
        i += 1
"""


def expected(i: int) -> str:
    return f"dir/img{i:07d}.jpg"


def check_raw(path: Path) -> str | None:
    from imgstore.h5 import open_read

    try:
        with open_read(path) as f:
            n = int(f.attrs["count"])
            names = [v.decode() for v in f["image_names"][:n]]
        return None if names == [expected(i) for i in range(n)] else "wrong names"
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        return f"{type(exc).__name__}: {exc}"


def check_store(path: Path) -> tuple[str | None, int]:
    import imgstore

    try:
        with imgstore.open(path) as s:
            n = len(s)
            s[:]
            if s.names != [expected(i) for i in range(n)]:
                return "wrong names", n
            skipped = s.skipped
            if not all(r == "truncated JPEG" for _, r in skipped) or len(skipped) < n // 5:
                return f"skipped list wrong ({len(skipped)} rows for {n} images)", n
        return None, n
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}", 0


def check_reopen(path: Path, n: int) -> str | None:
    import imgstore
    from imgstore.writer import ImageIndexer

    try:
        with ImageIndexer.reopen(path) as ix:
            ix.add("extra.jpg", np.zeros((32, 32, 3), np.uint8), sha256=bytes(32))
        with imgstore.open(path) as s:
            if len(s) != n + 1 or s.names[-1] != "extra.jpg" or not s.complete:
                return "reopened store is wrong"
        return None
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=150)
    ap.add_argument("--buffer", type=int, default=50, help="images per flush in the writer")
    ap.add_argument("--min", type=float, default=0.3, help="shortest delay before the kill, seconds")
    ap.add_argument("--max", type=float, default=1.5, help="longest delay before the kill, seconds")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    failures: dict[str, list[str]] = {"raw": [], "store": [], "reopen": []}
    counts = []
    with tempfile.TemporaryDirectory() as td:
        for trial in range(args.trials):
            path = Path(td) / f"t{trial}.h5"
            proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(args.buffer)])
            time.sleep(rng.uniform(args.min, args.max))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if not path.exists():
                continue  # killed before the file was created: nothing to check
            raw = check_raw(path)
            store, n = check_store(path)
            reopen = check_reopen(path, n) if store is None else "not tried"
            for key, result in (("raw", raw), ("store", store), ("reopen", reopen)):
                if result is not None:
                    failures[key].append(f"trial {trial}: {result}")
            counts.append(n)
            path.unlink()
    done = len(counts)
    print(f"{done} kills (flush every {args.buffer} images; {min(counts, default=0)}-{max(counts, default=0)} "
          "images committed when killed)")  # fmt: skip
    for key, items in failures.items():
        print(f"  {key:<7} {len(items)} failures" + "".join(f"\n    {x}" for x in items[:5]))
    return 1 if failures["store"] or failures["reopen"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
