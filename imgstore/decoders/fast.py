"""The fast JPEG decoder: libjpeg-turbo through simplejpeg, then the SIMD resize, for every 8-bit JPEG it can read.

Registered first (when simplejpeg imports), it takes JPEG data (``FF D8 FF``: ``.jpg``, and an MPO's frame 0)
unless ``exact=True``, and makes the same pixels as the Pillow decoder's non-exact path to within a fraction of a
grey level (0.2-0.26 mean on photos): the same EXIF orientation (read here by :func:`scan_markers` from the first
APP1 Exif block, else XMP's ``tiff:Orientation``, as Pillow's ``getexif``; a broken block counts as upright), the
same power-of-two DCT scale (:func:`~imgstore.decoders.geometry.draft_request` and
:func:`~imgstore.decoders.geometry.draft_scale`, the Pillow decoder's draft logic), the same plan. It saves
Pillow's RGB -> RGBX unpacking and image objects: the box is resized out of the stored image
(:func:`~imgstore.decoders.geometry.stored_plan`) by :func:`~imgstore.decoders.resize.resize_array`, then only the
small result is turned upright (:func:`~imgstore.decoders.geometry.orient`) and placed. For channels=1 libjpeg
decodes only the luma (``GRAY``), within 0.03 grey levels (mean) of Pillow's ``convert("L")`` on photos; a
greyscale JPEG under channels=3 is resized once and its grey replicated, as Pillow's ``L -> RGB`` does. On
500x375 photos -> 256x256 (stretch, bilinear, one core) it takes 1.4 ms per image where the Pillow decoder took
2.4 (scripts/bench_decode.py).

What it does not handle it hands back to the Pillow decoder with ``NotRecognised("")``, so the file gets Pillow's
pixels or Pillow's skip reason exactly as before (counted under the ``pillow`` paths): CMYK and YCCK (Adobe) JPEGs,
12-bit, lossless, arithmetic-coded and hierarchical JPEGs, a header simplejpeg refuses, and corrupt or truncated
data (``strict=True``: libjpeg's warnings about damaged data raise instead of leaving grey blocks).
"""

from __future__ import annotations

import re
import struct

import numpy as np
import simplejpeg as sj  # ~0.5 ms once numpy is loaded; ImportError: the decoder is not registered

from imgstore.decoders import note_path
from imgstore.decoders.geometry import (
    TURNED,
    Canvas,
    draft_request,
    draft_scale,
    orient,
    place,
    reduced_plan,
    resize_plan,
    stored_plan,
)
from imgstore.decoders.pixels import check_pixels
from imgstore.decoders.resize import resize_array
from imgstore.errors import NotRecognised
from imgstore.options import DecodeOptions

_SOI = b"\xff\xd8\xff"
# Start-of-frame markers simplejpeg and Pillow decode alike: baseline, extended sequential, progressive (Huffman).
# The others (lossless C3, hierarchical C5-C7, arithmetic C9-CB, CD-CF) go to Pillow.
_SOF_OK = frozenset({0xC0, 0xC1, 0xC2})
_SOF_ALL = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # C4 DHT, C8 reserved, CC DAC are not frames
_EXIF_ORIENTATION = 0x0112
_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_ORIENTATION = re.compile(rb'tiff:Orientation(="|>)([0-9])')  # Pillow's own pattern (Image.getexif)
_COLOURSPACES = frozenset({"YCbCr", "RGB", "Gray"})  # CMYK, YCCK: Pillow's ICC-aware path


class FastJpegDecoder:
    """8-bit Huffman-coded JPEGs (and MPO frame 0) through simplejpeg and the SIMD resize; see the module doc."""

    name = "fast"
    # Pillow (registered after this) already lists JPEG's extensions; naming them here too would move them to the
    # front of default_extensions(), whose order a store's recorded ingest options keep.
    extensions: tuple[str, ...] = ()

    def decode(self, data: bytes, opts: DecodeOptions, out: np.ndarray | Canvas) -> None:
        if opts.exact or data[:3] != _SOI:
            raise NotRecognised("")
        if not isinstance(data, bytes):
            data = bytes(data)  # a bytearray or memoryview from a custom source: the marker walk needs bytes
        orientation = scan_markers(data)
        if not orientation:
            raise NotRecognised("")  # not a frame this path decodes (see _SOF_OK), or markers it cannot follow
        try:
            h, w, colourspace, _ = sj.decode_jpeg_header(data, strict=True)
        except MemoryError:
            raise
        except Exception:  # ValueError for a header libjpeg refuses; anything else is Pillow's to judge too
            raise NotRecognised("") from None
        if colourspace not in _COLOURSPACES:
            raise NotRecognised("")
        check_pixels(w, h, opts)  # the same limit and reason as the Pillow decoder's, before any pixel is decoded
        turned = orientation in TURNED
        plan = resize_plan((h, w) if turned else (w, h), opts.size, opts.resize_mode, opts.upscale)
        grey = colourspace == "Gray" or opts.channels == 1
        request = draft_request((w, h), plan, turned)  # None under none, and for a source under 2x the target
        scale = 1 if request is None else draft_scale((w, h), request)
        # Power-of-two scales only: asking for at least ceil(side / scale) pixels rules out every smaller M/8 one,
        # and libjpeg-turbo picks the smallest that qualifies.
        dw, dh = -(-w // scale), -(-h // scale)
        try:
            pixels = sj.decode_jpeg(data, "GRAY" if grey else "RGB", min_width=dw, min_height=dh, strict=True)
        except MemoryError:
            raise
        except Exception:  # damaged data (ValueError under strict): Pillow says how, as it always has
            raise NotRecognised("") from None
        if pixels.shape[:2] != (dh, dw):
            raise NotRecognised("")  # a scale other than the one planned: Pillow's draft decides instead
        planned = stored_plan(plan, (w, h), orientation)
        if scale > 1:
            planned = reduced_plan(planned, (w, h), scale, (dw, dh), (False, False))
        small = resize_array(pixels, planned.size, opts.filter, planned.box)
        upright = orient(small, orientation)
        if opts.channels == 3 and upright.shape[2] == 1:
            upright = np.broadcast_to(upright, (*upright.shape[:2], 3))  # L -> RGB replicates the grey
        place(upright, plan, out, opts.pad_color)
        note_path("fast")


def scan_markers(data: bytes) -> int:
    """Walk a JPEG's marker segments up to its first scan: the EXIF orientation (1..8) as Pillow reads it, or 0
    when the frame is not one this path decodes (8-bit Huffman, 1 or 3 components) or the segments cannot be
    followed (Pillow then decides what the file is).

    Pillow's rule: the orientation tag of the first APP1 Exif block; without one, ``tiff:Orientation`` in the
    (last) XMP packet; a value outside 1..8 is upright."""
    n = len(data)
    pos = 2
    orientation = 0  # 0 until an Exif block gives the tag
    exif_seen = False
    xmp = b""
    frame_ok = False
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return 0
        marker = data[pos + 1]
        if marker == 0xFF:  # fill bytes before a marker
            pos += 1
            continue
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length field
            pos += 2
            continue
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 2 or pos + 2 + length > n:
            return 0
        body = pos + 4
        end = pos + 2 + length
        if marker == 0xE1:
            if data.startswith(b"Exif\x00\x00", body):
                if not exif_seen:
                    exif_seen = True
                    orientation = exif_orientation(data[body + 6 : end])
            elif data.startswith(_XMP, body):
                xmp = data[body + len(_XMP) : end]
        elif marker in _SOF_ALL:
            if marker not in _SOF_OK or length < 8:
                return 0
            precision, components = data[body], data[body + 5]
            if precision != 8 or components not in (1, 3):
                return 0
            frame_ok = True
        elif marker == 0xDA:  # start of scan: the headers are over
            if not frame_ok:
                return 0
            if not orientation and xmp:
                match = _XMP_ORIENTATION.search(xmp)
                orientation = int(match[2]) if match else 0
            return orientation if 1 <= orientation <= 8 else 1
        pos = end
    return 0


def exif_orientation(tiff: bytes) -> int:
    """The orientation tag of IFD0 of an Exif block's TIFF data: 1..8, 1 (upright) for a value out of range or of
    an odd type, as the Pillow decoder's ``_orientation`` treats it, and 0 when there is no tag (missing, or a
    block too broken to read), which lets an XMP orientation count (see :func:`scan_markers`)."""
    try:
        order = tiff[:2]
        if order == b"II":
            endian = "<"
        elif order == b"MM":
            endian = ">"
        else:
            return 0
        magic, ifd = struct.unpack_from(endian + "HI", tiff, 2)
        if magic != 42:
            return 0
        (count,) = struct.unpack_from(endian + "H", tiff, ifd)
        for i in range(count):
            entry = ifd + 2 + 12 * i
            tag, kind, number = struct.unpack_from(endian + "HHI", tiff, entry)
            if tag != _EXIF_ORIENTATION:
                continue
            if number < 1:
                return 1
            if kind == 3:  # SHORT, the type the standard gives it
                (value,) = struct.unpack_from(endian + "H", tiff, entry + 8)
            elif kind == 4:  # LONG: seen in the wild, and Pillow reads it too
                (value,) = struct.unpack_from(endian + "I", tiff, entry + 8)
            elif kind == 1:  # BYTE
                value = tiff[entry + 8]
            else:
                return 1
            return value if 1 <= value <= 8 else 1
    except (struct.error, IndexError):
        return 0
    return 0
