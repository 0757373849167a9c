"""imgstore: a folder of photos -> a training-ready HDF5 store -> flat vectors for nearest-neighbour search.

Data flows one way: a source (``sources``: a folder, an archive, or what a registered source claims) lists candidates ->
worker processes (``pool``) decode them with the registered decoders (``decoders``) -> one writer
(``store.writer.ImageIndexer``, on the format and write protocol of ``store``) appends rows, joined by ``ingest``;
then readers and tools on the finished store: ``store.reader`` (``imgstore.open``), ``store.info``,
``store.verify``, ``store.merge``, ``preview``, ``extract``, and ``vectors`` (formats registry, ``export``,
``convert``). ``options`` and ``config`` validate settings once; ``outputs`` stages every file a command writes;
``progress`` is the one progress protocol; ``signals`` makes SIGTERM/SIGHUP behave like Ctrl-C; ``cli`` is a thin
Typer layer. The README's Architecture section says where a new source, decoder or vector format goes.
"""

from typing import TYPE_CHECKING, Any

from imgstore.errors import (
    BadImageError,
    ChecksumError,
    ClusterError,
    ConfigError,
    EmptyStoreError,
    FormatError,
    ImgStoreError,
    MissingExtraError,
    NotRecognised,
    OptionError,
    OutputExistsError,
    SourceError,
    StoreBusyError,
    StoreError,
    WorkerError,
    WriteError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:  # what the lazy names below are, for type checkers
    from imgstore.decoders import Decoder, register_decoder
    from imgstore.extract import extract_images
    from imgstore.ingest import IngestReport
    from imgstore.options import DecodeOptions, IngestOptions, ResizeMode
    from imgstore.preview import make_preview
    from imgstore.progress import Progress
    from imgstore.sources import Source, register_source
    from imgstore.store.merge import merge_shards
    from imgstore.store.reader import ImageStore, open_store
    from imgstore.store.reader import open_store as open
    from imgstore.store.verify import verify_store
    from imgstore.store.writer import ImageIndexer
    from imgstore.vectors import VectorFormat, VectorWriter, read_vectors, register_format
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
    "Decoder": "imgstore.decoders",
    "register_decoder": "imgstore.decoders",
    "Source": "imgstore.sources",
    "register_source": "imgstore.sources",
    "VectorFormat": "imgstore.vectors",
    "register_format": "imgstore.vectors",
    "Progress": "imgstore.progress",
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
    "ClusterError",
    "ConfigError",
    "DecodeOptions",
    "Decoder",
    "EmptyStoreError",
    "FormatError",
    "ImageIndexer",
    "ImageStore",
    "ImgStoreError",
    "IngestOptions",
    "IngestReport",
    "MissingExtraError",
    "NotRecognised",
    "OptionError",
    "OutputExistsError",
    "Progress",
    "ResizeMode",
    "Source",
    "SourceError",
    "StoreBusyError",
    "StoreError",
    "VectorFormat",
    "VectorWriter",
    "WorkerError",
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
    "register_decoder",
    "register_format",
    "register_source",
    "verify_store",
]
