"""Optional compression of the ``images`` dataset: names users type -> h5py ``create_dataset`` arguments.

gzip and lzf are built into h5py. zstd and blosc (lz4 with byte shuffle) come from hdf5plugin, an optional extra
(``pip install 'imgstore[compression]'``); a store written with them needs hdf5plugin to be read, and
:func:`load_filters` imports it for the reader when it is there.
"""

from __future__ import annotations

from typing import Any

from imgstore.errors import OptionError, StoreError

BUILTIN = ("none", "gzip", "lzf")
PLUGIN = ("zstd", "blosc")
NEEDS_PLUGIN = "pip install 'imgstore[compression]' (hdf5plugin)"


def parse_compression(value: str | None) -> str:
    """Validate a compression name (case-insensitive); ``None`` means ``"none"``."""
    name = (value or "none").strip().lower()
    if name not in BUILTIN + PLUGIN:
        raise OptionError(f"invalid compression {value!r}: choose one of {', '.join(BUILTIN + PLUGIN)}")
    return name


def dataset_args(name: str) -> dict[str, Any]:
    """Keyword arguments for ``create_dataset`` (``compression``, ``compression_opts``) for a compression name."""
    if name == "none":
        return {"compression": None, "compression_opts": None}
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": 4}  # level 4: most of level 9's ratio, far faster
    if name == "lzf":
        return {"compression": "lzf", "compression_opts": None}
    try:
        import hdf5plugin
    except ImportError:
        raise OptionError(f"--compression {name} needs hdf5plugin: {NEEDS_PLUGIN}") from None
    plugin = hdf5plugin.Zstd(clevel=3) if name == "zstd" else hdf5plugin.Blosc(cname="lz4", clevel=5)
    args = dict(plugin)
    return {"compression": args["compression"], "compression_opts": args.get("compression_opts")}


def load_filters(name: str | None) -> None:
    """Make the filter of a store compressed with ``name`` readable (imports hdf5plugin for zstd/blosc)."""
    if name in PLUGIN:
        try:
            import hdf5plugin  # noqa: F401 - registers the filters with HDF5
        except ImportError:
            raise StoreError(f"this store is compressed with {name}; to read it, {NEEDS_PLUGIN}") from None
