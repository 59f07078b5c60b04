"""The HPC runtime with the engine on the login node (``{NAME}_TRANSPORT=local``), against the
private SLURM cluster: no host, user or key set, SLURM's own commands run on this host, files
written with the os module, volumes staged by a local rsync (or not at all when both sides are
one directory), and not one SSH connection. (Adoption after an engine SIGKILL with this
transport: ``test_hpc_crash.py``.)"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from akoflow.runtimes.base import Outcome
from akoflow.runtimes.hpc.local import LocalTransport
from tests.conftest import Akoflow, cli_env
from tests.hpc_runtime.conftest import local_env
from tests.hpc_runtime.test_hpc_engine import jobcomp, slurm_name
from tests.hpc_runtime.test_hpc_runtime import Recorder, job_spec, make, wait_finished
from tests.slurm_support.cluster import SlurmCluster


def test_workflow_runs_on_the_login_node_itself_through_the_cli(
    slurm_cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path
) -> None:
    env = cli_env(**local_env(slurm_cluster, "hpc", "mount/onhost"))
    env["HPC_PASSWORD"] = "hunter2-never-in-a-job"  # a secret of the engine's: not the job's
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    data, shared = tmp_path / "data", tmp_path / "shared"
    (data / "inputs").mkdir(parents=True)
    (data / "inputs" / "in.txt").write_text("hello login node\n")
    shared.mkdir()
    (shared / "seed.txt").write_text("seed\n")
    wf = tmp_path / "onhost.yaml"
    wf.write_text(
        "name: onhost\nspec:\n  runtime: hpc\n  volumes:\n"
        f"    - inputs:{mount}/staged\n"  # a local copy each way
        f"    - {shared}:{shared}\n"  # one directory: nothing to copy
        "  activities:\n"
        "    - name: upper\n      run: |\n"
        "        tr a-z A-Z < staged/in.txt > staged/upper.txt\n"
        '        echo "$SLURM_JOB_ID" > job_id.upper\n'
        "        env > env.upper\n"
        f"        cat {shared}/seed.txt > {shared}/seen.txt\n"
        "    - name: count\n      dependsOn: [upper]\n      run: |\n"
        "        wc -c < staged/upper.txt | tr -d ' ' > staged/count.txt\n"
    )
    logins = slurm_cluster.sshd.connections()

    res = akoflow("run", str(wf), "--json", "--data-dir", str(data), env=env, timeout=120)

    assert res.returncode == 0, res.stderr + res.stdout
    doc = json.loads(res.stdout)
    assert {a["name"]: (a["state"], a["attempts"]) for a in doc["activities"]} == {
        "upper": ("succeeded", 1),
        "count": ("succeeded", 1),
    }
    # What the jobs wrote: on the cluster's side, and staged back to the data dir.
    assert (mount / "staged" / "upper.txt").read_text() == "HELLO LOGIN NODE\n"
    assert (data / "inputs" / "upper.txt").read_text() == "HELLO LOGIN NODE\n"
    assert (data / "inputs" / "count.txt").read_text() == "17\n"
    assert (shared / "seen.txt").read_text() == "seed\n"
    # SLURM ran them (its job id, its completion log); no SSH login happened.
    assert (mount / "job_id.upper").read_text().strip().isdigit()
    for act in ("upper", "count"):
        (record,) = jobcomp(slurm_cluster, slurm_name(tmp_path, 1, "onhost", act))
        assert record["JobState"] == "COMPLETED"
    assert slurm_cluster.sshd.connections() == logins
    # sbatch hands its environment to the job: the engine's secrets were taken out first.
    job_env = (mount / "env.upper").read_text()
    assert "hunter2" not in job_env and "HPC_PASSWORD" not in job_env
    assert f"SLURM_CONF={slurm_cluster.conf}" in job_env.splitlines()


def test_missing_slurm_programs_or_partition_mean_not_ready_with_the_reason(
    slurm_cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = local_env(slurm_cluster, "hpc", "mount/onhost-health")
    monkeypatch.setenv("SLURM_CONF", env["SLURM_CONF"])
    no_slurm = tmp_path / "bin"
    no_slurm.mkdir()
    path = os.environ["PATH"]

    async def scenario() -> None:
        rt = make(env)
        await rt.start()
        try:
            assert (await rt.health()).ready
            monkeypatch.setenv("PATH", str(no_slurm))
            health = await rt.health()
            assert not health.ready
            assert health.reason is not None
            assert health.reason.startswith("sbatch, squeue, sinfo, scancel not found on the PATH")
            monkeypatch.setenv("PATH", path)
            assert (await rt.health()).ready  # healed once the programs are there again
        finally:
            await rt.stop()
        rt = make({**env, "HPC_QUEUE": "nosuchpartition"})
        await rt.start()
        try:
            health = await rt.health()
            assert health.reason is not None and rt.misconfigured is not None
            assert health.reason.startswith("partition nosuchpartition does not exist on this")
            assert "set HPC_QUEUE to one of the partitions" in health.reason
            broken = tmp_path / "broken.conf"  # a login node whose SLURM is misconfigured
            broken.write_text("ThisIsNot=valid\n")
            monkeypatch.setenv("SLURM_CONF", str(broken))
            health = await rt.health()
            assert not health.ready and health.reason is not None
            assert health.reason.startswith("sinfo -p nosuchpartition failed on this host (")
            assert health.reason.endswith("Unable to process configuration file")
        finally:
            await rt.stop()
        rt = make({**env, "HPC_TRANSPORT": "telnet"})
        await rt.start()
        try:
            health = await rt.health()
            assert health.reason == "HPC_TRANSPORT must be one of ssh, local; got 'telnet'"
        finally:
            await rt.stop()

    asyncio.run(scenario())


def test_logs_by_offset_and_cancel_through_the_local_transport(
    slurm_cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = local_env(slurm_cluster, "hpc", "mount/onhost-cancel")
    monkeypatch.setenv("SLURM_CONF", env["SLURM_CONF"])
    events = Recorder()
    job = job_spec(
        tmp_path, "chatty", "echo first; echo err >&2; while [ ! -e stop ]; do sleep 0.1; done"
    )

    async def scenario() -> str:
        rt = make(env, events)
        await rt.start()
        try:
            handle = await rt.submit(job)
            assert handle["job_id"].isdigit()
            assert await rt.submit(job) == handle  # idempotent by key
            logs: dict[str, bytes] = {}
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while logs.get("stderr") != b"err\n" and loop.time() < deadline:
                await asyncio.sleep(0.35)  # logs of a live job: read at most once per poll
                for stream, data in (await rt.logs(job.key, handle, {})).items():
                    logs[stream] = data
            assert logs == {"stdout": b"first\n", "stderr": b"err\n"}
            await asyncio.sleep(0.35)
            assert await rt.logs(job.key, handle, {"stdout": 6, "stderr": 4}) == {}
            await rt.cancel(job.key, handle)
            outcome = await wait_finished(events, job.key)
            assert outcome == Outcome(False, outcome.exit_code, "cancelled")
            return str(handle["name"])
        finally:
            await rt.stop()

    name = asyncio.run(scenario())
    (record,) = jobcomp(slurm_cluster, name)
    assert record["JobState"] == "CANCELLED"


def test_local_transport_runs_argv_without_a_shell_and_files_with_os(tmp_path: Path) -> None:
    transport = LocalTransport(command_timeout=5)
    hostile = "$(touch pwned); `touch pwned2` 'q\"\n"

    async def scenario() -> None:
        res = await transport.run(["printf", "%s", hostile])
        assert (res.exit_status, res.stdout, res.stderr) == (0, hostile, "")
        res = await transport.run(["sh", "-c", "echo no >&2; exit 7"])
        assert (res.exit_status, res.stderr) == (7, "no\n")
        with pytest.raises(Exception, match="nosuchprogram not found on the PATH of this host"):
            await transport.run(["nosuchprogram"])
        with pytest.raises(Exception, match=r"sleep did not finish in 0\.2s"):
            await transport.run(["sleep", "30"], timeout=0.2)
        d = str(tmp_path / "a" / "b")
        await transport.write_files(d, {"x": b"0123456789"})
        assert await transport.read_from(f"{d}/x", 4, 3) == b"456"
        assert await transport.read_from(f"{d}/missing", 0, 3) is None
        assert await transport.read_whole(f"{d}/x") == b"0123456789"
        assert await transport.read_whole(f"{d}/missing") is None
        assert await transport.mkdir_exclusive(f"{d}/claim") is True
        assert await transport.mkdir_exclusive(f"{d}/claim") is False
        with pytest.raises(Exception, match="No such file or directory"):
            await transport.mkdir_exclusive(f"{d}/no/parent")
        assert await transport.missing_programs(["sh", "nosuchprogram"]) == ["nosuchprogram"]

    asyncio.run(scenario())
    assert not (tmp_path / "pwned").exists() and not list(Path.cwd().glob("pwned*"))
