"""The local runtime's own line of attempts (``{NAME}_QUEUE_AHEAD``).

While attempts are short, the engine hands the local runtime more than MAX_PARALLEL of them;
the runtime starts the next as soon as one ends. What must hold: never more than MAX_PARALLEL
run at once; an attempt's timeout counts from its start, not from its wait in the line; a
cancel reaches the attempts in line (they never run); an engine killed with SIGKILL while
attempts wait in line runs each of them once after a resume. Each test checks that attempts
really waited in the line (else it would prove nothing).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from akoflow.config import RuntimeConfig
from akoflow.engine import Engine
from akoflow.runtimes.local import LocalRuntime
from akoflow.states import ActivityState, WorkflowState
from akoflow.store import AttemptRecord
from tests.conftest import Akoflow, cli_env, start_cli, wait_for
from tests.e2e.test_engine_inprocess import engine_with
from tests.e2e.test_local_trust import Collected
from tests.scenarios import direct_job


def _workflow(acts: list[str]) -> str:
    return "name: line\nspec:\n  activities:\n" + "".join(acts)


def _act(name: str, run: str, extra: str = "") -> str:
    return f"    - name: {name}\n      run: {json.dumps(run)}\n{extra}"


async def _watch_line(engine: Engine, seen: list[int]) -> None:
    """Record the longest line seen (the runtime is there once the engine started it)."""
    while True:
        slot = engine.runtimes.slots.get("local")
        if slot is not None:
            seen[0] = max(seen[0], slot.runtime.line_length)
        await asyncio.sleep(0.001)


def _most_at_once(spans: list[tuple[int, int]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = most = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        now += step
        most = max(most, now)
    return most


def test_the_line_never_runs_more_than_max_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_MAX_PARALLEL", "2")
    n = 120
    text = _workflow(
        [
            _act(f"a{i}", f"s=$(date +%s%N); sleep 0.02; echo $s $(date +%s%N) > span.a{i}")
            for i in range(n)
        ]
    )

    async def scenario() -> None:
        async with engine_with(tmp_path, text) as (_, engine, wf_id):
            seen = [0]
            watch = asyncio.create_task(_watch_line(engine, seen))
            try:
                await engine.attach(wf_id)
                assert await engine.wait(wf_id) is WorkflowState.SUCCEEDED
            finally:
                watch.cancel()
            assert seen[0] > 0, "no attempt waited in the line: this test proves nothing"

    asyncio.run(scenario())
    spans = []
    for i in range(n):
        start, end = (tmp_path / "data" / f"span.a{i}").read_text().split()
        spans.append((int(start), int(end)))
    assert _most_at_once(spans) <= 2


def test_a_timeout_counts_from_the_start_not_from_the_wait_in_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`timed` (timeout 1 s, runs 0.2 s) waits in line behind `long` (1.5 s): it succeeds."""
    monkeypatch.setenv("LOCAL_MAX_PARALLEL", "1")
    acts = [_act(f"t{i}", "true") for i in range(4)]
    acts.append(_act("long", "sleep 1.5; date +%s%N > long.end"))
    acts.append(_act("timed", "date +%s%N > timed.start; sleep 0.2", "      timeout: 1s\n"))
    text = _workflow(acts)
    attempts: list[AttemptRecord] = []

    async def scenario() -> None:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            assert await engine.wait(wf_id) is WorkflowState.SUCCEEDED, [
                (a.name, a.state, a.reason) for a in wf.activities.values()
            ]
            timed = next(a for a in wf.activities.values() if a.name == "timed")
            attempts.extend(repo.list_attempts(timed.id))

    asyncio.run(scenario())
    data = tmp_path / "data"
    # It waited behind `long`, longer than its timeout, and still ran to its end.
    long_end = int((data / "long.end").read_text())
    assert int((data / "timed.start").read_text()) >= long_end
    # Its attempt's start, as stored, is its real start, not when it was handed over (the
    # activity's own started_at is its first submit, as on a batch system).
    (attempt,) = attempts
    assert attempt.started_at is not None and attempt.finished_at is not None
    assert attempt.started_at >= long_end / 1e9 - 0.05
    assert attempt.finished_at - attempt.started_at < 1.0


def test_cancel_reaches_the_attempts_in_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_MAX_PARALLEL", "1")
    acts = [_act(f"t{i}", "true") for i in range(4)]
    acts.append(_act("blocker", "touch blocker.on; sleep 30"))
    acts += [_act(f"w{i}", f"echo run >> count.w{i}") for i in range(6)]
    text = _workflow(acts)
    data = tmp_path / "data"

    async def scenario() -> None:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            for _ in range(3000):
                slot = engine.runtimes.slots["local"]
                if (data / "blocker.on").exists() and slot.runtime.line_length:
                    break
                await asyncio.sleep(0.01)
            assert slot.runtime.line_length > 0, "nothing waited in the line"
            engine.cancel(wf_id)
            assert await engine.wait(wf_id) is WorkflowState.CANCELLED
            states = {a.name: a.state for a in wf.activities.values()}
            assert {states[f"w{i}"] for i in range(6)} == {ActivityState.CANCELLED}
            # Those handed over have an attempt, with no start stored: none started.
            handed = [
                att
                for a in wf.activities.values()
                if a.name.startswith("w")
                for att in repo.list_attempts(a.id)
            ]
            assert handed
            assert [att.started_at for att in handed] == [None] * len(handed)

    asyncio.run(scenario())
    assert not list(data.glob("count.w*"))  # none of them ran


def test_sigkill_with_attempts_in_line_then_resume_runs_each_once(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    acts = [_act(f"t{i}", "true") for i in range(4)]
    acts.append(_act("blocker", "echo run >> count.blocker; sleep 2"))
    acts += [_act(f"w{i}", f"echo run >> count.w{i}") for i in range(6)]
    wf = tmp_path / "line.yaml"
    wf.write_text(_workflow(acts))
    data = tmp_path / "data"
    env = cli_env(LOCAL_MAX_PARALLEL="1")
    engine = start_cli(
        ["run", str(wf), "--quiet", "--state-dir", str(state_dir), "--data-dir", str(data)],
        env=env,
    )
    wait_for(lambda: (data / "count.blocker").exists())
    os.kill(engine.pid, signal.SIGKILL)
    engine.communicate(timeout=10)
    assert not list(data.glob("count.w*"))
    # What the killed engine had handed to the runtime: attempts recorded, none started.
    shown = json.loads(akoflow("status", "1", "--json").stdout)
    handed = [a for a in shown["activities"] if a["name"].startswith("w") and a["attempts"]]
    assert handed, "no attempt waited in the line when the engine was killed"

    res = akoflow("resume", "--json", env=env)
    assert res.returncode == 0, res.stderr + res.stdout
    assert {a["state"] for a in json.loads(res.stdout)["activities"]} == {"succeeded"}
    counts = {p.name: len(p.read_text().splitlines()) for p in data.glob("count.*")}
    assert counts == {"count.blocker": 1} | {f"count.w{i}": 1 for i in range(6)}


class _Starts(Collected):
    """RuntimeEvents that also keep the starts of attempts that waited in the line."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[str] = []

    def job_started(self, key: str) -> None:
        self.started.append(key)


def _until(what: str, check: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait for ``check`` WITHOUT letting the event loop run (as the engine recording a
    batch does not)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what} within {seconds:g} s"
        time.sleep(0.005)


def test_serve_starts_the_next_attempt_while_the_event_loop_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine calls serve() between the attempts of a batch it records: an end read
    there sends the next attempt of the line to the spawner at once, before the event loop
    turns again (without it the spawner idled for the rest of the batch)."""
    monkeypatch.setenv("LOCAL_MAX_PARALLEL", "1")
    first = direct_job(tmp_path, "first", "until [ -e go ]; do sleep 0.01; done", "local", None)
    second = direct_job(tmp_path, "second", "echo ran > second.out", "local", None)

    async def scenario() -> None:
        events = _Starts()
        rt = LocalRuntime("local", RuntimeConfig.from_env("local"), events)
        await rt.start()
        try:
            await rt.submit(first)
            await rt.submit(second)
            assert rt.in_line(second.key) and not rt.in_line(first.key)
            record = Path(str(first.attempt_prefix) + ".exit")
            for _ in range(600):  # the loop sends it; it runs until told to go
                if record.exists() and record.read_bytes().startswith(b"pid "):
                    break
                await asyncio.sleep(0.05)
            (tmp_path / "data" / "go").touch()
            _until("the first attempt ends", lambda: record.read_bytes().startswith(b"exit "))
            rt.serve()  # no await from here on: the loop is held
            assert first.key in events.finished and events.finished[first.key].succeeded
            assert events.started == [second.key] and not rt.in_line(second.key)
            claimed = Path(str(second.attempt_prefix) + ".exit")
            _until("the spawner starts the second attempt", claimed.exists)
            for _ in range(600):  # its end, read by the event loop again
                if second.key in events.finished:
                    break
                await asyncio.sleep(0.05)
            assert events.finished[second.key].succeeded
            assert (tmp_path / "data" / "second.out").read_text() == "ran\n"
        finally:
            await rt.stop()

    asyncio.run(scenario())
