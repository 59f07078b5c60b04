"""Hostile pass on the data plane (issue 17): jobs of one run that overlap on one MOUNT_PATH
without declarations, and a run cancelled while a file waits for another job's end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from akoflow.dataplane.mover import PART_SUFFIX
from akoflow.states import ActivityState, WorkflowState
from tests.e2e.test_engine_inprocess import engine_with
from tests.hpc_runtime.test_hpc_engine import states, until

pytestmark = [pytest.mark.slurm, pytest.mark.needs_root]

# Found by this pass (fixed): an attempt that ends without listings (cancelled, or killed by
# its timeout before its command ended) collected nothing, so a version another job recorded
# while it ran, deferred to its end (it may have been writing it), never came back.
WAIT = "i=0; until ls $1 >/dev/null 2>&1 || [ $i -ge 600 ]; do sleep 0.05; i=$((i+1)); done"

# `slow` starts first and never ends by itself; `fast` writes fast.txt while it runs and ends:
# fast.txt waits for slow's end (slow may be writing it). The run is then cancelled.
CANCEL = f"""\
name: cancel-deferred
spec:
  runtime: hpc
  activities:
    - name: slow
      run: |
        touch slow.started
        sleep 600
    - name: fast
      run: |
        wait_for() {{ {WAIT}; }}
        wait_for slow.started
        echo fast > fast.txt
"""


def test_a_run_cancelled_while_a_sinks_file_waits_for_another_job(
    hpc_env: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "data"

    async def scenario() -> None:
        async with engine_with(tmp_path, CANCEL) as (_, engine, wf_id):
            wf = await engine.attach(wf_id)
            fast = wf.activities["fast"]
            await until(lambda: fast.state is ActivityState.SUCCEEDED, 60, "fast's end")
            assert not (data / "fast.txt").exists()  # deferred: slow may be writing it
            engine.cancel(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            assert state is WorkflowState.CANCELLED, states(wf)
            assert fast.state is ActivityState.SUCCEEDED

    asyncio.run(scenario())
    # fast succeeded: its output (a sink's) comes back once slow can write no more.
    assert (data / "fast.txt").read_text() == "fast\n"


# Three jobs at once write one undeclared name, one after another (sync files), each with its
# own content; each has a local dependent that copies what it sees.
THREE = f"""\
name: three-writers
spec:
  runtime: hpc
  activities:
    - name: w1
      run: |
        wait_for() {{ {WAIT}; }}
        touch w1.started; wait_for w2.started; wait_for w3.started
        echo one > same.txt; touch w1.wrote
    - name: w2
      run: |
        wait_for() {{ {WAIT}; }}
        touch w2.started; wait_for w1.wrote
        sleep 1.1; echo two-two > same.txt; touch w2.wrote
    - name: w3
      run: |
        wait_for() {{ {WAIT}; }}
        touch w3.started; wait_for w2.wrote
        sleep 1.1; echo three-three-three > same.txt
        sleep 2
    - name: r1
      runtime: local
      dependsOn: [w1]
      run: cp same.txt r1.txt
    - name: r2
      runtime: local
      dependsOn: [w2]
      run: cp same.txt r2.txt
    - name: r3
      runtime: local
      dependsOn: [w3]
      run: cp same.txt r3.txt
"""


def test_three_overlapping_jobs_writing_one_name(hpc_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    mount = Path(hpc_env["HPC_MOUNT_PATH"])

    async def scenario() -> None:
        async with engine_with(tmp_path, THREE) as (_, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=120)
            assert state is WorkflowState.SUCCEEDED, states(wf)

    asyncio.run(scenario())
    final = (mount / "same.txt").read_bytes()
    assert final == b"three-three-three\n"
    # w3 ended last: its dependent read the last version, whole.
    assert (data / "r3.txt").read_bytes() == final
    for name in ("r1.txt", "r2.txt"):
        assert (data / name).read_bytes() in (b"one\n", b"two-two\n", final)
    assert not [p for p in data.rglob("*") if p.name.endswith(PART_SUFFIX)]


# `slow`'s first attempt is killed by its timeout (no listings: killed before its command
# ended), its second succeeds at once; `fast` ended while the first ran.
RETRIED = f"""\
name: retried-deferred
spec:
  runtime: hpc
  activities:
    - name: slow
      timeout: 8s
      retries: 1
      run: |
        if [ -f slow.tried ]; then exit 0; fi
        touch slow.tried slow.started
        sleep 600
    - name: fast
      run: |
        wait_for() {{ {WAIT}; }}
        wait_for slow.started
        echo fast > fast.txt
"""


def test_a_sinks_file_deferred_to_an_attempt_killed_by_its_timeout(
    hpc_env: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "data"

    async def scenario() -> None:
        async with engine_with(tmp_path, RETRIED) as (_, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=90)
            assert state is WorkflowState.SUCCEEDED, states(wf)
            assert wf.activities["slow"].attempt == 2

    asyncio.run(scenario())
    assert (data / "fast.txt").read_text() == "fast\n"
