"""Random access to the decompressed bytes of a compressed tar (``.tar.gz``, ``.tgz``; ``.tar.bz2``, ``.tar.xz``).

A compressed tar is one stream: a byte in its middle can only be reached by decompressing what comes before it.
An ingest wants the members in sorted-name order, but ``tar czf`` writes them in the order the folder listed them,
so reading members in archive order and holding the early ones would take memory without bound. Instead the one
pass that lists the members keeps **checkpoints** of the gzip decompressor (``zlib.decompressobj().copy()``: the
32 KiB window and the inflate state, 40 KB each by tracemalloc) every ``spacing`` bytes of output; any member is
then read by resuming from the checkpoint before it, so serving a member costs at most ``spacing`` bytes of
decompression besides its own, and memory is bounded by the number of checkpoints (at most ``MAX_CHECKPOINTS``:
the spacing doubles, dropping every other one, when an archive would need more). A reader that goes on where the
previous one stopped (members in archive order) just continues. A gzip file of several members (``pigz``,
``cat a.gz b.gz``) is followed across member boundaries. (The archive source also keeps, within a budget, the
members a pass decompresses on its way: :mod:`imgstore.sources.archive`.)

bzip2 and xz decompressors cannot be copied, so their only checkpoints are the start and the boundaries between
the streams of a file of several (``pbzip2`` writes one per 900 kB block): a read before the current position
decompresses again from the checkpoint before it. That is cheap for an archive made from a sorted list, slow for one
in readdir order (documented in the README: recompress such an archive as .tar.gz, or leave it uncompressed).
"""

from __future__ import annotations

import bisect
import bz2
import lzma
import os
import zlib
from typing import Any

CHUNK = 256 * 1024  # compressed bytes read from the file at a time
# Decompressed bytes between checkpoints, to start with: a member out of order costs half of it on average (about
# 1 ms at zlib's ~500 MB/s); 512 checkpoints of ~40 KB (measured with tracemalloc) hold about 20 MB at most.
SPACING = 1024 * 1024
MAX_CHECKPOINTS = 512

GZIP_MAGIC = b"\x1f\x8b"


class StreamError(Exception):
    """The compressed stream is damaged or ends early (the message says which)."""


def _fresh(kind: str) -> Any:
    """A new decompressor for one member of a ``kind`` (gz, bz2, xz) stream."""
    if kind == "gz":
        return zlib.decompressobj(wbits=31)
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    return lzma.LZMADecompressor()


class CompressedStream:
    """The decompressed bytes of the ``length`` compressed bytes at ``base`` in the file ``path`` (``length`` None:
    to the end), readable at any offset (:meth:`pread`) or in order (:meth:`read`, :meth:`seek`, :meth:`tell`, so
    :mod:`tarfile` can list it). ``kind`` is gz, bz2 or xz; ``spacing`` bytes of output between checkpoints
    (default ``SPACING``).

    Not thread-safe; not picklable (it holds an open file): sources keep one per process (see
    :mod:`imgstore.sources.archive`).
    """

    def __init__(self, path: str, base: int = 0, length: int | None = None, kind: str = "gz",
                 spacing: int | None = None) -> None:  # fmt: skip
        self.path, self.base, self.kind, self.spacing = path, base, kind, spacing or SPACING
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self.end = base + length if length is not None else os.fstat(self._fd).st_size
        self.copyable = kind == "gz"
        # (output offset, input offset, decompressor copy or None = a member starts there); sorted by output offset
        self.checkpoints: list[tuple[int, int, Any]] = [(0, base, None)]
        self.decompressed_bytes = 0  # how much output this stream has produced, skipped output included (a cost)
        self._restore(self.checkpoints[0])

    # -- the cursor ----------------------------------------------------------------------------------------------
    def _restore(self, point: tuple[int, int, Any]) -> None:
        out_pos, in_pos, dec = point
        self._out = out_pos
        self._in = in_pos  # file offset of the next compressed byte to read
        self._tail = b""  # compressed bytes read but not consumed yet (they start at _in - len(_tail))
        self._dec = dec.copy() if dec is not None else None
        self._started = dec is not None  # a member is under way (its end must come before the file's)

    def _checkpoint(self) -> None:
        """Remember the cursor if it is ``spacing`` past the last checkpoint (forward progress only)."""
        last = self.checkpoints[-1][0]
        if self._out < last + self.spacing or (self._dec is not None and not self.copyable):
            return  # (between two members a checkpoint needs no decompressor: pbzip2's many streams give some)
        dec = self._dec.copy() if self._dec is not None else None
        self.checkpoints.append((self._out, self._in - len(self._tail), dec))
        if len(self.checkpoints) > MAX_CHECKPOINTS:
            # Keep memory bounded on huge archives: twice the spacing, half the checkpoints.
            self.spacing *= 2
            self.checkpoints = [self.checkpoints[0], *self.checkpoints[2::2]]

    def _produce(self, limit: int) -> bytes:
        """Up to ``limit`` (> 0) bytes of output from the cursor; ``b""`` at the end of the stream."""
        limit = min(limit, max(4096, self.spacing // 4))  # small enough steps for checkpoints ``spacing`` apart
        while True:
            if self._dec is None:
                if not self._tail:
                    self._tail = self._read_in()
                if not self._tail or (self.kind == "gz" and not self._tail.startswith(GZIP_MAGIC[:len(self._tail)])):
                    return b""  # the end, or padding after the last gzip member (as gzip itself ignores it)
                self._dec = _fresh(self.kind)
                self._started = True
            if not self._tail and (self.kind == "gz" or self._dec.needs_input):
                self._tail = self._read_in()
                if not self._tail:
                    raise StreamError(f"the compressed data ends early (truncated at byte {self.end - self.base})")
            try:
                if self.kind == "gz":
                    out = self._dec.decompress(self._tail, limit)
                    self._tail = self._dec.unused_data if self._dec.eof else self._dec.unconsumed_tail
                else:
                    out = self._dec.decompress(self._tail, limit)
                    self._tail = self._dec.unused_data if self._dec.eof else b""
            except (zlib.error, OSError, EOFError, lzma.LZMAError) as exc:
                raise StreamError(f"the compressed data are damaged at byte {self._in - self.base}: {exc}") from None
            if self._dec.eof:
                self._dec = None  # the next bytes, if any, begin another member
            if out:
                self.decompressed_bytes += len(out)
                self._out += len(out)
                self._checkpoint()
                return out

    def _read_in(self) -> bytes:
        n = min(CHUNK, self.end - self._in)
        data = os.pread(self._fd, n, self._in) if n > 0 else b""
        self._in += len(data)
        return data

    def _nearest(self, offset: int) -> tuple[int, int, Any]:
        i = bisect.bisect_right(self.checkpoints, offset, key=lambda c: c[0]) - 1
        return self.checkpoints[i]

    def resume_point(self, offset: int) -> int:
        """The output offset decompression starts from to reach ``offset``: the cursor when it is before ``offset``
        and no checkpoint is nearer, else the nearest checkpoint before ``offset``."""
        point = self._nearest(offset)
        return self._out if point[0] <= self._out <= offset else point[0]

    def _seek_to(self, offset: int) -> None:
        """Put the cursor at output ``offset``, decompressing from :meth:`resume_point`."""
        point = self._nearest(offset)
        if not (point[0] <= self._out <= offset):
            self._restore(point)
        while self._out < offset:
            if not self._produce(min(CHUNK * 4, offset - self._out)):
                raise StreamError(f"the decompressed stream ends at byte {self._out}, before {offset}")

    # -- reading -------------------------------------------------------------------------------------------------
    def pread(self, size: int, offset: int) -> bytes:
        """``size`` bytes of output at ``offset`` (fewer only at the end of the stream)."""
        self._seek_to(offset)
        parts = []
        want = size
        while want > 0:
            block = self._produce(want)
            if not block:
                break
            parts.append(block)
            want -= len(block)
        return b"".join(parts)

    def read(self, size: int = -1) -> bytes:
        """The next ``size`` bytes in order (all the rest when negative)."""
        if size is None or size < 0:
            parts = []
            while block := self._produce(CHUNK * 4):
                parts.append(block)
            return b"".join(parts)
        return self.pread(size, self._out)

    def tell(self) -> int:
        return self._out

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 1:
            offset += self._out
        elif whence != 0:
            raise OSError("a compressed stream can only seek from its start or its current position")
        self._seek_to(offset)
        return self._out

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        """Close the file. Safe to call twice."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        try:
            self.close()
        except (OSError, AttributeError):
            pass



def sniff(head: bytes) -> str | None:
    """The compression of a file starting with ``head``: gz, bz2, xz, or None (not one of those)."""
    if head.startswith(GZIP_MAGIC):
        return "gz"
    if head.startswith(b"BZh"):
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    return None
