"""The ingest pipeline: walk the source folder -> decode in workers -> one ``ImageIndexer`` writes the store.

``ingest(src, out, options)`` is what ``imgstore ingest`` calls. Everything is validated before the output is
touched; a bad file is recorded in the store's skipped lists and never stops the run; an exception (Ctrl-C
included) leaves a readable store holding every image flushed so far, with ``complete`` false.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgstore.discover import Candidate, discover, source_label
from imgstore.errors import OptionError, OutputExistsError
from imgstore.options import IngestOptions, resolve_path, shard_range
from imgstore.pool import DecodePool, decode_in_process
from imgstore.writer import ImageIndexer

ProgressCallback = Callable[[int], None]


@dataclass
class IngestReport:
    """What an ingest did: ``count`` images stored in ``path``, ``skipped`` (name, reason) pairs, wall time."""

    path: Path
    count: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    candidates: int = 0

    @property
    def summary(self) -> str:
        """The one line the CLI prints at the end."""
        return (
            f"ingested {self.count} images, skipped {len(self.skipped)} "
            f"(imgstore info --skipped {self.path} lists them)"
        )


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse an existing output without ``overwrite``, and an output folder that does not exist."""
    if out.is_dir():
        raise OutputExistsError(f"{out} is a folder: give a file name for the store, e.g. {out / 'store.h5'}")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists: pass --overwrite to replace it")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OptionError(f"the folder of {out} does not exist: create {parent} first")


def ingest(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    options: IngestOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
    on_start: Callable[[int], None] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> IngestReport:
    """Ingest every image under ``src`` into a new store at ``out``.

    ``options`` defaults to :class:`IngestOptions()` (256x256 crop, RGB, all CPUs). ``on_start(total)`` is called
    once the candidate files are known; ``progress(n)`` after every ``n`` files handled. Extra ``attrs`` go on the
    store's root. Raises :class:`~imgstore.errors.ImgStoreError` subclasses for unusable input; bad image files
    are skipped and reported, never raised.
    """
    opts = options or IngestOptions()
    started = time.perf_counter()
    out_path = resolve_path(out)
    src_path = resolve_path(src)
    check_output(out_path, opts.overwrite)
    found = discover(src_path, opts.extensions)
    shard_attrs: dict[str, Any] = {}
    if opts.shard is not None:
        # Shard K of N takes a contiguous range of the sorted candidates, so the shards concatenated in order are
        # the single-machine store. Files the walk itself could not use belong to the first shard, where a
        # single-machine ingest lists them too (first).
        start, stop = shard_range(len(found.files), opts.shard)
        shard_attrs = {"shard": list(opts.shard), "shard_range": [start, stop], "shard_total": len(found.files)}
        found.files = found.files[start:stop]
        if opts.shard[0] != 1:
            found.skipped = []
    if on_start is not None:
        on_start(len(found.files))
    dec = opts.decode
    store_attrs: dict[str, Any] = {
        "resize_mode": dec.resize_mode.value,
        "filter": dec.filter,
        "source": source_label(src),
        "exact": dec.exact,
    }
    store_attrs.update(shard_attrs)
    store_attrs.update(attrs or {})
    report = IngestReport(out_path, 0, list(found.skipped), candidates=len(found.files))
    with ImageIndexer(
        out_path,
        size=dec.size,
        channels=dec.channels,
        buffer_size=opts.buffer_size,
        overwrite=opts.overwrite,
        attrs=store_attrs,
    ) as ix:
        for name, reason in found.skipped:
            ix.skip(name, reason)
        _run(found.files, opts, ix, report, progress)
    report.count = ix.count
    report.seconds = time.perf_counter() - started
    return report


def _run(
    files: list[Candidate],
    opts: IngestOptions,
    ix: ImageIndexer,
    report: IngestReport,
    progress: ProgressCallback | None,
) -> None:
    paths = [c.path for c in files]
    if opts.workers == 0 or not paths:
        _consume(decode_in_process(paths, opts.decode), files, ix, report, progress)
        return
    workers = min(opts.workers, len(paths))
    with DecodePool(opts.decode, workers, timeout=opts.timeout) as pool:
        _consume(pool.imap(paths), files, ix, report, progress)


def _consume(results, files, ix, report, progress) -> None:  # type: ignore[no-untyped-def]
    for item in results:
        cand = files[item.index]
        if item.image is None:
            ix.skip(cand.name, item.reason)
            report.skipped.append((cand.name, item.reason))
        else:
            ix.reserve()[...] = item.image  # the one copy: shared-memory slot -> write buffer
            ix.commit(cand.name, sha256=item.sha256)
        if progress is not None:
            progress(1)
