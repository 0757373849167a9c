"""PyTorch adapter for :class:`~imgstore.store.reader.ImageStore` (imports torch; loaded only by ``torch_dataset()``).

- :class:`StoreDataset`: ``dataset[i]`` -> ``(image, label)``, the image a (C, H, W) tensor of row ``i``'s own shape,
  uint8 straight from the stored bytes or float32 in [0, 1].
- :func:`list_collate`: a DataLoader ``collate_fn`` for rows of different shapes.

torchvision is not needed; its v2 transforms accept these tensors as images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from imgstore.errors import MissingExtraError, OptionError

try:
    import torch
    from torch.utils.data import Dataset
except ImportError:  # pragma: no cover - exercised only where torch is missing
    raise MissingExtraError("store.torch_dataset() needs PyTorch: pip install 'imgstore[torch]'") from None

__all__ = ["DTYPES", "StoreDataset", "list_collate"]

#: The ``dtype`` values :class:`StoreDataset` accepts.
DTYPES: tuple[str, ...] = ("uint8", "float32")


class StoreDataset(Dataset):
    """``dataset[i]`` -> ``(image, label)`` for row ``i`` of ``store``; ``label`` is -1 for stores without labels.

    ``image`` is ``store[i]`` (H, W, C) as a (C, H, W) tensor, of that row's own height and width:

    - ``dtype="float32"`` (default): float32 in [0, 1] (the stored value / 255);
    - ``dtype="uint8"``: the stored bytes unchanged. A DataLoader worker then sends a quarter of the bytes, and the
      conversion and normalisation run on the GPU (``x.cuda().float().div_(255)``).

    The tensor is a CHW *view* of the row's HWC memory, not contiguous: the default collate's ``torch.stack`` copies
    it into a contiguous batch anyway, and an earlier ``.contiguous()`` only added a copy (measured with
    ``scripts/bench_torchdata.py``: 500x375 uint8 item plus collate 550 us vs 642 us, plus a 224x224 resize 306 us
    vs 805 us, as resizing uint8 is fastest on channels-last memory; for float32 the two were within noise). Call
    ``.contiguous()`` in ``transform`` if it needs CHW memory.

    ``transform`` is called with the tensor and returns what the item carries. The default collate needs tensors of
    one shape: with rows of different shapes give a transform that makes one size (torchvision's
    ``v2.RandomResizedCrop(224)``, for example) or use ``collate_fn=``:func:`list_collate`.
    """

    def __init__(self, store: Any, transform: Callable[[Any], Any] | None = None, dtype: str = "float32") -> None:
        if dtype not in DTYPES:
            raise OptionError(f"dtype must be one of {', '.join(map(repr, DTYPES))}, got {dtype!r}")
        self.store = store
        self.transform = transform
        self.dtype = dtype
        labels = store.labels
        self._labels = labels.tolist() if labels is not None else None

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        i = int(i)
        pixels = self.store[i]  # (H, W, C) uint8, this row's own shape
        tensor = torch.from_numpy(pixels).permute(2, 0, 1)  # a view: see the class docstring
        if self.dtype == "float32":
            tensor = tensor.float().div_(255.0)
        if self.transform is not None:
            tensor = self.transform(tensor)
        return tensor, (self._labels[i] if self._labels is not None else -1)


def list_collate(batch: Sequence[tuple[Any, int]]) -> tuple[list[Any], torch.Tensor]:
    """A DataLoader ``collate_fn`` for images of different shapes: ``[(image, label), ...]`` -> ``(images, labels)``.

    ``images`` is the list of the items' images as they are (any shapes); ``labels`` an int64 tensor of the labels,
    in the same order. Use it as ``DataLoader(dataset, batch_size=..., collate_fn=list_collate)``.
    """
    images = [item[0] for item in batch]
    labels = torch.tensor([int(item[1]) for item in batch], dtype=torch.int64)
    return images, labels
