"""The ``imgstore`` command line: a thin Typer layer over the library.

Each command collects its options, builds the library's option objects and calls one function. Library errors
(:class:`~imgstore.errors.ImgStoreError`) become ``Error: <message>`` on stderr and exit code 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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


def main() -> None:
    """Console-script entry point."""
    app()
