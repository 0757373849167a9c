"""The extension points, driven through the public API: a custom source, decoder and vector format, each
registered and then used by a real ingest or export (FFCV's test_custom_field.py is the model)."""

from __future__ import annotations

import importlib.util
import io
import os
import struct
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import imgstore
from imgstore.cli import app
from imgstore.decoders import decoders, default_extensions, register_decoder, unregister_decoder
from imgstore.decoders.pillow import render_array
from imgstore.decoders.raw import rawpy_installed
from imgstore.errors import BadImageError, NotRecognised
from imgstore.ingest import ingest
from imgstore.options import DecodeOptions, IngestOptions
from imgstore.options import default_extensions as option_extensions
from imgstore.sources import Candidate, Discovery, Source, open_source, register_source, unregister_source
from imgstore.sources.folder import FolderSource
from imgstore.store import escape_name
from imgstore.vectors import FORMATS, VectorFormat, read_vectors, register_format, vector_file_shape
from imgstore.vectors.export import export_vectors

from conftest import encode, pattern, write


def opts() -> IngestOptions:
    """Options made after the test registered what it needs (the default extensions come from the registry)."""
    return IngestOptions(workers=2, decode=DecodeOptions(size=(12, 10)))


def photos(root: Path, n: int = 9) -> Path:
    """``n`` PNG and JPEG photos in two class folders, and one file that is not an image."""
    for i in range(n):
        fmt, ext = ("PNG", "png") if i % 2 else ("JPEG", "jpg")
        write(root / f"c{i % 2}" / f"p{i:02d}.{ext}", encode(pattern(40 + i, 30, seed=i), fmt))
    write(root / "c0" / "broken.jpg", b"not a jpeg")
    return root


def same_rows(a: Path, b: Path) -> None:
    """The two stores hold the same rows: names, pixels, labels, and the same skipped list."""
    with imgstore.open(a) as x, imgstore.open(b) as y:
        assert len(x) > 0 and x.names == y.names
        np.testing.assert_array_equal(x[:], y[:])
        np.testing.assert_array_equal(x.labels, y.labels)
        assert x.skipped == y.skipped


# -- a source: images inside a .tar archive ------------------------------------------------------------------------


@dataclass(frozen=True)
class TarSource:
    """The images inside an uncompressed tar archive, named by their member path."""

    archive: str

    @property
    def label(self) -> str:
        return escape_name(self.archive)

    def scan(self, extensions: tuple[str, ...]) -> Discovery:
        with tarfile.open(self.archive) as tar:
            members = [m.name for m in tar.getmembers() if m.isfile() and m.name.lower().endswith(extensions)]
        return Discovery([Candidate(m, escape_name(m)) for m in sorted(members)])

    def read(self, key: str) -> bytes:  # runs in the decoder workers
        with tarfile.open(self.archive) as tar:
            member = tar.extractfile(key)
            if member is None:
                raise BadImageError(f"unreadable: {key} is not a file in the archive")
            return member.read()


def tar_factory(spec: str) -> TarSource | None:
    return TarSource(spec) if spec.endswith(".tar") and os.path.isfile(spec) else None


@pytest.fixture
def tar_sources() -> Iterator[None]:
    register_source("tar", tar_factory)
    try:
        yield
    finally:
        unregister_source("tar")


@pytest.mark.usefixtures("tar_sources")
def test_registered_source_feeds_a_real_ingest(tmp_path: Path, cli: CliRunner) -> None:
    """A registered source claims SRC; workers read its candidates; the store equals the folder's, from the CLI
    as from the library."""
    folder = photos(tmp_path / "photos")
    archive = tmp_path / "photos.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(folder).as_posix())
    assert isinstance(open_source(archive), TarSource)
    assert not isinstance(open_source(folder), TarSource)

    opts = IngestOptions(workers=2, labels="folder", decode=DecodeOptions(size=(12, 10)))
    ingest(folder, tmp_path / "folder.h5", opts)
    report = ingest(archive, tmp_path / "tar.h5", opts)
    assert report.count == 9 and [name for name, _ in report.skipped] == ["c0/broken.jpg"]
    same_rows(tmp_path / "tar.h5", tmp_path / "folder.h5")
    with imgstore.open(tmp_path / "tar.h5") as store:
        assert store.attrs["source"] == str(archive)

    result = cli.invoke(app, ["ingest", str(archive), str(tmp_path / "cli.h5"), "--size", "12x10",
                                      "--labels", "folder", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    same_rows(tmp_path / "cli.h5", tmp_path / "folder.h5")


def test_a_registered_source_is_asked_before_the_built_in_archive_source(tmp_path: Path) -> None:
    """A user's factory claims SRC before the built-in archive source; once it is unregistered, the built-in one
    claims the same .tar again (and gives the same rows)."""
    from imgstore.sources.archive import ArchiveSource

    folder = photos(tmp_path / "photos", n=4)
    archive = tmp_path / "p.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(folder / "c0", arcname="c0")
    assert isinstance(open_source(archive), ArchiveSource)
    register_source("tar", tar_factory)
    try:
        assert isinstance(open_source(archive), TarSource)
        ingest(archive, tmp_path / "toy.h5", opts())
    finally:
        unregister_source("tar")
    assert isinstance(open_source(archive), ArchiveSource)
    ingest(archive, tmp_path / "built-in.h5", opts())
    with imgstore.open(tmp_path / "toy.h5") as toy, imgstore.open(tmp_path / "built-in.h5") as built_in:
        assert toy.names == built_in.names == ["c0/p00.jpg", "c0/p02.jpg"]
        np.testing.assert_array_equal(toy[:], built_in[:])


def test_a_source_object_is_taken_as_it_is(tmp_path: Path) -> None:
    """ingest() takes a Source object directly, without registering anything."""
    folder = photos(tmp_path / "photos", n=4)
    archive = tmp_path / "p.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(folder / "c0", arcname="c0")
    source = TarSource(str(archive))
    assert isinstance(source, Source)
    report = ingest(source, tmp_path / "o.h5", opts())
    assert report.count == 2
    with imgstore.open(tmp_path / "o.h5") as store:
        assert store.names == ["c0/p00.jpg", "c0/p02.jpg"]


# -- a decoder: a made-up raw grey format ----------------------------------------------------------------------------

GREY_MAGIC = b"GREY"


def grey_file(pixels: np.ndarray) -> bytes:
    """``GREY``, uint16 width and height, then the uint8 pixels row by row."""
    h, w = pixels.shape
    return GREY_MAGIC + struct.pack("<HH", w, h) + pixels.astype(np.uint8).tobytes()


class GreyDecoder:
    """Decodes .grey files; everything else is not its format."""

    name = "grey"
    extensions = (".grey",)

    def decode(self, data: bytes, opts: DecodeOptions, out: np.ndarray) -> None:
        if not data.startswith(GREY_MAGIC):
            raise NotRecognised("not a GREY file")
        w, h = struct.unpack("<HH", data[4:8])
        if len(data) != 8 + w * h:
            raise BadImageError(f"truncated GREY: {len(data) - 8} of {w * h} pixel bytes")
        render_array(np.frombuffer(data, np.uint8, offset=8).reshape(h, w), opts, out)


@pytest.fixture
def grey() -> Iterator[None]:
    register_decoder(GreyDecoder())
    try:
        yield
    finally:
        unregister_decoder("grey")


@pytest.mark.usefixtures("grey")
def test_registered_decoder_adds_its_format_to_a_real_ingest(tmp_path: Path) -> None:
    """A registered decoder's extension joins the defaults; its files decode in the workers, through the shared
    geometry (the same pixels as Pillow gives the same grey image); its broken files are skipped with its reason."""
    builtins = ["raw", "pillow", "imageio"] if rawpy_installed() else ["pillow", "imageio"]
    if importlib.util.find_spec("pyspng") is not None:
        builtins.insert(0, "spng")  # the fast PNG decoder, first
    assert [d.name for d in decoders()] == [*builtins, "grey"]
    assert ".grey" in default_extensions() and ".grey" in option_extensions()
    assert ".grey" in IngestOptions().extensions
    rng = np.random.default_rng(3)
    src = tmp_path / "src"
    grey_pixels = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    write(src / "a.grey", grey_file(grey_pixels))
    write(src / "b.png", encode(pattern(40, 30), "PNG"))
    write(src / "c.grey", grey_file(grey_pixels)[:-5])
    write(src / "d.png", encode(Image.fromarray(grey_pixels, "L"), "PNG"))
    report = ingest(src, tmp_path / "o.h5", opts())
    assert report.count == 3
    assert report.skipped == [("c.grey", "truncated GREY: 1195 of 1200 pixel bytes")]
    with imgstore.open(tmp_path / "o.h5") as store:
        assert store.names == ["a.grey", "b.png", "d.png"]
        np.testing.assert_array_equal(store[0], store[2])  # the GREY file and the PNG of the same pixels


def test_without_the_decoder_its_files_are_not_candidates(tmp_path: Path) -> None:
    """Unregistered, the format is neither a default extension nor decodable."""
    assert ".grey" not in default_extensions()
    write(tmp_path / "src" / "a.grey", grey_file(np.zeros((4, 4), np.uint8)))
    write(tmp_path / "src" / "b.png", encode(pattern(8, 8), "PNG"))
    report = ingest(tmp_path / "src", tmp_path / "o.h5", opts())
    assert report.count == 1 and report.skipped == []
    report = ingest(tmp_path / "src", tmp_path / "p.h5", IngestOptions(workers=0, extensions="grey,png",
                                                                         decode=DecodeOptions(size=8)))  # fmt: skip
    assert report.skipped == [("a.grey", "not an image (no decoder recognises the data)")]


# -- a vector format: NumPy's .npy, a header of another kind -------------------------------------------------------


@dataclass(frozen=True)
class NpyFormat(VectorFormat):
    """NumPy ``.npy`` (format 1.0): a 128-byte header whose shape is rewritten when the writer closes."""

    header_size = 128
    counts_rows = True
    dim_field = "shape of the .npy header"

    @property
    def max_dim(self) -> int:
        return 2**31 - 1

    @property
    def max_count(self) -> int | None:
        return 10**12  # what fits the fixed-size header

    def header(self, count: int, dim: int) -> bytes:
        text = repr({"descr": self.dtype.str, "fortran_order": False, "shape": (count, dim)})
        body = text.encode("latin1").ljust(self.header_size - 10 - 1) + b"\n"
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body

    def parse_header(self, head: bytes, size: int, where: str) -> tuple[int, int]:
        f = io.BytesIO(head)
        np.lib.format.read_magic(f)
        shape, _, _ = np.lib.format.read_array_header_1_0(f)
        return int(shape[0]), int(shape[1])


@pytest.fixture
def npy() -> Iterator[VectorFormat]:
    fmt = register_format(NpyFormat("npy", np.dtype("<f4")))
    try:
        yield fmt
    finally:
        del FORMATS["npy"]


def test_registered_vector_format_is_written_by_export_and_read_by_numpy(
    tmp_path: Path, npy: VectorFormat, cli: CliRunner
) -> None:
    """Export picks the format from OUT's extension and writes through its header and record layout; NumPy reads
    the file; imgstore's own readers read it back through the same format object."""
    src = photos(tmp_path / "photos", n=5)
    ingest(src, tmp_path / "s.h5", opts())
    report = export_vectors(tmp_path / "s.h5", tmp_path / "v.npy", size=4, channels=1)
    assert report.format == "npy" and report.count == 5 and report.dim == 16
    loaded = np.load(tmp_path / "v.npy")
    assert loaded.dtype == np.float32 and loaded.shape == (5, 16)
    export_vectors(tmp_path / "s.h5", tmp_path / "v.fvecs", size=4, channels=1)
    np.testing.assert_array_equal(loaded, read_vectors(tmp_path / "v.fvecs"))
    assert vector_file_shape(tmp_path / "v.npy") == (5, 16)
    np.testing.assert_array_equal(read_vectors(tmp_path / "v.npy"), loaded)
    assert os.path.getsize(tmp_path / "v.npy") == npy.file_bytes(5, 16)

    result = cli.invoke(app, ["export", str(tmp_path / "s.h5"), str(tmp_path / "w.dat"), "--format", "npy",
                                      "--size", "4", "--channels", "1", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.load(io.BytesIO((tmp_path / "w.dat").read_bytes())), loaded)


# -- a source under Dask: walked once, whatever the number of shards -----------------------------------------------

SCANS = "scans.txt"


@dataclass(frozen=True)
class CountingSource:
    """A folder source that appends a line to ``log`` at every scan (in whatever process scans)."""

    root: str
    log: str

    @property
    def label(self) -> str:
        return escape_name(self.root)

    def scan(self, extensions: tuple[str, ...]) -> Discovery:
        with open(self.log, "a", encoding="utf-8") as f:
            f.write("scan\n")
        return FolderSource(self.root).scan(extensions)

    def read(self, key: str) -> bytes:
        return FolderSource(self.root).read(key)


def test_dask_walks_the_source_once(tmp_path: Path) -> None:
    """--dask scans SRC once and hands every shard task that walk; the result equals a single-machine ingest."""
    distributed = pytest.importorskip("distributed")
    from imgstore.distributed import ingest_dask

    folder = photos(tmp_path / "photos")
    log = tmp_path / SCANS
    source = CountingSource(str(folder), str(log))
    ingest(folder, tmp_path / "single.h5", opts())
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                                  dashboard_address="127.0.0.1:0") as cluster, distributed.Client(cluster) as client:  # fmt: skip
        report = ingest_dask(source, tmp_path / "o.h5", opts(), client, shards=4)
    assert report.count == 9 and len(report.shards) == 4
    assert log.read_text().splitlines() == ["scan"]
    same_rows(tmp_path / "o.h5", tmp_path / "single.h5")
