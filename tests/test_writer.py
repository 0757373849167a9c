"""ImageIndexer: buffering edges, the store format, flush-on-error, and its guard rails."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import imgstore
from imgstore.errors import OptionError, OutputExistsError, StoreError
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
