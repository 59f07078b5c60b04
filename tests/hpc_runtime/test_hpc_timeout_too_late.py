"""HPC (SLURM over SSH): a success its timeout's scancel came too late for is not timed out.

The job exits 0 well within its timeout; its end is read only after its deadline (the
runtime's next squeue had not come), whose scancel finds it COMPLETED: the stop reached
nothing (Outcome.ended_unstopped). Judged by when its command ran (its exit file, by the
node's clock) it ended in time: a success, run once. It was recorded 'timed out after 4s'
and run again by its retry: its side effects twice.

The session's private SLURM cluster over SSH; the runtime's polls are held while the job
ends and the deadline's scancel is sent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from akoflow.states import ActivityState
from tests.e2e.test_engine_inprocess import engine_with
from tests.hpc_runtime.test_hpc_engine import runtime_of, until
from tests.hpc_runtime.test_hpc_stop_too_late import HeldPolls
from tests.slurm_support.cluster import SlurmCluster

SCRIPT = """\
touch started.tl
while [ ! -e go.tl ]; do sleep 0.05; done
echo ran >> side.tl
"""


def test_a_success_its_deadlines_scancel_came_too_late_for_is_not_timed_out(
    slurm_cluster: SlurmCluster, hpc_env: dict[str, str], tmp_path: Path
) -> None:
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    for name in ("started.tl", "go.tl", "side.tl"):
        (mount / name).unlink(missing_ok=True)
    lines = "".join(f"        {line}\n" for line in SCRIPT.splitlines())
    text = (
        "name: late\nspec:\n  runtime: hpc\n  activities:\n"
        f"    - name: w\n      timeout: 4s\n      retries: 1\n      run: |\n{lines}"
    )

    async def scenario() -> tuple[ActivityState, list[tuple[str, str | None]]]:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            act = wf.activities["w"]
            await until(lambda: (mount / "started.tl").exists(), 60, "the job running")
            rt = runtime_of(engine)
            await until(
                lambda: act.key in rt._jobs and act.timer is not None, 30, "its deadline armed"
            )
            hold = HeldPolls(rt)
            await until(lambda: hold.skipped >= 1, 30, "a held poll")  # none in flight
            (mount / "go.tl").touch()
            await until(lambda: hold.scancelled, 30, "the deadline's scancel answered")
            assert act.state is ActivityState.RUNNING  # its end not read
            hold.holding = False
            await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            return act.state, [(str(a.state), a.reason) for a in repo.list_attempts(act.id)]

    state, attempts = asyncio.run(scenario())
    assert (mount / "side.tl").read_text() == "ran\n"  # once
    assert (state, len(attempts)) == (ActivityState.SUCCEEDED, 1), attempts
