#!/usr/bin/env python3
"""Benchmark: ``export_vectors`` from flat (format 4) JPEG stores, spans of rows against one row at a time.

Builds two stores of ``--rows`` photo-like images (smooth random fields plus fine noise, so JPEG sizes are those
of photos) with ``ImageIndexer(encoding="jpeg:90")``: one of a fixed 256x256, one of rows of their own shapes
(256 on the shorter side, 256x341 or 341x256, ``variable=True``). Then, each in a fresh process (so peak RSS is
its own), fastest of ``--repeat`` runs:

  decode      Pillow decoding every row's bytes, read beforehand: the floor of any export
  fixed       export of the fixed store to .u8bin (its decoded pixels), and with ``--size 32``
  variable    export of the variable store with ``--size 64`` (centre crop + bicubic resize)
  per-row     the same exports reading ``store[i]`` one row at a time instead of ``store[a:b]`` spans

``--rounds`` processes per case are interleaved so that load from elsewhere hits every case alike; the fastest
run counts. Printed: rows/s and peak RSS (``ru_maxrss``, the largest over the rounds).

Usage: python scripts/bench_flat_export.py [--rows 2000] [--repeat 3] [--rounds 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _photo(i: int, h: int, w: int):  # type: ignore[no-untyped-def]
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(i)
    field = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(field).resize((w, h), Image.Resampling.BICUBIC), np.int16)
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


def build(work: Path, rows: int) -> None:
    from imgstore.store.writer import ImageIndexer

    with ImageIndexer(work / "fixed.h5", size=(256, 256), encoding="jpeg:90") as ix:
        for i in range(rows):
            ix.add(f"{i}.jpg", _photo(i, 256, 256))
    with ImageIndexer(work / "variable.h5", size=(256, 256), encoding="jpeg:90", variable=True) as ix:
        for i in range(rows):
            ix.add(f"{i}.jpg", _photo(i, *((256, 341) if i % 2 else (341, 256))))


def worker(case: str, work: Path, repeat: int) -> dict[str, float]:
    import io

    import numpy as np
    from PIL import Image

    from imgstore.store.reader import open_store
    from imgstore.vectors import export as E

    store_name, size, per_row = {
        "decode": ("fixed.h5", None, False),
        "fixed": ("fixed.h5", None, False),
        "fixed-32": ("fixed.h5", 32, False),
        "variable-64": ("variable.h5", 64, False),
        "fixed per-row": ("fixed.h5", None, True),
        "variable-64 per-row": ("variable.h5", 64, True),
    }[case]
    path = work / store_name
    if per_row:
        E._StoreRows.read = lambda self, a, b: E.Shrink().apply([self.store[i] for i in range(a, b)]) if self.shape \
            else [self.store[i] for i in range(a, b)]  # type: ignore[method-assign]  # fmt: skip
    best = float("inf")
    with open_store(path) as store:
        n = len(store)
        blobs = [store.row_bytes(i) for i in range(n)] if case == "decode" else []
    for _ in range(repeat):
        start = time.perf_counter()
        if case == "decode":
            for b in blobs:
                np.asarray(Image.open(io.BytesIO(b)))
        else:
            E.export_vectors(path, work / "out.u8bin", size=size, overwrite=True)
        best = min(best, time.perf_counter() - start)
    mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rows_per_s": n / best, "seconds": best, "peak_rss_mib": mib, "store_mb": path.stat().st_size / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.work, args.repeat)))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-flat-"))
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "variable.h5").exists():
        started = time.perf_counter()
        build(work, args.rows)
        print(f"built two stores of {args.rows} JPEG rows in {work} ({time.perf_counter() - started:.1f}s)")
    cases = ("decode", "fixed", "fixed per-row", "fixed-32", "variable-64", "variable-64 per-row")
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):
        for case in cases:
            cmd = [sys.executable, __file__, "--worker", case, "--work", str(work), "--repeat", str(args.repeat)]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            seen = best.setdefault(case, r)
            seen["peak_rss_mib"] = max(seen["peak_rss_mib"], r["peak_rss_mib"])
            if r["seconds"] < seen["seconds"]:
                seen.update(rows_per_s=r["rows_per_s"], seconds=r["seconds"])
    for case in cases:
        r = best[case]
        print(f"{case:22s} {r['rows_per_s']:8,.0f} rows/s  {r['seconds']:6.2f}s  peak RSS {r['peak_rss_mib']:6.0f} MiB"
              f"  (store {r['store_mb']:.1f} MB)")


if __name__ == "__main__":
    main()
