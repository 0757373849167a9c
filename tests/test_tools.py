"""Store tools: verify (sound stores pass, each kind of damage is named), preview (geometry, pixels, captions,
sampling) and extract (exact round trip, file names, index parsing, refusals), and their CLI commands."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgstore.cli import app
from imgstore.errors import OptionError, OutputExistsError, SourceError, StoreError
from imgstore.extract import export_file_name, extract_images, parse_indices
from imgstore.preview import GAP, PreviewLayout, make_preview, preview_layout
from imgstore.store.verify import MAX_LISTED, verify_store
from imgstore.store.writer import ImageIndexer

from conftest import encode, pattern, write

H, W = 16, 20  # stored image height and width

# Ten clearly different solid colours: a tile's colour tells which row it shows.
COLOURS = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (128, 128, 0), (0, 0, 128),
]  # fmt: skip


def solid(i: int, channels: int = 3) -> np.ndarray:
    """Row i's image: a solid colour (gray level 20 * i + 10 for one channel)."""
    if channels == 1:
        return np.full((H, W, 1), 20 * i + 10, np.uint8)
    return np.broadcast_to(np.array(COLOURS[i], np.uint8), (H, W, 3)).copy()


def noisy(i: int) -> np.ndarray:
    """Row i's image: noise, so a gzip chunk is long enough to damage."""
    return np.random.default_rng(i).integers(0, 256, (H, W, 3), dtype=np.uint8)


def make_store(
    path: Path,
    n: int = 10,
    *,
    channels: int = 3,
    labels: bool = False,
    compression: str | None = None,
    names: list[str] | None = None,
    image: Callable[..., np.ndarray] = solid,
) -> Path:
    """A store of ``n`` rows written by the real ImageIndexer (labels i % 3 over three classes)."""
    attrs = {"class_names": ["cat", "dog", "eel"]} if labels else None
    with ImageIndexer(path, size=(W, H), channels=channels, buffer_size=4, attrs=attrs, compression=compression) as ix:
        for i in range(n):
            arr = image(i, channels) if image is solid else image(i)
            ix.add(names[i] if names else f"c{i % 2}/{i}.jpg", arr, label=i % 3 if labels else None)
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return make_store(tmp_path / "s.h5")


@pytest.fixture
def sourced(tmp_path: Path) -> tuple[Path, Path]:
    """A source folder of 6 PNG files and a store recording their names and SHA-256 digests."""
    src = tmp_path / "photos"
    out = tmp_path / "s.h5"
    with ImageIndexer(out, size=(W, H)) as ix:
        for i in range(6):
            name = f"c{i % 2}/{i}.png"
            data = encode(pattern(W, H, seed=i), "PNG")
            write(src / name, data)
            ix.add(name, np.asarray(pattern(W, H, seed=i)), sha256=hashlib.sha256(data).digest())
    return src, out


# =============================================================================================== verify


def test_sound_store_verifies_ok(store: Path) -> None:
    """A store written by ImageIndexer has no problem and no note; every row is checked."""
    report = verify_store(store)
    assert report.ok and report.problems == [] and report.notes == []
    assert report.checked == 10


def test_progress_gets_every_row(store: Path) -> None:
    """A callable progress receives increments adding up to the rows read."""
    seen: list[int] = []
    verify_store(store, progress=seen.append)
    assert sum(seen) == 10


def test_unfinished_ingest_is_a_note(tmp_path: Path) -> None:
    """complete=false (an aborted writer) is a note, not a problem."""
    ix = ImageIndexer(tmp_path / "s.h5", size=(W, H))
    ix.add("a.png", solid(0))
    ix.abort()
    report = verify_store(tmp_path / "s.h5")
    assert report.ok
    assert report.notes == ["ingest did not finish (complete is false); imgstore ingest --resume continues it"]


def test_rows_past_count_are_a_note(store: Path) -> None:
    """Rows beyond count are an interrupted write's leftovers: noted, not a problem; only committed rows are read."""
    with h5py.File(store, "r+") as f:
        f.attrs["count"] = 7
    report = verify_store(store)
    assert report.ok and report.checked == 7
    assert report.notes == [
        (
            "rows past count 7 (images 10, image_names 10, checksums 10) are leftovers of an interrupted write: "
            "readers ignore them and the next write trims them"
        )
    ]


def test_count_larger_than_rows(store: Path) -> None:
    """A count attribute above the rows on disk names every short dataset."""
    with h5py.File(store, "r+") as f:
        f.attrs["count"] = 12
    report = verify_store(store)
    assert not report.ok
    assert report.problems == [
        "images has 10 rows but count is 12",
        "image_names has 10 rows but count is 12",
        "checksums has 10 rows but count is 12",
        "the journal of image_names has 10 rows but 12 are committed",
    ]


def test_names_shorter_than_images(store: Path) -> None:
    """image_names with fewer rows than count is reported with both numbers."""
    with h5py.File(store, "r+") as f:
        f["image_names"].resize(8, axis=0)
    report = verify_store(store)
    assert report.problems == ["image_names has 8 rows but count is 10"]
    assert report.checked == 8  # the rows every dataset holds are still checked


def test_duplicate_names_listed(tmp_path: Path) -> None:
    """Each repeated name is listed with the rows that carry it."""
    names = ["a.png", "b.png", "c.png", "a.png", "d.png", "c.png", "a.png", "e.png"]
    report = verify_store(make_store(tmp_path / "s.h5", 8, names=names))
    assert report.problems == [
        "name 'a.png' appears 3 times (rows 0, 3, 6)",
        "name 'c.png' appears 2 times (rows 2, 5)",
    ]


def test_corrupted_chunk_names_the_row(tmp_path: Path) -> None:
    """Garbage written over one gzip chunk on disk: that row, and only it, cannot be read."""
    path = make_store(tmp_path / "s.h5", compression="gzip", image=noisy)
    with h5py.File(path, "r") as f:
        info = f["images"].id.get_chunk_info(3)
    assert info.chunk_offset[0] == 3 and info.size > 16
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)
    report = verify_store(path)
    assert len(report.problems) == 1
    assert report.problems[0].startswith("images row 3 cannot be read: ")
    assert report.checked == 9


def test_labels_out_of_range(tmp_path: Path) -> None:
    """A label outside class_names is reported by row and value."""
    path = make_store(tmp_path / "s.h5", labels=True)
    assert verify_store(path).ok
    with h5py.File(path, "r+") as f:
        f["labels"][5] = 7
        f["labels"][6] = -1
    assert verify_store(path).problems == [
        "labels row 5 is 7, outside 0..2 (class_names has 3 names)",
        "labels row 6 is -1, outside 0..2 (class_names has 3 names)",
        "rows 5-6 changed since written: the stored bytes do not match the checksum",  # the labels are covered
    ]


def test_attributes_disagreeing_with_images(store: Path) -> None:
    """size and channels attributes that do not describe the images are problems."""
    with h5py.File(store, "r+") as f:
        f.attrs["size"] = [32, 32]
        f.attrs["channels"] = 1
    assert verify_store(store).problems == [
        "size attribute says [32, 32] (width, height) but images are 20x16",
        "channels attribute says 1 but images have 3",
    ]


def test_skipped_lists_shorter_than_skipped_count(tmp_path: Path) -> None:
    """Each skipped list must hold skipped_count rows; older stores without the attribute must pair up."""
    with ImageIndexer(tmp_path / "s.h5", size=(W, H)) as ix:
        ix.add("a.png", solid(0))
        ix.skip("bad.jpg", "truncated JPEG")
    with h5py.File(tmp_path / "s.h5", "r+") as f:
        f["skipped_reasons"].resize(0, axis=0)
    assert verify_store(tmp_path / "s.h5").problems == ["skipped_reasons has 0 rows but skipped_count is 1"]
    with h5py.File(tmp_path / "s.h5", "r+") as f:
        del f.attrs["skipped_count"]
    assert verify_store(tmp_path / "s.h5").problems == ["skipped_names has 1 rows but skipped_reasons has 0"]


def test_rows_never_written(store: Path) -> None:
    """Committed rows whose chunks were never written (they would read as zeros) are problems."""
    with h5py.File(store, "r+") as f:
        del f["_journal"]  # as in a store from before the journal
        f["images"].resize(12, axis=0)
        f["image_names"].resize(12, axis=0)
        f["image_names"][10:12] = ["x.png", "y.png"]
        f["checksums"].resize(12, axis=0)
        f.attrs["count"] = 12
    assert verify_store(store).problems == [
        "images rows 10-11 were never written (no data on disk; reads give zeros)",
        "rows 10-11 changed since written: the stored bytes do not match the checksum",
    ]
    with h5py.File(store, "r+") as f:
        f.attrs["count"] = 11
    assert verify_store(store).problems == [
        "images row 10 was never written (no data on disk; reads give zeros)",
        "row 10 (x.png) changed since written: the stored bytes do not match the checksum",
    ]


def test_incomplete_store_names_come_from_the_journal(tmp_path: Path) -> None:
    """An interrupted store whose string dataset is short is judged by its journal, as readers see it."""
    ix = ImageIndexer(tmp_path / "s.h5", size=(W, H), buffer_size=2)
    for i in range(4):
        ix.add(f"{i}.png", solid(i))
    ix.abort()
    with h5py.File(tmp_path / "s.h5", "r+") as f:
        f["image_names"].resize(1, axis=0)
    report = verify_store(tmp_path / "s.h5")
    assert report.ok and report.checked == 4
    assert "image_names has 1 rows but count is 4: readers use the journal, the next write rebuilds it" in report.notes
    with h5py.File(tmp_path / "s.h5", "r+") as f:
        f["_journal/image_names.ends"].resize(3, axis=0)
    assert verify_store(tmp_path / "s.h5").problems == ["the journal of image_names has 3 rows but 4 are committed"]


def test_names_disagreeing_with_their_journal(store: Path) -> None:
    """In a complete store a name that differs from its journal copy is a problem."""
    with h5py.File(store, "r+") as f:
        f["image_names"][4] = "other.jpg"
    assert verify_store(store).problems == [
        "image_names row 4 is 'other.jpg' but its journal copy says 'c0/4.jpg'",
        "row 4 (other.jpg) changed since written: the stored bytes do not match the checksum",  # names are covered too
    ]


def test_sources_changed_and_missing_files_named(sourced: tuple[Path, Path]) -> None:
    """With sources: a modified file and a deleted file are named; an extra file is not a problem."""
    src, out = sourced
    report = verify_store(out, sources=src)
    assert report.ok and report.notes == []
    (src / "c0" / "2.png").write_bytes(encode(pattern(W, H, seed=99), "PNG"))
    (src / "c1" / "3.png").unlink()
    write(src / "c1" / "new.png", encode(pattern(W, H, seed=5), "PNG"))
    report = verify_store(out, sources=src)
    assert report.problems == [
        "c0/2.png changed since ingest (sha256 differs)",
        f"c1/3.png is missing from {src}",
    ]
    assert report.checked == 6  # the stored pixels themselves are fine


def test_sources_through_ingest(tmp_path: Path) -> None:
    """A store made by imgstore.ingest verifies against its source folder (same names, same digests)."""
    from imgstore.ingest import ingest
    from imgstore.options import DecodeOptions, IngestOptions

    src = tmp_path / "photos"
    for i in range(4):
        write(src / f"d{i % 2}" / f"{i}.png", encode(pattern(30, 20, seed=i), "PNG"))
    out = tmp_path / "s.h5"
    ingest(src, out, IngestOptions(decode=DecodeOptions(size=(8, 8)), workers=0))
    assert verify_store(out, sources=src).ok
    (src / "d1" / "1.png").write_bytes(b"changed")
    assert verify_store(out, sources=src).problems == ["d1/1.png changed since ingest (sha256 differs)"]


def test_escaped_names_map_back_to_their_files(tmp_path: Path) -> None:
    """A name stored with \\xNN escapes (not UTF-8 on disk) is found under its original bytes."""
    src = tmp_path / "photos"
    src.mkdir()
    raw = b"caf\xe9.png"  # Latin-1, not UTF-8
    data = encode(pattern(W, H), "PNG")
    try:
        (src / raw.decode("utf-8", "surrogateescape")).write_bytes(data)
    except (OSError, UnicodeEncodeError):
        pytest.skip("the file system refuses non-UTF-8 names")
    with ImageIndexer(tmp_path / "s.h5", size=(W, H)) as ix:
        ix.add(raw.decode("utf-8", "surrogateescape"), solid(0), sha256=hashlib.sha256(data).digest())
    with h5py.File(tmp_path / "s.h5") as f:
        assert f["image_names"].asstr()[0] == "caf\\xe9.png"
    assert verify_store(tmp_path / "s.h5", sources=src).ok


def test_sources_without_digests_is_a_note(store: Path, tmp_path: Path) -> None:
    """A store without sha256 can only be checked for presence; the report says so."""
    report = verify_store(store, sources=tmp_path)
    assert "the store records no SHA-256 digests: --sources checked only that each file exists" in report.notes
    assert report.problems[0] == f"c0/0.jpg is missing from {tmp_path}"


def test_repeated_problems_are_capped(tmp_path: Path) -> None:
    """Many problems of one kind: MAX_LISTED lines, then a count of the rest."""
    path = make_store(tmp_path / "s.h5", MAX_LISTED + 5, image=noisy)
    empty = tmp_path / "empty"
    empty.mkdir()
    report = verify_store(path, sources=empty)
    assert len(report.problems) == MAX_LISTED + 1
    assert report.problems[-1] == "... and 5 more files missing from the source folder"
    assert report.problem_count == MAX_LISTED + 5


def test_cli_counts_capped_problems(tmp_path: Path, cli: CliRunner) -> None:
    """The CLI's closing line counts every problem, also those only summarised."""
    path = make_store(tmp_path / "s.h5", MAX_LISTED + 5, image=noisy)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli.invoke(app, ["verify", str(path), "--sources", str(empty), "-q"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == f"Error: {path} has {MAX_LISTED + 5} problem(s)"


def test_not_a_store(tmp_path: Path) -> None:
    """A plain HDF5 file and a non-HDF5 file are reported; a missing path or bad sources folder raise."""
    (tmp_path / "plain.h5").write_bytes(b"")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = np.zeros(3)
    assert verify_store(tmp_path / "plain.h5").problems == [
        f"{tmp_path / 'plain.h5'} is an HDF5 file but not an imgstore store (no imgstore_format attribute)"
    ]
    (tmp_path / "notes.txt").write_text("hello")
    assert verify_store(tmp_path / "notes.txt").problems == [
        f"{tmp_path / 'notes.txt'} is not an HDF5 file (not a store made by imgstore ingest)"
    ]
    with pytest.raises(StoreError, match="does not exist"):
        verify_store(tmp_path / "nope.h5")
    with pytest.raises(SourceError, match="is not a folder"):
        verify_store(tmp_path / "plain.h5", sources=tmp_path / "nope")


def _merged(tmp_path: Path) -> Path:
    """A merged store: images is a virtual dataset over two shard files next to it."""
    for k in range(2):
        make_store(tmp_path / f"shard{k}.h5", 3)
    layout = h5py.VirtualLayout((6, H, W, 3), np.uint8)
    for k in range(2):
        layout[3 * k : 3 * k + 3] = h5py.VirtualSource(f"shard{k}.h5", "images", shape=(3, H, W, 3))
    out = tmp_path / "merged.h5"
    with h5py.File(out, "w") as f:
        f.create_virtual_dataset("images", layout, fillvalue=0)
        f.create_dataset("image_names", data=[f"s{i}.png" for i in range(6)], dtype=h5py.string_dtype())
        f.attrs.update({"imgstore_format": 1, "count": 6, "complete": True, "size": [W, H], "channels": 3})
    return out


def test_real_merge_with_missing_shard(tmp_path: Path) -> None:
    """imgstore merge's virtual store verifies; without one shard file, verify names it once."""
    from imgstore.ingest import ingest
    from imgstore.options import DecodeOptions, IngestOptions
    from imgstore.store.merge import merge_shards

    src = tmp_path / "photos"
    for i in range(5):
        write(src / f"{i}.png", encode(pattern(30, 20, seed=i), "PNG"))
    write(src / "broken.png", b"not a png")
    shards = []
    for k in (1, 2):
        shards.append(tmp_path / f"part{k}.h5")
        ingest(src, shards[-1], IngestOptions(decode=DecodeOptions(size=(8, 8)), workers=0, shard=(k, 2)))
    merged = merge_shards(tmp_path / "all.h5", shards).path
    report = verify_store(merged, sources=src)
    assert report.ok and report.checked == 5, report.problems
    shards[1].unlink()
    report = verify_store(merged, sources=src)
    assert len(report.problems) == 1, report.problems  # not also the blank names it reads for those rows
    assert report.problems[0].startswith(
        "images rows 3-4 (and rows of image_names, sha256, checksums, skipped_names, skipped_reasons) come from "
        "part2.h5, "
    )
    assert "which is missing" in report.problems[0] and report.problems[0].endswith("they read as zeros")


def test_merged_store_with_missing_shard(tmp_path: Path) -> None:
    """A virtual images dataset is sound while its shards exist; a missing shard names the file and rows."""
    out = _merged(tmp_path)
    report = verify_store(out)
    assert report.ok and report.checked == 6
    assert report.notes == [
        "store format 1 carries no row checksums: changed pixels cannot be detected (an --append or --resume "
        "upgrades the store)",
        "images is a merged (virtual) dataset over 2 file(s)",
    ]
    (tmp_path / "shard1.h5").unlink()
    report = verify_store(out)
    assert report.problems == [
        f"images rows 3-5 come from shard1.h5, which is missing (looked for {tmp_path / 'shard1.h5'}): they read as zeros"
    ]


# ============================================================================================== preview


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def tile_colours(sheet: np.ndarray, layout: PreviewLayout, n: int) -> list[tuple[int, ...]]:
    """The mean colour of the middle of each tile's image (the image stands at the bottom of its square)."""
    tw, th = layout.thumb_size(H, W)
    out = []
    for k in range(n):
        x, y = layout.tile_origin(k)
        x0, y0 = x + (layout.tile - tw) // 2, y + layout.tile - th
        region = sheet[y0 + 3 : y0 + th - 3, x0 + 3 : x0 + tw - 3]
        out.append(tuple(round(float(v)) for v in region.reshape(-1, 3).mean(axis=0)))
    return out


def test_preview_geometry_pixels_and_captions(store: Path, tmp_path: Path) -> None:
    """The sheet's size follows the grid; each tile shows its image's colour; each caption has dark pixels."""
    out = make_preview(store, tmp_path / "grid.png", count=6, columns=4, tile=32)
    sheet = read_png(out)
    layout = preview_layout(6, columns=4, tile=32)
    assert sheet.shape[1] == 4 * 32 + 5 * GAP
    assert sheet.shape[0] == 2 * (32 + layout.line_height) + 3 * GAP
    assert tile_colours(sheet, layout, 6) == COLOURS[:6]
    for k in range(6):
        x, y = layout.tile_origin(k)
        caption = sheet[y + 32 : y + layout.cell_height, x : x + 32]
        assert caption.min() < 100, f"caption {k} is blank"
    x, y = layout.tile_origin(6)  # the unused cells stay white
    assert (sheet[y : y + layout.cell_height, x : x + 32] == 255).all()


def test_preview_labels_add_a_caption_line(tmp_path: Path) -> None:
    """With labels each cell gets a second line (the class name) that is drawn."""
    path = make_store(tmp_path / "s.h5", 4, labels=True)
    sheet = read_png(make_preview(path, tmp_path / "g.png", tile=48))
    layout = preview_layout(4, tile=48, labels=True)
    assert layout.text_lines == 2 and sheet.shape[:2] == (layout.height, layout.width)
    for k in range(4):
        x, y = layout.tile_origin(k)
        second = sheet[y + 48 + layout.line_height : y + layout.cell_height, x : x + 48]
        assert second.min() < 200, f"class name {k} is blank"


def test_preview_grayscale_is_gray(tmp_path: Path) -> None:
    """A one-channel store is shown as gray tiles of the stored level."""
    path = make_store(tmp_path / "s.h5", 3, channels=1)
    sheet = read_png(make_preview(path, tmp_path / "g.png", tile=40))
    layout = preview_layout(3, tile=40)
    assert tile_colours(sheet, layout, 3) == [(10, 10, 10), (30, 30, 30), (50, 50, 50)]


def test_preview_random_sample(store: Path, tmp_path: Path) -> None:
    """--random draws a seeded sample in store order: the same for a seed, unlike the first rows."""
    layout = preview_layout(5, tile=32)

    def shown(name: str, **kw: object) -> list[int]:
        sheet = read_png(make_preview(store, tmp_path / name, count=5, tile=32, **kw))
        return [COLOURS.index(c) for c in tile_colours(sheet, layout, 5)]

    first = shown("a.png")
    sample = shown("b.png", random=True, seed=3)
    assert first == [0, 1, 2, 3, 4]
    assert sample != first and sample == sorted(set(sample))
    assert shown("c.png", random=True, seed=3) == sample
    assert (tmp_path / "b.png").read_bytes() == (tmp_path / "c.png").read_bytes()


def test_preview_count_beyond_store_shows_all(store: Path, tmp_path: Path) -> None:
    """Asking for more images than the store holds shows them all."""
    sheet = read_png(make_preview(store, tmp_path / "g.png", count=64, tile=32))
    layout = preview_layout(10, tile=32)
    assert sheet.shape[:2] == (layout.height, layout.width)
    assert tile_colours(sheet, layout, 10) == COLOURS


def test_preview_long_names_are_shortened(tmp_path: Path) -> None:
    """A name wider than the tile keeps its end behind '...', and the caption stays inside its cell."""
    from imgstore.preview import _fit, _font

    font = _font(12)
    line = _fit(font, "3 ", "a/very/long/folder/name/with/many/parts/IMG_1234.jpg", 100)
    assert line.startswith("3 ...") and line.endswith("IMG_1234.jpg") and font.getlength(line) <= 100


def test_preview_refusals(store: Path, tmp_path: Path) -> None:
    """An existing output, an empty store and a bad count are clear errors."""
    out = tmp_path / "g.png"
    out.write_bytes(b"keep")
    with pytest.raises(OutputExistsError, match="exists: pass --overwrite"):
        make_preview(store, out)
    assert out.read_bytes() == b"keep"
    make_preview(store, out, overwrite=True, tile=32)
    assert Image.open(out).format == "PNG"
    with ImageIndexer(tmp_path / "empty.h5", size=(W, H)):
        pass
    with pytest.raises(StoreError, match="holds no images: there is nothing to preview"):
        make_preview(tmp_path / "empty.h5", tmp_path / "e.png")
    with pytest.raises(OptionError, match="invalid count 0"):
        make_preview(store, tmp_path / "z.png", count=0)


# ============================================================================================== extract


def test_extract_round_trip_exact(tmp_path: Path) -> None:
    """Every row comes back as a PNG equal to the stored array, named after its row and name."""
    path = make_store(tmp_path / "s.h5", 5, image=noisy)
    files = extract_images(path, tmp_path / "out")
    assert [f.name for f in files] == [f"{i:06d}_c{i % 2}__{i}.png" for i in range(5)]
    for i, f in enumerate(files):
        assert np.array_equal(iio.imread(f), noisy(i))


def test_extract_grayscale_is_2d(tmp_path: Path) -> None:
    """A one-channel store gives 2-D grayscale PNGs."""
    path = make_store(tmp_path / "s.h5", 3, channels=1)
    files = extract_images(path, tmp_path / "out", indices=[-1, 0, -1])
    assert [f.name[:6] for f in files] == ["000002", "000000"]  # in the order given, without repeats
    back = iio.imread(files[0])
    assert back.shape == (H, W) and np.array_equal(back, solid(2, 1)[:, :, 0])


def test_file_names_are_sanitised() -> None:
    """Folders become __, the extension .png, unsafe characters _, and the result stays short."""
    assert export_file_name(7, "cat/1.jpg") == "000007_cat__1.png"
    assert export_file_name(1, "a b/ü?x:y.jpeg") == "000001_a_b__ü_x_y.png"
    assert export_file_name(2, "dir.v2/noext") == "000002_dir.v2__noext.png"
    assert export_file_name(3, "caf\\xe9.png") == "000003_caf_xe9.png"
    assert export_file_name(4, "../../etc/passwd") == "000004___..__etc__passwd.png"
    assert len(export_file_name(5, "x" * 1000 + ".jpg").encode()) <= 255
    assert export_file_name(12, "a.png", width=8) == "00000012_a.png"


def test_parse_indices() -> None:
    """Lists, inclusive ranges and negatives resolve; bad items are clear errors."""
    assert parse_indices("0,2,5-7", 10) == [0, 2, 5, 6, 7]
    assert parse_indices(" -1 , 0 ", 10) == [9, 0]
    assert parse_indices("-3--1,8", 10) == [7, 8, 9]
    assert parse_indices("1-3,2", 10) == [1, 2, 3]
    with pytest.raises(OptionError, match=r"^index 10 is out of range for a store of 10 images \(use 0 to 9, or -10 to -1\)$"):
        parse_indices("0,10", 10)
    with pytest.raises(OptionError, match="index -11 is out of range"):
        parse_indices("-11", 10)
    with pytest.raises(OptionError, match="invalid index 'a' in '1,a': use numbers and ranges like 0,5,10-20"):
        parse_indices("1,a", 10)
    with pytest.raises(OptionError, match="invalid range '5-2': it goes backwards"):
        parse_indices("5-2", 10)
    with pytest.raises(OptionError, match="no indices given"):
        parse_indices(" ", 10)


def test_extract_refuses_existing_files_before_writing(store: Path, tmp_path: Path) -> None:
    """One existing target stops the whole extraction before any file is written; overwrite replaces it."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "000003_c1__3.png").write_bytes(b"keep")
    with pytest.raises(OutputExistsError, match=r"^1 file\(s\) exist in .*000003_c1__3\.png.*overwrite"):
        extract_images(store, out)
    assert [p.name for p in out.iterdir()] == ["000003_c1__3.png"]
    files = extract_images(store, out, indices="3", overwrite=True)
    assert np.array_equal(iio.imread(files[0]), solid(3))


def test_extract_removes_what_a_killed_extract_left(store: Path, tmp_path: Path) -> None:
    """Temporary files a killed extract left for its targets are removed; other files in the folder stay; the
    run leaves no temporary file of its own."""
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".000003_c1__3.png.tmp-0badf00d"
    stale.write_bytes(b"half a png")
    foreign = out / ".notes.txt.tmp-12345678"
    foreign.write_bytes(b"someone else's")
    files = extract_images(store, out, indices="2,3")
    assert sorted(p.name for p in out.iterdir()) == sorted([foreign.name, *(f.name for f in files)])
    assert np.array_equal(iio.imread(files[1]), solid(3))


def test_extract_bad_indices(store: Path, tmp_path: Path) -> None:
    """Out-of-range and non-integer indices are refused."""
    with pytest.raises(OptionError, match="index 10 is out of range"):
        extract_images(store, tmp_path / "o", indices=[0, 10])
    with pytest.raises(OptionError, match="indices are integers"):
        extract_images(store, tmp_path / "o", indices=[1.5])  # type: ignore[list-item]
    assert not (tmp_path / "o").exists()


# ================================================================================================== CLI


def run(cli: CliRunner, *args: object):  # type: ignore[no-untyped-def]
    return cli.invoke(app, [str(a) for a in args])


def test_cli_verify_ok(cli: CliRunner, sourced: tuple[Path, Path]) -> None:
    """A sound store: exit 0 and the OK line."""
    src, out = sourced
    result = run(cli, "verify", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"OK: 6 images verified in {out}\n"
    result = run(cli, "verify", out, "--sources", src, "-q")
    assert result.exit_code == 0 and result.stdout == f"OK: 6 images verified in {out}\n"


def test_cli_verify_problems_exit_1(cli: CliRunner, store: Path) -> None:
    """A damaged store: notes on stdout, each problem on its own stderr line, then an Error line; exit 1."""
    with h5py.File(store, "r+") as f:
        f["labels"] = np.zeros(10, np.int64)
        f["labels"][3] = 5
        f.attrs["class_names"] = ["a", "b"]
        f.attrs["complete"] = False
    result = run(cli, "verify", store, "-q")
    assert result.exit_code == 1
    assert result.stdout == "note: ingest did not finish (complete is false); imgstore ingest --resume continues it\n"
    assert result.stderr.splitlines() == [
        "problem: labels row 3 is 5, outside 0..1 (class_names has 2 names)",
        # labels added after the fact: every row's checksum (which covers a store's labels) disagrees
        "problem: rows 0-9 changed since written: the stored bytes do not match the checksum",
        "changed rows (10): 0-9",
        f"Error: {store} has 2 problem(s)",
    ]


def test_cli_verify_missing_store(cli: CliRunner, tmp_path: Path) -> None:
    """A path that does not exist is an Error line and exit 1."""
    result = run(cli, "verify", tmp_path / "nope.h5", "-q")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {tmp_path / 'nope.h5'} does not exist")
    (tmp_path / "t.h5").write_text("hello")
    result = run(cli, "verify", tmp_path / "t.h5", "-q")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"problem: {tmp_path / 't.h5'} is not an HDF5 file (not a store made by imgstore ingest)"


def test_cli_preview(cli: CliRunner, store: Path, tmp_path: Path) -> None:
    """preview prints the path written and refuses to replace it without --overwrite."""
    out = tmp_path / "grid.png"
    result = run(cli, "preview", store, out, "--count", "4", "--random", "--seed", "1", "--tile", "32")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {out}\n"
    assert Image.open(out).size == (preview_layout(4, tile=32).width, preview_layout(4, tile=32).height)
    result = run(cli, "preview", store, out)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {out} exists: pass --overwrite to replace it\n"
    assert run(cli, "preview", store, out, "--overwrite", "--columns", "2", "--tile", "32").exit_code == 0


def test_cli_extract(cli: CliRunner, store: Path, tmp_path: Path) -> None:
    """extract writes the chosen rows and says how many and where; bad indices are an Error line."""
    out = tmp_path / "pngs"
    result = run(cli, "extract", store, out, "--indices", "0,5-6", "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote 3 PNG files to {out}\n"
    assert sorted(p.name for p in out.iterdir()) == ["000000_c0__0.png", "000005_c1__5.png", "000006_c0__6.png"]
    result = run(cli, "extract", store, out, "--indices", "99", "-q")
    assert result.exit_code == 1
    assert result.stderr == "Error: index 99 is out of range for a store of 10 images (use 0 to 9, or -10 to -1)\n"
    result = run(cli, "extract", store, out, "-q")
    assert result.exit_code == 1 and "file(s) exist in" in result.stderr


def test_cli_commands_have_help(cli: CliRunner) -> None:
    """Each new command documents itself."""
    for command in ("verify", "preview", "extract"):
        result = run(cli, command, "--help")
        assert result.exit_code == 0 and "Usage" in result.stdout
