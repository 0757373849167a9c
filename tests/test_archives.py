"""Archives as SRC: a .tar, .tar.gz/.tgz, .tar.bz2 or .zip gives the store its extracted folder gives (names,
order, pixels, skipped list, labels, ignored files), with and without worker processes; --archives reads the
archives inside a folder or an archive; resume, append, shards, dedupe, verify --sources and extract work on
archives; damaged archives are errors or skip reasons, never tracebacks."""

from __future__ import annotations

import bz2
import gzip
import io
import itertools
import os
import random
import shutil
import stat
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

import imgstore
from imgstore.cli import app
from imgstore.errors import BadImageError, OptionError, SourceError
from imgstore.extract import extract_images
from imgstore.ingest import ingest
from imgstore.options import DecodeOptions, IngestOptions
from imgstore.sources import open_source
from imgstore.sources.archive import ArchiveSource, ExpandedFolderSource, member_path, read_member
from imgstore.sources.stream import CompressedStream, StreamError
from imgstore.store.format import unescape_name
from imgstore.store.merge import merge_shards
from imgstore.store.verify import verify_store

from conftest import committed_rows, encode, pattern, write

SMALL = DecodeOptions(size=(20, 14))


def opts(**kw: object) -> IngestOptions:
    kw.setdefault("decode", SMALL)
    kw.setdefault("workers", 0)
    return IngestOptions(**kw)  # type: ignore[arg-type]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Photos in class folders (PNG, JPEG, WebP, BMP, GIF), a name with non-ASCII letters and a space, a loose
    photo outside any class, a corrupt JPEG, files that are not images, and hidden files."""
    root = tmp_path / "photos"
    formats = [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"), ("BMP", "bmp"), ("GIF", "gif")]
    for i in range(10):
        fmt, ext = formats[i % len(formats)]
        cls = ["cat", "dog", "zèbre ü"][i % 3]
        write(root / cls / f"p{i:02d}.{ext}", encode(pattern(36 + i, 26, seed=i), fmt))
    write(root / "dog" / "deep" / "inner.png", encode(pattern(30, 30, seed=50), "PNG"))
    write(root / "zèbre ü" / "Ångström é.JPG", encode(pattern(30, 20, seed=51), "JPEG"))
    write(root / "loose.png", encode(pattern(25, 25, seed=52), "PNG"))
    write(root / "dog" / "broken.jpg", b"\xff\xd8\xff this is not a jpeg")
    write(root / "readme.txt", b"not a photo")
    write(root / "cat" / "notes.md", b"# notes")
    write(root / "cat" / ".hidden.png", encode(pattern(10, 10), "PNG"))
    write(root / ".cache" / "x.png", encode(pattern(10, 10), "PNG"))
    return root


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def pack(root: Path, out: Path, kind: str, order: str = "sorted") -> Path:
    """Pack every file under ``root`` into the archive ``out`` of ``kind``: tar, tar.gz, tgz, tar.bz2, tar.xz, zip (stored)
    or zip-deflated; ``order`` sorted, reversed or shuffled (``tar czf`` writes readdir order, not sorted)."""
    files = _files(root)
    if order == "reversed":
        files.reverse()
    elif order == "shuffled":
        random.Random(4).shuffle(files)
    if kind.startswith("zip"):
        method = zipfile.ZIP_DEFLATED if kind == "zip-deflated" else zipfile.ZIP_STORED
        with zipfile.ZipFile(out, "w", method) as z:
            for path in files:
                z.write(path, path.relative_to(root).as_posix())
        return out
    mode = {"tar": "w", "tar.gz": "w:gz", "tgz": "w:gz", "tar.bz2": "w:bz2", "tar.xz": "w:xz"}[kind]
    with tarfile.open(out, mode) as t:
        for path in files:
            t.add(path, arcname="./" + path.relative_to(root).as_posix())  # GNU tar's "./" prefix, as tar -C dir .
    return out


def assert_same_store(a: Path, b: Path) -> None:
    """Same names in the same order, same pixels, labels, class names, digests and skipped list."""
    with imgstore.open(a) as x, imgstore.open(b) as y:
        assert len(x) > 0 and x.names == y.names
        np.testing.assert_array_equal(x[:], y[:])
        assert x.class_names == y.class_names
        if x.labels is not None or y.labels is not None:
            np.testing.assert_array_equal(x.labels, y.labels)
        assert x.sha256 == y.sha256
        assert x.skipped == y.skipped


KINDS = [("tar", "photos.tar", "sorted"), ("tar.gz", "photos.tar.gz", "reversed"), ("tgz", "photos.tgz", "shuffled"),
         ("tar.bz2", "photos.tar.bz2", "shuffled"), ("tar.xz", "photos.tar.xz", "reversed"), ("zip", "photos.zip", "shuffled"),
         ("zip-deflated", "PHOTOS.ZIP", "reversed")]  # fmt: skip


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize(("kind", "name", "order"), KINDS, ids=[k[0] for k in KINDS])
def test_archive_gives_the_store_of_its_extracted_folder(
    tree: Path, tmp_path: Path, kind: str, name: str, order: str, workers: int
) -> None:
    """Names, order, pixels, labels, digests, skipped list and ignored files equal the folder's."""
    archive = pack(tree, tmp_path / name, kind, order)
    folder_store, archive_store = tmp_path / "folder.h5", tmp_path / "archive.h5"
    folder_report = ingest(tree, folder_store, opts(labels="folder", workers=workers))
    report = ingest(archive, archive_store, opts(labels="folder", workers=workers))
    assert_same_store(archive_store, folder_store)
    assert report.count == folder_report.count == 12
    assert ("dog/broken.jpg" in {n for n, _ in report.skipped}) and ("loose.png" in {n for n, _ in report.skipped})
    ext = IngestOptions().extensions
    found, walked = open_source(archive).scan(ext), open_source(tree).scan(ext)
    assert found.ignored == walked.ignored == {".txt": 1, ".md": 1}
    with imgstore.open(archive_store) as store:
        assert store.attrs["source"] == str(archive)
        assert "zèbre ü/Ångström é.JPG" in store.names


def test_worker_counts_give_identical_stores(tree: Path, tmp_path: Path) -> None:
    """A compressed tar (read in the parent) and a zip (read in the workers) make the same store for 0, 1, 3
    workers."""
    for kind, name in (("tgz", "p.tgz"), ("zip-deflated", "p.zip")):
        archive = pack(tree, tmp_path / name, kind, "shuffled")
        ingest(archive, tmp_path / f"{name}-0.h5", opts())
        for workers in (1, 3):
            ingest(archive, tmp_path / f"{name}-{workers}.h5", opts(workers=workers))
            assert_same_store(tmp_path / f"{name}-{workers}.h5", tmp_path / f"{name}-0.h5")


def test_cli_ingests_an_archive_and_says_what_is_wrong(tree: Path, tmp_path: Path, cli: CliRunner) -> None:
    """`imgstore ingest photos.tar out.h5` works; a missing archive and a file that is no archive are one-line
    errors with exit code 1."""
    archive = pack(tree, tmp_path / "photos.tar", "tar")
    ingest(tree, tmp_path / "folder.h5", opts(labels="folder", workers=2))
    result = cli.invoke(app, ["ingest", str(archive), str(tmp_path / "cli.h5"), "--size", "20x14", "--labels",
                              "folder", "--workers", "2", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ingested 12 images, skipped 2")
    assert_same_store(tmp_path / "cli.h5", tmp_path / "folder.h5")

    result = cli.invoke(app, ["ingest", str(tmp_path / "nope.tgz"), str(tmp_path / "x.h5"), "-q"])
    assert result.exit_code == 1
    assert result.stderr == f"Error: archive {tmp_path / 'nope.tgz'} does not exist: give the archive (or folder) that holds the photos\n"
    fake = write(tmp_path / "fake.tar", b"this is not a tar archive at all" * 40)
    result = cli.invoke(app, ["ingest", str(fake), str(tmp_path / "y.h5"), "-q"])
    assert result.exit_code == 1 and result.stderr.startswith(f"Error: {fake} is not a readable")
    assert "Traceback" not in result.output
    fake_zip = write(tmp_path / "fake.zip", b"PK\x03\x04 truncated zip")
    result = cli.invoke(app, ["ingest", str(fake_zip), str(tmp_path / "z.h5"), "-q"])
    assert result.exit_code == 1 and result.stderr.startswith(f"Error: {fake_zip} is not a readable zip archive")


# -- --archives: archives inside a folder or an archive ------------------------------------------------------------


@pytest.fixture
def imagenet(tmp_path: Path) -> tuple[Path, Path]:
    """An ImageNet-like train set: class folders of JPEGs (the extracted form), and the same as a tar of per-class
    tars (ILSVRC2012_img_train.tar)."""
    extracted = tmp_path / "train"
    for c, synset in enumerate(["n01440764", "n01443537", "n01484850"]):
        for i in range(3):
            write(extracted / synset / f"{synset}_{i}.JPEG", encode(pattern(40, 30, seed=10 * c + i), "JPEG"))
    write(extracted / "n01443537" / f"n01443537_{9}.JPEG", b"truncated JPEG")
    packed = tmp_path / "packed"
    packed.mkdir()
    for synset in sorted(os.listdir(extracted)):
        with tarfile.open(packed / f"{synset}.tar", "w") as t:
            for path in _files(extracted / synset):
                t.add(path, arcname=path.name)
    outer = tmp_path / "ILSVRC2012_img_train.tar"
    with tarfile.open(outer, "w") as t:
        for path in sorted(packed.iterdir(), reverse=True):
            t.add(path, arcname=path.name)
    return extracted, outer


def test_tar_of_tars_with_archives_gives_imagenet_classes(
    imagenet: tuple[Path, Path], tmp_path: Path, cli: CliRunner
) -> None:
    """ILSVRC2012_img_train.tar --archives --labels folder: the class tars are the classes, as if each had been
    extracted into a folder of its name; without --archives the class tars are counted as ignored files."""
    extracted, outer = imagenet
    ingest(extracted, tmp_path / "folder.h5", opts(labels="folder"))
    result = cli.invoke(app, ["ingest", str(outer), str(tmp_path / "cli.h5"), "--archives", "--labels", "folder",
                              "--size", "20x14", "--workers", "0", "-q"])  # fmt: skip
    assert result.exit_code == 0 and result.stdout.startswith("ingested 9 images, skipped 1"), result.output
    assert_same_store(tmp_path / "cli.h5", tmp_path / "folder.h5")
    result = cli.invoke(app, ["ingest", str(outer), str(tmp_path / "cli.h5"), "--resume", "-q"])
    assert result.exit_code == 0 and result.stdout.startswith("nothing to resume"), result.output
    for workers in (0, 2):
        out = tmp_path / f"tars-{workers}.h5"
        ingest(outer, out, opts(labels="folder", archives=True, workers=workers))
        assert_same_store(out, tmp_path / "folder.h5")
    with imgstore.open(tmp_path / "tars-0.h5") as store:
        assert store.class_names == ["n01440764", "n01443537", "n01484850"]
        assert store.names[0] == "n01440764/n01440764_0.JPEG"
        assert store.skipped[0][0] == "n01443537/n01443537_9.JPEG"
    plain = open_source(outer).scan(IngestOptions().extensions)
    assert plain.files == [] and plain.ignored == {".tar": 3}


def test_archives_inside_a_folder(imagenet: tuple[Path, Path], tmp_path: Path, tree: Path) -> None:
    """A folder holding a .tar, a .tgz and a .zip beside plain photos, with --archives, gives the store of the
    folder where each archive was extracted into a folder of its name; without it, the archives are ignored files."""
    extracted, _ = imagenet
    mixed, flat = tmp_path / "mixed", tmp_path / "flat"
    shutil.copytree(extracted / "n01440764", mixed / "n01440764")  # plain files
    shutil.copytree(extracted / "n01440764", flat / "n01440764")
    pack(extracted / "n01443537", mixed / "n01443537.tar", "tar", "reversed")
    pack(extracted / "n01484850", mixed / "n01484850.tgz", "tgz", "reversed")
    pack(tree / "cat", mixed / "cat.zip", "zip-deflated")
    for synset in ("n01443537", "n01484850"):
        shutil.copytree(extracted / synset, flat / synset)
    shutil.copytree(tree / "cat", flat / "cat")
    write(mixed / "notes.txt", b"x")
    write(flat / "notes.txt", b"x")
    ingest(flat, tmp_path / "flat.h5", opts(labels="folder"))
    for workers in (0, 2):
        ingest(mixed, tmp_path / f"mixed-{workers}.h5", opts(labels="folder", archives=True, workers=workers))
        assert_same_store(tmp_path / f"mixed-{workers}.h5", tmp_path / "flat.h5")
    ext = IngestOptions().extensions
    assert ExpandedFolderSource(str(mixed)).scan(ext).ignored == open_source(flat).scan(ext).ignored
    assert open_source(mixed).scan(ext).ignored == {".tar": 1, ".tgz": 1, ".zip": 1, ".txt": 1}


def test_a_name_given_twice_keeps_the_plain_file(tmp_path: Path) -> None:
    """A folder a/ beside a.tar holding a file of the same name: the plain file is taken, the member skipped."""
    root = tmp_path / "src"
    write(root / "a" / "x.png", encode(pattern(20, 20, seed=1), "PNG"))
    inner = tmp_path / "inner"
    write(inner / "x.png", encode(pattern(20, 20, seed=2), "PNG"))
    write(inner / "y.png", encode(pattern(20, 20, seed=3), "PNG"))
    pack(inner, root / "a.tar", "tar")
    found = ExpandedFolderSource(str(root)).scan((".png",))
    assert [c.name for c in found.files] == ["a/x.png", "a/y.png"]
    assert found.files[0].key == str(root / "a" / "x.png")
    assert found.skipped == [("a/x.png", "another file has the same name: not taken from a.tar")]


# -- what tar and zip allow -------------------------------------------------------------------------------------------


def _add(t: tarfile.TarFile, name: str, data: bytes = b"", **kw: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    t.addfile(info, io.BytesIO(data) if data else None)


def test_links_duplicates_and_special_members_match_extraction(tmp_path: Path) -> None:
    """Hard and symbolic links read their targets, a dangling link and a FIFO are skipped as the folder walk skips
    them, a later member replaces an earlier one of the same name: the store equals that of the extracted tar."""
    first, second = encode(pattern(20, 20, seed=1), "PNG"), encode(pattern(20, 20, seed=2), "PNG")
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as t:
        _add(t, "a/dup.png", first)
        _add(t, "a/real.png", first)
        _add(t, "a/hard.png", type=tarfile.LNKTYPE, linkname="a/real.png")
        _add(t, "b/sym.png", type=tarfile.SYMTYPE, linkname="../a/real.png")
        _add(t, "b/dangling.png", type=tarfile.SYMTYPE, linkname="gone.png")
        _add(t, "b/pipe.png", type=tarfile.FIFOTYPE)
        _add(t, "./a/dup.png", second)  # the same file for extraction, which leaves this one
    dest = tmp_path / "extracted"
    with tarfile.open(archive) as t:
        t.extractall(dest, filter="tar")
    ingest(dest, tmp_path / "folder.h5", opts())
    ingest(archive, tmp_path / "tar.h5", opts())
    assert_same_store(tmp_path / "tar.h5", tmp_path / "folder.h5")
    with imgstore.open(tmp_path / "tar.h5") as store:
        assert store.names == ["a/dup.png", "a/hard.png", "a/real.png", "b/sym.png"]
        assert store.skipped == [("b/dangling.png", "broken symlink"), ("b/pipe.png", "not a regular file")]
        np.testing.assert_array_equal(store[1], store[2])
        np.testing.assert_array_equal(store[3], store[2])
        assert not np.array_equal(store[0], store[2])  # the second dup.png, not the first


def test_backslashes_in_a_windows_zip_are_folder_separators(tmp_path: Path) -> None:
    """Zips written on Windows by some tools (PowerShell 5's Compress-Archive) separate folders with backslashes;
    unzip turns them into folders, so they name folders here too (and --labels folder finds the classes). On a zip
    made on Unix a backslash is part of the name, as there (unzip's rule)."""
    data = encode(pattern(20, 20), "PNG")
    archive = tmp_path / "windows.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name, system in (("cat\\1.png", 0), ("dog\\2.png", 0), ("odd\\name.png", 3)):
            info = zipfile.ZipInfo(name)
            info.create_system = system
            z.writestr(info, data)
    found = ArchiveSource(str(archive)).scan((".png",))
    assert [c.name for c in found.files] == ["cat/1.png", "dog/2.png", "odd\\\\name.png"]


def test_a_hard_link_reads_its_target_as_it_was_when_the_link_came(tmp_path: Path) -> None:
    """Extraction links to the file of that name at the link's place in the archive: a later member of the name
    replaces the name, not the link's data, and a link to a member that comes only later is missing (GNU tar and
    tarfile fail to make it)."""
    first, second = encode(pattern(20, 20, seed=1), "PNG"), encode(pattern(20, 20, seed=2), "PNG")
    archive = tmp_path / "hard.tar"
    with tarfile.open(archive, "w") as t:
        _add(t, "a.png", first)
        _add(t, "h.png", type=tarfile.LNKTYPE, linkname="a.png")
        _add(t, "./a.png", second)
        _add(t, "early.png", type=tarfile.LNKTYPE, linkname="late.png")
        _add(t, "late.png", first)
    found = ArchiveSource(str(archive)).scan((".png",))
    assert [c.name for c in found.files] == ["a.png", "h.png", "late.png"]
    assert found.skipped == [("early.png", "hard link to a missing member")]
    ingest(archive, tmp_path / "tar.h5", opts())
    with imgstore.open(tmp_path / "tar.h5") as store:
        assert store.sha256[1] == store.sha256[2] != store.sha256[0]  # h.png holds the first a.png


def test_zip_names_without_the_utf8_flag_are_the_bytes_unzip_writes(tmp_path: Path) -> None:
    """Info-ZIP on Linux and macOS's Archive Utility store names as raw (UTF-8) bytes without the UTF-8 flag, which
    zipfile decodes as cp437: the member is named as unzip extracts it (its bytes), not as mojibake; bytes that are
    not UTF-8 from a Unix zip are escaped as the folder walk escapes them; a DOS zip's names stay cp437."""
    data = encode(pattern(20, 20), "PNG")
    archive = tmp_path / "raw.zip"
    names = {b"zXXbre/XXtXX.png": (b"z\xc3\xa8bre/\xc3\xa9t\xc3\xa9.png", 3), b"cafX.png": (b"caf\xe9.png", 3),
             b"dosX.png": (b"dos\x82.png", 0)}  # zipfile writes no raw names: ASCII ones of the same length, replaced
    with zipfile.ZipFile(archive, "w") as z:
        for placeholder, (_, system) in names.items():
            info = zipfile.ZipInfo(placeholder.decode())
            info.create_system = system
            z.writestr(info, data)
    blob = archive.read_bytes()
    for placeholder, (raw, _) in names.items():
        blob = blob.replace(placeholder, raw)
    archive.write_bytes(blob)
    found = ArchiveSource(str(archive)).scan((".png",))
    assert [c.name for c in found.files] == ["caf\\xe9.png", "dos\u00e9.png", "z\u00e8bre/\u00e9t\u00e9.png"]
    unicode_path = tmp_path / "unicode-path.zip"  # Info-ZIP's Unicode Path field (0x7075) holds the UTF-8 name
    with zipfile.ZipFile(unicode_path, "w") as z:
        info = zipfile.ZipInfo("olX.png")
        info.create_system = 0
        utf8 = "ol\u00e9.png".encode()
        info.extra = struct.pack("<HHB", 0x7075, 5 + len(utf8), 1) + struct.pack("<I", zlib.crc32(b"ol\xe9.png")) + utf8
        z.writestr(info, data)
    unicode_path.write_bytes(unicode_path.read_bytes().replace(b"olX.png", b"ol\xe9.png"))
    assert [c.name for c in ArchiveSource(str(unicode_path)).scan((".png",)).files] == ["ol\u00e9.png"]
    ingest(archive, tmp_path / "z.h5", opts(labels="folder"))
    with imgstore.open(tmp_path / "z.h5") as store:
        assert store.class_names == ["z\u00e8bre"]


def test_folders_implied_by_paths_are_folders(tmp_path: Path) -> None:
    """A folder only member paths imply (``d/z.png``, no ``d/`` entry) is a folder like one with an entry: a link
    to it is a folder link (passed over, not an ignored file), and a file member of the folder's name cannot be
    extracted over it (GNU tar: "File exists"), so it is skipped, not stored beside the folder's files."""
    data = encode(pattern(20, 20), "PNG")
    archive = tmp_path / "implied.tar"
    with tarfile.open(archive, "w") as t:
        _add(t, "d/z.png", data)
        _add(t, "e", type=tarfile.SYMTYPE, linkname="d")
        _add(t, "x.png", type=tarfile.DIRTYPE)
        _add(t, "x.png/in.png", data)
        _add(t, "x.png", data)  # over a folder that holds a file
        _add(t, "y.png/in.png", data)
        _add(t, "y.png", data)  # over a folder only implied
    found = ArchiveSource(str(archive)).scan((".png",))
    assert [c.name for c in found.files] == ["d/z.png", "x.png/in.png", "y.png/in.png"]
    reason = "a folder of the same name holds other members: extraction cannot write this file"
    assert found.skipped == [("x.png", reason), ("y.png", reason)]
    assert found.ignored == {}


def test_an_encrypted_zip_member_is_skipped_with_a_short_reason(tmp_path: Path) -> None:
    """A member that needs a password (``zip -P``) is skipped as encrypted, on one short line (zipfile's own message
    carries the member's whole repr); the others are read."""
    archive = tmp_path / "locked.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("locked.png", encode(pattern(20, 20, seed=1), "PNG"))
        z.writestr("open.png", encode(pattern(20, 20, seed=2), "PNG"))
    blob = bytearray(archive.read_bytes())
    for header, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # the first member's encryption bit
        blob[blob.index(header) + flag_at] |= 0x1
    archive.write_bytes(bytes(blob))
    for workers in (0, 2):
        report = ingest(archive, tmp_path / f"z{workers}.h5", opts(workers=workers))
        assert report.count == 1
        assert report.skipped == [("locked.png", "unreadable: encrypted zip member (a password is needed)")]


def test_zip_slip_and_absolute_names_are_skipped(tmp_path: Path) -> None:
    """Members that extraction would write outside the folder are skipped as unsafe, in tar and zip alike."""
    data = encode(pattern(20, 20), "PNG")
    with tarfile.open(tmp_path / "evil.tar", "w") as t:
        _add(t, "../escape.png", data)
        _add(t, "/etc/abs.png", data)
        _add(t, "ok/../../up.png", data)
        _add(t, "ok/fine.png", data)
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as z:
        z.writestr(zipfile.ZipInfo("../escape.png"), data)
        z.writestr(zipfile.ZipInfo("ok/fine.png"), data)
    unsafe = "unsafe path: it would be extracted outside the folder"
    found = ArchiveSource(str(tmp_path / "evil.tar")).scan((".png",))
    assert [c.name for c in found.files] == ["ok/fine.png"]
    assert found.skipped == sorted([("../escape.png", unsafe), ("/etc/abs.png", unsafe), ("ok/../../up.png", unsafe)])
    report = ingest(tmp_path / "evil.zip", tmp_path / "z.h5", opts())
    assert report.count == 1 and report.skipped == [("../escape.png", unsafe)]
    assert member_path("./a//b/./c.png") == "a/b/c.png" and member_path("a/../../b.png") is None


@pytest.mark.parametrize("workers", [0, 2])
def test_a_zip_member_whose_deflate_data_is_damaged_is_a_skip_reason(
    tmp_path: Path, workers: int, capfd: pytest.CaptureFixture[str]
) -> None:
    """Damaged deflate data raises zlib.error inside zipfile: it is the member's skip reason, not the end of the run
    (--workers 0) or a crashed worker with a traceback over the terminal."""
    archive = tmp_path / "damaged.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.png", encode(pattern(60, 60, seed=1), "PNG") * 3)
        z.writestr("b.png", encode(pattern(20, 20, seed=2), "PNG"))
    raw = bytearray(archive.read_bytes())
    raw[60:90] = b"\xff" * 30  # inside a.png's deflate stream
    archive.write_bytes(bytes(raw))
    capfd.readouterr()
    report = ingest(archive, tmp_path / "o.h5", opts(workers=workers))
    assert report.count == 1
    [(name, reason)] = report.skipped
    assert name == "a.png"
    assert reason.startswith("unreadable: damaged compressed data (Error -3 while decompressing"), reason
    assert capfd.readouterr().err == ""
    link = tmp_path / "link.zip"  # a symbolic link member (its data: the target) read by the scan itself
    with zipfile.ZipFile(link, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("l.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, b"target-of-some-length.png" * 4)
    raw = bytearray(link.read_bytes())
    raw[35:41] = b"\xff" * 6  # the deflate data, after the 30-byte header and the name
    link.write_bytes(bytes(raw))
    assert ArchiveSource(str(link)).scan((".png",)).skipped == [("l.png", "broken symlink")]


def test_damaged_members_and_archives_are_skip_reasons(tmp_path: Path, tree: Path) -> None:
    """A zip member with a bad CRC is skipped with zipfile's reason; a gzip cut short keeps the members before
    the cut and records the damage; neither stops the run."""
    good = encode(pattern(20, 20, seed=1), "PNG")
    bad_crc = tmp_path / "crc.zip"
    with zipfile.ZipFile(bad_crc, "w") as z:
        z.writestr("a.png", good)
        z.writestr("b.png", good)
    raw = bytearray(bad_crc.read_bytes())
    at = raw.index(good) + 100  # a byte inside a.png's stored data
    raw[at] ^= 0xFF
    bad_crc.write_bytes(bytes(raw))
    report = ingest(bad_crc, tmp_path / "crc.h5", opts(workers=2))
    assert report.count == 1 and report.skipped == [("a.png", "unreadable: Bad CRC-32 for file 'a.png'")]

    whole = pack(tree, tmp_path / "whole.tar.gz", "tar.gz").read_bytes()
    cut = write(tmp_path / "cut.tar.gz", whole[: len(whole) * 2 // 3])
    report = ingest(cut, tmp_path / "cut-gz.h5", opts(workers=2))
    reasons = dict(report.skipped)
    assert 0 < report.count < 12
    assert reasons["cut.tar.gz"].startswith("damaged archive after ")
    assert all(r.startswith(("unreadable: ", "damaged archive", "not an image")) for r in reasons.values())

    whole_tar = pack(tree, tmp_path / "whole.tar", "tar")
    with tarfile.open(whole_tar) as t:
        members = t.getmembers()
        victim = next(m for m in members if m.name == "./dog/p04.gif")
    entries = members.index(victim) + 1  # listed before the cut, the cut one included
    cut = write(tmp_path / "cut.tar", whole_tar.read_bytes()[: victim.offset_data + victim.size // 2])
    report = ingest(cut, tmp_path / "cut-tar.h5", opts(workers=2))
    reasons = dict(report.skipped)
    assert reasons["dog/p04.gif"] == f"unreadable: the archive ends inside this member ({victim.size // 2} of {victim.size} bytes)"
    assert reasons["cut.tar"] == f"damaged archive after {entries} entries (unexpected end of data): the entries before were read"


# -- the store's life: resume, append, shards, dedupe, verify, extract -------------------------------------------


def test_resume_of_an_archive_ingest_equals_an_uninterrupted_run(tree: Path, tmp_path: Path) -> None:
    """A store left part-way (count cut back, incomplete) is finished by --resume from a compressed tar: the same
    store as one uninterrupted run."""
    archive = pack(tree, tmp_path / "p.tgz", "tgz", "shuffled")
    reference, out = tmp_path / "ref.h5", tmp_path / "o.h5"
    ingest(archive, reference, opts(labels="folder", dedupe=True))
    ingest(archive, out, opts(labels="folder", dedupe=True, buffer_size=2))
    with h5py.File(out, "r+") as f:
        f.attrs["count"] = 5
        f.attrs["complete"] = False
        f["images"][5:] = 0
    report = ingest(archive, out, opts(labels="folder", dedupe=True, buffer_size=2, resume=True, workers=2))
    assert report.count == 7
    assert_same_store(out, reference)
    with h5py.File(out, "r+") as f:
        f.attrs["complete"] = False
    with pytest.raises(OptionError, match="archives is False in the store but True here"):
        ingest(archive, out, opts(labels="folder", dedupe=True, resume=True, archives=True))


def test_append_dedupe_and_shards_on_archives(tree: Path, tmp_path: Path) -> None:
    """Append adds the members a store lacks; dedupe skips a member whose bytes are stored; the shards of an
    archive, merged, are the whole store."""
    half = tmp_path / "half"
    shutil.copytree(tree / "cat", half / "cat")
    write(half / "cat" / "copy.png", (tree / "cat" / "p00.png").read_bytes())
    full = tmp_path / "full"
    shutil.copytree(tree, full)
    write(full / "cat" / "copy.png", (tree / "cat" / "p00.png").read_bytes())
    for name, root in (("half", half), ("full", full)):
        pack(root, tmp_path / f"{name}.zip", "zip-deflated", "shuffled")
    ingest(half, tmp_path / "folder.h5", opts(labels="folder", dedupe=True))
    ingest(full, tmp_path / "folder.h5", opts(labels="folder", dedupe=True, append=True))
    ingest(tmp_path / "half.zip", tmp_path / "zip.h5", opts(labels="folder", dedupe=True))
    report = ingest(tmp_path / "full.zip", tmp_path / "zip.h5", opts(labels="folder", dedupe=True, append=True))
    assert report.count == 12 - 4
    assert_same_store(tmp_path / "zip.h5", tmp_path / "folder.h5")
    with imgstore.open(tmp_path / "zip.h5") as store:
        assert ("cat/p00.png", "duplicate of cat/copy.png") in store.skipped

    archive = pack(tree, tmp_path / "p.tar.gz", "tar.gz", "shuffled")
    for name, src in (("archive", archive), ("folder", tree)):
        shards = []
        for k in (1, 2, 3):
            shards.append(tmp_path / f"{name}-s{k}.h5")
            ingest(src, shards[-1], opts(labels="folder", shard=(k, 3), workers=2))
        merge_shards(tmp_path / f"{name}-merged.h5", shards, copy=True)
    assert_same_store(tmp_path / "archive-merged.h5", tmp_path / "folder-merged.h5")
    ingest(archive, tmp_path / "whole.h5", opts(labels="folder"))
    with imgstore.open(tmp_path / "archive-merged.h5") as merged, imgstore.open(tmp_path / "whole.h5") as whole:
        assert merged.names == whole.names and sorted(merged.skipped) == sorted(whole.skipped)
        np.testing.assert_array_equal(merged[:], whole[:])


def test_verify_sources_reads_members_and_extract_writes_them(tree: Path, tmp_path: Path, cli: CliRunner) -> None:
    """verify --sources ARCHIVE hashes every row's member again: OK as made, a problem for a changed or missing
    member; with --archives the folder's archives are read; extract writes the rows of an archive store."""
    archive = pack(tree, tmp_path / "p.tgz", "tgz", "shuffled")
    out = tmp_path / "o.h5"
    ingest(archive, out, opts())
    report = verify_store(out, sources=archive)
    assert report.ok and report.checked == 13, report.problems
    result = cli.invoke(app, ["verify", str(out), "--sources", str(archive), "-q"])
    assert result.exit_code == 0 and result.stdout == f"OK: 13 images verified in {out}\n"

    changed = tmp_path / "changed"
    shutil.copytree(tree, changed)
    write(changed / "cat" / "p00.png", encode(pattern(36, 26, seed=99), "PNG"))
    (changed / "dog" / "p01.jpg").unlink()
    pack(changed, archive, "tgz")
    report = verify_store(out, sources=archive)
    assert report.problems == ["cat/p00.png changed since ingest (sha256 differs)", f"dog/p01.jpg is missing from {archive}"]

    mixed = tmp_path / "mixed"
    shutil.copytree(tree / "dog", mixed / "dog")
    pack(tree / "cat", mixed / "cat.tar", "tar")
    ingest(mixed, tmp_path / "m.h5", opts(archives=True))
    assert verify_store(tmp_path / "m.h5", sources=mixed).ok
    with pytest.raises(SourceError, match="is not a folder, an archive or a list file"):
        verify_store(out, sources=write(tmp_path / "plain.txt", b"x"))

    written = extract_images(out, tmp_path / "png")
    with imgstore.open(out) as store:
        assert len(written) == len(store) == 13


# -- the compressed stream -----------------------------------------------------------------------------------------


def _held(path: Path) -> int:
    """How many of this process's file descriptors are open on ``path``."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) in (str(path), f"{path} (deleted)"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_an_ingest_or_a_verify_lets_go_of_the_archives_it_read(tree: Path, tmp_path: Path) -> None:
    """A program that ingests archive after archive (and verifies them) keeps none open: no descriptor holds a
    deleted archive's disk space, no decompressor checkpoints stay in memory."""
    for kind, name in (("tgz", "a.tgz"), ("zip", "b.zip"), ("tar", "c.tar")):
        archive = pack(tree, tmp_path / name, kind)
        ingest(archive, tmp_path / f"{name}.h5", opts())
        assert _held(archive) == 0, kind
        assert verify_store(tmp_path / f"{name}.h5", sources=archive).ok
        assert _held(archive) == 0, kind
    folder = tmp_path / "with-archives"
    folder.mkdir()
    pack(tree, folder / "x.tar.gz", "tar.gz")
    ingest(folder, tmp_path / "folder.h5", opts(archives=True))
    assert _held(folder / "x.tar.gz") == 0


@pytest.mark.parametrize("kind", ["gz", "gz-multi", "bz2", "bz2-multi"])
def test_compressed_stream_reads_any_range(tmp_path: Path, kind: str) -> None:
    """Reads at random offsets, through checkpoints, equal the decompressed bytes; a gzip of several members is
    read across their boundaries."""
    rng = np.random.default_rng(0)
    data = bytes(rng.integers(0, 40, 600_000, dtype=np.uint8))  # compressible, not trivially
    path = tmp_path / "data"
    if kind == "gz":
        path.write_bytes(gzip.compress(data))
    elif kind == "gz-multi":
        path.write_bytes(gzip.compress(data[:250_000]) + gzip.compress(data[250_000:]))
    elif kind == "bz2":
        path.write_bytes(bz2.compress(data))
    else:  # as pbzip2 writes: one stream per block
        path.write_bytes(b"".join(bz2.compress(data[i : i + 100_000]) for i in range(0, len(data), 100_000)))
    stream = CompressedStream(str(path), kind=kind[:3].rstrip("-"), spacing=64 * 1024)
    assert stream.read() == data
    outs = [point[0] for point in stream.checkpoints]
    if kind.startswith("gz"):  # one at least every 64 KiB + a step
        assert len(outs) >= len(data) // (80 * 1024) and all(b - a >= 64 * 1024 for a, b in itertools.pairwise(outs))
    elif kind == "bz2":  # bzip2 cannot be copied: the start and the end of its one stream ...
        assert outs == [0, len(data)]
    else:  # ... and the boundaries between streams
        assert len(outs) > 3 and all(out % 100_000 == 0 for out in outs)
    for _ in range(40):
        offset = int(rng.integers(0, len(data)))
        size = int(rng.integers(0, 30_000))
        assert stream.pread(size, offset) == data[offset : offset + size]
    stream.close()


def test_compressed_stream_cut_short_or_damaged_raises_stream_error(tmp_path: Path) -> None:
    """A gzip cut short, or with damaged bytes, raises StreamError (which the source turns into a skip reason)."""
    data = bytes(np.random.default_rng(1).integers(0, 40, 300_000, dtype=np.uint8))
    packed = gzip.compress(data)
    cut = write(tmp_path / "cut.gz", packed[: len(packed) // 2])
    with pytest.raises(StreamError, match="ends early"):
        CompressedStream(str(cut)).read()
    damaged = bytearray(packed)
    damaged[len(damaged) // 2 : len(damaged) // 2 + 64] = bytes(64)
    write(tmp_path / "bad.gz", bytes(damaged))
    with pytest.raises(StreamError):
        CompressedStream(str(tmp_path / "bad.gz")).read()


@pytest.mark.parametrize("budget", [0, 60_000, 10**9])
def test_compressed_tar_reads_equal_under_any_memory_budget(tree: Path, tmp_path: Path, budget: int,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Whether a compressed tar's members are all kept by the scan, kept a few at a time as reads pass them, or
    never kept (every read from a checkpoint), the store is the folder's."""
    import imgstore.sources.archive as archive_module
    import imgstore.sources.stream as stream_module

    monkeypatch.setattr(archive_module, "PASSED_OVER_BYTES", budget)
    monkeypatch.setattr(stream_module, "SPACING", 8192)  # many checkpoints in a small archive
    for i in range(12):  # a second folder's worth, so the archive is larger than the small budget
        write(tree / "more" / f"m{i:02d}.png", encode(pattern(60, 50, seed=100 + i), "PNG"))
    archive = pack(tree, tmp_path / "p.tgz", "tgz", "shuffled")
    ingest(tree, tmp_path / "folder.h5", opts())
    ingest(archive, tmp_path / "tgz.h5", opts(workers=2))
    assert_same_store(tmp_path / "tgz.h5", tmp_path / "folder.h5")
    source = ArchiveSource(str(archive))
    found = source.scan(IngestOptions().extensions)
    assert [len(source.read(c.key)) for c in found.files] == [
        (tree / c.name).stat().st_size for c in found.files
    ]


def test_dask_shards_of_archives_make_the_single_machine_store(tree: Path, tmp_path: Path) -> None:
    """--dask on a compressed tar (parent reads through the pickled source, in worker threads sharing a process)
    and on a zip (read by decoder processes) merges into the store of one ingest."""
    distributed = pytest.importorskip("distributed")
    from imgstore.distributed import ingest_dask

    ingest(tree, tmp_path / "single.h5", opts(labels="folder"))
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None) as c:
        with distributed.Client(c) as client:
            for kind, name, task_workers in (("tgz", "p.tgz", 0), ("zip-deflated", "p.zip", 1)):
                archive = pack(tree, tmp_path / name, kind, "shuffled")
                out = tmp_path / f"{name}.h5"
                report = ingest_dask(archive, out, opts(labels="folder"), client, shards=3, task_workers=task_workers)
                assert report.count == 12
                with imgstore.open(out) as merged, imgstore.open(tmp_path / "single.h5") as single:
                    assert merged.names == single.names and sorted(merged.skipped) == sorted(single.skipped)
                    np.testing.assert_array_equal(merged[:], single[:])
                    np.testing.assert_array_equal(merged.labels, single.labels)
                assert _held(archive) == 0  # the client's scan, and the tasks in its threads, let go of it


def test_archives_inside_archives_of_every_kind(tree: Path, tmp_path: Path) -> None:
    """Inside an uncompressed tar, a zip, a .tgz and a tar are read in place; inside a stored zip member a tar
    too; an archive compressed inside a zip, or inside a compressed tar, is skipped with the reason."""
    inner = tmp_path / "inner"
    inner.mkdir()
    pack(tree / "cat", inner / "cat.zip", "zip-deflated")
    pack(tree / "dog", inner / "dog.tgz", "tgz", "reversed")
    pack(tree / "zèbre ü", inner / "zèbre ü.tar", "tar")
    outer = pack(inner, tmp_path / "outer.tar", "tar")
    flat = tmp_path / "flat"
    for cls in ("cat", "dog", "zèbre ü"):
        shutil.copytree(tree / cls, flat / cls)
    ingest(flat, tmp_path / "flat.h5", opts(labels="folder"))
    for workers in (0, 2):
        ingest(outer, tmp_path / f"outer-{workers}.h5", opts(labels="folder", archives=True, workers=workers))
        assert_same_store(tmp_path / f"outer-{workers}.h5", tmp_path / "flat.h5")

    with zipfile.ZipFile(tmp_path / "outer.zip", "w") as z:
        z.write(inner / "zèbre ü.tar", "stored.tar", compress_type=zipfile.ZIP_STORED)
        z.write(inner / "zèbre ü.tar", "deflated.tar", compress_type=zipfile.ZIP_DEFLATED)
    found = ArchiveSource(str(tmp_path / "outer.zip"), expand=True).scan(IngestOptions().extensions)
    assert [c.name for c in found.files] == [f"stored/{p.name}" for p in sorted((tree / "zèbre ü").iterdir())]
    assert found.skipped == [("deflated.tar", "an archive compressed inside a zip: not expanded (store it uncompressed, zip -0)")]
    outer_gz = pack(inner, tmp_path / "outer.tgz", "tgz")
    found = ArchiveSource(str(outer_gz), expand=True).scan(IngestOptions().extensions)
    reason = "an archive inside a compressed archive: not expanded (decompress the outer one to a .tar)"
    assert found.files == [] and found.skipped == [(n, reason) for n in ("cat.zip", "dog.tgz", "zèbre ü.tar")]


def test_a_damaged_archive_inside_an_archive_costs_only_itself(tmp_path: Path) -> None:
    """With --archives, a damaged zip inside a tar is skipped with its reason; the tar's other members are read
    (the zip's error ended the whole scan: an error naming the outer tar as a zip, or the outer tar skipped)."""
    photo = encode(pattern(20, 20), "PNG")
    outer = tmp_path / "src" / "outer.tar"
    outer.parent.mkdir()
    with tarfile.open(outer, "w") as t:
        _add(t, "a.png", photo)
        _add(t, "bad.zip", b"PK\x03\x04 not a zip at all" * 3)
        _add(t, "bad.tar.gz", b"\x1f\x8b not gzip either")
    reasons = {"bad.zip": "unreadable archive: File is not a zip file",
               "bad.tar.gz": "unreadable archive: not a readable tar archive (the compressed data are"}  # fmt: skip
    sources = ((ArchiveSource(str(outer), expand=True), ""), (ExpandedFolderSource(str(outer.parent)), "outer/"))
    for source, prefix in sources:
        found = source.scan((".png",))
        assert [c.name for c in found.files] == [prefix + "a.png"]
        assert [name for name, _ in found.skipped] == [prefix + "bad.tar.gz", prefix + "bad.zip"]
        for name, reason in found.skipped:
            assert reason.startswith(reasons[name.removeprefix(prefix)]), reason


def test_zip_members_are_read_without_parsing_the_central_directory(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decoder worker reads a stored or deflated zip member from where the scan's key says it is: it never builds
    zipfile's list of every member (560 bytes and 5 µs a member in every worker: 700 MB and 6 s each for a zip of
    ImageNet's 1.28 million photos). Damage is still found (the CRC-32 is checked)."""
    from imgstore.sources import archive as archive_module

    for kind in ("zip", "zip-deflated"):
        archive = pack(tree, tmp_path / f"{kind}.zip", kind)
        found = ArchiveSource(str(archive)).scan((".png", ".jpg", ".webp", ".bmp", ".gif"))
        assert all(arc.zip is None for arc in archive_module._OPEN.values())  # the scan's reader let go before forks
        with zipfile.ZipFile(archive) as z:
            want = {c.name: z.read(unescape_name(c.name).decode()) for c in found.files}
        archive_module.forget(str(archive))  # as a fresh worker

        def no_zipfile(*args: object, **kw: object) -> None:
            raise AssertionError("the central directory was parsed")

        monkeypatch.setattr(zipfile, "ZipFile", no_zipfile)
        assert {c.name: read_member(c.key) for c in found.files} == want
        monkeypatch.undo()
    raw = bytearray(archive.read_bytes())  # the deflated one: a flipped byte fails the CRC-32 check
    raw[raw.index(b"cat/p00.png") + len("cat/p00.png") + 40] ^= 0xFF  # the local header's name, then the data
    archive.write_bytes(bytes(raw))
    archive_module.forget(str(archive))
    [key] = [c.key for c in found.files if c.name == "cat/p00.png"]
    with pytest.raises(BadImageError, match="^unreadable: (Bad CRC-32 for file 'cat/p00.png'|damaged compressed data)"):
        read_member(key)


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 textured photos of 320x240 in 4 class folders, a corrupt one and a note: an ingest long enough to be
    killed while it writes (decoding them takes well over a second)."""
    root = tmp_path_factory.mktemp("bigtree") / "photos"
    for i in range(160):
        write(root / f"c{i % 4}" / f"{i:03d}.png", encode(pattern(320, 240, seed=i), "PNG", compress_level=1))
    write(root / "c1" / "bad.png", b"\x89PNG\r\n\x1a\n cut short")
    write(root / "notes.txt", b"not a photo")
    return root



@pytest.mark.parametrize("kind", ["tar.gz", "zip-deflated", "tar"])
def test_kill_9_then_resume_of_an_archive_equals_the_extracted_folder(big_tree: Path, tmp_path: Path, kind: str) -> None:
    """SIGKILL a real ``imgstore ingest ARCHIVE`` once rows are committed: the store opens holding the first rows of
    the extracted folder's store, and ``--resume`` ends identical to that store (a .tar.gz in shuffled member
    order: the parent reads it; a zip and a tar: the workers do)."""
    import signal
    import subprocess
    import sys
    import time

    archive = pack(big_tree, tmp_path / f"photos.{kind.split('-')[0]}", kind, order="shuffled")
    folder_store = tmp_path / "folder.h5"
    base = ["--size", "48", "-q", "--buffer-size", "4", "--workers", "2", "--labels", "folder"]

    def cli(src: Path, out: Path, *more: str) -> list[str]:
        return [sys.executable, "-m", "imgstore", "ingest", str(src), str(out), *base, *more]

    assert subprocess.run(cli(big_tree, folder_store), capture_output=True).returncode == 0
    out = tmp_path / "killed.h5"
    proc = subprocess.Popen(cli(archive, out))
    deadline = time.monotonic() + 60
    while committed_rows(out) < 8 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with imgstore.open(out) as s, imgstore.open(folder_store) as r:
        n = len(s)
        assert 1 <= n < len(r) and not s.complete, "the kill did not land while the run was writing"
        assert s.names == r.names[:n]
        np.testing.assert_array_equal(s[:], r[:n])
    done = subprocess.run(cli(archive, out, "--resume"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert_same_store(out, folder_store)
    with imgstore.open(out) as s:
        assert s.complete and s.ignored == {".txt": 1}
