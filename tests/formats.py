"""Independent readers of the vector file formats, written from their definitions (not the exporter's code).

TEXMEX ``.fvecs``/``.ivecs``/``.bvecs``: per record a little-endian int32 dimension d, then d values.
big-ann-benchmarks ``.fbin``/``.ibin``/``.u8bin``: uint32 n, uint32 d, then n*d values, row-major.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def read_xvecs(path: Path, value: str) -> np.ndarray:
    """TEXMEX: per record an int32 d then d values of ``value`` (a little-endian dtype string)."""
    data = path.read_bytes()
    if not data:
        return np.empty((0, 0), value)
    d = struct.unpack_from("<i", data)[0]
    rec = np.dtype([("d", "<i4"), ("v", value, (d,))])
    assert len(data) % rec.itemsize == 0
    r = np.frombuffer(data, rec)
    assert (r["d"] == d).all()
    return r["v"]


def read_xbin(path: Path, value: str) -> np.ndarray:
    """big-ann-benchmarks: uint32 n, uint32 d, then n*d values."""
    data = path.read_bytes()
    n, d = struct.unpack_from("<II", data)
    assert len(data) == 8 + n * d * np.dtype(value).itemsize
    return np.frombuffer(data, value, offset=8).reshape(n, d)
