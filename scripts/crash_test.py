#!/usr/bin/env python3
"""Crash matrix: interrupt real ``imgstore`` runs in every mode, at every moment, with every signal, on a full disk
and against a second writer, and check the store's promise after each one.

The promise (README, "Never loses data"): at every instant of every write, OUT holds nothing (a new store not yet
begun), the previous store exactly as it was, or a store that ``info``, ``imgstore.open``, ``verify``, ``export``
and ``--resume`` open, holding every row committed so far; and ``--resume`` then ends with a store identical
(images, names, skipped list, labels, digests) to an uninterrupted run.

What one trial does:
  1. prepares OUT for its mode: nothing (``new``), a finished store of half the photos (``overwrite``, ``append``),
     or a store whose ingest was killed midway (``resume``);
  2. runs ``imgstore ingest SRC OUT --size S --labels folder`` (+ the mode's flag) as a real process and
     interrupts it: SIGKILL or SIGTERM to the process, SIGINT to its process group (a terminal's Ctrl-C), at a
     moment spread over the run from 0.05 s to its end -- or, with strace, exactly at its N-th file-changing
     system call (``pwrite64``, ``link``, ``rename``, ``unlink``: every state the file passes through);
  3. checks the exit status and that stderr holds no traceback; that no decoder process outlived the run; that
     OUT is in one of the three states above (the previous store byte for byte, or one that every reader opens
     with rows equal to the uninterrupted run's first rows, and that ``verify`` passes and ``export`` writes);
  4. runs ``--resume`` (or, when the run was stopped before it changed anything, the same command again) and
     requires the result to equal the uninterrupted run's store, with no temporary, partial or lock file left.
It also measures, for SIGKILL, how old the last commit was at the kill (the decoded work a kill can lose).

Other trials: a full disk (a small tmpfs, ``mount -t tmpfs``, needs root; otherwise a file-size limit) at every
phase of every mode, then ``--resume`` after space is freed; and a second writer of every mode (new, --overwrite,
--append, --resume, merge, --dask) started while a first one runs, which must be refused at once with one line
naming the running process while the first finishes untouched.

Usage:
  python scripts/crash_test.py                  # the full matrix: sizes 32, 48, 256 (several minutes per size)
  python scripts/crash_test.py --quick          # the subset the test suite runs
  python scripts/crash_test.py --sizes 32 --trials 3 --points 20 --no-enospc
  python scripts/crash_test.py --quick --listed  # SRC a list file with meta columns (make_list)
  python scripts/crash_test.py --quick --encoded  # flat stores: --encode jpeg:90 --resize-mode shorter
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("new", "overwrite", "append", "resume")
SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT}
# System calls that change files: a kill before each of them leaves every state the output passes through.
EFFECT_SYSCALLS = "pwrite64,link,linkat,rename,renameat,renameat2,unlink,unlinkat"
SECOND_WRITERS = ("new", "overwrite", "append", "resume", "merge", "dask")


# ------------------------------------------------------------------------------------------------ the corpus


@dataclass(frozen=True)
class Corpus:
    """Photos for one image size: how many, how large, and the store size they are ingested at."""

    size: int  # --size of the ingest
    count: int  # photos (plus three broken files)
    photo: tuple[int, int]  # (width, height) of each JPEG
    flush_every: float = 2.0  # --flush-every of the runs (the default)
    listed: bool = False  # SRC is a CSV list of the photos with meta columns (make_list), not their folder
    storage: tuple[str, ...] = ()  # more ingest options shaping the store, e.g. ENCODED (--encoded)


ENCODED = ("--encode", "jpeg:90", "--resize-mode", "shorter")  # a flat store (format 4): JPEG rows of their own shapes


FULL = (Corpus(32, 2000, (500, 375)), Corpus(48, 120, (4000, 3000)), Corpus(256, 600, (500, 375)))
QUICK = (Corpus(32, 160, (320, 240), flush_every=0.3),)


def make_photos(root: Path, corpus: Corpus, subset: int | None = None) -> Path:
    """Class folders of JPEGs plus three broken files; ``subset`` keeps the first that many photos (hard links)."""
    from imgstore.samples import write_jpeg_corpus

    full = root / f"photos-{corpus.count}-{corpus.photo[0]}x{corpus.photo[1]}"
    paths = write_jpeg_corpus(full, count=corpus.count, size=corpus.photo, classes=4, workers=2)
    bad = {"class_00/broken_truncated.jpg": paths[0].read_bytes()[:600], "class_01/broken_empty.jpg": b"",
           "class_02/broken_text.jpg": b"this is not a JPEG\n"}  # fmt: skip
    for name, data in bad.items():
        (full / name).write_bytes(data)
    if subset is None:
        return full
    half = root / f"{full.name}-first{subset}"
    if not half.exists():
        keep = sorted(p.relative_to(full).as_posix() for p in full.rglob("*.jpg"))[:subset]
        for rel in keep:
            (half / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(full / rel, half / rel)
    return half


def make_list(folder: Path) -> Path:
    """A CSV list of every JPEG under ``folder`` (broken ones too), in reverse name order (a list keeps its order),
    with meta columns of every kind: text with a comma, a quote, a line break and non-ASCII, float (some empty) and
    int. It lies in ``folder``, so ``--labels folder`` finds the class folders in the listed paths."""
    import csv

    out = folder / "_list.csv"
    files = sorted((p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg")), reverse=True)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        rows = csv.writer(fh)
        rows.writerow(["path", "caption", "score", "n"])
        for i, rel in enumerate(files):
            rows.writerow([rel, f'photo {i}, "{rel}"\nsecond line «✓»', "" if i % 5 == 0 else i / 4, i])
    return out


# ------------------------------------------------------------------------------------------------ running


def cli(src: Path, out: Path, corpus: Corpus, *extra: str) -> list[str]:
    """The ingest command line every trial runs (two decoder workers, folder labels, no progress bar)."""
    return [sys.executable, "-m", "imgstore", "ingest", str(src), str(out), "--size", str(corpus.size),
            "--labels", "folder", "--workers", "2", "--flush-every", str(corpus.flush_every), "-q", *corpus.storage,
            *extra]  # fmt: skip


@dataclass
class Run:
    """A finished process: exit status, output, and the wall-clock moment it was signalled (0: never)."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    signalled_at: float = 0.0


def run(cmd: list[str], timeout: float = 300, **kw: object) -> Run:
    """Run ``cmd`` to its end."""
    t = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    return Run(p.returncode, p.stdout, p.stderr, time.monotonic() - t)


def run_interrupted(cmd: list[str], sig: str, after: float) -> Run:
    """Start ``cmd`` in its own session, send ``sig`` after ``after`` seconds (INT to the whole process group, as
    a terminal's Ctrl-C; KILL and TERM to the process, as kill and schedulers do), and wait for it."""
    t = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    signalled = 0.0
    try:
        proc.wait(timeout=after)
    except subprocess.TimeoutExpired:
        signalled = time.time()
        with contextlib.suppress(ProcessLookupError):
            if sig == "INT":
                os.killpg(proc.pid, signal.SIGINT)
            else:
                os.kill(proc.pid, SIGNALS[sig])
    out, err = proc.communicate(timeout=300)
    return Run(proc.returncode, out, err, time.monotonic() - t, signalled)


Point = tuple[str, int]  # a kill point: the k-th call of one system call (("pwrite64", 12), ("link", 1), ...)


def run_at_syscall(cmd: list[str], sig: str, point: Point) -> Run:
    """Run ``cmd`` under strace, which sends ``sig`` to it on entry of the system call ``point`` names."""
    # strace counts `when=` per system call, so the injection names one call: its k-th occurrence is the point.
    # Only the main process is traced (no -f): it is the one writer, and the count is its own.
    name, k = point
    strace = ["strace", "-qq", "-o", "/dev/null", "-e", f"trace={name}", "-e", f"inject={name}:signal={sig}:when={k}",
              "--"]  # fmt: skip
    return run([*strace, *cmd])


def syscall_points(cmd: list[str]) -> list[Point]:
    """Every file-changing system call the main process of ``cmd`` makes in an uninterrupted run, in order, each
    as (its name, which call of that name it is)."""
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as log:
        done = run(["strace", "-qq", "-o", log.name, "-e", f"trace={EFFECT_SYSCALLS}", "--", *cmd])
        if done.returncode != 0:
            raise RuntimeError(f"reference run under strace failed: {done.stderr}")
        seen: dict[str, int] = {}
        found: list[Point] = []
        for line in Path(log.name).read_text().splitlines():
            if "(" not in line:
                continue
            name = line.split("(", 1)[0].strip()
            seen[name] = seen.get(name, 0) + 1
            found.append((name, seen[name]))
        return found


def have_strace() -> bool:
    """True when strace can trace and inject signals here (ptrace may be forbidden in some containers)."""
    if shutil.which("strace") is None:
        return False
    probe = ["strace", "-qq", "-o", "/dev/null", "-e", "inject=getpid:signal=TERM:when=1", "--", sys.executable, "-c",
             "import os; os.getpid()"]  # fmt: skip
    return run(probe).returncode in (128 + signal.SIGTERM, -signal.SIGTERM)


def no_process_mentions(text: str, wait: float = 5.0) -> bool:
    """True once no process's command line contains ``text`` (forked decoders carry their parent's)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        alive = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                with contextlib.suppress(OSError):
                    alive.append(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"))
        if not any(text in cmd for cmd in alive):
            return True
        time.sleep(0.05)
    return False


# ------------------------------------------------------------------------------------------------ stores


@dataclass
class Snapshot:
    """A store's contents as readers see them (committed rows only)."""

    count: int
    complete: bool
    names: list[str]
    skipped: list[tuple[str, str]]
    labels: list[int]
    sha256: list[str]
    class_names: list[str] | None
    pixels: list[str]  # sha256 of each row's pixels
    meta: list[str] = field(default_factory=list)  # each row's meta values as JSON (a list file's columns)


def snapshot(path: Path) -> Snapshot:
    """Read every committed row of ``path`` through ``imgstore.open`` (raises if any of it cannot be read)."""
    import json

    import imgstore

    with imgstore.open(path, check=True) as s:
        if s.flat:  # every row decoded and checked; compared by its shape and stored bytes
            for i in range(len(s)):
                s[i]
            shapes = s.shapes
            pixels = [hashlib.sha256(shapes[i].tobytes() + s.row_bytes(i)).hexdigest() for i in range(len(s))]
        else:
            pixels = [hashlib.sha256(s[i].tobytes()).hexdigest() for i in range(len(s))]
        labels = s.labels
        meta = [json.dumps(s.meta_row(i)) for i in range(len(s))] if s.meta_columns else []
        return Snapshot(len(s), s.complete, s.names, s.skipped, [] if labels is None else labels.tolist(),
                        s.sha256 or [], s.class_names, pixels, meta)  # fmt: skip


def prefix_problems(got: Snapshot, ref: Snapshot, what: str) -> list[str]:
    """Differences between ``got``'s rows and the first rows of ``ref`` (an interrupted run's store)."""
    n, k = got.count, len(got.skipped)
    out = []
    if n > ref.count:
        out.append(f"{what} holds {n} rows, more than the uninterrupted run's {ref.count}")
    for key in ("names", "labels", "sha256", "pixels", "meta"):
        if getattr(got, key) != getattr(ref, key)[:n]:
            out.append(f"{what}: {key} differ from the uninterrupted run's first {n} rows")
    if got.skipped != ref.skipped[:k]:
        out.append(f"{what}: the skipped list differs from the uninterrupted run's first {k} entries")
    return out


def same_problems(got: Snapshot, ref: Snapshot, what: str) -> list[str]:
    """Differences between two finished stores."""
    out = [f"{what}: {key} differ from the uninterrupted run"
           for key in ("count", "names", "skipped", "labels", "sha256", "class_names", "pixels", "meta")
           if getattr(got, key) != getattr(ref, key)]  # fmt: skip
    if not got.complete:
        out.append(f"{what} is not marked complete")
    return out


def readers_problems(path: Path) -> list[str]:
    """``info``, ``verify`` and ``export`` on a store that must open: any error is a problem."""
    from imgstore.errors import StoreError
    from imgstore.store.info import store_info
    from imgstore.store.verify import verify_store
    from imgstore.vectors.export import export_vectors

    out: list[str] = []
    try:
        info = store_info(path)
    except Exception as exc:
        return [f"info fails on {path.name}: {type(exc).__name__}: {exc}"]
    report = verify_store(path)
    if not report.ok:
        out.append(f"verify finds problems in {path.name}: {report.problems[:3]}")
    with tempfile.TemporaryDirectory(prefix="export-check-") as scratch:  # never on the small disk under test
        try:
            # Rows of their own shapes export only at a size given (each centre-cropped and resized to it).
            export_vectors(path, Path(scratch) / "check.u8bin", size=16 if info.get("variable_shape") else None)
            if info["count"] == 0:
                out.append(f"export of the empty {path.name} was not refused")
        except StoreError as exc:
            if not (info["count"] == 0 and "holds no images" in str(exc)):
                out.append(f"export fails on {path.name}: {exc}")
        except Exception as exc:
            out.append(f"export fails on {path.name}: {type(exc).__name__}: {exc}")
    return out


def digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path, out: Path) -> list[str]:
    """Temporary, partial and lock files of ``out`` still in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name != out.name and p.name.startswith((f".{out.name}", f"{out.name}.")))


# ------------------------------------------------------------------------------------------------ the setup


@dataclass
class Setup:
    """Everything the trials of one corpus share: photos, prepared stores and the uninterrupted references."""

    corpus: Corpus
    root: Path
    full: Path  # the photos
    half: Path  # the first half of them
    before: dict[str, Path]  # mode -> the store OUT holds before the run (absent for "new")
    reference: dict[str, Snapshot]  # mode -> what an uninterrupted run leaves
    final_bytes: dict[str, int]  # mode -> size of the file an uninterrupted run leaves
    duration: dict[str, float]  # mode -> seconds of an uninterrupted run
    syscalls: dict[str, list[Point]] = field(default_factory=dict)  # mode -> file-changing syscalls of that run

    def flag(self, mode: str) -> tuple[str, ...]:
        return {"new": (), "overwrite": ("--overwrite",), "append": ("--append",), "resume": ("--resume",)}[mode]


def prepare(root: Path, corpus: Corpus, strace: bool) -> Setup:
    """Photos, the before-stores of each mode, and references (timed, and counted under strace when asked)."""
    root.mkdir(parents=True, exist_ok=True)
    full = make_photos(root / "photos", corpus)
    n_photos = sum(1 for _ in full.rglob("*.jpg"))
    half = make_photos(root / "photos", corpus, subset=n_photos // 2)
    if corpus.listed:
        full, half = make_list(full), make_list(half)
    stores = root / f"stores-{corpus.size}"
    shutil.rmtree(stores, ignore_errors=True)
    stores.mkdir()
    setup = Setup(corpus, root, full, half, {}, {}, {}, {})
    old = stores / "half.h5"
    must(run(cli(half, old, corpus)), "ingest of half the photos")
    setup.before["overwrite"] = setup.before["append"] = old
    interrupted = stores / "interrupted.h5"
    killed_when_half_done(cli(full, interrupted, corpus, "--flush-every", "0", "--workers", "1"), interrupted,
                          n_photos // 3)  # fmt: skip
    setup.before["resume"] = interrupted
    for mode in MODES:
        work = stores / f"ref-{mode}"
        work.mkdir()
        out = work / "out.h5"
        if mode in setup.before:
            shutil.copy(setup.before[mode], out)
        done = must(run(cli(full, out, corpus, *setup.flag(mode))), f"uninterrupted {mode} run")
        setup.duration[mode] = done.seconds
        setup.reference[mode] = snapshot(out)
        setup.final_bytes[mode] = out.stat().st_size
        if strace:
            if mode in setup.before:
                shutil.copy(setup.before[mode], out)
            else:
                out.unlink()
            setup.syscalls[mode] = syscall_points(cli(full, out, corpus, *setup.flag(mode)))
    return setup


def must(done: Run, what: str) -> Run:
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def killed_when_half_done(cmd: list[str], out: Path, rows: int) -> None:
    """Run ``cmd`` and SIGKILL it once ``out`` has committed at least ``rows`` rows: an interrupted store (tried
    again, with fewer rows, until the kill lands before the run's end)."""
    from imgstore.store import open_read

    for _ in range(6):
        out.unlink(missing_ok=True)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError, KeyError):
                with open_read(out) as f:
                    if int(f.attrs["count"]) >= rows:
                        break
            time.sleep(0.002)
        proc.kill()
        proc.wait()
        with contextlib.suppress(OSError):
            with open_read(out) as f:
                if not f.attrs["complete"] and int(f.attrs["count"]) > 0:
                    return
        rows = max(1, rows // 2)
    raise RuntimeError("could not make an interrupted store: every run ended before the kill")


# ------------------------------------------------------------------------------------------------ one trial


@dataclass
class Trial:
    """One interrupted run and what was found."""

    mode: str
    sig: str
    when: str  # "0.84s" or "syscall 37"
    size: int
    problems: list[str] = field(default_factory=list)
    outcome: str = ""  # absent / previous / partial store with N rows / finished
    commit_age: float | None = None  # SIGKILL: seconds since the last commit at the kill
    rerun: bool = False  # --resume found nothing begun, so the command ran again
    landed: bool = True  # the signal reached the run before it finished (False: the run completed first)
    before_start: bool = False  # the signal landed in the interpreter's own start, before imgstore's first line


def trial(setup: Setup, mode: str, sig: str, *, after: float | None = None, syscall: int | None = None) -> Trial:
    """Interrupt one run of ``mode`` with ``sig`` (after ``after`` seconds, or at file-changing ``syscall``)."""
    corpus = setup.corpus
    point = setup.syscalls[mode][syscall - 1] if syscall is not None else None
    when = f"{after:.2f}s" if point is None else f"syscall {syscall} ({point[0]} #{point[1]})"
    t = Trial(mode, sig, when, corpus.size)
    with tempfile.TemporaryDirectory(prefix="crash-", dir=setup.root) as tmp:
        work = Path(tmp)
        out = work / "out.h5"
        before = setup.before.get(mode)
        if before is not None:
            shutil.copy(before, out)
        old = digest(out) if before is not None else None
        old_snap = snapshot(out) if before is not None else None
        cmd = cli(setup.full, out, corpus, *setup.flag(mode))
        if point is not None:
            done = run_at_syscall(cmd, sig, point)
        else:
            assert after is not None
            done = run_interrupted(cmd, sig, after)
        t.problems += status_problems(done, sig, strace=syscall is not None)
        t.before_start = in_interpreter_start(done)
        t.landed = done.returncode != 0
        if not no_process_mentions(str(out)):
            t.problems.append("a decoder process outlived the interrupted run")
        t.problems += state_problems(t, setup, mode, out, old, old_snap, work)
        if sig == "KILL" and done.signalled_at and (out.exists() or out.with_name(out.name + ".partial").exists()):
            live = out.with_name(out.name + ".partial") if mode == "overwrite" else out
            if live.exists() and (old is None or digest(live) != old):
                t.commit_age = done.signalled_at - live.stat().st_mtime
        t.problems += finish_problems(t, setup, mode, out, old, work)
    return t


def in_interpreter_start(done: Run) -> bool:
    """The run was interrupted while the interpreter itself was starting (``site``, ``runpy``): Python's own
    KeyboardInterrupt traceback, no frame of imgstore's code in it, before imgstore could install a handler. That
    window (about 20-40 ms, longer on a loaded machine) belongs to every Python program; it is counted and reported,
    not judged: nothing of imgstore has run, so there is nothing it could have written."""
    return "Traceback" in done.stderr and "/imgstore/" not in done.stderr and "imgstore" not in done.stdout


def status_problems(done: Run, sig: str, strace: bool) -> list[str]:
    """Exit status and stderr of an interrupted run."""
    out = []
    if in_interpreter_start(done):
        return out if done.returncode in (1, -2, 130) else [f"exit status {done.returncode} in the interpreter's start"]
    if "Traceback" in done.stderr:
        out.append(f"a traceback on stderr: {done.stderr.strip().splitlines()[-1]}")
    if done.returncode == 0:
        return out  # it finished before the signal
    # 128 + the signal, or death by it (a signal in the last moments of the interpreter's exit): a shell shows both
    # as 128 + the signal.
    expected = {"KILL": (-9, 137), "TERM": (143, -15), "INT": (130, -2)}[sig]
    if done.returncode not in expected:
        out.append(f"exit status {done.returncode}, expected {expected} after SIG{sig}: {done.stderr.strip()[-300:]}")
    if sig != "KILL" and done.returncode > 0:
        lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("strace")]
        if len(lines) != 1 or not lines[0].startswith("Interrupted"):
            out.append(f"stderr is not one 'Interrupted: ...' line: {done.stderr.strip()[-300:]!r}")
    return out


def state_problems(
    t: Trial, setup: Setup, mode: str, out: Path, old: str | None, old_snap: Snapshot | None, work: Path
) -> list[str]:
    """OUT right after the interruption must be absent (new), the previous store byte for byte, or a store that
    opens with the uninterrupted run's first rows."""
    ref = setup.reference[mode]
    partial = out.with_name(out.name + ".partial")
    problems: list[str] = []
    if not out.exists():
        t.outcome = "absent"
        if mode != "new":
            problems.append("OUT disappeared")
        return problems
    if old is not None and digest(out) == old:
        t.outcome = "previous"
    else:
        try:
            snap = snapshot(out)
        except Exception as exc:
            return [f"OUT does not open: {type(exc).__name__}: {exc}"]
        problems += readers_problems(out)
        if mode == "overwrite":
            t.outcome = "finished" if snap.complete else f"store with {snap.count} rows"
            if not snap.complete:
                problems.append("OUT changed before the new store was complete (--overwrite must build it aside)")
            problems += same_problems(snap, ref, "OUT") if snap.complete else []
        else:
            t.outcome = "finished" if snap.complete else f"store with {snap.count} rows"
            problems += prefix_problems(snap, ref, "OUT")
            if old_snap is not None and snap.count < old_snap.count:
                problems.append(f"OUT lost committed rows: {old_snap.count} before, {snap.count} after")
    if partial.exists():
        try:
            snap = snapshot(partial)
        except Exception as exc:
            return [*problems, f"OUT.partial does not open: {type(exc).__name__}: {exc}"]
        problems += readers_problems(partial) + prefix_problems(snap, ref, "OUT.partial")
        t.outcome += f", partial with {snap.count} rows"
    return problems


def finish_problems(t: Trial, setup: Setup, mode: str, out: Path, old: str | None, work: Path) -> list[str]:
    """--resume (or the same command again when nothing had begun) must end with the uninterrupted run's store."""
    corpus = setup.corpus
    done = run(cli(setup.full, out, corpus, "--resume"))
    if done.returncode != 0:
        return [f"--resume failed ({done.returncode}): {done.stderr.strip()[-300:]}"]
    if "nothing to resume" in done.stdout and mode in ("overwrite", "append") and old is not None and (
        not out.with_name(out.name + ".partial").exists()
    ):
        t.rerun = True  # the run was stopped before it changed anything: the user runs it again
        done = run(cli(setup.full, out, corpus, *setup.flag(mode)))
        if done.returncode != 0:
            return [f"running {mode} again failed ({done.returncode}): {done.stderr.strip()[-300:]}"]
    problems = same_problems(snapshot(out), setup.reference[mode], "the resumed store")
    rest = leftovers(work, out)
    if rest:
        problems.append(f"files left beside OUT: {rest}")
    return problems


# ------------------------------------------------------------------------------------------------ full disk


@contextlib.contextmanager
def small_disk(folder: Path, megabytes: int) -> Iterator[str]:
    """A tmpfs of ``megabytes`` at ``folder`` (root only); yields "tmpfs", or "fsize" when it cannot be mounted
    (then :func:`run_limited` caps file sizes instead, which fails writes with EFBIG rather than ENOSPC)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = os.geteuid() == 0 and run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)]).returncode == 0
    try:
        yield "tmpfs" if mounted else "fsize"
    finally:
        if mounted:
            run(["umount", "-l", str(folder)])


def run_limited(cmd: list[str], fsize: int | None) -> Run:
    """Run ``cmd``; with ``fsize``, no file it writes may grow past ``fsize`` bytes (RLIMIT_FSIZE)."""
    if fsize is None:
        return run(cmd)

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    t = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, preexec_fn=limit)
    return Run(p.returncode, p.stdout, p.stderr, time.monotonic() - t)


def disk_full_trials(setup: Setup, fractions: list[float]) -> list[Trial]:
    """For every mode: the disk fills when ``fraction`` of what the run adds fits (0: nothing fits); the run must
    fail with one line naming the cause (or finish), leave OUT as promised, and ``--resume`` must finish it once
    space is free again.

    Two ways to fill it: a small tmpfs (root only), where imgstore's free-space check usually stops the writer
    before HDF5 meets ENOSPC; and a file-size limit (RLIMIT_FSIZE), invisible to that check, so the write fails
    inside HDF5 itself (EFBIG) at the chosen byte.
    """
    trials = []
    biggest = max(setup.final_bytes.values())
    with small_disk(setup.root / "small-disk", megabytes=max(8, (3 * biggest >> 20) + 4)) as how:
        kinds = (["tmpfs"] if how == "tmpfs" else []) + ["fsize"]
        for kind in kinds:
            folder = setup.root / "small-disk" if kind == "tmpfs" else setup.root
            for mode in MODES:
                for fraction in fractions:
                    trials.append(disk_full_trial(setup, kind, folder, mode, fraction))
    return trials


def disk_full_trial(setup: Setup, kind: str, folder: Path, mode: str, fraction: float) -> Trial:
    corpus = setup.corpus
    t = Trial(mode, "ENOSPC" if kind == "tmpfs" else "EFBIG", f"{fraction:.0%} fits", corpus.size)
    work = Path(tempfile.mkdtemp(prefix="full-", dir=folder))
    try:
        out = work / "out.h5"
        before = setup.before.get(mode)
        if before is not None:
            shutil.copy(before, out)
        start = out.stat().st_size if before is not None else 0
        old = digest(out) if before is not None else None
        old_snap = snapshot(out) if before is not None else None
        room = int(fraction * max(0, setup.final_bytes[mode] - start))
        ballast = folder / "ballast"
        fsize = None
        if kind == "tmpfs":
            fill(ballast, max(0, shutil.disk_usage(folder).free - room))
        else:
            fsize = start + room
        done = run_limited(cli(setup.full, out, corpus, *setup.flag(mode)), fsize)
        t.problems += full_disk_status(done)
        ballast.unlink(missing_ok=True)  # the checks and --resume run with space free again
        t.problems += state_problems(t, setup, mode, out, old, old_snap, work)
        t.problems += finish_problems(t, setup, mode, out, old, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return t


def fill(path: Path, nbytes: int) -> None:
    """Write ``nbytes`` of zeros to ``path`` (tmpfs allocates on write, so this takes the space for real)."""
    block = b"\0" * (1 << 20)
    with open(path, "wb") as fh:
        while nbytes > 0:
            try:
                fh.write(block[: min(nbytes, len(block))])
            except OSError:
                break  # the disk is full already
            nbytes -= len(block)


def full_disk_status(done: Run) -> list[str]:
    """A run that hit a full disk: exit 1, one ``Error:`` line naming the cause, no traceback (or it finished)."""
    if done.returncode == 0:
        return []
    lines = done.stderr.strip().splitlines()
    if done.returncode != 1 or len(lines) != 1 or not lines[0].startswith("Error: "):
        return [f"a full disk gave exit {done.returncode} and stderr {done.stderr.strip()[-400:]!r}"]
    if not re.search(r"No space left on device|File too large", lines[0]):
        return [f"the error does not name the cause: {lines[0]!r}"]
    return []


# ------------------------------------------------------------------------------------------------ second writer


def second_writer_trials(setup: Setup) -> list[Trial]:
    """While a first ingest runs, every kind of second writer is refused at once, naming it, and readers work --
    both before the first run has created OUT and after; the first run then finishes with the uninterrupted store.

    The first run is paused (SIGSTOP) while the others are tried, so the trials do not race its end: a stopped
    process holds its lock like a running one.
    """
    from imgstore.lock import read_holder

    corpus = setup.corpus
    trials = []
    kinds = [k for k in SECOND_WRITERS if k != "dask" or _has_dask()]
    with tempfile.TemporaryDirectory(prefix="second-", dir=setup.root) as tmp:
        work = Path(tmp)
        out = work / "out.h5"
        first = subprocess.Popen(cli(setup.full, out, corpus), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready = {"before OUT exists": lambda: read_holder(out) is not None, "while OUT is written": out.exists}
        for phase, is_ready in ready.items():
            deadline = time.monotonic() + 60
            while not is_ready() and first.poll() is None and time.monotonic() < deadline:
                time.sleep(0.001)
            if first.poll() is not None:
                trials.append(Trial("new", "second writer", phase, corpus.size, ["the first run ended too soon"]))
                break
            os.kill(first.pid, signal.SIGSTOP)
            try:
                if phase == "before OUT exists" and out.exists():
                    continue  # the first run got past the walk before it could be paused: nothing to try here
                info = run([sys.executable, "-m", "imgstore", "info", str(out)])
                t = Trial("new", "reader", phase, corpus.size)
                wanted = "BEING WRITTEN" if out.exists() else "does not exist yet"
                if wanted not in info.stdout + info.stderr:
                    t.problems.append(f"info {phase}: exit {info.returncode}, {(info.stdout + info.stderr)[-200:]!r}")
                trials.append(t)
                for kind in kinds:
                    t = Trial("new", "second writer", f"{kind}, {phase}", corpus.size)
                    second = run(second_writer_command(kind, setup, out, work), timeout=120)
                    lines = second.stderr.strip().splitlines()
                    if second.returncode != 1 or len(lines) != 1 or f"pid {first.pid}" not in lines[0] or (
                        "being written by another imgstore process" not in lines[0]
                    ):
                        t.problems.append(f"exit {second.returncode}, stderr {second.stderr.strip()[-300:]!r}")
                    if second.seconds > 20:
                        t.problems.append(f"refused only after {second.seconds:.1f}s")
                    trials.append(t)
            finally:
                os.kill(first.pid, signal.SIGCONT)
        _, err = first.communicate(timeout=300)
        t = Trial("new", "second writer", "the first run's store", corpus.size)
        if first.returncode != 0:
            t.problems.append(f"the first run failed: {err.strip()[-300:]}")
        else:
            t.problems += same_problems(snapshot(out), setup.reference["new"], "the first run's store")
        trials.append(t)
    return trials


def _has_dask() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def second_writer_command(kind: str, setup: Setup, out: Path, work: Path) -> list[str]:
    corpus = setup.corpus
    if kind == "merge":
        return [sys.executable, "-m", "imgstore", "merge", str(out), str(setup.before["append"]), "--overwrite"]
    if kind == "dask":
        return cli(setup.full, out, corpus, "--dask", "local:1", "--overwrite")
    flag = {"new": (), "overwrite": ("--overwrite",), "append": ("--append",), "resume": ("--resume",)}[kind]
    return cli(setup.full, out, corpus, *flag)


# ------------------------------------------------------------------------------------------------ merge


def merge_trials(setup: Setup, k: int, n_points: int, rng: random.Random) -> list[Trial]:
    """``imgstore merge`` (virtual and ``--copy``) interrupted at moments and system calls: OUT is absent or the
    finished merged store, never anything else, and running the merge again leaves exactly that store."""
    corpus = setup.corpus
    shards_dir = setup.root / f"shards-{corpus.size}"
    if not shards_dir.exists():
        shards_dir.mkdir()
        for i in (1, 2, 3):
            must(run(cli(setup.full, shards_dir / f"s{i}.h5", corpus, "--shard", f"{i}/3")), f"shard {i}/3")
    shards = sorted(str(p) for p in shards_dir.glob("s*.h5"))
    trials = []
    for how in ("virtual", "copy"):
        extra = ("--copy",) if how == "copy" else ()
        with tempfile.TemporaryDirectory(prefix="merge-ref-", dir=setup.root) as tmp:
            cmd = [sys.executable, "-m", "imgstore", "merge", str(Path(tmp) / "out.h5"), *shards, "-q", *extra]
            ref_run = must(run(cmd), f"merge {how}")
            ref = snapshot(Path(tmp) / "out.h5")
            calls = syscall_points([*cmd[:4], str(Path(tmp) / "again.h5"), *cmd[5:]]) if n_points else []
        for sig in SIGNALS:
            plan = [("after", a) for a in moments(ref_run.seconds, k, rng)]
            plan += [("syscall", n) for n in (points(len(calls), n_points) if calls else [])]
            for kind, when in plan:
                t = Trial(f"merge {how}", sig, f"{when:.2f}s" if kind == "after" else f"syscall {when}", corpus.size)
                with tempfile.TemporaryDirectory(prefix="merge-", dir=setup.root) as tmp:
                    out = Path(tmp) / "out.h5"
                    cmd = [sys.executable, "-m", "imgstore", "merge", str(out), *shards, "-q", *extra]
                    if kind == "after":
                        done = run_interrupted(cmd, sig, float(when))
                    else:
                        done = run_at_syscall(cmd, sig, calls[int(when) - 1])
                    t.problems += status_problems(done, sig, strace=kind == "syscall")
                    t.landed = done.returncode != 0
                    if out.exists():
                        try:
                            t.problems += same_problems(snapshot(out), ref, "OUT")
                            t.outcome = "finished"
                        except Exception as exc:
                            t.problems.append(f"OUT does not open: {type(exc).__name__}: {exc}")
                    else:
                        t.outcome = "absent"
                    again = run([*cmd, "--overwrite"])
                    if again.returncode != 0:
                        t.problems.append(f"merging again failed: {again.stderr.strip()[-300:]}")
                    else:
                        t.problems += same_problems(snapshot(out), ref, "the merged store")
                    rest = leftovers(Path(tmp), out)
                    if rest:
                        t.problems.append(f"files left beside OUT: {rest}")
                trials.append(t)
    return trials


# ------------------------------------------------------------------------------------------------ the matrix


def moments(duration: float, k: int, rng: random.Random) -> list[float]:
    """``k`` moments spread over ``[0.05, duration]``: the first 0.05 s, then one random moment per stratum."""
    if k <= 1:
        return [0.05]
    width = (duration - 0.05) / (k - 1)
    return [0.05] + [0.05 + width * (i + rng.random()) for i in range(k - 1)]


def points(total: int, k: int) -> list[int]:
    """``k`` system-call numbers spread over ``1..total``, always including the first two and the last two."""
    if k >= total:
        return list(range(1, total + 1))
    picks = {1, 2, total - 1, total}
    picks.update(round(1 + (total - 1) * i / max(1, k - 4)) for i in range(k - 4))
    return sorted(p for p in picks if 1 <= p <= total)


def run_matrix(
    setup: Setup, trials_per_cell: int, syscall_points: int, rng: random.Random, log: bool = True
) -> list[Trial]:
    """Every mode x signal: ``trials_per_cell`` moments over the run, plus ``syscall_points`` strace points."""
    results = []
    for mode in MODES:
        for sig in SIGNALS:
            cell = [trial(setup, mode, sig, after=a) for a in moments(setup.duration[mode], trials_per_cell, rng)]
            if setup.syscalls.get(mode):
                picks = points(len(setup.syscalls[mode]), syscall_points)
                cell += [trial(setup, mode, sig, syscall=n) for n in picks]
            results += cell
            if log:
                bad = [t for t in cell if t.problems]
                print(f"  size {setup.corpus.size:>3} {mode:<9} SIG{sig:<4} {len(cell):>3} trials, {len(bad)} failed", flush=True)
                for t in bad:
                    print(f"    at {t.when}: " + "; ".join(t.problems), flush=True)
    return results


def summarize(trials: list[Trial], flush_every: dict[int, float]) -> int:
    """Print the result table and every failure; return the number of failed trials."""
    failed = [t for t in trials if t.problems]
    print(f"\n{len(trials)} trials, {len(failed)} failed")
    rows: dict[tuple[int, str, str], list[Trial]] = {}
    for t in trials:
        rows.setdefault((t.size, t.mode, t.sig), []).append(t)
    print(f"{'size':>4}  {'mode':<9} {'signal':<14} {'trials':>6} {'failed':>6}  {'OUT after the interruption'}")
    for (size, mode, sig), ts in sorted(rows.items()):
        kinds: dict[str, int] = {}
        for t in ts:
            key = re.sub(r"\d+ rows", "N rows", t.outcome or "-")
            kinds[key] = kinds.get(key, 0) + 1
        shown = "; ".join(f"{k}: {v}" for k, v in sorted(kinds.items()))
        print(f"{size:>4}  {mode:<9} {sig:<14} {len(ts):>6} {sum(1 for t in ts if t.problems):>6}  {shown}")
    reruns = sum(1 for t in trials if t.rerun)
    print(f"runs stopped before they changed anything (then run again instead of resumed): {reruns}")
    interrupted = [t for t in trials if t.sig in SIGNALS]
    print(f"signals that reached their run before it ended: {sum(t.landed for t in interrupted)} of {len(interrupted)}")
    early = sum(t.before_start for t in trials)
    print(f"signals that landed in the interpreter's own start, before imgstore's first line (Python's traceback): {early}")
    ages = [(t.commit_age, flush_every[t.size]) for t in trials if t.commit_age is not None]
    if ages:
        worst = max(a - f for a, f in ages)
        print(f"SIGKILL: age of the last commit at the kill: median {statistics.median(a for a, _ in ages):.2f}s, "
              f"max {max(a for a, _ in ages):.2f}s (flush interval {sorted(set(f for _, f in ages))} s; worst excess "
              f"over it {worst:+.2f}s)")  # fmt: skip
    for t in failed:
        print(f"FAILED size {t.size} {t.mode} {t.sig} at {t.when}:")
        for p in t.problems:
            print(f"    {p}")
    return len(failed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the test suite's subset: size 32, 160 photos")
    ap.add_argument("--sizes", default=None, help="comma-separated --size values of the full matrix (32,48,256)")
    ap.add_argument("--trials", type=int, default=None, help="moments per mode x signal (default 8, quick 2)")
    ap.add_argument("--points", type=int, default=None, help="strace kill points per mode x signal (default 12, quick 2)")
    ap.add_argument("--every-syscall", action="store_true",
                    help="SIGKILL at every file-changing system call of each mode's run (the quick corpus), then stop")
    ap.add_argument("--no-enospc", action="store_true", help="skip the full-disk trials")
    ap.add_argument("--no-second-writer", action="store_true", help="skip the second-writer trials")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent / "bench-data" / "crash")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--listed", action="store_true", help="SRC is a CSV list of the photos with meta columns")
    ap.add_argument("--encoded", action="store_true",
                    help="flat stores: every run adds " + " ".join(ENCODED) + " (JPEG rows of their own shapes)")
    args = ap.parse_args(argv)
    corpora = QUICK if args.quick else FULL
    if args.sizes:
        wanted = {int(s) for s in args.sizes.split(",")}
        corpora = tuple(c for c in (FULL if not args.quick else QUICK) if c.size in wanted)
    if args.listed:
        corpora = tuple(dataclasses.replace(c, listed=True) for c in corpora)
    if args.encoded:
        corpora = tuple(dataclasses.replace(c, storage=ENCODED) for c in corpora)
    per_cell = args.trials if args.trials is not None else (2 if args.quick else 8)
    n_points = args.points if args.points is not None else (2 if args.quick else 12)
    strace = have_strace()
    if not strace:
        print("strace with seccomp-bpf is not available: kill points at system calls are not tried")
    rng = random.Random(args.seed)
    results: list[Trial] = []
    started = time.monotonic()
    if args.every_syscall:
        if not strace:
            print("--every-syscall needs strace")
            return 1
        setup = prepare(args.data, dataclasses.replace(QUICK[0], listed=args.listed, storage=ENCODED if args.encoded else ()), True)
        for mode in MODES:
            total = len(setup.syscalls[mode])
            cell = [trial(setup, mode, "KILL", syscall=n) for n in range(1, total + 1)]
            results += cell
            print(f"  {mode}: SIGKILL at each of its {total} file-changing system calls "
                  f"({sum(t.landed for t in cell)} landed before the run ended), "
                  f"{sum(1 for t in cell if t.problems)} failed", flush=True)  # fmt: skip
        print(f"\nall done in {time.monotonic() - started:.0f}s")
        return 1 if summarize(results, {QUICK[0].size: QUICK[0].flush_every}) else 0
    for corpus in corpora:
        print(f"size {corpus.size}: {corpus.count} photos of {corpus.photo[0]}x{corpus.photo[1]}, preparing", flush=True)
        setup = prepare(args.data, corpus, strace and n_points > 0)
        print("  uninterrupted runs (s): " + ", ".join(f"{m} {d:.2f}" for m, d in setup.duration.items())
              + ("; file-changing syscalls: " + ", ".join(f"{m} {len(n)}" for m, n in setup.syscalls.items())
                 if setup.syscalls else ""), flush=True)  # fmt: skip
        results += run_matrix(setup, per_cell, n_points if strace else 0, rng)
        if not args.no_enospc and corpus.size <= 48:
            results += disk_full_trials(setup, [0.0, 0.02, 0.3, 0.7, 0.97])
            print(f"  size {corpus.size:>3} full disk done", flush=True)
        if not args.no_second_writer and corpus.size == corpora[0].size:
            results += second_writer_trials(setup)
            print(f"  size {corpus.size:>3} second writers done", flush=True)
        if corpus.size == corpora[0].size:
            merged = merge_trials(setup, max(1, per_cell // 2), n_points // 2 if strace else 0, rng)
            results += merged
            print(f"  size {corpus.size:>3} merge: {len(merged)} trials, {sum(1 for t in merged if t.problems)} failed")
    print(f"\nall done in {time.monotonic() - started:.0f}s")
    return 1 if summarize(results, {c.size: c.flush_every for c in corpora}) else 0


if __name__ == "__main__":
    raise SystemExit(main())
