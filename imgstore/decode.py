"""Decode one image file into an ``(H, W, C)`` uint8 array: open, orient, convert the mode, resize.

This module runs inside worker processes. It never prints and never touches HDF5. A file that cannot be
ingested raises :class:`~imgstore.errors.BadImageError` whose ``reason`` is the short, one-line text recorded in
the store's ``skipped_reasons`` (``truncated JPEG``, ``not an image``, ``decompression bomb: 400 MP ...``).

The geometry (:func:`resize_plan`) is a pure function that reproduces Pillow's ``ImageOps.fit`` (crop),
``ImageOps.pad`` (pad) and plain ``resize`` (stretch) exactly, so that with ``exact=True`` imgstore's pixels are
byte-identical to those references; without it, JPEG DCT scaling (``Image.draft``) and ``reducing_gap`` make large
sources several times cheaper to decode.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from imgstore.errors import BadImageError
from imgstore.options import FILTERS, DecodeOptions, ResizeMode

# EXIF orientation value -> the transpose that makes the image upright (as PIL.ImageOps.exif_transpose).
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION = 0x0112

# Without exact=True, JPEGs are DCT-scaled to at least DRAFT_GAP x the size the resize needs: 1.0 engages draft as
# soon as the source is 2x the target (libjpeg scales by 1/2, 1/4, 1/8), and the antialiased resize that follows
# still does the final step. Other formats use Pillow's reducing_gap, whose docs call 3.0 indistinguishable from
# fair resampling.
DRAFT_GAP = 1.0
REDUCING_GAP = 3.0

_HIGH_BIT_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_ALPHA_MODES = {"RGBA", "LA", "La", "RGBa", "PA"}
_MAX_REASON = 160


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


def read_file(path: str) -> bytes:
    """Read a whole file, turning OS errors into a one-line :class:`BadImageError`."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise BadImageError(f"unreadable: {exc.strerror or exc}") from None


def decode_bytes(data: bytes, opts: DecodeOptions, out: np.ndarray | None = None) -> np.ndarray:
    """Decode an image file's bytes into ``out`` (or a new ``opts.shape`` uint8 array) and return it.

    Raises :class:`BadImageError` with the reason the file cannot be ingested.
    """
    if out is None:
        out = np.empty(opts.shape, dtype=np.uint8)
    elif out.shape != opts.shape or out.dtype != np.uint8:
        raise ValueError(f"out must be uint8 {opts.shape}, got {out.dtype} {out.shape}")
    if not data:
        raise BadImageError("empty file")
    with warnings.catch_warnings():
        # Pillow warns about palette transparency, odd EXIF and big images; all are handled here.
        warnings.simplefilter("ignore")
        im = _open(data, opts)
        try:
            _render(im, opts, out)
        except BadImageError:
            raise
        except MemoryError:
            raise BadImageError("out of memory while decoding") from None
        except Exception as exc:  # any decoder failure is this file's problem, never the run's
            raise BadImageError(_corrupt_reason(im.format, exc)) from None
    return out


def decode_file(path: str, opts: DecodeOptions, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`decode_bytes` of the file at ``path``."""
    return decode_bytes(read_file(path), opts, out)


@contextlib.contextmanager
def _no_pillow_bomb_check() -> Iterator[None]:
    # imgstore applies its own, configurable limit right after open (see _open); Pillow's fixed one would refuse
    # what a user allowed with --max-pixels.
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _open(data: bytes, opts: DecodeOptions) -> Image.Image:
    """Open with Pillow, falling back to imageio; check the pixel limit before anything is decoded."""
    try:
        im = _pillow_open(data)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        return _open_imageio(data, opts, exc)
    _check_pixels(im.width, im.height, opts)
    return im


def _pillow_open(data: bytes) -> Image.Image:
    with _no_pillow_bomb_check():
        return Image.open(io.BytesIO(data))


def _check_pixels(w: int, h: int, opts: DecodeOptions) -> None:
    if w < 1 or h < 1:
        raise BadImageError(f"empty image: {w}x{h} pixels")
    if w * h > opts.max_pixels:
        raise BadImageError(
            f"decompression bomb: {w * h / 1e6:.0f} MP ({w}x{h}) exceeds the limit of "
            f"{opts.max_pixels / 1e6:.0f} MP (raise --max-pixels to allow it)"
        )


def _open_imageio(data: bytes, opts: DecodeOptions, pillow_error: BaseException) -> Image.Image:
    """Read what Pillow cannot with imageio (its other plugins), as an 8-bit Pillow image."""
    import imageio.v3 as iio

    try:
        props = iio.improps(data)
        if props.shape is not None and len(props.shape) >= 2:
            dims = props.shape[-3:-1] if len(props.shape) >= 3 and props.shape[-1] <= 4 else props.shape[-2:]
            _check_pixels(int(dims[1]), int(dims[0]), opts)
        arr = np.asarray(iio.imread(data, index=0))
    except BadImageError:
        raise
    except Exception:
        raise BadImageError(_unreadable_reason(pillow_error)) from None
    return _array_to_image(arr)


def _unreadable_reason(exc: BaseException) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (no decoder recognises the data)"
    return _one_line(f"cannot open: {exc}")


def _array_to_image(arr: np.ndarray) -> Image.Image:
    """A Pillow image (L, LA, RGB or RGBA; 8 bit) from an imageio array of any dtype."""
    while arr.ndim > 3 or (arr.ndim == 3 and arr.shape[-1] > 4):  # frames or volumes: keep the first
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        arr = _to_uint8(arr)
    if arr.ndim == 2:
        return Image.fromarray(arr, "L")
    mode = {2: "LA", 3: "RGB", 4: "RGBA"}.get(arr.shape[-1])
    if mode is None or arr.ndim != 3:
        raise BadImageError(f"unsupported pixel layout {arr.shape}")
    return Image.fromarray(np.ascontiguousarray(arr), mode)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
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


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1..8); a missing or broken EXIF block counts as 1 (upright)."""
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
        return int(value) if int(value) in _ORIENT else 1
    except Exception:
        return 1


def _render(im: Image.Image, opts: DecodeOptions, out: np.ndarray) -> None:
    orientation = _orientation(im)
    turned = orientation >= 5  # 5..8 swap width and height
    upright = (im.height, im.width) if turned else im.size
    plan = resize_plan(upright, opts.size, opts.resize_mode)

    if not opts.exact and im.format == "JPEG":
        # Ask libjpeg for the smallest DCT scale that still gives the resize DRAFT_GAP x the pixels it needs.
        bw, bh = plan.box[2] - plan.box[0], plan.box[3] - plan.box[1]
        sx, sy = plan.size[0] / bw, plan.size[1] / bh
        if turned:
            sx, sy = sy, sx
        request = (math.ceil(im.width * sx * DRAFT_GAP), math.ceil(im.height * sy * DRAFT_GAP))
        if im.width >= 2 * request[0] and im.height >= 2 * request[1]:
            scale_w, scale_h = im.width, im.height
            im.draft(None, request)
            im.load()
            if im.size != (scale_w, scale_h):
                # The box was planned in full-size pixels: re-plan on the smaller decoded image.
                upright = (im.height, im.width) if turned else im.size
                plan = resize_plan(upright, opts.size, opts.resize_mode)

    im.load()
    if orientation != 1:
        im = im.transpose(_ORIENT[orientation])
    im = _to_mode(im, opts)
    resized = im.resize(
        plan.size,
        FILTERS[opts.filter],
        box=plan.box,
        reducing_gap=None if opts.exact else REDUCING_GAP,
    )
    pixels = np.asarray(resized)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if plan.size != opts.size:
        out[...] = _pad_value(opts.pad_color, opts.channels)
    x, y = plan.offset
    out[y : y + plan.size[1], x : x + plan.size[0]] = pixels


@functools.lru_cache(maxsize=16)
def _pad_value(color: tuple[int, int, int], channels: int) -> np.ndarray:
    """The letterbox pixel, worked out once per colour rather than per padded image."""
    if channels == 3:
        return np.array(color, np.uint8)
    # The same luminance Pillow gives the colour in convert("L").
    return np.array([Image.new("RGB", (1, 1), color).convert("L").getpixel((0, 0))], np.uint8)


def _to_mode(im: Image.Image, opts: DecodeOptions) -> Image.Image:
    """Convert any Pillow mode to RGB (channels=3) or L (channels=1)."""
    target = "RGB" if opts.channels == 3 else "L"
    if im.mode == target:
        return im  # the common case: no conversion, no copy
    if im.mode in _HIGH_BIT_MODES:
        im = Image.fromarray(_to_uint8(np.asarray(im)), "L")
    elif im.mode == "CMYK":
        im = _cmyk_to_rgb(im)
    elif im.mode == "P" or (im.mode in ("L", "RGB", "1") and "transparency" in im.info):
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    elif im.mode in ("La", "RGBa", "PA"):
        im = im.convert("RGBA")
    if im.mode in _ALPHA_MODES:
        # Composite on the background: transparent pixels become the background colour, never black.
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, opts.background)
        flat.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        im = flat
    return im if im.mode == target else im.convert(target)


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    """CMYK -> RGB through the embedded ICC profile when there is one (print CMYK is far from naive)."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            rgb = ImageCms.profileToProfile(
                im, ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"), outputMode="RGB"
            )
            if rgb is not None:
                return rgb
        except Exception:  # a broken profile is not worth losing the image over
            pass
    return im.convert("RGB")


def _corrupt_reason(fmt: str | None, exc: BaseException) -> str:
    kind = fmt or "image"
    text = str(exc)
    if "truncated" in text or isinstance(exc, EOFError):
        return f"truncated {kind}"
    return _one_line(f"corrupt {kind}: {text or type(exc).__name__}")


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."
