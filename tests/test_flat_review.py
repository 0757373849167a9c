"""Review of the read side on flat stores made by the real ingest pipeline: regressions for bugs found there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgstore
from imgstore.ingest import ingest
from imgstore.options import DecodeOptions, IngestOptions
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
