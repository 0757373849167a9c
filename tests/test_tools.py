"""verify, preview and extract: on real stores, on damaged stores, through the library and the CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

import imgstore
from conftest import encode, pattern, write
from imgstore.cli import app
from imgstore.errors import OptionError, OutputExistsError
from imgstore.ingest import ingest
from imgstore.options import DecodeOptions, IngestOptions
from imgstore.tools import GAP, export_file_name, extract_images, make_preview, parse_indices, verify_store
from imgstore.writer import ImageIndexer

COLOURS = [(255, 0, 0), (0, 200, 0), (0, 0, 255), (250, 250, 0), (0, 250, 250), (128, 0, 128), (90, 90, 90)]


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """Solid-colour photos in two class folders (each a different colour), plus a broken file."""
    root = tmp_path / "src"
    for i, colour in enumerate(COLOURS):
        write(root / ("warm" if i % 2 else "cool") / f"{i}.png", encode(Image.new("RGB", (40, 30), colour), "PNG"))
    write(root / "cool" / "broken.jpg", b"\xff\xd8 broken")
    return root


@pytest.fixture
def store(src: Path, tmp_path: Path) -> Path:
    """The folder ingested at 16x16 with folder labels."""
    out = tmp_path / "s.h5"
    ingest(src, out, IngestOptions(decode=DecodeOptions(size=16), labels="folder", workers=0))
    return out


# -- verify -------------------------------------------------------------------------------------------------------
def test_sound_store_verifies(store: Path, src: Path, runner) -> None:  # type: ignore[no-untyped-def]
    """A fresh store has no problem, with or without --sources; the CLI says OK and exits 0."""
    report = verify_store(store, sources=src)
    assert report.ok and report.checked == len(COLOURS) and report.problems == []
    result = runner.invoke(app, ["verify", str(store), "--sources", str(src), "-q"])
    assert result.exit_code == 0 and result.stdout.strip() == f"OK: {len(COLOURS)} images verified in {store}"


def _problems(path: Path, **kw: object) -> list[str]:
    report = verify_store(path, **kw)  # type: ignore[arg-type]
    assert not report.ok
    return report.problems


def test_count_beyond_rows(store: Path) -> None:
    """A count larger than the rows on disk is a problem naming both numbers."""
    with h5py.File(store, "r+") as f:
        f.attrs["count"] = 20
    assert any("images has 7 rows" in p and "count is 20" in p for p in _problems(store))


def test_names_shorter_than_images(store: Path) -> None:
    """image_names with fewer rows than count is reported."""
    with h5py.File(store, "r+") as f:
        f["image_names"].resize((5,))
    assert any("image_names has 5 rows" in p for p in _problems(store))


def test_duplicate_names(store: Path) -> None:
    """Two rows with one name are reported with the name."""
    with h5py.File(store, "r+") as f:
        f["image_names"][1] = f["image_names"][0]
    assert "name 'cool/0.png' appears 2 times (rows 0, 1)" in _problems(store)


def test_labels_out_of_range(store: Path) -> None:
    """A label with no class name is reported."""
    with h5py.File(store, "r+") as f:
        f["labels"][2] = 9
    assert any("label" in p and "9" in p for p in _problems(store))


def test_corrupted_chunk_is_named(src: Path, tmp_path: Path) -> None:
    """Garbage written over one compressed chunk on disk: verify names the row that cannot be read."""
    out = tmp_path / "gz.h5"
    ingest(src, out, IngestOptions(decode=DecodeOptions(size=16), compression="gzip", workers=0))
    with h5py.File(out, "r") as f:
        info = f["images"].id.get_chunk_info(3)
    with open(out, "r+b") as raw:
        raw.seek(info.byte_offset)
        raw.write(b"\x00garbage" * (info.size // 8))
    problems = _problems(out)
    assert any("row 3" in p for p in problems), problems


def test_sources_modified_and_missing(store: Path, src: Path) -> None:
    """With --sources, a changed file and a deleted file are each reported by name."""
    (src / "cool" / "0.png").write_bytes(encode(Image.new("RGB", (40, 30), (1, 2, 3)), "PNG"))
    (src / "warm" / "1.png").unlink()
    problems = _problems(store, sources=src)
    assert any("cool/0.png" in p and "sha256" in p.lower() for p in problems), problems
    assert any("warm/1.png" in p and "missing" in p for p in problems), problems


def test_incomplete_store_is_a_note(store: Path) -> None:
    """An unfinished ingest is a note, not a problem."""
    with h5py.File(store, "r+") as f:
        f.attrs["complete"] = False
    report = verify_store(store)
    assert report.ok and any("resume" in n for n in report.notes)


def test_verify_cli_reports_problems(store: Path, tmp_path: Path, runner) -> None:  # type: ignore[no-untyped-def]
    """Problems go to stderr one per line and the exit code is 1; a non-HDF5 file is a problem too."""
    with h5py.File(store, "r+") as f:
        f["labels"][0] = -4
    result = runner.invoke(app, ["verify", str(store), "-q"])
    assert result.exit_code == 1 and "problem: " in result.stderr and "Error: " in result.stderr
    text = tmp_path / "t.h5"
    text.write_text("hello")
    result = runner.invoke(app, ["verify", str(text), "-q"])
    assert result.exit_code == 1 and "not an HDF5 file" in result.stderr


# -- preview ------------------------------------------------------------------------------------------------------
def test_preview_geometry_tiles_and_text(store: Path, tmp_path: Path) -> None:
    """The sheet has the grid's size; each tile shows its image's colour; the text area under it is not blank."""
    from imgstore.tools import preview_layout

    out = make_preview(store, tmp_path / "g.png", count=7, columns=4, tile=64)
    sheet = np.asarray(Image.open(out).convert("RGB")).astype(int)
    layout = preview_layout(7, columns=4, tile=64, labels=True)
    assert sheet.shape == (layout.height, layout.width, 3)
    s = imgstore.open(store)
    for k in range(7):
        x, y = layout.tile_origin(k)
        centre = sheet[y + 24 : y + 40, x + 24 : x + 40].reshape(-1, 3).mean(0)
        np.testing.assert_allclose(centre, s[k].reshape(-1, 3).mean(0), atol=3)
        text = sheet[y + 64 : y + layout.cell_height, x : x + 64]
        assert (text.sum(-1) < 400).any(), f"no text under tile {k}"
    assert x > GAP  # the last tile is not the first


def test_preview_random_sample(store: Path, tmp_path: Path) -> None:
    """--random is deterministic for a seed and differs from the first-N sheet."""
    a = make_preview(store, tmp_path / "a.png", count=3, random=True, seed=1)
    b = make_preview(store, tmp_path / "b.png", count=3, random=True, seed=1)
    c = make_preview(store, tmp_path / "c.png", count=3)
    assert a.read_bytes() == b.read_bytes() and a.read_bytes() != c.read_bytes()


def test_preview_refuses_existing_and_empty(store: Path, tmp_path: Path) -> None:
    """An existing PNG needs overwrite; an empty store cannot be previewed."""
    (tmp_path / "g.png").write_bytes(b"x")
    with pytest.raises(OutputExistsError):
        make_preview(store, tmp_path / "g.png")
    empty = tmp_path / "e.h5"
    with ImageIndexer(empty, size=(8, 8)):
        pass
    with pytest.raises(Exception, match="no images"):
        make_preview(empty, tmp_path / "e.png")


def test_preview_cli(store: Path, tmp_path: Path, runner) -> None:  # type: ignore[no-untyped-def]
    """The CLI writes the sheet and says where."""
    result = runner.invoke(app, ["preview", str(store), str(tmp_path / "p.png"), "--count", "4"])
    assert result.exit_code == 0 and result.stdout.strip() == f"wrote {tmp_path / 'p.png'}"
    assert Image.open(tmp_path / "p.png").size[0] > 100


# -- extract ------------------------------------------------------------------------------------------------------
def test_extract_roundtrip(store: Path, tmp_path: Path) -> None:
    """Every PNG written reads back equal to its stored array, with a recognisable, safe name."""
    paths = extract_images(store, tmp_path / "out")
    s = imgstore.open(store)
    assert [p.name for p in paths] == [export_file_name(i, n) for i, n in enumerate(s.names)]
    assert paths[0].name == "000000_cool__0.png"
    for i, p in enumerate(paths):
        np.testing.assert_array_equal(iio.imread(p), s[i])


def test_extract_grayscale_store(src: Path, tmp_path: Path) -> None:
    """A one-channel store gives 2-D grayscale PNGs."""
    out = tmp_path / "g.h5"
    ingest(src, out, IngestOptions(decode=DecodeOptions(size=8, channels=1), workers=0))
    (p,) = extract_images(out, tmp_path / "x", indices=[0])
    img = iio.imread(p)
    assert img.shape == (8, 8) and (img == imgstore.open(out)[0][..., 0]).all()


def test_parse_indices() -> None:
    """Commas, inclusive ranges, negatives from the end, no repeats; bad input is a clear error."""
    assert parse_indices("0,2,5-7", 10) == [0, 2, 5, 6, 7]
    assert parse_indices("-1,-3--2,1,1", 10) == [9, 7, 8, 1]
    with pytest.raises(OptionError, match="out of range"):
        parse_indices("10", 10)
    with pytest.raises(OptionError, match="backwards"):
        parse_indices("5-2", 10)
    with pytest.raises(OptionError, match="invalid index"):
        parse_indices("a", 10)


def test_extract_refuses_existing_files(store: Path, tmp_path: Path, runner) -> None:  # type: ignore[no-untyped-def]
    """Existing files are refused before anything is written; --overwrite replaces them."""
    extract_images(store, tmp_path / "o", indices="0")
    digest = hashlib.sha256((tmp_path / "o" / "000000_cool__0.png").read_bytes()).hexdigest()
    with pytest.raises(OutputExistsError):
        extract_images(store, tmp_path / "o", indices="0-2")
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["000000_cool__0.png"]
    result = runner.invoke(app, ["extract", str(store), str(tmp_path / "o"), "--indices", "0-2", "--overwrite", "-q"])
    assert result.exit_code == 0 and result.stdout.strip() == f"wrote 3 PNG files to {tmp_path / 'o'}"
    assert hashlib.sha256((tmp_path / "o" / "000000_cool__0.png").read_bytes()).hexdigest() == digest
    result = runner.invoke(app, ["extract", str(store), str(tmp_path / "o"), "--indices", "99"])
    assert result.exit_code == 1 and "out of range" in result.stderr
