"""What is in a store: ``imgstore info`` as data (:func:`store_info`) and as text (:func:`format_info`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from imgstore.errors import StoreError, os_cause
from imgstore.lock import read_holder
from imgstore.store.format import IMAGE_DATA, IMAGE_ENDS, IMAGES, SHAPES
from imgstore.store.meta import META_COLUMNS, meta_path
from imgstore.store.reader import open_store


def human_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _dataset_info(ds: h5py.Dataset) -> dict[str, Any]:
    return {
        "shape": list(ds.shape),
        "dtype": str(ds.dtype) if ds.dtype.kind != "O" else "vlen utf-8 str",
        "chunks": list(ds.chunks) if ds.chunks else None,
        "maxshape": [m if m is not None else None for m in (ds.maxshape or ())],
        "compression": ds.compression,
        "virtual": bool(ds.is_virtual),
    }


def store_info(path: str | os.PathLike[str], *, skipped: bool = False) -> dict[str, Any]:
    """A JSON-ready description of the store at ``path``: count, image shape, datasets, attributes, disk size.

    With ``skipped=True`` the list of skipped files and reasons is included. ``writer`` names the process writing
    the store right now (None when none is). A store whose metadata cannot be read raises
    :class:`~imgstore.errors.StoreError` saying so.
    """
    p = Path(path)
    try:
        return _store_info(p, skipped)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise StoreError(f"{p} is damaged: {os_cause(exc)} (imgstore verify {p} lists what is wrong)") from None


def _store_info(p: Path, skipped: bool) -> dict[str, Any]:
    holder = read_holder(p)
    with open_store(p) as store:
        f = store._h5()
        datasets = {name: _dataset_info(obj) for name, obj in f.items() if isinstance(obj, h5py.Dataset)}
        meta = dict(store.meta_columns)
        datasets.update((meta_path(c), _dataset_info(f[meta_path(c)])) for c in meta)
        images = datasets.get(IMAGE_DATA if store.flat else IMAGES, {})
        size_on_disk = p.stat().st_size
        info: dict[str, Any] = {
            "path": str(p),
            "count": len(store),
            "complete": store.complete,
            "image_shape": None if store.shape is None else list(store.shape),
            "encoding": str(store.encoding),
            "variable_shape": bool(store.variable),
            "row_shapes": _row_shapes(store, f),
            "bytes_per_image": _bytes_per_image(store, f, size_on_disk),
            "dtype": "uint8" if store.flat else images.get("dtype", "uint8"),
            "chunks": images.get("chunks"),
            "compression": images.get("compression"),
            "size_on_disk": size_on_disk,
            "labels": store.labels is not None,
            "class_names": store.class_names,
            "meta": meta,
            "skipped_count": len(store.skipped),
            "ignored": store.ignored,
            "attributes": store.attrs,
            "datasets": datasets,
            "writer": holder.describe() if holder is not None else None,
        }
        if skipped:
            info["skipped"] = [{"name": n, "reason": r} for n, r in store.skipped]
    return info


# Rows of ``shapes`` read at a time by info: 12 MiB, whatever the store's size.
SHAPE_BATCH = 1 << 20


def _spread(counts: dict[int, int]) -> dict[str, int]:
    """``{min, median, max}`` of values given as counts per value (``counts[v]``: rows of value v); the median is
    the lower middle value."""
    values = sorted(counts)
    cumulative = np.cumsum([counts[v] for v in values])
    middle = values[int(np.searchsorted(cumulative, (int(cumulative[-1]) + 1) // 2))]
    return {"min": values[0], "median": middle, "max": values[-1]}


def _row_shapes(store: Any, f: h5py.File) -> dict[str, Any] | None:
    """``{"height": {min, median, max}, "width": {...}, "channels": [...]}`` of the rows (from ``shapes`` in a flat
    store, read ``SHAPE_BATCH`` rows at a time into counts per value; one shape for all in a fixed one); None for a
    store without rows."""
    n = len(store)
    if not n:
        return None
    if not store.flat:
        h, w, c = (int(v) for v in store.shape)
        return {"height": {"min": h, "median": h, "max": h}, "width": {"min": w, "median": w, "max": w}, "channels": [c]}
    heights: dict[int, int] = {}
    widths: dict[int, int] = {}
    channels: set[int] = set()
    for a in range(0, n, SHAPE_BATCH):
        shapes = f[SHAPES][a : min(n, a + SHAPE_BATCH)].astype(np.int64)
        heights = _add_counts(heights, shapes[:, 0])
        widths = _add_counts(widths, shapes[:, 1])
        channels.update(int(c) for c in np.unique(shapes[:, 2]))
    return {"height": _spread(heights), "width": _spread(widths), "channels": sorted(channels)}


def _add_counts(counts: dict[int, int], values: np.ndarray) -> dict[int, int]:
    """``counts`` with ``values`` counted in: by distinct value, so a damaged shape of 4 billion pixels costs no
    more memory than any other (counts by index, ``np.bincount``, allocated as many entries as the largest value)."""
    seen, times = np.unique(values, return_counts=True)
    for v, k in zip(seen.tolist(), times.tolist()):
        counts[v] = counts.get(v, 0) + k
    return counts


def _bytes_per_image(store: Any, f: h5py.File, size_on_disk: int) -> dict[str, Any] | None:
    """Bytes per image: ``stored`` (a flat store: the rows' bytes in image_data, encoded or raw; a fixed one:
    H * W * C, before any HDF5 compression) and ``on_disk`` (the file's size; a virtual store's file holds no
    rows, so ``virtual`` says to count its shards too); None for a store without rows."""
    n = len(store)
    if not n:
        return None
    if store.flat:
        used = int(f[IMAGE_ENDS][n - 1])
        virtual = bool(f[IMAGE_DATA].is_virtual)
    else:
        used = n * int(np.prod(store.shape))
        virtual = IMAGES in f and bool(f[IMAGES].is_virtual)
    return {"stored": used / n, "on_disk": size_on_disk / n, "virtual": virtual}


def _range(spread: dict[str, int]) -> str:
    lo, mid, hi = spread["min"], spread["median"], spread["max"]
    return f"{lo}" if lo == hi else f"{lo}/{mid}/{hi}"


def format_info(info: dict[str, Any]) -> str:
    """Human-readable text of :func:`store_info`'s result."""
    if info.get("writer"):
        state = f"  [BEING WRITTEN by {info['writer']}]"
    elif not info["complete"]:
        state = "  [INCOMPLETE: the ingest did not finish; --resume continues it]"
    else:
        state = ""
    if info["image_shape"] is not None:
        h, w, c = info["image_shape"]
        images = f"{info['count']} x {h}x{w}x{c} {info['dtype']}  (N, H, W, C)"
    else:
        images = f"{info['count']} of their own shapes (H, W, C)"
    encoding = info.get("encoding", "none")
    lines = [
        f"{info['path']}",
        f"  images      {images}{state}",
        f"  encoding    {'none (raw pixels)' if encoding == 'none' else encoding}",
    ]
    shapes = info.get("row_shapes")
    if info.get("variable_shape") and shapes:
        lines.append(f"  row shapes  H {_range(shapes['height'])}  W {_range(shapes['width'])}  (min/median/max)")
    lines += [
        f"  chunks      {tuple(info['chunks']) if info['chunks'] else 'contiguous'}"
        f"  compression {info['compression'] or 'none'}",
        f"  on disk     {human_bytes(info['size_on_disk'])}",
    ]
    per = info.get("bytes_per_image")
    if per:
        virtual = " (virtual: the rows' bytes are in the shard files)" if per["virtual"] else ""
        lines.append(f"  per image   {human_bytes(per['stored'])} stored, {human_bytes(per['on_disk'])} of this file{virtual}")
    lines.append(f"  skipped     {info['skipped_count']} files")
    if info.get("ignored") is not None:  # files under SRC that were not images (stores since 0.1 record them)
        from imgstore.ingest import by_extension

        total = sum(info["ignored"].values())
        noun = "file" if total == 1 else "files"
        lines.append(f"  ignored     {total} other {noun}" + (f" ({by_extension(info['ignored'])})" if total else ""))
    if info.get("class_names"):
        names = info["class_names"]
        shown = ", ".join(names[:10]) + (f", ... ({len(names)} classes)" if len(names) > 10 else "")
        lines.append(f"  classes     {shown}")
    if info.get("meta"):
        lines.append("  meta        " + ", ".join(f"{name} ({kind})" for name, kind in info["meta"].items()))
    lines.append("  attributes")
    for key in sorted(info["attributes"]):
        if key in ("class_names", "ingest_options", "ignored_extensions", META_COLUMNS):  # shown above / in --json
            continue
        lines.append(f"    {key:<18} {info['attributes'][key]}")
    lines.append("  datasets")
    for name, d in info["datasets"].items():
        lines.append(f"    {name:<18} {tuple(d['shape'])} {d['dtype']}" + ("  (virtual)" if d["virtual"] else ""))
    if "skipped" in info:
        lines.append(f"  skipped files ({len(info['skipped'])})")
        for row in info["skipped"]:
            lines.append(f"    {row['name']}: {row['reason']}")
    return "\n".join(lines)
