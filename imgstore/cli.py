"""The ``imgstore`` command line: a thin Typer layer over the library.

Each command collects its options, builds the library's option objects and calls one function. Library errors
(:class:`~imgstore.errors.ImgStoreError`) become ``Error: <message>`` on stderr and exit code 1.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer

from imgstore.errors import ImgStoreError

app = typer.Typer(
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    help="Turn a folder of photos into a training-ready HDF5 store, and export vectors for ANN search.",
)


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn library errors into ``Error: ...`` and exit code 1, without a traceback."""
    try:
        yield
    except ImgStoreError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(1) from None


@contextlib.contextmanager
def progress_bar(enabled: bool, desc: str, unit: str = "img") -> Iterator[dict]:
    """A tqdm bar whose total is set by ``on_start(total)`` and advanced by ``update(n)``; nothing when disabled."""
    state: dict = {"bar": None}

    def on_start(total: int) -> None:
        if enabled:
            from tqdm import tqdm

            tqdm.monitor_interval = 0  # no monitor thread: worker processes fork from this process
            state["bar"] = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, smoothing=0.05)

    def update(n: int) -> None:
        if state["bar"] is not None:
            state["bar"].update(n)

    state["on_start"], state["update"] = on_start, update
    try:
        yield state
    finally:
        if state["bar"] is not None:
            state["bar"].close()


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
    exact: Annotated[Optional[bool], typer.Option("--exact/--no-exact", help="Turn off JPEG draft (DCT-scaled) decoding and reducing_gap shortcuts. [default: off]")] = None,
    overwrite: Annotated[Optional[bool], typer.Option("--overwrite", help="Replace OUT if it exists.")] = None,
    strict: Annotated[Optional[bool], typer.Option("--strict", help="Exit with code 1 if any file was skipped.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML file with these options; command-line options win.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Decode, resize and store every image under SRC in the HDF5 store OUT."""
    from imgstore.config import build_ingest_options, load_config
    from imgstore.ingest import ingest as run_ingest

    with cli_errors():
        file_values = load_config(config) if config is not None else {}
        cli_values = {
            "size": size, "channels": channels, "resize_mode": resize_mode, "filter": filter,
            "pad_color": pad_color, "background": background, "max_pixels": max_pixels, "extensions": extensions,
            "workers": workers, "timeout": timeout, "exact": exact, "overwrite": overwrite, "strict": strict,
        }  # fmt: skip
        options = build_ingest_options(file_values, cli_values, source=str(config or ""))
        with progress_bar(not quiet, "ingest") as bar:
            try:
                report = run_ingest(src, out, options, progress=bar["update"], on_start=bar["on_start"])
            except KeyboardInterrupt:
                if bar["bar"] is not None:
                    bar["bar"].close()
                    bar["bar"] = None
                typer.echo(f"Interrupted: images decoded so far were flushed to {out}; it is marked incomplete.", err=True)
                raise typer.Exit(130) from None
    typer.echo(report.summary)
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
    from imgstore.info import format_info, store_info

    with cli_errors():
        data = store_info(store, skipped=skipped)
    typer.echo(json.dumps(data, indent=2, default=str) if as_json else format_info(data))


def main() -> None:
    """Console-script entry point."""
    app()
