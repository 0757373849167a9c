"""The Pillow decoder: every format Pillow and its plugins read, EXIF-oriented, converted and resized.

Without ``exact=True``, JPEG DCT scaling (``Image.draft``) and ``reducing_gap`` make large sources several times
cheaper to decode, and the resize is fast_image_resize's SIMD convolution (:mod:`imgstore.decoders.resize`: 2-4x
Pillow's, within a quarter of a grey level of it; path ``pillow+simd``) for box, bilinear, bicubic and lanczos;
with it, the pixels are byte-identical to Pillow's ``ImageOps.fit``/``pad``/``resize`` (shorter, longer:
``resize`` to the planned size). Every JPEG is decoded here (libjpeg-turbo inside Pillow): a separate libjpeg-turbo
binding was measured slower in a real ingest, its array having to be copied into the resizer
(:mod:`imgstore.decoders.fast`); plain PNGs are decoded first by libspng there, and what it hands back (16-bit,
alpha, EXIF, damaged data) is read or skipped here with the reasons it always gave. Decoders that produce an array (imageio, an OpenCV backend) render it
through the same steps with :func:`render_array`.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from imgstore.decoders import note_path
from imgstore.decoders import resize as simd
from imgstore.decoders.geometry import DRAFT_GAP as DRAFT_GAP  # re-exported: the Pillow decoder's JPEG setting
from imgstore.decoders.geometry import TURNED, Canvas, ResizePlan, draft_request, place, reduced_plan, resize_plan
from imgstore.decoders.pixels import check_pixels, one_line, to_uint8
from imgstore.errors import BadImageError, NotRecognised
from imgstore.options import FILTERS, DecodeOptions

# EXIF orientation value -> the transpose that makes the image upright (as PIL.ImageOps.exif_transpose).
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION = 0x0112
# Orientation -> whether the upright image's x and y run against the stored image's (its right column / bottom row
# end up on the left / top): where a DCT-scaled decode's partial last column and row land (see reduced_plan).
_FLIPPED = {2: (True, False), 3: (True, True), 4: (False, True), 6: (True, False), 7: (True, True), 8: (False, True)}

# Other formats than JPEG use Pillow's reducing_gap (REDUCING_GAP, imgstore.decoders.resize), whose docs call 3.0
# indistinguishable from fair resampling; JPEGs are DCT-scaled first (DRAFT_GAP, imgstore.decoders.geometry).
_DRAFT_FORMATS = ("JPEG", "MPO")  # MPO: JPEG frames (phones' and 3D cameras' multi-picture files)

_HIGH_BIT_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_ALPHA_MODES = {"RGBA", "LA", "La", "RGBa", "PA"}

# Formats Pillow registers an extension for but that are not photos, so files with these extensions are not
# candidates unless --extensions names them (decided on Pillow's own test images, Tests/images):
NOT_PHOTOS = frozenset({
    ".h5", ".hdf",  # HDF5: a stub plugin that decodes nothing; imgstore's own stores are .h5
    ".fit", ".fits",  # FITS: astronomy science data (float cubes); Pillow decodes 3 of its 4 test files
    ".grib", ".bufr",  # weather data: stub plugins that decode nothing
    ".eps", ".ps",  # PostScript documents: need Ghostscript, and render a page, not a photo
    ".pdf", ".palm",  # Pillow writes these and cannot read them
    ".wmf", ".emf",  # Windows metafiles: vector drawings, rendered only on Windows
    ".mpg", ".mpeg",  # video: Pillow identifies MPEG but cannot decode a frame
    ".iim",  # IPTC/NAA news records: metadata; Pillow decodes only their rare raw bitmaps (no test file has one)
})  # fmt: skip

# Pillow formats whose files another opener reads: MPO (multi-picture JPEG from 3D and phone cameras) is opened by
# the JPEG plugin, so it has an extension but no opener of its own.
_OPENED_BY_ANOTHER = frozenset({"MPO"})

_plugins_loaded = False


def load_plugins() -> None:
    """Register the Pillow plugins imgstore installs (pillow-heif: HEIC/HEIF; pillow-jxl-plugin: JPEG XL) and
    Pillow's own; once per process, on first use (importing them costs about 50 ms, ``import imgstore`` none).
    A plugin that cannot be imported (no wheel for this platform) leaves its format unread, nothing else."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    from imgstore import signals

    # A Ctrl-C or SIGTERM landing inside a C extension's module init leaves it half-imported (a later import fails
    # with an unrelated ImportError): the signal is held until the imports are done, then raised as usual.
    with signals.deferred():
        with contextlib.suppress(Exception):
            from pillow_heif import register_heif_opener

            register_heif_opener()
        with contextlib.suppress(Exception):
            import pillow_jxl  # noqa: F401  (importing it registers the JXL plugin)
        Image.init()
        simd.preload()  # the SIMD resizer (~28 ms to import), like the plugins once per process, before forking
        _plugins_loaded = True


def prepare_workers() -> None:
    """What every decoder worker needs, imported once in the parent before it forks them: the SIMD resizer
    (~28 ms). The HEIF and JPEG XL plugins are not (see :meth:`PillowDecoder.decode`): a worker registers them on
    the first file that needs them, unless this process loaded them already (listing the default extensions
    does), which its forked workers then inherit."""
    simd.preload()


def pillow_extensions() -> tuple[str, ...]:
    """The extensions of every format Pillow and its plugins open, minus :data:`NOT_PHOTOS`, sorted."""
    load_plugins()
    return tuple(
        sorted(
            ext
            for ext, fmt in Image.registered_extensions().items()
            if (fmt in Image.OPEN or fmt in _OPENED_BY_ANOTHER) and ext not in NOT_PHOTOS
        )
    )


class PillowDecoder:
    """Pillow, with every plugin registered in the process: its own, pillow-heif's and pillow-jxl-plugin's
    (:func:`load_plugins`), and any other the program imported."""

    name = "pillow"

    @property
    def extensions(self) -> tuple[str, ...]:
        """What Pillow and the plugins registered now open (:func:`pillow_extensions`)."""
        return pillow_extensions()

    def decode(self, data: bytes, opts: DecodeOptions, out: np.ndarray | Canvas) -> None:
        try:
            try:
                # Pillow loads its own plugins as a file needs them (JPEG and PNG are at hand from the start).
                im = _pillow_open(data)
            except UnidentifiedImageError:
                if _plugins_loaded:
                    raise
                # HEIC/HEIF and JPEG XL are registered on the first file Pillow's own plugins do not know: a run
                # over JPEGs and PNGs never imports them (~40 ms of every worker's start, or of the parent's).
                load_plugins()
                im = _pillow_open(data)
        except MemoryError:
            raise BadImageError("out of memory while decoding") from None
        except Exception as exc:  # plugins raise anything on a header they cannot parse (DDS: NotImplementedError)
            raise NotRecognised(_unreadable_reason(exc)) from None
        check_pixels(im.width, im.height, opts)
        render(im, opts, out)


def render(
    im: Image.Image, opts: DecodeOptions, out: np.ndarray | Canvas, *, full_size: tuple[int, int] | None = None
) -> None:
    """Orient, convert and resize an opened Pillow image into ``out`` (an ``opts.shape`` array, or a Canvas under a
    variable mode); a failure is this file's BadImageError.

    ``full_size``: the upright (width, height) of the image when ``im`` was decoded smaller than that (a raw
    developed at half size); shorter and longer then give the size planned on it, as without the shortcut.
    """
    try:
        _render(im, opts, out, full_size)
    except BadImageError:
        raise
    except MemoryError:
        raise BadImageError("out of memory while decoding") from None
    except Exception as exc:  # any decoder failure is this file's problem, never the run's
        raise BadImageError(_corrupt_reason(im.format, exc)) from None


def render_array(
    arr: np.ndarray, opts: DecodeOptions, out: np.ndarray | Canvas, *, full_size: tuple[int, int] | None = None
) -> None:
    """:func:`render` for pixels another library decoded: any dtype, ``(H, W)``, ``(H, W, C)`` or more frames."""
    try:
        im = _array_to_image(arr)
    except BadImageError:
        raise
    except Exception as exc:
        raise BadImageError(_corrupt_reason(None, exc)) from None
    render(im, opts, out, full_size=full_size)


@contextlib.contextmanager
def _no_pillow_bomb_check() -> Iterator[None]:
    # imgstore applies its own, configurable limit right after open (see _open); Pillow's fixed one would refuse
    # what a user allowed with --max-pixels.
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _pillow_open(data: bytes) -> Image.Image:
    with _no_pillow_bomb_check():
        return Image.open(io.BytesIO(data))


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1..8); a missing or broken EXIF block counts as 1 (upright).

    A JPEG XL image is already upright: libjxl applies the codestream's orientation, which the JPEG XL standard
    makes authoritative over an Exif box. Not so a JPEG XL that holds a recompressed JPEG: pillow-jxl-plugin
    rebuilds the original JPEG, whose EXIF orientation applies as for any JPEG.
    """
    if im.format == "JXL" and not getattr(im, "jpeg", False):
        return 1
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
        return int(value) if int(value) in _ORIENT else 1
    except Exception:
        return 1


def _render(
    im: Image.Image, opts: DecodeOptions, out: np.ndarray | Canvas, full_size: tuple[int, int] | None = None
) -> None:
    if im.format not in _DRAFT_FORMATS:
        # Decode now, so a damaged file fails here: reading the EXIF of a PNG loads it, and a load that failed
        # there (caught: EXIF is optional) would leave the half-decoded image looking loaded.
        im.load()
    orientation = _orientation(im)
    turned = orientation in TURNED  # 5..8 swap width and height
    upright = (im.height, im.width) if turned else im.size
    plan = resize_plan(upright, opts.size, opts.resize_mode, opts.upscale)
    if opts.variable and full_size is not None and full_size != upright:
        full = resize_plan(full_size, opts.size, opts.resize_mode, opts.upscale)
        plan = ResizePlan(plan.box, full.size, plan.offset)

    if not opts.exact and im.format in _DRAFT_FORMATS:
        # Ask libjpeg for the smallest DCT scale that still gives the resize DRAFT_GAP x the pixels it needs.
        request = draft_request(im.size, plan, turned)
        if request is not None:
            full_width, full_height = im.size
            drafted = im.draft(None, request)  # (mode, (0, 0, width / scale, height / scale)) when it scales
            im.load()
            if drafted is not None and im.size != (full_width, full_height):
                scale = full_width / drafted[1][2]
                reduced = (im.height, im.width) if turned else im.size
                plan = reduced_plan(plan, upright, scale, reduced, _FLIPPED.get(orientation, (False, False)))

    im.load()
    if orientation != 1:
        im = im.transpose(_ORIENT[orientation])
    im = _to_mode(im, opts)
    if plan.size == im.size and plan.box == (0.0, 0.0, float(im.width), float(im.height)):
        resized = im  # none, or an image kept at its size: no resize, and no copy of what can be 100 MP
    elif opts.exact:
        resized = im.resize(plan.size, FILTERS[opts.filter], box=plan.box, reducing_gap=None)
    else:
        resized, simd_used = simd.resize_image(im, plan.size, opts.filter, plan.box)
        if simd_used:
            note_path("pillow+simd")
    place(np.asarray(resized), plan, out, opts.pad_color)


def _to_mode(im: Image.Image, opts: DecodeOptions) -> Image.Image:
    """Convert any Pillow mode to RGB (channels=3) or L (channels=1)."""
    target = "RGB" if opts.channels == 3 else "L"
    if im.mode == target:
        return im  # the common case: no conversion, no copy
    if im.mode in _HIGH_BIT_MODES:
        im = Image.fromarray(to_uint8(np.asarray(im)), "L")
    elif im.mode == "CMYK":
        im = _cmyk_to_rgb(im)
    elif im.mode == "P" or (im.mode in ("L", "RGB", "1") and "transparency" in im.info):
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    elif im.mode in ("La", "RGBa", "PA"):
        im = im.convert("RGBA")
    if im.mode in _ALPHA_MODES:
        # Composite on the background: transparent pixels become the background colour, never black.
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, opts.background)
        flat.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        im = flat
    return im if im.mode == target else im.convert(target)


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    """CMYK -> RGB through the embedded ICC profile when there is one (print CMYK is far from naive)."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            rgb = ImageCms.profileToProfile(
                im, ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"), outputMode="RGB"
            )
            if rgb is not None:
                return rgb
        except Exception:  # a broken profile is not worth losing the image over
            pass
    return im.convert("RGB")


def _unreadable_reason(exc: BaseException) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (no decoder recognises the data)"
    return one_line(f"cannot open: {exc}")


def _array_to_image(arr: np.ndarray) -> Image.Image:
    """A Pillow image (L, LA, RGB or RGBA; 8 bit) from an imageio array of any dtype."""
    while arr.ndim > 3 or (arr.ndim == 3 and arr.shape[-1] > 4):  # frames or volumes: keep the first
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        arr = to_uint8(arr)
    if arr.ndim == 2:
        return Image.fromarray(arr, "L")
    mode = {2: "LA", 3: "RGB", 4: "RGBA"}.get(arr.shape[-1])
    if mode is None or arr.ndim != 3:
        raise BadImageError(f"unsupported pixel layout {arr.shape}")
    return Image.fromarray(np.ascontiguousarray(arr), mode)


def _corrupt_reason(fmt: str | None, exc: BaseException) -> str:
    kind = fmt or "image"
    text = str(exc)
    if "truncated" in text or isinstance(exc, EOFError):
        return f"truncated {kind}"
    return one_line(f"corrupt {kind}: {text or type(exc).__name__}")
