"""imgstore: a folder of photos -> a training-ready HDF5 store -> flat vectors for nearest-neighbour search.

Modules, in the order data flows through them: ``discover`` (find candidate files) -> ``decode`` (one file to an
(H, W, C) uint8 array) run by ``pool`` (worker processes, results in order) -> ``writer.ImageIndexer`` (the one
buffered writer, on ``store``: the format and the write protocol, with ``lock``) joined by ``ingest``; then
``reader`` (``imgstore.open``), ``info``, ``verify``, ``export`` and ``convert`` on the finished store.
``options`` and ``config`` validate settings once; ``signals`` makes SIGTERM/SIGHUP behave like Ctrl-C; ``cli`` is a
thin Typer layer.
"""

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:  # what the lazy names below are, for type checkers
    from imgstore.extract import extract_images
    from imgstore.ingest import IngestReport
    from imgstore.options import DecodeOptions, IngestOptions, ResizeMode
    from imgstore.preview import make_preview
    from imgstore.store.merge import merge_shards
    from imgstore.store.reader import ImageStore, open_store
    from imgstore.store.reader import open_store as open
    from imgstore.store.verify import verify_store
    from imgstore.store.writer import ImageIndexer
    from imgstore.vectors import VectorWriter, read_vectors
    from imgstore.vectors.convert import convert_ann
    from imgstore.vectors.export import export_ann, export_vectors

# The public API, imported on first use (PEP 562): ``import imgstore`` stays light, so the command line starts
# quickly and installs its signal handlers before numpy, h5py and Pillow load.
_LAZY = {
    "convert_ann": "imgstore.vectors.convert",
    "export_ann": "imgstore.vectors.export",
    "export_vectors": "imgstore.vectors.export",
    "IngestReport": "imgstore.ingest",
    "merge_shards": "imgstore.store.merge",
    "DecodeOptions": "imgstore.options",
    "IngestOptions": "imgstore.options",
    "ResizeMode": "imgstore.options",
    "ImageStore": "imgstore.store.reader",
    "open_store": "imgstore.store.reader",
    "open": "imgstore.store.reader",
    "extract_images": "imgstore.extract",
    "make_preview": "imgstore.preview",
    "VectorWriter": "imgstore.vectors",
    "read_vectors": "imgstore.vectors",
    "verify_store": "imgstore.store.verify",
    "ImageIndexer": "imgstore.store.writer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'imgstore' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), "open_store" if name == "open" else name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
