"""The fast paths: JPEGs through the Pillow decoder and the SIMD resize (imgstore.decoders.resize, path
``pillow+simd``), and plain PNGs through libspng (imgstore.decoders.fast, path ``spng``), held to Pillow's pixels on
photos with real texture, to Pillow's outcomes on what the PNG decoder hands back, and to the path counter."""

from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

import imgstore
from imgstore import decoders as registry
from imgstore.decoders import decode_bytes, last_path
from imgstore.decoders import resize as simd
from imgstore.decoders.fast import FastPngDecoder
from imgstore.decoders.geometry import Canvas, resize_plan
from imgstore.decoders.pillow import _ORIENT
from imgstore.errors import BadImageError, NotRecognised
from imgstore.ingest import ingest
from imgstore.options import FILTERS, DecodeOptions, IngestOptions

from conftest import encode, write

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import photo_corpus

MODES = ["crop", "pad", "stretch", "shorter", "longer", "none"]
PILLOW_ONLY = ("nearest", "hamming")  # filters the SIMD resizer does not have: Pillow resizes, path "pillow"


def mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference in grey levels."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Image.Image]:
    """Two crops of real photographs with sensor noise, decoded: an odd 301x203 and a 1601x1203 one."""
    pytest.importorskip("skimage")
    root = tmp_path_factory.mktemp("corpus")
    (small,) = photo_corpus.write_photo_corpus(root / "s", 1, size=(320, 240), aspects=("4:3",), seed=3, workers=1)
    (large,) = photo_corpus.write_photo_corpus(root / "l", 1, size=(1640, 1230), aspects=("4:3",), seed=4, workers=1)
    out = {}
    for name, path, size in (("small", small, (301, 203)), ("large", large, (1601, 1203))):
        with Image.open(path) as im:
            out[name] = im.convert("RGB").crop((0, 0, *size))  # odd sizes: partial MCUs and DCT-scaled edges
    return out


def jpeg(im: Image.Image, orientation: int = 1, grey: bool = False, **params: Any) -> bytes:
    """``im`` stored so that EXIF ``orientation`` turns it upright again (the stored pixels are the inverse turn)."""
    stored = im.convert("L") if grey else im
    if orientation != 1:
        inverse = {5: 5, 6: 8, 7: 7, 8: 6}.get(orientation, orientation)  # 2, 3, 4, 5, 7 are their own inverse
        stored = stored.transpose(_ORIENT[inverse])
        exif = Image.Exif()
        exif[0x0112] = orientation
        params["exif"] = exif.tobytes()
    params.setdefault("quality", 92)
    return encode(stored, "JPEG", **params)


def png_file(pixels: np.ndarray, depth: int = 8, interlace: bool = False) -> bytes:
    """A greyscale or RGB PNG written by hand: Pillow writes neither Adam7-interlaced nor 4-bit greyscale PNGs.
    ``depth`` 4 keeps the high nibble of greyscale ``pixels``."""
    colour = 2 if pixels.ndim == 3 else 0
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes if interlace else [(0, 0, 1, 1)]:
        sub = pixels[y0::dy, x0::dx]
        if depth == 4:
            nibbles = np.pad(sub >> 4, ((0, 0), (0, sub.shape[1] % 2)))
            sub = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]
        raw += b"".join(b"\x00" + row.tobytes() for row in sub.reshape(len(sub), -1) if sub.size)  # filter: none

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], depth, colour, 0, 0, int(interlace))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def options(mode: str, size: int, **kw: Any) -> DecodeOptions:
    return DecodeOptions(size=size if mode in ("shorter", "longer") else (size, size * 3 // 4), resize_mode=mode, **kw)


def decode(data: bytes, o: DecodeOptions) -> tuple[np.ndarray, str | None]:
    got = decode_bytes(data, o)
    return got.copy(), last_path()


def exact(data: bytes, o: DecodeOptions) -> np.ndarray:
    """Pillow's own pixels for ``o`` (exact=True): the reference every fast path is held to."""
    kw = {"size": o.size, "resize_mode": o.resize_mode, "channels": o.channels, "filter": o.filter}
    return decode_bytes(data, DecodeOptions(**kw, exact=True)).copy()


def without_simd(data: bytes, o: DecodeOptions) -> np.ndarray:
    """The pixels with the SIMD resizer unusable: Pillow's own resize of the same decode (and DCT scale)."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(simd, "_module", False)
        got, path = decode(data, o)
    assert path in ("pillow", "spng")
    return got


# -- JPEG: Pillow's decode + the SIMD resize --------------------------------------------------------------------
@pytest.mark.parametrize("filt", list(FILTERS))
@pytest.mark.parametrize("mode", MODES)
def test_jpeg_is_within_two_levels_of_pillow_exact(photos: dict[str, Image.Image], filt: str, mode: str) -> None:
    """Every filter x resize mode x EXIF orientation 1-8 x channels 1, 3 x colour and greyscale JPEG, on an odd-sized
    photo resized without DCT scaling: within 2 grey levels (mean) of Pillow's exact pixels, in the same shape, on
    the path the filter says. Orientation and geometry mistakes cost tens of grey levels on a photo."""
    worst = 0.0
    for orientation in range(1, 9):
        for grey in (False, True):
            data = jpeg(photos["small"], orientation, grey)
            for channels in (1, 3):
                o = options(mode, 160, filter=filt, channels=channels)
                got, path = decode(data, o)
                assert path == ("pillow" if filt in PILLOW_ONLY or mode == "none" else "pillow+simd"), orientation
                assert got.shape[2] == channels
                error = mad(got, exact(data, o))
                assert error <= 2.0, (orientation, grey, channels, error)
                worst = max(worst, error)
    if path == "pillow+simd":  # the comparison is a real one: SIMD's pixels are not Pillow's bytes
        assert worst > 0.0
    else:  # Pillow resized, the same source pixels (no DCT scaling, no reduce): Pillow's exact bytes
        assert worst == 0.0


@pytest.mark.parametrize("filt", list(FILTERS))
@pytest.mark.parametrize("mode", ["crop", "pad", "stretch", "shorter", "longer"])
def test_large_jpeg_takes_the_eighth_dct_scale(
    photos: dict[str, Image.Image], filt: str, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1601x1203 photo to about 100 pixels is decoded at libjpeg's 1/8 scale (201x151), upright and turned (6);
    the SIMD resize of it stays within 0.5 grey levels of Pillow's own resize of the same draft (the path without
    cykooz; 0.03-0.22 measured), and within 1 of Pillow's exact pixels (0.3-0.9) but for nearest (2.5-3.0, which
    samples other pixels of the smaller decode)."""
    drafted: list[tuple[int, int]] = []
    real = JpegImagePlugin.JpegImageFile.draft

    def spy(self: Image.Image, *args: Any) -> Any:
        result = real(self, *args)
        drafted.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    for orientation in (1, 6):
        data = jpeg(photos["large"], orientation)
        o = options(mode, 100, filter=filt)
        drafted.clear()
        got, path = decode(data, o)
        stored = (201, 151) if orientation == 1 else (151, 201)
        assert path == ("pillow" if filt in PILLOW_ONLY else "pillow+simd") and drafted == [stored]
        pillow = without_simd(data, o)
        assert drafted == [stored] * 2 and mad(got, pillow) <= (0.0 if filt in PILLOW_ONLY else 0.5)
        assert mad(got, exact(data, o)) <= (3.5 if filt == "nearest" else 1.0)


@pytest.mark.parametrize("subsampling", [0, 1, 2])  # 4:4:4, 4:2:2, 4:2:0
@pytest.mark.parametrize("progressive", [False, True])
def test_subsampling_and_progressive(photos: dict[str, Image.Image], subsampling: int, progressive: bool) -> None:
    """4:2:0, 4:2:2 and 4:4:4, baseline and progressive, upright and turned: the same decode as exact=True (under
    none, identical) and the SIMD resize within 0.5 of exact."""
    for orientation in (1, 8):
        data = jpeg(photos["small"], orientation, subsampling=subsampling, progressive=progressive)
        for channels in (1, 3):
            o = options("crop", 160, filter="bilinear", channels=channels)
            got, path = decode(data, o)
            assert path == "pillow+simd" and 0.0 < mad(got, exact(data, o)) <= 0.5
            none = DecodeOptions(resize_mode="none", channels=channels)
            np.testing.assert_array_equal(decode(data, none)[0], exact(data, none))


def test_none_gives_pillows_decode_exactly(photos: dict[str, Image.Image]) -> None:
    """Under none (no resize) every orientation gives Pillow's exact pixels, turned upright (not the stored ones)."""
    for orientation in range(1, 9):
        data = jpeg(photos["small"], orientation, subsampling=2)
        got, path = decode(data, DecodeOptions(resize_mode="none"))
        assert path == "pillow" and got.shape == (203, 301, 3)
        np.testing.assert_array_equal(got, exact(data, DecodeOptions(resize_mode="none")))
        assert mad(got, np.asarray(photos["small"])) <= 3.0  # upright: a wrong turn could not even match the shape


@pytest.mark.parametrize("size", [(1, 1), (17, 9), (9, 17), (63, 65)])
def test_odd_tiny_sizes(photos: dict[str, Image.Image], size: tuple[int, int]) -> None:
    """Tiny odd sizes, enlarged by stretch, crop and pad (63x65 -> 29x30 is DCT-scaled to 1/2, which alone puts it
    3-4 levels from exact): the same shapes, within 0.5 of Pillow's own resize of the same decode and 4 of exact."""
    data = jpeg(photos["small"].resize(size, Image.Resampling.LANCZOS), 6)
    for mode in ("stretch", "crop", "pad"):
        o = DecodeOptions(size=(40, 30), resize_mode=mode, filter="bicubic")
        got, path = decode(data, o)
        assert path == "pillow+simd" and mad(got, without_simd(data, o)) <= 0.5
        assert mad(got, exact(data, o)) <= (2.0 if size != (63, 65) else 4.0), mode


def test_variable_modes_fill_a_canvas(photos: dict[str, Image.Image]) -> None:
    """Under shorter and longer both fast paths write into the Canvas they are given, at the planned size."""
    cases = [
        (jpeg(photos["small"], 6), "shorter", 160, "pillow+simd", (160, 237, 3)),
        (encode(photos["small"], "PNG"), "longer", 100, "spng", (67, 100, 3)),
    ]
    for data, mode, size, want_path, shape in cases:
        canvas = Canvas()
        got = decode_bytes(data, DecodeOptions(size=size, resize_mode=mode), canvas)
        assert last_path() == want_path and got.shape == shape and canvas.shape == shape
        assert 0.0 < mad(got, exact(data, DecodeOptions(size=size, resize_mode=mode))) <= 0.5


def test_path_counter_names_the_path(photos: dict[str, Image.Image]) -> None:
    """JPEG: pillow+simd for the SIMD filters, pillow for nearest, hamming and exact; a plain PNG: spng for every
    filter, pillow with exact."""
    data, png = jpeg(photos["small"]), encode(photos["small"], "PNG")
    for filt in FILTERS:
        decode_bytes(data, DecodeOptions(size=(64, 48), filter=filt))
        assert last_path() == ("pillow" if filt in PILLOW_ONLY else "pillow+simd"), filt
        decode_bytes(png, DecodeOptions(size=(64, 48), filter=filt))
        assert last_path() == "spng", filt
        for payload in (data, png):
            decode_bytes(payload, DecodeOptions(size=(64, 48), filter=filt, exact=True))
            assert last_path() == "pillow", filt


def test_without_cykooz_everything_is_pillows_resize(
    photos: dict[str, Image.Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the SIMD package unimportable, JPEGs (path pillow) and PNGs (path spng) are byte for byte Pillow's own
    resize with reducing_gap=3.0 -- which on a 1601x1203 PNG to 64x48 is not exact=True's resize."""
    monkeypatch.setattr(simd, "_module", None)
    monkeypatch.setitem(sys.modules, "cykooz_resizer", None)
    assert simd.preload() is False
    cases = [
        (jpeg(photos["small"], 6), photos["small"], 160, "pillow"),
        (encode(photos["large"], "PNG"), photos["large"], 64, "spng"),
    ]
    for data, upright, size, want_path in cases:
        for filt in ("bilinear", "lanczos", "box"):
            o = options("crop", size, filter=filt)
            got, path = decode(data, o)
            plan = resize_plan(upright.size, o.size, o.resize_mode)
            with Image.open(io.BytesIO(data)) as im:
                im = im.transpose(_ORIENT[6]) if want_path == "pillow" else im
                want = im.resize(plan.size, FILTERS[filt], box=plan.box, reducing_gap=3.0)
            assert path == want_path
            np.testing.assert_array_equal(got, np.asarray(want))
            if size == 64:
                assert mad(got, exact(data, o)) > 0.0  # reducing_gap made a difference: the reference is real


def test_reducing_gap_keeps_pillows_reduce(photos: dict[str, Image.Image], monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1601x1203 image to 32x24 is box-reduced by Image.reduce first (16x here), as reducing_gap=3 does, then
    convolved: within 0.5 of Pillow's own reducing_gap resize."""
    reduced: list[tuple[int, int]] = []
    real = Image.Image.reduce

    def spy(self: Image.Image, factor: Any, box: Any = None) -> Image.Image:
        reduced.append(factor)
        return real(self, factor, box)

    monkeypatch.setattr(Image.Image, "reduce", spy)
    im = photos["large"]
    got, simd_used = simd.resize_image(im, (32, 24), "bicubic", (0.0, 0.0, 1601.0, 1203.0))
    assert simd_used and reduced == [(16, 16)]
    monkeypatch.undo()
    pil = im.resize((32, 24), Image.Resampling.BICUBIC, reducing_gap=3.0)
    assert 0.0 < mad(np.asarray(got), np.asarray(pil)) <= 0.5


# -- PNG: libspng + the SIMD resize (FastPngDecoder, path spng) -------------------------------------------------
GREY = ("grey", "interlaced-grey")


def ihdr(data: bytes) -> tuple[int, int, int]:
    """(bit depth, colour type, interlace) of a PNG."""
    return struct.unpack_from(">BBxxB", data, 24)


@pytest.fixture(scope="module")
def pngs(photos: dict[str, Image.Image]) -> dict[str, bytes]:
    """Plain 8-bit PNGs of real texture, for the spng path; each checked to be the kind of file it is named for."""
    small = photos["small"]
    out = {
        "rgb": encode(small, "PNG"),
        "grey": encode(small.convert("L"), "PNG"),
        "palette": encode(small.quantize(256), "PNG"),
        "interlaced-rgb": png_file(np.asarray(small), interlace=True),
        "interlaced-grey": png_file(np.asarray(small.convert("L")), interlace=True),
        "tiny": encode(small.resize((32, 32), Image.Resampling.LANCZOS), "PNG"),
        "large": encode(photos["large"], "PNG"),
    }
    kinds = {"rgb": (8, 2, 0), "grey": (8, 0, 0), "palette": (8, 3, 0), "interlaced-rgb": (8, 2, 1),
             "interlaced-grey": (8, 0, 1), "tiny": (8, 2, 0), "large": (8, 2, 0)}  # fmt: skip
    assert {name: ihdr(data) for name, data in out.items()} == kinds
    assert all(b"tRNS" not in data and b"eXIf" not in data for data in out.values())
    with Image.open(io.BytesIO(out["interlaced-rgb"])) as im:  # the hand-written Adam7 file is the photo
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), np.asarray(small))
    return out


@pytest.mark.parametrize("mode", MODES)
def test_png_resize_is_within_half_a_level_of_exact(pngs: dict[str, bytes], mode: str) -> None:
    """Every plain kind (tiny 32x32 -> 16, 1601x1203 -> 256, the 301x203 ones -> 160) x resize mode x SIMD filter x
    channels (1 for greyscale PNGs only): path spng, within 0.5 grey levels (mean) of Pillow's exact pixels; under
    none (libspng's pixels before any resize) identical. exact=True never takes the spng path."""
    for kind in pngs:
        size = {"tiny": 16, "large": 256}.get(kind, 160)
        for filt in simd.SIMD_FILTERS:
            for channels in (1, 3) if kind in GREY else (3,):
                o = options(mode, size, filter=filt, channels=channels)
                got, path = decode(pngs[kind], o)
                assert path == "spng", (kind, filt)
                error = mad(got, exact(pngs[kind], o))
                assert last_path() == "pillow"
                assert error == 0.0 if mode == "none" else 0.0 < error <= 0.5, (kind, filt, channels, error)


def handed_back(photos: dict[str, Image.Image]) -> dict[str, tuple[bytes, int]]:
    """PNGs the spng decoder hands to Pillow, with the channels asked for."""
    small = photos["small"]
    rgba = small.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(small.size))
    grey = np.asarray(small.convert("L"))
    return {
        "16-bit": (encode(Image.fromarray(grey.astype(np.uint16) * 257), "PNG"), 3),
        "rgba": (encode(rgba, "PNG"), 3),
        "la": (encode(rgba.convert("LA"), "PNG"), 1),
        "palette-trns": (encode(small.quantize(256), "PNG", transparency=0), 3),
        "rgb-trns": (encode(small, "PNG", transparency=small.getpixel((0, 0))), 3),
        "1-bit": (encode(small.convert("1"), "PNG"), 1),
        "4-bit": (png_file(grey, depth=4), 1),
        "rgb-as-grey": (encode(small, "PNG"), 1),
    }


@pytest.mark.parametrize("kind", ["16-bit", "rgba", "la", "palette-trns", "rgb-trns", "1-bit", "4-bit", "rgb-as-grey"])
def test_pngs_spng_does_not_take_are_pillows(photos: dict[str, Image.Image], kind: str) -> None:
    """16-bit, alpha, tRNS, 1- and 4-bit PNGs, and channels=1 of an RGB PNG: the spng decoder says
    NotRecognised(""); Pillow decodes them (none: exact's bytes; crop: pillow+simd within 0.5 of exact)."""
    data, channels = handed_back(photos)[kind]
    depth, colour, _ = ihdr(data)
    assert depth != 8 or colour in (4, 6) or b"tRNS" in data or kind == "rgb-as-grey"
    with pytest.raises(NotRecognised) as caught:
        FastPngDecoder().decode(data, DecodeOptions(channels=channels), np.empty((256, 256, channels), np.uint8))
    assert caught.value.reason == ""
    none = DecodeOptions(resize_mode="none", channels=channels)
    got, path = decode(data, none)
    assert path == "pillow" and got.shape == (203, 301, channels)
    np.testing.assert_array_equal(got, exact(data, none))
    o = options("crop", 160, filter="bilinear", channels=channels)
    got, path = decode(data, o)
    assert path == "pillow+simd" and 0.0 < mad(got, exact(data, o)) <= 0.5


def test_png_exif_orientation_goes_to_pillow(photos: dict[str, Image.Image]) -> None:
    """A PNG with an eXIf chunk saying orientation 6: Pillow turns it upright (under none, the photo itself), and
    the resized pixels are within 2 levels of the exact path's."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(photos["small"].transpose(_ORIENT[8]), "PNG", exif=exif.tobytes())
    assert b"eXIf" in data
    got, path = decode(data, DecodeOptions(resize_mode="none"))
    assert path == "pillow"
    np.testing.assert_array_equal(got, np.asarray(photos["small"]))
    o = options("pad", 160, filter="lanczos")
    got, path = decode(data, o)
    assert path == "pillow+simd" and mad(got, exact(data, o)) <= 2.0


def outcome(data: bytes, **kw: Any) -> tuple[str, str | None]:
    try:
        decode_bytes(data, DecodeOptions(size=(64, 48), **kw))
        return "ok", None
    except BadImageError as exc:
        return "bad", exc.reason


def _damaged(data: bytes, damage: str) -> bytes:
    """``data`` (a PNG) cut in half, or with garbage in the middle of its first IDAT (its CRC left wrong, or made
    right so only the compressed data is bad), or only the zlib stream's Adler-32 (the last IDAT's last 4 bytes)
    wrong, its CRC made right."""
    if damage == "truncated":
        return data[: len(data) // 2]
    at = data.rindex(b"IDAT") if damage == "adler32" else data.index(b"IDAT")
    end = at + 4 + struct.unpack(">I", data[at - 4 : at])[0]
    body = bytearray(data[at + 4 : end])
    if damage == "adler32":
        body[-4:] = bytes(a ^ 0xFF for a in body[-4:])
    else:
        body[len(body) // 2 : len(body) // 2 + 64] = bytes(range(64))
    crc = data[end : end + 4] if damage == "idat" else struct.pack(">I", zlib.crc32(b"IDAT" + body))
    return data[: at + 4] + bytes(body) + crc + data[end + 4 :]


@pytest.mark.parametrize("damage", ["truncated", "idat", "idat-and-crc"])
def test_damaged_png_gives_pillows_reason(pngs: dict[str, bytes], damage: str) -> None:
    """A PNG cut in half, or with garbage in its IDAT (CRC wrong, or made right): skipped with exact=True's reason."""
    bad = _damaged(pngs["rgb"], damage)
    want = outcome(bad, exact=True)
    assert want[0] == "bad", want
    assert outcome(bad) == want


def test_a_wrong_adler32_alone_is_stored_with_its_intact_pixels(pngs: dict[str, bytes]) -> None:
    """libspng checks every chunk's CRC but not the zlib stream's Adler-32 trailer, which Pillow does: a PNG whose
    only fault is that trailer (its chunks' CRCs right, so no byte of the pixel data changed) is stored, with the
    very pixels of the intact file, where exact=True skips it. Checking the trailer would cost a second inflate
    (19 us on a 32x32 PNG, against 29 for the whole decode). Documented in imgstore/decoders/fast.py."""
    bad = _damaged(pngs["rgb"], "adler32")
    assert outcome(bad, exact=True)[0] == "bad"
    o = DecodeOptions(size=(64, 48), resize_mode="none")
    got, path = decode(bad, o)
    want, _ = decode(pngs["rgb"], o)
    assert path == "spng" and np.array_equal(got, want)


def test_ingest_of_pngs_and_jpegs_with_0_and_2_workers(
    photos: dict[str, Image.Image], pngs: dict[str, bytes], tmp_path: Path
) -> None:
    """A folder of 8 photo JPEGs, 4 plain PNGs, 2 PNGs spng hands back and a truncated PNG: --workers 0 and 2 store
    the same pixels, count the paths the same (spng 4, pillow+simd 10) and skip the cut PNG with Pillow's reason."""
    src = tmp_path / "src"
    assert len(photo_corpus.write_photo_corpus(src / "photos", 8, size=(200, 150), classes=2, seed=7, workers=1)) == 8
    plain = {name: pngs[name] for name in ("rgb", "grey", "palette", "interlaced-rgb")}
    others = {name: handed_back(photos)[name][0] for name in ("rgba", "16-bit")}  # fmt: skip
    for name, data in {**plain, **others, "cut": plain["rgb"][:3000]}.items():
        write(src / "png" / f"{name}.png", data)
    o = DecodeOptions(size=(64, 48), filter="bilinear")
    stores = []
    for workers in (0, 2):
        report = ingest(src, tmp_path / f"w{workers}.h5", IngestOptions(decode=o, workers=workers))
        assert report.paths == {"spng": 4, "pillow+simd": 10}, workers
        assert report.skipped == [("png/cut.png", outcome(plain["rgb"][:3000], exact=True)[1])]
        with imgstore.open(tmp_path / f"w{workers}.h5") as store:
            stores.append({name: np.asarray(store[i]) for i, name in enumerate(store.names)})
    assert list(stores[0]) == list(stores[1]) and len(stores[0]) == 14
    for name, row in stores[0].items():
        np.testing.assert_array_equal(row, stores[1][name])
    for name, data in plain.items():
        assert mad(stores[0][f"png/{name}.png"], exact(data, o)) <= 0.5


def test_without_spng_pngs_go_through_pillow_simd(pngs: dict[str, bytes]) -> None:
    """With the spng decoder unregistered, plain PNGs are the Pillow decoder's (pillow+simd), within 0.5 grey
    levels of the spng path's pixels; registering it again restores the spng path."""
    o = options("crop", 160, filter="lanczos")
    fast = {kind: decode(pngs[kind], o) for kind in ("rgb", "palette", "interlaced-rgb")}
    registry.unregister_decoder("spng")
    try:
        assert "spng" not in [d.name for d in registry.decoders()]
        for kind, (want, path) in fast.items():
            got, pillow_path = decode(pngs[kind], o)
            assert (path, pillow_path) == ("spng", "pillow+simd") and mad(got, want) <= 0.5
    finally:
        registry.register_decoder(FastPngDecoder(), first=True)
    assert registry.decoders()[0].name == "spng" and decode(pngs["rgb"], o)[1] == "spng"
