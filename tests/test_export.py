"""``export_vectors``, ``export_ann`` and ``imgstore export``: stored images -> vector files and ANN benchmarks.

Stores are made by the real ingest pipeline from lossless photos of exactly the store size (``build_store`` in
conftest), so row i holds the photo's pixels exactly; outputs are read with readers written here from the format
definitions, and ground truth is checked against a naive brute force.
"""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from typer.testing import CliRunner

from imgstore.cli import app
from imgstore.errors import FormatError, OptionError, OutputExistsError, StoreError, WriteError
from imgstore.store import open_read
from imgstore.vectors import export as E
from imgstore.vectors import formats as V
from imgstore.vectors.convert import convert_ann
from imgstore.vectors.export import ExactKnn, export_ann, export_vectors, hold_out, shrink_image

from conftest import BuiltStore, StoreFactory
from formats import read_xbin, read_xvecs

H, W, C = 8, 6, 3


@pytest.fixture
def store(tmp_path: Path, build_store: StoreFactory) -> BuiltStore:
    """40 random images of 8x6x3, labelled i % 4 (classes a-d), ingested into photos.h5."""
    return build_store(tmp_path / "photos.h5")


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------- export_vectors


def test_fvecs_holds_pixels_in_hwc_order(tmp_path: Path, store: BuiltStore) -> None:
    """Vector i is image i flattened (H, W, C), as float32 pixel values; a complete store exports without warning."""
    path, images = store.path, store.images
    report = export_vectors(path, tmp_path / "v.fvecs")
    got = read_xvecs(tmp_path / "v.fvecs", "<f4")
    assert got.shape == (40, H * W * C)
    assert np.array_equal(got, images.reshape(40, -1).astype(np.float32))
    h, w, c = 5, 4, 2
    assert got[7, (h * W + w) * C + c] == images[7, h, w, c]
    assert (report.count, report.dim, report.shape, report.format) == (40, 144, (H, W, C), "fvecs")
    assert report.warning is None  # a complete store: nothing to warn about
    assert report.bytes_written == (tmp_path / "v.fvecs").stat().st_size


def test_names_and_labels_files(tmp_path: Path, store: BuiltStore) -> None:
    """OUT.names.txt names vector i on line i; OUT.labels.ivecs holds one int32 label per vector."""
    path = store.path
    report = export_vectors(path, tmp_path / "v.bvecs")
    lines = (tmp_path / "v.bvecs.names.txt").read_text("utf-8").split("\n")
    assert lines[:-1] == [f"dir/img{i:03d}.png" for i in range(40)] and lines[-1] == ""
    labels = read_xvecs(tmp_path / "v.bvecs.labels.ivecs", "<i4")
    assert labels.shape == (40, 1) and np.array_equal(labels[:, 0], np.arange(40) % 4)
    assert report.labels_path == tmp_path / "v.bvecs.labels.ivecs"
    assert files(tmp_path) == ["photos.h5", "v.bvecs", "v.bvecs.labels.ivecs", "v.bvecs.names.txt"]


def test_no_labels_no_labels_file(tmp_path: Path, build_store: StoreFactory) -> None:
    """A store without labels gives only the vectors and the names."""
    path = build_store(tmp_path / "s.h5", classes=None).path
    report = export_vectors(path, tmp_path / "v.u8bin")
    assert report.labels_path is None
    assert files(tmp_path) == ["s.h5", "v.u8bin", "v.u8bin.names.txt"]


def test_names_with_line_breaks_stay_one_line(tmp_path: Path, build_store: StoreFactory) -> None:
    """A line break inside a name is escaped so line i still names vector i."""
    names = ["a\nb.png", "c\rd.png"]
    path = build_store(tmp_path / "s.h5", n=2, names=names).path
    export_vectors(path, tmp_path / "v.fvecs")
    assert (tmp_path / "v.fvecs.names.txt").read_text("utf-8") == "a\\nb.png\nc\\rd.png\n"


@pytest.mark.parametrize(("name", "value"), [("bvecs", "u1"), ("u8bin", "u1"), ("ivecs", "<i4"), ("ibin", "<i4")])
def test_integer_formats_keep_pixels_exactly(tmp_path: Path, store: BuiltStore, name: str, value: str) -> None:
    """.bvecs/.u8bin (and .ivecs/.ibin) hold the uint8 pixels exactly."""
    path, images = store.path, store.images
    export_vectors(path, tmp_path / f"v.{name}")
    reader = read_xvecs if name.endswith("vecs") else read_xbin
    assert np.array_equal(reader(tmp_path / f"v.{name}", value), images.reshape(40, -1))


def test_unit_scale(tmp_path: Path, store: BuiltStore) -> None:
    """--scale unit gives float32 pixel / 255 in [0, 1], 255 -> 1.0 exactly."""
    path, images = store.path, store.images
    export_vectors(path, tmp_path / "v.fbin", scale="unit")
    got = read_xbin(tmp_path / "v.fbin", "<f4")
    assert np.array_equal(got, (images.reshape(40, -1).astype(np.float32) / np.float32(255)))
    assert got.min() >= 0 and got.max() == 1.0


def test_format_option_beats_extension(tmp_path: Path, store: BuiltStore) -> None:
    """fmt= chooses the format whatever OUT is called."""
    path, images = store.path, store.images
    report = export_vectors(path, tmp_path / "vectors.dat", fmt="fbin")
    assert report.format == "fbin"
    assert np.array_equal(read_xbin(tmp_path / "vectors.dat", "<f4"), images.reshape(40, -1))


def test_shrink_matches_pillow(tmp_path: Path, store: BuiltStore) -> None:
    """--size/--channels shrink each image exactly as Pillow's convert('L') + bicubic resize."""
    path, images = store.path, store.images
    report = export_vectors(path, tmp_path / "v.bvecs", size="4x2", channels=1)
    got = read_xvecs(tmp_path / "v.bvecs", "u1")
    assert report.shape == (2, 4, 1) and got.shape == (40, 8)
    for i in (0, 13, 39):
        ref = np.asarray(Image.fromarray(images[i], "RGB").convert("L").resize((4, 2), Image.Resampling.BICUBIC))
        assert np.array_equal(got[i], ref.reshape(-1))


def test_shrink_image_grayscale_to_rgb_and_noop() -> None:
    """One gray channel becomes three equal ones; a matching size and channels are a no-op."""
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    rgb = shrink_image(gray, None, 3)
    assert rgb.shape == (3, 4, 3) and (rgb == gray).all()
    batch = np.zeros((2, 3, 4, 1), np.uint8)
    assert E.Shrink((4, 3), 1).apply(batch) is batch


def test_square_size(tmp_path: Path, store: BuiltStore) -> None:
    """--size 3 means 3x3."""
    path = store.path
    assert export_vectors(path, tmp_path / "v.fvecs", size=3).dim == 27


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"out": "v.bvecs", "scale": "unit"}, OptionError, "--scale unit needs a float format"),
        ({"out": "v.i8bin"}, OptionError, "cannot keep pixels 0..255"),
        ({"out": "v.npy"}, OptionError, "cannot tell the vector format"),
        ({"out": "v.fvecs", "fmt": "parquet"}, OptionError, "unknown vector format"),
        ({"out": "v.fvecs", "size": "big"}, OptionError, "invalid size"),
        ({"out": "v.fvecs", "channels": 2}, OptionError, "invalid channels"),
        ({"out": "v.fvecs", "scale": "percent"}, OptionError, "invalid scale"),
    ],
)
def test_bad_options(tmp_path: Path, store: BuiltStore, kwargs: dict, error: type, message: str) -> None:
    """Invalid options fail with a message saying what to use, before anything is written."""
    path = store.path
    out = tmp_path / kwargs.pop("out")
    with pytest.raises(error, match=message):
        export_vectors(path, out, **kwargs)
    assert files(tmp_path) == ["photos.h5"]


def test_missing_or_foreign_store(tmp_path: Path) -> None:
    """A missing file or an HDF5 file that is not a store are StoreErrors."""
    with pytest.raises(StoreError, match="does not exist"):
        export_vectors(tmp_path / "none.h5", tmp_path / "v.fvecs")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(StoreError, match="not an imgstore store"):
        export_vectors(tmp_path / "other.h5", tmp_path / "v.fvecs")


def test_existing_output_refused_unless_overwrite(tmp_path: Path, store: BuiltStore) -> None:
    """An existing OUT (or OUT.names.txt) is refused and nothing is written; overwrite=True replaces them."""
    path = store.path
    (tmp_path / "v.fvecs.names.txt").write_text("old")
    with pytest.raises(OutputExistsError, match="v.fvecs.names.txt"):
        export_vectors(path, tmp_path / "v.fvecs")
    assert files(tmp_path) == ["photos.h5", "v.fvecs.names.txt"]
    export_vectors(path, tmp_path / "v.fvecs", overwrite=True)
    assert (tmp_path / "v.fvecs.names.txt").read_text().startswith("dir/img000.png\n")


def test_failure_midway_leaves_nothing(tmp_path: Path, store: BuiltStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error after some batches were written leaves no OUT, no names, no labels and no temporary file."""
    path = store.path
    monkeypatch.setattr(E, "BATCH_BYTES", H * W * C * 4 * 5)  # 5 images per batch
    calls = {"n": 0}
    real = E.to_vectors

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(E, "to_vectors", failing)
    with pytest.raises(WriteError, match=r"cannot write .*v\.fvecs: No space left on device \(nothing was kept\)"):
        export_vectors(path, tmp_path / "v.fvecs")
    assert files(tmp_path) == ["photos.h5"]


def test_empty_store_refused_incomplete_store_warned(tmp_path: Path, build_store: StoreFactory) -> None:
    """A store with no images is refused; an interrupted one exports its committed rows with a warning naming them."""
    empty = build_store(tmp_path / "empty.h5", n=0).path
    with pytest.raises(StoreError, match="holds no images: there is nothing to export"):
        export_vectors(empty, tmp_path / "e.fvecs")
    made = build_store(tmp_path / "part.h5", n=12)
    part, images = made.path, made.images
    with h5py.File(part, "r+") as f:  # damaged on purpose: the flag an interrupted ingest leaves
        f.attrs["complete"] = False
    report = export_vectors(part, tmp_path / "p.bvecs")
    assert report.warning is not None and "is incomplete" in report.warning and "rows 0-11" in report.warning
    np.testing.assert_array_equal(read_xvecs(tmp_path / "p.bvecs", "u1"), images.reshape(12, -1))


# An append killed inside its commit, after its rows reached the disk and before the count was raised (a commit
# flushes the rows, then raises ``count``): rows past ``count``.
KILLED_BEFORE_COMMIT = r"""
import os, sys
import numpy as np
from imgstore.store.file import StoreFile
from imgstore.store.writer import ImageIndexer
StoreFile.commit = lambda self: (self.file.flush(), os._exit(9))
ix = ImageIndexer.reopen(sys.argv[1], buffer_size=3, flush_every=1e9)
for i in range(3):
    ix.add(f"late{i}.png", np.full(ix.shape, 77, np.uint8), label=0, sha256=bytes(32))
"""


def test_rows_of_a_killed_write_are_not_exported(tmp_path: Path, store: BuiltStore) -> None:
    """Rows an append wrote but never counted (it was killed in its commit) are not exported: only the committed
    ones, with the incomplete-store warning."""
    path, images = store.path, store.images
    killed = subprocess.run([sys.executable, "-c", KILLED_BEFORE_COMMIT, str(path)], capture_output=True, text=True)
    assert killed.returncode == 9, killed.stderr
    with open_read(path) as f:  # the killed writer's flags are still set: a plain h5py open is refused
        assert f["images"].shape[0] == 43 and f.attrs["count"] == 40  # three rows on disk past the count
    report = export_vectors(path, tmp_path / "v.u8bin")
    assert report.count == 40 and report.warning is not None and "rows 0-39" in report.warning
    assert np.array_equal(read_xbin(tmp_path / "v.u8bin", "u1"), images.reshape(40, -1))
    lines = (tmp_path / "v.u8bin.names.txt").read_text("utf-8").splitlines()
    assert lines == store.names


def test_count_overflow_detected_before_writing(tmp_path: Path, store: BuiltStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """More images than the .fbin uint32 count holds fail up front (limit lowered to simulate 2**32 images)."""
    path = store.path
    monkeypatch.setattr(V, "UINT32_MAX", 39)
    with pytest.raises(FormatError, match="40 vectors do not fit the uint32 n header of .fbin"):
        export_vectors(path, tmp_path / "v.fbin", size=2, channels=1)
    assert files(tmp_path) == ["photos.h5"]


def test_dimension_overflow_detected_before_writing(tmp_path: Path, store: BuiltStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dimension beyond the int32 d field fails up front with a hint to shrink (limit lowered to simulate)."""
    path = store.path
    monkeypatch.setattr(V, "INT32_MAX", 100)
    with pytest.raises(FormatError, match="dimension 144 does not fit .*--size 32 --channels 1"):
        export_vectors(path, tmp_path / "v.bvecs")
    export_vectors(path, tmp_path / "v.bvecs", size=4, channels=1)  # 16 values: fine


def test_progress_and_batches(tmp_path: Path, store: BuiltStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Progress gets every image once, in batches bounded by BATCH_BYTES."""
    path = store.path
    monkeypatch.setattr(E, "BATCH_BYTES", H * W * C * 4 * 7)
    seen: list[int] = []
    export_vectors(path, tmp_path / "v.fvecs", progress=seen.append)
    assert seen == [7] * 5 + [5]


def test_batch_rows_bounded() -> None:
    """A batch is at most ~16 MiB of stored pixels or of float32 vectors."""
    assert E._batch_rows((1024, 1024, 3), (1024, 1024, 3)) * 1024 * 1024 * 3 * 4 <= 16 * 2**20
    assert E._batch_rows((4096, 4096, 3), (32, 32, 1)) == 1


# ---------------------------------------------------------------------- exact kNN


def naive_knn(base: np.ndarray, queries: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact kNN by definition, in float64, ties by lower index (stable sort)."""
    b = base.astype(np.float64)
    q = queries.astype(np.float64)
    if metric == "euclidean":
        dist = np.sqrt(((q[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    else:
        nb, nq = np.linalg.norm(b, axis=1), np.linalg.norm(q, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = (q @ b.T) / (nq[:, None] * nb[None, :])
        dist = 1 - np.nan_to_num(cos, nan=0.0)
    ids = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(dist, ids, axis=1)


@pytest.mark.parametrize("metric", ["euclidean", "angular"])
def test_exact_knn_blocked_matches_naive(metric: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocked brute force over many small blocks equals the naive computation."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal((500, 20)).astype(np.float32)
    q = rng.standard_normal((30, 20)).astype(np.float32)
    monkeypatch.setattr(E, "KNN_BLOCK_BYTES", 8 * 30 * 17)  # 17 base rows per block
    knn = ExactKnn(q, 10, metric)
    for start in range(0, 500, 123):
        knn.add(base[start : start + 123])
    ids, dist = knn.result()
    ref_ids, ref_dist = naive_knn(base, q, 10, metric)
    assert np.array_equal(ids, ref_ids)
    assert np.allclose(dist, ref_dist, rtol=1e-9, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(
    base=hnp.arrays(np.uint8, st.tuples(st.integers(1, 60), st.just(5)), elements=st.integers(0, 3)),
    q=hnp.arrays(np.uint8, st.tuples(st.integers(1, 6), st.just(5)), elements=st.integers(0, 3)),
    k=st.integers(1, 12),
    block=st.integers(1, 25),
)
def test_exact_knn_ties_by_index(base: np.ndarray, q: np.ndarray, k: int, block: int) -> None:
    """With many exact ties (values 0..3), ids equal the naive stable sort for any block split."""
    knn = ExactKnn(q.astype(np.float32), k, "euclidean")
    for start in range(0, len(base), block):
        knn.add(base[start : start + block].astype(np.float32))
    ids, dist = knn.result()
    ref_ids, ref_dist = naive_knn(base, q, k, "euclidean")
    assert np.array_equal(ids, ref_ids)
    assert np.array_equal(dist, ref_dist)  # integer data: squared distances are exact


def test_exact_knn_identical_points_and_zero_vectors() -> None:
    """Identical base points rank by index; a zero vector is at angular distance 1 from everything."""
    knn = ExactKnn(np.ones((1, 3)), 3, "euclidean")
    knn.add(np.ones((5, 3)))
    assert knn.result()[0].tolist() == [[0, 1, 2]] and knn.result()[1].tolist() == [[0.0, 0.0, 0.0]]
    ang = ExactKnn(np.array([[1.0, 0.0]]), 2, "angular")
    ang.add(np.array([[0.0, 0.0], [-1.0, 0.0], [2.0, 0.0]]))
    ids, dist = ang.result()
    assert ids.tolist() == [[2, 0]] and np.allclose(dist, [[0.0, 1.0]])


# ---------------------------------------------------------------------- export_ann


def ann_store(tmp_path: Path, build_store: StoreFactory, n: int = 120) -> BuiltStore:
    rng = np.random.default_rng(9)
    images = rng.integers(0, 256, (n, H, W, C), dtype=np.uint8)
    images[50] = images[10]  # duplicates make exact ties in the ground truth
    images[90] = images[10]
    return build_store(tmp_path / "photos.h5", images)


@pytest.mark.parametrize("metric", ["euclidean", "angular"])
def test_ann_benchmark_files(tmp_path: Path, build_store: StoreFactory, metric: str) -> None:
    """HDF5 in the ann-benchmarks layout with exact ground truth, and the same data as TEXMEX files."""
    made = ann_store(tmp_path, build_store)
    path, images = made.path, made.images
    report = export_ann(path, tmp_path / "bench", queries=12, k=7, metric=metric, seed=3)
    name = f"photos-144-{metric}"
    assert report.name == name
    q_rows = hold_out(120, 12, 3)
    train_rows = np.setdiff1d(np.arange(120), q_rows)
    flat = images.reshape(120, -1).astype(np.float32)
    with h5py.File(tmp_path / "bench" / f"{name}.hdf5", "r") as f:
        assert np.array_equal(f["train"][:], flat[train_rows])
        assert np.array_equal(f["test"][:], flat[q_rows])
        assert f["neighbors"].dtype == np.int32 and f["distances"].dtype == np.float32
        ids, dist = f["neighbors"][:], f["distances"][:]
        attrs = dict(f.attrs)
        assert np.array_equal(f["train_labels"][:], train_rows % 4)
        assert np.array_equal(f["test_labels"][:], q_rows % 4)
        assert list(f.attrs["class_names"]) == ["a", "b", "c", "d"]
    ref_ids, ref_dist = naive_knn(flat[train_rows], flat[q_rows], 7, metric)
    assert np.array_equal(ids, ref_ids)
    assert np.allclose(dist, ref_dist.astype(np.float32), rtol=1e-6, atol=1e-6)
    assert attrs["distance"] == metric and attrs["dimension"] == 144 and attrs["type"] == "dense"
    assert attrs["k"] == 7 and attrs["seed"] == 3 and attrs["point_type"] == "float"
    bench = tmp_path / "bench"
    assert np.array_equal(read_xvecs(bench / f"{name}_base.fvecs", "<f4"), flat[train_rows])
    assert np.array_equal(read_xvecs(bench / f"{name}_query.fvecs", "<f4"), flat[q_rows])
    assert np.array_equal(read_xvecs(bench / f"{name}_groundtruth.ivecs", "<i4"), ids)
    assert np.array_equal(read_xvecs(bench / f"{name}_distances.fvecs", "<f4"), dist)
    base_names = (bench / f"{name}_base.names.txt").read_text().splitlines()
    assert base_names == [f"dir/img{i:03d}.png" for i in train_rows]
    query_names = (bench / f"{name}_query.names.txt").read_text().splitlines()
    assert query_names == [f"dir/img{i:03d}.png" for i in q_rows]


def test_ann_ties_rank_lower_index_first(tmp_path: Path, build_store: StoreFactory) -> None:
    """A query that duplicates base images finds them at distance 0, lowest base index first."""
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (60, 4, 4, 1), dtype=np.uint8)
    q_rows = hold_out(60, 5, 0)
    for dup in (1, 2):  # two base copies of the first query image, placed after it
        images[q_rows[0] + dup] = images[q_rows[0]]
    assert not set(q_rows[0] + np.array([1, 2])) & set(q_rows)
    path = build_store(tmp_path / "s.h5", images).path
    export_ann(path, tmp_path / "b", queries=5, k=3)
    with h5py.File(tmp_path / "b" / "s-16-euclidean.hdf5", "r") as f:
        ids, dist = f["neighbors"][0], f["distances"][0]
    train_rows = np.setdiff1d(np.arange(60), q_rows)
    assert [int(train_rows[i]) for i in ids[:2]] == [q_rows[0] + 1, q_rows[0] + 2]
    assert dist[0] == dist[1] == 0 and ids[0] < ids[1]


def test_ann_roundtrip_through_convert(tmp_path: Path, build_store: StoreFactory) -> None:
    """export --ann -> HDF5 -> convert gives byte-identical .fvecs/.ivecs files."""
    path = ann_store(tmp_path, build_store).path
    report = export_ann(path, tmp_path / "bench", queries=10, k=5, size=4, channels=1, scale="unit")
    conv = convert_ann(report.outputs["hdf5"], tmp_path / "conv")
    for role in ("base", "query", "groundtruth", "distances"):
        assert report.outputs[role].read_bytes() == conv.outputs[role].read_bytes(), role
    assert (conv.n_base, conv.n_query, conv.dim, conv.k, conv.distance) == (110, 10, 16, 5, "euclidean")


def test_ann_seed(tmp_path: Path) -> None:
    """The hold-out is reproducible for a seed and changes with it."""
    assert np.array_equal(hold_out(1000, 50, 7), hold_out(1000, 50, 7))
    assert not np.array_equal(hold_out(1000, 50, 7), hold_out(1000, 50, 8))
    rows = hold_out(1000, 50, 7)
    assert len(set(rows.tolist())) == 50 and (np.diff(rows) > 0).all()


def test_ann_store_too_small(tmp_path: Path, store: BuiltStore) -> None:
    """Queries plus k must fit in the store."""
    path = store.path
    with pytest.raises(OptionError, match="needs at least 50"):
        export_ann(path, tmp_path / "b", queries=30, k=20)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"queries": 0}, "invalid number of queries"),
        ({"k": 0}, "invalid k"),
        ({"metric": "manhattan"}, "invalid metric"),
        ({"seed": -1}, "invalid seed"),
    ],
)
def test_ann_bad_options(tmp_path: Path, store: BuiltStore, kwargs: dict, message: str) -> None:
    """Invalid --ann options are refused before any I/O."""
    path = store.path
    with pytest.raises(OptionError, match=message):
        export_ann(path, tmp_path / "b", **kwargs)


def test_ann_existing_outputs_refused(tmp_path: Path, store: BuiltStore) -> None:
    """An existing benchmark file is refused; overwrite=True replaces everything."""
    path = store.path
    export_ann(path, tmp_path / "b", queries=5, k=3)
    with pytest.raises(OutputExistsError, match="photos-144-euclidean"):
        export_ann(path, tmp_path / "b", queries=5, k=3)
    export_ann(path, tmp_path / "b", queries=5, k=3, seed=1, overwrite=True)
    with h5py.File(tmp_path / "b" / "photos-144-euclidean.hdf5", "r") as f:
        assert f.attrs["seed"] == 1
    assert len(files(tmp_path / "b")) == 7


# ---------------------------------------------------------------------- CLI


def test_cli_export(tmp_path: Path, store: BuiltStore, cli: CliRunner) -> None:
    """`imgstore export` exits 0 with one summary line."""
    path = store.path
    result = cli.invoke(app, ["export", str(path), str(tmp_path / "v.fvecs"), "--size", "4", "-q"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Wrote 40 vectors of 48 (4x4x3) to {tmp_path / 'v.fvecs'} (fvecs, ")
    assert result.output.count("\n") == 1


def test_cli_export_errors(tmp_path: Path, store: BuiltStore, cli: CliRunner) -> None:
    """Refusals are `Error: ...` with exit code 1."""
    path = store.path
    (tmp_path / "v.fvecs").write_bytes(b"")
    result = cli.invoke(app, ["export", str(path), str(tmp_path / "v.fvecs"), "-q"])
    assert result.exit_code == 1 and "exists: pass --overwrite" in result.output
    assert result.output.startswith("Error: ")
    result = cli.invoke(app, ["export", str(path), str(tmp_path / "w.fvecs"), "--queries", "5"])
    assert result.exit_code == 1 and "Error: --queries applies only with --ann" in result.output
    result = cli.invoke(app, ["export", str(path), str(tmp_path / "b"), "--ann", "--format", "fbin"])
    assert result.exit_code == 1 and "Error: --format does not apply to --ann" in result.output
    result = cli.invoke(app, ["export", str(path), str(tmp_path / "w.bvecs"), "--scale", "unit"])
    assert result.exit_code == 1 and "Error: --scale unit needs a float format" in result.output


def test_cli_export_ann(tmp_path: Path, store: BuiltStore, cli: CliRunner) -> None:
    """`imgstore export --ann` writes the benchmark and says so in one line."""
    path = store.path
    args = ["export", str(path), str(tmp_path / "b"), "--ann", "--queries", "5", "--k", "3", "--metric", "angular"]
    result = cli.invoke(app, [*args, "--seed", "4", "-q"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Wrote photos-144-angular: 35 base + 5 query vectors of 144, k=3 angular")
    assert (tmp_path / "b" / "photos-144-angular_groundtruth.ivecs").exists()
