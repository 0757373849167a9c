"""Review of the read side on flat stores made by the real ingest pipeline: regressions for bugs found there."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

import imgstore
from imgstore.errors import StoreError
from imgstore.ingest import ingest
from imgstore.options import DecodeOptions, IngestOptions
from imgstore.store.info import store_info
from imgstore.store.merge import merge_shards
from imgstore.store.verify import verify_store

SIZES = [(30, 40), (50, 20), (1, 7), (9, 1), (33, 33), (64, 48)]


def make_photos(root: Path) -> Path:
    """PNG photos of varied shapes (1-pixel sides too) in two class folders."""
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for k, (h, w) in enumerate(SIZES):
            y, x = np.mgrid[0:h, 0:w]
            arr = np.stack([(x * 7 + k) % 256, (y * 5) % 256, ((x + y) * 3) % 256], -1).astype(np.uint8)
            Image.fromarray(arr).save(root / cls / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_photos(tmp_path_factory.mktemp("review") / "photos")


def ingested(src: Path, out: Path, encode: str, mode: str = "shorter", channels: int = 3) -> Path:
    options = DecodeOptions(size=(8, 8), resize_mode=mode, channels=channels)
    ingest(src, out, IngestOptions(decode=options, encode=encode, workers=0, labels="folder"))
    return out


@pytest.mark.parametrize("mode", ["crop", "shorter"])
def test_grayscale_webp_rows_read_back(photos: Path, tmp_path: Path, mode: str) -> None:
    """WebP has no grayscale: Pillow writes a 1-channel row as RGB, and every read of the store failed."""
    webp = imgstore.open(ingested(photos, tmp_path / "w.h5", "webp", mode, channels=1), check=True)
    png = imgstore.open(ingested(photos, tmp_path / "p.h5", "png", mode, channels=1))
    assert len(webp) == len(png) == 2 * len(SIZES)
    for i in range(len(webp)):
        row = webp[i]
        assert row.shape == png[i].shape == tuple(webp.shapes[i]) and row.shape[2] == 1
        assert np.abs(row.astype(int) - png[i].astype(int)).max() <= 24  # lossy, but the same picture
        assert webp.read(i, 2).shape[2] == 1
    assert verify_store(tmp_path / "w.h5", decode=True).ok


def test_info_of_a_damaged_row_shape_stays_small(photos: Path, tmp_path: Path) -> None:
    """info counted row sides with np.bincount, an array as long as the largest side: one damaged shape of 2**31
    rows asked for 16 GiB (the OOM killer ended ``imgstore info``). Run under a 3 GiB address-space limit."""
    path = ingested(photos, tmp_path / "s.h5", "none")
    with h5py.File(path, "r+") as f:
        f["shapes"][2] = [2**31, 2**31 - 1, 3]
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
        "from imgstore.store.info import store_info\n"
        "shapes = store_info(sys.argv[1])['row_shapes']\n"
        "print(shapes['height']['max'], shapes['width']['max'], shapes['height']['min'])"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(2**31), str(2**31 - 1), "1"]


def test_info_median_of_row_shapes(photos: Path, tmp_path: Path) -> None:
    store = imgstore.open(ingested(photos, tmp_path / "s.h5", "jpeg:90"))
    heights = sorted(int(h) for h in store.shapes[:, 0])
    spread = store_info(tmp_path / "s.h5")["row_shapes"]["height"]
    assert spread == {"min": heights[0], "median": heights[(len(heights) - 1) // 2], "max": heights[-1]}


def test_rows_in_another_format_than_the_encoding_attribute(photos: Path, tmp_path: Path) -> None:
    """Pillow opens any format, so JPEG rows under ``encoding = "png"`` (an attribute no checksum covers) read and
    verified clean with --decode, while extract wrote the JPEG files as .png."""
    path = ingested(photos, tmp_path / "s.h5", "jpeg:90")
    with h5py.File(path, "r+") as f:
        f.attrs["encoding"] = "png"
    report = verify_store(path, decode=True)
    assert not report.ok
    assert any("row 0 (a/0.png) does not decode" in str(p) and "JPEG" in str(p) for p in report.problems)
    with pytest.raises(StoreError, match="row 0 .*JPEG file"):
        imgstore.open(path)[0]


@pytest.mark.parametrize("encode", ["none", "jpeg:90"])
def test_missing_shard_of_a_virtual_flat_merge_is_one_problem(photos: Path, tmp_path: Path, encode: str) -> None:
    """The rows of a missing shard read as zeros: shape 0x0x0 and no file. verify listed them once for the missing
    file, then again as raw rows of the wrong length (none) or, with --decode, as undecodable rows (jpeg)."""
    options = IngestOptions(decode=DecodeOptions(size=(8, 8), resize_mode="shorter"), encode=encode, workers=0)
    shards = []
    for k in (1, 2, 3):
        shards.append(tmp_path / f"part-{k}.h5")
        ingest(photos, shards[-1], dataclasses.replace(options, shard=(k, 3)))
    merge_shards(tmp_path / "merged.h5", shards)
    assert verify_store(tmp_path / "merged.h5", decode=True).ok
    shards[1].unlink()
    problems = [str(p) for p in verify_store(tmp_path / "merged.h5", decode=True).problems]
    assert len(problems) == 1 and "part-2.h5, which is missing" in problems[0], problems


def test_missing_encoding_attribute_is_one_problem(photos: Path, tmp_path: Path) -> None:
    """A missing encoding attribute parsed as the default, none, so every JPEG row was listed again as raw pixels
    of the wrong length ('row 0 holds 682 bytes, not the 264 of its shape'); the checksums still cover the bytes."""
    path = ingested(photos, tmp_path / "s.h5", "jpeg:90")
    with h5py.File(path, "r+") as f:
        del f.attrs["encoding"]
    report = verify_store(path, decode=True)
    assert [str(p) for p in report.problems] == ["encoding attribute is missing: the bytes of image_data cannot be decoded"]
    assert report.checked == 12 and not report.changed_rows


@pytest.mark.parametrize(("size", "shown"), [(None, "missing"), ([8], "[8], not [W, H]"), ([0, 8], "[0, 8], not [W, H]")])
def test_fixed_flat_store_without_its_size(photos: Path, tmp_path: Path, size: list[int] | None, shown: str) -> None:
    """A flat store of one shape has no images dataset: its shape is the size attribute. Without it verify said OK
    (and the reader gave shape (0, 0, 3), export vectors of dimension 0); a 1-value size stopped the row checks."""
    path = ingested(photos, tmp_path / "s.h5", "jpeg:90", mode="crop")
    with h5py.File(path, "r+") as f:
        if size is None:
            del f.attrs["size"]
        else:
            f.attrs["size"] = size
    report = verify_store(path)
    assert [str(p) for p in report.problems] == [
        f"size attribute is {shown}: the images of this store of one shape take their height and width from it"
    ]
    assert report.checked == 12


def test_store_of_own_shapes_needs_no_size(photos: Path, tmp_path: Path) -> None:
    path = ingested(photos, tmp_path / "s.h5", "png")
    with h5py.File(path, "r+") as f:
        del f.attrs["size"]
    assert verify_store(path).ok


def test_raw_row_length_against_a_huge_damaged_shape(photos: Path, tmp_path: Path) -> None:
    """H * W * C was computed in int64, so a damaged shape of 2**31 x 2**31 x 3 was said to want a negative count."""
    path = ingested(photos, tmp_path / "s.h5", "none")
    with h5py.File(path, "r+") as f:
        f["shapes"][2] = [2**31, 2**31, 3]
        length = int(f["image_ends"][2] - f["image_ends"][1])
    problems = [str(p) for p in verify_store(path).problems]
    assert f"row 2 holds {length} bytes, not the {3 * 2**62} of its shape" in problems


@pytest.mark.parametrize("dataset", ["shapes", "image_data"])
def test_flat_datasets_of_the_wrong_rank_are_a_store_error(photos: Path, tmp_path: Path, dataset: str) -> None:
    """shapes stored 1-D made info and preview fail with a bare IndexError (and extract write the rows anyway);
    image_data 2-D was reported as row ends out of order."""
    path = ingested(photos, tmp_path / "s.h5", "jpeg:90")
    with h5py.File(path, "r+") as f:
        values = f[dataset][:]
        del f[dataset]
        f.create_dataset(dataset, data=values[:, 0] if dataset == "shapes" else values[None, :])
    with pytest.raises(StoreError, match=r"is damaged: image_data .* are not bytes \(B,\), ends \(N,\) and shapes \(N, 3\)"):
        imgstore.open(path)
    with pytest.raises(StoreError, match="is damaged"):
        store_info(path)
