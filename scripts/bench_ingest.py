#!/usr/bin/env python3
"""Benchmark: the classic single-process loop vs ``imgstore ingest``, on the same JPEGs, in one run.

Corpora (generated once under --data, reused by later runs, or given with --corpus):
  small  2,000 JPEGs of 500x375 in 10 class folders
  large  100 JPEGs of 4000x3000 (twelve megapixels)

For each corpus it times, in fresh subprocesses (so peak RSS is each one's own) and --repeat times each:
  naive     Pillow open -> convert("RGB") -> resize((256, 256)) -> list -> one h5py write, uint8
  float64   the same loop into the float64 store the usual tutorials write (--float64)
  imgstore  ``imgstore ingest SRC OUT --size 256 --resize-mode stretch`` with default workers
and prints images/s (median), the ratio to naive, and peak RSS (VmHWM of the process: ru_maxrss would carry the
benchmark's own size over exec; for imgstore also the largest worker, from RUSAGE_CHILDREN). It then times random single-image reads from the finished 256x256 store (a training
DataLoader's access pattern), from the page cache, with imgstore's reader and with plain h5py indexing.
``--scale`` also checks that memory stays flat: 2,000 vs 20,000 images (the 2,000 linked 10 times).

Usage: python scripts/bench_ingest.py [--data bench-data] [--repeat 3] [--corpus small|large|both] [--scale]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZE = 256

NAIVE = r"""
import json, os, resource, sys, time
import h5py, numpy as np
from PIL import Image
src, out, dtype = sys.argv[1], sys.argv[2], sys.argv[3]
paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(src) for f in fs if f.lower().endswith(".jpg"))
t = time.perf_counter()
images, names = [], []
for p in paths:
    im = Image.open(p).convert("RGB").resize((256, 256))
    a = np.asarray(im, dtype=np.float64) / 255.0 if dtype == "float64" else np.asarray(im)
    images.append(a)
    names.append(os.path.relpath(p, src))
with h5py.File(out, "w") as f:
    f.create_dataset("images", data=np.stack(images))
    f.create_dataset("image_names", data=names, dtype=h5py.string_dtype())
sec = time.perf_counter() - t
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"n": len(paths), "seconds": sec, "rss_mib": int(hwm) / 1024}))
"""

IMGSTORE = r"""
import json, resource, sys, time
from imgstore.cli import app
import imgstore.ingest, imgstore.config  # imported before the clock starts, like the naive loop's numpy/h5py/PIL
t = time.perf_counter()
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    sec = time.perf_counter() - t
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"seconds": sec, "rss_mib": int(hwm) / 1024, "worker_rss_mib": children}), file=sys.stderr)
"""

READS = r"""
import json, sys, time
import h5py, numpy as np
import imgstore.store.reader as r
path, n = sys.argv[1], int(sys.argv[2])
store = r.open_store(path)
idx = np.random.default_rng(0).integers(0, len(store), n)
for i in idx[:200]:
    store[int(i)]  # warm the page cache and the handle
t = time.perf_counter()
for i in idx:
    store[int(i)]
fast = n / (time.perf_counter() - t)
# HDF5's default locking, as imgstore's reader of a finished store uses: the two handles coexist in one process.
with h5py.File(path, "r") as f:
    ds = f["images"]
    t = time.perf_counter()
    for i in idx:
        ds[int(i)]
    plain = n / (time.perf_counter() - t)
print(json.dumps({"imgstore": fast, "h5py": plain}))
"""


def run_json(code: str, *args: str, stream: str = "stdout") -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"benchmark step failed:\n{proc.stderr[-3000:]}")
    text = proc.stdout if stream == "stdout" else proc.stderr
    return json.loads(text.strip().splitlines()[-1])


def warm(paths: list[Path]) -> None:
    """Read every file once so the first timed run does not pay for the disk."""
    for p in paths:
        p.read_bytes()


def bench_corpus(label: str, src: Path, n: int, args: argparse.Namespace, tmp: Path) -> dict:
    results: dict[str, list[dict]] = {"naive": [], "imgstore": []}
    if args.float64:
        results["float64"] = []
    for _ in range(args.repeat):
        out = tmp / f"naive-{label}.h5"
        results["naive"].append(run_json(NAIVE, str(src), str(out), "uint8"))
        out.unlink()
        if args.float64:
            results["float64"].append(run_json(NAIVE, str(src), str(out), "float64"))
            out.unlink()
        out = tmp / f"imgstore-{label}.h5"
        cli = ["ingest", str(src), str(out), "--size", str(SIZE), "--resize-mode", "stretch", "--quiet", "--overwrite"]
        if args.workers:
            cli += ["--workers", str(args.workers)]
        res = run_json(IMGSTORE, *cli, stream="stderr")
        res["n"] = n
        results["imgstore"].append(res)
    summary = {}
    for key, runs in results.items():
        ips = [run["n"] / run["seconds"] for run in runs]
        summary[key] = {
            "images_per_s": statistics.median(ips),
            "runs": [round(x, 1) for x in ips],
            "rss_mib": max(run["rss_mib"] for run in runs),
            "worker_rss_mib": max(run.get("worker_rss_mib", 0) for run in runs),
        }
    base = summary["naive"]["images_per_s"]
    print(f"\n{label}: {n} JPEGs -> {SIZE}x{SIZE} stretch, median of {args.repeat} runs")
    print(f"  {'method':<10} {'images/s':>10} {'ratio':>7} {'peak RSS':>10}  runs")
    for key, s in summary.items():
        rss = f"{s['rss_mib']:.0f} MiB"
        extra = f" (+ {s['worker_rss_mib']:.0f} MiB per worker)" if s["worker_rss_mib"] else ""
        print(f"  {key:<10} {s['images_per_s']:>10.1f} {s['images_per_s'] / base:>6.2f}x {rss:>10}  {s['runs']}{extra}")
    summary["ratio"] = summary["imgstore"]["images_per_s"] / base
    return summary


def scale_check(small_src: Path, args: argparse.Namespace, tmp: Path) -> dict:
    """Peak RSS for 2,000 images vs 20,000 (the same files linked ten times)."""
    big = tmp / "x10"
    files = sorted(small_src.rglob("*.jpg"))
    for k in range(10):
        for f in files:
            dst = big / f"copy{k}" / f.relative_to(small_src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(f, dst)
    out = {}
    for label, src in (("2000", small_src), ("20000", big)):
        cli = ["ingest", str(src), str(tmp / f"scale-{label}.h5"), "--size", str(SIZE), "--resize-mode", "stretch",
               "--quiet", "--overwrite"]
        res = run_json(IMGSTORE, *cli, stream="stderr")
        out[label] = res
        (tmp / f"scale-{label}.h5").unlink()
    ratio = out["20000"]["rss_mib"] / out["2000"]["rss_mib"]
    wratio = out["20000"]["worker_rss_mib"] / out["2000"]["worker_rss_mib"]
    print("\nmemory vs corpus size (imgstore, peak RSS)")
    for label, res in out.items():
        print(f"  {label:>6} images: parent {res['rss_mib']:.0f} MiB, largest worker {res['worker_rss_mib']:.0f} MiB, "
              f"{int(label) / res['seconds']:.0f} images/s")
    print(f"  20,000 / 2,000: parent {ratio:.2f}x, worker {wratio:.2f}x (target <= 1.2x)")
    return {"runs": out, "parent_ratio": ratio, "worker_ratio": wratio}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "bench-data", help="where generated corpora live")
    ap.add_argument("--corpus", choices=["small", "large", "both"], default="both")
    ap.add_argument("--src", type=Path, help="use this folder of JPEGs instead of the generated corpora")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0, help="imgstore --workers (default: imgstore's default)")
    ap.add_argument("--float64", action="store_true", help="also time the float64 tutorial loop")
    ap.add_argument("--scale", action="store_true", help="also check memory at 2,000 vs 20,000 images")
    ap.add_argument("--reads", type=int, default=20000, help="random single-image reads to time")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from imgstore.options import default_workers
    from imgstore.samples import write_jpeg_corpus

    print(f"machine: {os.cpu_count()} CPUs ({default_workers()} usable), Python {sys.version.split()[0]}")
    corpora = []
    if args.src:
        corpora.append(("custom", args.src, len(list(args.src.rglob("*.jpg")))))
    else:
        if args.corpus in ("small", "both"):
            t = time.perf_counter()
            paths = write_jpeg_corpus(args.data / "small", count=2000, size=(500, 375), classes=10, workers=2)
            print(f"small corpus ready in {time.perf_counter() - t:.1f} s")
            warm(paths)
            corpora.append(("small", args.data / "small", len(paths)))
        if args.corpus in ("large", "both"):
            t = time.perf_counter()
            paths = write_jpeg_corpus(args.data / "large", count=100, size=(4000, 3000), classes=10, workers=2)
            print(f"large corpus ready in {time.perf_counter() - t:.1f} s")
            warm(paths)
            corpora.append(("large", args.data / "large", len(paths)))

    results: dict = {}
    with tempfile.TemporaryDirectory(dir=args.data if args.data.exists() else None) as td:
        tmp = Path(td)
        for label, src, n in corpora:
            results[label] = bench_corpus(label, src, n, args, tmp)
        if corpora:
            label, src, _ = corpora[0]
            store = tmp / f"imgstore-{label}.h5"
            reads = run_json(READS, str(store), str(args.reads))
            print(f"\nrandom single-image reads from the {label} store (256x256x3, page cache), {args.reads} reads")
            print(f"  imgstore.open()[i]  {reads['imgstore']:>9.0f} images/s")
            print(f"  h5py dataset[i]     {reads['h5py']:>9.0f} images/s")
            results["reads"] = reads
        if args.scale and "small" in [c[0] for c in corpora]:
            results["scale"] = scale_check(args.data / "small", args, tmp)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    random.seed(0)
    raise SystemExit(main())
