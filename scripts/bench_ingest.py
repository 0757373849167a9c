#!/usr/bin/env python3
"""Benchmark: the classic single-process loop vs ``imgstore ingest``, on the same files, in one run (issue 13).

Corpora (generated once under --data, reused by later runs; --corpus picks them, default photos,large,tiny):
  photos  2,000 JPEGs of 500x375 (4:3 only) cut from real photographs with sensor-like noise
          (scripts/photo_corpus.py: scikit-image's bundled photos; needs scikit-image)
  large   120 JPEGs of 4000x3000 (12 MP), made the same way (crops upscaled, then noise)
  tiny    20,000 PNGs of 32x32 in 10 class folders, CIFAR-like: crops of the same photos shrunk to 32x32, noise
  small   2,000 smooth synthetic JPEGs of 500x375 (imgstore.samples), as the README's earlier figures used
--src DIR benchmarks a folder of your own JPEGs instead (rows as for photos). --count-scale F shrinks every
corpus to F times its count (in folders of their own, e.g. photos-x0.05), for a quick smoke run.

Rows (both sides resize with stretch, the same geometry as a plain ``resize((W, H))``; both take exactly the
files with the corpus's extension; both write uint8):
  photos  -> 256x256 bilinear on both sides; and both with their defaults (Pillow's resize: bicubic; imgstore:
          bicubic)
  large   -> 256x256 bilinear on both sides
  tiny    -> 16x16 bilinear on both sides
  small   -> 256x256, both with their defaults
where
  naive     Pillow open -> convert("RGB") -> resize((W, H)[, filter]) -> list -> one h5py write, uint8
  float64   the same loop into the float64 store the usual tutorials write (--float64)
  imgstore  ``imgstore ingest SRC OUT --size N --resize-mode stretch --extensions EXT [--filter F]`` with
            default workers (or --workers)
Each run is a fresh subprocess, timed whole from outside (interpreter start, imports, the work, exit: what a
user waits for; the headline ratio), and also inside it from before the first file is listed until the store is
closed ("work ratio", imports excluded on both sides), --repeat times (default 3), naive and imgstore
alternating. Printed per row: images/s (median, whole process), both ratios to naive, peak RSS (VmHWM of the process: ru_maxrss would carry the
benchmark's own size over exec; for imgstore also the largest worker, from RUSAGE_CHILDREN), and pixel
agreement: the mean absolute difference between the last naive store's pixels and imgstore's, rows matched by
name (the issue asks for at most 4 grey levels), with the worst single image. Then the issue's table: median
seconds of each side and naive / imgstore.

Afterwards it times random single-image reads from the first 256x256 imgstore store (a training DataLoader's
access pattern), from the page cache, with imgstore's reader and with plain h5py indexing. ``--scale`` also
checks that memory stays flat: the photos (or small) corpus vs the same files linked 10 times.

``--parent-only`` instead measures the writer's ceiling, decoding removed, at 64x64 and 256x256 (rows of
--parent-count images, default 20,000 and 5,000), images/s and MB/s of raw pixels, median of --repeat:
  writer  pre-made ``Decoded`` items (pixels, CRC-32 and SHA-256 computed beforehand, like a worker's answer)
          go straight through ``imgstore.ingest._consume`` into a real ``ImageIndexer`` (names, SHA-256 digests,
          CRC-32 checksums, journal, default buffer and flush interval, uncompressed). Included: the consume loop,
          the copy into the write buffer, commits, HDF5 writes, creating and closing the file. Not included:
          walking SRC, reading files, hashing them, decoding, resizing, worker hand-offs, CLI and option parsing.
  pool    the same, but the items come from a real ``DecodePool`` (default workers, the pipeline's shared-memory
          ring and task pipes) whose decoder chain is one copy decoder: a worker "reads" a few-byte token,
          hashes it, copies a pre-made image into its slot and computes its CRC-32. Adds to the above the
          parent's dispatch, answer handling and reordering, and the workers' copy and CRC-32. Not included:
          reading and hashing real files, decoding, resizing. On a 2-core machine the workers share the CPUs
          with the parent, so this is a floor on what many cores would allow, not the ceiling. So pool mode also
          reports the parent's own CPU time (``time.process_time()`` of this process over the run: dispatch,
          answers, reordering, writing; the workers' CPU not included) and the images/s that CPU allows
          (n / parent CPU seconds): the parent's ceiling on a many-core machine where the workers have cores of
          their own.
Both run in this process, store written under --data (tmpfs or disk as that is).

Usage: python scripts/bench_ingest.py [--data bench-data] [--repeat 3] [--corpus photos,large,tiny,small|all]
       [--count-scale 1] [--workers N] [--float64] [--scale] [--json out.json]
       python scripts/bench_ingest.py --parent-only [--parent-count 20000,5000] [--repeat 3]
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
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

NAIVE = r"""
import json, os, resource, sys, time
import h5py, numpy as np
from PIL import Image
src, out, dtype, size, name, exts = sys.argv[1:7]
size = int(size)
exts = tuple(exts.split(","))
resample = () if name == "default" else (Image.Resampling[name.upper()],)
t = time.perf_counter()
paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(src) for f in fs if f.lower().endswith(exts))
images, names = [], []
for p in paths:
    im = Image.open(p).convert("RGB").resize((size, size), *resample)
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


@dataclass(frozen=True)
class Row:
    """One line of the table: the output side ``size`` and each side's filter (None: that side's default)."""

    title: str  # the table's "corpus" cell; {n} is replaced by the corpus's file count
    size: int
    naive_filter: str | None
    imgstore_filter: str | None


@dataclass(frozen=True)
class Corpus:
    name: str
    count: int
    ext: str  # the one extension both sides take, without the dot
    rows: tuple[Row, ...]


CORPORA = {
    "photos": Corpus("photos", 2000, "jpg", (
        Row("{n} photo JPEGs ~500x375 -> 256x256, bilinear", 256, "bilinear", "bilinear"),
        Row("same, both with their defaults (bicubic)", 256, None, None),
    )),
    "large": Corpus("large", 120, "jpg", (
        Row("{n} JPEGs of 12 MP -> 256x256, bilinear", 256, "bilinear", "bilinear"),
    )),
    "tiny": Corpus("tiny", 20000, "png", (
        Row("{n} PNGs of 32x32 (CIFAR-like) -> 16x16, bilinear", 16, "bilinear", "bilinear"),
    )),
    "small": Corpus("small", 2000, "jpg", (
        Row("{n} smooth synthetic JPEGs 500x375 -> 256x256, defaults (bicubic)", 256, None, None),
    )),
}  # fmt: skip
DEFAULT_CORPORA = ("photos", "large", "tiny")


def run_json(code: str, *args: str, stream: str = "stdout") -> dict:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"benchmark step failed:\n{proc.stderr[-3000:]}")
    text = proc.stdout if stream == "stdout" else proc.stderr
    result = json.loads(text.strip().splitlines()[-1])
    result["process_seconds"] = wall  # the whole process: interpreter start, imports, the work, exit
    return result


def warm(paths: list[Path]) -> None:
    """Read every file once so the first timed run does not pay for the disk."""
    for p in paths:
        p.read_bytes()


def make_corpus(name: str, count: int, root: Path) -> list[Path]:
    """Write (or reuse) corpus ``name`` with ``count`` files under ``root``; return its paths."""
    if name == "small":
        from imgstore.samples import write_jpeg_corpus

        return write_jpeg_corpus(root, count=count, size=(500, 375), classes=10, workers=2)
    sys.path.insert(0, str(ROOT / "scripts"))
    from photo_corpus import write_photo_corpus

    if name == "photos":
        return write_photo_corpus(root, count, size=(500, 375), aspects=("4:3",), workers=2)
    if name == "large":
        return write_photo_corpus(root, count, size=(4000, 3000), aspects=("4:3",), workers=2)
    if name == "tiny":
        return write_photo_corpus(root, count, size=(32, 32), aspects=("1:1",), workers=2, fmt="png")
    raise ValueError(name)


def pixel_agreement(naive_path: Path, imgstore_path: Path) -> dict:
    """Mean absolute difference (grey levels) between the two stores' pixels, rows matched by name."""
    import h5py
    import numpy as np

    from imgstore.store.reader import open_store

    total, count, worst, missing = 0, 0, (0.0, ""), 0
    with h5py.File(naive_path, "r") as f, open_store(imgstore_path) as store:
        where = {name: i for i, name in enumerate(store.names)}
        names = [n.decode() if isinstance(n, bytes) else n for n in f["image_names"][:]]
        images = f["images"]
        for start in range(0, len(names), 256):
            batch = names[start : start + 256]
            theirs = [where.get(n) for n in batch]
            mine = images[start : start + len(batch)]
            for k, j in enumerate(theirs):
                if j is None:
                    missing += 1
                    continue
                diff = np.abs(mine[k].astype(np.int16) - store[j].astype(np.int16))
                total += int(diff.sum())
                count += diff.size
                mad = float(diff.mean())
                if mad > worst[0]:
                    worst = (mad, batch[k])
    missing += len(set(where) - set(names))
    return {"mad": total / count if count else float("nan"), "worst_mad": worst[0], "worst_name": worst[1],
            "unmatched": missing}  # fmt: skip


def bench_row(label: str, corpus: Corpus, row: Row, src: Path, n: int, args: argparse.Namespace, tmp: Path,
              keep: bool) -> dict:  # fmt: skip
    """Time naive and imgstore on one row, ``args.repeat`` times each, alternating; check their pixels agree."""
    results: dict[str, list[dict]] = {"naive": [], "imgstore": []}
    if args.float64:
        results["float64"] = []
    naive_out, store_out = tmp / f"naive-{label}.h5", tmp / f"imgstore-{label}.h5"
    naive_args = (str(row.size), row.naive_filter or "default", f".{corpus.ext}")
    for k in range(args.repeat):
        last = k == args.repeat - 1
        results["naive"].append(run_json(NAIVE, str(src), str(naive_out), "uint8", *naive_args))
        if args.float64:
            f64 = tmp / f"float64-{label}.h5"
            results["float64"].append(run_json(NAIVE, str(src), str(f64), "float64", *naive_args))
            f64.unlink()
        cli = ["ingest", str(src), str(store_out), "--size", str(row.size), "--resize-mode", "stretch",
               "--extensions", corpus.ext, "--quiet", "--overwrite"]  # fmt: skip
        if row.imgstore_filter:
            cli += ["--filter", row.imgstore_filter]
        if args.workers:
            cli += ["--workers", str(args.workers)]
        res = run_json(IMGSTORE, *cli, stream="stderr")
        res["n"] = n
        results["imgstore"].append(res)
        if not last:
            naive_out.unlink()
    found = {run["n"] for run in results["naive"]}
    if found != {n}:
        sys.exit(f"{label}: the naive loop found {sorted(found)} files, imgstore was given {n}")
    agree = pixel_agreement(naive_out, store_out)
    naive_out.unlink()
    if not keep:
        store_out.unlink()
    summary: dict = {"title": row.title.format(n=f"{n:,}"), "n": n, "size": row.size,
                     "filters": {"naive": row.naive_filter or "default (bicubic)",
                                 "imgstore": row.imgstore_filter or "default (bicubic)"}}  # fmt: skip
    for key, runs in results.items():
        secs = [run["process_seconds"] for run in runs]
        work = [run["seconds"] for run in runs]
        summary[key] = {
            "seconds": statistics.median(secs),
            "work_seconds": statistics.median(work),
            "images_per_s": n / statistics.median(secs),
            "runs_s": [round(x, 3) for x in secs],
            "rss_mib": max(run["rss_mib"] for run in runs),
            "worker_rss_mib": max(run.get("worker_rss_mib", 0) for run in runs),
        }
    base = summary["naive"]["seconds"]
    naive_f, store_f = summary["filters"]["naive"], summary["filters"]["imgstore"]
    print(f"\n{label}: {n} .{corpus.ext} -> {row.size}x{row.size} stretch, naive {naive_f}, imgstore {store_f}, "
          f"median of {args.repeat} runs")  # fmt: skip
    work_base = summary["naive"]["work_seconds"]
    print(f"  {'method':<10} {'images/s':>10} {'ratio':>7} {'work ratio':>10} {'peak RSS':>10}  seconds per process")
    for key in results:
        s = summary[key]
        rss = f"{s['rss_mib']:.0f} MiB"
        extra = f" (+ {s['worker_rss_mib']:.0f} MiB per worker)" if s["worker_rss_mib"] else ""
        print(f"  {key:<10} {s['images_per_s']:>10.1f} {base / s['seconds']:>6.2f}x "
              f"{work_base / s['work_seconds']:>9.2f}x {rss:>10}  {s['runs_s']}{extra}")  # fmt: skip
    print(
        f"  pixels: mean |naive - imgstore| = {agree['mad']:.3f} grey levels (target <= 4); worst image "
        f"{agree['worst_mad']:.2f} ({agree['worst_name'] or 'all identical'}); unmatched names: {agree['unmatched']}"
    )
    summary["agreement"] = agree
    summary["ratio"] = base / summary["imgstore"]["seconds"]
    return summary


def print_table(rows: list[dict], repeat: int) -> None:
    print(f"\nnaive loop vs imgstore, whole processes, medians of {repeat} (ratio = naive / imgstore seconds)\n")
    print("| corpus | naive | imgstore | ratio | pixels (MAD) |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['title']} | {r['naive']['seconds']:.2f} s | {r['imgstore']['seconds']:.2f} s | "
              f"{r['ratio']:.2f}x | {r['agreement']['mad']:.2f} |")  # fmt: skip


def scale_check(src: Path, ext: str, args: argparse.Namespace, tmp: Path) -> dict:
    """Peak RSS for the corpus at ``src`` vs ten times as many files (the same ones linked ten times)."""
    big = tmp / "x10"
    files = sorted(src.rglob(f"*.{ext}"))
    for k in range(10):
        for f in files:
            dst = big / f"copy{k}" / f.relative_to(src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(f, dst)
    out = {}
    for n, folder in ((len(files), src), (10 * len(files), big)):
        store = tmp / f"scale-{n}.h5"
        cli = ["ingest", str(folder), str(store), "--size", "256", "--resize-mode", "stretch", "--extensions", ext,
               "--quiet", "--overwrite"]  # fmt: skip
        if args.workers:
            cli += ["--workers", str(args.workers)]
        out[n] = run_json(IMGSTORE, *cli, stream="stderr")
        store.unlink()
    one, ten = out.values()
    ratio = ten["rss_mib"] / one["rss_mib"]
    wratio = ten["worker_rss_mib"] / one["worker_rss_mib"]
    print("\nmemory vs corpus size (imgstore, peak RSS)")
    for n, res in out.items():
        print(
            f"  {n:>6} images: parent {res['rss_mib']:.0f} MiB, largest worker {res['worker_rss_mib']:.0f} MiB, "
            f"{n / res['seconds']:.0f} images/s"
        )
    print(f"  {10 * len(files):,} / {len(files):,}: parent {ratio:.2f}x, worker {wratio:.2f}x (target <= 1.2x)")
    return {"runs": {str(n): res for n, res in out.items()}, "parent_ratio": ratio, "worker_ratio": wratio}


# ---------------------------------------------------------------------------------------------- --parent-only

DISTINCT = 64  # pre-made images cycled through (their content does not matter to an uncompressed store)


class _TokenSource:
    """A source whose candidates are their own few-byte keys: the pool's workers read nothing from disk."""

    label = "parent-only benchmark"

    def scan(self, extensions: tuple[str, ...]) -> object:
        raise NotImplementedError("the pool is given the keys directly")

    def read(self, key: str) -> bytes:
        return key.encode()


class _CopyDecoder:
    """A decoder that decodes nothing: it copies pre-made image number ``crc32(key) % DISTINCT`` into the slot."""

    name = "copy"
    extensions = (".raw",)

    def __init__(self, images: object) -> None:
        self.images = images

    def decode(self, data: bytes, opts: object, out: object) -> None:
        import zlib

        out[...] = self.images[zlib.crc32(data) % DISTINCT]  # type: ignore[index]


def _parent_once(size: int, n: int, mode: str, tmp: Path) -> tuple[float, float]:
    """Seconds to write ``n`` pre-decoded ``size`` x ``size`` images through the pipeline's writer (--parent-only),
    wall clock and this process's CPU time (``time.process_time``: the parent's own work, not the workers')."""
    import hashlib
    import zlib

    import numpy as np

    from imgstore.ingest import IngestReport, _consume
    from imgstore.options import DecodeOptions, IngestOptions
    from imgstore.pool import Decoded, DecodePool
    from imgstore.progress import as_progress
    from imgstore.sources import Candidate
    from imgstore.store.writer import ImageIndexer

    rng = np.random.default_rng(size)
    images = rng.integers(0, 256, (DISTINCT, size, size, 3), dtype=np.uint8)
    todo = [(Candidate(key=f"class_{i % 10}/img_{i:06d}.png", name=f"class_{i % 10}/img_{i:06d}.png"), None)
            for i in range(n)]  # fmt: skip
    keys = [c.key for c, _ in todo]
    opts = IngestOptions(DecodeOptions(size=(size, size), resize_mode="stretch", filter="bilinear"))
    out = tmp / f"parent-{mode}-{size}.h5"
    if mode == "writer":
        crcs = [zlib.crc32(im.data) for im in images]
        digests = [hashlib.sha256(k.encode()).digest() for k in keys]
        items = [Decoded(i, images[i % DISTINCT], None, digests[i], crcs[i % DISTINCT]) for i in range(n)]
    pool = None
    start = time.perf_counter()
    cpu_start = time.process_time()
    if mode == "pool":  # started before the store is opened, as imgstore.ingest._run does
        pool = DecodePool(opts.decode, opts.workers, opts.timeout, source=_TokenSource(),  # type: ignore[arg-type]
                          chain=(_CopyDecoder(images),))  # type: ignore[arg-type]  # fmt: skip
    try:
        with ImageIndexer(out, size=(size, size), channels=3, buffer_size=opts.buffer_size, overwrite=True,
                          labels=False, sha256=True, flush_every=opts.flush_every) as ix:  # fmt: skip
            results = items if pool is None else pool.imap(keys, on_idle=ix.flush_if_due)
            report = IngestReport(out, 0)
            _consume(results, todo, ix, report, as_progress(None), False, {}, set())
            count = ix.count
    finally:
        if pool is not None:
            pool.close()
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    out.unlink()
    if count != n or report.skipped:
        sys.exit(f"parent-only {mode} {size}: wrote {count} of {n} images, skipped {report.skipped[:3]}")
    return seconds, cpu


def parent_only(args: argparse.Namespace, tmp: Path) -> dict:
    from imgstore.options import default_workers

    counts = [max(1, round(int(c) * args.count_scale)) for c in args.parent_count.split(",")]
    results: dict = {}
    print(f"\nthe writer's ceiling, decoding removed (median of {args.repeat}; pool: {default_workers()} workers)")
    print(f"  {'mode':<7} {'size':>9} {'images':>7} {'images/s':>10} {'MB/s':>8} {'parent CPU s':>12} "
          f"{'images/CPU s':>12}  seconds per run")  # fmt: skip
    for mode in ("writer", "pool"):
        for size, n in zip((64, 256), counts):
            runs = [_parent_once(size, n, mode, tmp) for _ in range(args.repeat)]
            secs = [wall for wall, _ in runs]
            med = statistics.median(secs)
            cpu = statistics.median(c for _, c in runs)  # the parent's CPU seconds (pool: the workers' excluded)
            mbs = n * size * size * 3 / med / 1e6
            results[f"{mode}-{size}"] = {"n": n, "seconds": med, "images_per_s": n / med, "mb_per_s": mbs,
                                         "parent_cpu_s": cpu, "images_per_parent_cpu_s": n / cpu,
                                         "runs_s": [round(s, 3) for s in secs]}  # fmt: skip
            print(
                f"  {mode:<7} {f'{size}x{size}':>9} {n:>7} {n / med:>10.0f} {mbs:>8.0f} {cpu:>12.2f} "
                f"{n / cpu:>12.0f}  {[round(s, 3) for s in secs]}"
            )
    print("  (images/CPU s: n / the parent's CPU seconds, its ceiling when the workers have cores of their own)")
    print("  (issue 13's targets, writer with decoding removed: >= 20,000 images/s at 64x64, >= 5,000 at 256x256)")
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "bench-data", help="where generated corpora live")
    ap.add_argument("--corpus", default=",".join(DEFAULT_CORPORA),
                    help=f"comma-separated from {', '.join(CORPORA)}, or all (default {','.join(DEFAULT_CORPORA)})",
                    )  # fmt: skip
    ap.add_argument("--src", type=Path, help="use this folder of JPEGs instead of the generated corpora")
    ap.add_argument("--count-scale", type=float, default=1.0,
                    help="multiply every corpus's count (and --parent-count) by this, e.g. 0.05 for a smoke run",
                    )  # fmt: skip
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0, help="imgstore --workers (default: imgstore's default)")
    ap.add_argument("--float64", action="store_true", help="also time the float64 tutorial loop")
    ap.add_argument("--scale", action="store_true", help="also check memory at N vs 10 N images (photos or small)")
    ap.add_argument("--reads", type=int, default=20000, help="random single-image reads to time")
    ap.add_argument("--parent-only", action="store_true", help="only measure the writer's ceiling (see above)")
    ap.add_argument("--parent-count", default="20000,5000", help="images written at 64x64,256x256 (--parent-only)")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    names = list(CORPORA) if args.corpus == "all" else [c.strip() for c in args.corpus.split(",") if c.strip()]
    unknown = [c for c in names if c not in CORPORA]
    if unknown:
        ap.error(f"unknown corpus {', '.join(unknown)}: choose from {', '.join(CORPORA)} or all")
    if not args.count_scale > 0 or args.repeat < 1:
        ap.error("--count-scale must be > 0 and --repeat >= 1")

    sys.path.insert(0, str(ROOT))
    from imgstore.options import default_workers

    print(f"machine: {os.cpu_count()} CPUs ({default_workers()} usable), Python {sys.version.split()[0]}")
    results: dict = {}
    args.data.mkdir(parents=True, exist_ok=True)
    if args.parent_only:
        with tempfile.TemporaryDirectory(dir=args.data) as td:
            results["parent_only"] = parent_only(args, Path(td))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return 0

    corpora: list[tuple[str, Corpus, Path, int]] = []
    if args.src:
        custom = Corpus("custom", 0, "jpg", CORPORA["photos"].rows)
        corpora.append(("custom", custom, args.src, len(list(args.src.rglob("*.jpg")))))
    else:
        for name in names:
            corpus = CORPORA[name]
            count = max(1, round(corpus.count * args.count_scale))
            root = args.data / (name if count == corpus.count else f"{name}-x{args.count_scale:g}")
            t = time.perf_counter()
            paths = make_corpus(name, count, root)
            print(f"{name} corpus ({len(paths)} files in {root}) ready in {time.perf_counter() - t:.1f} s")
            warm(paths)
            corpora.append((name, corpus, root, len(paths)))

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(dir=args.data) as td:
        tmp = Path(td)
        reads_store = None
        for name, corpus, src, n in corpora:
            for k, row in enumerate(corpus.rows):
                label = f"{name}-{k}"
                keep = reads_store is None and row.size == 256
                summary = bench_row(label, corpus, row, src, n, args, tmp, keep)
                summary["corpus"] = name
                rows.append(summary)
                if keep:
                    reads_store = tmp / f"imgstore-{label}.h5"
        print_table(rows, args.repeat)
        results["rows"] = rows
        if reads_store is not None:
            reads = run_json(READS, str(reads_store), str(args.reads))
            print(f"\nrandom single-image reads from {reads_store.name} (256x256x3, page cache), {args.reads} reads")
            print(f"  imgstore.open()[i]  {reads['imgstore']:>9.0f} images/s")
            print(f"  h5py dataset[i]     {reads['h5py']:>9.0f} images/s")
            results["reads"] = reads
        scalable = [(src, c.ext) for name, c, src, _ in corpora if name in ("photos", "small", "custom")]
        if args.scale and scalable:
            results["scale"] = scale_check(*scalable[0], args, tmp)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    random.seed(0)
    raise SystemExit(main())
