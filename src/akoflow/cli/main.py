"""The ``akoflow`` command: its entry point.

Exit codes: 0 every activity succeeded, 1 something failed or was cancelled, 2 invalid input
(nothing stored, nothing run).

The commands are typer's (:mod:`akoflow.cli.commands`), imported only when one is run:
``akoflow --version`` answers without typer's import (a third of its start).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any

from akoflow import __version__

EXIT_FAILED, EXIT_INVALID = 1, 2


def print_version() -> None:
    with contextlib.suppress(OSError):  # a reader that went away (`| true`): nobody to tell
        sys.stdout.write(f"akoflow {__version__}\n")


def main() -> None:
    """Run the command, then leave at once: with the output flushed and the state databases
    closed, the interpreter's teardown of every loaded module (about 80 ms here, a tenth of a
    short `akoflow run`) would do nothing anyone waits for."""
    from akoflow import secret_handoff
    from akoflow.cli.console import err, escape

    # Runtime secrets must not stay in this process's start-up environment, which other
    # processes of the user (activities among them) can read: exec again without them.
    secret_handoff.reexec_without_secrets()
    try:
        secret_handoff.receive_secrets()
    except secret_handoff.HandoffError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        os._exit(EXIT_INVALID)
    args = sys.argv[1:]
    try:
        if args == ["--version"]:  # all typer would do for it
            print_version()
        else:
            from akoflow.cli.commands import app_for

            app_for(args)()
        code: int | str | None = 0
    except SystemExit as done:
        code = done.code
    if isinstance(code, str):
        err.print(escape(code))
        code = EXIT_FAILED
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`| head`)
            stream.flush()
    store = sys.modules.get("akoflow.store.repository")  # not imported: nothing to close
    if store is not None:
        store.close_all()
    logging.shutdown()
    os._exit(code or 0)


def __getattr__(name: str) -> Any:
    """``akoflow.cli.main.app`` (the typer app, for typer's CliRunner) as before the commands
    moved to :mod:`akoflow.cli.commands`."""
    if name == "app":
        from akoflow.cli.commands import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
