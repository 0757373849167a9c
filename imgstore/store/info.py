"""What is in a store: ``imgstore info`` as data (:func:`store_info`) and as text (:func:`format_info`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py

from imgstore.errors import StoreError, os_cause
from imgstore.lock import read_holder
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
        images = datasets.get("images", {})
        info: dict[str, Any] = {
            "path": str(p),
            "count": len(store),
            "complete": store.complete,
            "image_shape": None if store.shape is None else list(store.shape),
            "dtype": images.get("dtype", "uint8"),
            "chunks": images.get("chunks"),
            "compression": images.get("compression"),
            "size_on_disk": p.stat().st_size,
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


def format_info(info: dict[str, Any]) -> str:
    """Human-readable text of :func:`store_info`'s result."""
    h, w, c = info["image_shape"]
    if info.get("writer"):
        state = f"  [BEING WRITTEN by {info['writer']}]"
    elif not info["complete"]:
        state = "  [INCOMPLETE: the ingest did not finish; --resume continues it]"
    else:
        state = ""
    lines = [
        f"{info['path']}",
        f"  images      {info['count']} x {h}x{w}x{c} {info['dtype']}  (N, H, W, C){state}",
        f"  chunks      {tuple(info['chunks']) if info['chunks'] else 'contiguous'}"
        f"  compression {info['compression'] or 'none'}",
        f"  on disk     {human_bytes(info['size_on_disk'])}",
        f"  skipped     {info['skipped_count']} files",
    ]
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
