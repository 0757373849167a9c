"""Vector files for nearest-neighbour libraries: layouts, streaming writers and plain readers.

Two families, both little-endian with no padding and no alignment:

* TEXMEX ``.fvecs`` / ``.ivecs`` / ``.bvecs`` (faiss, the SIFT/GIST corpora): per vector an int32 dimension ``d``
  followed by ``d`` values (float32 / int32 / uint8). No file header; every record of a file has the same ``d``,
  so faiss's ``np.fromfile(f, "int32").reshape(-1, d + 1)[:, 1:].view("float32")`` reads an ``.fvecs`` file.
* big-ann-benchmarks ``.fbin`` / ``.u8bin`` / ``.i8bin`` / ``.ibin``: a header of uint32 ``n`` and uint32 ``d``,
  then ``n * d`` values row-major, as read by big-ann-benchmarks' ``xbin_mmap``.

:class:`VectorWriter` streams blocks of rows into one such file. It checks every block before narrowing (no silent
wrap of an int64 id, no float64 value turning into ``inf``), writes to a temporary file next to the target and
renames it only on a clean exit, so a failed run never leaves half a file under the target's name.
:class:`StagedOutputs` does the same for a set of files that must appear together.

The readers (:func:`read_vectors`, :func:`iter_vectors`, :func:`vector_file_shape`) are for the library's own use;
the test suite checks the writers with its own reader written from the layouts above.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import functools
import os
import struct
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Union

import numpy as np

from imgstore import signals
from imgstore.errors import FormatError, OptionError, OutputExistsError, SourceError, WriteError, os_cause
from imgstore.lock import WriterLock, remove_stale_temps, temp_path, temp_target

INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1
# Integers up to 2**24 in magnitude are exact in float32 (24-bit significand); larger ones may round.
FLOAT32_EXACT_INT = 2**24

# Rows are converted and written in buffers of about this many bytes: large enough that one ``write`` call
# amortises the Python overhead, small enough that the buffer stays in the CPU cache between numpy filling it
# and the kernel copying it out (4 MiB measured ~1.2x faster than 16 MiB for .fvecs), and memory stays flat.
DEFAULT_BUFFER_BYTES = 4 * 2**20

# A progress sink: a callable taking the number of rows just finished, or a tqdm-like object with ``update``.
Progress = Union[Callable[[int], Any], Any, None]


class HeaderKind(str, enum.Enum):
    """Where a format keeps its shape."""

    RECORD = "record"  # int32 d in front of every vector (.Xvecs); the count follows from the file size
    FILE = "file"  # uint32 n, uint32 d once at the start of the file (.Xbin)


@dataclass(frozen=True)
class VectorFormat:
    """One vector file format: its name (= file extension without the dot), value dtype and header kind."""

    name: str
    dtype: np.dtype
    header: HeaderKind

    @property
    def extension(self) -> str:
        """The file extension, with the dot (``".fvecs"``)."""
        return "." + self.name

    @property
    def max_dim(self) -> int:
        """The largest dimension the format's header field can hold."""
        return INT32_MAX if self.header is HeaderKind.RECORD else UINT32_MAX

    @property
    def max_count(self) -> int | None:
        """The largest number of vectors the header can hold, or ``None`` when the format stores no count."""
        return None if self.header is HeaderKind.RECORD else UINT32_MAX

    @property
    def is_float(self) -> bool:
        """True for float32 formats (``fvecs``, ``fbin``)."""
        return self.dtype.kind == "f"

    def header_bytes(self) -> int:
        """Bytes before the first vector: 8 for ``.Xbin``, 0 for ``.Xvecs``."""
        return 8 if self.header is HeaderKind.FILE else 0

    def record_bytes(self, dim: int) -> int:
        """Bytes per vector of ``dim`` values, including the per-record dimension of ``.Xvecs``."""
        return dim * self.dtype.itemsize + (4 if self.header is HeaderKind.RECORD else 0)

    def file_bytes(self, count: int, dim: int) -> int:
        """Size in bytes of a file holding ``count`` vectors of ``dim`` values."""
        return self.header_bytes() + count * self.record_bytes(dim)


FORMATS: dict[str, VectorFormat] = {
    f.name: f
    for f in (
        VectorFormat("fvecs", np.dtype("<f4"), HeaderKind.RECORD),
        VectorFormat("ivecs", np.dtype("<i4"), HeaderKind.RECORD),
        VectorFormat("bvecs", np.dtype("u1"), HeaderKind.RECORD),
        VectorFormat("fbin", np.dtype("<f4"), HeaderKind.FILE),
        VectorFormat("ibin", np.dtype("<i4"), HeaderKind.FILE),
        VectorFormat("u8bin", np.dtype("u1"), HeaderKind.FILE),
        VectorFormat("i8bin", np.dtype("i1"), HeaderKind.FILE),
    )
}

_FORMAT_CHOICES = ", ".join(FORMATS)


def format_by_name(name: str | VectorFormat) -> VectorFormat:
    """The :class:`VectorFormat` called ``name`` (``"fvecs"`` or ``".fvecs"``, any case)."""
    if isinstance(name, VectorFormat):
        return name
    key = str(name).strip().lower().lstrip(".")
    try:
        return FORMATS[key]
    except KeyError:
        raise OptionError(f"unknown vector format {name!r}: choose one of {_FORMAT_CHOICES}") from None


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
    """Raise :class:`FormatError` unless ``count`` vectors of ``dim`` values fit ``fmt``'s 32-bit header fields.

    Pure arithmetic, so callers check before reading or allocating anything. ``count=None`` checks only ``dim``.
    """
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 1:
        raise FormatError(f"invalid vector dimension {dim!r}: vectors need at least one value")
    if dim > fmt.max_dim:
        field = "int32 dimension field of every record" if fmt.header is HeaderKind.RECORD else "uint32 d header"
        raise FormatError(
            f"dimension {dim} does not fit the {field} of {fmt.extension} (at most {fmt.max_dim}): "
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


def _check_source(block: np.ndarray, fmt: VectorFormat, row0: int) -> None:
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


def _check_finite(values: np.ndarray, source: np.ndarray, fmt: VectorFormat, row0: int) -> None:
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


@functools.lru_cache(maxsize=1)
def _fallocate() -> Callable[..., int] | None:
    """libc's ``fallocate64`` on Linux (None elsewhere or when it cannot be found)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = getattr(libc, "fallocate64", None) or (libc.fallocate if ctypes.sizeof(ctypes.c_long) == 8 else None)
    except (OSError, AttributeError):
        return None
    if func is None:
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    func.restype = ctypes.c_int
    return func


_FALLOC_FL_KEEP_SIZE = 1


def preallocate(fd: int, offset: int, length: int) -> None:
    """Reserve disk blocks for ``length`` bytes at ``offset`` without changing the file size; best effort.

    What ``numpy.tofile`` does before writing (``fallocate`` with ``FALLOC_FL_KEEP_SIZE``): writing into reserved
    extents is markedly faster (about 1.5x into the page cache here) and less fragmented. Unlike
    ``os.posix_fallocate`` it never falls back to writing zeros; where unsupported it does nothing.
    """
    func = _fallocate()
    if func is not None and length > 0:
        func(fd, _FALLOC_FL_KEEP_SIZE, offset, length)  # the result is ignored: only a speed-up


def _create_temp(path: Path) -> tuple[Path, Any]:
    """Create a temporary file for ``path``'s content beside it (same file system, so renaming is atomic).

    ``open(..., "xb")`` rather than ``mkstemp`` so the final file gets the usual umask permissions, not 0600.
    """
    for _ in range(100):
        tmp = temp_path(path)
        try:
            return tmp, open(tmp, "xb")
        except FileExistsError:
            continue
        except OSError as exc:
            raise WriteError(f"cannot create a file next to {path}: {os_cause(exc)}") from None
    raise FileExistsError(f"cannot create a temporary file next to {path}")  # pragma: no cover


def check_target(path: Path, overwrite: bool) -> None:
    """Refuse an output path that exists (unless ``overwrite``), is a folder, or lies in a missing folder."""
    if path.is_dir():
        raise OptionError(f"output {str(path)!r} is a folder: give a file name, e.g. {path / 'vectors.fvecs'}")
    if not path.parent.is_dir():
        raise OptionError(f"output folder {str(path.parent)!r} does not exist: create it first")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{str(path)!r} already exists: pass --overwrite (overwrite=True) to replace it")


def commit_temp(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename the finished ``tmp`` to ``path``; without ``overwrite`` never clobber a file that appeared meanwhile."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        # link() fails if path exists, unlike rename(): no window in which another writer's file is replaced.
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExistsError(
            f"{str(path)!r} appeared while it was being written: pass --overwrite (overwrite=True) to replace it"
        ) from None
    except OSError:  # file systems without hard links (some network and FUSE mounts)
        if path.exists():
            raise OutputExistsError(
                f"{str(path)!r} already exists: pass --overwrite (overwrite=True) to replace it"
            ) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


class VectorWriter:
    """Stream 2-D blocks of vectors into one ``.Xvecs`` / ``.Xbin`` file, atomically.

    ``with VectorWriter(path, "fvecs", dim=128) as w: w.write(block)`` where each block is an ``(rows, dim)`` array.

    * Values are checked before narrowing: integers must fit the target type, floats go only to float formats,
      and (unless ``check_finite=False``) NaN/inf or float64 values beyond float32's range are refused.
    * Data goes to ``.NAME.tmp-XXXXXXXX`` in the same folder and is renamed to ``path`` when the ``with`` block
      exits cleanly; on an exception the temporary file is deleted and ``path`` is untouched. The writer holds
      ``path``'s writer lock meanwhile, and removes what a killed writer of ``path`` left. ``atomic=False`` writes
      ``path`` itself (a temporary name of :class:`StagedOutputs`, which does all that for its set of files).
    * Operating-system errors (a full disk) become :class:`~imgstore.errors.WriteError` naming the file.
    * ``.Xbin`` count: the header's ``n`` is written as ``count`` (or 0) at open and patched with the number of rows
      actually written at close, so ``count`` is optional. When given, it is checked against the 32-bit limits at
      open and against the rows written at close (a mismatch is a :class:`FormatError` and nothing is renamed).
    * Rows are converted in a buffer of about ``buffer_bytes`` (default 4 MiB), reused between calls, and each
      buffer goes out in one ``write`` call: ``.Xvecs`` records are built as one structured array (int32 ``d``
      then the values) rather than per vector. A C-contiguous block already in the file's dtype goes to ``.Xbin``
      without any copy. Disk blocks are reserved ahead (:func:`preallocate`), as ``numpy.tofile`` does.
      (Writing on a background thread while the next buffer is filled was tried: no faster on 2 cores, where
      numpy's copy and the kernel's copy into the page cache compete for the same memory bandwidth.)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fmt: str | VectorFormat | None,
        dim: int,
        count: int | None = None,
        overwrite: bool = False,
        *,
        check_finite: bool = True,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        atomic: bool = True,
    ) -> None:
        self.path = Path(path)
        self.atomic = atomic
        self._lock: WriterLock | None = None
        self.format = format_for_path(self.path, fmt)
        check_shape(self.format, count, dim)
        if buffer_bytes < 1:
            raise OptionError(f"invalid buffer size {buffer_bytes!r}: give a positive number of bytes")
        self.dim = int(dim)
        self.count = None if count is None else int(count)
        self.overwrite = overwrite
        self.check_finite = check_finite
        self.rows_written = 0
        self._rows_per_buffer = max(1, buffer_bytes // self.format.record_bytes(self.dim))
        self._buf: np.ndarray | None = None
        self._tmp: Path | None = None
        self._file: Any = None
        self._closed = False

    @property
    def bytes_written(self) -> int:
        """Bytes written so far, header included."""
        return self.format.file_bytes(self.rows_written, self.dim)

    def open(self) -> VectorWriter:
        """Create the temporary file (``__enter__`` does this); refuses an existing ``path`` unless overwriting."""
        if self._file is not None or self._closed:
            raise RuntimeError("a VectorWriter can be opened only once")
        if not self.atomic:
            try:
                self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close() / abort()
            except OSError as exc:
                raise WriteError(f"cannot create {temp_target(self.path)}: {os_cause(exc)}") from None
            self._tmp = self.path
        else:
            self._lock = WriterLock(self.path).acquire()
            try:
                remove_stale_temps(self.path)
                check_target(self.path, self.overwrite)
                self._tmp, self._file = _create_temp(self.path)
            except BaseException:
                self._lock.release()
                raise
        try:
            if self.format.header is HeaderKind.FILE:
                self._file.write(struct.pack("<II", self.count or 0, self.dim))
            if self.count is not None:
                preallocate(self._file.fileno(), 0, self.format.file_bytes(self.count, self.dim))
        except OSError as exc:
            self.abort()
            raise WriteError(f"cannot write {temp_target(self.path)}: {os_cause(exc)} (nothing was kept)") from None
        return self

    def __enter__(self) -> VectorWriter:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, block: np.ndarray | Iterable[Iterable[float]]) -> None:
        """Append ``block``, an ``(rows, dim)`` array (any real dtype the format can hold exactly)."""
        try:
            self._write(block)
        except OSError as exc:
            self.abort()
            raise WriteError(f"cannot write {temp_target(self.path)}: {os_cause(exc)} (nothing was kept)") from None

    def _write(self, block: np.ndarray | Iterable[Iterable[float]]) -> None:
        if self._file is None or self._closed:
            raise RuntimeError("write() on a VectorWriter that is not open: use it in a `with` block")
        arr = np.asarray(block)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise FormatError(
                f"expected a block of shape (rows, {self.dim}) for {self.format.extension}, got {arr.shape}: "
                f"reshape each block to 2-D with one vector per row"
            )
        total = self.rows_written + arr.shape[0]
        if self.count is not None and total > self.count:
            raise FormatError(f"{total} vectors written but count={self.count} was declared: fix the count")
        check_shape(self.format, total, self.dim)
        if arr.shape[0] == 0:
            return
        if self.count is None:  # with a count, the whole file was reserved at open
            size = arr.shape[0] * self.format.record_bytes(self.dim)
            preallocate(self._file.fileno(), self.bytes_written, size)
        step = self._rows_per_buffer
        if self.format.header is HeaderKind.FILE and arr.dtype == self.format.dtype and arr.flags.c_contiguous:
            # Already in the file's layout: check it a buffer's worth at a time, then one write, no copy at all.
            for start in range(0, arr.shape[0], step):
                rows = arr[start : start + step]
                _check_source(rows, self.format, self.rows_written + start)
                self._check_values(rows, rows, self.rows_written + start)
            self._file.write(arr.data.cast("B"))
            self.rows_written += arr.shape[0]
            return
        for start in range(0, arr.shape[0], step):
            self._write_rows(arr[start : start + step])

    def _check_values(self, rows: np.ndarray, values: np.ndarray, row0: int) -> None:
        """After the cast: refuse NaN/inf in ``values`` (``rows`` cast to the file's dtype) unless allowed."""
        if self.format.is_float and self.check_finite:
            # Unchanged float32 values are checked in the contiguous source: faster than the strided records.
            _check_finite(rows if rows.dtype == self.format.dtype else values, rows, self.format, row0)

    def _write_rows(self, rows: np.ndarray) -> None:
        fmt = self.format
        row0 = self.rows_written
        _check_source(rows, fmt, row0)  # before the cast: a wrapped integer could not be detected after it
        m = rows.shape[0]
        if fmt.header is HeaderKind.RECORD:
            if self._buf is None:
                rec = np.dtype([("d", "<i4"), ("v", fmt.dtype, (self.dim,))])  # packed: no padding
                self._buf = np.empty(self._rows_per_buffer, rec)
                self._buf["d"] = self.dim  # constant: set once, only the values change afterwards
            out = self._buf[:m]
            with np.errstate(over="ignore"):  # float64 -> float32 overflow is reported by _check_finite
                out["v"] = rows
            values = out["v"]
            payload = out.view(np.uint8)
        else:
            if self._buf is None:
                self._buf = np.empty((self._rows_per_buffer, self.dim), fmt.dtype)
            values = payload = self._buf[:m]
            with np.errstate(over="ignore"):
                values[...] = rows
        self._check_values(rows, values, row0)
        self._file.write(payload.data.cast("B"))
        self.rows_written += m

    def close(self) -> Path:
        """Finish the file (patch the ``.Xbin`` count) and rename it to ``path``; safe to call twice."""
        if self._closed:
            return self.path
        if self._file is None:
            raise RuntimeError("close() on a VectorWriter that was never opened")
        try:
            self._buf = None
            if self.count is not None and self.rows_written != self.count:
                raise FormatError(
                    f"{self.rows_written} vectors written but count={self.count} was declared: fix the count"
                )
            try:
                if self.format.header is HeaderKind.FILE:
                    self._file.seek(0)
                    self._file.write(struct.pack("<II", self.rows_written, self.dim))
                self._file.close()
                assert self._tmp is not None
                if self.atomic:
                    commit_temp(self._tmp, self.path, self.overwrite)
            except OutputExistsError:
                raise
            except OSError as exc:
                raise WriteError(f"cannot write {self.path}: {os_cause(exc)} (nothing was kept)") from None
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._release()
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file, leaving ``path`` as it was; safe to call twice."""
        self._closed = True
        self._buf = None
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.unlink(missing_ok=True)
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def write_vectors(
    path: str | os.PathLike[str],
    vectors: np.ndarray,
    fmt: str | VectorFormat | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write a whole ``(n, d)`` array to ``path`` with :class:`VectorWriter`; returns the path."""
    arr = np.asarray(vectors)
    if arr.ndim != 2:
        raise FormatError(f"expected an (n, d) array, got shape {arr.shape}: reshape to one vector per row")
    with VectorWriter(path, fmt, arr.shape[1], count=arr.shape[0], overwrite=overwrite) as w:
        w.write(arr)
    return w.path


class StagedOutputs:
    """Several output files that appear together: each is written to a temporary name, all renamed at the end.

    ``with StagedOutputs([a, b]) as st: write(st.temp(a)); write(st.temp(b))``. On entry it takes every target's
    writer lock (a second writer of any of them is refused at once), removes the temporary files a killed run left
    for them, and refuses existing targets unless ``overwrite``. On a clean exit every temporary file is renamed
    to its target, the first target last (so when it exists, all do), with signals held until the last rename; on
    an exception all are deleted and no target is touched. (A kill -9 between two renames leaves the first target
    absent and its companions present; a rerun needs ``overwrite`` then.)
    """

    def __init__(self, targets: Iterable[str | os.PathLike[str]], overwrite: bool = False) -> None:
        self.targets = [Path(t) for t in targets]
        self.overwrite = overwrite
        self._temps: dict[Path, Path] = {}
        self._locks: list[WriterLock] = []

    def __enter__(self) -> StagedOutputs:
        try:
            for target in self.targets:
                self._locks.append(WriterLock(target).acquire())
            for target in self.targets:
                remove_stale_temps(target)  # ours to remove whatever follows: we hold the lock
                check_target(target, self.overwrite)
        except BaseException:
            self._release()
            raise
        return self

    def temp(self, target: str | os.PathLike[str]) -> Path:
        """The temporary path to write ``target``'s content to (in the same folder; not created)."""
        target = Path(target)
        if target not in self.targets:
            raise ValueError(f"{target} is not one of the staged outputs")
        if target not in self._temps:
            self._temps[target] = temp_path(target)
        return self._temps[target]

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is not None:
                self.discard()
                return
            missing = [t for t in self.targets if t not in self._temps or not self._temps[t].exists()]
            if missing:
                self.discard()
                raise RuntimeError(f"staged outputs never written: {', '.join(map(str, missing))}")
            try:
                # The first target (the main output) is renamed last: when it exists, so do the others. A signal
                # waits until all are renamed.
                with signals.deferred():
                    for target in reversed(self.targets):
                        commit_temp(self._temps[target], target, self.overwrite)
            except OutputExistsError:
                self.discard()
                raise
            except OSError as exc:
                self.discard()
                raise WriteError(f"cannot write {target}: {os_cause(exc)}") from None
            except BaseException:
                self.discard()
                raise
        finally:
            self._release()

    def discard(self) -> None:
        """Delete every temporary file that exists."""
        for tmp in self._temps.values():
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def _release(self) -> None:
        for lock in reversed(self._locks):
            lock.release()
        self._locks.clear()


def progress_callback(progress: Progress, total: int | None = None) -> Callable[[int], None]:
    """Adapt ``progress`` (``None``, a callable taking a row increment, or a tqdm-like ``update`` object).

    A tqdm-like object whose ``total`` is unset gets ``total`` (so the CLI can open its bar before the library
    knows how many rows there are).
    """
    if progress is None:
        return lambda n: None
    update = getattr(progress, "update", None)
    if callable(update):
        if total is not None and hasattr(progress, "total") and not progress.total:
            progress.total = total
            refresh = getattr(progress, "refresh", None)
            if callable(refresh):
                refresh()
        return lambda n: update(n)
    if callable(progress):
        return lambda n: progress(n)
    raise OptionError(f"invalid progress {progress!r}: give a callable taking a row count, or a tqdm bar")


# ---------------------------------------------------------------------------------------------------- readers


def vector_file_shape(path: str | os.PathLike[str], fmt: str | VectorFormat | None = None) -> tuple[int, int]:
    """``(n, d)`` of a vector file, from its header and size; a size that does not match is a FormatError.

    An empty ``.Xvecs`` file has no record to tell ``d`` and gives ``(0, 0)``.
    """
    p = Path(path)
    vf = format_for_path(p, fmt)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise SourceError(f"cannot read {str(p)!r}: {exc.strerror or exc}") from None
    if vf.header is HeaderKind.FILE:
        if len(head) < 8:
            raise FormatError(f"{str(p)!r} is too short for a {vf.extension} file: it has no 8-byte header")
        n, d = struct.unpack("<II", head)
        if d < 1 or size != vf.file_bytes(n, d):
            raise FormatError(
                f"{str(p)!r} is damaged: header says {n} x {d} ({vf.file_bytes(n, d)} bytes) but it has {size}"
            )
        return n, d
    if size == 0:
        return 0, 0
    if len(head) < 4:
        raise FormatError(f"{str(p)!r} is too short for a {vf.extension} file")
    (d,) = struct.unpack("<i", head[:4])
    if d < 1 or size % vf.record_bytes(d):
        raise FormatError(
            f"{str(p)!r} is not a valid {vf.extension} file: first record has d={d}, which does not divide "
            f"its {size} bytes into whole records"
        )
    return size // vf.record_bytes(d), d


def _records(path: Path, vf: VectorFormat) -> tuple[np.ndarray, int, int]:
    """A read-only memmap of the file as ``(n,)`` records (``.Xvecs``) or ``(n, d)`` values (``.Xbin``)."""
    n, d = vector_file_shape(path, vf)
    if n == 0:
        return np.empty((0, d), vf.dtype), n, d
    if vf.header is HeaderKind.FILE:
        return np.memmap(path, vf.dtype, "r", offset=8, shape=(n, d)), n, d
    rec = np.dtype([("d", "<i4"), ("v", vf.dtype, (d,))])
    return np.memmap(path, rec, "r", shape=(n,)), n, d


def iter_vectors(
    path: str | os.PathLike[str],
    fmt: str | VectorFormat | None = None,
    *,
    chunk_rows: int | None = None,
) -> Iterator[np.ndarray]:
    """Yield the vectors of ``path`` as ``(rows, d)`` arrays (copies in the format's dtype), ``chunk_rows`` at a time.

    ``chunk_rows`` defaults to about 16 MiB worth. Every ``.Xvecs`` record's dimension is checked.
    """
    p = Path(path)
    vf = format_for_path(p, fmt)
    data, n, d = _records(p, vf)
    step = chunk_rows or max(1, 16 * 2**20 // max(1, vf.record_bytes(d)))
    for start in range(0, n, step):
        chunk = data[start : start + step]
        if vf.header is HeaderKind.RECORD:
            bad = np.flatnonzero(chunk["d"] != d)
            if bad.size:
                raise FormatError(
                    f"{str(p)!r} is damaged: record {start + int(bad[0])} has d={int(chunk['d'][bad[0]])}, "
                    f"not {d} like the first"
                )
            chunk = chunk["v"]
        yield np.array(chunk)


def read_vectors(path: str | os.PathLike[str], fmt: str | VectorFormat | None = None) -> np.ndarray:
    """Read a whole vector file into an ``(n, d)`` array of the format's dtype (checks every record's ``d``)."""
    p = Path(path)
    vf = format_for_path(p, fmt)
    n, d = vector_file_shape(p, vf)
    out = np.empty((n, d), vf.dtype)
    row = 0
    for chunk in iter_vectors(p, vf):
        out[row : row + len(chunk)] = chunk
        row += len(chunk)
    return out
