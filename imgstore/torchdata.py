"""PyTorch adapter for :class:`~imgstore.store.reader.ImageStore` (imports torch; loaded only by ``torch_dataset()``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from imgstore.errors import MissingExtraError

try:
    import torch
    from torch.utils.data import Dataset
except ImportError:  # pragma: no cover - exercised only where torch is missing
    raise MissingExtraError("store.torch_dataset() needs PyTorch: pip install torch") from None


class StoreDataset(Dataset):
    """``dataset[i]`` -> ``(CHW float32 tensor in [0, 1], label)``; ``label`` is -1 for stores without labels."""

    def __init__(self, store: Any, transform: Callable[[Any], Any] | None = None) -> None:
        self.store = store
        self.transform = transform
        labels = store.labels
        self._labels = labels.tolist() if labels is not None else None

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        pixels = self.store[int(i)]  # (H, W, C) uint8
        tensor = torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255.0)
        if self.transform is not None:
            tensor = self.transform(tensor)
        return tensor, (self._labels[int(i)] if self._labels is not None else -1)
