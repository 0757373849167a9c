"""List files as SRC (``imgstore ingest list.csv|.jsonl|.parquet OUT``): rows in list order, labels from the label
column, every other column kept per row as ``meta/<column>`` -- through workers, append, resume, merge, verify,
info and extract."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import imgstore
from imgstore.cli import app
from imgstore.errors import MissingExtraError, OptionError, SourceError, StoreError
from imgstore.extract import extract_images
from imgstore.ingest import ingest
from imgstore.options import DecodeOptions, IngestOptions
from imgstore.sources import open_source
from imgstore.sources.listfile import ListSource, column_values
from imgstore.store.meta import meta_column, meta_key
from imgstore.store.verify import verify_store

from conftest import committed_rows, encode, pattern, write

W, H = 12, 8  # the photos are lossless PNGs of exactly the store size, so the stored pixels are theirs
SIZE = DecodeOptions(size=(W, H))
COLUMNS = ["path", "label", "caption", "score", "count", "split", "boxes"]


def opts(**kw: Any) -> IngestOptions:
    kw.setdefault("decode", SIZE)
    kw.setdefault("workers", 0)
    return IngestOptions(**kw)


def photo(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


# What each list row says: path (None: none), label, caption, score (None: empty), count, split, boxes (a list).
ROWS: list[dict[str, Any]] = [
    {"path": "zoo/b/2.png", "label": "cat", "caption": "hello, world", "score": 0.5, "count": 3, "split": "train",
     "boxes": [[1, 2, 3, 4]]},
    {"path": "zoo/a/1.png", "label": "dog", "caption": 'two\nlines "quoted"', "score": None, "count": 7, "split": "val",
     "boxes": []},
    {"path": "ABS", "label": "cat", "caption": "naïve café ✓", "score": 1.5, "count": -2, "split": "train",
     "boxes": [[0, 0, 5, 5], [1, 1, 2, 2]]},
    {"path": "zoo/missing.png", "label": "dog", "caption": "gone", "score": 2.0, "count": 1, "split": "train",
     "boxes": []},
    {"path": "./zoo/b/2.png", "label": "dog", "caption": "listed again", "score": 3.0, "count": 1, "split": "train",
     "boxes": []},
    {"path": None, "label": "cat", "caption": "no path", "score": 4.0, "count": 1, "split": "train", "boxes": []},
    {"path": "zoo/c/4.png", "label": None, "caption": "unlabelled", "score": 5.0, "count": 1, "split": "test",
     "boxes": []},
    {"path": "zoo/a/5.png", "label": "bird", "caption": "last, at last", "score": 6.25, "count": 9, "split": "test",
     "boxes": []},
]  # fmt: skip
STORED = [0, 1, 2, 7]  # the rows that are stored, in list order
PHOTOS = {"zoo/b/2.png": 1, "zoo/a/1.png": 2, "ABS": 3, "zoo/c/4.png": 4, "zoo/a/5.png": 5}  # path -> seed
# Where the duplicate and the pathless row are, by list format: (word, duplicate, pathless, first listing).
WHERE = {"csv": ("line", 7, 8, 2), "jsonl": ("line", 5, 6, 1), "parquet": ("row", 5, 6, 1)}


class Lists:
    """The photos (in nested folders, one outside the list's folder, named by an absolute path) and the same list
    as CSV, JSON lines and Parquet."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder = root / "data"
        self.abs = root / "elsewhere" / "3.png"
        self.pixels: dict[str, np.ndarray] = {}
        for path, seed in PHOTOS.items():
            target = self.abs if path == "ABS" else self.folder / path
            write(target, encode(Image.fromarray(photo(seed)), "PNG"))
            self.pixels[self.name(path)] = photo(seed)
        self.rows = [{**row, "path": str(self.abs) if row["path"] == "ABS" else row["path"]} for row in ROWS]
        self.csv = self.write_csv(self.folder / "list.csv", self.rows)
        self.jsonl = self.folder / "list.jsonl"
        self.jsonl.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in self.rows), encoding="utf-8")

    def name(self, path: str) -> str:
        return str(self.abs) if path == "ABS" else path

    @property
    def names(self) -> list[str]:
        return [self.rows[i]["path"] for i in STORED]

    @staticmethod
    def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str] = COLUMNS) -> Path:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(columns)
            for row in rows:
                out.writerow(["" if row.get(c) is None else json.dumps(row[c]) if c == "boxes" else row[c] for c in columns])
        return path

    def parquet(self) -> Path:
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        path = self.folder / "list.parquet"
        pq.write_table(pa.Table.from_pylist(self.rows), path)
        return path

    def of(self, fmt: str) -> Path:
        return {"csv": self.csv, "jsonl": self.jsonl}.get(fmt) or self.parquet()


@pytest.fixture
def lists(tmp_path: Path) -> Lists:
    return Lists(tmp_path)


def expected_skipped(lists: Lists, fmt: str) -> list[tuple[str, str]]:
    word, dup, nopath, first = WHERE[fmt]
    name = f"list.{fmt}"
    return [
        ("zoo/missing.png", "missing: no such file"),
        (f"{name}:{dup}", f"listed twice: zoo/b/2.png is listed at {word} {first} of {name}"),
        (f"{name}:{nopath}", f"no path in the path column ({word} {nopath} of {name})"),
        ("zoo/c/4.png", f"no label in {name}"),
    ]


def meta_of(store: Any) -> dict[str, Any]:
    """Every meta column as plain lists (NaN as None), for comparing stores."""
    out = {}
    for column in store.meta:
        values = store.meta[column]
        out[column] = [None if isinstance(v, float) and math.isnan(v) else v for v in (values.tolist() if isinstance(values, np.ndarray) else values)]
    return out


def h5_contents(path: Path) -> dict[str, Any]:
    """Every dataset of a store (strings decoded) and its root attributes but the creation time."""
    found: dict[str, Any] = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                found[name] = data.tolist() if data.dtype.kind != "f" else np.nan_to_num(data, nan=-1e300).tolist()
        f.visititems(visit)
        found["attrs"] = {k: str(v) for k, v in f.attrs.items() if k != "created"}
    return found


# -- one list, three formats --------------------------------------------------------------------------------------
def test_csv_rows_in_list_order_with_labels_meta_and_skipped(lists: Lists, tmp_path: Path) -> None:
    """A CSV list: rows in list order (not sorted), pixels, labels as sorted classes, typed meta, skipped reasons."""
    out = tmp_path / "o.h5"
    report = ingest(lists.csv, out, opts())
    s = imgstore.open(out)
    assert s.names == lists.names and s.names != sorted(s.names)
    np.testing.assert_array_equal(s[:], np.stack([lists.pixels[n] for n in s.names]))
    assert s.class_names == ["bird", "cat", "dog"]
    assert [s.class_names[i] for i in s.labels] == ["cat", "dog", "cat", "bird"]
    assert s.skipped == expected_skipped(lists, "csv") and report.skipped == s.skipped
    assert report.count == 4 and s.complete
    assert s.meta_columns == (("caption", "text"), ("score", "float64"), ("count", "int64"), ("split", "text"),
                              ("boxes", "text"))  # fmt: skip
    assert s.meta["caption"] == [ROWS[i]["caption"] for i in STORED]
    assert s.meta["score"].dtype == np.float64 and s.meta["count"].dtype == np.int64
    assert s.meta["score"][0] == 0.5 and math.isnan(s.meta["score"][1]) and s.meta["score"].tolist()[2:] == [1.5, 6.25]
    assert s.meta["count"].tolist() == [3, 7, -2, 9]
    assert [json.loads(b) for b in s.meta["boxes"]] == [ROWS[i]["boxes"] for i in STORED]
    assert s.attrs["labels_source"] == "list" and s.attrs["source"] == str(lists.csv)
    assert s.attrs["imgstore_format"] == 3


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_jsonl_and_parquet_lists_give_the_csv_store(lists: Lists, tmp_path: Path, fmt: str) -> None:
    """The same list as JSON lines or Parquet stores the same rows, labels and meta; skips name its lines/rows."""
    ingest(lists.csv, tmp_path / "csv.h5", opts())
    ingest(lists.of(fmt), tmp_path / f"{fmt}.h5", opts())
    a, b = imgstore.open(tmp_path / "csv.h5"), imgstore.open(tmp_path / f"{fmt}.h5")
    assert b.names == a.names and b.labels.tolist() == a.labels.tolist() and b.class_names == a.class_names
    np.testing.assert_array_equal(b[:], a[:])
    assert b.meta_columns == a.meta_columns and meta_of(b) == meta_of(a)
    assert b.skipped == expected_skipped(lists, fmt)


def test_meta_mapping_and_meta_row(lists: Lists, tmp_path: Path) -> None:
    """store.meta lists the columns in list order; meta_row(i) gives plain Python values; unknown columns say which
    exist; a store from a folder has none."""
    ingest(lists.csv, tmp_path / "o.h5", opts())
    s = imgstore.open(tmp_path / "o.h5")
    assert list(s.meta.keys()) == ["caption", "score", "count", "split", "boxes"] and len(s.meta) == 5
    row = s.meta_row(-1)
    assert row == {"caption": "last, at last", "score": 6.25, "count": 9, "split": "test", "boxes": "[]"}
    assert type(row["count"]) is int and type(row["score"]) is float
    with pytest.raises(KeyError, match="no meta column 'colour'.*caption, score"):
        s.meta["colour"]
    with pytest.raises(IndexError):
        s.meta_row(4)
    assert s.meta_row(np.int64(3)) == row
    for bad in (True, 1.5, "1"):  # True is not row 1 (it gave an int column's whole array, as a mask)
        with pytest.raises(IndexError, match="meta_row takes one row number"):
            s.meta_row(bad)  # type: ignore[arg-type]
    ingest(lists.folder / "zoo", tmp_path / "folder.h5", opts())
    f = imgstore.open(tmp_path / "folder.h5")
    assert dict(f.meta) == {} and f.meta_row(0) == {} and f.attrs["imgstore_format"] == 2


def test_list_without_meta_columns_stays_format_2(lists: Lists, tmp_path: Path) -> None:
    """A list of paths and labels only makes a plain format-2 store: older imgstore releases read and append it."""
    plain = Lists.write_csv(lists.folder / "plain.csv", lists.rows, ["path", "label"])
    ingest(plain, tmp_path / "o.h5", opts())
    s = imgstore.open(tmp_path / "o.h5")
    assert s.attrs["imgstore_format"] == 2 and s.meta_columns == () and s.names == lists.names
    with h5py.File(tmp_path / "o.h5", "r") as f:
        assert "meta" not in f and "meta_columns" not in f.attrs


# -- typing and names ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cells", "text", "kind", "values"),
    [
        (["1", "-2", "30"], True, "int64", [1, -2, 30]),
        (["1", "", "2.5"], True, "float64", [1.0, None, 2.5]),
        (["1", "", "3"], True, "float64", [1.0, None, 3.0]),  # an integer column with an empty cell: NaN there
        (["007", "12"], True, "text", ["007", "12"]),  # a leading zero: a code, kept as written
        (["3.10", "x"], True, "text", ["3.10", "x"]),  # one word makes the column text, numbers as written
        (["1e3", "nan", "-inf"], True, "float64", [1000.0, None, -math.inf]),
        ([str(2**60), ""], True, "text", [str(2**60), ""]),  # a float cannot hold it exactly: text
        ([str(2**60), "1"], True, "int64", [2**60, 1]),
        (["", ""], True, "text", ["", ""]),
        ([1, 2.5, None], False, "float64", [1.0, 2.5, None]),
        ([1, "2"], False, "text", ["1", "2"]),  # JSON says "2" is text
        ([True, False], False, "text", ["true", "false"]),
        ([{"x": 1}, [1, 2]], False, "text", ['{"x": 1}', "[1, 2]"]),
    ],
)
def test_column_typing(cells: list[Any], text: bool, kind: str, values: list[Any]) -> None:
    """A column is int64 only when every value is an integer, float64 when every non-empty value is a number
    (empty: NaN), else text as written."""
    got_kind, got = column_values(cells, text)
    assert got_kind == kind
    assert [None if isinstance(v, float) and math.isnan(v) else v for v in got] == values


def test_column_names_are_escaped_for_hdf5(lists: Lists, tmp_path: Path) -> None:
    """Any header text is a column name: '/', '%' and a leading '.' are escaped in the HDF5 name, not in meta."""
    names = ["a/b", "100%", ".hidden", "ünï cödé"]
    assert [meta_column(meta_key(n)) for n in names] == names and "/" not in meta_key("a/b")
    Lists.write_csv(lists.folder / "odd.csv", [{"path": "zoo/a/1.png", **dict.fromkeys(names, "v")}], ["path", *names])
    ingest(lists.folder / "odd.csv", tmp_path / "o.h5", opts())
    s = imgstore.open(tmp_path / "o.h5")
    assert list(s.meta) == names and s.meta_row(0) == dict.fromkeys(names, "v")
    assert verify_store(tmp_path / "o.h5").ok


def test_every_listed_file_is_a_candidate_whatever_its_extension(lists: Lists, tmp_path: Path) -> None:
    """--extensions chooses files in a folder; a listed file that no decoder reads is skipped with the reason."""
    write(lists.folder / "notes.txt", b"just text")
    write(lists.folder / "UPPER.PNG", encode(Image.fromarray(photo(9)), "PNG"))
    Lists.write_csv(lists.folder / "l.csv", [{"path": "notes.txt"}, {"path": "UPPER.PNG"}, {"path": "zoo"}], ["path"])
    report = ingest(lists.folder / "l.csv", tmp_path / "o.h5", opts(extensions="jpg"))
    s = imgstore.open(tmp_path / "o.h5")
    assert s.names == ["UPPER.PNG"] and report.count == 1
    reasons = dict(s.skipped)
    assert set(reasons) == {"notes.txt", "zoo"} and reasons["zoo"] == "not a file: a folder"
    assert reasons["notes.txt"] and "missing" not in reasons["notes.txt"]


def test_same_file_under_another_spelling_is_listed_twice(lists: Lists, tmp_path: Path) -> None:
    """The same file reached by an absolute path, through '..' or a symlink is a second listing: skipped, naming
    the first; a path written with './' and '//' is stored without them."""
    os.symlink(lists.folder / "zoo", lists.folder / "link")
    rows = [{"path": ".//zoo/./a/1.png"}, {"path": str(lists.folder / "zoo/a/1.png")}, {"path": "zoo/b/../a/1.png"},
            {"path": "link/a/1.png"}, {"path": "zoo/a/5.png"}]  # fmt: skip
    Lists.write_csv(lists.folder / "l.csv", rows, ["path"])
    ingest(lists.folder / "l.csv", tmp_path / "o.h5", opts())
    s = imgstore.open(tmp_path / "o.h5")
    assert s.names == ["zoo/a/1.png", "zoo/a/5.png"]
    assert s.skipped == [
        ("l.csv:3", f"listed twice: {lists.folder}/zoo/a/1.png is listed as zoo/a/1.png at line 2 of l.csv"),
        ("l.csv:4", "listed twice: zoo/b/../a/1.png is listed as zoo/a/1.png at line 2 of l.csv"),
        ("l.csv:5", "listed twice: link/a/1.png is listed as zoo/a/1.png at line 2 of l.csv"),
    ]


# -- bad lists ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("l.csv", "file,label\na.png,1\n", r"l\.csv has no 'path' column \(its columns: file, label\)"),
        ("l.csv", "path,caption\na.png,x\nb.png,x,y\n", r"l\.csv line 3: 3 fields but the header has 2"),
        ("l.csv", 'path,caption\na.png,"never closed\n', r"l\.csv line \d+: malformed CSV"),
        ("l.csv", "path,caption,path\n", r"l\.csv line 1: the header names column 'path' twice"),
        ("l.csv", "", r"l\.csv is empty"),
        ("l.jsonl", '{"path": "a.png"}\n\n{"path": "b.png",}\n', r"l\.jsonl line 3: malformed JSON"),
        ("l.jsonl", '{"path": "a.png"}\n["b.png"]\n', r"l\.jsonl line 2: expected a JSON object, got list"),
        ("l.csv", b"path\n\xff\xfe.png\n", r"l\.csv line 2: not UTF-8"),
        ("l.jsonl", '{"path": "a.png", "c": "ok"}\n{"path": "b.png", "c": "a\\u0000b"}\n',
         r"l\.jsonl line 2: the 'c' value holds a NUL character"),
        ("l.jsonl", '{"path": "a\\u0000.png"}\n', r"l\.jsonl line 1: the 'path' value holds a NUL character"),
        ("l.jsonl", '{"path": "a.png"}\n{"path": "b.png", "c": 1, "path": "c.png"}\n',
         r"l\.jsonl line 2: the key 'path' appears twice in one object"),
        ("l.csv", "path,a\0b\na.png,1\n", r"l\.csv: the column name 'a\\x00b' holds a NUL character"),
        ("l.jsonl", '{"path": "a.png", "c": "ok"}\n{"path": "b.png", "c": "a\\ud800b"}\n',
         r"l\.jsonl line 2: the 'c' value holds a lone surrogate"),
    ],
)
def test_bad_list_is_one_line_error_naming_file_and_line(
    tmp_path: Path, cli: CliRunner, name: str, text: str | bytes, message: str
) -> None:
    """A list that cannot be read stops the ingest before OUT exists: one line naming the file (and line)."""
    lst = tmp_path / name
    lst.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SourceError, match=message):
        ingest(lst, tmp_path / "o.h5", opts())
    result = cli.invoke(app, ["ingest", str(lst), str(tmp_path / "o.h5"), "-q"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: list file") and str(lst) in lines[0]
    assert not (tmp_path / "o.h5").exists()


def test_missing_list_and_parquet_without_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A list that does not exist is a SourceError (not 'is not a folder'); Parquet without pyarrow names the extra."""
    with pytest.raises(SourceError, match=r"list file .*none\.csv does not exist"):
        ingest(tmp_path / "none.csv", tmp_path / "o.h5", opts())
    (tmp_path / "l.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'imgstore\[parquet\]'"):
        ingest(tmp_path / "l.parquet", tmp_path / "o.h5", opts())


def test_labels_option_and_label_column(lists: Lists, tmp_path: Path) -> None:
    """--labels with a labelled list is refused (a row would have two labels); with an unlabelled list it labels
    the rows by their stored names."""
    with pytest.raises(OptionError, match="has a label column.*drop --labels folder"):
        ingest(lists.csv, tmp_path / "o.h5", opts(labels="folder"))
    plain = Lists.write_csv(lists.folder / "plain.csv", lists.rows, ["path", "caption"])
    ingest(plain, tmp_path / "o.h5", opts(labels="folder"))
    s = imgstore.open(tmp_path / "o.h5")
    assert s.class_names == ["zoo"] and s.attrs["labels_source"] == "folder"
    assert str(lists.abs) not in s.names  # an absolute path is in no class folder
    assert list(s.meta) == ["caption"]


# -- the CLI, info, verify, extract ---------------------------------------------------------------------------------
def test_cli_ingest_info_verify_extract(lists: Lists, tmp_path: Path, cli: CliRunner) -> None:
    """The CLI ingests a list, info shows its meta columns, verify --sources re-reads the listed files, extract
    writes every row (absolute names too) and the meta columns beside them in meta.jsonl."""
    out = tmp_path / "o.h5"
    result = cli.invoke(app, ["ingest", str(lists.csv), str(out), "--size", f"{W}x{H}", "--workers", "0", "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"ingested 4 images, skipped 4 (imgstore info --skipped {out} lists them)"
    info = cli.invoke(app, ["info", str(out)])
    assert "  meta        caption (text), score (float64), count (int64), split (text), boxes (text)" in info.stdout
    assert "meta/score         (4,) float64" in info.stdout
    data = json.loads(cli.invoke(app, ["info", "--json", str(out)]).stdout)
    assert data["meta"] == {"caption": "text", "score": "float64", "count": "int64", "split": "text", "boxes": "text"}
    ok = cli.invoke(app, ["verify", str(out), "--sources", str(lists.csv), "-q"])
    assert ok.exit_code == 0 and ok.stdout.strip() == f"OK: 4 images verified in {out}"
    assert isinstance(open_source(lists.csv), ListSource)
    write(lists.abs, encode(Image.fromarray(photo(99)), "PNG"))  # a listed file changes
    os.unlink(lists.folder / "zoo/a/1.png")  # and one goes
    bad = cli.invoke(app, ["verify", str(out), "--sources", str(lists.csv), "-q"])
    assert bad.exit_code == 1
    assert f"problem: {lists.abs} changed since ingest (sha256 differs)" in bad.stderr
    assert f"problem: zoo/a/1.png is missing from {lists.csv}" in bad.stderr
    files = extract_images(out, tmp_path / "png")
    assert len(files) == 5 and all(f.is_file() for f in files) and files[-1].name == "meta.jsonl"
    np.testing.assert_array_equal(np.asarray(Image.open(files[2])), lists.pixels[str(lists.abs)])
    sidecar = [json.loads(line) for line in files[-1].read_text(encoding="utf-8").splitlines()]
    assert [r["file"] for r in sidecar] == [f.name for f in files[:4]] and [r["row"] for r in sidecar] == [0, 1, 2, 3]
    assert sidecar[1] == {"file": files[1].name, "row": 1, "name": "zoo/a/1.png", "label": 2, "class": "dog",
                          "meta": {"caption": ROWS[1]["caption"], "score": None, "count": 7, "split": "val",
                                   "boxes": "[]"}}  # fmt: skip
    again = cli.invoke(app, ["extract", str(out), str(tmp_path / "png2"), "--indices", "3", "-q"])
    assert again.stdout.strip() == f"wrote 1 PNG files and meta.jsonl (their meta columns) to {tmp_path / 'png2'}"
    assert json.loads((tmp_path / "png2" / "meta.jsonl").read_text())["meta"]["caption"] == "last, at last"
    refused = cli.invoke(app, ["extract", str(out), str(tmp_path / "png2"), "-q"])
    assert refused.exit_code == 1 and "meta.jsonl" in refused.stderr


def test_verify_finds_damaged_meta_columns(lists: Lists, tmp_path: Path) -> None:
    """A meta column shorter than count, or listed without its dataset, is a problem."""
    out = tmp_path / "o.h5"
    ingest(lists.csv, out, opts())
    with h5py.File(out, "r+") as f:
        f["meta/score"].resize((2,))
        del f["meta/split"]
    report = verify_store(out)
    assert "meta column 'split' is listed in meta_columns but its dataset is missing" in report.problems
    assert "meta/score has 2 rows but count is 4" in report.problems


def test_checksums_cover_meta_values(lists: Lists, tmp_path: Path) -> None:
    """A meta value changed after ingest is a changed row: verify lists it and check=True reading refuses it."""
    from imgstore.errors import ChecksumError

    out = tmp_path / "o.h5"
    ingest(lists.csv, out, opts())
    assert verify_store(out).changed_rows == []
    with h5py.File(out, "r+") as f:
        f["meta/count"][1] = 99
        f["meta/caption"][3] = "edited"
    report = verify_store(out)
    assert report.changed_rows == [1, 3]
    assert "meta/caption row 3 is 'edited' but its journal copy says 'last, at last'" in report.problems
    with imgstore.open(out, check=True) as s:
        np.testing.assert_array_equal(s[0], lists.pixels["zoo/b/2.png"])
        with pytest.raises(ChecksumError, match="row 1"):
            s[1]


def test_image_indexer_writes_meta_columns_directly(tmp_path: Path) -> None:
    """ImageIndexer(meta=...) takes one value per column per row (None: empty), keeps them across a reopen, and
    refuses a row with too few values or a value of another kind."""
    from imgstore.store.writer import ImageIndexer

    out = tmp_path / "own.h5"
    columns = (("caption", "text"), ("score", "float64"), ("id", "int64"))
    with ImageIndexer(out, size=(W, H), meta=columns) as ix:
        ix.add("a", photo(1), meta=("first", 0.5, 10))
        ix.add("b", photo(2), meta=(None, None, 11))
        with pytest.raises(OptionError, match="one meta value per meta column"):
            ix.add("c", photo(3), meta=("x", 1.0))
        with pytest.raises(OptionError, match="does not fit its column"):
            ix.add("c", photo(3), meta=("x", 1.0, 2.5))
        for bad in ("a\x00b", "a\ud800b"):  # HDF5 text cannot hold them: refused here, not at the commit
            with pytest.raises(OptionError, match="does not fit its column.*NUL character or a lone surrogate"):
                ix.add("c", photo(3), meta=(bad, 1.0, 2))
    with ImageIndexer.reopen(out) as ix:
        assert ix.meta_columns == columns
        ix.add("c", photo(3), meta=("third", 3, 12))
    s = imgstore.open(out, check=True)
    assert s.names == ["a", "b", "c"] and s.meta_columns == columns
    assert meta_of(s) == {"caption": ["first", "", "third"], "score": [0.5, None, 3.0], "id": [10, 11, 12]}
    np.testing.assert_array_equal(s[2], photo(3))
    with pytest.raises(OptionError, match="invalid meta column name"):
        ImageIndexer(tmp_path / "bad.h5", size=(W, H), meta=(("x", "text"), ("x", "int64")))


# -- workers, append, merge ---------------------------------------------------------------------------------------
def test_workers_0_1_2_make_identical_stores(lists: Lists, tmp_path: Path) -> None:
    """Decoder processes change nothing: every dataset and attribute is the same for 0, 1 and 2 workers."""
    contents = []
    for workers in (0, 1, 2):
        ingest(lists.csv, tmp_path / f"w{workers}.h5", opts(workers=workers))
        contents.append(h5_contents(tmp_path / f"w{workers}.h5"))
    assert "meta/caption" in contents[0] and "_journal/meta/caption.bytes" in contents[0]
    assert contents[0] == contents[1] == contents[2]


def test_append_a_list_with_the_same_columns(lists: Lists, tmp_path: Path) -> None:
    """Appending a list with the same columns (in any order; integers into a float column) adds rows with their
    meta aligned; a new class goes after the existing ones (the store is copied to grow class_names)."""
    out = tmp_path / "o.h5"
    ingest(lists.csv, out, opts())
    write(lists.folder / "more/6.png", encode(Image.fromarray(photo(6)), "PNG"))
    write(lists.folder / "more/7.png", encode(Image.fromarray(photo(7)), "PNG"))
    more = [
        {"boxes": "[]", "count": 5, "score": 8, "split": "val", "caption": "six", "label": "eel", "path": "more/6.png"},
        {"boxes": "[[9, 9, 9, 9]]", "count": 6, "score": 9, "split": "val", "caption": "seven", "label": "cat",
         "path": "more/7.png"},
        {"boxes": "[]", "count": 0, "score": 1, "split": "x", "caption": "again", "label": "cat", "path": "zoo/a/1.png"},
    ]  # fmt: skip
    second = lists.folder / "more.jsonl"
    second.write_text("".join(json.dumps(r) + "\n" for r in more), encoding="utf-8")
    report = ingest(second, out, opts(append=True))
    s = imgstore.open(out)
    assert report.count == 2 and s.names == [*lists.names, "more/6.png", "more/7.png"]
    assert s.class_names == ["bird", "cat", "dog", "eel"]
    assert [s.class_names[i] for i in s.labels] == ["cat", "dog", "cat", "bird", "eel", "cat"]
    assert s.meta["caption"][4:] == ["six", "seven"] and s.meta["score"].tolist()[4:] == [8.0, 9.0]
    assert s.meta["count"].tolist() == [3, 7, -2, 9, 5, 6] and s.meta["boxes"][5] == "[[9, 9, 9, 9]]"
    assert verify_store(out).ok


def test_append_with_other_columns_is_refused(lists: Lists, tmp_path: Path) -> None:
    """A list with other columns, a folder (no columns) or values that do not fit a column: refused before any
    change, saying how to fix it."""
    out = tmp_path / "o.h5"
    ingest(lists.csv, out, opts())
    before = h5_contents(out)
    row = {"path": "zoo/c/4.png", "label": "cat", "caption": "x"}
    other = Lists.write_csv(lists.folder / "other.csv", [row], ["path", "label", "caption", "colour"])
    with pytest.raises(StoreError, match=r"its meta columns are caption, score, count, split, boxes but other\.csv has "
                                         r"caption, colour: give a list with exactly the store's columns"):
        ingest(other, out, opts(append=True))
    unlabelled = Lists.write_csv(lists.folder / "unlabelled.csv", [row], ["path", "caption"])
    with pytest.raises(OptionError, match="labels-scheme is list in the store but none here.*give a list with one"):
        ingest(unlabelled, out, opts(append=True))
    ingest(unlabelled, tmp_path / "captions.h5", opts())
    with pytest.raises(StoreError, match=r"its meta columns are caption but .*zoo has none"):
        ingest(lists.folder / "zoo", tmp_path / "captions.h5", opts(append=True))
    cols = ["path", "label", "caption", "score", "count", "split", "boxes"]
    wrong = Lists.write_csv(lists.folder / "wrong.csv", [{**lists.rows[6], "label": "cat", "count": 1.5}], cols)
    with pytest.raises(StoreError, match="count is int64 in the store but float64 here"):
        ingest(wrong, out, opts(append=True))
    assert h5_contents(out) == before


def test_merge_of_list_shards_equals_single_ingest(lists: Lists, tmp_path: Path) -> None:
    """Shards of a list merge (virtual and --copy) into the single-machine store, meta included."""
    from imgstore.store.merge import merge_shards

    ingest(lists.csv, tmp_path / "one.h5", opts())
    shards = [tmp_path / f"s{k}.h5" for k in (1, 2, 3)]
    for k, shard in enumerate(shards, start=1):
        ingest(lists.csv, shard, opts(shard=(k, 3)))
    one = imgstore.open(tmp_path / "one.h5")
    for copy in (False, True):
        out = tmp_path / f"m{int(copy)}.h5"
        merge_shards(out, shards, copy=copy)
        m = imgstore.open(out)
        assert m.names == one.names and sorted(m.skipped) == sorted(one.skipped)
        assert m.labels.tolist() == one.labels.tolist() and m.class_names == one.class_names
        assert m.meta_columns == one.meta_columns and meta_of(m) == meta_of(one)
        np.testing.assert_array_equal(m[:], one[:])
        assert verify_store(out).ok, verify_store(out).problems


def test_merge_refuses_shards_with_other_meta_columns(lists: Lists, tmp_path: Path) -> None:
    """Shards whose meta columns differ are refused, naming both."""
    from imgstore.store.merge import merge_shards

    plain = Lists.write_csv(lists.folder / "plain.csv", lists.rows, ["path", "label", "caption"])
    ingest(lists.csv, tmp_path / "s1.h5", opts(shard=(1, 2)))
    ingest(plain, tmp_path / "s2.h5", opts(shard=(2, 2)))
    with pytest.raises(StoreError, match="shards disagree on"):
        merge_shards(tmp_path / "m.h5", [tmp_path / "s1.h5", tmp_path / "s2.h5"])


# -- crash safety -------------------------------------------------------------------------------------------------
def test_incomplete_store_reads_text_meta_from_its_journal(lists: Lists, tmp_path: Path) -> None:
    """Text meta columns survive like the names: an interrupted store's readers take them from the journal even
    when the string dataset is unreadable, verify calls it a note, and --resume rebuilds the dataset."""
    out = tmp_path / "o.h5"
    ingest(lists.csv, out, opts())
    with h5py.File(out, "r+") as f:
        f.attrs["complete"] = False  # as an interrupted run leaves it
        f["meta/caption"].resize((0,))  # as if a kill tore its variable-length strings
    s = imgstore.open(out)
    assert s.meta["caption"] == [ROWS[i]["caption"] for i in STORED]
    s.close()
    report = verify_store(out)
    assert report.ok, report.problems
    assert any("meta/caption has 0 rows but count is 4" in n for n in report.notes)
    ingest(lists.csv, out, opts(resume=True))
    with h5py.File(out, "r") as f:
        assert [v.decode() for v in f["meta/caption"][:]] == [ROWS[i]["caption"] for i in STORED]
    assert imgstore.open(out).complete and verify_store(out).ok


@pytest.fixture(scope="module")
def big_list(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 photos of 320x240 listed in shuffled order with a caption, a score and a label each, plus bad rows."""
    root = tmp_path_factory.mktemp("biglist")
    order = np.random.default_rng(0).permutation(160).tolist()
    rows = []
    for i in order:
        write(root / f"p{i % 4}" / f"{i:03d}.png", encode(pattern(320, 240, seed=i), "PNG", compress_level=1))
        rows.append({"path": f"p{i % 4}/{i:03d}.png", "label": f"c{i % 3}", "caption": f"photo {i}, «{i}»",
                     "score": "" if i % 5 == 0 else i / 4, "count": i})  # fmt: skip
        if i % 41 == 3:
            rows.append({"path": f"gone/{i}.png", "label": "c0", "caption": "missing", "score": 1, "count": 0})
    return Lists.write_csv(root / "list.csv", rows, ["path", "label", "caption", "score", "count"])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "imgstore", "ingest", *args, "--size", "48", "-q", "--buffer-size", "4",
            "--workers", "1"]  # fmt: skip



@pytest.mark.parametrize("kill_after", [2, 60])
def test_kill_9_then_resume_equals_uninterrupted_run(big_list: Path, tmp_path: Path, kill_after: int) -> None:
    """SIGKILL a list ingest: the store opens with rows and meta of the uninterrupted run's first rows, and
    --resume ends identical to it, meta and labels included."""
    ref = tmp_path / "ref.h5"
    assert subprocess.run(_cli(str(big_list), str(ref)), capture_output=True).returncode == 0
    out = tmp_path / "killed.h5"
    proc = subprocess.Popen(_cli(str(big_list), str(out)))
    deadline = time.monotonic() + 60
    while committed_rows(out) < kill_after and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    s, r = imgstore.open(out), imgstore.open(ref)
    n = len(s)
    assert n >= 1 and not s.complete, "the kill did not land while the run was writing"
    assert s.names == r.names[:n] and s.labels.tolist() == r.labels[:n].tolist()
    assert s.meta["caption"] == r.meta["caption"][:n]
    np.testing.assert_array_equal(s.meta["score"], r.meta["score"][:n])
    s.close()
    r.close()
    done = subprocess.run(_cli(str(big_list), str(out), "--resume"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    x = h5_contents(out)
    y = h5_contents(ref)
    assert x.pop("attrs") == y.pop("attrs") and x == y


def test_extract_meta_jsonl_is_strict_json_with_infinite_and_nan_numbers(tmp_path: Path) -> None:
    """A float meta column holding Infinity, -Infinity and NaN (JSON lines allow them, as Python's json does)
    extracts to a meta.jsonl every strict JSON parser reads: infinity as 1e999 / -1e999, NaN as null."""
    for i in range(4):
        write(tmp_path / f"p{i}.png", encode(Image.fromarray(photo(i)), "PNG"))
    rows = ['{"path": "p0.png", "x": Infinity, "t": "Infinity"}', '{"path": "p1.png", "x": -Infinity, "t": "a"}',
            '{"path": "p2.png", "x": NaN, "t": "b"}', '{"path": "p3.png", "x": 0.5, "t": "c"}']  # fmt: skip
    (tmp_path / "l.jsonl").write_text("\n".join(rows) + "\n")
    out = tmp_path / "l.h5"
    ingest(str(tmp_path / "l.jsonl"), out, opts())
    sidecar = extract_images(out, tmp_path / "png")[-1]

    def refuse(word: str) -> Any:
        raise ValueError(f"not strict JSON: {word}")

    lines = [json.loads(line, parse_constant=refuse) for line in sidecar.read_text().splitlines()]
    assert [line["meta"]["x"] for line in lines[:2]] == [math.inf, -math.inf]
    assert lines[2]["meta"]["x"] is None and lines[3]["meta"]["x"] == 0.5
    assert [line["meta"]["t"] for line in lines] == ["Infinity", "a", "b", "c"]
    assert [line["name"] for line in lines] == ["p0.png", "p1.png", "p2.png", "p3.png"]


def test_append_to_a_text_column_keeps_the_csv_spelling_of_numbers(tmp_path: Path) -> None:
    """A store whose column is text, appended with a CSV whose column holds only numbers: the values are stored
    as the list writes them (1.50, +5, 1e3, -0), not re-spelled from the parsed numbers (1.5, 5, 1000.0, 0)."""
    for i in range(7):
        write(tmp_path / f"p{i}.png", encode(Image.fromarray(photo(i)), "PNG"))
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text("path,code,n\np0.png,x,1\np1.png,y,2\n")
    second.write_text("n,path,code\n3,p2.png,1.50\n4,p3.png,+5\n5,p4.png,1e3\n6,p5.png,-0\n7,p6.png,\n")
    out = tmp_path / "s.h5"
    ingest(str(first), out, opts())
    ingest(str(second), out, opts(append=True))
    with imgstore.open(out) as store:
        assert store.meta["code"] == ["x", "y", "1.50", "+5", "1e3", "-0", ""]
        assert store.meta["n"].tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert verify_store(out).ok


def test_lone_surrogate_inside_a_json_list_is_kept_as_its_escape(tmp_path: Path) -> None:
    """A JSON list or object holding a lone surrogate is stored as JSON text with the \\ud800 escape (UTF-8 cannot
    hold the character itself); the others keep their characters as written."""
    for i in range(2):
        write(tmp_path / f"p{i}.png", encode(Image.fromarray(photo(i)), "PNG"))
    lst = tmp_path / "l.jsonl"
    lst.write_text('{"path": "p0.png", "c": ["\\ud800", 1]}\n{"path": "p1.png", "c": {"k": "é"}}\n')
    out = tmp_path / "l.h5"
    ingest(str(lst), out, opts())
    with imgstore.open(out) as store:
        assert store.meta["c"] == ['["\\ud800", 1]', '{"k": "é"}']
    assert verify_store(out).ok


def test_parquet_float_label_column_with_nan_is_integers_with_gaps(tmp_path: Path) -> None:
    """pandas writes an integer label column with a missing value as floats (1.0, NaN, 3.0): the integral floats
    are integer labels (kept, as integers are) and NaN is an empty label (the row skipped as unlabelled), not a
    class named 'NaN' beside classes '1.0' and '3.0'."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    for i in range(3):
        write(tmp_path / f"p{i}.png", encode(Image.fromarray(photo(i)), "PNG"))
    lst = tmp_path / "l.parquet"
    pq.write_table(pa.table({"path": ["p0.png", "p1.png", "p2.png"], "label": [1.0, math.nan, 3.0]}), lst)
    out = tmp_path / "l.h5"
    report = ingest(str(lst), out, opts())
    with imgstore.open(out) as store:
        assert store.names == ["p0.png", "p2.png"]
        assert store.labels[:].tolist() == [1, 3] and store.class_names is None
    assert [name for name, _ in report.skipped] == ["p1.png"]


def test_json_path_with_a_surrogate_escape_names_a_non_utf8_file(tmp_path: Path) -> None:
    """A JSON path may name a file whose name is not UTF-8 by the surrogate escape of its byte (\\udcff: 0xff),
    as os does; it is stored under the escaped name, as a folder stores it. A lone surrogate no file system byte
    gives (\\ud800) is refused naming the line."""
    raw = os.path.join(os.fsencode(tmp_path), b"x\xff.png")
    with open(raw, "wb") as fh:
        fh.write(encode(Image.fromarray(photo(1)), "PNG"))
    lst = tmp_path / "l.jsonl"
    lst.write_text('{"path": "x\\udcff.png", "c": "ok"}\n')
    out = tmp_path / "l.h5"
    ingest(str(lst), out, opts())
    with imgstore.open(out) as store:
        assert store.names == ["x\\xff.png"] and store.meta["c"] == ["ok"]
        np.testing.assert_array_equal(store[0], photo(1))
    lst.write_text('{"path": "x\\ud800.png", "c": "ok"}\n')
    with pytest.raises(SourceError, match=r"l\.jsonl line 1: the 'path' value holds a lone surrogate"):
        ingest(str(lst), tmp_path / "m.h5", opts())
