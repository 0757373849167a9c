"""The store's safety mechanisms one by one: the writer lock, time-bounded commits, signals held during a commit,
injective names, row checksums, damaged metadata, stores built aside, format-1 upgrades, failed writes, readers
beside plain h5py, and temporary files of killed runs. (tests/test_crash.py tries them together on real runs.)"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import imgstore
from imgstore import signals
from imgstore.errors import ChecksumError, OptionError, StoreBusyError, StoreError
from imgstore.ingest import ingest
from imgstore.lock import WriterLock, lock_path
from imgstore.options import DecodeOptions, IngestOptions
from imgstore.sources.folder import FolderSource
from imgstore.store import escape_name, unescape_name
from imgstore.store.verify import verify_store
from imgstore.store.writer import ImageIndexer
from imgstore.vectors.export import export_vectors

from conftest import encode, pattern, write

SMALL = DecodeOptions(size=(12, 8))


def opts(**kw: object) -> IngestOptions:
    kw.setdefault("decode", SMALL)
    kw.setdefault("workers", 0)
    return IngestOptions(**kw)  # type: ignore[arg-type]


def img(i: int) -> np.ndarray:
    return np.full((8, 12, 3), i % 256, np.uint8)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Eight PNGs in two class folders."""
    root = tmp_path / "photos"
    for i in range(8):
        write(root / f"c{i % 2}" / f"{i}.png", encode(pattern(24, 16, seed=i), "PNG"))
    return root


# `imgstore ingest` with one more decoder, first in the chain: at a file whose bytes start with GATE it creates the
# file $GATE_REACHED and holds there until a signal ends the run. With --workers 0 the decoding is done in the
# writing process, so when the file appears the run is exactly there: every photo before the gate handled, the
# store not finished. (A decoder that sees any other file passes it on.)
GATED_INGEST = r"""
import os, sys, time
from imgstore.decoders import register_decoder
from imgstore.errors import NotRecognised

class Gate:
    name = "gate"
    extensions = ()

    def decode(self, data, opts, out):
        if not data.startswith(b"GATE"):
            raise NotRecognised("not the gate")
        open(os.environ["GATE_REACHED"], "w").close()
        while True:
            time.sleep(0.01)

register_decoder(Gate(), first=True)
from imgstore.__main__ import main
sys.argv[0] = "imgstore"
main()
"""


def gated(photos: Path, tmp_path: Path) -> Path:
    """A copy of ``photos`` with the gate file sorted last (any other imgstore skips it as not an image)."""
    root = tmp_path / "gated"
    shutil.copytree(photos, root)
    write(root / "c1" / "zz-gate.png", b"GATE")
    return root


def start_gated(args: list[str], reached: Path) -> subprocess.Popen[str]:
    """Start ``imgstore ingest ARGS`` with the gate and wait until it holds at the gate file."""
    cmd = [sys.executable, "-c", GATED_INGEST, "ingest", *args, "--workers", "0", "-q"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "GATE_REACHED": str(reached)})
    while not reached.exists() and proc.poll() is None:
        time.sleep(0.005)
    if not reached.exists():
        _, err = proc.communicate()
        raise AssertionError(f"the run ended (exit {proc.returncode}) before it reached the gate: {err[-500:]}")
    return proc


# -- one writer at a time ------------------------------------------------------------------------------------------
HOLD = r"""
import sys, time
from imgstore.store.writer import ImageIndexer
ix = ImageIndexer(sys.argv[1], size=(12, 8), labels=False, sha256=False)
print("holding", flush=True)
time.sleep(60)
"""


def test_second_writer_refused_naming_the_first(tmp_path: Path) -> None:
    """While another process writes a store, every writer is refused at once with its pid; a killed holder's lock
    goes with it (kill -9 included), and the lock file is removed by a clean release."""
    out = tmp_path / "s.h5"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with pytest.raises(StoreBusyError, match=rf"being written by another imgstore process \(pid {holder.pid}"):
            ImageIndexer(out, size=(12, 8), overwrite=True)
        with pytest.raises(StoreBusyError, match=f"pid {holder.pid}"):
            ingest(tmp_path, out, opts(resume=True))
        assert holder.poll() is None  # refused while the first writer still runs: at once, not after waiting for it
        assert imgstore.open(out).complete is False  # readers are never refused
    finally:
        holder.kill()
        holder.wait()
    with ImageIndexer(out, size=(12, 8), overwrite=True) as ix:
        ix.add("a", img(1))
    assert not lock_path(out).exists() and len(imgstore.open(out)) == 1


def _try_lock(path: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        WriterLock(path).acquire()
        queue.put("acquired")
    except StoreBusyError:
        queue.put("busy")


def test_lock_nests_in_a_process_and_is_not_shared_with_children(tmp_path: Path) -> None:
    """The same process may take a lock again (nested steps of one command); a forked child does not hold it."""
    target = tmp_path / "x.h5"
    with WriterLock(target), WriterLock(target):
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_try_lock, args=(str(target), queue))
        child.start()
        child.join(10)
        assert queue.get(timeout=5) == "busy"
        assert lock_path(target).exists()
    assert not lock_path(target).exists()


# -- bounded loss -------------------------------------------------------------------------------------------------
def test_commits_are_bounded_in_time(tmp_path: Path) -> None:
    """With a large buffer, rows are committed once flush_every seconds passed, by add() or flush_if_due()."""
    now = [0.0]
    with ImageIndexer(tmp_path / "s.h5", size=(12, 8), buffer_size=1000, flush_every=2.0, clock=lambda: now[0],
                      labels=False, sha256=False) as ix:  # fmt: skip
        for i in range(3):
            ix.add(f"{i}", img(i))
        assert ix.committed == 0 and imgstore.open(tmp_path / "s.h5").complete is False
        now[0] = 2.5
        ix.add("3", img(3))
        assert ix.committed == 4 and len(imgstore.open(tmp_path / "s.h5")) == 4
        ix.add("4", img(4))
        ix.flush_if_due()
        assert ix.committed == 4  # not due yet
        now[0] = 5.0
        ix.flush_if_due()
        assert ix.committed == 5
    with pytest.raises(OptionError, match="flush interval"):
        ImageIndexer(tmp_path / "t.h5", size=(12, 8), flush_every=-1)


def test_store_exists_and_opens_before_the_first_image(tmp_path: Path) -> None:
    """A store whose layout is known appears at once, empty, and every reader opens it (no first-flush window)."""
    out = tmp_path / "s.h5"
    ix = ImageIndexer(out, size=(12, 8), labels=True, sha256=False, attrs={"class_names": ["a"]})
    try:
        s = imgstore.open(out)
        assert len(s) == 0 and not s.complete and s.shape == (8, 12, 3)
        assert verify_store(out).ok
        with h5py.File(out, "r", swmr=True, libver="latest") as f:  # a plain h5py reader, the README's way
            assert f["labels"].shape == (0,)
    finally:
        ix.close()


# -- signals ----------------------------------------------------------------------------------------------------------
def test_signal_in_a_commit_is_delivered_after_it() -> None:
    """Under graceful_signals, SIGTERM raises Interrupted (exit 143); inside deferred() it waits for the block's end."""
    order = []
    with pytest.raises(signals.Interrupted) as caught:
        with signals.graceful_signals():
            with signals.deferred():
                signal.raise_signal(signal.SIGTERM)
                order.append("after the signal, still in the commit")
            order.append("not reached")
    assert order == ["after the signal, still in the commit"]
    assert caught.value.signum == signal.SIGTERM and caught.value.exit_code == 143


def test_sighup_behaves_like_ctrl_c(photos: Path, tmp_path: Path) -> None:
    """SIGHUP (a closed terminal) in the middle of an ingest ends it with exit 129 and a one-line message, the
    photos handled so far committed; --resume completes it."""
    src, out = gated(photos, tmp_path), tmp_path / "o.h5"
    proc = start_gated([str(src), str(out), "--size", "12x8"], tmp_path / "gate-reached")
    try:
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 129, err
    assert err.startswith("Interrupted: ") and len(err.splitlines()) == 1
    with imgstore.open(out) as s:
        assert len(s) == 8 and not s.complete  # the eight photos before the gate, flushed on the way out
    cmd = [sys.executable, "-m", "imgstore", "ingest", str(src), str(out), "--size", "12x8", "-q", "--workers", "1"]
    assert subprocess.run([*cmd, "--resume"], capture_output=True).returncode == 0
    assert imgstore.open(out).complete and len(imgstore.open(out)) == 8


# -- names --------------------------------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_names_are_injective_and_invertible(raw: bytes) -> None:
    """Any path bytes -> a UTF-8 name -> the same bytes; two different paths never share a name."""
    name = escape_name(raw)
    name.encode("utf-8")
    assert unescape_name(name) == raw
    assert escape_name(os.fsdecode(raw)) == name  # the str os gives for the same bytes


def test_a_raw_byte_and_its_escape_text_stay_two_files(tmp_path: Path) -> None:
    """``y<0xff>.jpg`` and a file literally named ``y\\xff.jpg`` are stored under two names that map back to each."""
    src = tmp_path / "src"
    raw = os.path.join(os.fsencode(src), b"y\xff.png")
    write(Path(os.fsdecode(raw)), encode(pattern(24, 16, seed=1), "PNG"))
    write(src / "y\\xff.png", encode(pattern(24, 16, seed=2), "PNG"))
    ingest(src, tmp_path / "o.h5", opts())
    s = imgstore.open(tmp_path / "o.h5")
    assert sorted(s.names) == sorted(["y\\xff.png", "y\\\\xff.png"])
    for name in s.names:
        assert FolderSource(str(src)).path_of(name).exists()
    assert FolderSource(str(src)).path_of("y\\xff.png") != FolderSource(str(src)).path_of("y\\\\xff.png")
    assert verify_store(tmp_path / "o.h5", sources=src).ok
    s.close()
    report = ingest(src, tmp_path / "o.h5", opts(append=True))
    assert report.count == 0  # both files are known: neither is added again


# -- checksums ----------------------------------------------------------------------------------------------------------
def _flip_pixel_byte(path: Path, row: int) -> None:
    with h5py.File(path, "r") as f:
        info = f["images"].id.get_chunk_info_by_coord((row, 0, 0, 0))
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + 17)
        byte = fh.read(1)
        fh.seek(info.byte_offset + 17)
        fh.write(bytes([byte[0] ^ 0x40]))


def test_changed_pixels_are_found_by_verify_and_check(photos: Path, tmp_path: Path) -> None:
    """Bytes flipped inside two image chunks: verify (with and without sources) names exactly those rows;
    imgstore.open(check=True) refuses them and reads the others; a plain open returns the altered pixels."""
    out = tmp_path / "o.h5"
    ingest(photos, out, opts(labels="folder"))
    clean = imgstore.open(out)[:]
    for row in (2, 5):
        _flip_pixel_byte(out, row)
    for report in (verify_store(out), verify_store(out, sources=photos)):
        assert report.changed_rows == [2, 5]
        names = imgstore.open(out).names
        assert [p for p in report.problems if "changed since written" in p] == [
            f"row 2 ({names[2]}) changed since written: the stored bytes do not match the checksum",
            f"row 5 ({names[5]}) changed since written: the stored bytes do not match the checksum",
        ]
    checked = imgstore.open(out, check=True)
    with pytest.raises(ChecksumError, match=rf"row 5 \({checked.names[5]}\) does not match its checksum"):
        checked[5]
    with pytest.raises(ChecksumError, match="row 2"):
        checked[0:4]
    np.testing.assert_array_equal(checked[4], clean[4])
    assert not np.array_equal(imgstore.open(out)[2], clean[2])


def test_check_refuses_a_store_without_checksums(tmp_path: Path) -> None:
    """A format-1 store carries no checksums: check=True says so instead of pretending."""
    path = _v1_store(tmp_path / "old.h5")
    assert len(imgstore.open(path)) == 5
    with pytest.raises(StoreError, match="carries no row checksums"):
        imgstore.open(path, check=True)


# -- damaged metadata ----------------------------------------------------------------------------------------------
PROBE = r"""
import json, sys
from imgstore.errors import ImgStoreError
from imgstore.store.info import store_info
from imgstore.store.verify import verify_store
out = {}
try:
    out["verify"] = verify_store(sys.argv[1]).ok
except ImgStoreError as exc:
    out["verify"] = "error: " + str(exc)
try:
    store_info(sys.argv[1]); out["info"] = "ok"
except ImgStoreError as exc:
    out["info"] = "error: " + str(exc)
print(json.dumps(out))
"""


def test_damaged_metadata_is_reported_never_a_crash(photos: Path, tmp_path: Path) -> None:
    """A byte flipped anywhere outside the image chunks (superblock, headers, attributes, indexes, heaps):
    verify returns a report and info a one-line StoreError; neither raises anything else nor crashes."""
    out = tmp_path / "o.h5"
    ingest(photos, out, opts(labels="folder", compression="gzip"))
    with h5py.File(out, "r") as f:
        ds = f["images"]
        chunks = [ds.id.get_chunk_info(i) for i in range(ds.id.get_num_chunks())]
    data = bytearray(out.read_bytes())
    in_chunk = np.zeros(len(data), bool)
    for c in chunks:
        in_chunk[c.byte_offset : c.byte_offset + c.size] = True
    candidates = np.flatnonzero(~in_chunk)
    rng = np.random.default_rng(7)
    damaged = 0
    for k, pos in enumerate(rng.choice(candidates, size=24, replace=False)):
        bad = tmp_path / f"bad{k}.h5"
        copy = bytearray(data)
        copy[pos] ^= 0xFF
        bad.write_bytes(bytes(copy))
        probe = subprocess.run([sys.executable, "-c", PROBE, str(bad)], capture_output=True, text=True, timeout=120)
        assert probe.returncode == 0, f"byte {pos}: {probe.stderr[-500:]}"
        result = json.loads(probe.stdout)
        damaged += result["verify"] is not True
        if result["info"] != "ok":
            assert "\n" not in result["info"]
    assert damaged > 0  # the flips did hit metadata that matters


# -- --overwrite builds aside ----------------------------------------------------------------------------------------
def test_overwrite_leaves_the_old_store_whole_until_the_new_one_is_complete(photos: Path, tmp_path: Path) -> None:
    """While --overwrite runs, OUT is the old store byte for byte (the new one grows in OUT.partial); an interrupted
    --overwrite is finished by --resume; an --overwrite that would write an empty store is refused."""
    out = tmp_path / "o.h5"
    ingest(photos, out, opts(decode=DecodeOptions(size=(6, 4))))
    old = out.read_bytes()
    src, partial = gated(photos, tmp_path), tmp_path / "o.h5.partial"
    proc = start_gated([str(src), str(out), "--size", "12x8", "--overwrite", "--flush-every", "0"], tmp_path / "gate")
    try:  # the run holds at its last file: every other photo is in the new store
        assert out.read_bytes() == old and imgstore.open(out).shape == (4, 6, 3)
        with imgstore.open(partial) as new:
            assert new.shape == (8, 12, 3) and len(new) == 8
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert out.read_bytes() == old
    report = ingest(src, out, opts(resume=True))
    assert report.total == 8 and not partial.exists()
    assert imgstore.open(out).shape == (8, 12, 3) and imgstore.open(out).complete
    with pytest.raises(OptionError, match="would replace .* with an empty store, so nothing was changed"):
        ingest(photos, out, opts(overwrite=True, extensions="xyz"))
    assert imgstore.open(out).complete


# -- format 1 -----------------------------------------------------------------------------------------------------------
def _v1_store(path: Path, n: int = 5) -> Path:
    """A store as imgstore 0.1 wrote it: no checksums, a literal backslash kept in a name."""
    names = [f"d/{i}.png" for i in range(n - 1)] + ["odd\\name.png"]
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("images", data=np.stack([img(i) for i in range(n)]), chunks=(1, 8, 12, 3),
                         maxshape=(None, 8, 12, 3))  # fmt: skip
        f.create_dataset("image_names", data=names, dtype=h5py.string_dtype(), maxshape=(None,), chunks=(16,))
        for key in ("skipped_names", "skipped_reasons"):
            f.create_dataset(key, data=["bad.png" if key == "skipped_names" else "truncated"],
                             dtype=h5py.string_dtype(), maxshape=(None,), chunks=(16,))  # fmt: skip
        f.attrs.update({"imgstore_format": 1, "count": n, "skipped_count": 1, "complete": True, "size": [12, 8],
                        "channels": 3})  # fmt: skip
    return path


def test_format_1_store_is_upgraded_by_a_whole_copy(tmp_path: Path) -> None:
    """Appending to a format-1 store first copies it into format 2 (checksums, escaped names) and replaces it
    only when whole; its rows, names and skipped list are kept."""
    path = _v1_store(tmp_path / "old.h5")
    with ImageIndexer.reopen(path) as ix:
        ix.add("new.png", img(9))
    s = imgstore.open(path, check=True)
    assert s.format_version == 2 and len(s) == 6
    assert s.names == [f"d/{i}.png" for i in range(4)] + ["odd\\\\name.png", "new.png"]
    assert s.skipped == [("bad.png", "truncated")]
    np.testing.assert_array_equal(s[:], np.stack([img(i) for i in (0, 1, 2, 3, 4, 9)]))
    assert verify_store(path).ok


# -- a write that fails inside HDF5 ---------------------------------------------------------------------------------
# A stand-in for a failing disk: pwrite() to files under $FAIL_UNDER fails with EIO once it reaches $FAIL_AT bytes.
FAILING_DISK = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static int doomed(int fd, off_t end) {
    const char *under = getenv("FAIL_UNDER"), *at = getenv("FAIL_AT");
    char link[64], path[PATH_MAX];
    if (!under || !at) return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return 0;
    path[n] = 0;
    return strncmp(path, under, strlen(under)) == 0 && end > atoll(at);
}
ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (!real) real = dlsym(RTLD_NEXT, "pwrite");
    if (doomed(fd, offset + (off_t)count)) { errno = EIO; return -1; }
    return real(fd, buf, count, offset);
}
ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) { return pwrite(fd, buf, count, offset); }
"""


def _failing_disk(folder: Path) -> Path:
    src = folder / "failing_disk.c"
    src.write_text(FAILING_DISK)
    lib = folder / "failing_disk.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(lib), str(src), "-ldl"], check=True)
    return lib


def test_a_write_failing_inside_hdf5_is_sealed_and_resumed(tmp_path: Path) -> None:
    """An I/O error in the middle of HDF5's writes (which the space reservation cannot prevent): one Error line, no
    crash, the file sealed at once; --resume repairs and completes the store as an uninterrupted run would."""
    lib = _failing_disk(tmp_path)
    many = tmp_path / "many"
    for i in range(120):
        write(many / f"{i:03d}.png", encode(pattern(64, 48, seed=i), "PNG"))
    ref = tmp_path / "ref.h5"
    ingest(many, ref, opts(decode=DecodeOptions(size=32)))
    outs = tmp_path / "outs"
    outs.mkdir()
    failed_midway = 0
    for fail_at in (60_000, 140_000, 220_000, 300_000):
        out = outs / f"o{fail_at}.h5"
        # Commits every 8 images, not by the clock: the whole run takes about as long as one 0.01 s interval now
        # (libspng decodes these PNGs in ~80 us each), which left every failure before the first commit.
        cmd = [sys.executable, "-m", "imgstore", "ingest", str(many), str(out), "--size", "32", "-q",
               "--flush-every", "0.01", "--buffer-size", "8", "--workers", "0"]  # fmt: skip
        env = {**os.environ, "LD_PRELOAD": str(lib), "FAIL_UNDER": str(out.parent), "FAIL_AT": str(fail_at)}
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1 and "Input/output error" in lines[0], done.stderr[-800:]
        failed_midway += "keeps the 0 images" not in lines[0]
        resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
        a, b = imgstore.open(out), imgstore.open(ref)
        assert a.complete and a.names == b.names and a.sha256 == b.sha256
        np.testing.assert_array_equal(a[:], b[:])
    assert failed_midway  # some failures came after rows were committed


# -- readers ------------------------------------------------------------------------------------------------------------
def test_imgstore_and_plain_h5py_readers_coexist(photos: Path, tmp_path: Path) -> None:
    """imgstore.open and h5py.File(path, "r") on the same file in one process, in either order."""
    out = tmp_path / "o.h5"
    ingest(photos, out, opts())
    with h5py.File(out, "r") as f:
        s = imgstore.open(out)
        assert len(s) == int(f.attrs["count"]) == 8
        s.close()
    s = imgstore.open(out)
    len(s.names)
    with h5py.File(out, "r") as f:
        assert f["images"].shape[0] == len(s)
    s.close()


# -- temporary files --------------------------------------------------------------------------------------------------
def test_a_later_run_removes_what_a_killed_one_left(photos: Path, tmp_path: Path) -> None:
    """Temporary files of killed export, ingest and merge runs are removed by the next run writing that output."""
    out = tmp_path / "o.h5"
    (tmp_path / ".o.h5.tmp-0badc0de").write_bytes(b"x" * 1000)  # a killed ingest's store under construction
    ingest(photos, out, opts())
    vec = tmp_path / "v.u8bin"
    stale = [tmp_path / ".v.u8bin.tmp-12345678", tmp_path / ".v.u8bin.names.txt.tmp-12345678"]
    for p in stale:
        p.write_bytes(b"half a file")
    export_vectors(out, vec)
    left = sorted(p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or p.name.endswith(".lock"))
    assert left == []


def test_export_killed_midway_leaves_nothing_after_the_next_run(tmp_path: Path) -> None:
    """kill -9 of a real export while it writes; the next export of the same output cleans up and succeeds."""
    big = tmp_path / "big.h5"
    with ImageIndexer(big, size=(256, 256), labels=False, sha256=False) as ix:
        block = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
        for i in range(600):
            ix.add(f"{i}", block)
    vec = tmp_path / "v.fvecs"
    proc = subprocess.Popen([sys.executable, "-m", "imgstore", "export", str(big), str(vec), "-q"])
    while not any(".tmp-" in p.name for p in tmp_path.iterdir()) and proc.poll() is None:
        time.sleep(0.001)
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed while it wrote, not after it finished
    assert any(".tmp-" in p.name for p in tmp_path.iterdir())
    done = subprocess.run([sys.executable, "-m", "imgstore", "export", str(big), str(vec), "-q", "--overwrite"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.h5", "v.fvecs", "v.fvecs.names.txt"]


def test_other_names_of_the_store_share_its_lock(tmp_path: Path) -> None:
    """A symlink or a hard link to a store being written is the same store: a writer through it is refused."""
    out = tmp_path / "s.h5"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        (tmp_path / "via-symlink.h5").symlink_to(out)
        os.link(out, tmp_path / "via-hardlink.h5")
        (tmp_path / "sub").symlink_to(tmp_path, target_is_directory=True)
        for other in ("via-symlink.h5", "via-hardlink.h5", "sub/s.h5"):
            with pytest.raises(StoreBusyError, match=f"pid {holder.pid}"):
                ImageIndexer.reopen(tmp_path / other)
    finally:
        holder.kill()
        holder.wait()


def test_one_indexer_per_store_in_a_process(tmp_path: Path) -> None:
    """Two ImageIndexers on one store in the same process would overwrite each other's rows: the second is refused."""
    path = tmp_path / "s.h5"
    with ImageIndexer(path, size=(12, 8), labels=False, sha256=False) as ix:
        ix.add("a", img(1))
    first = ImageIndexer.reopen(path, flush_every=0)
    try:
        with pytest.raises(StoreBusyError, match="another ImageIndexer of this process"):
            ImageIndexer.reopen(path)
        first.add("b", img(2))
    finally:
        first.close()
    with ImageIndexer.reopen(path) as again:  # free again once closed
        again.add("c", img(3))
    assert imgstore.open(path).names == ["a", "b", "c"]


def test_new_classes_on_append_rewrite_the_store_by_a_copy(tmp_path: Path) -> None:
    """class_names cannot grow in place in SWMR mode: an --append that brings new classes copies the store with the
    longer list (replacing it when whole); rows, labels and names are kept."""
    src = tmp_path / "src"
    for cls in ("cat", "dog"):
        write(src / cls / "1.png", encode(pattern(24, 16, seed=len(cls)), "PNG"))
    out = tmp_path / "o.h5"
    ingest(src, out, opts(labels="folder"))
    write(src / "ant" / "1.png", encode(pattern(24, 16, seed=9), "PNG"))
    ingest(src, out, opts(labels="folder", append=True))
    s = imgstore.open(out, check=True)
    assert s.class_names == ["cat", "dog", "ant"] and s.names == ["cat/1.png", "dog/1.png", "ant/1.png"]
    assert [s.class_names[i] for i in s.labels] == ["cat", "dog", "ant"] and verify_store(out).ok


def test_an_indexer_dropped_without_close_releases_its_lock(tmp_path: Path) -> None:
    """An ImageIndexer garbage-collected without close() frees the store for the next writer."""
    import gc

    path = tmp_path / "s.h5"
    ix = ImageIndexer(path, size=(12, 8), labels=False, sha256=False, flush_every=0)
    ix.add("a", img(1))
    del ix
    gc.collect()
    assert not lock_path(path).exists()
    with ImageIndexer.reopen(path) as again:
        again.add("b", img(2))
    assert imgstore.open(path).names == ["a", "b"]


def test_resume_finishes_an_overwrite_killed_before_its_rename(photos: Path, tmp_path: Path) -> None:
    """A complete OUT.partial (killed between its last commit and the rename) is put in place by --resume."""
    out = tmp_path / "o.h5"
    ingest(photos, out, opts(decode=DecodeOptions(size=(6, 4))))
    partial = tmp_path / "o.h5.partial"
    ingest(photos, partial, opts())  # what the --overwrite had finished
    report = ingest(photos, out, opts(resume=True))
    assert report.published and "finished the interrupted --overwrite" in report.summary
    assert not partial.exists() and imgstore.open(out).shape == (8, 12, 3) and imgstore.open(out).complete


def test_a_signal_landing_in_a_finalizer_still_stops_the_run_without_a_traceback() -> None:
    """Python runs finalizers (a generator closed by the collector, ``__del__``) wherever the main thread happens to
    be, and an exception raised inside one is printed as "Exception ignored ..." with a traceback and then dropped.
    A Ctrl-C that landed there once printed ``imgstore.signals.Interrupted: 2`` under a traceback and was lost, the
    run going on to the end (1 of 204 SIGINTs in the crash matrix's encoded --resume cells). Under
    graceful_signals such a signal is delivered again, outside the finalizer: the block still ends with Interrupted,
    and nothing is printed."""
    code = r"""
import gc, os, signal, sys, time
from imgstore import signals

def finalizing():
    try:
        yield 1
    finally:  # runs when the collector closes the generator below
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(200):  # the handler runs here, inside the finalizer
            time.sleep(0.001)

class Cycle:
    pass

try:
    with signals.graceful_signals():
        c = Cycle(); c.me = c; c.gen = finalizing(); next(c.gen); del c
        gc.collect()  # closes the generator: the signal lands in its finally
        for _ in range(500):
            time.sleep(0.001)
    print("not interrupted")
except signals.Interrupted as exc:
    print("interrupted", exc.signum)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == f"interrupted {int(signal.SIGINT)}", (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
