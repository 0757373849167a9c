"""The ``imgstore`` command and ``python -m imgstore``: signal handlers first, then the Typer CLI.

A signal that arrives while Python is still importing the CLI (its first tenth of a second) ends the process
quietly with 128 + its number: nothing has been written yet. Each command then installs the handlers that make
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
    from imgstore.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
