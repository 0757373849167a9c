"""Meta columns: per-row values that travel with the pixels (a list file's captions, boxes, splits, scores).

A store with meta columns lists them, in order, in the root attribute ``meta_columns``; column ``c`` is the dataset
``meta/<meta_key(c)>``, row-aligned with ``images``, of one of three kinds:

- ``"int64"`` and ``"float64"``: numbers, chunks ``(4096,)``; an empty float is NaN;
- ``"text"``: variable-length UTF-8, chunks ``(1024,)``, kept again in the crash-safe journal
  (``_journal/meta/<key>.bytes`` and ``.ends``: :class:`~imgstore.store.format.TextJournal`), exactly as the
  names are: readers of an incomplete store take it from there, and a continued write rebuilds the dataset from it.

A column name is any text; as an HDF5 name it is escaped by :func:`meta_key` (``%`` -> ``%25``, ``/`` -> ``%2F``, a
leading ``.`` -> ``%2E``), which :func:`meta_column` undoes. The columns are fixed when the store is created (SWMR
writing cannot create datasets), and written in the same commit as the rows they describe.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from typing import Any

import h5py
import numpy as np

META = "meta"  # the group of the meta datasets
META_COLUMNS = "meta_columns"  # root attribute: the column names, in order
INT, FLOAT, TEXT = "int64", "float64", "text"
KINDS = (INT, FLOAT, TEXT)
MetaValue = int | float | str
Columns = tuple[tuple[str, str], ...]  # ((column, kind), ...)


def meta_key(column: str) -> str:
    """The HDF5 link name of column ``column`` inside ``meta/``: ``%``, ``/`` and a leading ``.`` percent-escaped
    (HDF5 splits names at ``/`` and gives ``.`` a meaning); every other character is kept."""
    key = column.replace("%", "%25").replace("/", "%2F")
    return "%2E" + key[1:] if key.startswith(".") else key


def meta_column(key: str) -> str:
    """The column name of the link name ``key`` (the inverse of :func:`meta_key`)."""
    return key.replace("%2E", ".").replace("%2F", "/").replace("%25", "%")


def meta_path(column: str) -> str:
    """Where column ``column``'s dataset is, from the root: ``meta/<key>`` (also its journal's name)."""
    return f"{META}/{meta_key(column)}"


def text_columns(columns: Columns) -> list[str]:
    """The journal names (:func:`meta_path`) of the text columns of ``columns``."""
    return [meta_path(name) for name, kind in columns if kind == TEXT]


def create_meta(f: h5py.File, columns: Columns, string_dtype: Any) -> None:
    """The empty datasets and the ``meta_columns`` attribute of ``columns`` in a new store (before SWMR starts)."""
    if not columns:
        return
    f.attrs[META_COLUMNS] = [name for name, _ in columns]
    group = f.create_group(META)
    for name, kind in columns:
        if kind == TEXT:
            group.create_dataset(meta_key(name), shape=(0,), maxshape=(None,), chunks=(1024,), dtype=string_dtype)
        else:
            group.create_dataset(meta_key(name), shape=(0,), maxshape=(None,), chunks=(4096,), dtype=kind,
                                 fillvalue=np.nan if kind == FLOAT else 0)  # fmt: skip


def columns_of(f: h5py.File) -> Columns:
    """The meta columns of an open store, ``((column, kind), ...)`` in order; () when it has none. A listed column
    whose dataset is missing or of another type raises ``KeyError`` / ``ValueError`` naming it."""
    if META_COLUMNS not in f.attrs:
        return ()
    raw = np.asarray(f.attrs[META_COLUMNS]).ravel().tolist()
    names = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in raw]
    return tuple((name, kind_of(f, name)) for name in names)


def kind_of(f: h5py.File, column: str) -> str:
    """The kind of the stored column ``column`` from its dataset's type."""
    path = meta_path(column)
    ds = f.get(path)
    if not isinstance(ds, h5py.Dataset):
        raise KeyError(f"meta column {column!r} has no dataset {path}")
    if h5py.check_string_dtype(ds.dtype) is not None:
        return TEXT
    if ds.dtype.kind in "iu":
        return INT
    if ds.dtype.kind == "f":
        return FLOAT
    raise ValueError(f"meta column {column!r} is {ds.dtype}: expected int64, float64 or text")


def as_kind(value: MetaValue | None, kind: str) -> MetaValue:
    """``value`` (None: empty) as a cell of a column of ``kind``: text gets the text of a number (JSON's
    spelling), float gets NaN for empty; int takes only ints. Raises ``ValueError`` when it does not fit."""
    if kind == TEXT:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""  # an empty number (NaN) is an empty text
        if not isinstance(value, str):
            return json.dumps(value)
        if "\x00" in value or (not value.isascii() and not _utf8(value)):
            raise ValueError(f"{value!r} holds a NUL character or a lone surrogate, which UTF-8 text in HDF5 cannot hold")
        return value
    if kind == FLOAT:
        if value is None:
            return math.nan
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind == INT and isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"{value!r} is not {'a number' if kind == FLOAT else 'an integer'}")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def meta_bytes(values: Sequence[MetaValue], columns: Columns) -> bytes:
    """A row's meta values (one per column, of its kind) as the bytes its checksum covers, in column order: int64
    and float64 little-endian (a NaN as written), text as its UTF-8 length (int64 LE) then the UTF-8 bytes."""
    out = bytearray()
    for value, (_, kind) in zip(values, columns):
        if kind == INT:
            out += struct.pack("<q", int(value))
        elif kind == FLOAT:
            out += struct.pack("<d", float(value))
        else:
            text = str(value).encode("utf-8")
            out += struct.pack("<q", len(text)) + text
    return bytes(out)


def rows_meta_bytes(columns: Columns, values: Sequence[Sequence[Any]], n: int) -> list[bytes]:
    """:func:`meta_bytes` of ``n`` rows, given each column's values for them (``values[c][j]``)."""
    return [meta_bytes([column[j] for column in values], columns) for j in range(n)]


def column_array(values: Sequence[MetaValue], kind: str) -> Any:
    """A batch of one column's values as h5py writes them: a numpy array for numbers, a list of str for text."""
    if kind == TEXT:
        return [str(v) for v in values]
    return np.asarray(values, dtype=kind)


def read_meta(f: h5py.File, column: str, kind: str, n: int, *, complete: bool) -> Any:
    """Rows ``[:n]`` of column ``column``: a numpy array (int64 / float64) or a list of str (text: from the journal
    when the store is not complete, as for the names)."""
    from imgstore.store.format import read_text_column

    path = meta_path(column)
    if kind == TEXT:
        return read_text_column(f, path, n, complete=complete)
    return f[path][:n]
