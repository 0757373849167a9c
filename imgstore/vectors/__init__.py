"""Vectors out: vector file formats (:mod:`.formats`, a registry), their writer and readers, and the commands
built on them -- ``export`` (:mod:`.export`, store -> vectors, with exact ground truth in :mod:`.knn`) and
``convert`` (:mod:`.convert`, ann-benchmarks HDF5 -> vector files).

A new vector format is one :class:`~imgstore.vectors.formats.VectorFormat` (a subclass when its header is new) and
one :func:`~imgstore.vectors.formats.register_format` call; every command and reader then knows it.
"""

from imgstore.vectors.formats import (
    FORMATS,
    HeaderFormat,
    RecordFormat,
    VectorFormat,
    check_shape,
    format_by_name,
    format_for_path,
    register_format,
)
from imgstore.vectors.reader import iter_vectors, read_vectors, vector_file_shape
from imgstore.vectors.writer import VectorWriter, preallocate, write_vectors

__all__ = [
    "FORMATS", "HeaderFormat", "RecordFormat", "VectorFormat", "VectorWriter", "check_shape", "format_by_name",
    "format_for_path", "iter_vectors", "preallocate", "read_vectors", "register_format", "vector_file_shape",
    "write_vectors",
]  # fmt: skip
