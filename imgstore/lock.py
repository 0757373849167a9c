"""One writer per output, and temporary files that never outlive a run.

Every imgstore command that writes a file (ingest, merge, export, convert, preview) first takes the writer lock of
its output with :class:`WriterLock`: an exclusive ``flock`` on ``.NAME.lock`` in the output's folder. The kernel
drops the lock when its process dies, kill -9 included, so a lock is never left stale; the file records who holds
it (pid, host, command, start time), so a second writer is refused at once with a line naming the running one.
Readers take no lock. The lock file is removed when the lock is released.

A lock taken again in the same process (a command whose steps lock the same output) is shared, not refused.
Processes forked while a lock is held (decoder workers) close their copy of its descriptor at once, so a lock
never outlives its writer in a child.

Temporary files of an output, which only the lock holder creates, are in :mod:`imgstore.outputs`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from imgstore.errors import OptionError, StoreBusyError, StoreError


def lock_path(target: str | os.PathLike[str]) -> Path:
    """The lock file of ``target``: ``.NAME.lock`` in the same folder."""
    p = Path(target)
    return p.with_name(f".{p.name}.lock")


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
    path = lock_path(os.path.realpath(target))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_record(fd)
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


def _key(lockfile: Path) -> str:
    return os.path.join(os.path.realpath(lockfile.parent if str(lockfile.parent) else "."), lockfile.name)


def _read_record(fd: int) -> Holder:
    """The holder record of a lock file held by another process; it is written just after the lock is taken, so
    an empty one is read again for a moment."""
    for _ in range(50):
        raw = os.pread(fd, 65536, 0)
        if raw:
            return _parse_holder(raw)
        time.sleep(0.01)
    return _parse_holder(b"")


def _take(lockfile: Path, shown: Path, command: str) -> None:
    """Hold ``lockfile`` (nesting when this process holds it already) or raise StoreBusyError naming its holder."""
    key = _key(lockfile)
    held = _HELD.get(key)
    if held is not None:
        held[1] += 1
        return
    while True:
        try:
            fd = os.open(lockfile, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(
                f"cannot create the lock file {lockfile}: {exc.strerror or exc} "
                "(the output's folder must exist and be writable)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_record(fd) if exc.errno in (errno.EAGAIN, errno.EACCES) else None
            os.close(fd)
            if holder is None:
                raise StoreError(f"cannot lock {lockfile}: {exc.strerror or exc}") from None
            raise StoreBusyError(
                f"{shown} is being written by another imgstore process ({holder.describe()}): "
                "wait for it to finish or stop it"
            ) from None
        # A writer releasing its lock removes the file: make sure the path still names the file we locked.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lockfile))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    since = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": since})
    with contextlib.suppress(OSError):  # the record is informative only
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode("utf-8"), 0)
    _HELD[key] = [fd, 1]


def _drop(lockfile: Path) -> None:
    key = _key(lockfile)
    held = _HELD.get(key)
    if held is None:  # forgotten in a forked child
        return
    held[1] -= 1
    if held[1] > 0:
        return
    del _HELD[key]
    with contextlib.suppress(OSError):
        os.unlink(lockfile)  # while still holding it: whoever opens the path next gets a new file
    with contextlib.suppress(OSError):
        os.close(held[0])


def inode_lock_path(target: Path) -> Path | None:
    """The lock file of the file ``target`` names, whatever name it is reached by (hard links): in its folder,
    keyed by device and inode. None while ``target`` does not exist."""
    try:
        st = os.stat(target)
    except OSError:
        return None
    return target.with_name(f".imgstore-{st.st_dev:x}-{st.st_ino:x}.lock")


class WriterLock:
    """The exclusive writer lock of ``target`` (a path that need not exist yet); a context manager.

    The lock is taken on the real path (symbolic links resolved) and, once the file exists, on its inode as well,
    so another spelling of the same output -- a symlink, a hard link -- is the same lock. ``acquire()`` raises
    :class:`~imgstore.errors.StoreBusyError` naming the holder when another process writes ``target``, and
    :class:`~imgstore.errors.StoreError` when the lock file cannot be created (a folder that does not exist or is
    not writable). Acquiring a lock this process already holds nests. A writer that creates the file calls
    :meth:`refresh` then, to add the inode lock.
    """

    def __init__(self, target: str | os.PathLike[str], command: str | None = None) -> None:
        self.shown = Path(target)
        self.target = Path(os.path.realpath(target))
        self.path = lock_path(self.target)
        self.command = _command_line() if command is None else command
        self._held = False
        self._inode: Path | None = None

    def acquire(self) -> WriterLock:
        """Take the lock, or raise at once if another process holds it."""
        if self._held:
            return self
        folder = self.path.parent
        if not folder.is_dir():
            raise OptionError(f"the folder of {self.shown} does not exist: create {self.shown.parent} first")
        _take(self.path, self.shown, self.command)
        self._held = True
        try:
            self.refresh()
        except BaseException:
            self.release()
            raise
        return self

    def refresh(self) -> None:
        """Also hold the inode lock of the target once it exists (a writer calls this after creating it)."""
        if not self._held or self._inode is not None:
            return
        inode = inode_lock_path(self.target)
        if inode is not None:
            _take(inode, self.shown, self.command)
            self._inode = inode

    def release(self) -> None:
        """Give the lock up (the last holder in this process removes the lock file); safe to call twice."""
        if not self._held:
            return
        self._held = False
        if self._inode is not None:
            _drop(self._inode)
            self._inode = None
        _drop(self.path)

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
