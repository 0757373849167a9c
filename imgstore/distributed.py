"""Sharded ingest on a Dask cluster: ``imgstore ingest SRC OUT --dask ADDRESS``.

imgstore runs on an existing distributed engine instead of a scheduler of its own. :func:`ingest_dask` walks SRC
once (every task gets that walk's candidate list, scattered to the workers), splits the candidates into N
contiguous shards, and submits one Dask task per shard. A
task is the normal single-machine ingest (:func:`imgstore.ingest.ingest` with ``shard=(K, N)``) writing its own
HDF5 file in ``OUT.parts/`` (HDF5 files cannot be written by several processes at once, so every shard has its
own). Progress is reported as shards finish, Dask retries a failed task ``retries`` times, and the finished shards
are joined by :func:`imgstore.store.merge.merge_shards` into OUT (virtual datasets over the shard files by default).

Every worker must see SRC and OUT's folder at the same paths (shared storage such as NFS), and have imgstore
installed. Dask is an optional extra (``pip install 'imgstore[dask]'``), imported only by the functions here.

Decoding inside a task: Dask supplies the parallelism (one task per worker thread), so a task decodes with one
decoder process of imgstore's :class:`~imgstore.pool.DecodePool` (``task_workers``, default 1). That process is
what keeps imgstore's promise that a hung or crashing file costs only that file (per-file timeout, a segfaulting
codec is replaced). Dask's worker processes are daemonic by default and a daemonic process may not start children,
so a task running in one decodes in-process instead (``workers=0``: same pixels, no isolation) and the report says
so. :func:`ingest_dask` starts its own LocalCluster with non-daemonic workers; for a cluster of your own start the
workers with ``DASK_DISTRIBUTED__WORKER__DAEMON=False`` to keep the isolation.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import multiprocessing
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from imgstore.errors import ClusterError, MissingExtraError, OptionError
from imgstore.ingest import IngestReport, ingest, recorded_options
from imgstore.lock import WriterLock
from imgstore.options import IngestOptions, resolve_path
from imgstore.outputs import check_target, temp_path
from imgstore.progress import Progress, ProgressLike, as_progress
from imgstore.sources import ScannedSource, Source, open_source, release
from imgstore.sources.archive import with_archives
from imgstore.store import open_read
from imgstore.store.merge import merge_shards

MISSING_DASK = "the --dask option needs the dask extra: pip install 'imgstore[dask]'"
SHARDS_PER_THREAD = 4  # more shards than threads: a slow shard or a lost worker costs a small part of the run
WORKER_WAIT = 60.0  # seconds to wait for a remote scheduler to have at least one worker

@dataclass(frozen=True)
class ShardResult:
    """What one shard task sends back: a few numbers, never pixels."""

    k: int
    path: str
    count: int
    skipped: int
    candidates: int  # files of the shard's range (what the progress bar counts)
    in_process: bool  # decoded in the Dask worker process itself (it was daemonic): no per-file isolation


@dataclass
class DaskIngestReport(IngestReport):
    """An :class:`~imgstore.ingest.IngestReport` plus how the run was split: shard files and Dask workers."""

    shards: list[Path] = field(default_factory=list)
    dask_workers: int = 0
    decoded_in_process: bool = False  # some task ran in a daemonic Dask worker: no hung/crashed-file isolation
    virtual: bool = True  # OUT reads the shard files (False: a self-contained copy, the shard files removed)

    @property
    def note(self) -> str | None:
        """A warning worth printing after the summary, or None."""
        if not self.decoded_in_process:
            return None
        return (
            "the Dask workers are daemonic processes, so shards were decoded without imgstore's decoder process: a "
            "hung or crashing file was not isolated (start workers with DASK_DISTRIBUTED__WORKER__DAEMON=False)"
        )


def require_distributed() -> Any:
    """Import ``dask.distributed`` or raise the error that says how to install it."""
    try:
        import distributed
    except ImportError:
        raise MissingExtraError(MISSING_DASK) from None
    return distributed


def parse_address(address: str) -> tuple[str, int | None]:
    """``"local"`` -> ("local", None); ``"local:4"`` -> ("local", 4); a scheduler address -> (address, None)."""
    text = str(address).strip()
    m = re.fullmatch(r"local(?::(\d+))?", text)
    if m:
        n = int(m.group(1)) if m.group(1) else None
        if n is not None and n < 1:
            raise OptionError(f"invalid --dask address {address!r}: local:N needs N >= 1 workers")
        return "local", n
    if re.fullmatch(r"(?:[a-z][a-z0-9+.-]*://)?[^\s/:]+:\d+/?", text) or re.fullmatch(r"[a-z][a-z0-9+.-]*://\S+", text):
        return text, None
    raise OptionError(
        f"invalid --dask address {address!r}: use local, local:N (N workers on this machine) "
        "or a scheduler address such as tcp://host:8786"
    )


def default_shards(threads: int, files: int) -> int:
    """Shards for ``threads`` Dask worker threads and ``files`` candidates: 4 per thread, 1 to ``files``."""
    return max(1, min(SHARDS_PER_THREAD * max(1, threads), files))


def shard_paths(out: Path, n: int) -> list[Path]:
    """The shard files of OUT: ``OUT.parts/STEM.shard-0001-of-0008.h5`` ... in K order."""
    width = max(4, len(str(n)))
    parts = out.with_name(out.name + ".parts")
    return [parts / f"{out.stem}.shard-{k:0{width}d}-of-{n:0{width}d}{out.suffix or '.h5'}" for k in range(1, n + 1)]


def run_shard(
    src: Source, path: str, options: IngestOptions, k: int, n: int, *, label: str, task_workers: int
) -> ShardResult:
    """One Dask task: ingest shard ``k`` of ``n`` of ``src`` into ``path``, recording ``label`` as the store's
    source; raises on failure (Dask retries it).

    The shard is written under a temporary name of its own and renamed when complete, so an attempt that dies
    leaves no half-written file under the shard's name, and a retry never shares a file with a lost attempt still
    running.
    """
    in_process = task_workers > 0 and multiprocessing.current_process().daemon
    opts = replace(options, shard=(k, n), overwrite=True, resume=False, append=False,
                   workers=0 if in_process else task_workers)  # fmt: skip
    final = Path(path)
    tmp = temp_path(final)
    try:
        report = ingest(src, tmp, opts, attrs={"source": label})
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return ShardResult(k, str(final), report.count, len(report.skipped), report.candidates, in_process)


@contextlib.contextmanager
def dask_client(address: Any) -> Iterator[Any]:
    """A ``distributed.Client`` for ``address``: ``local``/``local:N`` (a LocalCluster of this process, closed on
    exit), a scheduler address, or an existing ``Client`` (used as is, left open)."""
    distributed = require_distributed()
    if isinstance(address, distributed.Client):
        yield address
        return
    where, n_workers = parse_address(address)
    if where == "local":
        import dask

        # Non-daemonic worker processes may start imgstore's decoder process (per-file isolation, see above).
        with dask.config.set({"distributed.worker.daemon": False}):
            try:
                cluster = distributed.LocalCluster(
                    n_workers=n_workers,
                    processes=True,
                    threads_per_worker=1,
                    dashboard_address="127.0.0.1:0",  # the scheduler's HTTP server: any free local port, not 8787
                    silence_logs=logging.ERROR,
                )
            except BaseException:  # Ctrl-C or SIGTERM while the cluster starts
                _close_unstarted_clusters()
                raise
            try:
                with distributed.Client(cluster) as client:
                    yield client
            finally:
                cluster.close()
        return
    try:
        client = distributed.Client(where, timeout="30s")
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {where}: {exc}; start one with `dask scheduler` and check the address"
        ) from None
    with client:
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT)
        except (TimeoutError, OSError):
            raise ClusterError(
                f"no Dask worker joined the scheduler at {where} within {WORKER_WAIT:.0f} s: "
                f"start workers with `dask worker {where}`"
            ) from None
        yield client


def _close_unstarted_clusters() -> None:
    """Close the LocalCluster whose start was interrupted, quietly: left to distributed's own exit handler, a
    cluster that never finished starting fails an assertion and prints a traceback after our one-line message."""
    from distributed.deploy.spec import SpecCluster

    for cluster in list(SpecCluster._instances):
        with contextlib.suppress(Exception), contextlib.redirect_stderr(io.StringIO()):
            cluster.close(timeout=5)
        cluster.shutdown_on_close = False


def ingest_dask(
    src: str | os.PathLike[str] | Source,
    out: str | os.PathLike[str],
    options: IngestOptions | None = None,
    address: Any = "local",
    *,
    shards: int | None = None,
    retries: int = 1,
    task_workers: int | None = None,
    copy: bool = False,
    progress: ProgressLike = None,
) -> DaskIngestReport:
    """Ingest ``src`` into ``out`` as Dask tasks, one per shard, then merge the shards into ``out``.

    ``address``: ``"local"`` (a LocalCluster, one single-threaded worker process per CPU), ``"local:N"`` (N
    workers), a scheduler address (``tcp://host:8786``) or a ``distributed.Client``. ``shards`` defaults to 4 per
    worker thread, at most one per file. ``retries``: how many times Dask reruns a failed shard task.
    ``task_workers``: decoder processes per task (default 1; 0 decodes in the worker process). ``copy``: make
    ``out`` a self-contained store and remove the shard files, instead of a virtual store over them.
    ``progress`` is started with the number of candidate files and advanced by the files of each finished shard.

    The shard files go to ``OUT.parts/`` next to ``out``. A shard that still fails after its retries raises
    :class:`~imgstore.errors.ClusterError` naming it, after the other shards finished; their files are kept.
    With ``options.resume`` the finished shard files of an interrupted run with the same options are kept and only
    the others are ingested (a complete ``out`` means there is nothing to do). ``out`` is written only by the final
    merge, under a temporary name renamed when whole; the run holds ``out``'s writer lock throughout.
    """
    started = time.perf_counter()
    opts = options or IngestOptions()
    if opts.shard is not None:
        raise OptionError("--shard and --dask cannot be combined: --dask splits the work into shards itself")
    if opts.append:
        raise OptionError(
            "--append cannot run on Dask (a merged store is not appended to): ingest the new files into a store of "
            "their own, or merge with --copy and append on one machine"
        )
    if shards is not None and (not isinstance(shards, int) or shards < 1):
        raise OptionError(f"invalid shards {shards!r}: give 1 or more")
    if not isinstance(retries, int) or retries < 0:
        raise OptionError(f"invalid retries {retries!r}: give 0 or more")
    if task_workers is not None and (not isinstance(task_workers, int) or task_workers < 0):
        raise OptionError(f"invalid workers per task {task_workers!r}: give 1 or more (0 decodes in-process)")
    distributed = require_distributed()
    if not isinstance(address, distributed.Client):
        parse_address(address)  # a bad address is refused before anything is touched
    # Workers may run in another folder (or machine): hand them absolute paths, record SRC as the user gave it.
    label = open_source(src if isinstance(src, Source) else resolve_path(src)).label
    source = open_source(src if isinstance(src, Source) else Path(os.path.abspath(resolve_path(src))))
    if opts.archives:
        source = with_archives(source)
    bar = as_progress(progress)
    out_path = Path(os.path.abspath(resolve_path(out)))
    with WriterLock(out_path):
        if opts.resume and out_path.is_file() and _complete(out_path):
            return DaskIngestReport(path=resolve_path(out), count=0, nothing_to_do=True, total=_count(out_path))
        check_target(out_path, opts.overwrite or opts.resume)
        found = source.scan(opts.extensions)  # the one walk of SRC: every shard task gets its result
        release(source)  # the tasks read SRC; this process does not
        total = len(found.files)
        bar.start(total)
        with dask_client(address) as client:
            threads = sum(client.nthreads().values())
            n = shards or (_previous_n(out_path) if opts.resume else None)
            n = min(n, max(1, total)) if n is not None else default_shards(threads, total)
            paths = shard_paths(out_path, n)
            try:
                paths[0].parent.mkdir(exist_ok=True)
            except OSError as exc:
                raise OptionError(f"cannot create the shard folder {paths[0].parent}: {exc}") from None
            done = _finished_shards(paths, opts, total) if opts.resume else {}
            if done:
                bar.advance(sum(r.candidates for r in done.values()))
            scanned = client.scatter(ScannedSource(source, found, opts.extensions), broadcast=True, hash=False)
            results, failures = _run_shards(
                client, distributed, scanned, paths, opts, label,
                1 if task_workers is None else task_workers, retries, bar, skip=set(done),
            )  # fmt: skip
            results.update(done)
            dask_workers = len(client.nthreads())
        if failures:
            raise ClusterError(_failure_message(failures, n, retries, paths, results, out_path))
        unseen = [p for p in paths if not p.is_file()]
        if unseen:
            raise ClusterError(
                f"the workers wrote {len(unseen)} shard file(s) that this machine does not see, e.g. {unseen[0]}: the "
                f"folder of {out_path} must be shared storage that every worker and this machine see at the same path"
            )
        merged = merge_shards(out_path, paths, copy=copy, overwrite=opts.overwrite or opts.resume)
        _clean_parts(out_path, paths, remove_all=copy)
    return DaskIngestReport(
        path=resolve_path(out),
        count=merged.count,
        skipped=merged.skipped,
        seconds=time.perf_counter() - started,
        candidates=total,
        ignored=dict(found.ignored),
        shards=[] if copy else paths,
        dask_workers=dask_workers,
        decoded_in_process=any(r.in_process for r in results.values()),
        virtual=not copy,
    )


def _complete(path: Path) -> bool:
    try:
        with open_read(path) as f:
            return bool(f.attrs.get("complete", False))
    except OSError:
        return False


def _count(path: Path) -> int:
    with open_read(path) as f:
        return int(f.attrs.get("count", 0))


def _previous_n(out: Path) -> int | None:
    """The number of shards an interrupted run into ``out`` used, from the shard files it left (None: none)."""
    parts = out.with_name(out.name + ".parts")
    pattern = re.compile(rf"{re.escape(out.stem)}\.shard-\d+-of-(\d+)\..*")
    found = [int(m.group(1)) for p in (parts.iterdir() if parts.is_dir() else []) if (m := pattern.fullmatch(p.name))]
    return max(found) if found else None


def _finished_shards(paths: list[Path], opts: IngestOptions, total: int) -> dict[int, ShardResult]:
    """The shard files of an interrupted run that are complete and were made with ``opts`` from the same files."""
    done: dict[int, ShardResult] = {}
    wanted = recorded_options(opts)
    for k, path in enumerate(paths, start=1):
        if not path.is_file():
            continue
        try:
            with open_read(path) as f:
                a = f.attrs
                same = (
                    bool(a.get("complete", False))
                    and [int(v) for v in a.get("shard", [0, 0])] == [k, len(paths)]
                    and int(a.get("shard_total", -1)) == total
                    and json.loads(a.get("ingest_options", "{}")) == wanted
                )
                if same:
                    start, stop = (int(v) for v in a["shard_range"])
                    skipped = int(a.get("skipped_count", 0))
                    done[k] = ShardResult(k, str(path), int(a.get("count", 0)), skipped, stop - start, False)
        except (OSError, KeyError, ValueError, TypeError):
            continue  # unreadable or foreign: ingested again
    return done


def _run_shards(
    client: Any,
    distributed: Any,
    source: Any,
    paths: list[Path],
    opts: IngestOptions,
    label: str,
    task_workers: int,
    retries: int,
    progress: Progress,
    skip: set[int] | None = None,
) -> tuple[dict[int, ShardResult], dict[int, BaseException]]:
    """Submit every shard (but those in ``skip``) reading ``source`` (a Source, or the future of one scattered to
    the workers), collect them as they finish; failures are collected, not raised, so the others finish."""
    n = len(paths)
    run = uuid.uuid4().hex[:8]
    futures = {
        client.submit(
            run_shard, source, str(path), opts, k, n, label=label, task_workers=task_workers,
            key=f"imgstore-shard-{k}-of-{n}-{run}", retries=retries, pure=False,
        ): k
        for k, path in enumerate(paths, start=1)
        if k not in (skip or set())
    }  # fmt: skip
    results: dict[int, ShardResult] = {}
    failures: dict[int, BaseException] = {}
    try:
        for future in distributed.as_completed(futures):
            k = futures[future]
            if future.status != "finished":
                try:
                    failures[k] = future.exception()
                except Exception as exc:  # cancelled (e.g. the scheduler restarted)
                    failures[k] = exc
                continue
            result: ShardResult = future.result()
            results[k] = result
            progress.advance(result.candidates)
    except BaseException:
        client.cancel(list(futures))  # Ctrl-C or a lost scheduler: do not leave the tasks running
        raise
    return results, failures


def _failure_message(
    failures: dict[int, BaseException],
    n: int,
    retries: int,
    paths: list[Path],
    results: dict[int, ShardResult],
    out: Path,
) -> str:
    attempts = f"{retries + 1} attempt{'s' if retries else ''}"
    details = "; ".join(f"shard {k}/{n}: {type(e).__name__}: {e}" for k, e in sorted(failures.items()))
    which = ", ".join(f"{k}/{n}" for k in sorted(failures))
    first = min(failures)
    return (
        f"shard{'s' if len(failures) > 1 else ''} {which} failed after {attempts} ({details}). "
        f"The {len(results)} finished shard(s) are kept in {paths[0].parent}; rerun the command to ingest every "
        f"shard again, or ingest the failed one by hand (imgstore ingest SRC {paths[first - 1]} --shard {first}/{n} "
        f"with the same options) and join them with imgstore merge {out} {paths[0].parent}/*.h5"
    )


def _clean_parts(out: Path, paths: list[Path], *, remove_all: bool) -> None:
    """After a successful merge: delete leftovers of earlier runs into the same folder (shards of another N,
    temporary files of lost attempts); with ``remove_all`` (a self-contained copy) the shard files too."""
    folder = paths[0].parent
    keep = set() if remove_all else {p.name for p in paths}
    ours = re.compile(rf"\.?{re.escape(out.stem)}\.shard-\d+-of-\d+\..*")
    for entry in folder.iterdir():
        if entry.is_file() and ours.fullmatch(entry.name) and entry.name not in keep:
            entry.unlink(missing_ok=True)
    if remove_all:
        with contextlib.suppress(OSError):
            folder.rmdir()
