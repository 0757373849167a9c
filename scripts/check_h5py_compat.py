"""Prove that every kind of store imgstore writes is read whole by older HDF5 and h5py.

The promise (README, "Reading it without imgstore"): a store, whatever made it (a plain ingest, a compressed one,
the shard files of ``--shard K/N``, a virtual or ``--copy`` merge, a list file with meta columns, flat stores
(format 4: ``--encode jpeg --resize-mode shorter``, ``--encode png``, a merge of flat shards), an ingest killed
midway, an ``ImageIndexer`` that added nothing), reads whole with HDF5 1.10 (``h5dump``), h5py 3.8 (HDF5 1.12), h5py 3.11 (HDF5 1.14) and the
newest h5py. A file written with the newest format features breaks that without the writer noticing: HDF5 1.12
and 1.14 refuse the bool attributes HDF5 2.0 writes under ``libver="latest"`` ("bad version number for datatype
message").

How it is proved:

1. Two venvs in the checkout, ``.venv-h5py-3.8`` and ``.venv-h5py-3.11``, hold those h5py releases with
   ``numpy<2``; they are made once and reused while they hold the right versions.
2. The project venv's ``imgstore`` CLI and library write every kind of store into a temporary folder, from
   generated sample photos.
3. One small reader (``READER`` below: it imports only h5py, numpy, json, hashlib and sys) opens each store the
   way plain h5py users do (in SWMR-read mode when a killed writer left the file flagged open), reads every
   attribute and every dataset whole (``_journal/`` and virtual datasets included) and prints shapes, dtypes,
   attribute values and SHA-256 digests as JSON. Run in the project venv (newest h5py) it gives the expected
   content; run in each old venv its output must be the same. Every difference and every error is reported.
4. ``h5dump`` (HDF5 1.10, when on PATH) dumps every store's attributes alone (``-A``), then the whole store,
   from the store's folder, and must exit 0 without an error message. HDF5 1.10 cannot open a store still flagged
   open for write (h5dump has no SWMR-read mode), so a killed store is dumped from a copy cleared by
   ``h5clear -s``, HDF5's tool for crashed files, as ``imgstore ingest --resume`` clears the store itself.
5. The project itself is installed into ``.venv-h5py-3.8`` and part of its test suite (``FLOOR_TESTS``) runs
   there: imgstore works on the oldest h5py its requirements admit (``h5py>=3.8``). It takes about half a minute;
   ``--skip-imgstore-floor`` leaves it out.

Prints a table store x reader and exits 1 on any failure, or when nothing could be checked; 0 otherwise.

Run from the checkout root, after ``scripts/test.sh`` made ``.venv``::

    .venv/bin/python scripts/check_h5py_compat.py [--skip-imgstore-floor]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PYTHON = ROOT / ".venv" / "bin" / "python"
IMGSTORE = ROOT / ".venv" / "bin" / "imgstore"

#: Old-reader venvs (folders in the checkout) -> the h5py release each holds, always with NUMPY_PIN.
OLD_H5PY = {".venv-h5py-3.8": "3.8.0", ".venv-h5py-3.11": "3.11.0"}
NUMPY_PIN = "numpy<2"
PIP = ("-m", "pip", "install", "--quiet", "--disable-pip-version-check")

#: The imgstore floor check: the venv holding the oldest h5py imgstore admits, and the tests run there.
FLOOR_VENV = ".venv-h5py-3.8"
FLOOR_TESTS = ("tests/test_writer.py", "tests/test_reader.py", "tests/test_continue.py", "tests/test_crash.py",
               "tests/test_encoded.py")
FLOOR_EXTRAS = ("pytest", "hypothesis")

#: Every store is this small: a few seconds of ingesting in all.
SAMPLE_ARGS = ("--per-class", "24")
INGEST_ARGS = ("--size", "32")
SHARDS = 3

#: Characters of the first problem shown in a cell of the summary table (all problems are listed above it).
TABLE_REASON = 60

#: Seconds to wait, after the killed ingest's output appears, before the SIGKILL; tried in turn until one stops
#: the ingest midway (file present, rows committed, not complete). A kill in the first milliseconds can leave a
#: file that is not yet a store (no SWMR writing begun, nothing flushed): that is retried, not checked.
KILL_DELAYS = (0.05, 0.02, 0.1, 0.0, 0.2, 0.01, 0.3)

#: Run by the project venv's python: writes the store named in argv[1] with ImageIndexer, adding nothing.
EMPTY_STORE = textwrap.dedent("""
    import sys
    from imgstore.store.writer import ImageIndexer
    with ImageIndexer(sys.argv[1], size=(8, 8)):
        pass
""")

#: The reader run by every h5py (written to the temporary folder as a module): one store's digest as JSON.
READER = '''
"""Print, as JSON, every attribute, group and dataset (read whole) of the HDF5 file named in argv[1]."""
import hashlib
import json
import sys

import h5py
import numpy as np


def open_file(path):
    """Open read-only; in SWMR-read mode when the file is still flagged open by a writer that died."""
    try:
        return h5py.File(path, "r"), "plain"
    except OSError as plain:
        try:
            return h5py.File(path, "r", libver="latest", swmr=True), "swmr"
        except OSError as swmr:
            raise OSError(f"{plain}; with swmr=True: {swmr}") from None


def error(exc):
    """An error as it appears in the digest."""
    return {"error": f"{type(exc).__name__}: {exc}"}


def text(x):
    """A string element (h5py gives str or bytes) as str."""
    return x.decode("utf-8", "backslashreplace") if isinstance(x, bytes) else x


def value(v):
    """An attribute value: its type (numpy dtype string, or str/bytes), shape and values."""
    if isinstance(v, (str, bytes)):
        return {"type": type(v).__name__, "value": text(v)}
    a = np.asarray(v)
    if a.dtype.kind == "O":
        return {"type": "object", "shape": list(a.shape), "value": [text(x) for x in a.ravel().tolist()]}
    return {"type": a.dtype.str, "shape": list(a.shape), "value": a.tolist()}


def attributes(obj):
    """Every attribute of obj by name, each value or its error."""
    out = {}
    for name in obj.attrs:
        try:
            out[name] = value(obj.attrs[name])
        except Exception as exc:
            out[name] = error(exc)
    return out


def dataset(ds):
    """Shape, dtype, virtual sources and the SHA-256 of the whole content (strings: UTF-8, NUL-joined)."""
    out = {"shape": list(ds.shape), "virtual": ds.is_virtual}
    if ds.is_virtual:
        out["sources"] = sorted({m.file_name for m in ds.virtual_sources()})
    string = h5py.check_string_dtype(ds.dtype)
    data = ds[()]
    if string is not None:
        out["dtype"] = f"str ({string.encoding}, length {string.length})"
        raw = b"\\0".join(x.encode("utf-8") if isinstance(x, str) else x for x in np.asarray(data).ravel().tolist())
    else:
        out["dtype"] = ds.dtype.str
        raw = np.ascontiguousarray(data).tobytes()
    out["sha256"] = hashlib.sha256(raw).hexdigest()
    return out


def describe(obj):
    """A group or dataset: kind, attributes and, for a dataset, its content digest; or the error met."""
    out = {"kind": "dataset" if isinstance(obj, h5py.Dataset) else "group"}
    try:
        out["attrs"] = attributes(obj)
        if isinstance(obj, h5py.Dataset):
            out.update(dataset(obj))
    except Exception as exc:
        out.update(error(exc))
    return out


def digest(path):
    """How the file opened and every object in it, by path ("/" for the root group)."""
    try:
        f, mode = open_file(path)
    except Exception as exc:
        return error(exc)
    with f:
        objects = {"/": describe(f)}
        try:
            f.visititems(lambda name, obj: objects.__setitem__(name, describe(obj)))
        except Exception as exc:
            objects["(walk)"] = error(exc)
    return {"open": mode, "objects": objects}


print(json.dumps(digest(sys.argv[1]), default=repr))
'''


class SetupError(Exception):
    """A venv or tool the check needs could not be set up."""


@dataclass
class Store:
    """One store to check: its label in the table, its path, and what each reader found wrong with it."""

    label: str
    path: Path
    problems: dict[str, list[str]] = field(default_factory=dict)


def run(cmd: list[str | os.PathLike[str]], cwd: Path = ROOT, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with its output captured as text (undecodable bytes replaced)."""
    args = [os.fspath(c) for c in cmd]
    return subprocess.run(args, check=False, cwd=cwd, capture_output=True, text=True, errors="replace", timeout=timeout)


def tail(text: str, lines: int = 3) -> str:
    """The last non-empty ``lines`` lines of ``text``, joined by " | "."""
    return " | ".join([line.strip() for line in text.splitlines() if line.strip()][-lines:])


def venv_versions(python: Path) -> tuple[str, str, str] | None:
    """(h5py, numpy, HDF5) versions importable by ``python``, or None when it cannot import them."""
    if not python.exists():
        return None
    proc = run(
        [python, "-c", "import h5py, numpy; print(h5py.__version__, numpy.__version__, h5py.version.hdf5_version)"]
    )
    parts = proc.stdout.split()
    return (parts[0], parts[1], parts[2]) if proc.returncode == 0 and len(parts) == 3 else None


def ensure_reader_venv(folder: str, h5py_version: str) -> tuple[Path, str]:
    """Make ``ROOT/folder`` a venv with ``h5py==h5py_version`` and numpy<2, reusing it when it already is one.

    Returns its python and the HDF5 version its h5py runs on; raises SetupError when pip cannot make it right.
    """
    python = ROOT / folder / "bin" / "python"

    def correct() -> tuple[str, str, str] | None:
        found = venv_versions(python)
        return found if found and found[0] == h5py_version and int(found[1].split(".")[0]) < 2 else None

    found = correct()
    how = "reused"
    if found is None:
        how = "created"
        if not python.exists():
            proc = run([sys.executable, "-m", "venv", "--clear", ROOT / folder])
            if proc.returncode != 0:
                raise SetupError(f"cannot create {folder}: {tail(proc.stderr)}")
        proc = run([python, *PIP, f"h5py=={h5py_version}", NUMPY_PIN])
        found = correct()
        if proc.returncode != 0 or found is None:
            raise SetupError(f"cannot install h5py=={h5py_version} into {folder}: {tail(proc.stderr)}")
    print(f"{folder}: h5py {found[0]}, numpy {found[1]}, HDF5 {found[2]} ({how})")
    return python, found[2]


def imgstore_cli(*args: str | os.PathLike[str], cwd: Path) -> str | None:
    """Run the project's ``imgstore`` with ``args``; None on success, else what went wrong."""
    proc = run([IMGSTORE, *args], cwd=cwd)
    if proc.returncode == 0:
        return None
    return f"imgstore {' '.join(map(os.fspath, args))}: exit {proc.returncode}: {tail(proc.stderr or proc.stdout)}"


def stopped_midway(path: Path) -> bool:
    """True when ``path`` is a store with committed rows that is not complete (its ingest was stopped)."""
    try:
        f = h5py.File(path, "r", libver="latest", swmr=True)
    except (OSError, ValueError):
        return False
    with f:
        return not bool(f.attrs.get("complete", True)) and int(f.attrs.get("count", 0)) > 0


def make_killed_store(photos: Path, out: Path) -> str | None:
    """SIGKILL an ``imgstore ingest`` midway, trying the ``KILL_DELAYS`` in turn; None on success, else why not.

    The whole process group of the ingest (the CLI and its decoder processes) is killed at once, as a job is.
    """
    for delay in KILL_DELAYS:
        out.unlink(missing_ok=True)
        cmd = [IMGSTORE, "ingest", photos, out, *INGEST_ARGS, "--buffer-size", "8"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(delay)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if out.exists() and stopped_midway(out):
            return None
    return f"no ingest was stopped midway by SIGKILL after any of the delays {KILL_DELAYS} s"


def write_photo_list(photos: Path, out: Path) -> Path:
    """A CSV list of the sample photos, newest name first (lists keep their order), with a label column and text,
    float (some empty) and integer meta columns: a format-3 store with ``meta/`` datasets and their journals."""
    files = sorted((p for p in photos.rglob("*") if p.is_file()), reverse=True)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        rows = csv.writer(fh)
        rows.writerow(["path", "label", "caption", "score", "n"])
        for i, p in enumerate(files):
            rel = p.relative_to(photos).as_posix()
            if not rel.isprintable() or rel != rel.encode("utf-8", "replace").decode("utf-8"):
                continue  # a name that is not UTF-8 text cannot be written in a UTF-8 list
            rows.writerow([rel, rel.split("/")[0], f"photo {i}, «{p.stem}»", "" if i % 4 == 0 else i / 3, i])
    return out


def make_stores(work: Path) -> tuple[list[Store], list[str]]:
    """Write every kind of store under ``work/stores``; returns the stores made and what could not be made."""
    photos, stores = work / "photos", work / "stores"
    parts, copy_parts = stores / "parts", stores / "copy-parts"
    for folder in (parts, copy_parts):
        folder.mkdir(parents=True)
    proc = run([PROJECT_PYTHON, "-m", "imgstore.samples", photos, *SAMPLE_ARGS])
    if proc.returncode != 0:
        return [], [f"sample photos: {tail(proc.stderr)}"]

    made: list[Store] = []
    failed: list[str] = []

    def keep(label: str, path: Path, problem: str | None) -> None:
        if problem is None and path.is_file():
            made.append(Store(label, path))
        else:
            failed.append(f"{label}: {problem or f'{path} was not written'}")

    def ingest(out: Path, *options: str) -> str | None:
        return imgstore_cli("ingest", photos, out, *INGEST_ARGS, *options, cwd=stores)

    keep("plain --labels folder", stores / "plain.h5", ingest(stores / "plain.h5", "--labels", "folder"))
    keep("--compression gzip", stores / "gzip.h5", ingest(stores / "gzip.h5", "--compression", "gzip"))
    shard_files = [parts / f"shard-{k}-of-{SHARDS}.h5" for k in range(1, SHARDS + 1)]
    for k, shard in enumerate(shard_files, 1):
        keep(f"shard {k}/{SHARDS}", shard, ingest(shard, "--labels", "folder", "--shard", f"{k}/{SHARDS}"))
    if all(s.is_file() for s in shard_files):
        keep("merge (virtual)", stores / "merged.h5", imgstore_cli("merge", "merged.h5", *shard_files, cwd=stores))
        # From copies of the shards, so that the virtual store keeps its sources whatever --copy does with them.
        copies = [Path(shutil.copy2(s, copy_parts / s.name)) for s in shard_files]
        merged_copy = imgstore_cli("merge", "merged-copy.h5", *copies, "--copy", cwd=stores)
        keep("merge --copy", stores / "merged-copy.h5", merged_copy)
    # Format 4 (flat rows): encoded rows of their own shapes, encoded rows of one shape, and a virtual merge of flat
    # shards (image_data mapped from the shards, image_ends written with offsets).
    keep("--encode jpeg, shorter (format 4)", stores / "jpeg-shorter.h5",
         ingest(stores / "jpeg-shorter.h5", "--encode", "jpeg:90", "--resize-mode", "shorter"))  # fmt: skip
    keep("--encode png (format 4)", stores / "png.h5", ingest(stores / "png.h5", "--encode", "png"))
    flat_shards = [parts / f"flat-{k}-of-2.h5" for k in (1, 2)]
    for k, shard in enumerate(flat_shards, 1):
        keep(f"flat shard {k}/2", shard, ingest(shard, "--encode", "webp", "--resize-mode", "longer", "--shard", f"{k}/2"))
    if all(s.is_file() for s in flat_shards):
        keep("merge of flat shards", stores / "merged-flat.h5", imgstore_cli("merge", "merged-flat.h5", *flat_shards, cwd=stores))
    listed = write_photo_list(photos, work / "photos.csv")
    keep("list file, meta columns", stores / "listed.h5", imgstore_cli("ingest", listed, stores / "listed.h5",
                                                                       *INGEST_ARGS, cwd=stores))  # fmt: skip
    keep("ingest killed (SIGKILL)", stores / "killed.h5", make_killed_store(photos, stores / "killed.h5"))
    empty = stores / "empty.h5"
    proc = run([PROJECT_PYTHON, "-c", EMPTY_STORE, empty])
    keep("ImageIndexer, no images", empty, None if proc.returncode == 0 else tail(proc.stderr))
    return made, failed


def read_store(python: Path, reader: Path, store: Store, cwd: Path) -> dict:
    """The digest the reader module run by ``python`` prints for ``store``, or {"error": what went wrong}.

    One process per store: a reader that crashes (old HDF5 can segfault on what it cannot parse) costs one store.
    """
    proc = run([python, "-I", reader, store.path], cwd=cwd)
    if proc.returncode < 0:
        return {"error": f"reader crashed ({signal.Signals(-proc.returncode).name}) {tail(proc.stderr)}".strip()}
    if proc.returncode != 0:
        return {"error": f"reader exited {proc.returncode}: {tail(proc.stderr)}"}
    try:
        return json.loads(proc.stdout)
    except ValueError as exc:
        return {"error": f"reader output is not JSON ({exc}): {tail(proc.stdout)}"}


def short(value: object, width: int = 70) -> str:
    """``value`` as compact JSON, cut to ``width`` characters."""
    out = json.dumps(value)
    return out if len(out) <= width else out[: width - 3] + "..."


def errors_in(digest: dict) -> list[str]:
    """Every error the reader met in one store's digest, as "object: error" (the store itself: "open")."""
    if "error" in digest:
        return [f"open: {digest['error']}"]
    found = []
    for name, obj in digest["objects"].items():
        if "error" in obj:
            found.append(f"{name}: {obj['error']}")
        found += [f"{name} attribute {a}: {v['error']}" for a, v in obj.get("attrs", {}).items() if "error" in v]
    return found


def differences(expected: dict, actual: dict) -> list[str]:
    """What differs between the expected digest of a store and one reader's, one line per difference."""
    if "error" in actual or "error" in expected:
        return errors_in(actual) if "error" in actual else ["the newest h5py could not open it"]
    found = []
    if actual["open"] != expected["open"]:
        found.append(f"opened in {actual['open']} mode, the newest h5py in {expected['open']} mode")
    exp_objects, act_objects = expected["objects"], actual["objects"]
    for name in sorted(exp_objects.keys() | act_objects.keys()):
        exp, act = exp_objects.get(name), act_objects.get(name)
        if act is not None and "error" in act:
            found.append(f"{name}: {act['error']}")
            continue
        if exp is None or act is None:
            found.append(f"{name}: {'not expected' if exp is None else 'missing'}")
            continue
        for key in sorted((exp.keys() | act.keys()) - {"attrs", "error"}):
            if exp.get(key) != act.get(key):
                found.append(f"{name}: {key} {short(act.get(key))}, expected {short(exp.get(key))}")
        exp_attrs, act_attrs = exp.get("attrs", {}), act.get("attrs", {})
        for attr in sorted(exp_attrs.keys() | act_attrs.keys()):
            e, a = exp_attrs.get(attr), act_attrs.get(attr)
            if e == a:
                continue
            what = "missing" if a is None else a["error"] if "error" in a else f"{short(a)}, expected {short(e)}"
            found.append(f"{name} attribute {attr}: {what}")
    return found


def check_newest(store: Store, digest: dict) -> list[str]:
    """What is wrong with the expected content itself: errors, or virtual sources missing next to the store."""
    found = errors_in(digest)
    for name, obj in digest.get("objects", {}).items():
        missing = [src for src in obj.get("sources", []) if not (store.path.parent / src).is_file()]
        found += [f"{name}: virtual source {src} not found next to the store" for src in missing]
    return found


def h5dump_problems(store: Store, flagged: bool) -> list[str]:
    """Dump the store with h5dump from its own folder (virtual sources are relative): attributes only, then whole.

    HDF5 1.10 opens a file still flagged open for write only in SWMR-read mode, which h5dump lacks; such a store is
    dumped from a copy whose flags HDF5's own ``h5clear -s`` cleared (what ``--resume`` does to the store).
    """
    target = store.path
    if flagged:
        if shutil.which("h5clear") is None:
            return ["flagged open for write, and h5clear (which h5dump 1.10 needs for it) is not installed"]
        target = Path(shutil.copy2(store.path, store.path.with_name(f"{store.path.stem}.h5clear.h5")))
        proc = run(["h5clear", "-s", target.name], cwd=target.parent)
        if proc.returncode != 0:
            return [f"h5clear -s {target.name}: exit {proc.returncode}: {tail(proc.stderr, 2)}"]
    found = []
    for name, args in (("-A", ["-A"]), ("full dump", [])):
        proc = subprocess.run(
            ["h5dump", *args, target.name],
            check=False,
            cwd=target.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            timeout=600,
        )
        if proc.returncode != 0 or "error" in proc.stderr.lower():
            copy = " of an h5clear -s copy" if flagged else ""
            message = tail(proc.stderr, 2).replace("h5dump error: ", "")
            found.append(f"{name}{copy}: exit {proc.returncode}: {message}")
    return found


def h5dump_version() -> str | None:
    """``h5dump`` and its HDF5 version when it is on PATH, else None."""
    if shutil.which("h5dump") is None:
        return None
    return run(["h5dump", "--version"]).stdout.strip().replace(": Version", "") or "h5dump"


def run_floor() -> bool:
    """Install imgstore into FLOOR_VENV (h5py 3.8) and run FLOOR_TESTS there; prints the outcome and the time."""
    start = time.monotonic()
    python = ROOT / FLOOR_VENV / "bin" / "python"
    pins = [f"h5py=={OLD_H5PY[FLOOR_VENV]}", NUMPY_PIN]
    proc = run([python, *PIP, "-e", ROOT, *pins, *FLOOR_EXTRAS])
    if proc.returncode != 0:
        print(f"imgstore on h5py {OLD_H5PY[FLOOR_VENV]}: FAIL, cannot install: {tail(proc.stderr)}")
        return False
    proc = run([python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *FLOOR_TESTS])
    ok = proc.returncode == 0
    print(
        f"imgstore's tests on h5py {OLD_H5PY[FLOOR_VENV]} ({', '.join(FLOOR_TESTS)}): "
        f"{'OK' if ok else 'FAIL'} in {time.monotonic() - start:.0f} s: {tail(proc.stdout, 1)}"
    )
    if not ok:
        print(textwrap.indent(proc.stdout[-4000:], "    "))
    return ok


def gist(problem: str) -> str:
    """A problem cut for a table cell; an h5py error ending in HDF5's cause, "(...)", is cut to "object: cause"."""
    found = re.fullmatch(r"(.*?): \w+(?:Error|Exception): .*\(([^()]+)\)", problem)
    return (f"{found[1]}: {found[2]}" if found else problem)[:TABLE_REASON]


def print_table(stores: list[Store], columns: list[str]) -> None:
    """The summary: one row per store, one column per reader, OK or FAIL with the first problem."""
    cells = [[store.label] for store in stores]
    for row, store in zip(cells, stores, strict=True):
        for column in columns:
            problems = store.problems[column]
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            row.append(f"FAIL {gist(problems[0])}{more}" if problems else "OK")
    header = ["store", *columns]
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *cells]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def check(work: Path, floor: bool) -> bool:
    """Set up the readers, make the stores in ``work``, read them with every reader; True when all is well."""
    newest = venv_versions(PROJECT_PYTHON)
    if newest is None:
        raise SetupError(f"{PROJECT_PYTHON} cannot import h5py and numpy")
    newest_column = f"h5py {newest[0]} (HDF5 {newest[2]})"
    readers: dict[str, Path] = {}
    for folder, version in OLD_H5PY.items():
        python, hdf5 = ensure_reader_venv(folder, version)
        readers[f"h5py {version} (HDF5 {hdf5})"] = python
    dump = h5dump_version()
    print(f"{dump} found" if dump else "h5dump is not installed: HDF5 1.10 (h5dump) is NOT checked")

    start = time.monotonic()
    stores, failed = make_stores(work)
    print(f"made {len(stores)} stores in {time.monotonic() - start:.1f} s")
    for problem in failed:
        print(f"FAIL not made: {problem}")
    if not stores:
        print("FAIL nothing was checked: no store could be made")
        return False

    reader = work / "read_stores.py"
    reader.write_text(READER, encoding="utf-8")
    expected = {store.path: read_store(PROJECT_PYTHON, reader, store, cwd=work) for store in stores}
    for store in stores:
        store.problems[newest_column] = check_newest(store, expected[store.path])
        for column, python in readers.items():
            store.problems[column] = differences(expected[store.path], read_store(python, reader, store, cwd=work))
    columns = [newest_column, *readers]
    if dump:
        columns.append(dump)
        for store in stores:
            flagged = expected[store.path].get("open") != "plain"
            store.problems[dump] = h5dump_problems(store, flagged)

    for store in stores:
        for column in columns:
            for line in store.problems[column]:
                print(f"FAIL {store.label} [{store.path.relative_to(work)}] with {column}: {line}")
    print()
    print_table(stores, columns)
    ok = not failed and not any(store.problems[c] for store in stores for c in columns)
    if floor:
        print()
        ok = run_floor() and ok
    return ok


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the check in a temporary folder, print the verdict; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--skip-imgstore-floor",
        action="store_true",
        help=f"do not run imgstore's tests on h5py {OLD_H5PY[FLOOR_VENV]} (in {FLOOR_VENV})",
    )
    args = parser.parse_args(argv)
    for tool in (PROJECT_PYTHON, IMGSTORE):
        if not tool.exists():
            print(f"Error: {tool} is missing: run scripts/test.sh first to make the project venv", file=sys.stderr)
            return 1
    start = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="imgstore-compat-") as work:
            ok = check(Path(work), floor=not args.skip_imgstore_floor)
    except SetupError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(f"\n{'OK' if ok else 'FAILED'}: compatibility check took {time.monotonic() - start:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
