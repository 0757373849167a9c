"""Decoders: bytes of one image file -> an ``(H, W, C)`` uint8 array, behind one protocol and a registry.

A :class:`Decoder` has a ``name``, the file ``extensions`` it adds to the default candidate list, and
``decode(data, opts, out)``, which fills ``out`` (a fixed array, or under shorter/longer/none a
:class:`~imgstore.decoders.geometry.Canvas`) or raises :class:`NotRecognised` (the data is not its format: the
next decoder tries; an empty reason when it has nothing to say about what the data is) or
:class:`~imgstore.errors.BadImageError` (it is, and it is broken: the file is skipped with that reason).
:func:`decode_bytes` runs the registered decoders in order; the first that recognises the data wins:

1. ``spng`` (:mod:`~imgstore.decoders.fast`, when pyspng is installed): plain 8-bit PNGs without ``exact``,
   decoded by libspng and resized by SIMD; any other PNG (16-bit, alpha, EXIF, damaged data) it hands on with an
   empty NotRecognised;
2. ``raw`` (:mod:`~imgstore.decoders.raw`, when rawpy is installed), for camera raw headers only;
3. ``pillow`` (:mod:`~imgstore.decoders.pillow`, with every plugin it has: HEIC/HEIF, AVIF, JPEG XL, MPO and the
   rest, JPEGs included), which resizes through SIMD without ``exact`` (:mod:`~imgstore.decoders.resize`);
4. ``imageio``, last.

Which path decoded a file is :func:`last_path`: ``spng``, ``pillow+simd`` (Pillow decoded, the SIMD convolution
resized), ``pillow`` (Pillow did both: ``exact``, nearest or hamming, or no SIMD resizer installed), ``raw``,
``imageio``; an ingest counts them. With ``exact`` every file is Pillow's byte for byte.

A new decoder (OpenCV, a format of your own) is one module and one
:func:`register_decoder` call, ``first=True`` to run before the others; the geometry every decoder shares is in
:mod:`imgstore.decoders.geometry`. The default ``--extensions`` are what the registered decoders read
(:func:`default_extensions`). Whatever a decoder prints, warns or logs is captured per file
(:mod:`imgstore.decoders.quiet`).

Decoders run inside worker processes: keep them picklable (a module-level class) and never touch HDF5. The pool
sends the registry as it is when the run starts to every worker.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from imgstore.decoders.geometry import Canvas
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

    def decode(self, data: bytes, opts: DecodeOptions, out: np.ndarray | Canvas) -> None:
        """Fill ``out`` with the image oriented, converted and resized as ``opts`` say.

        ``out`` is a uint8 ``opts.shape`` array under crop, stretch and pad; under a variable mode
        (``opts.variable``: shorter, longer, none) it is a :class:`~imgstore.decoders.geometry.Canvas`, and the
        decoder writes the pixels into ``out.take(h, w, channels)`` of the size it planned (the pillow decoder's
        ``render`` and ``render_array``, and :func:`~imgstore.decoders.geometry.place`, handle both).

        Raise :class:`NotRecognised` when ``data`` is not this decoder's format, and
        :class:`~imgstore.errors.BadImageError` when it is but cannot be decoded (its ``reason`` is recorded).
        """


_DECODERS: list[Decoder] = []


class _Path(threading.local):
    name: str | None = None


_PATH = _Path()


def note_path(name: str) -> None:
    """Say which path decoded the current file, when it is not simply the decoder's name (the Pillow decoder's
    ``"pillow+simd"`` when the SIMD convolution resized): :func:`decode_bytes` records the decoder's name before
    calling it, and a decoder may override it with this; a file the fast decoder hands back is recorded by the
    decoder that then takes it (``pillow`` or ``pillow+simd``). Read back with :func:`last_path`."""
    _PATH.name = name


def last_path() -> str | None:
    """The path that decoded the last file :func:`decode_bytes` decoded in this thread (None before any)."""
    return _PATH.name


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
    data: bytes, opts: DecodeOptions, out: np.ndarray | Canvas | None = None, chain: Sequence[Decoder] | None = None
) -> np.ndarray:
    """Decode an image file's bytes into ``out`` and return the array of its pixels.

    Under crop, stretch and pad ``out`` is a uint8 ``opts.shape`` array (None: a new one), returned filled. Under a
    variable mode (``opts.variable``) it is a :class:`~imgstore.decoders.geometry.Canvas` and the return value is
    ``out.array``, a view of its buffer that the next decode into it overwrites (None: a new array of the
    image's own shape). ValueError for an ``out`` of the wrong kind or shape.

    ``chain`` defaults to the registered decoders. Raises :class:`~imgstore.errors.BadImageError` with the reason
    the file cannot be ingested; when no decoder recognises the data, the first decoder's reason that is not
    empty. Whatever the decoders print meanwhile is captured (:func:`~imgstore.decoders.quiet.codec_output`): on
    failure it ends the reason, in parentheses; after a decode that worked, a message saying the pixel data was
    damaged makes the file skipped (``damaged data, decoded only in part (...)``), any other is dropped.
    """
    target = _output_for(opts, out)
    if not data:
        raise BadImageError("empty file")
    with codec_output() as said:
        try:
            pixels = _first_that_decodes(data, opts, target, decoders() if chain is None else chain)
            failure = None
        except BadImageError as exc:
            failure = exc
    if failure is None:
        damage = said.damage()
        if damage is None:
            return pixels
        raise BadImageError(one_line(f"damaged data, decoded only in part ({damage})"))
    # What the codec printed is often the only useful part of a failure ("WEBP compression support is not
    # configured"); on a successful decode only damage counts (see imgstore.decoders.quiet).
    note = said.note()
    raise BadImageError(one_line(f"{failure.reason} ({note})") if note else failure.reason) from None


def _output_for(opts: DecodeOptions, out: np.ndarray | Canvas | None) -> np.ndarray | Canvas:
    """``out`` checked against ``opts``, or a new output of the right kind when it is None."""
    mode = opts.resize_mode.value
    if opts.variable:
        if out is None:
            return Canvas()  # sized by the image; its array is the caller's alone
        if not isinstance(out, Canvas):
            raise ValueError(f"resize mode {mode} gives every image its own shape: out must be a Canvas or None")
        return out
    if out is None:
        return np.empty(opts.shape, dtype=np.uint8)
    if isinstance(out, Canvas):
        raise ValueError(f"resize mode {mode} gives {opts.shape} arrays: out must be such a uint8 array or None")
    if out.shape != opts.shape or out.dtype != np.uint8:
        raise ValueError(f"out must be uint8 {opts.shape}, got {out.dtype} {out.shape}")
    return out


def _first_that_decodes(
    data: bytes, opts: DecodeOptions, out: np.ndarray | Canvas, chain: Sequence[Decoder]
) -> np.ndarray:
    """The pixels the first decoder of ``chain`` that recognises ``data`` wrote into ``out``."""
    first: NotRecognised | None = None
    for decoder in chain:
        if isinstance(out, Canvas):
            out.reset()  # a decoder that takes nothing must not return the previous image
        _PATH.name = decoder.name
        try:
            decoder.decode(data, opts, out)
        except NotRecognised as exc:
            first = first or (exc if exc.reason else None)  # "" is a decoder's "not mine, nothing to add"
            continue
        except MemoryError:
            raise BadImageError("out of memory while decoding") from None
        except BadImageError:
            raise
        except Exception as exc:  # a decoder's bug on one file costs that file, never the run
            raise BadImageError(one_line(f"{decoder.name} decoder failed: {type(exc).__name__}: {exc}")) from None
        if not isinstance(out, Canvas):
            return out
        if out.shape is None:
            raise BadImageError(f"{decoder.name} decoder wrote no pixels (it does not take from a Canvas)")
        return out.array
    raise BadImageError(first.reason if first else "not an image (no decoder recognises the data)")


def _register_builtins() -> None:
    # Appended without register_decoder's protocol check: on Python < 3.12 that check reads ``extensions``, which
    # loads every Pillow plugin, and ``import imgstore`` must stay cheap.
    from imgstore.decoders.imageio import ImageioDecoder
    from imgstore.decoders.pillow import PillowDecoder
    from imgstore.decoders.raw import RawDecoder, rawpy_installed

    try:
        from imgstore.decoders.fast import FastPngDecoder

        _DECODERS.append(FastPngDecoder())  # plain 8-bit PNGs without --exact; the rest it hands to Pillow
    except ImportError:  # pyspng not installed (no wheel for this platform): Pillow decodes every PNG
        pass
    if rawpy_installed():
        _DECODERS.append(RawDecoder())  # before Pillow, which would read a raw file's small preview instead
    _DECODERS.extend([PillowDecoder(), ImageioDecoder()])


_register_builtins()
