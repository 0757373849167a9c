"""``imgstore preview``: a contact sheet of stored images -- a grid with the index, name and class name under each
(:func:`make_preview`; the geometry is the pure :func:`preview_layout`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgstore.errors import OptionError, StoreError
from imgstore.outputs import StagedOutputs
from imgstore.store.reader import open_store

GAP = 8  # pixels between tiles and around the sheet
DEFAULT_TILE = 128
MAX_SHEET_PIXELS = 100_000_000


@dataclass(frozen=True)
class PreviewLayout:
    """Geometry of a contact sheet: ``columns`` x ``rows`` cells, each a ``tile`` x ``tile`` square for the image
    with ``text_lines`` lines of ``line_height`` pixels under it, ``GAP`` pixels between cells and around them."""

    count: int
    columns: int
    rows: int
    tile: int
    text_lines: int
    font_size: int
    line_height: int

    @property
    def cell_height(self) -> int:
        return self.tile + self.text_lines * self.line_height

    @property
    def width(self) -> int:
        return self.columns * self.tile + (self.columns + 1) * GAP

    @property
    def height(self) -> int:
        return self.rows * self.cell_height + (self.rows + 1) * GAP

    def tile_origin(self, k: int) -> tuple[int, int]:
        """Top-left ``(x, y)`` of the k-th cell's image square (cells fill rows left to right)."""
        r, c = divmod(k, self.columns)
        return GAP + c * (self.tile + GAP), GAP + r * (self.cell_height + GAP)

    def thumb_size(self, height: int, width: int) -> tuple[int, int]:
        """``(w, h)`` of an image of ``height`` x ``width`` scaled to fit the tile, keeping its aspect; it is drawn
        centred across the tile square and touching its bottom edge."""
        scale = self.tile / max(height, width)
        return max(1, round(width * scale)), max(1, round(height * scale))


def preview_layout(count: int, *, columns: int | None = None, tile: int | None = None, labels: bool = False) -> PreviewLayout:
    """The sheet geometry for ``count`` images: ``columns`` defaults to ceil(sqrt(count)), ``tile`` to 128 px.

    Each cell has one text line (index and name) under the image, two when the store has labels (class name).
    """
    if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 1:
        raise OptionError(f"invalid count {count!r}: give the number of images to show, at least 1")
    tile = DEFAULT_TILE if tile is None else tile
    if not isinstance(tile, (int, np.integer)) or isinstance(tile, bool) or not 16 <= tile <= 2048:
        raise OptionError(f"invalid tile {tile!r}: give the tile size in pixels, 16 to 2048")
    if columns is None:
        columns = math.ceil(math.sqrt(count))
    elif not isinstance(columns, (int, np.integer)) or isinstance(columns, bool) or columns < 1:
        raise OptionError(f"invalid columns {columns!r}: give a number of columns, at least 1")
    columns = min(int(columns), int(count))
    font_size = max(9, min(16, tile // 10))
    return PreviewLayout(
        count=int(count),
        columns=columns,
        rows=math.ceil(count / columns),
        tile=int(tile),
        text_lines=2 if labels else 1,
        font_size=font_size,
        line_height=math.ceil(font_size * 1.4),
    )


def make_preview(
    path: str | os.PathLike[str],
    out_png: str | os.PathLike[str],
    *,
    count: int = 64,
    random: bool = False,
    seed: int = 0,
    columns: int | None = None,
    tile: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Draw a contact sheet of the store at ``path`` into ``out_png`` and return its path.

    Shows the first ``count`` images (all when the store holds fewer), or with ``random`` a sample of ``count``
    drawn without replacement with ``seed``, in store order. Each image is scaled to fit a ``tile``-pixel square
    (aspect kept; small images enlarged with nearest-neighbour so their pixels stay visible) on a white sheet, with
    its row index and name (shortened from the left to fit) under it, and its class name when the store has labels.
    Rows of their own shapes (a format-4 store) are each letterboxed in their cell at their own aspect; a format-4
    store's rows are read at most ``tile`` pixels on their longer side (``ImageStore.read(i, max_side=tile)``, which
    decodes a JPEG row by DCT scaling). The format follows the extension (PNG for ``.png``). See
    :func:`preview_layout` for the geometry.
    """
    out = Path(out_png)
    with StagedOutputs([out], overwrite, example="preview.png") as staged:
        sheet, fmt = _draw_sheet(path, out, count, random, seed, columns, tile)
        sheet.save(staged.temp(out), format=fmt)
    return out


def _draw_sheet(
    path: str | os.PathLike[str], out: Path, count: int, random: bool, seed: int, columns: int | None, tile: int | None
) -> tuple[Any, str]:
    """The contact sheet for ``out`` and the image format its name asks for (see :func:`make_preview`)."""
    from PIL import Image, ImageDraw

    with open_store(path) as store:
        n = len(store)
        if n == 0:
            raise StoreError(f"{store.path} holds no images: there is nothing to preview")
        labels = store.labels
        layout = preview_layout(count, columns=columns, tile=tile, labels=labels is not None)
        k = min(layout.count, n)
        if k < layout.count:  # a store smaller than count: a sheet just big enough for all of it
            layout = preview_layout(k, columns=columns, tile=tile, labels=labels is not None)
        if layout.width * layout.height > MAX_SHEET_PIXELS:
            raise OptionError(
                f"the sheet would be {layout.width}x{layout.height} pixels: lower count ({count}) or tile ({layout.tile})"
            )
        fmt = Image.registered_extensions().get(out.suffix.lower())
        if fmt is None:
            raise OptionError(f"cannot tell an image format from {out.name!r}: name the sheet .png")
        if random:
            rows = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
        else:
            rows = np.arange(k)
        names = store.names
        class_names = store.class_names
        font = _font(layout.font_size)
        sheet = Image.new("RGB", (layout.width, layout.height), "white")
        draw = ImageDraw.Draw(sheet)
        for cell, i in enumerate(rows.tolist()):
            x, y = layout.tile_origin(cell)
            # A flat store's row is decoded small (a JPEG by DCT scaling) to at most the tile; others as stored.
            arr = store.read(i, max_side=layout.tile) if store.flat else store[i]
            im = Image.fromarray(arr[:, :, 0], "L") if arr.shape[2] == 1 else Image.fromarray(arr, "RGB")
            tw, th = layout.thumb_size(arr.shape[0], arr.shape[1])
            if (tw, th) != im.size:
                shrink = tw < im.width or th < im.height
                im = im.resize((tw, th), Image.Resampling.LANCZOS if shrink else Image.Resampling.NEAREST)
            # Centred across, standing on the text so a wide image keeps its caption close.
            sheet.paste(im.convert("RGB"), (x + (layout.tile - tw) // 2, y + layout.tile - th))
            text_y = y + layout.tile + 1
            line = _fit(font, f"{i} ", names[i] if i < len(names) else "", layout.tile)
            _draw_centered(draw, font, line, x, text_y, layout.tile, (0, 0, 0))
            if labels is not None:
                label = int(labels[i])
                text = class_names[label] if class_names and 0 <= label < len(class_names) else f"label {label}"
                line = _fit(font, "", text, layout.tile, keep_end=False)
                _draw_centered(draw, font, line, x, text_y + layout.line_height, layout.tile, (20, 40, 150))
    return sheet, fmt


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _drawable(font: Any, text: str) -> str:
    from PIL import ImageFont

    if isinstance(font, ImageFont.FreeTypeFont):
        return text
    return text.encode("latin-1", "replace").decode("latin-1")  # the bitmap font has Latin-1 glyphs only


def _fit(font: Any, prefix: str, text: str, width: int, keep_end: bool = True) -> str:
    """``prefix + text``, with ``text`` shortened by ``...`` (at its start when ``keep_end``) to fit ``width`` px."""
    text = _drawable(font, text)
    full = prefix + text
    if font.getlength(full) <= width:
        return full
    lo, hi = 0, len(text)  # the longest kept part that fits, by bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        part = text[len(text) - mid :] if keep_end else text[:mid]
        candidate = prefix + ("..." + part if keep_end else part + "...")
        if font.getlength(candidate) <= width:
            lo = mid
        else:
            hi = mid - 1
    part = text[len(text) - lo :] if keep_end else text[:lo]
    return prefix + ("..." + part if keep_end else part + "...")


def _draw_centered(draw: Any, font: Any, text: str, x: int, y: int, width: int, fill: tuple[int, int, int]) -> None:
    left = x + max(0, (width - int(font.getlength(text))) // 2)
    draw.text((left, y), text, fill=fill, font=font)
