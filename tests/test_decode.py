"""The decoder: every mode to RGB/L, EXIF orientation, resize modes against Pillow references, bad input."""

from __future__ import annotations

import io
import itertools
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from imgstore.decoders import decode_bytes
from imgstore.decoders import pillow as decode_mod
from imgstore.decoders.geometry import resize_plan
from imgstore.errors import BadImageError, OptionError
from imgstore.options import FILTERS, VARIABLE_MODES, DecodeOptions, ResizeMode

from conftest import encode, pattern

BICUBIC = Image.Resampling.BICUBIC
FIXED_MODES = [m for m in ResizeMode if m not in VARIABLE_MODES]  # shorter/longer/none: tests/test_resize_modes.py


def opts(**kw: object) -> DecodeOptions:
    kw.setdefault("size", (32, 24))
    kw.setdefault("exact", True)
    return DecodeOptions(**kw)  # type: ignore[arg-type]


def reference(im: Image.Image, o: DecodeOptions) -> np.ndarray:
    """What Pillow's own helpers give for the options: ImageOps.fit / ImageOps.pad / resize."""
    method = FILTERS[o.filter]
    if o.resize_mode is ResizeMode.CROP:
        out = ImageOps.fit(im, o.size, method)
    elif o.resize_mode is ResizeMode.PAD:
        color = o.pad_color if im.mode == "RGB" else Image.new("RGB", (1, 1), o.pad_color).convert("L").getpixel((0, 0))
        out = ImageOps.pad(im, o.size, method, color=color)
    else:
        out = im.resize(o.size, method)
    arr = np.asarray(out)
    return arr[:, :, None] if arr.ndim == 2 else arr


# -- geometry ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", FIXED_MODES)
@pytest.mark.parametrize("src", [(64, 48), (48, 64), (40, 40), (33, 97), (200, 30)])
@pytest.mark.parametrize("dst", [(32, 24), (16, 16), (24, 40)])
def test_resize_modes_match_pillow_reference(mode: ResizeMode, src: tuple[int, int], dst: tuple[int, int]) -> None:
    """crop == ImageOps.fit, pad == ImageOps.pad, stretch == resize, byte for byte, in exact mode."""
    im = pattern(*src, seed=src[0])
    o = opts(size=dst, resize_mode=mode)
    got = decode_bytes(encode(im, "PNG"), o)
    assert got.shape == (dst[1], dst[0], 3)
    np.testing.assert_array_equal(got, reference(im, o))


@settings(max_examples=60, deadline=None)
@given(
    sw=st.integers(1, 90), sh=st.integers(1, 90), dw=st.integers(1, 40), dh=st.integers(1, 40),
    mode=st.sampled_from(FIXED_MODES), filt=st.sampled_from(sorted(FILTERS)),
)  # fmt: skip
def test_resize_any_geometry_matches_reference(sw: int, sh: int, dw: int, dh: int, mode: ResizeMode, filt: str) -> None:
    """Any source and target size, any filter: the same pixels as Pillow's reference helpers."""
    im = pattern(sw, sh, seed=sw * 100 + sh)
    o = opts(size=(dw, dh), resize_mode=mode, filter=filt, pad_color=(10, 200, 30))
    if mode is ResizeMode.PAD and min(ImageOps.contain(im, (dw, dh)).size) == 0:
        assert min(resize_plan((sw, sh), (dw, dh), mode).size) == 1  # imgstore keeps a side of at least 1 pixel
        return
    np.testing.assert_array_equal(decode_bytes(encode(im, "PNG"), o), reference(im, o))


def test_pad_places_image_centred_with_pad_colour() -> None:
    """Pad mode letterboxes a wide image: colour bars above and below, the photo in the middle rows."""
    im = Image.new("RGB", (100, 50), (255, 255, 255))
    got = decode_bytes(encode(im, "PNG"), opts(size=(40, 40), resize_mode="pad", pad_color="#ff0000"))
    assert (got[:10] == [255, 0, 0]).all() and (got[-10:] == [255, 0, 0]).all()
    assert (got[12:28] == 255).all()


def test_channels_one_is_pillow_luminance() -> None:
    """--channels 1 gives (H, W, 1) equal to Pillow's ITU-R 601-2 convert('L') then resize."""
    im = pattern(60, 40)
    o = opts(channels=1, resize_mode="stretch")
    got = decode_bytes(encode(im, "PNG"), o)
    assert got.shape == (24, 32, 1)
    np.testing.assert_array_equal(got, reference(im.convert("L"), o))


# -- modes ---------------------------------------------------------------------------------------------------
def test_grayscale_becomes_rgb_with_equal_channels() -> None:
    """An L image is stored as RGB with three equal channels."""
    got = decode_bytes(encode(pattern(40, 30).convert("L"), "PNG"), opts())
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()


def test_one_bit_image() -> None:
    """A 1-bit image becomes black and white RGB."""
    im = Image.new("1", (32, 24), 0)
    im.paste(1, (0, 0, 16, 24))
    got = decode_bytes(encode(im, "PNG"), opts(resize_mode="stretch", filter="nearest"))
    assert (got[:, :16] == 255).all() and (got[:, 16:] == 0).all()


@pytest.mark.parametrize("background", [(255, 255, 255), (0, 0, 255)])
def test_rgba_is_composited_on_background(background: tuple[int, int, int]) -> None:
    """Transparent pixels take the --background colour; opaque ones keep theirs; half alpha blends."""
    arr = np.zeros((24, 32, 4), np.uint8)
    arr[:, :16] = (200, 10, 10, 255)  # opaque red left half
    arr[:, 16:] = (0, 0, 0, 0)  # fully transparent (black!) right half
    got = decode_bytes(encode(Image.fromarray(arr, "RGBA"), "PNG"), opts(background=background, filter="nearest"))
    assert (got[:, :14] == (200, 10, 10)).all()
    assert (got[:, 18:] == background).all()
    half = np.zeros((24, 32, 4), np.uint8)
    half[...] = (0, 0, 0, 128)
    got = decode_bytes(encode(Image.fromarray(half, "RGBA"), "PNG"), opts(background=(255, 255, 255)))
    assert abs(int(got[5, 5, 0]) - 127) <= 1


def test_la_is_composited() -> None:
    """An LA image: transparent pixels become the background."""
    arr = np.zeros((24, 32, 2), np.uint8)
    arr[:, :, 0] = 50
    arr[:, 16:, 1] = 255
    got = decode_bytes(encode(Image.fromarray(arr, "LA"), "PNG"), opts(filter="nearest"))
    assert (got[:, :14] == 255).all() and (got[:, 18:] == 50).all()


def test_palette_with_transparency() -> None:
    """A palette PNG whose transparent index is composited on the background, not shown as its palette colour."""
    im = Image.new("P", (32, 24), 0)
    im.putpalette([0, 0, 0, 0, 255, 0] + [0] * (254 * 3))
    im.paste(1, (0, 0, 16, 24))
    data = encode(im, "PNG", transparency=0)
    got = decode_bytes(data, opts(filter="nearest", background=(9, 9, 9)))
    assert (got[:, :14] == (0, 255, 0)).all() and (got[:, 18:] == (9, 9, 9)).all()


def test_palette_without_transparency() -> None:
    """A plain palette image keeps its palette colours."""
    im = pattern(32, 24).quantize(16)
    got = decode_bytes(encode(im, "PNG"), opts(filter="nearest", resize_mode="stretch"))
    np.testing.assert_array_equal(got, np.asarray(im.convert("RGB")))


def test_cmyk_jpeg_matches_pillow_conversion() -> None:
    """A CMYK JPEG (no ICC profile) is converted like Pillow's convert('RGB')."""
    cmyk = pattern(48, 36).convert("CMYK")
    data = encode(cmyk, "JPEG", quality=95)
    o = opts(resize_mode="stretch")
    expected = reference(Image.open(io.BytesIO(data)).convert("RGB"), o)
    np.testing.assert_array_equal(decode_bytes(data, o), expected)


# A made-up print profile (Pillow's ImageCms can only create sRGB, LAB and XYZ profiles): CMYK -> Lab through a
# 2x2x2x2 lookup table whose corners are the colours of inks on a cream paper. The paper and each ink's
# transmission per sRGB channel; a corner's colour is the paper filtered by the inks it has.
PAPER = (250.0, 244.0, 228.0)
INKS = ((0.10, 0.65, 0.95), (0.95, 0.15, 0.60), (1.00, 0.92, 0.10), (0.08, 0.08, 0.08))  # C, M, Y, K


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def cmyk_print_profile() -> bytes:
    """An ICC v2 output profile (CMYK data, Lab connection space) with an 8-bit A2B0 table (lut8Type), written
    from the ICC specification; little CMS reads it."""
    srgb, lab = ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB")
    corners = bytearray()
    for on in itertools.product((0, 1), repeat=4):  # C varies slowest, K fastest: the table's order
        rgb = np.array(PAPER)
        for used, ink in zip(on, INKS):
            rgb = rgb * np.array(ink) if used else rgb
        pixel = Image.new("RGB", (1, 1), tuple(int(v + 0.5) for v in rgb))
        # getpixel gives L as L*·255/100 and a*, b* offset by 128: lut8Type's Lab encoding
        corners += bytes(ImageCms.profileToProfile(pixel, srgb, lab, outputMode="LAB").getpixel((0, 0)))
    identity = bytes(range(256))
    a2b0 = (b"mft1" + bytes(4) + bytes([4, 3, 2, 0]) + b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
            + identity * 4 + bytes(corners) + identity * 3)  # fmt: skip
    text = b"imgstore test CMYK\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 2 + 1 + 67)
    cprt = b"text" + bytes(4) + b"No copyright, test data\0"
    d50 = _s15(0.9642) + _s15(1.0) + _s15(0.8249)
    tags = [(b"desc", desc), (b"cprt", cprt), (b"wtpt", b"XYZ " + bytes(4) + d50), (b"A2B0", a2b0)]
    start = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, data in tags:
        body += bytes(-(start + len(body)) % 4)  # tags start on 4-byte boundaries
        table += signature + struct.pack(">II", start + len(body), len(data))
        body += data
    # size, CMM, version 2.1, class, data colour space, connection space, date, 'acsp', platform/flags/maker/model/
    # attributes, rendering intent (perceptual), illuminant D50, creator and reserved bytes
    header = (struct.pack(">I", start + len(body)) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"prtr" + b"CMYK" + b"Lab "
              + struct.pack(">6H", 2024, 1, 1, 0, 0, 0) + b"acsp" + bytes(24) + bytes(4) + d50 + bytes(48))  # fmt: skip
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def test_cmyk_jpeg_with_icc_profile_is_colour_managed() -> None:
    """A CMYK JPEG carrying an ICC profile is converted through it to sRGB: the same pixels as Pillow's ImageCms
    conversion, far from the naive convert('RGB'), and a patch of pure cyan ink gets the profile's cyan."""
    icc = cmyk_print_profile()
    profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    assert profile.profile.xcolor_space.strip() == "CMYK"
    cmyk = pattern(48, 36).convert("CMYK")
    cmyk.paste((255, 0, 0, 0), (24, 18, 48, 36))  # pure cyan in the bottom-right quarter
    data = encode(cmyk, "JPEG", quality=95, icc_profile=icc)
    assert Image.open(io.BytesIO(data)).info["icc_profile"] == icc
    o = opts(size=(48, 36), resize_mode="stretch")
    got = decode_bytes(data, o)
    managed = ImageCms.profileToProfile(Image.open(io.BytesIO(data)), profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    np.testing.assert_array_equal(got, reference(managed, o))
    naive = reference(Image.open(io.BytesIO(data)).convert("RGB"), o)
    assert np.abs(got.astype(int) - naive.astype(int)).mean() > 20
    cyan = np.array(PAPER) * np.array(INKS[0])  # (25, 159, 217); naive CMYK->RGB gives (0, 255, 255)
    assert np.abs(got[27, 36].astype(int) - cyan).max() <= 8, got[27, 36]


def test_cmyk_jpeg_with_a_broken_icc_profile_falls_back_to_plain_conversion() -> None:
    """A CMYK JPEG whose embedded profile cannot be read is still stored, converted as Pillow's convert('RGB')."""
    data = encode(pattern(48, 36).convert("CMYK"), "JPEG", quality=95, icc_profile=b"not an ICC profile" * 8)
    with pytest.raises(OSError):
        ImageCms.ImageCmsProfile(io.BytesIO(Image.open(io.BytesIO(data)).info["icc_profile"]))
    o = opts(resize_mode="stretch")
    expected = reference(Image.open(io.BytesIO(data)).convert("RGB"), o)
    np.testing.assert_array_equal(decode_bytes(data, o), expected)


def test_sixteen_bit_grayscale_scaled_by_range() -> None:
    """16-bit values spanning 0..65535 map to 0..255 (not clipped to white as a naive convert('L') does)."""
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1))
    im = Image.fromarray(ramp)
    assert Image.open(io.BytesIO(encode(im, "PNG"))).mode == "I;16"
    got = decode_bytes(encode(im, "PNG"), opts(size=(64, 16), filter="nearest", resize_mode="stretch"))
    np.testing.assert_allclose(got[0, :, 0], ramp[0] / 257, atol=1)


def test_twelve_bit_data_in_sixteen_bit_container_is_stretched() -> None:
    """A 12-bit scan (max 4095) is scaled by its real range, not left nearly black."""
    ramp = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (16, 1))
    got = decode_bytes(encode(Image.fromarray(ramp), "PNG"), opts(size=(64, 16), filter="nearest"))
    assert got.max() == 255 and got.min() == 0


def test_int32_tiff_scaled() -> None:
    """A 32-bit integer TIFF (values up to 100000) is scaled to 0..255."""
    arr = np.tile(np.linspace(0, 100000, 64).astype(np.int32), (16, 1))
    got = decode_bytes(encode(Image.fromarray(arr, "I"), "TIFF"), opts(size=(64, 16), filter="nearest"))
    np.testing.assert_allclose(got[0, :, 0], arr[0] * 255 / 100000, atol=1)


def test_float_tiff_unit_range() -> None:
    """A float TIFF with values in [0, 1] maps 1.0 to 255."""
    arr = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (16, 1))
    got = decode_bytes(encode(Image.fromarray(arr, "F"), "TIFF"), opts(size=(64, 16), filter="nearest"))
    np.testing.assert_allclose(got[0, :, 0], arr[0] * 255, atol=1)


def test_float_tiff_other_range_is_min_max_scaled() -> None:
    """A float TIFF with values in [-5, 20] maps its minimum to 0 and maximum to 255."""
    arr = np.tile(np.linspace(-5, 20, 64, dtype=np.float32), (16, 1))
    got = decode_bytes(encode(Image.fromarray(arr, "F"), "TIFF"), opts(size=(64, 16), filter="nearest"))
    assert got[0, 0, 0] == 0 and got[0, -1, 0] == 255


def test_multiframe_gif_takes_first_frame() -> None:
    """An animated GIF is stored as its first frame."""
    frames = [Image.new("RGB", (32, 24), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    got = decode_bytes(data, opts())
    assert (got == (255, 0, 0)).all()


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "TIFF", "PNG", "GIF", "PPM", "TGA"])
def test_formats(fmt: str) -> None:
    """Every common format decodes to the right shape, close to the source pixels."""
    im = pattern(32, 24)
    kw = {"lossless": True} if fmt == "WEBP" else {}
    got = decode_bytes(encode(im, fmt, **kw), opts(resize_mode="stretch"))
    tol = 40 if fmt == "GIF" else 1
    assert got.shape == (24, 32, 3)
    assert np.abs(got.astype(int) - np.asarray(im).astype(int)).mean() < tol


# -- EXIF orientation ----------------------------------------------------------------------------------------
# The inverse of each orientation's transpose: stored pixels that EXIF turns back into the upright image.
_STORE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("exact", [True, False])
def test_exif_orientation_is_applied(orientation: int, exact: bool) -> None:
    """A phone photo stored sideways with orientation 1..8 comes out upright, like ImageOps.exif_transpose."""
    upright = pattern(80, 60, seed=3)
    stored = upright if _STORE[orientation] is None else upright.transpose(_STORE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    o = DecodeOptions(size=(40, 30), resize_mode="stretch", exact=exact)
    got = decode_bytes(data, o)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).resize((40, 30), BICUBIC))
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 3
    # The red marker block is top-left, where it was in the upright photo.
    assert got[2, 2, 0] > 200 and got[2, 2, 1] < 80
    assert got[-2, -2, 0] < 200 or got[-2, -2, 1] > 80


def test_broken_exif_is_ignored() -> None:
    """A JPEG whose EXIF block is garbage still decodes (as upright)."""
    good = encode(pattern(40, 30), "JPEG", quality=95)
    app1 = b"Exif\x00\x00" + b"II*\x00\xff\xff\xff\x7f" + b"\x00" * 40
    data = good[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + good[2:]
    got = decode_bytes(data, opts(size=(40, 30), resize_mode="stretch"))
    assert np.abs(got.astype(int) - decode_bytes(good, opts(size=(40, 30), resize_mode="stretch")).astype(int)).max() == 0


# -- draft mode ----------------------------------------------------------------------------------------------
def test_draft_mode_is_close_to_exact() -> None:
    """DCT-scaled decoding of a large JPEG stays close to the exact path (mean error under 3 levels)."""
    data = encode(pattern(1600, 1200, seed=5).resize((1600, 1200)), "JPEG", quality=92)
    fast = decode_bytes(data, DecodeOptions(size=128, exact=False))
    exact = decode_bytes(data, DecodeOptions(size=128, exact=True))
    assert np.abs(fast.astype(int) - exact.astype(int)).mean() < 3


def test_draft_engages_only_when_source_is_twice_the_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """Image.draft is asked for when the source is >= 2x the target, never in exact mode."""
    calls: list[tuple[int, int]] = []
    real = Image.Image.draft

    def spy(self: Image.Image, mode: str | None, size: tuple[int, int] | None):  # type: ignore[no-untyped-def]
        calls.append(size)  # type: ignore[arg-type]
        return real(self, mode, size)

    monkeypatch.setattr(Image.Image, "draft", spy)
    monkeypatch.setattr("PIL.JpegImagePlugin.JpegImageFile.draft", lambda self, m, s: (calls.append(s), real(self, m, s))[1])
    big = encode(pattern(800, 600), "JPEG")
    pillow = [decode_mod.PillowDecoder()]  # the Pillow decoder's draft (the fast JPEG decoder makes the same choice itself)
    decode_bytes(big, DecodeOptions(size=(100, 75)), chain=pillow)
    assert calls
    calls.clear()
    decode_bytes(big, DecodeOptions(size=(500, 375)), chain=pillow)
    decode_bytes(big, DecodeOptions(size=(100, 75), exact=True), chain=pillow)
    assert not calls


# -- bad input -----------------------------------------------------------------------------------------------
def test_truncated_jpeg() -> None:
    """A JPEG cut short is skipped as 'truncated JPEG'."""
    data = encode(pattern(200, 150), "JPEG")
    with pytest.raises(BadImageError) as err:
        decode_bytes(data[: len(data) // 2], opts())
    assert err.value.reason == "truncated JPEG"


def test_truncated_png() -> None:
    """A PNG cut short is skipped with a reason naming PNG."""
    data = encode(pattern(200, 150), "PNG")
    with pytest.raises(BadImageError) as err:
        decode_bytes(data[: len(data) // 2], opts())
    assert "PNG" in err.value.reason


def test_png_with_damaged_data_is_skipped_not_half_stored() -> None:
    """Deflate data damaged mid-image: Pillow's load fails, so the file is skipped (reading the EXIF first used to
    swallow that failure and leave the half-decoded picture to be stored)."""
    data = bytearray(encode(pattern(64, 48), "PNG"))
    at = data.index(b"IDAT")
    length = struct.unpack(">I", data[at - 4 : at])[0]
    middle = at + 4 + length // 2
    data[middle : middle + 8] = bytes(b ^ 0x55 for b in data[middle : middle + 8])
    with pytest.raises(OSError):
        Image.open(io.BytesIO(bytes(data))).load()
    with pytest.raises(BadImageError) as err:
        decode_bytes(bytes(data), opts())
    assert err.value.reason == "corrupt PNG: unrecognized data stream contents when reading image file"


def test_a_header_pillow_chokes_on_is_a_reason_not_a_crash() -> None:
    """A DDS of a sub-format Pillow has not implemented raises NotImplementedError on open: a reason, never an
    exception out of the decoder (it would kill a worker)."""
    header = bytearray(128)
    header[:4] = b"DDS "
    struct.pack_into("<7I", header, 4, 124, 0x1007, 4, 4, 16, 0, 0)  # size, flags, height, width, pitch
    struct.pack_into("<2I4s", header, 76, 32, 0x4, b"DX10")  # pixel format: FourCC DX10
    dx10 = struct.pack("<5I", 93, 3, 0, 1, 0)  # DXGI format 93 (unimplemented), 2D texture
    with pytest.raises(BadImageError) as err:
        decode_bytes(bytes(header) + dx10 + bytes(64), opts())
    assert err.value.reason.startswith("cannot open: Unimplemented DXGI format 93")


def test_empty_file() -> None:
    """Zero bytes: 'empty file'."""
    with pytest.raises(BadImageError, match="empty file"):
        decode_bytes(b"", opts())


def test_text_is_not_an_image() -> None:
    """A text file named .jpg: 'not an image'."""
    with pytest.raises(BadImageError) as err:
        decode_bytes(b"hello, this is not a picture\n" * 10, opts())
    assert err.value.reason.startswith("not an image")


def test_decompression_bomb_refused_before_decoding() -> None:
    """A small file declaring a huge image is refused by the pixel limit, with its megapixels in the reason."""
    data = encode(Image.new("1", (12000, 11000)), "PNG")  # 132 MP, a few KB on disk
    assert len(data) < 100_000
    with pytest.raises(BadImageError) as err:
        decode_bytes(data, opts(max_pixels=50_000_000))
    assert err.value.reason.startswith("decompression bomb: 132 MP")
    assert "--max-pixels" in err.value.reason


def test_max_pixels_above_pillow_limit_is_honoured() -> None:
    """Raising --max-pixels beyond Pillow's own limit lets a large image through (Pillow's check is replaced)."""
    saved = Image.MAX_IMAGE_PIXELS
    data = encode(Image.new("L", (1000, 1000)), "PNG")
    decode_bytes(data, opts(max_pixels=1_000_000))
    with pytest.raises(BadImageError, match="decompression bomb"):
        decode_bytes(data, opts(max_pixels=999_999))
    restored = Image.MAX_IMAGE_PIXELS
    assert restored is not None and restored == saved  # the global is restored


def test_imageio_fallback_reads_what_pillow_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    """When Pillow cannot identify a file, imageio reads it and the pixels are right."""
    im = pattern(32, 24)

    def refuse(data: bytes) -> Image.Image:
        raise UnidentifiedImageError("cannot identify image file")

    monkeypatch.setattr(decode_mod, "_pillow_open", refuse)
    got = decode_bytes(encode(im, "PNG"), opts(resize_mode="stretch"))
    np.testing.assert_array_equal(got, np.asarray(im))


def test_imageio_fallback_scales_sixteen_bit_rgb() -> None:
    """imageio arrays of uint16 RGB are scaled to 8 bits by their range."""
    arr = np.zeros((4, 4, 3), np.uint16)
    arr[..., 0] = 65535
    img = decode_mod._array_to_image(arr)
    assert img.mode == "RGB" and np.asarray(img)[0, 0].tolist() == [255, 0, 0]


def test_out_buffer_is_filled_in_place() -> None:
    """decode_bytes writes into the given array (no copy) and checks its shape."""
    o = opts()
    out = np.zeros(o.shape, np.uint8)
    result = decode_bytes(encode(pattern(32, 24), "PNG"), o, out)
    assert result is out and out.any()
    with pytest.raises(ValueError):
        decode_bytes(b"x", o, np.zeros((1, 1, 3), np.uint8))


@pytest.mark.parametrize(
    "kw",
    [{"size": 0}, {"size": "12y4"}, {"channels": 2}, {"resize_mode": "zoom"}, {"filter": "sinc"},
     {"pad_color": "not-a-colour"}, {"max_pixels": 0}],
)  # fmt: skip
def test_invalid_options_raise_option_error(kw: dict) -> None:
    """Every invalid option is an OptionError whose message says what to use instead."""
    with pytest.raises(OptionError) as err:
        DecodeOptions(**kw)
    assert ":" in str(err.value)
