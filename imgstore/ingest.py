"""The ingest pipeline: a source lists candidates -> workers decode them -> one ``ImageIndexer`` writes the store.

``ingest(src, out, options)`` is what ``imgstore ingest`` calls. Everything is validated before the output is
touched; a bad file is recorded in the store's skipped lists and never stops the run; an exception (Ctrl-C
included) leaves a readable store holding every image committed so far, with ``complete`` false.

The writer lock of OUT is taken first, so a second writer of any mode is refused at once. Then one of four ways to
write (:func:`plan_target`): a new store (refusing an existing OUT unless ``overwrite``, which builds the new store
aside as ``OUT.partial`` and renames it over OUT when complete); ``append`` (add the files OUT does not hold yet,
after its rows); ``resume`` (continue whatever an interrupted run left -- OUT, the partial file of an interrupted
``--overwrite``, or nothing at all -- so the result equals an uninterrupted run; a complete OUT means there is
nothing to do). The options a store was made with are recorded in its ``ingest_options`` attribute, so append and
resume can check them and the CLI can reuse them.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgstore import signals
from imgstore.errors import OptionError, StoreError, os_cause
from imgstore.labels import Labels, labels_from_texts, resolve_labels
from imgstore.lock import WriterLock
from imgstore.options import IngestOptions, resolve_path, shard_range
from imgstore.outputs import check_target
from imgstore.pool import Decoded, DecodePool, RowFormat, decode_in_process
from imgstore.progress import Progress, ProgressLike, as_progress
from imgstore.sources import Candidate, Discovery, ScannedSource, Source, carries_labels, open_source, release
from imgstore.sources.archive import with_archives
from imgstore.sources.listfile import ListSource
from imgstore.store import (
    IGNORED_COUNT,
    IGNORED_EXTENSIONS,
    RUN_START,
    ignored_attrs,
    open_read,
    partial_path,
    publish,
    repair_truncated,
    store_version,
    upgrade_v1_name,
)
from imgstore.store.compression import dataset_args, load_filters
from imgstore.store.encoding import Encoding
from imgstore.store.format import ENCODING
from imgstore.store.meta import FLOAT, INT, TEXT, Columns, MetaValue
from imgstore.store.reader import read_root_attrs
from imgstore.store.writer import ImageIndexer

if TYPE_CHECKING:
    from imgstore.store.reader import ImageStore

# Options recorded in a store (attribute ``ingest_options``, JSON) and what append and resume check.
RECORDED = ("size", "channels", "resize_mode", "filter", "pad_color", "background", "max_pixels", "exact",
            "upscale", "extensions", "labels", "dedupe", "compression", "archives", "encode")  # fmt: skip
MUST_MATCH_APPEND = ("size", "channels", "resize_mode", "upscale", "labels_scheme", "encode")
MUST_MATCH_RESUME = RECORDED


@dataclass
class IngestReport:
    """What an ingest did: ``count`` images stored in ``path`` by this run, ``skipped`` (name, reason), time.

    ``nothing_to_do`` is true when ``resume`` found a complete store (then nothing was written).
    """

    path: Path
    count: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    candidates: int = 0
    total: int = 0  # images in the store afterwards (differs from count with append and resume)
    nothing_to_do: bool = False
    published: bool = False  # --resume found a finished --overwrite and only renamed it over OUT
    ignored: dict[str, int] = field(default_factory=dict)  # files under SRC that were not candidates, by extension
    paths: dict[str, int] = field(default_factory=dict)  # images stored, by the decoder path that decoded them

    @property
    def decoded_text(self) -> str:
        """Which decoder paths decoded the stored images, most first ("" when none did), e.g.
        ``decoded: 1,998 pillow+simd, 2 pillow``; a PNG the libspng decoder handed back to Pillow counts under
        Pillow's path (see :func:`imgstore.decoders.last_path`)."""
        if not self.paths:
            return ""
        parts = sorted(self.paths.items(), key=lambda kv: (-kv[1], kv[0]))
        return "decoded: " + ", ".join(f"{n:,} {name}" for name, n in parts)

    @property
    def summary(self) -> str:
        """The one line the CLI prints at the end."""
        if self.published:
            return f"finished the interrupted --overwrite: {self.path} now holds the new store ({self.total} images)"
        if self.nothing_to_do:
            return (
                f"nothing to resume: {self.path} is complete ({self.total} images); "
                "use --append to add files that are new"
            )
        more = f" ({self.total} in the store)" if self.total > self.count else ""
        return (
            f"ingested {self.count} images{more}, skipped {len(self.skipped)} "
            f"(imgstore info --skipped {self.path} lists them){ignored_text(self.ignored, ', ')}"
        )


def ignored_text(ignored: Mapping[str, int], lead: str = "") -> str:
    """``", 312 other files ignored: .txt 300, .mov 12"`` (``lead`` first): what a run passed over; empty when
    nothing was."""
    total = sum(ignored.values())
    if not total:
        return ""
    return f"{lead}{total} other {'file' if total == 1 else 'files'} ignored: {by_extension(ignored)}"


def by_extension(counts: Mapping[str, int], shown: int = 6) -> str:
    """``".txt 300, .mov 12"``: the ``shown`` most frequent extensions of ``counts`` and their counts."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    parts = [f"{ext or '(no extension)'} {n}" for ext, n in ordered[:shown]]
    return ", ".join(parts + (["..."] if len(ordered) > shown else []))


def recorded_options(opts: IngestOptions) -> dict[str, Any]:
    """The options that shape a store's contents, as JSON-ready values."""
    d = opts.decode
    return {
        "size": list(d.size), "channels": d.channels, "resize_mode": d.resize_mode.value, "filter": d.filter,
        "pad_color": list(d.pad_color), "background": list(d.background), "max_pixels": d.max_pixels,
        # upscale shapes only rows of their own shapes: recorded as off elsewhere, so it never blocks an --append
        "exact": d.exact, "upscale": d.upscale and d.variable, "extensions": list(opts.extensions), "labels": opts.labels, "dedupe": opts.dedupe,
        "compression": opts.compression, "archives": opts.archives, "encode": str(opts.encode),
    }  # fmt: skip


def stored_options(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``ingest_options`` a store was made with (empty for stores that did not record them)."""
    p = Path(path)
    try:
        with open_read(p) as f:
            return options_of(read_root_attrs(f), p)
    except FileNotFoundError:
        raise StoreError(f"{p} does not exist: there is nothing to append to or resume") from None
    except (OSError, RuntimeError, KeyError) as exc:
        raise StoreError(f"{p} cannot be opened as a store: {os_cause(exc)} (imgstore verify {p} says more)") from None


def options_of(attrs: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The recorded options in a store's root attributes ``attrs`` (``path`` names the store in errors)."""
    try:
        raw = attrs.get("ingest_options")
        values = json.loads(raw) if raw else {}
        if not values and "size" in attrs:  # stores made by ImageIndexer directly
            values = {"size": [int(v) for v in attrs["size"]], "channels": int(attrs.get("channels", 3))}
            if "resize_mode" in attrs:
                values["resize_mode"] = str(attrs["resize_mode"])
        if not raw and ENCODING in attrs:  # a flat store made by ImageIndexer: its rows' encoding
            values["encode"] = str(attrs[ENCODING])
        return dict(values)
    except (ValueError, TypeError) as exc:
        raise StoreError(f"{path} has a damaged ingest_options attribute ({exc}): run imgstore verify on it") from None


def continued_store(out: str | os.PathLike[str], *, resume: bool) -> Path | None:
    """The file ``--resume`` (or, with ``resume=False``, ``--append``) continues for OUT, or None when there is none.

    Resume prefers the partial file of an interrupted ``--overwrite`` (the newer intent), then OUT itself.
    """
    out_path = resolve_path(out)
    partial = partial_path(out_path)
    found = partial if resume and partial.is_file() else out_path if out_path.is_file() else None
    if found is not None:
        with WriterLock(out_path):
            repair_truncated(found)  # a write that failed part-way: readers could not open it
    return found


class Mode(enum.Enum):
    """How an ingest writes OUT."""

    NEW = "new"  # OUT does not exist: build the store and give it OUT's name at once
    REPLACE = "replace"  # --overwrite of an existing OUT: build OUT.partial, rename it over OUT when complete
    CONTINUE = "continue"  # --append / --resume: reopen a store (OUT, or OUT.partial then renamed over OUT)
    DONE = "done"  # --resume of a complete OUT (nothing to do) or of a complete OUT.partial (rename it over OUT)


@dataclass(frozen=True)
class Target:
    """Where an ingest writes: its mode, the file it opens, and the path that file is renamed to when finished."""

    mode: Mode
    path: Path  # the file written (OUT, or OUT.partial)
    publish_to: Path | None = None  # rename ``path`` here when finished (a partial file), or None
    state: _StoreState | None = None  # what a continued store already holds (read when it was checked)


def _scheme(labels: str | None) -> str:
    return "none" if labels is None else "folder" if labels == "folder" else "csv"


LIST_SCHEME = "list"  # labels from a list file's label column (the store's labels_source)


def labels_scheme(source: Source, opts: IngestOptions) -> str:
    """The labels scheme of a run: ``--labels``' (none, folder, csv), or "list" when the source labels its rows (a
    list file with a ``label`` column). Both at once is refused: a row would have two labels."""
    if not carries_labels(source):
        return _scheme(opts.labels)
    if opts.labels is not None:
        raise OptionError(
            f"{source.label} has a label column, which labels its rows: drop --labels {opts.labels} (or rename the "
            "list's label column to keep it as a meta column)"
        )
    return LIST_SCHEME


def plan_target(out: Path, opts: IngestOptions, scheme: str | None = None) -> Target:
    """Decide how to write ``out`` (call it holding OUT's writer lock); checks a continued store's options.
    ``scheme``: the run's labels scheme (:func:`labels_scheme`; default: that of ``--labels``)."""
    partial = partial_path(out)
    if opts.resume or opts.append:
        found = continued_store(out, resume=opts.resume)
        if found is None:
            if opts.append:
                raise StoreError(f"{out} does not exist: there is nothing to append to (run without --append)")
            check_target(out, False)
            return Target(Mode.NEW, out)  # an interrupted run that never created its file: simply start
        if opts.append and partial.exists():
            raise StoreError(
                f"{partial} holds an interrupted --overwrite of {out}: finish it with --resume, or delete it, "
                "before appending"
            )
        complete, state = _inspect(found, opts, scheme or _scheme(opts.labels))
        if complete and opts.resume:
            # A complete partial file: the --overwrite was killed between finishing it and its rename.
            return Target(Mode.DONE, found, out if found == partial else None)
        return Target(Mode.CONTINUE, found, out if found == partial else None, state)
    if partial.exists() and not opts.overwrite:
        raise StoreError(
            f"{partial} holds an interrupted --overwrite of {out}: finish it with --resume, or start again with "
            "--overwrite"
        )
    check_target(out, opts.overwrite, " (or --append / --resume)")
    return Target(Mode.REPLACE if out.exists() else Mode.NEW, out)


def _inspect(path: Path, opts: IngestOptions, scheme: str) -> tuple[bool, _StoreState]:
    """Open the store to continue once: check it can be appended to / resumed with ``opts`` (one error naming every
    option that differs) and read what it already holds. Returns whether it is complete, and that state."""
    from imgstore.store.reader import open_store

    verb = "resume" if opts.resume else "append to"
    unreadable = (OSError, RuntimeError, KeyError, ValueError)
    try:
        store = open_store(path)
    except unreadable as exc:
        raise StoreError(f"{path} cannot be opened as a store: {os_cause(exc)} (imgstore verify {path} says more)") from None
    with store:
        if store.virtual:
            raise StoreError(f"{path} is a merged (virtual) store: merge with --copy to get a store you can {verb}")
        theirs = LIST_SCHEME if store.attrs.get("labels_source") == LIST_SCHEME else None
        _check_options(path, options_of(store.attrs, path), opts, verb, scheme, theirs)
        _check_rows(path, store.encoding, store.variable, opts, verb)
        try:
            return store.complete, _state_of(store)
        except unreadable as exc:
            raise StoreError(f"{path} cannot be read: {os_cause(exc)} (imgstore verify {path} says more)") from None


def _check_options(
    path: Path, stored: dict[str, Any], opts: IngestOptions, verb: str, scheme: str | None = None,
    their_scheme: str | None = None,
) -> None:
    """Refuse ``opts`` where they differ from the options the store was made with. ``scheme`` / ``their_scheme``:
    the labels schemes of this run and of the store when they are not their ``--labels`` options' (a list file)."""
    mine = recorded_options(opts)
    mine["labels_scheme"] = scheme or _scheme(opts.labels)
    theirs = dict(stored)
    theirs["labels_scheme"] = their_scheme or _scheme(stored.get("labels"))
    if "size" in theirs:  # a store made before --encode and --upscale holds raw pixels, never enlarged
        theirs.setdefault("encode", "none")
        theirs.setdefault("upscale", False)
    keys = MUST_MATCH_RESUME if opts.resume else MUST_MATCH_APPEND
    differ = [
        f"{k.replace('_', '-')} is {_show(theirs[k])} in the store but {_show(mine[k])} here"
        for k in keys
        if k in theirs and theirs[k] != mine[k]
    ]
    if differ:
        how = "drop those options to use the store's"
        if LIST_SCHEME in (mine["labels_scheme"], theirs["labels_scheme"]) and mine["labels_scheme"] != theirs["labels_scheme"]:
            how += "; labels from a list file come from its label column: give a list with one, or rename it"
        raise OptionError(f"cannot {verb} {path}: " + "; ".join(differ) + f" ({how})")


def _check_rows(path: Path, encoding: Encoding, variable: bool, opts: IngestOptions, verb: str) -> None:
    """Refuse a run whose rows would not be the store's: another encoding, or rows of their own shapes against
    rows of one shape (a store made by ImageIndexer records no ingest_options to compare) -- before it is opened
    for writing, so it stays as it was."""
    if str(opts.encode) == str(encoding) and opts.decode.variable == variable:
        return
    theirs = f"{encoding} rows" + (" of their own shapes" if variable else " of one shape")
    mine = f"{opts.encode} rows" + (f" of their own shapes (--resize-mode {opts.decode.resize_mode.value})" if opts.decode.variable else " of one shape")
    raise OptionError(
        f"cannot {verb} {path}: it stores {theirs} but this run would write {mine}: give --encode {encoding} and a "
        + ("--resize-mode of shorter, longer or none" if variable else "--resize-mode of crop, stretch or pad")
    )


def _show(value: Any) -> str:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    return str(value)


def ingest(
    src: str | os.PathLike[str] | Source,
    out: str | os.PathLike[str],
    options: IngestOptions | None = None,
    *,
    progress: ProgressLike = None,
    attrs: Mapping[str, Any] | None = None,
) -> IngestReport:
    """Ingest every image of ``src`` (a folder, anything a registered source claims, or a
    :class:`~imgstore.sources.Source`) into the store ``out``.

    ``options`` defaults to :class:`IngestOptions()` (256x256 crop, RGB, all CPUs). ``progress`` (see
    :mod:`imgstore.progress`) is started with the number of files to decode once they are known and advanced by
    every file handled. Extra ``attrs`` go on the store's root. Raises :class:`~imgstore.errors.ImgStoreError` subclasses for unusable input (a
    :class:`~imgstore.errors.StoreBusyError` when another process writes ``out``, a
    :class:`~imgstore.errors.WriteError` for a full disk); bad image files are skipped and reported, never raised.
    """
    opts = options or IngestOptions()
    started = time.perf_counter()
    out_path = resolve_path(out)
    source = open_source(src if isinstance(src, Source) else resolve_path(src))
    if opts.archives and not isinstance(source, ScannedSource):  # a scan handed over was made expanded already
        source = with_archives(source)
    scheme = labels_scheme(source, opts)
    with WriterLock(out_path):
        target = plan_target(out_path, opts, scheme)
        if target.mode is Mode.DONE:
            if target.publish_to is not None:
                publish(target.path, target.publish_to)
            with open_read(out_path) as f:
                total = int(f.attrs.get("count", 0))
            return IngestReport(out_path, 0, total=total, nothing_to_do=target.publish_to is None,
                                published=target.publish_to is not None, seconds=time.perf_counter() - started)  # fmt: skip
        try:
            report = _run(source, target, opts, as_progress(progress), attrs)
        finally:
            release(source)  # an archive's descriptors and checkpoints
    report.path = out_path
    report.seconds = time.perf_counter() - started
    return report


def _run(
    source: Source, target: Target, opts: IngestOptions, progress: Progress, attrs: Mapping[str, Any] | None
) -> IngestReport:
    continuing = target.mode is Mode.CONTINUE
    compression = dataset_args(opts.compression)  # fails early when a plugin is missing
    found = source.scan(opts.extensions)
    if target.mode is Mode.REPLACE and not found.files and opts.shard is None:
        what = (
            f"{source.label} lists no file that exists" if found.rows is not None
            else f"no file in {source.label} has one of the extensions {', '.join(opts.extensions)}"
        )  # fmt: skip
        raise OptionError(
            f"{what}: --overwrite would replace {target.path} with an empty store, so nothing was changed"
        )
    # Labels come from the whole walk, before sharding, so every shard numbers the classes alike.
    rows = found.rows
    if rows is not None and rows.labelled:
        raw = {c.name: c.label for c in found.files if c.label is not None}
        labels: Labels | None = labels_from_texts(LIST_SCHEME, raw, f"no label in {rows.where}")
    else:
        labels = resolve_labels(opts.labels, [c.name for c in found.files])
    columns = rows.columns if rows is not None else ()
    # What was passed over is counted over the whole walk, before sharding: every shard of SRC records the same.
    run_attrs = {**_run_attrs(source, opts, labels), **ignored_attrs(found.ignored), **_take_shard(found, opts),
                 **(attrs or {})}  # fmt: skip
    state = _StoreState()
    order: list[int] | None = None  # where each of the store's meta columns is in a candidate's meta
    if continuing:
        assert target.state is not None
        state = target.state
        order = _meta_order(target.path, state.meta, columns, rows.where if rows else source.label, opts)
        # A column that is text in the store takes this run's numbers as the list writes them (a CSV's 1.50).
        here = dict(columns)
        retext = [order[k] for k, (n, kind) in enumerate(state.meta) if kind == TEXT and here[n] != TEXT] if order else []
        if retext and isinstance(source, ListSource):
            found.files = source.texts_as_written(found.files, retext)
        columns = state.meta
        if opts.append:  # a new run begins here: what --resume of it must not take as handled comes before
            run_attrs[RUN_START] = list(state.counts)
        if labels is not None and labels.class_names is not None and state.class_names is not None:
            labels.extend_classes(state.class_names)
            run_attrs["class_names"] = labels.class_names
    todo, pre_skipped = _plan(state, found, labels, opts)
    seen = state.digests if opts.dedupe else {}
    keys = [c.key for c, _ in todo]
    workers = min(opts.workers, len(keys))
    report = IngestReport(target.path, 0, ignored=dict(found.ignored))
    with contextlib.ExitStack() as stack:
        # Decoder processes start before the store is opened: a forked worker must not inherit the HDF5 file's
        # descriptor (the writer lock's descriptor is closed in every child).
        row_format = RowFormat(opts.encode, opts.decode.variable)
        pool = None
        if workers:
            # Made and handed to the stack in one critical section: a signal between the two would leave the pool
            # open (pool.py closes any such pool at exit, too).
            with signals.deferred():
                pool = stack.enter_context(DecodePool(opts.decode, workers, opts.timeout, source=source, rows=row_format))
        if continuing:
            # source and imgstore_version stay those of the run that created the store: a string attribute can only
            # be rewritten by a copy (store.settable_in_place); class names do change when new classes arrive.
            keep = ("class_names", RUN_START, *((IGNORED_COUNT, IGNORED_EXTENSIONS) if state.records_ignored else ()))
            ix = ImageIndexer.reopen(
                target.path, opts.buffer_size, attrs={k: run_attrs[k] for k in keep if k in run_attrs},
                publish_to=target.publish_to, flush_every=opts.flush_every,
            )  # fmt: skip
        else:
            ix = ImageIndexer(
                target.path, size=opts.decode.size, channels=opts.decode.channels, buffer_size=opts.buffer_size,
                overwrite=opts.overwrite, attrs=run_attrs, labels=labels is not None, sha256=True,
                flush_every=opts.flush_every, meta=columns, encoding=opts.encode, variable=opts.decode.variable,
                **compression,
            )  # fmt: skip
        stack.enter_context(ix)
        report.candidates = len(todo)
        progress.start(len(todo))
        for name, reason in pre_skipped:
            ix.skip(name, reason)
        report.skipped.extend(pre_skipped)
        before = ix.count
        if pool is not None:
            results = pool.imap(keys, on_idle=ix.flush_if_due)
        else:
            results = decode_in_process(source, keys, opts.decode, row_format)
        _consume(results, todo, ix, report, progress, opts.dedupe, seen, state.skipped, order)
        report.count = ix.count - before
    report.total = ix.count
    return report


def _take_shard(found: Discovery, opts: IngestOptions) -> dict[str, Any]:
    """Cut ``found`` down to shard K of N (in place) and return the shard's attributes; nothing without a shard.

    Shard K of N takes a contiguous range of the candidates (in the source's order: a folder's sorted, a list's as
    listed), so the shards concatenated in order are the
    single-machine store. Files the walk itself could not use belong to the first shard, where a single-machine
    ingest lists them too (first).
    """
    if opts.shard is None:
        return {}
    start, stop = shard_range(len(found.files), opts.shard)
    attrs = {"shard": list(opts.shard), "shard_range": [start, stop], "shard_total": len(found.files)}
    found.files = found.files[start:stop]
    if opts.shard[0] != 1:
        found.skipped = []
    return attrs


def _run_attrs(source: Source, opts: IngestOptions, labels: Labels | None) -> dict[str, Any]:
    """The root attributes a run records: how the pixels were made, where from, and the labels scheme."""
    dec = opts.decode
    run_attrs: dict[str, Any] = {
        "resize_mode": dec.resize_mode.value,
        "filter": dec.filter,
        "exact": dec.exact,
        "source": source.label,
        "compression": opts.compression,
        "ingest_options": json.dumps(recorded_options(opts)),
        "imgstore_version": store_version(),
    }
    if labels is not None:
        run_attrs["labels_source"] = labels.scheme
        if labels.class_names is not None:
            run_attrs["class_names"] = labels.class_names
    return run_attrs


@dataclass
class _StoreState:
    """What an existing store already holds: row names, recorded skipped names (all, and those the run being
    resumed recorded), digests, class names, and the counts a new run starts from."""

    names: set[str] = field(default_factory=set)
    skipped: set[str] = field(default_factory=set)
    skipped_by_run: set[str] = field(default_factory=set)  # recorded since the run that wrote last began
    digests: dict[bytes, str] = field(default_factory=dict)
    class_names: list[str] | None = None
    counts: tuple[int, int] = (0, 0)  # (rows, skipped records) committed
    # Stores made before imgstore counted ignored files get no such attributes on append: adding one would cost a
    # copy of the whole store (see store.settable_in_place).
    records_ignored: bool = False
    meta: Columns = ()  # the store's meta columns


def _state_of(store: ImageStore) -> _StoreState:
    """What an open store already holds, as a continued run compares it."""
    load_filters(store.attrs.get("compression"))
    names, skipped = store.names, [name for name, _ in store.skipped]
    if store.format_version < 2:  # the writer upgrades it; compare names as they will be stored
        names, skipped = [upgrade_v1_name(n) for n in names], [upgrade_v1_name(n) for n in skipped]
    start = int(np.asarray(store.attrs.get(RUN_START, [0, 0])).ravel()[-1])
    state = _StoreState(set(names), set(skipped), set(skipped[start:]), class_names=store.class_names,
                        counts=(len(names), len(skipped)), records_ignored=IGNORED_EXTENSIONS in store.attrs,
                        meta=store.meta_columns)  # fmt: skip
    for name, digest in zip(names, store.sha256 or []):
        state.digests.setdefault(bytes.fromhex(digest), name)
    return state


# A column of one kind can be added to a stored column of these kinds (numbers become text as JSON spells them).
_FITS = {INT: (INT, FLOAT, TEXT), FLOAT: (FLOAT, TEXT), TEXT: (TEXT,)}


def _meta_order(path: Path, stored: Columns, mine: Columns, where: str, opts: IngestOptions) -> list[int] | None:
    """Where each of a continued store's meta columns is among this run's (None when neither has any); refuses a
    run whose columns are not the store's, or whose values do not fit the store's column kinds."""
    if not stored and not mine:
        return None
    verb = "resume" if opts.resume else "append to"
    names, have = [n for n, _ in stored], dict(mine)
    if sorted(names) != sorted(have):
        shown = ", ".join(names) or "none"
        theirs = ", ".join(have) or "none"
        raise StoreError(
            f"cannot {verb} {path}: its meta columns are {shown} but {where} has {theirs}: give a list with exactly "
            "the store's columns (add empty ones, drop or rename the others), or ingest into a new store"
        )
    bad = [f"{n} is {k} in the store but {have[n]} here" for n, k in stored if k not in _FITS[have[n]]]
    if bad:
        raise StoreError(
            f"cannot {verb} {path}: meta values do not fit the store's columns: {'; '.join(bad)} (fix those values in "
            "the list, or ingest into a new store)"
        )
    position = {n: i for i, (n, _) in enumerate(mine)}
    return [position[n] for n in names]


def _plan(
    state: _StoreState, found: Discovery, labels: Labels | None, opts: IngestOptions
) -> tuple[list[tuple[Candidate, int | None]], list[tuple[str, str]]]:
    """What to decode (with labels) and what to record as skipped before decoding."""
    done = set(state.names)
    # Resume skips what the interrupted run recorded as skipped (so the skipped list comes out the same); append
    # tries the files earlier runs skipped again, since they may have been fixed -- and so does the resume of an
    # interrupted append, for those it had not reached.
    if opts.resume:
        done |= state.skipped_by_run
    pre_skipped = [(n, r) for n, r in found.skipped if n not in state.skipped]
    todo: list[tuple[Candidate, int | None]] = []
    for cand in found.files:
        if cand.name in done:
            continue
        label = None
        if labels is not None:
            label = labels.label_of(cand.name)
            if label is None:
                if cand.name not in state.skipped:
                    pre_skipped.append((cand.name, labels.missing_reason))
                continue
        todo.append((cand, label))
    return todo, pre_skipped


def _consume(
    results: Iterable[Decoded],
    todo: list[tuple[Candidate, int | None]],
    ix: ImageIndexer,
    report: IngestReport,
    progress: Progress,
    dedupe: bool,
    seen: dict[bytes, str],
    recorded: set[str],
    order: list[int] | None = None,
) -> None:
    for item in results:
        cand, label = todo[item.index]
        reason = item.reason
        if reason is None and dedupe:
            assert item.sha256 is not None
            first = seen.setdefault(item.sha256, cand.name)
            if first != cand.name:
                reason = f"duplicate of {first}"
        if reason is not None:
            if cand.name not in recorded:  # a file an earlier run skipped, tried again: recorded once
                ix.skip(cand.name, reason)
            report.skipped.append((cand.name, reason))
        else:
            meta: tuple[MetaValue, ...] = cand.meta if order is None else tuple(cand.meta[i] for i in order)
            if item.data is not None:  # a flat row: its stored bytes, copied out of the slot by the indexer
                assert item.shape is not None
                ix.add_encoded(cand.name, item.data, item.shape, label=label, sha256=item.sha256, crc=item.crc32,
                               meta=meta)  # fmt: skip
            else:
                assert item.image is not None
                ix.reserve()[...] = item.image  # the one copy: shared-memory slot -> write buffer
                ix.commit(cand.name, label=label, sha256=item.sha256, pixels_crc=item.crc32, meta=meta)
            if item.path is not None:
                report.paths[item.path] = report.paths.get(item.path, 0) + 1
        progress.advance(1)
