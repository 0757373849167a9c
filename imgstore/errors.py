"""The exceptions imgstore raises.

Every error a user can cause is an :class:`ImgStoreError` subclass whose message says what went wrong and how to
fix it; the CLI prints ``Error: <message>`` and exits 1 without a traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class ImgStoreError(Exception):
    """Base class of every error imgstore raises on purpose."""


class OptionError(ImgStoreError, ValueError):
    """An option value is invalid (bad size, unknown mode, unknown format, ...)."""


class SourceError(ImgStoreError):
    """The source folder or input file is missing or unusable."""


class OutputExistsError(ImgStoreError, FileExistsError):
    """The output exists and ``overwrite`` was not given."""


class StoreError(ImgStoreError):
    """A store is missing, not an imgstore file, damaged, or incompatible with the request."""


class ChecksumError(StoreError):
    """A stored row does not match its checksum: its bytes changed after it was written."""


class StoreBusyError(StoreError):
    """Another process is writing the output (one writer at a time); the message names it."""


class WriteError(ImgStoreError):
    """Writing an output failed at the operating-system level (disk full, file removed, I/O error).

    The message names the path and the cause, and says what state the output was left in. ``sealed`` is true when
    a write failed part-way and the store's file was sealed against further writes by this process.
    """

    sealed = False


class ConfigError(ImgStoreError):
    """A TOML config file cannot be read or holds unknown or invalid keys."""


class FormatError(ImgStoreError):
    """Data does not fit a vector file format (32-bit overflow, wrong dtype, sparse input, ...)."""


class BadImageError(ImgStoreError):
    """One image cannot be ingested; ``reason`` is the short text recorded in ``skipped_reasons``, on one line
    whatever was given (a plugin's or a library's message can hold line breaks)."""

    def __init__(self, reason: str) -> None:
        if "\n" in reason or "\r" in reason:
            reason = " ".join(reason.split())
        super().__init__(reason)
        self.reason = reason


class NotRecognised(BadImageError):
    """A decoder does not read this format (``reason`` says what it found); the next registered decoder tries."""


class WorkerError(ImgStoreError):
    """Decoder worker processes cannot run at all (they die before decoding a single file)."""


class EmptyStoreError(StoreError, IndexError):
    """An image was asked of a store that holds none (an IndexError too, as for any empty sequence)."""


class ClusterError(ImgStoreError):
    """A Dask run cannot go on: the scheduler is unreachable, no worker joins, or a shard failed every attempt."""


class MissingExtraError(ImgStoreError, ImportError):
    """An optional dependency is not installed; the message names the ``pip install 'imgstore[extra]'`` to run."""


def os_cause(exc: BaseException) -> str:
    """The cause of an operating-system or HDF5 error in a few words: ``No space left on device``.

    HDF5's messages run over several lines of its error stack; what matters is the errno they carry, which h5py
    copies to ``exc.errno``.
    """
    import os
    import re

    code = getattr(exc, "errno", None)
    if not isinstance(code, int):
        m = re.search(r"errno = (\d+)", str(exc))
        code = int(m.group(1)) if m else None
    if isinstance(code, int) and code > 0:
        return os.strerror(code)
    text = str(getattr(exc, "strerror", None) or exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def is_os_failure(exc: BaseException) -> bool:
    """True for an operating-system failure: an ``OSError``, or an HDF5 error h5py raised as another type
    (``RuntimeError: Unable to flush file (file write failed: ... errno = 28 ...)``)."""
    import re

    if isinstance(exc, ImgStoreError):
        return False
    if isinstance(exc, OSError):
        return True
    return isinstance(exc, (RuntimeError, ValueError)) and re.search(r"errno = [1-9]", str(exc)) is not None


@contextlib.contextmanager
def io_errors(source: object, out: object, unreadable: type[ImgStoreError]) -> Iterator[None]:
    """Operating-system errors of a command that reads ``source`` and writes ``out``, as one line each: a failed
    write (it carries an errno: a full disk) is a :class:`WriteError`, anything else an ``unreadable`` error."""
    try:
        yield
    except ImgStoreError:
        raise  # already one line (OutputExistsError is an OSError too)
    except OSError as exc:
        if isinstance(getattr(exc, "errno", None), int):
            raise WriteError(f"cannot write {out}: {os_cause(exc)} (nothing was kept)") from None
        raise unreadable(f"cannot read {source}: {os_cause(exc)} (is it damaged?)") from None
