"""Pixel helpers shared by decoders: the pixel limit, bit-depth scaling, one-line reasons."""

from __future__ import annotations

import numpy as np

from imgstore.errors import BadImageError
from imgstore.options import DecodeOptions

MAX_REASON = 160  # characters of a skip reason


def check_pixels(w: int, h: int, opts: DecodeOptions) -> None:
    """Refuse an image of no pixels, or of more than ``opts.max_pixels`` (a decompression bomb)."""
    if w < 1 or h < 1:
        raise BadImageError(f"empty image: {w}x{h} pixels")
    if w * h > opts.max_pixels:
        raise BadImageError(
            f"decompression bomb: {w * h / 1e6:.0f} MP ({w}x{h}) exceeds the limit of "
            f"{opts.max_pixels / 1e6:.0f} MP (raise --max-pixels to allow it)"
        )


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale integer or float pixels to uint8 by the range the data really uses.

    Integers: values already within 0..255 are kept as they are; otherwise ``[min(0, lo), hi]`` maps to 0..255, so
    a 12-bit scan in a 16-bit container is not left dark and black stays black. Floats within [0, 1] are x255;
    other floats map ``[lo, hi]`` to 0..255. NaN becomes 0.
    """
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    work = arr.astype(np.float32, copy=False)
    finite = np.isfinite(work)
    if not finite.all():
        work = np.where(finite, work, 0.0).astype(np.float32)
    if work.size == 0:
        return np.zeros(arr.shape, np.uint8)
    lo, hi = float(work.min()), float(work.max())
    if np.issubdtype(arr.dtype, np.floating):
        if lo >= 0.0 and hi <= 1.0:
            lo, hi = 0.0, 1.0
    else:
        if lo >= 0 and hi <= 255:
            return arr.astype(np.uint8)
        lo = min(0.0, lo)
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    scaled = (work - lo) * np.float32(255.0 / (hi - lo)) + np.float32(0.5)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def one_line(text: str) -> str:
    """``text`` on one line, at most ``MAX_REASON`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."
