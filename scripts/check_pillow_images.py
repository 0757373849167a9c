#!/usr/bin/env python3
"""Check: Pillow's own test images, ingested by ``imgstore ingest --quiet`` with default options.

Counts the files Pillow itself decodes (``Image.open`` + ``load()``, with the plugins imgstore registers), ingests
the folder with the real CLI in a subprocess (its fd 2 captured, so a codec that writes to stderr from C is caught
too), and prints: decodable by Pillow N, stored M, every Pillow-decodable file not stored with its skip reason,
and the bytes printed to stderr (which must be 0). Exit code 1 when stderr was not empty or M < --target.

The images are not part of this repository: export them from Pillow's repository to a folder outside it, e.g.

    git clone --depth 1 https://github.com/python-pillow/Pillow /tmp/Pillow
    python scripts/check_pillow_images.py /tmp/Pillow/Tests/images

Usage: python scripts/check_pillow_images.py IMAGES [--target 840] [--workers N] [--keep OUT.h5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pillow_decodable(folder: Path) -> list[str]:
    """Relative POSIX paths of the non-hidden files under ``folder`` that Pillow opens and loads."""
    from PIL import Image

    from imgstore.decoders.pillow import load_plugins

    load_plugins()
    found = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(path) as im:
                    im.load()
        except Exception:  # Pillow cannot: not counted
            continue
        found.append(rel.as_posix())
    return found


def silenced(fn: Callable[[Path], list[str]], folder: Path) -> list[str]:
    """``fn(folder)`` with this process's fd 2 sent to /dev/null (libtiff and friends print while we count)."""
    saved = os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
    try:
        return fn(folder)
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", type=Path, help="Pillow's Tests/images folder (exported outside this repository)")
    parser.add_argument("--target", type=int, default=840, help="stored files needed to pass (default 840)")
    parser.add_argument("--workers", type=int, default=None, help="--workers for the ingest (default: imgstore's)")
    parser.add_argument("--keep", type=Path, default=None, help="write the store here instead of a temporary file")
    args = parser.parse_args()
    if not args.images.is_dir():
        parser.error(f"{args.images} is not a folder")

    decodable = silenced(pillow_decodable, args.images)
    with tempfile.TemporaryDirectory(prefix="imgstore-pillow-") as tmp:
        out = args.keep or Path(tmp) / "pillow.h5"
        cmd = [sys.executable, "-m", "imgstore", "ingest", str(args.images), str(out), "--quiet", "--overwrite"]
        if args.workers is not None:
            cmd += ["--workers", str(args.workers)]
        run = subprocess.run(cmd, capture_output=True, cwd=tmp)
        if not out.exists():
            print(f"ingest failed (exit {run.returncode}): {run.stderr.decode(errors='replace')}", file=sys.stderr)
            return 1
        import imgstore

        with imgstore.open(out) as store:
            stored = set(store.names)
            skipped = dict(store.skipped)

    missing = [name for name in decodable if name not in stored]
    print(f"decodable by Pillow: {len(decodable)}")
    print(f"stored: {len(stored)} (of them decodable by Pillow: {len(decodable) - len(missing)})")
    print(f"Pillow-decodable files not stored: {len(missing)}")
    for name in missing:
        print(f"  {name}: {skipped.get(name, 'not a candidate (extension not in the default list)')}")
    print(f"stored that Pillow does not decode: {len(stored - set(decodable))}")
    for name in sorted(stored - set(decodable)):
        print(f"  {name}")
    print(f"bytes printed to stderr: {len(run.stderr)}")
    if run.stderr:
        print(run.stderr.decode(errors="replace")[:2000])
    print(f"exit code: {run.returncode}")
    ok = not run.stderr and len(decodable) - len(missing) >= args.target
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
