"""The ``imgstore`` command line: a thin Typer layer over the library.

Each command collects its options, builds the library's option objects and calls one function. Library errors
(:class:`~imgstore.errors.ImgStoreError`), and operating-system errors the library did not word itself, become
``Error: <message>`` on stderr and exit code 1, never a traceback. Every command runs under
:func:`~imgstore.signals.graceful_signals`: SIGTERM and SIGHUP stop it the way Ctrl-C does, exit code 128 + signal.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer

from imgstore.errors import ImgStoreError, os_cause
from imgstore.progress import progress_bar
from imgstore.signals import exit_code, graceful_signals

app = typer.Typer(
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    help="Turn a folder of photos into a training-ready HDF5 store, and export vectors for ANN search.",
)


@contextlib.contextmanager
def cli_errors(interrupted: Callable[[], str] | None = None) -> Iterator[None]:
    """Turn library and OS errors into ``Error: ...`` and exit code 1, without a traceback; a signal into
    ``Interrupted: <what interrupted() says was left>`` and exit code 128 + signal (SIGTERM and SIGHUP behave like
    Ctrl-C)."""
    try:
        with graceful_signals():
            yield
    except ImgStoreError as exc:
        typer.echo(f"Error: {exc}", err=True)
        if getattr(exc, "sealed", False):
            # A write failed part-way and the store's file was sealed: leave now, so that nothing at exit
            # (HDF5 releasing what it still holds of that file) runs on it.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        raise typer.Exit(1) from None
    except OSError as exc:  # a failure the library did not word: still one line, naming the file when known
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        typer.echo(f"Error: {where}{os_cause(exc)}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt as exc:
        note = interrupted() if interrupted is not None else ""
        typer.echo(f"Interrupted{': ' + note if note else ''}.", err=True)
        raise typer.Exit(exit_code(exc)) from None
    except Exception as exc:
        # Not an error the library words (a bug, or an HDF5 failure h5py raises as another type): still one line;
        # IMGSTORE_DEBUG=1 shows the traceback.
        if os.environ.get("IMGSTORE_DEBUG"):
            raise
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        typer.echo(f"Error: {type(exc).__name__}: {first} (IMGSTORE_DEBUG=1 shows where)", err=True)
        raise typer.Exit(1) from None


# Options shared by ingest's command line and config file; None means "not given" so a config file can fill it.
@app.command()
def ingest(
    src: Annotated[Path, typer.Argument(help="Folder of photos, walked recursively (hidden files skipped).")],
    out: Annotated[Path, typer.Argument(help="The HDF5 store to write, e.g. out.h5.")],
    size: Annotated[Optional[str], typer.Option(help="Target size: 256 (square) or WIDTHxHEIGHT, e.g. 320x240. [default: 256]")] = None,
    channels: Annotated[Optional[int], typer.Option(help="3 = RGB, 1 = luminance. [default: 3]")] = None,
    resize_mode: Annotated[Optional[str], typer.Option(help="crop (keep aspect, centre-crop), stretch, or pad (letterbox). [default: crop]")] = None,
    filter: Annotated[Optional[str], typer.Option(help="Resampling filter: nearest, box, bilinear, hamming, bicubic, lanczos. [default: bicubic]")] = None,
    pad_color: Annotated[Optional[str], typer.Option(help="Letterbox colour for --resize-mode pad: name, #rrggbb or R,G,B. [default: black]")] = None,
    background: Annotated[Optional[str], typer.Option(help="Colour transparent pixels are composited on. [default: white]")] = None,
    max_pixels: Annotated[Optional[int], typer.Option(help="Refuse images larger than this many pixels (decompression bombs). [default: 178956970]")] = None,
    extensions: Annotated[Optional[str], typer.Option(help="Comma-separated file extensions to ingest, e.g. jpg,png. [default: the formats Pillow reads]")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Decoder processes; 0 decodes in this process. [default: all usable CPUs]")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Seconds one file may take before it is skipped as hung. [default: 60]")] = None,
    buffer_size: Annotated[Optional[int], typer.Option(help="Images held in memory between writes; 0 = about 64 MiB worth. [default: 0]")] = None,
    exact: Annotated[Optional[bool], typer.Option("--exact/--no-exact", help="Turn off JPEG draft (DCT-scaled) decoding and reducing_gap shortcuts. [default: off]")] = None,
    overwrite: Annotated[Optional[bool], typer.Option("--overwrite", help="Replace OUT if it exists.")] = None,
    strict: Annotated[Optional[bool], typer.Option("--strict", help="Exit with code 1 if any file was skipped.")] = None,
    shard: Annotated[Optional[str], typer.Option(help="K/N: ingest only the K-th (1-based) of N contiguous ranges of the sorted file list (join shards with imgstore merge).")] = None,
    labels: Annotated[Optional[str], typer.Option(help="'folder': the first-level subfolder is the class; or FILE.csv with file_name,label rows.")] = None,
    append: Annotated[Optional[bool], typer.Option("--append", help="Add the files OUT does not hold yet, after its rows (options default to the store's).")] = None,
    resume: Annotated[Optional[bool], typer.Option("--resume", help="Continue an interrupted ingest into OUT; the result equals an uninterrupted run.")] = None,
    dedupe: Annotated[Optional[bool], typer.Option("--dedupe", help="Skip files whose bytes (SHA-256) are already stored, as duplicates.")] = None,
    flush_every: Annotated[Optional[float], typer.Option(help="Seconds: the longest decoded images wait in memory before they are committed (what a kill can lose). [default: 2]")] = None,
    compression: Annotated[Optional[str], typer.Option(help="none, gzip, lzf; zstd or blosc with imgstore[compression]. [default: none]")] = None,
    dask: Annotated[Optional[str], typer.Option("--dask", help="Run shards as tasks on a Dask cluster: local, local:N, or a scheduler address (tcp://host:8786). Needs imgstore[dask].")] = None,
    shards: Annotated[Optional[int], typer.Option(help="With --dask: number of shards. [default: 4 per Dask worker thread, at most one per file]")] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML file with these options; command-line options win.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Decode, resize and store every image under SRC in the HDF5 store OUT."""
    from imgstore.config import build_ingest_options, load_config
    from imgstore.errors import OptionError
    from imgstore.ingest import IngestReport, continued_store, stored_options
    from imgstore.ingest import ingest as run_ingest

    with cli_errors(lambda: _interrupted_note(out, dask is not None)):
        file_values = load_config(config) if config is not None else {}
        cli_values = {
            "size": size, "channels": channels, "resize_mode": resize_mode, "filter": filter,
            "pad_color": pad_color, "background": background, "max_pixels": max_pixels, "extensions": extensions,
            "workers": workers, "timeout": timeout, "exact": exact, "overwrite": overwrite, "strict": strict,
            "shard": shard, "buffer_size": buffer_size, "labels": labels, "append": append, "resume": resume,
            "dedupe": dedupe, "compression": compression, "flush_every": flush_every,
        }  # fmt: skip
        continued = continued_store(out, resume=bool(resume)) if (append or resume) and not dask else None
        if continued is not None:
            # Continue with the options the store was made with, unless told otherwise (and then checked).
            file_values = {**stored_options(continued), **file_values}
        options = build_ingest_options(file_values, cli_values, source=str(config or ""))
        if shards is not None and dask is None:
            raise OptionError("--shards applies only with --dask")
        with progress_bar("ingest", "img", silent=quiet) as bar:
            report: IngestReport
            if dask is not None:
                from imgstore.distributed import ingest_dask

                report = ingest_dask(src, out, options, dask, shards=shards, task_workers=workers, progress=bar)
            else:
                report = run_ingest(src, out, options, progress=bar)
    typer.echo(report.summary)
    note = getattr(report, "note", None)
    if note:
        typer.echo(f"Warning: {note}", err=True)
    if options.strict and report.skipped:
        typer.echo(f"Error: {len(report.skipped)} file(s) were skipped and --strict was given", err=True)
        raise typer.Exit(1)


@app.command()
def info(
    store: Annotated[Path, typer.Argument(help="A store made by imgstore ingest.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    skipped: Annotated[bool, typer.Option("--skipped", help="List the skipped files with their reasons.")] = False,
) -> None:
    """Show a store's count, shape, chunking, size on disk and attributes."""
    from imgstore.store.info import format_info, store_info

    with cli_errors():
        data = store_info(store, skipped=skipped)
    typer.echo(json.dumps(data, indent=2, default=str) if as_json else format_info(data))


@app.command()
def merge(
    out: Annotated[Path, typer.Argument(help="The merged store to write, e.g. photos.h5.")],
    shards: Annotated[list[Path], typer.Argument(help="Every shard of one run, made by imgstore ingest --shard K/N (any order).")],
    copy: Annotated[bool, typer.Option("--copy", help="Copy the images into one self-contained store instead of virtual datasets over the shard files.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Join the shards of an ingest --shard K/N run into one store (virtual by default; keep the shards next to it)."""
    from imgstore.store.merge import merge_shards

    with cli_errors():
        with progress_bar("merge", "img", silent=quiet or not copy) as bar:
            report = merge_shards(out, shards, copy=copy, overwrite=overwrite, progress=bar)
    typer.echo(report.summary)


@app.command()
def verify(
    store: Annotated[Path, typer.Argument(help="A store made by imgstore ingest (or merge).")],
    sources: Annotated[Optional[Path], typer.Option(help="The folder the store was ingested from: check every file is there with the stored SHA-256.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Check a store: counts, names, every committed chunk, and (with --sources) the source files. Exit 1 on problems."""
    from imgstore.store.verify import verify_store

    with cli_errors(), progress_bar("verify", "img", silent=quiet) as bar:
        report = verify_store(store, sources=sources, progress=bar)
    for note in report.notes:
        typer.echo(f"note: {note}")
    if report.ok:
        typer.echo(f"OK: {report.checked} images verified in {store}")
        return
    for problem in report.problems:
        typer.echo(f"problem: {problem}", err=True)
    if report.changed_rows:
        typer.echo(f"changed rows ({len(report.changed_rows)}): {_ranges(report.changed_rows)}", err=True)
    typer.echo(f"Error: {store} has {report.problem_count} problem(s)", err=True)
    raise typer.Exit(1)


def _ranges(rows: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    parts: list[str] = []
    start = prev = rows[0]
    for r in [*rows[1:], None]:
        if r is not None and r == prev + 1:
            prev = r
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if r is not None:
            start = prev = r
    return ", ".join(parts)


@app.command()
def preview(
    store: Annotated[Path, typer.Argument(help="A store made by imgstore ingest.")],
    out: Annotated[Path, typer.Argument(help="The contact sheet to write, e.g. grid.png.")],
    count: Annotated[int, typer.Option(help="Images on the sheet.")] = 64,
    random: Annotated[bool, typer.Option("--random", help="A seeded random sample instead of the first images.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of --random.")] = 0,
    columns: Annotated[Optional[int], typer.Option(help="Tiles per row. [default: about square]")] = None,
    tile: Annotated[Optional[int], typer.Option(help="Tile size in pixels. [default: 128]")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
) -> None:
    """Draw a contact sheet of stored images with their index, name and label."""
    from imgstore.preview import make_preview

    with cli_errors():
        path = make_preview(store, out, count=count, random=random, seed=seed, columns=columns, tile=tile,
                            overwrite=overwrite)  # fmt: skip
    typer.echo(f"wrote {path}")


@app.command()
def extract(
    store: Annotated[Path, typer.Argument(help="A store made by imgstore ingest.")],
    outdir: Annotated[Path, typer.Argument(help="Folder for the PNG files (created if needed).")],
    indices: Annotated[Optional[str], typer.Option(help="Rows to write, e.g. 0,5,10-20 (negative counts from the end). [default: all]")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace PNG files that exist.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Write stored images back as PNG files."""
    from imgstore.extract import extract_images

    with cli_errors(), progress_bar("extract", "img", silent=quiet) as bar:
        written = extract_images(store, outdir, indices=indices, overwrite=overwrite, progress=bar)
    typer.echo(f"wrote {len(written)} PNG files to {outdir}")


def _interrupted_note(out: Path, dask: bool) -> str:
    """What an interrupted ingest left, for the ``Interrupted:`` line."""
    from imgstore.store import partial_path

    if dask:
        return f"finished shards are kept in {out}.parts/ (the same command with --resume reuses them)"
    partial = partial_path(out)
    if partial.exists():
        return f"{out} is unchanged; the new store so far is in {partial} (--resume continues it, then replaces {out})"
    if out.exists():
        from imgstore.store import open_read

        try:
            with open_read(out) as f:
                complete = bool(f.attrs.get("complete", False))
        except (OSError, RuntimeError, KeyError):
            complete = False
        if complete:
            return f"{out} is unchanged (run the same command again)"
        return f"images decoded so far were committed to {out}; it is marked incomplete (--resume continues it)"
    return f"{out} was not created yet (run the same command again)"


def main() -> None:
    """Console-script entry point."""
    app()


# -- export / convert: vectors out ---------------------------------------------------------------------------


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:,.1f} MB"


@app.command()
def export(
    store: Annotated[Path, typer.Argument(help="A store made by imgstore ingest.")],
    out: Annotated[Path, typer.Argument(help="Vector file to write (.fvecs, .bvecs, .fbin, .u8bin, .ivecs, .ibin); with --ann, a folder.")],
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="Vector format, instead of OUT's extension: fvecs, bvecs, ivecs, fbin, u8bin, ibin.")] = None,
    size: Annotated[Optional[str], typer.Option(help="Shrink images to N (square) or WIDTHxHEIGHT pixels before flattening (bicubic). [default: stored size]")] = None,
    channels: Annotated[Optional[int], typer.Option(help="1 = grayscale, 3 = RGB. [default: stored channels]")] = None,
    scale: Annotated[str, typer.Option(help="Float formats: raw (pixel values 0-255) or unit (pixel / 255, in [0, 1]).")] = "raw",
    ann: Annotated[bool, typer.Option("--ann", help="Write an ANN benchmark into the folder OUT: ann-benchmarks HDF5 and TEXMEX files with exact ground truth.")] = False,
    queries: Annotated[Optional[int], typer.Option(help="With --ann: images held out as queries. [default: 1000]")] = None,
    k: Annotated[Optional[int], typer.Option("--k", help="With --ann: nearest neighbours per query in the ground truth. [default: 100]")] = None,
    metric: Annotated[Optional[str], typer.Option(help="With --ann: euclidean (L2) or angular (1 - cosine). [default: euclidean]")] = None,
    seed: Annotated[Optional[int], typer.Option(help="With --ann: seed of the random query hold-out. [default: 0]")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace outputs that exist.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Write the stored images as flat vectors for ANN libraries, or (--ann) a ready-made ANN benchmark."""
    import time

    from imgstore.errors import OptionError
    from imgstore.vectors.export import export_ann, export_vectors

    with cli_errors():
        ann_only = {"--queries": queries, "--k": k, "--metric": metric, "--seed": seed}
        if not ann:
            given = [name for name, value in ann_only.items() if value is not None]
            if given:
                verb = "apply" if len(given) > 1 else "applies"
                raise OptionError(f"{', '.join(given)} {verb} only with --ann: add --ann or drop them")
        elif fmt is not None:
            raise OptionError("--format does not apply to --ann, which writes .hdf5 and .fvecs/.ivecs files")
        started = time.perf_counter()
        with progress_bar("export", "img", silent=quiet) as bar:
            if ann:
                report = export_ann(
                    store, out, queries=1000 if queries is None else queries, k=100 if k is None else k,
                    metric=metric or "euclidean", seed=0 if seed is None else seed, size=size, channels=channels,
                    scale=scale, overwrite=overwrite, progress=bar,
                )  # fmt: skip
            else:
                vec = export_vectors(
                    store, out, fmt=fmt, size=size, channels=channels, scale=scale, overwrite=overwrite, progress=bar
                )
        seconds = time.perf_counter() - started
    warning = report.warning if ann else vec.warning
    if warning:
        typer.echo(f"Warning: {warning}", err=True)
    if ann:
        typer.echo(
            f"Wrote {report.name}: {report.n_base} base + {report.n_query} query vectors of {report.dim}, "
            f"k={report.k} {report.metric} ground truth, to {out} in {seconds:.1f}s"
        )
    else:
        h, w, c = vec.shape
        typer.echo(
            f"Wrote {vec.count} vectors of {vec.dim} ({h}x{w}x{c}) to {vec.out} ({vec.format}, "
            f"{_mb(vec.bytes_written)}, {vec.bytes_written / 1e6 / max(seconds, 1e-9):,.0f} MB/s)"
            + (", with names and labels" if vec.labels_path else ", with names")
        )


@app.command()
def convert(
    src: Annotated[Path, typer.Argument(help="An ann-benchmarks .hdf5 file (train, test, neighbors, distances).")],
    outdir: Annotated[Path, typer.Argument(help="Folder for NAME_base, NAME_query, NAME_groundtruth, NAME_distances.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="fvecs (TEXMEX .fvecs/.ivecs) or bin (big-ann-benchmarks .fbin/.ibin).")] = "fvecs",
    normalize: Annotated[bool, typer.Option("--normalize", help="L2-normalise base and query vectors (angular data sets).")] = False,
    chunk_rows: Annotated[Optional[int], typer.Option(help="Rows per read. [default: about 32 MiB]")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace outputs that exist.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Convert an ann-benchmarks HDF5 file to TEXMEX or big-ann-benchmarks vector files."""
    import time

    from imgstore.vectors.convert import convert_ann

    with cli_errors():
        started = time.perf_counter()
        with progress_bar("convert", "row", silent=quiet) as bar:
            report = convert_ann(
                src, outdir, fmt=fmt, normalize=normalize, overwrite=overwrite, chunk_rows=chunk_rows, progress=bar
            )
        seconds = time.perf_counter() - started
    typer.echo(
        f"Converted {src.name}: {report.n_base} base + {report.n_query} query vectors of {report.dim}, k={report.k}"
        f" ({report.distance or 'distance unknown'}{', normalized' if report.normalized else ''}) to {outdir}"
        f" ({_mb(report.bytes_written)} in {seconds:.1f}s, {report.bytes_written / 1e6 / max(seconds, 1e-9):,.0f} MB/s)"
    )
