"""Merging shard stores: virtual and copied merges equal a single-machine ingest; incompatible shards are refused."""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

import imgstore
from imgstore.cli import app
from imgstore.errors import OptionError, OutputExistsError, StoreError
from imgstore.ingest import ingest
from imgstore.options import DecodeOptions, IngestOptions
from imgstore.store.info import store_info
from imgstore.store.merge import merge_shards, missing_sources
from imgstore.store.writer import ImageIndexer
from imgstore.vectors.export import export_vectors

from conftest import encode, pattern, write

OPTIONS = IngestOptions(decode=DecodeOptions(size=(16, 12)), workers=0)
CLASSES = ("bird", "cat", "dog")


def make_photos(root: Path, count: int = 30) -> Path:
    """``count`` small photos in class folders (JPEG and PNG of varied sizes) plus a truncated JPEG, an empty file
    and a text file named .png."""
    for i in range(count):
        fmt, ext = (("JPEG", "jpg"), ("PNG", "png"))[i % 2]
        write(root / CLASSES[i % 3] / f"img{i:02d}.{ext}", encode(pattern(24 + i, 18 + (i * 7) % 20, i), fmt))
    write(root / "cat" / "truncated.jpg", encode(pattern(64, 48, 99), "JPEG")[:400])
    write(root / "dog" / "empty.png", b"")
    write(root / "bird" / "notes.png", b"not an image, just text\n")
    return root


def ingest_shards(src: Path, folder: Path, n: int, options: IngestOptions = OPTIONS) -> list[Path]:
    """Ingest every shard K/N of ``src`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(1, n + 1):
        path = folder / f"part-{k}-of-{n}.h5"
        ingest(src, path, dataclasses.replace(options, shard=(k, n), overwrite=True))
        paths.append(path)
    return paths


def assert_same_store(merged: Path, single: Path) -> None:
    """Same rows, names, digests, labels, skipped lists and row-shaping attributes."""
    a, b = imgstore.open(single), imgstore.open(merged)
    assert len(b) == len(a) == int(b.attrs["count"])
    assert b.shape == a.shape
    np.testing.assert_array_equal(b[:], a[:])
    assert b.names == a.names
    assert b.sha256 == a.sha256
    assert b.skipped == a.skipped
    if a.labels is None:
        assert b.labels is None
    else:
        np.testing.assert_array_equal(b.labels, a.labels)
    assert b.class_names == a.class_names
    for key in ("imgstore_format", "size", "channels", "resize_mode", "filter", "exact", "source", "complete"):
        assert b.attrs.get(key) == a.attrs.get(key), key


def make_shard(path: Path, k: int, n: int, total: int, *, rows: int | None = None, size=(8, 6), channels=3,
               attrs: dict | None = None, labels: list[int] | None = None, complete: bool = True) -> Path:  # fmt: skip
    """A shard written directly with ImageIndexer: ``rows`` images (default: its whole range), pixels = row index."""
    start, stop = (k - 1) * total // n, k * total // n
    rows = stop - start if rows is None else rows
    base = {"shard": [k, n], "shard_range": [start, stop], "shard_total": total, "resize_mode": "crop"}
    ix = ImageIndexer(path, size=size, channels=channels, attrs={**base, **(attrs or {})})
    for i in range(rows):
        image = np.full((size[1], size[0], channels), start + i, np.uint8)
        ix.add(f"f{start + i:03d}.png", image, label=None if labels is None else labels[i], sha256=bytes([i]) * 32)
    ix.close() if complete else ix.abort()
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A photo folder, its single-machine store, and its 3 shards (ranges of 11 files; the bad files in all)."""
    root = tmp_path_factory.mktemp("merge")
    src = make_photos(root / "photos")
    single = root / "single.h5"
    ingest(src, single, OPTIONS)
    shards = ingest_shards(src, root / "parts", 3)
    return {"root": root, "src": src, "single": single, "s1": shards[0], "s2": shards[1], "s3": shards[2]}


def shards_of(data: dict[str, Path]) -> list[Path]:
    return [data["s1"], data["s2"], data["s3"]]


# -- equal to a single-machine ingest -----------------------------------------------------------------------------


def test_fixture_has_skipped_files_in_several_shards(data: dict[str, Path]) -> None:
    """The sample folder exercises skipped files, and more than one shard holds some."""
    single = imgstore.open(data["single"])
    assert len(single) == 30 and len(single.skipped) == 3
    assert sum(1 for p in shards_of(data) if imgstore.open(p).skipped) >= 2


def test_virtual_merge_equals_single_ingest(data: dict[str, Path], tmp_path: Path) -> None:
    """Virtual datasets over 3 shards read exactly like the single-machine store."""
    report = merge_shards(tmp_path / "merged.h5", shards_of(data))
    assert report.virtual and report.count == 30 and len(report.skipped) == 3
    assert_same_store(tmp_path / "merged.h5", data["single"])
    with h5py.File(tmp_path / "merged.h5") as f:
        for name in ("images", "image_names", "sha256", "skipped_names", "skipped_reasons"):
            assert f[name].is_virtual, name
        assert f["images"].maxshape == (None, 12, 16, 3)
    assert missing_sources(tmp_path / "merged.h5") == []


def test_copy_merge_equals_single_ingest(data: dict[str, Path], tmp_path: Path) -> None:
    """--copy writes a plain self-contained store: same rows, chunks (1, H, W, C), nothing virtual."""
    seen: list[int] = []
    report = merge_shards(tmp_path / "copy.h5", shards_of(data), copy=True, progress=seen.append)
    assert not report.virtual and sum(seen) == 30
    assert_same_store(tmp_path / "copy.h5", data["single"])
    with h5py.File(tmp_path / "copy.h5") as f:
        assert not any(obj.is_virtual for obj in f.values() if isinstance(obj, h5py.Dataset))
        assert f["images"].chunks == (1, 12, 16, 3) and f["images"].maxshape == (None, 12, 16, 3)


def test_merged_attributes(data: dict[str, Path], tmp_path: Path) -> None:
    """count is the sum, complete is true, merged_from names the shards relative to OUT, shard attributes go."""
    out = tmp_path / "sub" / "merged.h5"
    out.parent.mkdir()
    merge_shards(out, shards_of(data))
    attrs = imgstore.open(out).attrs
    assert attrs["count"] == 30 and attrs["complete"] is True
    assert attrs["merged_from"] == [os.path.relpath(p, out.parent) for p in shards_of(data)]
    assert not {"shard", "shard_range", "shard_total"} & set(attrs)
    assert attrs["created"] == imgstore.open(data["s1"]).attrs["created"]


def test_shards_in_any_order(data: dict[str, Path], tmp_path: Path) -> None:
    """Shards given in any order are joined in K order."""
    merge_shards(tmp_path / "m.h5", [data["s3"], data["s1"], data["s2"]])
    assert_same_store(tmp_path / "m.h5", data["single"])


def test_reads_across_shard_boundaries(data: dict[str, Path], tmp_path: Path) -> None:
    """Slices, index lists, masks and batches that span shards match the single store."""
    merge_shards(tmp_path / "m.h5", shards_of(data))
    a, b = imgstore.open(data["single"]), imgstore.open(tmp_path / "m.h5")
    boundary = len(imgstore.open(data["s1"]))
    for key in (slice(boundary - 2, boundary + 3), slice(None, None, 7), [29, 0, boundary, boundary - 1], -1):
        np.testing.assert_array_equal(b[key], a[key])
    mask = np.arange(30) % 4 == 1
    np.testing.assert_array_equal(b[mask], a[mask])
    for x, y in zip(b.iter_batches(7), a.iter_batches(7)):
        np.testing.assert_array_equal(x, y)


def test_pickled_merged_store_reads_in_a_subprocess(data: dict[str, Path], tmp_path: Path) -> None:
    """A pickled merged store reopens and reads in another process (DataLoader workers)."""
    merge_shards(tmp_path / "m.h5", shards_of(data))
    blob = pickle.dumps(imgstore.open(tmp_path / "m.h5"))
    code = "import pickle, sys; s = pickle.loads(sys.stdin.buffer.read()); sys.stdout.buffer.write(s[5:25].tobytes())"
    out = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, check=True, cwd="/")
    assert out.stdout == imgstore.open(data["single"])[5:25].tobytes()


def test_moved_folder_still_reads(data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sources are relative to OUT's folder: moving OUT with its shards keeps it readable from any working folder."""
    before = tmp_path / "before"
    shutil.copytree(data["s1"].parent, before / "parts")
    merge_shards(before / "m.h5", sorted((before / "parts").glob("*.h5")))
    after = tmp_path / "elsewhere" / "after"
    after.parent.mkdir()
    shutil.move(before, after)
    monkeypatch.chdir(tmp_path)
    assert_same_store(after / "m.h5", data["single"])
    assert missing_sources(after / "m.h5") == []


def test_missing_shard_file_is_reported(data: dict[str, Path], tmp_path: Path) -> None:
    """HDF5 reads a missing source as zeros; missing_sources names the shard file that is gone."""
    shutil.copytree(data["s1"].parent, tmp_path / "parts")
    merge_shards(tmp_path / "m.h5", sorted((tmp_path / "parts").glob("*.h5")))
    (tmp_path / "parts" / "part-2-of-3.h5").unlink()
    assert missing_sources(tmp_path / "m.h5") == ["parts/part-2-of-3.h5"]
    assert missing_sources(data["single"]) == []


def test_percent_in_shard_name(data: dict[str, Path], tmp_path: Path) -> None:
    """A % in a shard's file name is escaped for HDF5 (which reads %b as a format specifier)."""
    paths = []
    for p in shards_of(data):
        paths.append(tmp_path / f"100%b {p.name}")
        shutil.copy(p, paths[-1])
    merge_shards(tmp_path / "m.h5", paths)
    assert_same_store(tmp_path / "m.h5", data["single"])
    assert missing_sources(tmp_path / "m.h5") == []


def test_info_and_export_on_merged_store(data: dict[str, Path], tmp_path: Path) -> None:
    """imgstore info and export work on a virtual store and export the same vectors as from the single store."""
    merge_shards(tmp_path / "m.h5", shards_of(data))
    info = store_info(tmp_path / "m.h5", skipped=True)
    assert info["count"] == 30 and info["complete"] and info["datasets"]["images"]["virtual"]
    assert [row["name"] for row in info["skipped"]] == [n for n, _ in imgstore.open(data["single"]).skipped]
    export_vectors(tmp_path / "m.h5", tmp_path / "m.u8bin")
    export_vectors(data["single"], tmp_path / "s.u8bin")
    assert (tmp_path / "m.u8bin").read_bytes() == (tmp_path / "s.u8bin").read_bytes()
    assert (tmp_path / "m.u8bin.names.txt").read_text() == (tmp_path / "s.u8bin.names.txt").read_text()


@pytest.mark.parametrize("copy", [False, True])
def test_more_shards_than_files(tmp_path: Path, copy: bool) -> None:
    """Empty shards (more shards than files) merge cleanly, virtual or copied."""
    src = tmp_path / "few"
    write(src / "a.png", encode(pattern(20, 20, 1), "PNG"))
    write(src / "b.jpg", encode(pattern(30, 20, 2), "JPEG"))
    write(src / "c.png", b"")
    ingest(src, tmp_path / "single.h5", OPTIONS)
    shards = ingest_shards(src, tmp_path / "parts", 5)
    merge_shards(tmp_path / "m.h5", shards, copy=copy)
    assert_same_store(tmp_path / "m.h5", tmp_path / "single.h5")


@pytest.mark.parametrize("copy", [False, True])
def test_labels_and_class_names_are_merged(tmp_path: Path, copy: bool) -> None:
    """Labelled shards give a merged store with every label in order and the shared class names."""
    attrs = {"labels_source": "folder", "class_names": ["a", "b", "c"]}
    s1 = make_shard(tmp_path / "s1.h5", 1, 2, 7, attrs=attrs, labels=[0, 1, 2])
    s2 = make_shard(tmp_path / "s2.h5", 2, 2, 7, attrs=attrs, labels=[2, 1, 0, 0])
    merge_shards(tmp_path / "m.h5", [s1, s2], copy=copy)
    store = imgstore.open(tmp_path / "m.h5")
    assert store.labels.tolist() == [0, 1, 2, 2, 1, 0, 0]
    assert store.class_names == ["a", "b", "c"] and store.attrs["labels_source"] == "folder"
    assert store[:][:, 0, 0, 0].tolist() == list(range(7))
    assert store.names == [f"f{i:03d}.png" for i in range(7)]


def test_labels_from_ingest(data: dict[str, Path], tmp_path: Path) -> None:
    """Sharded + merged folder labels equal the single-machine labels."""
    options = dataclasses.replace(OPTIONS, labels="folder")
    ingest(data["src"], tmp_path / "single.h5", options)
    assert imgstore.open(tmp_path / "single.h5").labels is not None
    shards = ingest_shards(data["src"], tmp_path / "parts", 3, options)
    for copy in (False, True):
        merge_shards(tmp_path / f"m{copy}.h5", shards, copy=copy)
        assert_same_store(tmp_path / f"m{copy}.h5", tmp_path / "single.h5")


# -- refusals -----------------------------------------------------------------------------------------------------


def refused(tmp_path: Path, shards: list[Path], message: str, error: type[Exception] = StoreError) -> None:
    """merge_shards raises exactly ``message`` and leaves nothing behind."""
    before = set(tmp_path.iterdir())
    with pytest.raises(error) as exc:
        merge_shards(tmp_path / "m.h5", shards)
    assert str(exc.value) == message
    assert set(tmp_path.iterdir()) == before


def test_refuses_incomplete_shard(tmp_path: Path) -> None:
    """A shard whose ingest did not finish is named, with the command to redo it."""
    s1 = make_shard(tmp_path / "s1.h5", 1, 2, 6)
    s2 = make_shard(tmp_path / "s2.h5", 2, 2, 6, rows=1, complete=False)
    message = f"{s2} (shard 2/2) is incomplete: its ingest did not finish; ingest it again with --shard 2/2"
    refused(tmp_path, [s1, s2], message)


def test_refuses_missing_shard(tmp_path: Path) -> None:
    """A missing K is a gap in the files covered."""
    s1, s3 = make_shard(tmp_path / "s1.h5", 1, 3, 9), make_shard(tmp_path / "s3.h5", 3, 3, 9)
    refused(tmp_path, [s1, s3], "shard 2/3 is missing: no shard covers files [3, 6) of 9; give all 3 shards")


def test_refuses_duplicate_shard(tmp_path: Path) -> None:
    """The same K twice is refused, naming both files."""
    s1, s2 = make_shard(tmp_path / "s1.h5", 1, 2, 6), make_shard(tmp_path / "s2.h5", 2, 2, 6)
    dup = tmp_path / "s2-again.h5"
    shutil.copy(s2, dup)
    refused(tmp_path, [s1, s2, dup], f"{s2} and {dup} are both shard 2/2: give each shard once")


def test_refuses_shards_of_different_runs(tmp_path: Path) -> None:
    """Shards of different N (or of a folder that changed) do not form one run."""
    s1, s2 = make_shard(tmp_path / "s1.h5", 1, 2, 6), make_shard(tmp_path / "s2.h5", 2, 3, 6)
    message = f"{s1} is shard 1/2 of 6 files but {s2} is shard 2/3 of 6 files: give the shards of one run"
    refused(tmp_path, [s1, s2], message)
    s3 = make_shard(tmp_path / "s3.h5", 2, 2, 7)
    message = f"{s1} is shard 1/2 of 6 files but {s3} is shard 2/2 of 7 files: give the shards of one run"
    refused(tmp_path, [s1, s3], message)


def _set_range(path: Path, start: int, stop: int) -> None:
    with h5py.File(path, "r+") as f:
        f.attrs["shard_range"] = [start, stop]


def test_refuses_overlapping_ranges(tmp_path: Path) -> None:
    """Ranges that overlap are refused, naming both shards and the files in both."""
    s1, s2 = make_shard(tmp_path / "s1.h5", 1, 2, 6), make_shard(tmp_path / "s2.h5", 2, 2, 6)
    _set_range(s2, 2, 6)
    message = (
        f"overlap: {s1} (shard 1/2) ends at file 3 but {s2} (shard 2/2) starts at file 2: files [2, 3) are in both"
    )
    refused(tmp_path, [s1, s2], message)


def test_refuses_gap_between_ranges(tmp_path: Path) -> None:
    """Ranges with a hole between them, or short of the total, are refused."""
    s1, s2 = make_shard(tmp_path / "s1.h5", 1, 2, 6), make_shard(tmp_path / "s2.h5", 2, 2, 6)
    _set_range(s2, 4, 6)
    message = (
        f"gap: {s1} (shard 1/2) ends at file 3 but {s2} (shard 2/2) starts at file 4: files [3, 4) are in no shard"
    )
    refused(tmp_path, [s1, s2], message)
    _set_range(s2, 3, 5)
    refused(tmp_path, [s1, s2], f"gap: {s2} (shard 2/2) ends at file 5 of 6: files [5, 6) are in no shard")


@pytest.mark.parametrize(
    ("kw", "shown"),
    [
        ({"size": (8, 8)}, "size: {s1} has 8x6 but {s2} has 8x8"),
        ({"channels": 1}, "channels: {s1} has 3 but {s2} has 1"),
        ({"attrs": {"resize_mode": "pad"}}, "resize mode: {s1} has crop but {s2} has pad"),
        ({"attrs": {"labels_source": "folder"}}, "labels scheme: {s1} has none but {s2} has folder"),
    ],
)
def test_refuses_incompatible_shards(tmp_path: Path, kw: dict, shown: str) -> None:
    """Shards must agree on size, channels, resize mode and labels scheme."""
    s1, s2 = make_shard(tmp_path / "s1.h5", 1, 2, 6), make_shard(tmp_path / "s2.h5", 2, 2, 6, **kw)
    refused(tmp_path, [s1, s2], "shards disagree on " + shown.format(s1=s1, s2=s2))


def test_refuses_shards_ingested_with_different_options(data: dict[str, Path], tmp_path: Path) -> None:
    """Real shards ingested with another resize mode are refused."""
    padded = dataclasses.replace(OPTIONS, decode=DecodeOptions(size=(16, 12), resize_mode="pad"))
    other = ingest_shards(data["src"], tmp_path, 3, padded)
    message = f"shards disagree on resize mode: {data['s1']} has crop but {other[1]} has pad"
    refused(tmp_path, [data["s1"], other[1], data["s3"]], message)


def test_refuses_different_class_names(tmp_path: Path) -> None:
    """Labels only mean the same when the class names are the same."""
    ab = {"labels_source": "folder", "class_names": ["a", "b"]}
    ac = {"labels_source": "folder", "class_names": ["a", "c"]}
    s1 = make_shard(tmp_path / "s1.h5", 1, 2, 6, attrs=ab, labels=[0, 1, 0])
    s2 = make_shard(tmp_path / "s2.h5", 2, 2, 6, attrs=ac, labels=[0, 1, 0])
    refused(tmp_path, [s1, s2], f"shards disagree on class names: {s1} has [a, b] but {s2} has [a, c]")


def test_refuses_existing_output(data: dict[str, Path], tmp_path: Path) -> None:
    """An existing OUT is kept unless overwrite is given."""
    out = tmp_path / "m.h5"
    out.write_bytes(b"keep me")
    refused(tmp_path, shards_of(data), f"{out} exists: pass --overwrite to replace it", OutputExistsError)
    assert out.read_bytes() == b"keep me"
    merge_shards(out, shards_of(data), overwrite=True)
    assert_same_store(out, data["single"])


def test_refuses_output_that_is_a_shard(tmp_path: Path) -> None:
    """Overwriting one of the shards with the merge is refused."""
    s1, s2 = make_shard(tmp_path / "s1.h5", 1, 2, 6), make_shard(tmp_path / "s2.h5", 2, 2, 6)
    with pytest.raises(OptionError) as exc:
        merge_shards(s2, [s1, s2], overwrite=True)
    assert str(exc.value) == f"{s2} is one of the shards: give a new file name for the merged store"


def test_refuses_plain_store_and_missing_file(data: dict[str, Path], tmp_path: Path) -> None:
    """A store made without --shard, and a path that does not exist, are named."""
    single = data["single"]
    message = f"{single} is not a shard (no shard attribute): make shards with imgstore ingest --shard K/N"
    refused(tmp_path, [single], message)
    gone = tmp_path / "gone.h5"
    refused(tmp_path, [gone], f"{gone} does not exist: give the shard files made by imgstore ingest --shard K/N")
    refused(tmp_path, [], "give at least one shard to merge", OptionError)


# -- command line -------------------------------------------------------------------------------------------------


def test_cli_merge(data: dict[str, Path], tmp_path: Path, cli: CliRunner) -> None:
    """imgstore merge prints one summary line; --copy makes a self-contained store."""
    out = tmp_path / "m.h5"
    result = cli.invoke(app, ["merge", str(out), *map(str, shards_of(data))])
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"merged 3 shards into {out}: 30 images, skipped 3 (virtual: it reads the shard files, keep them next to it)\n"
    )
    result = cli.invoke(app, ["merge", str(tmp_path / "c.h5"), *map(str, shards_of(data)), "--copy", "-q"])
    assert result.exit_code == 0, result.output
    assert result.output.endswith("(a self-contained copy)\n")
    assert_same_store(tmp_path / "c.h5", data["single"])


def test_cli_merge_refusal(data: dict[str, Path], tmp_path: Path, cli: CliRunner) -> None:
    """A refused merge prints Error: ... and exits 1."""
    result = cli.invoke(app, ["merge", str(tmp_path / "m.h5"), str(data["s1"]), str(data["s3"])])
    assert result.exit_code == 1
    assert result.output == "Error: shard 2/3 is missing: no shard covers files [11, 22) of 33; give all 3 shards\n"
