"""Store tools: is a store sound (:func:`verify_store`), what is in it at a glance (:func:`make_preview`), and the
stored images back as files (:func:`extract_images`).

* ``verify_store`` reads the whole store in bounded batches and returns a :class:`VerifyReport`: ``problems``
  (the store is damaged or inconsistent) and ``notes`` (worth knowing, not damage: an unfinished ingest, rows left
  over past ``count`` by an interrupted write). With ``sources`` it also hashes every row's source file again.
* ``make_preview`` draws a contact sheet: a grid of stored images with index, name and class name under each.
* ``extract_images`` writes chosen rows as PNG files named after the stored names; :func:`parse_indices` reads the
  ``0,5,10-20`` form the command line takes.
"""

from __future__ import annotations

import hashlib
import math
import os
import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from imgstore.errors import OptionError, OutputExistsError, SourceError, StoreError
from imgstore.h5 import open_read
from imgstore.options import check_output
from imgstore.reader import open_store
from imgstore.vectors import Progress, progress_callback
from imgstore.writer import FORMAT_VERSION, JOURNAL

# Stored rows are read about this many bytes at a time, which bounds the memory verify needs.
BATCH_BYTES = 16 * 2**20
# Rows of names, labels and digests read at a time.
TEXT_BATCH = 16384
# Of each kind of repeated problem (unreadable rows, changed files, ...) this many are listed, then a count.
MAX_LISTED = 20
# The datasets that hold one row per image.
PER_ROW = ("images", "image_names", "labels", "sha256")

_READ_ERRORS = (OSError, RuntimeError, ValueError)


# ================================================================================================== verify


@dataclass
class VerifyReport:
    """What :func:`verify_store` found.

    ``problems``: damage or inconsistency, one line each (the store is not sound). ``notes``: worth knowing but not
    damage. ``checked``: committed images whose pixels were read back without error. ``ok`` is true when there is
    no problem.
    """

    path: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unlisted: int = 0  # problems past the per-kind listing cap, summarised by "... and N more" lines
    checked: int = 0

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
    progress: Progress = None,
) -> VerifyReport:
    """Check the store at ``path`` and return a :class:`VerifyReport`; it never raises for a damaged store.

    Checks: the file is an HDF5 imgstore store of a known format version; ``count`` is at most the rows of every
    per-row dataset (``images``, ``image_names``, ``labels``, ``sha256``); their dtypes and shapes; the ``size`` and
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
        report.problems.append(f"{p} cannot be opened as an HDF5 file: {exc}")
        return report
    with f:
        _Verifier(f, p, src, report, progress).run()
    return report


class _Verifier:
    """One verification run over an open file; fills ``report``."""

    def __init__(self, f: h5py.File, path: Path, src: Path | None, report: VerifyReport, progress: Progress) -> None:
        self.f, self.path, self.src, self.report = f, path, src, report
        self.progress = progress
        self.tick: Callable[[int], None] = lambda n: None
        self.repeated: dict[str, int] = {}  # kind -> problems of that kind found
        self.count = 0  # committed rows that every per-row dataset holds: the rows checked
        self.complete = bool(f.attrs.get("complete", False))
        journal = f.get(JOURNAL)
        self.journal: h5py.Group | None = journal if isinstance(journal, h5py.Group) else None
        # An incomplete store's names come from the journal (as imgstore.open reads them); its string dataset may
        # have been left unreadable by a crash and is rebuilt by the next write, so it is not judged.
        self.names_from_journal = not self.complete and self.has_journal("image_names")
        # Row ranges of image_names served by an unusable shard file: their empty names are not judged again.
        self.dead_name_rows: list[tuple[int, int]] = []

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
    def run(self) -> None:
        if not self.check_format():
            return
        datasets = self.check_counts()
        images = datasets.get("images")
        if images is not None:
            self.check_geometry(images)
        if "labels" in datasets:
            self.check_labels(datasets["labels"])
        self.check_virtual_sources()
        for name, ds in datasets.items():
            if not ds.is_virtual:
                self.check_chunks_stored(name, ds)
        self.check_journal()
        if "image_names" in datasets or self.names_from_journal:
            self.check_names(datasets.get("image_names"))
        self.check_skipped()
        total = (self.count if images is not None else 0) + (self.count if self.src is not None else 0)
        self.tick = progress_callback(self.progress, total)
        if images is not None:
            self.read_images(images)
        if self.src is not None and ("image_names" in datasets or self.names_from_journal):
            self.check_sources(datasets.get("image_names"), datasets.get("sha256"))
        for kind, seen in self.repeated.items():
            if seen > MAX_LISTED:
                self.report.problems.append(f"... and {seen - MAX_LISTED} more {kind}")
                self.report.unlisted += seen - MAX_LISTED - 1  # the summary line itself counts as one

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
                count = rows.get("images", 0)
            if count < 0:
                self.problem(f"count attribute is negative ({count})")
                count = 0
        else:
            count = rows.get("images", 0)
            self.problem(f"count attribute is missing, so readers see no images (images has {count} rows)")
        if "images" not in datasets and "images" not in f:
            if count > 0:
                self.problem(f"count is {count} but the store has no images dataset")
            else:
                self.note("the store holds no images")
        if self.names_from_journal and "image_names" in datasets:
            # Not judged (see __init__): the journal stands in for it.
            n = rows.pop("image_names")
            del datasets["image_names"]
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
            values = self.read_rows("labels", labels, a, b)
            if values is None:
                continue
            for j in np.flatnonzero((values < 0) | (values >= k)):
                self.problem(
                    f"labels row {a + j} is {int(values[j])}, outside 0..{k - 1} (class_names has {k} names)",
                    "labels out of range",
                )

    # -- names ------------------------------------------------------------------------------------------------
    def has_journal(self, key: str) -> bool:
        j = self.journal
        return j is not None and f"{key}.ends" in j and f"{key}.bytes" in j

    def journal_rows(self, key: str, a: int, b: int) -> list[str] | None:
        """Rows ``a:b`` of the journal copy of the text column ``key``, or None after reporting damage."""
        assert self.journal is not None
        ends_ds, bytes_ds = self.journal[f"{key}.ends"], self.journal[f"{key}.bytes"]
        try:
            lo = int(ends_ds[a - 1]) if a else 0
            ends = ends_ds[a:b].astype(np.int64)
            if b <= a:
                return []
            if ends[0] < lo or (np.diff(ends) < 0).any() or int(ends[-1]) > bytes_ds.shape[0]:
                raise ValueError("its row ends are not increasing within its bytes")
            blob = bytes_ds[lo : int(ends[-1])].tobytes()
        except _READ_ERRORS as exc:
            self.problem(f"the journal of {key} is damaged at rows {a}-{b - 1}: {exc}", "damaged journal batches")
            return None
        starts = np.concatenate(([lo], ends[:-1])) - lo
        return [blob[s:e].decode("utf-8", "replace") for s, e in zip(starts.tolist(), (ends - lo).tolist())]

    def names_batch(self, names: h5py.Dataset | None, a: int, b: int) -> list[str] | None:
        """Rows ``a:b`` of the names as readers see them (the journal for an incomplete store)."""
        if self.names_from_journal:
            return self.journal_rows("image_names", a, b)
        assert names is not None
        batch = self.read_rows("image_names", names, a, b)
        return None if batch is None else _texts(batch)

    def check_journal(self) -> None:
        """Each journaled text column holds at least its committed rows."""
        committed = {"image_names": self.committed, "skipped_names": self.skipped_count(), "skipped_reasons": self.skipped_count()}
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
        compare = not self.names_from_journal and self.has_journal("image_names")
        if compare:
            assert self.journal is not None
            compare = self.journal["image_names.ends"].shape[0] >= n
        hashes = np.zeros(n, np.int64)
        for a, b in _spans(n, TEXT_BATCH):
            batch = self.names_batch(names, a, b)
            if batch is None:
                continue
            hashes[a:b] = np.fromiter((hash(s) for s in batch), np.int64, b - a)
            copy = self.journal_rows("image_names", a, b) if compare else None
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
        for name in (*PER_ROW, "skipped_names", "skipped_reasons"):
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
        if "images" in self.f and self.f["images"].is_virtual:
            shards = sum(1 for u in uses.values() if "images" in u)
            self.note(f"images is a merged (virtual) dataset over {shards} file(s)")
        for file_name, by_dataset in uses.items():
            trouble = self.virtual_source_problem(folder, file_name, dset_names[file_name])
            if trouble is None:
                continue
            self.dead_name_rows += [(a, b + 1) for a, b in by_dataset.get("image_names", []) if a >= 0]
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
        return int(f["skipped_names"].shape[0]) if isinstance(f.get("skipped_names"), h5py.Dataset) else 0

    def check_skipped(self) -> None:
        """The skipped lists hold their committed rows (``skipped_count``, or pair up in older stores)."""
        f = self.f
        keys = ("skipped_names", "skipped_reasons")
        have = [k for k in keys if isinstance(f.get(k), h5py.Dataset)]
        if len(have) == 1:
            self.problem(f"{have[0]} exists without {({'skipped_names', 'skipped_reasons'} - set(have)).pop()}")
            return
        if not have:
            return
        rows = {k: int(f[k].shape[0]) for k in keys}
        if "skipped_count" not in f.attrs:
            if rows["skipped_names"] != rows["skipped_reasons"]:
                self.problem(f"skipped_names has {rows['skipped_names']} rows but skipped_reasons has {rows['skipped_reasons']}")
            return
        n = self.skipped_count()
        for k in keys:
            if rows[k] < n:
                self.problem(f"{k} has {rows[k]} rows but skipped_count is {n}")
        if self.complete or not self.has_journal("skipped_names"):
            for k in keys:
                for a, b in _spans(min(n, rows[k]), TEXT_BATCH):
                    self.read_rows(k, f[k], a, b)

    # -- reading --------------------------------------------------------------------------------------------
    def read_rows(self, name: str, ds: h5py.Dataset, a: int, b: int) -> np.ndarray | None:
        """Rows ``a:b`` of ``ds``, or None after reporting each row that cannot be read."""
        try:
            return ds[a:b]
        except _READ_ERRORS:
            pass
        for i in range(a, b):
            try:
                ds[i]
            except _READ_ERRORS as exc:
                self.problem(f"{name} row {i} cannot be read: {exc}", "rows that cannot be read")
        return None

    def read_images(self, images: h5py.Dataset) -> None:
        row_bytes = max(1, math.prod(images.shape[1:]))
        step = max(1, BATCH_BYTES // row_bytes)
        for a, b in _spans(self.count, step):
            try:
                images[a:b]
                self.report.checked += b - a
            except _READ_ERRORS:
                for i in range(a, b):
                    try:
                        images[i]
                        self.report.checked += 1
                    except _READ_ERRORS as exc:
                        self.problem(f"images row {i} cannot be read: {exc}", "rows that cannot be read")
            self.tick(b - a)

    def check_sources(self, names: h5py.Dataset | None, digests: h5py.Dataset | None) -> None:
        src = self.src
        assert src is not None
        if digests is None:
            self.note("the store records no SHA-256 digests: --sources checked only that each file exists")
        for a, b in _spans(self.count, TEXT_BATCH):
            batch = self.names_batch(names, a, b)
            stored = self.read_rows("sha256", digests, a, b) if digests is not None else None
            if batch is None:
                self.tick(b - a)
                continue
            for j, name in enumerate(batch):
                self.tick(1)
                if self.is_dead_name_row(a + j):
                    continue  # its shard file is missing: already a problem
                file = source_path(src, name)
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


def _texts(values: np.ndarray) -> list[str]:
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]


def _sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.digest()


_ESCAPED_BYTE = re.compile(rb"\\x([0-9a-fA-F]{2})")


def source_path(root: str | os.PathLike[str], name: str) -> Path:
    """The file under ``root`` that the stored ``name`` came from.

    Names are ``/``-separated; bytes that were not UTF-8 were stored as ``\\xNN`` and are turned back into those
    bytes when the literal name does not exist (a name that really contains ``\\x`` is tried as written first).
    """
    direct = Path(root).joinpath(*name.split("/"))
    if "\\x" not in name or direct.exists():
        return direct
    raw = _ESCAPED_BYTE.sub(lambda m: bytes([int(m.group(1), 16)]), name.encode("utf-8"))
    unescaped = Path(os.fsdecode(os.path.join(os.fsencode(Path(root)), *raw.split(b"/"))))
    return unescaped if unescaped.exists() else direct


# ================================================================================================= preview

GAP = 8  # pixels between tiles and around the sheet
DEFAULT_TILE = 128
MAX_SHEET_PIXELS = 100_000_000


@dataclass(frozen=True)
class PreviewLayout:
    """Geometry of a contact sheet: ``columns`` x ``rows`` cells, each a ``tile`` x ``tile`` square for the image
    with ``text_lines`` lines of ``line_height`` pixels under it, ``GAP`` pixels between cells and around them."""

    count: int
    columns: int
    rows: int
    tile: int
    text_lines: int
    font_size: int
    line_height: int

    @property
    def cell_height(self) -> int:
        return self.tile + self.text_lines * self.line_height

    @property
    def width(self) -> int:
        return self.columns * self.tile + (self.columns + 1) * GAP

    @property
    def height(self) -> int:
        return self.rows * self.cell_height + (self.rows + 1) * GAP

    def tile_origin(self, k: int) -> tuple[int, int]:
        """Top-left ``(x, y)`` of the k-th cell's image square (cells fill rows left to right)."""
        r, c = divmod(k, self.columns)
        return GAP + c * (self.tile + GAP), GAP + r * (self.cell_height + GAP)

    def thumb_size(self, height: int, width: int) -> tuple[int, int]:
        """``(w, h)`` of an image of ``height`` x ``width`` scaled to fit the tile, keeping its aspect; it is drawn
        centred across the tile square and touching its bottom edge."""
        scale = self.tile / max(height, width)
        return max(1, round(width * scale)), max(1, round(height * scale))


def preview_layout(count: int, *, columns: int | None = None, tile: int | None = None, labels: bool = False) -> PreviewLayout:
    """The sheet geometry for ``count`` images: ``columns`` defaults to ceil(sqrt(count)), ``tile`` to 128 px.

    Each cell has one text line (index and name) under the image, two when the store has labels (class name).
    """
    if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 1:
        raise OptionError(f"invalid count {count!r}: give the number of images to show, at least 1")
    tile = DEFAULT_TILE if tile is None else tile
    if not isinstance(tile, (int, np.integer)) or isinstance(tile, bool) or not 16 <= tile <= 2048:
        raise OptionError(f"invalid tile {tile!r}: give the tile size in pixels, 16 to 2048")
    if columns is None:
        columns = math.ceil(math.sqrt(count))
    elif not isinstance(columns, (int, np.integer)) or isinstance(columns, bool) or columns < 1:
        raise OptionError(f"invalid columns {columns!r}: give a number of columns, at least 1")
    columns = min(int(columns), int(count))
    font_size = max(9, min(16, tile // 10))
    return PreviewLayout(
        count=int(count),
        columns=columns,
        rows=math.ceil(count / columns),
        tile=int(tile),
        text_lines=2 if labels else 1,
        font_size=font_size,
        line_height=math.ceil(font_size * 1.4),
    )


def make_preview(
    path: str | os.PathLike[str],
    out_png: str | os.PathLike[str],
    *,
    count: int = 64,
    random: bool = False,
    seed: int = 0,
    columns: int | None = None,
    tile: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Draw a contact sheet of the store at ``path`` into ``out_png`` and return its path.

    Shows the first ``count`` images (all when the store holds fewer), or with ``random`` a sample of ``count``
    drawn without replacement with ``seed``, in store order. Each image is scaled to fit a ``tile``-pixel square
    (aspect kept; small images enlarged with nearest-neighbour so their pixels stay visible) on a white sheet, with
    its row index and name (shortened from the left to fit) under it, and its class name when the store has labels.
    The format follows the extension (PNG for ``.png``). See :func:`preview_layout` for the geometry.
    """
    from PIL import Image, ImageDraw

    out = Path(out_png)
    check_output(out, overwrite, example="preview.png")
    with open_store(path) as store:
        n = len(store)
        if n == 0:
            raise StoreError(f"{store.path} holds no images: there is nothing to preview")
        labels = store.labels
        layout = preview_layout(count, columns=columns, tile=tile, labels=labels is not None)
        k = min(layout.count, n)
        if k < layout.count:  # a store smaller than count: a sheet just big enough for all of it
            layout = preview_layout(k, columns=columns, tile=tile, labels=labels is not None)
        if layout.width * layout.height > MAX_SHEET_PIXELS:
            raise OptionError(
                f"the sheet would be {layout.width}x{layout.height} pixels: lower count ({count}) or tile ({layout.tile})"
            )
        fmt = Image.registered_extensions().get(out.suffix.lower())
        if fmt is None:
            raise OptionError(f"cannot tell an image format from {out.name!r}: name the sheet .png")
        if random:
            rows = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
        else:
            rows = np.arange(k)
        names = store.names
        class_names = store.class_names
        font = _font(layout.font_size)
        sheet = Image.new("RGB", (layout.width, layout.height), "white")
        draw = ImageDraw.Draw(sheet)
        for cell, i in enumerate(rows.tolist()):
            x, y = layout.tile_origin(cell)
            arr = store[i]
            im = Image.fromarray(arr[:, :, 0], "L") if arr.shape[2] == 1 else Image.fromarray(arr, "RGB")
            tw, th = layout.thumb_size(arr.shape[0], arr.shape[1])
            if (tw, th) != im.size:
                shrink = tw < im.width or th < im.height
                im = im.resize((tw, th), Image.Resampling.LANCZOS if shrink else Image.Resampling.NEAREST)
            # Centred across, standing on the text so a wide image keeps its caption close.
            sheet.paste(im.convert("RGB"), (x + (layout.tile - tw) // 2, y + layout.tile - th))
            text_y = y + layout.tile + 1
            line = _fit(font, f"{i} ", names[i] if i < len(names) else "", layout.tile)
            _draw_centered(draw, font, line, x, text_y, layout.tile, (0, 0, 0))
            if labels is not None:
                label = int(labels[i])
                text = class_names[label] if class_names and 0 <= label < len(class_names) else f"label {label}"
                line = _fit(font, "", text, layout.tile, keep_end=False)
                _draw_centered(draw, font, line, x, text_y + layout.line_height, layout.tile, (20, 40, 150))
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        sheet.save(tmp, format=fmt)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _drawable(font: Any, text: str) -> str:
    from PIL import ImageFont

    if isinstance(font, ImageFont.FreeTypeFont):
        return text
    return text.encode("latin-1", "replace").decode("latin-1")  # the bitmap font has Latin-1 glyphs only


def _fit(font: Any, prefix: str, text: str, width: int, keep_end: bool = True) -> str:
    """``prefix + text``, with ``text`` shortened by ``...`` (at its start when ``keep_end``) to fit ``width`` px."""
    text = _drawable(font, text)
    full = prefix + text
    if font.getlength(full) <= width:
        return full
    lo, hi = 0, len(text)  # the longest kept part that fits, by bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        part = text[len(text) - mid :] if keep_end else text[:mid]
        candidate = prefix + ("..." + part if keep_end else part + "...")
        if font.getlength(candidate) <= width:
            lo = mid
        else:
            hi = mid - 1
    part = text[len(text) - lo :] if keep_end else text[:lo]
    return prefix + ("..." + part if keep_end else part + "...")


def _draw_centered(draw: Any, font: Any, text: str, x: int, y: int, width: int, fill: tuple[int, int, int]) -> None:
    left = x + max(0, (width - int(font.getlength(text))) // 2)
    draw.text((left, y), text, fill=fill, font=font)


# ================================================================================================= extract

_RANGE = re.compile(r"(-?\d+)\s*-\s*(-?\d+)")
_UNSAFE = re.compile(r"[^\w.\-]+")
MAX_NAME_BYTES = 200  # of the sanitised name part; file systems allow 255


def _resolve_index(i: int, n: int) -> int:
    if n == 0:
        raise OptionError(f"index {i} is out of range: the store holds no images")
    if not -n <= i < n:
        raise OptionError(f"index {i} is out of range for a store of {n} images (use 0 to {n - 1}, or -{n} to -1)")
    return i % n


def parse_indices(text: str, n: int) -> list[int]:
    """Row indices from text like ``"0,5,10-20"`` for a store of ``n`` images, in the order given, without repeats.

    Items are separated by commas; ``a-b`` is the inclusive range a..b; negative numbers count from the end
    (``-1`` is the last row, ``-3--1`` the last three). Out-of-range or malformed items raise OptionError.
    """
    if not text.strip():
        raise OptionError("no indices given: use e.g. 0,5,10-20")
    out: dict[int, None] = {}
    for item in text.split(","):
        token = item.strip()
        if re.fullmatch(r"-?\d+", token):
            out[_resolve_index(int(token), n)] = None
            continue
        m = _RANGE.fullmatch(token)
        if m is None:
            raise OptionError(
                f"invalid index {token!r} in {text!r}: use numbers and ranges like 0,5,10-20 (negative counts from the end)"
            )
        a, b = _resolve_index(int(m.group(1)), n), _resolve_index(int(m.group(2)), n)
        if a > b:
            raise OptionError(f"invalid range {token!r}: it goes backwards (rows {a} to {b})")
        out.update(dict.fromkeys(range(a, b + 1)))
    return list(out)


def export_file_name(index: int, name: str, width: int = 6) -> str:
    """A safe, recognisable PNG file name for row ``index`` named ``name``.

    ``cat/1.jpg`` at row 7 -> ``000007_cat__1.png``: ``/`` becomes ``__``, the extension becomes ``.png``, and
    characters other than letters, digits, ``_``, ``.`` and ``-`` become ``_``. The zero-padded index keeps the
    files in store order and makes every name unique.
    """
    stem, _ = posixpath.splitext(name)
    safe = _UNSAFE.sub("_", stem.replace("/", "__")).strip(".") or "image"
    safe = safe.encode("utf-8")[:MAX_NAME_BYTES].decode("utf-8", "ignore")
    return f"{index:0{width}d}_{safe}.png"


def extract_images(
    path: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    *,
    indices: Sequence[int] | str | None = None,
    overwrite: bool = False,
    progress: Progress = None,
) -> list[Path]:
    """Write rows of the store at ``path`` as PNG files in ``outdir`` (created if needed); return their paths.

    ``indices``: ints (negative count from the end), a string for :func:`parse_indices` (``"0,5,10-20"``), or None
    for every row. Files are named by :func:`export_file_name`; one-channel stores give grayscale PNGs. Existing
    files are refused, before anything is written, unless ``overwrite``. ``progress`` gets image increments.
    """
    import imageio.v3 as iio

    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder: give a folder for the PNG files")
    with open_store(path) as store:
        n = len(store)
        if indices is None:
            rows = list(range(n))
        elif isinstance(indices, str):
            rows = parse_indices(indices, n)
        else:
            picked: dict[int, None] = {}
            for i in indices:
                if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
                    raise OptionError(f"invalid index {i!r}: indices are integers")
                picked[_resolve_index(int(i), n)] = None
            rows = list(picked)
        names = store.names
        width = max(6, len(str(max(n - 1, 0))))
        targets = [out / export_file_name(i, names[i], width) for i in rows]
        if not overwrite:
            existing = [t.name for t in targets if t.exists()]
            if existing:
                shown = ", ".join(existing[:3]) + (", ..." if len(existing) > 3 else "")
                raise OutputExistsError(
                    f"{len(existing)} file(s) exist in {out} ({shown}): pass overwrite=True (--overwrite) to replace them"
                )
        out.mkdir(parents=True, exist_ok=True)
        tick = progress_callback(progress, len(rows))
        for i, target in zip(rows, targets):
            arr = store[i]
            iio.imwrite(target, arr[:, :, 0] if arr.shape[2] == 1 else arr, extension=".png")
            tick(1)
    return targets
