"""Generated sample photos for the demo, the test suite and the benchmarks.

The project never ships binary sample images: everything here is drawn with numpy and Pillow from a seed, so the
same seed always gives the same pixels (and, with the same Pillow/numpy, the same bytes).

- :func:`make_photo` draws one RGB "photo": sky and ground gradients, a sun, a few filled shapes and mild grain.
  The sun always sits in the upper-left part and the sky is always on top, so a flipped, rotated or transposed
  image is easy to tell from the upright one in pixel tests.
- :func:`write_sample_corpus` writes a small folder tree of ordinary JPEGs in class folders plus every awkward
  case an ingest must cope with (EXIF orientations, 16-bit and float images, alpha, palettes, animations, odd
  file names, hidden files, non-images, truncated/empty files, a decompression bomb) and returns a
  :class:`SampleManifest` saying what each file is and what an ingest should do with it.
- :func:`write_jpeg_corpus` writes many plain JPEGs of one size quickly, for benchmarks.

``python -m imgstore.samples OUTDIR`` writes the sample corpus (the demo script uses it).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import struct
import sys
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from imgstore.errors import OptionError

__all__ = [
    "BOMB_SIZE",
    "CLASS_NAMES",
    "ORIENTATION_STORE",
    "SampleManifest",
    "escape_relpath",
    "main",
    "make_photo",
    "write_jpeg_corpus",
    "write_sample_corpus",
]

#: Class folder names used by :func:`write_sample_corpus`, in order; beyond these it uses ``class_NN``.
CLASS_NAMES: tuple[str, ...] = ("cat", "dog", "fox", "owl", "elk", "bee", "ant", "yak", "emu", "cow", "eel", "hen")

#: (width, height) the decompression-bomb PNG declares: 224 megapixels, above Pillow's hard limit
#: (2 x ``Image.MAX_IMAGE_PIXELS`` = ~179 MP by default), so a correct reader refuses it before decoding.
BOMB_SIZE: tuple[int, int] = (16000, 14000)

#: For EXIF orientation value ``o``, the transpose applied to the upright photo to get the *stored* pixels. It is
#: the inverse of what ``ImageOps.exif_transpose`` applies for ``o``, so exif_transpose(stored) == upright.
#: Flips, 180 degrees, transpose and transverse are their own inverses; the two quarter turns swap.
ORIENTATION_STORE: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # exif_transpose applies ROTATE_270 for 6
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,  # exif_transpose applies ROTATE_90 for 8
}

_EXIF_ORIENTATION_TAG = 0x0112

# The TIFF header inside this EXIF block is well formed but points its first IFD 2 GiB past the end, so a reader
# finds no tags (Pillow warns "Corrupt EXIF data" and reports no orientation). The image data is untouched.
_CORRUPT_EXIF = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 0x7FFFFF00) + b"\x00\x01garbage-not-an-IFD\xff" * 2

# Name written as raw bytes: \xff is never valid UTF-8, so os.walk returns it with a surrogate escape (\udcff).
_NON_UTF8_NAME = b"bad-\xff-name.jpg"

_JPEG_MARKER_NAME = ".imgstore-jpeg-corpus.json"
_JPEG_CORPUS_FILE = re.compile(r"img_\d{6}\.jpg")
_JPEG_CORPUS_DIR = re.compile(r"class_\d{2,}")


def escape_relpath(relpath: str) -> str:
    """Return ``relpath`` the way the store records names: undecodable bytes as a literal ``\\xNN``.

    ``relpath`` is a str from ``os.walk``/``os.listdir``, where bytes that are not UTF-8 arrive as surrogate
    escapes; b'bad-\\xff-name.jpg' becomes the 17-character text ``bad-\\xff-name.jpg``. Valid names are unchanged.
    """
    return relpath.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class SampleManifest:
    """What :func:`write_sample_corpus` wrote and what an ingest of it should do.

    Every relative path is POSIX style (``/``), relative to ``root`` and escaped with :func:`escape_relpath`.
    Together ``good``, ``bad``, ``hidden`` and ``ignored`` list every file under ``root`` exactly once.
    """

    #: The corpus folder.
    root: Path
    #: Ordinary class folder names, in order (``cat``, ``dog``, ...). With odd files there is also ``odd/``.
    classes: list[str]
    #: Files an ingest must store (sorted), including the odd-but-valid ones.
    good: list[str]
    #: Files an ingest must skip -> reason category: "truncated", "empty", "not an image", "decompression bomb".
    bad: dict[str, str]
    #: Valid JPEGs that are hidden (dot file or inside a dot folder) and must not be ingested (sorted).
    hidden: list[str]
    #: Files that are not image candidates at all (``.txt``, ``.md``) (sorted).
    ignored: list[str]
    #: EXIF-oriented JPEGs -> their orientation tag value (1..8).
    orientation: dict[str, int]
    #: File -> (width, height, seed) such that ``make_photo(*reference[rel])`` is its upright content:
    #: ``ImageOps.exif_transpose(Image.open(f)).convert("RGB")`` is within mean abs diff 8 of it.
    reference: dict[str, tuple[int, int, int]]
    #: Good file -> the mode ``Image.open`` reports for it ("RGB", "L", "1", "P", "RGBA", "LA", "I;16", "I",
    #: "F", "CMYK").
    modes: dict[str, str]
    #: Every listed relative path -> the real path on disk (for the non-UTF-8 name it holds the surrogate escape).
    paths: dict[str, Path] = field(repr=False)

    def path(self, rel: str) -> Path:
        """Return the on-disk path of a relative path listed in this manifest."""
        return self.paths[rel]


# --------------------------------------------------------------------------------------------------------------
# One photo


def make_photo(width: int, height: int, seed: int) -> Image.Image:
    """Draw a deterministic RGB "photo" of ``width`` x ``height`` pixels.

    Content: a blue sky fading to a pale, slightly tilted horizon, a ground gradient, light falling from the left,
    a sun in the upper-left part, 2-4 ellipses and 2-3 polygons in random colours, and mild luminance grain
    (triangular noise, standard deviation ~3 levels). The same ``seed`` (an int >= 0) always gives the same
    pixels. 4000 x 3000 takes a few tenths of a second: gradients are computed at <= ~512 px and upscaled, and
    the shapes are drawn by Pillow in C.
    """
    _check_size((width, height), "width, height")
    _check_seed(seed)
    rng = np.random.default_rng(seed)

    sky_top = rng.uniform((15, 50, 120), (80, 130, 220))
    sky_horizon = rng.uniform((150, 175, 200), (230, 235, 250))
    ground_far = rng.uniform((90, 110, 40), (170, 175, 110))
    ground_near = rng.uniform((35, 40, 10), (100, 95, 55))
    horizon = rng.uniform(0.45, 0.62)  # fraction of the height, at the left edge
    tilt = rng.uniform(-0.08, 0.08)  # change of the horizon across the full width, as a fraction of the height

    # Gradients are smooth, so computing them on a grid of <= ~512 px and letting Pillow upscale keeps a 12 MP
    # photo cheap; the horizon gets a few pixels of softness, like haze.
    factor = max(1, max(width, height) // 512)
    gw, gh = max(2, math.ceil(width / factor)), max(2, math.ceil(height / factor))
    y = ((np.arange(gh, dtype=np.float32) + 0.5) / gh)[:, None]
    x = ((np.arange(gw, dtype=np.float32) + 0.5) / gw)[None, :]
    line = horizon + tilt * x
    t_sky = np.clip(y / line, 0.0, 1.0)[..., None]
    t_ground = np.clip((y - line) / (1.0 - line), 0.0, 1.0)[..., None]
    sky = sky_top + (sky_horizon - sky_top) * t_sky
    ground = ground_far + (ground_near - ground_far) * t_ground
    light = (1.08 - 0.16 * x)[..., None]  # brighter on the sun's (left) side
    grid = np.where((y < line)[..., None], sky, ground) * light
    img = Image.fromarray(np.clip(grid, 0, 255).astype(np.uint8), "RGB")
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BILINEAR)

    draw = ImageDraw.Draw(img)
    short = min(width, height)
    sun_x, sun_y = rng.uniform(0.1, 0.3) * width, rng.uniform(0.08, 0.22) * height
    sun_r = rng.uniform(0.05, 0.08) * short
    sun = (250, int(rng.integers(210, 245)), int(rng.integers(80, 150)))
    draw.ellipse((sun_x - sun_r, sun_y - sun_r, sun_x + sun_r, sun_y + sun_r), fill=sun)
    for _ in range(int(rng.integers(2, 5))):
        cx, cy = rng.uniform(0.0, 1.0) * width, rng.uniform(0.35, 1.0) * height
        rx, ry = rng.uniform(0.04, 0.18) * width, rng.uniform(0.03, 0.15) * height
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=_colour(rng))
    for _ in range(int(rng.integers(2, 4))):
        cx, cy = rng.uniform(0.05, 0.95) * width, rng.uniform(0.25, 0.95) * height
        n = int(rng.integers(3, 7))
        # Sorted angles around a centre give a simple (non self-intersecting) polygon.
        angles = np.sort(rng.uniform(0.0, 2 * np.pi, n))
        radii = rng.uniform(0.04, 0.16, n) * short
        points = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a, r in zip(angles, radii, strict=True)]
        draw.polygon([(float(px), float(py)) for px, py in points], fill=_colour(rng))

    # Grain: one random byte per pixel; the sum of two independent 3-bit fields minus 7 is triangular in -7..7
    # (sd ~3.2), close enough to gaussian and far cheaper than normal floats. Luminance only, like sensor grain.
    raw = rng.integers(0, 256, (height, width), dtype=np.uint8)
    grain = (raw & 7).astype(np.int16)
    grain += raw >> 5
    grain -= 7
    pixels = np.asarray(img, dtype=np.int16) + grain[..., None]
    np.clip(pixels, 0, 255, out=pixels)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = rng.integers(0, 256, 3)
    return int(r), int(g), int(b)


# --------------------------------------------------------------------------------------------------------------
# The sample corpus


def write_sample_corpus(
    root: Path | str,
    *,
    classes: int = 3,
    per_class: int = 8,
    seed: int = 0,
    size: tuple[int, int] = (320, 240),
    include_odd: bool = True,
) -> SampleManifest:
    """Write the sample folder tree under ``root`` (created if needed) and return its manifest.

    - ``root/<class>/<class>_NNN.jpg``: ``per_class`` ordinary RGB JPEGs (quality 90) per class folder, each
      side 80-125 % of ``size`` (width, height in pixels); every 4th one is portrait (sides swapped).
    - With ``include_odd`` (default): ``root/odd/`` holds the valid awkward files (EXIF orientations 1-8, L, 1, P
      with transparency, RGBA, LA, I;16, 16-bit RGB, F, I, CMYK, animated GIF, WebP, BMP, TIFF, ``.JPG``, names
      with spaces / unicode / non-UTF-8 bytes, a corrupt EXIF block) plus ``readme.txt``; the four bad files
      (truncated, empty, not an image, decompression bomb) go into the class folders in turn; the first class
      folder also gets ``.hidden.jpg`` and ``.thumbs/x.jpg``; ``root/notes.md`` is a non-image.

    Files already present with the same names are overwritten; other files are left alone (and would then be
    missing from the manifest), so use a fresh folder. Deterministic for ``seed`` (int >= 0).
    """
    _check_size(size, "size")
    _check_seed(seed)
    if classes < 1:
        raise OptionError(f"classes must be at least 1, got {classes}")
    if per_class < 0:
        raise OptionError(f"per_class must be >= 0, got {per_class}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    w = _CorpusWriter(root)
    names = [CLASS_NAMES[i] if i < len(CLASS_NAMES) else f"class_{i:02d}" for i in range(classes)]

    for name in names:
        rng = np.random.default_rng(_sub_seed(seed, f"sizes/{name}"))
        for k in range(per_class):
            pw, ph = (max(8, round(s * rng.uniform(0.8, 1.25))) for s in size)
            if k % 4 == 3:
                pw, ph = ph, pw
            ref = (pw, ph, _sub_seed(seed, f"{name}/{k}"))
            w.good(f"{name}/{name}_{k:03d}.jpg", _encode(make_photo(*ref), "JPEG", quality=90), "RGB", ref)

    if include_odd:
        _write_odd_files(w, names, seed, size)

    return SampleManifest(
        root=root,
        classes=names,
        good=sorted(w.modes),
        bad=dict(sorted(w.bad.items())),
        hidden=sorted(w.hidden),
        ignored=sorted(w.ignored),
        orientation=dict(sorted(w.orientation.items())),
        reference=dict(sorted(w.reference.items())),
        modes=dict(sorted(w.modes.items())),
        paths=dict(sorted(w.paths.items())),
    )


class _CorpusWriter:
    """Writes files under a root and records each one in the manifest's tables."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modes: dict[str, str] = {}
        self.bad: dict[str, str] = {}
        self.hidden: list[str] = []
        self.ignored: list[str] = []
        self.orientation: dict[str, int] = {}
        self.reference: dict[str, tuple[int, int, int]] = {}
        self.paths: dict[str, Path] = {}

    def write(self, rel: str | bytes, data: bytes) -> str | None:
        """Write ``data`` at ``rel`` (``/``-separated; bytes for names that are not UTF-8) -> escaped rel path.

        Returns None when the file system refuses the name (e.g. macOS refuses non-UTF-8 bytes).
        """
        try:
            if isinstance(rel, bytes):
                path = Path(os.fsdecode(os.path.join(os.fsencode(self.root), *rel.split(b"/"))))
                text = os.fsdecode(rel)
            else:
                path = self.root.joinpath(*rel.split("/"))
                text = rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except (OSError, UnicodeError):
            return None
        key = escape_relpath(text)
        self.paths[key] = path
        return key

    def good(self, rel: str | bytes, data: bytes, mode: str, ref: tuple[int, int, int] | None = None) -> str | None:
        key = self.write(rel, data)
        if key is not None:
            self.modes[key] = mode
            if ref is not None:
                self.reference[key] = ref
        return key


def _write_odd_files(w: _CorpusWriter, names: list[str], seed: int, size: tuple[int, int]) -> None:
    width, height = size
    ref = (width, height, _sub_seed(seed, "odd/photo"))
    photo = make_photo(*ref)

    # EXIF orientations: the stored pixels are the upright photo transformed by the inverse of the orientation,
    # so ImageOps.exif_transpose(stored) recovers make_photo(*reference[rel]) up to JPEG noise (quality 95).
    for orientation, method in ORIENTATION_STORE.items():
        oref = (width, height, _sub_seed(seed, f"odd/orient_{orientation}"))
        upright = make_photo(*oref)
        stored = upright if method is None else upright.transpose(method)
        exif = Image.Exif()
        exif[_EXIF_ORIENTATION_TAG] = orientation
        key = w.good(f"odd/orient_{orientation}.jpg", _encode(stored, "JPEG", quality=95, exif=exif), "RGB", oref)
        assert key is not None
        w.orientation[key] = orientation

    gray = photo.convert("L")
    w.good("odd/gray.jpg", _encode(gray, "JPEG", quality=90), "L")
    w.good("odd/gray.png", _encode(gray, "PNG"), "L")
    w.good("odd/bilevel.png", _encode(photo.convert("1"), "PNG"), "1")

    # Real transparency: alpha falls from opaque (left) to 25 % (right), and an ellipse is fully transparent.
    fade = np.linspace(255, 64, width).round().astype(np.uint8)
    alpha = Image.fromarray(np.ascontiguousarray(np.broadcast_to(fade, (height, width))), "L")
    ImageDraw.Draw(alpha).ellipse((width * 0.55, height * 0.2, width * 0.85, height * 0.6), fill=0)
    rgba = photo.copy()
    rgba.putalpha(alpha)
    w.good("odd/rgba.png", _encode(rgba, "PNG"), "RGBA")
    la = gray.copy()
    la.putalpha(alpha)
    w.good("odd/gray_alpha.png", _encode(la, "PNG"), "LA")

    # Palette image: 255 quantised colours, index 255 (magenta) marks a transparent ellipse via tRNS.
    pal = photo.quantize(colors=255)
    palette = (pal.getpalette() or [])[: 255 * 3]
    palette += [0, 0, 0] * (255 - len(palette) // 3) + [255, 0, 255]
    pal.putpalette(palette)
    ImageDraw.Draw(pal).ellipse((width * 0.1, height * 0.55, width * 0.4, height * 0.9), fill=255)
    w.good("odd/palette_transparent.png", _encode(pal, "PNG", transparency=255), "P")

    # Animated GIF: three different photos, so "took the first frame" is checkable against the reference.
    gif_refs = [(width, height, _sub_seed(seed, f"odd/animated/{k}")) for k in range(3)]
    frames = [make_photo(*r) for r in gif_refs]
    gif = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=120, loop=0)
    w.good("odd/animated.gif", gif, "P", gif_refs[0])

    # High bit depth and float images carry the photo's luminance, spread over their whole range.
    lum = np.asarray(gray, dtype=np.float64)
    ramp = np.linspace(0.0, 1.0, width)[None, :]  # sub-level variation, so the low byte is not just a copy
    unit = lum + ramp
    unit = (unit - unit.min()) / (unit.max() - unit.min())
    w.good("odd/gray16.png", _encode(Image.fromarray(np.round(unit * 65535).astype(np.uint16)), "PNG"), "I;16")
    w.good("odd/float32.tif", _encode(Image.fromarray(unit.astype(np.float32)), "TIFF"), "F")
    w.good("odd/int32.tif", _encode(Image.fromarray(np.round(unit * 100_000).astype(np.int32)), "TIFF"), "I")

    # 16-bit RGB: Pillow cannot write it, so the PNG is built by hand. High byte = the photo, low byte = noise.
    rgb16 = np.asarray(photo, dtype=np.uint16) << 8
    rgb16 |= np.random.default_rng(_sub_seed(seed, "odd/rgb16")).integers(0, 256, rgb16.shape, dtype=np.uint16)
    w.good("odd/rgb16.png", _png_rgb16(rgb16), "RGB", ref)  # Pillow opens it as 8-bit RGB (the high bytes)

    w.good("odd/cmyk.jpg", _encode(photo.convert("CMYK"), "JPEG", quality=90), "CMYK", ref)
    w.good("odd/photo.webp", _encode(photo, "WEBP", quality=90), "RGB", ref)
    w.good("odd/photo.bmp", _encode(photo, "BMP"), "RGB", ref)
    w.good("odd/photo.tif", _encode(photo, "TIFF"), "RGB", ref)

    # Each file below gets its own photo, so a test can tell which file's pixels ended up where.
    def own_photo(rel: str) -> tuple[Image.Image, tuple[int, int, int]]:
        own = (width, height, _sub_seed(seed, rel))
        return make_photo(*own), own

    for rel in ("odd/UPPER.JPG", "odd/with spaces.jpg", "odd/café ñ 写真.jpg"):
        im, own = own_photo(rel)
        w.good(rel, _encode(im, "JPEG", quality=90), "RGB", own)
    im, own = own_photo("odd/non-utf8")
    w.good(b"odd/" + _NON_UTF8_NAME, _encode(im, "JPEG", quality=90), "RGB", own)  # skipped if the FS refuses
    im, own = own_photo("odd/corrupt_exif.jpg")
    w.good("odd/corrupt_exif.jpg", _encode(im, "JPEG", quality=90, exif=_CORRUPT_EXIF), "RGB", own)

    for rel in ("odd/readme.txt", "notes.md"):
        w.ignored.append(_must(w.write(rel, b"Sample corpus written by imgstore.samples; not an image.\n")))

    first = names[0]
    for rel in (f"{first}/.hidden.jpg", f"{first}/.thumbs/x.jpg"):
        w.hidden.append(_must(w.write(rel, _encode(own_photo(rel)[0], "JPEG", quality=90))))

    # Bad files, one per class folder in turn (a corrupt download sits among the good photos).
    big = _encode(make_photo(width, height, _sub_seed(seed, "bad/truncated")), "JPEG", quality=90)
    bad: list[tuple[str, bytes, str]] = [
        ("truncated.jpg", big[: len(big) * 6 // 10], "truncated"),
        ("empty.jpg", b"", "empty"),
        ("not_an_image.png", b"This is a text file with a .png name.\n", "not an image"),
        ("bomb.png", _png_bomb(*BOMB_SIZE), "decompression bomb"),
    ]
    for i, (name, data, reason) in enumerate(bad):
        w.bad[_must(w.write(f"{names[i % len(names)]}/{name}", data))] = reason


def _must(key: str | None) -> str:
    if key is None:
        raise OSError("could not write a sample file with an ordinary name")
    return key


# --------------------------------------------------------------------------------------------------------------
# The benchmark corpus


def write_jpeg_corpus(
    root: Path | str,
    *,
    count: int,
    size: tuple[int, int],
    classes: int = 10,
    seed: int = 0,
    quality: int = 90,
    workers: int = 1,
) -> list[Path]:
    """Write ``count`` RGB JPEGs of exactly ``size`` (width, height in pixels) and return their paths.

    File ``i`` is ``root/class_CC/img_IIIIII.jpg`` with ``CC = i % classes`` (so classes are filled evenly; a
    class gets no folder when ``count < classes``). Only a handful of base photos are drawn; each file is one of
    them rolled, maybe mirrored and tinted, which is cheap (2,000 x 500x375 in a few seconds; 100 x 4000x3000 in
    well under a minute). ``workers`` threads encode in parallel (Pillow releases the GIL while encoding);
    the output does not depend on it.

    A rerun with the same arguments reuses the files: a marker (``.imgstore-jpeg-corpus.json``) records the
    arguments, and every file must exist with the right size. Otherwise the corpus is rewritten, and stale
    ``class_*/img_*.jpg`` files from an earlier run are deleted (nothing else is touched).
    """
    _check_size(size, "size")
    _check_seed(seed)
    if count < 0:
        raise OptionError(f"count must be >= 0, got {count}")
    if classes < 1:
        raise OptionError(f"classes must be at least 1, got {classes}")
    if not 1 <= quality <= 100:
        raise OptionError(f"quality must be in 1..100, got {quality}")
    if workers < 1:
        raise OptionError(f"workers must be at least 1, got {workers}")
    root = Path(root)
    width, height = size
    digits = max(2, len(str(classes - 1)))
    paths = [root / f"class_{i % classes:0{digits}d}" / f"img_{i:06d}.jpg" for i in range(count)]
    marker = root / _JPEG_MARKER_NAME
    params = {
        "version": 1,
        "count": count,
        "size": [width, height],
        "classes": classes,
        "seed": seed,
        "quality": quality,
    }

    if _jpeg_corpus_is_current(marker, params, paths, size):
        return paths

    root.mkdir(parents=True, exist_ok=True)
    # Drop the marker first: a run interrupted from here on must not look complete to the next one.
    marker.unlink(missing_ok=True)
    _remove_stale_jpegs(root, set(paths))

    n_base = min(count, 6)
    bases = [make_photo(width, height, _sub_seed(seed, f"bench/base/{k}")) for k in range(n_base)]
    for folder in {p.parent for p in paths}:
        folder.mkdir(exist_ok=True)

    def write_one(i: int) -> None:
        rng = np.random.default_rng(_sub_seed(seed, f"bench/file/{i}"))
        im = ImageChops.offset(bases[i % n_base], int(rng.integers(0, width)), int(rng.integers(0, height)))
        if rng.random() < 0.5:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        gains, offsets = rng.uniform(0.85, 1.15, 3), rng.integers(-12, 13, 3)
        lut = [min(255, max(0, round(v * g + o))) for g, o in zip(gains, offsets, strict=True) for v in range(256)]
        im.point(lut).save(paths[i], "JPEG", quality=quality)

    if workers == 1:
        for i in range(count):
            write_one(i)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(write_one, range(count)))  # list() re-raises the first worker error
    marker.write_text(json.dumps(params, sort_keys=True) + "\n", encoding="utf-8")
    return paths


def _jpeg_corpus_is_current(marker: Path, params: dict, paths: Sequence[Path], size: tuple[int, int]) -> bool:
    try:
        if json.loads(marker.read_text(encoding="utf-8")) != params:
            return False
        for p in paths:
            with Image.open(p) as im:  # reads the header only
                if im.size != tuple(size) or im.format != "JPEG":
                    return False
    except (OSError, ValueError):
        return False
    return True


def _remove_stale_jpegs(root: Path, keep: set[Path]) -> None:
    for folder in root.iterdir():
        if not (folder.is_dir() and _JPEG_CORPUS_DIR.fullmatch(folder.name)):
            continue
        for f in folder.iterdir():
            if _JPEG_CORPUS_FILE.fullmatch(f.name) and f not in keep:
                f.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()


# --------------------------------------------------------------------------------------------------------------
# Encoding helpers


def _encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _png_rgb16(pixels: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (bit depth 16, colour type 2) of a (H, W, 3) uint16 array."""
    height, width, _ = pixels.shape
    rows = np.zeros((height, 1 + width * 6), dtype=np.uint8)  # column 0: filter type 0 (None) for every row
    rows[:, 1:] = pixels.astype(">u2").view(np.uint8).reshape(height, width * 6)
    return _png(width, height, 16, 2, zlib.compress(rows.tobytes(), 6))


def _png_bomb(width: int, height: int) -> bytes:
    """A valid, all-black 1-bit grayscale PNG of ``width`` x ``height``: tens of KB on disk.

    Written by hand and streamed through zlib a block of rows at a time, so it never holds the image in memory.
    """
    row = bytes(1 + (width + 7) // 8)  # filter byte 0 + packed bits, all zero
    comp = zlib.compressobj(9)
    block = row * 1000
    parts = [comp.compress(block) for _ in range(height // 1000)]
    parts.append(comp.compress(row * (height % 1000)))
    parts.append(comp.flush())
    return _png(width, height, 1, 0, b"".join(parts))


# --------------------------------------------------------------------------------------------------------------
# Seeds and checks


def _sub_seed(seed: int, key: str) -> int:
    """A seed for the part named ``key`` of a corpus with ``seed``: stable across runs (crc32, not ``hash``)."""
    return int(np.random.SeedSequence([seed, zlib.crc32(key.encode("utf-8"))]).generate_state(1)[0])


def _check_size(size: object, what: str) -> None:
    ok = (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in size)
    )
    if not ok:
        raise OptionError(f"{what} must be two positive integers (width, height), got {size!r}")


def _check_seed(seed: object) -> None:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise OptionError(f"seed must be an integer >= 0, got {seed!r}")


# --------------------------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    """``python -m imgstore.samples OUTDIR [--per-class N] [--seed S] [--classes C]``: write the sample corpus.

    Prints one line saying what was written where; returns the exit code (0, or 1 with ``Error: ...``).
    """
    parser = argparse.ArgumentParser(
        prog="python -m imgstore.samples",
        description="Write a generated sample photo corpus (class folders plus awkward and broken files).",
    )
    parser.add_argument("outdir", type=Path, help="folder to write into (created if missing)")
    parser.add_argument("--per-class", type=int, default=8, help="ordinary JPEGs per class folder (default 8)")
    parser.add_argument("--classes", type=int, default=3, help="number of class folders (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed, >= 0 (default 0)")
    args = parser.parse_args(argv)
    try:
        m = write_sample_corpus(args.outdir, classes=args.classes, per_class=args.per_class, seed=args.seed)
    except (OptionError, OSError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    total = len(m.good) + len(m.bad) + len(m.hidden) + len(m.ignored)
    print(
        f"Wrote {total} sample files to {m.root}: {len(m.good)} good images "
        f"({args.per_class} per class in {', '.join(m.classes)}; the rest in odd/), {len(m.bad)} bad, "
        f"{len(m.hidden)} hidden, {len(m.ignored)} non-images"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
