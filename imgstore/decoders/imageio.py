"""The imageio decoder, last in the chain: what Pillow cannot identify, read by imageio's other plugins.

Its pixels (any dtype, scaled to 8 bits by the range they use) go through the Pillow decoder's orientation,
conversion and resize steps (:func:`~imgstore.decoders.pillow.render_array`).
"""

from __future__ import annotations

import numpy as np

from imgstore.decoders.pillow import render_array
from imgstore.decoders.pixels import check_pixels
from imgstore.errors import NotRecognised
from imgstore.options import DecodeOptions


class ImageioDecoder:
    """imageio v3 (``iio.imread(data, index=0)``): the first frame of whatever its plugins read."""

    name = "imageio"
    extensions: tuple[str, ...] = ()  # a fallback for the extensions other decoders list, adding none

    def decode(self, data: bytes, opts: DecodeOptions, out: np.ndarray) -> None:
        import imageio.v3 as iio  # imported on first use: most runs never need it

        try:
            props = iio.improps(data)
        except Exception:
            raise NotRecognised("not an image (no decoder recognises the data)") from None
        if props.shape is not None and len(props.shape) >= 2:
            # Checked before decoding: a bomb must not be read into memory first.
            dims = props.shape[-3:-1] if len(props.shape) >= 3 and props.shape[-1] <= 4 else props.shape[-2:]
            check_pixels(int(dims[1]), int(dims[0]), opts)
        try:
            arr = np.asarray(iio.imread(data, index=0))
        except Exception:
            raise NotRecognised("not an image (no decoder recognises the data)") from None
        render_array(arr, opts, out)
