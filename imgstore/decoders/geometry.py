"""Pure geometry shared by every decoder: where a source image goes in the stored array.

:func:`resize_plan` reproduces Pillow's ``ImageOps.fit`` (crop), ``ImageOps.pad`` (pad) and plain ``resize``
(stretch) exactly, so that with ``exact=True`` imgstore's pixels are byte-identical to those references; shorter,
longer and none plan a size of the image's own aspect. A decoder resizes the plan's ``box`` of its upright image to
the plan's ``size`` and :func:`place` puts the result in the output: a fixed array, letterboxed with
:func:`pad_value`, or for the variable modes a :class:`Canvas`, which hands out an array of the plan's size.

A JPEG decoder's DCT scaling is planned with :func:`draft_request` and :func:`reduced_plan`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imgstore.options import ResizeMode


@dataclass(frozen=True)
class ResizePlan:
    """Where an image goes: resize the source ``box`` (float pixels) to ``size``, paste it at ``offset``."""

    box: tuple[float, float, float, float]  # (left, top, right, bottom) in source pixels
    size: tuple[int, int]  # (width, height) of the resized image
    offset: tuple[int, int]  # (x, y) of the resized image inside the target; (0, 0) unless padding


def resize_plan(
    src: tuple[int, int], dst: tuple[int, int], mode: ResizeMode, upscale: bool = False
) -> ResizePlan:
    """Plan fitting a ``src`` (width, height) image to ``dst`` (width, height) pixels under ``mode``.

    Crop reproduces ``ImageOps.fit(centering=(0.5, 0.5))``, pad reproduces ``ImageOps.pad`` (``ImageOps.contain``
    then centre), stretch is a plain resize. Unlike ``contain``, a side never shrinks below 1 pixel.

    Shorter and longer (``dst`` square, its side S) resize the whole image so that its shorter (longer) side is S
    and the other side is rounded to the nearest pixel of the same aspect (``ImageOps.cover`` / ``contain`` sizes),
    at least 1. An image already smaller than that is kept at its size unless ``upscale`` (default False). None
    keeps ``src``. These three never crop or pad: the box is the whole image, the offset (0, 0).
    """
    w, h = src
    tw, th = dst
    full = (0.0, 0.0, float(w), float(h))
    if mode is ResizeMode.STRETCH:
        return ResizePlan(full, (tw, th), (0, 0))
    if mode in (ResizeMode.SHORTER, ResizeMode.LONGER, ResizeMode.NONE):
        return ResizePlan(full, _native_size(src, tw, mode, upscale), (0, 0))
    src_ratio = w / h
    dst_ratio = tw / th
    if mode is ResizeMode.CROP:
        if src_ratio == dst_ratio:
            cw, ch = float(w), float(h)
        elif src_ratio > dst_ratio:  # wider than the target: crop the sides
            cw, ch = dst_ratio * h, float(h)
        else:  # taller: crop top and bottom
            cw, ch = float(w), w / dst_ratio
        left = (w - cw) * 0.5
        top = (h - ch) * 0.5
        return ResizePlan((left, top, left + cw, top + ch), (tw, th), (0, 0))
    # PAD
    rw, rh = tw, th
    if src_ratio != dst_ratio:
        if src_ratio > dst_ratio:
            rh = max(1, round(h / w * tw))
        else:
            rw = max(1, round(w / h * th))
    x = round((tw - rw) * 0.5) if rw != tw else 0
    y = round((th - rh) * 0.5) if rw == tw and rh != th else 0
    return ResizePlan(full, (rw, rh), (x, y))


def reduced_plan(
    plan: ResizePlan, src: tuple[int, int], scale: float, size: tuple[int, int], flipped: tuple[bool, bool]
) -> ResizePlan:
    """``plan``, made for a ``src`` (width, height) image, for the same image decoded ``scale`` times smaller to
    ``size`` (as JPEG DCT scaling does): the box in the smaller image's pixels, the output size and offset kept.

    The box is divided by ``scale`` rather than re-planned on ``size``: libjpeg rounds the reduced size up, so its
    last column and row cover less than ``scale`` source pixels, and stretching them over the whole box shifts the
    far edge by up to a pixel (a mean error of 5 to 8 grey levels on a 1601x1203 test pattern, 1 after). Re-planning would also
    round a shorter/longer side to a size other than the one ``exact=True`` gives. The partial column (row) is at
    the stored image's right (bottom), which an EXIF turn puts on the left (top) when ``flipped`` (x, y) says so.
    """
    sx = size[0] - src[0] / scale if flipped[0] else 0.0
    sy = size[1] - src[1] / scale if flipped[1] else 0.0
    left, top, right, bottom = plan.box
    box = (left / scale + sx, top / scale + sy, right / scale + sx, bottom / scale + sy)
    return ResizePlan(box, plan.size, plan.offset)


# Without exact=True, JPEGs are DCT-scaled to at least DRAFT_GAP x the size the resize needs: 1.0 engages DCT
# scaling as soon as the source is 2x the target (libjpeg scales by 1/2, 1/4, 1/8), and the antialiased resize that
# follows still does the final step.
DRAFT_GAP = 1.0


def draft_request(stored: tuple[int, int], plan: ResizePlan, turned: bool) -> tuple[int, int] | None:
    """The (width, height) to ask a JPEG decoder's DCT scaling for (Pillow's ``Image.draft``), or None when the
    ``stored`` (width, height) image is not at least twice that on both sides, so scaling would gain nothing.

    ``plan`` is made on the upright image; ``turned`` (EXIF orientation 5..8) swaps its axes back to the stored
    image's. The request gives the resize :data:`DRAFT_GAP` x the pixels the plan's box needs.
    """
    bw, bh = plan.box[2] - plan.box[0], plan.box[3] - plan.box[1]
    sx, sy = plan.size[0] / bw, plan.size[1] / bh
    if turned:
        sx, sy = sy, sx
    request = (math.ceil(stored[0] * sx * DRAFT_GAP), math.ceil(stored[1] * sy * DRAFT_GAP))
    if stored[0] >= 2 * request[0] and stored[1] >= 2 * request[1]:
        return request
    return None


# EXIF orientation -> whether the upright image's axes are the stored image's swapped (5..8: turned a quarter).
TURNED = frozenset({5, 6, 7, 8})


def _native_size(src: tuple[int, int], side: int, mode: ResizeMode, upscale: bool) -> tuple[int, int]:
    """The (width, height) of a ``src`` image whose shorter (``SHORTER``) or longer (``LONGER``) side becomes
    ``side`` pixels, keeping its aspect; ``src`` itself for ``NONE``, or when that would enlarge it and not
    ``upscale``."""
    w, h = src
    if mode is ResizeMode.NONE:
        return src
    # The side being set: the shorter one is the one to cover the square, the longer one to fit inside it.
    wide = w >= h
    sets_width = wide if mode is ResizeMode.LONGER else not wide
    current = w if sets_width else h
    if current <= side and not upscale:
        return src  # never enlarged: a 100x80 icon stays 100x80 under --size 256
    # The same expressions as ImageOps.contain / cover, so sizes agree with Pillow's to the last rounding.
    if sets_width:
        return (side, max(1, round(h / w * side)))
    return (max(1, round(w / h * side)), side)


@functools.lru_cache(maxsize=16)
def pad_value(color: tuple[int, int, int], channels: int) -> np.ndarray:
    """The letterbox pixel, worked out once per colour rather than per padded image."""
    if channels == 3:
        return np.array(color, np.uint8)
    # The same luminance Pillow gives the colour in convert("L").
    return np.array([Image.new("RGB", (1, 1), color).convert("L").getpixel((0, 0))], np.uint8)


class Canvas:
    """A reusable, growable uint8 buffer that variable-shape images are decoded into.

    Under shorter, longer and none every image has its own ``(h, w, c)``; a worker keeps one Canvas and decodes
    image after image into it, so the buffer is allocated again only when an image is larger than any before.
    :meth:`take` hands out a C-contiguous view of the buffer; the next :meth:`take` reuses the same memory, so
    copy (or write out) :attr:`array` before decoding the next image into the canvas.
    """

    def __init__(self, capacity: int = 0) -> None:
        """An empty canvas; ``capacity`` (bytes, default 0) is allocated up front."""
        if not isinstance(capacity, int) or capacity < 0:
            raise ValueError(f"capacity must be a number of bytes >= 0, got {capacity!r}")
        self._buffer = np.empty(capacity, np.uint8)
        self._array: np.ndarray | None = None
        self.shape: tuple[int, int, int] | None = None  # (h, w, c) of the last take; None before any

    @property
    def capacity(self) -> int:
        """Bytes the buffer holds now: the largest image taken so far (or the initial capacity)."""
        return int(self._buffer.size)

    @property
    def array(self) -> np.ndarray:
        """The ``(h, w, c)`` uint8 view the last :meth:`take` returned; ValueError when nothing was taken."""
        if self._array is None:
            raise ValueError("nothing decoded into this canvas yet")
        return self._array

    def take(self, h: int, w: int, c: int) -> np.ndarray:
        """A C-contiguous ``(h, w, c)`` uint8 array backed by the buffer, which grows when it is too small.

        The contents are whatever the buffer held: the caller writes every pixel.
        """
        if min(h, w, c) < 1:
            raise ValueError(f"canvas shape must be positive, got {(h, w, c)}")
        n = h * w * c
        if n > self._buffer.size:
            # Grown to exactly what is needed, no slack: under none one image can be hundreds of MB, and the
            # largest image of a run is reached after a few reallocations at most.
            self._buffer = np.empty(n, np.uint8)
        self._array = self._buffer[:n].reshape(h, w, c)
        self.shape = (h, w, c)
        return self._array

    def reset(self) -> None:
        """Forget the last taken array (the buffer is kept), so a decode that writes nothing cannot pass off the
        previous image as its own."""
        self._array = None
        self.shape = None


def place(
    pixels: np.ndarray, plan: ResizePlan, out: np.ndarray | Canvas, pad_color: tuple[int, int, int]
) -> np.ndarray:
    """Put the resized ``pixels`` (``(h, w)`` or ``(h, w, c)`` uint8, ``plan.size``) into ``out`` and return the
    array written.

    A fixed ``out`` array gets them at the plan's offset, the rest filled with the letterbox colour; a
    :class:`Canvas` gets exactly them, in an array of the plan's size it takes (no letterbox).
    """
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if isinstance(out, Canvas):
        arr = out.take(plan.size[1], plan.size[0], pixels.shape[2])
        arr[...] = pixels
        return arr
    if plan.size != (out.shape[1], out.shape[0]):
        out[...] = pad_value(pad_color, out.shape[2])
    x, y = plan.offset
    out[y : y + plan.size[1], x : x + plan.size[0]] = pixels
    return out
