"""Run a workflow from Python with the embedded engine: :func:`run`, :func:`run_async`, and
the :class:`Run` they return.

The path is ``akoflow run``'s: the workflow is validated and stored by :mod:`akoflow.service`
(one run per workflow text and state dir: running an interrupted one again resumes it), then
the :class:`~akoflow.engine.Engine` attaches and runs it, and its end (or why it cannot come)
is awaited as the CLI awaits it. Ctrl-C cancels as in the CLI: the first stops the running
activities and records the run CANCELLED, a second leaves at once with them running (``akoflow
resume`` adopts them); either then raises :class:`KeyboardInterrupt`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from akoflow.api.errors import RunBusy, RunInterrupted
from akoflow.api.status import ActivityStatus, Attempt, LogChunk, RunStatus
from akoflow.api.workflow import Workflow, load
from akoflow.states import WorkflowState

if TYPE_CHECKING:
    from rich.console import Console

    from akoflow.engine import Engine
    from akoflow.service import Prepared
    from akoflow.store import Repository

__all__ = ["Run", "run", "run_async"]

WorkflowSource = Workflow | str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class Run(RunStatus):
    """A run of the state dir :attr:`state_dir`, as it was when :func:`run` returned; its
    logs, attempts and files are read from the state dir when asked for."""

    state_dir: Path = Path()

    def logs(self, activity: str, *, attempt: int | None = None, stream: str | None = None) -> str:
        """The captured output of an activity's attempt (default: its last), stdout and stderr
        in the order written, or only ``stream`` (``"stdout"`` or ``"stderr"``)."""
        return "".join(chunk.data for chunk in self.log_chunks(activity, attempt, stream))

    def log_chunks(
        self, activity: str, attempt: int | None = None, stream: str | None = None
    ) -> list[LogChunk]:
        """:meth:`logs` as chunks, each saying its attempt and stream."""
        with self._store() as repo:
            act = self._activity_record(repo, activity)
            number = attempt if attempt is not None else act.attempt
            rows = repo.read_logs(act.id, attempt=number, stream=stream)
        return [LogChunk(c.attempt, c.stream, c.data) for _, c in rows]

    def attempts(self, activity: str) -> list[Attempt]:
        """Every attempt of an activity, the first first."""
        with self._store() as repo:
            rows = repo.list_attempts(self._activity_record(repo, activity).id)
        return [
            Attempt(
                number=a.number,
                state=a.state,
                runtime=a.runtime,
                node=a.node,
                exit_code=a.exit_code,
                reason=a.reason,
                submitted_at=a.submitted_at,
                started_at=a.started_at,
                finished_at=a.finished_at,
                cpu_seconds=a.cpu_seconds,
                max_rss_bytes=a.max_rss_bytes,
            )
            for a in rows
        ]

    def files(self, activity: str | None = None) -> list[Path]:
        """Files of the data dir, sorted: every one, or those ``activity`` wrote (by the
        run's file lineage) that are still there. Names are any bytes, as on disk
        (``os.fsencode(path)`` gives them back)."""
        if activity is None:
            return sorted(_walk(self.data_dir))
        with self._store() as repo:
            act = self._activity_record(repo, activity)
            written = {
                f.path
                for f in repo.list_files(self.id)
                if f.activity_id == act.id and f.role == "generated" and not f.location
            }
        paths = (self.data_dir / name for name in written)
        return sorted(p for p in paths if p.is_file())

    @contextlib.contextmanager
    def _store(self) -> Iterator[Repository]:
        from akoflow import service

        repo = service.open_repository(self.state_dir)
        try:
            yield repo
        finally:
            repo.close()

    def _activity_record(self, repo: Repository, name: str) -> Any:
        act = repo.get_activity(self.id, name)
        if act is None:
            raise KeyError(f"run {self.id} has no activity {name!r}")
        return act


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            yield Path(dirpath, name)


def snapshot(repo: Repository, state_dir: Path, wf_id: int) -> Run:
    """The stored run as a :class:`Run`."""
    rec = repo.get_workflow(wf_id)
    if rec is None:
        raise KeyError(f"no run {wf_id} in {state_dir}")
    acts = {
        a.name: ActivityStatus(
            name=a.name,
            runtime=a.runtime,
            state=a.state,
            attempts=a.attempt,
            exit_code=a.exit_code,
            reason=a.reason,
            node=a.node,
            started_at=a.started_at,
            finished_at=a.finished_at,
        )
        for a in repo.list_activities(wf_id)
    }
    return Run(
        id=rec.id,
        name=rec.name,
        state=rec.state,
        data_dir=Path(rec.data_dir),
        started_at=rec.started_at,
        finished_at=rec.finished_at,
        activities=acts,
        state_dir=state_dir,
    )


# ---------------------------------------------------------------------------- control


_LEFT = "left the run with its activities running: `akoflow resume` continues it"


class _Left(Exception):
    """A second Ctrl-C: the caller leaves at once (raised as KeyboardInterrupt outside the
    event loop, which treats a KeyboardInterrupt inside a task as fatal to itself)."""


class _Control:
    """What Ctrl-C, a closed terminal and ``akoflow cancel`` do to a run, as in the CLI."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console
        self.engine: Engine | None = None
        self.wf_id: int | None = None
        self.interrupts = 0
        self.cancelling = False
        self.leave: asyncio.Future[None] | None = None

    def cancel(self) -> None:
        self.cancelling = True
        if self.engine is not None and self.wf_id is not None:
            self.engine.cancel(self.wf_id)  # not attached yet: cancelled once it is

    def interrupt(self) -> None:
        """First: cancel the run. Second: leave at once, what runs left running."""
        self.interrupts += 1
        if self.interrupts == 1:
            self.cancel()
            if self.console is not None:
                self.console.print(
                    "[yellow]cancelling: stopping running activities (Ctrl-C again to leave "
                    "them running)[/]"
                )
        elif self.leave is not None and not self.leave.done():
            self.leave.set_result(None)

    def hangup(self) -> None:
        if not self.cancelling:
            self.cancel()

    def cancel_requests(self) -> None:
        if self.engine is not None:
            self.engine.apply_cancel_requests()


@contextlib.contextmanager
def _loop_signals(control: _Control, *, interrupts: bool) -> Iterator[None]:
    """The CLI's signal handling on the running loop, while the run runs (main thread only);
    the handlers found before are put back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    wanted: dict[signal.Signals, Callable[[], None]] = {
        signal.SIGUSR1: control.cancel_requests  # `akoflow cancel` from another terminal
    }
    if interrupts:
        wanted |= {
            signal.SIGINT: control.interrupt,
            signal.SIGTERM: control.interrupt,
            signal.SIGHUP: control.hangup,
        }
    before: dict[signal.Signals, Any] = {}
    for sig, handler in wanted.items():
        previous = signal.getsignal(sig)
        try:
            loop.add_signal_handler(sig, handler)
        except (RuntimeError, ValueError, NotImplementedError):  # a loop without signals
            continue
        before[sig] = previous
    try:
        yield
    finally:
        for sig, previous in before.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)


# ------------------------------------------------------------------------------ running


async def _drive(
    workflow: WorkflowSource,
    state_dir: str | os.PathLike[str] | None,
    data_dir: str | os.PathLike[str] | None,
    new: bool,
    console: Console | None,
    control: _Control,
) -> Run:
    """``akoflow run``'s steps (cli.local_run.run_file and cli.attached.AttachedRun), showing
    nothing unless a ``console`` is given."""
    from akoflow import service
    from akoflow.cli.attached import Stranded, ended_or_stranded
    from akoflow.cli.local_run import _data_dir_problem
    from akoflow.engine import Engine, WorkflowBusy
    from akoflow.engine.loops import EngineFailure

    prepared = _prepare(workflow)
    data = _data_dir(data_dir, _data_dir_problem)
    sdir = _state_dir(state_dir)
    repo = service.open_repository(sdir)
    try:
        claim = service.claim_run(repo, sdir, prepared, data_dir=data, new=new)
        if claim.busy_pid is not None:
            raise RunBusy(
                claim.wf_id,
                claim.busy_pid,
                f"workflow {claim.wf_id} ({prepared.workflow.name}) is being run by process "
                f"{claim.busy_pid}",
            )
        if console is not None and claim.resumed:
            console.print(f"resuming interrupted run #{claim.wf_id} of {prepared.workflow.name}")
        engine = Engine(repo, sdir)
        control.engine, control.wf_id = engine, claim.wf_id
        control.leave = asyncio.get_running_loop().create_future()
        try:
            await engine.start()
            try:
                wf = await engine.attach(claim.wf_id)
            except WorkflowBusy as exc:
                raise RunBusy(claim.wf_id, None, str(exc)) from None
            if control.cancelling:
                engine.cancel(claim.wf_id)
            ended = asyncio.ensure_future(ended_or_stranded(engine, claim.wf_id))
            try:
                await _await_end(engine, wf, ended, control, console)
            except EngineFailure as exc:
                raise RunInterrupted(
                    claim.wf_id,
                    f"{exc}; run {claim.wf_id} is interrupted, not lost: `akoflow resume "
                    f"{claim.wf_id}` continues it",
                ) from None
            except Stranded as exc:
                raise RunInterrupted(
                    claim.wf_id,
                    f"run {claim.wf_id} cannot go on: {exc}. What runs there was neither "
                    f"stopped nor recorded as ended: fix it, then `akoflow resume "
                    f"{claim.wf_id}` follows it",
                ) from None
            if console is not None:
                from akoflow.cli import progress

                progress.summary(wf, console)
                progress.failure_details(wf, repo, console)
        finally:
            await engine.stop()
        return snapshot(repo, sdir, claim.wf_id)
    finally:
        repo.close()


async def _await_end(
    engine: Engine,
    wf: Any,
    ended: asyncio.Future[WorkflowState],
    control: _Control,
    console: Console | None,
) -> None:
    """The run's end; with a ``console``, the CLI's live view meanwhile. A second Ctrl-C
    leaves at once (KeyboardInterrupt); this task cancelled (an interrupted ``await``)
    cancels the run and waits for its end first, as a first Ctrl-C does."""
    assert control.leave is not None
    either: set[asyncio.Future[Any]] = {ended, control.leave}
    shown: asyncio.Future[None] | None = None
    if console is not None:
        from akoflow.cli import progress

        holds = functools.partial(progress.engine_holds, engine, wf)
        shown = asyncio.ensure_future(progress.follow(wf, console, ended, holds))
    try:
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            control.interrupt()
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            raise
        if not ended.done():  # left: the engine stops, what runs goes on
            ended.cancel()
            raise _Left
        ended.result()
    finally:
        if shown is not None:
            await shown if ended.done() else shown.cancel()


def _prepare(workflow: WorkflowSource) -> Prepared:
    if not isinstance(workflow, Workflow):
        workflow = load(workflow)
    return workflow.prepare()


def _state_dir(given: str | os.PathLike[str] | None) -> Path:
    from akoflow import config, service

    try:
        return config.state_dir(None if given is None else Path(given))
    except (RuntimeError, OSError) as exc:  # a symlink loop, a name too long
        raise service.StateError(f"cannot use the state dir {given}: {exc}") from None


def _data_dir(
    given: str | os.PathLike[str] | None, problem_of: Callable[[Path], str | None]
) -> Path | None:
    from akoflow import service

    if given is None:
        return None
    path = Path(given)
    problem = problem_of(path)
    if problem is not None:
        raise service.StateError(f"cannot use the data dir {service.shown_path(path)}: {problem}")
    return path.resolve()


def _console(progress: bool, console: Console | None) -> Console | None:
    if console is not None or not progress:
        return console
    from rich.console import Console

    return Console()


async def run_async(
    workflow: WorkflowSource,
    state_dir: str | os.PathLike[str] | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    new: bool = False,
    progress: bool = False,
    console: Console | None = None,
) -> Run:
    """Run a workflow to its end with the embedded engine, as ``akoflow run`` does, and
    return the :class:`Run`. See :func:`run` for the arguments.

    Cancelling the awaiting task (an interrupted cell in Jupyter) cancels the run: running
    activities are stopped and it is recorded CANCELLED before the cancellation goes on.
    ``akoflow cancel`` from elsewhere cancels it too (when awaited on the main thread).
    """
    shown = _console(progress, console)
    control = _Control(shown)
    with _loop_signals(control, interrupts=False):
        return await _drive(workflow, state_dir, data_dir, new, shown, control)


def run(
    workflow: WorkflowSource,
    state_dir: str | os.PathLike[str] | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    new: bool = False,
    progress: bool = False,
    console: Console | None = None,
) -> Run:
    """Run a workflow to its end with the embedded engine, as ``akoflow run`` does, and
    return the :class:`Run` (whatever its state: check :attr:`Run.ok`).

    ``workflow``: a :class:`Workflow`, a workflow file's path, or YAML text. ``state_dir``:
    where runs are recorded (default ``$AKOFLOW_HOME``, else ``~/.akoflow``); the same
    workflow interrupted there before is resumed (``new=True``: a new run). ``data_dir``: the
    run's shared data dir (default: in the state dir). ``progress=True`` shows the CLI's live
    view and summary (a terminal, or a notebook through rich), or on ``console``.

    Raises :class:`~akoflow.WorkflowValidationError` (nothing stored, nothing run),
    :class:`~akoflow.RunBusy`, :class:`~akoflow.RunInterrupted`,
    :class:`~akoflow.StateError`, and :class:`KeyboardInterrupt` after Ctrl-C.
    """
    shown = _console(progress, console)
    control = _Control(shown)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_here(workflow, state_dir, data_dir, new, shown, control)
    # A loop already runs in this thread (Jupyter): the run gets a thread of its own.
    return _run_in_thread(workflow, state_dir, data_dir, new, shown, control)


def _run_here(
    workflow: WorkflowSource,
    state_dir: str | os.PathLike[str] | None,
    data_dir: str | os.PathLike[str] | None,
    new: bool,
    console: Console | None,
    control: _Control,
) -> Run:
    async def main() -> Run:
        with _loop_signals(control, interrupts=True):
            return await _drive(workflow, state_dir, data_dir, new, console, control)

    try:
        result = asyncio.run(main())
    except _Left:
        raise KeyboardInterrupt(_LEFT) from None
    if control.interrupts:
        raise KeyboardInterrupt(f"run {result.id} cancelled")
    return result


def _run_in_thread(
    workflow: WorkflowSource,
    state_dir: str | os.PathLike[str] | None,
    data_dir: str | os.PathLike[str] | None,
    new: bool,
    console: Console | None,
    control: _Control,
) -> Run:
    outcome: list[Run] = []
    failure: list[BaseException] = []
    started = threading.Event()
    loops: list[asyncio.AbstractEventLoop] = []

    async def main() -> Run:
        loops.append(asyncio.get_running_loop())
        started.set()
        return await _drive(workflow, state_dir, data_dir, new, console, control)

    def target() -> None:
        try:
            outcome.append(asyncio.run(main()))
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)
        finally:
            started.set()

    def forward(action: Callable[[], None]) -> None:
        started.wait()
        if loops and not loops[0].is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: nothing to do
                loops[0].call_soon_threadsafe(action)

    worker = threading.Thread(target=target, name="akoflow-run", daemon=True)
    with _thread_signals(lambda: forward(control.cancel_requests)):
        worker.start()
        while worker.is_alive():
            try:
                worker.join(0.2)
            except KeyboardInterrupt:
                forward(control.interrupt)
    if failure:
        if isinstance(failure[0], _Left):
            raise KeyboardInterrupt(_LEFT) from None
        raise failure[0]
    if control.interrupts:
        raise KeyboardInterrupt(f"run {outcome[0].id} cancelled")
    return outcome[0]


@contextlib.contextmanager
def _thread_signals(on_cancel_request: Callable[[], None]) -> Iterator[None]:
    """``akoflow cancel`` (SIGUSR1) reaches a run on another thread (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGUSR1, lambda _sig, _frame: on_cancel_request())
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)
