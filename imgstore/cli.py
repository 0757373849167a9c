"""The ``imgstore`` command line: a thin Typer layer over the library.

Each command collects its options, builds the library's option objects and calls one function. Library errors
(:class:`~imgstore.errors.ImgStoreError`), and operating-system errors the library did not word itself, become
``Error: <message>`` on stderr and exit code 1, never a traceback. Every command runs under
:func:`~imgstore.signals.graceful_signals`: SIGTERM and SIGHUP stop it the way Ctrl-C does, exit code 128 + signal.

Help: every command is a :class:`Command`, so help texts print as written and flags show no ``<bool>`` type. Every
option shows its default. Ingest's options default to None, "not given", so that a ``--config`` file (or, with
``--append`` / ``--resume``, the store) can fill them; their help shows the library's defaults
(:data:`INGEST_DEFAULTS`, read from :class:`~imgstore.options.IngestOptions`).
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from imgstore.errors import ImgStoreError, OptionError, os_cause
from imgstore.options import FILTERS, DecodeOptions, IngestOptions, default_workers
from imgstore.progress import progress_bar
from imgstore.signals import exit_code, graceful_signals
from imgstore.vectors.formats import format_names

if TYPE_CHECKING:
    from imgstore.ingest import IngestReport


class Command(TyperCommand):
    """A Typer command whose help shows what is written: help texts are plain text, not Rich markup (which would
    swallow the ``[compression]`` of ``pip install 'imgstore[compression]'``), and a flag shows no ``<bool>`` type
    and ``off`` (or ``on``) as its default."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _no_markup(self)

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_flags(super().get_params(ctx))  # with the -h option, which Typer adds on first use


class Group(TyperGroup):
    """The command group, its help shown as a :class:`Command`'s is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _no_markup(self)

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_flags(super().get_params(ctx))


def _no_markup(command: TyperCommand | TyperGroup) -> None:
    """Escape every ``[`` of ``command``'s help texts where Typer renders them as Rich markup, so that they print as
    written instead of opening a markup tag."""
    if getattr(command, "rich_markup_mode", None) != "rich":
        return
    command.help = command.help and command.help.replace("[", "\\[")
    for param in command.params:
        if isinstance(param, (TyperArgument, TyperOption)) and param.help:
            param.help = param.help.replace("[", "\\[")


def _plain_flags(params: list[Any]) -> list[Any]:
    """``params``, each flag set to show no ``<bool>`` type and, unless told otherwise, ``off`` (or ``on``) as its
    default (Typer shows none for a flag that is off)."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag:
            param.metavar = ""
            if param.expose_value and isinstance(param.default, bool) and not isinstance(param.show_default, str):
                param.show_default = "on" if param.default else "off"
    return params


app = typer.Typer(
    cls=Group,
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


# -- ingest ---------------------------------------------------------------------------------------------------------


def _spelled(value: Any) -> str:
    """A default as one types it: (256, 256) -> ``256``, (0, 0, 0) -> ``black``, (".jpg", ".png") -> ``jpg, png``,
    60.0 -> ``60``, False -> ``off``, None -> ``none``."""
    if isinstance(value, bool) or value is None:
        return "none" if value is None else "on" if value else "off"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple) and all(isinstance(v, str) for v in value):  # extensions
        return ", ".join(v.lstrip(".") for v in value)
    if isinstance(value, tuple) and len(value) == 2:  # a size, (width, height)
        return str(value[0]) if value[0] == value[1] else f"{value[0]}x{value[1]}"
    if isinstance(value, tuple) and len(value) == 3:  # an RGB colour: its name when it has one
        from PIL import ImageColor

        names = (name for name in ImageColor.colormap if ImageColor.getrgb(name) == value)
        return next(names, ",".join(str(v) for v in value))
    return str(value)


def _ingest_defaults() -> dict[str, str]:
    """Every parameter of :class:`IngestOptions` and :class:`DecodeOptions` with its default, spelled for the help."""
    decode = DecodeOptions()
    values: dict[str, Any] = {name: getattr(decode, name) for name in inspect.signature(DecodeOptions).parameters}
    values.update((name, p.default) for name, p in inspect.signature(IngestOptions).parameters.items())
    values.update(workers=default_workers())  # what IngestOptions makes of None; extensions are spelled out below
    del values["decode"]
    spelled = {name: _spelled(value) for name, value in values.items()}
    # Not the list itself: about 90 extensions, and computing it loads every decoder's plugins (50 ms at each start).
    spelled["extensions"] = EXTENSIONS_DEFAULT
    return spelled


EXTENSIONS_DEFAULT = "every format the installed decoders read"


INGEST_DEFAULTS = _ingest_defaults()

# Help panels of ingest's options; the rest (--config, --compression, --quiet) are under "Options".
GEOMETRY, DECODING, STORAGE, SAFETY, LABELS, SCALE_OUT = "Geometry", "Decoding", "Storage", "Safety", "Labels", "Scale-out"


def _ingest_option(name: str, panel: str | None, help: str, *decls: str, shown: str | None = None) -> Any:
    """An option of ingest in help panel ``panel``: None when not given, its help showing ``shown`` or else the
    library's default for ``name`` (a parameter of IngestOptions or DecodeOptions)."""
    return typer.Option(*decls, help=help, rich_help_panel=panel, show_default=shown or INGEST_DEFAULTS[name])


@app.command(cls=Command)
def ingest(
    ctx: typer.Context,
    src: Annotated[Path, typer.Argument(metavar="SRC", help="Folder of photos, walked recursively (hidden files skipped); an archive of them: .tar, .tar.gz, .tgz, .zip (also .tar.bz2, .tar.xz); or a list file (.csv, .jsonl, .parquet) with a path column, whose label column gives labels and other columns are kept per row (store.meta).")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="The HDF5 store to write, e.g. out.h5.")],
    size: Annotated[Optional[str], _ingest_option("size", GEOMETRY, "Target size: N (square) or WIDTHxHEIGHT, e.g. 320x240.")] = None,
    channels: Annotated[Optional[int], _ingest_option("channels", GEOMETRY, "3 = RGB, 1 = luminance.")] = None,
    resize_mode: Annotated[Optional[str], _ingest_option("resize_mode", GEOMETRY, "crop (keep aspect, centre-crop), stretch, pad (letterbox); or, keeping each image's aspect and own shape: shorter (shorter side = --size N), longer (longer side = --size N), none (the decoded size).")] = None,
    upscale: Annotated[Optional[bool], _ingest_option("upscale", GEOMETRY, "With --resize-mode shorter or longer: also enlarge images smaller than --size (by default they keep their size).", "--upscale/--no-upscale")] = None,
    filter: Annotated[Optional[str], _ingest_option("filter", GEOMETRY, f"Resampling filter: {', '.join(FILTERS)}.")] = None,
    pad_color: Annotated[Optional[str], _ingest_option("pad_color", GEOMETRY, "Letterbox colour for --resize-mode pad: name, #rrggbb or R,G,B.")] = None,
    background: Annotated[Optional[str], _ingest_option("background", GEOMETRY, "Colour transparent pixels are composited on.")] = None,
    max_pixels: Annotated[Optional[int], _ingest_option("max_pixels", DECODING, "Refuse images larger than this many pixels (decompression bombs).")] = None,
    extensions: Annotated[Optional[str], _ingest_option("extensions", DECODING, "Comma-separated file extensions to ingest, e.g. jpg,png.")] = None,
    exact: Annotated[Optional[bool], _ingest_option("exact", DECODING, "Turn off JPEG draft (DCT-scaled) decoding, half-size camera raw development and reducing_gap shortcuts.", "--exact/--no-exact")] = None,
    workers: Annotated[Optional[int], _ingest_option("workers", DECODING, "Decoder processes, by default one per CPU this process may use; 0 decodes in this process. With --dask: per task, default 1.")] = None,
    timeout: Annotated[Optional[float], _ingest_option("timeout", DECODING, "Seconds one file may take before it is skipped as hung.")] = None,
    buffer_size: Annotated[Optional[int], _ingest_option("buffer_size", DECODING, "Images held in memory between writes; 0 = about 64 MiB worth.")] = None,
    archives: Annotated[Optional[bool], _ingest_option("archives", DECODING, "Read the archives (.tar, .tar.gz, .tgz, .zip) inside SRC as the folders they extract to: train/n01.tar/x.JPEG is stored as train/n01/x.JPEG.", "--archives")] = None,
    overwrite: Annotated[Optional[bool], _ingest_option("overwrite", SAFETY, "Replace OUT if it exists.", "--overwrite")] = None,
    append: Annotated[Optional[bool], _ingest_option("append", SAFETY, "Add the files OUT does not hold yet, after its rows (options default to the store's).", "--append")] = None,
    resume: Annotated[Optional[bool], _ingest_option("resume", SAFETY, "Continue an interrupted ingest into OUT; the result equals an uninterrupted run.", "--resume")] = None,
    flush_every: Annotated[Optional[float], _ingest_option("flush_every", SAFETY, "Seconds: the longest decoded images wait in memory before they are committed (what a kill can lose).")] = None,
    strict: Annotated[Optional[bool], _ingest_option("strict", SAFETY, "Exit with code 1 if any file was skipped.", "--strict")] = None,
    labels: Annotated[Optional[str], _ingest_option("labels", LABELS, "'folder': the first-level subfolder is the class; or FILE.csv with file_name,label rows. (A list file as SRC with a label column labels its rows itself.)")] = None,
    dedupe: Annotated[Optional[bool], _ingest_option("dedupe", LABELS, "Skip files whose bytes (SHA-256) are already stored, as duplicates.", "--dedupe")] = None,
    shard: Annotated[Optional[str], _ingest_option("shard", SCALE_OUT, "K/N: ingest only the K-th (1-based) of N contiguous ranges of the sorted file list (a list file's in list order; join shards with imgstore merge).")] = None,
    dask: Annotated[Optional[str], _ingest_option("dask", SCALE_OUT, "Run shards as tasks on a Dask cluster: local, local:N, or a scheduler address (tcp://host:8786). Needs pip install 'imgstore[dask]'.", "--dask", shown="none")] = None,
    shards: Annotated[Optional[int], _ingest_option("shards", SCALE_OUT, "With --dask: number of shards.", shown="4 per Dask worker thread, at most one per file")] = None,
    encode: Annotated[Optional[str], _ingest_option("encode", STORAGE, "How rows are stored: none (raw pixels), jpeg[:QUALITY[:420|422|444]] (default 90, 420), webp[:QUALITY] (default 80) or png[:LEVEL] (lossless). Encoded in the workers, decoded on read.")] = None,
    compression: Annotated[Optional[str], _ingest_option("compression", STORAGE, "none, gzip, lzf; zstd or blosc need pip install 'imgstore[compression]'.")] = None,
    config: Annotated[Optional[Path], _ingest_option("config", None, "TOML file with these options; command-line options win.", shown="none")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Decode, resize and store every image under SRC in the HDF5 store OUT."""
    from imgstore.config import ingest_options_for

    with cli_errors(lambda: _interrupted_note(out, dask is not None)):
        if shards is not None and dask is None:
            raise OptionError("--shards applies only with --dask")
        options = ingest_options_for(out, ctx.params, config, from_store=dask is None)
        report = _run_ingest(src, out, options, dask=dask, shards=shards, task_workers=workers, quiet=quiet)
    typer.echo(report.summary)
    decoded = getattr(report, "decoded_text", "")
    if decoded and not quiet:
        typer.echo(decoded)
    note = getattr(report, "note", None)
    if note:
        typer.echo(f"Warning: {note}", err=True)
    if options.strict and report.skipped:
        typer.echo(f"Error: {len(report.skipped)} file(s) were skipped and --strict was given", err=True)
        raise typer.Exit(1)


def _run_ingest(
    src: Path, out: Path, options: IngestOptions, *, dask: str | None, shards: int | None, task_workers: int | None,
    quiet: bool,
) -> IngestReport:
    """Ingest SRC into OUT in this process, or with ``dask`` as shard tasks on a Dask cluster; a progress bar unless
    ``quiet``."""
    from imgstore.ingest import ingest as ingest_here

    with progress_bar("ingest", "img", silent=quiet) as bar:
        if dask is None:
            return ingest_here(src, out, options, progress=bar)
        from imgstore.distributed import ingest_dask

        return ingest_dask(src, out, options, dask, shards=shards, task_workers=task_workers, progress=bar)


@app.command(cls=Command)
def info(
    store: Annotated[Path, typer.Argument(metavar="STORE", help="A store made by imgstore ingest.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    skipped: Annotated[bool, typer.Option("--skipped", help="List the skipped files with their reasons.")] = False,
) -> None:
    """Show a store's count, shape, chunking, size on disk and attributes."""
    from imgstore.store.info import format_info, store_info

    with cli_errors():
        data = store_info(store, skipped=skipped)
    typer.echo(json.dumps(data, indent=2, default=str) if as_json else format_info(data))


@app.command(cls=Command)
def merge(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="The merged store to write, e.g. photos.h5.")],
    shards: Annotated[list[Path], typer.Argument(metavar="SHARD", help="Every shard of one run, made by imgstore ingest --shard K/N (any order).")],
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


@app.command(cls=Command)
def verify(
    store: Annotated[Path, typer.Argument(metavar="STORE", help="A store made by imgstore ingest (or merge).")],
    sources: Annotated[Optional[Path], typer.Option(help="The folder, archive or list file the store was ingested from: check every file is there with the stored SHA-256.", show_default="none")] = None,
    decode: Annotated[bool, typer.Option("--decode", help="Also decode every encoded row (a JPEG, WebP or PNG store): finds rows whose bytes were bad before their checksum was taken; about 15x slower than the checksums alone.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Check a store: counts, names, every committed chunk, and (with --sources) the source files. Exit 1 on problems."""
    from imgstore.store.verify import verify_store

    with cli_errors(), progress_bar("verify", "img", silent=quiet) as bar:
        report = verify_store(store, sources=sources, decode=decode, progress=bar)
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


@app.command(cls=Command)
def preview(
    store: Annotated[Path, typer.Argument(metavar="STORE", help="A store made by imgstore ingest.")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="The contact sheet to write, e.g. grid.png.")],
    count: Annotated[int, typer.Option(help="Images on the sheet.")] = 64,
    random: Annotated[bool, typer.Option("--random", help="A seeded random sample instead of the first images.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of --random.")] = 0,
    columns: Annotated[Optional[int], typer.Option(help="Tiles per row.", show_default="about square")] = None,
    tile: Annotated[Optional[int], typer.Option(help="Tile size in pixels.", show_default="128")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
) -> None:
    """Draw a contact sheet of stored images with their index, name and label."""
    from imgstore.preview import make_preview

    with cli_errors():
        path = make_preview(store, out, count=count, random=random, seed=seed, columns=columns, tile=tile,
                            overwrite=overwrite)  # fmt: skip
    typer.echo(f"wrote {path}")


@app.command(cls=Command)
def extract(
    store: Annotated[Path, typer.Argument(metavar="STORE", help="A store made by imgstore ingest.")],
    outdir: Annotated[Path, typer.Argument(metavar="OUTDIR", help="Folder for the image files (created if needed).")],
    indices: Annotated[Optional[str], typer.Option(help="Rows to write, e.g. 0,5,10-20 (negative counts from the end).", show_default="all")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace image files that exist.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Write stored images back as files: PNG for raw rows, the stored JPEG/WebP/PNG bytes unchanged for an --encode store."""
    from imgstore.extract import META_SIDECAR, extract_images

    with cli_errors(), progress_bar("extract", "img", silent=quiet) as bar:
        written = extract_images(store, outdir, indices=indices, overwrite=overwrite, progress=bar)
    images = [p for p in written if p.name != META_SIDECAR]
    kind = images[0].suffix.lstrip(".").upper() if images else "PNG"
    also = f" and {written[-1].name} (their meta columns)" if len(images) < len(written) else ""
    typer.echo(f"wrote {len(images)} {kind} files{also} to {outdir}")


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


# Help panels of export's options.
VECTORS, ANN = "Vectors", "ANN benchmark (--ann)"


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:,.1f} MB"


@app.command(cls=Command)
def export(
    store: Annotated[Path, typer.Argument(metavar="STORE", help="A store made by imgstore ingest.")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Vector file to write, its extension naming the format (see --format); with --ann, a folder.")],
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help=f"Vector format instead of OUT's extension: {format_names()}. Not with --ann.", show_default="OUT's extension", rich_help_panel=VECTORS)] = None,
    size: Annotated[Optional[str], typer.Option(help="Shrink images to N (square) or WIDTHxHEIGHT pixels before flattening (bicubic). Needed for a store of images of their own shapes (--resize-mode shorter/longer/none), whose images are centre-cropped to its aspect.", show_default="stored size", rich_help_panel=VECTORS)] = None,
    channels: Annotated[Optional[int], typer.Option(help="1 = grayscale, 3 = RGB.", show_default="stored channels", rich_help_panel=VECTORS)] = None,
    scale: Annotated[str, typer.Option(help="Float formats: raw (pixel values 0-255) or unit (pixel / 255, in [0, 1]).", rich_help_panel=VECTORS)] = "raw",
    ann: Annotated[bool, typer.Option("--ann", help="Write an ANN benchmark into the folder OUT: ann-benchmarks HDF5 and TEXMEX files with exact ground truth.", rich_help_panel=ANN)] = False,
    queries: Annotated[Optional[int], typer.Option(help="Images held out as queries.", show_default="1000", rich_help_panel=ANN)] = None,
    k: Annotated[Optional[int], typer.Option("--k", help="Nearest neighbours per query in the ground truth.", show_default="100", rich_help_panel=ANN)] = None,
    metric: Annotated[Optional[str], typer.Option(help="euclidean (L2) or angular (1 - cosine).", show_default="euclidean", rich_help_panel=ANN)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the random query hold-out.", show_default="0", rich_help_panel=ANN)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace outputs that exist.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Write the stored images as flat vectors for ANN libraries, or (--ann) a ready-made ANN benchmark."""
    import time

    from imgstore.vectors.export import export_ann, export_vectors

    with cli_errors():
        ann_only = {"queries": queries, "k": k, "metric": metric, "seed": seed}
        given: dict[str, Any] = {name: value for name, value in ann_only.items() if value is not None}
        if not ann and given:
            verb = "apply" if len(given) > 1 else "applies"
            raise OptionError(f"{', '.join('--' + name for name in given)} {verb} only with --ann: add --ann or drop them")
        if ann and fmt is not None:
            raise OptionError("--format does not apply to --ann, which writes .hdf5 and .fvecs/.ivecs files")
        started = time.perf_counter()
        with progress_bar("export", "img", silent=quiet) as bar:
            if ann:  # the --ann options not given take export_ann's defaults
                report = export_ann(store, out, **given, size=size, channels=channels, scale=scale,
                                    overwrite=overwrite, progress=bar)  # fmt: skip
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


@app.command(cls=Command)
def convert(
    src: Annotated[Path, typer.Argument(metavar="SRC", help="An ann-benchmarks .hdf5 file (train, test, neighbors, distances).")],
    outdir: Annotated[Path, typer.Argument(metavar="OUTDIR", help="Folder for NAME_base, NAME_query, NAME_groundtruth, NAME_distances.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="fvecs (TEXMEX .fvecs/.ivecs) or bin (big-ann-benchmarks .fbin/.ibin).")] = "fvecs",
    normalize: Annotated[bool, typer.Option("--normalize", help="L2-normalise base and query vectors (angular data sets).")] = False,
    chunk_rows: Annotated[Optional[int], typer.Option(help="Rows per read.", show_default="about 32 MiB")] = None,
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
