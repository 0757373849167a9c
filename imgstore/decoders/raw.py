"""The camera RAW decoder: DNG, CR2, CR3, NEF, ARW, ORF, RW2, RAF, PEF, SRW and the rest LibRaw reads, via rawpy.

An optional extra (``pip install 'imgstore[raw]'``): registered, first in the chain, only when rawpy is installed.
It runs before Pillow because most raw files are TIFF inside: Pillow would read their first image, a small
preview, and store that. It claims only data that :func:`looks_raw` (a cheap look at the header): LibRaw itself
accepts some plain 16-bit TIFFs as "flat raw" (11 of Pillow's test TIFFs), which must stay Pillow's.

Pixels: LibRaw's demosaic with the camera's white balance, its colour matrix to sRGB, 8 bits per channel, its
usual brightness; LibRaw turns the image upright from the file's orientation. Without ``exact``, a raw at least
twice the size the resize needs is developed at half size (LibRaw's ``half_size``: one pixel per 2x2 Bayer cell,
no demosaic, several times faster), as JPEG draft decoding does.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import os
import struct
from types import ModuleType

import numpy as np

from imgstore.decoders.geometry import Canvas, resize_plan
from imgstore.decoders.pillow import render_array
from imgstore.decoders.pixels import check_pixels, one_line
from imgstore.errors import BadImageError, NotRecognised
from imgstore.options import DecodeOptions

# The raw formats LibRaw reads that cameras write today, and a few older ones. Not ".raw": the name is as often a
# headerless pixel dump of any kind (give --extensions raw to include Panasonic and Leica .raw files).
EXTENSIONS: tuple[str, ...] = (
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2", ".raf", ".pef",
    ".srw", ".rwl", ".3fr", ".fff", ".iiq", ".erf", ".kdc", ".dcr", ".mef", ".mos", ".mrw", ".x3f",
)  # fmt: skip

# Headers of raw formats that are not TIFF inside (or are, with a header of their own).
_SIGNATURES = (
    (0, b"FUJIFILMCCD-RAW"),  # RAF
    (4, b"ftypcrx "),  # CR3 (ISO base media)
    (0, b"II\x1a\x00\x00\x00HEAPCCDR"),  # CRW
    (8, b"CR\x02\x00"),  # CR2 (after the TIFF header)
    (0, b"IIRO"), (0, b"IIRS"), (0, b"MMOR"),  # ORF
    (0, b"IIU\x00"),  # RW2, RWL
    (0, b"\x00MRM"),  # MRW
    (0, b"FOVb"),  # X3F
    (0, b"IIII"), (0, b"MMMM"),  # Phase One IIQ
)  # fmt: skip
# The same, grouped by offset for one bytes.startswith per offset (looks_raw runs on every file: ~1 µs, not ~8).
_SIGNATURES_AT = tuple(
    (at, tuple(sig for where, sig in _SIGNATURES if where == at)) for at in sorted({at for at, _ in _SIGNATURES})
)

# TIFF tags that mark the raw image of a TIFF-based raw file (TIFF/EP, DNG).
_DNG_VERSION = 50706
_SUB_IFDS = 330
_PHOTOMETRIC = 262
_RAW_PHOTOMETRICS = {32803, 34892}  # colour filter array (Bayer), linear raw
_MAX_IFDS = 16  # IFDs looked at: enough for every camera's layout, bounded for a hostile file


def rawpy_installed() -> bool:
    """rawpy can be imported (looked up without importing it: importing costs about 0.1 s)."""
    return importlib.util.find_spec("rawpy") is not None


@functools.cache
def import_rawpy() -> ModuleType:
    """``import rawpy``, with LibRaw's OpenMP set to one thread.

    rawpy's wheels bring their own libgomp, which reads ``OMP_NUM_THREADS`` once, when it is loaded. One thread:
    imgstore's worker processes are the parallelism (two OpenMP threads per worker on 2 cores only contend), and a
    process that ran an OpenMP thread pool and then forks workers (``--workers 0`` earlier in the same program)
    can deadlock them. The variable is set for the import only, so other libraries loaded later see it as it was.
    Call this before anything else imports rawpy (imageio's rawpy plugin would).
    """
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import rawpy

        return rawpy
    finally:
        if saved is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = saved


def looks_raw(data: bytes) -> bool:
    """``data`` starts like a camera raw file: a raw format's own header, or a TIFF whose IFDs (the chain and
    their SubIFDs) hold a DNGVersion tag or a colour-filter-array / linear-raw image."""
    for at, sigs in _SIGNATURES_AT:
        if data.startswith(sigs, at):
            return True
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        return False
    try:
        return _tiff_is_raw(data)
    except (struct.error, IndexError, ValueError):
        return False


def _tiff_is_raw(data: bytes) -> bool:
    end = "<" if data[:2] == b"II" else ">"
    todo = [struct.unpack_from(end + "I", data, 4)[0]]
    seen: set[int] = set()
    while todo and len(seen) < _MAX_IFDS:
        at = todo.pop(0)
        if at == 0 or at in seen or at + 2 > len(data):
            continue
        seen.add(at)
        (count,) = struct.unpack_from(end + "H", data, at)
        for i in range(min(count, 512)):
            tag, kind, n = struct.unpack_from(end + "HHI", data, at + 2 + 12 * i)
            if tag == _DNG_VERSION:
                return True
            if tag == _PHOTOMETRIC and _short_or_long(data, end, kind, at + 2 + 12 * i + 8) in _RAW_PHOTOMETRICS:
                return True
            if tag == _SUB_IFDS and kind in (4, 13):
                value_at = at + 2 + 12 * i + 8
                if n > 1:
                    value_at = struct.unpack_from(end + "I", data, value_at)[0]
                todo.extend(struct.unpack_from(f"{end}{min(n, _MAX_IFDS)}I", data, value_at))
        todo.append(struct.unpack_from(end + "I", data, at + 2 + 12 * count)[0])
    return False


def _short_or_long(data: bytes, end: str, kind: int, at: int) -> int:
    return int(struct.unpack_from(end + ("H" if kind == 3 else "I"), data, at)[0])


class RawDecoder:
    """rawpy (LibRaw): develops camera raw files; everything else is not its format."""

    name = "raw"
    extensions = EXTENSIONS

    def decode(self, data: bytes, opts: DecodeOptions, out: np.ndarray | Canvas) -> None:
        if not looks_raw(data):
            raise NotRecognised("")  # the usual case: a JPEG, a PNG; the next decoder says what it is
        rawpy = import_rawpy()  # imported on first use: most runs hold no raw file

        try:
            raw = rawpy.imread(io.BytesIO(data))
        except rawpy.LibRawFileUnsupportedError:
            # Not passed on to Pillow, which would store the raw's small preview as if it were the photo.
            version = ".".join(str(v) for v in rawpy.libraw_version)
            raise BadImageError(f"camera raw this LibRaw ({version}) does not read: a newer rawpy may") from None
        except (rawpy.LibRawError, rawpy.NotSupportedError) as exc:
            raise BadImageError(one_line(f"corrupt RAW: {_message(exc)}")) from None
        with raw:
            sizes = raw.sizes
            check_pixels(sizes.width, sizes.height, opts)
            upright = (sizes.height, sizes.width) if sizes.flip in (5, 6) else (sizes.width, sizes.height)
            half = _half_size(upright, opts)
            try:
                rgb = raw.postprocess(use_camera_wb=True, output_bps=8, half_size=half)
            except MemoryError:
                raise BadImageError("out of memory while decoding") from None
            except Exception as exc:  # LibRaw's errors, and any other: this file's problem
                raise BadImageError(one_line(f"corrupt RAW: {_message(exc)}")) from None
        # Half size: shorter and longer plan on the full size, so the shape is the one exact=True gives.
        render_array(rgb, opts, out, full_size=upright if half else None)


def _message(exc: BaseException) -> str:
    """rawpy's errors carry LibRaw's message as bytes (``b'Input/output error'``): its text."""
    first = exc.args[0] if exc.args else None
    if isinstance(first, bytes):
        return first.decode("utf-8", "replace")
    return str(exc) or type(exc).__name__


def _half_size(upright: tuple[int, int], opts: DecodeOptions) -> bool:
    """Develop at half size: not ``exact``, and the box the resize reads is at least twice the target each way."""
    if opts.exact:
        return False
    plan = resize_plan(upright, opts.size, opts.resize_mode, opts.upscale)
    box_w, box_h = plan.box[2] - plan.box[0], plan.box[3] - plan.box[1]
    return box_w >= 2 * plan.size[0] and box_h >= 2 * plan.size[1]
