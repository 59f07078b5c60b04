"""The ``akoflow`` command: its entry point.

Exit codes: 0 every activity succeeded, 1 something failed or was cancelled, 2 invalid input
(nothing stored, nothing run).

The commands are typer's (:mod:`akoflow.cli.commands`), imported only when one is run:
``akoflow --version`` answers without typer's import (a third of its start), and a plain
``akoflow run FILE [options]`` (:func:`plain_run`) runs without typer at all (its import and
the building of the command were a tenth of a short run; issue 20).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from akoflow import __version__

EXIT_FAILED, EXIT_INVALID = 1, 2


def print_version() -> None:
    with contextlib.suppress(OSError):  # a reader that went away (`| true`): nobody to tell
        sys.stdout.write(f"akoflow {__version__}\n")


# `run`'s options: the parameter each sets -> its names. typer's `run` (cli.commands) declares
# its options with these names, and plain_run reads them: one table, so a renamed option is
# renamed in both (one typer has and this table has not is left to typer).
RUN_FLAGS: dict[str, tuple[str, ...]] = {
    "quiet": ("--quiet", "-q"),
    "as_json": ("--json",),
    "verbose": ("--verbose", "-v"),
    "new": ("--new",),
    "no_cache": ("--no-cache",),
    "dry_run": ("--dry-run",),
}
RUN_PATHS: dict[str, tuple[str, ...]] = {"state_dir": ("--state-dir",), "data_dir": ("--data-dir",)}
_FLAG_PARAM = {name: param for param, names in RUN_FLAGS.items() for name in names}
_PATH_PARAM = {name: param for param, names in RUN_PATHS.items() for name in names}


def plain_run(args: Sequence[str]) -> dict[str, Any] | None:
    """The parameters typer would give `run` for ``args``, when they are `run`, one FILE and
    options of :data:`RUN_FLAGS` and :data:`RUN_PATHS` (``--opt PATH`` or ``--opt=PATH``),
    each at most once, in any order; None for anything else (help, a repeated or unknown
    option, a value that is empty or starts with '-', combined short flags, ``--``...), which
    typer reads as it always has."""
    if not args or args[0] != "run":
        return None
    given: dict[str, Any] = {}
    rest = list(args[1:])
    while rest:
        arg = rest.pop(0)
        option, has_value, value = arg.partition("=")
        found: bool | Path
        if arg in _FLAG_PARAM:
            name, found = _FLAG_PARAM[arg], True
        elif option in _PATH_PARAM:
            if not has_value:
                if not rest:
                    return None
                value = rest.pop(0)
            if not value or value.startswith("-"):
                return None
            name, found = _PATH_PARAM[option], Path(value)
        elif not arg or arg.startswith("-"):
            return None
        else:
            name, found = "file", Path(arg)
        if name in given:
            return None
        given[name] = found
    return given if "file" in given else None


def _typer_completion_asked() -> bool:
    """typer answers shell completion requests (``_{PROG}_COMPLETE`` set) before any command."""
    return any(k.startswith("_") and k.endswith("_COMPLETE") for k in os.environ)


def _run_plain(given: dict[str, Any]) -> int:
    """`run` as typer runs it: the same work, errors and exits (KeyboardInterrupt 130, a
    closed pipe 1, a state dir that cannot be used 2)."""
    from akoflow.runtimes import spawner_start  # the standard library only

    # No garbage collection while the engine's modules are imported (local_run turns it on
    # again as the run starts): they make ~100,000 objects and hardly any garbage, and the
    # collections their allocations set off (~90) were ~4% of a short run's CPU. (Off since
    # the entry point already, akoflow.__main__.)
    gc.disable()
    try:
        if not given.get("dry_run"):
            # Their start (a new interpreter each) overlaps the imports below, on another
            # core, instead of delaying the first activity.
            spawner_start.prestart(spawner_start.DEFAULT_COUNT)
        from akoflow.cli import local_run  # a Ctrl-C during its import is a Ctrl-C too

        try:
            return local_run.run_file(**given)
        except Exception as exc:
            done = local_run.clean_exit(exc, given.get("state_dir"))
            if done is None:
                raise
            raise done from None
        finally:
            # Those no runtime took (a refused run, no local activity) leave now; this
            # process exits next, so none is left a zombie.
            spawner_start.discard()
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            return EXIT_FAILED
        raise
    finally:
        gc.enable()


def standard_streams() -> None:
    """Started with stdin, stdout or stderr closed (`akoflow run f.yaml >&-`): each is
    /dev/null from here on. Python left it None (a successful run ended in a traceback and
    exit code 1 at the last flush), and a file opened later would take its number, where a
    library's stray write to "stdout" would land in the state database."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False))


def main() -> None:
    """Run the command, then leave at once: with the output flushed and the state databases
    closed, the interpreter's teardown of every loaded module (about 80 ms here, a tenth of a
    short `akoflow run`) would do nothing anyone waits for."""
    standard_streams()
    from akoflow import secret_handoff
    from akoflow.cli.console import err, escape, lost_output

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
        elif (given := plain_run(args)) is not None and not _typer_completion_asked():
            raise SystemExit(_run_plain(given))
        else:
            gc.enable()  # off since the entry point (akoflow.__main__), for a run's imports
            from akoflow.cli.commands import app_for

            app_for(args)()
        code: int | str | None = 0
    except SystemExit as done:
        code = done.code
    if isinstance(code, str):
        err.print(escape(code))
        code = EXIT_FAILED
    try:
        flushed: OSError | None = None
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError) as exc:  # a closed pipe (`| head`), a full disk
                if stream is sys.stdout and isinstance(exc, OSError):
                    flushed = exc
        if (lost := lost_output(flushed)) is not None:
            # The exit code stays the command's (a run's outcome): this says the rest.
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(f"akoflow: {lost}\n")
                sys.stderr.flush()
        store = sys.modules.get("akoflow.store.repository")  # not imported: nothing to close
        if store is not None:
            store.close_all()
        logging.shutdown()
    except KeyboardInterrupt:  # a late Ctrl-C (a second one): what ran is recorded already
        code = code or 130
    os._exit(code or 0)


def __getattr__(name: str) -> Any:
    """``akoflow.cli.main.app`` (the typer app, for typer's CliRunner) as before the commands
    moved to :mod:`akoflow.cli.commands`."""
    if name == "app":
        from akoflow.cli.commands import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
