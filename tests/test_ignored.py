"""Nothing passes silently: files under SRC that are not candidates are counted, reported and recorded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import pytest

from imgstore.cli import app
from imgstore.ingest import ingest
from imgstore.options import DecodeOptions, IngestOptions
from imgstore.sources.folder import discover
from imgstore.store import IGNORED_COUNT, IGNORED_EXTENSIONS, ignored_attrs, ignored_of
from imgstore.store.format import IGNORED_WIDTH
from imgstore.store.reader import open_store

from conftest import encode, pattern, write

OPTS = dict(decode=DecodeOptions(size=(16, 12)), workers=0)


def _photos(root: Path) -> Path:
    """Three photos and, around them, what a real download holds: notes, videos, an extension-less file and
    hidden files (hidden ones are passed over like the folder walk passes them over, not counted)."""
    for i, rel in enumerate(("a/one.png", "a/two.jpg", "b/three.png")):
        fmt = "JPEG" if rel.endswith(".jpg") else "PNG"
        write(root / rel, encode(pattern(20, 16, seed=i), fmt))
    for rel in ("a/notes.txt", "b/notes.TXT", "b/clip.mov", "README", "b/.DS_Store", ".hidden/x.txt"):
        write(root / rel, b"not a photo")
    return root


def test_walk_counts_what_is_not_a_candidate_by_extension(tmp_path: Path) -> None:
    src = _photos(tmp_path / "src")
    found = discover(src, (".png", ".jpg"))
    assert [c.name for c in found.files] == ["a/one.png", "a/two.jpg", "b/three.png"]
    assert found.ignored == {".txt": 2, ".mov": 1, "": 1}
    assert found.ignored_count == 4
    # --extensions narrows the candidates; what it leaves out is counted too
    narrowed = discover(src, (".png",))
    assert narrowed.ignored == {".txt": 2, ".mov": 1, "": 1, ".jpg": 1}


def test_summary_info_and_attributes_name_the_ignored_files(tmp_path: Path, cli) -> None:
    src = _photos(tmp_path / "src")
    out = tmp_path / "out.h5"
    result = cli.invoke(app, ["ingest", str(src), str(out), "--size", "16x12", "--workers", "0", "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("4 other files ignored: .txt 2, (no extension) 1, .mov 1"), result.output
    with open_store(out) as store:
        assert len(store) == 3
        assert store.ignored == {".txt": 2, "": 1, ".mov": 1}
        assert store.attrs[IGNORED_COUNT] == 4
    info = cli.invoke(app, ["info", str(out)])
    assert "ignored     4 other files (.txt 2, (no extension) 1, .mov 1)" in info.output
    as_json = json.loads(cli.invoke(app, ["info", str(out), "--json"]).output)
    assert as_json["ignored"] == {".txt": 2, "": 1, ".mov": 1}


def test_a_folder_of_only_photos_says_nothing_about_ignored_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "x.png", encode(pattern(20, 16), "PNG"))
    report = ingest(src, tmp_path / "out.h5", IngestOptions(**OPTS))
    assert "ignored" not in report.summary
    with open_store(tmp_path / "out.h5") as store:
        assert store.ignored == {}
        assert store.attrs[IGNORED_COUNT] == 0


@pytest.mark.parametrize("mode", ["append", "resume"])
def test_a_continued_run_rewrites_the_counts_in_place(tmp_path: Path, mode: str) -> None:
    src = _photos(tmp_path / "src")
    out = tmp_path / "out.h5"
    ingest(src, out, IngestOptions(**OPTS))
    inode = os.stat(out).st_ino
    write(src / "c/clip2.mov", b"video")
    write(src / "c/four.png", encode(pattern(20, 16, seed=9), "PNG"))
    if mode == "resume":
        with h5py.File(out, "r+") as f:  # an interrupted run: not complete, so --resume continues it
            f.attrs.modify("complete", False)
    report = ingest(src, out, IngestOptions(**OPTS, **{mode: True}))
    assert report.ignored == {".txt": 2, ".mov": 2, "": 1}
    with open_store(out) as store:
        assert len(store) == 4
        assert store.ignored == {".mov": 2, ".txt": 2, "": 1}
        assert store.attrs[IGNORED_COUNT] == 5
    assert os.stat(out).st_ino == inode  # written in place: the store was not copied to change them


def test_appending_to_a_store_without_the_counts_does_not_copy_it(tmp_path: Path) -> None:
    src = _photos(tmp_path / "src")
    out = tmp_path / "out.h5"
    ingest(src, out, IngestOptions(**OPTS))
    with h5py.File(out, "r+") as f:  # as a store written before imgstore counted ignored files
        del f.attrs[IGNORED_COUNT]
        del f.attrs[IGNORED_EXTENSIONS]
    inode = os.stat(out).st_ino
    write(src / "c/four.png", encode(pattern(20, 16, seed=9), "PNG"))
    report = ingest(src, out, IngestOptions(**OPTS, append=True))
    assert report.count == 1 and report.ignored[".txt"] == 2
    with open_store(out) as store:
        assert len(store) == 4 and store.ignored is None
    assert os.stat(out).st_ino == inode


def test_many_extensions_fit_the_fixed_width_and_keep_the_total() -> None:
    ignored = {f".e{i:04d}": i + 1 for i in range(400)}
    attrs = ignored_attrs(ignored)
    raw = attrs[IGNORED_EXTENSIONS]
    assert len(raw) == IGNORED_WIDTH
    kept = ignored_of({IGNORED_EXTENSIONS: raw})
    assert kept is not None and "..." in kept
    assert sum(kept.values()) == sum(ignored.values()) == int(attrs[IGNORED_COUNT])
    # the most frequent are the ones named
    named = [k for k in kept if k != "..."]
    assert named == sorted(ignored, key=lambda k: -ignored[k])[: len(named)]


def test_an_extension_of_undecodable_bytes_is_escaped_like_a_name(tmp_path: Path, cli) -> None:
    """An extension that is not UTF-8 (``notes.t\\xe9xt`` from a Latin-1 machine) is counted escaped as stored names
    are, so the summary, ``info`` and ``info --json`` show the same text, and none fails to print it."""
    src = tmp_path / "src"
    write(src / "a.png", encode(pattern(20, 16), "PNG"))
    with open(os.path.join(os.fsencode(src), b"notes.t\xe9xt"), "wb") as f:
        f.write(b"not a photo")
    assert discover(src, (".png",)).ignored == {".t\\xe9xt": 1}
    out = tmp_path / "out.h5"
    result = cli.invoke(app, ["ingest", str(src), str(out), "--size", "16x12", "--workers", "0", "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("1 other file ignored: .t\\xe9xt 1"), result.output
    assert "ignored     1 other file (.t\\xe9xt 1)" in cli.invoke(app, ["info", str(out)]).output
    assert json.loads(cli.invoke(app, ["info", str(out), "--json"]).output)["ignored"] == {".t\\xe9xt": 1}
