"""Archives as sources: the photos inside a ``.tar``, ``.tar.gz``/``.tgz`` (also ``.tar.bz2``, ``.tar.xz``) or
``.zip``, read without extracting anything to disk, and (``--archives``) the archives inside a folder or an archive.

**Names.** A member is stored under the name the folder walk would give the file if the archive were extracted:
its path, ``/``-separated, without a leading ``./``, escaped by :func:`~imgstore.store.escape_name`; sorted the
same way. So an archive and its extracted folder make the same store (names, order, pixels, skipped list, labels).
Like the folder walk, members with a hidden component (``.git/x.jpg``, ``._x.jpg``) are passed over and
directories are not counted; a later member of the same name replaces an earlier one (tar's rule on extraction); a
hard link reads its target's data as it was where the link comes, a symbolic link the member it points at
(dangling: skipped, ``broken symlink``); FIFOs and devices are skipped as ``not a regular file``. A member whose
path is absolute or leaves the archive with ``..`` (a "zip slip") is skipped as ``unsafe path``. Zip names are
those unzip writes (:func:`zip_name`).

**Expanded archives** (``--archives``): an archive found in a folder (or, one level and more, inside an archive)
stands for the folder it extracts to, named as the archive without its extension:
``train/n01440764.tar`` holding ``n01440764_10026.JPEG`` gives ``train/n01440764/n01440764_10026.JPEG``. That is
the layout ImageNet's preparation scripts make (each class tar extracted into a folder of its name), so
``--labels folder`` on ``ILSVRC2012_img_train.tar --archives`` gives the 1,000 synsets as classes. Should a name
come twice (a folder ``a/`` beside ``a.tar``), the plain file wins and the member is skipped with a reason.

**Reading.** A key (:class:`~imgstore.sources.Candidate`) says where the member's bytes are: the kind of archive,
its file, the window of the file it occupies (an archive inside an uncompressed tar is just a range of the outer
file), and the member's place. Members of an uncompressed tar are read with one ``pread`` and those of a zip with
:mod:`zipfile`, in the decoder workers, each process opening each archive once (:func:`_opened`). The members of a
compressed tar are read in the parent, which alone holds the decompressor checkpoints
(:mod:`imgstore.sources.stream`) and the members its scan, and later reads, decompressed on their way and will
be asked for (``PASSED_OVER_BYTES`` at most): an archive that fits is decompressed once in all, a larger one
about twice; :meth:`ArchiveSource.parent_reads` tells the pool so.
"""

from __future__ import annotations

import bisect
import collections
import io
import lzma
import os
import posixpath
import stat
import struct
import tarfile
import threading
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any

from imgstore.errors import BadImageError, SourceError
from imgstore.sources import Candidate, Discovery, Source, count_ignored, register_source
from imgstore.sources.folder import FolderSource, discover, source_label
from imgstore.sources.stream import CompressedStream, StreamError, sniff
from imgstore.store.format import escape_name

# What an archive's name ends with (lower-case), longest first so .tar.gz is not taken for .gz.
ARCHIVE_SUFFIXES = (".tar.bz2", ".tar.gz", ".tar.xz", ".tbz2", ".tgz", ".txz", ".tar", ".zip")
STREAM_KINDS = ("gz", "bz2", "xz")  # compressed tars: read in the parent
OPEN_PER_PROCESS = 32  # archives each process keeps open at once (a folder of 1,000 class tars needs no more)
# Members of a compressed tar passed over on the way to another are kept for later, up to this many bytes in all:
# ``tar czf`` packs a folder in readdir order, an ingest reads it sorted, so most of a folder's members are passed
# over before they are read. Measured (2,000 JPEGs, 76 MB, readdir order): 8 ms per member without it, about a
# decompression pass in all with it.
PASSED_OVER_BYTES = 128 * 1024 * 1024
SEP = "\0"  # separates the fields of a key: no path holds it


def archive_suffix(name: str) -> str | None:
    """The archive extension ``name`` ends with (lower-case), or None when it is not an archive's name."""
    lower = name.lower()
    return next((s for s in ARCHIVE_SUFFIXES if lower.endswith(s) and len(lower) > len(s)), None)


def member_path(raw: str) -> str | None:
    """A member's path as the folder walk would name the extracted file (``./a//b.jpg`` -> ``a/b.jpg``), or None
    when extracting it would write outside the folder (absolute, or ``..``)."""
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":" and raw[0].isalpha()):
        return None
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None
    return "/".join(parts)


# -- where a member's bytes are ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """An archive: ``kind`` (tar, zip, or gz/bz2/xz for a compressed tar) held by the ``length`` bytes at ``base``
    of the file ``path`` (the whole file, or a member of an uncompressed outer archive)."""

    kind: str
    path: str
    base: int = 0
    length: int = -1  # -1: to the end of the file

    def key(self, ref: str) -> str:
        """The key of the member ``ref`` (tar: ``offset:size`` in the uncompressed tar; zip: its index)."""
        return SEP.join((self.kind, str(self.base), str(self.length), ref, self.path))

    @staticmethod
    def of_key(key: str) -> tuple[Location, str]:
        kind, base, length, ref, path = key.split(SEP, 4)
        return Location(kind, path, int(base), int(length)), ref


def locate(path: str, base: int = 0, length: int = -1, name: str = "") -> Location:
    """The :class:`Location` of the archive in ``path`` (at ``base``), its kind read from its first bytes (a
    ``.tar`` that is really gzip is read as gzip); a zip by its name when the bytes do not say."""
    with open(path, "rb") as f:
        f.seek(base)
        head = f.read(6)
    kind = sniff(head)
    if kind is None:
        kind = "zip" if head.startswith(b"PK") or (name or path).lower().endswith(".zip") else "tar"
    return Location(kind, path, base, length)


class _Window(io.RawIOBase):
    """The ``length`` bytes at ``base`` of the open file ``fd`` as a seekable file (not owning ``fd``)."""

    def __init__(self, fd: int, base: int, length: int) -> None:
        super().__init__()
        self.fd, self.base, self.pos = fd, base, 0
        self.length = length if length >= 0 else os.fstat(fd).st_size - base

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset if whence == 1 else self.length + offset
        return self.pos

    def readinto(self, b: Any) -> int:
        n = max(0, min(len(b), self.length - self.pos))
        data = os.pread(self.fd, n, self.base + self.pos) if n else b""
        b[: len(data)] = data
        self.pos += len(data)
        return len(data)


class _Opened:
    """One archive opened in this process: its file descriptor and, by kind, a zip reader or a decompressor."""

    def __init__(self, loc: Location) -> None:
        self.loc = loc
        self.fd = os.open(loc.path, os.O_RDONLY)
        self.zip: zipfile.ZipFile | None = None
        self.stream: CompressedStream | None = None
        # A compressed tar's candidates by offset (offset, size, key, rank in read order), from the scan: which
        # members a read passes over, and whether one is read later than the member being read.
        self.plan: list[tuple[int, int, str, int]] = []
        self.rank: dict[str, int] = {}
        self.kept: dict[str, bytes] = {}  # members passed over, kept for their read
        try:
            if loc.kind in STREAM_KINDS:
                length = None if loc.length < 0 else loc.length
                self.stream = CompressedStream(loc.path, loc.base, length, loc.kind)
        except BaseException:
            self.close()
            raise

    def window(self) -> _Window:
        return _Window(self.fd, self.loc.base, self.loc.length)

    def zipped(self) -> zipfile.ZipFile:
        """The zip's reader, its central directory parsed on first use: by the scan, and by reads of what
        :func:`_read_zip_member` does not read itself. (Workers never need it otherwise: parsing costs 560 bytes
        and 5 µs a member, in every process.)"""
        if self.zip is None:
            self.zip = zipfile.ZipFile(io.BufferedReader(self.window()))
        return self.zip

    def read_stream(self, offset: int, size: int, key: str) -> bytes:
        """The compressed tar's member ``key`` (``size`` bytes at ``offset``): kept from an earlier pass, or
        decompressed, keeping the planned members it passes over that are read later (within
        ``PASSED_OVER_BYTES``; the farthest in read order give way first)."""
        assert self.stream is not None
        data = self.kept.pop(key, None)
        if data is not None:
            _KEPT[0] -= len(data)
            return data
        self.keep_here()
        rank = self.rank.get(key)
        if rank is not None:
            # Go on from where the last read stopped when what lies between can be kept (what a jump to a nearer
            # checkpoint skips would cost a decompression of its own when read); else from the nearest checkpoint.
            cursor = self.stream.tell()
            if cursor <= offset and offset - cursor <= PASSED_OVER_BYTES - _KEPT[0]:
                start = cursor
            else:
                start = self.stream.resume_point(offset)
            i = bisect.bisect_left(self.plan, (start, -1, "", -1))
            while i < len(self.plan) and self.plan[i][0] + self.plan[i][1] <= offset:
                m_offset, m_size, m_key, m_rank = self.plan[i]
                i += 1
                if m_rank > rank and m_key not in self.kept and self._room(m_size, m_rank, rank):
                    self.kept[m_key] = self.stream.pread(m_size, m_offset)
                    _KEPT[0] += m_size
        return self.stream.pread(size, offset)

    def _room(self, size: int, rank: int, now: int) -> bool:
        """Make room for ``size`` bytes of the member read ``rank``-th, giving away those read before ``now`` (never
        to be read: a shard, a resume) and then those read after ``rank``; False when there is none."""
        if _KEPT[0] + size <= PASSED_OVER_BYTES:
            return True
        for key in sorted(self.kept, key=lambda k: -1 if self.rank[k] < now else -self.rank[k]):
            if self.rank[key] >= now and self.rank[key] < rank:
                break
            _KEPT[0] -= len(self.kept.pop(key))
            if _KEPT[0] + size <= PASSED_OVER_BYTES:
                return True
        return False

    def keep_here(self) -> None:
        """Keep passed-over members of this archive only: members are read archive by archive (sorted names), so
        what another archive kept will not be read soon."""
        if _KEEPER[0] is not self:
            if _KEEPER[0] is not None:
                _KEEPER[0].drop_kept()
            _KEEPER[0] = self

    def drop_zip(self) -> None:
        """Let go of the zip's reader (its parsed central directory)."""
        if self.zip is not None:
            self.zip.close()
            self.zip = None

    def drop_kept(self) -> None:
        _KEPT[0] -= sum(len(v) for v in self.kept.values())
        self.kept.clear()

    def close(self) -> None:
        self.drop_kept()
        if self.stream is not None:
            self.stream.close()
        self.drop_zip()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# The archives this process has open. Keyed by pid: a forked worker starts with its own (the parent's descriptors
# share a file offset, and the parent's decompressor is of no use there), and nothing open travels in a pickle.
_OPEN: collections.OrderedDict[Location, _Opened] = collections.OrderedDict()
_OPEN_PID = [os.getpid()]
# One thread at a time uses them: Dask runs several shard tasks in the threads of one worker process, and a
# decompressor, a zip's file position and the kept members are not safe to share.
_LOCK = threading.RLock()
_KEPT = [0]  # bytes of passed-over members kept, in all archives
_KEEPER: list[_Opened | None] = [None]  # the archive whose passed-over members are kept


def _opened(loc: Location) -> _Opened:
    """``loc`` opened in this process, the least recently used one closed beyond ``OPEN_PER_PROCESS``."""
    if _OPEN_PID[0] != os.getpid():
        _OPEN.clear()  # the parent's: not closed here (closing a zip would seek the parent's shared offset)
        _OPEN_PID[0] = os.getpid()
        _KEPT[0], _KEEPER[0] = 0, None
    found = _OPEN.get(loc)
    if found is not None:
        _OPEN.move_to_end(loc)
        return found
    opened = _OPEN[loc] = _Opened(loc)
    while len(_OPEN) > OPEN_PER_PROCESS:
        _OPEN.popitem(last=False)[1].close()
    return opened


def forget(path: str) -> None:
    """Close what this process holds open of the archive file ``path`` (its checkpoints included)."""
    for loc in [loc for loc in _OPEN if loc.path == path]:
        _OPEN.pop(loc).close()


def read_member(key: str) -> bytes:
    """The bytes of the archive member ``key``; a one-line :class:`BadImageError` when they cannot be read."""
    with _LOCK:
        return _read_member(key)


def _read_member(key: str) -> bytes:
    loc, ref = Location.of_key(key)
    try:
        arc = _opened(loc)
        if loc.kind == "zip":
            index, *fields = _zip_fields(ref)
            if fields[4] & 0x1:  # zipfile's own message holds the member's whole repr
                raise BadImageError("unreadable: encrypted zip member (a password is needed)")
            if fields[3] in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                return _read_zip_member(arc, *fields)
            zipped = arc.zipped()  # bzip2, lzma, ...: zipfile's readers
            with zipped.open(zipped.infolist()[index]) as member:
                return member.read()
        offset, size = (int(v) for v in ref.split(":"))
        if arc.stream is not None:
            data = arc.read_stream(offset, size, key)
        else:
            data = os.pread(arc.fd, size, loc.base + offset)
        if len(data) < size:
            raise BadImageError(f"unreadable: the archive ends inside this member ({len(data)} of {size} bytes)")
        return data
    except BadImageError:
        raise
    except StreamError as exc:
        raise BadImageError(f"unreadable: {exc}") from None
    except zipfile.BadZipFile as exc:  # a bad CRC-32, a damaged header
        raise BadImageError(f"unreadable: {exc}") from None
    except (zlib.error, lzma.LZMAError) as exc:  # damaged deflate or lzma data in a zip (bzip2's is an OSError)
        raise BadImageError(f"unreadable: damaged compressed data ({exc})") from None
    except NotImplementedError as exc:  # a compression zipfile does not know
        raise BadImageError(f"unreadable: {exc}") from None
    except RuntimeError as exc:
        raise BadImageError(f"unreadable: {exc}") from None
    except (OSError, EOFError, ValueError) as exc:
        raise BadImageError(f"unreadable: {getattr(exc, 'strerror', None) or exc}") from None


# -- listing ------------------------------------------------------------------------------------------------------


@dataclass
class _Member:
    """One entry of an archive, by kind: file (``ref`` locates its bytes), dir, link (symbolic, to ``target``),
    hard (a hard link to ``target``), other (FIFO, device), sparse."""

    kind: str
    ref: str = ""
    size: int = 0
    target: str = ""


def _tar_members(loc: Location, arc: _Opened, damage: list[str], extensions: tuple[str, ...]) -> dict[str, _Member]:
    """The entries of the tar at ``loc`` by raw name, the last of a name winning; what stopped the listing early
    goes to ``damage``. A compressed tar's members named with one of ``extensions`` are kept on the way (they are
    decompressed anyway), unless they come to more than ``PASSED_OVER_BYTES``: then reads decompress them again."""
    fileobj: Any = arc.stream if arc.stream is not None else arc.window()
    keeping = arc.stream is not None
    if arc.stream is not None:
        arc.stream.seek(0)
        arc.keep_here()
    entries: dict[str, _Member] = {}
    by_path: dict[str, _Member] = {}  # what extraction has made of each path so far: what a hard link links to
    try:
        tar = tarfile.open(fileobj=fileobj, mode="r:")  # noqa: SIM115 (closed by the with below)
    except (tarfile.TarError, StreamError, EOFError, OSError) as exc:
        whole = loc.base == 0 and loc.length < 0  # an archive inside another is named by the skip, not by the file
        raise SourceError(f"{loc.path + ' is ' if whole else ''}not a readable tar archive ({exc})") from None
    with tar:
        while True:
            try:
                info = tar.next()
            except (tarfile.TarError, StreamError, EOFError, OSError) as exc:
                damage.append(f"damaged archive after {len(entries)} entries ({exc}): the entries before were read")
                break
            if info is None:
                break
            tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every header; we keep our own, smaller record
            entries.pop(info.name, None)  # a later member of the name replaces it, and comes later in order
            if info.isdir():
                entries[info.name] = _Member("dir")
            elif info.issym():
                entries[info.name] = _Member("link", target=info.linkname)
            elif info.islnk():
                # A hard link is the file its target is now: a later member of the target's name replaces the
                # name, not the link; a target that comes only later is missing (extraction fails to link it).
                target = member_path(info.linkname)
                entries[info.name] = by_path.get(target or "") or _Member("hard", target=info.linkname)
            elif info.issparse():
                entries[info.name] = _Member("sparse")
            elif info.isreg():
                ref = f"{info.offset_data}:{info.size}"
                entries[info.name] = _Member("file", ref, info.size)
                if keeping and arc.stream is not None and info.name.lower().endswith(extensions):
                    if _KEPT[0] + info.size > PASSED_OVER_BYTES:
                        keeping = False
                        arc.drop_kept()
                    else:
                        key = loc.key(ref)
                        try:
                            data = arc.stream.pread(info.size, info.offset_data)
                        except StreamError:
                            continue  # cut short: the next header says so, and its read gives the reason
                        _KEPT[0] += len(data) - len(arc.kept.get(key, b""))
                        arc.kept[key] = data
            else:
                entries[info.name] = _Member("other")
            path = member_path(info.name)
            if path is not None:
                by_path[path] = entries[info.name]
    return entries


def _zip_members(loc: Location, arc: _Opened) -> dict[str, _Member]:
    """The entries of the zip at ``loc`` by raw name, the last of a name winning (as extraction leaves it)."""
    zipped = arc.zipped()
    entries: dict[str, _Member] = {}
    for i, info in enumerate(zipped.infolist()):
        mode = info.external_attr >> 16
        name = zip_name(info)
        entries.pop(name, None)
        if info.is_dir():
            entries[name] = _Member("dir")
        elif stat.S_ISLNK(mode):  # unzip makes a symbolic link of it; its data are the target
            try:
                target = zipped.read(info).decode("utf-8", "surrogateescape")
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError, zlib.error,
                    lzma.LZMAError):
                target = ""
            entries[name] = _Member("link", target=target)
        elif mode and not stat.S_ISREG(mode) and stat.S_IFMT(mode):
            entries[name] = _Member("other")
        else:
            fields = (i, info.header_offset, info.compress_size, info.file_size, info.compress_type, info.flag_bits,
                      info.CRC)
            entries[name] = _Member("file", ":".join(map(str, fields)), info.file_size)
    return entries


def _zip_fields(ref: str) -> list[int]:
    """A zip member's ref: its index in the central directory, then where its local header is, its compressed
    and uncompressed sizes, compression method, flags and CRC-32 (all from the central directory)."""
    return [int(v) for v in ref.split(":")]


def _read_zip_member(arc: _Opened, offset: int, csize: int, size: int, method: int, flags: int, crc: int) -> bytes:
    """A stored or deflated zip member's bytes, read from where its local header is, CRC-checked as zipfile does."""
    at = arc.loc.base + offset
    header = os.pread(arc.fd, 30, at)
    if len(header) < 30 or not header.startswith(b"PK\x03\x04"):
        raise BadImageError("unreadable: Bad magic number for file header")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    raw = os.pread(arc.fd, csize, at + 30 + name_len + extra_len)
    if len(raw) < csize:
        raise BadImageError(f"unreadable: the archive ends inside this member ({len(raw)} of {csize} bytes)")
    data = zlib.decompressobj(-15).decompress(raw, size) if method == zipfile.ZIP_DEFLATED else raw
    if len(data) != size or zlib.crc32(data) != crc:
        name = os.pread(arc.fd, name_len, at + 30).decode("utf-8" if flags & 0x800 else "cp437", "replace")
        raise BadImageError(f"unreadable: Bad CRC-32 for file {name!r}")
    return data


def zip_name(info: zipfile.ZipInfo) -> str:
    """A zip member's path as unzip extracts it on Linux. A name without the UTF-8 flag is bytes in whatever
    encoding the zipping machine used, which :mod:`zipfile` decodes as cp437: Info-ZIP on Linux and macOS's Archive
    Utility write UTF-8 bytes without the flag, and unzip writes those bytes as the file name. So: the name in an
    Info-ZIP Unicode Path field, else the bytes when they are UTF-8 or the zip was made on Unix (other bytes then as
    ``os`` gives undecodable ones, surrogate escapes), else cp437 (a zip made on DOS or Windows: their OEM code
    page). A zip made on DOS/Windows may separate folders with backslashes (PowerShell 5): they are folders."""
    name = _zip_text_name(info)
    if info.create_system == 0 and "/" not in name:  # unzip's rule: made on MS-DOS/FAT (Windows tools say so)
        return name.replace("\\", "/")
    return name


def _zip_text_name(info: zipfile.ZipInfo) -> str:
    if info.flag_bits & 0x800:
        return info.filename
    try:
        raw = info.orig_filename.encode("cp437")
    except UnicodeEncodeError:  # a zipfile that decoded the name otherwise (an Info-ZIP Unicode Path field)
        return info.filename
    unicode_path = _unicode_path(info.extra, raw)
    if unicode_path is not None:
        return unicode_path
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "surrogateescape") if info.create_system == 3 else info.filename


def _unicode_path(extra: bytes, raw: bytes) -> str | None:
    """The UTF-8 name in Info-ZIP's Unicode Path extra field (0x7075; unzip uses it), when it is there and was
    written for the name ``raw`` (its CRC-32 says so)."""
    at = 0
    while at + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, at)
        body = extra[at + 4 : at + 4 + size]
        for_raw = len(body) >= 5 and struct.unpack_from("<I", body, 1)[0] == zlib.crc32(raw)
        if tag == 0x7075 and for_raw and body[0] == 1:
            try:
                return body[5:].decode("utf-8")
            except UnicodeDecodeError:
                return None
        at += 4 + size
    return None


def _nested_location(loc: Location, arc: _Opened, member: _Member, name: str) -> Location | str:
    """Where the archive member ``member`` (named ``name``) of ``loc`` can be read as an archive of its own, or why
    it cannot: only a range of an uncompressed file can be opened in place."""
    if loc.kind == "tar":
        offset, size = (int(v) for v in member.ref.split(":"))
        return locate(loc.path, loc.base + offset, size, name)
    if loc.kind == "zip":
        _, offset, _, size, method, flags, _ = _zip_fields(member.ref)
        if method != zipfile.ZIP_STORED or flags & 0x1:
            return "an archive compressed inside a zip: not expanded (store it uncompressed, zip -0)"
        header = os.pread(arc.fd, 30, loc.base + offset)
        if len(header) < 30 or not header.startswith(b"PK\x03\x04"):
            return "unreadable: damaged zip header"
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        start = loc.base + offset + 30 + name_len + extra_len
        return locate(loc.path, start, size, name)
    return "an archive inside a compressed archive: not expanded (decompress the outer one to a .tar)"


@dataclass
class _Listing:
    """What a scan found so far: raw name -> key, and what was skipped or ignored."""

    extensions: tuple[str, ...]
    expand: bool
    files: dict[str, str] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, key: str, where: str) -> None:
        """Take ``name``; a name already taken (a plain file, or an archive listed earlier) keeps its file."""
        if name in self.files:
            self.skipped.append((escape_name(name), f"another file has the same name: not taken from {where}"))
        else:
            self.files[name] = key

    def discovery(self) -> Discovery:
        names = sorted(self.files)
        files = [Candidate(self.files[n], escape_name(n)) for n in names]
        _plan_streams(files)
        return Discovery(files, sorted(self.skipped), self.ignored)


def _plan_streams(files: list[Candidate]) -> None:
    """Tell each compressed tar among ``files`` (in read order) which of its members are read, where and when."""
    plans: dict[Location, list[tuple[int, int, str, int]]] = {}
    for rank, cand in enumerate(files):
        if SEP in cand.key and cand.key.split(SEP, 1)[0] in STREAM_KINDS:
            loc, ref = Location.of_key(cand.key)
            offset, size = (int(v) for v in ref.split(":"))
            plans.setdefault(loc, []).append((offset, size, cand.key, rank))
    for loc, plan in plans.items():
        arc = _opened(loc)
        arc.plan = sorted(plan)
        arc.rank = {key: rank for _, _, key, rank in plan}
    keeper = _KEEPER[0]
    if keeper is not None:  # what the scan kept and no candidate reads (hidden, replaced by a later member, ...)
        for key in [key for key in keeper.kept if key not in keeper.rank]:
            _KEPT[0] -= len(keeper.kept.pop(key))


def _resolve(by_path: dict[str, _Member], path: str, member: _Member, folders: set[str]) -> _Member | str:
    """The regular file a symbolic link ``member`` at ``path`` stands for (a hard link was resolved when it came:
    :func:`_tar_members`), ``"dir"`` for a folder (``folders``: those member paths imply), or why there is none."""
    seen = 0
    while member.kind == "link" and seen < 40:
        seen += 1
        if member.target.startswith("/"):  # outside the archive: nothing it holds
            target = None
        else:  # relative to the link's folder
            target = member_path(posixpath.normpath(posixpath.join(posixpath.dirname(path), member.target)))
        if target in folders:
            return "dir"
        found = by_path.get(target) if target is not None else None
        if target is None or found is None:
            return "broken symlink"
        path, member = target, found
    if member.kind == "dir":
        return "dir"
    if member.kind == "file":
        return member
    if member.kind == "hard":  # its target was not there when it came
        return "hard link to a missing member"
    if member.kind == "sparse":
        return "sparse member: not supported (repack the archive without --sparse)"
    return "not a regular file" if seen < 40 else "symlink loop"


def _walk(loc: Location, prefix: str, where: str, listing: _Listing, top: bool) -> None:
    """Add the members of the archive at ``loc`` to ``listing``, named ``prefix`` + their path; ``where`` names the
    archive in skip reasons. With ``listing.expand``, the archives among its members are walked too, after it."""
    arc = _opened(loc)
    damage: list[str] = []
    if loc.kind == "zip":
        entries = _zip_members(loc, arc)
        arc.drop_zip()  # reads need only the offsets the keys hold; decoder workers fork from this process
    else:
        entries = _tar_members(loc, arc, damage, listing.extensions)
    if top and damage and not entries:
        raise SourceError(f"{loc.path} is not a readable archive: {damage[0]}")
    for problem in damage:
        listing.skipped.append((escape_name(where), problem))
    by_path: dict[str, _Member] = {}  # by the path extraction writes: "./a.png" and "a.png" are one file
    for raw, member in entries.items():  # in archive order: the last of a path wins, as extraction leaves it
        path = member_path(raw)
        if path is None:
            base = raw.rstrip("/").rsplit("/", 1)[-1]
            if member.kind != "dir":
                if base.lower().endswith(listing.extensions):
                    listing.skipped.append((escape_name(raw), "unsafe path: it would be extracted outside the folder"))
                else:
                    count_ignored(listing.ignored, base)
            continue
        by_path.pop(path, None)
        by_path[path] = member
    folders = {path[:i] for path in by_path for i, c in enumerate(path) if c == "/"}  # with entries or implied
    nested: list[tuple[str, _Member]] = []
    for path, member in by_path.items():
        if not path or any(part.startswith(".") for part in path.split("/")):
            continue  # hidden, as the folder walk passes them over (or the archive's own "./")
        base = path.rsplit("/", 1)[-1]
        name = prefix + path
        if path in folders and member.kind != "dir":  # GNU tar: "Cannot open: File exists"; the folder stays
            if base.lower().endswith(listing.extensions):
                reason = "a folder of the same name holds other members: extraction cannot write this file"
                listing.skipped.append((escape_name(name), reason))
            continue
        resolved = _resolve(by_path, path, member, folders)
        if resolved == "dir":
            continue  # a folder (or a link to one: the folder walk takes each folder once)
        if not base.lower().endswith(listing.extensions):
            if listing.expand and archive_suffix(base) and isinstance(resolved, _Member):
                nested.append((path, resolved))
            else:
                count_ignored(listing.ignored, base)
            continue
        if isinstance(resolved, str):
            listing.skipped.append((escape_name(name), resolved))
        else:
            listing.add(name, loc.key(resolved.ref), where)
    for path, member in sorted(nested, key=lambda item: item[0]):
        inner = prefix + path
        stem = inner[: len(inner) - len(archive_suffix(inner) or "")]
        try:
            sub = _nested_location(loc, arc, member, path)
            if isinstance(sub, str):
                listing.skipped.append((escape_name(inner), sub))
                continue
            _walk(sub, stem + "/", inner, listing, top=False)
        except (SourceError, OSError, zipfile.BadZipFile) as exc:  # this archive's problem, not the outer one's
            listing.skipped.append((escape_name(inner), f"unreadable archive: {exc}"))


# -- the sources ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveSource:
    """The photos inside the archive file ``path`` (tar, compressed tar or zip), named by member path; with
    ``expand``, the members of the archives inside it too (see the module docstring)."""

    path: str
    expand: bool = False

    @property
    def label(self) -> str:
        """The archive as given, escaped, for the store's ``source`` attribute."""
        return source_label(self.path)

    def scan(self, extensions: tuple[str, ...]) -> Discovery:
        """List the members (see the module docstring); :class:`SourceError` when the archive is missing or is not
        an archive at all."""
        if not os.path.exists(self.path):
            raise SourceError(f"archive {self.path} does not exist: give the archive (or folder) that holds the photos")
        if not os.path.isfile(self.path):
            raise SourceError(f"source {self.path} is not a file: give an archive (.tar, .tar.gz, .tgz, .zip) or a folder")
        exts = tuple(e.lower() for e in extensions)
        listing = _Listing(exts, self.expand)
        with _LOCK:
            forget(self.path)  # the archive may have changed since this process last opened it
            try:
                loc = locate(self.path)
                _walk(loc, "", os.path.basename(self.path), listing, top=True)
            except zipfile.BadZipFile as exc:
                raise SourceError(f"{self.path} is not a readable zip archive ({exc})") from None
            except OSError as exc:
                raise SourceError(f"cannot read the archive {self.path}: {exc.strerror or exc}") from None
            return listing.discovery()

    def read(self, key: str) -> bytes:
        """The bytes of the member ``key`` (:func:`read_member`)."""
        return read_member(key)

    def parent_reads(self, key: str) -> bool:
        """True for the members of compressed tars: only the parent holds their decompressor checkpoints."""
        return key.split(SEP, 1)[0] in STREAM_KINDS

    def release(self) -> None:
        """Close what this process holds open of the archive (and of the archives inside it)."""
        with _LOCK:
            forget(self.path)


@dataclass(frozen=True)
class ExpandedFolderSource:
    """The folder ``root`` as :class:`~imgstore.sources.folder.FolderSource` walks it, with every archive in it
    standing for the folder it extracts to (``--archives``; names: see the module docstring)."""

    root: str

    @property
    def label(self) -> str:
        return source_label(self.root)

    def scan(self, extensions: tuple[str, ...]) -> Discovery:
        exts = tuple(e.lower() for e in extensions)
        walked = discover(self.root, exts + ARCHIVE_SUFFIXES)
        listing = _Listing(exts, expand=True, skipped=list(walked.skipped), ignored=dict(walked.ignored))
        archives = []
        for cand in walked.files:  # escaped names; the raw relative path is the key's tail under root
            rel = os.path.relpath(cand.key, self.root).replace(os.sep, "/")
            if rel.lower().endswith(exts) or not archive_suffix(rel):
                listing.files[rel] = cand.key
            else:
                archives.append((rel, cand.key))
        with _LOCK:
            for rel, path in archives:  # discover sorted them
                stem = rel[: len(rel) - len(archive_suffix(rel) or "")]
                forget(path)
                try:
                    _walk(locate(path), stem + "/", rel, listing, top=True)
                except (SourceError, zipfile.BadZipFile, OSError) as exc:
                    reason = f"unreadable archive: {getattr(exc, 'strerror', None) or exc}"
                    listing.skipped.append((escape_name(rel), reason))
            return listing.discovery()

    def read(self, key: str) -> bytes:
        """An archive member's bytes, or a plain file's (its key is its path)."""
        return read_member(key) if SEP in key else FolderSource(self.root).read(key)

    def parent_reads(self, key: str) -> bool:
        return SEP in key and key.split(SEP, 1)[0] in STREAM_KINDS

    def release(self) -> None:
        """Close what this process holds open of the archives under the folder."""
        top = os.path.join(self.root, "")
        with _LOCK:
            for path in {loc.path for loc in _OPEN if loc.path.startswith(top)}:
                forget(path)


def with_archives(source: Source) -> Source:
    """``source`` with the archives inside it expanded (``--archives``): a folder's or an archive's."""
    if isinstance(source, FolderSource):
        return ExpandedFolderSource(source.root)
    if isinstance(source, ArchiveSource):
        return ArchiveSource(source.path, expand=True)
    if isinstance(source, ExpandedFolderSource):
        return source
    raise SourceError(f"--archives applies to a folder or an archive, not to the source {source.label}")


def archive_factory(spec: str) -> ArchiveSource | None:
    """Claim SRC when its name ends in an archive extension and it is not a folder (a missing one too, so that the
    error says it is missing)."""
    if archive_suffix(os.path.basename(spec)) and not os.path.isdir(spec):
        return ArchiveSource(spec)
    return None


register_source("archive", archive_factory)
