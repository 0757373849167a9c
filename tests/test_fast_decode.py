"""The fast paths (issue 13): the fast JPEG decoder (imgstore.decoders.fast) and the SIMD resize
(imgstore.decoders.resize), held to Pillow's pixels on photos with real texture, Pillow's outcomes on what they
hand back, and the path counter."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import imgstore
from imgstore import decoders as registry
from imgstore.decoders import decode_bytes, last_path
from imgstore.decoders import fast as fast_mod
from imgstore.decoders import resize as simd
from imgstore.decoders.geometry import Canvas, orient, stored_plan
from imgstore.decoders.pillow import _ORIENT, PillowDecoder, load_plugins
from imgstore.errors import BadImageError
from imgstore.ingest import ingest
from imgstore.options import FILTERS, DecodeOptions, IngestOptions

from conftest import encode, write

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import photo_corpus

MODES = ["crop", "pad", "stretch", "shorter", "longer", "none"]
PILLOW = [PillowDecoder()]


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
    assert out["small"].size == (301, 203) and out["large"].size == (1601, 1203)
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


def options(mode: str, size: int | tuple[int, int], **kw: Any) -> DecodeOptions:
    return DecodeOptions(size=size if mode in ("shorter", "longer") else (size, size * 3 // 4), resize_mode=mode, **kw)


def decode(data: bytes, o: DecodeOptions, chain: list[Any] | None = None) -> tuple[np.ndarray, str | None]:
    got = decode_bytes(data, o, chain=chain)
    return got.copy(), last_path()


def exact_of(o: DecodeOptions) -> DecodeOptions:
    return DecodeOptions(size=o.size, resize_mode=o.resize_mode, channels=o.channels, filter=o.filter, exact=True)


def check_close(data: bytes, o: DecodeOptions, got: np.ndarray, to_pillow: float = 1.0) -> float:
    """Assert ``got`` (``data`` decoded under ``o``) is within ``to_pillow`` grey levels (mean) of the Pillow
    decoder's non-exact path (the same DCT scale) and within 2 of Pillow's exact pixels, or, when the DCT scaling
    both share is itself further than that from exact, within 0.5 of that error; return the distance to exact.

    Pillow's own draft (DRAFT_GAP = 1.0) is 2.9-3.3 grey levels from exact on these noisy photos at 2.2-4.7x
    reductions (a 1/2 or 1/4 DCT scale followed by a resize of under 2x): that is the decoder's choice, measured
    here, not the fast path's error."""
    pillow = decode(data, o, PILLOW)[0]
    exact = decode(data, exact_of(o))[0]
    assert mad(got, pillow) <= to_pillow, mad(got, pillow)
    error = mad(got, exact)
    assert error <= max(2.0, mad(pillow, exact) + 0.5), (error, mad(pillow, exact))
    return error


# -- accuracy -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("filt", list(FILTERS))
@pytest.mark.parametrize("mode", MODES)
def test_fast_path_is_within_two_levels_of_pillow_exact(photos: dict[str, Image.Image], filt: str, mode: str) -> None:
    """Every filter x resize mode x EXIF orientation 1-8 x channels 1, 3 x colour and greyscale JPEG, on an odd-sized
    photo resized without DCT scaling (no draft error on either side): the fast decoder takes every one, within
    2 grey levels (mean) of Pillow's exact pixels and 1 of the Pillow decoder's own non-exact ones, in the same
    shape. Orientation and geometry mistakes cost tens of grey levels on a photo, so they cannot pass."""
    worst = 0.0
    for orientation in range(1, 9):
        for grey in (False, True):
            data = jpeg(photos["small"], orientation, grey)
            for channels in (1, 3):
                o = options(mode, 160, filter=filt, channels=channels)
                got, path = decode(data, o)
                assert path == "fast", (orientation, grey, channels)
                exact, _ = decode(data, exact_of(o))
                pillow, _ = decode(data, o, PILLOW)
                assert got.shape[2] == channels
                assert mad(got, exact) <= 2.0, (orientation, grey, channels, mad(got, exact))
                assert mad(got, pillow) <= 1.0, (orientation, grey, channels, mad(got, pillow))
                worst = max(worst, mad(got, exact))
    if filt == "nearest" or mode == "none":
        return
    # the comparison is a real one: the resize changed the pixels, and the fast path is not Pillow's exact bytes
    assert worst > 0.0


@pytest.mark.parametrize("filt", list(FILTERS))
@pytest.mark.parametrize("mode", ["crop", "pad", "stretch", "shorter", "longer"])
def test_large_jpeg_takes_the_eighth_dct_scale(
    photos: dict[str, Image.Image], filt: str, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1601x1203 photo to about 100 pixels is decoded at libjpeg's 1/8 scale (201x151), in orientations 1 and 6;
    it stays within 1 grey level of the Pillow decoder's non-exact path (the same draft), and within 2 of Pillow's
    exact pixels for every filter but box and nearest: those two are 3-8 levels from exact under any DCT scaling,
    the Pillow decoder's own draft included (measured, and asserted here so a change shows)."""
    shapes: list[tuple[int, ...]] = []
    real = fast_mod.sj.decode_jpeg

    def spy(*args: Any, **kwargs: Any) -> np.ndarray:
        arr = real(*args, **kwargs)
        shapes.append(arr.shape[:2])
        return arr

    monkeypatch.setattr(fast_mod.sj, "decode_jpeg", spy)
    for orientation in (1, 6):
        data = jpeg(photos["large"], orientation)
        o = options(mode, 100, filter=filt)
        shapes.clear()
        got, path = decode(data, o)
        assert path == "fast" and shapes == [(151, 201) if orientation == 1 else (201, 151)]
        check_close(data, o, got)


@pytest.mark.parametrize("subsampling", [0, 1, 2])  # 4:4:4, 4:2:2, 4:2:0
@pytest.mark.parametrize("progressive", [False, True])
def test_subsampling_and_progressive(photos: dict[str, Image.Image], subsampling: int, progressive: bool) -> None:
    """4:2:0, 4:2:2 and 4:4:4, baseline and progressive, upright and turned, at full and half DCT scale: the fast
    decoder's upsampling matches Pillow's libjpeg (identical decode: within 0.5 of Pillow's non-exact path)."""
    for orientation in (1, 8):
        data = jpeg(photos["small"], orientation, subsampling=subsampling, progressive=progressive)
        for size in (160, 64):
            for channels in (1, 3):
                o = options("crop", size, filter="bilinear", channels=channels)
                got, path = decode(data, o)
                assert path == "fast"
                check_close(data, o, got, to_pillow=0.5)


def test_none_gives_pillows_decode_exactly(photos: dict[str, Image.Image]) -> None:
    """Under none (no resize) the fast decoder's pixels are libjpeg-turbo's, the same as Pillow's decode, turned."""
    for orientation in range(1, 9):
        data = jpeg(photos["small"], orientation, subsampling=2)
        got, path = decode(data, DecodeOptions(resize_mode="none"))
        assert path == "fast"
        np.testing.assert_array_equal(got, decode(data, DecodeOptions(resize_mode="none", exact=True))[0])


@pytest.mark.parametrize("size", [(1, 1), (17, 9), (9, 17), (63, 65)])
def test_odd_tiny_sizes(photos: dict[str, Image.Image], size: tuple[int, int]) -> None:
    """Tiny odd sizes, enlarged by stretch and crop: the same shapes and pixels within 2 levels of exact."""
    data = jpeg(photos["small"].resize(size, Image.Resampling.LANCZOS), 6)
    for mode in ("stretch", "crop", "pad"):
        o = DecodeOptions(size=(40, 30), resize_mode=mode, filter="bicubic")
        got, path = decode(data, o)
        assert path == "fast"
        check_close(data, o, got)


def test_variable_modes_fill_a_canvas(photos: dict[str, Image.Image]) -> None:
    """Under shorter the fast decoder writes into the Canvas it is given, at the planned size."""
    canvas = Canvas()
    data = jpeg(photos["small"], 6)
    got = decode_bytes(data, DecodeOptions(size=100, resize_mode="shorter"), canvas)
    assert last_path() == "fast" and got.shape == (100, 148, 3) and canvas.shape == (100, 148, 3)


def test_mpo_decodes_frame_0(photos: dict[str, Image.Image]) -> None:
    """An MPO (two JPEG frames) is decoded as its first frame, as Pillow reads it."""
    first = photos["small"]
    second = first.transpose(Image.Transpose.ROTATE_180)
    buf = io.BytesIO()
    first.save(buf, "MPO", save_all=True, append_images=[second], quality=92)
    data = buf.getvalue()
    assert Image.open(io.BytesIO(data)).format == "MPO"
    o = DecodeOptions(size=(120, 90), filter="lanczos")
    got, path = decode(data, o)
    assert path == "fast"
    check_close(data, o, got)
    assert mad(got, decode(data, o, PILLOW)[0]) <= 1.0
    flipped = decode(encode(second, "JPEG", quality=92), o)[0]
    assert mad(got, flipped) > 10  # frame 1 would be far off


# -- what the fast decoder hands back -------------------------------------------------------------------------
def outcome(data: bytes, **kw: Any) -> tuple[str, str | None, Any]:
    try:
        return "ok", None, decode_bytes(data, DecodeOptions(size=(64, 48), **kw)).copy()
    except BadImageError as exc:
        return "bad", exc.reason, None


def test_cmyk_jpeg_goes_to_pillow(photos: dict[str, Image.Image]) -> None:
    """A CMYK JPEG is Pillow's (ICC-aware conversion): path pillow+simd, pixels within 1 level of exact."""
    data = encode(photos["small"].convert("CMYK"), "JPEG", quality=92)
    with pytest.raises(BadImageError):  # the fast decoder itself refuses it (NotRecognised is a BadImageError)
        fast_mod.FastJpegDecoder().decode(data, DecodeOptions(), np.empty((256, 256, 3), np.uint8))
    kind, _, got = outcome(data)
    assert kind == "ok" and last_path() == "pillow+simd"
    check_close(data, DecodeOptions(size=(64, 48)), got, to_pillow=0.0)  # it is the Pillow decoder's output


def test_truncated_jpeg_gives_pillows_reason(photos: dict[str, Image.Image]) -> None:
    """A JPEG cut in half is skipped as 'truncated JPEG', as with exact=True."""
    data = jpeg(photos["small"])
    cut = data[: len(data) // 2]
    assert outcome(cut) == outcome(cut, exact=True) == ("bad", "truncated JPEG", None)


def test_corrupt_entropy_data_goes_to_pillow(photos: dict[str, Image.Image]) -> None:
    """Restart markers where none belong in the entropy-coded data: simplejpeg (strict) refuses the file, so the
    Pillow decoder reads it and the outcome and pixels are Pillow's own (exact=True's, resized by SIMD)."""
    data = jpeg(photos["small"])
    sos = data.index(b"\xff\xda")
    bad = data[: sos + 2000] + b"\xff\xd3" + data[sos + 2000 :]
    with pytest.raises(ValueError):
        fast_mod.sj.decode_jpeg(bad, strict=True)
    kind, reason, got = outcome(bad)
    assert last_path() == "pillow+simd"
    exact = outcome(bad, exact=True)
    assert (kind, reason) == exact[:2]
    if kind == "ok":
        assert mad(got, exact[2]) <= 1.0
    # the same corruption at 1/8 scale would otherwise hide: it is still handed back
    assert decode_bytes(bad, DecodeOptions(size=(16, 12))) is not None and last_path() == "pillow+simd"


@pytest.mark.parametrize("kind", ["12-bit", "lossless", "arithmetic"])
def test_frames_it_does_not_decode_go_to_pillow(photos: dict[str, Image.Image], kind: str) -> None:
    """A 12-bit, lossless (SOF3) or arithmetic-coded (SOF9) frame header: the marker walk refuses it and the
    outcome (pixels or skip reason) is the rest of the chain's, as with exact=True."""
    data = bytearray(jpeg(photos["small"]))
    sof = data.index(b"\xff\xc0")
    if kind == "12-bit":
        data[sof + 4] = 12
    else:
        data[sof + 1] = 0xC3 if kind == "lossless" else 0xC9
    data = bytes(data)
    assert fast_mod.scan_markers(data) == 0
    kind_, reason, _ = outcome(data)
    assert last_path() != "fast"  # Pillow (or, when Pillow cannot read the header either, imageio) decided
    assert (kind_, reason) == outcome(data, exact=True)[:2]


def test_broken_exif_counts_as_upright(photos: dict[str, Image.Image]) -> None:
    """An Exif block of garbage, or an IFD running off its end: upright, as the Pillow decoder reads it."""
    good = jpeg(photos["small"])
    for tiff in (b"II*\x00\xff\xff\xff\x7f" + b"\x00" * 40, b"MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12"):
        app1 = b"Exif\x00\x00" + tiff
        data = good[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + good[2:]
        assert fast_mod.scan_markers(data) == 1
        o = DecodeOptions(size=(64, 48))
        got, path = decode(data, o)
        assert path == "fast"
        np.testing.assert_array_equal(got, decode(good, o)[0])
        assert mad(got, decode(data, o, PILLOW)[0]) <= 1.0


def test_xmp_orientation_counts_when_exif_has_none(photos: dict[str, Image.Image]) -> None:
    """As Pillow's getexif: without an EXIF orientation, XMP's tiff:Orientation turns the image; with one, EXIF
    wins. The fast pixels stay as close to Pillow's as check_close asks and within 3 levels of the upright photo
    resized (a wrong turn is tens of levels off)."""
    small = photos["small"]
    stored = small.transpose(_ORIENT[8])  # orientation 6 turns it back
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    exif = Image.Exif()
    exif[0x0112] = 1
    cases = [
        (encode(stored, "JPEG", quality=92, xmp=xmp), 6),
        (encode(small, "JPEG", quality=92, xmp=xmp, exif=exif.tobytes()), 1),
    ]
    for data, want in cases:
        assert fast_mod.scan_markers(data) == want
        o = DecodeOptions(size=(120, 90), resize_mode="stretch")
        got, path = decode(data, o)
        assert path == "fast"
        check_close(data, o, got)
        assert mad(got, np.asarray(small.resize((120, 90), Image.Resampling.BICUBIC))) <= 3.0


def test_exif_orientation_parser_reads_both_byte_orders() -> None:
    """SHORT and LONG values in Intel and Motorola order; 0 and 9 are out of range (upright)."""
    for endian, magic in (("<", b"II*\x00"), (">", b"MM\x00*")):
        for kind, value, fmt in ((3, 6, "H2x"), (4, 8, "I"), (3, 9, "H2x"), (3, 0, "H2x")):
            entry = struct.pack(endian + "HHI" + fmt, 0x0112, kind, 1, value)
            tiff = magic + struct.pack(endian + "I", 8) + struct.pack(endian + "H", 1) + entry
            assert fast_mod.exif_orientation(tiff) == (value if 1 <= value <= 8 else 1)


def test_geometry_orient_matches_pillow_transposes() -> None:
    """orient() and stored_plan() agree with Pillow's transposes: resizing the stored box then turning it is
    cropping the upright image."""
    from imgstore.decoders.geometry import ResizePlan

    a = np.random.default_rng(0).integers(0, 256, (7, 11, 3), np.uint8)
    for o in range(1, 9):
        up = np.asarray(Image.fromarray(a).transpose(_ORIENT[o])) if o > 1 else a
        np.testing.assert_array_equal(orient(a, o), up)
        plan = stored_plan(ResizePlan((1.0, 2.0, 5.0, 6.0), (4, 4), (0, 0)), (11, 7), o)
        left, top, right, bottom = (int(v) for v in plan.box)
        np.testing.assert_array_equal(orient(a[top:bottom, left:right], o), up[2:6, 1:5])


# -- paths, fallbacks, ingest ---------------------------------------------------------------------------------
def test_path_counter_names_the_path(photos: dict[str, Image.Image]) -> None:
    """fast for a JPEG; pillow+simd for a PNG with a SIMD filter; pillow for hamming, for nearest and with exact."""
    data = jpeg(photos["small"])
    png = encode(photos["small"], "PNG")
    cases = [
        (data, {}, "fast"),
        (data, {"exact": True}, "pillow"),
        (png, {}, "pillow+simd"),
        (png, {"filter": "hamming"}, "pillow"),
        (png, {"filter": "nearest"}, "pillow"),
        (png, {"exact": True}, "pillow"),
    ]
    for payload, kw, want in cases:
        decode_bytes(payload, DecodeOptions(size=(64, 48), **kw))
        assert last_path() == want, (kw, want)


def test_simd_resize_of_a_png_is_close_to_pillow_and_exact_is_identical(photos: dict[str, Image.Image]) -> None:
    """Pillow decoder + SIMD resize: within 0.5 of Pillow's resize for every SIMD filter; exact stays Pillow's
    bytes (ImageOps.fit)."""
    from PIL import ImageOps

    png = encode(photos["large"], "PNG")
    for filt in simd.SIMD_FILTERS:
        o = DecodeOptions(size=(96, 96), filter=filt)
        got, path = decode(png, o)
        assert path == "pillow+simd"
        exact, _ = decode(png, exact_of(o))
        assert 0.0 < mad(got, exact) <= 0.5
        fit = ImageOps.fit(photos["large"], (96, 96), FILTERS[filt])
        np.testing.assert_array_equal(exact, np.asarray(fit))
        grey = DecodeOptions(size=(96, 72), resize_mode="pad", channels=1, filter=filt)  # L images too
        got, path = decode(png, grey)
        assert path == "pillow+simd" and got.shape == (72, 96, 1)
        assert 0.0 < mad(got, decode(png, exact_of(grey))[0]) <= 0.5


def test_reducing_gap_keeps_pillows_reduce(photos: dict[str, Image.Image], monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1601x1203 PNG to 32x24 is box-reduced by Image.reduce first (5x here), as reducing_gap=3 does, then
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
    assert mad(np.asarray(got), np.asarray(pil)) <= 0.5


def test_without_cykooz_everything_resizes_through_pillow(
    photos: dict[str, Image.Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the SIMD package unimportable: the fast decoder still decodes (path fast) with Pillow resizing, byte
    for byte the Pillow decoder's non-exact pixels on an upright JPEG; a PNG's path is plain pillow."""
    monkeypatch.setattr(simd, "_module", None)
    monkeypatch.setitem(sys.modules, "cykooz_resizer", None)
    assert simd.preload() is False
    data = jpeg(photos["small"])
    for filt in ("bilinear", "lanczos"):
        for size in (160, 64):
            o = options("crop", size, filter=filt)
            got, path = decode(data, o)
            assert path == "fast"
            pillow, pillow_path = decode(data, o, PILLOW)
            assert pillow_path == "pillow"
            np.testing.assert_array_equal(got, pillow)
    decode_bytes(encode(photos["small"], "PNG"), DecodeOptions(size=64))
    assert last_path() == "pillow"


def test_without_simplejpeg_pillow_decodes_jpegs(photos: dict[str, Image.Image], monkeypatch: pytest.MonkeyPatch) -> None:
    """With simplejpeg unimportable, the registry has no fast decoder and JPEGs go through pillow+simd."""
    monkeypatch.setitem(sys.modules, "simplejpeg", None)
    monkeypatch.delitem(sys.modules, "imgstore.decoders.fast")
    monkeypatch.setattr(registry, "_DECODERS", [])
    registry._register_builtins()
    assert "fast" not in [d.name for d in registry.decoders()]
    data = jpeg(photos["small"], 6)
    o = options("crop", 64)
    got, path = decode(data, o)
    assert path == "pillow+simd"
    check_close(data, o, got, to_pillow=0.0)


def test_import_is_cheap_and_plugins_preload_simd() -> None:
    """``import imgstore.decoders`` does not import the SIMD package; load_plugins (run before a pool forks) does."""
    code = "import sys, imgstore.decoders; print('cykooz_resizer' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
    load_plugins()
    assert simd._module not in (None, False)


@pytest.fixture(scope="module")
def corpus(photos: dict[str, Image.Image], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 12 photo JPEGs (turned, greyscale, progressive), a CMYK JPEG, a truncated one and a PNG."""
    src = tmp_path_factory.mktemp("ingest") / "src"
    root = photo_corpus.write_photo_corpus(src / "corpus", 8, size=(200, 150), classes=2, seed=7, workers=1)
    assert len(root) == 8
    small = photos["small"]
    write(src / "x" / "turned.jpg", jpeg(small, 6))
    write(src / "x" / "grey.jpg", jpeg(small, 3, grey=True))
    write(src / "x" / "progressive.jpg", jpeg(small, 1, progressive=True))
    write(src / "x" / "large.jpg", jpeg(photos["large"], 8))
    write(src / "y" / "cmyk.jpg", encode(small.convert("CMYK"), "JPEG"))
    write(src / "y" / "cut.jpg", jpeg(small)[:3000])
    write(src / "y" / "photo.png", encode(small, "PNG"))
    return src


def _ingest(src: Path, out: Path, workers: int) -> tuple[Any, list[np.ndarray], list[str]]:
    decode = DecodeOptions(size=(64, 48), filter="bilinear")
    report = ingest(src, out, IngestOptions(decode=decode, workers=workers))
    with imgstore.open(out) as store:
        return report, [np.asarray(store[i]) for i in range(len(store))], list(store.names)


def test_ingest_with_0_and_2_workers_gives_identical_stores(corpus: Path, tmp_path: Path) -> None:
    """--workers 0 and 2 store the same pixels; 12 files take the fast path, the CMYK JPEG and the PNG
    pillow+simd, and the truncated JPEG is skipped with Pillow's reason."""
    r0, rows0, names0 = _ingest(corpus, tmp_path / "w0.h5", 0)
    r2, rows2, names2 = _ingest(corpus, tmp_path / "w2.h5", 2)
    assert names0 == names2 and len(rows0) == 14
    for a, b in zip(rows0, rows2):
        np.testing.assert_array_equal(a, b)
    for report in (r0, r2):
        assert report.paths == {"fast": 12, "pillow+simd": 2}
        assert report.skipped == [("y/cut.jpg", "truncated JPEG")]
    turned = (corpus / "x" / "turned.jpg").read_bytes()
    check_close(turned, DecodeOptions(size=(64, 48), filter="bilinear"), rows0[names0.index("x/turned.jpg")])

