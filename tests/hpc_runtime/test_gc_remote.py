"""Deleting a run that ran on the private SLURM cluster over SSH removes its attempt dirs
(MOUNT_PATH/.akoflow/<scope>/wf<id>-*) and its run dir (MOUNT_PATH/runs/<scope>-wf<id>) on
the cluster, and nothing else there: another state dir's run 1, files in MOUNT_PATH. With the
login node out of reach, the local part is done and the remote part is left on record; the
next gc removes it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from akoflow.gc import Collector
from akoflow.gc import records as gc_records
from akoflow.runtimes.hpc.runtime import scope_of
from akoflow.states import WorkflowState
from tests.e2e.test_engine_inprocess import engine_with

TEXT = (
    "name: far\nspec:\n  runtime: hpc\n  activities:\n"
    "    - name: write\n      cache: false\n      run: |\n"
    "        head -c 200000 /dev/zero > far.bin\n        echo done\n"
)


def test_the_run_s_remote_dirs_go_and_nothing_else(
    hpc_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPC_RUN_DIRS", "true")
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    # Another state dir's run 1 on the same MOUNT_PATH, and a file of MOUNT_PATH itself.
    stranger = "0123456789ab"
    (mount / ".akoflow" / stranger / "wf1-write-a1").mkdir(parents=True)
    (mount / ".akoflow" / stranger / "wf1-write-a1" / "stdout").write_text("theirs")
    (mount / "runs" / f"{stranger}-wf1").mkdir(parents=True)
    (mount / "shared.txt").write_text("shared")

    async def scenario() -> None:
        async with engine_with(tmp_path, TEXT, log_interval=0.2) as (repo, engine, wf_id):
            await engine.attach(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 90) is WorkflowState.SUCCEEDED
        scope = scope_of(tmp_path / "state" / "runs" / f"{wf_id}-far" / "attempts")
        control = mount / ".akoflow" / scope
        run_dir = mount / "runs" / f"{scope}-wf{wf_id}"
        assert (control / f"wf{wf_id}-write-a1" / "script.sh").exists()
        assert (run_dir / "far.bin").stat().st_size == 200000

        # First with the login node out of reach: the local part is done, the rest recorded.
        good_port = os.environ["HPC_PORT"]
        monkeypatch.setenv("HPC_PORT", "1")
        monkeypatch.setenv("HPC_CONNECT_TIMEOUT", "2")
        report = await Collector(repo, tmp_path / "state").delete([wf_id])
        (deleted,) = report.deleted
        assert deleted.remote[0].runtime == "hpc" and deleted.remote[0].left
        assert not (tmp_path / "state" / "runs" / f"{wf_id}-far").exists()
        assert repo.get_workflow(wf_id) is None
        assert control.exists() and run_dir.exists()
        (left,) = gc_records.pending(repo)
        assert (left.workflow_id, left.scope, left.tries) == (wf_id, scope, 1)

        # The next gc, with the cluster back, removes them.
        monkeypatch.setenv("HPC_PORT", good_port)
        report = await Collector(repo, tmp_path / "state").collect(older_than=None, keep_last=None)
        (retried,) = report.remote
        assert retried.left is None, retried.left
        assert set(retried.removed) == {str(control / f"wf{wf_id}-write-a1"), str(run_dir)}
        assert retried.bytes is not None and retried.bytes >= 200000
        assert not control.exists() and not run_dir.exists()
        assert gc_records.pending(repo) == []
        repo.close()

    asyncio.run(scenario())
    assert (mount / ".akoflow" / stranger / "wf1-write-a1" / "stdout").read_text() == "theirs"
    assert (mount / "runs" / f"{stranger}-wf1").is_dir()
    assert (mount / "shared.txt").read_text() == "shared"
