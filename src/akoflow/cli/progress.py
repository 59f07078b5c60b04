"""Terminal views of a run: live progress while it runs, and the summary at the end."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console, Group, RenderableType
from rich.control import strip_control_codes
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from akoflow.humanize import fmt_duration
from akoflow.states import ActivityState, WorkflowState

if TYPE_CHECKING:  # `akoflow status` reads the store: it must not pay for the engine's import
    import asyncio

    from akoflow.engine import Engine, WorkflowRun
    from akoflow.store import Repository

A = ActivityState


class ActivityView(Protocol):
    """What the views read of an activity: the engine's ActivityRun, or a client's snapshot
    of one on a server (``akoflow submit --wait``)."""

    @property
    def name(self) -> str: ...
    @property
    def runtime(self) -> str: ...
    @property
    def state(self) -> ActivityState: ...
    @property
    def attempt(self) -> int: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def finished_at(self) -> float | None: ...
    @property
    def node(self) -> str | None: ...


class RunView(Protocol):
    """What the views read of a workflow run (WorkflowRun, or a client's snapshot)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def state(self) -> WorkflowState: ...
    @property
    def data_dir(self) -> Path: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def finished_at(self) -> float | None: ...
    @property
    def activities(self) -> Mapping[str, ActivityView]: ...


def run_json(
    *,
    id: int,
    name: str,
    state: str,
    data_dir: str,
    started_at: float | None,
    finished_at: float | None,
    activities: Iterable[ActivityView],
    holds: Sequence[Hold] = (),
) -> dict[str, Any]:
    """The one JSON shape of a run (``run --json``, ``status ID --json``, the client's);
    ``holds``: the NOT_READY runtimes holding its work."""
    return {
        "workflow": {
            "id": id,
            "name": name,
            "state": str(state),
            "data_dir": data_dir,
            "started_at": started_at,
            "finished_at": finished_at,
        },
        "activities": [
            {
                "name": a.name,
                "runtime": a.runtime,
                "state": str(a.state),
                "attempts": a.attempt,
                "exit_code": a.exit_code,
                "reason": a.reason,
                "node": a.node,
                "started_at": a.started_at,
                "finished_at": a.finished_at,
                "duration": a.finished_at - a.started_at
                if a.started_at is not None and a.finished_at is not None
                else None,
            }
            for a in activities
        ],
        "holds": [
            {
                "runtime": h.runtime,
                "reason": h.reason,
                "not_ready_for": h.waited,
                "activities": h.activities,
            }
            for h in holds
        ],
    }


STATE_STYLE: dict[str, str] = {
    A.PENDING: "dim",
    A.READY: "cyan",
    A.SUBMITTED: "blue",
    A.RUNNING: "bold blue",
    A.SUCCEEDED: "green",
    A.FAILED: "bold red",
    A.CANCELLED: "yellow",
    A.SKIPPED: "magenta",
    A.CACHED: "dim green",
    WorkflowState.SUCCEEDED: "bold green",
    WorkflowState.FAILED: "bold red",
    WorkflowState.CANCELLED: "bold yellow",
    WorkflowState.RUNNING: "bold blue",
    WorkflowState.PENDING: "dim",
}
ALL_ROWS_UP_TO = 25  # beyond this many activities, the live view shows counts + running ones
REFRESH_SECONDS = 0.25


def elapsed(act: ActivityView, now: float) -> float | None:
    if act.started_at is None:
        return None
    end = act.finished_at if act.state.is_final and act.finished_at else now
    return max(0.0, end - act.started_at)


def styled(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def counts_line(wf: RunView) -> Text:
    return state_counts(wf.activities.values())


def state_counts(acts: Iterable[ActivityView] | Mapping[ActivityState, int]) -> Text:
    """``succeeded 998  running 2``: how many activities are in each state (of ``acts``, or
    counted already)."""
    counts = acts if isinstance(acts, Mapping) else Counter(a.state for a in acts)
    text = Text()
    for state in ActivityState:
        if counts.get(state):
            if text:
                text.append("  ")
            text.append(f"{state} {counts[state]}", style=STATE_STYLE[state])
    return text


def _activity_table(acts: Sequence[ActivityView], now: float, *, final: bool) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("activity")
    table.add_column("runtime")
    table.add_column("state")
    table.add_column("attempt", justify="right")
    table.add_column("time", justify="right")
    if final:
        table.add_column("exit", justify="right")
        table.add_column("reason")
    for act in acts:
        row: list[RenderableType] = [
            escape(act.name),
            escape(act.runtime),
            styled(act.state),
            str(act.attempt or "-"),
            fmt_duration(elapsed(act, now)),
        ]
        if final:
            row += [
                "-" if act.exit_code is None else str(act.exit_code),
                Text(act.reason or "", style="dim"),
            ]
        table.add_row(*row)
    return table


STATUS_ROWS = 100  # `akoflow status ID` rows before it picks (``--all`` shows every one)


def status_table(acts: Sequence[ActivityView], now: float) -> Table:
    """The activities table of `akoflow status ID` (local store or server)."""
    table = Table(box=None, header_style="bold")
    for col in ("activity", "runtime", "state", "attempt", "time", "exit", "reason"):
        table.add_column(col)
    for a in acts:
        table.add_row(
            escape(a.name),
            escape(a.runtime),
            styled(a.state),
            str(a.attempt or "-"),
            fmt_duration(elapsed(a, now)),
            "-" if a.exit_code is None else str(a.exit_code),
            escape(a.reason or ""),
        )
    return table


class Printer(Protocol):
    def print(self, *objects: Any) -> None: ...


class JsonPrinter(Printer, Protocol):
    def print_json(self, json: str) -> None: ...


def print_status(
    console: Printer,
    rows: Sequence[ActivityView],
    hidden: int,
    counts: Mapping[ActivityState, int],
) -> None:
    """The status of a run: its ``rows`` shown (every one, or the store's picks beyond
    :data:`STATUS_ROWS`: ``Repository.status_picks``, over the API ``?picked=true``) and,
    when ``hidden`` ones were left out, its ``counts`` by state."""
    if hidden:
        console.print(state_counts(counts))
    console.print(status_table(rows, time.time()))
    if hidden:
        console.print(
            Text(
                f"... {hidden} more activities not shown (succeeded ones first): "
                "--all for every row, --json for everything",
                style="dim",
            )
        )


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run as `akoflow status` lists it (local store or server)."""

    id: int
    name: str
    state: str
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    done: int  # activities in a final state
    total: int


def print_runs(console: JsonPrinter, runs: Iterable[RunRow], *, as_json: bool) -> None:
    """The list of `akoflow status`: a table, or JSON."""
    if as_json:
        keys = ("id", "name", "state", "created_at", "started_at", "finished_at")
        console.print_json(json.dumps([{k: getattr(r, k) for k in keys} for r in runs]))
        return
    table = Table(box=None, header_style="bold")
    for col in ("id", "name", "state", "activities", "started", "duration"):
        table.add_column(col)
    for r in runs:
        started = r.started_at
        dur = ((r.finished_at or time.time()) - started) if started else None
        table.add_row(
            str(r.id),
            escape(r.name),
            styled(r.state),
            f"{r.done}/{r.total}",
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "-",
            fmt_duration(dur),
        )
    console.print(table)


@dataclass(frozen=True, slots=True)
class Hold:
    """A NOT_READY runtime that holds activities of a run (READY, waiting for it)."""

    runtime: str
    reason: str | None
    waited: float | None  # seconds NOT_READY, when known
    activities: int


HoldSource = Callable[[], Sequence[Hold]]


def holds_from(
    waiting: Mapping[str, int], status: Mapping[str, tuple[str | None, float | None]]
) -> list[Hold]:
    """The holds of a run with ``waiting`` READY activities per runtime."""
    return [
        Hold(name, *status[name], count)
        for name, count in sorted(waiting.items())
        if name in status
    ]


def engine_holds(engine: Engine, wf: RunView) -> list[Hold]:
    """The holds of ``wf`` as ``engine`` sees its runtimes now."""
    now = time.monotonic()
    status: dict[str, tuple[str | None, float | None]] = {}
    for name, slot in engine.runtimes.slots.items():
        if not slot.ready:
            since = slot.not_ready_since
            status[name] = (slot.reason, None if since is None else now - since)
    if not status:  # nothing held: no pass over the activities (the live view asks 4 times/s)
        return []
    waiting = Counter(a.runtime for a in wf.activities.values() if a.state is A.READY)
    return holds_from(waiting, status)


def hold_line(hold: Hold) -> Text:
    n = hold.activities
    text = Text.assemble(
        ("⏸ runtime ", "yellow"), (hold.runtime, "bold yellow"), (" NOT_READY", "bold yellow")
    )
    if hold.waited is not None:
        text.append(f" for {fmt_duration(hold.waited)}", style="yellow")
    text.append(f", holding {n} activit{'y' if n == 1 else 'ies'}", style="yellow")
    if hold.reason:
        text.append(f": {hold.reason}", style="yellow")
    return text


def live_view(wf: RunView, holds: Sequence[Hold] = ()) -> RenderableType:
    now = time.time()
    started = wf.started_at or now
    header = Text.assemble(
        ("workflow ", "bold"),
        (f"{wf.name} #{wf.id}", "bold cyan"),
        f"  {fmt_duration(now - started)}  ",
    )
    acts = list(wf.activities.values())
    held = [hold_line(h) for h in holds]
    if len(acts) <= ALL_ROWS_UP_TO:
        return Group(header, counts_line(wf), *held, _activity_table(acts, now, final=False))
    running = [a for a in acts if a.state.is_live][:10]
    parts: list[RenderableType] = [header, counts_line(wf), *held]
    if running:
        parts.append(_activity_table(running, now, final=False))
    return Group(*parts)


def summary(wf: RunView, console: Console, *, max_rows: int = 50) -> None:
    now = time.time()
    acts = list(wf.activities.values())
    total = (wf.finished_at or now) - (wf.started_at or now)
    console.print(
        Text.assemble(
            ("workflow ", "bold"),
            (f"{wf.name} #{wf.id} ", "bold cyan"),
            styled(wf.state),
            f" in {fmt_duration(total)}",
        )
    )
    console.print(counts_line(wf))
    if len(acts) > max_rows:
        problems = [a for a in acts if not a.state.is_success]
        if problems:
            console.print(_activity_table(problems[:max_rows], now, final=True))
            if len(problems) > max_rows:
                console.print(f"... and {len(problems) - max_rows} more not succeeded")
    else:
        console.print(_activity_table(acts, now, final=True))
    console.print(Text(f"data: {wf.data_dir}", style="dim"))


def output_gone(console: Console) -> bool:
    """The console's terminal or pipe went away (see ``cli.console.GuardedStream``)."""
    return bool(getattr(console.file, "dead", False))


async def follow(
    wf: RunView,
    console: Console,
    done: asyncio.Future[Any],
    holds: HoldSource | None = None,
) -> None:
    """Live view on a terminal; one line per finished activity elsewhere (CI logs). A NOT_READY
    runtime that holds work shows with its reason and for how long (elsewhere: one line each
    time a runtime starts holding work or its reason changes). Returns early, drawing nothing
    more, when the output went away (the run goes on)."""
    import asyncio

    def current() -> Sequence[Hold]:
        return holds() if holds is not None else ()

    if console.is_terminal:
        with Live(live_view(wf), console=console, auto_refresh=False, transient=True) as live:
            while not done.done() and not output_gone(console):
                live.update(live_view(wf, current()), refresh=True)
                await asyncio.wait({done}, timeout=REFRESH_SECONDS)
        return
    # Looked up by name at each pass: a client's snapshot replaces its activities.
    unreported = list(wf.activities)
    told: dict[str, str | None] = {}  # runtime -> the reason last shown
    while not output_gone(console):
        finished = done.done()
        now_held = current()
        for hold in now_held:
            if hold.runtime not in told or told[hold.runtime] != hold.reason:
                told[hold.runtime] = hold.reason
                console.print(hold_line(hold))
        for gone in set(told) - {h.runtime for h in now_held}:
            del told[gone]
        acts, now, left = wf.activities, time.time(), []
        ended = []
        for name in unreported:
            act = acts.get(name)
            if act is not None and act.state.is_final:
                ended.append(act)
            else:
                left.append(name)
        unreported = left
        if ended:
            print_ended(console, ended, now)
        if finished:
            return
        await asyncio.wait({done}, timeout=REFRESH_SECONDS * 2)


def ended_line(act: ActivityView, now: float) -> tuple[str, str, str, str]:
    """The state, name, duration and failure reason of an ended activity."""
    reason = f" {act.reason}" if act.state is A.FAILED and act.reason else ""
    return act.state, act.name, f" ({fmt_duration(elapsed(act, now))})", reason


def print_ended(console: Console, acts: Sequence[ActivityView], now: float) -> None:
    """One line per ended activity. Without colours (a log file, a pipe) the lines are
    written as they are, in one write: rich's rendering of a line cost ~0.1 ms, 10 s of the
    engine's loop in a run of 100,000 (the engine and this view share it)."""
    lines = [ended_line(act, now) for act in acts]
    if console.color_system is None:
        text = "".join(f"{state} {name}{took}{why}\n" for state, name, took, why in lines)
        console.file.write(strip_control_codes(text))
        console.file.flush()
        return
    for state, name, took, why in lines:
        line = Text.assemble(styled(state), " ", name, (took, "dim"))
        if why:
            line.append(why, style="red")
        console.print(line)


def failure_details(
    wf: WorkflowRun, repo: Repository, console: Console, *, most: int = 3, lines: int = 5
) -> None:
    """The last lines of stderr of the first failed activities, and how to see the rest."""
    failed = [a for a in wf.activities.values() if a.state is A.FAILED][:most]
    for act in failed:
        chunks = repo.read_logs(act.id, attempt=act.attempt, stream="stderr")
        tail = "".join(c.data for _, c in chunks).rstrip("\n").splitlines()[-lines:]
        console.print(
            Text.assemble(
                ("✗ ", "bold red"),
                (act.name, "bold"),
                f" ({act.reason or 'failed'}); ",
                (f"akoflow logs {wf.id} {act.name}", "cyan"),
            )
        )
        for line in tail:
            console.print(Text("    " + line, style="dim"))
