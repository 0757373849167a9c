"""Shared fixtures: small real images made with Pillow, real stores made by the ingest pipeline, and a CLI runner."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgstore.ingest import ingest
from imgstore.options import DecodeOptions, IngestOptions


def pattern(width: int, height: int, seed: int = 0) -> Image.Image:
    """An RGB test image with smooth gradients, hard edges and noise, asymmetric so any flip or crop shows."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 255 * x / max(1, width - 1)
    g = 255 * y / max(1, height - 1)
    b = 128 + 100 * np.sin(x / 7.0 + seed) * np.cos(y / 11.0)
    img = np.stack([r, g, b], axis=-1)
    img[: height // 3, : width // 4] = (250, 20, 20)  # a red block in the top-left corner marks orientation
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    """The bytes of ``im`` saved in ``fmt``."""
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path``, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def committed_rows(path: Path) -> int:
    """The rows a store at ``path`` has committed (its ``count``), 0 while there is no readable store yet: what a
    test polls before killing a running ingest."""
    from imgstore.store import open_read

    try:
        with open_read(path) as f:
            return int(f.attrs["count"])
    except (OSError, KeyError):
        return 0


# ---------------------------------------------------------------------------------------------------- real stores


@dataclass(frozen=True)
class BuiltStore:
    """A store made by ``imgstore.ingest`` from photos written for it, and what it must hold."""

    path: Path
    src: Path  # the photo folder it was ingested from
    images: np.ndarray  # (N, H, W, C) uint8: row i's pixels (the photos are lossless PNGs of exactly the store size)
    names: list[str]  # row i's name
    labels: np.ndarray | None  # row i's label: its class's index in class_names (None: a store without labels)
    class_names: list[str] | None  # the classes used, sorted, as the labels CSV makes them


StoreFactory = Callable[..., BuiltStore]


@pytest.fixture
def build_store(tmp_path_factory: pytest.TempPathFactory) -> StoreFactory:
    """Make a complete store at ``out`` with the real ingest pipeline (journal, checksums, digests, skipped list).

    ``build_store(out, images=None, *, n=40, shape=(8, 6, 3), seed=0, names=None, classes=("a", "b", "c", "d"),
    bad={}, **options)``: ``images`` (N, H, W, C) uint8, or ``n`` random ones of ``shape`` (H, W, C); each is
    written as a PNG named ``names[i]`` (default ``dir/img000.png``, ...; the names must sort in row order) in a
    folder of its own, outside ``out``'s folder. ``classes``: row i is labelled ``classes[i % len(classes)]``
    through a labels CSV (``None``: no labels). ``bad``: more files, by name, that the ingest must skip. Other
    keyword arguments are :class:`IngestOptions` fields.
    """

    def build(
        out: Path,
        images: np.ndarray | None = None,
        *,
        n: int = 40,
        shape: tuple[int, int, int] = (8, 6, 3),
        seed: int = 0,
        names: Sequence[str] | None = None,
        classes: Sequence[str] | None = ("a", "b", "c", "d"),
        bad: Mapping[str, bytes] | None = None,
        **options: Any,
    ) -> BuiltStore:
        if images is None:
            images = np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(f"images must be uint8 (N, H, W, 1 or 3), got {images.dtype} {images.shape}")
        names = list(names) if names is not None else [f"dir/img{i:03d}.png" for i in range(len(images))]
        if len(names) != len(images) or names != sorted(names) or not all(name.endswith(".png") for name in names):
            raise ValueError("give one .png name per image, sorted in row order (the order ingest stores them in)")
        root = tmp_path_factory.mktemp(out.stem)
        src = root / "photos"
        src.mkdir()
        for name, image in zip(names, images):
            mode = "L" if image.shape[-1] == 1 else "RGB"
            write(src / name, encode(Image.fromarray(image[..., 0] if mode == "L" else image, mode), "PNG"))
        for name, data in (bad or {}).items():
            write(src / name, data)
        labels_csv = None
        if classes is not None:
            labels_csv = root / "labels.csv"
            with open(labels_csv, "w", newline="", encoding="utf-8") as fh:
                rows = csv.writer(fh)
                rows.writerow(["file_name", "label"])
                rows.writerows([name, classes[i % len(classes)]] for i, name in enumerate(names))
                rows.writerows([name, classes[0]] for name in bad or {})
        height, width, channels = images.shape[1:]
        options.setdefault("workers", 0)
        decode = DecodeOptions(size=(width, height), channels=channels)
        report = ingest(src, out, IngestOptions(decode=decode, labels=str(labels_csv) if labels_csv else None, **options))
        if report.count != len(images) or len(report.skipped) != len(bad or {}):
            raise AssertionError(f"ingest stored {report.count} of {len(images)} photos, skipped {report.skipped}")
        used = sorted({classes[i % len(classes)] for i in range(len(images))}) if classes is not None else None
        labels = None
        if used is not None:
            labels = np.array([used.index(classes[i % len(classes)]) for i in range(len(images))], np.int64)
        return BuiltStore(out, src, images, names, labels, used if used else None)

    return build


# ---------------------------------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli() -> CliRunner:
    """The one CLI runner: a fixed terminal width and no colour, so output does not depend on the terminal."""
    return CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})
