"""Hostile pass on the data plane (issue 17): a run cancelled while a file its next activity
needs is being copied to the cluster. The copy may finish or stop, but the activity's job must
not be submitted to SLURM after the user cancelled the run (it would run, or wait in the
queue, for nothing)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from akoflow.dataplane.mover import PART_SUFFIX
from akoflow.states import WorkflowState
from tests.e2e.test_engine_inprocess import engine_with
from tests.hpc_runtime.test_hpc_engine import jobcomp, slurm_name, states, until
from tests.slurm_support.cluster import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.needs_root]

BIG = 128 * 2**20

FLOW = f"""\
name: cancel-staging
spec:
  collect: none
  activities:
    - name: make
      runtime: local
      run: |
        openssl enc -aes-128-ctr -pbkdf2 -nosalt -pass pass:akoflow < /dev/zero \\
          2>/dev/null | head -c {BIG} > big.bin
    - name: use
      runtime: hpc
      dependsOn: [make]
      run: |
        echo run >> use.count
        sha256sum big.bin > sum.txt
"""


def test_a_run_cancelled_while_its_next_activitys_file_is_copied_submits_nothing(
    slurm_cluster: SlurmCluster, hpc_env: dict[str, str], tmp_path: Path
) -> None:
    mount = Path(hpc_env["HPC_MOUNT_PATH"])

    async def scenario() -> None:
        async with engine_with(tmp_path, FLOW) as (_, engine, wf_id):
            wf = await engine.attach(wf_id)
            await until(
                lambda: any(p.name.endswith(PART_SUFFIX) for p in mount.iterdir()),
                60,
                "the copy under way",
            )
            engine.cancel(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            assert state is WorkflowState.CANCELLED, states(wf)

    asyncio.run(scenario())
    assert not (mount / "use.count").exists()
    name = slurm_name(tmp_path, 1, "cancel-staging", "use")
    assert jobcomp(slurm_cluster, name) == []  # no job was ever given to SLURM
