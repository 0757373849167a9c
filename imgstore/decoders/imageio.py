"""The imageio decoder, last in the chain: what Pillow cannot identify, read by imageio's other plugins.

Its pixels (any dtype, scaled to 8 bits by the range they use) go through the Pillow decoder's orientation,
conversion and resize steps (:func:`~imgstore.decoders.pillow.render_array`).
"""

from __future__ import annotations

import numpy as np

from imgstore.decoders.geometry import Canvas
from imgstore.decoders.pillow import NOT_PHOTOS, render_array
from imgstore.decoders.pixels import check_pixels
from imgstore.decoders.raw import import_rawpy, rawpy_installed
from imgstore.errors import NotRecognised
from imgstore.options import DecodeOptions


def imageio_extensions() -> tuple[str, ...]:
    """The extensions imageio's configuration gives its Pillow plugin (formats Pillow opens but registers no
    extension for: SPIDER, IMT, McIdas, FlashPix, ...), minus Pillow's :data:`~imgstore.decoders.pillow.NOT_PHOTOS`.

    imageio's other plugins add none: its extension table is what they could read, not what is installed here
    (FreeImage, ITK and GDAL formats need libraries of their own), and the ones that run without more are not
    photos (DICOM, NPZ, BSDF, video through PyAV).
    """
    from imageio.config import known_extensions

    return tuple(
        sorted(
            {
                ext.extension.lower()
                for exts in known_extensions.values()
                for ext in exts
                if "pillow" in ext.priority and ext.extension.lower() not in NOT_PHOTOS
            }
        )
    )


class ImageioDecoder:
    """imageio v3 (``iio.imread(data, index=0)``): the first frame of whatever its plugins read."""

    name = "imageio"

    @property
    def extensions(self) -> tuple[str, ...]:
        """What :func:`imageio_extensions` lists."""
        return imageio_extensions()

    def decode(self, data: bytes, opts: DecodeOptions, out: np.ndarray | Canvas) -> None:
        import imageio.v3 as iio  # imported on first use: most runs never need it

        if rawpy_installed():
            import_rawpy()  # before imageio's rawpy plugin imports it with OpenMP's defaults

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
