"""``imgstore extract``: stored images back as files named after their stored names (:func:`extract_images`): PNG
for raw rows, the stored file itself for encoded ones (JPEG, WebP, PNG: byte for byte, no re-encoding), with a
store's meta columns (a list file's captions, boxes, ...) beside them in ``meta.jsonl``; :func:`parse_indices` reads
the ``0,5,10-20`` form the command line takes.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imgstore.errors import OptionError, OutputExistsError
from imgstore.outputs import remove_stale_temps, replaced_when_written
from imgstore.progress import ProgressLike, started
from imgstore.store.reader import open_store

_RANGE = re.compile(r"(-?\d+)\s*-\s*(-?\d+)")
_UNSAFE = re.compile(r"[^\w.\-]+")
MAX_NAME_BYTES = 200  # of the sanitised name part; file systems allow 255
META_SIDECAR = "meta.jsonl"  # written beside the image files of a store with meta columns
RAW_EXTENSION = ".png"  # raw rows (encoding none, fixed or variable shapes) are written as PNG


def _resolve_index(i: int, n: int) -> int:
    if n == 0:
        raise OptionError(f"index {i} is out of range: the store holds no images")
    if not -n <= i < n:
        raise OptionError(f"index {i} is out of range for a store of {n} images (use 0 to {n - 1}, or -{n} to -1)")
    return i % n


def parse_indices(text: str, n: int) -> list[int]:
    """Row indices from text like ``"0,5,10-20"`` for a store of ``n`` images, in the order given, without repeats.

    Items are separated by commas; ``a-b`` is the inclusive range a..b; negative numbers count from the end
    (``-1`` is the last row, ``-3--1`` the last three). Out-of-range or malformed items raise OptionError.
    """
    if not text.strip():
        raise OptionError("no indices given: use e.g. 0,5,10-20")
    out: dict[int, None] = {}
    for item in text.split(","):
        token = item.strip()
        if re.fullmatch(r"-?\d+", token):
            out[_resolve_index(int(token), n)] = None
            continue
        m = _RANGE.fullmatch(token)
        if m is None:
            raise OptionError(
                f"invalid index {token!r} in {text!r}: use numbers and ranges like 0,5,10-20 (negative counts from the end)"
            )
        a, b = _resolve_index(int(m.group(1)), n), _resolve_index(int(m.group(2)), n)
        if a > b:
            raise OptionError(f"invalid range {token!r}: it goes backwards (rows {a} to {b})")
        out.update(dict.fromkeys(range(a, b + 1)))
    return list(out)


def export_file_name(index: int, name: str, width: int = 6, extension: str = RAW_EXTENSION) -> str:
    """A safe, recognisable file name for row ``index`` named ``name``, ending in ``extension`` (``.png``, or the
    extension of an encoded store's rows: ``.jpg``, ``.webp``).

    ``cat/1.jpg`` at row 7 -> ``000007_cat__1.png``: ``/`` becomes ``__``, the name's extension is replaced by
    ``extension``, and characters other than letters, digits, ``_``, ``.`` and ``-`` become ``_``. The zero-padded
    index keeps the files in store order and makes every name unique, whatever the extension.
    """
    if not re.fullmatch(r"\.[a-z0-9]+", extension):
        raise OptionError(f"invalid extension {extension!r}: give a dot and letters or digits, e.g. .png")
    stem, _ = posixpath.splitext(name)
    safe = _UNSAFE.sub("_", stem.replace("/", "__")).strip(".") or "image"
    safe = safe.encode("utf-8")[:MAX_NAME_BYTES].decode("utf-8", "ignore")
    return f"{index:0{width}d}_{safe}{extension}"


def extract_images(
    path: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    *,
    indices: Sequence[int] | str | None = None,
    overwrite: bool = False,
    progress: ProgressLike = None,
) -> list[Path]:
    """Write rows of the store at ``path`` as image files in ``outdir`` (created if needed); return the paths written.

    ``indices``: ints (negative count from the end), a string for :func:`parse_indices` (``"0,5,10-20"``), or None
    for every row. Files are named by :func:`export_file_name`. Raw rows become PNG files (grayscale for one
    channel), each at its own size in a store of rows of their own shapes. The rows of an encoded store (``jpeg``,
    ``webp``, ``png``: a format-4 store made with ``--encode``) are written as stored, byte for byte
    (:meth:`~imgstore.store.reader.ImageStore.row_bytes`, no decoding or re-encoding, so no quality is lost), with
    the codec's extension (``.jpg``, ``.webp``, ``.png``). A store
    with meta columns also gets ``meta.jsonl`` (last in the list returned): one JSON object per file, in the same
    order, ``{"file", "row", "name", "label" (with labels), "class" (with class names), "meta": {column: value}}``,
    an empty number as null, an infinite one as ``1e999`` / ``-1e999`` (strict JSON); so the captions and boxes stay with the pixels. Existing files are refused, before
    anything is written, unless ``overwrite``. ``progress`` gets image increments.
    """
    import imageio.v3 as iio

    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise OptionError(f"{out} exists and is not a folder: give a folder for the image files")
    with open_store(path) as store:
        n = len(store)
        if indices is None:
            rows = list(range(n))
        elif isinstance(indices, str):
            rows = parse_indices(indices, n)
        else:
            picked: dict[int, None] = {}
            for i in indices:
                if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
                    raise OptionError(f"invalid index {i!r}: indices are integers")
                picked[_resolve_index(int(i), n)] = None
            rows = list(picked)
        names = store.names
        width = max(6, len(str(max(n - 1, 0))))
        encoded = not store.encoding.raw
        extension = store.encoding.codec.extension if encoded else RAW_EXTENSION
        targets = [out / export_file_name(i, names[i], width, extension) for i in rows]
        sidecar = out / META_SIDECAR if store.meta_columns else None
        if not overwrite:
            existing = [t.name for t in [*targets, *([sidecar] if sidecar else [])] if t.exists()]
            if existing:
                shown = ", ".join(existing[:3]) + (", ..." if len(existing) > 3 else "")
                raise OutputExistsError(
                    f"{len(existing)} file(s) exist in {out} ({shown}): pass overwrite=True (--overwrite) to replace them"
                )
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(*targets, *([sidecar] if sidecar else []))  # what a killed extract left: one scan
        tick = started(progress, len(rows))
        for i, target in zip(rows, targets):
            # Existing files were checked above; a killed extract never leaves half a file under a row's name.
            with replaced_when_written(target) as tmp:
                if encoded:
                    tmp.write_bytes(store.row_bytes(i))
                else:
                    arr = store[i]  # a variable-shape row comes at its own size
                    iio.imwrite(tmp, arr[:, :, 0] if arr.shape[2] == 1 else arr, extension=".png")
            tick(1)
        if sidecar is None:
            return targets
        with replaced_when_written(sidecar) as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                for i, target in zip(rows, targets):
                    fh.write(_sidecar_line(_sidecar_row(store, i, names[i], target.name)) + "\n")
    return [*targets, sidecar]


def _sidecar_line(row: dict[str, Any]) -> str:
    """``row`` as one line of strict JSON: an infinite meta number, which JSON has no word for (``json.dumps``
    writes ``Infinity``, which JSON parsers refuse), is written as the number ``1e999`` (``-1e999``), which
    parsers read back as infinity."""

    def value(v: Any) -> str:
        if isinstance(v, float) and math.isinf(v):
            return "1e999" if v > 0 else "-1e999"
        return json.dumps(v, ensure_ascii=False, allow_nan=False)

    head = json.dumps({k: v for k, v in row.items() if k != "meta"}, ensure_ascii=False, allow_nan=False)
    meta = ", ".join(f"{value(k)}: {value(v)}" for k, v in row["meta"].items())
    return f'{head[:-1]}, "meta": {{{meta}}}}}'


def _sidecar_row(store: Any, i: int, name: str, file: str) -> dict[str, Any]:
    """Row ``i``'s line of ``meta.jsonl``."""
    row: dict[str, Any] = {"file": file, "row": i, "name": name}
    labels = store.labels
    if labels is not None:
        row["label"] = int(labels[i])
        if store.class_names is not None and 0 <= row["label"] < len(store.class_names):
            row["class"] = store.class_names[row["label"]]
    meta = store.meta_row(i)
    row["meta"] = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in meta.items()}
    return row
