"""Native-aspect resize modes (shorter, longer, none): planned shapes, pixels against Pillow's own resize, the
Canvas they decode into, --upscale, and the errors and limits that hold for them as for the fixed modes."""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np
import pytest
import typer
from PIL import Image, ImageOps

from imgstore.cli import app
from imgstore.config import build_ingest_options
from imgstore.decoders import decode_bytes
from imgstore.decoders import pillow as pillow_mod
from imgstore.decoders import resize as simd_resize
from imgstore.decoders.geometry import Canvas, place, resize_plan
from imgstore.decoders.pillow import render_array
from imgstore.decoders.pixels import to_uint8
from imgstore.errors import BadImageError, NotRecognised, OptionError
from imgstore.options import FILTERS, VARIABLE_MODES, DecodeOptions, ResizeMode

from conftest import encode, pattern

S = 64  # the --size of most tests here


def reference(data: bytes, o: DecodeOptions) -> np.ndarray:
    """Pillow's own answer: ``exif_transpose(im).convert("RGB").resize(planned size, filter)``; transparency is
    composited on the background and 16-bit scaled as imgstore does first, so only the geometry is compared."""
    im = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    if im.mode in ("I", "I;16"):
        im = Image.fromarray(to_uint8(np.asarray(im)), "L")
    if im.mode == "RGBA":
        flat = Image.new("RGB", im.size, o.background)
        flat.paste(im.convert("RGB"), mask=im.getchannel("A"))
        im = flat
    im = im.convert("RGB" if o.channels == 3 else "L")
    w, h = resize_plan(im.size, o.size, o.resize_mode, o.upscale).size
    arr = np.asarray(im.resize((w, h), FILTERS[o.filter]))
    return arr[:, :, None] if arr.ndim == 2 else arr


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def with_orientation(upright: Image.Image, orientation: int) -> bytes:
    """A JPEG that stores ``upright`` turned so that EXIF ``orientation`` (6: rotate 90 clockwise) turns it back."""
    stored = upright.transpose(Image.Transpose.ROTATE_90) if orientation == 6 else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


# -- geometry ------------------------------------------------------------------------------------------------
SOURCES = [(640, 480), (480, 640), (500, 500), (1000, 333), (97, 1301), (65, 64), (3000, 2)]


@pytest.mark.parametrize("src", SOURCES)
def test_shorter_sets_the_shorter_side_and_keeps_the_aspect(src: tuple[int, int]) -> None:
    """Shorter: the shorter side is exactly S, the longer within half a pixel of the exact aspect, nothing cut
    (upscale, so that the sources with a shorter side below S are planned too)."""
    w, h = src
    plan = resize_plan(src, (S, S), ResizeMode.SHORTER, upscale=True)
    pw, ph = plan.size
    assert min(pw, ph) == S
    exact_long = max(w, h) * S / min(w, h)
    assert abs(max(pw, ph) - exact_long) <= 0.5
    assert (pw >= ph) == (w >= h)  # landscape stays landscape
    assert plan.box == (0.0, 0.0, float(w), float(h)) and plan.offset == (0, 0)
    if min(w, h) <= S:  # without upscale those keep their size
        assert resize_plan(src, (S, S), ResizeMode.SHORTER).size == src
    else:
        assert resize_plan(src, (S, S), ResizeMode.SHORTER).size == plan.size


@pytest.mark.parametrize("src", SOURCES)
def test_longer_sets_the_longer_side_and_keeps_the_aspect(src: tuple[int, int]) -> None:
    """Longer: the longer side is exactly S, the shorter rounded to the aspect and at least 1 pixel."""
    w, h = src
    plan = resize_plan(src, (S, S), ResizeMode.LONGER)
    pw, ph = plan.size
    assert max(pw, ph) == S
    exact_short = min(w, h) * S / max(w, h)
    assert min(pw, ph) == max(1, round(exact_short))
    assert abs(min(pw, ph) - exact_short) <= 1
    assert plan.box == (0.0, 0.0, float(w), float(h)) and plan.offset == (0, 0)


@pytest.mark.parametrize("src", SOURCES)
def test_sizes_agree_with_imageops_cover_and_contain(src: tuple[int, int]) -> None:
    """Shorter plans ImageOps.cover's size and longer ImageOps.contain's, to the last rounding (both of which
    enlarge: upscale for shorter; longer only reduces these sources)."""
    im = Image.new("L", src)
    assert resize_plan(src, (S, S), ResizeMode.SHORTER, upscale=True).size == ImageOps.cover(im, (S, S)).size
    if min(ImageOps.contain(im, (S, S)).size) > 0:  # contain gives 0 pixels where imgstore keeps 1
        assert resize_plan(src, (S, S), ResizeMode.LONGER).size == ImageOps.contain(im, (S, S)).size


@pytest.mark.parametrize("mode", [ResizeMode.SHORTER, ResizeMode.LONGER])
def test_small_images_keep_their_size_unless_upscale(mode: ResizeMode) -> None:
    """An image already below S is never enlarged by default; with upscale it is, to the same rule as others."""
    assert resize_plan((50, 30), (S, S), mode).size == (50, 30)
    up = resize_plan((50, 30), (S, S), mode, upscale=True).size
    assert up == ((107, 64) if mode is ResizeMode.SHORTER else (64, 38))
    # Longer: 50 <= S, so a 100x30 image (longer side above S) is reduced even without upscale.
    assert resize_plan((100, 30), (S, S), ResizeMode.LONGER).size == (64, 19)
    # Shorter: the side that counts is the shorter one (30 < S): kept, although its longer side is above S.
    assert resize_plan((100, 30), (S, S), ResizeMode.SHORTER).size == (100, 30)


def test_none_keeps_the_source_size() -> None:
    """None plans the source size whatever SIZE is, with or without upscale."""
    for src in SOURCES:
        for upscale in (False, True):
            plan = resize_plan(src, (S, S), ResizeMode.NONE, upscale)
            assert plan.size == src and plan.offset == (0, 0)


# -- options -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["shorter", "longer"])
def test_shorter_and_longer_refuse_a_non_square_size(mode: str) -> None:
    """WIDTHxHEIGHT means nothing to shorter/longer: the error says to give one number."""
    with pytest.raises(OptionError) as err:
        DecodeOptions(size="320x240", resize_mode=mode)
    assert f"--resize-mode {mode} takes one number, e.g. --size 256" in str(err.value)
    assert DecodeOptions(size="256x256", resize_mode=mode).size == (256, 256)


def test_none_accepts_any_size() -> None:
    """None does not use SIZE for geometry, so a WIDTHxHEIGHT one is no error."""
    assert DecodeOptions(size="320x240", resize_mode="none").variable


def test_variable_and_upscale_options() -> None:
    """variable is true exactly for shorter/longer/none; upscale must be a bool; the options still pickle."""
    for mode in ResizeMode:
        assert DecodeOptions(resize_mode=mode).variable == (mode in VARIABLE_MODES)
    assert {m.value for m in VARIABLE_MODES} == {"shorter", "longer", "none"}
    assert DecodeOptions().upscale is False
    with pytest.raises(OptionError, match="upscale"):
        DecodeOptions(upscale="false")  # type: ignore[arg-type]
    o = DecodeOptions(size=S, resize_mode="longer", upscale=True)
    back = pickle.loads(pickle.dumps(o))
    assert back == o and back.upscale and back.resize_mode is ResizeMode.LONGER


def test_config_sets_upscale() -> None:
    """upscale is a config key (TOML presets), and the command line wins over it."""
    opts = build_ingest_options({"resize_mode": "shorter", "size": 128, "upscale": True})
    assert opts.decode.upscale and opts.decode.resize_mode is ResizeMode.SHORTER
    assert not build_ingest_options({"upscale": True}, {"upscale": False}).decode.upscale


def test_cli_help_lists_the_six_modes_and_upscale() -> None:
    """--resize-mode's help names all six modes; --upscale/--no-upscale sits beside it in the Geometry panel."""
    command = typer.main.get_command(app).commands["ingest"]  # type: ignore[attr-defined]
    params = {p.name: p for p in command.params}
    help_text = params["resize_mode"].help
    for mode in ResizeMode:
        assert mode.value in help_text
    upscale = params["upscale"]
    assert upscale.opts == ["--upscale"] and upscale.secondary_opts == ["--no-upscale"]
    assert upscale.rich_help_panel == params["resize_mode"].rich_help_panel == "Geometry"


# -- pixels against Pillow -----------------------------------------------------------------------------------
IMAGES = {
    "jpeg-landscape": lambda: encode(pattern(160, 120, seed=1), "JPEG", quality=95),
    "jpeg-portrait": lambda: encode(pattern(90, 200, seed=2), "JPEG", quality=95),
    "jpeg-square": lambda: encode(pattern(130, 130, seed=3), "JPEG", quality=95),
    "png-rgba": lambda: encode(_rgba(150, 100), "PNG"),
    "png-16bit": lambda: encode(_sixteen_bit(120, 170), "PNG"),
    "png-gray": lambda: encode(pattern(140, 100, seed=4).convert("L"), "PNG"),
    "jpeg-exif-6": lambda: with_orientation(pattern(160, 100, seed=5), 6),
    "jpeg-cmyk": lambda: encode(pattern(150, 110, seed=6).convert("CMYK"), "JPEG", quality=95),
}


def _rgba(w: int, h: int) -> Image.Image:
    im = pattern(w, h, seed=7).convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, w, dtype=np.uint8), (h, 1))  # transparent left edge to opaque right
    im.putalpha(Image.fromarray(alpha, "L"))
    return im


def _sixteen_bit(w: int, h: int) -> Image.Image:
    arr = np.asarray(pattern(w, h, seed=8).convert("L")).astype(np.uint16) * 257  # the full 16-bit range
    return Image.fromarray(arr.astype(np.uint16))  # mode I;16


@pytest.mark.parametrize("name", sorted(IMAGES))
@pytest.mark.parametrize("mode", ["shorter", "longer"])
@pytest.mark.parametrize("filt", ["bicubic", "lanczos", "nearest"])
def test_exact_is_byte_identical_to_pillow_resize(name: str, mode: str, filt: str) -> None:
    """exact=True: the same bytes as Pillow's exif_transpose + convert + resize to the planned size."""
    data = IMAGES[name]()
    o = DecodeOptions(size=S, resize_mode=mode, filter=filt, exact=True, background=(20, 200, 40))
    got = decode_bytes(data, o)
    expected = reference(data, o)
    assert got.shape == expected.shape
    assert got.flags.c_contiguous and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", sorted(IMAGES))
@pytest.mark.parametrize("mode", ["shorter", "longer"])
def test_fast_path_is_within_two_levels_of_pillow(name: str, mode: str) -> None:
    """Without exact (draft, reducing_gap): the same shape, mean absolute difference at most 2 grey levels."""
    data = IMAGES[name]()
    o = DecodeOptions(size=S, resize_mode=mode)
    got = decode_bytes(data, o)
    expected = reference(data, o)
    assert got.shape == expected.shape
    assert mean_abs(got, expected) <= 2


def test_exif_orientation_6_gives_the_upright_shape() -> None:
    """A sideways-stored phone photo (orientation 6) is planned on its upright size: portrait stays portrait."""
    data = with_orientation(pattern(160, 100, seed=5), 6)  # upright 160x100, stored 100x160
    assert Image.open(io.BytesIO(data)).size == (100, 160)
    assert decode_bytes(data, DecodeOptions(size=S, resize_mode="shorter")).shape == (S, 102, 3)
    assert decode_bytes(data, DecodeOptions(size=S, resize_mode="longer")).shape == (40, S, 3)
    got = decode_bytes(data, DecodeOptions(size=S, resize_mode="none"))
    assert got.shape == (100, 160, 3)
    assert got[2, 2, 0] > 200 and got[2, 2, 1] < 80  # the red marker is top-left, as in the upright photo


def test_grayscale_output_has_one_channel() -> None:
    """channels=1 gives (h, w, 1) of the image's own shape, equal to Pillow's L resize."""
    data = encode(pattern(120, 80, seed=9), "PNG")
    o = DecodeOptions(size=S, resize_mode="shorter", channels=1, exact=True)
    got = decode_bytes(data, o)
    assert got.shape == (S, 96, 1)
    np.testing.assert_array_equal(got, reference(data, o))


# -- JPEG draft ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["shorter", "longer"])
def test_large_jpeg_uses_draft_and_keeps_the_planned_shape(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large JPEG is DCT-scaled (1/4 here), no further than the resize still having DRAFT_GAP x the pixels it
    needs (1/8 would not); its shape is the one planned on the full image, its pixels close to the full decode's."""
    data = encode(pattern(1601, 1203, seed=10), "JPEG", quality=92)
    o = DecodeOptions(size=256, resize_mode=mode)
    planned = resize_plan((1601, 1203), (256, 256), ResizeMode(mode)).size
    decoded: list[tuple[int, int]] = []
    real_resize = simd_resize.resize_image

    def spy(im: Image.Image, size: tuple[int, int], *args: Any) -> tuple[Image.Image, bool]:
        decoded.append(im.size)  # the size of what is resized: the DCT-scaled image
        return real_resize(im, size, *args)

    monkeypatch.setattr(simd_resize, "resize_image", spy)
    got = decode_bytes(data, o, chain=[pillow_mod.PillowDecoder()])  # Pillow's draft (the fast decoder has its own)
    monkeypatch.undo()
    assert got.shape == (planned[1], planned[0], 3)
    (scaled,) = decoded
    assert scaled == (401, 301)  # draft engaged: libjpeg's 1/4 scale
    assert scaled[0] >= pillow_mod.DRAFT_GAP * planned[0] and scaled[1] >= pillow_mod.DRAFT_GAP * planned[1]
    assert scaled[0] < 2 * planned[0] * pillow_mod.DRAFT_GAP or scaled[1] < 2 * planned[1] * pillow_mod.DRAFT_GAP
    exact = decode_bytes(data, DecodeOptions(size=256, resize_mode=mode, exact=True))
    assert exact.shape == got.shape
    assert mean_abs(got, exact) <= 2


@pytest.mark.parametrize(
    ("src", "size", "mode"), [((1200, 997), 37, "shorter"), ((1200, 1333), 128, "shorter"), ((1200, 997), 128, "longer")]
)
def test_draft_shape_equals_exact_shape(src: tuple[int, int], size: int, mode: str) -> None:
    """Sizes where a plan on the DCT-scaled image would round the other side to another pixel: the output shape
    is still the one planned on the full image, the shape exact=True gives."""
    scaled = (-(-src[0] // 4), -(-src[1] // 4))  # libjpeg's 1/4 scale rounds up
    full_plan = resize_plan(src, (size, size), ResizeMode(mode)).size
    assert resize_plan(scaled, (size, size), ResizeMode(mode)).size != full_plan  # the case is a real one
    data = encode(pattern(*src, seed=src[1]), "JPEG", quality=80)
    fast = decode_bytes(data, DecodeOptions(size=size, resize_mode=mode))
    exact = decode_bytes(data, DecodeOptions(size=size, resize_mode=mode, exact=True))
    assert fast.shape == exact.shape == (full_plan[1], full_plan[0], 3)
    assert mean_abs(fast, exact) <= 2


@pytest.mark.parametrize("orientation", range(1, 9))
def test_draft_of_a_turned_jpeg_whose_size_is_no_multiple_of_8(orientation: int) -> None:
    """DCT scaling rounds 1601x1203 up to whole pixels; wherever the EXIF turn puts that partial last column and
    row, the fast path stays within 2 grey levels of Pillow's full decode."""
    stored = pattern(1601, 1203, seed=orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "JPEG", quality=92, exif=exif.tobytes())
    for mode in ("shorter", "crop"):
        o = DecodeOptions(size=100, resize_mode=mode)
        fast = decode_bytes(data, o)
        exact = decode_bytes(data, DecodeOptions(size=100, resize_mode=mode, exact=True))
        assert fast.shape == exact.shape
        assert mean_abs(fast, exact) <= 2


def test_none_never_drafts(monkeypatch: pytest.MonkeyPatch) -> None:
    """None stores the full decoded pixels: no DCT scaling, the same bytes as Pillow's decode."""
    calls: list[object] = []
    monkeypatch.setattr("PIL.JpegImagePlugin.JpegImageFile.draft", lambda self, m, s: calls.append(s))
    data = encode(pattern(400, 300, seed=11), "JPEG")
    got = decode_bytes(data, DecodeOptions(size=S, resize_mode="none"), chain=[pillow_mod.PillowDecoder()])
    assert not calls
    np.testing.assert_array_equal(got, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


# -- small images and upscale --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["shorter", "longer"])
def test_tiny_image_is_kept_as_is_without_upscale(mode: str) -> None:
    """A 50x30 PNG under --size 64 keeps its size and its exact pixels."""
    im = pattern(50, 30, seed=12)
    got = decode_bytes(encode(im, "PNG"), DecodeOptions(size=S, resize_mode=mode))
    np.testing.assert_array_equal(got, np.asarray(im))


@pytest.mark.parametrize("mode", ["shorter", "longer"])
def test_tiny_image_is_enlarged_with_upscale(mode: str) -> None:
    """With upscale the same PNG is enlarged to the planned size, as Pillow's resize does it."""
    data = encode(pattern(50, 30, seed=12), "PNG")
    o = DecodeOptions(size=S, resize_mode=mode, upscale=True, exact=True)
    got = decode_bytes(data, o)
    assert got.shape == ((S, 107, 3) if mode == "shorter" else (38, S, 3))
    np.testing.assert_array_equal(got, reference(data, o))


# -- Canvas --------------------------------------------------------------------------------------------------
def test_canvas_take_reuses_and_grows_its_buffer() -> None:
    """take() gives C-contiguous views of one buffer, growing it only for a larger image."""
    canvas = Canvas()
    assert canvas.shape is None and canvas.capacity == 0
    with pytest.raises(ValueError):
        canvas.array  # noqa: B018  (nothing taken yet)
    a = canvas.take(10, 20, 3)
    assert a.shape == (10, 20, 3) and a.dtype == np.uint8 and a.flags.c_contiguous
    assert canvas.shape == (10, 20, 3) and canvas.array is a and canvas.capacity == 600
    b = canvas.take(5, 7, 1)
    assert np.shares_memory(a, b) and canvas.capacity == 600  # smaller: the same memory
    c = canvas.take(30, 30, 3)
    assert canvas.capacity == 2700 and not np.shares_memory(a, c)  # larger: a new buffer
    d = canvas.take(20, 10, 3)
    assert np.shares_memory(c, d) and d.flags.c_contiguous
    with pytest.raises(ValueError):
        canvas.take(0, 10, 3)


def test_decoding_into_one_canvas_image_after_image() -> None:
    """A worker's loop: each decode into the same Canvas returns that image's own shape and pixels, the same as
    a decode into a fresh array, and the buffer is reallocated only when an image is larger than any before."""
    canvas = Canvas()
    datas = [IMAGES[n]() for n in ("jpeg-landscape", "jpeg-portrait", "png-rgba", "jpeg-square")]
    o = DecodeOptions(size=S, resize_mode="shorter")
    capacities = []
    for data in datas:
        got = decode_bytes(data, o, canvas)
        assert got is canvas.array and canvas.shape == got.shape
        np.testing.assert_array_equal(got, decode_bytes(data, o))
        capacities.append(canvas.capacity)
    # landscape 85x64, portrait 64x142 (larger), rgba 96x64 (fits), square 64x64 (fits)
    assert capacities == [85 * 64 * 3, 142 * 64 * 3, 142 * 64 * 3, 142 * 64 * 3]


def test_decode_without_out_returns_a_new_array_per_image() -> None:
    """out=None under a variable mode: a new array each call, never shared with the previous one."""
    o = DecodeOptions(size=S, resize_mode="longer")
    first = decode_bytes(IMAGES["jpeg-landscape"](), o)
    second = decode_bytes(IMAGES["jpeg-portrait"](), o)
    assert first.shape == (48, S, 3) and second.shape == (S, 29, 3)
    assert not np.shares_memory(first, second)


def test_out_must_match_the_mode() -> None:
    """A plain array for a variable mode, or a Canvas for a fixed one, is a ValueError that says what to pass."""
    data = IMAGES["jpeg-square"]()
    with pytest.raises(ValueError, match="must be a Canvas"):
        decode_bytes(data, DecodeOptions(size=S, resize_mode="shorter"), np.empty((S, S, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8 array"):
        decode_bytes(data, DecodeOptions(size=S, resize_mode="crop"), Canvas())


def test_place_into_a_canvas_has_no_letterbox() -> None:
    """place() with a Canvas takes exactly the plan's size; with an array it letterboxes as before."""
    plan = resize_plan((100, 50), (S, S), ResizeMode.LONGER)
    pixels = np.full((32, 64), 7, np.uint8)
    canvas = Canvas()
    arr = place(pixels, plan, canvas, (255, 0, 0))
    assert arr.shape == (32, 64, 1) and (arr == 7).all() and canvas.array is arr


def test_a_decoder_that_writes_nothing_is_not_given_the_previous_image() -> None:
    """A custom decoder that ignores the Canvas fails that file instead of returning the last image again."""

    class Lazy:
        name = "lazy"
        extensions = (".lazy",)

        def decode(self, data: bytes, opts: DecodeOptions, out: object) -> None:
            if data != b"lazy":
                raise NotRecognised("")

    canvas = Canvas()
    o = DecodeOptions(size=S, resize_mode="shorter")
    decode_bytes(IMAGES["jpeg-square"](), o, canvas)
    with pytest.raises(BadImageError, match="wrote no pixels"):
        decode_bytes(b"lazy", o, canvas, chain=[Lazy()])


def test_render_array_plans_on_the_full_size_after_half_size_development() -> None:
    """A raw developed at half size is planned on its full upright size, so its shape equals exact=True's (a
    plan on the half size would round 1004/667 to 151 columns instead of 2009/1335's 150)."""
    half = np.asarray(pattern(1004, 667, seed=13))  # what LibRaw's half_size gives for a 2009x1335 raw
    o = DecodeOptions(size=100, resize_mode="shorter")
    canvas = Canvas()
    render_array(half, o, canvas, full_size=(2009, 1335))
    assert canvas.shape == (100, 150, 3)
    render_array(half, o, canvas)
    assert canvas.shape == (100, 151, 3)


# -- limits --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["shorter", "longer", "none"])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_pixel_limit_applies_to_variable_modes(mode: str, fmt: str) -> None:
    """The decompression-bomb limit refuses an image over --max-pixels in every variable mode (none included,
    where the whole image would be stored)."""
    data = encode(pattern(300, 200, seed=14), fmt)
    with pytest.raises(BadImageError, match="decompression bomb"):
        decode_bytes(data, DecodeOptions(size=S, resize_mode=mode, max_pixels=300 * 200 - 1))
    assert decode_bytes(data, DecodeOptions(size=S, resize_mode=mode, max_pixels=300 * 200)).size > 0
