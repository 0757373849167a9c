"""Convert an ann-benchmarks HDF5 file into TEXMEX (``.fvecs``/``.ivecs``) or big-ann-benchmarks (``.fbin``/``.ibin``).

The ann-benchmarks layout: datasets ``train`` (base vectors, ``(n, d)``), ``test`` (queries, ``(q, d)``),
``neighbors`` (ground-truth ids into ``train``, ``(q, k)``) and ``distances`` (``(q, k)``); root attributes
``distance`` (``euclidean``, ``angular``, ...), ``dimension`` (may be missing: the width of ``train``) and ``type``
(may be missing: ``dense``; ``sparse`` files hold sets, not vectors, and are refused).

Everything is checked from the metadata before a byte is written, then each dataset is streamed in row blocks
(bounded memory, whatever the size) through :class:`~imgstore.vectors.VectorWriter`, which refuses to narrow
values that do not fit (int64 ids >= 2**31, float64 beyond float32). The four files are staged under temporary
names and appear together only when all four are complete.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from imgstore.errors import FormatError, OptionError, SourceError, io_errors
from imgstore.options import parse_enum
from imgstore.outputs import StagedOutputs
from imgstore.progress import ProgressLike, started
from imgstore.store.format import attr_value
from imgstore.vectors.formats import FORMATS, INT32_MAX, VectorFormat
from imgstore.vectors.writer import VectorWriter

# Rows per read default to about this many bytes of float64 (the widest type we convert through).
DEFAULT_CHUNK_BYTES = 32 * 2**20

# Distance names for which L2-normalising the vectors keeps the ground truth valid.
ANGULAR_DISTANCES = frozenset({"angular", "cosine"})


class OutputFamily(str, enum.Enum):
    """Which family of vector files ``convert`` writes."""

    FVECS = "fvecs"  # TEXMEX: .fvecs for vectors and distances, .ivecs for ids
    BIN = "bin"  # big-ann-benchmarks: .fbin for vectors and distances, .ibin for ids


# ann-benchmarks dataset -> (output role, whether it holds ids); also the order they are written in: the small,
# most-likely-to-be-rejected ground truth first, the large base set last.
ROLES: dict[str, tuple[str, bool]] = {
    "neighbors": ("groundtruth", True),
    "distances": ("distances", False),
    "test": ("query", False),
    "train": ("base", False),
}


def output_format(family: OutputFamily, ids: bool) -> VectorFormat:
    """The vector format of one output: ids go to ``.ivecs``/``.ibin``, values to ``.fvecs``/``.fbin``."""
    if family is OutputFamily.FVECS:
        return FORMATS["ivecs" if ids else "fvecs"]
    return FORMATS["ibin" if ids else "fbin"]


def output_paths(outdir: Path, stem: str, family: OutputFamily) -> dict[str, Path]:
    """``{dataset: path}``: ``OUTDIR/STEM_base.fvecs``, ``_query``, ``_groundtruth`` (ids), ``_distances``."""
    return {
        name: outdir / f"{stem}_{role}{output_format(family, ids).extension}" for name, (role, ids) in ROLES.items()
    }


@dataclass(frozen=True)
class ConvertOptions:
    """Validated options of :func:`convert_ann`."""

    fmt: OutputFamily = OutputFamily.FVECS
    normalize: bool = False  # L2-normalise base and query vectors (angular data sets only)
    overwrite: bool = False
    chunk_rows: int | None = None  # rows per read and write; None = about 32 MiB of float64

    def __post_init__(self) -> None:
        object.__setattr__(self, "fmt", parse_enum(OutputFamily, self.fmt, "format for convert"))
        if self.chunk_rows is not None and (
            not isinstance(self.chunk_rows, int) or isinstance(self.chunk_rows, bool) or self.chunk_rows < 1
        ):
            raise OptionError(f"invalid chunk rows {self.chunk_rows!r}: give a positive number of rows")


@dataclass(frozen=True)
class AnnLayout:
    """What an ann-benchmarks file holds, checked: sizes, dimension, ``k`` and the distance name."""

    n_base: int
    n_query: int
    dim: int
    k: int
    distance: str | None  # the ``distance`` attribute, lower-case, or None when missing


@dataclass(frozen=True)
class ConvertReport:
    """What :func:`convert_ann` wrote."""

    source: Path
    outputs: dict[str, Path]  # role (base, query, groundtruth, distances) -> written file
    n_base: int
    n_query: int
    dim: int
    k: int
    distance: str | None
    normalized: bool
    zero_vectors: int  # base/query rows left as zeros by --normalize (a zero vector has no direction)
    bytes_written: int


def _attr_str(attrs: Any, name: str) -> str | None:
    value = attrs.get(name)
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    return str(attr_value(value)).strip().lower()


def inspect_ann(f: h5py.File, name: str = "input") -> AnnLayout:
    """Check ``f`` is a dense ann-benchmarks file and return its :class:`AnnLayout` (reads metadata only)."""
    kind = _attr_str(f.attrs, "type")
    if kind == "sparse":
        raise FormatError(
            f"{name} is a sparse ann-benchmarks file (type=sparse: sets of item ids, e.g. for jaccard): "
            f"only dense vector data sets convert to vector files"
        )
    if kind not in (None, "dense"):
        raise FormatError(f"{name} has type={kind!r}: only dense ann-benchmarks files (type=dense) convert")
    missing = [ds for ds in ROLES if not isinstance(f.get(ds), h5py.Dataset)]
    if missing:
        raise SourceError(
            f"{name} is not a complete ann-benchmarks file: missing dataset(s) {', '.join(missing)} "
            f"(expected train, test, neighbors, distances)"
        )
    train, test, nbrs, dists = f["train"], f["test"], f["neighbors"], f["distances"]
    for ds in (train, test, nbrs, dists):
        if ds.ndim != 2:
            hint = " (a sparse file without type=sparse?)" if ds.name == "/train" else ""
            raise SourceError(f"{name}: dataset {ds.name.lstrip('/')} has shape {ds.shape}, expected 2-D{hint}")
    for ds in (train, test, dists):
        if ds.dtype.kind not in "fiu":
            raise FormatError(
                f"{name}: dataset {ds.name.lstrip('/')} holds {ds.dtype} values; only real numbers convert to "
                f"float32 vector files (binary/hamming data sets are not supported)"
            )
    if nbrs.dtype.kind not in "iu":
        raise FormatError(f"{name}: dataset neighbors holds {nbrs.dtype} values; ground-truth ids must be integers")
    n, d = train.shape
    if test.shape[1] != d:
        raise SourceError(f"{name}: test vectors have {test.shape[1]} dimensions but train vectors have {d}")
    dim_attr = f.attrs.get("dimension")
    if dim_attr is not None and int(np.asarray(dim_attr).item()) != d:
        raise SourceError(f"{name}: attribute dimension={int(np.asarray(dim_attr).item())} but train is {n} x {d}")
    if nbrs.shape[0] != test.shape[0]:
        raise SourceError(f"{name}: neighbors has {nbrs.shape[0]} rows but test has {test.shape[0]} queries")
    if dists.shape != nbrs.shape:
        raise SourceError(f"{name}: distances has shape {dists.shape} but neighbors has {nbrs.shape}")
    return AnnLayout(n, test.shape[0], d, nbrs.shape[1], _attr_str(f.attrs, "distance"))


def default_chunk_rows(ds: h5py.Dataset, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Rows per read for ``ds``: about ``chunk_bytes`` of float64, rounded to whole HDF5 chunks when chunked.

    Whole chunks, because a block boundary inside an HDF5 chunk makes that (possibly compressed) chunk be read twice.
    """
    width = max(1, int(np.prod(ds.shape[1:], dtype=np.int64)))
    rows = max(1, chunk_bytes // (width * 8))
    if ds.chunks:
        per_chunk = ds.chunks[0]
        rows = max(per_chunk, rows // per_chunk * per_chunk)
    return rows


def check_ids(ids: np.ndarray, n_base: int, row0: int) -> None:
    """Refuse ground-truth ids that would wrap in int32 or do not point into the base set."""
    if ids.size == 0:
        return
    lo, hi = int(ids.min()), int(ids.max())
    if hi > INT32_MAX:
        row = row0 + int(np.argwhere(ids == hi)[0, 0])
        raise FormatError(
            f"ground-truth id {hi} (query {row}) does not fit the int32 ids of .ivecs/.ibin (at most {INT32_MAX}): "
            f"it would wrap around; such a base set is too large for these formats"
        )
    if lo < 0 or hi >= n_base:
        bad = lo if lo < 0 else hi
        row = row0 + int(np.argwhere(ids == bad)[0, 0])
        raise FormatError(
            f"ground-truth id {bad} (query {row}) does not point into the {n_base} base vectors: "
            f"the input file is inconsistent"
        )


def l2_normalize(block: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows of ``block`` scaled to unit L2 norm, in float64; all-zero rows stay zero. Returns ``(rows, n_zero)``."""
    x = np.asarray(block, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    zero = norms == 0
    norms[zero] = 1.0
    return x / norms[:, None], int(zero.sum())


def convert_ann(
    src: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    *,
    fmt: str | OutputFamily = "fvecs",
    normalize: bool = False,
    overwrite: bool = False,
    chunk_rows: int | None = None,
    progress: ProgressLike = None,
) -> ConvertReport:
    """Convert the ann-benchmarks file ``src`` into four vector files in ``outdir`` (created if missing).

    Writes ``NAME_base``, ``NAME_query``, ``NAME_distances`` (``.fvecs``, or ``.fbin`` with ``fmt="bin"``) and
    ``NAME_groundtruth`` (``.ivecs`` / ``.ibin``), NAME being ``src``'s stem. Values become float32 and ids int32,
    after checking they fit. ``normalize`` L2-normalises base and query rows (for angular data sets; refused when
    the file's ``distance`` is another metric, whose ground truth it would invalidate). ``chunk_rows`` rows are
    read at a time (default: about 32 MiB of float64). ``progress`` receives row increments.
    """
    opts = ConvertOptions(
        fmt=parse_enum(OutputFamily, fmt, "format for convert"), normalize=normalize, overwrite=overwrite,
        chunk_rows=chunk_rows,
    )
    src_path = Path(os.path.expanduser(os.fspath(src)))
    out_path = Path(os.path.expanduser(os.fspath(outdir)))
    if not src_path.is_file():
        raise SourceError(f"input file {str(src_path)!r} does not exist: give an ann-benchmarks .hdf5 file")
    if out_path.exists() and not out_path.is_dir():
        raise OptionError(f"output {str(out_path)!r} is a file: give a folder for the vector files")
    try:
        h5 = h5py.File(src_path, "r")
    except OSError:
        raise SourceError(f"{str(src_path)!r} is not a readable HDF5 file: give an ann-benchmarks .hdf5 file") from None
    with h5, io_errors(src_path, out_path, SourceError):
        return _convert(h5, src_path, out_path, opts, progress)


def _convert(h5: h5py.File, src_path: Path, out_path: Path, opts: ConvertOptions, progress: ProgressLike) -> ConvertReport:
    """The conversion itself, on the open input file."""
    layout = inspect_ann(h5, repr(str(src_path)))
    if opts.normalize and layout.distance is not None and layout.distance not in ANGULAR_DISTANCES:
        raise OptionError(
            f"--normalize would invalidate the {layout.distance} ground truth of {src_path.name}: "
            f"use it only for angular data sets"
        )
    targets = output_paths(out_path, src_path.stem, opts.fmt)
    out_path.mkdir(parents=True, exist_ok=True)
    zero = 0
    written = 0
    with StagedOutputs(targets.values(), overwrite=opts.overwrite) as staged:
        tick = started(progress, layout.n_base + 3 * layout.n_query)
        for name, (_role, ids) in ROLES.items():
            ds = h5[name]
            rows_total, width = ds.shape
            vf = output_format(opts.fmt, ids)
            step = opts.chunk_rows or default_chunk_rows(ds)
            with VectorWriter(
                staged.temp(targets[name]), vf, width, count=rows_total, overwrite=True, atomic=False
            ) as w:
                for start in range(0, rows_total, step):
                    block = ds[start : start + step]
                    if ids:
                        check_ids(block, layout.n_base, start)
                    elif opts.normalize and name in ("train", "test"):
                        block, n_zero = l2_normalize(block)
                        zero += n_zero
                    w.write(block)
                    tick(len(block))
            written += w.bytes_written
    return ConvertReport(
        source=src_path,
        outputs={ROLES[name][0]: path for name, path in targets.items()},
        n_base=layout.n_base,
        n_query=layout.n_query,
        dim=layout.dim,
        k=layout.k,
        distance=layout.distance,
        normalized=opts.normalize,
        zero_vectors=zero,
        bytes_written=written,
    )
