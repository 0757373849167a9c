"""The exceptions imgstore raises.

Every error a user can cause is an :class:`ImgStoreError` subclass whose message says what went wrong and how to
fix it; the CLI prints ``Error: <message>`` and exits 1 without a traceback.
"""

from __future__ import annotations


class ImgStoreError(Exception):
    """Base class of every error imgstore raises on purpose."""


class OptionError(ImgStoreError, ValueError):
    """An option value is invalid (bad size, unknown mode, unknown format, ...)."""


class SourceError(ImgStoreError):
    """The source folder or input file is missing or unusable."""


class OutputExistsError(ImgStoreError, FileExistsError):
    """The output exists and ``overwrite`` was not given."""


class StoreError(ImgStoreError):
    """A store is missing, not an imgstore file, damaged, or incompatible with the request."""


class ConfigError(ImgStoreError):
    """A TOML config file cannot be read or holds unknown or invalid keys."""


class FormatError(ImgStoreError):
    """Data does not fit a vector file format (32-bit overflow, wrong dtype, sparse input, ...)."""


class BadImageError(ImgStoreError):
    """One image cannot be ingested; ``reason`` is the short text recorded in ``skipped_reasons``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
