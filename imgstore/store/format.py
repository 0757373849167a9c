"""The store's format: dataset names, attributes, name escaping, checksums, the text journal, opening.

Store format, versions 2, 3 and 4 (a contract; the reader, ``verify``, ``merge``, export and info take it from here):

- ``images``: uint8 ``(N, H, W, C)``, chunks ``(1, H, W, C)``, maxshape ``(None, H, W, C)``.
- ``image_names``: variable-length UTF-8 ``(N,)``: row i's source path relative to the source root, ``/``
  separators, escaped by :func:`escape_name` (a backslash is stored as ``\\\\``, a byte that is not UTF-8 as
  ``\\xNN``), so different paths never share a name and :func:`unescape_name` gives back the exact bytes.
- ``checksums``: uint32 ``(N,)``: CRC-32 (``zlib.crc32``) of the row's pixels, then its label as int64
  little-endian (stores with labels), its SHA-256 digest (stores with digests), its name in UTF-8 and its meta
  values (format 3: :func:`imgstore.store.meta.meta_bytes`) (:func:`row_checksum`), computed before the row is
  written. ``verify`` and ``imgstore.open(path, check=True)``
  recompute it.
- optional ``labels`` (int64 ``(N,)``) and ``sha256`` (uint8 ``(N, 32)``: the source file's digest).
- ``skipped_names``, ``skipped_reasons``: variable-length UTF-8, one row per file that could not be ingested.
- ``_journal/<column>.bytes`` (uint8) and ``_journal/<column>.ends`` (int64): the three text columns again as
  plain numeric data (:class:`TextJournal`), because SWMR does not cover variable-length strings.
- optional meta columns (format 3): ``meta/<column>``, one dataset per column of a list file, row-aligned with
  ``images``: int64, float64 (NaN for empty) or variable-length UTF-8 text with a journal copy like the names'
  (``_journal/meta/<column>``); the root attribute ``meta_columns`` lists the column names in order. See
  :mod:`imgstore.store.meta`.
- root attributes: ``imgstore_format`` = 2 (3 with meta columns), ``imgstore_version``, ``count`` (rows
  committed: readers read only rows below it), ``skipped_count`` (the same for the skipped lists), ``complete``
  (true only after a clean finish), ``size`` = [W, H], ``channels``, ``created`` (ISO 8601 UTC), ``run_start`` = [rows, skipped records] the store
  held when the ingest writing it began ([0, 0], or where an ``--append`` began: what its ``--resume`` retries),
  plus what the caller adds (``resize_mode``, ``source``, ``class_names``, ``ingest_options``, ...).

Version 4 (flat rows) stores the rows as bytes instead of an ``images`` dataset, for stores made with ``--encode
jpeg|webp|png`` or a native-aspect ``--resize-mode`` (``shorter``, ``longer``, ``none``), and for no other:

- ``image_data``: uint8 ``(B,)``, chunks of :data:`FLAT_CHUNK` bytes: each row's stored bytes, one after another
  (an encoded file, or the raw pixels in C order for ``encoding`` ``none``).
- ``image_ends``: int64 ``(N,)``: row i is ``image_data[image_ends[i-1]:image_ends[i]]`` (from 0 for row 0).
- ``shapes``: uint32 ``(N, 3)``: row i's ``(H, W, C)`` pixels.
- root attributes ``encoding`` (the ``--encode`` value in full, e.g. ``"jpeg:90:420"``, see
  :mod:`imgstore.store.encoding`) and ``variable_shape`` (true when rows have their own shapes; ``size`` is then the
  ``--size`` the rows were scaled to, not every row's size).
- ``checksums``: the pixel CRC of format 2 is replaced by :func:`~imgstore.store.encoding.flat_crc` (the shape,
  then the stored bytes), continued over label, digest, name and meta values as in format 3.

Rows, ends and shapes are written past the committed ``count`` and become visible with it, exactly as the other
per-row datasets and the text journal, so a flat store is as crash-safe as a fixed one.

Version 3 is version 2 plus meta columns, and only a store that has meta columns is written as version 3
(:func:`format_for`): a store without them stays readable and appendable by imgstore releases that know version 2,
while one with them is refused by those, since they would append rows without meta values (or drop the columns
when copying the store) and so break the alignment of rows and meta silently.

Version 1 stores (imgstore 0.1) lack ``checksums`` and escaped undecodable bytes only (a literal backslash was kept
as it is). Everything here reads them; writing to one first copies it into version 2 (:func:`needs_upgrade`).

Files are created with HDF5's 1.10 file format (``libver=("v110", "v110")``): the oldest that has SWMR writing,
and one HDF5 1.10, 1.12 and 1.14 read (the newest format of HDF5 2.0 writes attribute datatypes they reject).

The write protocol that keeps a store readable at every instant is in :mod:`imgstore.store.file`.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from imgstore.errors import WriteError, os_cause
from imgstore.store.h5 import (
    SWMR_READ_ATTEMPTS,
    claim_whole_file,
    file_access,
    is_flagged,
    is_lock_conflict,
)

FORMAT_VERSION = 4  # the newest format this imgstore writes (see format_for)
READABLE_FORMATS = (1, 2, 3, 4)
LIBVER = ("v110", "v110")  # the 1.10 file format: SWMR writing, and readable by HDF5 1.10 and newer

IMAGES = "images"
IMAGE_DATA = "image_data"  # format 4: every row's stored bytes, one after another (uint8)
IMAGE_ENDS = "image_ends"  # format 4: int64 end offset of each row in image_data
SHAPES = "shapes"  # format 4: uint32 (H, W, C) of each row
ENCODING = "encoding"  # root attribute of a format-4 store: the --encode value, e.g. "jpeg:90:420"
VARIABLE = "variable_shape"  # root attribute of a format-4 store: true when rows have their own shapes
NAMES = "image_names"
LABELS = "labels"
SHA256 = "sha256"
CHECKSUMS = "checksums"
SKIPPED_NAMES = "skipped_names"
SKIPPED_REASONS = "skipped_reasons"
JOURNAL = "_journal"
TEXT_COLUMNS = (NAMES, SKIPPED_NAMES, SKIPPED_REASONS)
ROW_DATASETS = (IMAGES, IMAGE_ENDS, SHAPES, NAMES, LABELS, SHA256, CHECKSUMS)  # one row per stored image
PARTIAL_SUFFIX = ".partial"
RUN_START = "run_start"  # root attribute: [rows, skipped records] held when the run writing the store began
IGNORED_COUNT = "ignored_count"  # root attribute: files under SRC that were not candidates (latest run)
IGNORED_EXTENSIONS = "ignored_extensions"  # root attribute: JSON {extension: count} of those, fixed width
IGNORED_WIDTH = 1024  # bytes: fixed, so a later run rewrites it in place (see settable_in_place)
STR = h5py.string_dtype("utf-8")
FLAT_CHUNK = 65536  # bytes per chunk of image_data (see imgstore.store.file: chosen by random-read speed)
# Bytes kept free beyond a commit's rows for HDF5's metadata (new chunks of the per-row datasets and journal,
# heap collections, index blocks): measured under 300 KiB per commit; a full disk stops the writer before this.
SPACE_MARGIN = 1 << 20


def format_for(has_meta: bool, flat: bool = False) -> int:
    """The format version a store is written in: 4 when its rows are flat (encoded, or of their own shapes), else
    3 when it has meta columns, else 2 (see the module docstring)."""
    return 4 if flat else 3 if has_meta else 2


def store_version() -> str:
    """The imgstore package version recorded in new stores."""
    from imgstore import __version__

    return __version__


def partial_path(out: str | os.PathLike[str]) -> Path:
    """Where ``--overwrite`` builds the store that will replace ``out``: ``NAME.partial`` beside it."""
    p = Path(out)
    return p.with_name(p.name + PARTIAL_SUFFIX)


# ----------------------------------------------------------------------------------------------------- names


def escape_name(name: str | bytes) -> str:
    """A path (bytes, or str from ``os`` with undecodable bytes as surrogate escapes) as stored text.

    UTF-8 text is kept as it is, except that a backslash becomes ``\\\\``; every byte that is not part of valid
    UTF-8 becomes ``\\xNN``. So the mapping is injective, and :func:`unescape_name` inverts it exactly.
    """
    if isinstance(name, str):
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raw = _os_bytes(name)
        else:
            if "\\" not in name:
                return name  # the common case: nothing to escape
            raw = name.encode("utf-8")
    else:
        raw = bytes(name)
    out = []
    for ch in raw.decode("utf-8", "surrogateescape"):
        if ch == "\\":
            out.append("\\\\")
        elif "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(ch)
    return "".join(out)


def _os_bytes(name: str) -> bytes:
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that did not come from os: keep its bytes, escaped later
        return name.encode("utf-8", "surrogatepass")


_ESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2})")


def unescape_name(stored: str) -> bytes:
    """The exact path bytes a stored name (format 2) came from; the inverse of :func:`escape_name`."""
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(stored):
        out += stored[pos : m.start()].encode("utf-8")
        code = m.group(1)
        out += b"\\" if code == "\\" else bytes([int(code[1:], 16)])
        pos = m.end()
    out += stored[pos:].encode("utf-8")
    return bytes(out)


def upgrade_v1_name(name: str) -> str:
    """A format-1 name in format 2's escaping: its ``\\xNN`` were escaped bytes, other backslashes literal."""
    if "\\" not in name:
        return name
    raw = bytearray()
    pos = 0
    for m in re.finditer(r"\\x([0-9a-fA-F]{2})", name):
        raw += name[pos : m.start()].encode("utf-8")
        raw.append(int(m.group(1), 16))
        pos = m.end()
    raw += name[pos:].encode("utf-8")
    return escape_name(bytes(raw))


def texts(values: Iterable[Any]) -> list[str]:
    """Rows of a variable-length string dataset (bytes or str) as ``str``; invalid UTF-8 replaced."""
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]


def attr_value(value: Any) -> Any:
    """An HDF5 attribute value as plain Python: text as ``str`` (invalid UTF-8 replaced), a string array as a list
    of ``str``, other arrays as lists, numpy scalars as Python numbers."""
    if isinstance(value, np.ndarray):
        return texts(value) if value.dtype.kind in "SOU" else value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


# ------------------------------------------------------------------------------------------------- checksums


def pixel_crc(image: np.ndarray) -> int:
    """CRC-32 of an image's pixel bytes in C order (the first part of a row checksum)."""
    return zlib.crc32(np.ascontiguousarray(image).data.cast("B"))


def row_checksum(pixels_crc: int, name: str, label: int | None, sha256: bytes | None, meta: bytes = b"") -> int:
    """The ``checksums`` value of a row: the pixel CRC continued over label (int64 LE), digest, UTF-8 name and, in a
    store with meta columns, the row's meta values (:func:`imgstore.store.meta.meta_bytes`)."""
    data = (struct.pack("<q", label) if label is not None else b"") + (sha256 or b"") + name.encode("utf-8") + meta
    return zlib.crc32(data, pixels_crc)


def row_checksums(
    images: np.ndarray | None,
    names: Sequence[str],
    labels: np.ndarray | None,
    digests: np.ndarray | None,
    meta: Sequence[bytes] | None = None,
    crcs: Sequence[int] | None = None,
) -> np.ndarray:
    """Checksums of a batch of stored rows (for verifying): uint32 ``(b,)``; ``meta``: each row's meta bytes;
    ``crcs``: each row's first CRC when already known (flat rows: :func:`~imgstore.store.encoding.flat_crc`), else
    the pixel CRC of ``images[j]``."""
    out = np.empty(len(names), np.uint32)
    for j, name in enumerate(names):
        label = None if labels is None else int(labels[j])
        digest = None if digests is None else bytes(digests[j])
        first = int(crcs[j]) if crcs is not None else pixel_crc(images[j]) if images is not None else 0
        out[j] = row_checksum(first, name, label, digest, b"" if meta is None else meta[j])
    return out


# ---------------------------------------------------------------------------------------------------- journal


def grow(ds: h5py.Dataset, rows: int) -> None:
    if ds.shape[0] != rows:
        ds.resize(rows, axis=0)


class TextJournal:
    """A text column kept as numeric datasets: ``<name>.bytes`` (UTF-8, uint8) and ``<name>.ends`` (int64)."""

    def __init__(self, group: h5py.Group, name: str) -> None:
        self.name = name
        self._bytes = group[f"{name}.bytes"]
        self._ends = group[f"{name}.ends"]

    @staticmethod
    def create(group: h5py.Group, name: str) -> None:
        """Create the two empty datasets of a journaled column."""
        group.create_dataset(f"{name}.bytes", shape=(0,), maxshape=(None,), chunks=(65536,), dtype=np.uint8)
        group.create_dataset(f"{name}.ends", shape=(0,), maxshape=(None,), chunks=(4096,), dtype=np.int64)

    def rows(self) -> int:
        """Rows written (committed or not)."""
        return int(self._ends.shape[0])

    def append(self, start: int, items: Sequence[str]) -> None:
        """Write ``items`` as rows ``start, start + 1, ...`` (dropping any rows at or after ``start``)."""
        end0 = int(self._ends[start - 1]) if start else 0
        blobs = [t.encode("utf-8") for t in items]
        ends = end0 + np.cumsum(np.fromiter((len(b) for b in blobs), dtype=np.int64, count=len(blobs)))
        data = np.frombuffer(b"".join(blobs), dtype=np.uint8)
        grow(self._bytes, end0 + data.size)
        if data.size:
            self._bytes[end0 : end0 + data.size] = data
        grow(self._ends, start + len(items))
        if items:
            self._ends[start:] = ends

    def read(self, n: int, start: int = 0) -> list[str]:
        """Rows ``start:n``; raises ValueError when the row ends are not increasing within the bytes."""
        if n <= start:
            return []
        lo = int(self._ends[start - 1]) if start else 0
        ends = self._ends[start:n].astype(np.int64)
        if ends[0] < lo or (np.diff(ends) < 0).any() or int(ends[-1]) > self._bytes.shape[0]:
            raise ValueError(f"the journal of {self.name} is damaged: its row ends are not increasing within its bytes")
        blob = self._bytes[lo : int(ends[-1])].tobytes()
        starts = np.concatenate(([lo], ends[:-1])) - lo
        return [blob[s:e].decode("utf-8", "replace") for s, e in zip(starts.tolist(), (ends - lo).tolist())]

    def trim(self, n: int) -> None:
        """Drop rows from ``n`` on."""
        end = int(self._ends[n - 1]) if n else 0
        grow(self._ends, n)
        grow(self._bytes, end)


def has_journal(f: h5py.File, column: str) -> bool:
    """True when ``f`` keeps a journal copy of the text column ``column``."""
    group = f.get(JOURNAL)
    return isinstance(group, h5py.Group) and f"{column}.ends" in group and f"{column}.bytes" in group


def read_text_column(f: h5py.File, column: str, n: int, *, complete: bool) -> list[str]:
    """Rows ``[:n]`` of a text column as readers see them: from the journal when the store is not complete (its
    variable-length strings may be torn by a crash), from the string dataset otherwise."""
    if not complete and has_journal(f, column):
        return TextJournal(f[JOURNAL], column).read(n)
    return texts(f[column][:n]) if column in f else []


# ---------------------------------------------------------------------------------------------------- opening


def format_version(f: h5py.File) -> int:
    """The store format version of an open file (0 when it is not an imgstore store)."""
    try:
        return int(f.attrs.get("imgstore_format", 0))
    except (TypeError, ValueError):
        return 0


def open_read(path: str | os.PathLike[str]) -> h5py.File:
    """Open a store read-only, whatever its state: finished, being written, or left by a writer that died.

    A plain open first, with HDF5's default file-locking setting, so that a plain ``h5py.File(path, "r")`` in the
    same process coexists with it; a file a writer has open (or died with) opens in SWMR-read mode; a file another
    process holds HDF5's lock on opens without locking. Raises ``OSError`` as h5py does.
    """
    p = os.fspath(path)
    for locking in (None, False):
        try:
            f = _open_reader(p, locking)
        except OSError as exc:
            if locking is None and is_lock_conflict(exc):
                continue
            raise
        claim_whole_file(f)  # reach objects a dead writer wrote past the recorded end of allocation
        return f
    raise AssertionError("unreachable")  # pragma: no cover


_TRUNCATED = re.compile(r"truncated file: eof = (\d+),.*stored_eof = (\d+)")


def _extend_truncated(path: str, exc: OSError) -> bool:
    """Repair a file whose last write failed part-way (an I/O error): its superblock records an end past the
    bytes that reached the disk. What lies there was never committed (SWMR writes a block before whatever points
    to it), so zeros stand in. Returns True when the file was extended."""
    m = _TRUNCATED.search(str(exc))
    if m is None or int(m.group(2)) <= int(m.group(1)):
        return False
    os.truncate(path, int(m.group(2)))
    return True


def publish(partial: Path, out: Path) -> None:
    """Put a complete store built aside in its final place: what an ``--overwrite`` killed between finishing
    ``partial`` and renaming it left undone (its status flags are cleared first, as its close would have)."""
    try:
        open_write(partial).close()
        os.replace(partial, out)
    except OSError as exc:
        raise WriteError(f"cannot rename {partial} to {out}: {os_cause(exc)} ({partial} is the finished store)") from None


def repair_truncated(path: str | os.PathLike[str]) -> bool:
    """Extend a store whose last write failed part-way (see :func:`_extend_truncated`), as ``--resume`` does before
    anything reads it; hold its writer lock. Returns True when it was repaired."""
    try:
        open_read(path).close()
    except OSError as exc:
        return _extend_truncated(os.fspath(path), exc)
    return False


def _open_reader(path: str, locking: bool | None) -> h5py.File:
    try:
        return h5py.File(path, "r", locking=locking)
    except OSError as exc:
        if not is_flagged(exc):
            raise
    fapl = file_access(locking=locking, read_attempts=SWMR_READ_ATTEMPTS)
    return h5py.File(h5py.h5f.open(path.encode(), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ, fapl=fapl))


def open_write(path: str | os.PathLike[str]) -> h5py.File:
    """Open an existing store in SWMR-write mode, clearing the status flags a dead writer left (``h5clear``).

    Call it holding the store's writer lock: clearing the flags of a file another writer has open would hide that
    writer. The file is opened with ``H5F_ACC_RDWR | H5F_ACC_SWMR_WRITE`` at once, so there is no moment at which
    it is open for plain writing. HDF5's own lock is skipped when a reader holds it: the writer lock is what keeps
    writers apart. Raises ``OSError`` as h5py does.
    """
    p = os.fspath(path)
    for locking in (None, False):
        fapl = file_access(clear_flags=True, locking=locking)
        try:
            fid = h5py.h5f.open(p.encode(), h5py.h5f.ACC_RDWR | h5py.h5f.ACC_SWMR_WRITE, fapl=fapl)
        except OSError as exc:
            if locking is None and is_lock_conflict(exc):
                continue
            if not _extend_truncated(p, exc):
                raise
            fid = h5py.h5f.open(p.encode(), h5py.h5f.ACC_RDWR | h5py.h5f.ACC_SWMR_WRITE, fapl=fapl)
        f = h5py.File(fid)
        claim_whole_file(f)  # a dead writer may have written past the recorded end: allocate after it
        return f
    raise AssertionError("unreachable")  # pragma: no cover


def settable_in_place(f: h5py.File, name: str, value: Any) -> bool:
    """True when root attribute ``name`` exists as a number (array) of ``value``'s shape, so writing ``value``
    changes its bytes in place. Anything else deletes and re-creates the attribute, which rewrites the root's
    attribute storage (a fractal heap and a B-tree that SWMR's write ordering does not cover): a kill in the middle
    can leave a file whose attributes no reader can list. So a store in SWMR mode only ever writes attributes in
    place; other changes go through a copy (:func:`upgrade`)."""
    if name not in f.attrs:
        return False
    old = f.attrs.get_id(name)
    new = np.asarray(value)
    if old.dtype.kind == "S" or new.dtype.kind == "S":  # fixed-width bytes live in the attribute message, as numbers do
        return bool(old.shape == new.shape and old.dtype == new.dtype and old.dtype.kind == "S")
    return bool(old.shape == new.shape and old.dtype.kind == new.dtype.kind and new.dtype.kind in "biuf")


def ignored_attrs(ignored: Mapping[str, int]) -> dict[str, Any]:
    """The root attributes recording the files a run passed over, ``{extension: count}``: their total and the
    counts as fixed-width JSON (most frequent first; past :data:`IGNORED_WIDTH` the rest are summed as ``"..."``),
    so an append or resume rewrites both in place."""
    ordered = sorted(ignored.items(), key=lambda kv: (-kv[1], kv[0]))
    total = sum(ignored.values())
    for keep in range(len(ordered), -1, -1):
        shown = dict(ordered[:keep])
        if keep < len(ordered):
            shown["..."] = total - sum(shown.values())
        text = json.dumps(shown, ensure_ascii=True).encode()
        if len(text) <= IGNORED_WIDTH:
            break
    return {IGNORED_COUNT: np.int64(total), IGNORED_EXTENSIONS: np.bytes_(text.ljust(IGNORED_WIDTH))}


def ignored_of(attrs: Mapping[str, Any]) -> dict[str, int] | None:
    """The ``{extension: count}`` a store records as passed over (None for a store that records nothing)."""
    raw = attrs.get(IGNORED_EXTENSIONS)
    if raw is None:
        return None
    try:
        value = json.loads(raw.strip() if isinstance(raw, str) else bytes(raw).decode("ascii", "replace").strip())
        return {str(k): int(v) for k, v in value.items()}
    except (ValueError, TypeError, AttributeError):
        return None


def attr_differs(f: h5py.File, name: str, value: Any) -> bool:
    """True when root attribute ``name`` is missing or holds something else than ``value``."""
    if name not in f.attrs:
        return True
    old, new = attr_value(f.attrs[name]), value
    try:
        return bool(np.asarray(old).tolist() != np.asarray(new).tolist())
    except (TypeError, ValueError):
        return True


def set_attr(f: h5py.File, name: str, value: Any) -> None:
    """Write a root attribute of a store in SWMR mode: in place only (see :func:`settable_in_place`)."""
    if not settable_in_place(f, name, value):
        raise ValueError(f"attribute {name!r} cannot be written in place in SWMR mode")
    f.attrs.modify(name, value)
