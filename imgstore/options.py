"""Validated, frozen option objects shared by the library, the config loader and the CLI.

Options are checked once, here, before any I/O: strings become enums, sizes become ``(width, height)``
tuples, colours become RGB triples. Everything downstream can trust them.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, Union

from PIL import Image, ImageColor

from imgstore.errors import OptionError

if TYPE_CHECKING:
    from imgstore.store.encoding import Encoding

E = TypeVar("E", bound=enum.Enum)


class ResizeMode(str, enum.Enum):
    """How an image is fitted to the target size."""

    CROP = "crop"  # keep aspect, scale to cover the target, centre-crop the overflow (torchvision-style)
    STRETCH = "stretch"  # resize straight to the target, distorting the aspect (the classic notebook loop)
    PAD = "pad"  # keep aspect, scale to fit inside the target, letterbox with the pad colour
    # Native aspect: every image keeps its own aspect ratio and its own shape (see DecodeOptions.variable).
    SHORTER = "shorter"  # the shorter side becomes SIZE, the longer follows the aspect (torchvision Resize(256))
    LONGER = "longer"  # the longer side becomes SIZE, the shorter follows the aspect (a thumbnail's fit)
    NONE = "none"  # no resize: the decoded, EXIF-upright size (SIZE is not used)


# The modes whose images have shapes of their own: no crop, no letterbox, one (H, W, C) per image.
VARIABLE_MODES = frozenset({ResizeMode.SHORTER, ResizeMode.LONGER, ResizeMode.NONE})


# Pillow's filters by the names users type. All but "nearest" are antialiased when downscaling.
FILTERS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}

# Pillow's own decompression-bomb threshold (Image.MAX_IMAGE_PIXELS, ~178.9 MP).
DEFAULT_MAX_PIXELS = 89_478_485 * 2

# Seconds one file may take to decode before its worker is killed and the file recorded as skipped.
DEFAULT_TIMEOUT = 60.0


def default_workers() -> int:
    """The number of CPUs this process may run on (``os.sched_getaffinity``), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_extensions() -> tuple[str, ...]:
    """The extensions the registered decoders read, the default ``--extensions`` (see :mod:`imgstore.decoders`)."""
    from imgstore.decoders import default_extensions as registered  # decoders import this module

    return registered()


def parse_size(value: str | int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Parse ``256`` (square) or ``"320x240"`` (WIDTHxHEIGHT) into ``(width, height)`` in pixels."""
    if isinstance(value, bool):
        raise OptionError(f"invalid size {value!r}: use N or WIDTHxHEIGHT, e.g. 256 or 320x240")
    if isinstance(value, int):
        w = h = value
    elif isinstance(value, (tuple, list)):
        if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise OptionError(f"invalid size {value!r}: give [WIDTH, HEIGHT] as two integers")
        w, h = value
    else:
        m = re.fullmatch(r"\s*(\d+)\s*(?:[xX×]\s*(\d+))?\s*", str(value))
        if not m:
            raise OptionError(f"invalid size {value!r}: use N or WIDTHxHEIGHT, e.g. 256 or 320x240")
        w = int(m.group(1))
        h = int(m.group(2)) if m.group(2) else w
    if not (1 <= w <= 65535 and 1 <= h <= 65535):
        raise OptionError(f"invalid size {w}x{h}: width and height must be between 1 and 65535 pixels")
    return (w, h)


def parse_color(value: str | tuple[int, int, int] | list[int]) -> tuple[int, int, int]:
    """Parse a colour name (``white``), ``#rrggbb`` or ``R,G,B`` into an RGB triple of 0..255."""
    if isinstance(value, (tuple, list)):
        parts = list(value)
    elif re.fullmatch(r"\s*\d+\s*,\s*\d+\s*,\s*\d+\s*", str(value)):
        parts = [int(p) for p in str(value).split(",")]
    else:
        try:
            rgb = ImageColor.getrgb(str(value).strip())
        except ValueError:
            raise OptionError(
                f"invalid colour {value!r}: use a name (white), #rrggbb or R,G,B with values 0-255"
            ) from None
        parts = list(rgb[:3])
    if len(parts) != 3 or not all(isinstance(p, int) and 0 <= p <= 255 for p in parts):
        raise OptionError(f"invalid colour {value!r}: use a name (white), #rrggbb or R,G,B with values 0-255")
    return (parts[0], parts[1], parts[2])


def parse_extensions(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Parse ``"jpg,png"`` or a list into lower-case ``(".jpg", ".png")``."""
    items = value.split(",") if isinstance(value, str) else list(value)
    exts = []
    for item in items:
        item = str(item).strip().lower()
        if not item:
            continue
        if not re.fullmatch(r"\.?[a-z0-9_+-]+", item):
            raise OptionError(f"invalid extension {item!r}: use letters and digits, e.g. jpg,png,webp")
        exts.append(item if item.startswith(".") else "." + item)
    if not exts:
        raise OptionError("no extensions given: use e.g. --extensions jpg,png")
    return tuple(dict.fromkeys(exts))


def parse_shard(value: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Parse ``"2/8"`` (the 2nd of 8 shards, 1-based) into ``(2, 8)``."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        k, n = value
    else:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(value))
        if not m:
            raise OptionError(f"invalid shard {value!r}: use K/N, e.g. 1/4 for the first of four shards")
        k, n = int(m.group(1)), int(m.group(2))
    if not (isinstance(k, int) and isinstance(n, int) and 1 <= k <= n):
        raise OptionError(f"invalid shard {value!r}: K/N needs 1 <= K <= N, e.g. 1/4 for the first of four shards")
    return (k, n)


def shard_range(total: int, shard: tuple[int, int]) -> tuple[int, int]:
    """The ``[start, stop)`` slice of ``total`` candidates (in the source's order) that shard ``(K, N)`` ingests
    (contiguous, even)."""
    k, n = shard
    return ((k - 1) * total // n, k * total // n)


def parse_enum(cls: type[E], value: object, what: str) -> E:
    """``value`` (a member or its value, any case) as a member of the enum ``cls``; OptionError naming the choices."""
    try:
        return cls(value if isinstance(value, cls) else str(value).strip().lower())
    except ValueError:
        choices = ", ".join(m.value for m in cls)
        raise OptionError(f"invalid {what} {value!r}: choose one of {choices}") from None


SizeLike = Union[int, str, tuple[int, int], list[int]]  # 224, "320x240", (320, 240)
ColorLike = Union[str, tuple[int, int, int], list[int]]  # "white", "#rrggbb", "R,G,B", (R, G, B)


@dataclass(frozen=True, init=False)
class DecodeOptions:
    """How each file becomes an ``(H, W, C)`` uint8 array. Picklable: sent once to every worker.

    ``size`` is the target of crop, stretch and pad (default 256x256); shorter and longer take one number, the
    length in pixels of the side they set; none does not use it. ``upscale`` (default False) lets shorter and longer
    enlarge an image smaller than that; the other modes always fit the target.

    The constructor takes what a user types (``size=224`` or ``"320x240"``, ``resize_mode="pad"``,
    ``pad_color="white"``) and validates it once; the attributes hold the parsed values.
    """

    size: tuple[int, int]  # (width, height) in pixels
    channels: int  # 3 = RGB, 1 = luminance (ITU-R 601-2, as Pillow's convert("L"))
    resize_mode: ResizeMode
    filter: str  # a key of FILTERS
    pad_color: tuple[int, int, int]  # letterbox colour for resize_mode=pad
    background: tuple[int, int, int]  # what transparent pixels are composited on
    max_pixels: int  # larger images are refused as decompression bombs
    exact: bool  # True: no JPEG draft (DCT scaling), no half-size raw development, no reducing_gap shortcuts
    upscale: bool  # shorter/longer: also enlarge images smaller than SIZE (False: they keep their size)

    def __init__(
        self,
        size: SizeLike = (256, 256),
        channels: int = 3,
        resize_mode: ResizeMode | str = ResizeMode.CROP,
        filter: str = "bicubic",
        pad_color: ColorLike = (0, 0, 0),
        background: ColorLike = (255, 255, 255),
        max_pixels: int = DEFAULT_MAX_PIXELS,
        exact: bool = False,
        upscale: bool = False,
    ) -> None:
        if channels not in (1, 3):
            raise OptionError(f"invalid channels {channels!r}: use 3 (RGB) or 1 (grayscale)")
        if filter not in FILTERS:
            raise OptionError(f"invalid filter {filter!r}: choose one of {', '.join(FILTERS)}")
        if not isinstance(max_pixels, int) or max_pixels < 1:
            raise OptionError(f"invalid max pixels {max_pixels!r}: give a positive number of pixels")
        if not isinstance(upscale, bool):  # bool("false") is True: a TOML string must not turn it on
            raise OptionError(f"invalid upscale {upscale!r}: give true or false")
        mode = parse_enum(ResizeMode, resize_mode, "resize mode")
        parsed = parse_size(size)
        if mode in (ResizeMode.SHORTER, ResizeMode.LONGER) and parsed[0] != parsed[1]:
            raise OptionError(
                f"invalid size {parsed[0]}x{parsed[1]}: --resize-mode {mode.value} takes one number, e.g. --size 256"
            )
        _set(self, size=parsed, channels=channels, resize_mode=mode, filter=filter,
             pad_color=parse_color(pad_color), background=parse_color(background), max_pixels=max_pixels,
             exact=bool(exact), upscale=upscale)  # fmt: skip

    @property
    def shape(self) -> tuple[int, int, int]:
        """The stored array shape ``(height, width, channels)``: every image's under crop, stretch and pad.

        Under a :attr:`variable` mode it is only the nominal ``(SIZE, SIZE, channels)``: each image has its own.
        """
        return (self.size[1], self.size[0], self.channels)

    @property
    def variable(self) -> bool:
        """True for shorter, longer and none: images keep their aspect and have shapes of their own, decoded into
        a :class:`~imgstore.decoders.geometry.Canvas` rather than one fixed :attr:`shape` array."""
        return self.resize_mode in VARIABLE_MODES


@dataclass(frozen=True, init=False)
class IngestOptions:
    """Everything ``imgstore ingest`` needs besides SRC and OUT; the constructor validates what it is given."""

    decode: DecodeOptions
    extensions: tuple[str, ...]  # lower-case, with the dot; default: what the registered decoders read
    workers: int  # decoder processes; 0 = decode in this process (no isolation)
    timeout: float  # seconds one file may take in a worker
    buffer_size: int  # images per HDF5 write; 0 = about 64 MiB worth
    overwrite: bool
    strict: bool  # the CLI exits non-zero when any file was skipped
    shard: tuple[int, int] | None  # (K, N): ingest only the K-th (1-based) of N contiguous ranges
    labels: str | None  # "folder" (class subfolders) or a path to a file_name,label CSV
    append: bool  # add the files OUT does not hold yet, after its rows
    resume: bool  # continue an interrupted ingest into OUT
    dedupe: bool  # skip files whose bytes (SHA-256) are already stored
    compression: str  # none, gzip, lzf; zstd and blosc with hdf5plugin installed
    flush_every: float  # seconds: the longest a decoded image waits in memory before it is committed
    archives: bool  # archives inside SRC (a folder or an archive) are expanded: their members become candidates
    encode: Encoding  # how rows are stored: none (raw pixels), jpeg[:Q[:SUB]], webp[:Q], png[:LEVEL]

    def __init__(
        self,
        decode: DecodeOptions | None = None,
        extensions: str | list[str] | tuple[str, ...] | None = None,
        workers: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        buffer_size: int = 0,
        overwrite: bool = False,
        strict: bool = False,
        shard: str | tuple[int, int] | list[int] | None = None,
        labels: str | os.PathLike[str] | None = None,
        append: bool = False,
        resume: bool = False,
        dedupe: bool = False,
        compression: str | None = "none",
        flush_every: float = 2.0,
        archives: bool = False,
        encode: str | Encoding | None = "none",
    ) -> None:
        from imgstore.labels import parse_labels_option
        from imgstore.store.compression import parse_compression
        from imgstore.store.encoding import parse_encoding

        workers = default_workers() if workers is None else workers
        if append and resume:
            raise OptionError("--append and --resume exclude each other: resume an interrupted run, or append new files")
        if (append or resume) and overwrite:
            raise OptionError("--overwrite replaces OUT; it cannot be combined with --append or --resume")
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
            raise OptionError(f"invalid workers {workers!r}: give 1 or more (0 decodes in-process)")
        if not timeout > 0:
            raise OptionError(f"invalid timeout {timeout!r}: give a positive number of seconds")
        if not isinstance(buffer_size, int) or buffer_size < 0:
            raise OptionError(f"invalid buffer size {buffer_size!r}: give a number of images, or 0 for auto")
        if isinstance(flush_every, bool) or not isinstance(flush_every, (int, float)) or not flush_every >= 0:
            raise OptionError(f"invalid flush interval {flush_every!r}: give seconds, e.g. 2 (0 commits every image)")
        _set(self, decode=decode or DecodeOptions(),
             extensions=default_extensions() if extensions is None else parse_extensions(extensions),
             workers=workers, timeout=timeout, buffer_size=buffer_size, overwrite=bool(overwrite),
             strict=bool(strict), shard=None if shard is None else parse_shard(shard),
             labels=parse_labels_option(labels), append=bool(append), resume=bool(resume), dedupe=bool(dedupe),
             compression=parse_compression(compression), flush_every=flush_every,
             archives=bool(archives), encode=parse_encoding(encode))  # fmt: skip


def _set(obj: object, **values: object) -> None:
    """Set the fields of a frozen dataclass from its own ``__init__``."""
    for name, value in values.items():
        object.__setattr__(obj, name, value)


def resolve_path(value: str | os.PathLike[str]) -> Path:
    """``Path`` of a user-given path with ``~`` expanded."""
    return Path(os.path.expanduser(os.fspath(value)))
