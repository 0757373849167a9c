"""What makes a store sound, as pure checks over plain facts read from it (:mod:`imgstore.store.verify` reads them).

Each ``check_*`` function takes facts -- attribute values as stored (None when missing), row counts, shapes,
dtypes, names, checksums -- and returns what it finds, in report order: :class:`Problem` (damage or inconsistency)
and :class:`Note` (worth knowing, not damage). None of them reads a file, so each is tested on plain data.

A value a check cannot interpret at all (a ``channels`` attribute that is not a number) raises ``ValueError`` or
``TypeError``; :func:`~imgstore.store.verify.verify_store` reports that as a step that cannot be checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import h5py
import numpy as np

from imgstore.store.format import (
    CHECKSUMS,
    FORMAT_VERSION,
    IMAGE_DATA,
    IMAGE_ENDS,
    IMAGES,
    LABELS,
    NAMES,
    SHA256,
    SHAPES,
    SKIPPED_NAMES,
    SKIPPED_REASONS,
    attr_value,
)


@dataclass(frozen=True)
class Problem:
    """Damage or inconsistency: one line of the report. Of a repeated ``kind`` only the first few are listed."""

    text: str
    kind: str | None = None


@dataclass(frozen=True)
class Note:
    """Worth knowing, not damage: an unfinished ingest, rows past ``count``, an older format."""

    text: str


Finding = Union[Problem, Note]

# Kinds of problem that repeat once per row, file or run: the report lists a few of each, then counts the rest.
UNREADABLE_ROWS = "rows that cannot be read"
LABELS_OUT_OF_RANGE = "labels out of range"
NAMES_UNLIKE_JOURNAL = "names that differ from their journal copy"
DUPLICATED_NAMES = "duplicated names"
NEVER_WRITTEN = "runs of rows never written"
UNUSABLE_SHARDS = "unusable shard files"
CHANGED_RUNS = "runs of changed rows"
MISSING_SOURCES = "files missing from the source folder"
UNREADABLE_SOURCES = "unreadable source files"
CHANGED_SOURCES = "changed source files"
DAMAGED_JOURNAL = "damaged journal batches"
BAD_ENDS = "rows whose ends are out of order"
BAD_SHAPES = "rows of a wrong shape"
UNDECODABLE_ROWS = "rows that do not decode"

_NUMBER_ERRORS = (TypeError, ValueError, OverflowError)


def is_dead_row(row: int, dead: Sequence[tuple[int, int]]) -> bool:
    """True when ``row`` lies in one of the ``[start, stop)`` ranges served by an unusable shard file."""
    return any(a <= row < b for a, b in dead)


def row_runs(rows: Sequence[int]) -> list[tuple[int, int]]:
    """Ascending ``rows`` as runs of consecutive rows, ``(first, last)`` each."""
    if not rows:
        return []
    arr = np.asarray(rows)
    return [(int(run[0]), int(run[-1])) for run in np.split(arr, np.flatnonzero(np.diff(arr) > 1) + 1)]


# ------------------------------------------------------------------------------------------- format, counts


def check_format(path: Path, version: Any, complete: bool) -> list[Finding]:
    """The ``imgstore_format`` attribute (None: missing) names a format this imgstore reads. A problem here means
    nothing else can be judged; an older format and an unfinished ingest are notes."""
    if version is None:
        return [Problem(f"{path} is an HDF5 file but not an imgstore store (no imgstore_format attribute)")]
    try:
        number = int(version)
    except _NUMBER_ERRORS:
        return [Problem(f"imgstore_format attribute {version!r} is not a version number")]
    if number > FORMAT_VERSION:
        return [Problem(f"store format version {number} is newer than this imgstore reads ({FORMAT_VERSION}): upgrade imgstore")]
    found: list[Finding] = []
    if number < 2:
        found.append(Note(
            f"store format {number} carries no row checksums: changed pixels cannot be detected "
            "(an --append or --resume upgrades the store)"
        ))  # fmt: skip
    if not complete:
        found.append(Note("ingest did not finish (complete is false); imgstore ingest --resume continues it"))
    return found


@dataclass(frozen=True)
class RowObject:
    """What the file holds under the name of a per-row dataset: its kind ("Dataset", "Group", ...), shape, dtype."""

    name: str
    kind: str = "Dataset"
    shape: tuple[int, ...] | None = None
    dtype: np.dtype | None = None


# Per-row dataset -> (what it must be, test of dtype and shape).
ROW_LAYOUTS: dict[str, tuple[str, Callable[[np.dtype, tuple[int, ...]], bool]]] = {
    IMAGES: ("uint8 (N, H, W, C)", lambda dt, shape: dt == np.uint8 and len(shape) == 4),
    IMAGE_ENDS: ("1-D int64", lambda dt, shape: dt == np.int64 and len(shape) == 1),
    SHAPES: ("uint32 (N, 3)", lambda dt, shape: dt == np.uint32 and shape[1:] == (3,)),
    NAMES: ("1-D strings", lambda dt, shape: len(shape) == 1 and h5py.check_string_dtype(dt) is not None),
    LABELS: ("1-D integers", lambda dt, shape: len(shape) == 1 and dt.kind in "iu"),
    SHA256: ("uint8 (N, 32)", lambda dt, shape: dt == np.uint8 and shape[1:] == (32,)),
    CHECKSUMS: ("1-D uint32", lambda dt, shape: dt == np.uint32 and len(shape) == 1),
}


# A meta column (``meta/<column>``): numbers or text, one per row.
META_LAYOUT: tuple[str, Callable[[np.dtype, tuple[int, ...]], bool]] = (
    "1-D int64, float64 or strings",
    lambda dt, shape: len(shape) == 1 and (dt in (np.int64, np.float64) or h5py.check_string_dtype(dt) is not None),
)


def check_row_dataset(obj: RowObject) -> list[Problem]:
    """A per-row dataset is a dataset of at least one dimension with its name's dtype and shape (a meta column's:
    :data:`META_LAYOUT`); one that is not is left out of every other check."""
    if obj.kind != "Dataset" or obj.shape is None or len(obj.shape) < 1:
        return [Problem(f"{obj.name} is not a per-row dataset ({obj.kind}, shape {obj.shape})")]
    want, fits = ROW_LAYOUTS.get(obj.name, META_LAYOUT)
    if obj.dtype is None or not fits(obj.dtype, obj.shape):
        return [Problem(f"{obj.name} must be {want}, found {obj.dtype} {obj.shape}")]
    return []


@dataclass(frozen=True)
class CountFacts:
    """The per-row objects present (in ``ROW_DATASETS`` order), the ``count`` attribute (None: missing) and whether
    the names are read from the journal (an incomplete store with one: its string dataset is not judged)."""

    objects: tuple[RowObject, ...]
    count: Any
    names_from_journal: bool = False
    meta_from_journal: tuple[str, ...] = ()  # text meta columns read from their journals (same reason)
    flat: bool = False  # format 4: rows are bytes in image_data, indexed by image_ends and shapes

    @property
    def row_key(self) -> str:
        """The per-row dataset that holds one entry per image: ``images``, or ``image_ends`` in a flat store."""
        return IMAGE_ENDS if self.flat else IMAGES


@dataclass(frozen=True)
class RowPlan:
    """Which rows the rest of the checks read: ``committed`` (what ``count`` says), ``checked`` (the committed rows
    every usable per-row dataset holds) and the ``usable`` per-row datasets."""

    committed: int
    checked: int
    usable: tuple[str, ...]


def count_attribute(value: Any, image_rows: int) -> tuple[int, list[Problem]]:
    """The rows the ``count`` attribute commits, and what is wrong with it: a missing or unreadable count stands
    for the image rows, a negative one for none."""
    if value is None:
        return image_rows, [Problem(f"count attribute is missing, so readers see no images (images has {image_rows} rows)")]
    try:
        count = int(value)
    except _NUMBER_ERRORS:
        return image_rows, [Problem(f"count attribute {value!r} is not a number")]
    if count < 0:
        return 0, [Problem(f"count attribute is negative ({count})")]
    return count, []


def _usable_rows(facts: CountFacts) -> dict[str, int]:
    """Rows of each usable per-row dataset, the names left out when the journal stands in for them."""
    rows = {obj.name: int(obj.shape[0]) for obj in facts.objects if obj.shape and not check_row_dataset(obj)}
    if facts.names_from_journal:
        rows.pop(NAMES, None)
    for key in facts.meta_from_journal:
        rows.pop(key, None)
    return rows


def row_plan(facts: CountFacts) -> RowPlan:
    """The rows to check: those committed that every usable per-row dataset holds."""
    rows = _usable_rows(facts)
    committed, _ = count_attribute(facts.count, rows.get(facts.row_key, 0))
    return RowPlan(committed, min([committed, *rows.values()]), tuple(rows))


def check_counts(facts: CountFacts) -> list[Finding]:
    """``count`` is at most the rows of every per-row dataset; images (a flat store's ``image_ends`` and
    ``shapes``) and names exist; rows past ``count`` are a note. (Each object's own dtype and shape are :func:`check_row_dataset`'s.)"""
    rows = _usable_rows(facts)
    present = {obj.name: obj for obj in facts.objects}
    key = facts.row_key
    count, problems = count_attribute(facts.count, rows.get(key, 0))
    found: list[Finding] = [*problems]
    if facts.flat:
        lacking = [name for name in (IMAGE_ENDS, SHAPES) if name not in present]
        if lacking:
            found.append(Problem(f"the store keeps flat rows ({IMAGE_DATA}) but {' and '.join(lacking)} "
                                 f"{'is' if len(lacking) == 1 else 'are'} missing: its rows cannot be found"))  # fmt: skip
    elif IMAGES not in present:
        found.append(Problem(f"count is {count} but the store has no images dataset") if count > 0
                     else Note("the store holds no images"))  # fmt: skip
    names = present.get(NAMES)
    if facts.names_from_journal and names is not None and not check_row_dataset(names):
        n = int(names.shape[0])  # type: ignore[index]
        if n < count:
            found.append(Note(f"image_names has {n} rows but count is {count}: readers use the journal, the next write rebuilds it"))
    elif names is None and key in rows and not facts.names_from_journal:
        found.append(Problem(f"image_names is missing ({key} has {rows[key]} rows)"))
    for key in facts.meta_from_journal:
        obj = present.get(key)
        if obj is not None and not check_row_dataset(obj) and int(obj.shape[0]) < count:  # type: ignore[index]
            found.append(Note(f"{key} has {int(obj.shape[0])} rows but count is {count}: readers use the journal, the next write rebuilds it"))  # type: ignore[index]
    short = {name: n for name, n in rows.items() if n < count}
    found += [Problem(f"{name} has {n} rows but count is {count}") for name, n in short.items()]
    extra = {name: n for name, n in rows.items() if n > count}
    if extra and not short:
        detail = ", ".join(f"{name} {n}" for name, n in extra.items())
        found.append(Note(
            f"rows past count {count} ({detail}) are leftovers of an interrupted write: "
            "readers ignore them and the next write trims them"
        ))  # fmt: skip
    return found


# ------------------------------------------------------------------------------------------ attributes, labels


def check_geometry(image_shape: tuple[int, ...], size: Any) -> list[Problem]:
    """The images have 1 or 3 channels, and the ``size`` attribute (None: missing) is their [width, height]."""
    _, h, w, c = image_shape
    found = []
    if c not in (1, 3):
        found.append(Problem(f"images have {c} channels: a store holds 3 (RGB) or 1 (grayscale)"))
    if size is None:
        found.append(Problem(f"size attribute is missing (images are {w}x{h})"))
    elif (said := np.asarray(size).ravel().tolist()) != [w, h]:
        found.append(Problem(f"size attribute says {said} (width, height) but images are {w}x{h}"))
    return found


def check_channels(image_shape: tuple[int, ...], channels: Any) -> list[Problem]:
    """The ``channels`` attribute (None: missing) is the images' channel count."""
    c = image_shape[-1]
    if channels is None:
        return [Problem(f"channels attribute is missing (images have {c})")]
    if int(np.asarray(channels).ravel()[0]) != c:
        return [Problem(f"channels attribute says {channels} but images have {c}")]
    return []


# --------------------------------------------------------------------------------------------- flat rows


def check_flat_attrs(version: int, data: RowObject | None, encoding: Any, variable: Any, parsed: str | None) -> list[Problem]:
    """A flat store (format 4, or any store with ``image_data``): ``image_data`` is uint8 1-D, and the
    ``encoding`` attribute (None: missing) names a registered encoding (``parsed``: its canonical text, None when it
    does not parse); ``variable_shape`` is recorded. A format-4 store without ``image_data`` has no rows to read."""
    if data is None:
        return [Problem(f"store format {version} keeps its rows in {IMAGE_DATA}, which is missing")] if version >= 4 else []
    found = []
    if data.kind != "Dataset" or data.dtype != np.uint8 or data.shape is None or len(data.shape) != 1:
        found.append(Problem(f"{IMAGE_DATA} must be 1-D uint8 bytes, found {data.kind} {data.dtype} {data.shape}"))
    if version < 4:
        found.append(Problem(f"the store holds {IMAGE_DATA} (flat rows) but says it is format {version}, not 4"))
    if encoding is None:
        found.append(Problem(f"encoding attribute is missing: the bytes of {IMAGE_DATA} cannot be decoded"))
    elif parsed is None:
        found.append(Problem(f"encoding attribute {encoding!r} is not an encoding this imgstore knows"))
    if variable is None:
        found.append(Problem("variable_shape attribute is missing (whether rows have their own shapes)"))
    return found


def check_flat_size(variable: Any, size: Any) -> list[Problem]:
    """A flat store of one shape (``variable_shape`` false) takes its rows' H and W (its ``shape``) from its
    ``size`` attribute, [W, H] of at least one pixel each; a store of rows of their own shapes does not need it."""
    if variable is None or bool(np.asarray(variable).ravel()[0]):
        return []
    try:
        w, h = (int(v) for v in np.asarray(size).ravel())
    except (TypeError, ValueError):
        w = h = 0
    if w >= 1 and h >= 1:
        return []
    what = "missing" if size is None else f"{attr_value(size)!r}, not [W, H]"
    return [Problem(f"size attribute is {what}: the images of this store of one shape take their height and width from it")]


def check_row_ends(start: int, before: int, ends: np.ndarray, data_bytes: int) -> list[Problem]:
    """Rows ``start, start + 1, ...`` end (``ends``) at or after the end of the row before (``before``; 0 for row
    0) and within the ``data_bytes`` bytes of ``image_data``: one problem per row that does not."""
    prev = np.concatenate(([before], ends[:-1])).astype(np.int64)
    bad = np.flatnonzero((ends < prev) | (ends > data_bytes))
    found = []
    for j in bad.tolist():
        e, p = int(ends[j]), int(prev[j])
        why = f"past the {data_bytes} bytes of {IMAGE_DATA}" if e > data_bytes else f"before the row before it ({p})"
        found.append(Problem(f"{IMAGE_ENDS} row {start + j} ends at byte {e}, {why}", BAD_ENDS))
    return found


def check_shapes(
    start: int, shapes: np.ndarray, channels: Any, size: Any, variable: bool, dead: Sequence[tuple[int, int]] = ()
) -> list[Problem]:
    """Rows ``start, start + 1, ...`` have shapes ``(H, W, C)`` of at least one pixel with the ``channels``
    attribute's C; in a store of one shape (``variable`` false) every row is the ``size`` attribute's [W, H]. Rows
    served by an unusable shard file (``dead``) read as zeros: already one problem for their file."""
    if not shapes.size:
        return []
    ok = (shapes[:, 0] >= 1) & (shapes[:, 1] >= 1)
    want = ""
    if channels is not None:
        c = int(np.asarray(channels).ravel()[0])
        ok &= shapes[:, 2] == c
        want = f"{c} channels"
    if not variable and size is not None:
        w, h = (int(v) for v in np.asarray(size).ravel()[:2])
        ok &= (shapes[:, 0] == h) & (shapes[:, 1] == w)
        want = f"{h}x{w}x{c}" if channels is not None else f"{h}x{w}"
    found = []
    for j in np.flatnonzero(~ok).tolist():
        if is_dead_row(start + j, dead):
            continue
        h, w, c = (int(v) for v in shapes[j])
        found.append(Problem(f"{SHAPES} row {start + j} is {h}x{w}x{c} (H, W, C) but the store holds {want or 'images'}", BAD_SHAPES))
    return found


def check_raw_lengths(
    start: int, lengths: np.ndarray, shapes: np.ndarray, dead: Sequence[tuple[int, int]] = ()
) -> list[Problem]:
    """Rows of raw pixels (``encoding`` none) hold exactly H * W * C bytes each. Rows served by an unusable shard
    file (``dead``) read as zeros: already one problem for their file."""
    want = shapes.astype(object).prod(axis=1)  # Python ints: H * W * C of a damaged shape overflows int64
    return [
        Problem(f"row {start + j} holds {int(lengths[j])} bytes, not the {int(want[j])} of its shape", UNDECODABLE_ROWS)
        for j in np.flatnonzero(lengths != want).tolist()
        if not is_dead_row(start + j, dead)
    ]


def check_decoded(row: int, name: str | None, error: str | None) -> list[Problem]:
    """A flat row whose stored bytes do not decode (``error``: why; None when they do)."""
    if error is None:
        return []
    return [Problem(f"row {row}{f' ({name})' if name else ''} does not decode: {error}", UNDECODABLE_ROWS)]


def class_count(class_names: Any) -> int:
    """How many classes the ``class_names`` attribute names."""
    return len(np.asarray(class_names).ravel())


def check_labels(start: int, labels: np.ndarray, classes: int) -> list[Problem]:
    """Rows ``start, start + 1, ...`` hold labels within ``0 .. classes - 1``."""
    return [
        Problem(
            f"labels row {start + j} is {int(labels[j])}, outside 0..{classes - 1} (class_names has {classes} names)",
            LABELS_OUT_OF_RANGE,
        )
        for j in np.flatnonzero((labels < 0) | (labels >= classes))
    ]


# ------------------------------------------------------------------------------------------------- storage


@dataclass(frozen=True)
class ChunkFacts:
    """Which blocks of a chunked dataset's committed rows have data on disk (a chunk never written reads as the
    fill value without any error). A block is ``chunk_rows`` rows, covered by ``chunks_per_block`` chunks;
    ``stored`` counts the chunks on disk per block, or is None when only their ``total`` is known (HDF5 < 1.14)."""

    name: str
    rows: int
    chunk_rows: int
    chunks_per_block: int
    stored: np.ndarray | None
    total: int = 0
    unit: str = "row"  # what ``rows`` counts: rows, or bytes (image_data)


def check_chunks(facts: ChunkFacts) -> list[Problem]:
    """Every committed row of a chunked dataset is stored on disk: one problem per run of rows never written."""
    c0, blocks = facts.chunk_rows, -(-facts.rows // facts.chunk_rows)
    if facts.stored is None:
        if facts.total < blocks * facts.chunks_per_block:
            return [Problem(f"{facts.name} stores only {facts.total} chunks for {facts.rows} committed {facts.unit}s")]
        return []
    missing = np.flatnonzero(facts.stored < facts.chunks_per_block).tolist()
    found = []
    for first, last in row_runs(missing):
        a, b = first * c0, min((last + 1) * c0, facts.rows)
        where = f"{facts.unit} {a} was" if b - a == 1 else f"{facts.unit}s {a}-{b - 1} were"
        found.append(Problem(f"{facts.name} {where} never written (no data on disk; reads give zeros)", NEVER_WRITTEN))
    return found


@dataclass(frozen=True)
class VirtualMapping:
    """One source of a virtual (merged) dataset: ``file`` ("." for the store itself) feeds rows ``rows`` (first and
    last; None when unreadable) of ``dataset`` from its dataset ``source``."""

    dataset: str
    file: str
    source: str
    rows: tuple[int, int] | None


def _uses(mappings: Iterable[VirtualMapping]) -> dict[str, dict[str, list[tuple[int, int] | None]]]:
    """file -> dataset -> the row ranges it feeds, in the order met."""
    uses: dict[str, dict[str, list[tuple[int, int] | None]]] = {}
    for m in mappings:
        uses.setdefault(m.file, {}).setdefault(m.dataset, []).append(m.rows)
    return uses


def check_virtual_sources(
    mappings: Sequence[VirtualMapping], trouble: Mapping[str, str | None], images_virtual: bool, images: str = IMAGES
) -> list[Finding]:
    """Every file virtual datasets read from is usable (``trouble``: file -> what is wrong with it, or None); a
    missing one reads as zeros. One problem per unusable file, naming the rows of the first dataset it feeds.
    ``images``: the dataset holding the rows (``image_data`` in a flat store)."""
    uses = _uses(mappings)
    if not uses:
        return []
    found: list[Finding] = []
    if images_virtual:
        shards = sum(1 for u in uses.values() if images in u)
        found.append(Note(f"{images} is a merged (virtual) dataset over {shards} file(s)"))
    for file, by_dataset in uses.items():
        why = trouble.get(file)
        if why is None:
            continue
        first, spans = next(iter(by_dataset.items()))
        ranges = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in filter(None, spans)) or "some"
        others = [d for d in by_dataset if d != first]
        also = f" (and rows of {', '.join(others)})" if others else ""
        found.append(Problem(f"{first} rows {ranges}{also} come from {file}, which {why}: they read as zeros", UNUSABLE_SHARDS))
    return found


def dead_name_rows(mappings: Sequence[VirtualMapping], trouble: Mapping[str, str | None]) -> list[tuple[int, int]]:
    """The ``[start, stop)`` row ranges of ``image_names`` served by unusable files: those rows read as empty names
    and zeros, already one problem for their file, so they are not judged again row by row."""
    return [(m.rows[0], m.rows[1] + 1) for m in mappings
            if m.dataset == NAMES and m.rows is not None and trouble.get(m.file) is not None]  # fmt: skip


# ---------------------------------------------------------------------------------------- journal, skipped


def skipped_count(value: Any, names_rows: int) -> int:
    """The skipped records committed: the ``skipped_count`` attribute (None: missing, then the rows of
    ``skipped_names``, as in older stores); one that is not a number counts none."""
    if value is None:
        return names_rows
    try:
        return int(value)
    except _NUMBER_ERRORS:
        return 0


def check_journal(committed: Mapping[str, int], journaled: Mapping[str, int]) -> list[Problem]:
    """Each journaled text column (``journaled``: column -> rows in its journal) holds its committed rows."""
    return [
        Problem(f"the journal of {key} has {journaled[key]} rows but {n} are committed")
        for key, n in committed.items()
        if key in journaled and journaled[key] < n
    ]


def check_skipped(rows: Mapping[str, int], count: Any) -> list[Problem]:
    """The skipped lists (``rows``: list -> rows, of those present) exist together and hold ``skipped_count`` rows
    (``count``, the attribute; None: missing, then they must pair up, as in older stores)."""
    have = [k for k in (SKIPPED_NAMES, SKIPPED_REASONS) if k in rows]
    if len(have) == 1:
        lacking = SKIPPED_REASONS if have[0] == SKIPPED_NAMES else SKIPPED_NAMES
        return [Problem(f"{have[0]} exists without {lacking}")]
    if not have:
        return []
    if count is None:
        if rows[SKIPPED_NAMES] != rows[SKIPPED_REASONS]:
            return [Problem(f"skipped_names has {rows[SKIPPED_NAMES]} rows but skipped_reasons has {rows[SKIPPED_REASONS]}")]
        return []
    n = skipped_count(count, rows[SKIPPED_NAMES])
    return [Problem(f"{k} has {rows[k]} rows but skipped_count is {n}") for k in have if rows[k] < n]


# --------------------------------------------------------------------------------------------------- names


def check_journal_copy(start: int, names: Sequence[str], copy: Sequence[str], column: str = NAMES) -> list[Problem]:
    """Rows ``start, start + 1, ...`` of the text column ``column`` (``image_names``, or a text meta column) agree
    with their journal copy."""
    return [
        Problem(f"{column} row {start + j} is {x!r} but its journal copy says {y!r}", NAMES_UNLIKE_JOURNAL)
        for j, (x, y) in enumerate(zip(names, copy))
        if x != y
    ]


def duplicate_candidates(hashes: np.ndarray, dead: Sequence[tuple[int, int]] = ()) -> list[int]:
    """Rows whose name hash another row shares (the duplicates, and any hash collisions), ascending; rows served by
    an unusable shard file are left out. A 64-bit hash per row keeps the search within bounded memory."""
    if hashes.size < 2:
        return []
    order = np.argsort(hashes, kind="stable")
    same = hashes[order[1:]] == hashes[order[:-1]]
    if not same.any():
        return []
    rows = np.unique(np.concatenate([order[1:][same], order[:-1][same]])).tolist()
    return [i for i in rows if not is_dead_row(i, dead)]


def check_meta_columns(listed: Sequence[str], present: Sequence[str], extra: Sequence[str]) -> list[Problem]:
    """Every column the ``meta_columns`` attribute lists has its dataset (``present``: those that do), and every
    dataset in ``meta/`` is listed (``extra``: those that are not)."""
    found = [Problem(f"meta column {c!r} is listed in meta_columns but its dataset is missing") for c in listed if c not in present]
    found += [Problem(f"meta/{key} is not listed in meta_columns: readers do not see it") for key in extra]
    return found


def check_duplicates(named: Iterable[tuple[int, str]]) -> list[Problem]:
    """Names are unique: ``named`` gives ``(row, name)`` in row order; each repeated name is one problem."""
    groups: dict[str, list[int]] = {}
    for row, name in named:
        groups.setdefault(name, []).append(row)
    found = []
    for text, where in groups.items():
        if len(where) > 1:
            shown = ", ".join(str(i) for i in where[:5]) + (", ..." if len(where) > 5 else "")
            found.append(Problem(f"name {text!r} appears {len(where)} times (rows {shown})", DUPLICATED_NAMES))
    return found


# ----------------------------------------------------------------------------------------------- checksums


def check_checksums_present(present: bool, version: int, rows: int) -> list[Problem]:
    """A store of format 2 or later carries a checksum for each of its rows."""
    if present or version < 2 or not rows:
        return []
    return [Problem(f"checksums is missing: the {rows} rows cannot be checked for changed bytes")]


def changed_rows(
    start: int, computed: np.ndarray, stored: np.ndarray, dead: Sequence[tuple[int, int]] = ()
) -> list[int]:
    """Rows ``start, start + 1, ...`` whose recomputed checksum differs from the stored one. Rows served by an
    unusable shard file read as zeros: already one problem, not a change of each row."""
    changed = (start + int(j) for j in np.flatnonzero(np.asarray(computed) != np.asarray(stored)))
    return [i for i in changed if not is_dead_row(i, dead)]


def check_changed_rows(rows: Sequence[int], names: Mapping[int, str] | None = None) -> list[Problem]:
    """One problem per run of consecutive rows (ascending) whose bytes changed; a single row is named by its
    ``names`` entry when there is one."""
    found = []
    for a, b in row_runs(rows):
        name = (names or {}).get(a) if a == b else None
        where = (f"row {a} ({name})" if name else f"row {a}") if a == b else f"rows {a}-{b}"
        found.append(Problem(f"{where} changed since written: the stored bytes do not match the checksum", CHANGED_RUNS))
    return found


# ------------------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class SourceFile:
    """What the source folder holds for a row's name: ``state`` is "found", "missing", "not a file" or "unreadable"
    (then ``error`` says why); ``digest`` is its SHA-256 when it was hashed."""

    name: str
    state: str
    digest: bytes | None = None
    error: str = ""


def check_digests_recorded(recorded: bool) -> list[Note]:
    """Without stored digests, ``--sources`` can only check that each file exists."""
    return [] if recorded else [Note("the store records no SHA-256 digests: --sources checked only that each file exists")]


def check_source_file(folder: Path, file: SourceFile, stored: bytes | None) -> list[Problem]:
    """A row's source file is in ``folder`` and, when the store records its digest (``stored``), unchanged."""
    if file.state in ("missing", "not a file"):
        what = "is missing from" if file.state == "missing" else "is not a file in"
        return [Problem(f"{file.name} {what} {folder}", MISSING_SOURCES)]
    if file.state == "unreadable":
        return [Problem(f"{file.name} cannot be read from {folder}: {file.error}", UNREADABLE_SOURCES)]
    if stored is not None and file.digest != stored:
        return [Problem(f"{file.name} changed since ingest (sha256 differs)", CHANGED_SOURCES)]
    return []
