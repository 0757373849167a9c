"""Read a finished (or interrupted, or still running) store: ``imgstore.open(path)`` -> :class:`ImageStore`.

Only rows below the ``count`` attribute are visible: rows past it are a running or interrupted write's. An
``ImageStore`` pickles as its path and reopens the file lazily in each process (and again after a fork), so it
can be handed to the worker processes of a training job's data loader. With ``check=True`` every row read is
checked against its stored checksum (:func:`imgstore.store.row_checksum`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import h5py
import numpy as np

from imgstore.errors import BadImageError, ChecksumError, EmptyStoreError, OptionError, StoreError, os_cause
from imgstore.lock import read_holder
from imgstore.store.compression import load_filters
from imgstore.store.encoding import Encoding, flat_crc, parse_encoding
from imgstore.store.file import FlatRows, read_flat
from imgstore.store.format import (
    CHECKSUMS,
    ENCODING,
    IMAGE_DATA,
    IMAGE_ENDS,
    IMAGES,
    LABELS,
    NAMES,
    READABLE_FORMATS,
    SHA256,
    SHAPES,
    SKIPPED_NAMES,
    SKIPPED_REASONS,
    VARIABLE,
    attr_value,
    format_version,
    ignored_of,
    open_read,
    pixel_crc,
    read_text_column,
    row_checksum,
)
from imgstore.store.meta import Columns, MetaValue, columns_of, meta_bytes, read_meta


def read_root_attrs(f: h5py.File) -> dict[str, Any]:
    """The root attributes of an open store as plain Python values (:func:`~imgstore.store.format.attr_value`)."""
    return {key: attr_value(value) for key, value in f.attrs.items()}


class ImageStore:
    """A read-only view of an imgstore file.

    ``len(store)`` images; ``store[i]`` is one ``(H, W, C)`` uint8 array, whatever the store's encoding;
    ``store[a:b]``, ``store[[i, j]]`` and boolean masks give ``(n, H, W, C)`` batches, or a list of arrays when the
    rows have their own shapes and those differ (``store.shapes`` gives every row's; ``store.read(i, max_side=128)``
    a smaller copy, decoded for less where the encoding allows). ``names``, ``labels`` (or None), ``class_names`` (or None),
    ``meta`` (the meta columns of a list file: ``store.meta["caption"][i]``), ``skipped`` and ``attrs`` describe
    the rows; ``meta_row(i)`` is row i's meta values as a dict. ``iter_batches(n)`` walks the store in order.

    ``check=True`` recomputes each row's checksum as it is read and raises
    :class:`~imgstore.errors.ChecksumError` naming the row when its bytes changed (stores of format 1 carry no
    checksums: then it raises at once). The rows seen are those committed when the store was opened.
    """

    def __init__(self, path: str | os.PathLike[str], check: bool = False) -> None:
        self.path = Path(path)
        self.check = check
        self._file: h5py.File | None = None
        self._ds: h5py.Dataset | None = None
        self._pid = -1
        self._names: list[str] | None = None
        self._meta: tuple[np.ndarray, np.ndarray | None, np.ndarray | None] | None = None  # for check=True
        self._columns: dict[str, Any] = {}  # meta columns read so far
        self._kinds: Columns | None = None  # the meta columns, for check=True
        self._flat: tuple[np.ndarray, np.ndarray] | None = None  # flat stores: (starts+ends (N+1,), shapes (N, 3))
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    def _load(self) -> None:
        f = self._h5()
        if "imgstore_format" not in f.attrs:
            raise StoreError(f"{self.path} is an HDF5 file but not an imgstore store (no imgstore_format attribute)")
        try:
            self.attrs: dict[str, Any] = read_root_attrs(f)
            self.format_version = format_version(f)
            if self.format_version not in READABLE_FORMATS:
                raise StoreError(
                    f"{self.path} is in store format {self.attrs.get('imgstore_format')!r}, which this imgstore does "
                    f"not read (it reads {', '.join(map(str, READABLE_FORMATS))}): upgrade imgstore"
                )
            load_filters(self.attrs.get("compression"))  # zstd/blosc stores need hdf5plugin's filters
            self._count = int(self.attrs.get("count", 0))
            self.flat = IMAGE_DATA in f
            self.encoding: Encoding = parse_encoding(str(self.attrs.get(ENCODING, "none")) if self.flat else None)
            self.variable = bool(self.attrs.get(VARIABLE, False)) if self.flat else False
            if self.flat:
                data, ends, shapes = f[IMAGE_DATA], f[IMAGE_ENDS], f[SHAPES]
                if data.ndim != 1 or ends.ndim != 1 or shapes.ndim != 2 or shapes.shape[1] != 3:
                    raise StoreError(
                        f"{self.path} is damaged: {IMAGE_DATA} {data.shape}, {IMAGE_ENDS} {ends.shape} and {SHAPES} "
                        f"{shapes.shape} are not bytes (B,), ends (N,) and shapes (N, 3) (run imgstore verify on it)"
                    )
                rows = min(ends.shape[0], shapes.shape[0])
                if rows < self._count:
                    raise StoreError(
                        f"{self.path} is damaged: count says {self._count} images but only {rows} rows exist "
                        "(run imgstore verify on it)"
                    )
                size = self.attrs.get("size") or [0, 0]
                self.shape: tuple[int, int, int] | None = (
                    None if self.variable else (int(size[1]), int(size[0]), int(self.attrs.get("channels", 3)))
                )
            elif IMAGES in f:
                ds = f[IMAGES]
                if ds.shape[0] < self._count:
                    raise StoreError(
                        f"{self.path} is damaged: count says {self._count} images but only {ds.shape[0]} rows exist "
                        "(run imgstore verify on it)"
                    )
                h, w, c = (int(v) for v in ds.shape[1:])
                self.shape = (h, w, c)
            else:
                size = self.attrs.get("size") or [0, 0]
                self.shape = (int(size[1]), int(size[0]), int(self.attrs.get("channels", 3)))
        except (OSError, KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise StoreError(f"{self.path} is damaged: {os_cause(exc)} (run imgstore verify on it)") from None
        if self.check and self._count and CHECKSUMS not in f:
            raise StoreError(
                f"{self.path} carries no row checksums (store format {self.format_version}): open it without "
                "check=True, or ingest it again with this imgstore"
            )

    # -- file handle, per process ----------------------------------------------------------------------------
    def _h5(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            # After a fork the inherited HDF5 handle must not be used: open our own.
            self._file = None
            self._flat = None
            self._names = None
            self._columns = {}
            self._ds = None
            try:
                self._file = open_read(self.path)
            except FileNotFoundError:
                raise StoreError(_missing(self.path)) from None
            except OSError as exc:
                if "truncated file" in str(exc):
                    raise StoreError(
                        f"{self.path} ends before its last write did (a write failed part-way): "
                        "imgstore ingest --resume repairs it"
                    ) from None
                raise StoreError(f"{self.path} cannot be opened as an HDF5 store: {os_cause(exc)}") from None
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        """Close the file handle (it reopens on next use). Safe to call twice."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._ds = None

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None  # an HDF5 handle cannot cross processes; each process opens its own
        state["_ds"] = None
        state["_names"] = None
        state["_meta"] = None
        state["_flat"] = None
        state["_columns"] = {}
        state["_pid"] = -1
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        shape = "their own shapes" if self.shape is None else str(self.shape)
        encoded = "" if self.encoding.raw else f", {self.encoding}"
        return f"<ImageStore {str(self.path)!r}: {len(self)} images of {shape}{encoded}>"

    # -- rows -------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._count

    @property
    def complete(self) -> bool:
        """True when the ingest that wrote the store finished cleanly."""
        return bool(self.attrs.get("complete", False))

    @property
    def virtual(self) -> bool:
        """True for a merged store whose datasets read the shard files (``imgstore merge`` without ``--copy``)."""
        return any(d.is_virtual for d in self._h5().values() if isinstance(d, h5py.Dataset))

    def _images(self) -> h5py.Dataset:
        if self._ds is None or self._pid != os.getpid():
            f = self._h5()
            key = IMAGE_DATA if self.flat else IMAGES
            if key not in f:
                raise EmptyStoreError(f"{self.path} holds no images")
            self._ds = f[key]
        return self._ds

    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        """A flat store's row offsets ``(N + 1,)`` (row i is ``image_data[off[i]:off[i + 1]]``) and shapes
        ``(N, 3)``, read once per process: 20 bytes a row, so random reads cost one read of the row's bytes."""
        if self._flat is None or self._pid != os.getpid():
            f = self._h5()
            n = self._count
            try:
                offsets = np.zeros(n + 1, np.int64)
                offsets[1:] = f[IMAGE_ENDS][:n]
                shapes = f[SHAPES][:n].astype(np.uint32)  # as stored: 12 bytes a row, widened when handed out
            except (OSError, KeyError, ValueError) as exc:
                raise StoreError(f"{self.path}: its row index cannot be read: {os_cause(exc)} (run imgstore verify on it)") from None
            if n and ((np.diff(offsets) < 0).any() or int(offsets[-1]) > self._images().shape[0]):
                raise StoreError(
                    f"{self.path} is damaged: its row ends are not increasing within {IMAGE_DATA} (run imgstore verify on it)"
                )
            self._flat = (offsets, shapes)
        return self._flat

    @property
    def shapes(self) -> np.ndarray:
        """Every row's ``(H, W, C)``: an int64 ``(N, 3)`` array (for a store of one shape, that shape N times)."""
        if not self.flat:
            shape = self.shape or (0, 0, 0)
            return np.tile(np.asarray(shape, np.int64), (self._count, 1))
        return self._index()[1].astype(np.int64)

    def _verify_crc(self, i: int, first: int) -> None:
        """Raise :class:`ChecksumError` unless row ``i`` (its first CRC ``first``, then its name, label, digest and
        meta values) matches its stored checksum."""
        if self._meta is None or self._pid != os.getpid():
            f = self._h5()
            n = self._count
            self._meta = (
                f[CHECKSUMS][:n],
                f[LABELS][:n] if LABELS in f else None,
                f[SHA256][:n] if SHA256 in f else None,
            )
        sums, labels, digests = self._meta
        name = self.names[i]
        label = None if labels is None else int(labels[i])
        digest = None if digests is None else bytes(digests[i])
        if self._kinds is None:
            self._kinds = self.meta_columns
        columns = self._kinds
        meta = meta_bytes([self._meta_column(c, kind)[i] for c, kind in columns], columns) if columns else b""
        if row_checksum(first, name, label, digest, meta) != int(sums[i]):
            raise ChecksumError(
                f"{self.path}: row {i} ({name}) does not match its checksum: its stored bytes changed "
                "(run imgstore verify on the store to list every damaged row)"
            )

    def _verify(self, i: int, image: np.ndarray) -> None:
        """:meth:`_verify_crc` for a fixed-shape raw row."""
        self._verify_crc(i, pixel_crc(image))

    def _row(self, i: int) -> int:
        n = self._count
        if not isinstance(i, (int, np.integer)) or isinstance(i, (bool, np.bool_)):
            raise IndexError(f"give one row number (an int), not {i!r}")
        j = int(i) + n if i < 0 else int(i)
        if not 0 <= j < n:
            raise IndexError(f"image index {int(i)} out of range for a store of {n}")
        return j

    def row_bytes(self, i: int) -> bytes:
        """Row ``i`` as stored: the encoded file (JPEG, WebP, PNG) of an encoded store, else its raw pixels in C
        order. Checked against the row's checksum with ``check=True``."""
        i = self._row(i)
        if not self.flat:
            return self[i].tobytes()
        offsets, shapes = self._index()
        data = self._images()[int(offsets[i]) : int(offsets[i + 1])].tobytes()
        if self.check:
            self._verify_crc(i, flat_crc(shapes[i], data))
        return data

    def _decode(self, i: int, data: bytes | np.ndarray, shape: np.ndarray, max_side: int | None = None) -> np.ndarray:
        try:
            return self.encoding.codec.decode(data, (int(shape[0]), int(shape[1]), int(shape[2])), max_side)
        except BadImageError as exc:
            raise StoreError(f"{self.path}: row {i} ({self.names[i]}): {exc.reason} (run imgstore verify on it)") from None
        except ValueError as exc:  # raw bytes that do not fill the shape
            raise StoreError(f"{self.path}: row {i} ({self.names[i]}) is damaged: {exc} (run imgstore verify on it)") from None

    def read(self, i: int, max_side: int | None = None) -> np.ndarray:
        """Row ``i`` as ``(H, W, C)`` uint8; with ``max_side`` (pixels), resized (Pillow, antialiased bilinear,
        aspect kept, sides rounded) so its longer side is at most ``max_side``. A JPEG row is then decoded with
        libjpeg's DCT scaling to the smallest scale that still has ``max_side`` pixels, which costs less than a
        full decode (0.28 ms instead of 0.40 ms for a 256x341 row read at 128)."""
        if max_side is not None and (not isinstance(max_side, (int, np.integer)) or max_side < 1):
            raise OptionError(f"invalid max_side {max_side!r}: give the longest side in pixels, e.g. 128")
        i = self._row(i)
        if self.flat:
            offsets, shapes = self._index()
            data = self._images()[int(offsets[i]) : int(offsets[i + 1])]
            if self.check:
                self._verify_crc(i, flat_crc(shapes[i], data))
            image = self._decode(i, data, shapes[i], max_side)
        else:
            image = self[i]
        if max_side is None or max(image.shape[:2]) <= max_side:
            return image
        return _shrink(image, int(max_side))

    @overload
    def __getitem__(self, key: int | np.integer) -> np.ndarray: ...

    @overload
    def __getitem__(self, key: slice | Sequence[int] | np.ndarray) -> np.ndarray | list[np.ndarray]: ...

    def __getitem__(self, key: int | np.integer | slice | Sequence[int] | np.ndarray) -> np.ndarray | list[np.ndarray]:
        n = self._count
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if i < 0:
                i += n
            if not 0 <= i < n:
                raise IndexError(f"image index {int(key)} out of range for a store of {n}")
            if self.flat:
                return self.read(i)
            # Plain h5py indexing: measured 46,000 reads/s of 256x256x3 from the page cache, three times what
            # read_direct_chunk + frombuffer gave.
            image = self._images()[i]
            if self.check:
                self._verify(i, image)
            return image
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step == 1:
                if self.flat:
                    return self._batch(self._read_span(start, max(start, stop)))
                if stop <= start:
                    return np.empty((0, *(self.shape or (0, 0, 0))), np.uint8)
                batch = self._images()[start:stop]
                if self.check:
                    for j in range(batch.shape[0]):
                        self._verify(start + j, batch[j])
                return batch
            key = np.arange(start, stop, step)
        idx = np.asarray(key)
        if idx.dtype == np.bool_:
            if idx.shape != (n,):
                raise IndexError(f"boolean mask of shape {idx.shape} does not match a store of {n}")
            idx = np.flatnonzero(idx)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise IndexError("index with an int, a slice, a 1-D sequence of ints or a boolean mask")
        idx = np.where(idx < 0, idx + n, idx).astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"image index out of range for a store of {n}")
        if self.flat:
            return self._batch([self[int(i)] for i in idx])
        out = np.empty((idx.size, *(self.shape or (0, 0, 0))), np.uint8)
        for j, i in enumerate(idx):
            out[j] = self[int(i)]
        return out

    def _read_span(self, start: int, stop: int) -> list[np.ndarray]:
        """Rows ``start:stop`` of a flat store, decoded, from one read of their bytes."""
        if stop <= start:
            return []
        try:
            rows: FlatRows = read_flat(self._h5(), start, stop)
        except (OSError, ValueError, KeyError) as exc:
            raise StoreError(f"{self.path}: rows {start}-{stop - 1} cannot be read: {os_cause(exc)} (run imgstore verify on it)") from None
        out = []
        for j in range(len(rows)):
            data = rows.row(j).copy() if self.encoding.raw else rows.row(j)  # a raw row must not share the span's memory
            if self.check:
                self._verify_crc(start + j, flat_crc(rows.shapes[j], data))
            out.append(self._decode(start + j, data, rows.shapes[j]))
        return out

    def _batch(self, images: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
        """Rows as one ``(n, H, W, C)`` array when they share a shape (always, in a store of one shape), else the list."""
        if not images:
            return np.empty((0, *(self.shape or (0, 0, self.channels))), np.uint8)
        first = images[0].shape
        if all(im.shape == first for im in images):
            return np.stack(images)
        return images

    @property
    def channels(self) -> int:
        """Channels per pixel: 3 (RGB) or 1 (grayscale)."""
        return int(self.shape[2]) if self.shape is not None else int(self.attrs.get("channels", 3))

    def iter_batches(self, batch_size: int = 256) -> Iterator[np.ndarray | list[np.ndarray]]:
        """Yield the images in store order as ``(b, H, W, C)`` batches of up to ``batch_size`` (a list of arrays
        where the rows of a batch differ in shape)."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        for start in range(0, self._count, batch_size):
            yield self[start : min(start + batch_size, self._count)]

    def torch_dataset(self, transform: Callable[[Any], Any] | None = None, dtype: str = "float32") -> Any:
        """A PyTorch map-style dataset of ``(image, label)``: row i as a (C, H, W) tensor and an int.

        ``dtype="float32"`` (default) gives float32 in [0, 1]; ``dtype="uint8"`` the stored bytes as they are, so
        DataLoader workers send a quarter of the bytes and normalisation can run on the GPU; anything else is an
        :class:`~imgstore.errors.OptionError`. Each tensor has its own row's height and width: the default collate
        needs one shape, so for rows of different shapes give a ``transform`` that makes one size (e.g. torchvision's
        ``v2.RandomResizedCrop(224)``) or ``collate_fn=imgstore.torchdata.list_collate``. ``label`` is -1 when the
        store has no labels. ``transform`` is applied to the tensor. torch is imported only here
        (``pip install 'imgstore[torch]'``); the dataset pickles as the store's path, so DataLoader workers started
        by fork or spawn each open the file themselves. See :class:`imgstore.torchdata.StoreDataset`.
        """
        from imgstore.torchdata import StoreDataset

        return StoreDataset(self, transform, dtype)

    def _text_column(self, key: str, n: int) -> list[str]:
        """Rows ``[:n]`` of a text column; from the crash-safe journal when the store is incomplete."""
        try:
            return read_text_column(self._h5(), key, n, complete=self.complete)
        except (OSError, ValueError, KeyError) as exc:
            raise StoreError(f"{self.path}: {key} cannot be read: {os_cause(exc)} (run imgstore verify on it)") from None

    @property
    def names(self) -> list[str]:
        """Row names: source paths relative to the source root (see :func:`imgstore.store.escape_name`)."""
        if self._names is None:
            self._names = self._text_column(NAMES, self._count)
        return self._names

    @property
    def labels(self) -> np.ndarray | None:
        """int64 class indices, one per row, or None when the store has no labels."""
        f = self._h5()
        return f[LABELS][: self._count] if LABELS in f else None

    @property
    def class_names(self) -> list[str] | None:
        """Class names indexed by label, or None."""
        value = self.attrs.get("class_names")
        return list(value) if value is not None else None

    @property
    def ignored(self) -> dict[str, int] | None:
        """The files under SRC that the latest run passed over as not images, counted by lower-case extension
        (``""``: none), most frequent first; None for a store made before imgstore counted them."""
        return ignored_of(self.attrs)

    @property
    def sha256(self) -> list[str] | None:
        """Hex SHA-256 of each row's source file, or None when not recorded."""
        f = self._h5()
        if SHA256 not in f:
            return None
        return [bytes(row).hex() for row in f[SHA256][: self._count]]

    @property
    def meta_columns(self) -> Columns:
        """The meta columns, ``((column, kind), ...)`` in order, kind ``"int64"``, ``"float64"`` or ``"text"``; ()
        for a store without them (see :mod:`imgstore.store.meta`)."""
        try:
            return columns_of(self._h5())
        except (KeyError, ValueError) as exc:
            raise StoreError(f"{self.path}: its meta columns cannot be read: {exc} (run imgstore verify on it)") from None

    @property
    def meta(self) -> MetaColumns:
        """The meta columns by name, each read whole on first use: ``store.meta["caption"]`` is a list of str,
        ``store.meta["score"]`` an int64 or float64 numpy array (NaN where the list had no value), one per row.
        ``store.meta.keys()`` lists them in the list's column order; a store without meta columns has none."""
        return MetaColumns(self)

    def meta_row(self, i: int) -> dict[str, MetaValue]:
        """Row ``i``'s meta values, ``{column: value}`` (Python int, float or str)."""
        if not isinstance(i, (int, np.integer)) or isinstance(i, (bool, np.bool_)):
            raise IndexError(f"meta_row takes one row number (an int), not {i!r}")
        n = self._count
        if not -n <= i < n:
            raise IndexError(f"row {i} out of range for a store of {n}")
        return {name: _plain(self._meta_column(name, kind)[int(i)]) for name, kind in self.meta_columns}

    def _meta_column(self, column: str, kind: str) -> Any:
        if column not in self._columns or self._pid != os.getpid():
            try:
                values = read_meta(self._h5(), column, kind, self._count, complete=self.complete)
            except (OSError, ValueError, KeyError) as exc:
                raise StoreError(
                    f"{self.path}: meta column {column!r} cannot be read: {os_cause(exc)} (run imgstore verify on it)"
                ) from None
            self._columns[column] = values
        return self._columns[column]

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(name, reason)`` for every file the ingest could not store."""
        f = self._h5()
        if SKIPPED_NAMES not in f:
            return []
        n = int(self.attrs.get("skipped_count", f[SKIPPED_NAMES].shape[0]))
        return list(zip(self._text_column(SKIPPED_NAMES, n), self._text_column(SKIPPED_REASONS, n)))


class MetaColumns(Mapping[str, Any]):
    """A store's meta columns by name (:attr:`ImageStore.meta`): values of column ``c`` are ``meta[c]``."""

    def __init__(self, store: ImageStore) -> None:
        self._store = store
        self._kinds = dict(store.meta_columns)

    def __getitem__(self, column: str) -> Any:
        kind = self._kinds.get(column)
        if kind is None:
            have = ", ".join(self._kinds) or "none: it was not ingested from a list file with more columns"
            raise KeyError(f"{self._store.path} has no meta column {column!r} (its meta columns: {have})")
        return self._store._meta_column(column, kind)

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)

    def __repr__(self) -> str:
        return f"<meta columns of {self._store.path}: {', '.join(f'{n} ({k})' for n, k in self._kinds.items())}>"


def _shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` resized (antialiased bilinear) so that its longer side is ``max_side``, the other side rounded."""
    from PIL import Image

    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    im = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    out = np.asarray(im.resize(size, Image.Resampling.BILINEAR))
    return out[:, :, None] if out.ndim == 2 else out


def _plain(value: Any) -> MetaValue:
    """A numpy scalar as a Python int or float; text as it is."""
    return value.item() if isinstance(value, np.generic) else value


def _missing(path: Path) -> str:
    holder = read_holder(path)
    if holder is not None:
        return f"{path} does not exist yet: an imgstore process is about to create it ({holder.describe()})"
    return f"{path} does not exist: give the path of a store made by imgstore ingest"


def check_store_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a ``Path`` when it names an HDF5 file; else the :class:`StoreError` that says what it is."""
    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.exists():
        raise StoreError(_missing(p))
    if p.is_dir():
        raise StoreError(f"{p} is a folder: give the path of a store file (.h5)")
    try:
        is_hdf5 = h5py.is_hdf5(p)
    except OSError as exc:
        raise StoreError(f"{p} cannot be read: {os_cause(exc)}") from None
    if not is_hdf5:
        raise StoreError(f"{p} is not an HDF5 file: give a store made by imgstore ingest")
    return p


def open_store(path: str | os.PathLike[str], check: bool = False) -> ImageStore:
    """Open the store at ``path`` for reading (``imgstore.open``); ``check=True`` verifies every row read."""
    return ImageStore(check_store_path(path), check=check)
