"""imgstore: a folder of photos -> a training-ready HDF5 store -> flat vectors for nearest-neighbour search.

Modules, in the order data flows through them: ``discover`` (find candidate files) -> ``decode`` (one file to an
(H, W, C) uint8 array) run by ``pool`` (worker processes, results in order) -> ``writer.ImageIndexer`` (the one
buffered writer, on ``store``: the format and the write protocol, with ``lock``) joined by ``ingest``; then
``reader`` (``imgstore.open``), ``info``, ``verify``, ``export`` and ``convert`` on the finished store.
``options`` and ``config`` validate settings once; ``signals`` makes SIGTERM/SIGHUP behave like Ctrl-C; ``cli`` is a
thin Typer layer.
"""

from imgstore.errors import (
    BadImageError,
    ChecksumError,
    ConfigError,
    FormatError,
    ImgStoreError,
    OptionError,
    OutputExistsError,
    SourceError,
    StoreBusyError,
    StoreError,
    WriteError,
)

__version__ = "0.1.0"

from imgstore.convert import convert_ann  # noqa: E402
from imgstore.export import export_ann, export_vectors  # noqa: E402
from imgstore.ingest import IngestReport  # noqa: E402
from imgstore.merge import merge_shards  # noqa: E402
from imgstore.options import DecodeOptions, IngestOptions, ResizeMode  # noqa: E402
from imgstore.reader import ImageStore, open_store  # noqa: E402
from imgstore.tools import extract_images, make_preview  # noqa: E402
from imgstore.vectors import VectorWriter, read_vectors  # noqa: E402
from imgstore.verify import verify_store  # noqa: E402
from imgstore.writer import ImageIndexer  # noqa: E402

open = open_store  # noqa: A001 - imgstore.open(path), like h5py.File / PIL.Image.open

__all__ = [
    "BadImageError",
    "ChecksumError",
    "ConfigError",
    "DecodeOptions",
    "FormatError",
    "ImageIndexer",
    "ImageStore",
    "ImgStoreError",
    "IngestOptions",
    "IngestReport",
    "OptionError",
    "OutputExistsError",
    "ResizeMode",
    "SourceError",
    "StoreBusyError",
    "StoreError",
    "VectorWriter",
    "WriteError",
    "__version__",
    "convert_ann",
    "export_ann",
    "export_vectors",
    "extract_images",
    "make_preview",
    "merge_shards",
    "open",
    "open_store",
    "read_vectors",
    "verify_store",
]
