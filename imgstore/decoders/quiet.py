"""Quiet codecs: what a decoder prints while it decodes one file is captured, never shown.

C libraries write to file descriptor 2 (libtiff: "WEBP compression support is not configured", LibRaw,
libheif), Python libraries warn (``warnings``) or log (``logging``: tifffile, imageio). A progress bar with that
text through it is unreadable and ``--quiet`` is not quiet, so :func:`codec_output` redirects fd 2 to a
per-process in-memory file around each decode, records warnings and log records of WARNING and above, and hands
the text back: :func:`decode_bytes <imgstore.decoders.decode_bytes>` adds it to a failed file's skip reason.

Cost, measured: 5 µs per file in a decoder worker (the capture held for its life: two ``fstat``), 20 µs per file
switched on and off around each decode (two ``dup2``, an ``ftruncate``, the warnings hook and a log handler), 55 µs
with ``--workers 0`` (signals are held while fd 2 is switched, so a Ctrl-C never leaves it redirected); against
2.8 ms for decoding a 500x375 JPEG to 256x256, or 110 µs for a 32x32 PNG to 16x16.

A decoder worker (one thread, signals ignored) holds the capture for its whole life instead
(:func:`hold_for_process`): fd 2 stays on the sink, and a decode only notes the sink's size before it, reads the
text when the size grew, and empties the sink when it holds anything (no other decode can be under way then). That
leaves two ``fstat`` calls per file.

Threads: fd 2, the warnings machinery and the root logger belong to the process. Threads that decode at the same
time (a threaded Dask worker with ``workers=0``) share one capture: the first in sets it up, the last out puts
everything back, so nothing escapes to the terminal. Warnings and log records go to the decode of the thread they
come from (a thread that is not decoding warns as usual); fd 2 text cannot be told apart, so a thread's may include
another's. A logging handler the application configured on the root logger still receives the records (the
application asked for them); without one, Python's last-resort handler (which prints to stderr) is not reached
while a decode runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from imgstore import signals

MAX_NOTE = 100  # characters of codec text added to a skip reason

# What a codec says on a decode that succeeded is dropped -- libtiff's "Unknown field with tag ..." and "incorrect
# count for field StripByteCounts" (it recomputes them), Pillow's "Corrupt EXIF data" (the EXIF is ignored), "Invalid
# APNG, will use default PNG image" -- except when it says the pixel data itself was damaged and the decoder
# filled in the rest: then the file is skipped with that text (on Pillow's test images: two fuzzed fax TIFFs,
# "Fax4Decode: Bad code word at line 27 of strip 0").
DAMAGED = re.compile(
    r"bad code word|read error|premature (end|eof)|corrupt (jpeg )?data|(data|image) (is |was )?truncated"
    r"|not enough (image )?data|unexpected end of",
    re.IGNORECASE,
)

# Warnings about the libraries, not the file ("IM image format is deprecated"): never part of a reason. rawpy
# warns in every forked process that an OpenMP thread pool inherited from the parent could deadlock; imgstore
# loads rawpy with one OpenMP thread (imgstore.decoders.raw.import_rawpy), so there is no pool to inherit.
_NOT_ABOUT_THE_FILE = (DeprecationWarning, PendingDeprecationWarning, FutureWarning, ImportWarning)
_NOT_ABOUT_THE_FILE_TEXT = re.compile(r"^rawpy is being used in a process created by multiprocessing")

# What changes from run to run in a codec's text, so a skip reason depends on the file alone (a resumed store must
# equal an uninterrupted one): OpenCV, when installed, is one of imageio's plugins and starts every line with its
# thread and the seconds since it loaded ("[ WARN:0@0.022] global grfmt_png.cpp:834 ..."), and names the temporary
# file imageio handed it ("imcount_('/tmp/imageio_b0sx8x2x')").
_VOLATILE = (
    (re.compile(r"^\[\s*(?:FATAL|ERROR|WARN|INFO|DEBUG|VERBOSE)\s*:\d+@[\d.]+\]\s*(?:global\s+)?"), ""),
    (re.compile(r"(?:[A-Za-z]:)?[^\s'\"()]*[/\\]imageio_[A-Za-z0-9_]+(?:\.\w+)?"), "<temporary file>"),
)


def _steady(line: str) -> str:
    """``line`` without what differs between runs (see :data:`_VOLATILE`)."""
    for pattern, replacement in _VOLATILE:
        line = pattern.sub(replacement, line)
    return line


@dataclass
class CodecOutput:
    """What the decoders said while one file was decoded: ``lines`` in the order they came, once the block ends."""

    lines: list[str] = field(default_factory=list)

    def note(self) -> str:
        """The lines as one short line (``MAX_NOTE`` characters at most), repeats dropped; ``""`` for none."""
        text = "; ".join(dict.fromkeys(line for line in self.lines if line))
        return text if len(text) <= MAX_NOTE else text[: MAX_NOTE - 3] + "..."

    def damage(self) -> str | None:
        """The first line saying the pixel data was damaged (see :data:`DAMAGED`), or None."""
        return next((line for line in self.lines if DAMAGED.search(line)), None)


class _Mine(threading.local):
    """The warnings and log records of the decode running in this thread (None: no decode is)."""

    caught: list[tuple[type[Warning], str]] | None = None
    logged: list[str] | None = None


_MINE = _Mine()


class _LogRecorder(logging.Handler):
    """On the root logger while a decode runs in any thread: a record goes to the decode of its thread."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        logged = _MINE.logged
        if logged is not None:
            with contextlib.suppress(Exception):
                logged.append(f"{record.name}: {record.getMessage()}")


class _Fd2:
    """This process's capture, shared by the threads decoding in it: fd 2 redirected into an in-memory file, one
    ``warnings.showwarning`` and one root log handler that hand what they get to the decode of the thread it comes
    from. The first thread in sets them up and the last out puts everything back (``warnings.catch_warnings``
    nested in several threads restores in the wrong order: it left the process's warnings going to a finished
    decode's list)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0  # decodes inside the redirection now
        self.sink: int | None = None  # the in-memory file fd 2 points to, made on first use
        self.saved: int | None = None  # fd 2 as it was (None: it was closed)
        self.recorder = _LogRecorder()
        self.saved_filters: list[Any] = []
        self.saved_show: Any = None
        self.held = False  # hold_for_process() entered once for the process's life: depth never drops to 0

    def enter(self) -> int:
        """Redirect fd 2 (the first thread in); return where this decode's text starts in the sink."""
        if self.held:  # fd 2 stays on the sink (hold_for_process): only note where this decode's text starts
            with self.lock:
                self.depth += 1
                assert self.sink is not None
                return os.fstat(self.sink).st_size
        with self.lock:
            if self.sink is None:
                self.sink = _memory_file()
            if self.depth == 0:
                _flush_python_stderr()
                try:
                    self.saved = os.dup(2)
                except OSError:  # fd 2 closed: nothing reaches a terminal, but C writes must not fail
                    self.saved = None
                os.dup2(self.sink, 2)
                self.saved_filters, self.saved_show = list(warnings.filters), warnings.showwarning
                warnings.simplefilter("always")  # every warning, each time: a decode wants its own
                warnings.showwarning = self._show
                logging.getLogger().addHandler(self.recorder)
            self.depth += 1
            return os.fstat(self.sink).st_size

    def _show(self, message: Any, category: type[Warning], *args: Any, **kw: Any) -> None:
        caught = _MINE.caught
        if caught is None:  # a thread that is not decoding: as it would have been shown
            self.saved_show(message, category, *args, **kw)
        else:
            caught.append((category, str(message)))

    def leave(self, start: int) -> str:
        """The text written since ``start``; restore fd 2 (and the rest) when this is the last thread out."""
        with self.lock:
            assert self.sink is not None
            _flush_python_stderr()
            end = os.fstat(self.sink).st_size
            text = os.pread(self.sink, end - start, start).decode("utf-8", "replace") if end > start else ""
            self.depth -= 1
            if self.depth == 0:
                self.restore()
                self._empty()
            elif self.held and self.depth == 1 and end:  # only the holder is left: no decode's text is in there
                self._empty()
            return text

    def _empty(self) -> None:
        assert self.sink is not None
        os.ftruncate(self.sink, 0)
        os.lseek(self.sink, 0, os.SEEK_SET)  # fd 2 shared this offset: the next text starts at 0

    def restore(self) -> None:
        """Put fd 2, the warnings filters and hook and the root logger's handlers back as they were."""
        logging.getLogger().removeHandler(self.recorder)
        warnings.showwarning = self.saved_show
        warnings.filters[:] = self.saved_filters  # type: ignore[index]  # (a list: typeshed says Sequence)
        mutated = getattr(warnings, "_filters_mutated", None)  # what simplefilter calls: "once" registries reset
        if mutated is not None:
            mutated()
        if self.saved is None:
            os.close(2)
        else:
            os.dup2(self.saved, 2)
            os.close(self.saved)
            self.saved = None


def _memory_file() -> int:
    if hasattr(os, "memfd_create"):
        return os.memfd_create("imgstore-codec-stderr", os.MFD_CLOEXEC)
    with tempfile.TemporaryFile() as handle:  # macOS: a deleted temporary file, kept open by the copy
        return os.dup(handle.fileno())


def _flush_python_stderr() -> None:
    # Text Python buffered for stderr before the decode belongs to the terminal, not to this file; text a decoder
    # printed with print(file=sys.stderr) belongs to the file.
    with contextlib.suppress(Exception):
        sys.stderr.flush()


_FD2 = _Fd2()


def _forget_in_child() -> None:
    # A forked worker starts with no decode under way; the parent's sink is the parent's. (Forked while another
    # thread decoded: the child puts back what that decode changed.)
    global _FD2
    if _FD2.depth:
        with contextlib.suppress(Exception):
            _FD2.restore()
    if _FD2.sink is not None:
        with contextlib.suppress(OSError):
            os.close(_FD2.sink)
    _FD2 = _Fd2()
    _MINE.caught = _MINE.logged = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def hold_for_process() -> None:
    """Capture fd 2, warnings and log records from now until the process ends (a decoder worker: one thread,
    signals ignored), so that each :func:`codec_output` block only notes where its text starts and reads it if
    there is any. What is printed between decodes is dropped. Call it once, before any decode."""
    if not _FD2.held:
        _FD2.enter()
        _FD2.held = True


@contextlib.contextmanager
def codec_output() -> Iterator[CodecOutput]:
    """Capture fd 2, warnings and WARNING+ log records inside the block; the yielded object's ``lines`` hold them
    (text written to fd 2 first, then warnings and log records) once the block ends."""
    said = CodecOutput()
    fd2 = _FD2
    outer = (_MINE.caught, _MINE.logged)
    caught: list[tuple[type[Warning], str]] = []
    logged: list[str] = []
    # A signal (Ctrl-C with --workers 0: the decode runs in the main thread) raising while fd 2 is switched would
    # leave it pointing at the sink, and the "Interrupted" line and every error after it unseen: held until done.
    start = None
    # Held for the process (a worker): fd 2 is never switched here, so there is nothing a signal could leave behind.
    hold = contextlib.nullcontext if fd2.held else signals.deferred
    try:
        with hold():  # a signal held here raises at its end, inside the try: fd 2 is restored
            start = fd2.enter()
            _MINE.caught, _MINE.logged = caught, logged
        yield said
    finally:
        text = ""
        if start is not None:
            with hold():
                _MINE.caught, _MINE.logged = outer
                text = fd2.leave(start)
        if text:
            said.lines.extend(_steady(line.strip()) for line in text.splitlines() if line.strip())
        if caught:
            said.lines.extend(
                message.strip()
                for category, message in caught
                if not issubclass(category, _NOT_ABOUT_THE_FILE) and not _NOT_ABOUT_THE_FILE_TEXT.match(message)
            )
        said.lines.extend(logged)
