#!/usr/bin/env python3
"""A benchmark corpus of JPEGs cut from real photographs, with camera-like noise.

:func:`imgstore.samples.write_jpeg_corpus` draws smooth gradients and flat shapes: JPEG squeezes them to a
fraction of a real photo's size, so decoding and reading them is faster than it will be on real data. This module
cuts its images out of the colour photographs that ship inside scikit-image (no download: only the files bundled
in the wheel are used), so edges, fur, foliage and fabric have real texture, then adds sensor noise so the JPEG
entropy is that of a camera's file.

For image ``i`` (from its own random stream, so the output does not depend on ``workers``):

1. pick one of the source photos and one of ``aspects``; the target size keeps the pixel area of ``size``
   (500x375 gives 500x375 for 4:3, 375x500 for 3:4, 577x325 for 16:9 and 433x433 for 1:1);
2. crop a random window of that aspect, its sides ``scale`` (0.3-1.0) times the largest such window in the photo,
   and resample it to the target size (Lanczos; small windows are upscaled, as a digital zoom would);
3. mirror it left-right half the time;
4. add noise per pixel and channel: Gaussian with a per-image sigma of 3-5 grey levels plus shot noise whose
   variance grows with brightness (sd ~2 levels at 255), as a sensor's does; then save it as a JPEG (quality 92,
   a camera's usual setting), or with ``fmt="png"`` as a PNG (lossless: ``size=(32, 32)``, ``aspects=("1:1",)``
   makes a CIFAR-like folder of small crops).

Usage: ``python scripts/photo_corpus.py OUTDIR [--count 2000] [--size 500x375] [--classes 10] [--seed 0]
[--aspects 4:3,3:4,16:9,1:1] [--workers 2] [--quality 92] [--format jpeg|png]``. Needs scikit-image
(``pip install scikit-image``).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgstore.errors import MissingExtraError, OptionError

__all__ = ["ASPECTS", "SOURCES", "load_sources", "main", "plan_corpus", "write_photo_corpus"]

#: Aspect ratio names -> width / height.
ASPECTS: dict[str, float] = {"4:3": 4 / 3, "3:4": 3 / 4, "16:9": 16 / 9, "9:16": 9 / 16, "3:2": 3 / 2, "1:1": 1.0}

#: The colour photographs bundled in scikit-image's wheel (``skimage.data`` functions that need no download).
#: Greyscale ones (camera, moon, coins, textures) are left out: their flat chroma would make JPEGs too small.
SOURCES: tuple[str, ...] = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "motorcycle_left",
    "motorcycle_right",
)

_MARKER_NAME = ".imgstore-photo-corpus.json"
_FILE = re.compile(r"img_\d{6}\.(jpg|png)")
_SUFFIX = {"jpeg": ".jpg", "png": ".png"}  # fmt -> file suffix
_DIR = re.compile(r"class_\d{2,}")

# Shot noise: variance = _SHOT * value, so its sd is ~2 grey levels at 255 and 0 in black, like photon noise.
_SHOT = 0.016
_SIGMA = (3.0, 5.0)  # per-image Gaussian read noise, grey levels

_sources: list[np.ndarray] = []  # the photos, loaded once per process (by the pool's initializer in workers)


def load_sources() -> list[np.ndarray]:
    """Return the :data:`SOURCES` photos as (H, W, 3) uint8 arrays, in that order.

    Raises :class:`~imgstore.errors.MissingExtraError` when scikit-image is not installed.
    """
    try:
        import skimage.data
    except ImportError:
        raise MissingExtraError("scripts/photo_corpus.py needs scikit-image: pip install scikit-image") from None
    photos = []
    for name in SOURCES:
        if name.startswith("motorcycle_"):
            left, right, _ = skimage.data.stereo_motorcycle()
            photo = left if name == "motorcycle_left" else right
        else:
            photo = getattr(skimage.data, name)()
        photos.append(np.ascontiguousarray(photo[..., :3], dtype=np.uint8))
    return photos


@dataclass(frozen=True)
class _Plan:
    """What file ``index`` will be: every random choice except the noise, drawn from the file's own stream."""

    index: int
    path: Path
    source: int
    width: int
    height: int
    box: tuple[float, float, float, float]  # crop window in source pixels: left, upper, right, lower
    flip: bool
    sigma: float
    noise_seed: int


def _target_size(size: tuple[int, int], aspect: float) -> tuple[int, int]:
    """(width, height) of ``aspect`` (width / height) with the pixel area of ``size``: 500x375 at 16:9 -> 577x325."""
    area = size[0] * size[1]
    return max(1, round(math.sqrt(area * aspect))), max(1, round(math.sqrt(area / aspect)))


def plan_corpus(
    root: Path,
    count: int,
    size: tuple[int, int],
    classes: int,
    seed: int,
    aspects: Sequence[str],
    shapes: Sequence[tuple[int, int]],
    scale: tuple[float, float] = (0.3, 1.0),
    suffix: str = ".jpg",
) -> list[_Plan]:
    """Every file's path (ending in ``suffix``), source photo, size, crop and flip; ``shapes`` are the sources'
    (H, W).

    Cheap (no pixels), so a rerun can check an existing corpus against it.
    """
    digits = max(2, len(str(classes - 1)))
    plans = []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        source = int(rng.integers(len(shapes)))
        width, height = _target_size(size, ASPECTS[aspects[int(rng.integers(len(aspects)))]])
        src_h, src_w = shapes[source]
        aspect = width / height
        # The largest window of the target's aspect inside the photo, then shrunk by a random factor.
        full_w = min(float(src_w), src_h * aspect)
        crop_w = full_w * rng.uniform(*scale)
        crop_h = crop_w / aspect
        left = rng.uniform(0.0, src_w - crop_w)
        upper = rng.uniform(0.0, src_h - crop_h)
        plans.append(
            _Plan(
                index=i,
                path=root / f"class_{i % classes:0{digits}d}" / f"img_{i:06d}{suffix}",
                source=source,
                width=width,
                height=height,
                box=(left, upper, left + crop_w, upper + crop_h),
                flip=bool(rng.random() < 0.5),
                sigma=float(rng.uniform(*_SIGMA)),
                noise_seed=int(rng.integers(2**63)),
            )
        )
    return plans


def _init_worker(photos: list[np.ndarray]) -> None:
    _sources[:] = photos


def _write_one(job: tuple[_Plan, int, str]) -> int:
    """Render and save one planned file -> its size in bytes."""
    plan, quality, fmt = job
    im = Image.fromarray(_sources[plan.source]).resize(
        (plan.width, plan.height), Image.Resampling.LANCZOS, box=plan.box
    )
    if plan.flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = np.asarray(im, dtype=np.float32)
    rng = np.random.default_rng(plan.noise_seed)
    # One normal draw scaled per pixel: the sum of independent Gaussian read noise and (approximately Gaussian)
    # shot noise is Gaussian with the summed variances.
    sd = np.sqrt(plan.sigma**2 + _SHOT * pixels)
    pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * sd
    np.clip(pixels + 0.5, 0, 255, out=pixels)
    im = Image.fromarray(pixels.astype(np.uint8), "RGB")
    if fmt == "png":
        im.save(plan.path, "PNG")
    else:
        im.save(plan.path, "JPEG", quality=quality)
    return plan.path.stat().st_size


def write_photo_corpus(
    root: Path | str,
    count: int,
    size: tuple[int, int] = (500, 375),
    classes: int = 10,
    seed: int = 0,
    aspects: Sequence[str] = ("4:3", "3:4", "16:9", "1:1"),
    workers: int = 2,
    quality: int = 92,
    scale: tuple[float, float] = (0.3, 1.0),
    fmt: str = "jpeg",
) -> list[Path]:
    """Write ``count`` JPEGs (or PNGs) cut from real photos (see the module docstring); return their paths in order.

    File ``i`` is ``root/class_CC/img_IIIIII.jpg`` (``.png`` with ``fmt="png"``) with ``CC = i % classes``.
    ``size`` (width, height in pixels, default 500x375) sets the pixel area every image keeps whatever its aspect;
    ``aspects`` are names from :data:`ASPECTS`, chosen uniformly per image (``("4:3",)`` makes every image exactly
    ``size``); ``scale`` bounds the crop window's side as a fraction of the largest window of that aspect (default
    0.3-1.0); ``quality`` is the JPEG quality (default 92); ``fmt`` is ``"jpeg"`` (default) or ``"png"`` (lossless,
    ``quality`` unused). ``workers`` processes (default 2) render and encode; the files do not depend on it.
    Deterministic for ``seed`` (int >= 0) with the same numpy, Pillow and scikit-image.

    A rerun with the same arguments reuses the files: a marker (``.imgstore-photo-corpus.json``) records them and
    every file must exist with its planned size. Otherwise the corpus is rewritten, and stale
    ``class_*/img_*.jpg`` and ``.png`` files are deleted (nothing else is touched). 2,000 images of 500x375 take
    ~20 s on two cores, 20,000 PNGs of 32x32 about a minute. Raises :class:`~imgstore.errors.MissingExtraError`
    without scikit-image, :class:`OptionError` for bad arguments.
    """
    _check(count, size, classes, seed, aspects, workers, quality, scale)
    if fmt not in _SUFFIX:
        raise OptionError(f"fmt must be one of {', '.join(_SUFFIX)}, got {fmt!r}")
    root = Path(root)
    photos = load_sources()
    shapes = [p.shape[:2] for p in photos]
    plans = plan_corpus(root, count, size, classes, seed, list(aspects), shapes, scale, _SUFFIX[fmt])
    paths = [p.path for p in plans]
    marker = root / _MARKER_NAME
    params = {
        "version": 1,
        "count": count,
        "size": list(size),
        "classes": classes,
        "seed": seed,
        "aspects": list(aspects),
        "quality": quality,
        "scale": list(scale),
    }
    if fmt != "jpeg":  # recorded only for PNGs, so the markers of JPEG corpora written before stay current
        params["format"] = fmt
    if _is_current(marker, params, plans, fmt.upper()):
        return paths

    root.mkdir(parents=True, exist_ok=True)
    # Drop the marker first: a run interrupted from here on must not look complete to the next one.
    marker.unlink(missing_ok=True)
    _remove_stale(root, set(paths))
    for folder in {p.parent for p in paths}:
        folder.mkdir(exist_ok=True)
    jobs = [(plan, quality, fmt) for plan in plans]
    if workers == 1 or count < 2:
        _init_worker(photos)
        for job in jobs:
            _write_one(job)
    else:
        # Processes, not threads: the noise is numpy work that holds the GIL. The photos (~15 MB) go to each
        # worker once, through the initializer.
        with multiprocessing.get_context().Pool(workers, _init_worker, (photos,)) as pool:
            for _ in pool.imap_unordered(_write_one, jobs, chunksize=16):
                pass
    marker.write_text(json.dumps(params, sort_keys=True) + "\n", encoding="utf-8")
    return paths


def _check(
    count: object,
    size: object,
    classes: object,
    seed: object,
    aspects: Sequence[str],
    workers: int,
    quality: int,
    scale: tuple[float, float],
) -> None:
    def positive_int(v: object) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0

    if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(positive_int(s) for s in size)):
        raise OptionError(f"size must be two positive integers (width, height), got {size!r}")
    if not (isinstance(count, (int, np.integer)) and not isinstance(count, bool) and count >= 0):
        raise OptionError(f"count must be an integer >= 0, got {count!r}")
    if not (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0):
        raise OptionError(f"seed must be an integer >= 0, got {seed!r}")
    if not positive_int(classes):
        raise OptionError(f"classes must be at least 1, got {classes!r}")
    if isinstance(aspects, str) or not aspects or any(a not in ASPECTS for a in aspects):
        raise OptionError(f"aspects must be a non-empty list of {', '.join(ASPECTS)}; got {aspects!r}")
    if not positive_int(workers):
        raise OptionError(f"workers must be at least 1, got {workers!r}")
    if not 1 <= quality <= 100:
        raise OptionError(f"quality must be in 1..100, got {quality}")
    if not (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
        raise OptionError(f"scale must be (low, high) with 0 < low <= high <= 1, got {scale!r}")


def _is_current(marker: Path, params: dict, plans: Sequence[_Plan], image_format: str = "JPEG") -> bool:
    try:
        if json.loads(marker.read_text(encoding="utf-8")) != params:
            return False
        for plan in plans:
            with Image.open(plan.path) as im:  # reads the header only
                if im.size != (plan.width, plan.height) or im.format != image_format:
                    return False
    except (OSError, ValueError):
        return False
    return True


def _remove_stale(root: Path, keep: set[Path]) -> None:
    if not root.is_dir():
        return
    for folder in root.iterdir():
        if not (folder.is_dir() and _DIR.fullmatch(folder.name)):
            continue
        for f in folder.iterdir():
            if _FILE.fullmatch(f.name) and f not in keep:
                f.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()


def _parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 500x375, got {text!r}")
    return int(m[1]), int(m[2])


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring); prints one summary line, returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python scripts/photo_corpus.py",
        description="Write JPEGs cut from scikit-image's bundled photographs, with camera-like noise.",
    )
    parser.add_argument("outdir", type=Path, help="folder to write into (created if missing)")
    parser.add_argument("--count", type=int, default=2000, help="number of JPEGs (default 2000)")
    parser.add_argument(
        "--size", type=_parse_size, default=(500, 375), help="WIDTHxHEIGHT whose area each image keeps (500x375)"
    )
    parser.add_argument("--classes", type=int, default=10, help="class folders (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed, >= 0 (default 0)")
    parser.add_argument(
        "--aspects",
        default="4:3,3:4,16:9,1:1",
        help=f"comma-separated mix from {', '.join(ASPECTS)} (4:3,3:4,16:9,1:1)",
    )
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--quality", type=int, default=92, help="JPEG quality (default 92)")
    parser.add_argument("--format", choices=sorted(_SUFFIX), default="jpeg", help="file format (default jpeg)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        paths = write_photo_corpus(
            args.outdir,
            args.count,
            size=args.size,
            classes=args.classes,
            seed=args.seed,
            aspects=[a.strip() for a in args.aspects.split(",") if a.strip()],
            workers=args.workers,
            quality=args.quality,
            fmt=args.format,
        )
    except (MissingExtraError, OptionError, OSError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    total = sum(p.stat().st_size for p in paths)
    mean = total / len(paths) if paths else 0
    print(
        f"{len(paths)} {args.format.upper()}s in {args.outdir} ({time.perf_counter() - start:.1f} s): "
        f"mean {mean / 1000:.1f} KB per image, {total / 1e6:.1f} MB in all"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
