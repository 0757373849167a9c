"""imgstore.open: committed rows only, indexing forms, pickling and use from other processes."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

import imgstore
from imgstore.errors import StoreError

from conftest import StoreFactory, encode, pattern


def img(i: int) -> np.ndarray:
    return np.full((4, 5, 3), i, np.uint8)


@pytest.fixture
def store_path(tmp_path: Path, build_store: StoreFactory) -> Path:
    """A store of 10 images whose pixels equal their index (committed 3 at a time), and a truncated JPEG skipped."""
    truncated = encode(pattern(200, 150), "JPEG")[:3000]
    images = np.stack([img(i) for i in range(10)])
    names = [f"d/{i}.png" for i in range(10)]
    made = build_store(tmp_path / "s.h5", images, names=names, classes=None, bad={"bad.jpg": truncated}, buffer_size=3)
    return made.path


def test_len_getitem_slices_and_index_arrays(store_path: Path) -> None:
    """Ints, negative ints, slices, steps, index lists in any order and boolean masks all work."""
    s = imgstore.open(store_path)
    assert len(s) == 10 and s.shape == (4, 5, 3)
    assert (s[3] == 3).all() and (s[-1] == 9).all()
    assert s[2:5][:, 0, 0, 0].tolist() == [2, 3, 4]
    assert s[::4][:, 0, 0, 0].tolist() == [0, 4, 8]
    assert s[[7, 1, 7]][:, 0, 0, 0].tolist() == [7, 1, 7]
    mask = np.zeros(10, bool)
    mask[[0, 9]] = True
    assert s[mask][:, 0, 0, 0].tolist() == [0, 9]
    assert s[5:5].shape == (0, 4, 5, 3)
    with pytest.raises(IndexError):
        s[10]
    with pytest.raises(IndexError):
        s[[0, 11]]


def test_names_skipped_attrs(store_path: Path) -> None:
    """names, skipped, attrs and complete reflect the file."""
    s = imgstore.open(store_path)
    assert s.names == [f"d/{i}.png" for i in range(10)]
    assert s.skipped == [("bad.jpg", "truncated JPEG")]
    assert s.complete and s.attrs["count"] == 10 and s.labels is None and s.class_names is None


def test_iter_batches(store_path: Path) -> None:
    """Batches cover the store in order, the last one short."""
    sizes = [b.shape[0] for b in imgstore.open(store_path).iter_batches(4)]
    assert sizes == [4, 4, 2]
    firsts = np.concatenate([b[:, 0, 0, 0] for b in imgstore.open(store_path).iter_batches(3)])
    assert firsts.tolist() == list(range(10))


def test_rows_past_count_are_invisible(store_path: Path) -> None:
    """Rows beyond the count attribute (an interrupted write's leftovers) are not shown."""
    with h5py.File(store_path, "r+") as f:
        f.attrs["count"] = 6
    s = imgstore.open(store_path)
    assert len(s) == 6 and len(s.names) == 6 and s[-1][0, 0, 0] == 5
    with pytest.raises(IndexError):
        s[6]


def test_count_beyond_rows_is_damage(store_path: Path) -> None:
    """A count larger than the rows on disk is reported as damage, not read as garbage."""
    with h5py.File(store_path, "r+") as f:
        f.attrs["count"] = 50
    with pytest.raises(StoreError, match="damaged"):
        imgstore.open(store_path)


def test_not_a_store(tmp_path: Path) -> None:
    """Missing files, folders, non-HDF5 files and foreign HDF5 files are StoreErrors that say so."""
    with pytest.raises(StoreError, match="does not exist"):
        imgstore.open(tmp_path / "nope.h5")
    with pytest.raises(StoreError, match="folder"):
        imgstore.open(tmp_path)
    (tmp_path / "t.h5").write_text("x")
    with pytest.raises(StoreError, match="not an HDF5 file"):
        imgstore.open(tmp_path / "t.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(StoreError, match="not an imgstore store"):
        imgstore.open(tmp_path / "other.h5")


def test_pickles_without_file_handle(store_path: Path) -> None:
    """A pickled store carries its path, not the HDF5 handle, and reads after unpickling."""
    s = imgstore.open(store_path)
    s[0]
    blob = pickle.dumps(s)
    assert len(blob) < 4096
    t = pickle.loads(blob)
    assert (t[4] == 4).all() and t.names == s.names


def _read_sum(args: tuple[imgstore.ImageStore, int]) -> int:
    store, i = args
    return int(store[i].sum())


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_works_in_worker_processes(store_path: Path, method: str) -> None:
    """A store opened (and read) in the parent is usable from a 2-process pool, forked or spawned."""
    s = imgstore.open(store_path)
    s[0]  # the parent holds an open handle when the workers start
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(2) as pool:
        sums = pool.map(_read_sum, [(s, i) for i in range(10)])
    assert sums == [i * 60 for i in range(10)]


# -- PyTorch ------------------------------------------------------------------------------------------------------
@pytest.fixture
def labelled(tmp_path: Path, build_store: StoreFactory) -> Path:
    """A store of 12 images (pixel value = index) with labels index % 3."""
    images = np.stack([img(i) for i in range(12)])
    return build_store(tmp_path / "l.h5", images, names=[f"{i:02d}.png" for i in range(12)], classes=("a", "b", "c")).path


def test_torch_dataset_items(labelled: Path) -> None:
    """Items are (CHW float tensor in [0, 1], label); a transform is applied."""
    torch = pytest.importorskip("torch")
    ds = imgstore.open(labelled).torch_dataset()
    x, y = ds[5]
    assert isinstance(x, torch.Tensor) and x.shape == (3, 4, 5) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full((3, 4, 5), 5 / 255)) and y == 2 and len(ds) == 12
    flipped = imgstore.open(labelled).torch_dataset(transform=lambda t: 1 - t)
    assert torch.allclose(flipped[0][0], torch.ones(3, 4, 5))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_torch_dataloader_two_workers(labelled: Path, method: str) -> None:
    """A 2-worker DataLoader (fork and spawn) reads every image once, with its label."""
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    ds = imgstore.open(labelled).torch_dataset()
    ds.store[0]  # the parent has the file open before the workers start
    loader = DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context=method, shuffle=False)
    xs, ys = zip(*loader)
    x = torch.cat(xs)
    assert x.shape == (12, 3, 4, 5)
    assert torch.allclose(x[:, 0, 0, 0] * 255, torch.arange(12, dtype=torch.float32))
    assert torch.cat(ys).tolist() == [i % 3 for i in range(12)]


def test_torch_dataset_without_labels(store_path: Path) -> None:
    """Stores without labels give label -1."""
    pytest.importorskip("torch")
    assert imgstore.open(store_path).torch_dataset()[3][1] == -1
