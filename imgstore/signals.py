"""Signals: SIGTERM and SIGHUP end a run the way Ctrl-C does, and no signal lands in the middle of a commit.

Batch schedulers (Slurm, Kubernetes, systemd, ``timeout``) send SIGTERM before SIGKILL, and a closed terminal sends
SIGHUP. Under :func:`graceful_signals` (the CLI runs every command in it) each of them raises :class:`Interrupted`,
a ``KeyboardInterrupt``, so the same code paths as Ctrl-C flush what was decoded and leave a resumable store; the
command then exits with 128 + the signal number. Further signals while that shutdown runs are ignored (kill -9
stays available, and leaves a readable store too).

:func:`deferred` marks a critical section (a writer's commit): a signal arriving inside it is held and delivered
when the section ends, so an exception never leaves rows written but half-counted. It works with any handler in
place, Python's default Ctrl-C one included, so library users get the same guarantee.

A decoder worker ignores all three for its whole life (:func:`ignore_for_good`): :func:`deferred` then costs a flag
test, instead of three ``signal.getsignal`` calls (with their enum conversions) on every entry -- it runs four times
per decoded file.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when SIGINT, SIGTERM or SIGHUP arrives under :func:`graceful_signals`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum

    @property
    def name(self) -> str:
        """``SIGTERM``, ``SIGINT``, ..."""
        return signal.Signals(self.signum).name


def exit_code(exc: KeyboardInterrupt) -> int:
    """128 + the signal that ended the run (130 for a plain Ctrl-C)."""
    return exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT


class _Depth(threading.local):
    """How many :func:`deferred` blocks this thread is in."""

    value = 0


_state = _Depth()

# True once this process ignores SIGINT, SIGTERM and SIGHUP for good (a decoder worker): nothing to hold, ever.
_ignored_for_good = False


def ignore_for_good() -> None:
    """Ignore SIGINT, SIGTERM and SIGHUP in this process from now on (a decoder worker: the parent decides what a
    signal means), and make :func:`deferred` free. Nothing may install a handler for them afterwards."""
    global _ignored_for_good
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    _ignored_for_good = True  # (a process forked from this one inherits SIG_IGN, so the flag stays true there)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def graceful_signals() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into :class:`Interrupted` (once) for the duration of the block."""
    if not _in_main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if fired:
            return  # already shutting down: let the cleanup finish
        fired.append(signum)
        raise Interrupted(signum)

    # Python runs finalizers (a generator the collector closes, a __del__) wherever the main thread is, and prints an
    # exception raised inside one as "Exception ignored in ..." with its traceback, then drops it: a signal landing
    # there would be lost and the run would go on (1 of 204 Ctrl-Cs in the crash matrix did). Such a signal is
    # sent again, to land outside the finalizer: from a bare helper thread (not one threading counts, so a pool
    # starting meanwhile still forks), which runs once this hook has returned and released the GIL; raised from
    # here it would run the handler inside the hook itself.
    previous_hook = sys.unraisablehook

    def unraisable(info: Any) -> None:
        if isinstance(info.exc_value, Interrupted) and fired == [info.exc_value.signum]:
            fired.clear()
            _thread.start_new_thread(os.kill, (os.getpid(), info.exc_value.signum))
            return
        previous_hook(info)

    old = {s: signal.signal(s, handler) for s in SIGNALS}
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for s, h in old.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP until the block ends, then deliver them to the handlers in place before."""
    if _ignored_for_good:  # (a decoder worker: they cannot arrive)
        yield
        return
    if not _in_main_thread() or _state.value or all(signal.getsignal(s) == signal.SIG_IGN for s in SIGNALS):
        # (Ignored signals, as in a decoder worker, cannot arrive: nothing to hold, and no handlers to swap.)
        _state.value += 1
        try:
            yield
        finally:
            _state.value -= 1
        return
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append(signum)

    old: dict[int, Any] = {}
    _state.value = 1
    try:
        for s in SIGNALS:
            old[s] = signal.signal(s, hold)
        yield
    finally:
        _state.value = 0
        for s, h in old.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)  # None: a handler installed from C
        if held:
            signal.raise_signal(held[0])  # to the handler that was in place: an exception, or the default action
