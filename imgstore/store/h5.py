"""HDF5 plumbing h5py does not wrap: clearing a dead writer's status flags, claiming the whole file, and telling
the errors HDF5 raises when a file is flagged or locked.

Stores are written in HDF5's SWMR mode (see ``store.py``). Two things remain for whoever opens one after its
writer died:

- The superblock still says "open for writing" (the status flags). A plain open is refused ("file is already open
  for write"); a reader opens it in SWMR-read mode instead, and a writer clears the flags, as the ``h5clear`` tool
  does, through the file-access property ``clear_status_flags``.
- The end-of-allocation recorded in the superblock can be older than the last bytes written. Reading an object
  past it fails ("addr overflow"), and a writer would allocate over it; :func:`claim_whole_file` moves it to the
  end of the file.

Both go through ctypes to h5py's own HDF5 library (the one loaded in this process).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
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
    for path in candidates:
        lib = _load(path)
        if lib is not None:
            return lib
    found = ctypes.util.find_library("hdf5")  # last: it runs ldconfig or a compiler to search
    return _load(found) if found else None


def _load(path: str) -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL(path)
        lib.H5Fincrement_filesize.argtypes = [ctypes.c_int64, ctypes.c_uint64]
        lib.H5Fincrement_filesize.restype = ctypes.c_int
        lib.H5Pset.argtypes = [ctypes.c_int64, ctypes.c_char_p, ctypes.c_void_p]
        lib.H5Pset.restype = ctypes.c_int
        lib.H5Pset_metadata_read_attempts.argtypes = [ctypes.c_int64, ctypes.c_uint]
        lib.H5Pset_metadata_read_attempts.restype = ctypes.c_int
        lib.H5Fget_eoa.argtypes = [ctypes.c_int64, ctypes.POINTER(ctypes.c_uint64)]
        lib.H5Fget_eoa.restype = ctypes.c_int
        return lib
    except (OSError, AttributeError):
        return None


def claim_whole_file(f: h5py.File) -> bool:
    """Set the file's end-of-allocation to at least its size (``H5Fincrement_filesize(f, 0)``).

    Readers then reach objects written past a stale end-of-allocation, and a writer allocates only after the last
    byte on disk. Returns False when the HDF5 library cannot be reached.
    """
    lib = hdf5_library()
    return lib is not None and lib.H5Fincrement_filesize(f.id.id, 0) >= 0


# Metadata reads a SWMR reader retries when a checksum does not match (a writer may be mid-flush). HDF5's default,
# 100, backs off so far that a reader of a damaged file waits for minutes; 20 fail in well under a second.
SWMR_READ_ATTEMPTS = 20


def end_of_allocation(f: h5py.File) -> int | None:
    """The file's end of allocation (``H5Fget_eoa``): where HDF5 allocates next; None when unknown."""
    lib = hdf5_library()
    eoa = ctypes.c_uint64(0)
    if lib is None or lib.H5Fget_eoa(f.id.id, ctypes.byref(eoa)) < 0:
        return None
    return int(eoa.value)


def file_access(
    *, clear_flags: bool = False, locking: bool | None = None, read_attempts: int | None = None
) -> h5py.h5p.PropFAID:
    """A file-access property list for the 1.10 file format; ``clear_flags`` clears a dead writer's status flags
    (``h5clear``); ``locking=False`` turns HDF5's file locking off (None keeps the default); ``read_attempts``
    bounds a SWMR reader's retries of a metadata read."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_V110)
    if locking is False:
        fapl.set_file_locking(False, True)
    if read_attempts is not None:
        lib = hdf5_library()
        if lib is not None:
            lib.H5Pset_metadata_read_attempts(fapl.id, read_attempts)
    if clear_flags:
        lib = hdf5_library()
        if lib is None:
            raise OSError("the HDF5 library cannot be reached to clear the flags a writer that died left in the file")
        clear = ctypes.c_bool(True)
        if lib.H5Pset(fapl.id, b"clear_status_flags", ctypes.byref(clear)) < 0:
            raise OSError("cannot set HDF5's clear_status_flags property")
    return fapl


def is_flagged(exc: OSError) -> bool:
    """True when HDF5 refused a plain open because a writer has the file open (or died with it open)."""
    text = str(exc)
    return "already open for write" in text or "consistency flags" in text or "not already open for SWMR" in text


def is_lock_conflict(exc: OSError) -> bool:
    """True when HDF5 refused an open over its file lock, or over another handle's locking setting."""
    text = str(exc)
    return "unable to lock file" in text or "locking flag values don't match" in text
