"""HPC (SLURM over SSH): a scancel that reaches a job after it completed does not undo its
success.

The engine asks the runtime to stop an attempt (a cancel) whose SLURM job had already
COMPLETED, its end not yet read (the runtime's next squeue had not come). A job a scancel
reaches while it runs ends CANCELLED in SLURM, also when its script traps the stop and exits
0: COMPLETED is SLURM's word that the stop came too late. The success stands and a retry has
nothing to run (it was recorded cancelled and run again: its side effects twice). The job
that trapped the stop and exited 0 was stopped: cancelled, as before.

The session's private SLURM cluster over SSH; the runtime's polls are held while the job
ends and the scancel is sent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from akoflow.runtimes.hpc import HpcRuntime
from akoflow.states import ActivityState, WorkflowState
from tests.e2e.test_engine_inprocess import engine_with
from tests.hpc_runtime.test_hpc_engine import jobcomp, runtime_of, slurm_name, until
from tests.late_stop import TRAPS_THE_STOP
from tests.slurm_support.cluster import SlurmCluster

ENDS_ON_GO = """\
touch started.$AKF
while [ ! -e go ]; do sleep 0.05; done
echo ran >> side.$AKF
"""


def _workflow(script: str, names: tuple[str, ...] = ("w",)) -> str:
    """One activity per name, running ``script`` with ``$AKF`` its name."""
    text = "name: late\nspec:\n  runtime: hpc\n  activities:\n"
    for name in names:
        lines = "".join(f"        {line}\n" for line in script.splitlines())
        text += f"    - name: {name}\n      run: |\n        AKF={name}\n{lines}"
    return text


class HeldPolls:
    """The runtime's squeue polls skipped while held; its scancels counted once answered."""

    def __init__(self, rt: HpcRuntime) -> None:
        self.holding = True
        self.skipped = 0
        self.scancelled = 0
        poll, scancel = rt._poll, rt._scancel

        async def held_poll() -> None:
            if self.holding:
                self.skipped += 1
                return
            await poll()

        async def counted_scancel(jobs: Any) -> None:
            await scancel(jobs)
            self.scancelled += 1

        rt._poll = held_poll  # type: ignore[method-assign]
        rt._scancel = counted_scancel  # type: ignore[method-assign]


def _states(cluster: SlurmCluster, name: str) -> list[str]:
    return [r.get("JobState", "") for r in jobcomp(cluster, name)]


@pytest.mark.parametrize("arrays", ["off", "on"])  # on: two elements of one array
def test_a_job_that_completed_before_its_scancel_stays_a_success(
    slurm_cluster: SlurmCluster,
    hpc_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    arrays: str,
) -> None:
    """Also an element of a job array (its scancel names ``ARRAYID_[INDEX]``)."""
    monkeypatch.setenv("HPC_ARRAYS", arrays)
    mount = Path(hpc_env["HPC_MOUNT_PATH"])

    names = ("w",) if arrays == "off" else ("w", "v")

    async def scenario() -> tuple[list[tuple[ActivityState, int | None, int]], set[str]]:
        text = _workflow(ENDS_ON_GO, names)
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            acts = [wf.activities[n] for n in names]
            for n in names:
                await until(lambda n=n: (mount / f"started.{n}").exists(), 60, "jobs running")
            rt = runtime_of(engine)
            await until(lambda: all(a.key in rt._jobs for a in acts), 30, "the jobs tracked")
            tracked = [rt._jobs[a.key or ""] for a in acts]
            assert all((t.index is not None) is (arrays == "on") for t in tracked)
            slurm_names = {t.name for t in tracked}  # an array's: one for its elements
            hold = HeldPolls(rt)
            await until(lambda: hold.skipped >= 1, 30, "a held poll")  # none in flight

            def ended() -> list[str]:
                return [s for name in slurm_names for s in _states(slurm_cluster, name)]

            (mount / "go").touch()
            await until(lambda: len(ended()) == len(names), 60, "the jobs' ends in SLURM")
            assert ended() == ["COMPLETED"] * len(names)
            assert {a.state for a in acts} == {ActivityState.RUNNING}  # their ends not read
            engine.cancel(wf_id)
            await until(lambda: hold.scancelled, 30, "the scancel answered")
            hold.holding = False
            await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            if repo.get_workflow(wf_id).state is WorkflowState.CANCELLED:  # type: ignore[union-attr]
                await engine.retry(wf_id)  # nothing left to run
                await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            assert ended() == ["COMPLETED"] * len(names)  # nothing ran again
            ends = [(a.state, a.exit_code, len(repo.list_attempts(a.id))) for a in acts]
            return ends, slurm_names

    ends, _ = asyncio.run(scenario())
    assert ends == [(ActivityState.SUCCEEDED, 0, 1)] * len(names)
    for n in names:  # ran once each; the retry had nothing to run
        assert (mount / f"side.{n}").read_text() == "ran\n"


def test_a_job_that_traps_the_scancel_and_exits_0_was_stopped(
    slurm_cluster: SlurmCluster, hpc_env: dict[str, str], tmp_path: Path
) -> None:
    mount = Path(hpc_env["HPC_MOUNT_PATH"])

    async def scenario() -> tuple[ActivityState, str]:
        async with engine_with(tmp_path, _workflow(TRAPS_THE_STOP)) as (_, engine, wf_id):
            wf = await engine.attach(wf_id)
            await until(lambda: (mount / "started").exists(), 60, "the job running")
            engine.cancel(wf_id)
            await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            return wf.activities["w"].state, slurm_name(tmp_path, wf_id, "late", "w")

    state, name = asyncio.run(scenario())
    assert (mount / "side").read_text() == "stopped\n"  # the stop reached it, it exited 0
    assert state is ActivityState.CANCELLED
    assert _states(slurm_cluster, name) == ["CANCELLED"]
