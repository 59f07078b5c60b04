"""``akoflow run FILE`` without typer, and what the commands that run workflows share.

The entry point (:mod:`akoflow.cli.main`) runs a plain ``run`` command line through here
without importing typer (its import and the building of the command were a tenth of a short
run); :mod:`akoflow.cli.commands` runs every other one, and resume, retry and cancel, with
the same functions. Exits that are not a run's own code are SystemExit (typer's Exit needs
typer).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import logging
import os
import signal
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from akoflow import config
from akoflow.cli.console import BackgroundLogHandler, LazyRichHandler, err, escape, out, shown

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def clean_exit(exc: Exception, state_dir: Path | None) -> SystemExit | None:
    """A state dir or database that cannot be used is a one-line error and exit 2, in every
    command, wherever it shows (opening the store, or a damaged page read later): the exit,
    once said; None for any other error."""
    # Neither module is imported just for this: if it is not loaded, it raised nothing.
    service = sys.modules.get("akoflow.service")
    sqlite3 = sys.modules.get("sqlite3")
    if service is not None and isinstance(exc, service.StateError):
        message = str(exc)
    elif service is not None and sqlite3 is not None and isinstance(exc, sqlite3.Error):
        message = service.database_error(config.state_dir(state_dir) / service.DB_NAME, exc)
    else:
        return None
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return SystemExit(EXIT_INVALID)


def _state_dir(option: Path | None) -> Path:
    """``--state-dir`` (else ``$AKOFLOW_HOME``, else ``~/.akoflow``) resolved; StateError for a
    path that cannot be one (a symlink loop, a name too long)."""
    from akoflow import service

    try:
        found = config.state_dir(option)
    except (RuntimeError, OSError) as exc:  # pathlib reports a symlink loop as RuntimeError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise service.StateError(f"cannot use the state dir {option}: {reason}") from None
    if not _is_utf8(found):
        raise service.StateError(f"cannot use the state dir {shown(str(found))}: {NOT_UTF8}")
    return found


# The database keeps the state and data dirs as text: a path whose bytes are not UTF-8 could
# not be stored (a UnicodeEncodeError traceback, half a run made on disk).
NOT_UTF8 = "its path is not valid UTF-8 (runs record it as text): choose one that is"


def _is_utf8(path: Path) -> bool:
    try:
        str(path).encode()
    except UnicodeEncodeError:
        return False
    return True


def _warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def _open_repository(sdir: Path) -> Any:
    from akoflow import service

    return service.open_repository(sdir, warn=_warn)


def _setup_logging(verbose: bool) -> None:
    if logging.getLogger().handlers:  # set up already (basicConfig would do nothing)
        return
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[BackgroundLogHandler(LazyRichHandler(err))],
    )


PLUGINS_OFF = "PYDANTIC_DISABLE_PLUGINS"  # pydantic's documented switch
PLUGIN_LOADER = "pydantic.plugin._loader"


class _NoPluginLoader(types.ModuleType):
    """Stands in for pydantic's plugin loader while the switch is on: get_plugins() answers
    what the real one answers then (no plugins), without the real one's import (it imports
    importlib.metadata, hence email, csv, zipfile...: ~10 ms of a short `akoflow run`). Any
    other name asked of it is the real loader's, imported then (a pydantic that changed)."""

    def __init__(self) -> None:
        super().__init__(PLUGIN_LOADER)

    @staticmethod
    def get_plugins() -> tuple[()]:
        return ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # what the import system looks for (__path__...)
            raise AttributeError(name)
        import importlib

        if sys.modules.get(PLUGIN_LOADER) is self:
            del sys.modules[PLUGIN_LOADER]
        return getattr(importlib.import_module(PLUGIN_LOADER), name)


@contextlib.contextmanager
def _pydantic_plugins_off() -> Iterator[None]:
    """Build the workflow loader's pydantic models (at its import) without looking for
    pydantic plugins: the look-up reads the entry points of every installed distribution
    (5-15 ms of a start) for plugins that would only watch akoflow check its own file; typer
    does the same for its parameters. In this block only: the spawners and activities start
    later, with the user's environment as it was (their own plugins still work there), and
    a model built after it (by this process) looks for them again, with pydantic's loader."""
    before = os.environ.get(PLUGINS_OFF)
    os.environ[PLUGINS_OFF] = "1"
    stand_in = None
    if PLUGIN_LOADER not in sys.modules:
        stand_in = sys.modules[PLUGIN_LOADER] = _NoPluginLoader()
    try:
        yield
    finally:
        if stand_in is not None and sys.modules.get(PLUGIN_LOADER) is stand_in:
            del sys.modules[PLUGIN_LOADER]
        if before is None:
            del os.environ[PLUGINS_OFF]
        else:
            os.environ[PLUGINS_OFF] = before


def _fail_invalid(exc: Exception) -> SystemExit:
    from akoflow.spec import WorkflowValidationError

    if isinstance(exc, WorkflowValidationError):
        n = len(exc.errors)
        err.print(f"[bold red]invalid workflow[/] {escape(exc.source)}: {n} error{'s' * (n != 1)}")
        for e in exc.errors:
            where = f"{exc.source}:{e.line}" if e.line else exc.source
            path = f"[bold]{escape(e.path)}[/]: " if e.path else ""
            err.print(f"  {escape(where)}: {path}{escape(e.message)}")
    else:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
    return SystemExit(EXIT_INVALID)


def run_file(
    file: Path,
    state_dir: Path | None = None,
    data_dir: Path | None = None,
    new: bool = False,
    quiet: bool = False,
    as_json: bool = False,
    verbose: bool = False,
    no_cache: bool = False,
    dry_run: bool = False,
) -> int:
    """``akoflow run FILE``'s work (its options are those of the command); the exit code."""
    import asyncio

    from akoflow import service

    _setup_logging(verbose)
    with _pydantic_plugins_off():
        from akoflow.spec import WorkflowValidationError

        try:
            text = service.read_workflow_file(file)
            prepared = service.validate_text(text, service.shown_path(file))
        except WorkflowValidationError as exc:
            raise _fail_invalid(exc) from None
    if dry_run:
        return _dry_run(prepared, state_dir, data_dir, no_cache=no_cache, as_json=as_json)
    data = _make_data_dir(data_dir) if data_dir else None
    sdir = _state_dir(state_dir)
    repo = _open_repository(sdir)
    # From here a Ctrl-C cancels the stored run (see _EarlyInterrupts).
    early = _EarlyInterrupts()
    # Decided and claimed in one transaction: of several `run` of this file started at once,
    # exactly one runs it.
    claim = service.claim_run(repo, sdir, prepared, data_dir=data, new=new)
    # Escaped (rich's markup, imported for it) only where it is shown: not by `run --quiet`.
    name = functools.partial(escape, prepared.workflow.name)
    if claim.busy_pid is not None:
        err.print(
            f"[bold red]error:[/] workflow {claim.wf_id} ({name()}) is being run by process "
            f"{claim.busy_pid}"
        )
        if as_json:  # the run as stored: not ended (see AttachedRun._report_unended)
            out.print_json(json.dumps(_run_json(repo, claim.wf_id)))
        return EXIT_FAILED
    if no_cache:
        from akoflow import cache

        cache.disable(repo, claim.wf_id)
    if not quiet and not as_json:
        if claim.resumed:
            err.print(f"resuming interrupted run #{claim.wf_id} of {name()}")
        elif claim.other_version is not None:
            err.print(
                f"[dim]note: run #{claim.other_version} of {name()} (another version of this "
                f"file) is unfinished; `akoflow resume {claim.other_version}` continues it[/]"
            )
    from akoflow.cli.attached import AttachedRun

    run = AttachedRun(repo, sdir, [claim.wf_id], quiet=quiet, as_json=as_json, early=early)
    if not gc.isenabled():  # off while main() imported what runs it (cli.main._run_plain)
        # What the imports made (modules, classes, functions) lives as long as the engine:
        # moved out of the collector's sight, not looked through at each collection of the
        # run (the first one would have gone through all of it).
        gc.freeze()
        gc.enable()
    return asyncio.run(run.run())


class _EarlyInterrupts:
    """Ctrl-C, SIGTERM and SIGHUP counted, not acted on, from before a run is stored until
    the engine's own handlers take over (:class:`akoflow.cli.attached.AttachedRun`, which
    then cancels it). Raised there, a KeyboardInterrupt left the stored run pending, and a
    later `akoflow resume` ran it all; a SIGHUP killed the process, the run left pending
    where a closed terminal cancels it."""

    def __init__(self) -> None:
        self.count = 0
        self.hangups = 0
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._interrupted)
        signal.signal(signal.SIGHUP, self._hung_up)

    def _interrupted(self, signum: int, frame: object) -> None:
        self.count += 1

    def _hung_up(self, signum: int, frame: object) -> None:
        self.hangups += 1


def _dry_run(
    prepared: Any, state_dir: Path | None, data_dir: Path | None, *, no_cache: bool, as_json: bool
) -> int:
    """``run --dry-run``: what a new run would run and why; nothing is run, created or
    stored (a state dir that does not exist stays so)."""
    from akoflow.cache.plan import plan

    sdir, repo = _existing_store(state_dir)
    # A new run's own data dir does not exist yet: only what reuses would restore is there.
    where = data_dir.absolute() if data_dir else sdir / "runs" / "(new)" / "data"
    try:
        planned = plan(repo, prepared.workflow, where, no_cache=no_cache)
    finally:
        if repo is not None:
            repo.close()
    runs = [p for p in planned if p.runs]
    undecided = sum(p.undecided for p in planned)
    if as_json:
        doc = {
            "workflow": prepared.workflow.name,
            "run": len(runs),
            "cached": len(planned) - len(runs),
            "undecided": undecided,
            "activities": [
                {"name": p.activity, "would": p.would, "reason": p.reason}
                | ({"cachedFrom": p.reused_from} if p.reused_from is not None else {})
                for p in planned
            ],
        }
        out.print_json(json.dumps(doc))
        return EXIT_OK
    from rich.table import Table

    name = escape(prepared.workflow.name)
    out.print(
        f"dry run of {name}: {len(runs)} of {len(planned)} activities would run, "
        f"{len(planned) - len(runs)} cached (nothing was run or stored)"
        + (f"; {undecided} of those are decided once an upstream activity ran" if undecided else "")
    )
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("activity", "would", "why"):
        table.add_column(column)
    for p in planned:
        would = {"run": "[bold]run[/]", "cached": "[green]cached[/]"}.get(p.would, p.would)
        table.add_row(escape(p.activity), would, escape(p.reason))
    out.print(table)
    return EXIT_OK


def _make_data_dir(given: Path) -> Path:
    """``--data-dir`` as the run will use it (absolute, created), or a clear error before
    anything is stored: a file, a device, a place where no directory can be made."""
    problem = _data_dir_problem(given)
    if problem is not None:
        err.print(
            f"[bold red]error:[/] cannot use --data-dir {escape(shown(str(given)))}: {problem}",
            soft_wrap=True,
        )
        raise SystemExit(EXIT_INVALID)
    return given.resolve()


def _data_dir_problem(given: Path) -> str | None:
    try:
        path = given.resolve()
    except (RuntimeError, OSError) as exc:  # pathlib reports a symlink loop as RuntimeError
        return str(exc)
    if not _is_utf8(path):
        return NOT_UTF8
    if os.path.lexists(path) and not os.path.isdir(path):
        return "it exists and is not a directory"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return exc.strerror or str(exc)
    if not os.access(path, os.W_OK | os.X_OK):
        return "it is not writable"
    return None


def _run_json(repo: Any, wf_id: int) -> dict[str, Any]:
    """One run as JSON (``run --json``, ``status ID --json``), from the store."""
    from akoflow.cli.progress import run_json

    rec = repo.get_workflow(wf_id)
    acts = repo.list_activities(wf_id)
    return run_json(
        id=rec.id,
        name=rec.name,
        state=rec.state,
        data_dir=rec.data_dir,
        started_at=rec.started_at,
        finished_at=rec.finished_at,
        activities=acts,
        holds=() if rec.state.is_final else _holds(repo, wf_id),
    )


def _existing_store(state_dir: Path | None) -> tuple[Path, Any]:
    """The state dir and its repository, or None for a state dir without runs (a command
    that only looks does not create a database)."""
    from akoflow import service

    sdir = _state_dir(state_dir)
    if os.path.lexists(sdir) and not os.path.isdir(sdir):
        raise service.StateError(f"the state dir {sdir} exists and is not a directory")
    if not os.path.exists(sdir / service.DB_NAME):
        return sdir, None
    return sdir, _open_repository(sdir)


def _holds(repo: Any, wf_id: int) -> list[Any]:
    """The NOT_READY runtimes that hold activities of a run, as the store last recorded them
    (reason, and since when: the status's last change)."""
    from akoflow.cli.progress import holds_from

    now = time.time()
    status = {
        r.name: (r.reason, max(0.0, now - r.updated_at))
        for r in repo.list_runtimes()
        if r.status != "READY"
    }
    return holds_from(repo.ready_by_runtime(wf_id), status)
