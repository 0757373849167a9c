"""The write path of flat stores (format 4) under an adversarial review: what ImageIndexer accepts, what a copy
(upgrade) reads at a time, and rows every encoding writes being readable in every channel count."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import imgstore
import imgstore.store.encoding
import imgstore.store.file
from imgstore.errors import OptionError
from imgstore.ingest import ingest
from imgstore.options import DecodeOptions, IngestOptions
from imgstore.store.file import upgrade
from imgstore.store.verify import verify_store
from imgstore.store.writer import ImageIndexer
from tests.conftest import encode, pattern, write


def gray(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.asarray(pattern(w, h, seed=seed).convert("L"))[:, :, None]


@pytest.mark.parametrize("encoding", ["none", "png", "jpeg", "webp"])
def test_grayscale_rows_of_every_encoding_read_back(tmp_path: Path, encoding: str) -> None:
    """channels=1 in every encoding: each row decodes to (H, W, 1), close to what was added (WebP has no grayscale
    mode: Pillow stores the row as RGB, which must come back as one channel)."""
    out = tmp_path / "g.h5"
    images = [gray(40, 56, 1), gray(33, 20, 2)]
    with ImageIndexer(out, channels=1, encoding=encoding, variable=True) as ix:
        for i, im in enumerate(images):
            ix.add(f"{i}.png", im)
    with imgstore.open(out, check=True) as s:
        for i, im in enumerate(images):
            row = s[i]
            assert row.shape == im.shape and row.dtype == np.uint8
            assert np.abs(row.astype(int) - im.astype(int)).mean() < 8
    report = verify_store(out, decode=True)
    assert report.ok, report.problems


def test_ingest_channels_1_encode_webp_verifies_decoded(tmp_path: Path) -> None:
    """The CLI path: ingest --channels 1 --encode webp makes a store whose every row decodes (verify --decode)."""
    root = tmp_path / "photos"
    for i in range(4):
        write(root / f"{i}.png", encode(pattern(60 + 10 * i, 50, seed=i), "PNG"))
    out = tmp_path / "g.h5"
    ingest(root, out, IngestOptions(decode=DecodeOptions(size=(32, 32), channels=1), encode="webp", workers=0))
    report = verify_store(out, decode=True)
    assert report.ok, report.problems
    with imgstore.open(out) as s:
        assert len(s) == 4 and s[0].shape == (32, 32, 1)


def test_add_encoded_refuses_raw_rows_whose_length_is_not_their_shape(tmp_path: Path) -> None:
    """encoding "none": the stored bytes are the pixels, so their length must be H*W*C; a uint16 array, or bytes of
    another shape, would commit a row no reader can use (with a checksum that matches it). An encoded row of no
    bytes is refused too."""
    out = tmp_path / "raw.h5"
    with ImageIndexer(out, encoding="none", variable=True) as ix:
        with pytest.raises(OptionError, match="96 bytes"):
            ix.add_encoded("wide.png", np.zeros((4, 4, 3), np.uint16), (4, 4, 3))
        with pytest.raises(OptionError, match="47 bytes"):
            ix.add_encoded("short.png", b"\0" * 47, (4, 4, 3))
        ix.add_encoded("ok.png", np.arange(48, dtype=np.uint8), (4, 4, 3))
    with imgstore.open(out, check=True) as s:
        assert len(s) == 1 and s[0].reshape(-1).tolist() == list(range(48))
    with ImageIndexer(tmp_path / "j.h5", encoding="jpeg", variable=True) as ix:
        with pytest.raises(OptionError, match="no bytes"):
            ix.add_encoded("empty.jpg", b"", (4, 4, 3))
        ix.add("ok.png", np.zeros((4, 4, 3), np.uint8))
    with imgstore.open(tmp_path / "j.h5", check=True) as s:
        assert len(s) == 1 and s[0].shape == (4, 4, 3)


def test_a_fixed_encoded_store_created_without_a_size_keeps_one_shape(tmp_path: Path) -> None:
    """A fixed-shape (not variable) encoded store closed before its first row has no ``size``: the first row
    appended sets it, and a later append of another shape is refused as for any fixed store."""
    out = tmp_path / "fixed.h5"
    ImageIndexer(out, encoding="jpeg").close()
    with ImageIndexer.reopen(out) as ix:
        ix.add("a.png", np.zeros((8, 8, 3), np.uint8))
    with ImageIndexer.reopen(out) as ix:
        with pytest.raises(OptionError, match="the store holds"):
            ix.add("b.png", np.zeros((16, 4, 3), np.uint8))
        ix.add("c.png", np.zeros((8, 8, 3), np.uint8))
    with imgstore.open(out, check=True) as s:
        assert len(s) == 2 and {s[i].shape for i in range(2)} == {(8, 8, 3)}


def test_upgrade_of_a_flat_store_copies_bounded_spans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy into the current layout (e.g. appending a new class) reads a flat store a bounded number of bytes at a
    time, not 4096 rows at once (rows kept at full size would need gigabytes): each read is at most the budget, or
    one row; the copy equals the original."""
    out = tmp_path / "big.h5"
    rows = [np.full((200, 300, 3), i, np.uint8) for i in range(12)]  # 180 kB each as raw rows
    with ImageIndexer(out, encoding="none", variable=True, labels=True, attrs={"class_names": ["a"]}) as ix:
        for i, im in enumerate(rows):
            ix.add(f"{i}.png", im, label=0)
    reads: list[int] = []
    real = imgstore.store.file.read_flat

    def spy(f: h5py.File, a: int, b: int) -> imgstore.store.file.FlatRows:
        got = real(f, a, b)
        reads.append(int(got.data.size) if b - a > 1 else 0)
        return got

    monkeypatch.setattr(imgstore.store.file, "read_flat", spy)
    monkeypatch.setattr(imgstore.store.file, "UPGRADE_BATCH_BYTES", 500_000)
    upgrade(out, attrs={"class_names": ["a", "b"]})
    assert reads and max(reads) <= 500_000 and len(reads) >= 4
    with imgstore.open(out, check=True) as s:
        assert len(s) == 12 and all(int(s[i][0, 0, 0]) == i for i in range(12))


@pytest.mark.parametrize("encoding", ["jpeg", "none"])
def test_ingest_append_to_a_flat_store_made_by_image_indexer_is_refused_untouched(tmp_path: Path, encoding: str) -> None:
    """A flat store made by ImageIndexer records no ingest_options: an ingest --append whose rows would not be the
    store's (raw pixels of a fixed shape, into rows of their own shapes) is refused before the store is opened for
    writing, naming the store's encoding, and the store stays exactly as it was (still complete); with options
    that match it, the append goes in."""
    root = tmp_path / "photos"
    for i in range(3):
        write(root / f"{i}.png", encode(pattern(50 + 10 * i, 40, seed=i), "PNG"))
    out = tmp_path / "api.h5"
    with ImageIndexer(out, encoding=encoding, variable=True, sha256=True) as ix:
        ix.add("made.png", np.asarray(pattern(30, 20)), sha256=b"1" * 32)
    before = out.read_bytes()
    with pytest.raises(OptionError, match=f"cannot append to .*{encoding}.* in the store|stores {encoding} rows of their own shapes"):
        ingest(root, out, IngestOptions(append=True, workers=0))
    assert out.read_bytes() == before
    enc = str(imgstore.store.encoding.parse_encoding(encoding))
    decode = DecodeOptions(size=(32, 32), resize_mode="shorter")
    ingest(root, out, IngestOptions(decode=decode, encode=enc, append=True, workers=0))
    with imgstore.open(out, check=True) as s:
        assert len(s) == 4 and s.complete and all(min(int(h), int(w)) == 32 for h, w, _ in s.shapes[1:])
