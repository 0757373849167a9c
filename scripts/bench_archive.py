#!/usr/bin/env python3
"""Benchmark: ingesting photos from an archive vs from the extracted folder, the same files, in one run.

The corpus (generated once under --data and reused, like bench_ingest.py's ``small``: 2,000 textured JPEGs of
500x375 in 10 class folders) is packed as .tar, .tar.gz (gzip -6, members in the order the folder lists them, as
``tar czf`` writes them) and .zip (deflated), in a temporary folder. Then, --repeat times in turn, each is ingested
with ``imgstore ingest SRC OUT --size 256`` and the same --workers, everything in the page cache; the script prints
images/s (median) and the ratio archive/folder (the target is at least 0.8).

It also reports what reading a compressed tar costs: the checkpoints of its scan (count, and their memory measured
with tracemalloc), and the time per member read in sorted-name order (the order an ingest reads them), with the
bytes decompressed per byte read, against the uncompressed tar and the folder.

Usage: python scripts/bench_archive.py [--data bench-data] [--workers N] [--repeat 3] [--count 2000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tarfile
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imgstore.ingest import ingest  # noqa: E402
from imgstore.options import DecodeOptions, IngestOptions, default_workers  # noqa: E402
from imgstore.samples import write_jpeg_corpus  # noqa: E402
from imgstore.sources import open_source  # noqa: E402
from imgstore.sources.archive import Location, _opened  # noqa: E402


def listed(root: Path) -> list[Path]:
    """The files under ``root`` in the order the folder lists them (what ``tar cf`` packs), not sorted."""
    out = []
    for folder, dirs, files in os.walk(root):
        out.extend(Path(folder) / f for f in files if not f.startswith("."))
        dirs[:] = [d for d in dirs if not d.startswith(".")]
    return out


def pack(root: Path, where: Path) -> dict[str, Path]:
    """The corpus as .tar, .tar.gz and .zip in ``where``."""
    files = listed(root)
    made = {"tar": where / "photos.tar", "tar.gz": where / "photos.tar.gz", "zip": where / "photos.zip"}
    with tarfile.open(made["tar"], "w") as t:
        for p in files:
            t.add(p, arcname=p.relative_to(root).as_posix())
    with tarfile.open(made["tar.gz"], "w:gz", compresslevel=6) as t:
        for p in files:
            t.add(p, arcname=p.relative_to(root).as_posix())
    with zipfile.ZipFile(made["zip"], "w", zipfile.ZIP_DEFLATED) as z:
        for p in files:
            z.write(p, p.relative_to(root).as_posix())
    return made


def warm(path: Path) -> None:
    """Read ``path`` (a file, or every file under a folder) once, so every run reads from the page cache."""
    for p in [path] if path.is_file() else listed(path):
        with open(p, "rb") as f:
            while f.read(1 << 20):
                pass


def timed_ingest(src: Path, out: Path, workers: int) -> tuple[float, int]:
    opts = IngestOptions(decode=DecodeOptions(size=256), workers=workers, overwrite=True)
    t = time.perf_counter()
    report = ingest(src, out, opts)
    return time.perf_counter() - t, report.count


def read_costs(sources: dict[str, Path]) -> None:
    """Per-member read time in sorted-name order, and the compressed tar's checkpoint memory."""
    exts = IngestOptions().extensions
    print("\nreading every member in sorted-name order, in one process (what the parent does for a .tar.gz):")
    for kind, path in sources.items():
        source = open_source(path)
        t = time.perf_counter()
        found = source.scan(exts)
        scan = time.perf_counter() - t
        t = time.perf_counter()
        total = sum(len(source.read(c.key)) for c in found.files)
        sec = time.perf_counter() - t
        line = (f"  {kind:7s} scan {scan:6.2f} s   read {1000 * sec / len(found.files):6.3f} ms/member "
                f"({total / sec / 1e6:6.0f} MB/s)")  # fmt: skip
        if kind == "tar.gz":
            arc = _opened(Location("gz", str(path)))
            stream = arc.stream
            assert stream is not None
            copies = [dec for _, _, dec in stream.checkpoints if dec is not None]
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            extra = [c.copy() for c in copies]
            each = (tracemalloc.get_traced_memory()[0] - before) / max(1, len(extra))
            tracemalloc.stop()
            line += (f"\n          {len(stream.checkpoints)} checkpoints every {stream.spacing / 2**20:.0f} MiB of "
                     f"{stream.checkpoints[-1][0] / 2**20:.0f} MiB: {each / 1e3:.1f} KB each, "
                     f"{len(copies) * each / 1e6:.1f} MB in all; decompressed {stream.decompressed_bytes / 2**20:.0f} "
                     f"MiB in all (scan + reads) for {total / 2**20:.0f} MiB of members")  # fmt: skip
        print(line)
    # An archive larger than what may be kept: the same archive with less memory to keep members in.
    import imgstore.sources.archive as archive_module

    default = archive_module.PASSED_OVER_BYTES
    for budget in (16 * 2**20, 0):
        archive_module.PASSED_OVER_BYTES = budget
        try:
            source = open_source(sources["tar.gz"])
            found = source.scan(exts)
            t = time.perf_counter()
            for c in found.files:
                source.read(c.key)
            sec = time.perf_counter() - t
            stream = _opened(Location("gz", str(sources["tar.gz"]))).stream
            assert stream is not None
            print(f"  tar.gz with {budget / 2**20:.0f} MiB to keep members in: read {1000 * sec / len(found.files):.3f} "
                  f"ms/member, decompressed {stream.decompressed_bytes / 2**20:.0f} MiB in all (scan + reads)")
        finally:
            archive_module.PASSED_OVER_BYTES = default


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "bench-data")
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--count", type=int, default=2000)
    args = ap.parse_args()
    corpus = args.data / "small"
    print(f"corpus: {args.count} JPEGs of 500x375 in {corpus} (generated on first use)")
    write_jpeg_corpus(corpus, count=args.count, size=(500, 375), classes=10, workers=2)
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp:
        where = Path(tmp)
        sources = {"folder": corpus, **pack(corpus, where)}
        for kind, path in sources.items():
            size = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in listed(path))
            print(f"  {kind:7s} {size / 1e6:7.1f} MB")
        for path in sources.values():
            warm(path)
        times: dict[str, list[float]] = {kind: [] for kind in sources}
        for r in range(args.repeat):
            for kind, path in sources.items():
                sec, n = timed_ingest(path, where / f"{kind}.h5", args.workers)
                assert n == args.count, f"{kind}: stored {n} of {args.count}"
                times[kind].append(sec)
            print(f"  round {r + 1}: " + ", ".join(f"{k} {args.count / t[-1]:.0f}" for k, t in times.items()) + " img/s")
        print(f"\ningest --size 256 --workers {args.workers}, median of {args.repeat}:")
        base = args.count / statistics.median(times["folder"])
        for kind, t in times.items():
            rate = args.count / statistics.median(t)
            print(f"  {kind:7s} {rate:7.0f} img/s   {rate / base:5.2f}x the folder")
        read_costs(sources)


if __name__ == "__main__":
    main()
