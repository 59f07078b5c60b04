"""The one line per ended activity that ``akoflow run`` prints when its output is not a
terminal (a log file, a pipe, CI): each activity once, in the order they end, written plain
when no colours are shown (rich's rendering of each line cost the engine's loop ~0.1 ms an
activity) and the same text when they are."""

from __future__ import annotations

import asyncio
import io
import re
from dataclasses import dataclass, replace

from rich.console import Console

from akoflow.cli.progress import follow, print_ended
from akoflow.states import ActivityState, WorkflowState

A = ActivityState


@dataclass(frozen=True)
class Act:
    name: str
    state: ActivityState
    reason: str | None = None
    started_at: float | None = 100.0
    finished_at: float | None = 100.25
    runtime: str = "local"
    attempt: int = 1
    exit_code: int | None = None
    node: str | None = None


@dataclass
class Run:
    activities: dict[str, Act]
    id: int = 1
    name: str = "w"
    state: WorkflowState = WorkflowState.RUNNING
    data_dir: str = "/data"
    started_at: float | None = 100.0
    finished_at: float | None = None


ENDED = [
    Act("a", A.SUCCEEDED),
    Act("b", A.FAILED, "exit code 3"),
    Act("c[x]", A.SKIPPED, "dependency b did not succeed", None, None),
    Act("d", A.FAILED, "bad\rline\x07"),
]
PLAIN = (
    "succeeded a (250ms)\nfailed b (250ms) exit code 3\nskipped c[x] (-)\n"
    "failed d (250ms) badline\n"
)


def test_plain_lines_are_written_as_they_are() -> None:
    out = io.StringIO()
    console = Console(file=out, width=20)  # narrow: a plain line is never wrapped
    assert console.color_system is None
    print_ended(console, ENDED, 200.0)
    assert out.getvalue() == PLAIN


def test_coloured_lines_say_the_same() -> None:
    out = io.StringIO()
    console = Console(file=out, color_system="standard", force_terminal=False, width=200)
    print_ended(console, ENDED, 200.0)
    assert "\x1b[" in out.getvalue()
    assert re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue()) == PLAIN


def test_follow_reports_each_ended_activity_once_across_replaced_snapshots() -> None:
    """A client's snapshot replaces its activities at each poll: followed by name."""

    async def scenario() -> str:
        out = io.StringIO()
        console = Console(file=out)
        run = Run({n: Act(n, A.RUNNING) for n in ("x", "y", "z")})
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(follow(run, console, done))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        run.activities = {**run.activities, "y": replace(run.activities["y"], state=A.SUCCEEDED)}
        await asyncio.sleep(0.6)
        run.activities = {n: replace(a, state=A.SUCCEEDED) for n, a in run.activities.items()}
        done.set_result(None)
        await task
        return out.getvalue()

    lines = asyncio.run(scenario()).splitlines()
    assert [line.split()[1] for line in lines] == ["y", "x", "z"]
