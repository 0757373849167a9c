"""One writer per output, and temporary files that never outlive a run.

Every imgstore command that writes a file (ingest, merge, export, convert, preview) first takes the writer lock of
its output with :class:`WriterLock`: an exclusive ``flock`` on ``.NAME.lock`` in the output's folder. The kernel
drops the lock when its process dies, kill -9 included, so a lock is never left stale; the file records who holds
it (pid, host, command, start time), so a second writer is refused at once with a line naming the running one.
Readers take no lock. The lock file is removed when the lock is released.

A lock taken again in the same process (a command whose steps lock the same output) is shared, not refused.
Processes forked while a lock is held (decoder workers) close their copy of its descriptor at once, so a lock
never outlives its writer in a child.

Temporary files of an output are named ``.NAME.tmp-XXXXXXXX`` in the output's folder (same file system, so the
final rename is atomic). Only the holder of the output's lock creates them, so whatever matches that pattern when
the lock is taken is a leftover of a killed run: :func:`remove_stale_temps` deletes it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import secrets
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from imgstore.errors import OptionError, StoreBusyError, StoreError

TEMP_MARK = ".tmp-"


def lock_path(target: str | os.PathLike[str]) -> Path:
    """The lock file of ``target``: ``.NAME.lock`` in the same folder."""
    p = Path(target)
    return p.with_name(f".{p.name}.lock")


def temp_path(target: str | os.PathLike[str]) -> Path:
    """A new temporary name for ``target``'s content: ``.NAME.tmp-XXXXXXXX`` in the same folder (not created)."""
    p = Path(target)
    return p.with_name(f".{p.name}{TEMP_MARK}{secrets.token_hex(4)}")


def remove_stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files a killed writer of ``target`` left (call it holding ``target``'s lock)."""
    p = Path(target)
    prefix = f".{p.name}{TEMP_MARK}"
    removed = []
    folder = p.parent if str(p.parent) else Path(".")
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if entry.name.startswith(prefix) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


@dataclass(frozen=True)
class Holder:
    """Who holds a writer lock, as recorded in the lock file."""

    pid: int
    host: str
    command: str
    since: str

    def describe(self) -> str:
        """``pid 123 on host, `imgstore ingest ...`, since 2026-01-01T10:00:00+00:00``."""
        where = "" if self.host == socket.gethostname() else f" on {self.host}"
        what = f", `{self.command}`" if self.command else ""
        return f"pid {self.pid}{where}{what}, since {self.since}"


def read_holder(target: str | os.PathLike[str]) -> Holder | None:
    """Who holds ``target``'s writer lock right now, or None when nobody does."""
    path = lock_path(target)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _parse_holder(os.pread(fd, 65536, 0))
        fcntl.flock(fd, fcntl.LOCK_UN)  # nobody holds it: a lock file being created or removed
        return None
    finally:
        os.close(fd)


def _parse_holder(raw: bytes) -> Holder:
    try:
        d = json.loads(raw.decode("utf-8"))
        return Holder(int(d["pid"]), str(d["host"]), str(d.get("command", "")), str(d.get("since", "?")))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return Holder(0, "?", "", "?")  # written by a writer that was killed while recording itself


def _command_line() -> str:
    args = [os.path.basename(sys.argv[0]) if sys.argv else "python", *sys.argv[1:]]
    text = " ".join(args)
    return text if len(text) <= 200 else text[:197] + "..."


# Locks held by this process: lock file path -> [descriptor, holders in this process].
_HELD: dict[str, list[int]] = {}


def _forget_in_child() -> None:
    # A forked child shares the lock through the inherited descriptor; closing the child's copy keeps the lock
    # with the parent alone (flock is released only when every descriptor of it is closed), so a killed writer's
    # lock is never kept alive by one of its children.
    for fd, _depth in _HELD.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_in_child)


class WriterLock:
    """The exclusive writer lock of ``target`` (a path that need not exist yet); a context manager.

    ``acquire()`` raises :class:`~imgstore.errors.StoreBusyError` naming the holder when another process writes
    ``target``, and :class:`~imgstore.errors.StoreError` when the lock file cannot be created (a folder that does
    not exist or is not writable). Acquiring a lock this process already holds nests.
    """

    def __init__(self, target: str | os.PathLike[str], command: str | None = None) -> None:
        self.target = Path(target)
        self.path = lock_path(self.target)
        self._key = os.path.join(os.path.realpath(self.path.parent if str(self.path.parent) else "."), self.path.name)
        self.command = _command_line() if command is None else command
        self._held = False

    def acquire(self) -> WriterLock:
        """Take the lock, or raise at once if another process holds it."""
        if self._held:
            return self
        held = _HELD.get(self._key)
        if held is not None:
            held[1] += 1
            self._held = True
            return self
        folder = self.path.parent if str(self.path.parent) else Path(".")
        if not folder.is_dir():
            raise OptionError(f"the folder of {self.target} does not exist: create {folder} first")
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the lock file {self.path}: {exc.strerror or exc} "
                    "(the output's folder must exist and be writable)"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _parse_holder(os.pread(fd, 65536, 0)) if exc.errno in (errno.EAGAIN, errno.EACCES) else None
                os.close(fd)
                if holder is None:
                    raise StoreError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
                raise StoreBusyError(
                    f"{self.target} is being written by another imgstore process ({holder.describe()}): "
                    "wait for it to finish or stop it"
                ) from None
            # A writer releasing its lock removes the file: make sure the path still names the file we locked.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        since = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": self.command, "since": since})
        with contextlib.suppress(OSError):  # the record is informative only
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode("utf-8"), 0)
        _HELD[self._key] = [fd, 1]
        self._held = True
        return self

    def release(self) -> None:
        """Give the lock up (the last holder in this process removes the lock file); safe to call twice."""
        if not self._held:
            return
        self._held = False
        held = _HELD.get(self._key)
        if held is None:  # forgotten in a forked child
            return
        held[1] -= 1
        if held[1] > 0:
            return
        del _HELD[self._key]
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # while still holding it: whoever opens the path next gets a new file
        with contextlib.suppress(OSError):
            os.close(held[0])

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
