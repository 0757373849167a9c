"""Decoders: bytes of one image file -> an ``(H, W, C)`` uint8 array, behind one protocol and a registry.

A :class:`Decoder` has a ``name``, the file ``extensions`` it adds to the default candidate list, and
``decode(data, opts, out)``, which fills ``out`` or raises :class:`NotRecognised` (the data is not its format: the
next decoder tries; an empty reason when it has nothing to say about what the data is) or
:class:`~imgstore.errors.BadImageError` (it is, and it is broken: the file is skipped with that reason).
:func:`decode_bytes` runs the registered decoders in order; the first that recognises the data wins. The camera raw
decoder (:mod:`~imgstore.decoders.raw`, when rawpy is installed) comes first, for raw headers only; then Pillow
(:mod:`~imgstore.decoders.pillow`, with every plugin it has: HEIC/HEIF, AVIF, JPEG XL, MPO and the rest); imageio
last. A new decoder (OpenCV, a format of your own) is one module and one
:func:`register_decoder` call, ``first=True`` to run before the others; the geometry every decoder shares is in
:mod:`imgstore.decoders.geometry`. The default ``--extensions`` are what the registered decoders read
(:func:`default_extensions`). Whatever a decoder prints, warns or logs is captured per file
(:mod:`imgstore.decoders.quiet`).

Decoders run inside worker processes: keep them picklable (a module-level class) and never touch HDF5. The pool
sends the registry as it is when the run starts to every worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from imgstore.decoders.pixels import one_line
from imgstore.decoders.quiet import codec_output
from imgstore.errors import BadImageError, NotRecognised, OptionError
from imgstore.options import DecodeOptions


@runtime_checkable
class Decoder(Protocol):
    """Turns the bytes of one image file into pixels."""

    name: str

    @property
    def extensions(self) -> tuple[str, ...]:
        """Lower-case, with the dot: added to the default ``--extensions`` (a class attribute will do)."""

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
    """Every registered decoder's extensions, in chain order without repeats, minus the files imgstore itself
    writes (:func:`written_by_imgstore`): the default ``--extensions``."""
    own = written_by_imgstore()
    return tuple(dict.fromkeys(e for d in _DECODERS for e in d.extensions if e not in own))


def written_by_imgstore() -> frozenset[str]:
    """The extensions of the files imgstore writes (stores, vector files): never candidates by default, so a
    store or an export inside SRC is not ingested."""
    from imgstore.vectors.formats import FORMATS

    return frozenset({".h5", ".hdf5", ".npy"} | {fmt.extension for fmt in FORMATS.values()})


def decode_bytes(
    data: bytes, opts: DecodeOptions, out: np.ndarray | None = None, chain: Sequence[Decoder] | None = None
) -> np.ndarray:
    """Decode an image file's bytes into ``out`` (or a new ``opts.shape`` uint8 array) and return it.

    ``chain`` defaults to the registered decoders. Raises :class:`~imgstore.errors.BadImageError` with the reason
    the file cannot be ingested; when no decoder recognises the data, the first decoder's reason that is not
    empty. Whatever the decoders print meanwhile is captured (:func:`~imgstore.decoders.quiet.codec_output`): on
    failure it ends the reason, in parentheses; after a decode that worked, a message saying the pixel data was
    damaged makes the file skipped (``damaged data, decoded only in part (...)``), any other is dropped.
    """
    if out is None:
        out = np.empty(opts.shape, dtype=np.uint8)
    elif out.shape != opts.shape or out.dtype != np.uint8:
        raise ValueError(f"out must be uint8 {opts.shape}, got {out.dtype} {out.shape}")
    if not data:
        raise BadImageError("empty file")
    with codec_output() as said:
        try:
            _first_that_decodes(data, opts, out, decoders() if chain is None else chain)
            failure = None
        except BadImageError as exc:
            failure = exc
    if failure is None:
        damage = said.damage()
        if damage is None:
            return out
        raise BadImageError(one_line(f"damaged data, decoded only in part ({damage})"))
    # What the codec printed is often the only useful part of a failure ("WEBP compression support is not
    # configured"); on a successful decode only damage counts (see imgstore.decoders.quiet).
    note = said.note()
    raise BadImageError(one_line(f"{failure.reason} ({note})") if note else failure.reason) from None


def _first_that_decodes(data: bytes, opts: DecodeOptions, out: np.ndarray, chain: Sequence[Decoder]) -> np.ndarray:
    first: NotRecognised | None = None
    for decoder in chain:
        try:
            decoder.decode(data, opts, out)
            return out
        except NotRecognised as exc:
            first = first or (exc if exc.reason else None)  # "" is a decoder's "not mine, nothing to add"
        except MemoryError:
            raise BadImageError("out of memory while decoding") from None
        except BadImageError:
            raise
        except Exception as exc:  # a decoder's bug on one file costs that file, never the run
            raise BadImageError(one_line(f"{decoder.name} decoder failed: {type(exc).__name__}: {exc}")) from None
    raise BadImageError(first.reason if first else "not an image (no decoder recognises the data)")


def _register_builtins() -> None:
    # Appended without register_decoder's protocol check: on Python < 3.12 that check reads ``extensions``, which
    # loads every Pillow plugin, and ``import imgstore`` must stay cheap.
    from imgstore.decoders.imageio import ImageioDecoder
    from imgstore.decoders.pillow import PillowDecoder
    from imgstore.decoders.raw import RawDecoder, rawpy_installed

    if rawpy_installed():
        _DECODERS.append(RawDecoder())  # before Pillow, which would read a raw file's small preview instead
    _DECODERS.extend([PillowDecoder(), ImageioDecoder()])


_register_builtins()
