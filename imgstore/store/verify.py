"""``imgstore verify``: is a store sound? :func:`verify_store` reads it whole, in bounded batches, and reports.

It returns a :class:`VerifyReport`: ``problems`` (the store is damaged or inconsistent), ``notes`` (worth knowing,
not damage: an unfinished ingest, rows past ``count`` left by an interrupted write) and ``changed_rows`` (every
row whose bytes no longer match the checksum written with it). With ``sources`` it also hashes every row's source
file again. A store so damaged that a step cannot run gets a problem naming that step and the error, never a
traceback.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from imgstore.errors import SourceError, StoreError, os_cause
from imgstore.progress import ProgressLike, started
from imgstore.sources.folder import FolderSource
from imgstore.store.format import (
    CHECKSUMS,
    FORMAT_VERSION,
    IMAGES,
    JOURNAL,
    LABELS,
    NAMES,
    SHA256,
    SKIPPED_NAMES,
    SKIPPED_REASONS,
    TextJournal,
    format_version,
    has_journal,
    open_read,
    row_checksums,
    texts,
)

# Stored rows are read about this many bytes at a time, which bounds the memory verify needs.
BATCH_BYTES = 16 * 2**20
# Rows of names, labels and digests read at a time.
TEXT_BATCH = 16384
# Of each kind of repeated problem (unreadable rows, changed files, ...) this many are listed, then a count.
MAX_LISTED = 20
# Consecutive rows that cannot be read before verify stops trying the rest of their batch one by one.
MAX_FAILED_READS = 3
# The datasets that hold one row per image.
PER_ROW = (IMAGES, NAMES, LABELS, SHA256, CHECKSUMS)

_READ_ERRORS = (OSError, RuntimeError, ValueError, KeyError, TypeError, IndexError)


@dataclass
class VerifyReport:
    """What :func:`verify_store` found.

    ``problems``: damage or inconsistency, one line each (the store is not sound). ``notes``: worth knowing but not
    damage. ``checked``: committed images whose pixels were read back without error. ``changed_rows``: every row
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
    one reads as zeros without error). With ``sources`` (the folder the store was ingested from), every row's file
    must exist there and, when the store records digests, hash to the stored SHA-256; files in ``sources`` that are
    not in the store are not problems (they may have been skipped).

    Names are judged as readers see them: an incomplete store's from its journal (its string dataset may have been
    left unreadable by a crash and is rebuilt by the next write, so that dataset is not judged). Rows past
    ``count`` and an unfinished ingest (``complete`` false) are notes, not problems: readers ignore such rows and
    the next write trims them. Repeated problems of one kind are listed up to ``MAX_LISTED`` times, then counted in
    one more line. ``progress`` gets row increments (a callable, or a tqdm-like object whose ``total`` is set).
    Memory stays bounded: images are read about ``BATCH_BYTES`` at a time, text ``TEXT_BATCH`` rows at a time, and
    the duplicate search keeps 8 bytes per row.

    Raises :class:`~imgstore.errors.StoreError` when ``path`` does not exist or is a folder, and
    :class:`~imgstore.errors.SourceError` when ``sources`` is not a folder.
    """
    p = Path(path)
    if not p.exists():
        raise StoreError(f"{p} does not exist: give the path of a store made by imgstore ingest")
    if p.is_dir():
        raise StoreError(f"{p} is a folder: give the path of a store file (.h5)")
    src = None
    if sources is not None:
        src = Path(sources)
        if not src.is_dir():
            raise SourceError(f"source folder {src} does not exist or is not a folder: give the folder the store was ingested from")
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
            verifier = _Verifier(f, p, src, report, progress)
        except _READ_ERRORS as exc:
            report.problems.append(f"the root attributes of {p} cannot be read: {os_cause(exc)} (its metadata is damaged)")
            return report
        verifier.run()
    return report


class _Verifier:
    """One verification run over an open file; fills ``report``."""

    def __init__(self, f: h5py.File, path: Path, src: Path | None, report: VerifyReport, progress: ProgressLike) -> None:
        self.f, self.path, self.src, self.report = f, path, src, report
        self.progress = progress
        self.tick: Callable[[int], None] = lambda n: None
        self.repeated: dict[str, int] = {}  # kind -> problems of that kind found
        self.count = 0  # committed rows that every per-row dataset holds: the rows checked
        self.complete = bool(f.attrs.get("complete", False))
        self.version = format_version(f)
        journal = f.get(JOURNAL)
        self.journal: h5py.Group | None = journal if isinstance(journal, h5py.Group) else None
        # An incomplete store's names come from the journal (as imgstore.open reads them); its string dataset may
        # have been left unreadable by a crash and is rebuilt by the next write, so it is not judged.
        self.names_from_journal = not self.complete and self.has_journal(NAMES)
        # Row ranges of image_names served by an unusable shard file: their empty names are not judged again.
        self.dead_name_rows: list[tuple[int, int]] = []
        self.failed: set[tuple[str, int, int]] = set()  # (dataset, start, stop) batches that could not be read

    # -- reporting ------------------------------------------------------------------------------------------
    def problem(self, text: str, kind: str | None = None) -> None:
        """Record a problem; of a repeated ``kind`` ("rows that cannot be read") only the first few are listed."""
        if kind is not None:
            seen = self.repeated[kind] = self.repeated.get(kind, 0) + 1
            if seen > MAX_LISTED:
                return
        self.report.problems.append(text)

    def note(self, text: str) -> None:
        self.report.notes.append(text)

    # -- the run --------------------------------------------------------------------------------------------
    def guard(self, what: str, step: Callable[..., Any], *args: Any) -> Any:
        """Run one step; an error reading damaged metadata becomes a problem naming the step (no traceback)."""
        try:
            return step(*args)
        except _READ_ERRORS as exc:
            self.problem(f"{what} cannot be checked: {os_cause(exc)} (the store's metadata is damaged)")
            return None

    def run(self) -> None:
        if not self.guard("the store format", self.check_format):
            return
        self.guard("the root attributes", self.read_attributes)
        datasets = self.guard("the row counts", self.check_counts)
        if datasets is None:
            return
        images = datasets.get(IMAGES)
        if images is not None:
            self.guard("the image geometry", self.check_geometry, images)
        if LABELS in datasets:
            self.guard("the labels", self.check_labels, datasets[LABELS])
        self.guard("the shard files", self.check_virtual_sources)
        for name, ds in datasets.items():
            if not ds.is_virtual:
                self.guard(f"the stored chunks of {name}", self.check_chunks_stored, name, ds)
        self.guard("the journal", self.check_journal)
        if NAMES in datasets or self.names_from_journal:
            self.guard("the names", self.check_names, datasets.get(NAMES))
        self.guard("the skipped lists", self.check_skipped)
        total = (self.count if images is not None else 0) + (self.count if self.src is not None else 0)
        self.tick = started(self.progress, total)
        if images is not None:
            self.guard("the images", self.read_images, images, datasets)
        if self.src is not None and (NAMES in datasets or self.names_from_journal):
            self.guard("the source files", self.check_sources, datasets.get(NAMES), datasets.get(SHA256))
        self.report_changed_rows()
        for kind, seen in self.repeated.items():
            if seen > MAX_LISTED:
                self.report.problems.append(f"... and {seen - MAX_LISTED} more {kind}")
                self.report.unlisted += seen - MAX_LISTED - 1  # the summary line itself counts as one

    def read_attributes(self) -> None:
        """Every root attribute reads (readers list them all: a damaged attribute storage stops them)."""
        for name in list(self.f.attrs):
            self.f.attrs[name]

    def check_format(self) -> bool:
        attrs = self.f.attrs
        if "imgstore_format" not in attrs:
            self.problem(f"{self.path} is an HDF5 file but not an imgstore store (no imgstore_format attribute)")
            return False
        try:
            version = int(attrs["imgstore_format"])
        except (TypeError, ValueError):
            self.problem(f"imgstore_format attribute {attrs['imgstore_format']!r} is not a version number")
            return False
        if version > FORMAT_VERSION:
            self.problem(f"store format version {version} is newer than this imgstore reads ({FORMAT_VERSION}): upgrade imgstore")
            return False
        if version < 2:
            self.note(
                f"store format {version} carries no row checksums: changed pixels cannot be detected "
                "(an --append or --resume upgrades the store)"
            )
        if not self.complete:
            self.note("ingest did not finish (complete is false); imgstore ingest --resume continues it")
        return True

    def check_counts(self) -> dict[str, h5py.Dataset]:
        """The count attribute against the rows of each per-row dataset; returns the usable per-row datasets."""
        f = self.f
        datasets: dict[str, h5py.Dataset] = {}
        for name in PER_ROW:
            if name not in f:
                continue
            obj = f[name]
            if not isinstance(obj, h5py.Dataset) or obj.ndim < 1:
                self.problem(f"{name} is not a per-row dataset ({type(obj).__name__}, shape {getattr(obj, 'shape', None)})")
                continue
            if not self.dtype_ok(name, obj):
                continue
            datasets[name] = obj
        rows = {name: int(ds.shape[0]) for name, ds in datasets.items()}
        if "count" in f.attrs:
            try:
                count = int(f.attrs["count"])
            except (TypeError, ValueError):
                self.problem(f"count attribute {f.attrs['count']!r} is not a number")
                count = rows.get(IMAGES, 0)
            if count < 0:
                self.problem(f"count attribute is negative ({count})")
                count = 0
        else:
            count = rows.get(IMAGES, 0)
            self.problem(f"count attribute is missing, so readers see no images (images has {count} rows)")
        if "images" not in datasets and "images" not in f:
            if count > 0:
                self.problem(f"count is {count} but the store has no images dataset")
            else:
                self.note("the store holds no images")
        if self.names_from_journal and "image_names" in datasets:
            # Not judged (see __init__): the journal stands in for it.
            n = rows.pop(NAMES)
            del datasets[NAMES]
            if n < count:
                self.note(f"image_names has {n} rows but count is {count}: readers use the journal, the next write rebuilds it")
        elif "image_names" not in f and "images" in datasets and not self.names_from_journal:
            self.problem(f"image_names is missing (images has {rows['images']} rows)")
        short = {name: n for name, n in rows.items() if n < count}
        for name, n in short.items():
            self.problem(f"{name} has {n} rows but count is {count}")
        # Rows some dataset lacks are not checked further: check the rows all of them hold.
        self.count = min([count, *rows.values()])
        self.committed = count
        if not short and rows:
            extra = {name: n for name, n in rows.items() if n > count}
            if extra:
                detail = ", ".join(f"{name} {n}" for name, n in extra.items())
                self.note(
                    f"rows past count {count} ({detail}) are leftovers of an interrupted write: "
                    "readers ignore them and the next write trims them"
                )
        return datasets

    def dtype_ok(self, name: str, ds: h5py.Dataset) -> bool:
        kind = ds.dtype.kind
        if name == "images" and (ds.dtype != np.uint8 or ds.ndim != 4):
            self.problem(f"images must be uint8 (N, H, W, C), found {ds.dtype} {ds.shape}")
            return False
        if name == "image_names" and (ds.ndim != 1 or h5py.check_string_dtype(ds.dtype) is None):
            self.problem(f"image_names must be 1-D strings, found {ds.dtype} {ds.shape}")
            return False
        if name == "labels" and (ds.ndim != 1 or kind not in "iu"):
            self.problem(f"labels must be 1-D integers, found {ds.dtype} {ds.shape}")
            return False
        if name == "sha256" and (ds.dtype != np.uint8 or ds.shape[1:] != (32,)):
            self.problem(f"sha256 must be uint8 (N, 32), found {ds.dtype} {ds.shape}")
            return False
        if name == CHECKSUMS and (ds.dtype != np.uint32 or ds.ndim != 1):
            self.problem(f"checksums must be 1-D uint32, found {ds.dtype} {ds.shape}")
            return False
        return True

    def check_geometry(self, images: h5py.Dataset) -> None:
        attrs = self.f.attrs
        _, h, w, c = images.shape
        if c not in (1, 3):
            self.problem(f"images have {c} channels: a store holds 3 (RGB) or 1 (grayscale)")
        if "size" in attrs:
            size = np.asarray(attrs["size"]).ravel().tolist()
            if size != [w, h]:
                self.problem(f"size attribute says {size} (width, height) but images are {w}x{h}")
        else:
            self.problem(f"size attribute is missing (images are {w}x{h})")
        if "channels" in attrs:
            if int(np.asarray(attrs["channels"]).ravel()[0]) != c:
                self.problem(f"channels attribute says {attrs['channels']} but images have {c}")
        else:
            self.problem(f"channels attribute is missing (images have {c})")

    def check_labels(self, labels: h5py.Dataset) -> None:
        class_names = self.f.attrs.get("class_names")
        if class_names is None:
            return
        k = len(np.asarray(class_names).ravel())
        for a, b in _spans(self.count, TEXT_BATCH):
            values = self.read_rows(LABELS, labels, a, b)
            if values is None:
                continue
            for j in np.flatnonzero((values < 0) | (values >= k)):
                self.problem(
                    f"labels row {a + j} is {int(values[j])}, outside 0..{k - 1} (class_names has {k} names)",
                    "labels out of range",
                )

    # -- names ------------------------------------------------------------------------------------------------
    def has_journal(self, key: str) -> bool:
        return has_journal(self.f, key)

    def journal_rows(self, key: str, a: int, b: int) -> list[str] | None:
        """Rows ``a:b`` of the journal copy of the text column ``key``, or None after reporting damage."""
        assert self.journal is not None
        try:
            return TextJournal(self.journal, key).read(b, a)
        except _READ_ERRORS as exc:
            self.problem(f"the journal of {key} is damaged at rows {a}-{b - 1}: {os_cause(exc)}", "damaged journal batches")
            return None

    def names_batch(self, names: h5py.Dataset | None, a: int, b: int) -> list[str] | None:
        """Rows ``a:b`` of the names as readers see them (the journal for an incomplete store)."""
        if self.names_from_journal:
            return self.journal_rows(NAMES, a, b)
        assert names is not None
        batch = self.read_rows(NAMES, names, a, b)
        return None if batch is None else texts(batch)

    def check_journal(self) -> None:
        """Each journaled text column holds at least its committed rows."""
        committed = {"image_names": self.committed, SKIPPED_NAMES: self.skipped_count(), SKIPPED_REASONS: self.skipped_count()}
        for key, n in committed.items():
            if not self.has_journal(key):
                continue
            assert self.journal is not None
            rows = int(self.journal[f"{key}.ends"].shape[0])
            if rows < n:
                self.problem(f"the journal of {key} has {rows} rows but {n} are committed")
                if key == "image_names" and self.names_from_journal:
                    self.count = min(self.count, rows)

    def is_dead_name_row(self, i: int) -> bool:
        return any(a <= i < b for a, b in self.dead_name_rows)

    def check_names(self, names: h5py.Dataset | None) -> None:
        """Names are unique; a complete store's names agree with their journal copy."""
        # A 64-bit hash per row finds candidate duplicates in bounded memory; the texts then confirm them.
        n = self.count
        compare = not self.names_from_journal and self.has_journal(NAMES)
        if compare:
            assert self.journal is not None
            compare = self.journal["image_names.ends"].shape[0] >= n
        hashes = np.zeros(n, np.int64)
        for a, b in _spans(n, TEXT_BATCH):
            batch = self.names_batch(names, a, b)
            if batch is None:
                continue
            hashes[a:b] = np.fromiter((hash(s) for s in batch), np.int64, b - a)
            copy = self.journal_rows(NAMES, a, b) if compare else None
            if copy is not None and copy != batch:
                for j in (j for j, (x, y) in enumerate(zip(batch, copy)) if x != y):
                    self.problem(
                        f"image_names row {a + j} is {batch[j]!r} but its journal copy says {copy[j]!r}",
                        "names that differ from their journal copy",
                    )
        if n < 2:
            return
        order = np.argsort(hashes, kind="stable")
        same = hashes[order[1:]] == hashes[order[:-1]]
        if not same.any():
            return
        rows = np.unique(np.concatenate([order[1:][same], order[:-1][same]])).tolist()
        rows = [i for i in rows if not self.is_dead_name_row(i)]
        groups: dict[str, list[int]] = {}
        # Candidates are read back in the same batches (few rows each: the duplicates and hash collisions).
        for a, b in _spans(n, TEXT_BATCH):
            wanted = [i for i in rows if a <= i < b]
            if not wanted:
                continue
            batch = self.names_batch(names, a, b)
            if batch is None:
                continue
            for i in wanted:
                groups.setdefault(batch[i - a], []).append(i)
        for text, where in groups.items():
            if len(where) > 1:
                shown = ", ".join(str(i) for i in where[:5]) + (", ..." if len(where) > 5 else "")
                self.problem(f"name {text!r} appears {len(where)} times (rows {shown})", "duplicated names")

    # -- storage ----------------------------------------------------------------------------------------------
    def check_chunks_stored(self, name: str, ds: h5py.Dataset) -> None:
        """A committed row whose chunk was never written reads as the fill value without any error."""
        if ds.chunks is None or self.count == 0:
            return
        c0 = ds.chunks[0]
        per_block = math.prod(math.ceil(s / c) for s, c in zip(ds.shape[1:], ds.chunks[1:]))
        blocks = math.ceil(self.count / c0)
        stored = np.zeros(blocks, np.int64)

        def visit(info: Any) -> None:
            block = info.chunk_offset[0] // c0
            if block < blocks:
                stored[block] += 1

        try:
            ds.id.chunk_iter(visit)
        except AttributeError:  # HDF5 older than 1.14: count the chunks instead
            if ds.id.get_num_chunks() < blocks * per_block:
                self.problem(f"{name} stores only {ds.id.get_num_chunks()} chunks for {self.count} committed rows")
            return
        missing = np.flatnonzero(stored < per_block)
        if not missing.size:
            return
        # Consecutive missing blocks are one run of rows: one line each.
        breaks = np.flatnonzero(np.diff(missing) > 1) + 1
        for run in np.split(missing, breaks):
            a, b = int(run[0]) * c0, min((int(run[-1]) + 1) * c0, self.count)
            where = f"row {a} was" if b - a == 1 else f"rows {a}-{b - 1} were"
            self.problem(f"{name} {where} never written (no data on disk; reads give zeros)", "runs of rows never written")

    def check_virtual_sources(self) -> None:
        """The files virtual (merged) datasets read from exist and hold their datasets: a missing one reads as zeros.

        One problem per unusable file, naming the rows of the first dataset (in ``PER_ROW`` order) it feeds.
        """
        folder = self.path.parent
        uses: dict[str, dict[str, list[tuple[int, int]]]] = {}  # file -> dataset -> row ranges
        dset_names: dict[str, set[str]] = {}
        for name in (*PER_ROW, SKIPPED_NAMES, SKIPPED_REASONS):
            ds = self.f.get(name)
            if not isinstance(ds, h5py.Dataset) or not ds.is_virtual:
                continue
            for vmap in ds.virtual_sources():
                file_name = vmap.file_name.replace("%%", "%")  # HDF5 escapes a literal % in source names
                try:
                    if vmap.vspace.get_select_npoints() == 0:
                        continue
                    start, end = vmap.vspace.get_select_bounds()
                    span = (int(start[0]), int(end[0]))
                except _READ_ERRORS:
                    span = (-1, -1)
                uses.setdefault(file_name, {}).setdefault(name, []).append(span)
                dset_names.setdefault(file_name, set()).add(vmap.dset_name)
        if not uses:
            return
        if "images" in self.f and self.f[IMAGES].is_virtual:
            shards = sum(1 for u in uses.values() if "images" in u)
            self.note(f"images is a merged (virtual) dataset over {shards} file(s)")
        for file_name, by_dataset in uses.items():
            trouble = self.virtual_source_problem(folder, file_name, dset_names[file_name])
            if trouble is None:
                continue
            self.dead_name_rows += [(a, b + 1) for a, b in by_dataset.get(NAMES, []) if a >= 0]
            first, spans = next(iter(by_dataset.items()))
            ranges = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in spans if a >= 0) or "some"
            others = [d for d in by_dataset if d != first]
            also = f" (and rows of {', '.join(others)})" if others else ""
            self.problem(
                f"{first} rows {ranges}{also} come from {file_name}, which {trouble}: they read as zeros",
                "unusable shard files",
            )

    def virtual_source_problem(self, folder: Path, file_name: str, dset_names: set[str]) -> str | None:
        if file_name == ".":
            lacking = sorted(d for d in dset_names if d not in self.f)
            return f"lacks {', '.join(lacking)}" if lacking else None
        target = Path(file_name)
        if not target.is_absolute():
            target = folder / target  # HDF5 resolves a relative source against the virtual file's folder
        if not target.is_file():
            return f"is missing (looked for {target})"
        try:
            with open_read(target) as src:
                lacking = sorted(d for d in dset_names if d not in src)
        except OSError as exc:
            return f"cannot be opened ({exc})"
        return f"has no {', '.join(lacking)}" if lacking else None

    def skipped_count(self) -> int:
        f = self.f
        if "skipped_count" in f.attrs:
            try:
                return int(f.attrs["skipped_count"])
            except (TypeError, ValueError):
                return 0
        return int(f[SKIPPED_NAMES].shape[0]) if isinstance(f.get(SKIPPED_NAMES), h5py.Dataset) else 0

    def check_skipped(self) -> None:
        """The skipped lists hold their committed rows (``skipped_count``, or pair up in older stores)."""
        f = self.f
        keys = (SKIPPED_NAMES, SKIPPED_REASONS)
        have = [k for k in keys if isinstance(f.get(k), h5py.Dataset)]
        if len(have) == 1:
            self.problem(f"{have[0]} exists without {({'skipped_names', 'skipped_reasons'} - set(have)).pop()}")
            return
        if not have:
            return
        rows = {k: int(f[k].shape[0]) for k in keys}
        if "skipped_count" not in f.attrs:
            if rows[SKIPPED_NAMES] != rows[SKIPPED_REASONS]:
                self.problem(f"skipped_names has {rows['skipped_names']} rows but skipped_reasons has {rows['skipped_reasons']}")
            return
        n = self.skipped_count()
        for k in keys:
            if rows[k] < n:
                self.problem(f"{k} has {rows[k]} rows but skipped_count is {n}")
        if self.complete or not self.has_journal(SKIPPED_NAMES):
            for k in keys:
                for a, b in _spans(min(n, rows[k]), TEXT_BATCH):
                    self.read_rows(k, f[k], a, b)

    # -- reading --------------------------------------------------------------------------------------------
    def read_rows(self, name: str, ds: h5py.Dataset, a: int, b: int) -> np.ndarray | None:
        """Rows ``a:b`` of ``ds``, or None after reporting the rows that cannot be read.

        A batch that fails is tried row by row to name the bad rows, but a damaged store can take seconds per
        failing read: after ``MAX_FAILED_READS`` failures in a row the rest of the batch is reported as one range,
        and a batch that failed once is not read again by a later check.
        """
        if (name, a, b) in self.failed:
            return None
        try:
            return ds[a:b]
        except _READ_ERRORS:
            self.failed.add((name, a, b))
        streak = 0
        for i in range(a, b):
            try:
                ds[i]
                streak = 0
            except _READ_ERRORS as exc:
                streak += 1
                self.problem(f"{name} row {i} cannot be read: {os_cause(exc)}", "rows that cannot be read")
                if streak >= MAX_FAILED_READS and i + 1 < b:
                    rest = f"row {i + 1} was" if i + 2 == b else f"rows {i + 1}-{b - 1} were"
                    self.problem(f"{name} {rest} not tried: the rows before them cannot be read")
                    break
        return None

    def read_images(self, images: h5py.Dataset, datasets: dict[str, h5py.Dataset]) -> None:
        """Read every committed image; with checksums, recompute each row's and compare."""
        row_bytes = max(1, math.prod(images.shape[1:]))
        step = max(1, min(TEXT_BATCH, BATCH_BYTES // row_bytes))
        sums = datasets.get(CHECKSUMS)
        if sums is None and self.version >= 2 and self.count:
            self.problem(f"checksums is missing: the {self.count} rows cannot be checked for changed bytes")
        for a, b in _spans(self.count, step):
            batch: np.ndarray | None = None
            try:
                batch = images[a:b]
                self.report.checked += b - a
            except _READ_ERRORS:
                for i in range(a, b):
                    try:
                        images[i]
                        self.report.checked += 1
                    except _READ_ERRORS as exc:
                        self.problem(f"images row {i} cannot be read: {os_cause(exc)}", "rows that cannot be read")
            if batch is not None and sums is not None:
                self.compare_checksums(a, b, batch, sums, datasets)
            self.tick(b - a)

    def compare_checksums(
        self, a: int, b: int, batch: np.ndarray, sums: h5py.Dataset, datasets: dict[str, h5py.Dataset]
    ) -> None:
        """Rows ``a:b`` against their stored checksums; a mismatch goes to ``changed_rows``."""
        names = self.names_batch(datasets.get(NAMES), a, b) if (NAMES in datasets or self.names_from_journal) else None
        stored = self.read_rows(CHECKSUMS, sums, a, b)
        labels = self.read_rows(LABELS, datasets[LABELS], a, b) if LABELS in datasets else None
        digests = self.read_rows(SHA256, datasets[SHA256], a, b) if SHA256 in datasets else None
        if names is None or stored is None or (LABELS in datasets and labels is None):
            return  # already reported as unreadable
        if SHA256 in datasets and digests is None:
            return
        changed = np.flatnonzero(row_checksums(batch, names, labels, digests) != stored)
        # Rows served by a missing shard file read as zeros: already one problem, not a change of each row.
        self.report.changed_rows.extend(a + int(j) for j in changed if not self.is_dead_name_row(a + int(j)))

    def report_changed_rows(self) -> None:
        """One problem line per run of consecutive rows whose bytes changed."""
        rows = self.report.changed_rows
        if not rows:
            return
        arr = np.asarray(rows)
        for run in np.split(arr, np.flatnonzero(np.diff(arr) > 1) + 1):
            a, b = int(run[0]), int(run[-1])
            where = f"row {a}" if a == b else f"rows {a}-{b}"
            self.problem(
                f"{where} changed since written: the stored bytes do not match the checksum", "runs of changed rows"
            )

    def check_sources(self, names: h5py.Dataset | None, digests: h5py.Dataset | None) -> None:
        src = self.src
        assert src is not None
        folder = FolderSource(os.fspath(src))
        if digests is None:
            self.note("the store records no SHA-256 digests: --sources checked only that each file exists")
        for a, b in _spans(self.count, TEXT_BATCH):
            batch = self.names_batch(names, a, b)
            stored = self.read_rows(SHA256, digests, a, b) if digests is not None else None
            if batch is None:
                self.tick(b - a)
                continue
            for j, name in enumerate(batch):
                self.tick(1)
                if self.is_dead_name_row(a + j):
                    continue  # its shard file is missing: already a problem
                file = folder.path_of(name, self.version)
                if not file.is_file():
                    what = "is missing from" if not file.exists() else "is not a file in"
                    self.problem(f"{name} {what} {src}", "files missing from the source folder")
                elif stored is not None:
                    try:
                        digest = _sha256(file)
                    except OSError as exc:
                        self.problem(f"{name} cannot be read from {src}: {exc.strerror or exc}", "unreadable source files")
                        continue
                    if digest != bytes(stored[j]):
                        self.problem(f"{name} changed since ingest (sha256 differs)", "changed source files")


def _spans(n: int, step: int) -> list[tuple[int, int]]:
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def _sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.digest()
