"""store.torch_dataset(): uint8 and float32 items equal to the stored pixels, DataLoaders with 2 workers (fork and
spawn), list_collate for rows of different shapes. scripts/test.sh installs the torch extra, so these tests
run in CI; only the torchvision test skips (its wheels here are CUDA builds that cannot import with CPU torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgstore
from imgstore.errors import OptionError

from conftest import BuiltStore, StoreFactory

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader  # noqa: E402

from imgstore.torchdata import list_collate  # noqa: E402


@pytest.fixture
def rgb(tmp_path: Path, build_store: StoreFactory) -> BuiltStore:
    """A labelled store of 21 distinct random 12x10 RGB images (H=12, W=10), labels i % 4."""
    return build_store(tmp_path / "rgb.h5", n=21, shape=(12, 10, 3), seed=3)


def chw(image: np.ndarray) -> torch.Tensor:
    """The (C, H, W) uint8 tensor of an (H, W, C) uint8 array."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def test_uint8_items_are_the_stored_bytes(rgb: BuiltStore) -> None:
    """dtype="uint8": item i is store[i] as a CHW uint8 tensor, with row i's label."""
    ds = imgstore.open(rgb.path).torch_dataset(dtype="uint8")
    assert len(ds) == 21
    for i in range(21):
        x, y = ds[i]
        assert x.dtype == torch.uint8 and x.shape == (3, 12, 10)
        assert torch.equal(x, chw(rgb.images[i])) and y == rgb.labels[i]


def test_float32_items_are_pixels_over_255(rgb: BuiltStore) -> None:
    """dtype="float32" (the default): item i is store[i] / 255 as a CHW float32 tensor."""
    for ds in (imgstore.open(rgb.path).torch_dataset(), imgstore.open(rgb.path).torch_dataset(dtype="float32")):
        x, y = ds[7]
        assert x.dtype == torch.float32 and x.shape == (3, 12, 10)
        assert torch.equal(x, chw(rgb.images[7]).float() / 255) and y == rgb.labels[7]
        assert torch.equal((x * 255).round().to(torch.uint8), chw(rgb.images[7]))


def test_grey_store_has_one_channel(tmp_path: Path, build_store: StoreFactory) -> None:
    """A 1-channel store gives (1, H, W) tensors."""
    grey = build_store(tmp_path / "grey.h5", n=4, shape=(6, 9, 1), classes=None)
    x, y = imgstore.open(grey.path).torch_dataset(dtype="uint8")[2]
    assert x.shape == (1, 6, 9) and torch.equal(x, chw(grey.images[2])) and y == -1


@pytest.mark.parametrize("dtype", ["float64", "UINT8", "", None])
def test_unknown_dtype_is_an_option_error(rgb: BuiltStore, dtype: object) -> None:
    """Any dtype but "uint8" and "float32" is an OptionError naming both."""
    with pytest.raises(OptionError, match=r"dtype must be one of 'uint8', 'float32', got"):
        imgstore.open(rgb.path).torch_dataset(dtype=dtype)  # type: ignore[arg-type]


def test_transform_gets_the_tensor_of_the_dtype(rgb: BuiltStore) -> None:
    """The transform receives the CHW tensor in the chosen dtype, and the item carries what it returns."""
    seen = []

    def transform(t: torch.Tensor) -> torch.Tensor:
        seen.append(t.dtype)
        return t[:, :4, :5]

    x, _ = imgstore.open(rgb.path).torch_dataset(transform, dtype="uint8")[1]
    assert seen == [torch.uint8] and torch.equal(x, chw(rgb.images[1])[:, :4, :5])


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_dataloader_two_workers_shuffled(rgb: BuiltStore, method: str, dtype: str) -> None:
    """A shuffled 2-worker DataLoader (batch 8) yields every row exactly once, with its pixels and its label."""
    ds = imgstore.open(rgb.path).torch_dataset(dtype=dtype)
    ds.store[0]  # the parent has the file open before the workers start
    loader = DataLoader(
        ds,
        batch_size=8,
        shuffle=True,
        num_workers=2,
        multiprocessing_context=method,
        generator=torch.Generator().manual_seed(1),
    )
    row_of = {image.tobytes(): i for i, image in enumerate(rgb.images)}
    assert len(row_of) == 21  # the rows are told apart by their pixels
    seen = []
    for x, y in loader:
        assert x.dtype == getattr(torch, dtype) and x.shape[1:] == (3, 12, 10) and len(x) in (8, 5)
        pixels = x if dtype == "uint8" else (x * 255).round().to(torch.uint8)
        for image, label in zip(pixels, y.tolist()):
            i = row_of[image.permute(1, 2, 0).contiguous().numpy().tobytes()]
            assert label == rgb.labels[i]
            seen.append(i)
    assert sorted(seen) == list(range(21)) and seen != sorted(seen)


@pytest.mark.parametrize("workers", [0, 2])
def test_list_collate_in_a_dataloader(rgb: BuiltStore, workers: int) -> None:
    """collate_fn=list_collate gives (list of each row's tensor, int64 labels), in and out of worker processes."""
    ds = imgstore.open(rgb.path).torch_dataset(dtype="uint8")
    loader = DataLoader(ds, batch_size=8, num_workers=workers, collate_fn=list_collate)
    batches = list(loader)
    assert [len(images) for images, _ in batches] == [8, 8, 5]
    images = [x for batch, _ in batches for x in batch]
    labels = torch.cat([y for _, y in batches])
    assert labels.dtype == torch.int64 and labels.tolist() == rgb.labels.tolist()
    assert all(torch.equal(x, chw(rgb.images[i])) for i, x in enumerate(images))


def test_list_collate_keeps_different_shapes() -> None:
    """list_collate leaves each image as it is, whatever its shape, and stacks the labels."""
    batch = [(torch.zeros(3, 4, 5, dtype=torch.uint8), 2), (torch.ones(3, 7, 2, dtype=torch.uint8), 0)]
    batch.append((torch.full((1, 3, 3), 9, dtype=torch.uint8), -1))
    images, labels = list_collate(batch)
    assert [tuple(x.shape) for x in images] == [(3, 4, 5), (3, 7, 2), (1, 3, 3)]
    assert all(x is item[0] for x, item in zip(images, batch))
    assert torch.equal(labels, torch.tensor([2, 0, -1])) and labels.dtype == torch.int64
    assert list_collate([])[0] == [] and list_collate([])[1].shape == (0,)


@pytest.fixture
def native(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    """A store made by the real pipeline with rows of their own shapes (``--resize-mode none --encode png``, so
    each row is exactly its photo), labelled by class folder, and the photos in row order."""
    from imgstore.ingest import ingest
    from imgstore.options import DecodeOptions, IngestOptions

    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(4, 6), (6, 4), (5, 5), (3, 8), (7, 2)]]
    src = tmp_path / "photos"
    for i, row in enumerate(rows):
        (src / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(row).save(src / f"c{i % 2}" / f"{i}.png")
    out = tmp_path / "native.h5"
    opts = IngestOptions(decode=DecodeOptions(resize_mode="none"), encode="png", labels="folder", workers=0)
    ingest(src, out, opts)
    with imgstore.open(out) as store:
        order = [int(Path(name).stem) for name in store.names]
    return out, [rows[i] for i in order]


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_rows_of_their_own_shapes_keep_them(native: tuple[Path, list[np.ndarray]], dtype: str, method: str) -> None:
    """Each item has its own row's shape and pixels, in 2 worker processes; list_collate batches them, the default
    collate cannot; a transform that makes one size (a crop, as RandomResizedCrop does) lets it."""
    path, rows = native
    ds = imgstore.open(path).torch_dataset(dtype=dtype)
    loader = DataLoader(ds, batch_size=5, collate_fn=list_collate, num_workers=2, multiprocessing_context=method)
    images, labels = next(iter(loader))
    assert [tuple(x.shape) for x in images] == [(3, *row.shape[:2]) for row in rows]
    for x, row in zip(images, rows):
        assert torch.equal(x, chw(row) if dtype == "uint8" else chw(row).float() / 255)
    assert labels.tolist() == imgstore.open(path).labels.tolist()
    with pytest.raises(RuntimeError, match="equal size"):
        next(iter(DataLoader(ds, batch_size=5)))
    cropped = imgstore.open(path).torch_dataset(lambda x: x[:, :2, :2], dtype=dtype)
    batch, _ = next(iter(DataLoader(cropped, batch_size=5)))
    assert batch.shape == (5, 3, 2, 2)


def test_torchvision_random_resized_crop(rgb: BuiltStore) -> None:
    """torchvision v2 transforms take the uint8 CHW items as images; RandomResizedCrop makes one size to collate."""
    pytest.importorskip("torchvision", exc_type=ImportError)
    from torchvision.transforms import v2

    ds = imgstore.open(rgb.path).torch_dataset(v2.RandomResizedCrop(8, antialias=True), dtype="uint8")
    x, y = next(iter(DataLoader(ds, batch_size=8)))
    assert x.shape == (8, 3, 8, 8) and x.dtype == torch.uint8 and y.tolist() == rgb.labels[:8].tolist()
