"""The ingest pipeline end to end on generated photo corpora: every good image stored, every bad one named."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image, ImageOps

from imgstore import pool as pool_mod
from imgstore.decoders import register_decoder, unregister_decoder
from imgstore.errors import NotRecognised, OptionError, OutputExistsError, SourceError
from imgstore.ingest import ingest
from imgstore.options import DecodeOptions, IngestOptions
from imgstore.pool import DecodePool
from imgstore.samples import SampleManifest, make_photo, write_sample_corpus
from imgstore.sources.folder import FolderSource
from imgstore.store.reader import open_store

from conftest import encode, pattern, write

EXPECTED_REASON = {
    "truncated": "truncated JPEG",
    "empty": "empty file",
    "not an image": "not an image",
    "decompression bomb": "decompression bomb",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> SampleManifest:
    """The sample corpus: 3 classes of photos plus every odd and bad file the samples module makes."""
    return write_sample_corpus(tmp_path_factory.mktemp("corpus"), per_class=4)


@pytest.fixture(scope="module")
def stores(corpus: SampleManifest, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """The corpus ingested with 0 (in-process), 1 and 2 workers."""
    out = tmp_path_factory.mktemp("stores")
    paths = {}
    for workers in (0, 1, 2):
        paths[workers] = out / f"w{workers}.h5"
        ingest(corpus.root, paths[workers], IngestOptions(decode=DecodeOptions(size=(64, 48)), workers=workers))
    return paths


def test_every_good_image_stored_every_bad_one_named(corpus: SampleManifest, stores: dict[int, Path]) -> None:
    """Good files are stored (hidden ones not), bad files are skipped with the right reason."""
    store = open_store(stores[2])
    assert sorted(store.names) == sorted(corpus.good)
    assert not set(store.names) & set(corpus.hidden)
    assert len(store) == len(corpus.good) and store.complete
    skipped = dict(store.skipped)
    assert sorted(skipped) == sorted(corpus.bad)
    for name, category in corpus.bad.items():
        assert skipped[name].startswith(EXPECTED_REASON[category]), (name, skipped[name])


def test_store_order_is_sorted_paths(stores: dict[int, Path]) -> None:
    """Rows follow the sorted relative paths (deterministic order)."""
    names = open_store(stores[2]).names
    utf8 = [n for n in names if "\\x" not in n]
    assert utf8 == sorted(utf8)


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_give_identical_stores(stores: dict[int, Path], workers: int) -> None:
    """Same names, pixels, digests and skipped list, byte for byte, for 0, 1 and 2 workers."""
    a, b = open_store(stores[0]), open_store(stores[workers])
    assert a.names == b.names and a.skipped == b.skipped and a.sha256 == b.sha256
    np.testing.assert_array_equal(a[:], b[:])


def test_exif_oriented_photos_come_out_upright(corpus: SampleManifest, stores: dict[int, Path]) -> None:
    """Each EXIF-rotated JPEG (orientations 1-8) matches its upright original, crop-resized."""
    store = open_store(stores[0])
    row = {n: i for i, n in enumerate(store.names)}
    assert sorted(corpus.orientation.values()) == list(range(1, 9))
    for name in corpus.orientation:
        upright = make_photo(*corpus.reference[name])
        expected = np.asarray(ImageOps.fit(upright, (64, 48), Image.Resampling.BICUBIC)).astype(int)
        assert np.abs(store[row[name]].astype(int) - expected).mean() < 8, name


def test_sha256_matches_source_files(corpus: SampleManifest, stores: dict[int, Path]) -> None:
    """The stored digest of each row is the SHA-256 of its source file's bytes."""
    import hashlib

    store = open_store(stores[1])
    for name, digest in zip(store.names, store.sha256 or []):
        assert hashlib.sha256(corpus.paths[name].read_bytes()).hexdigest() == digest


def test_store_attributes(corpus: SampleManifest, stores: dict[int, Path]) -> None:
    """size [W, H], channels, resize_mode, source and the format version are recorded."""
    attrs = open_store(stores[0]).attrs
    assert attrs["size"] == [64, 48] and attrs["channels"] == 3 and attrs["resize_mode"] == "crop"
    assert attrs["source"] == str(corpus.root) and attrs["imgstore_format"] == 2 and attrs["complete"]


def test_grayscale_store(corpus: SampleManifest, tmp_path: Path) -> None:
    """--channels 1 gives (N, H, W, 1) luminance."""
    out = tmp_path / "g.h5"
    ingest(corpus.root, out, IngestOptions(decode=DecodeOptions(size=32, channels=1), workers=0))
    with h5py.File(out) as f:
        assert f["images"].shape == (len(corpus.good), 32, 32, 1)


def test_existing_output_refused_and_untouched(corpus: SampleManifest, tmp_path: Path) -> None:
    """An existing OUT is refused before any work, and its bytes are unchanged."""
    out = tmp_path / "o.h5"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        ingest(corpus.root, out, IngestOptions(workers=0))
    assert out.read_bytes() == b"keep me"
    ingest(corpus.root, out, IngestOptions(workers=0, overwrite=True, decode=DecodeOptions(size=16)))
    assert len(open_store(out)) == len(corpus.good)


def test_missing_source_writes_nothing(tmp_path: Path) -> None:
    """A missing SRC is a SourceError and no output file appears."""
    with pytest.raises(SourceError):
        ingest(tmp_path / "nope", tmp_path / "o.h5", IngestOptions(workers=0))
    assert not (tmp_path / "o.h5").exists()


def test_output_folder_missing(corpus: SampleManifest, tmp_path: Path) -> None:
    """An OUT in a folder that does not exist is a clear error."""
    with pytest.raises(OptionError, match="does not exist"):
        ingest(corpus.root, tmp_path / "no" / "o.h5", IngestOptions(workers=0))


def test_interrupt_leaves_readable_incomplete_store(corpus: SampleManifest, stores: dict[int, Path], tmp_path: Path) -> None:
    """Ctrl-C in the middle: every image flushed so far is readable, complete is false, and the rows are the
    uninterrupted run's first rows."""
    out = tmp_path / "i.h5"
    seen = []

    def progress(n: int) -> None:
        seen.append(n)
        if len(seen) == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest(corpus.root, out, IngestOptions(workers=2, buffer_size=3, decode=DecodeOptions(size=16)), progress=progress)
    store = open_store(out)
    assert not store.complete and 1 <= len(store) <= 10
    assert store.names == open_store(stores[2]).names[: len(store)]
    assert store[len(store) - 1].shape == (16, 16, 3)


def test_unreadable_file_is_skipped(tmp_path: Path) -> None:
    """A file that cannot be read (I/O error) is recorded with the OS reason."""
    src = tmp_path / "src"
    write(src / "ok.png", encode(pattern(20, 20), "PNG"))
    os.symlink("/proc/self/mem", src / "mem.jpg")  # a regular file whose read() fails with EIO
    report = ingest(src, tmp_path / "o.h5", IngestOptions(workers=0, decode=DecodeOptions(size=8)))
    assert report.count == 1
    assert report.skipped == [("mem.jpg", "unreadable: Input/output error")]


def _odd_bytes(rng: random.Random, i: int) -> tuple[str, bytes]:
    """A file from a zoo of broken and odd inputs: junk after real headers, truncations, real odd images."""
    base = pattern(rng.randint(1, 90), rng.randint(1, 90), seed=i)
    kind = i % 12
    if kind == 0:
        return "jpg", bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 400)))
    if kind == 1:
        data = encode(base, "JPEG")
        return "jpg", data[: rng.randint(0, len(data))]
    if kind == 2:
        data = encode(base, "PNG")
        return "png", data[: rng.randint(0, len(data))]
    if kind == 3:
        head = rng.choice([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"II*\x00", b"MM\x00*", b"BM", b"RIFF\x00\x00\x00\x00WEBP"])
        return rng.choice(["png", "jpg", "gif", "tif", "bmp", "webp"]), head + bytes(rng.getrandbits(8) for _ in range(200))
    if kind == 4:
        data = bytearray(encode(base, "JPEG"))
        for _ in range(10):
            data[rng.randrange(len(data))] = rng.getrandbits(8)
        return "jpg", bytes(data)
    if kind == 5:
        if rng.random() < 0.3:  # 16-bit grayscale
            return "png", encode(Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257), "PNG")
        return "png", encode(base.convert(rng.choice(["L", "1", "P", "RGBA", "LA"])), "PNG")
    if kind == 6:
        return "tif", encode(base.convert(rng.choice(["L", "RGB", "CMYK", "I", "F", "1"])), "TIFF")
    if kind == 7:
        return "gif", encode(base.convert("P"), "GIF")
    if kind == 8:
        return "webp", encode(base, "WEBP")
    if kind == 9:
        return "bmp", encode(base, "BMP")
    if kind == 10:
        exif = Image.Exif()
        exif[0x0112] = rng.choice([0, 1, 3, 6, 8, 9, 65535])
        return "jpg", encode(base, "JPEG", exif=exif.tobytes())
    return "jpg", encode(base.convert("CMYK"), "JPEG")


def test_hundreds_of_odd_files_never_crash(tmp_path: Path) -> None:
    """300 odd, broken and real files: the run finishes and every file is stored or named as skipped."""
    rng = random.Random(1234)
    src = tmp_path / "zoo"
    for i in range(300):
        ext, data = _odd_bytes(rng, i)
        write(src / f"d{i % 7}" / f"f{i:03d}.{ext}", data)
    report = ingest(src, tmp_path / "zoo.h5", IngestOptions(workers=2, decode=DecodeOptions(size=24)))
    assert report.count + len(report.skipped) == 300
    assert report.count > 100
    store = open_store(tmp_path / "zoo.h5")
    assert len(store) == report.count and len(store.skipped) == len(report.skipped)
    assert all(reason and "\n" not in reason for _, reason in store.skipped)


# -- isolation: hung and crashing decoders ------------------------------------------------------------------------
class SabotageDecoder:
    """A decoder registered through the public API, first in the chain: it hangs on data starting HANG and
    segfaults on CRASH, and passes everything else to the next decoder."""

    name = "sabotage"
    extensions: tuple[str, ...] = ()

    def decode(self, data: bytes, opts: DecodeOptions, out: np.ndarray) -> None:
        if data.startswith(b"HANG"):
            time.sleep(600)
        if data.startswith(b"CRASH"):
            os.kill(os.getpid(), signal.SIGSEGV)
        raise NotRecognised("not sabotaged")


@pytest.fixture
def sabotaged() -> Iterator[None]:
    """Workers hang on files starting HANG and segfault on CRASH (the registered chain reaches every worker)."""
    register_decoder(SabotageDecoder(), first=True)
    try:
        yield
    finally:
        unregister_decoder("sabotage")


def _mixed_folder(root: Path) -> list[str]:
    names = []
    for i in range(12):
        name = f"{i:02d}.png"
        if i == 3:
            write(root / name, b"HANG" + b"\x00" * 10)
        elif i in (5, 9):
            write(root / name, b"CRASH")
        else:
            write(root / name, encode(pattern(16, 16, seed=i), "PNG"))
        names.append(name)
    return names


@pytest.mark.usefixtures("sabotaged")
def test_hung_and_crashed_decodes_cost_only_their_file(tmp_path: Path) -> None:
    """A decoder that hangs is killed after the timeout, one that segfaults is replaced; only those files are lost."""
    _mixed_folder(tmp_path / "src")
    report = ingest(tmp_path / "src", tmp_path / "o.h5", IngestOptions(workers=2, timeout=1.5, decode=DecodeOptions(size=8)))
    assert report.count == 9
    assert dict(report.skipped) == {
        "03.png": "timed out after 1.5 s",
        "05.png": "decoder crashed (SIGSEGV)",
        "09.png": "decoder crashed (SIGSEGV)",
    }
    store = open_store(tmp_path / "o.h5")
    assert store.names == [f"{i:02d}.png" for i in range(12) if i not in (3, 5, 9)]


@pytest.mark.usefixtures("sabotaged")
def test_crashes_give_the_same_store_for_any_worker_count(tmp_path: Path) -> None:
    """With crashing files, 1 and 2 workers still produce identical stores."""
    _mixed_folder(tmp_path / "src")
    (tmp_path / "src" / "03.png").write_bytes(b"CRASH")
    for w in (1, 2):
        ingest(tmp_path / "src", tmp_path / f"{w}.h5", IngestOptions(workers=w, decode=DecodeOptions(size=8)))
    a, b = open_store(tmp_path / "1.h5"), open_store(tmp_path / "2.h5")
    assert a.names == b.names and a.skipped == b.skipped
    np.testing.assert_array_equal(a[:], b[:])


def test_in_flight_images_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """However slow the consumer, no more than `slots` files are dispatched ahead of it (bounded memory)."""
    paths = []
    for i in range(60):
        paths.append(str(write(tmp_path / f"{i}.png", encode(pattern(8, 8, seed=i), "PNG"))))
    sent = []
    real_send = pool_mod._Worker.send

    def counting_send(self, seq, slot, path, data=None):  # type: ignore[no-untyped-def]
        sent.append(seq)
        return real_send(self, seq, slot, path, data)

    monkeypatch.setattr(pool_mod._Worker, "send", counting_send)
    ahead = []
    with DecodePool(DecodeOptions(size=8), workers=2, slots=5, source=FolderSource(str(tmp_path))) as pool:
        for item in pool.imap(paths):
            ahead.append(len(sent) - item.index)
            time.sleep(0.002)
    assert max(ahead) <= 5
    assert len(sent) == 60


def test_pool_reports_workers_that_cannot_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers that die before decoding anything raise a WorkerError instead of skipping every file."""
    for i in range(20):
        write(tmp_path / f"{i}.png", encode(pattern(8, 8), "PNG"))
    monkeypatch.setattr(pool_mod, "_start_method", lambda: "fork")
    monkeypatch.setattr(pool_mod, "_worker_main", lambda *a: os._exit(3))
    with pytest.raises(pool_mod.WorkerError, match="--workers 0"):
        ingest(tmp_path, tmp_path / "o.h5", IngestOptions(workers=2, decode=DecodeOptions(size=8)))


@pytest.mark.usefixtures("sabotaged")
def test_rows_before_a_slow_file_are_committed_while_it_decodes(tmp_path: Path) -> None:
    """A file that takes long to decode does not hold back the rows before it: within flush_every seconds of
    the wait they are committed, so a kill during the wait loses none of them."""
    import subprocess
    import sys
    import threading

    src = tmp_path / "src"
    for i in range(7):
        data = b"HANG" + b"\x00" * 10 if i == 3 else encode(pattern(16, 16, seed=i), "PNG")
        write(src / f"{i:02d}.png", data)
    out = tmp_path / "o.h5"
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:  # another process reads the store, as a user's `imgstore info` would
        code = "import imgstore, sys; print(len(imgstore.open(sys.argv[1])))"
        while not done.is_set():
            if out.exists():
                r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
                if r.returncode == 0:
                    seen.append(int(r.stdout))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        report = ingest(src, out, IngestOptions(workers=2, timeout=4, flush_every=0.2, decode=DecodeOptions(size=8)))
    finally:
        done.set()
        watcher.join()
    assert report.skipped == [("03.png", "timed out after 4 s")]
    assert 3 in seen  # the three rows before the hung file, committed while it was still decoding
