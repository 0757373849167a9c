"""Decoders: bytes of one image file -> an ``(H, W, C)`` uint8 array, behind one protocol and a registry.

A :class:`Decoder` has a ``name``, the file ``extensions`` it adds to the default candidate list, and
``decode(data, opts, out)``, which fills ``out`` or raises :class:`NotRecognised` (the data is not its format: the
next decoder tries) or :class:`~imgstore.errors.BadImageError` (it is, and it is broken: the file is skipped with
that reason). :func:`decode_bytes` runs the registered decoders in order; the first that recognises the data wins.
Pillow (with every plugin it has) comes first, imageio last. A new decoder (HEIC, JPEG XL, OpenCV) is one module
and one :func:`register_decoder` call, ``first=True`` to run before Pillow; the geometry every decoder shares is in
:mod:`imgstore.decoders.geometry`.

Decoders run inside worker processes: keep them picklable (a module-level class), print nothing and never touch
HDF5. The pool sends the registry as it is when the run starts to every worker.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from imgstore.errors import BadImageError, NotRecognised, OptionError
from imgstore.options import DecodeOptions


@runtime_checkable
class Decoder(Protocol):
    """Turns the bytes of one image file into pixels."""

    name: str
    extensions: tuple[str, ...]  # lower-case, with the dot: added to the default --extensions

    def decode(self, data: bytes, opts: DecodeOptions, out: np.ndarray) -> None:
        """Fill ``out`` (uint8 ``opts.shape``) with the image oriented, converted and resized as ``opts`` say.

        Raise :class:`NotRecognised` when ``data`` is not this decoder's format, and
        :class:`~imgstore.errors.BadImageError` when it is but cannot be decoded (its ``reason`` is recorded).
        """


_DECODERS: list[Decoder] = []


def register_decoder(decoder: Decoder, *, first: bool = False) -> Decoder:
    """Add ``decoder`` to the chain (last, or ``first``); one of the same name is replaced. Returns it."""
    if not isinstance(decoder, Decoder):
        raise OptionError(f"invalid decoder {decoder!r}: it needs a name, extensions and decode(data, opts, out)")
    unregister_decoder(decoder.name)
    if first:
        _DECODERS.insert(0, decoder)
    else:
        _DECODERS.append(decoder)
    return decoder


def unregister_decoder(name: str) -> None:
    """Remove the decoder called ``name`` from the chain (nothing when there is none)."""
    _DECODERS[:] = [d for d in _DECODERS if d.name != name]


def decoders() -> tuple[Decoder, ...]:
    """The registered decoders, in the order they are tried."""
    return tuple(_DECODERS)


def default_extensions() -> tuple[str, ...]:
    """Every registered decoder's extensions, in chain order without repeats: the default ``--extensions``."""
    return tuple(dict.fromkeys(e for d in _DECODERS for e in d.extensions))


def decode_bytes(
    data: bytes, opts: DecodeOptions, out: np.ndarray | None = None, chain: Sequence[Decoder] | None = None
) -> np.ndarray:
    """Decode an image file's bytes into ``out`` (or a new ``opts.shape`` uint8 array) and return it.

    ``chain`` defaults to the registered decoders. Raises :class:`~imgstore.errors.BadImageError` with the reason
    the file cannot be ingested; when no decoder recognises the data, the first decoder's reason.
    """
    if out is None:
        out = np.empty(opts.shape, dtype=np.uint8)
    elif out.shape != opts.shape or out.dtype != np.uint8:
        raise ValueError(f"out must be uint8 {opts.shape}, got {out.dtype} {out.shape}")
    if not data:
        raise BadImageError("empty file")
    first: NotRecognised | None = None
    with warnings.catch_warnings():
        # Decoders warn about palette transparency, odd EXIF and big images; all are handled.
        warnings.simplefilter("ignore")
        for decoder in decoders() if chain is None else chain:
            try:
                decoder.decode(data, opts, out)
                return out
            except NotRecognised as exc:
                first = first or exc
            except MemoryError:
                raise BadImageError("out of memory while decoding") from None
    raise BadImageError(first.reason if first else "not an image (no decoder recognises the data)")


def _register_builtins() -> None:
    from imgstore.decoders.imageio import ImageioDecoder
    from imgstore.decoders.pillow import PillowDecoder

    register_decoder(PillowDecoder())
    register_decoder(ImageioDecoder())


_register_builtins()
