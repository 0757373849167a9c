"""imgstore: a folder of photos -> a training-ready HDF5 store -> flat vectors for nearest-neighbour search."""

from imgstore.errors import (
    BadImageError,
    ConfigError,
    FormatError,
    ImgStoreError,
    OptionError,
    OutputExistsError,
    SourceError,
    StoreError,
)

__version__ = "0.1.0"

__all__ = [
    "BadImageError",
    "ConfigError",
    "FormatError",
    "ImgStoreError",
    "OptionError",
    "OutputExistsError",
    "SourceError",
    "StoreError",
    "__version__",
]
