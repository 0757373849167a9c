"""Decode files in worker processes and hand the results back in input order, through shared memory.

Why a pool of our own rather than ``multiprocessing.Pool`` or ``ProcessPoolExecutor``: one file must never cost the
run. A decoder that hangs (a pathological TIFF) or kills its process (a segfault in a codec) is detected per
file; the worker is killed and replaced and only that file is recorded as skipped. Neither standard pool can
kill one hung task, and ``ProcessPoolExecutor`` breaks as a whole when a worker dies.

Data path: the parent owns a ring of ``slots`` image-sized slots in a shared memory file (``/dev/shm``). A task
message is a batch, ``(batch id, [(seq, slot, key, data), ...])``; the worker reads each candidate through the
source, hashes it, decodes it straight into its slot and answers once per batch with ``(batch id, seconds,
[(reason, sha256, crc32, ...), ...])``, a few dozen bytes per file instead of a pickled image. A slot is reused only
after the consumer has taken its image, so the number of images in flight, and with it memory, is bounded by
``slots`` whatever the number of files.

Batches: a pipe message each way, its pickling and the parent's wake-up cost about as much as decoding a 32x32 PNG,
so cheap files travel many to a message. The batch size follows the workers' measured time per file: about
:data:`BATCH_SECONDS` of work per message, at most :data:`MAX_BATCH` files, starting at 1 (the first results come
at once) and at most doubling from one message to the next; a corpus of large photos (25 ms each) stays at 1 file
per message. Isolation stays per file: before each file a worker writes ``(batch id, index in the batch, start
time)`` to its row of a small shared table (after the ring, in the same file), so when a worker dies or a file
outlives the timeout the parent knows which file it was. That file alone is recorded ("decoder crashed
(SIGSEGV)", "timed out after N s"); the other files of the worker's batches, decoded or not, are sent again. The
timeout runs from the start of that file, not of its batch.

For a flat store (``--encode jpeg|webp|png``, or rows of their own shapes) the worker also encodes the row, so
the parent only copies bytes: the slot then holds the row's stored bytes (the encoded file, or raw pixels of the
row's own shape) and the answer gives their shape and length. A row larger than a slot (a panorama kept at full
size) travels in the answer itself instead.

A source may ask for some candidates to be read in the parent (:func:`~imgstore.sources.parent_reads`: the members
of a compressed tar, which only the parent's decompressor checkpoints can reach). The parent then reads them in
input order as it sends their tasks, ``(seq, slot, key, data)``, and a read that fails is that file's outcome
without a worker seeing it.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import faulthandler
import hashlib
import multiprocessing
import os
import selectors
import signal
import sys
import tempfile
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

import numpy as np

from imgstore import signals
from imgstore.decoders import Decoder, decode_bytes, decoders, last_path
from imgstore.decoders.pillow import prepare_workers
from imgstore.decoders.quiet import hold_for_process
from imgstore.errors import BadImageError, WorkerError, WriteError, os_cause
from imgstore.options import DecodeOptions
from imgstore.sources import Source, parent_reads
from imgstore.store.encoding import Encoding, flat_crc

# Tasks queued at each worker. Measured on 2 cores (2,000 500x375 JPEGs): 2 left the workers idle a third of the
# time, waiting for the parent to be scheduled and refill them (432 images/s); 4 keeps both busy (806 images/s).
# (With batches: task messages, each of up to MAX_BATCH files.)
TASKS_PER_WORKER = 4
MAX_BATCH = 64  # files per task message at most (64 tiny PNGs are ~10 ms of a worker's time)
# Bytes read by the parent (parent_reads) per message at most, a file larger than that going alone: a message
# waits in the pipe while its worker decodes the one before, and the parent blocks on a full pipe.
MAX_BATCH_DATA = 1 << 20
BATCH_SECONDS = 0.008  # decode work aimed at per message: the per-message cost (~0.1 ms each way) stays ~1 percent
RING_BYTES = 256 * 1024 * 1024  # the shared ring holds at most about this much, whatever the image size
MAX_CRASHES_BEFORE_FIRST_SUCCESS = 8  # workers that die before any file decodes point at the setup, not at files


@dataclass(frozen=True)
class Decoded:
    """One file's outcome, yielded in input order.

    ``image`` is an ``(H, W, C)`` uint8 view that stays valid only until the next item is requested: copy it
    (e.g. into ``ImageIndexer.reserve()``) before moving on. On failure ``image`` is None and ``reason`` says why.
    ``crc32`` is ``zlib.crc32`` of the pixels, computed by the decoder right after decoding (the start of the
    row's checksum, so a row damaged on its way to the disk is caught by ``verify``).

    For flat rows (:class:`RowFormat` ``flat``) ``image`` is None and ``data`` holds the row's stored bytes (a view,
    valid until the next item, like ``image``), ``shape`` its ``(H, W, C)``, and ``crc32`` is
    :func:`~imgstore.store.encoding.flat_crc` of both.
    """

    index: int
    image: np.ndarray | None
    reason: str | None
    sha256: bytes | None
    crc32: int | None = None
    data: memoryview | bytes | None = None
    shape: tuple[int, int, int] | None = None
    path: str | None = None  # which decoder (or path of one) decoded it: imgstore.decoders.last_path()


class Outcome(NamedTuple):
    """What a worker answers for one task (and what a failure stands for)."""

    reason: str | None
    sha256: bytes | None = None
    crc32: int | None = None
    shape: tuple[int, int, int] | None = None  # flat rows: the row's shape
    nbytes: int = 0  # flat rows: the row's bytes in its slot
    extra: bytes | None = None  # flat rows too large for a slot: the bytes themselves
    path: str | None = None  # the decoder or path that decoded it (imgstore.decoders.last_path())


@dataclass(frozen=True)
class RowFormat:
    """How the workers deliver rows: ``encoding`` (a parsed ``--encode``), and whether rows are ``flat`` (stored as
    bytes: encoded, or of their own shapes when ``opts.variable``)."""

    encoding: Encoding
    variable: bool = False

    @property
    def flat(self) -> bool:
        return self.variable or not self.encoding.raw


RAW_FIXED = RowFormat(Encoding("none"))


def slot_bytes(opts: DecodeOptions, rows: RowFormat) -> int:
    """Bytes of one ring slot: a whole raw row of the fixed shape; for flat rows an estimate that holds nearly all
    (a raw row of aspect up to 2:1, or about a raw row's bytes once encoded), larger rows travelling in the answer."""
    raw = int(np.prod(opts.shape))
    if not rows.flat:
        return raw
    if not rows.variable:
        return raw + 4096  # an encoded row is smaller than the raw one, except for noise at top quality
    if opts.resize_mode.value == "none":
        return 8 << 20
    return max(1 << 16, 2 * raw if rows.encoding.raw else raw)


def decode_one(
    source: Source,
    key: str,
    opts: DecodeOptions,
    out: np.ndarray,
    chain: Sequence[Decoder] | None = None,
    data: bytes | None = None,
) -> Outcome:
    """Read (through ``source``, unless its bytes are given as ``data``), hash and decode (with ``chain``, default:
    the registered decoders) the candidate ``key`` into ``out``; return ``(reason, sha256, crc32 of the pixels)``:
    the reason when it failed (then the others are None), else None and the two checksums."""
    try:
        if data is None:
            data = source.read(key)
        digest = hashlib.sha256(data).digest()
        decode_bytes(data, opts, out, chain)
        return Outcome(None, digest, zlib.crc32(out.data.cast("B")), path=last_path())
    except BadImageError as exc:
        return Outcome(exc.reason)


def encode_one(
    source: Source,
    key: str,
    opts: DecodeOptions,
    rows: RowFormat,
    out: Any,
    chain: Sequence[Decoder] | None = None,
    data: bytes | None = None,
) -> tuple[Outcome, bytes | np.ndarray | None]:
    """:func:`decode_one` for a flat row: decode into ``out`` (a ``Canvas`` for rows of their own shapes, else an
    array of ``opts.shape``), then encode as ``rows.encoding`` says. Returns the outcome (``crc32`` is
    :func:`~imgstore.store.encoding.flat_crc`, ``nbytes`` the row's length) and the row's stored bytes (an
    array view of the decoded pixels for raw rows, valid until the next decode into ``out``)."""
    try:
        if data is None:
            data = source.read(key)
        digest = hashlib.sha256(data).digest()
        decode_bytes(data, opts, out, chain)
        pixels = out if isinstance(out, np.ndarray) else out.array
        shape = (int(pixels.shape[0]), int(pixels.shape[1]), int(pixels.shape[2]))
        if rows.encoding.raw:
            row: bytes | np.ndarray = pixels
            size = int(pixels.nbytes)
        else:
            try:
                row = rows.encoding.codec.encode(pixels, rows.encoding.options)
            except MemoryError:
                raise BadImageError("out of memory while encoding") from None
            except Exception as exc:  # an encoder's limit (WebP: 16383 px a side) costs this file, not the run
                raise BadImageError(f"cannot encode as {rows.encoding.name}: {exc or type(exc).__name__}") from None
            size = len(row)
        return Outcome(None, digest, flat_crc(shape, row), shape, size, path=last_path()), row
    except BadImageError as exc:
        return Outcome(exc.reason), None


def _new_out(opts: DecodeOptions, rows: RowFormat) -> Any:
    """Where a worker decodes: a ``Canvas`` for rows of their own shapes, else an array of ``opts.shape``."""
    if rows.variable:
        from imgstore.decoders.geometry import Canvas

        return Canvas()
    return np.empty(opts.shape, np.uint8)


def decode_in_process(
    source: Source, keys: Sequence[str], opts: DecodeOptions, rows: RowFormat = RAW_FIXED
) -> Iterator[Decoded]:
    """The same results as :class:`DecodePool`, decoded in this process (no isolation, no parallelism)."""
    out = _new_out(opts, rows)
    chain = decoders()
    for i, key in enumerate(keys):
        if rows.flat:
            outcome, row = encode_one(source, key, opts, rows, out, chain)
            view = None if row is None else row.data.cast("B") if isinstance(row, np.ndarray) else row
            yield Decoded(i, None, outcome.reason, outcome.sha256, outcome.crc32, view, outcome.shape, outcome.path)
        else:
            outcome = decode_one(source, key, opts, out, chain)
            image = None if outcome.reason else out
            yield Decoded(i, image, outcome.reason, outcome.sha256, outcome.crc32, path=outcome.path)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when its parent dies (kill -9 included), so no orphan lingers."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(0)
    except (OSError, AttributeError):
        pass


def _worker_main(
    conn: Connection,
    ring_path: str,
    n_slots: int,
    slot_shape: tuple[int, ...],
    opts: DecodeOptions,
    source: Source,
    chain: Sequence[Decoder],
    rows: RowFormat = RAW_FIXED,
    pos: int = 0,
    progress_at: int = 0,
) -> None:
    # Ctrl-C, and a scheduler's SIGTERM or a closed terminal's SIGHUP, often reach the whole process group; the
    # parent decides what happens (it flushes and stops the workers). A worker that died of one of them would
    # have its file recorded as a crash, and --resume would then skip that file for good.
    signals.ignore_for_good()
    _die_with_parent()
    # A codec that segfaults costs its file and is reported as "decoder crashed (SIGSEGV)"; an inherited
    # faulthandler would also dump a Python traceback over the progress bar.
    faulthandler.disable()
    # What codecs print is captured for the worker's life, not switched on and off around every file.
    hold_for_process()
    ring = np.memmap(ring_path, dtype=np.uint8, mode="r+", shape=(n_slots, *slot_shape)).view(np.ndarray)
    # This worker's row of the progress table: (batch id, index in the batch, monotonic start) of the file it is
    # decoding, written before each file so the parent can tell which file of a batch crashed or hangs.
    progress = np.memmap(ring_path, dtype=np.float64, mode="r+", offset=progress_at, shape=(pos + 1, 3))
    mine = progress.view(np.ndarray)[pos]
    out = _new_out(opts, rows) if rows.flat else None
    clock = time.monotonic
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        bid, items = task
        started = time.perf_counter()
        answers = []
        for i, (_seq, slot, key, data) in enumerate(items):
            mine[2] = clock()  # the start time first, the batch id last: a parent that sees the id sees the rest
            mine[1] = i
            mine[0] = bid
            if out is None:
                outcome = decode_one(source, key, opts, ring[slot], chain, data)
            else:
                outcome, row = encode_one(source, key, opts, rows, out, chain, data)
                if row is not None:
                    flat = row.reshape(-1) if isinstance(row, np.ndarray) else np.frombuffer(row, np.uint8)
                    if flat.size <= ring.shape[1]:
                        ring[slot, : flat.size] = flat
                    else:  # larger than a slot: the bytes go with the answer
                        outcome = outcome._replace(extra=flat.tobytes())
            answers.append(tuple(outcome))
        try:
            conn.send((bid, time.perf_counter() - started, answers))
        except (BrokenPipeError, OSError):
            return


def _slot_shape(opts: DecodeOptions, rows: RowFormat) -> tuple[int, ...]:
    return (slot_bytes(opts, rows),) if rows.flat else opts.shape


class _Worker:
    def __init__(self, ctx: Any, pool: DecodePool, pos: int) -> None:
        parent, child = ctx.Pipe(duplex=True)
        self.conn = parent
        self.pos = pos  # its row of the pool's progress table (a replacement takes the same row)
        # The ring's shape goes with the task, not recomputed: a worker started by forkserver or spawn imports
        # imgstore afresh, and must lay out the slots exactly as the parent did.
        args = (child, pool._ring_path, pool.n_slots, pool.slot_shape, pool.opts, pool.source, pool.chain, pool.rows,
                pos, pool._progress_at)  # fmt: skip
        self.proc = ctx.Process(target=_worker_main, args=args, daemon=True)
        self.proc.start()
        child.close()
        # Batches sent, oldest (decoding) first: (batch id, their seqs in order).
        self.pending: collections.deque[tuple[int, list[int]]] = collections.deque()
        self.head_since = time.monotonic()  # when the oldest pending batch became the one decoding
        self.outbox: list[tuple[int, int, str, bytes | None]] = []  # files of the batch being put together

    def send(self, seq: int, slot: int, key: str, data: bytes | None = None) -> None:
        """Add a file to the next batch (sent by :meth:`flush`)."""
        self.outbox.append((seq, slot, key, data))

    def flush(self, bid: int) -> list[int]:
        """Send the files added since the last flush as batch ``bid``; return their seqs. OSError when the worker
        is gone (the batch is then not pending)."""
        items, self.outbox = self.outbox, []
        seqs = [item[0] for item in items]
        if not self.pending:
            self.head_since = time.monotonic()
        self.pending.append((bid, seqs))
        try:
            self.conn.send((bid, items))
        except OSError:
            self.pending.pop()
            self.outbox = items  # for the caller to give back
            raise
        return seqs

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


def _start_method() -> str:
    # fork is the fastest start and, unlike forkserver and spawn, does not re-import the caller's __main__ (which
    # fails for scripts piped to python and in notebooks). It is only safe while this process runs no other
    # thread (a lock held by another thread would stay locked in the child), so elsewhere use forkserver/spawn.
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and sys.platform.startswith("linux") and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def _exit_reason(proc: multiprocessing.process.BaseProcess) -> str:
    code = proc.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"decoder crashed ({name})"
    return f"decoder crashed (exit code {code})"


# Pools not closed yet. A worker ignores SIGTERM (see _worker_main), and at exit multiprocessing terminates its
# daemonic children with SIGTERM, then joins them: a worker left running would hang the exit forever. A signal
# landing between a pool's construction and the code that closes it (a few bytecodes) once left one: 1 of about 200
# runs SIGTERMed early hung at exit. So every pool still open at exit is closed first (atexit runs this before
# multiprocessing's own handler, which was registered when multiprocessing was imported, earlier).
_OPEN_POOLS: weakref.WeakSet[DecodePool] = weakref.WeakSet()


def _close_open_pools() -> None:
    for pool in list(_OPEN_POOLS):
        with contextlib.suppress(Exception):
            pool.close()


atexit.register(_close_open_pools)


class DecodePool:
    """``workers`` processes decoding candidates of ``source`` with ``opts``; ``timeout`` seconds per file; ``slots``
    images in flight; ``chain`` the decoders (default: those registered now, sent to every worker); ``rows`` how
    rows are delivered (default: raw pixels of ``opts.shape``; a flat :class:`RowFormat` has them encoded).

    Use as a context manager; :meth:`imap` yields :class:`Decoded` in input order. ``messages`` and ``files_sent``
    count the task messages sent to the workers and the files in them, over the pool's life (one message per file
    for costly files, down to 1/:data:`MAX_BATCH` for cheap ones).
    """

    def __init__(
        self,
        opts: DecodeOptions,
        workers: int,
        timeout: float = 60.0,
        slots: int = 0,
        *,
        source: Source,
        chain: Sequence[Decoder] | None = None,
        rows: RowFormat = RAW_FIXED,
    ) -> None:
        if workers < 1:
            raise ValueError("DecodePool needs at least one worker; use decode_in_process for none")
        self.opts = opts
        self.source = source
        self.chain = tuple(decoders() if chain is None else chain)
        self.n_workers = workers
        self.timeout = timeout
        self.rows = rows
        self.slot_shape = slot_shape = _slot_shape(opts, rows)
        per_image = int(np.prod(slot_shape))
        # Every queue full, plus a reorder window: results are handed out in input order, so a worker that runs
        # ahead of the others needs free slots to keep going (16 slots for 2 workers idled them ~10% of the time).
        # With batches, every queue full of the largest batches, twice: the ring stays within RING_BYTES, and the
        # batch size is capped by the slots there are (see _Run._batch_cap).
        wanted = workers * TASKS_PER_WORKER * MAX_BATCH * 2
        self.n_slots = slots or max(workers + 1, min(wanted, RING_BYTES // per_image))
        shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        # After the slots, 8-byte aligned: the progress table, a row of 3 float64 per worker (see _worker_main).
        self._progress_at = -(-self.n_slots * per_image // 64) * 64
        size = self._progress_at + workers * 3 * 8
        try:
            fd, self._ring_path = tempfile.mkstemp(prefix="imgstore-ring-", dir=shm)
            os.close(fd)
            with open(self._ring_path, "r+b") as f:
                f.truncate(size)
            ring = np.memmap(self._ring_path, dtype=np.uint8, mode="r+", shape=(self.n_slots, *slot_shape))
            # Plain ndarray views: indexing a memmap costs a few microseconds per item (its __array_finalize__).
            self._ring = ring.view(np.ndarray)
            progress = np.memmap(self._ring_path, np.float64, "r+", offset=self._progress_at, shape=(workers, 3))
            self._progress = progress.view(np.ndarray)
        except OSError as exc:
            with contextlib.suppress(OSError, AttributeError):
                os.unlink(self._ring_path)
            where = getattr(self, "_ring_path", shm or tempfile.gettempdir())
            raise WriteError(
                f"cannot create the decoders' shared memory {where} ({size / 1e6:.1f} MB): {os_cause(exc)}"
            ) from None
        self._ctx = multiprocessing.get_context(_start_method())
        if self._ctx.get_start_method() == "forkserver":
            self._ctx.set_forkserver_preload(["imgstore.pool"])
        prepare_workers()  # the SIMD resizer imported once here, not in each forked worker
        self._crashes = 0
        self._successes = 0
        self.messages = 0  # task messages sent to workers (each a batch of files), over the pool's life
        self.files_sent = 0  # files in them (a file sent again after its worker died counts again)
        self._workers: list[_Worker] = []
        # Every worker ever started, so close() stops them all even when a signal cut a start short: a worker
        # ignores SIGTERM (see _worker_main), so one left behind would hang multiprocessing's exit handler.
        self._started: list[_Worker] = []
        _OPEN_POOLS.add(self)
        try:
            for pos in range(workers):
                self._workers.append(self._spawn(pos))
        except BaseException:
            self.close()
            raise

    def _spawn(self, pos: int) -> _Worker:
        with signals.deferred():  # a started process is always recorded
            worker = _Worker(self._ctx, self, pos)
            self._started.append(worker)
        return worker

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers and remove the shared memory. Safe to call twice."""
        _OPEN_POOLS.discard(self)
        for w in self._workers:
            try:
                w.conn.send(None)
            except OSError:
                pass
        deadline = time.monotonic() + 2.0
        for w in self._workers:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
        for w in getattr(self, "_started", []):
            w.kill()
        self._workers = []
        self._started = []
        self._ring = self._progress = None  # type: ignore[assignment]
        try:
            os.unlink(self._ring_path)
        except (FileNotFoundError, AttributeError):
            pass

    def imap(
        self, keys: Sequence[str], on_idle: Callable[[], None] | None = None, idle: float = 0.25
    ) -> Iterator[Decoded]:
        """Decode the candidates ``keys`` of the pool's source and yield their outcomes in order; a view yielded is
        valid until the next one.

        ``on_idle`` is called about every ``idle`` seconds while the next result is not ready (the writer commits
        what it holds meanwhile, so a file that takes long to decode does not hold back what came before it).
        """
        return _Run(self, keys, on_idle, idle).results()


class Schedule:
    """The bookkeeping of one run, without processes: which task goes next, which ring slot holds it, and which
    results can be handed out in input order.

    A task ``seq`` takes a free slot when it is first sent and keeps it until the consumer has taken its result,
    so at most ``n_slots`` images are in flight. Tasks of a worker that died before starting them are retried
    first, in their order.
    """

    def __init__(self, n: int, n_slots: int) -> None:
        self.n = n
        # A stack: the slot freed last is taken first, so a run uses only as many slots as it has in flight (the
        # ring's pages stay few and warm in the caches; a FIFO walked all of a 200 MB ring at 256x256).
        self.free_slots = list(range(n_slots - 1, -1, -1))
        self.slot_of: dict[int, int] = {}
        self.done: dict[int, Outcome] = {}
        self.retry: collections.deque[int] = collections.deque()
        self.next_task = 0  # the first task never sent
        self.next_out = 0  # the next result to hand out

    @property
    def finished(self) -> bool:
        """Every result was handed out."""
        return self.next_out >= self.n

    def has_work(self) -> bool:
        """A task can be sent now: one to retry, or a new one with a free slot."""
        return bool(self.retry or (self.free_slots and self.next_task < self.n))

    def available(self) -> int:
        """How many tasks can be sent now (:meth:`take` that many times)."""
        return len(self.retry) + min(len(self.free_slots), self.n - self.next_task)

    def take(self) -> tuple[int, int]:
        """The next task to send and its slot (call only when :meth:`has_work`)."""
        if self.retry:
            seq = self.retry.popleft()
        else:
            seq = self.next_task
            self.next_task += 1
            self.slot_of[seq] = self.free_slots.pop()
        return seq, self.slot_of[seq]

    def give_back(self, seqs: Sequence[int]) -> None:
        """Tasks that were sent but never started (their worker died): they go out again first, in order."""
        self.retry.extendleft(sorted(seqs, reverse=True))

    def finish(self, seq: int, outcome: Outcome) -> None:
        """Task ``seq`` came back (or failed) with ``outcome``."""
        self.done[seq] = outcome

    def ready(self) -> tuple[int, int, Outcome] | None:
        """The next result in input order, ``(seq, slot, outcome)``, when it has come back; None otherwise."""
        if self.next_out not in self.done:
            return None
        seq = self.next_out
        return seq, self.slot_of[seq], self.done.pop(seq)

    def handed_out(self) -> None:
        """The consumer took the last :meth:`ready` result (and asked for the next): its slot is free again."""
        self.free_slots.append(self.slot_of.pop(self.next_out))
        self.next_out += 1


class _Run:
    """One :meth:`DecodePool.imap` call: sends batches of tasks to the pool's workers, watches them, replaces those
    that hang or die, and hands the results out in order (the bookkeeping is :class:`Schedule`)."""

    def __init__(
        self, pool: DecodePool, keys: Sequence[str], on_idle: Callable[[], None] | None, idle: float
    ) -> None:
        self.pool, self.keys, self.on_idle, self.idle = pool, keys, on_idle, idle
        self.schedule = Schedule(len(keys), pool.n_slots)
        self.selector = selectors.DefaultSelector()  # one for the whole run: cheaper than connection.wait()'s
        self.batch = 1  # files per task message now: 1 until the workers' answers say how long a file takes
        self.per_file: float | None = None  # seconds of a worker's time per file, a moving average
        # Every worker's queue must be able to hold full batches at once, or the last free slots go out a few at a
        # time: the batch size never exceeds the slots divided among the queued messages.
        self.batch_cap = max(1, min(MAX_BATCH, pool.n_slots // (pool.n_workers * TASKS_PER_WORKER)))
        self.parent_reads = getattr(pool.source, "parent_reads", None) is not None
        self.flat, self.ring = pool.rows.flat, pool._ring  # looked up per item

    def results(self) -> Iterator[Decoded]:
        for w in self.pool._workers:
            self._watch(w)
        schedule = self.schedule
        decoded = self._decoded
        last_out = time.monotonic()  # when a result was last handed out
        try:
            while not schedule.finished:
                while (item := schedule.ready()) is not None:
                    seq, slot, outcome = item
                    yield decoded(seq, slot, outcome)
                    schedule.handed_out()  # the consumer asked for the next item, so it is done with this slot
                    last_out = time.monotonic()
                if schedule.finished:
                    break
                self._dispatch()
                self._wait()
                if self.on_idle is not None and time.monotonic() - last_out >= self.idle:
                    self.on_idle()
                    last_out = time.monotonic()
        finally:
            self.selector.close()

    def _decoded(self, seq: int, slot: int, o: Outcome) -> Decoded:
        if o.reason is not None:
            return Decoded(seq, None, o.reason, o.sha256, o.crc32)
        if not self.flat:
            return Decoded(seq, self.ring[slot], None, o.sha256, o.crc32, path=o.path)
        data = o.extra if o.extra is not None else self.ring[slot, : o.nbytes].data
        return Decoded(seq, None, None, o.sha256, o.crc32, data, o.shape, o.path)

    def _dispatch(self) -> None:
        schedule, pool = self.schedule, self.pool
        for w in pool._workers:
            while len(w.pending) < TASKS_PER_WORKER:
                available = schedule.available()
                # A short batch only to an idle worker: while this one has work, wait until a full one can go
                # (otherwise slots freed one at a time would go out one per message).
                if not available or (available < self.batch and w.pending):
                    break
                data_bytes = 0
                for _ in range(min(self.batch, available)):
                    seq, slot = schedule.take()
                    key = self.keys[seq]
                    data = None
                    if self.parent_reads and parent_reads(pool.source, key):
                        try:
                            data = pool.source.read(key)
                        except BadImageError as exc:  # the file's outcome; no worker needed
                            schedule.finish(seq, Outcome(exc.reason))
                            continue
                        data_bytes += len(data)
                    w.send(seq, slot, key, data)
                    if data_bytes >= MAX_BATCH_DATA:
                        break
                if not w.outbox:
                    continue
                pool.messages += 1
                bid = pool.messages  # ids from 1: a fresh progress row reads 0
                try:
                    pool.files_sent += len(w.flush(bid))
                except OSError:  # the worker died; its sentinel will say so, the tasks go elsewhere
                    schedule.give_back([item[0] for item in w.outbox])
                    w.outbox = []
                    break

    def _head(self, w: _Worker) -> tuple[int, float]:
        """Which file of ``w``'s oldest batch it is decoding (its index in the batch) and since when (monotonic)."""
        bid = w.pending[0][0]
        row_bid, index, since = self.pool._progress[w.pos].tolist()
        if int(row_bid) != bid:  # not started yet (or started, but the row is not written yet): its first file
            return 0, w.head_since
        return int(index), max(since, w.head_since)

    def _wait(self) -> None:
        """Wait for answers (at most until the file being decoded longest times out, or ``idle``); handle deaths
        and hangs."""
        pool = self.pool
        now = time.monotonic()
        wait_for = min((self._head(w)[1] + pool.timeout - now for w in pool._workers if w.pending), default=pool.timeout)
        if self.on_idle is not None:
            wait_for = min(wait_for, self.idle)
        exited = []
        for key, _ in self.selector.select(timeout=max(0.0, wait_for)):
            w, kind = key.data
            if kind == "conn":
                self._collect(w)
            else:
                exited.append(w)
        for w in exited:
            if w in pool._workers:
                w.proc.join(timeout=1)
                self._collect(w)  # answers it sent before dying still count
                self._replace(w, _exit_reason(w.proc))
        now = time.monotonic()
        for w in list(pool._workers):
            if w.pending and now - self._head(w)[1] > pool.timeout:
                self._replace(w, f"timed out after {pool.timeout:g} s")

    def _collect(self, w: _Worker) -> None:
        finish, make = self.schedule.finish, Outcome._make
        try:
            while w.conn.poll():
                bid, seconds, outcomes = w.conn.recv()
                head, seqs = w.pending.popleft()
                assert head == bid, (head, bid)  # a worker answers its batches in order
                w.head_since = time.monotonic()
                for seq, outcome in zip(seqs, outcomes):
                    finish(seq, make(outcome))
                self.pool._successes += len(seqs)
                self._learn(seconds, len(seqs))
        except (EOFError, OSError):
            pass  # the worker died; its sentinel says so

    def _learn(self, seconds: float, files: int) -> None:
        """A worker took ``seconds`` for a batch of ``files``: update the time per file and the batch size."""
        per_file = seconds / max(1, files)
        self.per_file = per_file if self.per_file is None else 0.7 * self.per_file + 0.3 * per_file
        wanted = int(BATCH_SECONDS / max(self.per_file, 1e-6))
        self.batch = max(1, min(self.batch_cap, 2 * self.batch, wanted))

    def _watch(self, w: _Worker) -> None:
        self.selector.register(w.conn, selectors.EVENT_READ, (w, "conn"))
        self.selector.register(w.proc.sentinel, selectors.EVENT_READ, (w, "exit"))

    def _replace(self, w: _Worker, head_reason: str) -> None:
        """Kill ``w`` and start another; the file of its oldest batch it was decoding caused the failure, and is
        recorded with ``head_reason``. Every other file of its batches (decoded before, their answer lost with the
        worker, or never started) goes out again."""
        pool = self.pool
        guilty = self._head(w)[0] if w.pending else 0
        self.selector.unregister(w.conn)
        self.selector.unregister(w.proc.sentinel)
        w.kill()
        pool._crashes += 1
        if not pool._successes and pool._crashes >= MAX_CRASHES_BEFORE_FIRST_SUCCESS:
            raise WorkerError(
                f"decoder worker processes keep dying before decoding any file ({head_reason}); "
                "run with --workers 0 to decode in this process and see the error"
            )
        if w.pending:
            _, seqs = w.pending.popleft()
            guilty = min(guilty, len(seqs) - 1)
            self.schedule.finish(seqs[guilty], Outcome(head_reason))
            again = seqs[:guilty] + seqs[guilty + 1 :] + [seq for _, batch in w.pending for seq in batch]
            self.schedule.give_back(again)
        fresh = pool._spawn(w.pos)
        pool._workers[pool._workers.index(w)] = fresh
        self._watch(fresh)
