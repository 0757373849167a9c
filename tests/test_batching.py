"""Batched hand-offs in the decode pool: many cheap files per task message, with results, isolation, timeouts and
codec text still per file."""

from __future__ import annotations

import os
import signal
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from imgstore.decoders import register_decoder, unregister_decoder
from imgstore.errors import BadImageError, NotRecognised
from imgstore.ingest import ingest
from imgstore.options import DecodeOptions, IngestOptions
from imgstore.pool import MAX_BATCH, DecodePool
from imgstore.sources.folder import FolderSource
from imgstore.store.reader import open_store

from conftest import encode, pattern, write


class ScriptedDecoder:
    """First in the chain, driven by the file's first bytes: CRASH segfaults, EXIT ends the process, HANG sleeps
    for ever, SLOW sleeps 0.3 s then lets the next decoder fail the file, NOISY prints to fd 2 and warns, then fails
    the file ``noisy N``. Anything else goes on to the next decoder."""

    name = "scripted"
    extensions: tuple[str, ...] = ()

    def decode(self, data: bytes, opts: DecodeOptions, out: np.ndarray) -> None:
        if data.startswith(b"CRASH"):
            os.kill(os.getpid(), signal.SIGSEGV)
        if data.startswith(b"EXIT"):
            os._exit(3)
        if data.startswith(b"HANG"):
            time.sleep(600)
        if data.startswith(b"SLOW"):
            time.sleep(0.3)
        if data.startswith(b"NOISY"):
            n = data[5:].decode()
            os.write(2, f"codec stderr for {n}\n".encode())
            warnings.warn(f"codec warning for {n}", stacklevel=1)
            raise BadImageError(f"noisy {n}")
        raise NotRecognised("")


@pytest.fixture
def scripted() -> Iterator[None]:
    """The scripted decoder first in the chain, for this test only (the pool sends the chain to every worker)."""
    register_decoder(ScriptedDecoder(), first=True)
    try:
        yield
    finally:
        unregister_decoder("scripted")


def _tiny_folder(root: Path, n: int, special: dict[int, bytes] | None = None) -> list[str]:
    """``n`` 12x10 PNGs named 0000.png..., file i replaced by ``special[i]``; their full paths, in order."""
    paths = []
    for i in range(n):
        data = (special or {}).get(i) or encode(pattern(12, 10, seed=i), "PNG")
        paths.append(str(write(root / f"{i:04d}.png", data)))
    return paths


def _decode_all(paths: list[str], root: Path, workers: int = 2, timeout: float = 60.0) -> tuple[list, DecodePool]:
    opts = DecodeOptions(size=8)
    with DecodePool(opts, workers, timeout, source=FolderSource(str(root))) as pool:
        got = [(d.index, d.reason, None if d.image is None else d.image.copy()) for d in pool.imap(paths)]
    return got, pool


def test_cheap_files_travel_many_to_a_message(tmp_path: Path) -> None:
    """On hundreds of tiny PNGs the batch grows from 1: far fewer task messages than files, each result in order."""
    paths = _tiny_folder(tmp_path, 400)
    got, pool = _decode_all(paths, tmp_path)
    assert [i for i, _, _ in got] == list(range(400))
    assert all(reason is None for _, reason, _ in got)
    assert pool.files_sent == 400
    assert pool.messages <= 400 / 4  # measured: ~20 (batches of up to MAX_BATCH)
    assert pool.messages >= 400 / MAX_BATCH


def test_workers_0_to_3_give_identical_stores(tmp_path: Path) -> None:
    """A few hundred tiny PNGs mixed with larger JPEGs and bad files: the same store, byte for byte in its rows,
    names, digests and skipped list, whatever the number of workers."""
    src = tmp_path / "src"
    special: dict[int, bytes] = {}
    for i in range(7, 300, 37):
        special[i] = encode(pattern(640, 480, seed=i), "JPEG", quality=90)
    special[50] = b"not an image at all"
    special[51] = encode(pattern(12, 10), "PNG")[:60]  # truncated
    special[120] = encode(pattern(300, 200), "JPEG")[:900]  # truncated JPEG
    _tiny_folder(src, 300, special)
    write(src / "0100.png", b"")  # empty (replaces file 100)
    stores = {}
    for workers in (0, 1, 2, 3):
        out = tmp_path / f"w{workers}.h5"
        report = ingest(src, out, IngestOptions(decode=DecodeOptions(size=16), workers=workers))
        # Each stored file's decoder path comes back through its batch: the PNGs by libspng, the 8 good 640x480
        # JPEGs by Pillow with the SIMD resize.
        assert report.paths == {"spng": 300 - 4 - 8, "pillow+simd": 8}
        stores[workers] = open_store(out)
    first = stores[0]
    assert len(first) == 300 - 4 and len(first.skipped) == 4
    for workers in (1, 2, 3):
        other = stores[workers]
        assert other.names == first.names
        assert other.skipped == first.skipped
        assert other.sha256 == first.sha256
        np.testing.assert_array_equal(other[:], first[:])


def test_encoded_rows_through_batches_match_in_process(tmp_path: Path) -> None:
    """Flat rows (PNG-encoded, of their own shapes) come through batched workers as they do in process, large
    rows travelling in the answer included."""
    src = tmp_path / "src"
    special = {i: encode(pattern(900, 700, seed=i), "JPEG") for i in (5, 77, 150)}
    _tiny_folder(src, 160, special)
    for workers in (0, 2):
        opts = IngestOptions(decode=DecodeOptions(size=32, resize_mode="none"), workers=workers, encode="png")
        ingest(src, tmp_path / f"w{workers}.h5", opts)
    a, b = open_store(tmp_path / "w0.h5"), open_store(tmp_path / "w2.h5")
    assert a.names == b.names and len(a) == 160
    for i in range(len(a)):
        np.testing.assert_array_equal(a[i], b[i])


@pytest.mark.usefixtures("scripted")
@pytest.mark.parametrize("kind, reason", [(b"CRASH", "decoder crashed (SIGSEGV)"), (b"EXIT", "decoder crashed (exit code 3)")])
def test_a_crash_inside_a_batch_costs_only_that_file(tmp_path: Path, kind: bytes, reason: str) -> None:
    """Files that kill their worker in the middle of batches (the batch size has grown by then) are the only
    ones lost; the files batched with them, before and after, are decoded again and stored."""
    special = {250: kind, 251: kind, 330: kind}
    paths = _tiny_folder(tmp_path, 400, special)
    got, pool = _decode_all(paths, tmp_path)
    assert [i for i, _, _ in got] == list(range(400))
    assert {i: r for i, r, _ in got if r is not None} == dict.fromkeys(special, reason)
    assert pool.messages < 100  # the crashes happened inside batches, not one file per message
    expected, _ = _decode_all([p for i, p in enumerate(paths) if i not in special], tmp_path, workers=1)
    stored = [image for i, _, image in got if i not in special]
    for (_, _, want), image in zip(expected, stored):
        np.testing.assert_array_equal(image, want)


@pytest.mark.usefixtures("scripted")
def test_a_hang_inside_a_batch_times_out_alone_and_on_time(tmp_path: Path) -> None:
    """A file that hangs in the middle of a batch is recorded as timed out about `timeout` seconds after it
    started (not after its batch started, nor twice the timeout); the rest of its batch is stored."""
    paths = _tiny_folder(tmp_path, 300, {200: b"HANG"})
    start = time.monotonic()
    got, _ = _decode_all(paths, tmp_path, timeout=3)
    took = time.monotonic() - start
    assert {i: r for i, r, _ in got if r is not None} == {200: "timed out after 3 s"}
    assert took < 3 + 2.5  # one timeout, plus starting the pool and decoding 300 tiny files (not 2 timeouts)


@pytest.mark.usefixtures("scripted")
def test_a_batch_of_slow_files_is_not_timed_out(tmp_path: Path) -> None:
    """The timeout is per file: six files of 0.3 s each, batched together after many cheap ones (1.8 s for the
    batch), pass a 1 s timeout."""
    slow = {i: b"SLOW" for i in range(200, 206)}
    paths = _tiny_folder(tmp_path, 260, slow)
    got, _ = _decode_all(paths, tmp_path, workers=1, timeout=1.0)
    reasons = {i: r for i, r, _ in got if r is not None}
    assert set(reasons) == set(slow)  # the files themselves fail (not an image), after their 0.3 s
    assert not any("timed out" in r for r in reasons.values())


@pytest.mark.usefixtures("scripted")
def test_codec_text_lands_in_its_own_files_reason(tmp_path: Path) -> None:
    """What a codec prints or warns during one file of a batch ends that file's reason, and no other file's."""
    noisy = {i: b"NOISY%d" % i for i in (150, 151, 180)}
    paths = _tiny_folder(tmp_path, 260, noisy)
    got, pool = _decode_all(paths, tmp_path)
    reasons = {i: r for i, r, _ in got if r is not None}
    assert set(reasons) == set(noisy)
    for i in noisy:
        assert reasons[i] == f"noisy {i} (codec stderr for {i}; codec warning for {i})"
    assert pool.messages < 100


def test_parent_read_files_travel_in_batches_with_their_bytes() -> None:
    """Files the source asks the parent to read go in batches with their bytes, mixed with files the workers
    read; a parent read that fails is that file's outcome; everything comes out in order as decoded in process."""
    from test_pool import SplitSource

    from imgstore.pool import decode_in_process

    source = SplitSource(os.getpid())
    keys = [("p:bad" if i % 97 == 5 else f"p:{i}") if i % 3 else f"w:{i}" for i in range(300)]
    opts = DecodeOptions(size=(10, 8))
    with DecodePool(opts, workers=2, source=source) as pool:
        got = [(d.index, d.reason, None if d.image is None else d.image.copy()) for d in pool.imap(keys)]
    assert pool.messages < 100
    assert [i for i, _, _ in got] == list(range(300))
    assert [i for i, r, _ in got if r is not None] == [i for i, k in enumerate(keys) if k == "p:bad"]
    assert all(r == "unreadable: gone" for _, r, _ in got if r is not None)
    local = SplitSource(-1)  # here every "w:" key reads, and source reads every "p:" key
    for (_, reason, image), key in zip(got, keys):
        if reason is None:
            want = next(iter(decode_in_process(local if key.startswith("w") else source, [key], opts))).image
            assert want is not None
            np.testing.assert_array_equal(image, want)
