#!/usr/bin/env python3
"""Benchmark: imgstore's vector writers vs a per-element ``struct.pack`` script vs ``numpy.tofile``, in one run.

Every measurement runs in a fresh subprocess (so peak RSS is its own), on the same synthetic float32 data
(``--rows`` x ``--dim``, standard normal, seed 0). Each process makes one untimed warm-up run, then ``--repeat``
timed runs with ``os.sync()`` before each (so one run's dirty pages do not slow the next); ``--rounds`` processes
per writer are interleaved so bursts of load from elsewhere hit all writers alike; the fastest run counts:

  imgstore-fvecs  ``VectorWriter(path, "fvecs", dim).write(x)``: records built in a 4 MiB structured
                  buffer, one write() per buffer, blocks reserved ahead with fallocate
  imgstore-fbin   the same to ``.fbin`` (header + raw rows: no conversion, straight from the array)
  struct.pack     the usual one-off script: ``f.write(struct.pack('<i', d))`` then one ``struct.pack('<f', x)``
                  per value; on the first ``--struct-rows`` rows only, because it is slow
  tofile          ``numpy.tofile`` of the same .fvecs bytes, prebuilt outside the timing: the I/O ceiling

Then two end-to-end runs that show memory staying bounded whatever the input size:

  convert  ``convert_ann`` of a synthetic ann-benchmarks HDF5 file of ``--convert-rows`` x ``--convert-dim``
           float32 (GIST-sized rows: 960) to the four TEXMEX files
  export   ``export_vectors`` of a synthetic store of ``--store-images`` 32x32x3 images to .fvecs

Printed: MB/s (MB = 10^6 bytes of output), the ratios imgstore/struct.pack and imgstore/tofile, and peak RSS
(``ru_maxrss``), plus, for the writers, the peak above the RSS just before the timed call (the data are
resident in every process; that extra is what the writer itself costs).

Usage: python scripts/bench_export.py [--rows 400000] [--dim 128] [--repeat 3] [--rounds 3] [--work DIR]
                                     [--skip-convert]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------------- workers


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) so it covers only what follows (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _data(rows: int, dim: int):
    import numpy as np

    return np.random.default_rng(0).standard_normal((rows, dim), dtype=np.float32)


def _struct_write(x, out: Path) -> None:
    # The one-off script people write: one struct.pack and one write per value.
    with open(out, "wb") as f:
        for v in x:
            f.write(struct.pack("<i", len(v)))
            for value in v:
                f.write(struct.pack("<f", value))


def _worker(kind: str, out: Path, rows: int, dim: int, extra: str, repeat: int) -> dict:
    """Time one writer ``repeat`` times in this (fresh) process; returns the best seconds, bytes and memory.

    Memory: ``base_mib`` is the RSS just before the timed calls (interpreter, numpy and the data), ``peak_mib``
    the highest RSS during them (VmHWM after a reset; ru_maxrss, which cannot be reset, if that fails).
    """
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from imgstore.vectors import VectorWriter

    if kind in ("imgstore-fvecs", "imgstore-fbin", "struct.pack"):
        x = _data(rows, dim)
        if kind == "struct.pack":
            call = lambda: _struct_write(x, out)  # noqa: E731
        else:

            def call() -> None:
                with VectorWriter(out, kind.split("-")[1], dim) as w:
                    w.write(x)

    elif kind == "tofile":
        x = _data(rows, dim)
        rec = np.empty((rows, dim + 1), "<i4")  # the .fvecs bytes, built before the clock starts
        rec[:, 0] = dim
        rec[:, 1:] = x.view("<i4")
        del x
        call = lambda: rec.tofile(out)  # noqa: E731
    elif kind == "convert":
        from imgstore.vectors.convert import convert_ann

        call = lambda: convert_ann(extra, out, overwrite=True)  # noqa: E731
    elif kind == "export":
        from imgstore.vectors.export import export_vectors

        call = lambda: export_vectors(extra, out, overwrite=True)  # noqa: E731
    else:
        raise SystemExit(f"unknown worker {kind}")

    if kind not in ("struct.pack", "convert", "export"):
        # One untimed run first: in a VM, the first page-cache pages a process writes can be host-faulted in
        # (several times slower); later runs reuse pages freed by deleting the previous output.
        _clean(out)
        call()
    base = _status_mib("VmRSS")
    reset = _reset_peak()
    best = float("inf")
    for _ in range(repeat):
        _clean(out)
        os.sync()
        time.sleep(0.2)  # let the file system settle after the sync: the first write after it can stall
        t = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t)
    nbytes = sum(p.stat().st_size for p in _outputs(out) if p.suffix in (".fvecs", ".ivecs", ".fbin"))
    peak = _status_mib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _clean(out)
    return {"seconds": best, "bytes": nbytes, "peak_mib": peak, "base_mib": base}


def _outputs(out: Path) -> list[Path]:
    if out.is_dir():
        return list(out.iterdir())
    return [out] if out.exists() else []


def _clean(out: Path) -> None:
    if out.is_dir():
        shutil.rmtree(out)
    for p in out.parent.glob(out.name + "*"):
        p.unlink()


def _run(kind: str, out: Path, rows: int, dim: int, repeat: int, extra: str = "") -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--out", str(out), "--rows", str(rows), "--dim", str(dim)]
    proc = subprocess.run([*cmd, "--repeat", str(repeat), "--extra", extra], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr}")
    r = json.loads(proc.stdout)
    r["mbps"] = r["bytes"] / 1e6 / r["seconds"]
    return r


# ---------------------------------------------------------------------------------------------------- inputs


def _make_ann(path: Path, rows: int, dim: int, queries: int = 1000, k: int = 100) -> None:
    """A GIST-shaped ann-benchmarks file, written in blocks (ids are arbitrary but valid: speed, not truth)."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        train = f.create_dataset("train", (rows, dim), np.float32)
        for start in range(0, rows, 20_000):
            n = min(20_000, rows - start)
            train[start : start + n] = rng.random((n, dim), dtype=np.float32)
        f.create_dataset("test", data=rng.random((queries, dim), dtype=np.float32))
        f.create_dataset("neighbors", data=rng.integers(0, rows, (queries, k), dtype=np.int32))
        f.create_dataset("distances", data=np.sort(rng.random((queries, k), dtype=np.float32), axis=1))
        f.attrs.update({"distance": "euclidean", "dimension": dim, "type": "dense", "point_type": "float"})


def _make_store(path: Path, n: int, shape: tuple[int, int, int] = (32, 32, 3)) -> None:
    """A store in the imgstore layout (uint8 images chunked one per chunk, names, labels, count)."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(2)
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", (n, *shape), np.uint8, chunks=(1, *shape), maxshape=(None, *shape))
        for start in range(0, n, 5000):
            m = min(5000, n - start)
            images[start : start + m] = rng.integers(0, 256, (m, *shape), dtype=np.uint8)
        f.create_dataset("image_names", data=[f"img{i:07d}.jpg" for i in range(n)], dtype=h5py.string_dtype())
        f.create_dataset("labels", data=np.arange(n, dtype=np.int64) % 10)
        f.attrs.update({"imgstore_format": 1, "count": n, "size": [shape[1], shape[0]], "channels": shape[2]})


# ---------------------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=400_000, help="vectors for the writer comparison")
    ap.add_argument("--dim", type=int, default=128, help="values per vector")
    ap.add_argument("--struct-rows", type=int, default=20_000, help="rows given to the struct.pack writer")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per process (after one untimed warm-up)")
    ap.add_argument("--rounds", type=int, default=3, help="processes per writer, interleaved; the fastest run counts")
    ap.add_argument("--convert-rows", type=int, default=200_000, help="train rows of the synthetic HDF5 file")
    ap.add_argument("--convert-dim", type=int, default=960, help="dimension of the synthetic HDF5 file (GIST: 960)")
    ap.add_argument("--store-images", type=int, default=50_000, help="32x32x3 images in the synthetic store")
    ap.add_argument("--skip-convert", action="store_true", help="only the writer comparison")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--extra", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(_worker(args.worker, args.out, args.rows, args.dim, args.extra, args.repeat)))
        return

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        _bench(args, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def _bench(args: argparse.Namespace, work: Path) -> None:
    rows, dim, srows = args.rows, args.dim, min(args.rows, args.struct_rows)
    fvecs_mb = rows * (dim + 1) * 4 / 1e6
    print(f"writers: {rows:,} x {dim} float32 -> {fvecs_mb:,.1f} MB of .fvecs (the data: "
          f"{rows * dim * 4 / 2**20:,.0f} MiB in RAM); best of {args.rounds}x{args.repeat}; output to {work} "
          f"(page cache); {os.cpu_count()} CPUs")  # fmt: skip
    # Rounds interleave the writers, one fresh process each, so a burst of load from something else on the
    # machine hits them alike rather than all runs of one writer; each writer's fastest run counts.
    runs: dict[str, list[dict]] = {"imgstore-fvecs": [], "imgstore-fbin": [], "tofile": []}
    for _ in range(args.rounds):
        for kind, runs_of in runs.items():
            out = work / f"{kind}.{'fbin' if kind.endswith('fbin') else 'fvecs'}"
            runs_of.append(_run(kind, out, rows, dim, args.repeat))
    results = {kind: min(r, key=lambda x: x["seconds"]) for kind, r in runs.items()}
    for kind, r in runs.items():
        results[kind]["peak_mib"] = max(x["peak_mib"] for x in r)
    results["struct.pack"] = _run("struct.pack", work / "s.fvecs", srows, dim, 1)
    results = {k: results[k] for k in ("imgstore-fvecs", "imgstore-fbin", "struct.pack", "tofile")}
    print(f"  {'writer':<16}{'MB/s':>10}{'seconds':>10}{'peak RSS':>12}{'before':>12}")
    for name, r in results.items():
        note = f"  ({srows:,} rows, one run)" if name == "struct.pack" else ""
        print(f"  {name:<16}{r['mbps']:>10,.1f}{r['seconds']:>10.3f}{r['peak_mib']:>8,.0f} MiB"
              f"{r['base_mib']:>8,.0f} MiB"
              f"{note}")  # fmt: skip
    ours = results["imgstore-fvecs"]["mbps"]
    print(f"  imgstore-fvecs / struct.pack = {ours / results['struct.pack']['mbps']:,.0f}x   (target >= 100x)")
    print(f"  imgstore-fvecs / tofile      = {ours / results['tofile']['mbps']:.2f}x  (target >= 0.5x)")
    print(f"  imgstore-fbin  / tofile      = {results['imgstore-fbin']['mbps'] / results['tofile']['mbps']:.2f}x")
    print("  (peak RSS: the highest during the timed calls; before: interpreter + numpy + the data, and for tofile the")
    print("   prebuilt .fvecs copy of the data)")
    if args.skip_convert:
        return

    src = work / "gist-like-960-euclidean.hdf5"
    t = time.perf_counter()
    _make_ann(src, args.convert_rows, args.convert_dim)
    size_mb = src.stat().st_size / 1e6
    print(f"\nconvert: {args.convert_rows:,} x {args.convert_dim} float32 ann-benchmarks file ({size_mb:,.0f} MB, "
          f"made in {time.perf_counter() - t:.1f}s) -> the four .fvecs/.ivecs files")  # fmt: skip
    r = _run("convert", work / "conv", 0, 0, 1, str(src))
    print(f"  {r['bytes'] / 1e6:,.0f} MB in {r['seconds']:.2f}s = {r['mbps']:,.0f} MB/s, "
          f"peak RSS {r['peak_mib']:,.0f} MiB (before: {r['base_mib']:,.0f} MiB)")
    src.unlink()

    store = work / "store.h5"
    t = time.perf_counter()
    _make_store(store, args.store_images)
    print(f"\nexport: store of {args.store_images:,} images of 32x32x3 ({store.stat().st_size / 1e6:,.0f} MB, made in "
          f"{time.perf_counter() - t:.1f}s) -> .fvecs + names + labels")  # fmt: skip
    r = _run("export", work / "e.fvecs", 0, 0, 1, str(store))
    print(f"  {r['bytes'] / 1e6:,.0f} MB in {r['seconds']:.2f}s = {r['mbps']:,.0f} MB/s, "
          f"peak RSS {r['peak_mib']:,.0f} MiB (before: {r['base_mib']:,.0f} MiB)")


if __name__ == "__main__":
    main()
