"""Outputs that appear whole or not at all: one home for checking a target, temporary names and the final rename.

Every command that writes a file (export, convert, preview, extract, merge, ingest) checks its target with
:func:`check_target` (one wording and one error type for each problem) and writes under a temporary name
``.NAME.tmp-XXXXXXXX`` in the target's folder -- the same file system, so the final rename is atomic -- while it
holds the target's :class:`~imgstore.lock.WriterLock`. Only a lock holder creates temporary names, so whatever
matches that pattern when the lock is taken is a leftover of a killed run: :func:`remove_stale_temps` deletes it.

:class:`StagedOutputs` is the whole sequence for one file or a set of files that must appear together; stores
(which must be readable at every instant, not only at the end) follow the protocol in :mod:`imgstore.store.file`,
built on the same temporary names.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

from imgstore import signals
from imgstore.errors import ImgStoreError, OptionError, OutputExistsError, WriteError, os_cause
from imgstore.lock import WriterLock

TEMP_MARK = ".tmp-"


def temp_path(target: str | os.PathLike[str]) -> Path:
    """A new temporary name for ``target``'s content: ``.NAME.tmp-XXXXXXXX`` in the same folder (not created)."""
    p = Path(target)
    return p.with_name(f".{p.name}{TEMP_MARK}{secrets.token_hex(4)}")


def temp_target(tmp: Path) -> Path:
    """The output a temporary file of :func:`temp_path` stands for (``tmp`` itself when it is not one)."""
    name = tmp.name
    if name.startswith(".") and TEMP_MARK in name:
        return tmp.with_name(name[1:].rsplit(TEMP_MARK, 1)[0])
    return tmp


def remove_stale_temps(*targets: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files killed writers of ``targets`` left (call it holding their locks, or, for files
    only one run writes, before writing them); one scan per folder, whatever the number of targets."""
    by_folder: dict[Path, set[str]] = {}
    for target in targets:
        p = Path(target)
        by_folder.setdefault(p.parent if str(p.parent) else Path("."), set()).add(p.name)
    removed = []
    for folder, names in by_folder.items():
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                if TEMP_MARK not in entry.name or not entry.name.startswith("."):
                    continue
                if temp_target(Path(entry.path)).name in names and entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed.append(Path(entry.path))
    return removed


def check_target(path: Path, overwrite: bool, hint: str = "", *, example: str | None = None) -> None:
    """Refuse an output that is a folder or lies in a missing folder (:class:`OptionError`), or that exists
    without ``overwrite`` (:class:`OutputExistsError`). ``hint`` adds alternatives to ``--overwrite``; ``example``
    is the file name suggested instead of a folder (default ``store.h5``)."""
    if path.is_dir():
        suggestion = path / (example or "store.h5")
        raise OptionError(f"{path} is a folder: give a file name, e.g. {suggestion}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OptionError(f"the folder of {path} does not exist: create {parent} first")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists: pass --overwrite to replace it{hint}")


def create_temp(target: Path) -> tuple[Path, IO[bytes]]:
    """Create a temporary file for ``target``'s content and open it for writing.

    ``open(..., "xb")`` rather than ``mkstemp`` so the final file gets the usual umask permissions, not 0600.
    """
    for _ in range(100):
        tmp = temp_path(target)
        try:
            return tmp, open(tmp, "xb")  # the caller closes it
        except FileExistsError:
            continue
        except OSError as exc:
            raise WriteError(f"cannot create a file next to {target}: {os_cause(exc)}") from None
    raise WriteError(f"cannot create a temporary file next to {target}: 100 names were taken")  # pragma: no cover


def commit_temp(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename the finished ``tmp`` to ``path``; without ``overwrite`` never clobber a file that appeared meanwhile."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        # link() fails if path exists, unlike rename(): no window in which another writer's file is replaced.
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExistsError(f"{path} appeared while it was being written: pass --overwrite to replace it") from None
    except OSError:  # file systems without hard links (some network and FUSE mounts)
        if path.exists():
            raise OutputExistsError(f"{path} exists: pass --overwrite to replace it") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def replaced_when_written(target: Path) -> Iterator[Path]:
    """A temporary path for ``target``'s content, renamed over ``target`` when the block ends cleanly and deleted
    otherwise (an OS error becomes a :class:`WriteError` naming ``target``).

    No lock and no scan of the folder: for the many small files one run writes into a folder whose targets it
    checked and whose stale temporaries it removed once (``extract``). A single output wants
    :class:`StagedOutputs`.
    """
    tmp = temp_path(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:
        raise WriteError(f"cannot write {target}: {os_cause(exc)}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


class StagedOutputs:
    """One file, or several that appear together: each written to a temporary name, all renamed at the end.

    ``with StagedOutputs([a, b]) as st: write(st.temp(a)); write(st.temp(b))``. On entry it takes every target's
    writer lock (a second writer of any of them is refused at once), removes the temporary files a killed run left
    for them, and checks every target (:func:`check_target`; ``example`` is passed on). On a clean exit every
    temporary file is renamed to its target, the first target last (so when it exists, all do), with signals held
    until the last rename; on an exception all are deleted and no target is touched, and an operating-system error
    becomes a :class:`WriteError` naming the first target. (A kill -9 between two renames leaves the first
    target absent and its companions present; a rerun needs ``overwrite`` then.)
    """

    def __init__(
        self, targets: Iterable[str | os.PathLike[str]], overwrite: bool = False, *, example: str | None = None
    ) -> None:
        self.targets = [Path(t) for t in targets]
        self.overwrite = overwrite
        self.example = example
        self._temps: dict[Path, Path] = {}
        self._locks: list[WriterLock] = []

    def __enter__(self) -> StagedOutputs:
        try:
            for target in self.targets:
                self._locks.append(WriterLock(target).acquire())
            for target in self.targets:
                remove_stale_temps(target)  # ours to remove whatever follows: we hold the lock
                check_target(target, self.overwrite, example=self.example)
        except BaseException:
            self._release()
            raise
        return self

    def temp(self, target: str | os.PathLike[str]) -> Path:
        """The temporary path to write ``target``'s content to (in the same folder; not created)."""
        target = Path(target)
        if target not in self.targets:
            raise ValueError(f"{target} is not one of the staged outputs")
        if target not in self._temps:
            self._temps[target] = temp_path(target)
        return self._temps[target]

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is not None:
                self.discard()
                if isinstance(exc, OSError) and self.targets:
                    raise WriteError(f"cannot write {self.targets[0]}: {os_cause(exc)} (nothing was kept)") from None
                return
            self._commit()
        finally:
            self._release()

    def _commit(self) -> None:
        missing = [t for t in self.targets if t not in self._temps or not self._temps[t].exists()]
        if missing:
            self.discard()
            raise RuntimeError(f"staged outputs never written: {', '.join(map(str, missing))}")
        target = self.targets[0]
        try:
            # The first target (the main output) is renamed last: when it exists, so do the others. A signal
            # waits until all are renamed.
            with signals.deferred():
                for target in reversed(self.targets):
                    commit_temp(self._temps[target], target, self.overwrite)
        except ImgStoreError:
            self.discard()
            raise
        except OSError as exc:
            self.discard()
            raise WriteError(f"cannot write {target}: {os_cause(exc)}") from None
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Delete every temporary file that exists."""
        for tmp in self._temps.values():
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def _release(self) -> None:
        for lock in reversed(self._locks):
            lock.release()
        self._locks.clear()
