"""``--config FILE.toml``: ingest options from a TOML file, merged under the command line.

A config file holds the same options as ``imgstore ingest``, with ``-`` or ``_`` in names, either at the top level
or in an ``[ingest]`` table. Precedence: built-in defaults < the file < options given on the command line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from imgstore.errors import ConfigError, ImgStoreError
from imgstore.options import DecodeOptions, IngestOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DECODE_KEYS = ("size", "channels", "resize_mode", "filter", "pad_color", "background", "max_pixels", "exact",
               "upscale")  # fmt: skip
INGEST_KEYS = ("extensions", "workers", "timeout", "buffer_size", "overwrite", "strict", "shard", "labels", "append",
               "resume", "dedupe", "compression", "flush_every", "archives", "encode")  # fmt: skip
CONFIG_KEYS = DECODE_KEYS + INGEST_KEYS


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML config file into ``{option_name: value}``; unknown keys are an error that lists the valid ones."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    table = data.get("ingest", data)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [ingest] must be a table of options")
    out: dict[str, Any] = {}
    unknown = []
    for key, value in table.items():
        name = key.replace("-", "_")
        if key == "ingest":
            continue
        if name not in CONFIG_KEYS:
            unknown.append(key)
        out[name] = value
    if unknown:
        valid = ", ".join(k.replace("_", "-") for k in CONFIG_KEYS)
        raise ConfigError(f"config file {path}: unknown option(s) {', '.join(sorted(unknown))}; valid: {valid}")
    return out


def build_ingest_options(
    file_values: Mapping[str, Any] | None = None, cli_values: Mapping[str, Any] | None = None, *, source: str = ""
) -> IngestOptions:
    """Merge file values under command-line values (None means not given) and validate them into options."""
    merged: dict[str, Any] = dict(file_values or {})
    merged.update({k: v for k, v in (cli_values or {}).items() if v is not None})
    decode = {k: merged[k] for k in DECODE_KEYS if k in merged}
    rest = {k: merged[k] for k in INGEST_KEYS if k in merged}
    try:
        return IngestOptions(decode=DecodeOptions(**decode), **rest)
    except ImgStoreError as exc:
        if source and file_values:
            raise ConfigError(f"{exc} (options from {source} and the command line)") from None
        raise
    except TypeError as exc:  # a TOML value of the wrong type, e.g. workers = "four"
        raise ConfigError(f"invalid option value: {exc}") from None


def ingest_options_for(
    out: str | os.PathLike[str],
    given: Mapping[str, Any],
    config: str | os.PathLike[str] | None = None,
    *,
    from_store: bool = True,
) -> IngestOptions:
    """Ingest's options for OUT, each from the first place that has it: ``given`` (the command line; None means
    not given), the ``config`` file, with ``append`` or ``resume`` given (and ``from_store``) the options OUT was
    made with, then the library's defaults."""
    from imgstore.ingest import continued_store, stored_options

    cli_values = {key: given.get(key) for key in CONFIG_KEYS}
    file_values = load_config(config) if config is not None else {}
    if from_store and (cli_values["append"] or cli_values["resume"]):
        continued = continued_store(out, resume=bool(cli_values["resume"]))
        if continued is not None:  # continue with the options the store was made with, unless told otherwise
            file_values = {**stored_options(continued), **file_values}
    return build_ingest_options(file_values, cli_values, source=str(config or ""))
