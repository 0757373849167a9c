"""The ingest pipeline: walk the source folder -> decode in workers -> one ``ImageIndexer`` writes the store.

``ingest(src, out, options)`` is what ``imgstore ingest`` calls. Everything is validated before the output is
touched; a bad file is recorded in the store's skipped lists and never stops the run; an exception (Ctrl-C
included) leaves a readable store holding every image flushed so far, with ``complete`` false.

Three ways to write: a new store (refusing an existing OUT unless ``overwrite``); ``append`` (add the files OUT
does not hold yet, after its rows); ``resume`` (continue an interrupted run: skip what it stored or recorded as
skipped, so the result equals an uninterrupted run). The options a store was made with are recorded in its
``ingest_options`` attribute, so append and resume can check them and the CLI can reuse them.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py

from imgstore.compression import dataset_args, load_filters
from imgstore.discover import Candidate, Discovery, discover, source_label
from imgstore.errors import OptionError, StoreError
from imgstore.h5 import open_read
from imgstore.labels import Labels, resolve_labels
from imgstore.options import IngestOptions, check_output, resolve_path, shard_range
from imgstore.pool import Decoded, DecodePool, decode_in_process
from imgstore.writer import ImageIndexer, store_version

ProgressCallback = Callable[[int], None]

# Options recorded in a store (attribute ``ingest_options``, JSON) and what append and resume check.
RECORDED = ("size", "channels", "resize_mode", "filter", "pad_color", "background", "max_pixels", "exact",
            "extensions", "labels", "dedupe", "compression")  # fmt: skip
MUST_MATCH_APPEND = ("size", "channels", "resize_mode", "labels_scheme")
MUST_MATCH_RESUME = RECORDED


@dataclass
class IngestReport:
    """What an ingest did: ``count`` images stored in ``path`` by this run, ``skipped`` (name, reason), time."""

    path: Path
    count: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    candidates: int = 0
    total: int = 0  # images in the store afterwards (differs from count with append and resume)

    @property
    def summary(self) -> str:
        """The one line the CLI prints at the end."""
        more = f" ({self.total} in the store)" if self.total > self.count else ""
        return (
            f"ingested {self.count} images{more}, skipped {len(self.skipped)} "
            f"(imgstore info --skipped {self.path} lists them)"
        )


def recorded_options(opts: IngestOptions) -> dict[str, Any]:
    """The options that shape a store's contents, as JSON-ready values."""
    d = opts.decode
    return {
        "size": list(d.size), "channels": d.channels, "resize_mode": d.resize_mode.value, "filter": d.filter,
        "pad_color": list(d.pad_color), "background": list(d.background), "max_pixels": d.max_pixels,
        "exact": d.exact, "extensions": list(opts.extensions), "labels": opts.labels, "dedupe": opts.dedupe,
        "compression": opts.compression,
    }  # fmt: skip


def stored_options(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``ingest_options`` a store was made with (empty for stores that did not record them)."""
    p = Path(path)
    try:
        with open_read(p) as f:
            raw = f.attrs.get("ingest_options")
            values = json.loads(raw) if raw else {}
            if not values and "size" in f.attrs:  # stores made by ImageIndexer directly
                values = {"size": [int(v) for v in f.attrs["size"]], "channels": int(f.attrs.get("channels", 3))}
                if "resize_mode" in f.attrs:
                    values["resize_mode"] = str(f.attrs["resize_mode"])
            return values
    except FileNotFoundError:
        raise StoreError(f"{p} does not exist: there is nothing to append to or resume") from None
    except OSError as exc:
        raise StoreError(f"{p} cannot be opened as a store: {exc}") from None


def _scheme(labels: str | None) -> str:
    return "none" if labels is None else "folder" if labels == "folder" else "csv"


def _check_continuation(out: Path, opts: IngestOptions) -> dict[str, Any]:
    """Check that OUT can be appended to / resumed with ``opts``; return its recorded options."""
    verb = "resume" if opts.resume else "append to"
    if not out.exists():
        raise StoreError(f"{out} does not exist: there is nothing to {verb} (run without --append/--resume)")
    stored = stored_options(out)
    with open_read(out) as f:
        complete = bool(f.attrs.get("complete", False))
        if any(d.is_virtual for d in f.values() if isinstance(d, h5py.Dataset)):
            raise StoreError(f"{out} is a merged (virtual) store: merge with --copy to get a store you can {verb}")
    if opts.resume and complete:
        raise StoreError(f"{out} is complete: there is nothing to resume (use --append to add new files)")
    mine = recorded_options(opts)
    mine["labels_scheme"] = _scheme(opts.labels)
    theirs = dict(stored)
    theirs["labels_scheme"] = _scheme(stored.get("labels"))
    keys = MUST_MATCH_RESUME if opts.resume else MUST_MATCH_APPEND
    differ = [
        f"{k.replace('_', '-')} is {_show(theirs[k])} in the store but {_show(mine[k])} here"
        for k in keys
        if k in theirs and theirs[k] != mine[k]
    ]
    if differ:
        raise OptionError(f"cannot {verb} {out}: " + "; ".join(differ) + " (drop those options to use the store's)")
    return stored


def _show(value: Any) -> str:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    return str(value)


def ingest(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    options: IngestOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
    on_start: Callable[[int], None] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> IngestReport:
    """Ingest every image under ``src`` into the store ``out``.

    ``options`` defaults to :class:`IngestOptions()` (256x256 crop, RGB, all CPUs). ``on_start(total)`` is called
    once the files to decode are known; ``progress(n)`` after every ``n`` files handled. Extra ``attrs`` go on the
    store's root. Raises :class:`~imgstore.errors.ImgStoreError` subclasses for unusable input; bad image files
    are skipped and reported, never raised.
    """
    opts = options or IngestOptions()
    started = time.perf_counter()
    out_path = resolve_path(out)
    src_path = resolve_path(src)
    continuing = opts.append or opts.resume
    if continuing:
        _check_continuation(out_path, opts)
    else:
        check_output(out_path, opts.overwrite, " (or --append / --resume)")
    compression = dataset_args(opts.compression)  # fails early when a plugin is missing
    found = discover(src_path, opts.extensions)
    # Labels come from the whole walk, before sharding, so every shard numbers the classes alike.
    labels = resolve_labels(opts.labels, [c.name for c in found.files])
    run_attrs = {**_run_attrs(src, opts, labels), **_take_shard(found, opts), **(attrs or {})}

    state = _StoreState()
    if continuing:
        state = _read_state(out_path)
        if labels is not None and labels.class_names is not None and state.class_names is not None:
            labels.extend_classes(state.class_names)
            run_attrs["class_names"] = labels.class_names
    todo, pre_skipped = _plan(state, found, labels, opts)
    seen = state.digests if opts.dedupe else {}
    paths = [c.path for c, _ in todo]
    workers = min(opts.workers, len(paths))
    report = IngestReport(out_path, 0)
    with contextlib.ExitStack() as stack:
        # Decoder processes start before the store is opened: a forked worker must not inherit the HDF5 file's
        # descriptor, whose lock would outlive a killed parent and block --resume.
        pool = stack.enter_context(DecodePool(opts.decode, workers, timeout=opts.timeout)) if workers else None
        if continuing:
            ix = ImageIndexer.reopen(out_path, opts.buffer_size, attrs={
                k: run_attrs[k] for k in ("source", "imgstore_version", "class_names") if k in run_attrs
            })  # fmt: skip
        else:
            ix = ImageIndexer(
                out_path, size=opts.decode.size, channels=opts.decode.channels, buffer_size=opts.buffer_size,
                overwrite=opts.overwrite, attrs=run_attrs, **compression,
            )  # fmt: skip
        stack.enter_context(ix)
        report.candidates = len(todo)
        if on_start is not None:
            on_start(len(todo))
        for name, reason in pre_skipped:
            ix.skip(name, reason)
        report.skipped.extend(pre_skipped)
        before = ix.count
        results = pool.imap(paths) if pool is not None else decode_in_process(paths, opts.decode)
        _consume(results, todo, ix, report, progress, opts.dedupe, seen)
        report.count = ix.count - before
    report.total = ix.count
    report.seconds = time.perf_counter() - started
    return report


def _take_shard(found: Discovery, opts: IngestOptions) -> dict[str, Any]:
    """Cut ``found`` down to shard K of N (in place) and return the shard's attributes; nothing without a shard.

    Shard K of N takes a contiguous range of the sorted candidates, so the shards concatenated in order are the
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


def _run_attrs(src: str | os.PathLike[str], opts: IngestOptions, labels: Labels | None) -> dict[str, Any]:
    """The root attributes a run records: how the pixels were made, where from, and the labels scheme."""
    dec = opts.decode
    run_attrs: dict[str, Any] = {
        "resize_mode": dec.resize_mode.value,
        "filter": dec.filter,
        "exact": dec.exact,
        "source": source_label(src),
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
    """What an existing store already holds: row names, recorded skipped names, digests, class names."""

    names: set[str] = field(default_factory=set)
    skipped: set[str] = field(default_factory=set)
    digests: dict[bytes, str] = field(default_factory=dict)
    class_names: list[str] | None = None


def _read_state(path: Path) -> _StoreState:
    from imgstore.reader import open_store

    with open_store(path) as store:
        load_filters(store.attrs.get("compression"))
        state = _StoreState(set(store.names), {name for name, _ in store.skipped}, class_names=store.class_names)
        for name, digest in zip(store.names, store.sha256 or []):
            state.digests.setdefault(bytes.fromhex(digest), name)
    return state


def _plan(
    state: _StoreState, found: Discovery, labels: Labels | None, opts: IngestOptions
) -> tuple[list[tuple[Candidate, int | None]], list[tuple[str, str]]]:
    """What to decode (with labels) and what to record as skipped before decoding."""
    done = set(state.names)
    # Resume skips what the interrupted run recorded as skipped (so the skipped list comes out the same);
    # append tries those files again, since they may have been fixed.
    if opts.resume:
        done |= state.skipped
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
    progress: ProgressCallback | None,
    dedupe: bool,
    seen: dict[bytes, str],
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
            ix.skip(cand.name, reason)
            report.skipped.append((cand.name, reason))
        else:
            assert item.image is not None
            ix.reserve()[...] = item.image  # the one copy: shared-memory slot -> write buffer
            ix.commit(cand.name, label=label, sha256=item.sha256)
        if progress is not None:
            progress(1)
