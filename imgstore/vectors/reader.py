"""Read vector files of any registered format: shape, chunks, or the whole array.

For the library's own use (``convert``, tests of round trips); the test suite checks the writers with its own
reader, written from the layouts in :mod:`imgstore.vectors.formats`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from imgstore.errors import SourceError
from imgstore.vectors.formats import VectorFormat, format_for_path


def vector_file_shape(path: str | os.PathLike[str], fmt: str | VectorFormat | None = None) -> tuple[int, int]:
    """``(n, d)`` of a vector file, from its header and size; a size that does not match is a FormatError.

    An empty ``.Xvecs`` file has no record to tell ``d`` and gives ``(0, 0)``.
    """
    p = Path(path)
    vf = format_for_path(p, fmt)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(max(8, vf.header_size))
    except OSError as exc:
        raise SourceError(f"cannot read {str(p)!r}: {exc.strerror or exc}") from None
    return vf.parse_header(head, size, repr(str(p)))


def _records(path: Path, vf: VectorFormat) -> tuple[np.ndarray, int, int]:
    """A read-only memmap of the file's ``n`` records (see :meth:`VectorFormat.record_dtype`)."""
    n, d = vector_file_shape(path, vf)
    if n == 0:
        return np.empty(0, vf.record_dtype(max(d, 1))), n, d
    return np.memmap(path, vf.record_dtype(d), "r", offset=vf.header_size, shape=(n,)), n, d


def iter_vectors(
    path: str | os.PathLike[str],
    fmt: str | VectorFormat | None = None,
    *,
    chunk_rows: int | None = None,
) -> Iterator[np.ndarray]:
    """Yield the vectors of ``path`` as ``(rows, d)`` arrays (copies in the format's dtype), ``chunk_rows`` at a time.

    ``chunk_rows`` defaults to about 16 MiB worth. Every record is checked against the layout (an ``.Xvecs``
    record's dimension, for one).
    """
    p = Path(path)
    vf = format_for_path(p, fmt)
    records, n, d = _records(p, vf)
    step = chunk_rows or max(1, 16 * 2**20 // max(1, vf.record_bytes(max(d, 1))))
    for start in range(0, n, step):
        chunk = records[start : start + step]
        vf.check_records(chunk, d, start, repr(str(p)))
        yield np.array(vf.values(chunk))


def read_vectors(path: str | os.PathLike[str], fmt: str | VectorFormat | None = None) -> np.ndarray:
    """Read a whole vector file into an ``(n, d)`` array of the format's dtype (checks every record)."""
    p = Path(path)
    vf = format_for_path(p, fmt)
    n, d = vector_file_shape(p, vf)
    out = np.empty((n, d), vf.dtype)
    row = 0
    for chunk in iter_vectors(p, vf):
        out[row : row + len(chunk)] = chunk
        row += len(chunk)
    return out
