"""``ImageIndexer``: the one buffered writer of an imgstore store.

It holds images in a preallocated buffer and commits them through :class:`~imgstore.store.StoreFile`, which owns
the format and the write protocol (see ``store.py``): a commit happens when the buffer is full and, so that a kill
loses little work at any image size, whenever ``flush_every`` seconds (default 2) have passed since the last one.
Each row's checksum is computed when it is recorded, from the pixels (a CRC the decoder worker may supply) and the
name, label and digest.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from imgstore import signals
from imgstore.errors import OptionError, StoreBusyError, StoreError, WriteError, os_cause
from imgstore.lock import WriterLock
from imgstore.outputs import check_target, remove_stale_temps
from imgstore.store.encoding import Encoding, flat_crc, parse_encoding
from imgstore.store.file import (
    FlatRows,
    Schema,
    StoreFile,
    needs_upgrade,
    upgrade,
)
from imgstore.store.format import (
    READABLE_FORMATS,
    SHAPES,
    attr_differs,
    attr_value,
    escape_name,
    format_version,
    open_read,
    pixel_crc,
    row_checksum,
    settable_in_place,
    store_version,
)
from imgstore.store.meta import KINDS, Columns, MetaValue, as_kind, meta_bytes

DEFAULT_BUFFER_BYTES = 64 * 1024 * 1024  # images are buffered in RAM up to about this much per write
DEFAULT_FLUSH_SECONDS = 2.0  # a commit at least this often while rows arrive: what a kill -9 can lose
MAX_BUFFERED_ROWS = 4096  # flat rows (encoded or of their own shapes) are committed at least every this many

__all__ = ["DEFAULT_FLUSH_SECONDS", "ImageIndexer", "auto_buffer_size", "store_version", "stored_name"]


# Stores an ImageIndexer of this process is writing (real paths): the writer lock is shared by nested steps of one
# command in a process, but two indexers on one store would overwrite each other's rows.
_OPEN: set[str] = set()


def _claim(target: Path) -> str:
    key = os.path.realpath(target)
    if key in _OPEN:
        raise StoreBusyError(f"{target} is being written by another ImageIndexer of this process: close that one first")
    _OPEN.add(key)
    return key


def _forget(key: str, lock: WriterLock) -> None:
    """Give up an indexer's claim and lock: when it is closed, or collected without being closed."""
    _OPEN.discard(key)
    lock.release()


def stored_name(name: str | bytes) -> str:
    """A row name as the caller gives it, made storable: text is kept as it is (ingest passes names already
    escaped by the walker), bytes and text with undecodable bytes (surrogate escapes from ``os``) go through
    :func:`~imgstore.store.escape_name`."""
    if isinstance(name, str):
        try:
            name.encode("utf-8")
            return name
        except UnicodeEncodeError:
            pass
    return escape_name(name)


def _check_columns(columns: Columns) -> Columns:
    """``columns`` as a tuple of ``(column, kind)``, refused when a name is empty or repeated or a kind unknown."""
    out = tuple((str(name), str(kind)) for name, kind in columns)
    names = [name for name, _ in out]
    for name, kind in out:
        if kind not in KINDS:
            raise OptionError(f"meta column {name!r} has kind {kind!r}: use {', '.join(KINDS)}")
        if not name or names.count(name) > 1:
            raise OptionError(f"invalid meta column name {name!r}: give each column a unique, non-empty name")
    return out


def auto_buffer_size(shape: tuple[int, int, int], budget: int = DEFAULT_BUFFER_BYTES) -> int:
    """How many images of ``shape`` (H, W, C) fit in ``budget`` bytes, at least 1 and at most 4096."""
    per_image = int(np.prod(shape))
    return int(max(1, min(4096, budget // max(1, per_image))))


class ImageIndexer:
    """Write images into an HDF5 store through a preallocated buffer; use it as a context manager.

    ``size`` is ``(width, height)`` in pixels (``None``: taken from the first image); ``channels`` 3 (RGB) or 1;
    ``buffer_size`` images are held in RAM between commits (0: about 64 MiB worth); ``flush_every`` seconds bound
    the time between commits while rows arrive (0: commit every row). ``labels`` / ``sha256``: whether every row
    carries a label / a 32-byte source digest (``None``: decided by the first :meth:`add`). ``overwrite=False``
    refuses an existing ``path``; with ``overwrite=True`` the new store is built aside and replaces ``path`` only
    when it is complete. ``attrs`` are extra root attributes. ``compression`` and ``compression_opts`` are passed to
    h5py's ``create_dataset`` for ``images`` (``None``, ``"gzip"``, ``"lzf"``, or an hdf5plugin filter id).
    ``clock`` gives seconds for ``flush_every`` (``time.monotonic``). Names are stored as given; bytes, and text
    with undecodable bytes, are escaped (:func:`stored_name`). ``staged=True`` builds the store under a
    temporary name and gives it ``path`` only when complete (for stores that cannot be resumed, like a merge).
    ``meta``: the store's meta columns, ``((column, kind), ...)`` with kind ``"int64"``, ``"float64"`` or ``"text"``
    (see :mod:`imgstore.store.meta`); then every row gives one value per column (``commit(..., meta=...)``).
    ``encoding``: how rows are stored, ``"none"`` (raw pixels, the default), ``"jpeg[:Q[:420|422|444]]"``,
    ``"webp[:Q]"`` or ``"png[:LEVEL]"`` (:mod:`imgstore.store.encoding`); ``variable=True``: rows keep their own
    shapes (``size`` is then only recorded, as the target they were scaled to). Either makes a flat store (format
    4): :meth:`add` encodes each image here, :meth:`add_encoded` takes rows already encoded (by decoder workers).

    The writer lock of ``path`` is taken at once (a second writer raises
    :class:`~imgstore.errors.StoreBusyError`). The file appears when its layout is known (size, labels, digests:
    at once when all are given), already readable. Leaving the ``with`` block normally commits and marks the store
    ``complete``; leaving it with an exception commits what was added and leaves ``complete`` false, so the store
    is readable and resumable. ``close()`` may be called twice. The indexer never prints.
    :meth:`ImageIndexer.reopen` continues an existing store (append or resume).
    """

    _finalizer: weakref.finalize[Any, Any] | None = None  # releases the lock of an indexer collected unclosed
    _meta_columns: Columns = ()

    def __init__(
        self,
        path: str | os.PathLike[str],
        size: tuple[int, int] | None = None,
        channels: int = 3,
        buffer_size: int = 0,
        *,
        overwrite: bool = False,
        attrs: Mapping[str, Any] | None = None,
        compression: Any = None,
        compression_opts: Any = None,
        labels: bool | None = None,
        sha256: bool | None = None,
        flush_every: float = DEFAULT_FLUSH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        staged: bool = False,
        meta: Columns = (),
        encoding: str | Encoding = "none",
        variable: bool = False,
    ) -> None:
        if channels not in (1, 3):
            raise OptionError(f"invalid channels {channels!r}: use 3 (RGB) or 1 (grayscale)")
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise OptionError(f"invalid size {size!r}: give (width, height) in pixels")
        self._init_state(Path(path), buffer_size, flush_every, clock)
        self._size: tuple[int, int] | None = (int(size[0]), int(size[1])) if size is not None else None
        self._channels = channels
        self._labels_on, self._hashes_on = labels, sha256
        self._compression, self._compression_opts = compression, compression_opts
        self._attrs = dict(attrs or {})
        self._meta_columns = _check_columns(meta)
        self._encoding = parse_encoding(encoding)
        self._variable = bool(variable)
        self._take(self.path)
        try:
            check_target(self.path, overwrite)
            remove_stale_temps(self.path)
            # An existing store is replaced only once the new one is complete (built as OUT.partial, which
            # --resume continues); ``staged`` builds even a new one under a temporary name.
            self._stage = "partial" if self.path.exists() else "temp" if staged else "link"
            self._open_if_known()
        except BaseException:
            self._release()
            raise

    def _init_state(self, path: Path, buffer_size: int, flush_every: float, clock: Callable[[], float]) -> None:
        if not isinstance(buffer_size, int) or buffer_size < 0:
            raise OptionError(f"invalid buffer size {buffer_size!r}: give a number of images, or 0 for auto")
        if not flush_every >= 0:
            raise OptionError(f"invalid flush interval {flush_every!r}: give seconds, 0 or more")
        self.path = path
        self._buffer_size = buffer_size
        self._flush_every = float(flush_every)
        self._clock = clock
        self._last_commit = clock()
        self._store: StoreFile | None = None
        self._closed = False
        self._buf: np.ndarray | None = None
        self._fill = 0  # rows in the buffer
        self._names: list[str] = []
        self._labels: list[int] = []
        self._hashes: list[bytes] = []
        self._sums: list[int] = []
        self._meta_columns = ()
        self._meta: list[list[MetaValue]] = []  # buffered values, one list per meta column
        self._skipped: list[tuple[str, str]] = []
        self._encoding = parse_encoding(None)
        self._variable = False
        self._rows: list[bytes | memoryview | np.ndarray] = []  # flat rows buffered: their bytes
        self._row_shapes: list[tuple[int, int, int]] = []
        self._row_bytes = 0
        self._stage = "link"
        self._claim = ""
        self._finalizer = None

    def _take(self, target: Path) -> None:
        """Become ``target``'s one writer: its writer lock (other processes) and its claim (this process)."""
        self._lock = WriterLock(target).acquire()
        try:
            self._claim = _claim(target)
            self._finalizer = weakref.finalize(self, _forget, self._claim, self._lock)
        except BaseException:
            self._lock.release()
            raise

    @classmethod
    def reopen(
        cls,
        path: str | os.PathLike[str],
        buffer_size: int = 0,
        *,
        attrs: Mapping[str, Any] | None = None,
        publish_to: str | os.PathLike[str] | None = None,
        flush_every: float = DEFAULT_FLUSH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> ImageIndexer:
        """Open an existing store to add rows after its committed ones (``--append`` and ``--resume``).

        Rows past ``count`` (an interrupted write's leftovers) are dropped and, when the store was not complete,
        its text columns are rewritten from the journal. ``complete`` is false until this indexer closes cleanly.
        ``attrs`` are set on the root. A store in an older layout, or whose ``attrs`` cannot change in place (a
        longer ``class_names``), is first copied into the current one with them (the copy replaces it when whole).
        ``publish_to``: the store is a partial file built aside; rename it there when finished.
        """
        self = cls.__new__(cls)  # an alternative constructor: the state is set up as __init__ does, then reopened
        self._init_state(Path(path), buffer_size, flush_every, clock)
        target = Path(publish_to) if publish_to is not None else self.path
        self._take(target)
        try:
            remove_stale_temps(target)
            try:
                with open_read(self.path) as f:
                    if "imgstore_format" not in f.attrs:
                        raise StoreError(f"{self.path} is not an imgstore store: it cannot be appended to")
                    version = format_version(f)
                    if version not in READABLE_FORMATS:
                        raise StoreError(
                            f"{self.path} is in store format {attr_value(f.attrs['imgstore_format'])!r}, which this imgstore does "
                            f"not write (it continues formats {', '.join(map(str, READABLE_FORMATS))}): upgrade imgstore"
                        )
                    changes = {k: v for k, v in (attrs or {}).items() if attr_differs(f, k, v)}
                    in_place = {k: v for k, v in changes.items() if settable_in_place(f, k, v)}
                    # A change HDF5 cannot make in place in SWMR mode (more class names) is made in a copy.
                    old = needs_upgrade(f) or len(in_place) < len(changes)
            except FileNotFoundError:
                raise StoreError(f"{self.path} does not exist: there is nothing to append to or resume") from None
            except (OSError, RuntimeError, KeyError, ValueError) as exc:
                raise StoreError(
                    f"{self.path} cannot be opened as a store: {os_cause(exc)} (imgstore verify {self.path} says more)"
                ) from None
            if old:
                upgrade(self.path, attrs={k: v for k, v in changes.items() if k not in in_place})
            with signals.deferred():
                self._store = StoreFile.reopen(self.path, publish_to=target if publish_to else None, attrs=in_place)
            schema = self._store.schema
            self._size, self._channels = schema.size, schema.channels
            self._encoding, self._variable = parse_encoding(schema.encoding), schema.variable
            if self.flat and not self._variable and self._size is None and self._store.count:
                # A fixed-shape flat store created before its first row records no size: its rows have the first's.
                h, w = (int(v) for v in self._store.file[SHAPES][0][:2])
                self._size = (w, h)
            self._labels_on, self._hashes_on = schema.labels, schema.sha256
            self._meta_columns = schema.meta
            self._alloc_buffer()
        except BaseException:
            self._release()
            raise
        return self

    # -- context manager ---------------------------------------------------------------------------------------
    def __enter__(self) -> ImageIndexer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- properties -------------------------------------------------------------------------------------------
    @property
    def count(self) -> int:
        """Images added so far (committed or still buffered)."""
        return self.committed + self._fill

    @property
    def committed(self) -> int:
        """Images on disk and counted in the ``count`` attribute."""
        return self._store.count if self._store is not None else 0

    @property
    def shape(self) -> tuple[int, int, int] | None:
        """``(H, W, C)`` of one stored image, or None until known (and always for rows of their own shapes)."""
        if self._size is None or self._variable:
            return None
        return (self._size[1], self._size[0], self._channels)

    @property
    def encoding(self) -> Encoding:
        """How rows are stored (:class:`~imgstore.store.encoding.Encoding`; ``none``: raw pixels)."""
        return self._encoding

    @property
    def flat(self) -> bool:
        """True when rows are stored as bytes (format 4): encoded, or of their own shapes."""
        return self._variable or not self._encoding.raw

    @property
    def meta_columns(self) -> Columns:
        """The store's meta columns, ``((column, kind), ...)``; () when it has none."""
        return self._meta_columns

    @property
    def closed(self) -> bool:
        """True once :meth:`close` or :meth:`abort` ran."""
        return self._closed

    @property
    def file(self) -> h5py.File | None:
        """The open HDF5 file, or None before its layout is known and after closing."""
        return self._store.file if self._store is not None and not self._closed else None

    # -- writing ----------------------------------------------------------------------------------------------
    def reserve(self) -> np.ndarray:
        """The next buffer row, ``(H, W, C)`` uint8, to fill in place; :meth:`commit` then records it.

        Lets a decoder write straight into the buffer with no intermediate copy. Needs a known size, and a store of
        raw rows of one shape (a flat store takes :meth:`add` or :meth:`add_encoded`).
        """
        if self._buf is not None and not self._closed:  # the per-image path: nothing else to check
            return self._buf[self._fill]
        self._check_open()
        if self.flat:
            raise OptionError(f"{self.path} stores {self._encoding} rows{' of their own shapes' if self._variable else ''}: use add() or add_encoded()")
        if self._size is None:
            raise OptionError("the image size is unknown: give size=(width, height) or add an image first")
        self._alloc_buffer()
        assert self._buf is not None
        return self._buf[self._fill]

    def commit(
        self,
        name: str | bytes,
        *,
        label: int | None = None,
        sha256: bytes | None = None,
        pixels_crc: int | None = None,
        meta: Sequence[MetaValue | None] = (),
    ) -> None:
        """Record the row filled through :meth:`reserve` under ``name`` (with its label and file digest).

        ``pixels_crc``: ``zlib.crc32`` of the row's pixels when the caller has it (a decoder worker computes it
        while the pixels are in its cache); otherwise it is computed here. ``meta``: one value per meta column (None:
        empty, NaN in a float column); a store without meta columns takes none.
        """
        self._check_open()
        if self.flat:
            raise OptionError(f"{self.path} is a flat store: use add() or add_encoded(), not reserve()/commit()")
        self._check_layout(name, label, sha256)
        values = self._meta_values(name, meta)
        assert self._buf is not None
        crc = pixel_crc(self._buf[self._fill]) if pixels_crc is None else pixels_crc
        self._record(name, crc, label, sha256, values)
        if self._fill == len(self._buf) or self._due():
            self.flush()

    def add_encoded(
        self,
        name: str | bytes,
        data: bytes | memoryview | np.ndarray,
        shape: tuple[int, int, int],
        *,
        label: int | None = None,
        sha256: bytes | None = None,
        crc: int | None = None,
        meta: Sequence[MetaValue | None] = (),
    ) -> None:
        """Append one row of a flat store as stored bytes: ``data`` is the image of ``shape`` (H, W, C) already in
        the store's encoding (raw C-order pixels for ``none``), as a decoder worker makes it. ``crc``:
        :func:`~imgstore.store.encoding.flat_crc` of ``(shape, data)`` when the caller has it. The bytes are
        copied when ``data`` is a view (a worker's shared-memory slot is reused)."""
        self._check_open()
        if not self.flat:
            raise OptionError(f"{self.path} stores raw rows of one shape: use add() or reserve()/commit()")
        shape = (int(shape[0]), int(shape[1]), int(shape[2]))
        if min(shape) < 1:
            raise OptionError(f"image {name!r} has shape {shape}: a row needs at least one pixel (H, W, C)")
        if shape[2] != self._channels:
            raise OptionError(f"image {name!r} has shape {shape}: the store holds {self._channels}-channel rows (H, W, C)")
        if not self._variable:
            if self._size is None:
                self._size = (shape[1], shape[0])
            if shape != self.shape:
                raise OptionError(f"image {name!r} has shape {shape}, the store holds {self.shape} (H, W, C)")
        self._check_layout(name, label, sha256)
        values = self._meta_values(name, meta)
        if isinstance(data, np.ndarray):
            data = np.ascontiguousarray(data).data
        row = data if isinstance(data, bytes) else bytes(data.cast("B"))
        need = shape[0] * shape[1] * shape[2]
        if self._encoding.raw and len(row) != need:
            raise OptionError(f"image {name!r}: {len(row)} bytes of raw pixels for shape {shape}, which needs {need} bytes")
        if not row:
            raise OptionError(f"image {name!r}: its {self._encoding.name} row has no bytes")
        self._record(name, flat_crc(shape, row) if crc is None else crc, label, sha256, values)
        self._rows.append(row)
        self._row_shapes.append(shape)
        self._row_bytes += len(row)
        if self._row_bytes >= DEFAULT_BUFFER_BYTES or self._fill >= (self._buffer_size or MAX_BUFFERED_ROWS) or self._due():
            self.flush()

    def _check_layout(self, name: str | bytes, label: int | None, sha256: bytes | None) -> None:
        if self._labels_on is None or self._hashes_on is None:
            self._labels_on = label is not None if self._labels_on is None else self._labels_on
            self._hashes_on = sha256 is not None if self._hashes_on is None else self._hashes_on
            self._open_if_known()  # the layout is known now: the store appears
        if (label is not None) != self._labels_on:
            raise OptionError(f"image {name!r}: give a label for every image or for none")
        if (sha256 is not None) != self._hashes_on:
            raise OptionError(f"image {name!r}: give a sha256 for every image or for none")
        if sha256 is not None and len(sha256) != 32:
            raise OptionError(f"image {name!r}: sha256 must be the 32-byte digest, got {len(sha256)} bytes")

    def _record(
        self, name: str | bytes, crc: int, label: int | None, sha256: bytes | None, values: Sequence[MetaValue]
    ) -> None:
        """Buffer a row's name, label, digest, meta values and checksum (its pixels are buffered by the caller)."""
        stored = stored_name(name)
        self._sums.append(row_checksum(crc, stored, label, sha256, meta_bytes(values, self._meta_columns) if values else b""))
        self._names.append(stored)
        if label is not None:
            self._labels.append(int(label))
        if sha256 is not None:
            self._hashes.append(bytes(sha256))
        for column, value in zip(self._meta, values):
            column.append(value)
        self._fill += 1

    def add(
        self,
        name: str | bytes,
        image: np.ndarray,
        *,
        label: int | None = None,
        sha256: bytes | None = None,
        meta: Sequence[MetaValue | None] = (),
    ) -> None:
        """Append one image: uint8 ``(H, W, C)`` (or ``(H, W)`` when channels is 1) named ``name``, with one value
        per meta column in ``meta``."""
        self._check_open()
        arr = np.asarray(image)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.dtype != np.uint8:
            raise OptionError(f"image {name!r} is {arr.dtype}: ImageIndexer stores uint8 pixels (0-255)")
        if self.flat:
            if arr.ndim != 3:
                raise OptionError(f"image {name!r} has shape {arr.shape}: expected (H, W, C)")
            shape = (int(arr.shape[0]), int(arr.shape[1]), int(arr.shape[2]))
            if shape[2] == self._channels and min(shape) >= 1:  # else add_encoded says what is wrong
                arr = self._encoding.codec.encode(arr, self._encoding.options)  # type: ignore[assignment]
            self.add_encoded(name, arr, shape, label=label, sha256=sha256, meta=meta)
            return
        if self._size is None:
            if arr.ndim != 3:
                raise OptionError(f"image {name!r} has shape {arr.shape}: expected (H, W, C)")
            self._size = (arr.shape[1], arr.shape[0])
        if arr.shape != self.shape:
            raise OptionError(f"image {name!r} has shape {arr.shape}, the store holds {self.shape} (H, W, C)")
        self.reserve()[...] = arr
        self.commit(name, label=label, sha256=sha256, meta=meta)

    def skip(self, name: str | bytes, reason: str) -> None:
        """Record a file that could not be ingested, with a one-line reason."""
        self._check_open()
        self._skipped.append((stored_name(name), " ".join(str(reason).split())))
        if self._due():
            self.flush()

    def flush_if_due(self) -> None:
        """Commit what is buffered when ``flush_every`` seconds have passed since the last commit (a caller
        waiting on slow input calls this now and then, so buffered rows reach the disk anyway)."""
        if not self._closed and self._due():
            self.flush()

    def flush(self) -> None:
        """Write buffered rows and skipped records, then raise ``count``: one commit. Safe to call at any time."""
        self._check_open()
        if not self._fill and not self._skipped:
            return
        with signals.deferred():  # a signal never lands between the rows and the counts
            if self._store is None:
                self._open_if_known(force=bool(self._fill))
                if self._store is None:
                    return  # only skipped records so far, and the layout is not known yet
            self._write_buffered()

    def close(self) -> None:
        """Commit, mark the store complete and close the file (renaming a store built aside over the old one).

        Safe to call twice.
        """
        if self._closed:
            return
        try:
            with signals.deferred():
                if self._store is None:
                    self._open_if_known(force=True)
                self.flush()
                assert self._store is not None
                self._store.finish()
                self._closed = True
        finally:
            self._release()

    def abort(self) -> None:
        """Commit what was added, leave ``complete`` false, close. For error paths; safe to call twice."""
        if self._closed:
            return
        try:
            with signals.deferred():
                if self._store is not None and not self._store.failed:
                    self.flush()
        finally:
            self._release()

    # -- internals --------------------------------------------------------------------------------------------
    def _meta_values(self, name: str | bytes, meta: Sequence[MetaValue | None]) -> list[MetaValue]:
        """A row's meta values checked against the columns (one each, of the column's kind)."""
        if not meta and not self._meta_columns and not self._meta:  # the usual store: no meta columns
            return []
        if len(meta) != len(self._meta_columns):
            raise OptionError(
                f"image {name!r}: give one meta value per meta column ({len(self._meta_columns)}), got {len(meta)}"
            )
        if len(self._meta) != len(self._meta_columns):
            self._meta = [[] for _ in self._meta_columns]
        try:
            return [as_kind(value, kind) for value, (_, kind) in zip(meta, self._meta_columns)]
        except ValueError as exc:
            raise OptionError(f"image {name!r}: a meta value does not fit its column: {exc}") from None

    def _due(self) -> bool:
        return self._store is not None and self._clock() - self._last_commit >= self._flush_every

    def _write_buffered(self) -> None:
        store = self._store
        assert store is not None
        k = self._fill
        if k:
            rows: np.ndarray | FlatRows
            if self.flat:
                rows = FlatRows.pack(self._rows, self._row_shapes)
            else:
                assert self._buf is not None
                rows = self._buf[:k]
            store.write_rows(
                rows, self._names, self._labels if self._labels_on else None,
                self._hashes if self._hashes_on else None, self._sums, self._meta,
            )  # fmt: skip
        if self._skipped:
            store.write_skipped([n for n, _ in self._skipped], [r for _, r in self._skipped])
        store.commit()
        self._fill = 0
        self._rows.clear()
        self._row_shapes.clear()
        self._row_bytes = 0
        self._names.clear()
        self._labels.clear()
        self._hashes.clear()
        self._sums.clear()
        for column in self._meta:
            column.clear()
        self._skipped.clear()
        self._last_commit = self._clock()

    def _open_if_known(self, force: bool = False) -> None:
        """Create the store once its layout is known (``force``: now, taking what is unknown as absent)."""
        if self._store is not None:
            return
        size_known = self._size is not None or self._variable
        if not force and (not size_known or self._labels_on is None or self._hashes_on is None):
            return
        schema = Schema(
            self._size, self._channels, bool(self._labels_on), bool(self._hashes_on),
            self._compression, self._compression_opts, self._meta_columns, str(self._encoding), self._variable,
        )  # fmt: skip
        self._labels_on, self._hashes_on = schema.labels, schema.sha256
        with signals.deferred():
            self._store = StoreFile.create(self.path, schema, self._attrs, stage=self._stage)
        self._lock.refresh()  # the file exists now: its other names (hard links) are locked too
        self._last_commit = self._clock()
        if self._size is not None:
            self._alloc_buffer()

    def _alloc_buffer(self) -> None:
        shape = self.shape
        if shape is None or self._buf is not None or self.flat:
            return
        n = self._buffer_size or auto_buffer_size(shape)
        self._buf = np.empty((n, *shape), dtype=np.uint8)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.path} is closed: the ImageIndexer cannot be used after close()")

    def _release(self) -> None:
        self._closed = True
        try:
            if self._store is not None and not self._store.closed:
                self._store.close()
        except (OSError, WriteError):
            pass  # the write that failed has been reported; the store keeps its last commit
        finally:
            if self._finalizer is not None:
                self._finalizer.detach()
            _forget(self._claim, self._lock)
