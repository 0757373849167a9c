"""The source walker: order, hidden files, extensions, links, odd names, special files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imgstore.errors import SourceError
from imgstore.options import default_extensions, parse_extensions
from imgstore.sources.folder import discover


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def names(root: Path, exts: tuple[str, ...] = default_extensions()) -> list[str]:
    return [c.name for c in discover(root, exts).files]


def test_sorted_relative_posix_paths(tmp_path: Path) -> None:
    """Files come sorted by relative path with / separators, whatever order the folder lists them."""
    for rel in ["b/2.jpg", "a/10.jpg", "a/1.jpg", "c.png", "a/sub/0.jpg"]:
        touch(tmp_path / rel)
    assert names(tmp_path) == ["a/1.jpg", "a/10.jpg", "a/sub/0.jpg", "b/2.jpg", "c.png"]


def test_hidden_files_and_folders_skipped(tmp_path: Path) -> None:
    """Names starting with a dot, and everything under such folders, are not candidates."""
    for rel in [".hidden.jpg", ".thumbs/x.jpg", "ok.jpg", "d/.DS_Store.jpg"]:
        touch(tmp_path / rel)
    assert names(tmp_path) == ["ok.jpg"]


def test_extensions_case_insensitive_and_override(tmp_path: Path) -> None:
    """.JPG counts as .jpg; --extensions replaces the default list; non-image files are ignored silently."""
    for rel in ["A.JPG", "b.Png", "c.txt", "d.webp", "notes.md"]:
        touch(tmp_path / rel)
    assert names(tmp_path) == ["A.JPG", "b.Png", "d.webp"]
    assert names(tmp_path, parse_extensions("png,WEBP")) == ["b.Png", "d.webp"]
    assert discover(tmp_path, default_extensions()).skipped == []


def test_symlink_loop_does_not_hang(tmp_path: Path) -> None:
    """A folder link pointing back up is followed at most once."""
    touch(tmp_path / "a" / "1.jpg")
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    os.symlink(tmp_path / "a", tmp_path / "a" / "self")
    assert names(tmp_path) == ["a/1.jpg"]


def test_symlinked_folder_followed(tmp_path: Path) -> None:
    """A link to a folder outside the root is walked under the link's name."""
    touch(tmp_path / "outside" / "x.jpg")
    (tmp_path / "root").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "root" / "linked")
    assert names(tmp_path / "root") == ["linked/x.jpg"]


def test_broken_symlink_and_fifo_recorded(tmp_path: Path) -> None:
    """A dangling link and a FIFO with an image name are skipped with reasons, never opened."""
    touch(tmp_path / "ok.jpg")
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "dangling.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")
    found = discover(tmp_path, default_extensions())
    assert [c.name for c in found.files] == ["ok.jpg"]
    assert found.skipped == [("dangling.jpg", "broken symlink"), ("pipe.jpg", "not a regular file")]


def test_unreadable_folder_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder that cannot be listed (permission denied) is recorded as skipped; the rest is walked."""
    touch(tmp_path / "locked" / "x.jpg")
    touch(tmp_path / "open" / "y.jpg")
    real = os.scandir

    def scandir(path):  # type: ignore[no-untyped-def]
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = discover(tmp_path, default_extensions())
    assert [c.name for c in found.files] == ["open/y.jpg"]
    assert found.skipped == [("locked", "unreadable folder: Permission denied")]


def test_non_utf8_name(tmp_path: Path) -> None:
    """A file name with bytes that are not UTF-8 is found, opens by its path and is stored escaped."""
    raw = os.path.join(os.fsencode(tmp_path), b"bad-\xff-name.jpg")
    try:
        with open(raw, "wb") as f:
            f.write(b"x")
    except OSError:  # pragma: no cover - filesystems that insist on UTF-8
        pytest.skip("filesystem refuses non-UTF-8 names")
    found = discover(tmp_path, default_extensions()).files
    assert [c.name for c in found] == ["bad-\\xff-name.jpg"]
    assert Path(found[0].key).read_bytes() == b"x"


def test_missing_or_file_source(tmp_path: Path) -> None:
    """A missing source, or a file given as source, is a SourceError that says what to give."""
    with pytest.raises(SourceError, match="does not exist"):
        discover(tmp_path / "nope", default_extensions())
    touch(tmp_path / "f.jpg")
    with pytest.raises(SourceError, match="not a folder"):
        discover(tmp_path / "f.jpg", default_extensions())


def test_default_extensions_exclude_hdf5() -> None:
    """A store inside the source folder (.h5) is never a candidate, although Pillow registers .h5."""
    assert ".h5" not in default_extensions() and ".jpg" in default_extensions()
