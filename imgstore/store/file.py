"""The write protocol: how a store is created, reopened, committed and finished.

The write protocol (:class:`StoreFile`), which makes these states the only ones a path can be in -- nothing, the
previous store exactly as it was, or a store every reader opens holding every row committed so far:

- A new store is built under a temporary name (``.NAME.tmp-XXXXXXXX``): every dataset and attribute created, SWMR
  writing started, flushed; only then does the file get OUT's name (a hard link, which never replaces anything).
  In SWMR mode HDF5 orders its metadata writes children before parents, so the file on disk is consistent
  whenever the writer dies, and it stays in that mode until closed.
- ``--overwrite`` builds the new store under ``NAME.partial`` and renames it over OUT only when complete.
- An existing store is reopened directly in SWMR-write mode (``H5F_ACC_SWMR_WRITE`` at open, status flags of a
  dead writer cleared in the same call), so it is never open for plain writing, the one state in which a killed
  writer leaves a file no reader can open. Its first change is ``complete`` = false.
- A commit writes the rows, flushes, and only then raises ``count`` and ``skipped_count`` (and flushes again).
- One writer at a time: every writer holds the output's :class:`~imgstore.lock.WriterLock`.

``scripts/crash_test.py`` tries this with kills, signals, a full disk and second writers at every phase.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import errno
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from imgstore.errors import OutputExistsError, StoreError, WriteError, is_os_failure, os_cause
from imgstore.outputs import temp_path, temp_target
from imgstore.store.encoding import flat_crc, parse_encoding
from imgstore.store.format import (
    CHECKSUMS,
    ENCODING,
    FLAT_CHUNK,
    IMAGE_DATA,
    IMAGE_ENDS,
    IMAGES,
    JOURNAL,
    LABELS,
    LIBVER,
    NAMES,
    ROW_DATASETS,
    RUN_START,
    SHA256,
    SHAPES,
    SKIPPED_NAMES,
    SKIPPED_REASONS,
    SPACE_MARGIN,
    STR,
    TEXT_COLUMNS,
    VARIABLE,
    TextJournal,
    format_for,
    format_version,
    grow,
    has_journal,
    open_read,
    open_write,
    partial_path,
    read_text_column,
    row_checksums,
    set_attr,
    store_version,
    upgrade_v1_name,
)
from imgstore.store.h5 import (
    end_of_allocation,
)
from imgstore.store.meta import (
    TEXT,
    Columns,
    MetaValue,
    column_array,
    columns_of,
    create_meta,
    meta_path,
    read_meta,
    rows_meta_bytes,
    text_columns,
)

UPGRADE_BATCH_BYTES = 16 << 20  # rows' bytes an upgrade (a copy into the current layout) reads and writes at a time

# ------------------------------------------------------------------------------------------------ the layout


@dataclass(frozen=True)
class Schema:
    """What a store's datasets hold, fixed when it is created: SWMR writing cannot create datasets later."""

    size: tuple[int, int] | None  # (width, height) in pixels; None: no image yet, no images dataset
    channels: int  # 3 (RGB) or 1
    labels: bool  # a ``labels`` dataset
    sha256: bool  # a ``sha256`` dataset (source file digests)
    compression: Any = None  # for ``images``: None, "gzip", "lzf" or an hdf5plugin filter id
    compression_opts: Any = None
    meta: Columns = ()  # meta columns, ((column, kind), ...): see imgstore.store.meta
    encoding: str = "none"  # the rows' encoding, as parse_encoding gives it ("jpeg:90:420"): see store.encoding
    variable: bool = False  # rows have their own shapes (a native-aspect resize mode); size is then the target

    @property
    def flat(self) -> bool:
        """True when rows are stored as bytes (format 4): encoded, or of their own shapes."""
        return self.variable or self.encoding != "none"

    @property
    def text_columns(self) -> tuple[str, ...]:
        """The journaled text columns: the names, the skipped lists and the text meta columns."""
        return (*TEXT_COLUMNS, *text_columns(self.meta))

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one stored image."""
        if self.size is None:
            raise StoreError("the image size is unknown: give size=(width, height) or add an image first")
        return (self.size[1], self.size[0], self.channels)


@dataclass(frozen=True)
class FlatRows:
    """A batch of flat rows (format 4) to write: their bytes one after another, where each ends, and their shapes."""

    data: np.ndarray  # uint8 (total bytes,)
    ends: np.ndarray  # int64 (k,): row j is data[ends[j-1]:ends[j]] (from 0 for row 0)
    shapes: np.ndarray  # uint32 (k, 3): (H, W, C) per row

    @classmethod
    def pack(cls, rows: Sequence[bytes | memoryview | np.ndarray], shapes: Sequence[Sequence[int]]) -> FlatRows:
        """Rows given one by one (bytes, or uint8 arrays whose C-order bytes are the row) as one batch."""
        blobs = [r.reshape(-1).view(np.uint8) if isinstance(r, np.ndarray) else np.frombuffer(r, np.uint8) for r in rows]
        ends = np.cumsum([b.size for b in blobs], dtype=np.int64) if blobs else np.zeros(0, np.int64)
        data = np.concatenate(blobs) if blobs else np.zeros(0, np.uint8)
        return cls(data, ends, np.asarray(shapes, np.uint32).reshape(len(blobs), 3))

    def __len__(self) -> int:
        return int(self.ends.shape[0])

    def row(self, j: int) -> np.ndarray:
        """Row ``j``'s bytes (a view)."""
        return self.data[int(self.ends[j - 1]) if j else 0 : int(self.ends[j])]


def flat_spans(before: int, ends: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive flat rows grouped to read about ``budget`` bytes at a time: ``[lo, hi)`` indices into ``ends``
    (increasing byte ends; the first row starts at ``before``), each group at least one row."""
    spans, lo, n = [], 0, len(ends)
    while lo < n:
        first = int(ends[lo - 1]) if lo else before
        hi = min(n, max(lo + 1, int(np.searchsorted(ends, first + budget, side="right"))))
        spans.append((lo, hi))
        lo = hi
    return spans


def read_flat(f: h5py.File, a: int, b: int) -> FlatRows:
    """Rows ``a:b`` of a flat store as :class:`FlatRows` (one read of their bytes; ends relative to row ``a``)."""
    ends = f[IMAGE_ENDS][max(0, a - 1) : b].astype(np.int64)
    start = int(ends[0]) if a else 0
    ends = ends[1:] if a else ends
    if ends.size and (int(ends[0]) < start or (np.diff(ends) < 0).any() or int(ends[-1]) > f[IMAGE_DATA].shape[0]):
        raise ValueError(f"rows {a}-{b - 1}: their ends in {IMAGE_ENDS} are not increasing within {IMAGE_DATA}")
    data = f[IMAGE_DATA][start : int(ends[-1])] if ends.size else np.zeros(0, np.uint8)
    return FlatRows(data, ends - start, f[SHAPES][a:b].astype(np.uint32))


def schema_of(f: h5py.File) -> Schema | None:
    """The schema of an open store, or None when it has no ``images`` dataset (its size was never known)."""
    if isinstance(f.get(IMAGE_DATA), h5py.Dataset):
        compression, opts = compression_of(f[IMAGE_DATA])
        size = f.attrs.get("size")
        return Schema(
            (int(size[0]), int(size[1])) if size is not None and len(size) == 2 else None,
            int(f.attrs.get("channels", 3)), LABELS in f, SHA256 in f, compression, opts, columns_of(f),
            str(parse_encoding(_text(f.attrs.get(ENCODING, "none")))), bool(f.attrs.get(VARIABLE, False)),
        )  # fmt: skip
    images = f.get(IMAGES)
    if not isinstance(images, h5py.Dataset) or images.ndim != 4:
        return None
    h, w, c = (int(v) for v in images.shape[1:])
    compression, opts = compression_of(images)
    return Schema((w, h), c, LABELS in f, SHA256 in f, compression, opts, columns_of(f))


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def compression_of(ds: h5py.Dataset) -> tuple[Any, Any]:
    """``(compression, compression_opts)`` to create a dataset filtered like ``ds`` (h5py names or a plugin id)."""
    if ds.compression is not None:
        return ds.compression, ds.compression_opts
    plist = ds.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        code, _flags, values, _name = plist.get_filter(i)
        if code >= 256:  # a registered plugin filter (hdf5plugin); ids below 256 are HDF5's own
            return code, tuple(values)
    return None, None


def _create_layout(f: h5py.File, schema: Schema, attrs: Mapping[str, Any]) -> None:
    """Every dataset and root attribute of a new, empty store (before SWMR writing starts)."""
    root = f.attrs
    root["imgstore_format"] = format_for(bool(schema.meta), schema.flat)
    root["imgstore_version"] = store_version()
    root["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    root["count"] = 0
    root["skipped_count"] = 0
    root["complete"] = False
    root[RUN_START] = np.zeros(2, np.int64)
    root["channels"] = schema.channels
    if schema.size is not None:
        root["size"] = list(schema.size)
    if schema.flat:
        root[ENCODING] = schema.encoding
        root[VARIABLE] = schema.variable
    for key, value in attrs.items():
        root[key] = value
    if schema.flat:
        f.create_dataset(IMAGE_DATA, shape=(0,), maxshape=(None,), chunks=(FLAT_CHUNK,), dtype=np.uint8,
                         compression=schema.compression, compression_opts=schema.compression_opts)  # fmt: skip
        f.create_dataset(IMAGE_ENDS, shape=(0,), maxshape=(None,), chunks=(4096,), dtype=np.int64)
        f.create_dataset(SHAPES, shape=(0, 3), maxshape=(None, 3), chunks=(4096, 3), dtype=np.uint32)
    elif schema.size is not None:
        shape = schema.shape
        f.create_dataset(IMAGES, shape=(0, *shape), maxshape=(None, *shape), chunks=(1, *shape), dtype=np.uint8,
                         compression=schema.compression, compression_opts=schema.compression_opts)  # fmt: skip
    f.create_dataset(NAMES, shape=(0,), maxshape=(None,), chunks=(1024,), dtype=STR)
    f.create_dataset(CHECKSUMS, shape=(0,), maxshape=(None,), chunks=(4096,), dtype=np.uint32)
    if schema.labels:
        f.create_dataset(LABELS, shape=(0,), maxshape=(None,), chunks=(4096,), dtype=np.int64)
    if schema.sha256:
        f.create_dataset(SHA256, shape=(0, 32), maxshape=(None, 32), chunks=(1024, 32), dtype=np.uint8)
    for key in (SKIPPED_NAMES, SKIPPED_REASONS):
        f.create_dataset(key, shape=(0,), maxshape=(None,), chunks=(256,), dtype=STR)
    create_meta(f, schema.meta, STR)
    group = f.create_group(JOURNAL)
    for key in schema.text_columns:
        TextJournal.create(group, key)


def needs_upgrade(f: h5py.File) -> bool:
    """True when a writer must first copy the store into the current layout (a format-1 store, or one created
    before its image size was known): SWMR writing cannot create the datasets it lacks."""
    schema = schema_of(f)
    if format_version(f) < 2 or schema is None:
        return True
    required = (NAMES, CHECKSUMS, SKIPPED_NAMES, SKIPPED_REASONS)
    return any(key not in f for key in required) or not all(has_journal(f, key) for key in schema.text_columns)


# ---------------------------------------------------------------------------------------------- the protocol


class StoreFile:
    """A store open for writing, in SWMR mode from its first byte to its close; see the module docstring.

    Make one with :meth:`create` or :meth:`reopen` (holding the output's writer lock). :meth:`write_rows` and
    :meth:`write_skipped` put rows on disk past the committed counts, where readers do not look; :meth:`commit`
    flushes them and then raises the counts; :meth:`finish` marks the store complete, closes it and, for a store
    built aside, renames it over its final path; :meth:`close` leaves it incomplete. Operating-system errors (a
    full disk, a removed file) become :class:`~imgstore.errors.WriteError` naming the path and the cause; the
    store on disk then holds what the last commit counted.
    """

    def __init__(self, f: h5py.File, path: Path, schema: Schema, *, publish_to: Path | None = None) -> None:
        self.file = f
        self.path = path  # the file being written
        self.publish_to = publish_to  # renamed to this path by finish() (a store built aside), or None
        self.schema = schema
        self.count = int(f.attrs.get("count", 0))
        self.skipped_count = int(f.attrs.get("skipped_count", 0))
        self._journals = {key: TextJournal(f[JOURNAL], key) for key in schema.text_columns}
        # The meta columns are per-row datasets like the others: written with the rows, trimmed with them.
        self._row_keys = (*ROW_DATASETS, *(meta_path(name) for name, _ in schema.meta))
        # The datasets stay open while the store is written: h5py closes a dataset when its last Python handle
        # goes, and HDF5 then writes its cached chunks -- inside a destructor, where a failed write cannot be seen.
        self._datasets = {
            key: f[key] for key in (*self._row_keys, IMAGE_DATA, SKIPPED_NAMES, SKIPPED_REASONS) if key in f
        }
        self.data_end = self._data_end(self.count)  # bytes of image_data the committed rows use (flat stores)
        self._failed = False  # a write failed or could not be started: no more writes
        self._sealed = False  # a write failed half-way: HDF5 must not touch the file again (see _seal)
        self._reserved = 0  # the file's bytes known to be allocated on disk
        self._pending_rows = 0  # written past the committed counts, counted by the next commit()
        self._pending_skipped = 0
        self._pending_data = 0  # bytes of image_data written past data_end, counted by the next commit()

    # -- opening ----------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, out: Path, schema: Schema, attrs: Mapping[str, Any], *, stage: str = "link") -> StoreFile:
        """A new, empty store for ``out``, in SWMR mode and flushed before it carries a name readers look at.

        ``stage="link"``: built under a temporary name and linked to ``out`` (which must not exist) at once, so
        readers follow the rows as they are committed. ``"partial"`` (``--overwrite`` of an existing ``out``):
        built as ``out``'s partial file, which a later ``--resume`` can continue; :meth:`finish` renames it over
        ``out``, untouched until then. ``"temp"``: built under a temporary name that :meth:`finish` renames to
        ``out`` (a store that appears complete or not at all, e.g. a merge).
        """
        if stage == "temp":
            return cls.build(temp_path(out), schema, attrs, publish_to=out)
        if stage == "partial":
            # Built under a temporary name too: the partial file, which --resume continues, always opens.
            partial = partial_path(out)
            work = temp_path(out)
            store = cls.build(work, schema, attrs, publish_to=out)
            try:
                os.replace(work, partial)  # replaces a previous --overwrite's leftover: this run starts again
            except OSError as exc:
                store.discard()
                raise WriteError(f"cannot create {partial}: {os_cause(exc)}") from None
            store.path = partial
            return store
        if stage != "link":
            raise ValueError(f"unknown stage {stage!r}: link, partial or temp")
        work = temp_path(out)
        store = cls.build(work, schema, attrs)
        try:
            _link_new(work, out)
        except BaseException:
            store.discard()
            raise
        store.path = out
        return store

    @classmethod
    def build(
        cls, work: Path, schema: Schema, attrs: Mapping[str, Any], *, publish_to: Path | None = None
    ) -> StoreFile:
        """Create the file ``work`` with the whole layout, start SWMR writing and flush; ``publish_to`` as in
        :meth:`create`. A failure removes ``work`` again."""
        try:
            f = h5py.File(work, "w", libver=LIBVER)
        except Exception as exc:
            with contextlib.suppress(OSError):
                os.unlink(work)
            if not is_os_failure(exc):
                raise
            where = publish_to or temp_target(work)  # the output, not our temporary name
            raise WriteError(f"cannot create {where}: {os_cause(exc)} (nothing was written)") from None
        try:
            _create_layout(f, schema, attrs)
            f.swmr_mode = True  # from here on HDF5 orders its metadata writes: the file is always consistent
            f.flush()
        except BaseException as exc:
            failed = is_os_failure(exc)  # h5py raises some HDF5 write failures as RuntimeError
            if failed:
                _seal(f, work)
            _close_quietly(f)
            with contextlib.suppress(OSError):
                os.unlink(work)
            if failed:
                where = publish_to or temp_target(work)
                raise WriteError(f"cannot create {where}: {os_cause(exc)} (nothing was written)") from None
            raise
        return cls(f, work, schema, publish_to=publish_to)

    @classmethod
    def reopen(cls, path: Path, *, publish_to: Path | None = None, attrs: Mapping[str, Any] | None = None) -> StoreFile:
        """Continue the store at ``path``: SWMR-write from the open, ``complete`` false first, rows past the
        committed counts dropped, and (an interrupted store) its text columns rewritten from the journal.

        The store must be in the current layout (see :func:`needs_upgrade`). ``publish_to``: rename the store there
        when it is finished (an interrupted ``--overwrite``'s partial file). ``attrs`` are set on the root; each must
        be writable in place (:func:`settable_in_place`).
        """
        try:
            f = open_write(path)
        except FileNotFoundError:
            raise StoreError(f"{path} does not exist: there is nothing to continue") from None
        except OSError as exc:
            if "already open for read-only" in str(exc):
                raise StoreError(
                    f"{path} is open for reading in this process (imgstore.open or h5py.File): close it first"
                ) from None
            raise StoreError(f"cannot open {path} for writing: {os_cause(exc)}") from None
        try:
            schema = schema_of(f)
            if schema is None or needs_upgrade(f):
                raise StoreError(f"{path} is not in the current store layout: it must be upgraded first")
            was_complete = bool(f.attrs.get("complete", False))
            store = cls(f, path, schema, publish_to=publish_to)
        except BaseException:
            _close_quietly(f)
            raise
        try:
            store._check_journals()  # before the first change: a refused store stays exactly as it was
            # Rewriting the text columns takes about twice their journal's bytes.
            rebuild = 0 if was_complete else sum(int(f[JOURNAL][f"{k}.bytes"].shape[0]) for k in schema.text_columns)
            with store._os_errors("continue", 2 * rebuild):
                set_attr(f, "complete", False)  # the first change: readers know rows may follow
                f.flush()
                store._trim(rebuild_strings=not was_complete)
                for key, value in (attrs or {}).items():
                    set_attr(f, key, value)
                f.flush()
        except BaseException:
            store.close()
            raise
        return store

    def _data_end(self, rows: int) -> int:
        """Where row ``rows - 1`` ends in ``image_data`` (0 for a store with no flat rows)."""
        if not rows or IMAGE_ENDS not in self._datasets:
            return 0
        ends = self._datasets[IMAGE_ENDS]
        return int(ends[rows - 1]) if ends.shape[0] >= rows else -1  # -1: damaged, refused by _check_journals

    # -- writing ----------------------------------------------------------------------------------------------
    def write_rows(
        self,
        images: np.ndarray | FlatRows,
        names: Sequence[str],
        labels: Sequence[int] | None,
        digests: Sequence[bytes] | None,
        checksums: Sequence[int],
        meta: Sequence[Sequence[MetaValue]] | None = None,
    ) -> None:
        """Write ``len(names)`` rows at the committed count (not visible to readers until :meth:`commit`).

        ``images``: an ``(k, H, W, C)`` uint8 array for a fixed-shape store, :class:`FlatRows` for a flat one.
        ``meta``: one sequence of values per meta column of the schema, in its order (each of the column's kind).
        """
        if isinstance(images, FlatRows) != self.schema.flat:
            raise StoreError(f"{self.path}: give {'FlatRows' if self.schema.flat else 'an image array'} to write rows")
        n, k = self.count, len(names)
        if len(meta or ()) != len(self.schema.meta):
            raise StoreError(f"{self.path} has {len(self.schema.meta)} meta columns but {len(meta or ())} were given")
        texts = sum(len(str(v)) for (_, kind), values in zip(self.schema.meta, meta or ()) if kind == TEXT for v in values)
        pixels = int(images.data.nbytes if isinstance(images, FlatRows) else images[:k].nbytes)
        nbytes = pixels + (sum(len(name) for name in names) + texts) * 2 + k * (64 + 8 * len(meta or ()))
        with self._os_errors("write rows to", nbytes):
            if isinstance(images, FlatRows):
                self._write_flat(n, images)
            else:
                self._write_images(n, k, images)
            self._put(NAMES, n, list(names))
            self._journals[NAMES].append(n, list(names))
            self._put(CHECKSUMS, n, np.asarray(checksums, dtype=np.uint32))
            if self.schema.labels:
                assert labels is not None
                self._put(LABELS, n, np.asarray(labels, dtype=np.int64))
            if self.schema.sha256:
                assert digests is not None
                self._put(SHA256, n, np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(k, 32))
            for (name, kind), values in zip(self.schema.meta, meta or ()):
                key = meta_path(name)
                self._put(key, n, column_array(values, kind))
                if key in self._journals:  # a text column: its journal copy, as for the names
                    self._journals[key].append(n, [str(v) for v in values])
        self._pending_rows = k

    def _write_images(self, n: int, k: int, images: np.ndarray) -> None:
        ds = self._datasets[IMAGES]
        grow(ds, n + k)
        if self.schema.compression is None:
            # One chunk per image, unfiltered: hand HDF5 the bytes of each chunk directly. Measured on 341
            # images of 256x256x3: 19 ms instead of 179 ms for images[n:n+k] = buf[:k], whose hyperslab
            # selection machinery costs more than the copy itself.
            write = ds.id.write_direct_chunk
            for j in range(k):
                write((n + j, 0, 0, 0), images[j])
        else:
            ds[n : n + k] = images[:k]

    def _write_flat(self, n: int, rows: FlatRows) -> None:
        """Flat rows: their bytes after the committed rows' in ``image_data``, then their ends and shapes."""
        if len(rows) and rows.data.size != int(rows.ends[-1]):
            raise StoreError(f"{self.path}: the rows' ends do not match their bytes")
        start = self.data_end
        data = self._datasets[IMAGE_DATA]
        grow(data, start + rows.data.size)
        if rows.data.size:
            data[start : start + rows.data.size] = rows.data
        self._put(IMAGE_ENDS, n, rows.ends + start)
        self._put(SHAPES, n, rows.shapes)
        self._pending_data = int(rows.data.size)

    def write_skipped(self, names: Sequence[str], reasons: Sequence[str]) -> None:
        """Write skipped records at the committed skipped count (not visible until :meth:`commit`)."""
        n = self.skipped_count
        with self._os_errors("write skipped records to", sum(len(n) + len(r) for n, r in zip(names, reasons)) * 2):
            for key, items in ((SKIPPED_NAMES, list(names)), (SKIPPED_REASONS, list(reasons))):
                self._put(key, n, items)
                self._journals[key].append(n, items)
        self._pending_skipped = len(names)

    def commit(self) -> None:
        """Flush what was written, then raise ``count`` and ``skipped_count`` so readers see it."""
        count, skipped = self.count + self._pending_rows, self.skipped_count + self._pending_skipped
        with self._os_errors("write to", margin=SPACE_MARGIN // 4):
            self.file.flush()  # rows first: a reader never trusts a row that is not on disk
            set_attr(self.file, "count", count)
            set_attr(self.file, "skipped_count", skipped)
            self.file.flush()
        self.count, self.skipped_count = count, skipped
        self.data_end += self._pending_data
        self._pending_rows = self._pending_skipped = self._pending_data = 0

    def finish(self, complete: bool = True) -> None:
        """Mark the store complete (unless ``complete`` is false), close it, and put a store built aside in its
        place."""
        with self._os_errors("finish", margin=SPACE_MARGIN // 4):
            if complete:
                set_attr(self.file, "complete", True)
            self._close_and_trim()
        if self.publish_to is not None:
            try:
                os.replace(self.path, self.publish_to)
            except OSError as exc:
                raise WriteError(
                    f"cannot rename {self.path} to {self.publish_to}: {os_cause(exc)} "
                    f"({self.path} is the finished store)"
                ) from None

    def close(self) -> None:
        """Close without marking the store complete (after an error or an interrupt); safe to call twice."""
        if not self.file.id.valid:
            return
        if self._sealed:
            _close_quietly(self.file)
            return
        try:
            self._close_and_trim()
        except Exception as exc:
            if is_os_failure(exc):
                _seal(self.file, self.path)
            _close_quietly(self.file)

    def _close_and_trim(self) -> None:
        """Flush and close, then give back the disk space reserved past the end of allocation."""
        self.file.flush()
        eoa = end_of_allocation(self.file)
        self.file.close()
        if eoa is not None and self._reserved:
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_size > eoa:
                    os.truncate(self.path, eoa)

    def discard(self) -> None:
        """Close and delete the file (a store being built that will not be used)."""
        _close_quietly(self.file)
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    @property
    def failed(self) -> bool:
        """True after an operating-system error: the file is then closed without further writes."""
        return self._failed

    @property
    def closed(self) -> bool:
        """True once the file is closed."""
        return not self.file.id.valid

    # -- internals --------------------------------------------------------------------------------------------
    def _put(self, key: str, start: int, values: Any) -> None:
        ds = self._datasets[key]
        grow(ds, start + len(values))
        if len(values):
            ds[start:] = values

    @contextlib.contextmanager
    def _os_errors(self, what: str, nbytes: int = 0, margin: int = SPACE_MARGIN) -> Any:
        """Reserve disk space for a write of about ``nbytes`` (plus ``margin`` for HDF5's metadata), then run it;
        OS errors become :class:`WriteError`.

        HDF5 does not survive a write that fails half-way: it goes on flushing (the superblock, parents of the
        block that failed), and a file can be left that no reader opens. So the space is reserved first
        (:meth:`_reserve`): a full disk, a quota or a file-size limit then fails here, before HDF5 writes a byte,
        and the store keeps its last commit, whole. Should a write fail anyway (an I/O error), the file is sealed
        (:func:`_seal`) at once, so HDF5 writes nothing more.
        """
        if self._failed:
            raise WriteError(self._failure(what, "an earlier write failed"))
        try:
            self._reserve(nbytes + margin)
        except OSError as exc:
            self._failed = True  # nothing was written: the store is whole and closes normally
            raise WriteError(self._failure(what, os_cause(exc))) from None
        try:
            yield
        except Exception as exc:
            if not is_os_failure(exc):
                raise
            self._failed = self._sealed = True
            _seal(self.file, self.path)
            error = WriteError(self._failure(what, os_cause(exc)))
            error.sealed = True  # the CLI then exits at once: not even HDF5's cleanup at exit touches the file
            raise error from None

    def _reserve(self, nbytes: int) -> None:
        """Make sure ``nbytes`` past HDF5's end of allocation are allocated on disk (``posix_fallocate``), so the
        writes that follow cannot meet a full disk; where the file system cannot allocate ahead, check its free
        space instead. Raises ``OSError`` (``ENOSPC``, ``EDQUOT``, ``EFBIG``) when the space is not there."""
        eoa = end_of_allocation(self.file)
        if eoa is None:
            eoa = os.stat(self.path).st_size
        target = eoa + nbytes
        if target <= self._reserved:
            return
        try:
            os.posix_fallocate(self.file.id.get_vfd_handle(), 0, target)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            free = free_bytes(self.path)
            if free is not None and free < nbytes:
                raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({_mb(free)} free, {_mb(nbytes)} needed)") from None
            return
        self._reserved = target

    def _failure(self, what: str, cause: str) -> str:
        where = self.publish_to or self.path
        return (
            f"cannot {what} {self.path}: {cause}; {where} keeps the {self.count} images committed so far "
            "(free space or fix the cause, then run again with --resume)"
        )

    def _text_counts(self) -> dict[str, int]:
        rows = {key: self.count for key in text_columns(self.schema.meta)}
        return {NAMES: self.count, SKIPPED_NAMES: self.skipped_count, SKIPPED_REASONS: self.skipped_count, **rows}

    def _check_journals(self) -> None:
        """Refuse a store whose journals hold fewer rows than are committed (damage the journal cannot repair), or
        whose flat rows end past the bytes it holds."""
        if IMAGE_DATA in self._datasets and not 0 <= self.data_end <= self._datasets[IMAGE_DATA].shape[0]:
            raise StoreError(
                f"{self.path} is damaged: its {self.count} committed rows end past the bytes of {IMAGE_DATA} "
                "(run imgstore verify on it)"
            )
        for key, n in self._text_counts().items():
            rows = self._journals[key].rows()
            if rows < n:
                raise StoreError(
                    f"{self.path} is damaged: the journal of {key} holds {rows} rows but {n} are committed "
                    "(run imgstore verify on it)"
                )

    def _trim(self, rebuild_strings: bool) -> None:
        """Cut every per-row dataset back to the committed counts; rewrite the strings from the journal."""
        f = self.file
        for key in self._row_keys:
            if key in f:
                grow(self._datasets[key], self.count)
        if IMAGE_DATA in self._datasets:
            grow(self._datasets[IMAGE_DATA], self.data_end)
        for key in (SKIPPED_NAMES, SKIPPED_REASONS):
            grow(self._datasets[key], self.skipped_count)
        self._check_journals()
        for key, n in self._text_counts().items():
            journal = self._journals[key]
            journal.trim(n)
            if rebuild_strings:
                # A kill during a write may have left the variable-length heap unreadable: write the strings again
                # from the journal. SWMR cannot replace the dataset, and overwriting a torn row would make HDF5
                # follow its torn heap pointer to free it: empty the dataset (dropping its chunks), then refill it.
                grow(self._datasets[key], 0)
                for start in range(0, n, 65536):
                    stop = min(n, start + 65536)
                    self._put(key, start, journal.read(stop, start))


def _link_new(work: Path, out: Path) -> None:
    """Give the finished-enough file ``work`` the name ``out`` without ever replacing a file there."""
    try:
        os.link(work, out)
    except FileExistsError:
        raise OutputExistsError(f"{out} appeared while the store was being created: pass --overwrite to replace it") from None
    except OSError as exc:
        if out.exists():
            raise OutputExistsError(f"{out} exists: pass --overwrite to replace it") from None
        try:  # a file system without hard links; nobody else writes out (we hold its lock)
            os.rename(work, out)
        except OSError:
            raise WriteError(f"cannot create {out}: {os_cause(exc)}") from None
        return
    with contextlib.suppress(OSError):
        os.unlink(work)


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on the file system of ``path`` (None when it does not say)."""
    try:
        st = os.statvfs(path.parent if str(path.parent) else ".")
    except OSError:
        return None
    if st.f_blocks == 0:  # a file system that reports no sizes (some FUSE and network ones)
        return None
    return st.f_bavail * st.f_frsize


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _seal(f: h5py.File, path: Path) -> None:
    """After a write that failed half-way, point the file's descriptor at an anonymous scratch file: HDF5's
    further attempts to flush (on close, when its objects are freed, at exit) then succeed harmlessly and never
    touch the store, which keeps what was on disk when the write failed."""
    del path
    with contextlib.suppress(Exception):
        fd = f.id.get_vfd_handle()
        sink = os.memfd_create("imgstore-sealed") if hasattr(os, "memfd_create") else os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(sink, fd, inheritable=False)
        finally:
            os.close(sink)


def _close_quietly(f: h5py.File) -> None:
    """Close a file whose writes failed; HDF5's errors on the way out add nothing to the first one."""
    with contextlib.suppress(Exception):
        if f.id.valid:
            f.close()


def upgrade(path: Path, schema: Schema | None = None, attrs: Mapping[str, Any] | None = None) -> None:
    """Copy the store at ``path`` into the current layout and put the copy in its place (hold its writer lock).

    For a format-1 store, one created before its image size was known (then ``schema`` gives it), or one whose
    attributes must change in a way SWMR cannot do in place (``attrs``: e.g. more class names). The committed
    rows, names (re-escaped from format 1), labels, digests, meta columns and skipped lists are copied, checksums
    computed, the attributes (updated with ``attrs``) and ``complete`` kept. The copy is built under a temporary name and renamed
    over ``path`` only when whole, so ``path`` is never anything but the old store or the new one.
    """
    with open_read(path) as src:
        version = format_version(src)
        found = schema_of(src) or (dataclasses.replace(schema, meta=columns_of(src)) if schema is not None else None)
        if found is None:
            raise StoreError(f"{path} holds no images and records no image size: give the size to write to it")
        complete = bool(src.attrs.get("complete", False))
        count = int(src.attrs.get("count", 0))
        skipped = int(src.attrs.get("skipped_count", src[SKIPPED_NAMES].shape[0] if SKIPPED_NAMES in src else 0))
        drop = ("imgstore_format", "count", "skipped_count", "complete", "meta_columns")  # set by the new layout
        keep = {k: v for k, v in src.attrs.items() if k not in drop}
        keep.update(attrs or {})
        names = read_text_column(src, NAMES, count, complete=complete)
        skipped_names = read_text_column(src, SKIPPED_NAMES, skipped, complete=complete)
        reasons = read_text_column(src, SKIPPED_REASONS, skipped, complete=complete)
        meta = [read_meta(src, name, kind, count, complete=complete) for name, kind in found.meta]
        if version < 2:
            names = [upgrade_v1_name(n) for n in names]
            skipped_names = [upgrade_v1_name(n) for n in skipped_names]
            keep["imgstore_version"] = store_version()
        store = StoreFile.build(temp_path(path), found, keep, publish_to=path)
        try:
            if found.flat:  # spans of about UPGRADE_BATCH_BYTES: rows kept at full size can be megabytes each
                ends = src[IMAGE_ENDS][:count].astype(np.int64)
                if ends.shape[0] < count:
                    raise StoreError(f"{path} is damaged: {IMAGE_ENDS} holds {ends.shape[0]} rows but {count} are committed")
                spans = flat_spans(0, ends, UPGRADE_BATCH_BYTES)
            else:
                step = max(1, UPGRADE_BATCH_BYTES // max(1, int(np.prod(found.shape))))
                spans = [(a, min(count, a + step)) for a in range(0, count, step)]
            for a, b in spans:
                images: np.ndarray | FlatRows
                if found.flat:
                    images = read_flat(src, a, b)
                    crcs: list[int] | None = [flat_crc(images.shapes[j], images.row(j)) for j in range(b - a)]
                else:
                    images, crcs = src[IMAGES][a:b], None
                labels = src[LABELS][a:b] if found.labels else None
                digests = src[SHA256][a:b] if found.sha256 else None
                rows_meta = rows_meta_bytes(found.meta, [column[a:b] for column in meta], b - a)
                sums = row_checksums(None if crcs else images, names[a:b], labels, digests, rows_meta, crcs)  # type: ignore[arg-type]
                store.write_rows(images, names[a:b], None if labels is None else labels.tolist(),
                                 None if digests is None else [bytes(d) for d in digests], sums.tolist(),
                                 [column[a:b] for column in meta])  # fmt: skip
                store.commit()
            if skipped:
                store.write_skipped(skipped_names, reasons)
                store.commit()
            store.finish(complete=complete)
        except BaseException:
            store.discard()
            raise
