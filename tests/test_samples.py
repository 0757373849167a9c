"""Tests for imgstore.samples: the generated photos and corpora the demo, ingest tests and benchmarks rely on."""

from __future__ import annotations

import os
import struct
import sys
import warnings
import zlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image, ImageOps

from imgstore.errors import OptionError
from imgstore.samples import (
    BOMB_SIZE,
    SampleManifest,
    escape_relpath,
    main,
    make_photo,
    write_jpeg_corpus,
    write_sample_corpus,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> SampleManifest:
    return write_sample_corpus(tmp_path_factory.mktemp("corpus"))


def _open(path: Path) -> Image.Image:
    # The corrupt-EXIF file makes Pillow warn; that is the point of the file, not a test failure.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        im = Image.open(path)
        im.load()
    return im


def _mad(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


def _walk(root: Path) -> set[str]:
    found = set()
    for dirpath, _, files in os.walk(root):
        for name in files:
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            found.add(escape_relpath(rel))
    return found


# -- make_photo ------------------------------------------------------------------------------------------------


def test_make_photo_size_mode_and_determinism() -> None:
    """Same seed -> same pixels; another seed -> different pixels; RGB of the requested size."""
    a, b, c = make_photo(97, 61, 5), make_photo(97, 61, 5), make_photo(97, 61, 6)
    assert a.mode == "RGB" and a.size == (97, 61)
    assert a.tobytes() == b.tobytes()
    assert _mad(a, c) > 10


def test_make_photo_is_asymmetric() -> None:
    """Mirrored, flipped and rotated versions differ clearly from the original (orientation errors show)."""
    im = make_photo(160, 160, 3)  # square, so even the transposes keep the size
    for method in Image.Transpose:
        assert _mad(im, im.transpose(method)) > 10, method


def test_make_photo_has_grain_and_sky_on_top() -> None:
    """There is pixel noise, and the top rows (sky) are bluer than the bottom rows (ground)."""
    arr = np.asarray(make_photo(200, 150, 1), dtype=np.int16)
    assert np.abs(np.diff(arr[:5, :, 2], axis=1)).mean() > 0.5
    top, bottom = arr[:10].mean(axis=(0, 1)), arr[-10:].mean(axis=(0, 1))
    assert top[2] - top[0] > bottom[2] - bottom[0]


def test_make_photo_large_is_the_same_picture() -> None:
    """A 12 MP photo (its gradients computed on a coarse grid and upscaled) is the small photo of the same seed at
    full resolution, with grain at every pixel: shrunk, it matches the small one, and not another seed's."""
    im = make_photo(4000, 3000, 0)
    assert im.size == (4000, 3000) and im.mode == "RGB"
    shrunk = im.resize((400, 300), Image.Resampling.BOX)
    assert _mad(shrunk, make_photo(400, 300, 0)) < 6
    assert _mad(shrunk, make_photo(400, 300, 1)) > 15
    top = np.asarray(im.crop((0, 0, 400, 5)), dtype=np.int16)
    assert np.abs(np.diff(top[:, :, 2], axis=1)).mean() > 0.5


@pytest.mark.parametrize("args", [(0, 10, 1), (10, -1, 1), (10, 10, -1), (10.5, 10, 1)])
def test_make_photo_rejects_bad_arguments(args: tuple) -> None:
    """Non-positive or non-integer sizes and negative seeds raise OptionError."""
    with pytest.raises(OptionError):
        make_photo(*args)


# -- write_sample_corpus: structure ------------------------------------------------------------------------------


def test_manifest_lists_every_file_exactly_once(corpus: SampleManifest) -> None:
    """good + bad + hidden + ignored is exactly the set of files on disk, with no overlaps."""
    groups = [set(corpus.good), set(corpus.bad), set(corpus.hidden), set(corpus.ignored)]
    assert sum(map(len, groups)) == len(set().union(*groups))
    assert set().union(*groups) == _walk(corpus.root)
    assert set(corpus.paths) == set().union(*groups)
    assert all(corpus.path(rel).exists() for rel in corpus.paths)


def test_manifest_lists_are_sorted_and_consistent(corpus: SampleManifest) -> None:
    """good is sorted; modes covers exactly the good files; reference and orientation point at good files."""
    assert corpus.good == sorted(corpus.good)
    assert set(corpus.modes) == set(corpus.good)
    assert set(corpus.reference) <= set(corpus.good)
    assert set(corpus.orientation) <= set(corpus.reference)


def test_class_folders(corpus: SampleManifest) -> None:
    """Three named class folders with 8 ordinary JPEGs each, sizes around 320x240, some portrait."""
    assert corpus.classes == ["cat", "dog", "fox"]
    sizes = []
    for name in corpus.classes:
        ordinary = [g for g in corpus.good if g.startswith(f"{name}/{name}_")]
        assert len(ordinary) == 8
        for rel in ordinary:
            im = _open(corpus.path(rel))
            assert im.format == "JPEG" and im.mode == "RGB"
            sizes.append(im.size)
    assert all(min(s) >= 0.8 * 240 - 1 and max(s) <= 1.25 * 320 + 1 for s in sizes)
    assert any(w < h for w, h in sizes) and any(w > h for w, h in sizes)
    assert len(set(sizes)) > 10


def test_bad_hidden_and_ignored_files(corpus: SampleManifest) -> None:
    """The bad files carry the four reason categories; hidden and ignored files are where promised."""
    assert sorted(corpus.bad.values()) == ["decompression bomb", "empty", "not an image", "truncated"]
    assert {rel.split("/")[-1] for rel in corpus.bad} == {"truncated.jpg", "empty.jpg", "not_an_image.png", "bomb.png"}
    assert corpus.hidden == ["cat/.hidden.jpg", "cat/.thumbs/x.jpg"]
    assert corpus.ignored == ["notes.md", "odd/readme.txt"]


def test_include_odd_false_writes_only_class_folders(tmp_path: Path) -> None:
    """Without odd files, the corpus is just the ordinary class JPEGs."""
    m = write_sample_corpus(tmp_path, classes=2, per_class=3, include_odd=False)
    assert m.good == [f"{c}/{c}_{k:03d}.jpg" for c in ("cat", "dog") for k in range(3)]
    assert not (m.bad or m.hidden or m.ignored or m.orientation)
    assert _walk(tmp_path) == set(m.good)


def test_many_classes_get_generic_names(tmp_path: Path) -> None:
    """Beyond the named classes, folders are class_NN; bad files still go round the class folders."""
    m = write_sample_corpus(tmp_path, classes=14, per_class=1, include_odd=False)
    assert m.classes[-2:] == ["class_12", "class_13"]
    assert len(set(m.classes)) == 14


def test_sample_corpus_rejects_bad_options(tmp_path: Path) -> None:
    """Invalid options raise OptionError before anything is written."""
    for kwargs in ({"classes": 0}, {"per_class": -1}, {"seed": -3}, {"size": (0, 10)}, {"size": (10,)}):
        with pytest.raises(OptionError):
            write_sample_corpus(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


# -- write_sample_corpus: the good odd files ---------------------------------------------------------------------


def test_every_good_file_opens_in_its_promised_mode(corpus: SampleManifest) -> None:
    """Pillow opens and fully decodes each good file, reporting the mode the manifest promises."""
    for rel in corpus.good:
        assert _open(corpus.path(rel)).mode == corpus.modes[rel], rel


@pytest.mark.parametrize(
    ("rel", "mode", "fmt"),
    [
        ("odd/gray.jpg", "L", "JPEG"),
        ("odd/gray.png", "L", "PNG"),
        ("odd/bilevel.png", "1", "PNG"),
        ("odd/rgba.png", "RGBA", "PNG"),
        ("odd/gray_alpha.png", "LA", "PNG"),
        ("odd/palette_transparent.png", "P", "PNG"),
        ("odd/animated.gif", "P", "GIF"),
        ("odd/gray16.png", "I;16", "PNG"),
        ("odd/rgb16.png", "RGB", "PNG"),
        ("odd/float32.tif", "F", "TIFF"),
        ("odd/int32.tif", "I", "TIFF"),
        ("odd/cmyk.jpg", "CMYK", "JPEG"),
        ("odd/photo.webp", "RGB", "WEBP"),
        ("odd/photo.bmp", "RGB", "BMP"),
        ("odd/photo.tif", "RGB", "TIFF"),
        ("odd/UPPER.JPG", "RGB", "JPEG"),
        ("odd/with spaces.jpg", "RGB", "JPEG"),
        ("odd/café ñ 写真.jpg", "RGB", "JPEG"),
        ("odd/corrupt_exif.jpg", "RGB", "JPEG"),
    ],
)
def test_odd_file_format_and_mode(corpus: SampleManifest, rel: str, mode: str, fmt: str) -> None:
    """Each named odd file exists, is good, and has the documented format and mode."""
    assert rel in corpus.good
    im = _open(corpus.path(rel))
    assert (im.format, im.mode) == (fmt, mode)
    assert im.size == (320, 240)


def test_alpha_files_have_real_transparency(corpus: SampleManifest) -> None:
    """RGBA and LA alpha channels hold fully transparent, partial and opaque pixels."""
    for rel in ("odd/rgba.png", "odd/gray_alpha.png"):
        alpha = np.asarray(_open(corpus.path(rel)).getchannel("A"))
        assert alpha.min() == 0 and alpha.max() == 255
        assert ((alpha > 0) & (alpha < 255)).mean() > 0.3


def test_palette_png_has_a_transparency_index(corpus: SampleManifest) -> None:
    """The palette PNG has a tRNS index that is actually used by some pixels."""
    im = _open(corpus.path("odd/palette_transparent.png"))
    assert im.info["transparency"] == 255
    assert im.has_transparency_data
    assert (np.asarray(im) == 255).mean() > 0.02
    assert (np.asarray(im.convert("RGBA"))[..., 3] == 0).mean() > 0.02


def test_animated_gif_first_frame_is_distinguishable(corpus: SampleManifest) -> None:
    """The GIF has several frames, the first matching its reference photo and differing from the second."""
    rel = "odd/animated.gif"
    im = Image.open(corpus.path(rel))
    assert im.n_frames == 3 and im.is_animated
    first = im.convert("RGB")
    im.seek(1)
    second = im.convert("RGB")
    expected = make_photo(*corpus.reference[rel])
    assert _mad(first, expected) < 8
    assert _mad(second, expected) > 20


def test_gray16_uses_full_16_bit_range(corpus: SampleManifest) -> None:
    """The I;16 PNG spans 0..65535 and its values are not just 8-bit levels times 257."""
    arr = np.asarray(_open(corpus.path("odd/gray16.png")))
    assert arr.dtype.itemsize == 2 or arr.max() > 255
    assert int(arr.min()) == 0 and int(arr.max()) == 65535
    assert np.any(arr.astype(np.int64) % 257 != 0)


def _read_png_rgb16(path: Path) -> np.ndarray:
    """Decode a 16-bit RGB PNG without Pillow: check chunk CRCs, inflate IDAT, undo filter 0 (the only one used)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour, interlace) == (16, 2, 0)
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), dtype=np.uint8).reshape(height, 1 + width * 6)
    assert not rows[:, 0].any()
    return rows[:, 1:].copy().view(">u2").reshape(height, width, 3).astype(np.uint16)


def test_rgb16_png_is_a_valid_16_bit_png(corpus: SampleManifest) -> None:
    """The hand-made PNG is 16-bit RGB whose high bytes are the reference photo; Pillow reads those high bytes."""
    rel = "odd/rgb16.png"
    arr = _read_png_rgb16(corpus.path(rel))
    assert arr.shape == (240, 320, 3) and arr.max() > 255
    assert len(np.unique(arr & 0xFF)) > 200  # the low bytes carry information too
    expected = np.asarray(make_photo(*corpus.reference[rel]))
    assert np.array_equal((arr >> 8).astype(np.uint8), expected)
    assert np.array_equal(np.asarray(_open(corpus.path(rel))), expected)


def test_rgb16_png_decodes_with_imageio_as_uint16(corpus: SampleManifest) -> None:
    """imageio.v3.imread gives (H, W, 3) uint16 with values > 255, when it has a plugin that keeps 16 bits."""
    rel = "odd/rgb16.png"
    arr = iio.imread(corpus.path(rel))
    if arr.dtype == np.uint8:
        # imageio's default pillow plugin gets 8-bit RGB from Pillow, which cannot decode 16-bit RGB.
        assert np.array_equal(arr, np.asarray(make_photo(*corpus.reference[rel])))
        pytest.skip("no installed imageio plugin decodes 16-bit RGB PNG as uint16 (the pillow plugin gives uint8)")
    assert arr.dtype == np.uint16 and arr.shape == (240, 320, 3)
    assert arr.max() > 255
    assert np.array_equal(arr, _read_png_rgb16(corpus.path(rel)))


def test_float_and_int_tiffs(corpus: SampleManifest) -> None:
    """The F TIFF holds floats in [0, 1]; the I TIFF holds ints up to 100000 (beyond 16 bits)."""
    f = np.asarray(_open(corpus.path("odd/float32.tif")))
    assert f.dtype == np.float32 and f.min() == 0.0 and f.max() == 1.0
    assert len(np.unique(f)) > 256
    i = np.asarray(_open(corpus.path("odd/int32.tif")))
    assert i.dtype == np.int32 and i.min() == 0 and i.max() == 100_000


def test_oriented_jpegs_recover_the_upright_photo(corpus: SampleManifest) -> None:
    """Each orientation 1..8 is tagged, stored transformed, and exif_transpose gives back the upright photo."""
    assert sorted(corpus.orientation.values()) == list(range(1, 9))
    for rel, orientation in corpus.orientation.items():
        im = _open(corpus.path(rel))
        assert im.getexif()[0x0112] == orientation
        width, height, _ = corpus.reference[rel]
        assert im.size == ((height, width) if orientation >= 5 else (width, height))
        upright = ImageOps.exif_transpose(im)
        expected = make_photo(*corpus.reference[rel])
        assert _mad(upright, expected) < 8, rel
        if orientation != 1 and orientation < 5:
            # Without the transpose the pixels are clearly wrong: the test above is not vacuous.
            assert _mad(im, expected) > 15, rel


def test_every_reference_matches_its_file(corpus: SampleManifest) -> None:
    """For every file with a reference, the upright RGB decode is close to make_photo(*reference)."""
    assert len(corpus.reference) >= 24 + 8 + 8
    for rel, ref in corpus.reference.items():
        im = ImageOps.exif_transpose(_open(corpus.path(rel))).convert("RGB")
        assert _mad(im, make_photo(*ref)) < 8, rel


def test_odd_named_files_hold_distinct_photos(corpus: SampleManifest) -> None:
    """Files with odd names are not copies of one another, so a test can tell them apart."""
    refs = [
        corpus.reference[rel]
        for rel in corpus.good
        if rel.startswith("odd/")
        and rel.endswith((".jpg", ".JPG"))
        and rel not in corpus.orientation
        and rel in corpus.reference
    ]
    assert len(refs) >= 4 and len(set(refs)) == len(refs)


def test_corrupt_exif_jpeg_is_good(corpus: SampleManifest) -> None:
    """The corrupt-EXIF JPEG carries an Exif block that yields no tags, yet its pixels decode fine."""
    rel = "odd/corrupt_exif.jpg"
    im = _open(corpus.path(rel))
    assert im.info["exif"].startswith(b"Exif\x00\x00")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Image.open(corpus.path(rel)) as fresh:
            exif = fresh.getexif()
    assert 0x0112 not in exif
    assert any("Corrupt EXIF" in str(w.message) for w in caught)
    assert rel not in corpus.orientation


@pytest.mark.skipif(sys.platform != "linux", reason="other file systems may refuse non-UTF-8 names")
def test_non_utf8_name_is_recorded_escaped(corpus: SampleManifest) -> None:
    """The b'bad-\\xff-name.jpg' file exists under its raw bytes and is recorded with a literal backslash."""
    rel = "odd/bad-\\xff-name.jpg"
    assert rel in corpus.good
    raw = os.path.join(os.fsencode(corpus.root), b"odd", b"bad-\xff-name.jpg")
    assert os.path.isfile(raw)
    assert os.fsencode(corpus.path(rel)) == raw
    assert _open(corpus.path(rel)).mode == "RGB"


def test_hidden_files_are_valid_jpegs(corpus: SampleManifest) -> None:
    """Hidden files are real JPEGs: an ingest must skip them for being hidden, not for being broken."""
    for rel in corpus.hidden:
        assert _open(corpus.path(rel)).format == "JPEG"


# -- write_sample_corpus: the bad files --------------------------------------------------------------------------


def _bad(corpus: SampleManifest, reason: str) -> Path:
    (rel,) = [rel for rel, why in corpus.bad.items() if why == reason]
    return corpus.path(rel)


def test_truncated_jpeg_fails_to_decode(corpus: SampleManifest) -> None:
    """The truncated JPEG has a valid header but decoding its pixels fails."""
    path = _bad(corpus, "truncated")
    with Image.open(path) as im:
        assert im.format == "JPEG"
        with pytest.raises(OSError, match="truncated"):
            im.load()


def test_empty_and_text_files(corpus: SampleManifest) -> None:
    """empty.jpg has zero bytes; not_an_image.png is text that Pillow cannot identify."""
    empty = _bad(corpus, "empty")
    assert empty.name == "empty.jpg" and empty.stat().st_size == 0
    text = _bad(corpus, "not an image")
    assert text.name == "not_an_image.png"
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(text)


def test_bomb_declares_huge_size_but_is_small(corpus: SampleManifest) -> None:
    """The bomb's IHDR declares > 200 MP, the file is < 2 MB, and Pillow refuses it before decoding."""
    path = _bad(corpus, "decompression bomb")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == BOMB_SIZE and width * height > 200_000_000
    assert len(data) < 2_000_000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)


# -- determinism and the command line ----------------------------------------------------------------------------


def test_sample_corpus_is_deterministic(tmp_path: Path) -> None:
    """Two runs with the same seed write byte-identical files; another seed changes them."""
    a = write_sample_corpus(tmp_path / "a", classes=2, per_class=2, seed=7)
    b = write_sample_corpus(tmp_path / "b", classes=2, per_class=2, seed=7)
    c = write_sample_corpus(tmp_path / "c", classes=2, per_class=2, seed=8)
    assert a.good == b.good and a.reference == b.reference
    (bomb,) = [rel for rel, why in a.bad.items() if why == "decompression bomb"]
    for rel in ("cat/cat_000.jpg", "odd/orient_6.jpg", "odd/rgb16.png", "odd/animated.gif", "odd/gray16.png", bomb):
        assert a.path(rel).read_bytes() == b.path(rel).read_bytes(), rel
    assert a.path("cat/cat_000.jpg").read_bytes() != c.path("cat/cat_000.jpg").read_bytes()


def test_main_writes_corpus_and_prints_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """python -m imgstore.samples OUTDIR --per-class 2 --seed 1 writes the corpus and prints one line."""
    out = tmp_path / "samples"
    assert main([str(out), "--per-class", "2", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and str(out) in printed
    expected = write_sample_corpus(tmp_path / "again", per_class=2, seed=1)
    assert _walk(out) == _walk(expected.root)


def test_main_reports_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A negative seed gives 'Error: ...' on stderr and exit code 1."""
    assert main([str(tmp_path / "x"), "--seed", "-1"]) == 1
    assert capsys.readouterr().err.startswith("Error: seed must be")


# -- write_jpeg_corpus -------------------------------------------------------------------------------------------


def test_jpeg_corpus_count_size_and_classes(tmp_path: Path) -> None:
    """count JPEGs of exactly size, spread evenly over class_NN folders, all different."""
    paths = write_jpeg_corpus(tmp_path, count=23, size=(64, 48), classes=5, seed=1)
    assert len(paths) == 23 and all(p.is_file() for p in paths)
    folders = sorted(d.name for d in tmp_path.iterdir() if d.is_dir())
    assert folders == [f"class_{c:02d}" for c in range(5)]
    counts = [len(list((tmp_path / f).glob("*.jpg"))) for f in folders]
    assert counts == [5, 5, 5, 4, 4]  # file i goes to class i % 5
    digests = set()
    for p in paths:
        with Image.open(p) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (64, 48))
        digests.add(p.read_bytes())
    assert len(digests) == 23


def test_jpeg_corpus_reuses_existing_files(tmp_path: Path) -> None:
    """A rerun with the same arguments leaves the files untouched; a different count rewrites and prunes."""
    paths = write_jpeg_corpus(tmp_path, count=12, size=(40, 30), classes=3)
    stamps = {p: p.stat().st_mtime_ns for p in paths}
    os.utime(paths[0], ns=(1, 1))  # a rewrite would reset this
    again = write_jpeg_corpus(tmp_path, count=12, size=(40, 30), classes=3)
    assert again == paths
    assert paths[0].stat().st_mtime_ns == 1
    assert all(p.stat().st_mtime_ns == stamps[p] for p in paths[1:])

    fewer = write_jpeg_corpus(tmp_path, count=5, size=(40, 30), classes=3)
    on_disk = sorted(tmp_path.glob("class_*/img_*.jpg"))
    assert on_disk == sorted(fewer) and len(on_disk) == 5
    assert paths[0].stat().st_mtime_ns != 1


def test_jpeg_corpus_regenerates_wrong_size(tmp_path: Path) -> None:
    """A file of the wrong size (or a missing file) makes the next run regenerate the corpus."""
    paths = write_jpeg_corpus(tmp_path, count=4, size=(40, 30), classes=2)
    Image.new("RGB", (10, 10)).save(paths[2], "JPEG")
    paths[3].unlink()
    write_jpeg_corpus(tmp_path, count=4, size=(40, 30), classes=2)
    for p in paths:
        with Image.open(p) as im:
            assert im.size == (40, 30)


def test_jpeg_corpus_is_deterministic_and_worker_independent(tmp_path: Path) -> None:
    """The same seed gives the same bytes whether written by one thread or several."""
    a = write_jpeg_corpus(tmp_path / "a", count=8, size=(48, 32), classes=2, seed=3)
    b = write_jpeg_corpus(tmp_path / "b", count=8, size=(48, 32), classes=2, seed=3, workers=3)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_jpeg_corpus_rejects_bad_options(tmp_path: Path) -> None:
    """Invalid counts, sizes, class counts, qualities and worker counts raise OptionError."""
    bad = [{"count": -1}, {"size": (0, 5)}, {"classes": 0}, {"quality": 0}, {"workers": 0}]
    for override in bad:
        kwargs = {"count": 2, "size": (8, 8), **override}
        with pytest.raises(OptionError):
            write_jpeg_corpus(tmp_path, **kwargs)
