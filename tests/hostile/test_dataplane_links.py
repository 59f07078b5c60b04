"""Hostile pass on the data plane (issue 17): an activity that shares the engine host's data dir
(local here; a docker or singularity container does the same through its bind mount) plants a
symbolic link where a copy back from the cluster writes its temporary file
(``.NAME.akoflow-part``, a name anyone can predict). The copy must never write through it:
what a remote activity wrote would land on any file the engine's user can write."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from akoflow.states import WorkflowState
from tests.e2e.test_engine_inprocess import engine_with

pytestmark = [pytest.mark.slurm, pytest.mark.needs_root]


@pytest.mark.xfail(
    strict=True,
    reason="HpcMover.get (src/akoflow/runtimes/hpc/mover.py) lets sftp.get open the temporary "
    "name with open(..., 'wb'), which follows a link planted there (the victim is overwritten)",
)
def test_a_link_planted_at_a_copys_temporary_name_is_never_written_through(
    hpc_env: dict[str, str], tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"  # outside the data dir: ~/.bashrc, ~/.ssh/authorized_keys
    victim.write_text("precious\n")
    flow = f"""\
name: plant
spec:
  activities:
    - name: plant
      runtime: local
      run: ln -s {victim} .out.txt.akoflow-part
    - name: make
      runtime: hpc
      dependsOn: [plant]
      run: echo written by the cluster > out.txt
"""
    data = tmp_path / "data"

    async def scenario() -> WorkflowState:
        async with engine_with(tmp_path, flow) as (_, engine, wf_id):
            await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=90)
            return state

    state = asyncio.run(scenario())
    assert victim.read_text() == "precious\n"  # never written through the link
    if state is WorkflowState.SUCCEEDED:
        assert (data / "out.txt").read_text() == "written by the cluster\n"
        assert not (data / "out.txt").is_symlink()
