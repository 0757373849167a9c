"""The fast PNG decoder: libspng (the pyspng package) and the SIMD resize, for the plain 8-bit PNGs it can read.

Why a decoder of its own for PNG, and none for JPEG (measured on 2 cores, ``scripts/bench_decoders.py`` and
``scripts/bench_ingest.py``):

- A small PNG (CIFAR's 32x32) costs about 70 us to open and load through Pillow's Python-level plugin machinery,
  and 29 us through libspng; with the SIMD resize a worker handles such a file in 75 us instead of 156. For
  folders of tiny files that is most of the work.
- For JPEG, libjpeg-turbo through simplejpeg decodes a 500x375 photo in 0.76 ms where Pillow takes 0.98, but its
  array has to be copied twice into the SIMD resizer (which takes only ``bytes`` or a Pillow image), while Pillow's
  own image is resized in place: in a real ingest of 2,000 photos, Pillow's decode + the SIMD resize took 2.02-2.09 s
  and simplejpeg's 2.25-2.66 s (12 MP photos: 1.66-1.81 s against 1.62-1.79 s, within noise). So JPEGs stay with
  the Pillow decoder, which resizes through SIMD too (:mod:`~imgstore.decoders.resize`, path ``pillow+simd``).

What this decoder takes: 8-bit greyscale, RGB and palette PNGs (interlaced or not) without transparency, EXIF or
animation, and not under ``exact=True``; for channels=1, greyscale ones only (colour -> L is Pillow's formula). Its
pixels before the resize are libspng's, byte for byte Pillow's for these files. Everything else -- 16-bit and
1/2/4-bit PNGs, alpha, ``tRNS``, ``eXIf``, APNG, damaged data -- it hands to the Pillow decoder with
``NotRecognised("")``, so the file gets Pillow's pixels or Pillow's skip reason exactly as before, counted under
Pillow's paths. One difference remains, by choice: libspng checks every chunk's CRC but not the zlib stream's
Adler-32 trailer, so a PNG whose only fault is that trailer (every chunk CRC right, hence not a byte of pixel data
changed) is stored with its intact pixels where Pillow refuses it; checking it would cost a second inflate, 19 us
of a 32x32 PNG's 29. Its own path is its name, ``spng`` (resized through SIMD when cykooz.resizer is installed).
"""

from __future__ import annotations

import struct

import numpy as np
import pyspng  # ~1 ms once numpy is loaded; ImportError: the decoder is not registered (imgstore.decoders)

from imgstore.decoders.geometry import Canvas, place, resize_plan
from imgstore.decoders.pixels import check_pixels
from imgstore.decoders.resize import resize_array
from imgstore.errors import NotRecognised
from imgstore.options import DecodeOptions

_PNG = b"\x89PNG\r\n\x1a\n"
# Chunks that make Pillow's pixels differ from libspng's plain 8-bit decode: transparency (composited on the
# background), an EXIF orientation, an animation (Pillow's rules for APNG's default image are its own). Their four
# letters anywhere in the file send it to Pillow: a false match inside compressed data costs only speed.
_PNG_OTHERS = (b"tRNS", b"eXIf", b"acTL")
_PNG_COLOURS = {0: "L", 2: "RGB", 3: "RGB"}  # IHDR colour type -> the pixels decoded (a palette is expanded)


class FastPngDecoder:
    """Plain 8-bit PNGs through libspng and the SIMD resize; see the module doc."""

    name = "spng"
    extensions: tuple[str, ...] = ()  # Pillow, registered after this, lists .png; naming it here would reorder
    # default_extensions(), whose order a store's recorded ingest options keep

    def decode(self, data: bytes, opts: DecodeOptions, out: np.ndarray | Canvas) -> None:
        if opts.exact or len(data) < 33 or not data.startswith(_PNG) or data[12:16] != b"IHDR":
            raise NotRecognised("")
        w, h, depth, colour, _, _, interlace = struct.unpack_from(">IIBBBBB", data, 16)
        mode = _PNG_COLOURS.get(colour)
        if depth != 8 or mode is None or interlace > 1 or not (w and h) or any(c in data for c in _PNG_OTHERS):
            raise NotRecognised("")
        if opts.channels == 1 and mode != "L":
            raise NotRecognised("")
        check_pixels(w, h, opts)  # the same limit and reason as the Pillow decoder's, before any pixel is decoded
        try:
            pixels = pyspng.load(bytes(data), "RGB" if opts.channels == 3 else "L")
        except MemoryError:
            raise
        except Exception:  # damaged data: Pillow says how, as it always has
            raise NotRecognised("") from None
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if pixels.shape[:2] != (h, w) or pixels.dtype != np.uint8:
            raise NotRecognised("")
        plan = resize_plan((w, h), opts.size, opts.resize_mode, opts.upscale)
        place(resize_array(pixels, plan.size, opts.filter, plan.box), plan, out, opts.pad_color)
