"""``convert_ann`` and ``imgstore convert``: ann-benchmarks HDF5 -> .fvecs/.ivecs or .fbin/.ibin.

Outputs are read back with readers written here from the format definitions.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from imgstore.cli import app
from imgstore.errors import FormatError, OptionError, OutputExistsError, SourceError
from imgstore.vectors.convert import convert_ann, default_chunk_rows

from formats import read_xbin, read_xvecs

# ---------------------------------------------------------------------- synthetic ann-benchmarks files


def brute_force(train: np.ndarray, test: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact euclidean kNN, naive."""
    d = np.sqrt(((test[:, None, :].astype(np.float64) - train[None, :, :]) ** 2).sum(-1))
    ids = np.argsort(d, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(d, ids, axis=1)


def make_ann(
    path: Path,
    n: int = 200,
    q: int = 15,
    d: int = 12,
    k: int = 10,
    *,
    vdtype: str = "float32",
    idtype: str = "int32",
    distance: str | None = "euclidean",
    dimension: int | None = -1,
    kind: str | None = "dense",
    seed: int = 0,
    chunks: bool = False,
) -> Path:
    """Write an ann-benchmarks-layout file with correct ground truth."""
    rng = np.random.default_rng(seed)
    train = rng.standard_normal((n, d)).astype(vdtype)
    test = rng.standard_normal((q, d)).astype(vdtype)
    ids, dist = brute_force(train, test, k)
    extra = {"chunks": (7, d), "compression": "gzip"} if chunks else {}
    with h5py.File(path, "w") as f:
        f.create_dataset("train", data=train, **extra)
        f.create_dataset("test", data=test)
        f.create_dataset("neighbors", data=ids.astype(idtype))
        f.create_dataset("distances", data=dist.astype(vdtype))
        if distance is not None:
            f.attrs["distance"] = distance
        if dimension is not None:
            f.attrs["dimension"] = d if dimension == -1 else dimension
        if kind is not None:
            f.attrs["type"] = kind
        f.attrs["point_type"] = "float"
    return path


def load(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {name: f[name][:] for name in ("train", "test", "neighbors", "distances")}


# ---------------------------------------------------------------------- conversion


def test_fvecs_outputs_match_the_hdf5(tmp_path: Path) -> None:
    """The four TEXMEX files hold train, test, neighbors and distances, named after the input's stem."""
    src = make_ann(tmp_path / "sift-12-euclidean.hdf5")
    report = convert_ann(src, tmp_path / "out")
    ref = load(src)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "sift-12-euclidean_base.fvecs",
        "sift-12-euclidean_distances.fvecs",
        "sift-12-euclidean_groundtruth.ivecs",
        "sift-12-euclidean_query.fvecs",
    ]
    assert np.array_equal(read_xvecs(out / "sift-12-euclidean_base.fvecs", "<f4"), ref["train"])
    assert np.array_equal(read_xvecs(out / "sift-12-euclidean_query.fvecs", "<f4"), ref["test"])
    assert np.array_equal(read_xvecs(out / "sift-12-euclidean_groundtruth.ivecs", "<i4"), ref["neighbors"])
    assert np.array_equal(read_xvecs(out / "sift-12-euclidean_distances.fvecs", "<f4"), ref["distances"])
    assert (report.n_base, report.n_query, report.dim, report.k, report.distance) == (200, 15, 12, 10, "euclidean")
    assert report.bytes_written == sum(p.stat().st_size for p in out.iterdir())


def test_bin_outputs(tmp_path: Path) -> None:
    """--format bin writes .fbin/.ibin with the n, d header."""
    src = make_ann(tmp_path / "a.hdf5")
    report = convert_ann(src, tmp_path, fmt="bin")
    ref = load(src)
    assert report.outputs["base"].name == "a_base.fbin"
    assert np.array_equal(read_xbin(tmp_path / "a_base.fbin", "<f4"), ref["train"])
    assert np.array_equal(read_xbin(tmp_path / "a_query.fbin", "<f4"), ref["test"])
    assert np.array_equal(read_xbin(tmp_path / "a_groundtruth.ibin", "<i4"), ref["neighbors"])
    assert np.array_equal(read_xbin(tmp_path / "a_distances.fbin", "<f4"), ref["distances"])


def test_float64_and_int64_inputs_are_narrowed_after_checks(tmp_path: Path) -> None:
    """float64 values and int64 ids in range convert to float32/int32 exactly as numpy casts them."""
    src = make_ann(tmp_path / "a.hdf5", vdtype="float64", idtype="int64")
    convert_ann(src, tmp_path / "o")
    ref = load(src)
    assert np.array_equal(read_xvecs(tmp_path / "o" / "a_base.fvecs", "<f4"), ref["train"].astype(np.float32))
    assert np.array_equal(read_xvecs(tmp_path / "o" / "a_groundtruth.ivecs", "<i4"), ref["neighbors"])


def test_small_chunks_and_hdf5_chunking_give_the_same_bytes(tmp_path: Path) -> None:
    """Streaming in 3-row blocks over a gzip-chunked dataset writes the same files as one block."""
    a = make_ann(tmp_path / "a.hdf5", chunks=True)
    convert_ann(a, tmp_path / "one", chunk_rows=10**6)
    convert_ann(a, tmp_path / "many", chunk_rows=3)
    for name in ("a_base.fvecs", "a_query.fvecs", "a_groundtruth.ivecs", "a_distances.fvecs"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "many" / name).read_bytes()


def test_default_chunk_rows_bounded_and_aligned(tmp_path: Path) -> None:
    """Default blocks are ~32 MiB of float64 (GIST: 960 dims -> 4369 rows), rounded to HDF5 chunks."""
    with h5py.File(tmp_path / "c.h5", "w") as f:
        gist = f.create_dataset("g", shape=(1_000_000, 960), dtype="f4")
        chunked = f.create_dataset("c", shape=(100_000, 960), dtype="f4", chunks=(1000, 960))
        assert default_chunk_rows(gist) == 32 * 2**20 // (960 * 8)
        assert default_chunk_rows(chunked) % 1000 == 0


def test_missing_attributes_default(tmp_path: Path) -> None:
    """No dimension/type/distance attributes: width of train, dense, distance unknown."""
    src = make_ann(tmp_path / "a.hdf5", distance=None, dimension=None, kind=None)
    report = convert_ann(src, tmp_path / "o")
    assert (report.dim, report.distance) == (12, None)


def test_progress_counts_every_row(tmp_path: Path) -> None:
    """progress receives n + 3q rows in total."""
    seen: list[int] = []
    convert_ann(make_ann(tmp_path / "a.hdf5"), tmp_path / "o", chunk_rows=50, progress=seen.append)
    assert sum(seen) == 200 + 3 * 15


# ---------------------------------------------------------------------- normalisation


def test_normalize_angular(tmp_path: Path) -> None:
    """--normalize makes base and query rows unit length; ids and distances are untouched; zero rows stay."""
    src = make_ann(tmp_path / "glove-12-angular.hdf5", distance="angular")
    with h5py.File(src, "a") as f:
        f["train"][5] = 0.0
    report = convert_ann(src, tmp_path / "o", normalize=True)
    ref = load(src)
    base = read_xvecs(tmp_path / "o" / "glove-12-angular_base.fvecs", "<f4")
    norms = np.linalg.norm(base.astype(np.float64), axis=1)
    assert np.allclose(np.delete(norms, 5), 1.0, atol=1e-6) and norms[5] == 0
    train = ref["train"].astype(np.float64)
    ref_norms = np.linalg.norm(train, axis=1, keepdims=True)
    ref_norms[5] = 1.0
    assert np.allclose(base, train / ref_norms, rtol=0, atol=2e-7)  # float64 division, one float32 rounding
    query = read_xvecs(tmp_path / "o" / "glove-12-angular_query.fvecs", "<f4")
    assert np.allclose(np.linalg.norm(query, axis=1), 1.0, atol=1e-6)
    assert np.array_equal(read_xvecs(tmp_path / "o" / "glove-12-angular_distances.fvecs", "<f4"), ref["distances"])
    assert report.normalized and report.zero_vectors == 1


def test_normalize_refused_for_euclidean(tmp_path: Path) -> None:
    """Normalising a euclidean set would invalidate its ground truth: refused before writing."""
    with pytest.raises(OptionError, match="invalidate the euclidean ground truth"):
        convert_ann(make_ann(tmp_path / "a.hdf5"), tmp_path / "o", normalize=True)
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------- bad inputs


def test_ids_beyond_int32_refused_not_wrapped(tmp_path: Path) -> None:
    """An int64 id >= 2**31 is refused (it would wrap to a negative int32) and nothing is written."""
    src = make_ann(tmp_path / "a.hdf5", idtype="int64")
    with h5py.File(src, "a") as f:
        f["neighbors"][3, 4] = 2**31
    with pytest.raises(FormatError, match=r"id 2147483648 \(query 3\) does not fit the int32"):
        convert_ann(src, tmp_path / "o")
    assert list((tmp_path / "o").iterdir()) == []


def test_ids_outside_the_base_set_refused(tmp_path: Path) -> None:
    """Ids must point into train."""
    src = make_ann(tmp_path / "a.hdf5")
    with h5py.File(src, "a") as f:
        f["neighbors"][0, 0] = 200
    with pytest.raises(FormatError, match="does not point into the 200 base vectors"):
        convert_ann(src, tmp_path / "o")


def test_float64_values_beyond_float32_refused(tmp_path: Path) -> None:
    """A float64 train value that float32 cannot hold fails, and no output is left behind."""
    src = make_ann(tmp_path / "a.hdf5", vdtype="float64")
    with h5py.File(src, "a") as f:
        f["train"][150, 1] = 1e300
    with pytest.raises(FormatError, match="overflows float32"):
        convert_ann(src, tmp_path / "o", chunk_rows=16)
    assert list((tmp_path / "o").iterdir()) == []  # the three files done before the failure are discarded too


def test_sparse_refused(tmp_path: Path) -> None:
    """type=sparse files (sets for jaccard) are refused with a clear message."""
    src = make_ann(tmp_path / "kosarak-jaccard.hdf5", kind="sparse", distance="jaccard")
    with pytest.raises(FormatError, match="sparse ann-benchmarks file"):
        convert_ann(src, tmp_path / "o")


@pytest.mark.parametrize("missing", ["train", "test", "neighbors", "distances"])
def test_missing_dataset_refused(tmp_path: Path, missing: str) -> None:
    """Each of the four datasets is required and named when missing."""
    src = make_ann(tmp_path / "a.hdf5")
    with h5py.File(src, "a") as f:
        del f[missing]
    with pytest.raises(SourceError, match=f"missing dataset\\(s\\) {missing}"):
        convert_ann(src, tmp_path / "o")


def test_inconsistent_shapes_refused(tmp_path: Path) -> None:
    """Wrong dimension attribute or mismatched dataset shapes are source errors."""
    with pytest.raises(SourceError, match="dimension=99"):
        convert_ann(make_ann(tmp_path / "a.hdf5", dimension=99), tmp_path / "o")
    src = make_ann(tmp_path / "b.hdf5")
    with h5py.File(src, "a") as f:
        del f["distances"]
        f.create_dataset("distances", data=np.zeros((15, 9), np.float32))
    with pytest.raises(SourceError, match="distances has shape"):
        convert_ann(src, tmp_path / "o")


def test_non_numeric_data_refused(tmp_path: Path) -> None:
    """Boolean (hamming) vectors are refused rather than silently turned into floats."""
    src = make_ann(tmp_path / "a.hdf5")
    with h5py.File(src, "a") as f:
        del f["train"]
        f.create_dataset("train", data=np.zeros((200, 12), bool))
    with pytest.raises(FormatError, match="holds bool values"):
        convert_ann(src, tmp_path / "o")


def test_missing_and_non_hdf5_inputs(tmp_path: Path) -> None:
    """A missing file or a file that is not HDF5 are source errors."""
    with pytest.raises(SourceError, match="does not exist"):
        convert_ann(tmp_path / "nope.hdf5", tmp_path / "o")
    (tmp_path / "x.hdf5").write_text("hello")
    with pytest.raises(SourceError, match="not a readable HDF5"):
        convert_ann(tmp_path / "x.hdf5", tmp_path / "o")


def test_bad_options(tmp_path: Path) -> None:
    """Unknown format family and non-positive chunk rows are refused before opening the input."""
    with pytest.raises(OptionError, match="choose one of fvecs, bin"):
        convert_ann(tmp_path / "nope.hdf5", tmp_path, fmt="npy")
    with pytest.raises(OptionError, match="chunk rows"):
        convert_ann(tmp_path / "nope.hdf5", tmp_path, chunk_rows=0)


def test_existing_outputs_refused_unless_overwrite(tmp_path: Path) -> None:
    """If any output exists, nothing is written; --overwrite replaces all four."""
    src = make_ann(tmp_path / "a.hdf5")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "a_query.fvecs").write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="a_query.fvecs"):
        convert_ann(src, tmp_path / "o")
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["a_query.fvecs"]
    convert_ann(src, tmp_path / "o", overwrite=True)
    assert read_xvecs(tmp_path / "o" / "a_query.fvecs", "<f4").shape == (15, 12)


# ---------------------------------------------------------------------- CLI


def test_cli_convert(tmp_path: Path, cli: CliRunner) -> None:
    """`imgstore convert` exits 0 and prints one summary line."""
    src = make_ann(tmp_path / "a.hdf5", distance="angular")
    result = cli.invoke(app, ["convert", str(src), str(tmp_path / "o"), "--normalize", "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Converted a.hdf5: 200 base + 15 query vectors of 12, k=10 (angular, normalized)")
    assert result.output.count("\n") == 1


def test_cli_convert_bin(tmp_path: Path, cli: CliRunner) -> None:
    """--format bin through the CLI."""
    src = make_ann(tmp_path / "a.hdf5")
    result = cli.invoke(app, ["convert", str(src), str(tmp_path), "--format", "bin", "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a_groundtruth.ibin").exists()


def test_cli_convert_errors(tmp_path: Path, cli: CliRunner) -> None:
    """Library errors become `Error: ...` and exit code 1."""
    src = make_ann(tmp_path / "k.hdf5", kind="sparse")
    result = cli.invoke(app, ["convert", str(src), str(tmp_path / "o"), "-q"])
    assert result.exit_code == 1
    assert "Error: " in result.output and "sparse ann-benchmarks file" in result.output
    result = cli.invoke(app, ["convert", str(tmp_path / "none.hdf5"), str(tmp_path / "o")])
    assert result.exit_code == 1 and "Error: input file" in result.output
