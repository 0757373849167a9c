"""scripts/photo_corpus.py: the plan (sizes, crops) without scikit-image, and small real corpora with it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgstore.errors import OptionError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import photo_corpus

SHAPES = [(300, 451), (512, 512), (872, 1000)]  # (H, W) of three sources


def test_target_size_keeps_area() -> None:
    """Every aspect keeps the pixel area of the size given: 500x375 -> 375x500, 577x325, 433x433."""
    assert [photo_corpus._target_size((500, 375), photo_corpus.ASPECTS[a]) for a in ("4:3", "3:4", "16:9", "1:1")] == [
        (500, 375),
        (375, 500),
        (577, 325),
        (433, 433),
    ]


def test_plan_crops_inside_source_with_target_aspect() -> None:
    """Each crop window lies inside its source, has the target's aspect and a side 0.3-1.0 of the largest one."""
    plans = photo_corpus.plan_corpus(Path("c"), 200, (500, 375), 10, 3, ["4:3", "3:4", "16:9", "1:1"], SHAPES)
    assert {(p.width, p.height) for p in plans} == {(500, 375), (375, 500), (577, 325), (433, 433)}
    for p in plans:
        h, w = SHAPES[p.source]
        left, upper, right, lower = p.box
        assert 0 <= left < right <= w + 1e-6 and 0 <= upper < lower <= h + 1e-6
        aspect = p.width / p.height
        assert (right - left) / (lower - upper) == pytest.approx(aspect)
        assert 0.3 - 1e-9 <= (right - left) / min(w, h * aspect) <= 1.0 + 1e-9
    assert plans[7].path == Path("c/class_07/img_000007.jpg")
    assert plans == photo_corpus.plan_corpus(Path("c"), 200, (500, 375), 10, 3, ["4:3", "3:4", "16:9", "1:1"], SHAPES)


@pytest.mark.parametrize(
    "kwargs",
    [{"size": (0, 10)}, {"aspects": ("5:4",)}, {"aspects": "4:3"}, {"workers": 0}, {"quality": 0}, {"seed": -1}],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    """Bad arguments are OptionErrors, raised before anything is written."""
    with pytest.raises(OptionError):
        photo_corpus.write_photo_corpus(tmp_path / "c", 3, **kwargs)
    assert not (tmp_path / "c").exists()


def test_writes_deterministic_corpus_and_reuses_it(tmp_path: Path) -> None:
    """Files have their planned sizes and are the same bytes for 1 or 2 workers; a rerun reuses them."""
    pytest.importorskip("skimage")
    one = photo_corpus.write_photo_corpus(tmp_path / "a", 8, size=(64, 48), classes=3, seed=5, workers=1)
    two = photo_corpus.write_photo_corpus(tmp_path / "b", 8, size=(64, 48), classes=3, seed=5, workers=2)
    assert [p.relative_to(tmp_path / "a") for p in one] == [p.relative_to(tmp_path / "b") for p in two]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(one, two))
    sizes = set()
    for p in one:
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            sizes.add(im.size)
            pixels = np.asarray(im, dtype=np.float32)
        assert pixels.std() > 5  # real texture plus noise, not a flat fill
    assert sizes <= {(64, 48), (48, 64), (74, 42), (55, 55)}
    mtimes = [p.stat().st_mtime_ns for p in one]
    assert photo_corpus.write_photo_corpus(tmp_path / "a", 8, size=(64, 48), classes=3, seed=5) == one
    assert [p.stat().st_mtime_ns for p in one] == mtimes
    fewer = photo_corpus.write_photo_corpus(tmp_path / "a", 4, size=(64, 48), classes=3, seed=5)
    assert sorted((tmp_path / "a").rglob("*.jpg")) == sorted(fewer)


def test_png_corpus_of_small_crops(tmp_path: Path) -> None:
    """fmt="png" writes 32x32 RGB PNGs (a CIFAR-like folder), reuses them, and replaces a JPEG corpus there."""
    pytest.importorskip("skimage")
    jpegs = photo_corpus.write_photo_corpus(tmp_path / "c", 4, size=(32, 32), aspects=("1:1",), workers=1)
    pngs = photo_corpus.write_photo_corpus(tmp_path / "c", 6, size=(32, 32), aspects=("1:1",), workers=1, fmt="png")
    assert [p.name for p in pngs] == [f"img_{i:06d}.png" for i in range(6)]
    assert not any(p.exists() for p in jpegs)
    for p in pngs:
        with Image.open(p) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "RGB", (32, 32))
    mtimes = [p.stat().st_mtime_ns for p in pngs]
    assert photo_corpus.write_photo_corpus(tmp_path / "c", 6, size=(32, 32), aspects=("1:1",), fmt="png") == pngs
    assert [p.stat().st_mtime_ns for p in pngs] == mtimes
    with pytest.raises(OptionError):
        photo_corpus.write_photo_corpus(tmp_path / "d", 2, fmt="gif")


def test_without_scikit_image_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Without scikit-image the command exits 1 with one line saying what to install."""
    monkeypatch.setitem(sys.modules, "skimage", None)  # import skimage now raises ImportError
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    assert photo_corpus.main([str(tmp_path / "c"), "--count", "2"]) == 1
    assert capsys.readouterr().err == "Error: scripts/photo_corpus.py needs scikit-image: pip install scikit-image\n"
