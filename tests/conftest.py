"""Shared fixtures: small real images made with Pillow, and a CLI runner."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner


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


@pytest.fixture
def runner() -> CliRunner:
    """A CLI runner with a fixed terminal width."""
    return CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})
