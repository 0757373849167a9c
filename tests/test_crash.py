"""The crash matrix's fast subset (``scripts/crash_test.py --quick``), on every CI run.

Real ``imgstore ingest`` processes in every mode (new, --overwrite, --append, --resume) are interrupted with
SIGKILL, SIGTERM and SIGINT at moments from their first 0.05 s to their end and, with strace, exactly at
file-changing system calls from the first to the last (each the k-th call of one system call, as strace counts);
the disk fills at several phases of every mode (a tmpfs when
the tests run as root, and a file-size limit always); second writers of every kind are started against a running
one. Each trial checks the store promise and that --resume ends identical to an uninterrupted run; the script's
module docstring says exactly what. ``python scripts/crash_test.py`` runs the full matrix.

Every trial must have tried what it reports: an interruption that found the run already finished is tried again
earlier, and one that never lands fails the test; a full-disk trial whose run finished, or a second-writer phase
that was never reached, fails too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import imgstore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import crash_test as C

MOMENTS = 2  # per mode x signal, from 0.05 s to the end of the run
POINTS = 4  # per mode x signal, strace kill points (the first two and the last two, and more)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> C.Setup:
    """Photos, the before-stores of every mode and their uninterrupted references (and their kill points, every
    file-changing system call, when strace is present)."""
    return C.prepare(tmp_path_factory.mktemp("crash"), C.QUICK[0], C.have_strace())


@pytest.fixture(scope="module")
def list_setup(tmp_path_factory: pytest.TempPathFactory) -> C.Setup:
    """The same photos with SRC a CSV list of them (reverse order, text, float and int meta columns): its
    before-stores and references, timed (no strace: the list adds no write of its own to count)."""
    return C.prepare(tmp_path_factory.mktemp("crash-list"), dataclasses.replace(C.QUICK[0], listed=True), False)


@pytest.fixture(scope="module")
def encoded_setup(tmp_path_factory: pytest.TempPathFactory) -> C.Setup:
    """The same photos ingested as a flat store (``--encode jpeg:90 --resize-mode shorter``: JPEG rows of their
    own shapes, written as bytes, ends and shapes): its before-stores, references and kill points."""
    corpus = dataclasses.replace(C.QUICK[0], storage=C.ENCODED)
    return C.prepare(tmp_path_factory.mktemp("crash-encoded"), corpus, C.have_strace())


def _report(trials: list[C.Trial]) -> str:
    return "\n".join(f"{t.mode} {t.sig} at {t.when}: {p}" for t in trials for p in t.problems)


@contextlib.contextmanager
def recorded(*names: str) -> Iterator[list[C.Run]]:
    """Collect what the harness's run functions ``names`` return, in call order, while the block runs."""
    runs: list[C.Run] = []
    with pytest.MonkeyPatch.context() as mp:
        for name in names:
            real = getattr(C, name)

            def recording(*args: Any, _real: Any = real, **kwargs: Any) -> C.Run:
                done = _real(*args, **kwargs)
                runs.append(done)
                return done

            mp.setattr(C, name, recording)
        yield runs


def interrupted(setup: C.Setup, mode: str, sig: str, *, after: float | None = None, syscall: int | None = None) -> C.Trial:
    """One trial whose signal reached the run while it ran (its exit status says so). A run that finished first
    -- a moment past the end of a quicker run, a system call that a run with fewer commits (they are timed) never
    made -- is tried again earlier: half the moment, or 1, 2, 4, ... system calls before; a signal that never
    lands fails the test."""
    for attempt in range(8):
        with recorded("run_interrupted", "run_at_syscall") as runs:
            t = C.trial(setup, mode, sig, after=after, syscall=syscall)
        assert len(runs) == 1
        if runs[0].returncode != 0:
            assert t.outcome, f"{mode} SIG{sig} at {t.when}: the state of OUT was not checked"
            return t
        if after is not None:
            after = max(0.05, after / 2)
        elif syscall is not None:
            syscall = max(1, syscall - 2**attempt)
    pytest.fail(f"{mode} SIG{sig}: every run finished before the signal, down to {t.when}: nothing was interrupted")


@pytest.mark.parametrize("sig", list(C.SIGNALS))
@pytest.mark.parametrize("mode", C.MODES)
def test_interrupted_run_keeps_the_store_promise(setup: C.Setup, mode: str, sig: str) -> None:
    """Interrupted at any moment or system call, OUT is absent, the previous store, or a store every reader opens
    with the uninterrupted run's first rows; --resume then ends identical to the uninterrupted run."""
    rng = random.Random(f"{mode}/{sig}")
    moments = C.moments(setup.duration[mode], MOMENTS + (0 if setup.syscalls else POINTS), rng)
    trials = [interrupted(setup, mode, sig, after=a) for a in moments]
    if setup.syscalls:
        trials += [interrupted(setup, mode, sig, syscall=n) for n in C.points(len(setup.syscalls[mode]), POINTS)]
    assert not _report(trials), _report(trials)
    # A cell whose every interruption came after the run had finished would have tried nothing.
    assert any(t.outcome != "finished" for t in trials), [t.outcome for t in trials]


@pytest.mark.parametrize("mode", C.MODES)
def test_interrupted_list_ingest_keeps_the_store_promise(list_setup: C.Setup, mode: str) -> None:
    """A list file as SRC, killed at moments over the run: OUT as promised with the uninterrupted run's first rows
    and their meta values, and --resume ends identical to it, meta columns included."""
    rng = random.Random(f"list/{mode}")
    trials = [interrupted(list_setup, mode, "KILL", after=a) for a in C.moments(list_setup.duration[mode], 3, rng)]
    assert not _report(trials), _report(trials)
    assert any(t.outcome != "finished" for t in trials), [t.outcome for t in trials]
    assert C.snapshot(list_setup.before["append"]).meta, "the list's meta columns were not stored"


@pytest.mark.parametrize("sig", ["KILL", "TERM"])
@pytest.mark.parametrize("mode", C.MODES)
def test_interrupted_encoded_ingest_keeps_the_store_promise(encoded_setup: C.Setup, mode: str, sig: str) -> None:
    """A flat store (JPEG rows of their own shapes), interrupted at moments over the run and at its system calls:
    OUT as promised with the uninterrupted run's first rows, byte for byte, shapes included and every checksum
    holding; --resume then ends identical to the uninterrupted run."""
    rng = random.Random(f"encoded/{mode}/{sig}")
    setup = encoded_setup
    trials = [interrupted(setup, mode, sig, after=a) for a in C.moments(setup.duration[mode], MOMENTS, rng)]
    if setup.syscalls:
        trials += [interrupted(setup, mode, sig, syscall=n) for n in C.points(len(setup.syscalls[mode]), 2)]
    assert not _report(trials), _report(trials)
    assert any(t.outcome != "finished" for t in trials), [t.outcome for t in trials]
    with imgstore.open(setup.before["append"]) as s:
        assert s.flat and s.variable and str(s.encoding) == "jpeg:90:420", "the runs did not make a flat store"


def test_full_disk_at_every_phase(setup: C.Setup) -> None:
    """A disk that fills before the store is created, at its first commit, midway and near the end, in every
    mode: one ``Error:`` line naming the cause, OUT as promised, and --resume finishes once space is free."""
    with recorded("run_limited") as runs:
        trials = C.disk_full_trials(setup, [0.0, 0.5])
    assert len(trials) >= 8
    assert not _report(trials), _report(trials)
    assert len(runs) == len(trials)  # one run per trial, in order
    for t, done in zip(trials, runs):
        assert done.returncode != 0, f"{t.mode} {t.sig} at {t.when}: the run finished, the disk never filled"
        assert t.outcome, f"{t.mode} {t.sig} at {t.when}: the state of OUT was not checked"


def test_second_writers_are_refused_at_once(setup: C.Setup) -> None:
    """new, --overwrite, --append, --resume, merge and --dask against a running ingest: each refused with one line
    naming its pid, before and after OUT exists; ``info`` works meanwhile; the first run's store is unharmed."""
    trials = C.second_writer_trials(setup)
    kinds = {t.when for t in trials if t.sig == "second writer"}
    assert any("while OUT is written" in k for k in kinds) and len(trials) >= 7
    assert not _report(trials), _report(trials)
    # Both phases were reached and every kind of writer tried in each (the harness skips a phase it missed).
    phases = ("before OUT exists", "while OUT is written")
    writers = [k for k in C.SECOND_WRITERS if k != "dask" or C._has_dask()]
    missing = {f"{k}, {p}" for k in writers for p in phases} - kinds
    assert not missing, f"never tried: {sorted(missing)}"
    assert sorted(t.when for t in trials if t.sig == "reader") == sorted(phases)


def test_interrupted_merge_leaves_nothing_or_the_whole_store(setup: C.Setup) -> None:
    """merge (virtual and --copy) interrupted at moments and system calls: OUT absent or the whole merged store,
    and merging again gives exactly that store with nothing left beside it."""
    with recorded("run_interrupted", "run_at_syscall") as runs:
        trials = C.merge_trials(setup, 1, 2 if setup.syscalls else 0, random.Random(0))
    assert len(trials) >= 6
    assert not _report(trials), _report(trials)
    assert len(runs) == len(trials)  # one interrupted run per trial, in order
    for t, done in zip(trials, runs):
        assert done.returncode != 0, f"{t.mode} SIG{t.sig} at {t.when}: the merge finished before the signal"
        assert t.outcome in ("absent", "finished"), f"{t.mode} SIG{t.sig} at {t.when}: OUT was not checked"


@pytest.mark.parametrize("mode", ["append", "resume"])
def test_kill_at_every_system_call_of_the_reopen(setup: C.Setup, mode: str) -> None:
    """SIGKILL at each of the first file-changing system calls of --append / --resume, where the existing store is
    reopened, trimmed and its text columns rebuilt: every one leaves a store every reader opens."""
    if setup.syscalls:
        trials = [interrupted(setup, mode, "KILL", syscall=n) for n in range(1, min(24, len(setup.syscalls[mode])) + 1)]
    else:  # without strace: moments packed into the start of the run, where the reopen happens
        start = setup.duration[mode] * 0.5
        trials = [interrupted(setup, mode, "KILL", after=0.05 + start * i / 12) for i in range(12)]
    assert not _report(trials), _report(trials)
