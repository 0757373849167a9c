"""Join shard stores (``imgstore ingest --shard K/N``) into one store: ``imgstore merge OUT SHARD...``.

HDF5 files cannot be written by several processes at once (without MPI), so a collection too large for one machine
is ingested as N shard files, each a plain store holding one contiguous range of the file list (sorted; a list
file's in list order), and then
joined here. Two ways to join:

- virtual (default): OUT holds HDF5 virtual datasets (``h5py.VirtualLayout``) that map the shards' committed rows
  one after another, so OUT is a few KiB, written in milliseconds, and reads like a plain store. Source files are
  recorded by paths relative to OUT's folder, which HDF5 resolves against the folder of the virtual file: OUT and
  its shards can be moved or copied together. HDF5 reads the rows of a missing source file as zeros without an
  error; :func:`missing_sources` lists the shard files a virtual store cannot find.
- copy (``copy=True``, ``--copy``): the rows are streamed shard by shard, in bounded batches, through
  :class:`~imgstore.store.writer.ImageIndexer` into one self-contained plain store.

Shards of flat rows (format 4: encoded, or rows of their own shapes) merge into a flat store. Virtual: ``image_data``
maps each shard's committed bytes end to end and ``shapes`` each shard's rows; ``image_ends`` cannot be virtual (a
virtual dataset maps values, it cannot add the bytes of the shards before), so OUT holds it as a plain dataset, each
shard's ends shifted by the bytes before it: 8 bytes a row. The checksums cover a row's shape and bytes, never
where they lie, so the shards' serve unchanged. ``--copy`` copies each row's bytes as stored (no decode, no
re-encode). Shards of different encodings, or flat and fixed-shape shards, are refused naming both.

Either way OUT satisfies the store format (``count`` = the sum of the shards' counts, ``complete``, ``size``, ...),
with ``merged_from`` (the shard file names relative to OUT's folder) added and the ``shard`` attributes dropped.
The rows, names, digests, labels and skipped lists are the shards' in K order, which is exactly what a
single-machine ingest of the same folder stores.

Shards are checked before anything is written: each must be a complete shard, they must come from one run (same
N and number of candidate files, every K once, ranges tiling ``[0, total)`` with no gap or overlap) and agree on
everything that shapes the rows (size, channels, resize mode, filter, exact, labels scheme and class names).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from imgstore.errors import OptionError, StoreError, os_cause
from imgstore.lock import WriterLock
from imgstore.options import resolve_path, shard_range
from imgstore.outputs import StagedOutputs, check_target, remove_stale_temps
from imgstore.progress import ProgressLike
from imgstore.progress import started as start_progress
from imgstore.store.encoding import flat_crc
from imgstore.store.file import compression_of, flat_spans, read_flat
from imgstore.store.format import (
    CHECKSUMS,
    ENCODING,
    IMAGE_DATA,
    IMAGE_ENDS,
    IMAGES,
    LABELS,
    LIBVER,
    NAMES,
    SHA256,
    SHAPES,
    SKIPPED_NAMES,
    SKIPPED_REASONS,
    STR,
    VARIABLE,
    open_read,
    pixel_crc,
    read_text_column,
    row_checksum,
)
from imgstore.store.meta import TEXT, Columns, columns_of, meta_bytes, meta_path, read_meta
from imgstore.store.reader import read_root_attrs
from imgstore.store.writer import ImageIndexer

# Root attributes that describe one shard only; a merged store does not carry them.
SHARD_ATTRS = ("shard", "shard_range", "shard_total")

# Root attributes the shards must agree on, with the words used in error messages. Missing on one shard and present
# on another counts as a disagreement (e.g. labelled and unlabelled shards).
COMPAT_ATTRS = (
    ("imgstore_format", "store format"),
    (ENCODING, "encoding"),
    (VARIABLE, "rows of their own shapes"),
    ("size", "size"),
    ("channels", "channels"),
    ("resize_mode", "resize mode"),
    ("filter", "filter"),
    ("exact", "exact"),
    ("labels_source", "labels scheme"),
    ("class_names", "class names"),
    ("meta_columns", "meta columns"),
)

# Options that shape the rows but are recorded only in the ``ingest_options`` attribute (JSON), with their default
# for shards made before the option existed, and the words used in error messages.
RECORDED_COMPAT = (("upscale", "upscale"),)
RECORDED_DEFAULTS: dict[str, Any] = {"upscale": False}

# Rows are copied about this many bytes at a time (plus the writer's own buffer), whatever the store size.
COPY_BATCH_BYTES = 16 * 2**20


@dataclass
class MergeReport:
    """What :func:`merge_shards` wrote: ``count`` images from ``shards`` into ``path``, virtual or copied."""

    path: Path
    count: int
    shards: list[Path]
    virtual: bool
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def summary(self) -> str:
        """The one line the CLI prints at the end."""
        how = (
            "virtual: it reads the shard files, keep them next to it"
            if self.virtual
            else "a self-contained copy"
        )
        return (
            f"merged {len(self.shards)} shards into {self.path}: {self.count} images, skipped {len(self.skipped)} "
            f"({how})"
        )


@dataclass
class _Shard:
    """What merging needs to know about one shard file, read once."""

    path: Path  # as given, ~ expanded: used in messages
    attrs: dict[str, Any]  # root attributes as plain Python values
    raw_attrs: dict[str, Any]  # root attributes as h5py returns them (copied to OUT unchanged)
    k: int
    n: int
    start: int
    stop: int
    total: int
    count: int
    skipped: int  # committed rows of the skipped lists (``skipped_count``, or all rows in older stores)
    rows: dict[str, tuple[int, ...]]  # dataset name -> full shape on disk
    compression: tuple[Any, Any]  # (compression, compression_opts) of ``images`` (``image_data``) for --copy
    meta: Columns = ()  # meta columns, ((column, kind), ...)
    flat: bool = False  # format 4: rows are bytes in image_data (see imgstore.store.format)
    data_end: int = 0  # flat: the bytes of image_data its committed rows use

    @property
    def kind(self) -> str:
        """How the shard stores its rows, for messages: its encoding, or raw fixed-shape images."""
        if not self.flat:
            return "raw fixed-shape images (format 2-3)"
        own = " of their own shapes" if self.attrs.get(VARIABLE) else ""
        return f"flat {self.attrs.get(ENCODING, 'none')} rows{own} (format 4)"

    @property
    def label(self) -> str:
        return f"{self.path} (shard {self.k}/{self.n})"

    def has(self, name: str) -> bool:
        return name in self.rows


def _read_shard(path: Path) -> _Shard:
    if not path.exists():
        raise StoreError(f"{path} does not exist: give the shard files made by imgstore ingest --shard K/N")
    if path.is_dir():
        raise StoreError(f"{path} is a folder: give the shard files made by imgstore ingest --shard K/N")
    if not h5py.is_hdf5(path):
        raise StoreError(f"{path} is not an HDF5 file: give the shard files made by imgstore ingest --shard K/N")
    try:
        f = open_read(path)
    except OSError as exc:
        raise StoreError(f"{path} cannot be opened as an HDF5 store: {os_cause(exc)}") from None
    with f:
        if "imgstore_format" not in f.attrs:
            raise StoreError(f"{path} is an HDF5 file but not an imgstore store (no imgstore_format attribute)")
        attrs = read_root_attrs(f)
        raw = dict(f.attrs.items())
        if "shard" not in attrs:
            raise StoreError(
                f"{path} is not a shard (no shard attribute): make shards with imgstore ingest --shard K/N"
            )
        try:
            k, n = (int(v) for v in attrs["shard"])
            start, stop = (int(v) for v in attrs["shard_range"])
            total = int(attrs["shard_total"])
        except (KeyError, TypeError, ValueError):
            raise StoreError(f"{path} has damaged shard attributes (shard, shard_range, shard_total)") from None
        if not attrs.get("complete", False):
            raise StoreError(
                f"{path} (shard {k}/{n}) is incomplete: its ingest did not finish; ingest it again with --shard {k}/{n}"
            )
        count = int(attrs.get("count", 0))
        rows = {name: tuple(obj.shape) for name, obj in f.items() if isinstance(obj, h5py.Dataset)}
        try:
            meta = columns_of(f)
        except (KeyError, ValueError) as exc:
            raise StoreError(f"{path} is damaged: {exc} (imgstore verify {path} says more)") from None
        rows.update((meta_path(c), tuple(f[meta_path(c)].shape)) for c, _ in meta)
        skipped = int(attrs.get("skipped_count", rows.get(SKIPPED_NAMES, (0,))[0]))
        for name in (SKIPPED_NAMES, SKIPPED_REASONS):
            if rows.get(name, (0,))[0] < skipped:
                raise StoreError(f"{path} is damaged: skipped_count says {skipped} but {name} holds fewer rows")
        flat = IMAGE_DATA in f
        needed = (IMAGE_ENDS, SHAPES) if flat else (IMAGES,)
        for name in (*needed, NAMES, SHA256, LABELS, *(meta_path(c) for c, _ in meta)):  # all but three optional
            required = name in rows or name in (*needed, NAMES)
            if count and required and rows.get(name, (0,))[0] < count:
                raise StoreError(f"{path} is damaged: count says {count} images but {name} holds fewer rows")
        compression: tuple[Any, Any] = (None, None)
        data_end = 0
        if flat:
            data = f[IMAGE_DATA]
            if data.dtype != np.uint8 or data.ndim != 1:
                raise StoreError(f"{path} is damaged: {IMAGE_DATA} is {data.dtype} {data.shape}, not 1-D uint8")
            ends = f[IMAGE_ENDS][:count].astype(np.int64)
            data_end = int(ends[-1]) if count else 0
            if count and (int(ends[0]) < 0 or (np.diff(ends) < 0).any() or data_end > data.shape[0]):
                raise StoreError(
                    f"{path} is damaged: its row ends are not increasing within {IMAGE_DATA} (imgstore verify {path} says more)"
                )
            compression = compression_of(data)
        elif "images" in f:
            ds = f[IMAGES]
            if ds.dtype != np.uint8 or ds.ndim != 4:
                raise StoreError(f"{path} is damaged: images is {ds.dtype} {ds.shape}, not uint8 (N, H, W, C)")
            compression = compression_of(ds)
    return _Shard(path, attrs, raw, k, n, start, stop, total, count, skipped, rows, compression, meta, flat, data_end)


def _recorded(shard: _Shard, key: str) -> Any:
    """Option ``key`` as the shard's ``ingest_options`` records it (its default when not recorded; None when the
    shard records no options at all, as stores written with ImageIndexer directly)."""
    raw = shard.attrs.get("ingest_options")
    if raw is None:
        return None
    try:
        options = json.loads(raw)
    except (TypeError, ValueError):
        raise StoreError(f"{shard.path} has a damaged ingest_options attribute: run imgstore verify on it") from None
    return options.get(key, RECORDED_DEFAULTS.get(key)) if isinstance(options, dict) else None


def _show(key: str, value: Any) -> str:
    if value is None:
        return "none"
    if key == VARIABLE:
        return "yes" if value else "no"
    if key == "size" and isinstance(value, list) and len(value) == 2:
        return f"{value[0]}x{value[1]}"
    if key == "class_names" and isinstance(value, list) and len(value) > 6:
        return f"[{', '.join(map(str, value[:6]))}, ... ({len(value)} classes)]"
    if isinstance(value, list):
        return f"[{', '.join(map(str, value))}]"
    return str(value)


def check_shards(shards: list[_Shard]) -> list[_Shard]:
    """Refuse shards that do not form one run or do not agree; return them in K order."""
    first = shards[0]
    for s in shards[1:]:
        if (s.n, s.total) != (first.n, first.total):
            raise StoreError(
                f"{first.path} is shard {first.k}/{first.n} of {first.total} files but {s.path} is shard {s.k}/{s.n} "
                f"of {s.total} files: give the shards of one run"
            )
    by_k: dict[int, _Shard] = {}
    for s in shards:
        if s.k in by_k:
            raise StoreError(f"{by_k[s.k].path} and {s.path} are both shard {s.k}/{s.n}: give each shard once")
        by_k[s.k] = s
    missing = [k for k in range(1, first.n + 1) if k not in by_k]
    if missing:
        k = missing[0]
        start, stop = shard_range(first.total, (k, first.n))
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise StoreError(
            f"shard {k}/{first.n} is missing{more}: no shard covers files [{start}, {stop}) of {first.total}; "
            f"give all {first.n} shards"
        )
    ordered = [by_k[k] for k in range(1, first.n + 1)]
    expected = 0
    prev: _Shard | None = None
    for s in ordered:
        if s.start > expected:
            where = f"{prev.label} ends at file {expected} but {s.label} starts at file {s.start}" if prev else (
                f"{s.label} starts at file {s.start}"
            )
            raise StoreError(f"gap: {where}: files [{expected}, {s.start}) are in no shard")
        if s.start < expected:
            assert prev is not None
            raise StoreError(
                f"overlap: {prev.label} ends at file {expected} but {s.label} starts at file {s.start}: "
                f"files [{s.start}, {expected}) are in both"
            )
        if s.stop < s.start:
            raise StoreError(f"{s.label} has a damaged shard_range [{s.start}, {s.stop})")
        expected, prev = s.stop, s
    if expected != first.total:
        assert prev is not None
        raise StoreError(
            f"gap: {prev.label} ends at file {expected} of {first.total}: files [{expected}, {first.total}) are in "
            "no shard"
        )
    for s in ordered[1:]:
        if s.flat != ordered[0].flat:
            head = ordered[0]
            raise StoreError(f"cannot merge {head.path} ({head.kind}) with {s.path} ({s.kind}): give shards of one run")
    for key, what in COMPAT_ATTRS:
        for s in ordered[1:]:
            a, b = first.attrs.get(key), s.attrs.get(key)
            if a != b:
                raise StoreError(
                    f"shards disagree on {what}: {first.path} has {_show(key, a)} but {s.path} has {_show(key, b)}"
                )
    for key, what in RECORDED_COMPAT:
        for s in ordered[1:]:
            a, b = _recorded(ordered[0], key), _recorded(s, key)
            if a != b:
                raise StoreError(
                    f"shards disagree on {what}: {ordered[0].path} has {_show(key, a)} but {s.path} has {_show(key, b)}"
                )
    # Optional per-row datasets exist only once a shard stored an image: compare shards that hold images.
    filled = [s for s in ordered if s.count]
    for name, what in ((LABELS, LABELS), (SHA256, "sha256 digests")):
        having = [s for s in filled if s.has(name)]
        if having and len(having) != len(filled):
            lacking = next(s for s in filled if not s.has(name))
            raise StoreError(f"shards disagree on {what}: {having[0].path} has them but {lacking.path} has none")
    for s in ordered[1:]:
        if s.meta != first.meta:
            show = lambda m: ", ".join(f"{c} ({k})" for c, k in m) or "none"  # noqa: E731
            raise StoreError(f"shards disagree on meta columns: {first.path} has {show(first.meta)} but {s.path} has {show(s.meta)}")
    shapes = {s.rows[IMAGES][1:] for s in ordered if s.has(IMAGES) and not s.flat}
    if len(shapes) > 1:
        raise StoreError(f"shards disagree on the image shape (H, W, C): {sorted(shapes)}")
    return ordered


def _merged_attrs(shards: list[_Shard], out_dir: Path) -> dict[str, Any]:
    """OUT's root attributes: the first shard's, minus the shard ones, with count, created and merged_from."""
    counters = ("count", "skipped_count", "complete")  # set by whoever writes OUT's rows
    attrs = {k: v for k, v in shards[0].raw_attrs.items() if k not in SHARD_ATTRS and k not in counters}
    created = sorted(str(s.attrs["created"]) for s in shards if s.attrs.get("created"))
    if created:
        attrs["created"] = created[0]  # the rows were made from then on
    compressions = {str(s.attrs.get("compression")) for s in shards}
    if len(compressions) > 1:
        attrs.pop("compression", None)
    attrs["merged_from"] = [_relative(s.path, out_dir) for s in shards]
    return attrs


def _relative(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` with ``/`` separators (absolute when no relative path exists)."""
    target = os.path.abspath(path)
    try:
        return Path(os.path.relpath(target, os.path.abspath(folder))).as_posix()
    except ValueError:  # another drive on Windows
        return Path(target).as_posix()


def _shape(shards: list[_Shard]) -> tuple[int, int, int]:
    for s in shards:
        if s.has(IMAGES):
            h, w, c = (int(v) for v in s.rows[IMAGES][1:])
            return (h, w, c)
    size = shards[0].attrs.get("size") or [0, 0]
    return (int(size[1]), int(size[0]), int(shards[0].attrs.get("channels", 3)))


def merge_shards(
    out: str | os.PathLike[str],
    shards: Sequence[str | os.PathLike[str]],
    *,
    copy: bool = False,
    overwrite: bool = False,
    progress: ProgressLike = None,
) -> MergeReport:
    """Join shard stores into the store ``out``: virtual datasets over the shards, or (``copy``) one plain file.

    ``shards`` may come in any order; they are checked first (see the module docstring) and a mismatch raises
    :class:`~imgstore.errors.StoreError` naming the shards, before anything is written. An existing ``out`` is
    refused unless ``overwrite``. ``out`` is written under a temporary name in its folder and renamed at the end, so
    it appears complete or not at all. ``progress`` (a callable or a tqdm-like bar) receives row increments.
    """
    started = time.perf_counter()
    if not shards:
        raise OptionError("give at least one shard to merge")
    out_path = resolve_path(out)
    paths = [resolve_path(p) for p in shards]
    for p in paths:
        if p.exists() and out_path.exists() and os.path.samefile(p, out_path):
            raise OptionError(f"{out_path} is one of the shards: give a new file name for the merged store")
    # One writer of OUT at a time; the copy is a store built by the write protocol, the virtual file a staged one.
    with WriterLock(out_path):
        check_target(out_path, overwrite)
        remove_stale_temps(out_path)
        ordered = check_shards([_read_shard(p) for p in paths])
        out_dir = out_path.parent if str(out_path.parent) else Path(".")
        attrs = _merged_attrs(ordered, out_dir)
        tick = start_progress(progress, sum(s.count for s in ordered))
        if copy:
            _write_copy(out_path, ordered, attrs, tick)  # a store, built by the write protocol
        else:
            with StagedOutputs([out_path], overwrite) as staged:
                _write_virtual(staged.temp(out_path), out_dir, ordered, attrs, tick)
    skipped: list[tuple[str, str]] = []
    for s in ordered:
        skipped.extend(_read_skipped(s))
    return MergeReport(
        path=out_path,
        count=sum(s.count for s in ordered),
        shards=[s.path for s in ordered],
        virtual=not copy,
        skipped=skipped,
        seconds=time.perf_counter() - started,
    )


def _read_skipped(shard: _Shard) -> list[tuple[str, str]]:
    if not shard.skipped:
        return []
    with open_read(shard.path) as f:
        n = shard.skipped
        return list(zip(read_text_column(f, SKIPPED_NAMES, n, complete=True),
                        read_text_column(f, SKIPPED_REASONS, n, complete=True)))  # fmt: skip


# -- virtual ------------------------------------------------------------------------------------------------------


def _vds_name(relative: str) -> str:
    # HDF5 reads printf-style specifiers (%b) in source file and dataset names: a literal % must be written %%.
    return relative.replace("%", "%%")


def _write_virtual(tmp: Path, out_dir: Path, shards: list[_Shard], attrs: dict[str, Any], tick: Any) -> None:
    shape = _shape(shards)
    count = sum(s.count for s in shards)
    filled = [s for s in shards if s.count]
    sources = {id(s): _vds_name(_relative(s.path, out_dir)) for s in shards}

    def virtual(f: h5py.File, name: str, dtype: Any, row_shape: tuple[int, ...], rows_of: Any) -> None:
        parts = [(s, rows_of(s)) for s in shards if s.has(name) and rows_of(s)]
        total = sum(r for _, r in parts)
        layout = h5py.VirtualLayout(shape=(total, *row_shape), dtype=dtype, maxshape=(None, *row_shape))
        offset = 0
        for s, r in parts:
            src = h5py.VirtualSource(sources[id(s)], _vds_name(name), shape=s.rows[name], dtype=dtype)  # meta/a%2Fb
            layout[offset : offset + r] = src[:r]
            offset += r
        f.create_virtual_dataset(name, layout, fillvalue=0 if dtype is not STR else None)

    with h5py.File(tmp, "w", libver=LIBVER) as f:
        for key, value in attrs.items():
            f.attrs[key] = value
        if shards[0].flat:
            _write_flat_index(f, shards)
            virtual(f, IMAGE_DATA, np.uint8, (), lambda s: s.data_end)
            virtual(f, SHAPES, np.uint32, (3,), lambda s: s.count)
        else:
            virtual(f, IMAGES, np.uint8, shape, lambda s: s.count)
        virtual(f, NAMES, STR, (), lambda s: s.count)
        if filled and filled[0].has(SHA256):
            virtual(f, SHA256, np.uint8, (32,), lambda s: s.count)
        if filled and filled[0].has(LABELS):
            virtual(f, LABELS, np.int64, (), lambda s: s.count)
        if filled and all(s.has(CHECKSUMS) for s in filled):
            virtual(f, CHECKSUMS, np.uint32, (), lambda s: s.count)
        for column, kind in shards[0].meta:
            virtual(f, meta_path(column), STR if kind == TEXT else np.dtype(kind), (), lambda s: s.count)
        for name in (SKIPPED_NAMES, SKIPPED_REASONS):
            virtual(f, name, STR, (), lambda s: s.skipped)
        # OUT appears under its name only when written whole (renamed by the caller), so no staged counts here.
        f.attrs["skipped_count"] = sum(s.skipped for s in shards)
        f.attrs["count"] = count
        f.attrs["complete"] = True
    tick(count)


def _write_flat_index(f: h5py.File, shards: list[_Shard]) -> None:
    """``image_ends`` of a merged flat store: a plain dataset, each shard's ends shifted by the bytes of the shards
    before it (a virtual dataset maps values, it cannot add to them). ``image_data`` and ``shapes`` map the shards'
    as they are, and the checksums cover shapes and bytes, never offsets, so they stay valid. 8 bytes a row."""
    count = sum(s.count for s in shards)
    ends = f.create_dataset(IMAGE_ENDS, shape=(count,), maxshape=(None,), chunks=(4096,), dtype=np.int64)
    row = offset = 0
    for s in shards:
        if not s.count:
            continue
        with open_read(s.path) as src:
            ends[row : row + s.count] = src[IMAGE_ENDS][: s.count].astype(np.int64) + offset
        row, offset = row + s.count, offset + s.data_end


def missing_sources(path: str | os.PathLike[str]) -> list[str]:
    """The shard files a virtual store at ``path`` cannot find (relative to its folder); [] for a plain store.

    HDF5 reads the rows of a missing source file as zeros without an error, so a merged store moved without its
    shards would look fine but hold blank images: check with this (``imgstore verify`` should).
    """
    p = resolve_path(path)
    with open_read(p) as f:
        key = IMAGE_DATA if IMAGE_DATA in f else IMAGES
        if key not in f or not f[key].is_virtual:
            return []
        files = {vs.file_name.replace("%%", "%") for name in f for vs in _sources(f[name])}
    folder = p.parent
    return sorted(name for name in files if not (folder / name).is_file())


def _sources(obj: Any) -> list[Any]:
    return obj.virtual_sources() if isinstance(obj, h5py.Dataset) and obj.is_virtual else []


# -- copy ---------------------------------------------------------------------------------------------------------


def _write_copy(out: Path, shards: list[_Shard], attrs: dict[str, Any], tick: Any) -> None:
    """Stream the shards' rows into one plain store at ``out`` (built under a temporary name, renamed when whole).

    Each row is checked against its shard's checksum on the way: a damaged shard row stops the merge.
    """
    shape = _shape(shards)
    flat = shards[0].flat
    kinds = {s.compression for s in shards if s.has(IMAGE_DATA if flat else IMAGES)}
    compression, opts = kinds.pop() if len(kinds) == 1 else (None, None)
    if compression is None:
        attrs = {k: v for k, v in attrs.items() if k != "compression"}
    filled = [s for s in shards if s.count]
    labels_on = bool(filled) and filled[0].has(LABELS)
    hashes_on = bool(filled) and filled[0].has(SHA256)
    step = max(1, COPY_BATCH_BYTES // max(1, int(np.prod(shape))))
    h, w, c = shape
    columns = shards[0].meta
    attrs = {k: v for k, v in attrs.items() if k not in ("meta_columns", ENCODING, VARIABLE)}  # the writer records its own
    encoding = str(shards[0].attrs.get(ENCODING, "none")) if flat else "none"
    variable = bool(shards[0].attrs.get(VARIABLE, False)) if flat else False
    with ImageIndexer(
        out, size=(w, h), channels=c, attrs=attrs, compression=compression, compression_opts=opts, overwrite=True,
        labels=labels_on, sha256=hashes_on, staged=True, meta=columns, encoding=encoding, variable=variable,
    ) as ix:  # fmt: skip
        for s in shards:
            for name, reason in _read_skipped(s):
                ix.skip(name, reason)
            with open_read(s.path) as f:
                names_all = read_text_column(f, NAMES, s.count, complete=True)
                meta_all = [read_meta(f, column, kind, s.count, complete=True) for column, kind in columns]
                if flat:
                    _copy_flat(ix, s, f, names_all, meta_all, columns, tick)
                    continue
                for start in range(0, s.count, step):
                    stop = min(start + step, s.count)
                    images = f[IMAGES][start:stop]
                    names = names_all[start:stop]
                    labels = f[LABELS][start:stop] if LABELS in f else None
                    hashes = f[SHA256][start:stop] if SHA256 in f else None
                    sums = f[CHECKSUMS][start:stop] if CHECKSUMS in f else None
                    for j in range(stop - start):
                        label = None if labels is None else int(labels[j])
                        digest = None if hashes is None else hashes[j].tobytes()
                        crc = pixel_crc(images[j])
                        meta = [_plain(values[start + j]) for values in meta_all]
                        check = row_checksum(crc, names[j], label, digest, meta_bytes(meta, columns))
                        if sums is not None and check != int(sums[j]):
                            raise StoreError(
                                f"{s.path} row {start + j} ({names[j]}) does not match its checksum: the shard is "
                                "damaged; ingest that shard again"
                            )
                        ix.reserve()[...] = images[j]
                        ix.commit(names[j], label=label, sha256=digest, pixels_crc=crc, meta=meta)
                    tick(stop - start)


def _copy_flat(
    ix: ImageIndexer, s: _Shard, f: h5py.File, names_all: list[str], meta_all: list[Any], columns: Columns, tick: Any
) -> None:
    """A flat shard's rows into ``ix`` as they are stored (no decode, no re-encode), about ``COPY_BATCH_BYTES`` at a
    time, each checked against the shard's checksum on the way."""
    ends = f[IMAGE_ENDS][: s.count].astype(np.int64)
    for lo, hi in flat_spans(0, ends, COPY_BATCH_BYTES):
        rows = read_flat(f, lo, hi)
        labels = f[LABELS][lo:hi] if LABELS in f else None
        hashes = f[SHA256][lo:hi] if SHA256 in f else None
        sums = f[CHECKSUMS][lo:hi] if CHECKSUMS in f else None
        for j in range(hi - lo):
            i = lo + j
            label = None if labels is None else int(labels[j])
            digest = None if hashes is None else hashes[j].tobytes()
            shape = (int(rows.shapes[j][0]), int(rows.shapes[j][1]), int(rows.shapes[j][2]))
            data = rows.row(j).tobytes()
            crc = flat_crc(shape, data)
            meta = [_plain(values[i]) for values in meta_all]
            if sums is not None and row_checksum(crc, names_all[i], label, digest, meta_bytes(meta, columns)) != int(sums[j]):
                raise StoreError(
                    f"{s.path} row {i} ({names_all[i]}) does not match its checksum: the shard is damaged; ingest that "
                    "shard again"
                )
            ix.add_encoded(names_all[i], data, shape, label=label, sha256=digest, crc=crc, meta=meta)
        tick(hi - lo)


def _plain(value: Any) -> Any:
    """A numpy scalar as a Python int or float (the writer checks kinds on Python values); text as it is."""
    return value.item() if isinstance(value, np.generic) else value
