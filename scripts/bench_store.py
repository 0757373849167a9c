#!/usr/bin/env python3
"""Benchmark: what each storage mode costs and gives, on photos with real texture, in one run.

The corpus is ``scripts/photo_corpus.py``'s (generated once under --data and reused): --count JPEGs cut from the
photographs scikit-image ships, with camera-like noise, of ~500x375 at four aspect ratios (4:3, 3:4, 16:9, 1:1),
quality 92, in 10 class folders. Every storage mode is ingested from it at ``--size 256`` by the real CLI in a
fresh process (timed whole, --repeat times, interleaved; the median is printed):

- raw 256x256 (``--encode none``, centre crop: today's store, the baseline), and ``png``, ``jpeg:90`` and
  ``webp:80`` of the same crop;
- ``jpeg:90 --resize-mode shorter`` (rows at their own aspect, the shorter side 256) and raw ``shorter``.

For each it prints the bytes per image (file size / rows), ingest images/s and its ratio to raw, random
single-image reads/s in one process (``store[i]`` in a shuffled order, decoding included), and a PyTorch
DataLoader's images/s (2 workers, fork, batch 64, shuffled, ``torch_dataset(dtype="uint8")`` with a random
224x224 crop so rows of their own shapes collate), next to the plain h5py Dataset a user writes by hand
(``h5py.File`` opened per worker, ``torch.from_numpy(ds[i])``, the same crop) on the raw store.

Then the checks of issue 12's targets: the jpeg:90 shorter store's bytes against the raw 256x256 store's (at most
0.20x), its rows against Pillow's own resize of the same photo (``exif_transpose`` -> RGB -> ``resize`` to the
row's size, bicubic: at most 4 grey levels mean absolute), its aspect ratio (within one pixel of the photo's), and
the png store's rows against the raw store's (byte for byte).

Usage: python scripts/bench_store.py [--data bench-data] [--count 2000] [--repeat 3] [--workers N] [--reads 2000]
Needs scikit-image (the corpus) and torch (the DataLoader figures; without it they are left out).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import imgstore  # noqa: E402
from imgstore.options import default_workers  # noqa: E402

SIZE = 256
CROP = 224


@dataclass
class Mode:
    label: str
    args: tuple[str, ...]
    seconds: list[float] = field(default_factory=list)
    path: Path | None = None


MODES = [
    Mode("raw 256x256", ("--encode", "none")),
    Mode("png", ("--encode", "png")),
    Mode("jpeg:90", ("--encode", "jpeg:90")),
    Mode("webp:80", ("--encode", "webp:80")),
    Mode("jpeg:90 shorter", ("--encode", "jpeg:90", "--resize-mode", "shorter")),
    Mode("raw shorter", ("--encode", "none", "--resize-mode", "shorter")),
]


def ingest(src: Path, out: Path, mode: Mode, workers: int) -> float:
    cmd = [sys.executable, "-m", "imgstore", "ingest", str(src), str(out), "--size", str(SIZE), "--workers",
           str(workers), "--labels", "folder", "--overwrite", "-q", *mode.args]  # fmt: skip
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"ingest {mode.label} failed: {done.stderr.strip()}")
    return seconds


def random_reads(path: Path, n: int) -> float:
    """Images/s of ``store[i]`` over a shuffled order of ``n`` rows, in this process (file in the page cache)."""
    with imgstore.open(path) as s:
        order = np.random.default_rng(0).permutation(len(s))[: min(n, len(s))]
        s[0]  # open the file and read the row index first: a training job pays that once
        t = time.perf_counter()
        for i in order:
            s[int(i)]
        return len(order) / (time.perf_counter() - t)


class H5Dataset:
    """The plain h5py Dataset a user writes by hand: the file opened in each worker, ``ds[i]`` as a CHW tensor."""

    def __init__(self, path: Path, crop: Any) -> None:
        self.path, self.crop, self.ds, self.n = path, crop, None, len(imgstore.open(path))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        import h5py
        import torch

        if self.ds is None:
            self.ds = h5py.File(self.path, "r")["images"]
        return self.crop(torch.from_numpy(self.ds[i]).permute(2, 0, 1)), 0


class RandomCrop:
    """A random ``size`` x ``size`` crop of a CHW tensor (padded when smaller): picklable, torch only."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, x: Any) -> Any:
        import torch

        _, h, w = x.shape
        if h < self.size or w < self.size:
            x = torch.nn.functional.pad(x, (0, max(0, self.size - w), 0, max(0, self.size - h)))
            _, h, w = x.shape
        top = int(torch.randint(0, h - self.size + 1, ()))
        left = int(torch.randint(0, w - self.size + 1, ()))
        return x[:, top : top + self.size, left : left + self.size]


def loader_rate(dataset: Any, images: int) -> float:
    """Images/s a DataLoader (2 workers, fork, batch 64, shuffled) delivers over ``images`` after its first batch."""
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=64, shuffle=True, num_workers=2, multiprocessing_context="fork",
                        persistent_workers=True)  # fmt: skip
    seen, started = 0, None
    while seen < images:
        for x, _ in loader:
            if started is None:  # workers started and warm: time from here
                started = time.perf_counter()
                continue
            seen += x.shape[0]
            if seen >= images:
                break
    assert started is not None
    return seen / (time.perf_counter() - started)


def accuracy(src: Path, path: Path) -> tuple[float, float, int]:
    """(mean, max over rows) of each row's mean absolute difference to Pillow's own resize of its photo, and the
    rows whose aspect is more than one pixel from the photo's."""
    from PIL import Image, ImageOps

    diffs, off = [], 0
    with imgstore.open(path) as s:
        for i, name in enumerate(s.names):
            im = ImageOps.exif_transpose(Image.open(src / name)).convert("RGB")
            w, h = im.size
            rh, rw, _ = (int(v) for v in s.shapes[i])
            if abs(rw / rh - w / h) * min(rw, rh) > 1:
                off += 1
            ref = np.asarray(im.resize((rw, rh), Image.Resampling.BICUBIC), np.int16)
            diffs.append(float(np.abs(s[i].astype(np.int16) - ref).mean()))
    return statistics.fmean(diffs), max(diffs), off


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "bench-data")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--reads", type=int, default=2000, help="random single-image reads timed per store")
    args = ap.parse_args()
    from photo_corpus import write_photo_corpus

    src = args.data / f"photos-{args.count}"
    t = time.perf_counter()
    write_photo_corpus(src, count=args.count, size=(500, 375), classes=10, workers=2)
    jpeg_bytes = sum(p.stat().st_size for p in src.rglob("*.jpg"))
    print(f"corpus: {args.count} photo JPEGs (~500x375, 4 aspect ratios, q92, {jpeg_bytes / args.count / 1e3:.1f} KB "
          f"each) in {src} ({time.perf_counter() - t:.1f} s)")  # fmt: skip
    for p in src.rglob("*.jpg"):  # the page cache holds the corpus for every run
        p.read_bytes()
    out = args.data / "bench-store"
    out.mkdir(parents=True, exist_ok=True)
    for mode in MODES:
        mode.path = out / (mode.label.replace(" ", "-").replace(":", "") + ".h5")
    print(f"ingest --size {SIZE} --workers {args.workers}, {args.repeat} runs each, interleaved")
    for _ in range(args.repeat):
        for mode in MODES:
            assert mode.path is not None
            mode.seconds.append(ingest(src, mode.path, mode, args.workers))
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        torch = None  # type: ignore[assignment]
        print("torch is not installed: no DataLoader figures (pip install torch==2.13.0)")
    raw = MODES[0]
    assert raw.path is not None
    raw_rate = args.count / statistics.median(raw.seconds)
    raw_bytes = raw.path.stat().st_size / len(imgstore.open(raw.path))
    print(f"\n{'store':<17} {'bytes/img':>10} {'vs raw':>7} {'ingest img/s':>13} {'vs raw':>7} {'reads/s':>8}"
          f" {'DataLoader img/s':>17}")  # fmt: skip
    rows = {}
    for mode in MODES:
        assert mode.path is not None
        n = len(imgstore.open(mode.path))
        per = mode.path.stat().st_size / n
        rate = n / statistics.median(mode.seconds)
        reads = random_reads(mode.path, args.reads)
        loader = loader_rate(imgstore.open(mode.path).torch_dataset(RandomCrop(CROP), dtype="uint8"), 3000) if torch else float("nan")
        rows[mode.label] = (per, rate, reads, loader)
        print(f"{mode.label:<17} {per:>10,.0f} {per / raw_bytes:>7.3f} {rate:>13,.0f} {rate / raw_rate:>7.2f} "
              f"{reads:>8,.0f} {loader:>17,.0f}", flush=True)  # fmt: skip
    if torch:
        plain = loader_rate(H5Dataset(raw.path, RandomCrop(CROP)), 3000)
        print(f"{'h5py Dataset, raw':<17} {'':>10} {'':>7} {'':>13} {'':>7} {'':>8} {plain:>17,.0f}")
    jpeg = next(m for m in MODES if m.label == "jpeg:90 shorter")
    png = next(m for m in MODES if m.label == "png")
    assert jpeg.path is not None and png.path is not None
    mean, worst, off = accuracy(src, jpeg.path)
    with imgstore.open(png.path) as p, imgstore.open(raw.path) as r:
        same = len(p) == len(r) and all(np.array_equal(p[i], r[i]) for i in range(len(r)))
    per, rate, reads, loader = rows["jpeg:90 shorter"]
    print("\nissue 12 targets (jpeg:90 --resize-mode shorter --size 256):")
    print(f"  bytes per image {per / raw_bytes:.3f}x the raw 256x256 store's (target <= 0.20)")
    print(f"  rows vs Pillow's resize of the photo: mean abs {mean:.2f} grey levels (worst row {worst:.2f}; target <= 4)")
    print(f"  aspect ratio more than one pixel off: {off} rows of {args.count} (target 0)")
    print(f"  random reads {reads:,.0f}/s in one process (target >= 800); DataLoader 2 workers {loader:,.0f}/s (>= 1,500)")
    print(f"  ingest jpeg:90 {rows['jpeg:90'][1] / raw_rate:.2f}x raw (crop; target >= 0.8), shorter {rate / raw_rate:.2f}x")
    print(f"  png rows equal raw rows byte for byte: {same}")
    print(f"  (load average while measuring: {os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
