"""A run followed by the command that started it (``akoflow run``, ``resume``, ``retry``,
``cancel`` of a run no engine owns): an engine in this process attached to the runs, each
followed to its end with its progress shown.

Ctrl-C (or SIGTERM) cancels: the running activities are stopped and the run is recorded
cancelled; a second one leaves at once (a later ``akoflow resume`` adopts what still runs). A
closed terminal (SIGHUP) cancels as the first Ctrl-C does. ``akoflow cancel`` from another
terminal records its request and pokes this process (SIGUSR1). When the store refuses a step
for want of room, the engine stops and the run waits until there is room, then a new engine
adopts it (:meth:`AttachedRun.hold_for_room`); a Ctrl-C meanwhile leaves at once.
"""

from __future__ import annotations

import asyncio
import functools
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

from akoflow.cli.console import err, escape, leave_now, out, shown
from akoflow.cli.local_run import EXIT_FAILED, EXIT_OK, _EarlyInterrupts, _run_json
from akoflow.engine import Engine, WorkflowBusy
from akoflow.engine.loops import EngineFailure, StoreShortOfRoom
from akoflow.errors import AkoflowError
from akoflow.states import WorkflowState
from akoflow.store.room import short_of_room, wait_for_room

ROOM_RETRY_FIRST = 0.5  # s before a new engine tries again a run it could not take for room
ROOM_RETRY_MAX = 10.0
STRANDED_CHECK = 1.0  # s between looks at whether a run can still go on


class Stranded(AkoflowError, RuntimeError):
    """The run's live work is on runtimes waiting cannot fix (:meth:`Engine.stranded`)."""


async def ended_or_stranded(engine: Engine, wf_id: int) -> WorkflowState:
    """The run's end, or :class:`Stranded` when it cannot come while this command waits (a
    silent wait would be a hang)."""
    wait = asyncio.ensure_future(engine.wait(wf_id))
    try:
        while True:
            done, _ = await asyncio.wait({wait}, timeout=STRANDED_CHECK)
            if done:
                return wait.result()
            reason = engine.stranded(wf_id)
            if reason is not None:
                raise Stranded(reason)
    finally:
        if not wait.done():
            wait.cancel()


async def _room_after(delay: float, directory: Path) -> None:
    """Return ``delay`` s from now, once the store's ``directory`` has room."""
    await asyncio.sleep(delay)
    await wait_for_room(directory)


class AttachedRun:
    """Runs ``ids`` of the store ``repo`` (state dir ``sdir``) in this process, to their
    ends: ``asyncio.run(AttachedRun(...).run())`` is the command's exit code (0 when every
    run succeeded)."""

    def __init__(
        self,
        repo: Any,
        sdir: Path,
        ids: list[int],
        *,
        quiet: bool,
        as_json: bool,
        retry: bool = False,
        early: _EarlyInterrupts | None = None,
    ) -> None:
        self.repo, self.sdir, self.ids = repo, sdir, ids
        self.quiet, self.as_json, self.retry, self.early = quiet, as_json, retry, early
        self.engine = Engine(repo, sdir)
        self.engine_stopped = False
        self.store_dir = Path(repo.path).parent
        self.interrupts = 0
        self.cancelling = False
        self.left = False  # the user left while a run waited for room
        self.following: int | None = None  # the run attached or followed now
        self.index = -1  # its place in ``ids``
        self.followed: Any = None  # its WorkflowRun, once attached
        self.code = EXIT_OK  # the exit code of the runs ended so far
        self.stop_code: int | None = None  # every outcome decided: the command's exit code
        self.reported: set[int] = set()  # runs whose document or summary was printed
        # Set while the run waits for room under the state dir: a Ctrl-C then leaves at once.
        self.holding: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop  # the running one, once :meth:`run` starts

    # ------------------------------------------------------------------ signals

    def cancel(self, wf_id: int) -> None:
        try:
            self.engine.cancel(wf_id)
        except Exception as exc:
            # No room to record it: the engine stopped (the run is held), and the next one
            # cancels the run once there is room (`cancelling`).
            if not short_of_room(exc, self.store_dir):
                raise

    def cancel_all(self) -> None:
        self.cancelling = True
        for wf_id in self.ids:
            self.cancel(wf_id)  # those not attached yet are cancelled when they are

    def decided(self) -> int | None:
        """The command's exit code once every run's outcome is stored, else None. Read when
        a signal is handled: the last run's end is stored in the turn its ``done`` is set,
        so from that turn on a signal cancels nothing, and a second leaves with that code
        (the turns until :meth:`run` learns it are no window)."""
        if self.stop_code is not None:
            return self.stop_code
        if self.index != len(self.ids) - 1 or self.followed is None:
            return None
        done = self.followed.done
        if done is None or not done.done() or done.cancelled() or done.exception() is not None:
            return None
        return self.code if done.result() is WorkflowState.SUCCEEDED else EXIT_FAILED

    def leave(self, code: int) -> None:
        """Leave at once with ``code``: the run followed, if not reported yet, reported as
        stored (``--json``), the log lines still queued written (a bounded wait)."""
        try:
            if self.following is not None and self.following not in self.reported:
                self._report_unended(self.following)
        finally:
            leave_now(code)

    def on_interrupt(self) -> None:  # Ctrl-C, SIGTERM
        code = self.decided()
        if code is not None:
            # Nothing is left to cancel: the engine stops (or is about to); a second leaves.
            self.interrupts += 1
            if self.interrupts >= 2:
                self.leave(code)
            err.print("[yellow]stopping the engine (Ctrl-C again to leave now)[/]")
            return
        if self.holding is not None:  # no engine runs: nothing to cancel, nothing is stored
            if not self.holding.done():
                self.holding.set_result(None)
            return
        self.interrupts += 1
        if self.interrupts == 1:
            self.cancel_all()  # first: printing cannot get in its way
            # After the stops' first turn: with --quiet, printing first imports rich (60-80
            # ms here), and the running activities were stopped that much later.
            self.loop.call_soon(
                err.print,
                "[yellow]cancelling: stopping running activities (Ctrl-C again to leave "
                "them running and exit)[/]",
            )
        else:
            # Leave immediately; a later `akoflow resume` adopts what still runs.
            self.leave(EXIT_FAILED)

    def on_hangup(self) -> None:
        # The terminal closed: cancel as the first Ctrl-C does, but never leave at once (the
        # kernel and the shell may each send one); the output is gone, the run is recorded.
        # Once every outcome is stored, nothing is left to cancel.
        if not self.cancelling and self.decided() is None:
            self.cancel_all()
            err.print("[yellow]terminal closed (SIGHUP): cancelling the run[/]")

    def on_cancel_request(self) -> None:  # SIGUSR1
        if self.decided() is None:  # a late `akoflow cancel` changes no outcome
            self.engine.apply_cancel_requests()

    def _install_handlers(self) -> None:
        self.loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.loop.add_signal_handler(sig, self.on_interrupt)
        self.loop.add_signal_handler(signal.SIGHUP, self.on_hangup)
        if self.early is not None and (self.early.count or self.early.hangups):
            for wf_id in self.ids:  # attached as `akoflow cancel` attaches a run no one owns
                self.repo.request_cancel(wf_id)
            if self.early.count:
                self.on_interrupt()
            else:
                self.on_hangup()
        # `akoflow cancel` from another terminal records the request, then pokes us.
        self.loop.add_signal_handler(signal.SIGUSR1, self.on_cancel_request)

    # ------------------------------------------------------------------ room

    async def hold_for_room(self, failure: StoreShortOfRoom, wf_id: int) -> Any:
        """The store cannot take the run's next step: stop the engine, wait for room, and go
        on with a new one, as `akoflow resume` would; the run attached to it, or None if
        the user left instead (Ctrl-C)."""
        err.print(
            f"[yellow]⏸ {escape(str(failure))}. Run {wf_id} waits until there is room (its "
            f"running activities go on); Ctrl-C leaves it for `akoflow resume {wf_id}`[/]"
        )
        delay = 0.0
        while True:
            self.engine_stopped = True
            await self.engine.stop()
            self.holding = self.loop.create_future()
            room = asyncio.ensure_future(_room_after(delay, failure.directory))
            await asyncio.wait({room, self.holding}, return_when=asyncio.FIRST_COMPLETED)
            self.holding.cancel()
            self.holding = None
            if not room.done():
                room.cancel()
                self.left = True
                err.print(
                    f"[bold red]error:[/] run {wf_id} is interrupted, not lost: its running "
                    f"activities go on, and `akoflow resume {wf_id}` continues it once there "
                    "is room"
                )
                return None
            self.engine = Engine(self.repo, self.sdir)
            self.engine_stopped = False
            await self.engine.start()
            rec = self.repo.get_workflow(wf_id)
            # A retry whose reopening was refused is still failed or cancelled: retry it.
            reopen = rec is not None and rec.state in (
                WorkflowState.FAILED,
                WorkflowState.CANCELLED,
            )
            again = self.engine.retry if self.retry and reopen else None
            try:
                wf = await (again or self.engine.attach)(wf_id)
            except Exception as exc:  # taken again before the run was: wait again
                if not short_of_room(exc, failure.directory):
                    raise
                # Not at once again: the room may be short on another disk than the store's
                # (a data dir given elsewhere), where the probe does not look.
                delay = min(max(delay * 2, ROOM_RETRY_FIRST), ROOM_RETRY_MAX)
                continue
            err.print(f"room again under the state dir: run {wf_id} goes on")
            return wf

    # ------------------------------------------------------------------ one run

    async def _attach(self, wf_id: int) -> Any:
        """The run attached to the engine; None with a message printed when it cannot be
        (busy, unknown, its data dir unusable, or the user left while it waited for room)."""
        attach = self.engine.retry if self.retry else self.engine.attach
        try:
            return await attach(wf_id)
        except (WorkflowBusy, KeyError, ValueError) as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}")
            return None
        except (OSError, sqlite3.Error) as exc:
            if not short_of_room(exc, self.store_dir):
                if isinstance(exc, sqlite3.Error):
                    raise
                # Its data dir or run dir cannot be made (now a file, ...).
                where = f"{shown(str(exc.filename))}: " if exc.filename else ""
                err.print(
                    f"[bold red]error:[/] cannot run workflow {wf_id}: {escape(where)}"
                    f"{exc.strerror or exc}"
                )
                return None
            # The disk filled since the run was stored (claimed): held as one filling
            # mid-run is, not ended as if the database could not be used.
            return await self.hold_for_room(StoreShortOfRoom.stopped_by(exc, self.store_dir), wf_id)

    async def _follow(self, wf: Any, wf_id: int) -> tuple[Any, WorkflowState | None]:
        """The run followed to its end (across holds for room): it and its final state, or
        None when it cannot end while this command waits (said why)."""
        while True:
            self.followed = wf
            if self.cancelling:
                self.cancel(wf_id)
            assert wf.done is not None
            ended = asyncio.ensure_future(ended_or_stranded(self.engine, wf_id))
            if not self.quiet and not self.as_json:
                from akoflow.cli import progress  # rich's live views: only when shown

                await progress.follow(
                    wf,
                    out.console,
                    ended,
                    functools.partial(progress.engine_holds, self.engine, wf),
                )
            try:
                return wf, await ended
            except StoreShortOfRoom as exc:
                wf = await self.hold_for_room(exc, wf_id)
                if wf is None:
                    return None, None
            except EngineFailure as exc:  # logged with its traceback where it happened
                err.print(
                    f"[bold red]error:[/] {escape(str(exc))}; run {wf_id} is interrupted, "
                    f"not lost: `akoflow resume {wf_id}` continues it"
                )
                return wf, None
            except Stranded as exc:
                err.print(
                    f"[bold red]error:[/] run {wf_id} cannot go on: {escape(str(exc))}. "
                    "What runs there was neither stopped nor recorded as ended: fix it, "
                    f"then `akoflow resume {wf_id}` follows it"
                )
                return wf, None

    def _report_unended(self, wf_id: int) -> None:
        """With ``--json``, the document of a run this command could not follow to its end
        (busy elsewhere, stranded, interrupted, left with a second Ctrl-C or while it waited
        for room), as stored: its state says it did not end, and a script reading stdout gets
        a document."""
        self.reported.add(wf_id)
        if not self.as_json:
            return
        try:
            if self.repo.get_workflow(wf_id) is None:  # an unknown id: said on stderr
                return
            doc = _run_json(self.repo, wf_id)
        except (OSError, sqlite3.Error) as exc:  # the store cannot be read now: said why
            err.print(f"[bold red]error:[/] cannot read run {wf_id} for --json: {escape(str(exc))}")
            return
        out.print_json(json.dumps(doc))

    def _report(self, wf: Any, wf_id: int) -> None:
        self.reported.add(wf_id)
        if self.as_json:
            out.print_json(json.dumps(_run_json(self.repo, wf_id)))
        elif not self.quiet:
            from akoflow.cli import progress

            progress.summary(wf, out.console)
            progress.failure_details(wf, self.repo, out.console)

    # ------------------------------------------------------------------ all

    async def run(self) -> int:
        self._install_handlers()
        code = EXIT_FAILED  # what a Ctrl-C during the stop leaves with if the runs raised
        try:
            code = await self._run_all()
        finally:
            self._stopping(code)
            if not self.engine_stopped:
                await self.engine.stop()
            self._stopped(code)
        return code

    def _stopping(self, code: int) -> None:
        """Every run's outcome is decided and stored (``code``): a signal from here on changes
        none (:meth:`decided`). The engine stops (the runs' last lineage, their
        notifications: bounded waits); a second Ctrl-C or SIGTERM leaves without waiting,
        with that outcome."""
        self.stop_code = code

    def _stopped(self, code: int) -> None:
        """Until the command exits (the loop closes first): a KeyboardInterrupt raised there
        ended a succeeded run with exit code 130."""

        def leave(_signum: int, _frame: object) -> None:
            leave_now(code)

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
            self.loop.remove_signal_handler(sig)
        signal.signal(signal.SIGINT, leave)
        signal.signal(signal.SIGTERM, leave)
        # Handlers, not SIG_IGN: a process started from here keeps the default actions.
        signal.signal(signal.SIGHUP, lambda _signum, _frame: None)
        signal.signal(signal.SIGUSR1, lambda _signum, _frame: None)

    async def _run_all(self) -> int:
        await self.engine.start()
        for index, wf_id in enumerate(self.ids):
            self.index, self.following, self.followed = index, wf_id, None
            wf = await self._attach(wf_id)
            if wf is None:
                self._report_unended(wf_id)
                if self.left:
                    return EXIT_FAILED
                self.code = EXIT_FAILED
                continue
            wf, state = await self._follow(wf, wf_id)
            if state is None:  # interrupted, stranded, or left while it waited for room
                self._report_unended(wf_id)
                return EXIT_FAILED
            self._report(wf, wf_id)
            if state is not WorkflowState.SUCCEEDED:
                self.code = EXIT_FAILED
        return self.code


__all__ = ["AttachedRun", "Stranded", "ended_or_stranded"]
