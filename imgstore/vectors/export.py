"""Export a store's images as flat vectors, or as a ready-made ANN benchmark.

* :func:`export_vectors`: every stored image, optionally shrunk (``size``, ``channels``), flattened in (H, W, C)
  order into one vector, in store order, streamed into one ``.fvecs``/``.bvecs``/``.fbin``/``.u8bin``/...
  file, plus ``OUT.names.txt`` (line i names vector i) and, when the store has labels, ``OUT.labels.ivecs``.
* :func:`export_ann`: holds out a seeded random set of query images, computes their exact k nearest neighbours
  among the rest by blocked brute force (:class:`ExactKnn`), and writes an ann-benchmarks HDF5 file plus the same
  data as TEXMEX files (``_base.fvecs``, ``_query.fvecs``, ``_groundtruth.ivecs``, ``_distances.fvecs``).

Every store format is exported, including format 4 (flat rows): an encoded store's rows (``--encode jpeg|webp|png``)
are exported as their decoded pixels, read a span of rows at a time (one read of their bytes, then one decode per
row); rows of their own shapes (``--resize-mode shorter|longer|none``) need ``size``, and each is centre-cropped to
its aspect and resized to it (:class:`Shrink` with ``crop``, what ``--resize-mode crop`` does at ingest), so every
vector has one dimension.

Memory: images are read in batches of about 16 MiB (of the largest row), so :func:`export_vectors` stays flat
whatever the store size.
:func:`export_ann` also holds the queries (``queries x d`` float32 plus a float64 copy) and a ``queries x batch``
distance block: shrink large images (``size=32``) to keep that small.
"""

from __future__ import annotations

import contextlib
import enum
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import h5py
import numpy as np
from PIL import Image

from imgstore.decoders.geometry import resize_plan
from imgstore.errors import OptionError, StoreError, io_errors
from imgstore.options import ResizeMode, parse_enum, parse_size, resolve_path
from imgstore.outputs import StagedOutputs
from imgstore.progress import ProgressLike, started
from imgstore.store import LABELS, LIBVER, NAMES, open_read
from imgstore.store.format import SHAPES
from imgstore.store.reader import open_store
from imgstore.vectors.formats import FORMATS, INT32_MAX, VectorFormat, check_shape, format_by_name, format_for_path
from imgstore.vectors.writer import VectorWriter

# Images are read, shrunk and converted about this many bytes at a time (the larger of the stored batch and the
# float32 vectors made from it), which bounds the memory an export needs.
BATCH_BYTES = 16 * 2**20

# Exact kNN handles base rows in blocks whose (queries x rows) float64 distance matrix is about this large.
KNN_BLOCK_BYTES = 32 * 2**20


class Scale(str, enum.Enum):
    """What float vectors hold."""

    RAW = "raw"  # the pixel values 0..255 as float32
    UNIT = "unit"  # pixel / 255 as float32, in [0, 1]


class Metric(str, enum.Enum):
    """ann-benchmarks distance names."""

    EUCLIDEAN = "euclidean"  # plain L2 distance, not squared
    ANGULAR = "angular"  # 1 - cosine similarity


def _positive_int(value: object, what: str, hint: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise OptionError(f"invalid {what} {value!r}: {hint}")
    return int(value)


# ------------------------------------------------------------------------------------------------ shrinking


def _shrink(size: int | str | tuple[int, int] | None, channels: int | None) -> Shrink:
    """The :class:`Shrink` for the ``size`` (N, ``"WxH"`` or (W, H) pixels) and ``channels`` a caller gave."""
    return Shrink(None if size is None else parse_size(size), channels)


@dataclass(frozen=True)
class Shrink:
    """Export-time image shrinking: resize to ``size`` (width, height) and/or convert to ``channels`` (1 or 3).

    An image of another aspect than ``size`` is stretched to it, or with ``crop`` (rows of their own shapes)
    centre-cropped to that aspect first, as ``ImageOps.fit`` and ``--resize-mode crop`` do.
    """

    size: tuple[int, int] | None = None  # (width, height) in pixels; None keeps the stored size
    channels: int | None = None  # 1 = luminance (Pillow's convert("L")), 3 = RGB; None keeps the stored channels
    crop: bool = False  # True: keep the aspect by cropping the centre; False: stretch (a fixed-shape store's rows)

    def __post_init__(self) -> None:
        if self.size is not None:
            object.__setattr__(self, "size", parse_size(self.size))
        if self.channels is not None and self.channels not in (1, 3):
            raise OptionError(f"invalid channels {self.channels!r}: use 1 (grayscale) or 3 (RGB)")

    def shape(self, stored: tuple[int, int, int]) -> tuple[int, int, int]:
        """The (H, W, C) of an exported image, given the stored (H, W, C)."""
        h, w, c = stored
        if self.size is not None:
            w, h = self.size
        return (h, w, self.channels or c)

    def is_noop(self, stored: tuple[int, int, int]) -> bool:
        """True when images of ``stored`` shape pass through unchanged (bit-exact, no Pillow round trip)."""
        return self.shape(stored) == tuple(stored)

    def apply(self, batch: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Shrink a ``(b, H, W, C)`` uint8 batch, or a list of ``(H, W, C)`` images of their own shapes (which needs
        ``size``), into one ``(b, H', W', C')`` array; returns an array batch unchanged when there is nothing to do."""
        if isinstance(batch, np.ndarray):
            if self.is_noop((int(batch.shape[1]), int(batch.shape[2]), int(batch.shape[3]))):
                return batch
        elif self.size is None and len({img.shape for img in batch}) > 1:
            raise OptionError("images of different shapes need a size to become vectors of one dimension")
        if len(batch) == 0:
            raise ValueError("an empty batch has no shape to shrink to")
        first = batch[0].shape
        h, w, c = self.shape((int(first[0]), int(first[1]), int(first[2])))
        out = np.empty((len(batch), h, w, c), np.uint8)
        for i, img in enumerate(batch):
            out[i] = shrink_image(img, self.size, self.channels, crop=self.crop).reshape(h, w, c)
        return out


_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def shrink_image(
    img: np.ndarray, size: tuple[int, int] | None, channels: int | None, *, crop: bool = False
) -> np.ndarray:
    """Resize one ``(H, W, C)`` uint8 image to ``size`` (width, height; bicubic) and/or convert it to ``channels``.

    Returns ``(H', W', C')`` uint8. Channels are converted before resizing, so a grayscale export resizes one plane.
    With ``crop``, an image of another aspect is centre-cropped to the aspect of ``size`` within the same resize
    (pixel for pixel ``ImageOps.fit(im, size, BICUBIC)``); without, it is stretched.
    """
    c = img.shape[2]
    if c not in _MODES:
        raise StoreError(f"cannot shrink images with {c} channels: stored images must have 1, 2, 3 or 4")
    im = Image.fromarray(img[:, :, 0] if c == 1 else img, _MODES[c])
    target = {1: "L", 3: "RGB"}.get(channels or 0)
    if target is not None and im.mode != target:
        im = im.convert(target)
    if size is not None and im.size != tuple(size):
        target_size = (int(size[0]), int(size[1]))
        box = resize_plan(im.size, target_size, ResizeMode.CROP).box if crop else None
        im = im.resize(target_size, Image.Resampling.BICUBIC, box=box)
    arr = np.asarray(im)
    return arr[:, :, None] if arr.ndim == 2 else arr


def to_vectors(batch: np.ndarray, scale: Scale, fmt: VectorFormat) -> np.ndarray:
    """Flatten a ``(b, H, W, C)`` uint8 batch to ``(b, H*W*C)`` rows in (H, W, C) order, in values ``fmt`` takes.

    Integer formats and raw float formats get the uint8 pixels (the writer widens them exactly); ``Scale.UNIT``
    gives float32 ``pixel / 255`` (a correctly rounded division, so 255 -> 1.0 exactly).
    """
    flat = batch.reshape(batch.shape[0], -1)
    if fmt.is_float and scale is Scale.UNIT:
        return flat.astype(np.float32) / np.float32(255)
    return flat


# ------------------------------------------------------------------------------------------------ store access


class _StoreRows:
    """A store's committed rows read in bounded pieces: images through :func:`imgstore.store.reader.open_store`, names
    and labels per batch straight from their datasets (the reader's ``names`` would load every name at once)."""

    def __init__(self, path: Path) -> None:
        self.store = open_store(path)
        self.count = len(self.store)
        if self.count == 0:
            self.store.close()
            raise StoreError(f"{path} holds no images: there is nothing to export")
        # An interrupted ingest's store holds its committed rows: export them, and say so.
        self.warning = None if self.store.complete else (
            f"{path} is incomplete (its ingest did not finish): exported the {self.count} images it holds, rows "
            f"0-{self.count - 1}; imgstore ingest --resume completes it"
        )
        self.path = path
        self.stem = path.stem
        self._file = open_read(path)
        # (H, W, C) of every row, or None when rows have their own shapes (a format-4 store); ``largest`` is the row
        # with the most pixels, which sizes the batches.
        self.shape: tuple[int, int, int] | None = None
        if self.store.shape is not None:
            h, w, c = (int(s) for s in self.store.shape)
            self.shape = (h, w, c)
            self.largest = self.shape
        else:
            try:
                self.largest = _largest_shape(self._file[SHAPES], self.count)
            except (OSError, KeyError, ValueError) as exc:
                self.close()
                raise StoreError(f"{path}: its row shapes cannot be read: {exc} (run imgstore verify on it)") from None
        names = self._file.get(NAMES)
        self._names: Any = names.asstr() if isinstance(names, h5py.Dataset) and len(names) >= self.count else None
        if not self.store.complete:
            # An interrupted store: its variable-length names may be torn; the reader takes them from the journal.
            self._names = np.asarray(self.store.names, dtype=object)
        labels = self._file.get(LABELS)
        self._labels = labels if isinstance(labels, h5py.Dataset) and len(labels) >= self.count else None

    def fitted(self, shrink: Shrink) -> tuple[Shrink, tuple[int, int, int]]:
        """The :class:`Shrink` this store's rows go through and the ``(H, W, C)`` of every exported image.

        Rows of their own shapes need ``shrink.size`` (``--size``): each is centre-cropped to its aspect and resized
        to it, so that every vector has one dimension.
        """
        if self.shape is not None:
            return shrink, shrink.shape(self.shape)
        if shrink.size is None:
            raise OptionError(
                f"{self.path} holds images of their own shapes (stored with --resize-mode "
                f"{self.store.attrs.get('resize_mode', 'shorter, longer or none')}): give --size N or WIDTHxHEIGHT "
                "(size= in Python) to export them as vectors of one dimension; each image is centre-cropped to that "
                "aspect and resized"
            )
        w, h = shrink.size
        return replace(shrink, crop=True), (h, w, shrink.channels or self.store.channels)

    @property
    def has_labels(self) -> bool:
        """True when the store has a label for every committed row."""
        return self._labels is not None

    def read(self, start: int, stop: int) -> np.ndarray | list[np.ndarray]:
        """Images ``start:stop``: a ``(b, H, W, C)`` uint8 array, or a list of arrays where their shapes differ. A
        flat store reads the span's bytes at once and decodes them row by row."""
        return self.store[start:stop]

    def take(self, rows: np.ndarray) -> np.ndarray | list[np.ndarray]:
        """Images at the indices ``rows``, as :meth:`read` gives them."""
        if self.store.flat:  # one span each: the reader's index of every row (32 bytes a row) is never loaded
            images = [self.store[int(i) : int(i) + 1][0] for i in rows]
            return np.stack(images) if self.shape is not None and images else images
        return self.store[np.asarray(rows, dtype=np.int64)]

    def names(self, rows: slice | np.ndarray) -> list[str]:
        """Names of the rows (the row number when the store has no names)."""
        if self._names is None:
            return [str(i) for i in np.arange(self.count)[rows]]
        return list(self._names[rows] if isinstance(rows, slice) else self._names[np.asarray(rows, np.int64)])

    def labels(self, rows: slice | np.ndarray) -> np.ndarray | None:
        """Labels of the rows, or None when the store has none."""
        if self._labels is None:
            return None
        return self._labels[rows] if isinstance(rows, slice) else self._labels[np.asarray(rows, np.int64)]

    def close(self) -> None:
        """Close the files; safe twice."""
        self.store.close()
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> _StoreRows:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _largest_shape(shapes: h5py.Dataset, count: int, step: int = 1 << 20) -> tuple[int, int, int]:
    """The ``(H, W, C)`` with the most pixels among the first ``count`` rows of a ``shapes`` dataset, read a
    million rows at a time."""
    best, most = (0, 0, 0), -1
    for start in range(0, count, step):
        block = shapes[start : min(start + step, count)].astype(np.int64)
        j = int(np.argmax(np.prod(block, axis=1)))
        if int(np.prod(block[j])) > most:
            best, most = (int(block[j][0]), int(block[j][1]), int(block[j][2])), int(np.prod(block[j]))
    return best


def _batch_rows(stored: tuple[int, int, int], exported: tuple[int, int, int], budget: int | None = None) -> int:
    """Images per batch: about ``budget`` (default BATCH_BYTES) bytes of stored uint8 or of exported float32."""
    per_row = max(int(np.prod(stored)), 4 * int(np.prod(exported)))
    return max(1, (budget or BATCH_BYTES) // per_row)


def _write_names(out: TextIO, names: list[str]) -> None:
    # One line per vector: a line break inside a name would shift every later line, so escape it (the store
    # already escapes undecodable bytes with backslashes, as \xNN).
    out.writelines(n.replace("\r", "\\r").replace("\n", "\\n") + "\n" for n in names)


# ------------------------------------------------------------------------------------------------ export_vectors


@dataclass(frozen=True)
class ExportOptions:
    """Validated options of :func:`export_vectors` (the format is resolved against OUT separately)."""

    fmt: VectorFormat | None = None  # None: from OUT's extension
    shrink: Shrink = Shrink()
    scale: Scale = Scale.RAW
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.fmt is not None:
            object.__setattr__(self, "fmt", format_for_path("", self.fmt))
        object.__setattr__(self, "scale", parse_enum(Scale, self.scale, "scale"))

    def check_format(self, fmt: VectorFormat) -> None:
        """Refuse combinations ``fmt`` cannot hold: unit scale in integer formats, pixels 0..255 in int8."""
        if not fmt.is_float and self.scale is Scale.UNIT:
            raise OptionError(
                f"--scale unit needs a float format (.fvecs or .fbin); {fmt.extension} keeps the uint8 pixels"
            )
        if fmt.dtype == np.int8:
            raise OptionError(f"{fmt.extension} holds int8 (-128..127) and cannot keep pixels 0..255: use .u8bin")


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_vectors` wrote."""

    out: Path
    format: str  # format name, e.g. "fvecs"
    count: int  # vectors written
    dim: int  # values per vector = H * W * C
    shape: tuple[int, int, int]  # (H, W, C) of each exported image
    names_path: Path
    labels_path: Path | None
    bytes_written: int  # size of OUT
    warning: str | None = None  # e.g. the store was incomplete


def export_vectors(
    store_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    fmt: str | VectorFormat | None = None,
    size: int | str | tuple[int, int] | None = None,
    channels: int | None = None,
    scale: str | Scale = "raw",
    overwrite: bool = False,
    progress: ProgressLike = None,
) -> ExportReport:
    """Write every image of the store as one flattened (H, W, C) vector of ``out``, in store order.

    ``fmt`` (``fvecs``, ``bvecs``, ``fbin``, ``u8bin``, ``ivecs``, ``ibin``) defaults to ``out``'s extension.
    ``.bvecs``/``.u8bin`` keep the uint8 pixels exactly; float formats get pixel values as float32, or values in
    [0, 1] with ``scale="unit"``. ``size`` (N or ``"WxH"`` pixels) and ``channels`` (1 or 3) shrink the images
    first (bicubic). An encoded store (``--encode``) exports its decoded pixels; a store of images of their own
    shapes needs ``size`` (else :class:`OptionError` naming ``--size``), each image centre-cropped to its aspect and
    resized to it (``ImageOps.fit``). Also writes ``OUT.names.txt`` and, when the store has labels, ``OUT.labels.ivecs`` (one int32
    per vector). All outputs appear together, only on success; existing ones are refused unless ``overwrite``.
    ``progress`` receives image increments.
    """
    opts = ExportOptions(
        fmt=None if fmt is None else format_by_name(fmt),
        shrink=_shrink(size, channels),
        scale=parse_enum(Scale, scale, "scale"),
        overwrite=overwrite,
    )
    out_path = resolve_path(out)
    vf = format_for_path(out_path, opts.fmt)
    opts.check_format(vf)
    with io_errors(store_path, out_path, StoreError), _StoreRows(resolve_path(store_path)) as store:
        shrink, shape = store.fitted(opts.shrink)
        dim = int(np.prod(shape))
        check_shape(vf, store.count, dim)
        names_path = out_path.with_name(out_path.name + ".names.txt")
        labels_path = out_path.with_name(out_path.name + ".labels.ivecs") if store.has_labels else None
        targets = [out_path, names_path] + ([labels_path] if labels_path else [])
        step = _batch_rows(store.largest, shape)
        with StagedOutputs(targets, overwrite=opts.overwrite) as staged, contextlib.ExitStack() as stack:
            tick = started(progress, store.count)
            # Entered in a stack so that an error aborts every writer (deleting its temporary file).
            w = stack.enter_context(VectorWriter(staged.temp(out_path), vf, dim, store.count, True, atomic=False))
            names_file = stack.enter_context(open(staged.temp(names_path), "x", encoding="utf-8", newline="\n"))
            labels_w = None
            if labels_path is not None:
                labels_w = stack.enter_context(
                    VectorWriter(staged.temp(labels_path), "ivecs", 1, store.count, True, atomic=False)
                )
            for start in range(0, store.count, step):
                stop = min(start + step, store.count)
                w.write(to_vectors(shrink.apply(store.read(start, stop)), opts.scale, vf))
                _write_names(names_file, store.names(slice(start, stop)))
                labels = store.labels(slice(start, stop))
                if labels_w is not None and labels is not None:
                    labels_w.write(labels.reshape(-1, 1))
                tick(stop - start)
    return ExportReport(
        out=out_path,
        format=vf.name,
        count=store.count,
        dim=dim,
        shape=shape,
        names_path=names_path,
        labels_path=labels_path,
        bytes_written=vf.file_bytes(store.count, dim),
        warning=store.warning,
    )


# ------------------------------------------------------------------------------------------------ exact kNN


class ExactKnn:
    """Exact k nearest neighbours of fixed queries among base vectors streamed in blocks (blocked brute force).

    Distances follow ann-benchmarks: ``euclidean`` is the plain L2 distance (not squared), ``angular`` is
    ``1 - cosine similarity`` (a zero vector has cosine 0 with everything, so distance 1). Work is in float64 with
    the ``|q|^2 + |b|^2 - 2 q.b`` expansion, clipped at 0 before the square root; for integer-valued vectors (raw
    pixels) every squared distance is an exact integer in float64. Ranking is by (distance, base index): among equal
    distances the lower index wins, as a stable sort gives. Base ids count from 0 in the order blocks are added.
    """

    def __init__(self, queries: np.ndarray, k: int, metric: Metric | str = Metric.EUCLIDEAN) -> None:
        self.metric = parse_enum(Metric, metric, "metric")
        self.k = _positive_int(k, "k", "give the number of neighbours, e.g. 100")
        self.queries = np.asarray(queries, dtype=np.float64)
        if self.queries.ndim != 2:
            raise OptionError(f"queries must be a 2-D array (q, d), got shape {self.queries.shape}")
        self._q_sq = np.einsum("ij,ij->i", self.queries, self.queries)
        self._q_norm = np.sqrt(self._q_sq)
        nq = self.queries.shape[0]
        self._keys = np.empty((nq, 0), np.float64)  # running best keys (squared L2 or 1 - cos), sorted per row
        self._ids = np.empty((nq, 0), np.int64)
        self.seen = 0  # base vectors added so far

    def _block_keys(self, base: np.ndarray) -> np.ndarray:
        dot = self.queries @ base.T
        b_sq = np.einsum("ij,ij->i", base, base)
        if self.metric is Metric.EUCLIDEAN:
            keys = dot
            keys *= -2.0
            keys += self._q_sq[:, None]
            keys += b_sq[None, :]
            np.maximum(keys, 0.0, out=keys)  # rounding can push an exact 0 slightly negative
            return keys
        denom = self._q_norm[:, None] * np.sqrt(b_sq)[None, :]
        cos = np.divide(dot, denom, out=np.zeros_like(dot), where=denom > 0)
        np.clip(cos, -1.0, 1.0, out=cos)
        return np.subtract(1.0, cos, out=cos)

    def add(self, base: np.ndarray) -> None:
        """Take the next ``(m, d)`` block of base vectors into account."""
        b = np.asarray(base, dtype=np.float64)
        if b.ndim != 2 or b.shape[1] != self.queries.shape[1]:
            raise OptionError(f"base block must have shape (m, {self.queries.shape[1]}), got {b.shape}")
        # Sub-blocks bound the (queries x rows) temporaries: float64 keys, a bool mask and int64 sort indices.
        step = max(1, KNN_BLOCK_BYTES // (8 * max(1, self.queries.shape[0])))
        for start in range(0, b.shape[0], step):
            self._add_block(b[start : start + step])

    def _add_block(self, b: np.ndarray) -> None:
        keys, cols = _smallest_k(self._block_keys(b), self.k)
        # Every running id is lower than every id of this block, so a stable sort of [running | block] ranks equal
        # keys by index.
        all_keys = np.concatenate([self._keys, keys], axis=1)
        all_ids = np.concatenate([self._ids, cols + self.seen], axis=1)
        order = np.argsort(all_keys, axis=1, kind="stable")[:, : self.k]
        self._keys = np.take_along_axis(all_keys, order, axis=1)
        self._ids = np.take_along_axis(all_ids, order, axis=1)
        self.seen += b.shape[0]

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, distances)``, each ``(q, min(k, seen))``: int64 base ids and float64 distances, nearest first."""
        dist = np.sqrt(self._keys) if self.metric is Metric.EUCLIDEAN else self._keys.copy()
        return self._ids.copy(), dist


def _smallest_k(keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` smallest keys and their columns, ordered by (key, column).

    Linear time in the block width: a partition finds each row's k-th smallest key, every column at or below it
    (ties included) is a candidate, and only the candidates are sorted. Sorting all columns would cost
    ``m log m`` per query per block.
    """
    m = keys.shape[1]
    if m <= k:
        order = np.argsort(keys, axis=1, kind="stable")
        return np.take_along_axis(keys, order, axis=1), order
    kth = np.partition(keys, k - 1, axis=1)[:, k - 1 : k]
    mask = keys <= kth
    width = int(mask.sum(axis=1).max())  # k, or more where ties straddle the k-th key
    cols = np.argsort(~mask, axis=1, kind="stable")[:, :width]  # candidates first, in column order
    cand = np.take_along_axis(keys, cols, axis=1)
    cand[~np.take_along_axis(mask, cols, axis=1)] = np.inf  # rows with fewer candidates: padding sorts last
    order = np.argsort(cand, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(cand, order, axis=1), np.take_along_axis(cols, order, axis=1)


# ------------------------------------------------------------------------------------------------ export_ann


@dataclass(frozen=True)
class AnnOptions:
    """Validated options of :func:`export_ann`."""

    queries: int = 1000  # images held out as queries
    k: int = 100  # neighbours per query in the ground truth
    metric: Metric = Metric.EUCLIDEAN
    seed: int = 0  # seeds the query hold-out (numpy default_rng)
    shrink: Shrink = Shrink()
    scale: Scale = Scale.RAW
    overwrite: bool = False

    def __post_init__(self) -> None:
        _positive_int(self.queries, "number of queries", "give 1 or more, e.g. --queries 1000")
        _positive_int(self.k, "k", "give 1 or more neighbours, e.g. --k 100")
        object.__setattr__(self, "metric", parse_enum(Metric, self.metric, "metric"))
        object.__setattr__(self, "scale", parse_enum(Scale, self.scale, "scale"))
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) or self.seed < 0:
            raise OptionError(f"invalid seed {self.seed!r}: give a non-negative integer")

    def check_store(self, count: int) -> None:
        """Refuse a store too small for ``queries`` queries with ``k`` neighbours each among the rest."""
        if count < self.queries + self.k:
            raise OptionError(
                f"the store has {count} images but --queries {self.queries} --k {self.k} needs at least "
                f"{self.queries + self.k} ({self.k} base images left after holding out the queries): "
                f"lower --queries or --k"
            )
        if count - self.queries > INT32_MAX:
            raise OptionError(f"{count - self.queries} base vectors do not fit the int32 ids of ground-truth files")


@dataclass(frozen=True)
class AnnReport:
    """What :func:`export_ann` wrote."""

    name: str  # file stem, e.g. "photos-3072-euclidean"
    outputs: dict[str, Path]  # hdf5, base, query, groundtruth, distances, base_names, query_names
    n_base: int
    n_query: int
    dim: int
    k: int
    metric: str
    seed: int
    warning: str | None = None  # e.g. the store was incomplete


def hold_out(count: int, queries: int, seed: int) -> np.ndarray:
    """The store rows held out as queries: ``queries`` distinct rows of ``range(count)``, sorted, seeded."""
    return np.sort(np.random.default_rng(seed).choice(count, size=queries, replace=False))


def export_ann(
    store_path: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    *,
    queries: int = 1000,
    k: int = 100,
    metric: str | Metric = "euclidean",
    seed: int = 0,
    size: int | str | tuple[int, int] | None = None,
    channels: int | None = None,
    scale: str | Scale = "raw",
    overwrite: bool = False,
    progress: ProgressLike = None,
) -> AnnReport:
    """Turn a store into an ANN benchmark in ``outdir`` (created if missing).

    Holds out ``queries`` images chosen by ``seed`` (sorted by store row) as the test set; the others, in store
    order, are the base set. Computes the exact ``k`` nearest base vectors of every query under ``metric``
    (``euclidean`` = L2, ``angular`` = 1 - cosine; ties by lower base index) on the float32 vectors as written.
    Writes ``NAME.hdf5`` in the ann-benchmarks layout (``train``, ``test``, ``neighbors`` int32, ``distances``
    float32; attributes ``distance``, ``dimension``, ``type``="dense", ``point_type``="float", ``k``, ``seed``,
    ...; ``train_labels``/``test_labels`` and ``class_names`` when the store has labels), the TEXMEX files
    ``NAME_base.fvecs``, ``NAME_query.fvecs``, ``NAME_groundtruth.ivecs``, ``NAME_distances.fvecs`` and
    ``NAME_base.names.txt`` / ``NAME_query.names.txt``, NAME being ``STORE-DIM-METRIC``. Vectors are stored raw
    for both metrics. ``size``/``channels``/``scale`` shape the vectors as in :func:`export_vectors`. ``progress``
    gets image increments (queries count twice: read first, then skipped in the pass over the store).
    """
    opts = AnnOptions(queries, k, parse_enum(Metric, metric, "metric"), seed, _shrink(size, channels),
                      parse_enum(Scale, scale, "scale"), overwrite)  # fmt: skip
    out_path = resolve_path(outdir)
    if out_path.exists() and not out_path.is_dir():
        raise OptionError(f"output {str(out_path)!r} is a file: with --ann, OUT is a folder for the benchmark files")
    with io_errors(store_path, out_path, StoreError), _StoreRows(resolve_path(store_path)) as store:
        plan = _AnnPlan.make(store, opts, out_path)
        out_path.mkdir(parents=True, exist_ok=True)
        with StagedOutputs(plan.outputs.values(), overwrite=opts.overwrite) as staged:
            tick = started(progress, store.count + plan.n_query)
            query = np.empty((plan.n_query, plan.dim), np.float32)
            for start in range(0, plan.n_query, plan.step):
                rows = plan.q_rows[start : start + plan.step]
                query[start : start + len(rows)] = plan.vectors(store.take(rows))
                tick(len(rows))
            ids, dist = _write_base(store, plan, query, staged, tick)
            _write_all(staged.temp(plan.outputs["query"]), "fvecs", query)
            _write_all(staged.temp(plan.outputs["groundtruth"]), "ivecs", ids)
            _write_all(staged.temp(plan.outputs["distances"]), "fvecs", dist.astype(np.float32))
            with open(staged.temp(plan.outputs["query_names"]), "x", encoding="utf-8", newline="\n") as f:
                _write_names(f, store.names(plan.q_rows))
    return AnnReport(
        name=plan.name,
        outputs=plan.outputs,
        n_base=store.count - plan.n_query,
        n_query=plan.n_query,
        dim=plan.dim,
        k=opts.k,
        metric=opts.metric.value,
        seed=opts.seed,
        warning=store.warning,
    )


@dataclass(frozen=True)
class _AnnPlan:
    """What an ANN export writes, worked out before anything is: names, shapes, the held-out query rows."""

    opts: AnnOptions
    shrink: Shrink  # opts.shrink as it applies to the store's rows (see _StoreRows.fitted)
    name: str  # STORE-DIM-METRIC
    outputs: dict[str, Path]
    shape: tuple[int, int, int]  # (H, W, C) of an exported image
    dim: int
    q_rows: np.ndarray  # the store rows held out as queries, sorted
    is_query: np.ndarray  # bool per store row
    step: int  # store rows per batch

    @classmethod
    def make(cls, store: _StoreRows, opts: AnnOptions, out: Path) -> _AnnPlan:
        opts.check_store(store.count)
        shrink, shape = store.fitted(opts.shrink)
        dim = int(np.prod(shape))
        check_shape(FORMATS["fvecs"], store.count, dim)
        name = f"{store.stem}-{dim}-{opts.metric.value}"
        files = {"hdf5": ".hdf5", "base": "_base.fvecs", "query": "_query.fvecs", "groundtruth": "_groundtruth.ivecs",
                 "distances": "_distances.fvecs", "base_names": "_base.names.txt", "query_names": "_query.names.txt"}  # fmt: skip
        q_rows = hold_out(store.count, opts.queries, opts.seed)
        is_query = np.zeros(store.count, bool)
        is_query[q_rows] = True
        outputs = {key: out / f"{name}{suffix}" for key, suffix in files.items()}
        return cls(opts, shrink, name, outputs, shape, dim, q_rows, is_query, _batch_rows(store.largest, shape))

    @property
    def n_query(self) -> int:
        return len(self.q_rows)

    def vectors(self, images: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """The float32 vectors of stored ``images`` exactly as written, so the ground truth is that of the files."""
        return self.flatten(self.shrink.apply(images))

    def flatten(self, fitted: np.ndarray) -> np.ndarray:
        """The float32 vectors of images already through :attr:`shrink` (``(b, H, W, C)`` of :attr:`shape`)."""
        return to_vectors(fitted, self.opts.scale, FORMATS["fvecs"]).astype(np.float32, copy=False)


def _write_base(
    store: _StoreRows, plan: _AnnPlan, query: np.ndarray, staged: StagedOutputs, tick: Any
) -> tuple[np.ndarray, np.ndarray]:
    """One pass over the store: the base vectors into the HDF5 file and ``_base.fvecs`` (with their names and
    labels), each block fed to the exact kNN of ``query``; returns the ground truth ``(ids, distances)``."""
    opts, n_base = plan.opts, store.count - plan.n_query
    knn = ExactKnn(query, opts.k, opts.metric)
    # The 1.10 file format: readable by every h5py of the last years (HDF5 2.0's newest is not).
    with h5py.File(staged.temp(plan.outputs["hdf5"]), "w", libver=("earliest", LIBVER[1])) as h5:
        _ann_attrs(h5, opts, plan.dim, plan.shape, store.stem, plan.n_query)
        if store.has_labels and store.store.class_names:
            h5.attrs["class_names"] = list(store.store.class_names)  # label i names class i
        train = h5.create_dataset("train", (n_base, plan.dim), np.float32)
        train_labels = h5.create_dataset("train_labels", (n_base,), np.int64) if store.has_labels else None
        base_path, names_path = staged.temp(plan.outputs["base"]), staged.temp(plan.outputs["base_names"])
        with VectorWriter(base_path, FORMATS["fvecs"], plan.dim, n_base, True, atomic=False) as base_w, open(
            names_path, "x", encoding="utf-8", newline="\n"
        ) as names_file:
            row = 0
            for start in range(0, store.count, plan.step):
                stop = min(start + plan.step, store.count)
                keep = ~plan.is_query[start:stop]
                # Fitted to one shape first (rows of their own shapes come as a list), then the queries dropped.
                block = plan.flatten(plan.shrink.apply(store.read(start, stop))[keep])
                train[row : row + len(block)] = block
                base_w.write(block)
                knn.add(block)
                _write_names(names_file, [n for n, y in zip(store.names(slice(start, stop)), keep) if y])
                labels = store.labels(slice(start, stop))
                if train_labels is not None and labels is not None:
                    train_labels[row : row + len(block)] = labels[keep]
                row += len(block)
                tick(stop - start)
        ids, dist = knn.result()
        h5.create_dataset("test", data=query)
        h5.create_dataset("neighbors", data=ids.astype(np.int32))
        h5.create_dataset("distances", data=dist.astype(np.float32))
        if store.has_labels:
            h5.create_dataset("test_labels", data=np.asarray(store.labels(plan.q_rows), np.int64))
    return ids, dist


def _write_all(path: Path, fmt: str, data: np.ndarray) -> None:
    with VectorWriter(path, fmt, data.shape[1], data.shape[0], overwrite=True, atomic=False) as w:
        w.write(data)


def _ann_attrs(h5: h5py.File, opts: AnnOptions, dim: int, shape: tuple[int, int, int], store: str, q: int) -> None:
    from imgstore import __version__

    a = h5.attrs
    a["distance"] = opts.metric.value  # ann-benchmarks reads these three
    a["dimension"] = dim
    a["type"] = "dense"
    a["point_type"] = "float"
    a["k"] = opts.k
    a["queries"] = q
    a["seed"] = opts.seed
    a["scale"] = opts.scale.value
    a["image_shape"] = list(shape)  # (H, W, C) of each vector, flattened in that order
    a["source"] = store
    a["imgstore_version"] = __version__
