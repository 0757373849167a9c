"""The ``imgstore`` command and ``python -m imgstore``: signal handlers first, then the Typer CLI.

A signal that arrives while Python is still importing the CLI and the libraries every command needs (numpy,
h5py: its first tenth of a second) ends the process quietly with 128 + its number: nothing has been written yet. Each command then installs the handlers that make
SIGTERM and SIGHUP behave like Ctrl-C (:mod:`imgstore.signals`).
"""

from __future__ import annotations

# The C module, not signal.py: importing signal.py builds its enums (a few ms), and a Ctrl-C landing in that import
# printed a KeyboardInterrupt traceback (1 of 40 runs interrupted at 0.04 s on a loaded machine). os and sys are
# loaded by the interpreter's start already.
import _signal
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import FrameType


def _quit_before_start(signum: int, frame: FrameType | None) -> None:
    sys.stderr.write("Interrupted: nothing was written yet.\n")
    os._exit(128 + signum)


def main() -> None:
    """Console-script entry point."""
    for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
        _signal.signal(sig, _quit_before_start)
    if any(not arg.startswith("-") for arg in sys.argv[1:]):
        # A command will run, and every command reads or writes HDF5: import numpy and h5py now, while a signal
        # still ends the process quietly. A signal inside their C extensions' module init, later, under the
        # command's handlers, left h5py half-imported ("ImportError: cannot import name _objects", exit 1 with a
        # traceback: 3 of 80 runs SIGTERMed 0.05-0.45 s into an ingest).
        import h5py  # noqa: F401
        import numpy  # noqa: F401
    from imgstore.cli import main as cli_main

    try:
        cli_main()
    except SystemExit as exc:
        _exit_now(exc.code)
    _exit_now(0)


def _exit_now(code: int | str | None) -> None:
    """End the process with ``code`` (as ``sys.exit`` would) without tearing the interpreter down.

    By the time a command returns, everything it wrote is closed and its workers are gone; what remains is Python
    freeing thousands of module objects, 60-80 ms of a 0.5 s ingest of a few files (measured on 2 cores), which
    ``scripts/bench_ingest.py`` counts against imgstore like any user waiting would. The exit handlers still run
    (imgstore's pool closer, multiprocessing's, h5py's, logging's flush) and both streams are flushed. With another
    thread still running (a Dask client's), Python's own exit, which waits for it, is kept.
    """
    import threading

    if threading.active_count() > 1:
        sys.exit(code)
    import atexit

    if isinstance(code, str):  # sys.exit("message"): printed, status 1
        sys.stderr.write(code + "\n")
        code = 1
    status = 0 if code is None else code
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    os._exit(status if isinstance(status, int) else 1)


if __name__ == "__main__":
    main()
