"""The CPU time and peak memory of a docker attempt are recorded, from its container's cgroup
(copied by the wrapper once the command has ended), and a stop still reaches the command and
keeps its own exit status now that the wrapper waits for it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from akoflow.states import WorkflowState
from tests.docker_runtime.test_docker_engine import Recorder, job_spec, runtime
from tests.docker_support.dockerd import IMAGE, PrivateDockerd
from tests.e2e.test_engine_inprocess import engine_with

# The shell burns CPU until its own user + system time (from /proc, in clock ticks of 1/100 s:
# independent of the cgroup) reaches half a second; dd holds a 48 MiB buffer it fills.
BURN = (
    "      run: |\n"
    "        t=0\n"
    "        while [ $t -lt 50 ]; do\n"
    "          read -r _ _ _ _ _ _ _ _ _ _ _ _ _ u s _ < /proc/self/stat\n"
    "          t=$((u + s))\n"
    "        done\n"
    "        echo burnt $t\n"
)
HOLD = "      run: dd if=/dev/zero of=/dev/null bs=48M count=1\n"
MiB = 1 << 20


def test_cpu_time_and_peak_memory_of_each_attempt_are_recorded(
    dockerd: PrivateDockerd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    monkeypatch.setenv("DOCKER_PULL_POLICY", "never")
    text = (
        f"name: usage\nspec:\n  image: {IMAGE}\n  runtime: docker\n  activities:\n"
        f"    - name: burn\n{BURN}    - name: hold\n{HOLD}    - name: idle\n      run: 'true'\n"
    )

    async def scenario() -> None:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 60) is WorkflowState.SUCCEEDED
            used = {}
            for name in ("burn", "hold", "idle"):
                (attempt,) = repo.list_attempts(wf.activities[name].id)
                used[name] = (attempt.cpu_seconds, attempt.max_rss_bytes)
        burn_cpu, burn_mem = used["burn"]
        hold_cpu, hold_mem = used["hold"]
        idle_cpu, idle_mem = used["idle"]
        assert None not in (burn_cpu, burn_mem, hold_cpu, hold_mem, idle_cpu, idle_mem), used
        # The shell's own 0.5 s, and little more (the wrapper and tini cost milliseconds).
        assert 0.5 <= burn_cpu < 0.8, used  # type: ignore[operator]
        assert idle_cpu < 0.2, used  # type: ignore[operator]
        # dd's buffer, and little more; a `true` holds a few MiB at most.
        assert 48 * MiB <= hold_mem < 72 * MiB, used  # type: ignore[operator]
        assert idle_mem < 16 * MiB and burn_mem < 16 * MiB, used  # type: ignore[operator]

    asyncio.run(scenario())


@pytest.mark.parametrize("init", ["true", "false"])
def test_a_stop_reaches_the_command_which_keeps_its_own_exit_status(
    dockerd: PrivateDockerd, tmp_path: Path, init: str
) -> None:
    """The command runs as the wrapper's child: the wrapper passes a stop's SIGTERM on (with
    tini as PID 1, or as PID 1 itself) and exits with the command's status, not its own."""
    script = "trap 'echo got TERM; exit 7' TERM\necho ready > ready\nsleep 60 & wait\n"

    async def scenario() -> None:
        events = Recorder()
        rt = runtime(dockerd.host, events, INIT=init, PULL_POLICY="never")
        await rt.start()
        try:
            job = job_spec(tmp_path, f"trapper{init}", script)
            handle = await rt.submit(job)
            ready = job.data_dir / "ready"
            for _ in range(400):  # the trap is set: at most 20 s
                if ready.exists():
                    break
                await asyncio.sleep(0.05)
            await rt.cancel(job.key, handle)
            await asyncio.wait_for(events.event.wait(), 20)
            outcome = events.finished[job.key]
            assert (outcome.exit_code, outcome.reason) == (7, "cancelled")
            logs = await rt.logs(job.key, handle, {})
            assert logs["stdout"] == b"got TERM\n"
            assert outcome.cpu_seconds is not None and outcome.max_rss_bytes is not None
        finally:
            await rt.stop()

    asyncio.run(scenario())
