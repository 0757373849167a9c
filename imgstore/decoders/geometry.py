"""Pure geometry shared by every decoder: where a source image goes in the stored array.

:func:`resize_plan` reproduces Pillow's ``ImageOps.fit`` (crop), ``ImageOps.pad`` (pad) and plain ``resize``
(stretch) exactly, so that with ``exact=True`` imgstore's pixels are byte-identical to those references. A decoder
resizes the plan's ``box`` of its upright image to the plan's ``size`` and :func:`place` puts the result in the
output array, letterboxed with :func:`pad_value`.
"""

from __future__ import annotations

import functools
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


def resize_plan(src: tuple[int, int], dst: tuple[int, int], mode: ResizeMode) -> ResizePlan:
    """Plan fitting a ``src`` (width, height) image to ``dst`` (width, height) pixels under ``mode``.

    Crop reproduces ``ImageOps.fit(centering=(0.5, 0.5))``, pad reproduces ``ImageOps.pad`` (``ImageOps.contain``
    then centre), stretch is a plain resize. Unlike ``contain``, a side never shrinks below 1 pixel.
    """
    w, h = src
    tw, th = dst
    full = (0.0, 0.0, float(w), float(h))
    if mode is ResizeMode.STRETCH:
        return ResizePlan(full, (tw, th), (0, 0))
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


@functools.lru_cache(maxsize=16)
def pad_value(color: tuple[int, int, int], channels: int) -> np.ndarray:
    """The letterbox pixel, worked out once per colour rather than per padded image."""
    if channels == 3:
        return np.array(color, np.uint8)
    # The same luminance Pillow gives the colour in convert("L").
    return np.array([Image.new("RGB", (1, 1), color).convert("L").getpixel((0, 0))], np.uint8)


def place(pixels: np.ndarray, plan: ResizePlan, out: np.ndarray, pad_color: tuple[int, int, int]) -> None:
    """Put the resized ``pixels`` (``(h, w)`` or ``(h, w, c)`` uint8, ``plan.size``) into ``out`` at the plan's
    offset, filling the rest with the letterbox colour."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if plan.size != (out.shape[1], out.shape[0]):
        out[...] = pad_value(pad_color, out.shape[2])
    x, y = plan.offset
    out[y : y + plan.size[1], x : x + plan.size[0]] = pixels
