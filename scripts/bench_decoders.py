#!/usr/bin/env python3
"""Benchmark: the decode/resize libraries a fast path could use, one file at a time, on the same photos (issue 13).

Why imgstore resizes with cykooz.resizer and decodes plain PNGs with pyspng (and JPEGs still with Pillow): every
candidate is timed here on the same files, single-threaded (``ms/img``, best of --repeat passes over the files, bytes already in memory), and
its pixels are compared with the reference, Pillow's own decode and antialiased resize with the same filter
(``MAD``: mean absolute difference in grey levels, mean over the files, and the worst file). The issue asks for
a fast path within 2 grey levels of Pillow.

Candidates (a library that is not installed prints "not installed"; ``pip install 'imgstore[bench-peers]'``
adds OpenCV and libvips):
  pillow                 Image.open -> convert("RGB") -> resize(size, FILTER) (draft for >= 2x JPEG reductions,
                         as ``imgstore --exact`` does not and imgstore's Pillow path does)
  pillow + simd          Pillow decodes, cykooz.resizer (fast_image_resize, AVX2/NEON) resizes
  simplejpeg + simd      libjpeg-turbo through simplejpeg (1/2, 1/4, 1/8 DCT scaling only), cykooz resizes from
                         a copy of its array (faster here, one file at a time with the caches warm; slower than
                         pillow + simd in a real ingest, where the copies cost more: README "Speed")
  pyspng + simd          libspng through pyspng (PNG only), cykooz resizes
  simplejpeg M/8 + pil   simplejpeg with any M/8 DCT scale (min_width/min_height), then Pillow: shows why
                         imgstore never lets libjpeg scale by anything but a power of two (2+ grey levels off)
  opencv area / linear   cv2.imdecode (IMREAD_REDUCED_* for >= 2x), cv2.resize INTER_AREA / INTER_LINEAR
                         (INTER_LINEAR is not antialiased: fast and far off on a reduction)
  pyvips                 pyvips.Image.thumbnail_buffer(size="force") (shrink-on-load, then a Pillow-like reduce)
  imgstore               ``imgstore.decoders.decode_bytes`` as an ingest runs it (the chain it registers: pyspng
                         for plain PNGs, Pillow + SIMD resize for JPEGs and the rest)
  imgstore --exact       the same with exact=True: Pillow's pixels byte for byte

Corpora: the bench_ingest corpora under --data (photos: 500x375 JPEGs -> 256x256; large: 12 MP JPEGs -> 256x256;
tiny: 32x32 PNGs -> 16x16), made by scripts/photo_corpus.py when missing. Stretch geometry (a plain resize) on
every side, so only the libraries differ.

Usage: python scripts/bench_decoders.py [--data bench-data] [--corpus photos,large,tiny] [--files 200]
       [--filter bilinear] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

CORPORA = {"photos": ("jpg", 256), "large": ("jpg", 256), "tiny": ("png", 16)}
Candidate = Callable[[bytes], np.ndarray]


def _draft_scale(width: int, height: int, size: int) -> int:
    """The power-of-two DCT scale Pillow's draft (and imgstore) would take for a ``size`` x ``size`` stretch."""
    scale = 1
    while scale < 8 and width >= 2 * scale * size and height >= 2 * scale * size:
        scale *= 2
    return scale


def candidates(size: int, filt: str) -> dict[str, Candidate | str]:
    """name -> a function of one file's bytes giving the (size, size, 3) uint8 result, or why it cannot run."""
    resample = Image.Resampling[filt.upper()]
    out: dict[str, Candidate | str] = {}

    def pillow(data: bytes) -> np.ndarray:
        im = Image.open(io.BytesIO(data))
        if im.format == "JPEG" and min(im.width, im.height) >= 2 * size:
            im.draft("RGB", (size, size))
        return np.asarray(im.convert("RGB").resize((size, size), resample))

    out["pillow"] = pillow
    try:
        from cykooz_resizer import FilterType, ResizeAlg, ResizeOptions, Resizer

        kinds = {"box": "box", "bilinear": "bilinear", "bicubic": "catmull_rom", "lanczos": "lanczos3"}
        resizer = Resizer()
        options = ResizeOptions(ResizeAlg.convolution(getattr(FilterType, kinds[filt]))) if filt in kinds else None

        def pillow_simd(data: bytes) -> np.ndarray:
            im = Image.open(io.BytesIO(data))
            if im.format == "JPEG" and min(im.width, im.height) >= 2 * size:
                im.draft("RGB", (size, size))
            dst = Image.new("RGB", (size, size))
            resizer.resize_pil(im.convert("RGB"), dst, options)
            return np.asarray(dst)

        out["pillow + simd"] = pillow_simd if options else f"cykooz.resizer has no {filt} filter"
    except ImportError:
        out["pillow + simd"] = "not installed (cykooz.resizer)"
    try:
        import simplejpeg

        def sj_simd(data: bytes) -> np.ndarray:
            h, w, _, _ = simplejpeg.decode_jpeg_header(data)
            d = _draft_scale(w, h, size)
            arr = simplejpeg.decode_jpeg(data, min_width=math.ceil(w / d), min_height=math.ceil(h / d))
            im = Image.fromarray(arr)
            dst = Image.new("RGB", (size, size))
            resizer.resize_pil(im, dst, options)
            return np.asarray(dst)

        def sj_m8(data: bytes) -> np.ndarray:
            arr = simplejpeg.decode_jpeg(data, min_width=size, min_height=size)
            return np.asarray(Image.fromarray(arr).resize((size, size), resample))

        if isinstance(out["pillow + simd"], str):
            out["simplejpeg + simd"] = out["pillow + simd"]
        else:
            out["simplejpeg + simd"] = sj_simd
        out["simplejpeg M/8 + pil"] = sj_m8
    except ImportError:
        out["simplejpeg + simd"] = out["simplejpeg M/8 + pil"] = "not installed (pip install simplejpeg)"
    try:
        import pyspng

        def spng_simd(data: bytes) -> np.ndarray:
            dst = Image.new("RGB", (size, size))
            resizer.resize_pil(Image.fromarray(pyspng.load(data, "RGB")), dst, options)
            return np.asarray(dst)

        out["pyspng + simd"] = out["pillow + simd"] if isinstance(out["pillow + simd"], str) else spng_simd
    except ImportError:
        out["pyspng + simd"] = "not installed (pyspng)"
    try:
        import cv2

        cv2.setNumThreads(1)  # one file per worker process, as in imgstore's pool
        reduced = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                   8: cv2.IMREAD_REDUCED_COLOR_8}  # fmt: skip

        def opencv(interp: int) -> Candidate:
            def run(data: bytes) -> np.ndarray:
                buf = np.frombuffer(data, np.uint8)
                flag = cv2.IMREAD_COLOR
                if data[:2] == b"\xff\xd8":
                    h, w = _jpeg_size(data)
                    flag = reduced[_draft_scale(w, h, size)]
                bgr = cv2.imdecode(buf, flag)
                return cv2.cvtColor(cv2.resize(bgr, (size, size), interpolation=interp), cv2.COLOR_BGR2RGB)

            return run

        out["opencv area"] = opencv(cv2.INTER_AREA)
        out["opencv linear"] = opencv(cv2.INTER_LINEAR)
    except ImportError:
        out["opencv area"] = out["opencv linear"] = "not installed (opencv-python-headless)"
    try:
        import pyvips

        kernel = {"bilinear": "linear", "bicubic": "cubic", "lanczos": "lanczos3", "box": "nearest"}.get(filt, "linear")

        def vips(data: bytes) -> np.ndarray:
            im = pyvips.Image.thumbnail_buffer(data, size, height=size, size="force")
            arr = np.ndarray(buffer=im.write_to_memory(), dtype=np.uint8, shape=(im.height, im.width, im.bands))
            return arr[..., :3]

        out[f"pyvips ({kernel})"] = vips
    except (ImportError, OSError):
        out["pyvips"] = "not installed (pyvips[binary])"

    from imgstore.decoders import decode_bytes, decoders
    from imgstore.options import DecodeOptions

    chain = decoders()
    fast = DecodeOptions(size=(size, size), resize_mode="stretch", filter=filt)
    exact = DecodeOptions(size=(size, size), resize_mode="stretch", filter=filt, exact=True)
    out["imgstore"] = lambda data: decode_bytes(data, fast, None, chain)
    out["imgstore --exact"] = lambda data: decode_bytes(data, exact, None, chain)
    return out


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(height, width) from a JPEG's SOF marker."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 7 : i + 9], "big")
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    raise ValueError("no SOF marker")


def bench_corpus(name: str, files: list[Path], size: int, args: argparse.Namespace) -> list[dict]:
    datas = [f.read_bytes() for f in files]
    cands = candidates(size, args.filter)
    reference = cands["pillow"]
    assert callable(reference)
    refs = [reference(d) for d in datas]
    rows = []
    print(f"\n{name}: {len(datas)} files -> {size}x{size} {args.filter}, stretch; single thread, best of {args.repeat}")
    print(f"  {'candidate':<24} {'ms/img':>8} {'vs pillow':>9} {'MAD':>7} {'worst':>7}")
    base = None
    for label, fn in cands.items():
        if label.startswith("simplejpeg") and not datas[0].startswith(b"\xff\xd8"):
            fn = "JPEG only"
        if label.startswith("pyspng") and not datas[0].startswith(b"\x89PNG"):
            fn = "PNG only"
        if isinstance(fn, str):
            print(f"  {label:<24} {fn}")
            continue
        try:
            results = [fn(d) for d in datas]
        except Exception as exc:  # a candidate that cannot read these files is reported, not fatal
            print(f"  {label:<24} failed: {type(exc).__name__}: {exc}")
            continue
        best = math.inf
        for _ in range(args.repeat):
            t = time.perf_counter()
            for d in datas:
                fn(d)
            best = min(best, (time.perf_counter() - t) / len(datas))
        mads = [float(np.abs(r.astype(np.int16) - g.astype(np.int16)).mean()) for r, g in zip(refs, results)]
        base = base or best
        print(f"  {label:<24} {best * 1e3:>8.3f} {base / best:>8.2f}x {np.mean(mads):>7.3f} {max(mads):>7.3f}")
        rows.append({"corpus": name, "candidate": label, "ms": best * 1e3, "mad": float(np.mean(mads)),
                     "worst_mad": max(mads)})  # fmt: skip
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "bench-data")
    ap.add_argument("--corpus", default="photos,large,tiny")
    ap.add_argument("--files", type=int, default=200, help="files per corpus (default 200; large: at most 40)")
    ap.add_argument("--filter", default="bilinear", choices=["box", "bilinear", "hamming", "bicubic", "lanczos"])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from bench_ingest import CORPORA as INGEST_CORPORA
    from bench_ingest import make_corpus

    for name in args.corpus.split(","):
        ext, size = CORPORA[name]
        paths = make_corpus(name, INGEST_CORPORA[name].count, args.data / name)
        files = sorted(p for p in paths if p.suffix == f".{ext}")[: min(args.files, 40 if name == "large" else args.files)]
        bench_corpus(name, files, size, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
