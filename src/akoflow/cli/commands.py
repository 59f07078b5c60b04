"""The commands of the ``akoflow`` command line, through typer (the entry point, which
imports this module only for the commands that need typer, is :mod:`akoflow.cli.main`).

Exit codes: 0 every activity succeeded, 1 something failed or was cancelled, 2 invalid input
(nothing stored, nothing run).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.main import get_command_name
from typer.models import CommandInfo

from akoflow.cli.console import err, escape, is_text, out, shown
from akoflow.cli.local_run import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    _existing_store,
    _fail_invalid,
    _holds,
    _open_repository,
    _pydantic_plugins_off,
    _run_json,
    _setup_logging,
    _state_dir,
    clean_exit,
    run_file,
)
from akoflow.cli.main import RUN_FLAGS, RUN_PATHS, print_version

MAX_ID = 2**63 - 1  # SQLite's largest integer: no id or attempt number is larger


def _new_app() -> typer.Typer:
    return typer.Typer(
        name="akoflow",
        help="Run YAML workflows of containerized activities on local, docker, singularity, "
        "HPC (SLURM) and Kubernetes runtimes.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )


app = _new_app()

F = TypeVar("F", bound=Callable[..., Any])


class LogStream(StrEnum):
    stdout = "stdout"
    stderr = "stderr"


def _clean_errors(command: F) -> F:
    """A state dir or database that cannot be used is a one-line error and exit 2, in every
    command, wherever it shows (opening the store, or a damaged page read later)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except Exception as exc:
            done = clean_exit(exc, kwargs.get("state_dir"))
            if done is None:
                raise
            raise done from None

    return wrapper  # type: ignore[return-value]


def command(name: str | None = None) -> Callable[[F], F]:
    """``@app.command()`` with :func:`_clean_errors`."""

    def register(func: F) -> F:
        wrapped = _clean_errors(func)
        app.command(name)(wrapped)
        return wrapped

    return register


StateDirOpt = Annotated[
    Path | None,
    typer.Option(
        *RUN_PATHS["state_dir"],
        help="Where runs, logs and the database live [env AKOFLOW_HOME; default ~/.akoflow].",
        show_default=False,
    ),
]
# Options `run` shares with other commands: named by cli.main's table of `run`'s options.
QuietOpt = Annotated[bool, typer.Option(*RUN_FLAGS["quiet"], help="No progress output.")]
JsonOpt = Annotated[
    bool, typer.Option(*RUN_FLAGS["as_json"], help="Print the result as JSON on stdout.")
]
VerboseOpt = Annotated[bool, typer.Option(*RUN_FLAGS["verbose"], help="Log engine events.")]
ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        help="Talk to this AkôFlow server instead of the local state dir [env AKOFLOW_SERVER]; "
        "token from AKOFLOW_API_TOKEN or the state dir's api-token file.",
        show_default=False,
    ),
]


def _server_url(option: str | None) -> str | None:
    """Client mode applies with ``--server`` or ``$AKOFLOW_SERVER`` (checked without importing
    the HTTP client, so the embedded commands start as fast as before)."""
    url = option or os.environ.get("AKOFLOW_SERVER")
    return url.rstrip("/") if url else None


# ---------------------------------------------------------------------------------- run


@command()
def run(
    file: Annotated[Path, typer.Argument(help="Workflow YAML file.", show_default=False)],
    state_dir: StateDirOpt = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            *RUN_PATHS["data_dir"], help="Shared data dir of the run [default: in the state dir]."
        ),
    ] = None,
    new: Annotated[
        bool,
        typer.Option(
            *RUN_FLAGS["new"], help="Start a new run even if this file has an interrupted one."
        ),
    ] = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    no_cache: Annotated[
        bool,
        typer.Option(
            *RUN_FLAGS["no_cache"], help="Run every activity: reuse no earlier run's result."
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            *RUN_FLAGS["dry_run"],
            help="Say which activities would run and why (which input or script changed); "
            "run and store nothing.",
        ),
    ] = False,
) -> None:
    """Validate FILE and run it to completion with the embedded engine.

    Re-running the same file after an interruption (Ctrl-C twice, a crash, SIGKILL) resumes that
    run: finished activities are not run again and running ones are adopted. An activity whose
    fingerprint (script, image, settings, the contents of what it read) matches a succeeded
    one of an earlier run of the state dir is not run again: its outputs are restored and it
    ends `cached` (docs/caching.md).
    """
    raise typer.Exit(
        run_file(
            file,
            state_dir,
            data_dir,
            new=new,
            quiet=quiet,
            as_json=as_json,
            verbose=verbose,
            no_cache=no_cache,
            dry_run=dry_run,
        )
    )


@command()
def resume(
    workflow_ids: Annotated[
        list[int] | None,
        typer.Argument(help="Workflow ids [default: every unfinished one].", min=1),
    ] = None,
    state_dir: StateDirOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Resume interrupted workflows of a state dir: adopt running activities, finish the rest."""
    import asyncio

    _setup_logging(verbose)
    sdir, repo = _existing_store(state_dir)
    if repo is None:
        ids = []
    elif workflow_ids:
        for wf_id in workflow_ids:
            _find_workflow(repo, str(wf_id))  # an unknown id: exit 2, nothing resumed
        ids = sorted(set(workflow_ids))
    else:
        ids = sorted(w.id for w in repo.list_workflows(limit=10_000, unfinished_only=True))
    if not ids:
        err.print("nothing to resume: no unfinished workflow in " + escape(str(sdir)))
        raise typer.Exit(EXIT_INVALID if workflow_ids else EXIT_OK)
    from akoflow.cli.attached import AttachedRun

    raise typer.Exit(asyncio.run(AttachedRun(repo, sdir, ids, quiet=quiet, as_json=as_json).run()))


@command("retry")
def retry_cmd(
    workflow: Annotated[str, typer.Argument(help="Workflow id or name.", show_default=False)],
    state_dir: StateDirOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    server: ServerOpt = None,
) -> None:
    """Run a failed or cancelled workflow again from where it stopped (succeeded activities
    are kept)."""
    import asyncio

    if url := _server_url(server):
        from akoflow.cli import client

        raise typer.Exit(
            client.retry(url, workflow, state_dir=state_dir, quiet=quiet, as_json=as_json)
        )
    _setup_logging(verbose)
    repo, rec = _open_run(state_dir, workflow)
    sdir = _state_dir(state_dir)
    from akoflow.cli.attached import AttachedRun

    raise typer.Exit(
        asyncio.run(
            AttachedRun(repo, sdir, [rec.id], quiet=quiet, as_json=as_json, retry=True).run()
        )
    )


def _cancel_note(rec: Any) -> str:
    """A run whose cancel is asked and not done: by its engine, or by the next one (a Ctrl-C
    twice, or a cancel of a run no engine owned, left it so)."""
    from akoflow.engine.ownership import owner_alive

    if rec.owner_pid is not None and owner_alive(rec.owner_pid, rec.owner_started):
        return f"[yellow]cancel requested: the engine (pid {rec.owner_pid}) is stopping it[/]"
    return (
        "[yellow]cancel requested; no engine runs it: `akoflow resume "
        f"{rec.id}` or `akoflow cancel {rec.id}` ends it (nothing more runs)[/]"
    )


@command()
def cancel(
    workflow: Annotated[str, typer.Argument(help="Workflow id or name.", show_default=False)],
    state_dir: StateDirOpt = None,
    server: ServerOpt = None,
) -> None:
    """Cancel a run: the engine running it stops its activities. An interrupted run (no
    engine) is cancelled here, stopping what it left running."""
    import asyncio

    if url := _server_url(server):
        from akoflow.cli import client

        raise typer.Exit(client.cancel(url, workflow, state_dir=state_dir))
    from akoflow.engine.ownership import owner_alive

    repo, rec = _open_run(state_dir, workflow)
    sdir = _state_dir(state_dir)
    if rec.state.is_final:
        err.print(f"workflow {rec.id} ({escape(rec.name)}) already ended: {rec.state}")
        raise typer.Exit(EXIT_OK)
    repo.request_cancel(rec.id)
    if rec.owner_pid is not None and owner_alive(rec.owner_pid, rec.owner_started):
        os.kill(rec.owner_pid, signal.SIGUSR1)
        out.print(f"cancel requested: the engine (pid {rec.owner_pid}) is stopping run {rec.id}")
        raise typer.Exit(EXIT_OK)
    from akoflow.cli.attached import AttachedRun

    code = asyncio.run(AttachedRun(repo, sdir, [rec.id], quiet=True, as_json=False).run())
    out.print(f"run {rec.id} cancelled")
    raise typer.Exit(EXIT_OK if code in (EXIT_OK, EXIT_FAILED) else code)


# --------------------------------------------------------------------------- validate, schema


@command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Workflow YAML files.", show_default=False)],
) -> None:
    """Check workflow files and report every error with its path and line. Stores nothing."""
    from akoflow import service

    with _pydantic_plugins_off():
        from akoflow.spec import WorkflowValidationError
    code = EXIT_OK
    for file in files:
        try:
            prepared = service.validate_text(
                service.read_workflow_file(file), service.shown_path(file)
            )
        except WorkflowValidationError as exc:
            _fail_invalid(exc)
            code = EXIT_INVALID
            continue
        n = len(prepared.workflow.activities)
        out.print(
            f"[green]valid[/] {escape(prepared.source)}: {escape(prepared.workflow.name)}, "
            f"{n} activit{'y' if n == 1 else 'ies'}"
        )
    raise typer.Exit(code)


@command()
def schema() -> None:
    """Print the JSON Schema of workflow files."""
    from akoflow.spec import json_schema

    _write_stdout(json.dumps(json_schema(), indent=2) + "\n")


# ---------------------------------------------------------------------------- status, logs


def _find_workflow(repo: Any, ref: str) -> Any:
    """A run by id, or the newest run of that name; else a clear error (exit 2)."""
    if ref.isascii() and ref.isdigit():
        number = int(ref)
        rec = repo.get_workflow(number) if number <= MAX_ID else None  # larger: none such
    elif is_text(ref):
        newest = repo.list_workflows(limit=1, name=ref)  # a name means its newest run
        rec = newest[0] if newest else None
    else:
        rec = None  # bytes that are not text: no workflow name is
    if rec is None:
        err.print(f"[bold red]error:[/] no workflow {escape(shown(ref))}")
        raise typer.Exit(EXIT_INVALID)
    return rec


def _open_run(state_dir: Path | None, ref: str) -> tuple[Any, Any]:
    """The repository and one run of the state dir, or a clear error (exit 2)."""
    sdir, repo = _existing_store(state_dir)
    if repo is None:
        err.print(f"no runs yet in {escape(str(sdir))}")
        raise typer.Exit(EXIT_INVALID)
    return repo, _find_workflow(repo, ref)


def _write_stdout(text: str) -> None:
    """Text on stdout; a reader that went away (``| head``) ends the output, quietly."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_gone()


def _stdout_gone() -> None:
    # Nothing more can be shown; leave as `cat | head` does, without a traceback (later
    # flushes of what is buffered would fail again).
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise typer.Exit(EXIT_OK)


def _write_output(path: Path, write: Callable[[Path], object]) -> None:
    """Write an export to ``path``; a path that cannot be written (a directory, a missing
    parent, a full disk, no permission) is a clear error (exit 2)."""
    if path.is_dir():
        err.print(f"[bold red]error:[/] {escape(str(path))} is a directory; give a file name")
        raise typer.Exit(EXIT_INVALID)
    try:
        write(path)
    except OSError as exc:
        err.print(f"[bold red]error:[/] cannot write {escape(str(path))}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_INVALID) from None


@command()
def status(
    workflow: Annotated[
        str | None, typer.Argument(help="Workflow id or name [default: list recent runs].")
    ] = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option(help="How many runs to list.", min=0)] = 20,
    show_all: Annotated[
        bool,
        typer.Option(
            "--all", help="Every activity of the run (else 100: those not succeeded first)."
        ),
    ] = False,
    server: ServerOpt = None,
) -> None:
    """List recent runs, or show one run's activities."""
    from akoflow.cli.progress import STATUS_ROWS, RunRow, print_runs, print_status, styled

    if url := _server_url(server):
        from akoflow.cli import client

        raise typer.Exit(
            client.status(
                url, workflow, state_dir=state_dir, as_json=as_json, limit=limit, show_all=show_all
            )
        )
    sdir, repo = _existing_store(state_dir)
    if repo is None:
        err.print(f"no runs yet in {escape(str(sdir))}")
        raise typer.Exit(EXIT_OK if workflow is None else EXIT_INVALID)
    if workflow is None:
        runs = []
        for w in repo.list_workflows(limit=min(limit, MAX_ID)):
            counts = repo.activity_counts(w.id)
            done = sum(v for k, v in counts.items() if k.is_final)
            runs.append(
                RunRow(
                    w.id,
                    w.name,
                    str(w.state),
                    w.created_at,
                    w.started_at,
                    w.finished_at,
                    done,
                    sum(counts.values()),
                )
            )
        print_runs(out, runs, as_json=as_json)
        return
    rec = _find_workflow(repo, workflow)
    if as_json:
        out.print_json(json.dumps(_run_json(repo, rec.id)))
        return
    out.print(f"[bold]workflow[/] [bold cyan]{escape(rec.name)} #{rec.id}[/] ", styled(rec.state))
    if rec.cancel_requested and not rec.state.is_final:
        out.print(_cancel_note(rec))
    out.print(f"[dim]data: {escape(rec.data_dir)}[/]")
    counts = repo.activity_counts(rec.id)
    # A big run: its counts and the rows shown, never every row (100,000: 1.5 s).
    rows = repo.list_activities(rec.id) if show_all else repo.status_picks(rec.id, STATUS_ROWS)
    print_status(out, rows, sum(counts.values()) - len(rows), counts)
    if not rec.state.is_final:
        _print_holds(repo, rec.id)


def _print_holds(repo: Any, wf_id: int) -> None:
    from akoflow.cli.progress import hold_line

    for hold in _holds(repo, wf_id):
        out.print(hold_line(hold))


@command()
def prov(
    workflow: Annotated[str, typer.Argument(help="Workflow id or name.", show_default=False)],
    fmt: Annotated[
        str,
        typer.Option("--format", "-f", help="json (PROV-JSON), provn (PROV-N) or ttl (Turtle)."),
    ] = "json",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file [default: stdout].")
    ] = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Export a run's provenance as W3C PROV: attempts, the files they read (used) and
    wrote (generated), runtimes as agents, with times, nodes, images, resources and placement
    decisions. Says on stderr how the file accesses were known (observed, or inferred from
    timing where they cannot be observed: ambiguous files then list their candidates)."""
    from akoflow.provenance.prov_export import FORMATS, serialize, workflow_document

    if fmt not in FORMATS:
        err.print(f"unknown format {escape(fmt)!r}: use one of {', '.join(FORMATS)}")
        raise typer.Exit(EXIT_INVALID)
    repo, rec = _open_run(state_dir, workflow)
    text = serialize(workflow_document(repo, rec.id), fmt)
    if output is None:
        _write_stdout(text if text.endswith("\n") else text + "\n")
    else:
        _write_output(output, lambda path: path.write_text(text, encoding="utf-8"))
        err.print(f"wrote {escape(str(output))}")
    # How the file lineage was known (also the plan's akoflow:provenanceMechanism).
    mechanism = repo.provenance_mechanism(rec.id) or "not recorded (an older AkôFlow ran it)"
    err.print(f"file accesses of run {rec.id}: {escape(mechanism)}")
    unsure = len(repo.list_ambiguous_files(rec.id))
    if unsure:  # no wasGeneratedBy for these: say so where people look
        err.print(
            f"{unsure} file version{'s' if unsure > 1 else ''} ambiguous: candidates but no "
            "generator (akoflow:candidate, akoflow:ambiguity says why)"
        )


@command()
def crate(
    workflow: Annotated[str, typer.Argument(help="Workflow id or name.", show_default=False)],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to write the crate to.")
    ] = Path("crate"),
    data: Annotated[
        bool,
        typer.Option(
            "--data/--no-data",
            help="Copy the files the run used and generated into the crate (else reference "
            "them by file:// URI).",
        ),
    ] = True,
    state_dir: StateDirOpt = None,
) -> None:
    """Write a run as a Workflow Run RO-Crate: the workflow, the run and each activity as
    actions with the files they used and generated."""
    from akoflow.provenance.crate import write_crate

    if os.path.lexists(output) and not output.is_dir():
        err.print(
            f"[bold red]error:[/] {escape(str(output))} exists and is not a directory; "
            "choose another --output"
        )
        raise typer.Exit(EXIT_INVALID)
    if output.is_dir() and any(output.iterdir()):
        err.print(
            f"[bold red]error:[/] {escape(str(output))} exists and is not empty; "
            "choose another --output"
        )
        raise typer.Exit(EXIT_INVALID)
    repo, rec = _open_run(state_dir, workflow)
    try:
        write_crate(repo, rec.id, output, include_data=data)
    except OSError as exc:
        where = exc.filename or output
        err.print(f"[bold red]error:[/] cannot write {escape(str(where))}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_INVALID) from None
    err.print(f"wrote {escape(str(output))}/ro-crate-metadata.json")


@command()
def report(
    workflow: Annotated[str, typer.Argument(help="Workflow id or name.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path(
        "report.html"
    ),
    state_dir: StateDirOpt = None,
) -> None:
    """Write a self-contained HTML report of a run (DAG, timeline of activities on their
    runtimes and nodes, durations, CPU and memory, failures); it needs no network to open."""
    from akoflow.report import render

    repo, rec = _open_run(state_dir, workflow)
    html = render(repo, rec.id)
    _write_output(output, lambda path: path.write_text(html, encoding="utf-8"))
    err.print(f"wrote {escape(str(output))}")


@command()
def logs(
    workflow: Annotated[str, typer.Argument(help="Workflow id or name.", show_default=False)],
    activity: Annotated[str, typer.Argument(help="Activity name.", show_default=False)],
    attempt: Annotated[int | None, typer.Option(help="Attempt [default: the last].", min=1)] = None,
    stream: Annotated[
        LogStream | None,
        typer.Option(help="stdout or stderr [default: both, in order written]."),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new output.")
    ] = False,
    state_dir: StateDirOpt = None,
    server: ServerOpt = None,
) -> None:
    """Print the captured output of an activity (from the state store, or a server's)."""
    stream_name = stream.value if stream is not None else None
    if url := _server_url(server):
        from akoflow.cli import client

        raise typer.Exit(
            client.logs(
                url,
                workflow,
                activity,
                state_dir=state_dir,
                attempt=attempt,
                stream=stream_name,
                follow=follow,
            )
        )

    repo, rec = _open_run(state_dir, workflow)
    act = repo.get_activity(rec.id, activity) if is_text(activity) else None
    if act is None:
        err.print(
            f"[bold red]error:[/] workflow {rec.id} has no activity {escape(shown(activity))}"
        )
        raise typer.Exit(EXIT_INVALID)
    number = attempt or act.attempt
    if number > MAX_ID:
        err.print(f"[bold red]error:[/] {escape(act.name)} has no attempt {number}")
        raise typer.Exit(EXIT_INVALID)
    last = 0

    def show_new() -> None:
        nonlocal last
        for row_id, chunk in repo.read_logs(
            act.id, attempt=number, stream=stream_name, after_id=last
        ):
            last = row_id
            target = sys.stderr if chunk.stream == "stderr" and stream is None else sys.stdout
            try:
                target.write(chunk.data)
                target.flush()
            except BrokenPipeError:
                if target is sys.stdout:
                    _stdout_gone()

    while True:
        show_new()
        if not follow:
            return
        current = repo.get_activity(rec.id, activity)
        if current is not None and current.state.is_final and current.attempt == number:
            show_new()  # one more read: the engine stores the last output before the state
            return
        time.sleep(0.5)


# ---------------------------------------------------------------------------- server mode


@command("server")
def server_cmd(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8080,
    state_dir: StateDirOpt = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(help="Allow browser calls from this origin (repeatable) [default: none]."),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run the engine as a service with a REST API (upstream-compatible; OpenAPI at
    /openapi.json). Unfinished workflows of the state dir are resumed at start."""
    from akoflow.server.run import serve
    from akoflow.server.token import Token

    _setup_logging(True)
    sdir = _state_dir(state_dir)
    # Created private (before the token file goes in), and a database it cannot use is a
    # clear error here rather than a failed start inside the web server.
    _open_repository(sdir).close()
    from akoflow.errors import SettingError
    from akoflow.gc.retention import RetentionError, settings
    from akoflow.notify import settings as notify_settings

    try:
        settings()  # AKOFLOW_RETENTION: a value that is no duration stops the start here
        notify_settings.load()  # AKOFLOW_NOTIFY_*, AKOFLOW_PUBLIC_URL: the same
    except (RetentionError, SettingError) as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_INVALID) from None

    def announce(token: Token) -> None:
        if token.created:  # the only time the token is ever shown
            out.print(
                f"API token (stored in {escape(token.source)}, mode 0600; shown only now):\n"
                f"  {token.value}"
            )
        elif token.source == "env":
            out.print("API token: from AKOFLOW_API_TOKEN")
        else:
            out.print(f"API token: in {escape(token.source)}")
        out.print(f"AkôFlow server on http://{host}:{port}  (state: {escape(str(sdir))})")

    serve(
        state_dir=sdir,
        host=host,
        port=port,
        cors_origins=cors_origin or (),
        log_level="debug" if verbose else "info",
        announce=announce,
    )


@command()
def submit(
    file: Annotated[Path, typer.Argument(help="Workflow YAML file.", show_default=False)],
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Follow the run to its end, like `run`.")
    ] = False,
    server: ServerOpt = None,
    state_dir: StateDirOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Send FILE to a server (default http://127.0.0.1:8080) to run there. With --wait: the
    progress view and exit codes of `akoflow run`."""
    from akoflow.cli import client

    url = client.server_url(server, required=True)
    assert url is not None
    raise typer.Exit(
        client.submit(url, file, state_dir=state_dir, wait=wait, quiet=quiet, as_json=as_json)
    )


runtimes_app = typer.Typer(
    help="Runtimes of a server and their health; `runtimes check NAME` checks one's setup.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(runtimes_app, name="runtimes")


@runtimes_app.callback()
def runtimes(
    ctx: typer.Context,
    server: ServerOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Runtimes of a server and their health (secret settings shown as ***)."""
    if ctx.invoked_subcommand is not None:
        return
    from akoflow.cli import client

    url = client.server_url(server, required=True)
    assert url is not None
    raise typer.Exit(client.runtimes(url, state_dir=state_dir, as_json=as_json))


@runtimes_app.command("check")
@_clean_errors
def runtimes_check(
    name: Annotated[str, typer.Argument(help="Runtime name (local, docker, hpc-x, k8s-y...).")],
    image: Annotated[
        str | None,
        typer.Option("--image", help="Docker: also check that this image is on the daemon."),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds each step may take.", min=1, max=600)
    ] = 20.0,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Check a runtime's setup step by step (settings as they resolve, with secrets ***; then
    for HPC the ssh config, host key, login, sinfo -p QUEUE, sbatch, MOUNT_PATH and rsync;
    docker: daemon, API version, --image; Kubernetes: API, TLS, token, namespace,
    permissions; local: bash, cgroups; singularity: the launcher). Each step shows ✓ or ✗ with
    the fix. Exit 0 when every step passed, 1 otherwise, 2 for a name that is no runtime."""
    if url := _server_url(server):
        from akoflow.cli import client

        raise typer.Exit(
            client.check_runtime(url, name, state_dir=state_dir, image=image, as_json=as_json)
        )
    import asyncio

    from akoflow.cli.checks import render
    from akoflow.runtimes.checks import UnknownRuntimeName, check_runtime

    _setup_logging(False)
    try:
        report = asyncio.run(check_runtime(name, image=image, timeout=timeout))
    except UnknownRuntimeName as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(EXIT_INVALID) from None
    if as_json:
        out.print_json(json.dumps(report.to_json()))
    else:
        render(report.to_json(), out.console)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FAILED)


def _version(value: bool) -> None:
    if value:
        print_version()
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    pass


def app_for(args: Sequence[str]) -> typer.Typer:
    """``app`` with only the command that ``args`` start with (its exact name), else ``app``:
    typer builds the parameters of every command (a pydantic adapter each) before it runs one,
    a tenth of `akoflow status`. Nothing else differs: the root's options must come before a
    command, and a name that is none (a typo) still meets the whole list."""
    if not args:
        return app
    commands = [c for c in app.registered_commands if _command_name(c) == args[0]]
    groups = [g for g in app.registered_groups if g.name == args[0]]
    if not commands and not groups:
        return app
    only = _new_app()
    only.registered_callback = app.registered_callback
    only.registered_commands = commands
    only.registered_groups = groups
    return only


def _command_name(info: CommandInfo) -> str | None:
    if info.name:
        return info.name
    return None if info.callback is None else get_command_name(info.callback.__name__)


# ------------------------------------------------------------------- delete, gc, files


def _housekeeping_result(doc: dict[str, Any], as_json: bool) -> int:
    from akoflow.cli import housekeeping

    if as_json:
        out.print_json(json.dumps(doc))
    else:
        housekeeping.render(doc, out.console)
    return int(housekeeping.exit_code(doc))


def _client_failed(exc: Exception) -> typer.Exit:
    from akoflow.cli import client

    assert isinstance(exc, client.ClientError)
    return typer.Exit(client._report(exc))


DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Say what would be deleted; remove nothing.")
]


@command()
def delete(
    workflow_ids: Annotated[
        list[int], typer.Argument(help="Ids of finished runs.", min=1, max=MAX_ID)
    ],
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    state_dir: StateDirOpt = None,
    server: ServerOpt = None,
) -> None:
    """Delete finished runs: their records, logs, attempt files and data dir (one given with
    --data-dir outside the state dir is left alone), and what they left on their runtimes
    (HPC attempt and run dirs, Kubernetes volumes, Jobs and pods, containers). Says how many
    bytes were freed. A run that is still running is refused (exit 1); a runtime out of
    reach keeps its part for the next `akoflow gc`."""
    from akoflow.cli import housekeeping

    ids = list(dict.fromkeys(workflow_ids))
    if url := _server_url(server):
        from akoflow.cli import client

        if dry_run:
            err.print("[bold red]error:[/] --dry-run is not available with --server")
            raise typer.Exit(EXIT_INVALID)
        try:
            doc = housekeeping.delete_remote(url, ids, state_dir=state_dir)
        except client.ClientError as exc:
            raise _client_failed(exc) from None
        raise typer.Exit(_housekeeping_result(doc, as_json))
    sdir, repo = _existing_store(state_dir)
    if repo is None:
        err.print(f"no runs yet in {escape(str(sdir))}")
        raise typer.Exit(EXIT_INVALID)
    for wf_id in ids:  # an unknown id: exit 2 before anything is deleted
        _find_workflow(repo, str(wf_id))
    _setup_logging(False)
    doc = housekeeping.delete_local(repo, sdir, ids, dry_run=dry_run)
    raise typer.Exit(_housekeeping_result(doc, as_json))


@command()
def gc(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Delete finished runs that ended longer ago than this (30d, 12h, 1d12h, 90m).",
            show_default=False,
        ),
    ] = None,
    keep_last: Annotated[
        int | None,
        typer.Option(
            "--keep-last",
            help="Keep the N newest finished runs of each workflow name.",
            min=0,
            show_default=False,
        ),
    ] = None,
    dry_run: DryRunOpt = False,
    compact: Annotated[
        bool,
        typer.Option(
            "--compact",
            help="Once, for a database an older AkôFlow made: VACUUM it so that later gcs "
            "give space back in small steps (stop the server first: it holds writes).",
        ),
    ] = False,
    as_json: JsonOpt = False,
    state_dir: StateDirOpt = None,
    server: ServerOpt = None,
) -> None:
    """Delete finished runs by age (--older-than) and/or count (--keep-last), as `delete`
    does; remove run dirs a killed deletion left; try again what earlier deletions left on
    runtimes that were out of reach; give the database's free pages back. With neither
    option no run is deleted. Unfinished runs are never touched."""
    from akoflow.cli import housekeeping
    from akoflow.gc import GcOptions

    try:
        options = GcOptions.parse(older_than, keep_last, dry_run)
    except ValueError as exc:
        err.print(f"[bold red]error:[/] --older-than: {escape(str(exc))}")
        raise typer.Exit(EXIT_INVALID) from None
    if url := _server_url(server):
        from akoflow.cli import client

        if compact:
            err.print("[bold red]error:[/] --compact works on a local state dir only")
            raise typer.Exit(EXIT_INVALID)
        try:
            doc = housekeeping.gc_remote(url, options, older_than, state_dir=state_dir)
        except client.ClientError as exc:
            raise _client_failed(exc) from None
        raise typer.Exit(_housekeeping_result(doc, as_json))
    sdir, repo = _existing_store(state_dir)
    if repo is None:
        err.print(f"no runs yet in {escape(str(sdir))}: nothing to delete")
        raise typer.Exit(EXIT_OK)
    _setup_logging(False)
    if compact:
        _compact(repo)
    doc = housekeeping.gc_local(repo, sdir, options)
    raise typer.Exit(_housekeeping_result(doc, as_json))


def _compact(repo: Any) -> None:
    from akoflow.gc import records, vacuum

    busy = records.live_owners(repo)
    if busy:
        wf_id, pid = busy[0]
        err.print(
            f"[bold red]error:[/] process {pid} is running workflow {wf_id}: a VACUUM would "
            "hold its writes; run --compact while no engine runs"
        )
        raise typer.Exit(EXIT_FAILED)
    freed = vacuum.compact(repo)
    err.print(f"compacted the database: {freed:,} bytes given back; later gcs give back in steps")


@command()
def files(
    workflow: Annotated[str, typer.Argument(help="Workflow id or name.", show_default=False)],
    as_json: JsonOpt = False,
    state_dir: StateDirOpt = None,
    server: ServerOpt = None,
) -> None:
    """List a run's data-dir files: path, the activity that generated it, size, and the
    recorded SHA-256 of the version on disk (--json: every field, with each path's
    percent-encoded form, which `akoflow download --encoded` takes)."""
    from akoflow.cli import housekeeping

    if url := _server_url(server):
        from akoflow.cli import client

        try:
            rows = housekeeping.files_remote(url, workflow, state_dir=state_dir)
        except client.ClientError as exc:
            raise _client_failed(exc) from None
    else:
        repo, rec = _open_run(state_dir, workflow)
        rows = housekeeping.files_local(repo, rec)
    housekeeping.show_files(rows, as_json=as_json)


@command()
def download(
    workflow: Annotated[str, typer.Argument(help="Workflow id or name.", show_default=False)],
    path: Annotated[
        str, typer.Argument(help="A file of its data dir (as listed by `akoflow files`).")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Where to write it ('-': stdout) [default: its name, here]."
        ),
    ] = None,
    encoded: Annotated[
        bool,
        typer.Option(
            "--encoded", help="PATH is percent-encoded (pathEncoded of `akoflow files --json`)."
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace OUTPUT if it exists.")] = False,
    state_dir: StateDirOpt = None,
    server: ServerOpt = None,
) -> None:
    """Download one file of a run's data dir (streamed; links are never followed, nothing
    outside the data dir is served). A name that is not UTF-8 is given as the shell passes
    it, or percent-encoded with --encoded."""
    from akoflow.cli import client, housekeeping

    target = output or housekeeping.default_output(path, encoded=encoded)
    to_stdout = str(target) == "-"
    if not to_stdout:
        if target.is_dir():
            target = target / housekeeping.default_output(path, encoded=encoded)
        if os.path.lexists(target) and not force:
            err.print(
                f"[bold red]error:[/] {escape(shown(str(target)))} exists; --force replaces it"
            )
            raise typer.Exit(EXIT_INVALID)
    url = _server_url(server)
    rec = None if url else _open_run(state_dir, workflow)[1]
    try:
        with housekeeping.Output(None if to_stdout else target) as sink:
            if url:
                housekeeping.download_remote(
                    url, workflow, path, sink, state_dir=state_dir, encoded=encoded
                )
            else:
                housekeeping.download_local(rec, path, sink, encoded=encoded)
    except client.ClientError as exc:
        raise _client_failed(exc) from None
    except ValueError as exc:
        err.print(f"[bold red]error:[/] workflow {rec.id if rec else workflow}: {escape(str(exc))}")
        raise typer.Exit(EXIT_INVALID) from None
    except OSError as exc:
        err.print(f"[bold red]error:[/] cannot write {escape(str(target))}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_INVALID) from None
    if not to_stdout:
        err.print(f"wrote {escape(shown(str(target)))}")


# ------------------------------------------------------------------- resident engine

resident_app = typer.Typer(
    help="A resident engine: commands start in ~0.05 s instead of ~0.3 s (no imports).",
    no_args_is_help=True,
)
app.add_typer(resident_app, name="resident")


@resident_app.command("start")
def resident_start(
    idle: Annotated[
        str,
        typer.Option("--idle", help="Stop after this long without commands (e.g. 30m, 2h)."),
    ] = "30m",
) -> None:
    """Start a resident engine for this state dir ($AKOFLOW_HOME, else ~/.akoflow): from
    then on each `akoflow` command of this user, from a process like this one (same user,
    cgroup, limits, interpreter...), runs in a copy of it that has the engine imported
    already. Output, records and exit codes are those of the command run on its own."""
    from akoflow.resident import control
    from akoflow.spec.quantities import parse_duration

    try:
        idle_seconds = parse_duration(idle)
    except ValueError as exc:
        err.print(f"[bold red]error:[/] --idle: {escape(str(exc))}")
        raise typer.Exit(EXIT_INVALID) from None
    if idle_seconds <= 0:
        err.print("[bold red]error:[/] --idle: must be more than 0")
        raise typer.Exit(EXIT_INVALID)
    directory = resident_dir()
    try:
        status = control.start(directory, idle_seconds)
    except control.ResidentError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None
    err.print(
        f"resident engine started (process {status['pid']}); it stops after "
        f"{escape(idle)} without commands, or with `akoflow resident stop`"
    )


@resident_app.command("stop")
def resident_stop(
    wait: Annotated[
        float,
        typer.Option("--wait", help="Seconds to wait for the commands it runs to end.", min=0),
    ] = 10.0,
) -> None:
    """Stop the resident engine: new commands run on their own at once; the ones it runs go on
    to their end (it leaves then). Exit 1 when none was running."""
    from akoflow.resident import control

    reply = control.stop(resident_dir(), wait)
    if reply is None:
        err.print("no resident engine runs for this state dir")
        raise typer.Exit(EXIT_FAILED)
    if reply["left"]:
        err.print(f"resident engine stopped (process {reply['pid']})")
    else:
        err.print(
            f"resident engine (process {reply['pid']}) takes no new commands; it leaves when "
            f"the {reply['running']} it runs end"
        )


@resident_app.command("status")
def resident_status(as_json: JsonOpt = False) -> None:
    """Whether a resident engine runs for this state dir, since when, and what it ran.
    Exit 1 when none runs."""
    import time

    from akoflow.resident import control

    reply = control.ask(resident_dir(), "status")
    if as_json:
        out.print_json(json.dumps(reply))
    elif reply is None:
        err.print("no resident engine runs for this state dir")
    else:
        up = time.time() - float(reply["started"])
        out.print(
            f"resident engine: process {reply['pid']}, up {up:.0f} s, {reply['served']} commands "
            f"run, {reply['running']} running, stops after {reply['idle_seconds']:.0f} s idle"
            + (" (stopping)" if reply["stopping"] else "")
        )
        if reply.get("refused"):
            out.print(
                f"{reply['refused']} commands ran on their own; the last because "
                f"{escape(str(reply['last_refusal']))} (see docs/resident.md)",
                soft_wrap=True,
            )
    raise typer.Exit(EXIT_OK if reply is not None else EXIT_FAILED)


def resident_dir() -> str:
    from akoflow.resident import wire

    return wire.resident_dir()
