"""Vector file formats: their byte layouts, behind one small class, and the registry that names them.

Two families ship, both little-endian with no padding and no alignment:

* TEXMEX ``.fvecs`` / ``.ivecs`` / ``.bvecs`` (faiss, the SIFT/GIST corpora): per vector an int32 dimension ``d``
  followed by ``d`` values (float32 / int32 / uint8). No file header; every record of a file has the same ``d``,
  so faiss's ``np.fromfile(f, "int32").reshape(-1, d + 1)[:, 1:].view("float32")`` reads an ``.fvecs`` file.
* big-ann-benchmarks ``.fbin`` / ``.u8bin`` / ``.i8bin`` / ``.ibin``: a header of uint32 ``n`` and uint32 ``d``,
  then ``n * d`` values row-major, as read by big-ann-benchmarks' ``xbin_mmap``.

A format is a :class:`VectorFormat`: what its header holds (:meth:`~VectorFormat.header`,
:meth:`~VectorFormat.parse_header`) and how one vector is laid out (:meth:`~VectorFormat.record_dtype`). The
writer, the readers, ``export`` and ``convert`` see only that interface, so a new format is one subclass (or one
instance of an existing class) and one :func:`register_format` call; the CLI's choices come from :data:`FORMATS`.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgstore.errors import FormatError, OptionError

INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1
# Integers up to 2**24 in magnitude are exact in float32 (24-bit significand); larger ones may round.
FLOAT32_EXACT_INT = 2**24


@dataclass(frozen=True)
class VectorFormat:
    """One vector file format: its name (= file extension without the dot) and value dtype.

    Subclasses say where the shape is kept. The base class has the arithmetic every layout shares.
    """

    name: str
    dtype: np.dtype

    # -- what a subclass defines

    header_size = 0  # bytes before the first vector
    counts_rows = False  # the header holds the number of vectors (patched when the writer closes)
    dim_field = "dimension field"  # the words error messages use for where ``d`` is kept

    @property
    def max_dim(self) -> int:
        """The largest dimension the format can record."""
        raise NotImplementedError

    @property
    def max_count(self) -> int | None:
        """The largest number of vectors the header can hold, or None when the format stores no count."""
        return None

    def header(self, count: int, dim: int) -> bytes:
        """The file header for ``count`` vectors of ``dim`` values (``header_size`` bytes)."""
        return b""

    def record_dtype(self, dim: int) -> np.dtype:
        """The numpy dtype of one stored vector of ``dim`` values, extra fields included (no padding)."""
        return np.dtype((self.dtype, (dim,)))

    def fill_constants(self, records: np.ndarray, dim: int) -> None:
        """Set the parts of fresh ``records`` that do not depend on the values (a per-record ``d``)."""

    def values(self, records: np.ndarray) -> np.ndarray:
        """The ``(rows, dim)`` values of ``records`` (a view)."""
        return records

    def parse_header(self, head: bytes, size: int, where: str) -> tuple[int, int]:
        """``(n, d)`` of a file of ``size`` bytes starting with ``head`` (its first ``max(8, header_size)`` bytes, fewer
        when the file is shorter); FormatError naming ``where`` if damaged."""
        raise NotImplementedError

    def check_records(self, records: np.ndarray, dim: int, first: int, where: str) -> None:
        """Raise FormatError when a record read back contradicts the layout (``first``: index of the first one)."""

    # -- shared arithmetic

    @property
    def extension(self) -> str:
        """The file extension, with the dot (``".fvecs"``)."""
        return "." + self.name

    @property
    def is_float(self) -> bool:
        """True for float32 formats (``fvecs``, ``fbin``)."""
        return self.dtype.kind == "f"

    def header_bytes(self) -> int:
        """Bytes before the first vector: 8 for ``.Xbin``, 0 for ``.Xvecs``."""
        return self.header_size

    def record_bytes(self, dim: int) -> int:
        """Bytes per vector of ``dim`` values, including any per-record field."""
        return self.record_dtype(dim).itemsize

    def file_bytes(self, count: int, dim: int) -> int:
        """Size in bytes of a file holding ``count`` vectors of ``dim`` values."""
        return self.header_size + count * self.record_bytes(dim)


@dataclass(frozen=True)
class RecordFormat(VectorFormat):
    """TEXMEX ``.Xvecs``: an int32 ``d`` in front of every vector; the count follows from the file size."""

    dim_field = "int32 dimension field of every record"

    @property
    def max_dim(self) -> int:
        return INT32_MAX

    def record_dtype(self, dim: int) -> np.dtype:
        return np.dtype([("d", "<i4"), ("v", self.dtype, (dim,))])

    def fill_constants(self, records: np.ndarray, dim: int) -> None:
        records["d"] = dim  # the same for every record: set once per buffer, only the values change afterwards

    def values(self, records: np.ndarray) -> np.ndarray:
        return records["v"]

    def parse_header(self, head: bytes, size: int, where: str) -> tuple[int, int]:
        if size == 0:
            return 0, 0  # no record to tell d
        if len(head) < 4:
            raise FormatError(f"{where} is too short for a {self.extension} file")
        (d,) = struct.unpack("<i", head[:4])
        if d < 1 or size % self.record_bytes(d):
            raise FormatError(
                f"{where} is not a valid {self.extension} file: first record has d={d}, which does not divide "
                f"its {size} bytes into whole records"
            )
        return size // self.record_bytes(d), d

    def check_records(self, records: np.ndarray, dim: int, first: int, where: str) -> None:
        bad = np.flatnonzero(records["d"] != dim)
        if bad.size:
            raise FormatError(
                f"{where} is damaged: record {first + int(bad[0])} has d={int(records['d'][bad[0]])}, not {dim} "
                f"like the first"
            )


@dataclass(frozen=True)
class HeaderFormat(VectorFormat):
    """big-ann-benchmarks ``.Xbin``: uint32 ``n`` and uint32 ``d`` once at the start, then the values row-major."""

    header_size = 8
    counts_rows = True
    dim_field = "uint32 d header"

    @property
    def max_dim(self) -> int:
        return UINT32_MAX

    @property
    def max_count(self) -> int | None:
        return UINT32_MAX

    def header(self, count: int, dim: int) -> bytes:
        return struct.pack("<II", count, dim)

    def parse_header(self, head: bytes, size: int, where: str) -> tuple[int, int]:
        if len(head) < 8:
            raise FormatError(f"{where} is too short for a {self.extension} file: it has no 8-byte header")
        n, d = struct.unpack("<II", head)
        if d < 1 or size != self.file_bytes(n, d):
            raise FormatError(
                f"{where} is damaged: header says {n} x {d} ({self.file_bytes(n, d)} bytes) but it has {size}"
            )
        return n, d


# The registry: name -> format. The CLI's --format choices and the extension lookup read it.
FORMATS: dict[str, VectorFormat] = {}


def register_format(fmt: VectorFormat) -> VectorFormat:
    """Make ``fmt`` known by its name and extension to every command (export, convert, the readers); returns it.

    Re-registering a name replaces the earlier format.
    """
    if not fmt.name or not fmt.name.isidentifier() or fmt.name != fmt.name.lower():
        raise OptionError(f"invalid vector format name {fmt.name!r}: use a lower-case extension without the dot")
    FORMATS[fmt.name] = fmt
    return fmt


for _fmt in (
    RecordFormat("fvecs", np.dtype("<f4")),
    RecordFormat("ivecs", np.dtype("<i4")),
    RecordFormat("bvecs", np.dtype("u1")),
    HeaderFormat("fbin", np.dtype("<f4")),
    HeaderFormat("ibin", np.dtype("<i4")),
    HeaderFormat("u8bin", np.dtype("u1")),
    HeaderFormat("i8bin", np.dtype("i1")),
):
    register_format(_fmt)


def format_names() -> str:
    """The registered names, for help texts and error messages (``"fvecs, ivecs, ..."``)."""
    return ", ".join(FORMATS)


def format_by_name(name: str | VectorFormat) -> VectorFormat:
    """The :class:`VectorFormat` called ``name`` (``"fvecs"`` or ``".fvecs"``, any case)."""
    if isinstance(name, VectorFormat):
        return name
    key = str(name).strip().lower().lstrip(".")
    try:
        return FORMATS[key]
    except KeyError:
        raise OptionError(f"unknown vector format {name!r}: choose one of {format_names()}") from None


def format_for_path(path: str | os.PathLike[str], fmt: str | VectorFormat | None = None) -> VectorFormat:
    """The format named by ``fmt``, or else the one ``path``'s extension names (``x.fvecs`` -> fvecs)."""
    if fmt is not None:
        return format_by_name(fmt)
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise OptionError(
            f"cannot tell the vector format of {os.fspath(path)!r} from its extension: "
            f"end the name with one of .{', .'.join(FORMATS)} or give the format (--format)"
        )
    return FORMATS[suffix]


def check_shape(fmt: VectorFormat, count: int | None, dim: int) -> None:
    """Raise :class:`FormatError` unless ``count`` vectors of ``dim`` values fit ``fmt``'s header fields.

    Pure arithmetic, so callers check before reading or allocating anything. ``count=None`` checks only ``dim``.
    """
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 1:
        raise FormatError(f"invalid vector dimension {dim!r}: vectors need at least one value")
    if dim > fmt.max_dim:
        raise FormatError(
            f"dimension {dim} does not fit the {fmt.dim_field} of {fmt.extension} (at most {fmt.max_dim}): "
            f"shrink the vectors (e.g. --size 32 --channels 1)"
        )
    if count is None:
        return
    if count < 0:
        raise FormatError(f"invalid vector count {count}: it cannot be negative")
    if fmt.max_count is not None and count > fmt.max_count:
        raise FormatError(
            f"{count} vectors do not fit the uint32 n header of {fmt.extension} (at most {fmt.max_count}): "
            f"split the data over several files or use a .Xvecs format, which stores no count"
        )


def _type_name(fmt: VectorFormat) -> str:
    if fmt.is_float:
        return "float32"
    info = np.iinfo(fmt.dtype)
    return f"{fmt.dtype.name} ({info.min}..{info.max})"


def check_source(block: np.ndarray, fmt: VectorFormat, row0: int) -> None:
    """Refuse values ``fmt`` cannot hold exactly, before any narrowing cast (``row0``: index of the first row)."""
    kind = block.dtype.kind
    if kind not in "iuf" or block.dtype.names is not None:
        raise FormatError(
            f"cannot write {block.dtype} values to {fmt.extension}: give a real numeric array (ints or floats)"
        )
    if fmt.is_float:
        wide = kind in "iu" and not np.can_cast(block.dtype, np.int16) and not np.can_cast(block.dtype, np.uint16)
        # Wider integers are exact in float32 only up to 2**24; refuse rather than round silently.
        if wide and block.size and max(abs(int(block.min())), abs(int(block.max()))) > FLOAT32_EXACT_INT:
            raise FormatError(
                f"integer values beyond +-2**24 (rows from {row0}) cannot be stored exactly as float32 in "
                f"{fmt.extension}: convert them to float yourself if rounding is acceptable"
            )
        return
    if kind == "f":
        raise FormatError(
            f"cannot write float values to {fmt.extension} ({_type_name(fmt)}) without rounding: "
            f"round and cast them to integers first"
        )
    if np.can_cast(block.dtype, fmt.dtype, "safe") or block.size == 0:
        return
    info = np.iinfo(fmt.dtype)
    lo, hi = int(block.min()), int(block.max())
    if lo < info.min or hi > info.max:
        bad = lo if lo < info.min else hi
        row = row0 + int(np.argwhere(block == bad)[0, 0])
        raise FormatError(
            f"value {bad} at row {row} does not fit the {_type_name(fmt)} values of {fmt.extension}: "
            f"no value may wrap around, so fix or drop that row"
        )


def check_finite(values: np.ndarray, source: np.ndarray, fmt: VectorFormat, row0: int) -> None:
    """Refuse NaN/inf in the cast ``values``; ``source`` tells an overflow of float32 from a NaN/inf input."""
    finite = np.isfinite(values)
    if finite.all():
        return
    row, col = (int(i) for i in np.argwhere(~finite)[0])
    src = source[row, col]
    if np.isfinite(src):
        raise FormatError(
            f"value {float(src):g} at row {row0 + row} overflows float32 in {fmt.extension} (largest 3.4e38): "
            f"rescale the data"
        )
    raise FormatError(
        f"non-finite value {float(src)} at row {row0 + row}, column {col}: {fmt.extension} files for ANN search "
        f"should hold finite numbers; drop or fix that row (or pass check_finite=False)"
    )
