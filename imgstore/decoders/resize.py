"""One home for "resize this box of an image to that size with filter F", through SIMD when it can.

:func:`resize_image` (a Pillow image) and :func:`resize_array` (decoded pixels: libspng's PNGs) use
fast_image_resize's AVX2/SSE4.1/NEON convolution (the ``cykooz.resizer`` package, imported as ``cykooz_resizer``)
for the filters it shares with Pillow (:data:`SIMD_FILTERS`), and Pillow's ``Image.resize`` for the rest (nearest,
hamming), for modes other than RGB and L, or when the package is not installed (it has wheels for x86-64 and Apple
silicon only). On 500x375 photos -> 256x256 the SIMD convolution is 2.3-3.8x Pillow's and within 0.20-0.24 grey
levels of it (mean absolute difference); ``exact=True`` never comes here, it keeps Pillow's own resize.

Large reductions keep Pillow's ``reducing_gap`` shortcut: Pillow's ``Image.reduce`` (box averaging by a whole
factor) first, as ``Image.resize(..., reducing_gap=3.0)`` does, then the convolution for the rest. Measured on a
6000x4000 RGB image (one core, ms): to 256x256, reduce + SIMD takes 20-21 for every filter against Pillow's 22-26,
where SIMD alone takes 10 (bilinear, box) but 21 (bicubic) and 51 (lanczos); to 32x32, reduce + SIMD 15-16 against
SIMD alone 20-74. The reduce keeps the worst case cheap and the pixels within 0.15-0.2 grey levels of Pillow's.

The package costs ~28 ms to import: it is imported on the first SIMD resize, or by :func:`preload`, which the
pool calls (through ``imgstore.decoders.pillow.prepare_workers``) so it is imported once in the parent before forking.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
from PIL import Image

from imgstore.options import FILTERS

# imgstore filter name -> fast_image_resize's filter of the same kernel. Pillow's BICUBIC is the cubic with
# a=-0.5, which is Catmull-Rom; its LANCZOS is lanczos3. fast_image_resize has no hamming, and its nearest
# samples other pixels than Pillow's: both stay with Pillow.
SIMD_FILTERS: dict[str, str] = {"box": "box", "bilinear": "bilinear", "bicubic": "catmull_rom", "lanczos": "lanczos3"}

# Pillow's filter support radii (source pixels at scale 1, src/libImaging/Resample.c), for the box reduce() may
# read from: the same safe box Image.resize computes before reducing.
_SUPPORT = {"box": 0.5, "bilinear": 1.0, "hamming": 1.0, "bicubic": 2.0, "lanczos": 3.0}

# Without exact=True, reductions of more than REDUCING_GAP x go through Image.reduce first (Pillow's docs call
# 3.0 indistinguishable from fair resampling).
REDUCING_GAP = 3.0

_SIMD_MODES = ("RGB", "L")


class _Simd(threading.local):
    """The package's objects, per thread: a Resizer keeps scratch buffers and is not shared between threads."""

    resizer: Any = None


_simd = _Simd()
_module: Any = None  # cykooz_resizer once imported; False when it cannot be
_algs: dict[str, Any] = {}  # filter name -> ResizeAlg, made once
_lock = threading.Lock()


def preload() -> bool:
    """Import the SIMD resizer now (once per process; ~28 ms) and say whether it is usable. A pool calls this
    (through ``prepare_workers``) before forking, so its workers inherit the import instead of each paying for it."""
    global _module
    if _module is None:
        with _lock:
            if _module is None:
                try:
                    import cykooz_resizer as module

                    for name, kernel in SIMD_FILTERS.items():
                        _algs[name] = module.ResizeAlg.convolution(getattr(module.FilterType, kernel))
                    _module = module
                except Exception:  # not installed, no wheel for this CPU, or a broken build: Pillow resizes
                    _module = False
    return _module is not False


def simd_for(filter: str, mode: str) -> bool:
    """Whether :func:`resize_image` resizes a ``mode`` image with ``filter`` through SIMD (imports the package)."""
    return filter in SIMD_FILTERS and mode in _SIMD_MODES and preload()


def resize_image(
    im: Image.Image, size: tuple[int, int], filter: str, box: tuple[float, float, float, float]
) -> tuple[Image.Image, bool]:
    """``box`` (left, top, right, bottom in float pixels of ``im``) of ``im`` resized to ``size`` (width, height)
    with ``filter`` (a :data:`~imgstore.options.FILTERS` name), with the :data:`REDUCING_GAP` shortcut; returns the
    new image and whether the SIMD convolution made it (else Pillow's ``Image.resize`` did, as before)."""
    if not simd_for(filter, im.mode):
        return im.resize(size, FILTERS[filter], box=box, reducing_gap=REDUCING_GAP), False
    im, box = _reduce(im, size, filter, box)
    dst = Image.new(im.mode, size, None)  # not filled: the resize writes every pixel
    _resizer().resize_pil(im, dst, _options(filter, box, im.size))
    return dst, True


def resize_array(
    pixels: np.ndarray, size: tuple[int, int], filter: str, box: tuple[float, float, float, float]
) -> np.ndarray:
    """:func:`resize_image` for ``(h, w, c)`` uint8 pixels (c = 1 or 3, C-contiguous): an ``(H, W, c)`` array of
    ``size`` (width, height). SIMD straight from the array's bytes when it can; Pillow otherwise."""
    h, w, c = pixels.shape
    if size == (w, h) and box == (0.0, 0.0, float(w), float(h)):
        return pixels
    mode = "RGB" if c == 3 else "L"
    if not simd_for(filter, mode) or _reduce_factor(size, box) != (1, 1):
        im = Image.fromarray(pixels[:, :, 0] if c == 1 else pixels, mode)
        resized, _ = resize_image(im, size, filter, box)
        arr = np.asarray(resized)
        return arr[:, :, None] if c == 1 else arr
    m = _module
    pixel_type = m.PixelType.U8x3 if c == 3 else m.PixelType.U8
    # ImageData copies the bytes it is given; tobytes() of a contiguous array is one more copy, both of a few
    # hundred kB for a photo-sized PNG: its decode still beats Pillow's (a 1600x1200 PNG -> 256: 40 ms against 45).
    src = m.ImageData(w, h, pixel_type, pixels.tobytes())
    dst = m.ImageData(size[0], size[1], pixel_type)
    _resizer().resize(src, dst, _options(filter, box, (w, h)))
    return np.frombuffer(dst.get_buffer(), np.uint8).reshape(size[1], size[0], c)


def _resizer() -> Any:
    resizer = _simd.resizer
    if resizer is None:
        resizer = _simd.resizer = _module.Resizer()
    return resizer


def _options(filter: str, box: tuple[float, float, float, float], src: tuple[int, int]) -> Any:
    """The package's ResizeOptions for ``box`` of a ``src`` (width, height) image, its edges clamped into the
    image (a plan's box can overshoot by a rounding error, which the package refuses)."""
    m = _module
    left = min(max(0.0, box[0]), float(src[0]))
    top = min(max(0.0, box[1]), float(src[1]))
    width = min(max(0.0, box[2] - left), src[0] - left)
    height = min(max(0.0, box[3] - top), src[1] - top)
    return m.ResizeOptions(resize_alg=_algs[filter], crop_box=m.CropBox(left, top, width, height))


def _reduce_factor(size: tuple[int, int], box: tuple[float, float, float, float]) -> tuple[int, int]:
    """Image.resize's whole reduction factors for ``box`` -> ``size`` under :data:`REDUCING_GAP`."""
    fx = int((box[2] - box[0]) / size[0] / REDUCING_GAP) or 1
    fy = int((box[3] - box[1]) / size[1] / REDUCING_GAP) or 1
    return fx, fy


def _reduce(
    im: Image.Image, size: tuple[int, int], filter: str, box: tuple[float, float, float, float]
) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """Pillow's reducing_gap step (``Image.resize``'s own code): ``im`` box-reduced by whole factors when the
    reduction is more than :data:`REDUCING_GAP` x, and ``box`` in the reduced image's pixels."""
    fx, fy = _reduce_factor(size, box)
    if fx == 1 and fy == 1:
        return im, box
    support = _SUPPORT[filter] - 0.5
    sx = support * (box[2] - box[0]) / size[0]
    sy = support * (box[3] - box[1]) / size[1]
    safe = (
        max(0, int(box[0] - sx)),
        max(0, int(box[1] - sy)),
        min(im.width, math.ceil(box[2] + sx)),
        min(im.height, math.ceil(box[3] + sy)),
    )
    reduced = im.reduce((fx, fy), box=safe)
    return reduced, (
        (box[0] - safe[0]) / fx,
        (box[1] - safe[1]) / fy,
        (box[2] - safe[0]) / fx,
        (box[3] - safe[1]) / fy,
    )
