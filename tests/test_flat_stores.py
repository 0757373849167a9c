"""Flat stores (format 4: encoded rows, rows of their own shapes) under verify, info, merge and --dask's shard tasks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

import imgstore
import imgstore.distributed
import imgstore.store.info
from imgstore.cli import app
from imgstore.errors import StoreError
from imgstore.ingest import ingest
from imgstore.options import DecodeOptions, IngestOptions
from imgstore.store.checks import Problem, check_row_ends, check_shapes
from imgstore.store.encoding import flat_crc
from imgstore.store.file import flat_spans
from imgstore.store.format import row_checksum
from imgstore.store.info import format_info, store_info
from imgstore.store.merge import merge_shards, missing_sources
from imgstore.store.verify import verify_store
from imgstore.store.writer import ImageIndexer
from imgstore.vectors.export import export_vectors

ENCODINGS = ("none", "jpeg:90", "webp", "png")
CHANGED = "changed since written: the stored bytes do not match the checksum"


def photo(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth test image (lossy codecs keep it recognisable), different for each seed."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 7 + seed * 13) % 256, (y * 5 + seed * 29) % 256, ((x + y) * 3 + seed) % 256], -1).astype(np.uint8)


def shape_of(i: int, variable: bool) -> tuple[int, int]:
    return (10 + i % 7, 12 + (i * 3) % 9) if variable else (12, 16)


def make_store(path: Path, encoding: str, variable: bool, rows: range = range(8), attrs: dict | None = None) -> Path:
    """A flat store written with ImageIndexer: row i is ``photo(*shape_of(i), i)`` named ``d/i.jpg``."""
    with ImageIndexer(path, size=(16, 12), encoding=encoding, variable=variable, attrs=attrs, overwrite=True) as ix:
        for i in rows:
            ix.add(f"d/{i:03d}.jpg", photo(*shape_of(i, variable), i), sha256=bytes([i % 256]) * 32)
    return path


def make_shard(path: Path, k: int, n: int, total: int, encoding: str = "jpeg:90", variable: bool = True) -> Path:
    start, stop = (k - 1) * total // n, k * total // n
    attrs = {"shard": [k, n], "shard_range": [start, stop], "shard_total": total, "resize_mode": "shorter"}
    return make_store(path, encoding, variable, range(start, stop), attrs)


def damage(path: Path, change: Callable[[h5py.File], Any]) -> Path:
    with h5py.File(path, "r+") as f:
        change(f)
    return path


def flip_byte(row: int, back: int = 5) -> Callable[[h5py.File], None]:
    """Flip a byte inside row ``row``, ``back`` bytes before its end."""

    def change(f: h5py.File) -> None:
        at = int(f["image_ends"][row]) - back
        f["image_data"][at] = f["image_data"][at] ^ 0xFF

    return change


def rows_of(path: Path) -> list[np.ndarray]:
    store = imgstore.open(path)
    return [store[i] for i in range(len(store))]


# ============================================================================================ verify


@pytest.mark.parametrize("variable", [False, True])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_verify_clean_flat_store(tmp_path: Path, encoding: str, variable: bool) -> None:
    """A flat store in every encoding, of one shape or of their own, verifies clean, with or without decoding."""
    out = make_store(tmp_path / "s.h5", encoding, variable)
    for decode in (False, True):
        report = verify_store(out, decode=decode)
        assert report.ok, report.problems
        assert report.checked == 8 and report.notes == []


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_flipped_byte_is_reported_by_row_and_name(tmp_path: Path, encoding: str) -> None:
    """One byte flipped inside row 3's stored bytes: that row, with its name, is the one problem."""
    out = damage(make_store(tmp_path / "s.h5", encoding, True), flip_byte(3))
    report = verify_store(out)
    assert report.problems == [f"row 3 (d/003.jpg) {CHANGED}"]
    assert report.changed_rows == [3]


def test_undecodable_row_with_a_valid_checksum_is_found_by_decode(tmp_path: Path) -> None:
    """Bytes that were bad before their checksum was taken pass the checksum; decode=True reports the row."""
    out = make_store(tmp_path / "s.h5", "jpeg:90", True)

    def rewrite(f: h5py.File) -> None:
        a, b = int(f["image_ends"][1]), int(f["image_ends"][2])
        f["image_data"][a : a + 40] = 0  # the JPEG header is gone
        shape = f["shapes"][2]
        crc = flat_crc(shape, f["image_data"][a:b])
        f["checksums"][2] = row_checksum(crc, "d/002.jpg", None, bytes([2]) * 32)

    damage(out, rewrite)
    assert verify_store(out).ok
    problems = verify_store(out, decode=True).problems
    assert len(problems) == 1 and problems[0].startswith("row 2 (d/002.jpg) does not decode: ")
    from typer.testing import CliRunner

    from imgstore.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["verify", str(out), "-q"]).exit_code == 0
    caught = runner.invoke(app, ["verify", str(out), "--decode", "-q"])
    assert caught.exit_code == 1 and "problem: row 2 (d/002.jpg) does not decode: " in caught.output


def test_truncated_image_data(tmp_path: Path) -> None:
    """image_data cut short: every row ending past its bytes is named; none of their bytes is judged."""
    out = make_store(tmp_path / "s.h5", "png", True)
    with h5py.File(out, "r") as f:
        ends = f["image_ends"][:].tolist()
    damage(out, lambda f: f["image_data"].resize((ends[5] + 3,)))
    assert verify_store(out).problems == [
        f"image_ends row {i} ends at byte {ends[i]}, past the {ends[5] + 3} bytes of image_data" for i in (6, 7)
    ]


def test_ends_out_of_order(tmp_path: Path) -> None:
    """A row ending before the row before it is named."""
    out = make_store(tmp_path / "s.h5", "webp", True)
    with h5py.File(out, "r") as f:
        ends = f["image_ends"][:].tolist()
    damage(out, lambda f: f["image_ends"].__setitem__(4, ends[2]))
    assert verify_store(out).problems == [f"image_ends row 4 ends at byte {ends[2]}, before the row before it ({ends[3]})"]


def test_shape_unlike_the_store(tmp_path: Path) -> None:
    """In a store of one shape every row is its size; a changed shape is named (and changes the checksum)."""
    out = damage(make_store(tmp_path / "s.h5", "jpeg:90", False), lambda f: f["shapes"].__setitem__(1, [12, 15, 3]))
    assert verify_store(out).problems == [
        "shapes row 1 is 12x15x3 (H, W, C) but the store holds 12x16x3",
        f"row 1 (d/001.jpg) {CHANGED}",
    ]


def test_raw_row_of_the_wrong_length(tmp_path: Path) -> None:
    """A raw row (encoding none) holds exactly H * W * C bytes."""
    out = make_store(tmp_path / "s.h5", "none", True)
    damage(out, lambda f: f["shapes"].__setitem__(0, [10, 13, 3]))
    assert verify_store(out).problems == [
        "row 0 holds 360 bytes, not the 390 of its shape",
        f"row 0 (d/000.jpg) {CHANGED}",
    ]


def test_missing_flat_datasets(tmp_path: Path) -> None:
    """image_ends and shapes are required in a store with image_data; image_data in a format-4 store."""
    out = damage(make_store(tmp_path / "a.h5", "png", True), lambda f: f.__delitem__("image_ends"))
    problems = verify_store(out).problems
    assert "the store keeps flat rows (image_data) but image_ends is missing: its rows cannot be found" in problems
    out = damage(make_store(tmp_path / "b.h5", "png", True), lambda f: f.__delitem__("image_data"))
    assert "store format 4 keeps its rows in image_data, which is missing" in verify_store(out).problems


def test_unknown_encoding_attribute(tmp_path: Path) -> None:
    out = damage(make_store(tmp_path / "s.h5", "png", True), lambda f: f.attrs.__setitem__("encoding", "gif"))
    assert verify_store(out).problems == ["encoding attribute 'gif' is not an encoding this imgstore knows"]


def test_verify_cli_on_a_damaged_flat_store(tmp_path: Path) -> None:
    out = damage(make_store(tmp_path / "s.h5", "jpeg:90", True), flip_byte(6))
    result = CliRunner().invoke(app, ["verify", "-q", str(out)])
    assert result.exit_code == 1
    assert f"problem: row 6 (d/006.jpg) {CHANGED}" in result.output


def test_sources_are_checked_by_digest(tmp_path: Path) -> None:
    """--sources on a flat store checks what it checks on any store: each file is there with the stored SHA-256
    (rows are not compared with a new decode of the files: a lossy encoding gives other pixels)."""
    src = tmp_path / "src"
    out = tmp_path / "s.h5"
    with ImageIndexer(out, size=(16, 12), encoding="jpeg:90", variable=True) as ix:
        for i in range(4):
            data = f"file {i}".encode()
            (src / "d").mkdir(parents=True, exist_ok=True)
            (src / "d" / f"{i}.jpg").write_bytes(data)
            ix.add(f"d/{i}.jpg", photo(10 + i, 12, i), sha256=hashlib.sha256(data).digest())
    assert verify_store(out, sources=src).ok
    (src / "d" / "2.jpg").write_bytes(b"changed")
    (src / "d" / "3.jpg").unlink()
    assert verify_store(out, sources=src).problems == [
        "d/2.jpg changed since ingest (sha256 differs)",
        f"d/3.jpg is missing from {src}",
    ]


def test_check_row_ends() -> None:
    """Pure: ends must not go back and must stay within the bytes."""
    assert check_row_ends(10, 100, np.array([120, 150, 150]), 200) == []
    assert check_row_ends(10, 100, np.array([90, 250]), 200) == [
        Problem("image_ends row 10 ends at byte 90, before the row before it (100)", "rows whose ends are out of order"),
        Problem("image_ends row 11 ends at byte 250, past the 200 bytes of image_data", "rows whose ends are out of order"),
    ]


def test_check_shapes() -> None:
    """Pure: channels always; size only in a store of one shape; rows of an unusable shard are passed over."""
    shapes = np.array([[12, 16, 3], [9, 20, 3], [12, 16, 1]])
    assert [p.text for p in check_shapes(0, shapes, 3, [16, 12], True)] == [
        "shapes row 2 is 12x16x1 (H, W, C) but the store holds 3 channels"
    ]
    assert [p.text for p in check_shapes(0, shapes, 3, [16, 12], False)] == [
        "shapes row 1 is 9x20x3 (H, W, C) but the store holds 12x16x3",
        "shapes row 2 is 12x16x1 (H, W, C) but the store holds 12x16x3",
    ]
    assert check_shapes(5, np.zeros((2, 3), np.uint32), 3, None, True, dead=[(5, 7)]) == []


def test_flat_spans() -> None:
    """Pure: rows grouped by bytes, each group at least one row."""
    assert flat_spans(0, np.array([5, 10, 15, 40, 41]), 10) == [(0, 2), (2, 3), (3, 4), (4, 5)]
    assert flat_spans(7, np.array([], np.int64), 10) == []


# ============================================================================================ info


def test_info_of_a_variable_jpeg_store(tmp_path: Path) -> None:
    out = make_store(tmp_path / "s.h5", "jpeg:90", True)
    info = store_info(out)
    with h5py.File(out, "r") as f:
        used = int(f["image_ends"][-1])
    assert info["encoding"] == "jpeg:90:420" and info["variable_shape"] is True and info["image_shape"] is None
    assert info["row_shapes"] == {
        "height": {"min": 10, "median": 12, "max": 16},
        "width": {"min": 12, "median": 15, "max": 18},
        "channels": [3],
    }
    assert info["bytes_per_image"] == {"stored": used / 8, "on_disk": out.stat().st_size / 8, "virtual": False}
    text = format_info(info)
    assert "  images      8 of their own shapes (H, W, C)" in text
    assert "  encoding    jpeg:90:420" in text
    assert "  row shapes  H 10/12/16  W 12/15/18  (min/median/max)" in text
    assert "  per image   " in text and " stored, " in text
    as_json = json.loads(CliRunner().invoke(app, ["info", "--json", str(out)]).stdout)
    assert as_json["encoding"] == "jpeg:90:420" and as_json["row_shapes"] == info["row_shapes"]


def test_info_reads_shapes_in_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The row shapes' spread is the same when shapes are read a few rows at a time (bounded memory)."""
    out = make_store(tmp_path / "s.h5", "png", True, range(20))
    whole = store_info(out)["row_shapes"]
    monkeypatch.setattr(imgstore.store.info, "SHAPE_BATCH", 3)
    assert store_info(out)["row_shapes"] == whole
    heights = sorted(shape_of(i, True)[0] for i in range(20))
    assert whole["height"] == {"min": heights[0], "median": heights[9], "max": heights[-1]}


def test_info_of_raw_fixed_store(tmp_path: Path) -> None:
    """A format-2 store: encoding none, one shape, H * W * C bytes per image."""
    out = tmp_path / "r.h5"
    with ImageIndexer(out, size=(16, 12)) as ix:
        for i in range(3):
            ix.add(f"{i}.png", photo(12, 16, i))
    info = store_info(out)
    assert info["encoding"] == "none" and info["variable_shape"] is False and info["image_shape"] == [12, 16, 3]
    assert info["bytes_per_image"]["stored"] == 12 * 16 * 3
    assert info["row_shapes"]["height"] == {"min": 12, "median": 12, "max": 12}
    text = format_info(info)
    assert "  images      3 x 12x16x3 uint8  (N, H, W, C)" in text and "  encoding    none (raw pixels)" in text
    assert "row shapes" not in text and "  per image   576 B stored" in text


def test_info_of_an_empty_flat_store(tmp_path: Path) -> None:
    info = store_info(make_store(tmp_path / "s.h5", "png", True, range(0)))
    assert info["row_shapes"] is None and info["bytes_per_image"] is None
    assert "  images      0 of their own shapes (H, W, C)" in format_info(info)


# ============================================================================================ merge


@pytest.mark.parametrize("encoding", ["jpeg:90", "none"])
@pytest.mark.parametrize("copy", [False, True])
def test_merge_flat_shards(tmp_path: Path, copy: bool, encoding: str) -> None:
    """Merged flat shards read back the shards' rows (check=True), verify clean and keep the encoding."""
    shards = [make_shard(tmp_path / f"p{k}.h5", k, 3, 11, encoding) for k in (1, 2, 3)]
    out = tmp_path / "m.h5"
    report = merge_shards(out, shards, copy=copy)
    assert report.count == 11
    merged = imgstore.open(out, check=True)
    want = [row for s in shards for row in rows_of(s)]
    assert len(merged) == 11 and all(np.array_equal(merged[i], want[i]) for i in range(11))
    assert [merged.row_bytes(i) for i in range(11)] == [imgstore.open(s).row_bytes(i) for s in shards for i in range(len(imgstore.open(s)))]
    assert merged.names == [f"d/{i:03d}.jpg" for i in range(11)]
    assert merged.encoding == imgstore.open(shards[0]).encoding and merged.variable
    assert verify_store(out, decode=True).ok
    with h5py.File(out, "r") as f:
        assert "images" not in f and f.attrs["imgstore_format"] == 4
        assert f["image_data"].is_virtual != copy and not f["image_ends"].is_virtual
        assert f["image_ends"][-1] == sum(int(h5py.File(s, "r")["image_ends"][-1]) for s in shards)
    if not copy:
        assert verify_store(out).notes == ["image_data is a merged (virtual) dataset over 3 file(s)"]


def test_merge_flat_shards_with_an_empty_one(tmp_path: Path) -> None:
    """A shard with no rows maps nothing; the rows after it keep their offsets."""
    shards = [make_shard(tmp_path / f"p{k}.h5", k, 3, 2, "png") for k in (1, 2, 3)]  # shard 1 holds no row
    merge_shards(tmp_path / "m.h5", shards)
    assert [r.tolist() for r in rows_of(tmp_path / "m.h5")] == [r.tolist() for s in shards for r in rows_of(s)]
    assert verify_store(tmp_path / "m.h5").ok


def test_merged_fixed_shape_flat_store_exports(tmp_path: Path) -> None:
    """A merged store of one shape (PNG rows) exports the same vectors as its rows."""
    shards = [make_shard(tmp_path / f"p{k}.h5", k, 2, 6, "png", variable=False) for k in (1, 2)]
    merge_shards(tmp_path / "m.h5", shards)
    export_vectors(tmp_path / "m.h5", tmp_path / "m.u8bin")
    rows = np.stack([r.reshape(-1) for s in shards for r in rows_of(s)])
    body = (tmp_path / "m.u8bin").read_bytes()[8:]  # after the u8bin header (rows, dims as int32)
    assert body == rows.tobytes()


def test_merge_refuses_mixed_encodings(tmp_path: Path) -> None:
    a = make_shard(tmp_path / "a.h5", 1, 2, 6, "jpeg:90")
    b = make_shard(tmp_path / "b.h5", 2, 2, 6, "png")
    with pytest.raises(StoreError) as err:
        merge_shards(tmp_path / "m.h5", [a, b])
    assert str(err.value) == f"shards disagree on encoding: {a} has jpeg:90:420 but {b} has png:1"
    assert not (tmp_path / "m.h5").exists()


def test_merge_refuses_flat_with_fixed(tmp_path: Path) -> None:
    a = make_shard(tmp_path / "a.h5", 1, 2, 6, "webp")
    b = tmp_path / "b.h5"
    attrs = {"shard": [2, 2], "shard_range": [3, 6], "shard_total": 6, "resize_mode": "shorter"}
    with ImageIndexer(b, size=(16, 12), attrs=attrs) as ix:
        for i in range(3, 6):
            ix.add(f"d/{i:03d}.jpg", photo(12, 16, i))
    with pytest.raises(StoreError) as err:
        merge_shards(tmp_path / "m.h5", [b, a], copy=True)
    assert str(err.value) == (
        f"cannot merge {a} (flat webp:80 rows of their own shapes (format 4)) with {b} (raw fixed-shape images "
        "(format 2-3)): give shards of one run"
    )


def test_merge_refuses_variable_with_fixed_flat(tmp_path: Path) -> None:
    a = make_shard(tmp_path / "a.h5", 1, 2, 6, "png", variable=True)
    b = make_shard(tmp_path / "b.h5", 2, 2, 6, "png", variable=False)
    with pytest.raises(StoreError, match="shards disagree on rows of their own shapes: .* has yes but .* has no"):
        merge_shards(tmp_path / "m.h5", [a, b])


def test_virtual_flat_merge_without_a_shard(tmp_path: Path) -> None:
    """A moved shard: missing_sources names it, verify reports its rows once, not row by row."""
    shards = [make_shard(tmp_path / f"p{k}.h5", k, 3, 9) for k in (1, 2, 3)]
    merge_shards(tmp_path / "m.h5", shards)
    os.rename(shards[1], tmp_path / "moved.h5")
    assert missing_sources(tmp_path / "m.h5") == ["p2.h5"]
    problems = verify_store(tmp_path / "m.h5").problems
    assert problems == [
        f"shapes rows 3-5 (and rows of image_names, sha256, checksums, image_data) come from p2.h5, which is missing "
        f"(looked for {tmp_path / 'p2.h5'}): they read as zeros"
    ]


def test_copy_merge_stops_at_a_damaged_flat_row(tmp_path: Path) -> None:
    shards = [make_shard(tmp_path / f"p{k}.h5", k, 2, 6) for k in (1, 2)]
    damage(shards[1], flip_byte(1))
    with pytest.raises(StoreError, match=r"p2.h5 row 1 \(d/004.jpg\) does not match its checksum"):
        merge_shards(tmp_path / "m.h5", shards, copy=True)
    assert not (tmp_path / "m.h5").exists()


# ============================================================================================ --dask shard tasks


def test_shard_tasks_get_every_ingest_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run_shard hands the shard's ingest every field of IngestOptions as given, but the five it sets itself: a
    field added later (the encoding, resize modes) reaches the shard tasks without code here."""
    seen: list[IngestOptions] = []

    def fake_ingest(src: Any, out: Path, opts: IngestOptions, attrs: Any = None) -> Any:
        seen.append(opts)
        Path(out).write_bytes(b"")
        return type("R", (), {"count": 0, "skipped": [], "candidates": 0})()

    monkeypatch.setattr(imgstore.distributed, "ingest", fake_ingest)
    opts = IngestOptions(decode=DecodeOptions(size=(20, 10), channels=1), workers=0, dedupe=True,
                         compression="gzip", buffer_size=7, timeout=9.0, flush_every=0.5)  # fmt: skip
    imgstore.distributed.run_shard(tmp_path, str(tmp_path / "s.h5"), opts, 2, 3, label="x", task_workers=0)
    (got,) = seen
    own = {"shard": (2, 3), "overwrite": True, "resume": False, "append": False, "workers": 0}
    for f in dataclasses.fields(IngestOptions):
        assert getattr(got, f.name) == own.get(f.name, getattr(opts, f.name)), f.name
    assert got.decode == opts.decode


def test_checksums_cover_bytes_not_offsets(tmp_path: Path) -> None:
    """Why a merged store keeps the shards' checksums: a row's checksum is the same wherever its bytes lie."""
    out = make_store(tmp_path / "s.h5", "png", True, range(2))
    with h5py.File(out, "r") as f:
        b = f["image_data"][int(f["image_ends"][0]) : int(f["image_ends"][1])]
        shape = f["shapes"][1]
        assert flat_crc(shape, b) == zlib.crc32(b.tobytes(), zlib.crc32(np.asarray(shape, "<u4").tobytes()))
        assert row_checksum(flat_crc(shape, b), "d/001.jpg", None, bytes([1]) * 32) == int(f["checksums"][1])


# ============================================================================================ with the ingest pipeline

ENCODED = IngestOptions(decode=DecodeOptions(size=(16, 16), resize_mode="shorter"), encode="jpeg:90", workers=0)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Photos of varied sizes ingested as JPEG rows of their own shapes (shorter side 16): one store, and 3 shards."""
    from test_merge import ingest_shards, make_photos

    root = tmp_path_factory.mktemp("encoded")
    src = make_photos(root / "photos")
    ingest(src, root / "single.h5", ENCODED)
    return {"src": src, "single": root / "single.h5", "shards": ingest_shards(src, root / "parts", 3, ENCODED)}


def assert_same_flat_store(merged: Path, single: Path) -> None:
    """Row for row the same stored bytes, shapes, names, digests, labels and skipped files."""
    a, b = imgstore.open(single), imgstore.open(merged, check=True)
    assert len(a) == len(b) and a.variable and b.variable and str(a.encoding) == str(b.encoding) == "jpeg:90:420"
    assert [b.row_bytes(i) for i in range(len(b))] == [a.row_bytes(i) for i in range(len(a))]
    np.testing.assert_array_equal(b.shapes, a.shapes)
    assert b.names == a.names and b.sha256 == a.sha256 and b.skipped == a.skipped
    assert all(np.array_equal(b[i], a[i]) for i in range(len(a)))


@pytest.mark.parametrize("copy", [False, True])
def test_merged_encoded_shards_equal_a_single_ingest(encoded: dict[str, Any], tmp_path: Path, copy: bool) -> None:
    """Shards ingested with --encode jpeg --resize-mode shorter merge (virtual or copied) into the single store."""
    merge_shards(tmp_path / "m.h5", encoded["shards"], copy=copy)
    assert_same_flat_store(tmp_path / "m.h5", encoded["single"])
    report = verify_store(tmp_path / "m.h5", sources=encoded["src"], decode=True)
    assert report.ok, report.problems
    info = store_info(tmp_path / "m.h5")
    assert info["encoding"] == "jpeg:90:420" and info["variable_shape"] and info["bytes_per_image"]["virtual"] != copy
    assert min(info["row_shapes"]["height"]["min"], info["row_shapes"]["width"]["min"]) == 16


def test_merge_refuses_shards_of_another_upscale(encoded: dict[str, Any], tmp_path: Path) -> None:
    """upscale is recorded only in ingest_options: shards that differ on it are refused like any row-shaping option."""
    from test_merge import ingest_shards

    one = ingest_shards(encoded["src"], tmp_path / "a", 2, ENCODED)[0]
    two = ingest_shards(encoded["src"], tmp_path / "b", 2, dataclasses.replace(ENCODED, decode=DecodeOptions(
        size=(16, 16), resize_mode="shorter", upscale=True)))[1]  # fmt: skip
    with pytest.raises(StoreError) as err:
        merge_shards(tmp_path / "m.h5", [one, two])
    assert str(err.value) == f"shards disagree on upscale: {one} has False but {two} has True"


def test_dask_ingest_of_encoded_rows(encoded: dict[str, Any], tmp_path: Path) -> None:
    """--dask with --encode and --resize-mode shorter: the options reach every shard task and the merged store is
    the single-machine one."""
    distributed = pytest.importorskip("distributed")
    from imgstore.distributed import ingest_dask

    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            report = ingest_dask(encoded["src"], tmp_path / "out.h5", ENCODED, client, shards=3)
    assert report.count == len(imgstore.open(encoded["single"]))
    for shard in report.shards:
        with h5py.File(shard, "r") as f:
            assert f.attrs["encoding"] == "jpeg:90:420" and json.loads(f.attrs["ingest_options"])["encode"] == "jpeg:90:420"
    assert_same_flat_store(tmp_path / "out.h5", encoded["single"])
    assert verify_store(tmp_path / "out.h5").ok
