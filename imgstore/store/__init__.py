"""The store: its format (:mod:`.format`) and the write protocol that keeps it readable (:mod:`.file`).

The rest of the package reads and writes stores through these names; the modules beside them build on them:
:mod:`.writer` (:class:`~imgstore.store.writer.ImageIndexer`, rows in), :mod:`.reader`
(:class:`~imgstore.store.reader.ImageStore`, rows out), :mod:`.verify`, :mod:`.info`, :mod:`.merge`, and the HDF5
details in :mod:`.h5` and :mod:`.compression`.
"""

from imgstore.store.file import Schema, StoreFile, compression_of, needs_upgrade, schema_of, upgrade
from imgstore.store.format import (
    CHECKSUMS,
    FORMAT_VERSION,
    IGNORED_COUNT,
    IGNORED_EXTENSIONS,
    IMAGES,
    JOURNAL,
    LABELS,
    LIBVER,
    NAMES,
    PARTIAL_SUFFIX,
    READABLE_FORMATS,
    ROW_DATASETS,
    RUN_START,
    SHA256,
    SKIPPED_NAMES,
    SKIPPED_REASONS,
    STR,
    TEXT_COLUMNS,
    TextJournal,
    attr_differs,
    attr_value,
    escape_name,
    format_version,
    has_journal,
    ignored_attrs,
    ignored_of,
    open_read,
    open_write,
    partial_path,
    pixel_crc,
    publish,
    read_text_column,
    repair_truncated,
    row_checksum,
    row_checksums,
    set_attr,
    settable_in_place,
    store_version,
    texts,
    unescape_name,
    upgrade_v1_name,
)

__all__ = [
    "CHECKSUMS", "FORMAT_VERSION", "IGNORED_COUNT", "IGNORED_EXTENSIONS", "IMAGES", "JOURNAL", "LABELS", "LIBVER", "NAMES", "PARTIAL_SUFFIX",
    "READABLE_FORMATS", "ROW_DATASETS", "RUN_START", "SHA256", "SKIPPED_NAMES", "SKIPPED_REASONS", "STR",
    "TEXT_COLUMNS", "Schema", "StoreFile", "TextJournal", "attr_differs", "attr_value", "compression_of", "escape_name",
    "format_version", "has_journal", "ignored_attrs", "ignored_of", "needs_upgrade", "open_read", "open_write", "partial_path", "pixel_crc",
    "publish", "read_text_column", "repair_truncated", "row_checksum", "row_checksums", "schema_of", "set_attr",
    "settable_in_place", "store_version", "texts", "unescape_name", "upgrade", "upgrade_v1_name",
]  # fmt: skip
