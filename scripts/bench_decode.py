#!/usr/bin/env python3
"""Benchmark: the decode paths of one file, single-threaded, in one process (issue 13).

For every JPEG under each folder given, ``decode_bytes`` into one reused output array, through:

  pillow       the Pillow decoder with the SIMD resize turned off: the path every file took before the fast one
  pillow+simd  the Pillow decoder, resized by fast_image_resize's convolution (imgstore.decoders.resize)
  fast         the registered chain: the fast JPEG decoder (simplejpeg + the SIMD resize)
  exact        ``exact=True``: Pillow's pixels byte for byte (no DCT scaling, no reducing_gap, no SIMD)

The paths are interleaved round by round (``--rounds``, default 3) so load from elsewhere hits them alike, and the
fastest round counts. Printed per folder and path: ms per image, and the mean absolute difference (grey levels)
from the pillow path and from exact.

Usage: python scripts/bench_decode.py [DIR ...] [--size 256] [--mode stretch] [--filter bilinear] [--rounds 3]
[--limit N]; the default folders are bench-data/photos and bench-data/large.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imgstore.decoders import Decoder, decode_bytes
from imgstore.decoders import resize as simd
from imgstore.decoders.pillow import PillowDecoder
from imgstore.options import DecodeOptions

ROOT = Path(__file__).resolve().parent.parent


def _run(datas: list[bytes], opts: DecodeOptions, chain: Sequence[Decoder] | None, use_simd: bool) -> float:
    """Seconds per image for one pass over ``datas``."""
    loaded = simd._module
    simd._module = loaded if use_simd else False
    try:
        out = np.empty(opts.shape, np.uint8)
        start = time.perf_counter()
        for data in datas:
            decode_bytes(data, opts, out, chain=chain)
        return (time.perf_counter() - start) / len(datas)
    finally:
        simd._module = loaded


def _pixels(datas: list[bytes], opts: DecodeOptions, chain: Sequence[Decoder] | None, use_simd: bool) -> np.ndarray:
    loaded = simd._module
    simd._module = loaded if use_simd else False
    try:
        return np.stack([decode_bytes(data, opts, chain=chain) for data in datas])
    finally:
        simd._module = loaded


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="*", type=Path)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--mode", default="stretch")
    parser.add_argument("--filter", default="bilinear")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="at most this many files per folder (0: all)")
    args = parser.parse_args(argv)
    dirs = args.dirs or [ROOT / "bench-data" / "photos", ROOT / "bench-data" / "large"]
    opts = DecodeOptions(size=args.size, resize_mode=args.mode, filter=args.filter)
    exact = DecodeOptions(size=args.size, resize_mode=args.mode, filter=args.filter, exact=True)
    simd.preload()
    pillow: list[Decoder] = [PillowDecoder()]
    paths: dict[str, tuple[DecodeOptions, Sequence[Decoder] | None, bool]] = {
        "pillow": (opts, pillow, False),
        "pillow+simd": (opts, pillow, True),
        "fast": (opts, None, True),
        "exact": (exact, pillow, False),
    }
    print("| files | path | ms/image | MAD vs pillow | MAD vs exact |")
    print("|---|---|---|---|---|")
    for folder in dirs:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
        if args.limit:
            files = files[: args.limit]
        datas = [p.read_bytes() for p in files]
        for o, chain, use_simd in paths.values():
            _run(datas[:5], o, chain, use_simd)  # warm-up: imports, first allocations
        best = dict.fromkeys(paths, float("inf"))
        for _ in range(args.rounds):
            for name, (o, chain, use_simd) in paths.items():
                best[name] = min(best[name], _run(datas, o, chain, use_simd))
        pixels = {name: _pixels(datas, o, chain, use_simd) for name, (o, chain, use_simd) in paths.items()}
        for name in paths:
            vs_pillow = np.abs(pixels[name].astype(np.int16) - pixels["pillow"]).mean()
            vs_exact = np.abs(pixels[name].astype(np.int16) - pixels["exact"]).mean()
            label = f"{folder.name} ({len(datas)})"
            print(f"| {label} | {name} | {best[name] * 1e3:.2f} | {vs_pillow:.3f} | {vs_exact:.3f} |", flush=True)


if __name__ == "__main__":
    main()
