"""ImageIndexer: buffering edges, the store format, flush-on-error, its guard rails, and what reopen refuses."""

from __future__ import annotations

import multiprocessing
import re
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

import imgstore
from imgstore.errors import OptionError, OutputExistsError, StoreBusyError, StoreError
from imgstore.lock import WriterLock, lock_path
from imgstore.store.reader import open_store
from imgstore.store.writer import ImageIndexer, auto_buffer_size


def img(i: int, shape: tuple[int, int, int] = (6, 8, 3)) -> np.ndarray:
    """A distinct image per index."""
    return np.full(shape, i % 256, np.uint8) + np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)


@pytest.mark.parametrize("n", [0, 1, 4, 5, 13])
def test_buffer_edges(tmp_path: Path, n: int) -> None:
    """0, 1, exactly one buffer (4), one buffer + 1, many buffers: every image lands, in order, named."""
    path = tmp_path / "s.h5"
    with ImageIndexer(path, size=(8, 6), channels=3, buffer_size=4) as ix:
        for i in range(n):
            ix.add(f"img{i}.jpg", img(i))
        assert ix.count == n
        assert ix.committed == (n // 4) * 4  # only full buffers are written before close
    with h5py.File(path) as f:
        assert f["images"].shape == (n, 6, 8, 3)
        assert f["images"].chunks == (1, 6, 8, 3)
        assert f["images"].maxshape == (None, 6, 8, 3)
        assert f["images"].dtype == np.uint8
        assert f.attrs["count"] == n and bool(f.attrs["complete"])
        for i in range(n):
            np.testing.assert_array_equal(f["images"][i], img(i))
        assert [s.decode() for s in f["image_names"][:]] == [f"img{i}.jpg" for i in range(n)]


def test_format_attributes(tmp_path: Path) -> None:
    """Root attributes of format 2: format, version, count, complete, size [W, H], channels, created, extras."""
    path = tmp_path / "s.h5"
    with ImageIndexer(path, size=(8, 6), attrs={"resize_mode": "crop", "source": "photos"}) as ix:
        ix.add("a.png", img(0))
    with h5py.File(path) as f:
        a = f.attrs
        assert a["imgstore_format"] == 2
        assert a["imgstore_version"] == imgstore.__version__
        assert list(a["size"]) == [8, 6] and a["channels"] == 3
        assert a["resize_mode"] == "crop" and a["source"] == "photos"
        assert a["created"].endswith("+00:00")
        assert f["image_names"].dtype.metadata["vlen"] is str
        assert f["skipped_names"].shape == (0,) and f["skipped_reasons"].shape == (0,)


def test_exception_flushes_and_leaves_incomplete(tmp_path: Path) -> None:
    """If the with-block raises, buffered images are flushed, complete stays false, the file opens."""
    path = tmp_path / "s.h5"
    with pytest.raises(RuntimeError):
        with ImageIndexer(path, size=(8, 6), buffer_size=4) as ix:
            for i in range(6):
                ix.add(f"{i}", img(i))
            ix.skip("bad.jpg", "truncated JPEG")
            raise RuntimeError("boom")
    store = open_store(path)
    assert len(store) == 6 and not store.complete
    np.testing.assert_array_equal(store[5], img(5))
    assert store.skipped == [("bad.jpg", "truncated JPEG")]


def test_keyboard_interrupt_flushes(tmp_path: Path) -> None:
    """Ctrl-C inside the block behaves like any exception: flushed, incomplete, readable."""
    path = tmp_path / "s.h5"
    with pytest.raises(KeyboardInterrupt):
        with ImageIndexer(path, size=(8, 6), buffer_size=100) as ix:
            ix.add("a", img(1))
            raise KeyboardInterrupt
    assert len(open_store(path)) == 1


def test_close_twice_and_use_after_close(tmp_path: Path) -> None:
    """close() is idempotent; adding after close is a clear StoreError."""
    ix = ImageIndexer(tmp_path / "s.h5", size=(8, 6))
    ix.add("a", img(0))
    ix.close()
    ix.close()
    assert ix.closed
    with pytest.raises(StoreError, match="closed"):
        ix.add("b", img(1))


def test_existing_file_refused_without_overwrite(tmp_path: Path) -> None:
    """An existing output is never clobbered unless overwrite=True."""
    path = tmp_path / "s.h5"
    path.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="overwrite"):
        ImageIndexer(path, size=(8, 6))
    assert path.read_bytes() == b"precious"
    with ImageIndexer(path, size=(8, 6), overwrite=True) as ix:
        ix.add("a", img(0))
    assert len(open_store(path)) == 1


def test_datasets_created_on_first_add_with_inferred_size(tmp_path: Path) -> None:
    """Without size, the first image fixes the shape; datasets do not exist before it."""
    path = tmp_path / "s.h5"
    with ImageIndexer(path, channels=1) as ix:
        assert ix.file is None and not path.exists()  # nothing is created before the layout is known
        ix.add("gray", np.zeros((5, 7), np.uint8))
        assert ix.shape == (5, 7, 1)
    with h5py.File(path) as f:
        assert f["images"].shape == (1, 5, 7, 1) and list(f.attrs["size"]) == [7, 5]


def test_wrong_shape_and_dtype_rejected(tmp_path: Path) -> None:
    """An image of another shape or a non-uint8 dtype is an OptionError naming the image."""
    with ImageIndexer(tmp_path / "s.h5", size=(8, 6)) as ix:
        with pytest.raises(OptionError, match="'x'.*shape"):
            ix.add("x", np.zeros((6, 9, 3), np.uint8))
        with pytest.raises(OptionError, match="float64"):
            ix.add("y", np.zeros((6, 8, 3)))


def test_reserve_commit_writes_in_place(tmp_path: Path) -> None:
    """reserve() hands out buffer rows to fill directly; commit() records them."""
    path = tmp_path / "s.h5"
    with ImageIndexer(path, size=(8, 6), buffer_size=2) as ix:
        for i in range(3):
            ix.reserve()[...] = img(i)
            ix.commit(f"r{i}")
    store = open_store(path)
    assert store.names == ["r0", "r1", "r2"]
    np.testing.assert_array_equal(store[2], img(2))


def test_labels_and_hashes(tmp_path: Path) -> None:
    """Optional per-row labels (int64) and sha256 digests are stored alongside; all-or-none is enforced."""
    path = tmp_path / "s.h5"
    with ImageIndexer(path, size=(8, 6)) as ix:
        ix.add("a", img(0), label=3, sha256=b"\x01" * 32)
        ix.add("b", img(1), label=0, sha256=b"\x02" * 32)
        with pytest.raises(OptionError, match="label"):
            ix.add("c", img(2), sha256=b"\x03" * 32)
    store = open_store(path)
    assert store.labels.tolist() == [3, 0] and store.labels.dtype == np.int64
    assert store.sha256 == ["01" * 32, "02" * 32]


def test_undecodable_names_are_escaped(tmp_path: Path) -> None:
    """A name with surrogate escapes (non-UTF-8 bytes from os) is stored with \\xNN escapes."""
    path = tmp_path / "s.h5"
    with ImageIndexer(path, size=(8, 6)) as ix:
        ix.add(b"bad-\xff.jpg".decode("utf-8", "surrogateescape"), img(0))
        ix.add("café 写真.jpg", img(1))
        ix.skip(b"x\xfe.png".decode("utf-8", "surrogateescape"), "not an image")
    store = open_store(path)
    assert store.names == ["bad-\\xff.jpg", "café 写真.jpg"]
    assert store.skipped == [("x\\xfe.png", "not an image")]


def test_empty_store_is_valid(tmp_path: Path) -> None:
    """A store with no images still has its datasets and opens with length 0."""
    path = tmp_path / "s.h5"
    with ImageIndexer(path, size=(8, 6)):
        pass
    store = open_store(path)
    assert len(store) == 0 and store.shape == (6, 8, 3) and store.complete


def test_never_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The indexer writes nothing to stdout or stderr, even on error paths."""
    with pytest.raises(ValueError):
        with ImageIndexer(tmp_path / "s.h5", size=(8, 6), buffer_size=2) as ix:
            for i in range(5):
                ix.add(str(i), img(i))
            raise ValueError
    assert capsys.readouterr() == ("", "")


def test_auto_buffer_size() -> None:
    """About 64 MiB of images per write, at least one, at most 4096."""
    assert auto_buffer_size((256, 256, 3)) == 64 * 1024 * 1024 // (256 * 256 * 3)
    assert auto_buffer_size((8000, 8000, 3)) == 1
    assert auto_buffer_size((1, 1, 1)) == 4096


# -- reopen: what it refuses, with what message ---------------------------------------------------------------------
def small_store(path: Path, n: int = 5) -> Path:
    """A complete store of ``n`` images written by ImageIndexer."""
    with ImageIndexer(path, size=(8, 6)) as ix:
        for i in range(n):
            ix.add(f"{i}.png", img(i))
    return path


def refused(path: Path, error: type[Exception], message: str, *, exact: bool = True) -> None:
    """ImageIndexer.reopen(path) raises ``error`` with exactly ``message`` (a regex when not ``exact``), leaves the
    file as it was and gives its writer lock back."""
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(error) as caught:
        ImageIndexer.reopen(path)
    if exact:
        assert str(caught.value) == message
    else:
        assert re.fullmatch(message, str(caught.value)), str(caught.value)
    assert (path.read_bytes() if path.is_file() else None) == before
    assert not lock_path(path).exists()


def test_reopen_of_nothing(tmp_path: Path) -> None:
    """A missing store, or one in a folder that does not exist, is named with what to do."""
    refused(tmp_path / "none.h5", StoreError, f"{tmp_path / 'none.h5'} does not exist: there is nothing to append to or resume")
    gone = tmp_path / "no" / "s.h5"
    with pytest.raises(OptionError) as caught:
        ImageIndexer.reopen(gone)
    assert str(caught.value) == f"the folder of {gone} does not exist: create {gone.parent} first"


def test_reopen_of_what_is_not_a_store(tmp_path: Path) -> None:
    """A folder, a file that is not HDF5 and an HDF5 file that is not a store are refused, each saying why."""
    folder = tmp_path / "folder.h5"
    folder.mkdir()
    q = re.escape(str(folder))
    refused(folder, StoreError, rf"{q} cannot be opened as a store: Is a directory \(imgstore verify {q} says more\)", exact=False)
    text = tmp_path / "text.h5"
    text.write_text("not HDF5")
    q = re.escape(str(text))
    refused(text, StoreError, rf"{q} cannot be opened as a store: .*file signature not found.* \(imgstore verify {q} says more\)",
            exact=False)  # fmt: skip
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    refused(foreign, StoreError, f"{foreign} is not an imgstore store: it cannot be appended to")


def test_reopen_of_a_store_without_images_or_size(tmp_path: Path) -> None:
    """A store closed before its image size was known (only skipped files) cannot be continued without a size."""
    path = tmp_path / "s.h5"
    ix = ImageIndexer(path)
    ix.skip("a.jpg", "truncated JPEG")
    ix.close()
    assert open_store(path).skipped == [("a.jpg", "truncated JPEG")]
    refused(path, StoreError, f"{path} holds no images and records no image size: give the size to write to it")


def test_reopen_of_a_store_open_for_reading_here(tmp_path: Path) -> None:
    """HDF5 will not open for writing a file this process reads: the message says to close the reader first."""
    path = small_store(tmp_path / "s.h5")
    reader = imgstore.open(path)
    reader[0]
    refused(path, StoreError, f"{path} is open for reading in this process (imgstore.open or h5py.File): close it first")
    reader.close()
    with ImageIndexer.reopen(path) as ix:
        ix.add("more.png", img(7))
    assert open_store(path).names[-1] == "more.png"


def test_reopen_of_a_store_rewritten_without_swmr_support(tmp_path: Path) -> None:
    """A store copied into HDF5's oldest file format (superblock 0, as some tools rewrite files) cannot be written
    in SWMR mode: refused with HDF5's reason, the file untouched."""
    src = small_store(tmp_path / "s.h5")
    old = tmp_path / "old.h5"
    with h5py.File(src, "r") as a, h5py.File(old, "w", libver="earliest") as b:
        for key in a:
            a.copy(a[key], b, name=key)
        b.attrs.update(dict(a.attrs))
    assert len(open_store(old)) == 5  # readers still read it
    q = re.escape(str(old))
    refused(old, StoreError, rf"cannot open {q} for writing: .*superblock version for SWMR is less than 3.*", exact=False)


def test_reopen_of_a_store_whose_journal_is_short(tmp_path: Path) -> None:
    """A journal with fewer rows than are committed is damage: named, with the command that says more."""
    path = small_store(tmp_path / "s.h5")
    with h5py.File(path, "r+") as f:
        f["_journal/image_names.ends"].resize((3,))
    with pytest.raises(StoreError) as caught:
        ImageIndexer.reopen(path)
    assert str(caught.value) == (
        f"{path} is damaged: the journal of image_names holds 3 rows but 5 are committed (run imgstore verify on it)"
    )
    assert not lock_path(path).exists()
    with imgstore.open(path) as store:  # refused before its first change: still complete, with its 5 names
        assert store.complete and len(store.names) == 5


def _hold_lock(path: str, held: multiprocessing.Queue, release: multiprocessing.Event) -> None:  # type: ignore[type-arg]
    WriterLock(path).acquire()
    held.put("held")
    release.wait(60)


@pytest.fixture
def locked_by_another_process(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A store whose writer lock another process holds: (path, that process's pid)."""
    path = small_store(tmp_path / "s.h5")
    ctx = multiprocessing.get_context("fork")
    held, release = ctx.Queue(), ctx.Event()
    child = ctx.Process(target=_hold_lock, args=(str(path), held, release))
    child.start()
    try:
        assert held.get(timeout=30) == "held"
        yield path, child.pid  # type: ignore[misc]
    finally:
        release.set()
        child.join(30)


def test_reopen_of_a_store_another_process_writes(locked_by_another_process: tuple[Path, int]) -> None:
    """A store another process is writing is refused at once, naming that process; the file is untouched."""
    path, pid = locked_by_another_process
    before = path.read_bytes()
    with pytest.raises(StoreBusyError) as caught:
        ImageIndexer.reopen(path)
    assert re.fullmatch(
        rf"{re.escape(str(path))} is being written by another imgstore process \(pid {pid}, .*\): "
        "wait for it to finish or stop it",
        str(caught.value),
    ), str(caught.value)
    assert path.read_bytes() == before


def test_reopen_of_a_store_of_a_newer_format_version(tmp_path: Path) -> None:
    """A store written by a newer imgstore (format 5) is refused rather than written in a layout this one does
    not know; readers refuse it already. (So did the releases before format 3 refuse stores with meta columns.)"""
    path = small_store(tmp_path / "s.h5")
    with h5py.File(path, "r+") as f:
        f.attrs["imgstore_format"] = 5
    with pytest.raises(StoreError, match="format 5"):
        imgstore.open(path)
    with pytest.raises(StoreError, match="format 5"):
        ImageIndexer.reopen(path).close()
