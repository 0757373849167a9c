"""One progress protocol for every long-running library call (ingest, merge, verify, export, convert, extract).

A library function takes ``progress=`` -- a :class:`Progress`, a plain callable taking the number of items just
finished, a tqdm-like bar, or None -- and turns it into a :class:`Progress` with :func:`as_progress`. It calls
:meth:`Progress.start` once it knows how much work there is, then :meth:`Progress.advance` as work is done. The
CLI passes :func:`progress_bar`, which draws a tqdm bar from ``start`` on, or does nothing under ``--quiet`` (like
sqlite-utils' ``progressbar(silent=)``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol, Union, runtime_checkable

from imgstore.errors import OptionError


@runtime_checkable
class Progress(Protocol):
    """Where a long call reports its progress."""

    def start(self, total: int | None) -> None:
        """The work is known: ``total`` items (None when it cannot be counted ahead)."""

    def advance(self, n: int = 1) -> None:
        """``n`` more items are done."""


class NullProgress:
    """Reports nowhere (``--quiet``, or no ``progress`` given)."""

    def start(self, total: int | None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


class CallbackProgress:
    """Calls ``callback(n)`` for every :meth:`advance`; ``on_start(total)``, when given, for :meth:`start`."""

    def __init__(self, callback: Callable[[int], Any], on_start: Callable[[int | None], Any] | None = None) -> None:
        self.callback = callback
        self.on_start = on_start

    def start(self, total: int | None) -> None:
        if self.on_start is not None:
            self.on_start(total)

    def advance(self, n: int = 1) -> None:
        self.callback(n)


class _TqdmLike:
    """Drives a bar the caller made (anything with ``update(n)``; its ``total`` is set at start when unset)."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def start(self, total: int | None) -> None:
        if total is not None and hasattr(self.bar, "total") and not self.bar.total:
            self.bar.total = total
            refresh = getattr(self.bar, "refresh", None)
            if callable(refresh):
                refresh()

    def advance(self, n: int = 1) -> None:
        self.bar.update(n)


ProgressLike = Union[Progress, Callable[[int], Any], None]


def as_progress(progress: ProgressLike | Any) -> Progress:
    """The :class:`Progress` for what a caller passed: itself, a callable taking an item count, a tqdm-like bar
    (an object with ``update``), or None (nothing is reported)."""
    if progress is None:
        return NullProgress()
    if isinstance(progress, Progress):
        return progress
    if callable(getattr(progress, "update", None)):
        return _TqdmLike(progress)
    if callable(progress):
        return CallbackProgress(progress)
    raise OptionError(f"invalid progress {progress!r}: give a callable taking an item count, or a tqdm bar")


class Bar:
    """A tqdm bar drawn from :meth:`start` on, so a command refused before its work begins prints no empty bar."""

    def __init__(self, desc: str, unit: str) -> None:
        self.desc, self.unit = desc, unit
        self._bar: Any = None

    def start(self, total: int | None) -> None:
        from tqdm import tqdm

        tqdm.monitor_interval = 0  # no monitor thread: decoder processes fork from this process
        self.close()
        self._bar = tqdm(total=total, desc=self.desc, unit=self.unit, dynamic_ncols=True, smoothing=0.05)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        """Close the bar (safe to call twice)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextlib.contextmanager
def progress_bar(desc: str, unit: str, *, silent: bool = False) -> Iterator[Progress]:
    """A :class:`Bar` labelled ``desc`` counting ``unit``, closed on the way out; a :class:`NullProgress` when
    ``silent``."""
    if silent:
        yield NullProgress()
        return
    bar = Bar(desc, unit)
    try:
        yield bar
    finally:
        bar.close()


def started(progress: ProgressLike | Any, total: int | None) -> Callable[[int], None]:
    """:func:`as_progress` of ``progress``, started with ``total``; returns its ``advance``."""
    bar = as_progress(progress)
    bar.start(total)
    return bar.advance
