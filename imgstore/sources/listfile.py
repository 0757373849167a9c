"""The list-file source: SRC is a ``.csv``, ``.jsonl`` / ``.ndjson`` or ``.parquet`` file naming the photos, one
row each, with data that travels with them.

- ``path`` (required): the file, absolute or relative to the list's folder. Its stored name is the path as written,
  ``/``-separated, with empty and ``.`` components dropped (``./a//b.jpg`` -> ``a/b.jpg``; ``..`` is kept, since
  behind a symlink it is not the parent folder's name), escaped by :func:`~imgstore.store.escape_name`; an absolute
  path keeps its leading ``/``. Rows are stored in list order, and every listed file is a candidate whatever its
  extension (``--extensions`` chooses files in a folder; a list already chose): a file no decoder reads is skipped
  with the decoder's reason.
- ``label`` (optional): the row's label, by the rule of CSV labels (:func:`~imgstore.labels.labels_from_texts`:
  all integers are kept, other texts become sorted class names); a row with an empty label is skipped as
  unlabelled.
- every other column is a meta column (:mod:`imgstore.store.meta`), typed over the whole list so that every shard
  and every resumed run types it alike: ``int64`` when every value is an integer and none is empty; ``float64``
  when every non-empty value is a number (an empty one is NaN; a column whose integers go beyond 2**53, which a
  float cannot hold exactly, stays text); otherwise text. In a CSV a value is a number when it is written as one
  (``-3``, ``0.5``, ``1e-3``, ``nan``): a leading zero (``007``) keeps it text, since such values are codes, not
  quantities. In JSON lines and Parquet the file's own types decide; a JSON list or object (boxes) is stored as
  its JSON text, true and false as ``true`` and ``false``.

What cannot be stored is skipped with a reason: a missing file (``missing: no such file``), a row without a path
and a file listed a second time -- by the same path, or by another that reaches the same file (absolute and
relative, through a symlink or ``..``: the same device and inode) -- recorded under the name ``LIST:LINE``, since
they have no name of their own (the reason says where the first listing is). A list that cannot be read at all
(no ``path`` column, a malformed CSV or JSON line, a key twice in one JSON object, a row with more fields than the header, text that is not
UTF-8, a NUL character or a lone surrogate, which a store's text cannot hold) raises one :class:`~imgstore.errors.SourceError` naming the file and the line.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from imgstore.errors import MissingExtraError, SourceError
from imgstore.sources import Candidate, Discovery, RowData, register_source
from imgstore.sources.folder import read_file
from imgstore.store.format import FORMAT_VERSION, escape_name, unescape_name
from imgstore.store.meta import FLOAT, INT, TEXT, MetaValue

LIST_EXTENSIONS = (".csv", ".jsonl", ".ndjson", ".parquet")
PATH, LABEL = "path", "label"
EXACT_FLOAT = 2**53  # integers beyond this many are not all exact as float64

_INT = re.compile(r"[+-]?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[+-]?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(inf|infinity|nan)", re.IGNORECASE)

Cell = Any  # a value as read: str (CSV: any value; JSON: text), int, float, bool, list, dict, or None (empty)


@dataclass(frozen=True)
class Table:
    """A list file as read: ``columns`` in order, ``cells[column]`` one value per row, ``lines[i]`` where row i
    starts (a line number; for Parquet the row number), ``where`` the word for it; ``numbers_in_text``: the cells
    are text that may spell numbers (CSV), else they carry their own types (JSON, Parquet)."""

    columns: list[str]
    cells: dict[str, list[Cell]]
    lines: list[int]
    where: str = "line"
    numbers_in_text: bool = True


@dataclass(frozen=True)
class ListSource:
    """The files a list file names (see the module docstring); ``path`` is the list file as given."""

    path: str

    @property
    def label(self) -> str:
        """The list file as given, escaped, for the store's ``source`` attribute."""
        return escape_name(os.fspath(Path(self.path)))

    @property
    def folder(self) -> str:
        """The folder relative paths in the list are relative to: the list file's, absolute."""
        return os.path.dirname(os.path.abspath(self.path))

    @property
    def carries_labels(self) -> bool:
        """True when the list has a ``label`` column (its header, or any JSON line, names it)."""
        return LABEL in read_table(self.path).columns

    def scan(self, extensions: tuple[str, ...]) -> Discovery:
        """Read the list: :func:`list_candidates` (``extensions`` do not apply: every listed file is a candidate)."""
        del extensions
        return list_candidates(self.path, read_table(self.path))

    def read(self, key: str) -> bytes:
        """The whole file at ``key`` (its path), as a folder reads it."""
        return read_file(key)

    def texts_as_written(self, files: list[Candidate], positions: Sequence[int]) -> list[Candidate]:
        """``files`` (this list's candidates) with their meta values at ``positions`` as the list writes them: a
        continued store whose column is text takes a CSV's ``1.50`` as ``1.50``, not as the number's ``1.5``.
        (JSON lines and Parquet carry their own types: their numbers are text as JSON spells them.)"""
        table = read_table(self.path)
        if not table.numbers_in_text or not positions:
            return files
        meta_names = [c for c in table.columns if c not in (PATH, LABEL)]
        row_of: dict[str, int] = {}
        for i, value in enumerate(table.cells[PATH]):
            name = stored_path(value)
            if name is not None:
                row_of.setdefault(name if name.startswith("/") else os.path.join(self.folder, name), i)
        out = []
        for c in files:
            meta = list(c.meta)
            for j in positions:
                meta[j] = _cell_text(table.cells[meta_names[j]][row_of[c.key]], True)
            out.append(replace(c, meta=tuple(meta)))
        return out

    def path_of(self, name: str, format_version: int = FORMAT_VERSION) -> Path:
        """The file a stored ``name`` came from: the name as written in the list, against the list's folder."""
        del format_version  # list stores are format 2 or later: names are escaped
        raw = os.fsdecode(unescape_name(name))
        return Path(raw if os.path.isabs(raw) else os.path.join(self.folder, raw))


def claim_list(spec: str) -> ListSource | None:
    """The :func:`~imgstore.sources.register_source` factory: a SRC ending in a list extension (any case) that is
    not a folder is a list file (a missing one too, so the error says the list is missing)."""
    if spec.lower().endswith(LIST_EXTENSIONS) and not os.path.isdir(spec):
        return ListSource(spec)
    return None


register_source("list", claim_list)


# ------------------------------------------------------------------------------------------------ reading


# The last list read, by (absolute path, modification time, size): an ingest asks whether the list is labelled
# before it scans it, and a list of a million rows takes seconds to read.
_LAST: list[tuple[tuple[str, int, int], Table]] = []


def read_table(path: str | os.PathLike[str]) -> Table:
    """Read the list file at ``path`` by its extension; raises :class:`SourceError` naming the file (and line)."""
    p = Path(path)
    if not p.exists():
        raise SourceError(f"list file {p} does not exist: give a .csv, .jsonl or .parquet file with a path column")
    if not p.is_file():
        raise SourceError(f"list file {p} is not a file")
    st = p.stat()
    key = (os.path.abspath(p), st.st_mtime_ns, st.st_size)
    if _LAST and _LAST[0][0] == key:
        return _LAST[0][1]
    table = _read_table(p)
    _LAST[:] = [(key, table)]
    return table


def _read_table(p: Path) -> Table:
    ext = p.suffix.lower()
    try:
        if ext == ".csv":
            table = _read_csv(p)
        elif ext == ".parquet":
            table = _read_parquet(p)
        else:
            table = _read_jsonl(p)
    except OSError as exc:
        raise SourceError(f"cannot read list file {p}: {exc.strerror or exc}") from None
    if PATH not in table.columns:
        shown = ", ".join(table.columns) or "none"
        raise SourceError(f"list file {p} has no 'path' column (its columns: {shown}): name the column of file paths 'path'")
    # HDF5 text cannot hold a NUL character (nor can a file path), nor UTF-8 a lone surrogate (JSON's "\ud800"):
    # refused here, before a store is made, rather than failing the ingest at the first commit that writes it.
    for name in table.columns:
        if _unstorable(name):
            raise SourceError(f"list file {p}: the column name {name!r} holds {_unstorable(name)}: remove it")
        for value, line in zip(table.cells[name], table.lines):
            if isinstance(value, str) and _unstorable(value, path=name == PATH):
                raise SourceError(
                    f"list file {p} {table.where} {line}: the {name!r} value holds {_unstorable(value)}, which a "
                    "store cannot hold: remove it"
                )
    return table


def _unstorable(text: str, path: bool = False) -> str | None:
    """What in ``text`` a store cannot hold as UTF-8 text (a NUL character, a lone surrogate), or None. A ``path``
    may hold the surrogate escapes of bytes that are not UTF-8 (``\udcff``: the file system's byte 0xff), which
    stored names escape."""
    if "\x00" in text:
        return "a NUL character"
    if not text.isascii():
        try:
            os.fsencode(text) if path else text.encode("utf-8")
        except UnicodeEncodeError:
            return "a lone surrogate (not a character)"
    return None


def _read_csv(p: Path) -> Table:
    """A CSV list: a header row, then one row per file (quoted fields may hold commas and newlines)."""
    with io.StringIO(_read_text(p), newline="") as f:
        reader = csv.reader(f, strict=True)
        rows: list[list[str]] = []
        lines: list[int] = []
        header: list[str] | None = None
        start = 1
        try:
            for row in reader:
                line, start = start, reader.line_num + 1
                if header is None:
                    header = _header(p, [cell.strip() for cell in row], line)
                    continue
                if not row or (len(row) == 1 and not row[0]):
                    continue  # a blank line
                if len(row) != len(header):
                    raise SourceError(
                        f"list file {p} line {line}: {len(row)} fields but the header has {len(header)}: quote "
                        "values that hold commas"
                    )
                rows.append(row)
                lines.append(line)
        except csv.Error as exc:
            raise SourceError(f"list file {p} line {reader.line_num}: malformed CSV ({exc})") from None
    if header is None:
        raise SourceError(f"list file {p} is empty: it needs a header row with a path column")
    cells = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    return Table(header, cells, lines)


def _read_text(p: Path) -> str:
    """The list's text (UTF-8, a byte-order mark dropped); text that is not UTF-8 raises naming its line."""
    data = p.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SourceError(f"list file {p} line {line}: not UTF-8 text (save the list as UTF-8)") from None


def _header(p: Path, names: list[str], line: int) -> list[str]:
    """Column names, refused when one is empty or repeated."""
    for i, name in enumerate(names):
        if not name:
            raise SourceError(f"list file {p} line {line}: column {i + 1} of the header has no name")
        if names.index(name) != i:
            raise SourceError(f"list file {p} line {line}: the header names column {name!r} twice")
    return names


def _read_jsonl(p: Path) -> Table:
    """JSON lines: one object per line; the columns are the keys in the order first met (a key a line lacks is
    empty there)."""
    columns: dict[str, None] = {}
    objects: list[dict[str, Any]] = []
    lines: list[int] = []
    # Lines end at \n only: a JSON string cannot hold a raw line break, but other characters str.splitlines()
    # breaks at (U+2028) may appear in it.
    for line, text in enumerate(_read_text(p).split("\n"), start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text, object_pairs_hook=_unique_keys)
        except _DuplicateKey as exc:
            raise SourceError(f"list file {p} line {line}: the key {exc.args[0]!r} appears twice in one object") from None
        except ValueError as exc:
            raise SourceError(f"list file {p} line {line}: malformed JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise SourceError(f"list file {p} line {line}: expected a JSON object, got {type(obj).__name__}")
        columns.update(dict.fromkeys(obj))
        objects.append(obj)
        lines.append(line)
    names = list(columns)
    for name in names:
        if not name.strip():
            raise SourceError(f"list file {p}: a key is empty: give every column a name")
    cells = {name: [obj.get(name) for obj in objects] for name in names}
    return Table(names, cells, lines, numbers_in_text=False)


class _DuplicateKey(Exception):
    """A JSON object names a key twice (json.loads would keep the last value silently)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey(next(k for i, (k, _) in enumerate(pairs) if any(k == k2 for k2, _ in pairs[:i])))
    return obj


def _read_parquet(p: Path) -> Table:
    """A Parquet list (needs pyarrow: ``pip install 'imgstore[parquet]'``)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtraError(
            f"reading the Parquet list {p} needs pyarrow: pip install 'imgstore[parquet]'"
        ) from None
    try:
        table = pq.read_table(p)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise SourceError(f"list file {p} cannot be read as Parquet: {str(exc).splitlines()[0]}") from None
    names = [str(n) for n in table.column_names]
    _header(p, [n.strip() for n in names], 1)
    cells = {name: table.column(i).to_pylist() for i, name in enumerate(names)}
    return Table(names, cells, list(range(1, table.num_rows + 1)), where="row", numbers_in_text=False)


# --------------------------------------------------------------------------------------------- candidates


def list_candidates(list_path: str | os.PathLike[str], table: Table) -> Discovery:
    """The candidates of a list (see the module docstring): in list order, with labels and typed meta values;
    rows that cannot be stored go to ``skipped``."""
    p = Path(list_path)
    folder = os.path.dirname(os.path.abspath(p))
    meta_names = [c for c in table.columns if c not in (PATH, LABEL)]
    typed = [column_values(table.cells[c], table.numbers_in_text) for c in meta_names]
    rows = RowData(LABEL in table.columns, tuple((c, kind) for c, (kind, _) in zip(meta_names, typed)), p.name)
    labels = table.cells.get(LABEL)
    files: list[Candidate] = []
    skipped: list[tuple[str, str]] = []
    # The first listing of each file, by path and by identity (device, inode): the same file listed again under
    # another spelling (absolute and relative, through a symlink or "..") would be stored twice under two names.
    first: dict[object, tuple[int, str]] = {}
    for i, (value, line) in enumerate(zip(table.cells[PATH], table.lines)):
        here = f"{escape_name(p.name)}:{line}"
        name = stored_path(value)
        if name is None:
            skipped.append((here, f"no path in the path column ({table.where} {line} of {p.name})"))
            continue
        key = name if name.startswith("/") else os.path.join(folder, name)
        identity, reason = _file_identity(key)
        seen = first.get(key) or (first.get(identity) if identity is not None else None)
        if seen is not None:
            also = "" if seen[1] == name else f" as {seen[1]}"
            skipped.append((here, f"listed twice: {name} is listed{also} at {table.where} {seen[0]} of {p.name}"))
            continue
        first[key] = (line, name)
        if identity is not None:
            first[identity] = (line, name)
        stored = escape_name(name)
        if reason:
            skipped.append((stored, reason))
            continue
        label = None if labels is None else _label_text(labels[i])
        files.append(Candidate(key, stored, label, tuple(values[i] for _, values in typed)))
    return Discovery(files, skipped, {}, rows)


def stored_path(value: Cell) -> str | None:
    """The stored form of a ``path`` cell (``/``-separated, empty and ``.`` components dropped), or None when the
    cell names no file (empty, ``.``, ``/``)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else _text(value)
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if not parts:
        return None
    return ("/" if text.startswith("/") else "") + "/".join(parts)


def _label_text(value: Cell) -> str | None:
    """A ``label`` cell as label text, or None when empty (a NaN too); an integral float is its integer."""
    if value is None:
        return None
    if isinstance(value, float):  # a JSON or Parquet float: pandas writes an int column with gaps as 1.0, NaN
        if math.isnan(value):
            return None  # empty
        if value.is_integer():
            return str(int(value))
    text = (value if isinstance(value, str) else _text(value)).strip()
    return text or None


def _file_identity(path: str) -> tuple[tuple[int, int] | None, str | None]:
    """The listed file's ``(device, inode)`` (None when it cannot be found) and why it cannot be read as an image
    file (None when it is a regular file)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None, "missing: no such file"
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    identity = (st.st_dev, st.st_ino)
    if stat.S_ISDIR(st.st_mode):
        return identity, "not a file: a folder"
    if not stat.S_ISREG(st.st_mode):
        return identity, "not a regular file"  # a FIFO or a device would block or never end when read
    return identity, None


# ------------------------------------------------------------------------------------------- column types


def column_values(cells: Sequence[Cell], numbers_in_text: bool) -> tuple[str, list[MetaValue]]:
    """A meta column's kind and its values of that kind (see the module docstring for the rule).

    ``numbers_in_text``: the cells are text that may spell numbers (CSV); otherwise numbers are ints and floats
    (JSON, Parquet) and text is text.
    """
    values = [_parse(cell) if numbers_in_text else _typed(cell) for cell in cells]
    present = [v for v in values if v is not None]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    if present and numbers:
        ints = all(isinstance(v, int) for v in present)
        if ints and len(present) == len(values) and all(-(2**63) <= v < 2**63 for v in present):
            return INT, [int(v) for v in present]
        if all(isinstance(v, float) or abs(v) <= EXACT_FLOAT for v in present):
            return FLOAT, [math.nan if v is None else float(v) for v in values]
    # Text: a CSV cell as written; a JSON or Parquet value as its JSON text.
    return TEXT, [_cell_text(cell, numbers_in_text) for cell in cells]


def _parse(cell: Cell) -> Any:
    """A CSV cell as a number when it is written as one, None when empty, else the text."""
    if cell is None or cell == "":
        return None
    text = str(cell)
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def _typed(cell: Cell) -> Any:
    """A JSON or Parquet value: None for empty (null or ""), numbers as they are, anything else as text."""
    if cell is None or cell == "":
        return None
    if isinstance(cell, (int, float)) and not isinstance(cell, bool):
        return cell
    return _text(cell)


def _cell_text(cell: Cell, numbers_in_text: bool) -> str:
    if cell is None:
        return ""
    return str(cell) if numbers_in_text or isinstance(cell, str) else _text(cell)


def _text(value: Any) -> str:
    """A non-text value as text: JSON's spelling (``true``, ``[1, 2]``, ``0.5``); others (dates) as ``str``."""
    if isinstance(value, str):
        return value
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)
    # A lone surrogate inside a JSON list or object is kept as JSON's escape (UTF-8 cannot hold it as written).
    return json.dumps(value) if _unstorable(text) else text

