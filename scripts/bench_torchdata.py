#!/usr/bin/env python3
"""Benchmark: should a DataLoader item be made contiguous (CHW) in the worker, or left as the HWC view?

``store[i]`` is an (H, W, C) uint8 array; ``torch.from_numpy(a).permute(2, 0, 1)`` is a (C, H, W) view of it
whose memory is still HWC (strides (1, W*C, C)). Whoever needs CHW memory pays one strided copy: either the
dataset item (``.contiguous()``) or the default collate, whose ``torch.stack`` into a contiguous batch is such a
copy anyway. This times, on one thread as in a DataLoader worker and per image (microseconds, median of --repeat
runs), what happens to an item after it is read, for images already in memory (the HDF5 read is the same either
way):

  item            making the item: the view, or the view made contiguous (uint8), or float32 in [0, 1]
  item+collate    the item then the default collate of a batch of --batch into a contiguous batch tensor
  item+resize     the item then an antialiased bilinear resize to 224x224 (what RandomResizedCrop's resize does
                  on a uint8 tensor)

Usage: python scripts/bench_torchdata.py [--size 500x375] [--batch 64] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F


def _items(arrays: list[np.ndarray], dtype: str, contiguous: bool) -> list[torch.Tensor]:
    out = []
    for a in arrays:
        t = torch.from_numpy(a).permute(2, 0, 1)
        if contiguous:
            t = t.contiguous()
        if dtype == "float32":
            t = t.float().div_(255.0)
        out.append(t)
    return out


def _timed(fn: Callable[[], object], n_images: int, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) / n_images * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="500x375", help="WIDTHxHEIGHT of the images (500x375)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (64)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per case; the median is shown (5)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(1)  # a DataLoader worker runs torch on one thread
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(args.batch)]
    n = len(arrays)
    print(f"{n} images of {width}x{height}, microseconds per image (median of {args.repeat})")
    print(f"{'dtype':8} {'item':>12} {'':>8} {'item+collate':>14} {'':>8} {'item+resize':>13} {'':>8}")
    print(f"{'':8} {'view':>12} {'contig':>8} {'view':>14} {'contig':>8} {'view':>13} {'contig':>8}")
    for dtype in ("uint8", "float32"):
        row = []
        for case in ("item", "collate", "resize"):
            for contiguous in (False, True):

                def run(contiguous: bool = contiguous, case: str = case, dtype: str = dtype) -> None:
                    items = _items(arrays, dtype, contiguous)
                    if case == "collate":
                        # A worker's default collate stacks into a new shared-memory tensor: contiguous.
                        out = torch.empty((n, 3, height, width), dtype=items[0].dtype)
                        torch.stack(items, 0, out=out)
                    elif case == "resize":
                        for t in items:
                            F.interpolate(t[None], size=(224, 224), mode="bilinear", antialias=True)

                row.append(_timed(run, n, args.repeat))
        print(f"{dtype:8} {row[0]:12.0f} {row[1]:8.0f} {row[2]:14.0f} {row[3]:8.0f} {row[4]:13.0f} {row[5]:8.0f}")


if __name__ == "__main__":
    main()
