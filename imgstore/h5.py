"""Opening store files robustly: after a crash, for reading and for writing again.

Stores are written in HDF5's SWMR mode (see ``writer.py``), whose ordered metadata flushes keep the file
consistent whenever the writer dies. Two things remain for whoever opens the file after a crash:

- The superblock still says "open for writing" (the status flags SWMR sets). A plain open is refused ("file is
  already open for write"); a reader opens it in SWMR-read mode instead, and a writer clears the flags, as the
  ``h5clear`` tool does, through the file-access property ``clear_status_flags``.
- The end-of-allocation recorded in the superblock can be older than the last bytes written. Reading an object
  past it fails ("addr overflow"), and a writer would allocate over it; :func:`claim_whole_file` moves it to the
  end of the file.

h5py wraps neither, so both go through ctypes to h5py's own HDF5 library (the one loaded in this process).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import time
from pathlib import Path

import h5py


@functools.lru_cache(maxsize=1)
def hdf5_library() -> ctypes.CDLL | None:
    """The HDF5 C library h5py runs on (the very one loaded in this process), or None when it cannot be found."""
    candidates: list[str] = []
    try:
        with open("/proc/self/maps") as maps:  # Linux: the exact file h5py loaded
            candidates += [line.split()[-1] for line in maps if "libhdf5" in line and "_hl" not in line]
    except OSError:
        pass
    here = Path(h5py.__file__).parent
    candidates += [str(p) for pattern in ("../h5py.libs/libhdf5*", ".dylibs/libhdf5*") for p in here.glob(pattern)]
    found = ctypes.util.find_library("hdf5")
    if found:
        candidates.append(found)
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            lib.H5Fincrement_filesize.argtypes = [ctypes.c_int64, ctypes.c_uint64]
            lib.H5Fincrement_filesize.restype = ctypes.c_int
            lib.H5Pset.argtypes = [ctypes.c_int64, ctypes.c_char_p, ctypes.c_void_p]
            lib.H5Pset.restype = ctypes.c_int
            return lib
        except (OSError, AttributeError):
            continue
    return None


def claim_whole_file(f: h5py.File) -> bool:
    """Set the file's end-of-allocation to at least its size (``H5Fincrement_filesize(f, 0)``).

    Readers then reach objects written past a stale end-of-allocation, and a writer allocates only after the last
    byte on disk. Returns False when the HDF5 library cannot be reached.
    """
    lib = hdf5_library()
    return lib is not None and lib.H5Fincrement_filesize(f.id.id, 0) >= 0


def _flagged(exc: OSError) -> bool:
    return "already open for write" in str(exc) or "consistency flags" in str(exc)


def open_read(path: str | os.PathLike[str]) -> h5py.File:
    """Open a store read-only, also when its writer died (then in SWMR-read mode)."""
    try:
        f = h5py.File(path, "r", locking=False)
    except OSError as exc:
        if not _flagged(exc):
            raise
        f = h5py.File(path, "r", libver="latest", swmr=True, locking=False)
    claim_whole_file(f)
    return f


def open_write(path: str | os.PathLike[str], wait: float = 5.0) -> h5py.File:
    """Open a store for writing, clearing the status flags a dead SWMR writer left set.

    Waits up to ``wait`` seconds for another process's lock to go away: after a kill -9 the lock can outlive the
    killed writer by a moment, until the kernel has reaped it.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            return _open_write_once(os.fspath(path))
        except OSError as exc:
            if "lock" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _open_write_once(path: str) -> h5py.File:
    try:
        return h5py.File(path, "r+", libver="latest")
    except OSError as exc:
        if not _flagged(exc):
            raise
    lib = hdf5_library()
    if lib is None:
        raise OSError(f"{path} was left open by a writer that died, and the HDF5 library cannot be reached to clear it")
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    clear = ctypes.c_bool(True)
    if lib.H5Pset(fapl.id, b"clear_status_flags", ctypes.byref(clear)) < 0:
        raise OSError(f"cannot clear the status flags of {path}")
    fid = h5py.h5f.open(path.encode(), h5py.h5f.ACC_RDWR, fapl=fapl)
    return h5py.File(fid)
