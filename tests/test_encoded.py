"""Flat stores (format 4): rows encoded as JPEG/WebP/PNG or kept at their own shapes, written by the real ingest
pipeline and by ImageIndexer, read back whole, in spans and smaller, checked, continued and killed."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

import imgstore
from imgstore.errors import ChecksumError, OptionError, StoreError
from imgstore.ingest import ingest
from imgstore.options import DecodeOptions, IngestOptions
from imgstore.store import StoreFile, open_read
from imgstore.store.encoding import Encoding, flat_crc, parse_encoding
from imgstore.store.file import FlatRows
from imgstore.store.writer import ImageIndexer

from conftest import committed_rows, encode, pattern, write

ENCODINGS = ["none", "png", "jpeg:95", "webp:90"]


def photos(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` textured RGB images of assorted shapes (landscape, portrait, square, thin)."""
    rng = np.random.default_rng(seed)
    shapes = [(48, 64), (64, 48), (40, 40), (20, 90), (90, 21)]
    return [np.asarray(pattern(w, h, seed=int(rng.integers(1000)))) for h, w in (shapes[i % 5] for i in range(n))]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 photos of several aspect ratios in 3 class folders (PNG and JPEG), a corrupt file and a note."""
    root = tmp_path_factory.mktemp("encoded") / "photos"
    for i in range(30):
        w, h = [(320, 240), (240, 320), (300, 300), (400, 180)][i % 4]
        fmt, ext = ("PNG", "png") if i % 3 else ("JPEG", "jpg")
        write(root / f"c{i % 3}" / f"{i:03d}.{ext}", encode(pattern(w, h, seed=i), fmt))
    write(root / "c1" / "broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg")
    write(root / "notes.txt", b"not a photo")
    return root


def opts(**kw: object) -> IngestOptions:
    decode = {k: kw.pop(k) for k in ("size", "resize_mode", "channels", "upscale", "exact") if k in kw}
    return IngestOptions(decode=DecodeOptions(**decode), **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- the encodings


def test_encode_values_parse_to_their_canonical_text() -> None:
    assert str(parse_encoding(None)) == "none" and parse_encoding("none").raw
    assert str(parse_encoding("jpeg")) == "jpeg:90:420"
    assert str(parse_encoding("JPEG:95:444")) == "jpeg:95:444"
    assert str(parse_encoding("webp")) == "webp:80" and str(parse_encoding("png")) == "png:1"
    for bad, says in [("gif", "unknown encoding 'gif'"), ("jpeg:101", "JPEG quality"), ("jpeg:90:411", "420, 422"),
                      ("png:12", "0-9"), ("none:3", "no options"), ("webp:80:2", "webp[:QUALITY]")]:  # fmt: skip
        with pytest.raises(OptionError, match=says):
            parse_encoding(bad)


def test_flat_rows_pack_and_split() -> None:
    rows = FlatRows.pack([b"abc", np.arange(4, dtype=np.uint8), b""], [(1, 3, 1), (2, 2, 1), (0, 0, 0)])
    assert rows.ends.tolist() == [3, 7, 7] and rows.shapes.tolist() == [[1, 3, 1], [2, 2, 1], [0, 0, 0]]
    assert rows.row(0).tobytes() == b"abc" and rows.row(1).tolist() == [0, 1, 2, 3] and rows.row(2).size == 0


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_rows_of_their_own_shapes_read_back(tmp_path: Path, encoding: str) -> None:
    """Every encoding, rows of five shapes: each row comes back at its shape; lossless ones byte for byte, lossy
    ones close; spans are arrays when the shapes agree and lists otherwise; the checksums hold."""
    images = photos(12)
    out = tmp_path / "s.h5"
    with ImageIndexer(out, encoding=encoding, variable=True, labels=True, flush_every=0) as ix:
        for i, im in enumerate(images):
            ix.add(f"img{i:02d}.png", im, label=i % 3)
    lossless = parse_encoding(encoding).codec.lossless
    with imgstore.open(out, check=True) as s:
        assert s.format_version == 4 and s.shape is None and s.variable and str(s.encoding) == str(parse_encoding(encoding))
        assert s.shapes.tolist() == [list(im.shape) for im in images]
        for i, im in enumerate(images):
            got = s[i]
            assert got.shape == im.shape and got.dtype == np.uint8
            if lossless:
                np.testing.assert_array_equal(got, im)
            else:
                assert np.abs(got.astype(int) - im).mean() < 8  # sigma-6 noise at 4:2:0 on tiny images
        span = s[0:4]
        assert isinstance(span, list) and [a.shape for a in span] == [im.shape for im in images[:4]]
        same = s[[0, 5, 10]]  # rows 0, 5 and 10 share a shape
        assert isinstance(same, np.ndarray) and same.shape == (3, *images[0].shape)
        assert [len(b) for b in s.iter_batches(5)] == [5, 5, 2]
        assert s.labels is not None and s.labels.tolist() == [i % 3 for i in range(12)]
        small = s.read(1, max_side=16)
        assert max(small.shape[:2]) == 16 and abs(small.shape[1] / small.shape[0] - 48 / 64) < 0.1
        assert s.read(3, max_side=1000).shape == images[3].shape  # never enlarged


def test_encoded_rows_of_one_shape_are_arrays(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    images = np.stack([np.asarray(pattern(32, 24, seed=i)) for i in range(9)])
    with ImageIndexer(out, size=(32, 24), encoding="jpeg:90") as ix:
        for i, im in enumerate(images):
            ix.add(f"{i}.png", im)
        with pytest.raises(OptionError, match="holds"):
            ix.add("wrong.png", np.zeros((10, 10, 3), np.uint8))
        with pytest.raises(OptionError, match="add_encoded"):
            ix.reserve()
    with imgstore.open(out) as s:
        assert s.shape == (24, 32, 3) and not s.variable
        batch = s[2:7]
        assert isinstance(batch, np.ndarray) and batch.shape == (5, 24, 32, 3)
        assert np.abs(batch.astype(int) - images[2:7]).mean() < 8
        assert Image.open(io.BytesIO(s.row_bytes(4))).format == "JPEG"


def test_a_changed_byte_of_an_encoded_row_is_caught(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    with ImageIndexer(out, encoding="png", variable=True) as ix:
        for i, im in enumerate(photos(6)):
            ix.add(f"{i}.png", im)
    with h5py.File(out, "r+") as f:
        ends = f["image_ends"][:]
        at = int(ends[2]) + 40  # inside row 3
        f["image_data"][at] ^= 0xFF
    with imgstore.open(out, check=True) as s:
        s[2]
        with pytest.raises(ChecksumError, match="row 3"):
            s[3]
        with pytest.raises(ChecksumError, match="row 3"):
            s.row_bytes(3)
    with imgstore.open(out) as s:  # without check=True the damaged PNG fails to decode or decodes changed
        try:
            s[3]
        except StoreError as exc:
            assert "row 3" in str(exc)


def test_rows_written_past_the_count_are_dropped_on_reopen(tmp_path: Path) -> None:
    """What a killed writer leaves past ``count`` (bytes, ends, shapes) is invisible and trimmed by the next writer."""
    out = tmp_path / "s.h5"
    images = photos(8)
    with ImageIndexer(out, encoding="jpeg", variable=True, flush_every=0) as ix:
        for i, im in enumerate(images[:5]):
            ix.add(f"{i}.png", im)
    store = StoreFile.reopen(out)
    rows = FlatRows.pack([b"garbage" * 100], [(10, 10, 3)])
    store.write_rows(rows, ["ghost.png"], None, None, [0])
    store.close()  # no commit: as if killed
    with imgstore.open(out) as s:
        assert len(s) == 5 and s.names[-1] == "4.png"
    with open_read(out) as f:
        assert f["image_ends"].shape[0] == 6
    with ImageIndexer.reopen(out) as ix:
        ix.add("5.png", images[5])
    with imgstore.open(out, check=True) as s:
        assert len(s) == 6 and s.names[-1] == "5.png" and s[5].shape == images[5].shape
    with open_read(out) as f:
        assert f["image_data"].shape[0] == int(f["image_ends"][5])


def test_flat_crc_covers_shape_and_bytes() -> None:
    assert flat_crc((2, 3, 1), b"abcdef") != flat_crc((3, 2, 1), b"abcdef")
    assert flat_crc((2, 3, 1), b"abcdef") == flat_crc((2, 3, 1), np.frombuffer(b"abcdef", np.uint8))


# --------------------------------------------------------------------------------------------- the pipeline


@pytest.mark.parametrize("workers", [0, 2])
def test_png_rows_equal_raw_rows_byte_for_byte(tree: Path, tmp_path: Path, workers: int) -> None:
    """--encode png stores exactly the raw store's pixels, in every resize mode that keeps one shape and in
    shorter (rows of their own shapes)."""
    for mode in ("crop", "pad", "shorter"):
        raw, png = tmp_path / f"raw-{mode}.h5", tmp_path / f"png-{mode}.h5"
        ingest(tree, raw, opts(size=48, resize_mode=mode, workers=workers, labels="folder", encode="none"))
        ingest(tree, png, opts(size=48, resize_mode=mode, workers=workers, labels="folder", encode="png"))
        with imgstore.open(raw) as r, imgstore.open(png, check=True) as p:
            assert len(p) == len(r) == 30 and p.names == r.names and p.skipped == r.skipped
            assert str(p.encoding) == "png:1"
            for i in range(len(r)):
                np.testing.assert_array_equal(p[i], r[i])
            assert p.shapes.tolist() == r.shapes.tolist()


def test_jpeg_shorter_rows_keep_their_aspect_and_are_close_to_pillow(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "j.h5"
    report = ingest(tree, out, opts(size=64, resize_mode="shorter", workers=2, encode="jpeg:90", labels="folder"))
    assert report.count == 30 and [n for n, _ in report.skipped] == ["c1/broken.jpg"]
    with imgstore.open(out, check=True) as s:
        assert s.variable and str(s.encoding) == "jpeg:90:420"
        for i, name in enumerate(s.names):
            im = Image.open(tree / name).convert("RGB")
            w, h = im.size
            h2, w2, c = (int(v) for v in s.shapes[i])
            assert min(h2, w2) == 64 and c == 3
            assert abs(w2 / h2 - w / h) * min(h2, w2) <= 1  # the aspect within one pixel
            ref = np.asarray(im.resize((w2, h2), Image.Resampling.BICUBIC)).astype(int)
            # Tiny rows of sigma-6 noise are JPEG's worst case; scripts/bench_store.py measures the 4-level target
            # on real photos at 256.
            assert np.abs(s[i].astype(int) - ref).mean() <= 6


def test_the_cli_takes_encode_and_append_keeps_it(tree: Path, tmp_path: Path, cli: object) -> None:
    from typer.testing import CliRunner

    from imgstore.cli import app

    runner = cli if isinstance(cli, CliRunner) else CliRunner()
    out = tmp_path / "c.h5"
    bad = runner.invoke(app, ["ingest", str(tree), str(out), "--encode", "jpeg:900", "-q"])
    assert bad.exit_code != 0 and "Error: invalid JPEG quality '900'" in bad.output and "Traceback" not in bad.output
    assert not out.exists()
    half = tmp_path / "half"
    for name in sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.png"))[:10]:
        write(half / name, (tree / name).read_bytes())
    ok = runner.invoke(app, ["ingest", str(half), str(out), "--encode", "jpeg:95:444", "--resize-mode", "shorter",
                             "--size", "40", "-q", "--workers", "2"])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    more = runner.invoke(app, ["ingest", str(tree), str(out), "--append", "-q", "--workers", "2"])
    assert more.exit_code == 0, more.output
    with imgstore.open(out, check=True) as s:
        assert str(s.encoding) == "jpeg:95:444" and len(s) == 30 and s.variable
        assert all(min(int(h), int(w)) == 40 for h, w, _ in s.shapes)
    other = runner.invoke(app, ["ingest", str(tree), str(out), "--append", "--encode", "png", "-q"])
    assert other.exit_code != 0 and "encode is jpeg:95:444 in the store but png:1 here" in other.output


def test_an_encoded_store_appended_with_new_classes_is_copied_whole(tree: Path, tmp_path: Path) -> None:
    """New class names cannot be written in place: the writer copies the flat store first; every row survives."""
    part = tmp_path / "part"
    for p in sorted(tree.glob("c[01]/[0-9]*")):
        write(part / p.relative_to(tree), p.read_bytes())
    out = tmp_path / "s.h5"
    ingest(part, out, opts(size=40, resize_mode="longer", workers=0, encode="webp", labels="folder"))
    with imgstore.open(out) as s:
        before = [s.row_bytes(i) for i in range(len(s))]
        assert s.class_names == ["c0", "c1"]
    ingest(tree, out, opts(size=40, resize_mode="longer", workers=0, encode="webp", labels="folder", append=True))
    with imgstore.open(out, check=True) as s:
        assert s.class_names == ["c0", "c1", "c2"] and len(s) == 30 and len(before) == 20
        assert [s.row_bytes(i) for i in range(len(before))] == before
        assert all(max(int(h), int(w)) == 40 for h, w, _ in s.shapes)


def test_kill_9_of_an_encoded_variable_ingest_resumes_to_the_uninterrupted_store(tmp_path: Path) -> None:
    """SIGKILL a real ``imgstore ingest --encode jpeg --resize-mode shorter`` once rows are committed: the store
    opens holding a prefix of the uninterrupted store's rows (the same bytes), and ``--resume`` ends with exactly
    the uninterrupted store's rows, names, shapes, digests and checksums."""
    root = tmp_path / "photos"
    for i in range(160):
        w, h = [(320, 240), (240, 320), (400, 200)][i % 3]
        write(root / f"c{i % 4}" / f"{i:03d}.png", encode(pattern(w, h, seed=i), "PNG", compress_level=1))
    write(root / "c1" / "bad.png", b"\x89PNG\r\n\x1a\n cut short")
    args = ["--size", "48", "--resize-mode", "shorter", "--encode", "jpeg:90", "-q", "--buffer-size", "4",
            "--workers", "2", "--labels", "folder"]  # fmt: skip

    def run(out: Path, *more: str) -> list[str]:
        return [sys.executable, "-m", "imgstore", "ingest", str(root), str(out), *args, *more]

    whole = tmp_path / "whole.h5"
    assert subprocess.run(run(whole), capture_output=True).returncode == 0
    out = tmp_path / "killed.h5"
    proc = subprocess.Popen(run(out))
    deadline = time.monotonic() + 60
    while committed_rows(out) < 8 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with imgstore.open(out, check=True) as s, imgstore.open(whole) as w:
        n = len(s)
        assert 1 <= n < len(w) and not s.complete, "the kill did not land while the run was writing"
        assert s.names == w.names[:n] and [s.row_bytes(i) for i in range(n)] == [w.row_bytes(i) for i in range(n)]
    done = subprocess.run(run(out, "--resume"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with imgstore.open(out, check=True) as s, imgstore.open(whole) as w:
        assert s.complete and len(s) == len(w) == 160 and s.names == w.names
        assert s.shapes.tolist() == w.shapes.tolist() and s.sha256 == w.sha256 and s.skipped == w.skipped
        assert all(s.row_bytes(i) == w.row_bytes(i) for i in range(len(w)))
    with open_read(out) as f, open_read(whole) as g:
        np.testing.assert_array_equal(f["checksums"][:], g["checksums"][:])
        np.testing.assert_array_equal(f["image_ends"][:], g["image_ends"][:])


def test_encoding_objects_pass_through() -> None:
    enc = Encoding("jpeg", ("80", "444"))
    assert parse_encoding(enc) is enc and IngestOptions(encode=enc).encode is enc


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_rows_larger_than_a_slot_travel_in_the_answer(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """A row that does not fit its shared-memory slot (a panorama kept at full size) comes back in the worker's
    answer instead: with slots of 1 KiB every row does, and the store equals the one decoded in-process. Workers
    started by forkserver import imgstore afresh (without the 1 KiB): they take the ring's layout from the parent."""
    import imgstore.pool

    monkeypatch.setattr(imgstore.pool, "slot_bytes", lambda opts, rows: 1024)
    monkeypatch.setattr(imgstore.pool, "_start_method", lambda: method)
    pooled, local = tmp_path / "pooled.h5", tmp_path / "local.h5"
    ingest(tree, pooled, opts(resize_mode="none", workers=2, encode="none"))
    ingest(tree, local, opts(resize_mode="none", workers=0, encode="none"))
    with imgstore.open(pooled, check=True) as p, imgstore.open(local) as q:
        assert len(p) == len(q) == 30 and p.shapes.tolist() == q.shapes.tolist()
        assert max(int(h) * int(w) * 3 for h, w, _ in p.shapes) > 1024
        assert all(p.row_bytes(i) == q.row_bytes(i) for i in range(len(q)))
        assert {tuple(int(v) for v in sh) for sh in p.shapes} == {(240, 320, 3), (320, 240, 3), (300, 300, 3), (180, 400, 3)}


def test_upscale_counts_only_for_rows_of_their_own_shapes(tree: Path, tmp_path: Path) -> None:
    """--upscale changes rows only under shorter/longer/none: a crop store takes an --append with it, a shorter
    store made without it refuses one with it (and the other way round), untouched."""
    from imgstore.errors import OptionError as Refused

    crop, short = tmp_path / "crop.h5", tmp_path / "short.h5"
    ingest(tree, crop, opts(size=24, workers=0))
    ingest(tree, crop, opts(size=24, workers=0, upscale=True, append=True))
    ingest(tree, short, opts(size=24, resize_mode="shorter", encode="jpeg", workers=0))
    before = short.read_bytes()
    with pytest.raises(Refused, match="upscale is False in the store but True here"):
        ingest(tree, short, opts(size=24, resize_mode="shorter", encode="jpeg", workers=0, upscale=True, append=True))
    assert short.read_bytes() == before


def test_a_row_of_no_pixels_is_refused_as_such(tmp_path: Path) -> None:
    with ImageIndexer(tmp_path / "s.h5", encoding="png", variable=True) as ix:
        with pytest.raises(OptionError, match="at least one pixel"):
            ix.add_encoded("empty.png", b"x", (0, 4, 3))
        ix.add("ok.png", photos(1)[0])
