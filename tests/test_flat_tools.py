"""extract, export and preview on flat stores (format 4): encoded rows (jpeg, webp, png) and rows of their own shapes.

Stores are written by the real ImageIndexer (``encoding=``, ``variable=``); the references are the stored bytes
(``row_bytes``), Pillow's decode of them and ``ImageOps.fit`` for exports at one ``--size``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image, ImageOps
from typer.testing import CliRunner

from imgstore.cli import app
from imgstore.errors import OptionError
from imgstore.extract import export_file_name, extract_images
from imgstore.preview import make_preview, preview_layout
from imgstore.store.reader import open_store
from imgstore.store.writer import ImageIndexer
from imgstore.vectors.export import Shrink, export_ann, export_vectors
from imgstore.vectors.reader import read_vectors

from conftest import encode, pattern, write

ENCODINGS = ("jpeg", "webp", "png")
EXTENSION = {"jpeg": ".jpg", "webp": ".webp", "png": ".png", "none": ".png"}
# Rows of their own shapes (H, W): portrait, landscape, square, and one odd-sized.
SHAPES = [(24, 16), (16, 30), (20, 20), (13, 27)]


def run(cli: CliRunner, *args: object):  # type: ignore[no-untyped-def]
    return cli.invoke(app, [str(a) for a in args])


def row_image(i: int, shape: tuple[int, int], channels: int = 3) -> np.ndarray:
    """Row i's pixels: the conftest pattern (gradients, an orientation mark, noise) at ``shape`` (H, W)."""
    im = pattern(shape[1], shape[0], seed=i)
    arr = np.asarray(im.convert("L") if channels == 1 else im)
    return arr[:, :, None] if arr.ndim == 2 else arr


def flat_store(
    path: Path,
    encoding: str,
    *,
    variable: bool,
    n: int = 8,
    channels: int = 3,
    labels: bool = False,
    meta: bool = False,
) -> list[np.ndarray]:
    """A flat store of ``n`` rows (fixed 20x24, or the SHAPES in turn); returns the pixels given to the indexer."""
    images = [row_image(i, SHAPES[i % len(SHAPES)] if variable else (20, 24), channels) for i in range(n)]
    attrs = {"class_names": ["cat", "dog"]} if labels else None
    columns = (("caption", "text"),) if meta else ()
    with ImageIndexer(path, size=(24, 20), channels=channels, attrs=attrs, meta=columns, encoding=encoding,
                      variable=variable) as ix:  # fmt: skip
        for i, image in enumerate(images):
            ix.add(f"dir/img{i:03d}.png", image, label=i % 2 if labels else None, meta=[f"row {i}"] if meta else ())
    return images


def decoded(data: bytes) -> np.ndarray:
    """What Pillow decodes stored bytes to, as (H, W, C)."""
    arr = np.asarray(Image.open(io.BytesIO(data)))
    return arr[:, :, None] if arr.ndim == 2 else arr


def fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The reference of an export at ``size`` (W, H) of a row of its own shape: ``ImageOps.fit``, bicubic."""
    im = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    arr = np.asarray(ImageOps.fit(im, size, Image.Resampling.BICUBIC))
    return arr[:, :, None] if arr.ndim == 2 else arr


# ------------------------------------------------------------------------------------------------------ extract


@pytest.mark.parametrize("variable", [False, True], ids=["fixed", "variable"])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_extract_writes_encoded_rows_byte_for_byte(tmp_path: Path, encoding: str, variable: bool) -> None:
    """Each encoded row is written as its stored bytes, unchanged, named with the codec's extension."""
    path = tmp_path / "s.h5"
    flat_store(path, encoding, variable=variable)
    written = extract_images(path, tmp_path / "out")
    ext = EXTENSION[encoding]
    assert [p.name for p in written] == [f"{i:06d}_dir__img{i:03d}{ext}" for i in range(8)]
    with open_store(path) as store:
        for i, p in enumerate(written):
            assert p.read_bytes() == store.row_bytes(i)
            assert decoded(p.read_bytes()).shape == tuple(store.shapes[i])
            assert Image.open(p).format == {"jpeg": "JPEG", "webp": "WEBP", "png": "PNG"}[encoding]


def test_extract_png_rows_are_lossless(tmp_path: Path) -> None:
    """A png store's extracted files decode to exactly the pixels that were stored."""
    path = tmp_path / "s.h5"
    images = flat_store(path, "png", variable=True)
    for image, p in zip(images, extract_images(path, tmp_path / "out")):
        assert np.array_equal(decoded(p.read_bytes()), image)


@pytest.mark.parametrize("channels", [3, 1])
def test_extract_raw_rows_of_their_own_shapes(tmp_path: Path, channels: int) -> None:
    """Raw rows of their own shapes become PNG files at their own size, pixel for pixel."""
    path = tmp_path / "s.h5"
    images = flat_store(path, "none", variable=True, channels=channels)
    written = extract_images(path, tmp_path / "out", indices="1-3")
    assert [p.name for p in written] == [f"{i:06d}_dir__img{i:03d}.png" for i in (1, 2, 3)]
    for i, p in zip((1, 2, 3), written):
        assert np.array_equal(decoded(p.read_bytes()), images[i])
        assert Image.open(p).size == (SHAPES[i][1], SHAPES[i][0])


def test_extract_encoded_rows_keep_unique_safe_names(tmp_path: Path) -> None:
    """Rows whose names differ only in their extension (or are unsafe) still get distinct, safe file names."""
    path = tmp_path / "s.h5"
    names = ["a/x.png", "a/x.jpg", "../../etc/passwd", "a/x.jpg.png"]
    with ImageIndexer(path, size=(24, 20), encoding="jpeg") as ix:
        for i, name in enumerate(names):
            ix.add(name, row_image(i, (20, 24)))
    written = extract_images(path, tmp_path / "out")
    assert [p.name for p in written] == ["000000_a__x.jpg", "000001_a__x.jpg", "000002___..__etc__passwd.jpg",
                                         "000003_a__x.jpg.jpg"]  # fmt: skip
    assert all(p.parent == tmp_path / "out" for p in written)
    assert export_file_name(7, "cat/1.png", extension=".webp") == "000007_cat__1.webp"
    with pytest.raises(OptionError, match="invalid extension"):
        export_file_name(7, "cat/1.png", extension="/../x")


def test_extract_encoded_store_with_meta_names_the_files_in_meta_jsonl(tmp_path: Path) -> None:
    """meta.jsonl points at the .jpg files written."""
    path = tmp_path / "s.h5"
    flat_store(path, "jpeg", variable=True, n=3, meta=True, labels=True)
    written = extract_images(path, tmp_path / "out")
    lines = [json.loads(line) for line in written[-1].read_text(encoding="utf-8").splitlines()]
    assert [line["file"] for line in lines] == [p.name for p in written[:-1]]
    assert lines[1] == {"file": "000001_dir__img001.jpg", "row": 1, "name": "dir/img001.png", "label": 1,
                        "class": "dog", "meta": {"caption": "row 1"}}  # fmt: skip


def test_cli_extract_encoded(cli: CliRunner, tmp_path: Path) -> None:
    """The CLI says what kind of files it wrote, and refuses to replace them without --overwrite."""
    path = tmp_path / "s.h5"
    flat_store(path, "webp", variable=True)
    out = tmp_path / "out"
    result = run(cli, "extract", path, out, "--indices", "0,2", "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote 2 WEBP files to {out}\n"
    assert sorted(p.name for p in out.iterdir()) == ["000000_dir__img000.webp", "000002_dir__img002.webp"]
    result = run(cli, "extract", path, out, "--indices", "0", "-q")
    assert result.exit_code == 1 and "pass overwrite=True (--overwrite)" in result.stderr


# ------------------------------------------------------------------------------------------------------- export


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_export_encoded_fixed_store_gives_the_decoded_pixels(tmp_path: Path, encoding: str) -> None:
    """An encoded store of one shape exports each row's decoded pixels, flattened in (H, W, C) order."""
    path = tmp_path / "s.h5"
    flat_store(path, encoding, variable=False, n=10)
    report = export_vectors(path, tmp_path / "v.u8bin")
    assert (report.count, report.dim, report.shape) == (10, 20 * 24 * 3, (20, 24, 3))
    vectors = read_vectors(tmp_path / "v.u8bin")
    with open_store(path) as store:
        expected = np.stack([decoded(store.row_bytes(i)) for i in range(10)]).reshape(10, -1)
    assert np.array_equal(vectors, expected)


def test_export_encoded_fixed_store_in_small_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spans of a few rows (a small batch budget) give the same vectors as one span."""
    from imgstore.vectors import export as E

    path = tmp_path / "s.h5"
    flat_store(path, "jpeg", variable=False, n=10)
    export_vectors(path, tmp_path / "one.u8bin")
    monkeypatch.setattr(E, "BATCH_BYTES", 3 * 20 * 24 * 3)  # three rows per span
    export_vectors(path, tmp_path / "three.u8bin")
    assert (tmp_path / "one.u8bin").read_bytes() == (tmp_path / "three.u8bin").read_bytes()


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("encoding", ["none", "jpeg", "png"])
def test_export_rows_of_their_own_shapes_at_one_size(tmp_path: Path, encoding: str, channels: int) -> None:
    """With size, every row of its own shape is centre-cropped and resized: one dimension, ImageOps.fit's pixels."""
    path = tmp_path / "s.h5"
    flat_store(path, encoding, variable=True, n=9, channels=channels)
    report = export_vectors(path, tmp_path / "v.fvecs", size="12x10")
    assert (report.count, report.dim, report.shape) == (9, 10 * 12 * channels, (10, 12, channels))
    vectors = read_vectors(tmp_path / "v.fvecs")
    assert vectors.shape == (9, 10 * 12 * channels)
    with open_store(path) as store:
        expected = np.stack([fit(store[i], (12, 10)) for i in range(9)]).reshape(9, -1)
    assert np.array_equal(vectors, expected.astype(np.float32))


def test_export_rows_of_their_own_shapes_are_cropped_not_stretched(tmp_path: Path) -> None:
    """A wide row exported square keeps its middle: close to the centre crop resized, far from a stretch."""
    path = tmp_path / "s.h5"
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, 20:40] = 200  # a bright middle third: exactly the square centre crop
    with ImageIndexer(path, size=(20, 20), encoding="png", variable=True) as ix:
        ix.add("wide.png", wide)
        ix.add("tall.png", np.full((30, 10, 3), 50, np.uint8))
    vectors = read_vectors(export_vectors(path, tmp_path / "v.u8bin", size=10).out).reshape(2, 10, 10, 3)
    # The middle only (bicubic reads a pixel past the crop at each edge); a stretch would show the black sides.
    assert np.abs(vectors[0][:, 1:-1].astype(int) - 200).max() <= 2 and vectors[0].min() > 150
    assert (vectors[1] == 50).all()


def test_export_rows_of_their_own_shapes_need_size(tmp_path: Path, cli: CliRunner) -> None:
    """Without size a store of rows of their own shapes is refused, naming --size, and nothing is written."""
    path = tmp_path / "s.h5"
    flat_store(path, "jpeg", variable=True)
    with pytest.raises(OptionError, match=r"give --size N or WIDTHxHEIGHT \(size= in Python\)"):
        export_vectors(path, tmp_path / "v.fvecs")
    with pytest.raises(OptionError, match="give --size"):
        export_ann(path, tmp_path / "ann", queries=2, k=2)
    result = run(cli, "export", path, tmp_path / "v.fvecs", "-q")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {path} holds images of their own shapes")
    assert "--size N or WIDTHxHEIGHT" in result.stderr
    assert not (tmp_path / "v.fvecs").exists() and not (tmp_path / "ann").exists()


def test_export_rows_of_their_own_shapes_that_happen_to_agree_still_need_size(tmp_path: Path) -> None:
    """A variable store whose rows all share a shape is still refused without size: the rule is the store's kind."""
    path = tmp_path / "s.h5"
    with ImageIndexer(path, size=(24, 20), encoding="none", variable=True) as ix:
        for i in range(3):
            ix.add(f"{i}.png", row_image(i, (20, 24)))
    with pytest.raises(OptionError, match="give --size"):
        export_vectors(path, tmp_path / "v.fvecs")
    report = export_vectors(path, tmp_path / "v.fvecs", size="24x20")
    with open_store(path) as store:
        assert np.array_equal(read_vectors(report.out), store[:].reshape(3, -1).astype(np.float32))


def test_cli_export_variable_with_size(tmp_path: Path, cli: CliRunner) -> None:
    """`imgstore export --size` on a store of rows of their own shapes: one summary line with the one shape."""
    path = tmp_path / "s.h5"
    flat_store(path, "jpeg", variable=True, labels=True)
    result = run(cli, "export", path, tmp_path / "v.fvecs", "--size", "8", "--channels", "1", "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Wrote 8 vectors of 64 (8x8x1) to {tmp_path / 'v.fvecs'} (fvecs, ")
    assert read_vectors(tmp_path / "v.fvecs.labels.ivecs").ravel().tolist() == [0, 1] * 4


@pytest.mark.parametrize("variable", [False, True], ids=["fixed", "variable"])
def test_export_ann_of_a_flat_store(tmp_path: Path, variable: bool) -> None:
    """--ann on a flat store: train, test, base and query vectors share one dimension and are the exported
    vectors; the ground truth is the exact neighbours among them."""
    path = tmp_path / "s.h5"
    flat_store(path, "jpeg", variable=variable, n=16)
    size = "8x6" if variable else None
    flat = read_vectors(export_vectors(path, tmp_path / "all.fvecs", size=size).out)
    report = export_ann(path, tmp_path / "ann", queries=4, k=3, seed=1, size=size)
    dim = 6 * 8 * 3 if variable else 20 * 24 * 3
    assert report.dim == dim and (report.n_base, report.n_query) == (12, 4)
    out = report.outputs
    with h5py.File(out["hdf5"], "r") as f:
        train, test, neighbors = f["train"][:], f["test"][:], f["neighbors"][:]
        assert list(f.attrs["image_shape"]) == ([6, 8, 3] if variable else [20, 24, 3])
    assert train.shape == (12, dim) and test.shape == (4, dim) and neighbors.shape == (4, 3)
    is_query = np.zeros(16, bool)
    is_query[np.sort(np.random.default_rng(1).choice(16, size=4, replace=False))] = True
    assert np.array_equal(train, flat[~is_query]) and np.array_equal(test, flat[is_query])
    assert np.array_equal(read_vectors(out["base"]), train) and np.array_equal(read_vectors(out["query"]), test)
    d = ((test[:, None, :].astype(np.float64) - train[None, :, :]) ** 2).sum(axis=2)
    assert np.array_equal(neighbors, np.argsort(d, axis=1, kind="stable")[:, :3])
    assert np.array_equal(read_vectors(out["groundtruth"]), neighbors)


def test_shrink_takes_a_list_of_images_of_their_own_shapes() -> None:
    """Shrink.apply turns a list of differently shaped images into one batch; without a size it refuses."""
    images = [row_image(i, s) for i, s in enumerate(SHAPES)]
    batch = Shrink(size=(12, 10), crop=True).apply(images)
    assert batch.shape == (4, 10, 12, 3)
    assert np.array_equal(batch[1], fit(images[1], (12, 10)))
    with pytest.raises(OptionError, match="need a size"):
        Shrink().apply(images)


# ------------------------------------------------------------------------------------------------------ preview


def test_preview_letterboxes_rows_of_their_own_shapes(tmp_path: Path) -> None:
    """Each row of its own shape is fitted into its cell at its own aspect, on white: a tall row leaves white
    either side, a wide one white above; the sheet has the layout's size."""
    path = tmp_path / "s.h5"
    with ImageIndexer(path, size=(32, 32), encoding="png", variable=True) as ix:
        ix.add("tall.png", np.full((64, 16, 3), (200, 0, 0), np.uint8))  # shown 8x32
        ix.add("wide.png", np.full((8, 64, 3), (0, 0, 200), np.uint8))  # shown 32x4
    sheet = np.asarray(Image.open(make_preview(path, tmp_path / "g.png", tile=32)).convert("RGB"))
    layout = preview_layout(2, tile=32)
    assert sheet.shape[:2] == (layout.height, layout.width)
    x, y = layout.tile_origin(0)
    assert (sheet[y : y + 32, x + 12 : x + 20] == (200, 0, 0)).all()
    assert (sheet[y : y + 32, x : x + 12] == 255).all() and (sheet[y : y + 32, x + 20 : x + 32] == 255).all()
    x, y = layout.tile_origin(1)
    assert (sheet[y + 28 : y + 32, x : x + 32] == (0, 0, 200)).all()
    assert (sheet[y : y + 28, x : x + 32] == 255).all()


@pytest.mark.parametrize("encoding", ["jpeg", "webp", "none"])
def test_preview_of_flat_stores(tmp_path: Path, cli: CliRunner, encoding: str) -> None:
    """A sheet of a variable flat store (large rows, read small) has the layout's size and each tile shows its row."""
    path = tmp_path / "s.h5"
    colours = [(230, 25, 75), (60, 180, 75), (0, 130, 200)]
    with ImageIndexer(path, size=(256, 256), encoding=encoding, variable=True) as ix:
        for i, (h, w) in enumerate([(300, 200), (200, 300), (256, 256)]):
            ix.add(f"{i}.png", np.full((h, w, 3), colours[i], np.uint8))
    out = tmp_path / "g.png"
    result = run(cli, "preview", path, out, "--tile", "48")
    assert result.exit_code == 0, result.output
    sheet = np.asarray(Image.open(out).convert("RGB"))
    layout = preview_layout(3, tile=48)
    assert sheet.shape[:2] == (layout.height, layout.width)
    for k, colour in enumerate(colours):
        x, y = layout.tile_origin(k)
        centre = sheet[y + 40, x + 24].astype(int)  # inside every thumbnail (each touches the tile's bottom)
        assert np.abs(centre - colour).max() <= 4, (k, centre)


def test_largest_shape_reads_the_shapes_in_blocks(tmp_path: Path) -> None:
    """The batch size of a variable store follows its largest row, found block by block over committed rows."""
    from imgstore.vectors.export import _largest_shape

    shapes = np.array([[10, 10, 3], [5, 40, 3], [30, 20, 3], [8, 8, 3], [100, 100, 3]], np.uint32)
    with h5py.File(tmp_path / "s.h5", "w") as f:
        ds = f.create_dataset("shapes", data=shapes)
        assert _largest_shape(ds, 4, step=2) == (30, 20, 3)  # the fifth row is past the committed count
        assert _largest_shape(ds, 5, step=3) == (100, 100, 3)


# ---------------------------------------------------------------------------------------------- end to end, CLI


def test_cli_ingest_encode_then_extract_export_preview(cli: CliRunner, tmp_path: Path) -> None:
    """A store made by `ingest --encode jpeg --resize-mode shorter` goes through extract (its JPEG rows as stored),
    export (needs --size, then one dimension) and preview (the layout's size)."""
    src = tmp_path / "photos"
    for i, (w, h) in enumerate([(160, 120), (90, 200), (130, 130)]):
        write(src / f"p{i}.png", encode(pattern(w, h, seed=i), "PNG"))
    store = tmp_path / "s.h5"
    result = run(cli, "ingest", src, store, "--size", "32", "--resize-mode", "shorter", "--encode", "jpeg:85",
                 "--workers", "0", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    with open_store(store) as s:
        assert s.flat and s.variable and str(s.encoding) == "jpeg:85:420"
        assert s.shapes.tolist() == [[32, 43, 3], [71, 32, 3], [32, 32, 3]]
        stored = [s.row_bytes(i) for i in range(3)]
    result = run(cli, "extract", store, tmp_path / "out", "-q")
    assert result.exit_code == 0 and result.stdout == f"wrote 3 JPG files to {tmp_path / 'out'}\n"
    assert [p.read_bytes() for p in sorted((tmp_path / "out").iterdir())] == stored
    result = run(cli, "export", store, tmp_path / "v.bvecs", "-q")
    assert result.exit_code == 1 and "give --size N or WIDTHxHEIGHT" in result.stderr
    result = run(cli, "export", store, tmp_path / "v.bvecs", "--size", "16", "-q")
    assert result.exit_code == 0, result.output
    expected = np.stack([fit(decoded(b), (16, 16)) for b in stored]).reshape(3, -1)
    assert np.array_equal(read_vectors(tmp_path / "v.bvecs"), expected)
    result = run(cli, "preview", store, tmp_path / "g.png", "--tile", "24")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "g.png").size == (preview_layout(3, tile=24).width, preview_layout(3, tile=24).height)
