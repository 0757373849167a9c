"""Vector file writers, checked against readers written here from the format definitions (not imgstore's own).

TEXMEX ``.Xvecs``: per vector an int32 (little-endian) dimension d, then d values; no file header.
big-ann-benchmarks ``.Xbin``: uint32 n, uint32 d, then n*d values row-major.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from imgstore import outputs as outputs_mod
from imgstore.errors import FormatError, OptionError, OutputExistsError, WriteError
from imgstore.outputs import StagedOutputs
from imgstore.progress import started
from imgstore.vectors import (
    FORMATS,
    VectorWriter,
    check_shape,
    format_by_name,
    format_for_path,
    read_vectors,
    vector_file_shape,
    write_vectors,
)
from imgstore.vectors import writer as V

# ---------------------------------------------------------------------- independent readers (from the spec)

VALUE = {"fvecs": "<f", "ivecs": "<i", "bvecs": "B", "fbin": "<f", "ibin": "<i", "u8bin": "B", "i8bin": "b"}
NP_VALUE = {"fvecs": "<f4", "ivecs": "<i4", "bvecs": "u1", "fbin": "<f4", "ibin": "<i4", "u8bin": "u1", "i8bin": "i1"}


def struct_read_vecs(data: bytes, name: str) -> list[tuple]:
    """Parse .Xvecs bytes record by record with ``struct``: [(d, values...)]."""
    code = VALUE[name][-1]
    size = struct.calcsize("<" + code)
    out, pos = [], 0
    while pos < len(data):
        (d,) = struct.unpack_from("<i", data, pos)
        pos += 4
        out.append((d, struct.unpack_from(f"<{d}{code}", data, pos)))
        pos += d * size
    assert pos == len(data), "trailing bytes after the last record"
    return out


def struct_read_bin(data: bytes, name: str) -> tuple[int, int, tuple]:
    """Parse .Xbin bytes with ``struct``: (n, d, flat values)."""
    n, d = struct.unpack_from("<II", data, 0)
    code = VALUE[name][-1]
    values = struct.unpack_from(f"<{n * d}{code}", data, 8)
    assert 8 + n * d * struct.calcsize("<" + code) == len(data), "size does not match the header"
    return n, d, values


def faiss_fvecs_read(path: Path) -> np.ndarray:
    """faiss's contrib reader (``fvecs_read``), verbatim in spirit."""
    a = np.fromfile(path, dtype="int32")
    d = a[0]
    return a.reshape(-1, d + 1)[:, 1:].copy().view("float32")


def bvecs_mmap(path: Path) -> np.ndarray:
    """The usual .bvecs reader (big-ann-benchmarks' BIGANN helpers)."""
    x = np.memmap(path, dtype="uint8", mode="r")
    d = x[:4].view("int32")[0]
    return x.reshape(-1, d + 4)[:, 4:]


def xbin_mmap(path: Path, dtype: str) -> np.ndarray:
    """big-ann-benchmarks' ``xbin_mmap``."""
    n, d = map(int, np.fromfile(path, dtype="uint32", count=2))
    assert os.stat(path).st_size == 8 + n * d * np.dtype(dtype).itemsize
    return np.memmap(path, dtype=dtype, mode="r", offset=8, shape=(n, d))


def spec_read(path: Path, name: str) -> np.ndarray:
    """Read any format into (n, d) with np.frombuffer and explicit little-endian dtypes, checking every d."""
    data = path.read_bytes()
    dt = np.dtype(NP_VALUE[name])
    if name.endswith("bin"):
        n, d = np.frombuffer(data, "<u4", count=2)
        return np.frombuffer(data, dt, offset=8).reshape(int(n), int(d))
    if not data:
        return np.empty((0, 0), dt)
    d = int(np.frombuffer(data, "<i4", count=1)[0])
    rec = np.dtype([("d", "<i4"), ("v", dt, (d,))])
    r = np.frombuffer(data, rec)
    assert (r["d"] == d).all()
    return r["v"]


def no_temp_files(folder: Path) -> bool:
    """True when no ``*.tmp-*`` file is left in ``folder``."""
    return not [p for p in folder.iterdir() if ".tmp-" in p.name]


# ---------------------------------------------------------------------- formats


def test_format_lookup_by_name_and_extension() -> None:
    """Formats are found by name, dotted name or file extension, any case."""
    assert format_by_name("FVECS") is FORMATS["fvecs"]
    assert format_by_name(".u8bin") is FORMATS["u8bin"]
    assert format_for_path("a/b/x.BVECS") is FORMATS["bvecs"]
    assert format_for_path("x.dat", "fbin") is FORMATS["fbin"]


def test_unknown_format_names_the_choices() -> None:
    """An unknown format or extension is an OptionError listing the formats."""
    with pytest.raises(OptionError, match="choose one of fvecs"):
        format_by_name("npy")
    with pytest.raises(OptionError, match="--format"):
        format_for_path("vectors.dat")


def test_format_sizes() -> None:
    """Record and file sizes follow the layouts."""
    assert FORMATS["fvecs"].record_bytes(128) == 4 + 512
    assert FORMATS["bvecs"].record_bytes(128) == 4 + 128
    assert FORMATS["fbin"].file_bytes(10, 3) == 8 + 120
    assert FORMATS["u8bin"].file_bytes(0, 3) == 8


# ---------------------------------------------------------------------- bytes, exactly


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        ("fvecs", [[1.5, -2.0], [0.0, 3.25]], struct.pack("<i2f", 2, 1.5, -2.0) + struct.pack("<i2f", 2, 0.0, 3.25)),
        ("ivecs", [[-1, 2**31 - 1]], struct.pack("<i2i", 2, -1, 2**31 - 1)),
        ("bvecs", [[0, 255, 7]], struct.pack("<i3B", 3, 0, 255, 7)),
        ("fbin", [[1.5, -2.0], [0.0, 3.25]], struct.pack("<II4f", 2, 2, 1.5, -2.0, 0.0, 3.25)),
        ("ibin", [[-(2**31)], [5]], struct.pack("<II2i", 2, 1, -(2**31), 5)),
        ("u8bin", [[0, 255, 7]], struct.pack("<II3B", 1, 3, 0, 255, 7)),
    ],
)
def test_exact_bytes(tmp_path: Path, name: str, values: list, expected: bytes) -> None:
    """Tiny files are byte-for-byte what the format definition says."""
    dtype = np.float64 if name[0] == "f" else np.int64
    path = write_vectors(tmp_path / f"x.{name}", np.array(values, dtype))
    assert path.read_bytes() == expected


def test_faiss_reader_reads_fvecs(tmp_path: Path) -> None:
    """faiss's ``fvecs_read`` one-liner reads the file back bit for bit."""
    x = np.random.default_rng(0).standard_normal((300, 96)).astype(np.float32)
    write_vectors(tmp_path / "a.fvecs", x)
    assert np.array_equal(faiss_fvecs_read(tmp_path / "a.fvecs").view("u4"), x.view("u4"))


def test_common_bvecs_reader(tmp_path: Path) -> None:
    """The usual memmap .bvecs reader reads the file back."""
    x = np.random.default_rng(1).integers(0, 256, (50, 128), dtype=np.uint8)
    write_vectors(tmp_path / "a.bvecs", x)
    assert np.array_equal(bvecs_mmap(tmp_path / "a.bvecs"), x)


@pytest.mark.parametrize(("name", "dtype"), [("fbin", "float32"), ("u8bin", "uint8"), ("ibin", "int32")])
def test_big_ann_xbin_mmap(tmp_path: Path, name: str, dtype: str) -> None:
    """big-ann-benchmarks' ``xbin_mmap`` reads .fbin/.u8bin/.ibin."""
    x = np.random.default_rng(2).integers(0, 200, (40, 17)).astype(dtype)
    write_vectors(tmp_path / f"a.{name}", x)
    assert np.array_equal(xbin_mmap(tmp_path / f"a.{name}", dtype), x)


# ---------------------------------------------------------------------- property tests

f32 = hnp.from_dtype(np.dtype("<f4"), allow_nan=False, allow_infinity=False, allow_subnormal=True)
shapes = st.tuples(st.integers(0, 40), st.integers(1, 24))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), name=st.sampled_from(["fvecs", "fbin"]), shape=shapes)
def test_float_writers_roundtrip_bits(tmp_path_factory: pytest.TempPathFactory, data, name, shape) -> None:
    """Any finite float32 array (extremes, -0.0, subnormals) comes back bit-exact, whatever the block split."""
    x = data.draw(hnp.arrays(np.float32, shape, elements=f32))
    cut = data.draw(st.integers(0, shape[0]))
    path = tmp_path_factory.mktemp("p") / f"x.{name}"
    with VectorWriter(path, None, shape[1], buffer_bytes=data.draw(st.integers(1, 300))) as w:
        w.write(x[:cut])
        w.write(x[cut:])
    raw = path.read_bytes()
    if name == "fvecs":
        recs = struct_read_vecs(raw, name)
        assert len(recs) == shape[0] and all(d == shape[1] for d, _ in recs)
        got = np.array([v for _, v in recs], np.float32).reshape(shape)
    else:
        n, d, flat = struct_read_bin(raw, name)
        assert (n, d) == shape
        got = np.array(flat, np.float32).reshape(shape)
    assert np.array_equal(got.view("u4"), x.view("u4"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), name=st.sampled_from(["ivecs", "bvecs", "ibin", "u8bin"]), shape=shapes)
def test_integer_writers_roundtrip(tmp_path_factory: pytest.TempPathFactory, data, name, shape) -> None:
    """Any in-range integers, given as int64, come back exactly (extremes included)."""
    info = np.iinfo(np.dtype(NP_VALUE[name]))
    x = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(int(info.min), int(info.max))))
    path = tmp_path_factory.mktemp("p") / f"x.{name}"
    write_vectors(path, x)
    got = spec_read(path, name).astype(np.int64)
    if shape[0] == 0 and name.endswith("vecs"):
        assert got.size == 0  # an empty .Xvecs file has no record to tell d
    else:
        assert np.array_equal(got, x)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(["ivecs", "bvecs", "ibin", "u8bin"]),
    bad=st.one_of(st.integers(2**31, 2**63 - 1), st.integers(-(2**63), -(2**31) - 1)),
)
def test_out_of_range_integers_never_wrap(tmp_path_factory: pytest.TempPathFactory, name, bad) -> None:
    """Integers beyond the target type are refused, never wrapped, and leave no file."""
    folder = tmp_path_factory.mktemp("p")
    x = np.zeros((3, 2), np.int64)
    x[1, 1] = bad
    with pytest.raises(FormatError, match="row 1"):
        write_vectors(folder / f"x.{name}", x)
    assert list(folder.iterdir()) == []


# ---------------------------------------------------------------------- range and dtype checks


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("bvecs", 256, "does not fit the uint8"),
        ("u8bin", -1, "does not fit the uint8"),
        ("ivecs", 2**31, "does not fit the int32"),
        ("ibin", -(2**31) - 1, "does not fit the int32"),
    ],
)
def test_integer_overflow_messages(tmp_path: Path, name: str, value: int, message: str) -> None:
    """The error names the value, its row and the type it does not fit."""
    x = np.array([[0], [value]], np.int64)
    with pytest.raises(FormatError, match=f"value {value} at row 1 {message}"):
        write_vectors(tmp_path / f"x.{name}", x)


def test_floats_refused_by_integer_formats(tmp_path: Path) -> None:
    """Float values are never rounded silently into .bvecs/.ivecs."""
    with pytest.raises(FormatError, match="round and cast"):
        write_vectors(tmp_path / "x.bvecs", np.array([[1.0, 2.0]]))


def test_float64_beyond_float32_refused(tmp_path: Path) -> None:
    """A float64 that would become inf in float32 is an error naming the value."""
    with pytest.raises(FormatError, match="overflows float32"):
        write_vectors(tmp_path / "x.fvecs", np.array([[1.0], [1e39]]))
    assert list(tmp_path.iterdir()) == []


def test_nan_refused_unless_allowed(tmp_path: Path) -> None:
    """NaN/inf are refused by default and written as-is with check_finite=False."""
    x = np.array([[1.0, np.nan]], np.float32)
    with pytest.raises(FormatError, match="non-finite value nan at row 0, column 1"):
        write_vectors(tmp_path / "x.fbin", x)
    with VectorWriter(tmp_path / "y.fbin", None, 2, check_finite=False) as w:
        w.write(x)
    assert np.isnan(spec_read(tmp_path / "y.fbin", "fbin")[0, 1])


def test_wide_integers_to_float_must_be_exact(tmp_path: Path) -> None:
    """int32 values beyond 2**24 would round in float32: refused; small ones are fine."""
    with pytest.raises(FormatError, match="2\\*\\*24"):
        write_vectors(tmp_path / "x.fvecs", np.array([[2**24 + 1]], np.int64))
    write_vectors(tmp_path / "y.fvecs", np.array([[2**24, -(2**24)]], np.int64))
    assert spec_read(tmp_path / "y.fvecs", "fvecs").tolist() == [[2.0**24, -(2.0**24)]]


def test_uint8_to_float_is_exact(tmp_path: Path) -> None:
    """uint8 pixels are widened to float32 exactly (no range check needed)."""
    x = np.arange(256, dtype=np.uint8).reshape(2, 128)
    write_vectors(tmp_path / "x.fvecs", x)
    assert np.array_equal(faiss_fvecs_read(tmp_path / "x.fvecs"), x.astype(np.float32))


def test_big_endian_input_is_written_little_endian(tmp_path: Path) -> None:
    """Input byte order does not leak into the file."""
    x = np.array([[1.0, 2.0]], ">f8")
    write_vectors(tmp_path / "x.fbin", x)
    assert spec_read(tmp_path / "x.fbin", "fbin").tolist() == [[1.0, 2.0]]


def test_block_shape_checked(tmp_path: Path) -> None:
    """A block of the wrong width or rank is a FormatError."""
    with pytest.raises(FormatError, match=r"shape \(rows, 3\)"):
        with VectorWriter(tmp_path / "x.fvecs", None, 3) as w:
            w.write(np.zeros((2, 4), np.float32))
    with pytest.raises(FormatError, match="2-D"):
        with VectorWriter(tmp_path / "x.fvecs", None, 3) as w:
            w.write(np.zeros(3, np.float32))
    assert list(tmp_path.iterdir()) == []


def test_bool_and_complex_refused(tmp_path: Path) -> None:
    """Only real numbers are written."""
    for bad in (np.ones((1, 2), bool), np.ones((1, 2), complex)):
        with pytest.raises(FormatError, match="real numeric"):
            write_vectors(tmp_path / "x.fvecs", bad)


# ---------------------------------------------------------------------- 32-bit header limits (no big arrays)


def test_check_shape_limits() -> None:
    """Dimensions and counts are checked against the 32-bit fields by arithmetic alone."""
    check_shape(FORMATS["fvecs"], 10**12, 2**31 - 1)  # .Xvecs store no count
    check_shape(FORMATS["fbin"], 2**32 - 1, 2**32 - 1)
    with pytest.raises(FormatError, match="int32 dimension field"):
        check_shape(FORMATS["bvecs"], 1, 2**31)
    with pytest.raises(FormatError, match="uint32 d header"):
        check_shape(FORMATS["u8bin"], 1, 2**32)
    with pytest.raises(FormatError, match="uint32 n header"):
        check_shape(FORMATS["fbin"], 2**32, 1)
    with pytest.raises(FormatError, match="at least one value"):
        check_shape(FORMATS["fbin"], 1, 0)


def test_writer_refuses_oversized_shape_before_creating_a_file(tmp_path: Path) -> None:
    """An impossible dim or count fails in the constructor: nothing allocated, nothing on disk."""
    with pytest.raises(FormatError, match="int32 dimension"):
        VectorWriter(tmp_path / "x.fvecs", None, 2**31)
    with pytest.raises(FormatError, match="uint32 n header"):
        VectorWriter(tmp_path / "x.fbin", None, 4, count=2**32)
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_the_row_past_uint32(tmp_path: Path) -> None:
    """Appending past 2**32-1 rows of .fbin fails before writing (row counter faked, no huge data)."""
    with pytest.raises(FormatError, match="4294967296 vectors do not fit"):
        with VectorWriter(tmp_path / "x.fbin", None, 2) as w:
            w.rows_written = 2**32 - 1
            w.write(np.zeros((1, 2), np.float32))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- counts and headers


def test_bin_header_patched_at_close(tmp_path: Path) -> None:
    """Without a count, the .fbin header gets the number of rows written."""
    with VectorWriter(tmp_path / "x.fbin", None, 3) as w:
        for _ in range(5):
            w.write(np.ones((7, 3), np.float32))
    assert struct.unpack("<II", (tmp_path / "x.fbin").read_bytes()[:8]) == (35, 3)


def test_declared_count_must_match(tmp_path: Path) -> None:
    """Fewer or more rows than the declared count is an error and no file appears."""
    with pytest.raises(FormatError, match="count=3"):
        with VectorWriter(tmp_path / "x.fbin", None, 2, count=3) as w:
            w.write(np.zeros((2, 2), np.float32))
    with pytest.raises(FormatError, match="count=1"):
        with VectorWriter(tmp_path / "x.fvecs", None, 2, count=1) as w:
            w.write(np.zeros((2, 2), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_empty_files(tmp_path: Path) -> None:
    """Zero vectors: an empty .fvecs, a header-only .fbin."""
    write_vectors(tmp_path / "x.fvecs", np.zeros((0, 4), np.float32))
    write_vectors(tmp_path / "x.fbin", np.zeros((0, 4), np.float32))
    assert (tmp_path / "x.fvecs").read_bytes() == b""
    assert (tmp_path / "x.fbin").read_bytes() == struct.pack("<II", 0, 4)


# ---------------------------------------------------------------------- atomic output


def test_error_leaves_no_file_and_no_temp(tmp_path: Path) -> None:
    """An exception inside the with block deletes the temporary file; the target never appears."""
    with pytest.raises(RuntimeError):
        with VectorWriter(tmp_path / "x.fvecs", None, 2) as w:
            w.write(np.zeros((4, 2), np.float32))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_temp_file_lives_next_to_target_until_close(tmp_path: Path) -> None:
    """While writing, only ``.x.fvecs.tmp-*`` and the writer lock ``.x.fvecs.lock`` exist in the target's folder."""
    with VectorWriter(tmp_path / "x.fvecs", None, 2) as w:
        w.write(np.zeros((1, 2), np.float32))
        names = sorted(p.name for p in tmp_path.iterdir())
        assert len(names) == 2 and names[0] == ".x.fvecs.lock" and names[1].startswith(".x.fvecs.tmp-")
    assert [p.name for p in tmp_path.iterdir()] == ["x.fvecs"]


def test_existing_output_refused_then_overwritten(tmp_path: Path) -> None:
    """An existing file is kept unless overwrite=True."""
    target = tmp_path / "x.fvecs"
    target.write_bytes(b"keep")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_vectors(target, np.zeros((1, 2)))
    assert target.read_bytes() == b"keep"
    write_vectors(target, np.zeros((1, 2)), overwrite=True)
    assert spec_read(target, "fvecs").shape == (1, 2)
    assert no_temp_files(tmp_path)


def test_output_that_appears_meanwhile_is_not_clobbered(tmp_path: Path) -> None:
    """Without overwrite, a file created by someone else during the write survives."""
    target = tmp_path / "x.fvecs"
    with pytest.raises(OutputExistsError, match="appeared"):
        with VectorWriter(target, None, 2) as w:
            w.write(np.zeros((1, 2), np.float32))
            target.write_bytes(b"other")
    assert target.read_bytes() == b"other"
    assert no_temp_files(tmp_path)


def test_missing_folder_and_folder_target(tmp_path: Path) -> None:
    """A missing output folder or a folder as target are option errors."""
    with pytest.raises(OptionError, match="does not exist"):
        write_vectors(tmp_path / "nope" / "x.fvecs", np.zeros((1, 1)))
    (tmp_path / "d.fvecs").mkdir()
    with pytest.raises(OptionError, match="is a folder"):
        write_vectors(tmp_path / "d.fvecs", np.zeros((1, 1)))


def test_permissions_follow_umask(tmp_path: Path) -> None:
    """The finished file is readable by group and others under umask 022 (no 0600 temp-file leftovers)."""
    old = os.umask(0o022)
    try:
        write_vectors(tmp_path / "x.fvecs", np.zeros((1, 1)))
    finally:
        os.umask(old)
    assert (tmp_path / "x.fvecs").stat().st_mode & 0o777 == 0o644


def test_staged_outputs_all_or_nothing(tmp_path: Path) -> None:
    """StagedOutputs renames every file on success and none on error."""
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    with pytest.raises(ValueError):
        with StagedOutputs([a, b]) as st_:
            st_.temp(a).write_text("a")
            raise ValueError
    assert list(tmp_path.iterdir()) == []
    with StagedOutputs([a, b]) as st_:
        st_.temp(a).write_text("a")
        st_.temp(b).write_text("b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]
    with pytest.raises(OutputExistsError):
        with StagedOutputs([a]):
            pass


# ---------------------------------------------------------------------- the library's own readers


@pytest.mark.parametrize("name", ["fvecs", "ivecs", "bvecs", "fbin", "ibin", "u8bin"])
def test_own_reader_roundtrip(tmp_path: Path, name: str) -> None:
    """read_vectors returns what was written (checked here against the spec reader too)."""
    x = np.random.default_rng(3).integers(0, 100, (33, 5))
    write_vectors(tmp_path / f"x.{name}", x)
    assert np.array_equal(read_vectors(tmp_path / f"x.{name}"), spec_read(tmp_path / f"x.{name}", name))
    assert vector_file_shape(tmp_path / f"x.{name}") == (33, 5)


def test_own_reader_detects_damage(tmp_path: Path) -> None:
    """Truncated files and records of another dimension are FormatErrors."""
    write_vectors(tmp_path / "x.fbin", np.zeros((3, 2)))
    with open(tmp_path / "x.fbin", "ab") as f:
        f.write(b"\0")
    with pytest.raises(FormatError, match="damaged"):
        read_vectors(tmp_path / "x.fbin")
    (tmp_path / "y.ivecs").write_bytes(struct.pack("<i2i", 2, 1, 2) + struct.pack("<i2i", 1, 1, 2))
    with pytest.raises(FormatError, match="record 1 has d=1"):
        read_vectors(tmp_path / "y.ivecs")


# ---------------------------------------------------------------------- progress


def test_progress_sets_total_on_tqdm_like() -> None:
    """A tqdm-like object gets its total and update calls; a plain callable gets increments."""

    class Bar:
        total = None
        done = 0

        def update(self, n: int) -> None:
            self.done += n

    bar = Bar()
    tick = started(bar, 10)
    tick(3)
    tick(7)
    assert (bar.total, bar.done) == (10, 10)
    seen: list[int] = []
    started(seen.append, 5)(5)
    assert seen == [5]
    started(None, None)(1)
    with pytest.raises(OptionError):
        started(42, None)


def test_contiguous_float32_goes_to_fbin_without_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A C-contiguous float32 block is written to .fbin as it is (no conversion buffer), yet still checked."""
    calls: list[int] = []
    real = V.VectorWriter._write_rows

    def spy(self, rows):
        calls.append(len(rows))
        return real(self, rows)

    monkeypatch.setattr(V.VectorWriter, "_write_rows", spy)
    x = np.arange(1000, dtype=np.float32).reshape(250, 4)
    with VectorWriter(tmp_path / "x.fbin", None, 4, buffer_bytes=4 * 4 * 100) as w:
        w.write(x)
        assert w._buf is None
    assert calls == []
    assert np.array_equal(xbin_mmap(tmp_path / "x.fbin", "float32"), x)
    x[201, 3] = np.inf
    with pytest.raises(FormatError, match="row 201, column 3"):
        with VectorWriter(tmp_path / "y.fbin", None, 4, buffer_bytes=4 * 4 * 100) as w:
            w.write(x)


def test_write_error_surfaces_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing write (disk full) raises in the caller and leaves no file behind."""
    import io

    real = io.BufferedWriter.write
    calls = {"n": 0}

    class Full(io.BufferedWriter):
        def write(self, data):
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError(28, "No space left on device")
            return real(self, data)

    def fake_open(path, mode="r", *args, **kwargs):
        return Full(io.FileIO(path, mode))

    monkeypatch.setattr(outputs_mod, "open", fake_open, raising=False)
    with pytest.raises(WriteError, match=r"cannot write .*x\.fvecs: No space left on device \(nothing was kept\)"):
        with VectorWriter(tmp_path / "x.fvecs", None, 4, buffer_bytes=16 * 10) as w:
            for _ in range(10):
                w.write(np.ones((10, 4), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_caller_may_reuse_its_array_after_write(tmp_path: Path) -> None:
    """Zero-copy blocks are fully written before write() returns: changing the array afterwards is safe."""
    x = np.arange(4000, dtype=np.float32).reshape(1000, 4)
    with VectorWriter(tmp_path / "x.fbin", None, 4, buffer_bytes=16 * 64) as w:
        w.write(x)
        x[:] = -1
    assert spec_read(tmp_path / "x.fbin", "fbin")[-1].tolist() == [3996.0, 3997.0, 3998.0, 3999.0]
