"""Labels, append, dedupe, resume after kill -9 and Ctrl-C, and compression: the store's life after one ingest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

import imgstore
from imgstore.errors import ConfigError, OptionError, StoreError
from imgstore.ingest import ingest
from imgstore.options import DecodeOptions, IngestOptions

from conftest import encode, pattern, write

SMALL = DecodeOptions(size=(24, 16))


def opts(**kw: object) -> IngestOptions:
    kw.setdefault("decode", SMALL)
    kw.setdefault("workers", 0)
    return IngestOptions(**kw)  # type: ignore[arg-type]


@pytest.fixture
def classes(tmp_path: Path) -> Path:
    """Three class folders (zebra, ant, mole), a loose file at the top, and one broken file."""
    root = tmp_path / "src"
    for c, cls in enumerate(["zebra", "ant", "mole"]):
        for i in range(3):
            write(root / cls / f"{i}.png", encode(pattern(30, 20, seed=10 * c + i), "PNG"))
    write(root / "loose.png", encode(pattern(30, 20, seed=99), "PNG"))
    write(root / "ant" / "broken.jpg", b"\xff\xd8\xff not a jpeg")
    return root


# -- labels -------------------------------------------------------------------------------------------------------
def test_folder_labels_follow_imagefolder(classes: Path, tmp_path: Path) -> None:
    """Class names are the sorted subfolders, a label is the index; a file outside any folder is skipped."""
    out = tmp_path / "o.h5"
    ingest(classes, out, opts(labels="folder"))
    s = imgstore.open(out)
    assert s.class_names == ["ant", "mole", "zebra"]
    assert [s.class_names[label] for label in s.labels] == [n.split("/")[0] for n in s.names]
    assert s.labels.dtype == np.int64 and len(s.labels) == 9
    assert ("loose.png", "no label: not inside a class folder") in s.skipped
    assert s.attrs["labels_source"] == "folder"


def test_csv_labels_strings_become_sorted_classes(classes: Path, tmp_path: Path) -> None:
    """Non-integer CSV labels become classes in sorted order; unlabelled files are skipped and recorded."""
    csv = tmp_path / "labels.csv"
    csv.write_text("file_name,label\nzebra/0.png,striped\n./ant/1.png,tiny\nmole/2.png,furry\nloose.png,tiny\n")
    out = tmp_path / "o.h5"
    report = ingest(classes, out, opts(labels=str(csv)))
    s = imgstore.open(out)
    assert s.class_names == ["furry", "striped", "tiny"]
    assert dict(zip(s.names, s.labels.tolist())) == {"ant/1.png": 2, "loose.png": 2, "mole/2.png": 0, "zebra/0.png": 1}
    assert ("zebra/1.png", "no label in labels.csv") in report.skipped


def test_csv_integer_labels_kept(classes: Path, tmp_path: Path) -> None:
    """Integer CSV labels are stored as given, with no class names."""
    csv = tmp_path / "l.csv"
    csv.write_text("file_name,label\nzebra/0.png,7\nant/0.png,3\n")
    ingest(classes, tmp_path / "o.h5", opts(labels=str(csv)))
    s = imgstore.open(tmp_path / "o.h5")
    assert dict(zip(s.names, s.labels.tolist())) == {"ant/0.png": 3, "zebra/0.png": 7} and s.class_names is None


def test_bad_labels_options(classes: Path, tmp_path: Path) -> None:
    """A labels value that is neither 'folder' nor a .csv, a missing CSV, a bad header, conflicting rows."""
    with pytest.raises(OptionError, match="use 'folder'"):
        opts(labels="dirs")
    with pytest.raises(ConfigError, match="does not exist"):
        ingest(classes, tmp_path / "o.h5", opts(labels=str(tmp_path / "none.csv")))
    bad = tmp_path / "b.csv"
    bad.write_text("name,cls\nx,1\n")
    with pytest.raises(ConfigError, match="file_name and label"):
        ingest(classes, tmp_path / "o.h5", opts(labels=str(bad)))
    bad.write_text("file_name,label\nx.png,1\nx.png,2\n")
    with pytest.raises(ConfigError, match="two labels"):
        ingest(classes, tmp_path / "o.h5", opts(labels=str(bad)))
    assert not (tmp_path / "o.h5").exists()


# -- append and dedupe --------------------------------------------------------------------------------------------
def test_append_adds_only_new_files_after_existing_rows(classes: Path, tmp_path: Path) -> None:
    """A second run with --append stores only files it does not hold yet, after the existing rows."""
    out = tmp_path / "o.h5"
    ingest(classes, out, opts(labels="folder"))
    before = imgstore.open(out)
    first_names, first_pixels = before.names, before[:]
    before.close()  # HDF5 will not open a file for writing that this process holds open for reading
    write(classes / "ant" / "new.png", encode(pattern(30, 20, seed=500), "PNG"))
    write(classes / "bee" / "b.png", encode(pattern(30, 20, seed=501), "PNG"))
    report = ingest(classes, out, opts(labels="folder", append=True))
    s = imgstore.open(out)
    assert report.count == 2 and report.total == 11
    assert s.names[:9] == first_names and s.names[9:] == ["ant/new.png", "bee/b.png"]
    np.testing.assert_array_equal(s[:9], first_pixels)
    # A new class goes after the existing ones, so old labels keep their meaning.
    assert s.class_names == ["ant", "mole", "zebra", "bee"]
    assert s.labels[9:].tolist() == [0, 3] and s.complete


def test_append_refuses_mismatched_options(classes: Path, tmp_path: Path) -> None:
    """Size, channels, resize mode and labels scheme must match; the error names what differs."""
    out = tmp_path / "o.h5"
    ingest(classes, out, opts(labels="folder"))
    with pytest.raises(OptionError) as err:
        ingest(classes, out, opts(append=True, labels="folder", decode=DecodeOptions(size=32, channels=1)))
    assert str(err.value) == (
        f"cannot append to {out}: size is 24x16 in the store but 32x32 here; channels is 3 in the store but 1 here "
        "(drop those options to use the store's)"
    )
    with pytest.raises(OptionError, match="labels-scheme is folder in the store but none here"):
        ingest(classes, out, opts(append=True))
    with pytest.raises(StoreError, match="does not exist"):
        ingest(classes, tmp_path / "none.h5", opts(append=True))


def test_dedupe_skips_identical_bytes(classes: Path, tmp_path: Path) -> None:
    """--dedupe records a file whose bytes are already stored (earlier in this run or in the store) as a duplicate."""
    (classes / "mole" / "copy.png").write_bytes((classes / "ant" / "0.png").read_bytes())
    out = tmp_path / "o.h5"
    report = ingest(classes, out, opts(dedupe=True))
    assert ("mole/copy.png", "duplicate of ant/0.png") in report.skipped
    (classes / "zebra" / "again.png").write_bytes((classes / "zebra" / "1.png").read_bytes())
    report = ingest(classes, out, opts(dedupe=True, append=True))
    assert report.count == 0 and ("zebra/again.png", "duplicate of zebra/1.png") in report.skipped
    plain = ingest(classes, tmp_path / "p.h5", opts())
    assert plain.count == 12  # without --dedupe, copies are stored


def test_sha256_rows_present(classes: Path, tmp_path: Path) -> None:
    """Every row stores the SHA-256 of its source file."""
    import hashlib

    ingest(classes, tmp_path / "o.h5", opts())
    s = imgstore.open(tmp_path / "o.h5")
    assert s.sha256 == [hashlib.sha256((classes / n).read_bytes()).hexdigest() for n in s.names]


# -- resume -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """240 images of 320x240 in 4 classes, with bad files spread through: slow enough to interrupt."""
    root = tmp_path_factory.mktemp("big")
    for i in range(240):
        if i % 37 == 5:
            write(root / f"c{i % 4}" / f"{i:03d}.png", b"\x89PNG\r\n\x1a\n broken")
        else:
            write(root / f"c{i % 4}" / f"{i:03d}.png", encode(pattern(320, 240, seed=i), "PNG", compress_level=1))
    return root


@pytest.fixture(scope="module")
def reference(big: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same folder ingested without interruption."""
    ref = tmp_path_factory.mktemp("ref") / "ref.h5"
    ingest(big, ref, IngestOptions(decode=DecodeOptions(size=48), labels="folder", workers=0))
    return ref


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "imgstore", "ingest", *args, "--size", "48", "--labels", "folder", "-q",
            "--buffer-size", "4", "--workers", "1"]  # fmt: skip


def _assert_same(a: Path, b: Path) -> None:
    x, y = imgstore.open(a), imgstore.open(b)
    assert x.complete and y.complete
    assert x.names == y.names and x.skipped == y.skipped and x.sha256 == y.sha256
    assert x.labels.tolist() == y.labels.tolist() and x.class_names == y.class_names
    np.testing.assert_array_equal(x[:], y[:])


def _no_process_mentions(text: str, wait: float = 5.0) -> bool:
    """True once no process's command line contains ``text`` (forked workers carry their parent's)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        alive = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    alive.append(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"))
                except OSError:
                    pass
        if not any(text in cmd for cmd in alive):
            return True
        time.sleep(0.05)
    return False


def _count(path: Path) -> int:
    from imgstore.store import open_read

    try:
        with open_read(path) as f:  # the writer is in SWMR mode: a plain open is refused while it runs
            return int(f.attrs["count"])
    except (OSError, KeyError):
        return 0


@pytest.mark.parametrize("kill_after", [1, 9, 40, 120])
def test_kill_9_then_resume_equals_uninterrupted_run(big: Path, reference: Path, tmp_path: Path, kill_after: int) -> None:
    """SIGKILL a running ingest at several points: the file opens with `count` consistent rows, and --resume
    finishes it into a store identical to an uninterrupted run (names, pixels, order, skipped, labels)."""
    ref = reference
    out = tmp_path / "killed.h5"
    proc = subprocess.Popen(_cli(str(big), str(out)))
    deadline = time.monotonic() + 60
    while _count(out) < kill_after and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _no_process_mentions(str(out)), "decoder workers outlived their killed parent"
    s = imgstore.open(out)
    n = len(s)
    assert n >= min(kill_after, 1) and not s.complete
    ref_store = imgstore.open(ref)
    assert s.names == ref_store.names[:n]
    np.testing.assert_array_equal(s[:], ref_store[:n])
    assert s.skipped == ref_store.skipped[: len(s.skipped)]
    s.close()  # HDF5 would hand this process its cached view of the file instead of the resumed one
    done = subprocess.run(_cli(str(big), str(out), "--resume"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    _assert_same(out, ref)


def test_ctrl_c_flushes_exits_130_and_resumes(big: Path, reference: Path, tmp_path: Path) -> None:
    """SIGINT: what was decoded is flushed, complete stays false, exit code 130; --resume completes it."""
    out = tmp_path / "int.h5"
    proc = subprocess.Popen(_cli(str(big), str(out)), stderr=subprocess.PIPE, text=True)
    while _count(out) < 20 and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Interrupted:" in err and "Traceback" not in err
    s = imgstore.open(out)
    assert len(s) >= 20 and not s.complete
    s.close()
    assert subprocess.run(_cli(str(big), str(out), "--resume"), capture_output=True).returncode == 0
    _assert_same(out, reference)


def test_resume_rules(classes: Path, tmp_path: Path) -> None:
    """Resuming a complete store does nothing (and says so); with other options it is refused with the reason."""
    out = tmp_path / "o.h5"
    ingest(classes, out, opts())
    before = out.read_bytes()
    report = ingest(classes, out, opts(resume=True))
    assert report.nothing_to_do and report.count == 0 and report.total == 10
    assert "nothing to resume" in report.summary and out.read_bytes() == before
    with h5py.File(out, "r+") as f:
        f.attrs["complete"] = False
    with pytest.raises(OptionError, match="filter is bicubic in the store but lanczos here"):
        ingest(classes, out, opts(resume=True, decode=DecodeOptions(size=(24, 16), filter="lanczos")))
    with pytest.raises(OptionError, match="exclude each other"):
        opts(resume=True, append=True)


def test_resume_of_nothing_simply_starts(classes: Path, tmp_path: Path) -> None:
    """--resume of a run killed before its store existed is a plain ingest; --append of nothing is refused."""
    out = tmp_path / "never.h5"
    report = ingest(classes, out, opts(resume=True))
    assert report.count == 10 and imgstore.open(out).complete
    with pytest.raises(StoreError, match="nothing to append to"):
        ingest(classes, tmp_path / "none.h5", opts(append=True))


def test_resume_trims_rows_past_count(classes: Path, tmp_path: Path) -> None:
    """Rows beyond `count` (an interrupted write) are trimmed and rewritten by --resume."""
    out = tmp_path / "o.h5"
    ingest(classes, out, opts(buffer_size=2))
    with imgstore.open(out) as ref:
        names, pixels = ref.names, ref[:]
    with h5py.File(out, "r+") as f:
        f.attrs["count"] = 5
        f.attrs["complete"] = False
        f["images"][5:] = 0  # leftovers that must not survive
    ingest(classes, out, opts(buffer_size=2, resume=True))
    s = imgstore.open(out)
    assert s.names == names and s.complete
    np.testing.assert_array_equal(s[:], pixels)


def test_cli_append_uses_store_options(classes: Path, tmp_path: Path, cli: CliRunner) -> None:
    """`imgstore ingest --append` without --size continues with the store's size, not the default."""
    from imgstore.cli import app

    out = tmp_path / "o.h5"
    assert cli.invoke(app, ["ingest", str(classes), str(out), "--size", "20x10", "-q", "--workers", "0"]).exit_code == 0
    write(classes / "ant" / "z.png", encode(pattern(30, 20, seed=7), "PNG"))
    result = cli.invoke(app, ["ingest", str(classes), str(out), "--append", "-q", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "ingested 1 images (11 in the store)" in result.stdout
    result = cli.invoke(app, ["ingest", str(classes), str(out), "--append", "--size", "64", "-q"])
    assert result.exit_code == 1 and "size is 20x10 in the store but 64x64 here" in result.stderr


# -- compression --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["gzip", "lzf"])
def test_compression_roundtrip_and_info(classes: Path, tmp_path: Path, method: str) -> None:
    """Compressed stores hold the same pixels; info reports the compression."""
    from imgstore.store.info import store_info

    ingest(classes, tmp_path / "plain.h5", opts())
    ingest(classes, tmp_path / "c.h5", opts(compression=method))
    np.testing.assert_array_equal(imgstore.open(tmp_path / "c.h5")[:], imgstore.open(tmp_path / "plain.h5")[:])
    info = store_info(tmp_path / "c.h5")
    assert info["compression"] == method and info["attributes"]["compression"] == method


def test_plugin_compression(classes: Path, tmp_path: Path) -> None:
    """zstd through hdf5plugin when installed; a clear error naming the extra when not."""
    try:
        import hdf5plugin  # noqa: F401
    except ImportError:
        with pytest.raises(OptionError, match=r"imgstore\[compression\]"):
            ingest(classes, tmp_path / "z.h5", opts(compression="zstd"))
        return
    ingest(classes, tmp_path / "z.h5", opts(compression="zstd"))
    ingest(classes, tmp_path / "p.h5", opts())
    np.testing.assert_array_equal(imgstore.open(tmp_path / "z.h5")[:], imgstore.open(tmp_path / "p.h5")[:])


def test_invalid_compression() -> None:
    """An unknown compression is an OptionError listing the choices."""
    with pytest.raises(OptionError, match="choose one of none, gzip, lzf, zstd, blosc"):
        opts(compression="brotli")


def test_export_of_interrupted_store_takes_names_from_journal(tmp_path: Path) -> None:
    """An interrupted store whose string dataset is damaged still exports the right names (from the journal)."""
    from imgstore.store.writer import ImageIndexer
    from imgstore.vectors.export import export_vectors

    out = tmp_path / "i.h5"
    with pytest.raises(RuntimeError):
        with ImageIndexer(out, size=(4, 4)) as ix:
            for i in range(5):
                ix.add(f"dir/{i}.png", np.full((4, 4, 3), i, np.uint8))
            raise RuntimeError("crash")
    with h5py.File(out, "r+") as f:
        f["image_names"][:] = ["garbage"] * 5  # stands for a heap torn by the crash
    export_vectors(out, tmp_path / "v.bvecs")
    assert (tmp_path / "v.bvecs.names.txt").read_text().splitlines() == [f"dir/{i}.png" for i in range(5)]


def test_cli_resume_can_be_rerun_blindly(classes: Path, tmp_path: Path, cli: CliRunner) -> None:
    """`--resume` with nothing there ingests; run again on the complete store it says so and exits 0."""
    from imgstore.cli import app

    out = tmp_path / "o.h5"
    args = ["ingest", str(classes), str(out), "--size", "20x10", "-q", "--workers", "0", "--resume"]
    first = cli.invoke(app, args)
    assert first.exit_code == 0 and "ingested 10 images" in first.stdout
    again = cli.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == f"nothing to resume: {out} is complete (10 images); use --append to add files that are new"
