"""Who generated a file that stays on the cluster (issue 15): each SLURM job's own listings of
MOUNT_PATH, before and after its command, are all the engine knows. Two jobs that run at the
same time both list what either wrote, and a listing cannot tell who wrote: such a version is
ambiguous between them, unless exactly one of them declared it. Against the private SLURM
cluster, through the engine; checked in the store and in the ``akoflow prov`` export."""

from __future__ import annotations

import asyncio
from pathlib import Path

from akoflow.states import WorkflowState
from tests.e2e.test_engine_inprocess import engine_with
from tests.hpc_runtime.test_hpc_engine import states
from tests.hpc_runtime.test_remote_provenance import export_prov
from tests.prov_support import ambiguous, relations

# Wait (bounded) for the other job's sync file, in .akoflow/ (left out of every listing).
WAIT = 'i=0; until [ -e ".akoflow/sync/$1" ] || [ $i -ge 600 ]; do sleep 0.05; i=$((i+1)); done'

# Both jobs are up (their first listings taken) before either writes, and both have written
# before either ends (its last listing). `left` writes a.txt; `right` writes b.txt, which only
# it declares, and both.txt, which both declare.
OVERLAP = f"""\
name: overlap
spec:
  runtime: hpc
  activities:
    - name: left
      outputs: [both.txt]
      run: |
        wait_for() {{ {WAIT}; }}
        mkdir -p .akoflow/sync && touch .akoflow/sync/left-up
        wait_for right-up
        echo a > a.txt
        touch .akoflow/sync/left-wrote
        wait_for right-wrote
    - name: right
      outputs: [b.txt, both.txt]
      run: |
        wait_for() {{ {WAIT}; }}
        mkdir -p .akoflow/sync && touch .akoflow/sync/right-up
        wait_for left-up
        echo b > b.txt
        echo both > both.txt
        touch .akoflow/sync/right-wrote
        wait_for left-wrote
"""


def test_overlapping_jobs_writing_the_mount_are_ambiguous_unless_one_declared(
    hpc_env: dict[str, str], tmp_path: Path
) -> None:
    location = f"hpc:{Path(hpc_env['HPC_MOUNT_PATH'])}"

    async def scenario() -> tuple[set[tuple[str, str]], dict[str, tuple[set[str], str]]]:
        async with engine_with(tmp_path, OVERLAP) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=90)
            assert state is WorkflowState.SUCCEEDED, states(wf)
            generated = {
                (f.activity, f.path) for f in repo.list_files(wf_id) if f.role == "generated"
            }
            unsure = repo.list_ambiguous_files(wf_id)
            assert {f.location for f in unsure} == {location}
            named = {f.path: ({c.activity for c in f.candidates}, f.reason) for f in unsure}
            return generated, named

    generated, unsure = asyncio.run(scenario())
    both = {"left", "right"}
    assert generated == {("right", "b.txt")}
    assert {path: names for path, (names, _) in unsure.items()} == {"a.txt": both, "both.txt": both}
    assert "listings" in unsure["a.txt"][1] and "declared" not in unsure["a.txt"][1]
    assert unsure["both.txt"][1].endswith("declared as an output by left, right")

    doc = export_prov(tmp_path / "state", "overlap")
    _, exported = relations(doc)
    assert exported == {("right", f"{location}/b.txt")}
    assert ambiguous(doc) == {"a.txt": both, "both.txt": both}
