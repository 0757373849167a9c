"""``imgstore verify``: is a store sound? :func:`verify_store` reads it whole, in bounded batches, and reports.

It returns a :class:`VerifyReport`: ``problems`` (the store is damaged or inconsistent), ``notes`` (worth knowing,
not damage: an unfinished ingest, rows past ``count`` left by an interrupted write) and ``changed_rows`` (every
row whose bytes no longer match the checksum written with it). With ``sources`` it also hashes every row's source
file again. A store so damaged that a step cannot run gets a problem naming that step and the error, never a
traceback.

What counts as sound is in :mod:`imgstore.store.checks`: pure ``check_*`` functions over plain facts. This module
is the HDF5 side: it reads each check's facts (attributes, shapes, dtypes, row batches, source files), guarding
every read, and lists what the checks find.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from imgstore.errors import BadImageError, OptionError, SourceError, os_cause
from imgstore.options import default_extensions, resolve_path
from imgstore.progress import ProgressLike, started
from imgstore.sources import Source, open_source, release
from imgstore.sources.archive import with_archives
from imgstore.sources.folder import FolderSource
from imgstore.store.checks import (
    DAMAGED_JOURNAL,
    UNREADABLE_ROWS,
    ChunkFacts,
    CountFacts,
    Finding,
    Note,
    Problem,
    RowObject,
    RowPlan,
    SourceFile,
    VirtualMapping,
    changed_rows,
    check_changed_rows,
    check_channels,
    check_checksums_present,
    check_chunks,
    check_counts,
    check_decoded,
    check_digests_recorded,
    check_duplicates,
    check_flat_attrs,
    check_flat_size,
    check_format,
    check_geometry,
    check_journal,
    check_journal_copy,
    check_labels,
    check_meta_columns,
    check_raw_lengths,
    check_row_dataset,
    check_row_ends,
    check_shapes,
    check_skipped,
    check_source_file,
    check_virtual_sources,
    class_count,
    dead_name_rows,
    duplicate_candidates,
    is_dead_row,
    row_plan,
    skipped_count,
)
from imgstore.store.encoding import Encoding, flat_crc, parse_encoding
from imgstore.store.file import flat_spans
from imgstore.store.format import (
    CHECKSUMS,
    ENCODING,
    IMAGE_DATA,
    IMAGE_ENDS,
    IMAGES,
    JOURNAL,
    LABELS,
    NAMES,
    ROW_DATASETS,
    SHA256,
    SHAPES,
    SKIPPED_NAMES,
    SKIPPED_REASONS,
    VARIABLE,
    TextJournal,
    format_version,
    has_journal,
    open_read,
    row_checksums,
    texts,
)
from imgstore.store.meta import META, META_COLUMNS, TEXT, kind_of, meta_column, meta_key, meta_path, rows_meta_bytes
from imgstore.store.reader import check_store_path, read_root_attrs

# Stored rows are read about this many bytes at a time, which bounds the memory verify needs.
BATCH_BYTES = 16 * 2**20
# Rows of names, labels and digests read at a time.
TEXT_BATCH = 16384
# Of each kind of repeated problem (unreadable rows, changed files, ...) this many are listed, then a count.
MAX_LISTED = 20
# Consecutive rows that cannot be read before verify stops trying the rest of their batch one by one.
MAX_FAILED_READS = 3

_READ_ERRORS = (OSError, RuntimeError, ValueError, KeyError, TypeError, IndexError, OverflowError)
# Rows of changed bytes whose names the report keeps (a single changed row is shown with its name).
MAX_NAMED = 1000


@dataclass
class VerifyReport:
    """What :func:`verify_store` found.

    ``problems``: damage or inconsistency, one line each (the store is not sound). ``notes``: worth knowing but not
    damage. ``checked``: committed images whose pixels (a flat store's stored bytes) were read back without error. ``changed_rows``: every row
    whose bytes no longer match the checksum written with it. ``ok`` is true when there is no problem.
    """

    path: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unlisted: int = 0  # problems past the per-kind listing cap, summarised by "... and N more" lines
    checked: int = 0
    changed_rows: list[int] = field(default_factory=list)  # every row whose checksum does not match, in order

    @property
    def problem_count(self) -> int:
        """How many problems were found, counting those only summarised past the listing cap."""
        return len(self.problems) + self.unlisted

    @property
    def ok(self) -> bool:
        """True when no problem was found (notes do not count)."""
        return not self.problems


def verify_store(
    path: str | os.PathLike[str],
    *,
    sources: str | os.PathLike[str] | None = None,
    decode: bool = False,
    progress: ProgressLike = None,
) -> VerifyReport:
    """Check the store at ``path`` and return a :class:`VerifyReport`; it never raises for a damaged store.

    Checks: the file is an HDF5 imgstore store of a known format version; ``count`` is at most the rows of every
    per-row dataset (``images``, ``image_names``, ``labels``, ``sha256``, ``checksums``); their dtypes and shapes;
    every committed row against its checksum (pixels, label, digest and name; format 2); the ``size`` and
    ``channels`` attributes against the images; labels within ``class_names``; names unique; every committed row of
    every per-row dataset stored on disk (a chunk that was never written reads as zeros without error) and every
    committed image readable; the skipped lists hold ``skipped_count`` rows (or pair up, in older stores); the
    crash-safe ``_journal`` copies of the text columns hold their committed rows and, in a complete store, agree
    with ``image_names``; the files behind virtual (merged) datasets present and holding their datasets (a missing
    one reads as zeros without error); every meta column listed in ``meta_columns`` present, per-row like the others
    and (text) agreeing with its journal copy in a complete store. With ``sources`` (what the store was ingested
    from: a folder, an archive or a list file), every row's file must exist there and, when the store records
    digests, hash to the stored SHA-256; files in ``sources`` that are not in the store are not problems (they may
    have been skipped). A folder or a list names each row's file (``path_of``) and is looked up row by row; any other
    source (an archive, or a folder ingested with ``--archives``: the store's recorded options say) is scanned once
    with the store's extensions and its files read through it.

    Names are judged as readers see them: an incomplete store's from its journal (its string dataset may have been
    left unreadable by a crash and is rebuilt by the next write, so that dataset is not judged). Rows past
    ``count`` and an unfinished ingest (``complete`` false) are notes, not problems: readers ignore such rows and
    the next write trims them. Repeated problems of one kind are listed up to ``MAX_LISTED`` times, then counted in
    one more line. ``progress`` gets row increments (a callable, or a tqdm-like object whose ``total`` is set).
    Memory stays bounded: images are read about ``BATCH_BYTES`` at a time, text ``TEXT_BATCH`` rows at a time, and
    the duplicate search keeps 8 bytes per row.

    Flat stores (format 4: ``image_data``, ``image_ends``, ``shapes``): the three datasets present with their dtypes,
    ``encoding`` and ``variable_shape`` recorded, every committed row ending after the row before it and within
    ``image_data``, every row's shape of the store's channels (and, in a store of one shape, its ``size``), raw rows
    (``encoding`` none) exactly H * W * C bytes, and each row's checksum recomputed from its shape and stored bytes
    (:func:`~imgstore.store.encoding.flat_crc`): any byte changed since it was written is found without decoding.
    ``decode=True`` also decodes every encoded row and reports those that do not decode to their
    shape: bytes that were bad before their checksum was computed. It costs the decode, so it is not the default:
    measured on 1000 rows of 256x341 (JPEG q90, 2-core VM), 0.06 ms a row with checksums, 0.93 ms decoding too (a
    raw fixed-shape store of the same rows: 0.34 ms, its pixels being 10 times the bytes). ``sources`` checks the same for every format: the files
    are there and hash to the stored SHA-256; the rows are never compared with a new decode of the files (a lossy
    encoding, or another decoder release, gives other pixels for an unchanged file).

    Raises :class:`~imgstore.errors.StoreError` when ``path`` does not exist or is a folder, and
    :class:`~imgstore.errors.SourceError` when ``sources`` is not a folder, an archive or a list file.
    """
    p = _store_file(path)
    src = None if sources is None else _files_of(sources)
    report = VerifyReport(p)
    if not h5py.is_hdf5(p):
        report.problems.append(f"{p} is not an HDF5 file (not a store made by imgstore ingest)")
        return report
    try:
        f = open_read(p)
    except OSError as exc:
        report.problems.append(f"{p} cannot be opened as an HDF5 file: {os_cause(exc)} (its metadata is damaged)")
        return report
    with f:
        try:
            run = _Run(f, p, src, report, progress, decode)
        except _READ_ERRORS as exc:
            report.problems.append(f"the root attributes of {p} cannot be read: {os_cause(exc)} (its metadata is damaged)")
            return report
        run.run()
    return report


def _files_of(sources: str | os.PathLike[str] | Source) -> Source:
    """The source ``--sources`` names (:func:`~imgstore.sources.open_source`), refused unless it exists."""
    source = open_source(sources if isinstance(sources, Source) else resolve_path(sources))
    if isinstance(source, FolderSource) and not os.path.isdir(source.root):
        raise SourceError(
            f"source {source.root} does not exist or is not a folder, an archive or a list file: give the folder, "
            "archive or list file the store was ingested from"
        )
    label = getattr(source, "path", None)
    if label is not None and not os.path.isfile(label):
        raise SourceError(f"list file {label} does not exist: give the list file the store was ingested from")
    return source


def _store_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a ``Path``. Nothing there, or a folder, raises the reader's :class:`StoreError`; a file that is
    not HDF5 is not an error here but a problem in the report."""
    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.exists() or p.is_dir():
        check_store_path(p)  # raises the StoreError that says what is there
    return p


class _Listing:
    """Puts what the checks find into the report: notes, and problems of each repeated kind up to ``MAX_LISTED``."""

    def __init__(self, report: VerifyReport) -> None:
        self.report = report
        self.seen: dict[str, int] = {}  # kind -> problems of that kind found

    def add(self, found: Iterable[Finding]) -> None:
        for item in found:
            if isinstance(item, Note):
                self.report.notes.append(item.text)
                continue
            if item.kind is not None:
                seen = self.seen[item.kind] = self.seen.get(item.kind, 0) + 1
                if seen > MAX_LISTED:
                    continue
            self.report.problems.append(item.text)

    def close(self) -> None:
        """One line per capped kind counting the problems not listed."""
        for kind, seen in self.seen.items():
            if seen > MAX_LISTED:
                self.report.problems.append(f"... and {seen - MAX_LISTED} more {kind}")
                self.report.unlisted += seen - MAX_LISTED - 1  # the summary line itself counts as one


class _Rows:
    """Reads batches of rows; a row that cannot be read is listed as a problem instead of raising.

    A batch that fails is tried row by row to name the bad rows, but a damaged store can take seconds per failing
    read: after ``MAX_FAILED_READS`` failures in a row the rest of the batch is reported as one range, and a batch
    that failed once is not read again by a later check.
    """

    def __init__(self, listing: _Listing) -> None:
        self.listing = listing
        self.failed: set[tuple[str, int, int]] = set()  # (dataset, start, stop) batches that could not be read

    def read(self, name: str, ds: h5py.Dataset, a: int, b: int) -> np.ndarray | None:
        """Rows ``a:b`` of ``ds``, or None after listing the rows that cannot be read."""
        if (name, a, b) in self.failed:
            return None
        try:
            return ds[a:b]
        except _READ_ERRORS:
            self.failed.add((name, a, b))
        streak = 0
        for i in range(a, b):
            if self.readable(name, ds, i):
                streak = 0
                continue
            streak += 1
            if streak >= MAX_FAILED_READS and i + 1 < b:
                rest = f"row {i + 1} was" if i + 2 == b else f"rows {i + 1}-{b - 1} were"
                self.listing.add([Problem(f"{name} {rest} not tried: the rows before them cannot be read")])
                break
        return None

    def readable(self, name: str, ds: h5py.Dataset, i: int) -> bool:
        """True when row ``i`` reads; else lists it as a row that cannot be read."""
        try:
            ds[i]
        except _READ_ERRORS as exc:
            self.listing.add([Problem(f"{name} row {i} cannot be read: {os_cause(exc)}", UNREADABLE_ROWS)])
            return False
        return True


class _Run:
    """One verification of an open store: each step reads its facts, runs its checks and lists what they find."""

    def __init__(
        self, f: h5py.File, path: Path, src: Source | None, report: VerifyReport, progress: ProgressLike, decode: bool = False
    ) -> None:
        self.f, self.path, self.src, self.report, self.progress = f, path, src, report, progress
        self.decode = decode
        self.flat = _is_flat(f)  # rows are bytes in image_data (format 4)
        self.encoding: Encoding | None = None  # a flat store's, once its attributes check out
        self.changed_names: dict[int, str] = {}  # names of the first changed rows, for the report
        self.listing = _Listing(report)
        self.rows = _Rows(self.listing)
        self.tick: Callable[[int], None] = lambda n: None
        self.complete = bool(f.attrs.get("complete", False))
        self.version = 0  # the store format, once check_format accepts it
        # An incomplete store's names come from the journal (as imgstore.open reads them); its string dataset may
        # have been left unreadable by a crash and is rebuilt by the next write, so it is not judged.
        self.names_from_journal = not self.complete and has_journal(f, NAMES)
        self.plan = RowPlan(0, 0, ())
        self.count = 0  # committed rows every usable per-row dataset (and the names' journal) holds: those checked
        self.datasets: dict[str, h5py.Dataset] = {}  # the usable per-row datasets
        self.dead: list[tuple[int, int]] = []  # row ranges of image_names served by an unusable shard file
        self.meta: dict[str, str] = {}  # meta column -> kind, of those listed whose dataset is there
        self.meta_whole = True  # every listed meta column is usable (else its rows' checksums cannot be computed)

    @property
    def has_names(self) -> bool:
        return NAMES in self.datasets or self.names_from_journal

    def step(self, what: str, run: Callable[..., Any], *args: Any) -> Any:
        """Run one step; an error reading damaged metadata becomes a problem naming the step (no traceback)."""
        try:
            return run(*args)
        except _READ_ERRORS as exc:
            self.listing.add([Problem(f"{what} cannot be checked: {os_cause(exc)} (the store's metadata is damaged)")])
            return None

    def run(self) -> None:
        if not self.step("the store format", self.format_ok):
            return
        self.step("the root attributes", read_root_attrs, self.f)  # readers list them all: a damaged one stops them
        if not self.step("the row counts", self.counts):
            return
        images = self.datasets.get(IMAGES)
        if images is not None and not self.flat:
            self.step("the image geometry", self.geometry, images)
        if self.flat:
            self.step("the flat rows' attributes", self.flat_attrs)
        if LABELS in self.datasets:
            self.step("the labels", self.labels, self.datasets[LABELS])
        self.step("the shard files", self.shard_files)
        for name, ds in self.datasets.items():
            self.step(f"the stored chunks of {name}", self.chunks, name, ds)
        self.step("the journal", self.journal)
        if self.has_names:
            self.step("the names", self.names)
        for column, kind in self.meta.items():
            if kind == TEXT:
                self.step(f"meta column {column!r}", self.meta_text, column)
        self.step("the skipped lists", self.skipped)
        rows = self.flat_datasets() if self.flat else images
        passes = (rows is not None) + (self.src is not None)  # each checked row is one step of each pass
        self.tick = started(self.progress, self.count * passes)
        if self.flat and rows is not None:
            self.step("the images", self.flat_rows, *rows)
        elif images is not None:
            self.step("the images", self.images, images)
        if self.src is not None and self.has_names:
            self.step("the source files", self.sources, self.src)
        self.listing.add(check_changed_rows(self.report.changed_rows, self.changed_names))
        self.listing.close()

    # -- metadata ---------------------------------------------------------------------------------------------
    def format_ok(self) -> bool:
        found = check_format(self.path, _attr(self.f, "imgstore_format"), self.complete)
        self.listing.add(found)
        if any(isinstance(item, Problem) for item in found):
            return False
        self.version = format_version(self.f)
        return True

    def meta_columns(self) -> list[str]:
        """The meta columns' datasets (``meta/<key>``), after checking the ``meta_columns`` attribute against them."""
        listed = [str(v) for v in _texts_of(_attr(self.f, META_COLUMNS))]
        group = self.f.get(META)
        keys = list(group) if isinstance(group, h5py.Group) else []
        present = [c for c in listed if meta_key(c) in keys]
        self.listing.add(check_meta_columns(listed, present, [k for k in keys if meta_column(k) not in listed]))
        for column in present:
            try:
                self.meta[column] = kind_of(self.f, column)
            except (KeyError, ValueError):
                pass  # not a column of a known type: check_row_dataset says so
        self.meta_whole = len(self.meta) == len(listed)
        return [meta_path(c) for c in present]

    def counts(self) -> bool:
        objects: dict[str, tuple[RowObject, Any]] = {}
        meta = self.step("the meta columns", self.meta_columns) or []
        for name in (*ROW_DATASETS, *meta):
            if name in self.f:
                obj = self.f[name]
                objects[name] = (_row_object(name, obj), obj)
                self.listing.add(check_row_dataset(objects[name][0]))
        found = tuple(row for row, _ in objects.values())
        journaled = () if self.complete else tuple(
            meta_path(c) for c, kind in self.meta.items() if kind == TEXT and has_journal(self.f, meta_path(c))
        )
        facts = CountFacts(found, _attr(self.f, "count"), self.names_from_journal, journaled, self.flat)
        self.listing.add(check_counts(facts))
        self.plan = row_plan(facts)
        self.count = self.plan.checked
        self.datasets = {name: objects[name][1] for name in self.plan.usable}
        return True

    def geometry(self, images: h5py.Dataset) -> None:
        self.listing.add(check_geometry(images.shape, _attr(self.f, "size")))
        self.listing.add(check_channels(images.shape, _attr(self.f, "channels")))

    def shard_files(self) -> None:
        mappings = _virtual_mappings(self.f)
        files: dict[str, set[str]] = {}
        for m in mappings:
            files.setdefault(m.file, set()).add(m.source)
        trouble = {file: _source_trouble(self.f, self.path.parent, file, names) for file, names in files.items()}
        key = IMAGE_DATA if self.flat else IMAGES
        images_virtual = bool(mappings) and _is_virtual(self.f.get(key))
        self.listing.add(check_virtual_sources(mappings, trouble, images_virtual, key))
        self.dead = dead_name_rows(mappings, trouble)

    def chunks(self, name: str, ds: h5py.Dataset) -> None:
        facts = _chunk_facts(name, ds, self.count)
        if facts is not None:
            self.listing.add(check_chunks(facts))
        if name == IMAGE_ENDS and self.count and isinstance(self.f.get(IMAGE_DATA), h5py.Dataset):
            data = self.f[IMAGE_DATA]
            used = min(int(ds[self.count - 1]), int(data.shape[0]))  # bytes the committed rows use
            facts = _chunk_facts(IMAGE_DATA, data, max(0, used), unit="byte")
            if facts is not None:
                self.listing.add(check_chunks(facts))

    def journal(self) -> None:
        skipped = self.skipped_count()
        committed = {NAMES: self.plan.committed, SKIPPED_NAMES: skipped, SKIPPED_REASONS: skipped}
        committed.update((meta_path(c), self.plan.committed) for c, kind in self.meta.items() if kind == TEXT)
        journaled = {key: _journal_rows(self.f, key) for key in committed if has_journal(self.f, key)}
        self.listing.add(check_journal(committed, journaled))
        if not self.complete:  # readers take the text columns from their journals
            for key in (NAMES, *(meta_path(c) for c, kind in self.meta.items() if kind == TEXT)):
                if key in journaled and (key != NAMES or self.names_from_journal):
                    self.count = min(self.count, journaled[key])

    def skipped_count(self) -> int:
        names = self.f.get(SKIPPED_NAMES)
        return skipped_count(_attr(self.f, "skipped_count"), int(names.shape[0]) if isinstance(names, h5py.Dataset) else 0)

    def skipped(self) -> None:
        """The skipped lists against ``skipped_count``; then, unless the journal stands in, their rows must read."""
        lists = {k: self.f[k] for k in (SKIPPED_NAMES, SKIPPED_REASONS) if isinstance(self.f.get(k), h5py.Dataset)}
        rows = {k: int(ds.shape[0]) for k, ds in lists.items()}
        count = _attr(self.f, "skipped_count")
        self.listing.add(check_skipped(rows, count))
        if len(lists) < 2 or count is None:
            return
        if not self.complete and has_journal(self.f, SKIPPED_NAMES):
            return  # readers take an incomplete store's skipped lists from the journal
        n = skipped_count(count, rows[SKIPPED_NAMES])
        for k, ds in lists.items():
            for a, b in _spans(min(n, rows[k]), TEXT_BATCH):
                self.rows.read(k, ds, a, b)

    # -- rows -------------------------------------------------------------------------------------------------
    def labels(self, labels: h5py.Dataset) -> None:
        class_names = self.f.attrs.get("class_names")
        if class_names is None:
            return
        classes = class_count(class_names)
        for a, b in _spans(self.count, TEXT_BATCH):
            values = self.rows.read(LABELS, labels, a, b)
            if values is not None:
                self.listing.add(check_labels(a, values, classes))

    def journal_rows(self, key: str, a: int, b: int) -> list[str] | None:
        """Rows ``a:b`` of the journal copy of the text column ``key``, or None after listing the damage."""
        try:
            return TextJournal(self.f[JOURNAL], key).read(b, a)
        except _READ_ERRORS as exc:
            self.listing.add([Problem(f"the journal of {key} is damaged at rows {a}-{b - 1}: {os_cause(exc)}", DAMAGED_JOURNAL)])
            return None

    def names_batch(self, a: int, b: int) -> list[str] | None:
        """Rows ``a:b`` of the names as readers see them (the journal for an incomplete store)."""
        if self.names_from_journal:
            return self.journal_rows(NAMES, a, b)
        batch = self.rows.read(NAMES, self.datasets[NAMES], a, b)
        return None if batch is None else texts(batch)

    def names(self) -> None:
        """Names are unique; a complete store's names agree with their journal copy."""
        n = self.count
        compare = not self.names_from_journal and has_journal(self.f, NAMES)
        compare = compare and _journal_rows(self.f, NAMES) >= n
        hashes = np.zeros(n, np.int64)  # 8 bytes per row find the candidate duplicates; their texts confirm them
        for a, b in _spans(n, TEXT_BATCH):
            batch = self.names_batch(a, b)
            if batch is None:
                continue
            hashes[a:b] = np.fromiter((hash(s) for s in batch), np.int64, b - a)
            copy = self.journal_rows(NAMES, a, b) if compare else None
            if copy is not None:
                self.listing.add(check_journal_copy(a, batch, copy))
        self.listing.add(check_duplicates(self.named_rows(duplicate_candidates(hashes, self.dead))))

    def named_rows(self, rows: list[int]) -> Iterator[tuple[int, str]]:
        """``(row, name)`` of ``rows`` (ascending), read back in the same batches (few rows each)."""
        for a, b in _spans(self.count, TEXT_BATCH):
            wanted = [i for i in rows if a <= i < b]
            batch = self.names_batch(a, b) if wanted else None
            if batch is not None:
                yield from ((i, batch[i - a]) for i in wanted)

    def meta_text(self, column: str) -> None:
        """A text meta column's rows read (from the journal in an incomplete store, as readers do); in a complete
        store they agree with their journal copy."""
        key = meta_path(column)
        ds = self.datasets.get(key)
        journaled = has_journal(self.f, key)
        for a, b in _spans(self.count, TEXT_BATCH):
            if not self.complete and journaled:
                self.journal_rows(key, a, b)
                continue
            if ds is None:
                return
            batch = self.rows.read(key, ds, a, b)
            copy = self.journal_rows(key, a, b) if journaled and _journal_rows(self.f, key) >= b else None
            if batch is not None and copy is not None:
                self.listing.add(check_journal_copy(a, texts(batch), copy, key))

    def images(self, images: h5py.Dataset) -> None:
        """Read every committed image; with checksums, recompute each row's and compare."""
        step = max(1, min(TEXT_BATCH, BATCH_BYTES // max(1, math.prod(images.shape[1:]))))
        sums = self.datasets.get(CHECKSUMS)
        self.listing.add(check_checksums_present(sums is not None, self.version, self.count))
        for a, b in _spans(self.count, step):
            try:
                batch = images[a:b]
            except _READ_ERRORS:
                self.report.checked += sum(self.rows.readable(IMAGES, images, i) for i in range(a, b))
            else:
                self.report.checked += b - a
                if sums is not None:
                    self.compare_checksums(a, b, batch, sums)
            self.tick(b - a)

    def compare_checksums(
        self, a: int, b: int, batch: np.ndarray | None, sums: h5py.Dataset, crcs: list[int] | None = None
    ) -> None:
        """Rows ``a:b`` against their stored checksums (``crcs``: each row's first CRC, for flat rows; else the
        pixel CRC of ``batch``); a mismatch goes to ``changed_rows``."""
        names = self.names_batch(a, b) if self.has_names else None
        stored = self.rows.read(CHECKSUMS, sums, a, b)
        meta = {k: self.rows.read(k, self.datasets[k], a, b) for k in (LABELS, SHA256) if k in self.datasets}
        columns = self.meta_batch(a, b)
        if names is None or stored is None or any(v is None for v in meta.values()) or columns is None:
            return  # already listed as unreadable
        kinds = tuple(self.meta.items())
        computed = row_checksums(
            batch, names, meta.get(LABELS), meta.get(SHA256), rows_meta_bytes(kinds, columns, b - a), crcs
        )
        changed = changed_rows(a, computed, stored, self.dead)
        self.report.changed_rows.extend(changed)
        for i in changed[: max(0, MAX_NAMED - len(self.changed_names))]:
            self.changed_names[i] = names[i - a]

    # -- flat rows (format 4) ---------------------------------------------------------------------------------
    def flat_attrs(self) -> None:
        data = self.f.get(IMAGE_DATA)
        obj = None if data is None else _row_object(IMAGE_DATA, data)
        raw = _attr(self.f, ENCODING)
        try:  # missing (parse_encoding(None) would be the default, none: raw pixels), unknown or damaged: a problem
            self.encoding = None if raw is None else parse_encoding(str(_texts_of(raw)[0]))
        except (OptionError, IndexError, TypeError, ValueError):
            self.encoding = None
        parsed = None if self.encoding is None or raw is None else str(self.encoding)
        self.listing.add(check_flat_attrs(self.version, obj, raw, _attr(self.f, VARIABLE), parsed))
        self.listing.add(check_flat_size(_attr(self.f, VARIABLE), _attr(self.f, "size")))

    def flat_datasets(self) -> tuple[h5py.Dataset, h5py.Dataset, h5py.Dataset] | None:
        """``image_data``, ``image_ends`` and ``shapes`` when all three are usable (else each is a problem already)."""
        data = self.f.get(IMAGE_DATA)
        ends, shapes = self.datasets.get(IMAGE_ENDS), self.datasets.get(SHAPES)
        if not isinstance(data, h5py.Dataset) or data.ndim != 1 or data.dtype != np.uint8 or ends is None or shapes is None:
            return None
        return data, ends, shapes

    def flat_rows(self, data: h5py.Dataset, ends_ds: h5py.Dataset, shapes_ds: h5py.Dataset) -> None:
        """Every committed flat row: its end and shape, then its bytes (about ``BATCH_BYTES`` at a time) against its
        checksum; raw rows' lengths; with ``decode``, every encoded row decoded."""
        sums = self.datasets.get(CHECKSUMS)
        self.listing.add(check_checksums_present(sums is not None, self.version, self.count))
        size, channels = _attr(self.f, "size"), _attr(self.f, "channels")
        variable = bool(_attr(self.f, VARIABLE))
        if check_flat_size(variable, size):  # a problem of its own (flat_attrs): the rows' H and W are unknown
            size = None
        total = int(data.shape[0])
        for a, b in _spans(self.count, TEXT_BATCH):
            ends = self.rows.read(IMAGE_ENDS, ends_ds, a, b)
            shapes = self.rows.read(SHAPES, shapes_ds, a, b)
            before = self.row_end(ends_ds, a - 1)
            if ends is None or shapes is None or before is None:
                self.tick(b - a)
                continue
            ends = ends.astype(np.int64)
            bad_ends = check_row_ends(a, before, ends, total)
            self.listing.add(bad_ends)
            self.listing.add(check_shapes(a, shapes, channels, size, variable, self.dead))
            if bad_ends:  # where these rows start and end is unknown: their bytes cannot be checked
                self.tick(b - a)
                continue
            starts = np.concatenate(([before], ends[:-1]))
            for lo, hi in flat_spans(before, ends, BATCH_BYTES):
                self.flat_batch(data, a + lo, a + hi, starts[lo:hi], ends[lo:hi], shapes[lo:hi], sums)
                self.tick(hi - lo)

    def row_end(self, ends: h5py.Dataset, i: int) -> int | None:
        """Where row ``i`` ends (0 before row 0), or None after listing the row as unreadable."""
        if i < 0:
            return 0
        value = self.rows.read(IMAGE_ENDS, ends, i, i + 1)
        return None if value is None else int(value[0])

    def flat_batch(
        self, data: h5py.Dataset, a: int, b: int, starts: np.ndarray, ends: np.ndarray, shapes: np.ndarray,
        sums: h5py.Dataset | None,
    ) -> None:  # fmt: skip
        """Rows ``a:b`` (their byte ``starts`` and ``ends`` in ``image_data``) read at once and checked."""
        lo, hi = int(starts[0]), int(ends[-1])
        try:
            blob = data[lo:hi] if hi > lo else np.zeros(0, np.uint8)
        except _READ_ERRORS as exc:
            where = f"row {a}" if b - a == 1 else f"rows {a}-{b - 1}"
            self.listing.add([Problem(f"{IMAGE_DATA} bytes {lo}-{hi - 1} ({where}) cannot be read: {os_cause(exc)}", UNREADABLE_ROWS)])
            return
        self.report.checked += b - a
        rel_s, rel_e = (starts - lo).tolist(), (ends - lo).tolist()
        rows = [blob[s:e] for s, e in zip(rel_s, rel_e)]
        encoding = self.encoding
        if encoding is not None and encoding.raw:
            self.listing.add(check_raw_lengths(a, ends - starts, shapes, self.dead))
        elif encoding is not None and self.decode:
            names = self.names_batch(a, b) if self.has_names else None
            for j, row in enumerate(rows):
                if is_dead_row(a + j, self.dead):  # zeros from a missing shard file: one problem for the file
                    continue
                error = _decode_error(encoding, row, shapes[j])
                self.listing.add(check_decoded(a + j, None if names is None else names[j], error))
        if sums is not None:
            self.compare_checksums(a, b, None, sums, [flat_crc(shapes[j], rows[j]) for j in range(b - a)])

    def meta_batch(self, a: int, b: int) -> list[Any] | None:
        """Rows ``a:b`` of every meta column (as readers see them), or None when one cannot be read (listed)."""
        if not self.meta_whole:
            return None  # a column is missing or damaged (a problem already): the checksums cannot be recomputed
        out: list[Any] = []
        for column, kind in self.meta.items():
            key = meta_path(column)
            if kind == TEXT and not self.complete and has_journal(self.f, key):
                values: Any = self.journal_rows(key, a, b)
            elif key in self.datasets:
                values = self.rows.read(key, self.datasets[key], a, b)
                values = None if values is None else texts(values) if kind == TEXT else values.tolist()
            else:
                values = None  # not a usable per-row dataset: already a problem
            if values is None:
                return None
            out.append(values)
        return out

    def sources(self, src: Source) -> None:
        """Every row's file is in ``src`` and, when the store records digests, hashes to the stored one."""
        source = src
        try:
            recorded = json.loads(_attr(self.f, "ingest_options") or "{}")
        except (ValueError, TypeError):
            recorded = {}  # a damaged attribute is a problem of its own; look the files up as the source names them
        if recorded.get("archives"):
            source = with_archives(source)
        path_of = getattr(source, "path_of", None)  # not in the Source protocol: a folder and a list file have it
        where = Path(source.label)
        if not callable(path_of):
            try:
                self.source_members(where, source, tuple(recorded.get("extensions") or default_extensions()))
            finally:
                release(source)  # an archive's descriptors and checkpoints
            return
        for name, want in self.rows_to_find():
            file = _source_file(path_of(name, self.version), name, hashed=want is not None)
            self.listing.add(check_source_file(where, file, want))

    def source_members(self, src: Path, source: Source, extensions: tuple[str, ...]) -> None:
        """Every row's name is a candidate of ``source`` (scanned once for ``extensions``) and, when the store
        records digests, its bytes read through the source hash to the stored one."""
        try:
            keys = {cand.name: cand.key for cand in source.scan(extensions).files}
        except SourceError as exc:
            self.listing.add([Problem(f"the source files cannot be checked: {exc}")])
            return
        for name, want in self.rows_to_find():
            key = keys.get(name)
            if key is None:
                file = SourceFile(name, "missing")
            elif want is None:
                file = SourceFile(name, "found")
            else:
                try:
                    file = SourceFile(name, "found", hashlib.sha256(source.read(key)).digest())
                except BadImageError as exc:
                    file = SourceFile(name, "unreadable", error=exc.reason)
            self.listing.add(check_source_file(src, file, want))

    def rows_to_find(self) -> Iterator[tuple[str, bytes | None]]:
        """``(name, stored SHA-256 or None)`` of every row whose file ``--sources`` must find, ticking progress;
        rows of an unusable shard file and unreadable names are problems already, so they are passed over."""
        digests = self.datasets.get(SHA256)
        self.listing.add(check_digests_recorded(digests is not None))
        for a, b in _spans(self.count, TEXT_BATCH):
            names = self.names_batch(a, b)
            stored = self.rows.read(SHA256, digests, a, b) if digests is not None else None
            if names is None:
                self.tick(b - a)
                continue
            for j, name in enumerate(names):
                self.tick(1)
                if not is_dead_row(a + j, self.dead):
                    yield name, None if stored is None else bytes(stored[j])


# -- facts ----------------------------------------------------------------------------------------------------
def _attr(f: h5py.File, name: str) -> Any:
    """Root attribute ``name`` as stored, or None when the store has none (not ``attrs.get``: a damaged attribute
    that raises KeyError must not pass for a missing one)."""
    return f.attrs[name] if name in f.attrs else None  # noqa: SIM401


def _journal_rows(f: h5py.File, column: str) -> int:
    """Rows in the journal of a text column, from its row ends alone (``TextJournal`` opens its bytes too, which
    the row count does not need: their damage is found where they are read)."""
    return int(f[JOURNAL][f"{column}.ends"].shape[0])


def _texts_of(value: Any) -> list[str]:
    """A string-array attribute (None: missing) as a list of str."""
    if value is None:
        return []
    return texts(np.asarray(value).ravel().tolist())


def _is_flat(f: h5py.File) -> bool:
    """True when the store keeps flat rows: it has ``image_data`` or says it is format 4 or later (a format that
    cannot be read as a number is check_format's problem, not this one's)."""
    try:
        return IMAGE_DATA in f or format_version(f) >= 4
    except OverflowError:
        return False


def _is_virtual(obj: Any) -> bool:
    return isinstance(obj, h5py.Dataset) and obj.is_virtual


def _row_object(name: str, obj: Any) -> RowObject:
    """What the file holds under the name of a per-row dataset."""
    if not isinstance(obj, h5py.Dataset):
        return RowObject(name, type(obj).__name__, getattr(obj, "shape", None))
    return RowObject(name, "Dataset", obj.shape, obj.dtype)


def _chunk_facts(name: str, ds: h5py.Dataset, rows: int, unit: str = "row") -> ChunkFacts | None:
    """Which blocks of the first ``rows`` rows of ``ds`` have their chunks on disk; None when there is nothing to
    look at (no rows; a contiguous or virtual dataset, whose rows are not chunks of this file)."""
    if ds.is_virtual or ds.chunks is None or rows == 0:
        return None
    c0 = ds.chunks[0]
    per_block = math.prod(math.ceil(s / c) for s, c in zip(ds.shape[1:], ds.chunks[1:]))
    stored = np.zeros(-(-rows // c0), np.int64)

    def visit(info: Any) -> None:
        block = info.chunk_offset[0] // c0
        if block < stored.size:
            stored[block] += 1

    try:
        ds.id.chunk_iter(visit)
    except AttributeError:  # HDF5 older than 1.14: only the number of chunks is known
        return ChunkFacts(name, rows, c0, per_block, None, ds.id.get_num_chunks(), unit)
    return ChunkFacts(name, rows, c0, per_block, stored, unit=unit)


def _virtual_mappings(f: h5py.File) -> list[VirtualMapping]:
    """Every source of every virtual per-row dataset and skipped list that maps at least one row."""
    found = []
    group = f.get(META)
    meta = [f"{META}/{key}" for key in group] if isinstance(group, h5py.Group) else []
    # image_data last: a problem names the first dataset a file feeds, and image_data's "rows" are bytes
    for name in (*ROW_DATASETS, *meta, SKIPPED_NAMES, SKIPPED_REASONS, IMAGE_DATA):
        ds = f.get(name)
        if not _is_virtual(ds):
            continue
        for vmap in ds.virtual_sources():
            rows: tuple[int, int] | None
            try:
                if vmap.vspace.get_select_npoints() == 0:
                    continue
                start, end = vmap.vspace.get_select_bounds()
                rows = (int(start[0]), int(end[0]))
            except _READ_ERRORS:
                rows = None
            file = vmap.file_name.replace("%%", "%")  # HDF5 escapes a literal % in source names
            found.append(VirtualMapping(name, file, vmap.dset_name.replace("%%", "%"), rows))
    return found


def _source_trouble(f: h5py.File, folder: Path, file: str, datasets: set[str]) -> str | None:
    """What keeps a virtual dataset's source ``file`` from serving ``datasets``, or None when it can."""
    if file == ".":
        lacking = sorted(d for d in datasets if d not in f)
        return f"lacks {', '.join(lacking)}" if lacking else None
    target = Path(file)
    if not target.is_absolute():
        target = folder / target  # HDF5 resolves a relative source against the virtual file's folder
    if not target.is_file():
        return f"is missing (looked for {target})"
    try:
        with open_read(target) as src:
            lacking = sorted(d for d in datasets if d not in src)
    except OSError as exc:
        return f"cannot be opened ({exc})"
    return f"has no {', '.join(lacking)}" if lacking else None


def _source_file(path: Path, name: str, *, hashed: bool) -> SourceFile:
    """What the source folder holds at ``path`` for the row named ``name``; its SHA-256 when ``hashed``."""
    if not path.is_file():
        return SourceFile(name, "missing" if not path.exists() else "not a file")
    if not hashed:
        return SourceFile(name, "found")
    try:
        return SourceFile(name, "found", _sha256(path))
    except OSError as exc:
        return SourceFile(name, "unreadable", error=str(exc.strerror or exc))


def _decode_error(encoding: Encoding, row: np.ndarray, shape: np.ndarray) -> str | None:
    """Why an encoded row does not decode to its ``shape`` (H, W, C), or None when it does."""
    want = (int(shape[0]), int(shape[1]), int(shape[2]))
    try:
        image = encoding.codec.decode(row.tobytes(), want)
    except BadImageError as exc:
        return exc.reason
    except (ValueError, TypeError, OSError, MemoryError) as exc:  # raw bytes that do not fill the shape, ...
        return f"{type(exc).__name__}: {exc}"
    if tuple(image.shape) != want:
        return f"it decodes to {image.shape[0]}x{image.shape[1]}x{image.shape[2]}, not its stored shape {want[0]}x{want[1]}x{want[2]}"
    return None


def _spans(n: int, step: int) -> list[tuple[int, int]]:
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def _sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.digest()
