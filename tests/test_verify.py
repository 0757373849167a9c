"""verify: the pure checks of imgstore.store.checks on plain facts (no HDF5), the row reader's failure handling on a
stand-in dataset, and end to end on stores made by imgstore.ingest, then damaged with h5py.

The tests of the first verify (sound stores, each kind of damage named, sources, merged stores) are in test_tools.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import imgstore
import imgstore.store.verify as V
from imgstore.ingest import ingest
from imgstore.options import DecodeOptions, IngestOptions
from imgstore.progress import CallbackProgress
from imgstore.store import STR
from imgstore.store.checks import (
    CHANGED_RUNS,
    DUPLICATED_NAMES,
    LABELS_OUT_OF_RANGE,
    MISSING_SOURCES,
    NEVER_WRITTEN,
    UNUSABLE_SHARDS,
    ChunkFacts,
    CountFacts,
    Note,
    Problem,
    RowObject,
    RowPlan,
    SourceFile,
    VirtualMapping,
    changed_rows,
    check_changed_rows,
    check_channels,
    check_checksums_present,
    check_chunks,
    check_counts,
    check_digests_recorded,
    check_duplicates,
    check_format,
    check_geometry,
    check_journal,
    check_journal_copy,
    check_labels,
    check_row_dataset,
    check_skipped,
    check_source_file,
    check_virtual_sources,
    count_attribute,
    dead_name_rows,
    duplicate_candidates,
    row_plan,
    skipped_count,
)
from imgstore.store.verify import MAX_FAILED_READS, MAX_LISTED, VerifyReport, verify_store

from conftest import encode, pattern, write

N, H, W = 10, 16, 20
STORE = Path("s.h5")


def objects(**rows: int) -> tuple[RowObject, ...]:
    """Sound per-row datasets of the given row counts (``images=10, image_names=10, ...``)."""
    layout: dict[str, tuple[tuple[int, ...], Any]] = {
        "images": ((H, W, 3), np.dtype(np.uint8)),
        "image_names": ((), STR),
        "labels": ((), np.dtype(np.int64)),
        "sha256": ((32,), np.dtype(np.uint8)),
        "checksums": ((), np.dtype(np.uint32)),
    }
    return tuple(RowObject(name, "Dataset", (n, *layout[name][0]), layout[name][1]) for name, n in rows.items())


def texts_of(found: list[Any]) -> list[str]:
    return [item.text for item in found]


# ================================================================================================== format


def test_format_accepts_current_and_notes_old_or_unfinished() -> None:
    """Format 2 of a complete store passes silently; format 1 and an unfinished ingest are notes, not problems."""
    assert check_format(STORE, np.int64(2), True) == []
    assert check_format(STORE, 1, False) == [
        Note("store format 1 carries no row checksums: changed pixels cannot be detected (an --append or --resume "
             "upgrades the store)"),
        Note("ingest did not finish (complete is false); imgstore ingest --resume continues it"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "s.h5 is an HDF5 file but not an imgstore store (no imgstore_format attribute)"),
        ("x", "imgstore_format attribute 'x' is not a version number"),
        (np.array([2, 2]), "imgstore_format attribute array([2, 2]) is not a version number"),
        (float("inf"), "imgstore_format attribute inf is not a version number"),
        (5, "store format version 5 is newer than this imgstore reads (4): upgrade imgstore"),
    ],
)
def test_format_problems_stop_verification(value: Any, problem: str) -> None:
    """A missing, unreadable or newer format is the one problem found (nothing else can be judged)."""
    assert check_format(STORE, value, True) == [Problem(problem)]


# ============================================================================================ row datasets


@pytest.mark.parametrize(
    ("obj", "problem"),
    [
        (RowObject("images", "Dataset", (N, H, W, 3), np.dtype(np.float32)),
         "images must be uint8 (N, H, W, C), found float32 (10, 16, 20, 3)"),
        (RowObject("images", "Dataset", (N, H, W, 3), np.dtype(np.uint16)),
         "images must be uint8 (N, H, W, C), found uint16 (10, 16, 20, 3)"),
        (RowObject("images", "Dataset", (N, H, W), np.dtype(np.uint8)),
         "images must be uint8 (N, H, W, C), found uint8 (10, 16, 20)"),
        (RowObject("image_names", "Dataset", (N,), np.dtype(np.int64)),
         "image_names must be 1-D strings, found int64 (10,)"),
        (RowObject("image_names", "Dataset", (N, 2), STR), "image_names must be 1-D strings, found object (10, 2)"),
        (RowObject("labels", "Dataset", (N,), np.dtype(np.float64)), "labels must be 1-D integers, found float64 (10,)"),
        (RowObject("labels", "Dataset", (N, 2), np.dtype(np.int64)), "labels must be 1-D integers, found int64 (10, 2)"),
        (RowObject("sha256", "Dataset", (N, 16), np.dtype(np.uint8)), "sha256 must be uint8 (N, 32), found uint8 (10, 16)"),
        (RowObject("sha256", "Dataset", (N, 32), np.dtype(np.uint16)),
         "sha256 must be uint8 (N, 32), found uint16 (10, 32)"),
        (RowObject("checksums", "Dataset", (N,), np.dtype(np.uint64)), "checksums must be 1-D uint32, found uint64 (10,)"),
        (RowObject("checksums", "Dataset", (N, 1), np.dtype(np.uint32)),
         "checksums must be 1-D uint32, found uint32 (10, 1)"),
        (RowObject("images", "Group"), "images is not a per-row dataset (Group, shape None)"),
        (RowObject("labels", "Dataset", (), np.dtype(np.int64)), "labels is not a per-row dataset (Dataset, shape ())"),
    ],
)  # fmt: skip
def test_wrong_dtype_or_shape_is_named(obj: RowObject, problem: str) -> None:
    """Each per-row dataset of the wrong dtype or shape is one problem giving what was found."""
    assert check_row_dataset(obj) == [Problem(problem)]


def test_sound_row_datasets_pass() -> None:
    """Every per-row dataset as the writer makes it passes (unsigned labels too)."""
    for obj in (*objects(images=N, image_names=N, labels=N, sha256=N, checksums=N),
                RowObject("labels", "Dataset", (N,), np.dtype(np.uint16))):  # fmt: skip
        assert check_row_dataset(obj) == [], obj


# ================================================================================================== counts


def test_count_larger_than_the_rows_names_each_short_dataset() -> None:
    """A count above the rows is one problem per short dataset; only the rows every dataset holds are checked."""
    facts = CountFacts(objects(images=10, image_names=10, checksums=8), 12)
    assert texts_of(check_counts(facts)) == [
        "images has 10 rows but count is 12",
        "image_names has 10 rows but count is 12",
        "checksums has 8 rows but count is 12",
    ]
    assert row_plan(facts) == RowPlan(committed=12, checked=8, usable=("images", "image_names", "checksums"))


def test_short_datasets_leave_no_note_about_longer_ones() -> None:
    """When some dataset is short, the longer ones are not called leftovers of an interrupted write."""
    facts = CountFacts(objects(images=14, image_names=12, checksums=8), 12)
    assert check_counts(facts) == [Problem("checksums has 8 rows but count is 12")]


def test_rows_past_count_are_a_note() -> None:
    """Rows beyond count are an interrupted write's leftovers: a note listing each dataset's rows."""
    facts = CountFacts(objects(images=10, image_names=9, checksums=7), 7)
    assert check_counts(facts) == [
        Note("rows past count 7 (images 10, image_names 9) are leftovers of an interrupted write: readers ignore them "
             "and the next write trims them")
    ]  # fmt: skip
    assert row_plan(facts).checked == 7


@pytest.mark.parametrize(
    ("count", "problem", "committed"),
    [
        (None, "count attribute is missing, so readers see no images (images has 10 rows)", 10),
        ("many", "count attribute 'many' is not a number", 10),
        (np.array([1, 2]), "count attribute array([1, 2]) is not a number", 10),
        (float("inf"), "count attribute inf is not a number", 10),
        (-3, "count attribute is negative (-3)", 0),
    ],
)
def test_unusable_count_is_a_problem_with_a_fallback(count: Any, problem: str, committed: int) -> None:
    """A missing or non-numeric count stands for the image rows, a negative one for none; each is a problem."""
    assert count_attribute(count, 10) == (committed, [Problem(problem)])
    facts = CountFacts(objects(images=10, image_names=10), count)
    assert check_counts(facts)[0] == Problem(problem)
    assert row_plan(facts).checked == committed


def test_count_accepts_what_readers_accept() -> None:
    """A count stored as any integer type, or as bytes of digits, is a count (as ``int()`` in the reader)."""
    assert count_attribute(np.int64(4), 10) == (4, [])
    assert count_attribute(np.uint32(10), 10) == (10, [])
    assert count_attribute(b"5", 10) == (5, [])


def test_unusable_dataset_is_left_out_of_the_counts() -> None:
    """A per-row dataset of the wrong dtype is neither counted nor read (its own problem is check_row_dataset's)."""
    bad = RowObject("labels", "Dataset", (3,), np.dtype(np.float32))
    facts = CountFacts((*objects(images=10, image_names=10), bad), 10)
    assert check_counts(facts) == []
    assert row_plan(facts) == RowPlan(10, 10, ("images", "image_names"))


def test_missing_images_and_names() -> None:
    """No images with a count is a problem (an empty store is a note); images without names is a problem."""
    assert check_counts(CountFacts(objects(image_names=3), 3)) == [Problem("count is 3 but the store has no images dataset")]
    assert check_counts(CountFacts((), 0)) == [Note("the store holds no images")]
    assert check_counts(CountFacts(objects(images=4, checksums=4), 4)) == [
        Problem("image_names is missing (images has 4 rows)")
    ]


def test_names_from_the_journal_are_not_judged_by_their_dataset() -> None:
    """An incomplete store's short string dataset is a note, and its rows do not limit the rows checked."""
    facts = CountFacts(objects(images=4, image_names=1, checksums=4), 4, names_from_journal=True)
    assert check_counts(facts) == [
        Note("image_names has 1 rows but count is 4: readers use the journal, the next write rebuilds it")
    ]
    assert row_plan(facts) == RowPlan(4, 4, ("images", "checksums"))
    without = CountFacts(objects(images=4, checksums=4), 4, names_from_journal=True)
    assert check_counts(without) == []  # the journal stands in for a missing string dataset too


# ========================================================================================= attributes, labels


def test_geometry_and_channels_attributes() -> None:
    """size and channels must describe the images; a store holds 1 or 3 channels; missing attributes are named."""
    assert check_geometry((N, H, W, 3), np.array([W, H])) == []
    assert check_channels((N, H, W, 3), np.int64(3)) == []
    assert texts_of(check_geometry((N, H, W, 2), [32, 32])) == [
        "images have 2 channels: a store holds 3 (RGB) or 1 (grayscale)",
        "size attribute says [32, 32] (width, height) but images are 20x16",
    ]
    assert texts_of(check_geometry((N, H, W, 1), None)) == ["size attribute is missing (images are 20x16)"]
    assert texts_of(check_channels((N, H, W, 3), 1)) == ["channels attribute says 1 but images have 3"]
    assert texts_of(check_channels((N, H, W, 3), None)) == ["channels attribute is missing (images have 3)"]


def test_channels_that_are_not_a_number_raise_for_the_driver() -> None:
    """A channels attribute that is no number raises ValueError: verify reports the geometry as not checkable."""
    with pytest.raises(ValueError):
        check_channels((N, H, W, 3), "abc")


def test_labels_outside_the_classes() -> None:
    """Each label outside 0..k-1 is named with its row (offset by the batch start)."""
    found = check_labels(100, np.array([0, 2, 3, -1, 1]), 3)
    assert found == [
        Problem("labels row 102 is 3, outside 0..2 (class_names has 3 names)", LABELS_OUT_OF_RANGE),
        Problem("labels row 103 is -1, outside 0..2 (class_names has 3 names)", LABELS_OUT_OF_RANGE),
    ]
    assert check_labels(0, np.array([0, 1, 2]), 3) == []


# ================================================================================================= storage


def test_rows_never_written_are_runs() -> None:
    """Blocks without their chunks on disk are reported as runs of rows, the last cut at the committed rows."""
    stored = np.array([1, 0, 0, 1, 0])  # blocks of 4 rows, one chunk each
    found = check_chunks(ChunkFacts("images", 18, 4, 1, stored))
    assert found == [
        Problem("images rows 4-11 were never written (no data on disk; reads give zeros)", NEVER_WRITTEN),
        Problem("images rows 16-17 were never written (no data on disk; reads give zeros)", NEVER_WRITTEN),
    ]
    single = check_chunks(ChunkFacts("labels", 3, 1, 1, np.array([1, 1, 0])))
    assert texts_of(single) == ["labels row 2 was never written (no data on disk; reads give zeros)"]
    assert check_chunks(ChunkFacts("images", 8, 4, 2, np.array([2, 2]))) == []


def test_chunk_total_when_chunks_cannot_be_listed() -> None:
    """With only a chunk total (HDF5 < 1.14), too few chunks for the committed rows is one problem."""
    assert texts_of(check_chunks(ChunkFacts("images", 10, 1, 1, None, total=8))) == [
        "images stores only 8 chunks for 10 committed rows"
    ]
    assert check_chunks(ChunkFacts("images", 10, 1, 1, None, total=10)) == []
    assert texts_of(check_chunks(ChunkFacts("images", 10, 1, 2, None, total=12))) == [
        "images stores only 12 chunks for 10 committed rows"  # two chunks per row
    ]


MAPPINGS = [
    VirtualMapping("images", "a.h5", "images", (0, 2)),
    VirtualMapping("images", "b.h5", "images", (3, 5)),
    VirtualMapping("image_names", "a.h5", "image_names", (0, 2)),
    VirtualMapping("image_names", "b.h5", "image_names", (3, 5)),
]


def test_virtual_sources_usable() -> None:
    """A merged store whose files all serve their datasets gets only a note."""
    trouble = {"a.h5": None, "b.h5": None}
    assert check_virtual_sources(MAPPINGS, trouble, True) == [Note("images is a merged (virtual) dataset over 2 file(s)")]
    assert dead_name_rows(MAPPINGS, trouble) == []
    assert check_virtual_sources([], {}, False) == []


def test_unusable_shard_file_is_one_problem() -> None:
    """A missing file is one problem naming the rows of the first dataset it feeds; its name rows are dead."""
    trouble = {"a.h5": None, "b.h5": "is missing (looked for /x/b.h5)"}
    assert check_virtual_sources(MAPPINGS, trouble, True)[1:] == [
        Problem("images rows 3-5 (and rows of image_names) come from b.h5, which is missing (looked for /x/b.h5): "
                "they read as zeros", UNUSABLE_SHARDS)
    ]  # fmt: skip
    assert dead_name_rows(MAPPINGS, trouble) == [(3, 6)]


def test_shard_rows_that_cannot_be_read_are_some() -> None:
    """A mapping whose row range cannot be read is counted as "some" rows, and marks no name row dead."""
    mappings = [VirtualMapping("checksums", "c.h5", "checksums", None), VirtualMapping("image_names", "c.h5", "x", None)]
    trouble = {"c.h5": "has no checksums"}
    assert texts_of(check_virtual_sources(mappings, trouble, False)) == [
        "checksums rows some (and rows of image_names) come from c.h5, which has no checksums: they read as zeros"
    ]
    assert dead_name_rows(mappings, trouble) == []


# ========================================================================================= journal, skipped


def test_journal_shorter_than_committed() -> None:
    """Each journaled column holding fewer rows than committed is named; columns without a journal are skipped."""
    committed = {"image_names": 10, "skipped_names": 2, "skipped_reasons": 2}
    assert texts_of(check_journal(committed, {"image_names": 9, "skipped_names": 2})) == [
        "the journal of image_names has 9 rows but 10 are committed"
    ]
    assert check_journal(committed, {"image_names": 12, "skipped_names": 2, "skipped_reasons": 2}) == []


def test_skipped_lists_against_skipped_count() -> None:
    """skipped_count larger than a list is a problem per list; without it the lists must pair up."""
    rows = {"skipped_names": 2, "skipped_reasons": 1}
    assert texts_of(check_skipped(rows, np.int64(3))) == [
        "skipped_names has 2 rows but skipped_count is 3",
        "skipped_reasons has 1 rows but skipped_count is 3",
    ]
    assert texts_of(check_skipped(rows, 1)) == []
    assert texts_of(check_skipped(rows, None)) == ["skipped_names has 2 rows but skipped_reasons has 1"]
    assert check_skipped({"skipped_names": 2, "skipped_reasons": 2}, None) == []
    assert check_skipped({}, 0) == []


def test_one_skipped_list_without_the_other() -> None:
    """Either skipped list alone is a problem naming the missing one."""
    assert texts_of(check_skipped({"skipped_names": 1}, 1)) == ["skipped_names exists without skipped_reasons"]
    assert texts_of(check_skipped({"skipped_reasons": 1}, 1)) == ["skipped_reasons exists without skipped_names"]


def test_skipped_count_falls_back_on_the_names() -> None:
    """Without the attribute the skipped names' rows count; an unreadable attribute counts none."""
    assert skipped_count(None, 4) == 4
    assert skipped_count(np.int64(2), 4) == 2
    assert skipped_count("x", 4) == 0


# =================================================================================================== names


def test_names_disagreeing_with_their_journal() -> None:
    """Each row whose name differs from its journal copy is named with both texts and its row."""
    found = check_journal_copy(8, ["a.png", "b.png", "c.png"], ["a.png", "B.png", "c.png"])
    assert texts_of(found) == ["image_names row 9 is 'b.png' but its journal copy says 'B.png'"]
    assert texts_of(check_journal_copy(0, ["a", "b"], ["A", "b"])) == ["image_names row 0 is 'a' but its journal copy says 'A'"]
    assert check_journal_copy(0, ["a", "b"], ["a", "b"]) == []


def test_duplicate_candidates_and_groups() -> None:
    """Rows sharing a hash are candidates (dead rows left out); the names then confirm the duplicates."""
    names = ["a", "b", "a", "c", "b", "a"]
    hashes = np.array([hash(s) for s in names], np.int64)
    assert duplicate_candidates(hashes) == [0, 1, 2, 4, 5]
    assert duplicate_candidates(hashes, [(4, 6)]) == [0, 1, 2]
    assert duplicate_candidates(np.array([7], np.int64)) == []
    assert check_duplicates((i, names[i]) for i in duplicate_candidates(hashes)) == [
        Problem("name 'a' appears 3 times (rows 0, 2, 5)", DUPLICATED_NAMES),
        Problem("name 'b' appears 2 times (rows 1, 4)", DUPLICATED_NAMES),
    ]


def test_hash_collisions_are_not_duplicates() -> None:
    """Two different names that share a hash are not reported; a long group shows five rows."""
    assert check_duplicates([(0, "x"), (1, "y")]) == []
    assert texts_of(check_duplicates((i, "z") for i in range(7))) == ["name 'z' appears 7 times (rows 0, 1, 2, 3, 4, ...)"]


# =============================================================================================== checksums


def test_changed_rows_and_their_runs() -> None:
    """Rows whose checksums differ are found (offset by the batch, dead rows left out) and listed as runs."""
    stored = np.array([1, 2, 3, 4, 5, 6], np.uint32)
    computed = np.array([1, 0, 0, 4, 0, 0], np.uint32)
    assert changed_rows(10, computed, stored) == [11, 12, 14, 15]
    assert changed_rows(10, computed, stored, [(15, 16)]) == [11, 12, 14]
    assert check_changed_rows([11, 12, 14]) == [
        Problem("rows 11-12 changed since written: the stored bytes do not match the checksum", CHANGED_RUNS),
        Problem("row 14 changed since written: the stored bytes do not match the checksum", CHANGED_RUNS),
    ]
    assert check_changed_rows([]) == []


def test_checksums_required_from_format_2() -> None:
    """A format-2 store with rows must carry checksums; format 1 and an empty store need not."""
    assert texts_of(check_checksums_present(False, 2, 6)) == [
        "checksums is missing: the 6 rows cannot be checked for changed bytes"
    ]
    assert check_checksums_present(False, 1, 6) == check_checksums_present(False, 2, 0) == []
    assert check_checksums_present(True, 2, 6) == []


# ================================================================================================= sources


def test_source_files() -> None:
    """Missing, not-a-file, unreadable and changed source files are each named; a matching one passes."""
    folder = Path("/photos")
    digest = bytes(range(32))
    assert check_source_file(folder, SourceFile("a.png", "missing"), None) == [
        Problem("a.png is missing from /photos", MISSING_SOURCES)
    ]
    assert texts_of(check_source_file(folder, SourceFile("d", "not a file"), digest)) == ["d is not a file in /photos"]
    assert texts_of(check_source_file(folder, SourceFile("u.png", "unreadable", error="Permission denied"), digest)) == [
        "u.png cannot be read from /photos: Permission denied"
    ]
    changed = SourceFile("c.png", "found", bytes(32))
    assert texts_of(check_source_file(folder, changed, digest)) == ["c.png changed since ingest (sha256 differs)"]
    assert check_source_file(folder, SourceFile("ok.png", "found", digest), digest) == []
    assert check_source_file(folder, SourceFile("ok.png", "found"), None) == []  # no digest recorded: presence only
    assert texts_of(check_digests_recorded(False)) == [
        "the store records no SHA-256 digests: --sources checked only that each file exists"
    ]
    assert check_digests_recorded(True) == []


# ======================================================================================= reading and listing


class Unreadable:
    """A stand-in dataset whose every read fails, counting the reads tried."""

    def __init__(self) -> None:
        self.reads = 0

    def __getitem__(self, key: Any) -> Any:
        self.reads += 1
        raise OSError("damaged")


def test_failing_rows_stop_after_max_failed_reads() -> None:
    """A batch that fails is tried row by row; after MAX_FAILED_READS failures the rest is one line, and the same
    batch is not read again by a later check."""
    report = VerifyReport(STORE)
    rows = V._Rows(V._Listing(report))
    ds = Unreadable()
    assert rows.read("labels", ds, 0, 10) is None  # type: ignore[arg-type]
    assert report.problems == [
        *(f"labels row {i} cannot be read: damaged" for i in range(MAX_FAILED_READS)),
        f"labels rows {MAX_FAILED_READS}-9 were not tried: the rows before them cannot be read",
    ]
    assert ds.reads == 1 + MAX_FAILED_READS
    assert rows.read("labels", ds, 0, 10) is None  # type: ignore[arg-type]
    assert ds.reads == 1 + MAX_FAILED_READS and len(report.problems) == MAX_FAILED_READS + 1


def test_repeated_problems_are_listed_then_counted() -> None:
    """Past MAX_LISTED problems of a kind, one line counts the rest; notes and unkinded problems are never capped."""
    report = VerifyReport(STORE)
    listing = V._Listing(report)
    listing.add(Problem(f"p{i}", "kind things") for i in range(MAX_LISTED + 3))
    listing.add([Problem("other"), Note("n")])
    listing.close()
    assert report.problems == [*(f"p{i}" for i in range(MAX_LISTED)), "other", "... and 3 more kind things"]
    assert report.notes == ["n"] and report.problem_count == MAX_LISTED + 4


# ============================================================================= end to end, on ingested stores


@pytest.fixture
def ingested(tmp_path: Path) -> tuple[Path, Path]:
    """A sound store made by imgstore.ingest: 6 PNGs in two class folders (labels, digests) and one broken file."""
    src = tmp_path / "photos"
    for i in range(6):
        write(src / f"c{i % 2}" / f"{i}.png", encode(pattern(24, 16, seed=i), "PNG"))
    write(src / "c0" / "broken.png", b"not a png")
    out = tmp_path / "s.h5"
    ingest(src, out, IngestOptions(decode=DecodeOptions(size=(12, 8)), workers=0, labels="folder"))
    report = verify_store(out, sources=src)
    assert report.ok and report.notes == [] and report.checked == 6
    return out, src


def damage(path: Path, edit: Any) -> Path:
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def replace(name: str, data: np.ndarray) -> Any:
    def edit(f: h5py.File) -> None:
        del f[name]
        f[name] = data

    return edit


ALL_ROWS_CHANGED = "rows 0-5 changed since written: the stored bytes do not match the checksum"


@pytest.mark.parametrize(
    ("edit", "problems", "checked"),
    [
        (lambda f: f.attrs.__setitem__("count", "many"), ["count attribute 'many' is not a number"], 6),
        (lambda f: f.attrs.__setitem__("count", -1), ["count attribute is negative (-1)"], 0),
        (lambda f: f.attrs.__setitem__("count", 8), [
            *(f"{name} has 6 rows but count is 8" for name in ("images", "image_names", "labels", "sha256", "checksums")),
            "the journal of image_names has 6 rows but 8 are committed",
        ], 6),
        (lambda f: f.attrs.__setitem__("skipped_count", 3), [
            "the journal of skipped_names has 1 rows but 3 are committed",
            "the journal of skipped_reasons has 1 rows but 3 are committed",
            "skipped_names has 1 rows but skipped_count is 3",
            "skipped_reasons has 1 rows but skipped_count is 3",
        ], 6),
    ],
    ids=["count-not-a-number", "count-negative", "count-too-large", "skipped-count-too-large"],
)  # fmt: skip
def test_damaged_counts_end_to_end(ingested: tuple[Path, Path], edit: Any, problems: list[str], checked: int) -> None:
    """A count attribute that is not a number, negative or too large, or a skipped_count too large, is named."""
    out, _ = ingested
    report = verify_store(damage(out, edit))
    assert report.problems == problems and report.checked == checked


@pytest.mark.parametrize(
    ("edit", "problems", "checked"),
    [
        (replace("images", np.zeros((6, 8, 12, 3), np.float32)),
         ["images must be uint8 (N, H, W, C), found float32 (6, 8, 12, 3)"], 0),
        (replace("images", np.zeros((6, 8, 12), np.uint8)), ["images must be uint8 (N, H, W, C), found uint8 (6, 8, 12)"], 0),
        (replace("image_names", np.arange(6)), ["image_names must be 1-D strings, found int64 (6,)"], 6),
        # the checksums cover the labels and digests: left out, every row's checksum disagrees
        (replace("labels", np.zeros(6, np.float64)), ["labels must be 1-D integers, found float64 (6,)", ALL_ROWS_CHANGED], 6),
        (replace("labels", np.zeros((6, 2), np.int64)), ["labels must be 1-D integers, found int64 (6, 2)", ALL_ROWS_CHANGED], 6),
        (replace("sha256", np.zeros((6, 16), np.uint8)), ["sha256 must be uint8 (N, 32), found uint8 (6, 16)", ALL_ROWS_CHANGED], 6),
        (replace("checksums", np.zeros(6, np.uint64)), [
            "checksums must be 1-D uint32, found uint64 (6,)",
            "checksums is missing: the 6 rows cannot be checked for changed bytes",
        ], 6),
    ],
    ids=["images-float", "images-3d", "names-int", "labels-float", "labels-2d", "sha256-short", "checksums-uint64"],
)  # fmt: skip
def test_wrong_dtypes_and_shapes_end_to_end(
    ingested: tuple[Path, Path], edit: Any, problems: list[str], checked: int
) -> None:
    """A per-row dataset of the wrong dtype or shape is named and not read; the images only when usable."""
    out, _ = ingested
    report = verify_store(damage(out, edit))
    assert report.problems == problems and report.checked == checked


@pytest.mark.parametrize(
    ("name", "problems", "checked"),
    [
        ("images", ["count is 6 but the store has no images dataset"], 0),
        ("image_names", ["image_names is missing (images has 6 rows)"], 6),
        ("checksums", ["checksums is missing: the 6 rows cannot be checked for changed bytes"], 6),
        ("skipped_reasons", ["skipped_names exists without skipped_reasons"], 6),
    ],
)
def test_missing_datasets_end_to_end(ingested: tuple[Path, Path], name: str, problems: list[str], checked: int) -> None:
    """A deleted dataset is named once, and what can still be checked is."""
    out, _ = ingested
    report = verify_store(damage(out, lambda f: f.__delitem__(name)))
    assert report.problems == problems and report.checked == checked


def test_journal_disagreeing_with_names_end_to_end(ingested: tuple[Path, Path]) -> None:
    """A complete store whose journal copy of a name differs is one problem; the rows themselves are intact."""
    out, _ = ingested
    names = imgstore.open(out).names
    start = len("".join(names[:2]).encode())  # where row 2's name begins in the journal's bytes

    def edit(f: h5py.File) -> None:
        f["_journal/image_names.bytes"][start] = ord("x")

    report = verify_store(damage(out, edit))
    assert report.problems == [f"image_names row 2 is {names[2]!r} but its journal copy says {'x' + names[2][1:]!r}"]
    assert report.changed_rows == []


def test_incomplete_store_is_judged_by_its_journal(ingested: tuple[Path, Path]) -> None:
    """In an unfinished store a name dataset that disagrees with its journal is not judged: readers use the journal."""
    out, _ = ingested

    def edit(f: h5py.File) -> None:
        f.attrs["complete"] = False
        f["image_names"][2] = "other.png"

    report = verify_store(damage(out, edit))
    assert report.ok and report.changed_rows == [] and report.checked == 6
    assert report.notes == ["ingest did not finish (complete is false); imgstore ingest --resume continues it"]
    assert imgstore.open(out).names[2] != "other.png"


def test_images_are_read_in_batches_of_batch_bytes(ingested: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Images are read BATCH_BYTES at a time (progress advances once per batch); source files one at a time."""
    out, src = ingested
    monkeypatch.setattr(V, "BATCH_BYTES", 4 * 8 * 12 * 3)  # four rows
    totals: list[int | None] = []
    seen: list[int] = []
    assert verify_store(out, progress=CallbackProgress(seen.append, totals.append)).ok
    assert totals == [6] and seen == [4, 2]
    seen.clear()
    assert verify_store(out, sources=src, progress=CallbackProgress(seen.append, totals.append)).ok
    assert totals == [6, 12] and seen == [4, 2, 1, 1, 1, 1, 1, 1]


def test_inf_attributes_are_problems_not_tracebacks(ingested: tuple[Path, Path]) -> None:
    """An infinite count or format (float attributes int() cannot take) is reported, not raised."""
    out, _ = ingested
    inf = np.float64(np.inf)
    assert verify_store(damage(out, lambda f: f.attrs.__setitem__("count", inf))).problems == [
        f"count attribute {inf!r} is not a number"
    ]
    assert verify_store(damage(out, lambda f: f.attrs.__setitem__("imgstore_format", inf))).problems == [
        f"imgstore_format attribute {inf!r} is not a version number"
    ]


def test_journal_shorter_than_an_incomplete_stores_rows_end_to_end(ingested: tuple[Path, Path]) -> None:
    """In an unfinished store the names come from the journal: rows past its end are a problem and are not read."""
    out, _ = ingested

    def edit(f: h5py.File) -> None:
        f.attrs["complete"] = False
        f["_journal/image_names.ends"].resize(4, axis=0)

    report = verify_store(damage(out, edit))
    assert report.problems == ["the journal of image_names has 4 rows but 6 are committed"]
    assert report.checked == 4


def _tear_string_heap(path: Path) -> None:
    """Overwrite the signature of the last global heap collection: the stored texts of the rows (names, skipped
    lists) can no longer be read, as after a crash in the middle of writing them."""
    data = bytearray(path.read_bytes())
    at = data.rfind(b"GCOL")
    assert at > 0
    data[at : at + 4] = b"XXXX"
    path.write_bytes(bytes(data))


def test_torn_string_heap_end_to_end(ingested: tuple[Path, Path]) -> None:
    """Unreadable texts: a complete store names the rows (MAX_FAILED_READS, then the rest as one range); an
    unfinished store is judged by its journal, which readers use, so its string datasets are not read."""
    out, _ = ingested
    torn = out.with_name("torn.h5")
    torn.write_bytes(out.read_bytes())
    damage(torn, lambda f: f.attrs.__setitem__("complete", False))
    _tear_string_heap(out)
    _tear_string_heap(torn)
    report = verify_store(out)
    assert [p.split(":")[0] for p in report.problems] == [
        *(f"image_names row {i} cannot be read" for i in range(MAX_FAILED_READS)),
        f"image_names rows {MAX_FAILED_READS}-5 were not tried",
        "skipped_names row 0 cannot be read",
        "skipped_reasons row 0 cannot be read",
    ]
    report = verify_store(torn)
    assert report.ok and report.checked == 6
