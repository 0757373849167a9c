"""Every photo format a phone or camera writes, ingested by the real pipeline, and codecs kept quiet.

Phone formats (HEIC, AVIF, JPEG XL, MPO) are written by Pillow and its plugins from generated photos, each with a
PNG twin of the same pixels; a camera raw is a DNG written here byte by byte from a known image. Codec noise comes
from real codecs (libtiff on a TIFF that asks for WebP, a fax TIFF with damaged data) and from a registered decoder
that writes to fd 2, warns and logs, as C codecs and Python libraries do.
"""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import imgstore
from imgstore.cli import app
from imgstore.decoders import decode_bytes, decoders, register_decoder, unregister_decoder
from imgstore.decoders.pillow import NOT_PHOTOS, PillowDecoder, load_plugins
from imgstore.decoders.raw import EXTENSIONS as RAW_EXTENSIONS
from imgstore.decoders.raw import RawDecoder, looks_raw, rawpy_installed
from imgstore.errors import BadImageError, NotRecognised
from imgstore.ingest import ingest
from imgstore.options import DecodeOptions, IngestOptions, default_extensions
from imgstore.samples import make_photo
from imgstore.vectors import FORMATS

from conftest import encode, pattern, write

SIZE = (80, 60)  # stored width x height; the photos are 4:3 as well, so crop keeps the whole picture
PHONE = {"heic": ("HEIF", {"quality": 90}), "avif": ("AVIF", {"quality": 90}), "jxl": ("JXL", {"quality": 90}),
         "mpo": ("MPO", {"quality": 92})}  # fmt: skip
PER_FORMAT = 6  # 24 phone photos, as in the issue's measurement
MAX_MEAN_ABS = 4.0  # grey levels: the issue's bound between a stored phone photo and its PNG twin's row
EXIF_ORIENTATION = 0x0112


def phone_photo(fmt: str, photo: Image.Image, turned: bool, seed: int, tmp: Path) -> bytes:
    """``photo`` encoded as ``fmt``; ``turned``: stored on its side with EXIF orientation 6, as phones do (a turned
    JPEG XL is a phone JPEG recompressed losslessly, as ``cjxl`` makes them: a native JPEG XL is upright once
    decoded, its orientation being the codestream's). An MPO gets a second, different frame (the other eye of a 3D
    camera): the first must be the one stored."""
    name, params = PHONE[fmt]
    params = dict(params)
    stored = photo
    if turned:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = 6  # "rotate 90 clockwise to display"
        stored = photo.transpose(Image.Transpose.ROTATE_90)
        params["exif"] = exif.tobytes()
        if fmt == "jxl":
            jpeg = write(tmp / f"turned{seed}.jpg", encode(stored, "JPEG", quality=92, exif=params["exif"]))
            with Image.open(jpeg) as im:  # pillow-jxl-plugin recompresses a JPEG opened from a file
                return encode(im, name, lossless_jpeg=True)
    if fmt == "mpo":
        params.update(save_all=True, append_images=[make_photo(stored.width, stored.height, seed + 1000)])
    return encode(stored, name, **params)


@pytest.fixture(scope="module")
def phone_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 phone-format photos (6 each of HEIC, AVIF, JPEG XL, MPO; every third on its side with EXIF orientation 6)
    and a PNG twin of each: ``<fmt>/p<i>.<fmt>`` beside ``<fmt>/p<i>.png``."""
    load_plugins()
    root = tmp_path_factory.mktemp("phone")
    for f, fmt in enumerate(PHONE):
        for i in range(PER_FORMAT):
            seed = 10 * f + i
            photo = make_photo(320, 240, seed)
            data = phone_photo(fmt, photo, turned=i % 3 == 2, seed=seed, tmp=tmp_path_factory.mktemp("jpeg"))
            write(root / fmt / f"p{i}.{fmt}", data)
            write(root / fmt / f"p{i}.png", encode(photo, "PNG"))
    return root


def twin_distances(store_path: Path) -> dict[str, float]:
    """Each stored phone photo's mean absolute difference (grey levels) from its PNG twin's row, by name."""
    with imgstore.open(store_path) as store:
        rows = {name: store[i].astype(np.int16) for i, name in enumerate(store.names)}
    return {
        name: float(np.abs(rows[name] - rows[name.rsplit(".", 1)[0] + ".png"]).mean())
        for name in rows
        if not name.endswith(".png")
    }


def assert_phone_store(store_path: Path) -> None:
    """Every phone photo and twin stored, each photo within MAX_MEAN_ABS of its twin."""
    with imgstore.open(store_path) as store:
        assert len(store) == 2 * len(PHONE) * PER_FORMAT and store.skipped == []
    distances = twin_distances(store_path)
    assert sorted({name.rsplit(".", 1)[1] for name in distances}) == sorted(PHONE)
    far = {name: d for name, d in distances.items() if d > MAX_MEAN_ABS}
    assert not far, far


@pytest.mark.parametrize("workers", [0, 2])
def test_phone_formats_are_stored_close_to_their_png_twins(phone_folder: Path, tmp_path: Path, workers: int) -> None:
    """HEIC, AVIF, JPEG XL and MPO photos (upright and EXIF-turned) are candidates by default and each is stored
    within 4 grey levels of its PNG twin; an MPO's first frame is the one stored."""
    report = ingest(phone_folder, tmp_path / "o.h5", IngestOptions(workers=workers, decode=DecodeOptions(size=SIZE)))
    assert report.count == 48 and report.skipped == []
    assert_phone_store(tmp_path / "o.h5")


@pytest.mark.parametrize("workers", ["0", "2"])
def test_phone_formats_through_the_cli(phone_folder: Path, tmp_path: Path, cli: CliRunner, workers: str) -> None:
    """The same through ``imgstore ingest`` with default extensions; --extensions still narrows to what it names."""
    out = tmp_path / "o.h5"
    result = cli.invoke(app, ["ingest", str(phone_folder), str(out), "--size", "80x60", "--workers", workers, "-q"])
    assert result.exit_code == 0, result.output
    assert_phone_store(out)
    narrow = tmp_path / "heic.h5"
    result = cli.invoke(app, ["ingest", str(phone_folder), str(narrow), "--size", "80x60", "--workers", workers,
                              "--extensions", "heic", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    with imgstore.open(narrow) as store:
        assert store.names == [f"heic/p{i}.heic" for i in range(PER_FORMAT)]


def test_mpo_first_frame_not_the_second(phone_folder: Path) -> None:
    """The MPO's second frame is another picture: decoding gives the first (the fixture's check can fail)."""
    data = (phone_folder / "mpo" / "p0.mpo").read_bytes()
    o = DecodeOptions(size=SIZE)
    first = decode_bytes(data, o).astype(np.int16)
    twin = decode_bytes((phone_folder / "mpo" / "p0.png").read_bytes(), o).astype(np.int16)
    with Image.open(io.BytesIO(data)) as im:
        assert im.n_frames == 2
        im.seek(1)
        second = decode_bytes(encode(im.convert("RGB"), "PNG"), o).astype(np.int16)
    assert np.abs(first - twin).mean() <= MAX_MEAN_ABS < np.abs(second - twin).mean()


def test_native_jpeg_xl_is_upright_whatever_its_exif_says() -> None:
    """A JPEG XL encoded from pixels is shown as libjxl decodes it: its codestream orientation rules, an Exif box
    saying 6 is not applied again (the recompressed-JPEG case, where it is, is in the phone folder)."""
    load_plugins()
    photo = make_photo(120, 90, 7)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    data = encode(photo, "JXL", quality=90, exif=exif.tobytes())
    with Image.open(io.BytesIO(data)) as im:
        assert im.getexif()[EXIF_ORIENTATION] == 6
    o = DecodeOptions(size=SIZE)
    got = decode_bytes(data, o).astype(np.int16)
    assert np.abs(got - decode_bytes(encode(photo, "PNG"), o)).mean() <= MAX_MEAN_ABS


# -- default extensions --------------------------------------------------------------------------------------------


def test_default_extensions_are_what_installed_decoders_read() -> None:
    """Phone formats and every Pillow format people keep pictures in are candidates; non-photo containers and the
    files imgstore writes are not; camera raw extensions exactly when rawpy is installed."""
    exts = set(default_extensions())
    assert set(IngestOptions().extensions) == exts
    wanted = {".heic", ".heif", ".avif", ".jxl", ".mpo", ".dds", ".icns", ".cur", ".blp", ".fli", ".xpm", ".xbm",
              ".pcd", ".rgb", ".bw", ".jpg", ".png", ".tif", ".webp"}  # fmt: skip
    assert wanted <= exts, wanted - exts
    never = {".h5", ".hdf", ".hdf5", ".fits", ".fit", ".pdf", ".eps", ".ps", ".grib", ".bufr", ".mpg", ".wmf", ".npy"}
    never |= {fmt.extension for fmt in FORMATS.values()}  # .fvecs, .u8bin, ...: what export writes
    assert not never & exts, never & exts
    assert not NOT_PHOTOS & exts
    assert (set(RAW_EXTENSIONS) <= exts) is rawpy_installed()
    assert all(e == e.lower() and e.startswith(".") for e in exts)


def test_readme_lists_every_default_extension() -> None:
    """README's "What imgstore reads" names every extension this installation takes by default, and the left-out
    ones it names are not taken."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## What imgstore reads\n", 1)[1].split("\n## ", 1)[0]
    table, rest = section.split("\nNot candidates", 1)
    listed = {word for cell in re.findall(r"`([^`]*)`", table) for word in cell.split() if word.startswith(".")}
    assert set(default_extensions()) <= listed, set(default_extensions()) - listed
    left_out = {word for cell in re.findall(r"`([^`]*)`", rest.split("\n\n", 1)[0]) for word in cell.split()}
    assert ".fits" in left_out and not left_out & set(default_extensions())


def test_extensions_follow_the_registered_pillow_plugins() -> None:
    """Derived, not listed: a format a Pillow plugin registers later joins the defaults (here JPEG XL's own name
    for a made-up format, registered and removed again)."""
    assert ".zzimg" not in default_extensions()
    Image.register_extension("JXL", ".zzimg")
    try:
        assert ".zzimg" in default_extensions()
    finally:
        del Image.EXTENSION[".zzimg"]
    assert ".zzimg" not in default_extensions()


# -- camera raw ---------------------------------------------------------------------------------------------------

BYTE, ASCII, SHORT, LONG, RATIONAL, SRATIONAL = 1, 2, 3, 4, 5, 10
SRGB_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
Entry = tuple[int, int, object]  # (tag, type, values): values a list, or a str for ASCII


def tiff_file(ifds: list[tuple[list[Entry], bytes]]) -> bytes:
    """A little-endian TIFF of one strip per IFD: ``ifds[0]`` is the first IFD, the others are its SubIFDs (tag
    330, filled in here, like StripOffsets, tag 273)."""
    pack = {BYTE: "B", SHORT: "H", LONG: "I", RATIONAL: "II", SRATIONAL: "ii"}

    def raw(kind: int, values: object) -> tuple[int, bytes]:
        if kind == ASCII:
            text = str(values).encode() + b"\0"
            return len(text), text
        items = list(values)  # type: ignore[call-overload]
        if kind in (RATIONAL, SRATIONAL):
            return len(items), b"".join(struct.pack("<" + pack[kind], *v) for v in items)
        return len(items), struct.pack(f"<{len(items)}{pack[kind]}", *items)

    if len(ifds) > 1:
        ifds[0][0].append((330, LONG, [0] * (len(ifds) - 1)))
    sizes = []
    for entries, data in ifds:
        extra = sum(len(b) + len(b) % 2 for b in (raw(k, v)[1] for _, k, v in entries) if len(b) > 4)
        sizes.append((2 + 12 * len(entries) + 4, extra, len(data)))
    starts, at = [], 8
    for head, extra, data_len in sizes:
        starts.append(at)
        at += head + extra + data_len
    out = bytearray(b"II*\0" + struct.pack("<I", 8))
    for (entries, data), start, (head, extra, _) in zip(ifds, starts, sizes):
        filled = {273: [start + head + extra], 330: starts[1:]}
        blob = bytearray()
        table = bytearray(struct.pack("<H", len(entries)))
        for tag, kind, values in sorted(entries, key=lambda e: e[0]):
            count, body = raw(kind, filled.get(tag, values))
            if len(body) > 4:
                offset = start + head + len(blob)
                blob += body + b"\0" * (len(body) % 2)
                body = struct.pack("<I", offset)
            table += struct.pack("<HHI", tag, kind, count) + body.ljust(4, b"\0")
        out += table + struct.pack("<I", 0) + blob + data
    return bytes(out)


def dng_file(rgb: np.ndarray, preview: np.ndarray, orientation: int = 1) -> bytes:
    """A DNG as cameras lay it out: IFD0 an 8-bit RGB ``preview``, its SubIFD the raw image -- ``rgb`` (uint8 sRGB)
    as linear light (value ** 2.2) in 16-bit RGGB Bayer samples, camera RGB = linear sRGB (ColorMatrix1 is
    XYZ -> sRGB), neutral white balance; ``orientation`` the TIFF/EXIF value (6: shown turned 90 clockwise)."""
    h, w, _ = rgb.shape
    linear = (rgb.astype(np.float64) / 255.0) ** 2.2
    cfa = np.empty((h, w))
    cfa[0::2, 0::2], cfa[0::2, 1::2] = linear[0::2, 0::2, 0], linear[0::2, 1::2, 1]
    cfa[1::2, 0::2], cfa[1::2, 1::2] = linear[1::2, 0::2, 1], linear[1::2, 1::2, 2]
    samples = np.round(cfa * 65535).astype("<u2").tobytes()
    ph, pw, _ = preview.shape
    thumb = np.ascontiguousarray(preview, np.uint8).tobytes()
    xyz_to_camera = np.linalg.inv(SRGB_TO_XYZ).ravel()
    ifd0: list[Entry] = [
        (254, LONG, [1]), (256, LONG, [pw]), (257, LONG, [ph]), (258, SHORT, [8, 8, 8]), (259, SHORT, [1]),
        (262, SHORT, [2]), (271, ASCII, "imgstore"), (272, ASCII, "test camera"), (273, LONG, [0]),
        (274, SHORT, [orientation]), (277, SHORT, [3]), (278, LONG, [ph]), (279, LONG, [len(thumb)]), (284, SHORT, [1]),
        (50706, BYTE, [1, 4, 0, 0]), (50707, BYTE, [1, 1, 0, 0]), (50708, ASCII, "imgstore test camera"),
        (50721, SRATIONAL, [(round(v * 10000), 10000) for v in xyz_to_camera]),
        (50728, RATIONAL, [(1, 1)] * 3), (50778, SHORT, [21]),
    ]  # fmt: skip
    raw_ifd: list[Entry] = [
        (254, LONG, [0]), (256, LONG, [w]), (257, LONG, [h]), (258, SHORT, [16]), (259, SHORT, [1]),
        (262, SHORT, [32803]), (273, LONG, [0]), (277, SHORT, [1]), (278, LONG, [h]),
        (279, LONG, [len(samples)]), (284, SHORT, [1]), (33421, SHORT, [2, 2]), (33422, BYTE, [0, 1, 1, 2]),
        (50714, LONG, [0]), (50717, LONG, [65535]),
    ]  # fmt: skip
    return tiff_file([(ifd0, thumb), (raw_ifd, samples)])


# Bounds for a raw developed by LibRaw against its source image: the DNG holds value ** 2.2, LibRaw outputs through
# the BT.709 curve (power 1/2.222 with a linear toe) and brightens by its histogram, so the levels differ by a
# monotone curve -- mean absolute difference 8-11 levels measured on make_photo and pattern images, correlation
# per channel >= 0.993 -- while the structure is the same. A preview read instead (Pillow's reading of a raw) has
# correlation 0 here (a flat grey preview); a Bayer mosaic read as grey has no colour.
RAW_MIN_CORRELATION = 0.98
RAW_MAX_MEAN_ABS = 16.0

needs_rawpy = pytest.mark.skipif(not rawpy_installed(), reason="rawpy is not installed (pip install 'imgstore[raw]')")


def correlations(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Pearson correlation of each channel of two (H, W, C) images."""
    return [float(np.corrcoef(a[..., c].ravel(), b[..., c].ravel())[0, 1]) for c in range(a.shape[-1])]


@pytest.fixture(scope="module")
def raw_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``a.dng`` (of pattern 256x192, a flat grey preview) and its twin ``a.png``; ``b.dng``/``b.png`` of a
    generated photo; ``c.dng`` a photo stored on its side with orientation 6, ``c.png`` upright."""
    root = tmp_path_factory.mktemp("raw")
    grey = np.full((24, 32, 3), 128, np.uint8)
    for name, im in (("a", pattern(256, 192, seed=1)), ("b", make_photo(256, 192, 5))):
        write(root / f"{name}.dng", dng_file(np.asarray(im), grey))
        write(root / f"{name}.png", encode(im, "PNG"))
    upright = make_photo(256, 192, 6)
    turned = np.asarray(upright.transpose(Image.Transpose.ROTATE_90))
    write(root / "c.dng", dng_file(turned, grey.transpose(1, 0, 2), orientation=6))
    write(root / "c.png", encode(upright, "PNG"))
    return root


def test_the_dng_fixture_is_what_pillow_would_misread(raw_folder: Path) -> None:
    """Without the raw decoder Pillow opens the DNG's first image, the preview: why the raw decoder runs first."""
    data = (raw_folder / "a.dng").read_bytes()
    assert looks_raw(data)
    preview = decode_bytes(data, DecodeOptions(size=SIZE), chain=[PillowDecoder()])
    assert (preview == 128).all()


def test_tiffs_stay_pillows() -> None:
    """LibRaw takes some plain 16-bit TIFFs for "flat" raws: they are not raw headers, so Pillow decodes them."""
    grey16 = Image.fromarray(np.asarray(pattern(64, 48).convert("L")).astype(np.uint16) * 200)  # up to 51,000
    for data in (encode(grey16, "TIFF"), encode(pattern(64, 48), "TIFF"), encode(pattern(64, 48), "JPEG")):
        assert not looks_raw(data)
        with pytest.raises(NotRecognised):
            RawDecoder().decode(data, DecodeOptions(size=SIZE), np.empty((60, 80, 3), np.uint8))


@needs_rawpy
@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("workers", ["0", "2"])
def test_dng_is_developed_by_rawpy(raw_folder: Path, tmp_path: Path, cli: CliRunner, workers: str, exact: bool) -> None:
    """A DNG is a default candidate, developed from its raw image (half size without --exact) and turned upright:
    the stored row has its twin's structure and colours (see RAW_MIN_CORRELATION), not the preview's."""
    out = tmp_path / "o.h5"
    args = ["ingest", str(raw_folder), str(out), "--size", "64x48", "--workers", workers, "-q"]
    result = cli.invoke(app, [*args, "--exact"] if exact else args)
    assert result.exit_code == 0, result.output
    with imgstore.open(out) as store:
        assert store.names == ["a.dng", "a.png", "b.dng", "b.png", "c.dng", "c.png"] and store.skipped == []
        for i in (0, 2, 4):
            raw, twin = store[i].astype(np.float64), store[i + 1].astype(np.float64)
            assert min(correlations(raw, twin)) >= RAW_MIN_CORRELATION, correlations(raw, twin)
            assert np.abs(raw - twin).mean() <= RAW_MAX_MEAN_ABS


def test_looks_raw_reads_any_header_without_failing(raw_folder: Path) -> None:
    """Cut anywhere, a DNG's header is looked at without an exception (a bounded walk of the IFDs)."""
    data = (raw_folder / "a.dng").read_bytes()
    seen = {looks_raw(data[:cut]) for cut in range(0, 600, 3)}
    assert seen == {False, True}


@needs_rawpy
def test_broken_raw_is_skipped_with_a_reason(raw_folder: Path) -> None:
    """A DNG cut short is this file's problem: a one-line reason, never an exception out of the chain."""
    data = (raw_folder / "b.dng").read_bytes()
    with pytest.raises(BadImageError) as caught:
        decode_bytes(data[: len(data) // 3], DecodeOptions(size=SIZE))
    # LibRaw's error, and what it printed to stderr meanwhile ("unknown file: Unexpected end of file" for 0.22)
    assert caught.value.reason.startswith("corrupt RAW: Input/output error (") and "\n" not in caught.value.reason


# -- quiet codecs ---------------------------------------------------------------------------------------------------


def tiff_tag(data: bytes, tag: int, value: int) -> bytes:
    """``data`` (a little-endian TIFF) with the SHORT value of ``tag`` in its first IFD set to ``value``."""
    out = bytearray(data)
    ifd = struct.unpack_from("<I", out, 4)[0]
    for i in range(struct.unpack_from("<H", out, ifd)[0]):
        at = ifd + 2 + 12 * i
        if struct.unpack_from("<H", out, at)[0] == tag:
            struct.pack_into("<H", out, at + 8, value)
            return bytes(out)
    raise KeyError(tag)


def webp_tiff() -> bytes:
    """A TIFF whose Compression tag says WebP (50001): libtiff, built without WebP, prints that it is not
    configured and fails."""
    return tiff_tag(encode(pattern(40, 30), "TIFF"), 259, 50001)


def damaged_fax_tiff() -> bytes:
    """A CCITT group 4 TIFF with six bytes of its strip overwritten: libtiff prints "Bad code word" lines and
    Pillow returns an image anyway, the rest of it made up."""
    data = bytearray(encode(pattern(64, 48).convert("1"), "TIFF", compression="group4"))
    start = 8  # Pillow writes the strip right after the header
    data[start + 500 : start + 506] = b"\xff" * 6
    return bytes(data)


@pytest.fixture
def noisy_folder(tmp_path: Path) -> Path:
    """A good PNG, a JPEG with a broken EXIF block (Pillow warns, the picture is fine), the WebP TIFF and the
    damaged fax TIFF."""
    src = tmp_path / "src"
    write(src / "a.png", encode(pattern(40, 30), "PNG"))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 1
    broken = exif.tobytes()[:-4] + b"\xff\xff"  # the IFD promises more than the block holds
    write(src / "b.jpg", encode(pattern(40, 30), "JPEG", exif=broken))
    write(src / "c_webp.tif", webp_tiff())
    write(src / "d_fax.tif", damaged_fax_tiff())
    return src


@pytest.mark.parametrize("workers", ["0", "2"])
def test_codecs_print_nothing_under_quiet(
    noisy_folder: Path, tmp_path: Path, cli: CliRunner, capfd: pytest.CaptureFixture[str], workers: str
) -> None:
    """libtiff writes to fd 2 from C; under ``--quiet`` not a byte reaches the terminal, with workers or without.
    A failed file's reason ends with what libtiff said; damaged pixel data skips a file that decoded; a warning
    about a picture that decoded whole (a broken EXIF block) is dropped."""
    capfd.readouterr()
    result = cli.invoke(app, ["ingest", str(noisy_folder), str(tmp_path / "o.h5"), "--size", "16", "-q",
                              "--workers", workers])  # fmt: skip
    printed = capfd.readouterr()
    assert result.exit_code == 0, result.output
    assert (printed.err, printed.out, result.stderr) == ("", "", "")
    assert result.stdout.startswith("ingested 2 images, skipped 2 ")  # the summary, all --quiet keeps
    with imgstore.open(tmp_path / "o.h5") as store:
        assert store.names == ["a.png", "b.jpg"]
        reasons = dict(store.skipped)
    assert set(reasons) == {"c_webp.tif", "d_fax.tif"}
    assert reasons["c_webp.tif"].endswith("WEBP compression support is not configured.)"), reasons
    assert reasons["d_fax.tif"].startswith("damaged data, decoded only in part (Fax4Decode: Bad code word at line")
    assert all("\n" not in r for r in reasons.values())


class NoisyDecoder:
    """Claims ``NOISY`` files and talks the way codecs do: C-level writes to fd 2, a warning, a log record; then
    fails for ``NOISY fail`` and decodes anything else as a grey image."""

    name = "noisy"
    extensions = (".noisy",)

    def decode(self, data: bytes, opts: DecodeOptions, out: np.ndarray) -> None:
        if not data.startswith(b"NOISY"):
            raise NotRecognised("")
        os.write(2, b"noisylib: bad marker 0x42\n")
        warnings.warn("noisy: odd header", UserWarning, stacklevel=1)
        logging.getLogger("noisy").warning("length field ignored")
        if data.startswith(b"NOISY fail"):
            raise BadImageError("corrupt NOISY")
        out[...] = 128


@pytest.fixture
def noisy() -> Iterator[None]:
    register_decoder(NoisyDecoder(), first=True)
    try:
        yield
    finally:
        unregister_decoder("noisy")


@pytest.mark.usefixtures("noisy")
@pytest.mark.parametrize("workers", [0, 2])
def test_what_a_decoder_prints_warns_and_logs_is_captured(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], workers: int
) -> None:
    """fd 2, warnings and log records inside a decode never reach the terminal; a failure's reason carries them
    on one line, in that order; a file that decodes is stored and its chatter dropped."""
    assert decoders()[0].name == "noisy"
    write(tmp_path / "src" / "a.noisy", b"NOISY ok")
    write(tmp_path / "src" / "b.noisy", b"NOISY fail")
    capfd.readouterr()
    report = ingest(tmp_path / "src", tmp_path / "o.h5", IngestOptions(workers=workers, decode=DecodeOptions(size=8)))
    printed = capfd.readouterr()
    assert (printed.out, printed.err) == ("", "")
    assert report.count == 1
    assert report.skipped == [
        ("b.noisy", "corrupt NOISY (noisylib: bad marker 0x42; noisy: odd header; noisy: length field ignored)")
    ]


def test_stderr_is_restored_after_every_decode(capfd: pytest.CaptureFixture[str]) -> None:
    """After a decode that worked and one that failed, fd 2 is the terminal's again (what is written shows)."""
    decode_bytes(encode(pattern(8, 8), "PNG"), DecodeOptions(size=8))
    with pytest.raises(BadImageError):
        decode_bytes(webp_tiff(), DecodeOptions(size=8))
    capfd.readouterr()
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


@pytest.mark.parametrize("where", ["redirecting", "restoring"])
def test_ctrl_c_while_stderr_is_switched_leaves_it_restored(
    where: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A Ctrl-C that lands while fd 2 is being redirected or restored (``--workers 0`` decodes in the main thread)
    still leaves fd 2 the terminal's: the ``Interrupted`` line and any error after it are seen."""
    from imgstore.decoders import quiet

    calls = []
    real = quiet._flush_python_stderr

    def flush_then_ctrl_c() -> None:  # called once while redirecting and once while restoring
        real()
        calls.append(1)
        if (where == "redirecting") == (len(calls) == 1):
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(quiet, "_flush_python_stderr", flush_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        decode_bytes(encode(pattern(8, 8), "PNG"), DecodeOptions(size=8))
    monkeypatch.setattr(quiet, "_flush_python_stderr", real)
    capfd.readouterr()
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
    decode_bytes(encode(pattern(8, 8), "PNG"), DecodeOptions(size=8))  # and the next decode redirects again
    assert quiet._FD2.depth == 0


def test_decodes_overlapping_in_threads_each_get_their_own_warnings_and_leave_none_behind() -> None:
    """Two threads decoding at once (a threaded Dask worker with ``workers=0``): each decode gets the warnings and
    log records raised in its own thread, and when both are done the process's warning machinery and root logger
    are as they were (interleaved ``catch_warnings`` left every later warning appended to a dead decode's list)."""
    import threading

    from imgstore.decoders.quiet import codec_output

    before = (warnings.showwarning, list(logging.getLogger().handlers))
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    said = {}

    def first() -> None:
        with codec_output() as s:
            a_in.set()
            b_in.wait(5)
            warnings.warn("from the first", UserWarning, stacklevel=1)
        said["first"] = s.lines
        a_out.set()

    def second() -> None:
        a_in.wait(5)
        with codec_output() as s:
            b_in.set()
            a_out.wait(5)
            warnings.warn("from the second", UserWarning, stacklevel=1)
            logging.getLogger("codec").warning("logged by the second")
        said["second"] = s.lines

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert said == {"first": ["from the first"], "second": ["from the second", "codec: logged by the second"]}
    assert (warnings.showwarning, list(logging.getLogger().handlers)) == before
    with pytest.warns(UserWarning, match="after both"):
        warnings.warn("after both", UserWarning, stacklevel=1)


class MultiLineDecoder:
    """Claims ``MULTI`` files and fails with a reason of several lines, as a plugin's exception text can be."""

    name = "multiline"
    extensions = (".multi",)

    def decode(self, data: bytes, opts: DecodeOptions, out: np.ndarray) -> None:
        if not data.startswith(b"MULTI"):
            raise NotRecognised("")
        raise BadImageError("corrupt MULTI:\n  bad block\r\n  at 12")


@pytest.mark.parametrize("workers", [0, 1])
def test_a_reason_of_several_lines_is_stored_on_one(tmp_path: Path, workers: int) -> None:
    """Whatever a decoder (or a source) puts in a reason, the skipped list holds one line per file."""
    register_decoder(MultiLineDecoder(), first=True)
    try:
        write(tmp_path / "src" / "a.multi", b"MULTI data")
        options = IngestOptions(workers=workers, decode=DecodeOptions(size=8))
        report = ingest(tmp_path / "src", tmp_path / "o.h5", options)
    finally:
        unregister_decoder("multiline")
    assert report.skipped == [("a.multi", "corrupt MULTI: bad block at 12")]


def test_codec_text_that_changes_between_runs_is_left_out_of_the_reason() -> None:
    """OpenCV (one of imageio's plugins when installed) starts each line it prints with the seconds since it loaded
    and names imageio's temporary file: two runs over the same bad file must still record the same reason, or a
    resumed store differs from an uninterrupted one. What the codec said is kept, the run's details are not."""
    from imgstore.decoders.quiet import codec_output

    def said(seconds: str, temp: str) -> list[str]:
        with codec_output() as s:
            os.write(2, f"[ WARN:0@{seconds}] global grfmt_png.cpp:834 read_chunk user chunk data is too large\n".encode())
            os.write(2, f"[ERROR:0@{seconds}] global loadsave.cpp:1049 imcount_ imcount_('{temp}'): can't read\n".encode())
        return s.lines

    first, second = said("0.022", "/tmp/imageio_b0sx8x2x"), said("1.5", "/var/tmp/imageio_q1w2e3r4.png")
    assert first == second == [
        "grfmt_png.cpp:834 read_chunk user chunk data is too large",
        "loadsave.cpp:1049 imcount_ imcount_('<temporary file>'): can't read",
    ]


def test_phone_plugins_load_when_a_file_needs_them(phone_folder: Path, tmp_path: Path) -> None:
    """HEIC/HEIF and JPEG XL are registered on the first file Pillow's own plugins do not know, in whichever process
    decodes it: a fresh ``imgstore ingest --extensions heic,jxl,jpg`` (its parent never lists the default
    extensions, so it never loads them) stores every photo as an in-process ingest does; decoding JPEGs and PNGs
    alone never imports them."""
    import subprocess
    import sys

    out, ref = tmp_path / "fresh.h5", tmp_path / "ref.h5"
    cmd = [sys.executable, "-m", "imgstore", "ingest", str(phone_folder), str(out), "--size", "80x60", "-q",
           "--extensions", "heic,jxl,jpg", "--workers", "2"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ingest(phone_folder, ref, IngestOptions(workers=0, extensions="heic,jxl,jpg", decode=DecodeOptions(size=SIZE)))
    with imgstore.open(out) as got, imgstore.open(ref) as want:
        kinds = {name.split("/")[0] for name in want.names}
        assert {"heic", "jxl"} <= kinds and len(got) == len(want) and got.names == want.names
        assert all(np.array_equal(got[i], want[i]) for i in range(len(want)))
    code = (
        "import sys, io; from PIL import Image; from imgstore.decoders import decode_bytes; "
        "from imgstore.options import DecodeOptions\n"
        "for fmt in ('JPEG', 'PNG'):\n"
        "    buf = io.BytesIO(); Image.new('RGB', (64, 48), (10, 200, 30)).save(buf, fmt)\n"
        "    decode_bytes(buf.getvalue(), DecodeOptions(size=16))\n"
        "print(sorted(m for m in ('pillow_heif', 'pillow_jxl') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
