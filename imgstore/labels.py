"""Class labels for ingested files: from class folders (``--labels folder``) or a CSV file (``--labels FILE.csv``).

Folder labels follow torchvision's ``ImageFolder``: the class is the first-level subfolder of SRC, class names are
sorted and a label is the class's position. (Unlike ``ImageFolder``, hidden folders are not classes, and a folder
without any candidate file is not a class rather than an error.) CSV labels come from ``file_name,label`` rows,
paths relative to SRC; when every label is an integer the integers are the labels, otherwise the label values are
class names, sorted. A file without a label is skipped and recorded.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imgstore.errors import ConfigError, OptionError

FOLDER = "folder"
NO_CLASS_FOLDER = "no label: not inside a class folder"


@dataclass
class Labels:
    """How each candidate name maps to a label.

    ``scheme`` is ``"folder"``, ``"csv"`` or ``"list"`` (a list file's ``label`` column); ``class_names`` (label i
    names class i) is None for integer labels.
    """

    scheme: str
    class_names: list[str] | None
    by_name: dict[str, int] = field(default_factory=dict)
    missing_reason: str = ""

    def label_of(self, name: str) -> int | None:
        """The label of a candidate (relative, ``/``-separated name), or None when it has none."""
        if self.scheme == FOLDER:
            head, sep, _ = name.partition("/")
            if not sep:
                return None
            return self.by_name.get(head)
        return self.by_name.get(name)

    def extend_classes(self, existing: Sequence[str]) -> list[str]:
        """Class names when appending to a store that has ``existing``: theirs first, new ones after, in order.

        Existing labels keep their meaning; labels of this run are remapped to the combined list.
        """
        if self.class_names is None:
            return list(existing)
        combined = list(existing) + [c for c in self.class_names if c not in existing]
        index = {c: i for i, c in enumerate(combined)}
        if self.scheme == FOLDER:
            self.by_name = {c: index[c] for c in self.by_name}
        else:
            old = self.class_names
            self.by_name = {n: index[old[v]] for n, v in self.by_name.items()}
        self.class_names = combined
        return combined


def parse_labels_option(value: str | os.PathLike[str] | None) -> str | None:
    """Validate ``--labels``: ``"folder"``, a path to a ``.csv`` file, or None."""
    if value is None:
        return None
    text = os.fspath(value)
    if text == FOLDER:
        return FOLDER
    if not text.lower().endswith(".csv"):
        raise OptionError(f"invalid labels {text!r}: use 'folder' (class subfolders) or a FILE.csv of file_name,label")
    return text


def folder_labels(names: Sequence[str]) -> Labels:
    """Labels from the first path component of each candidate name."""
    # An absolute name (a list file's) is in no class folder: its empty first component is not a class.
    classes = sorted({n.split("/", 1)[0] for n in names if "/" in n and not n.startswith("/")})
    return Labels(FOLDER, classes, {c: i for i, c in enumerate(classes)}, NO_CLASS_FOLDER)


def csv_labels(path: str | os.PathLike[str]) -> Labels:
    """Labels from a ``file_name,label`` CSV (a header row is required; other columns are ignored)."""
    p = Path(path)
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise ConfigError(f"labels file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read labels file {p}: {exc}") from None
    if not rows:
        raise ConfigError(f"labels file {p} is empty: it needs a header row file_name,label")
    header = [h.strip().lower() for h in rows[0]]
    name_col = next((header.index(h) for h in ("file_name", "filename", "file", "path") if h in header), None)
    label_col = header.index("label") if "label" in header else None
    if name_col is None or label_col is None:
        raise ConfigError(f"labels file {p}: the header must have file_name and label columns, got {rows[0]}")
    raw: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(name_col, label_col):
            raise ConfigError(f"labels file {p} line {line}: expected file_name,label, got {row}")
        name = row[name_col].strip().replace("\\", "/")
        while name.startswith("./"):
            name = name[2:]
        value = row[label_col].strip()
        if name in raw and raw[name] != value:
            raise ConfigError(f"labels file {p} line {line}: {name} has two labels, {raw[name]!r} and {value!r}")
        raw[name] = value
    return labels_from_texts("csv", raw, f"no label in {p.name}")


def labels_from_texts(scheme: str, raw: dict[str, str], missing_reason: str) -> Labels:
    """Labels from label texts by candidate name (the one rule for CSV labels and a list file's ``label`` column):
    when every text is an integer the integers are the labels (no class names), otherwise the texts are class
    names, sorted, and a label is its class's position. ``missing_reason`` is recorded for a file without one."""
    values = set(raw.values())
    if all(_is_int(v) for v in values):
        return Labels(scheme, None, {n: int(v) for n, v in raw.items()}, missing_reason)
    classes = sorted(values)
    index = {c: i for i, c in enumerate(classes)}
    return Labels(scheme, classes, {n: index[v] for n, v in raw.items()}, missing_reason)


def _is_int(text: str) -> bool:
    try:
        int(text)
        return True
    except ValueError:
        return False


def resolve_labels(option: str | None, names: Sequence[str]) -> Labels | None:
    """The labels for a run: None, folder labels over ``names``, or CSV labels."""
    if option is None:
        return None
    if option == FOLDER:
        return folder_labels(names)
    return csv_labels(option)
