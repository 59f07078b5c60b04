"""The HPC runtime on its own, against the private cluster: host keys (refused on mismatch,
accepted when new only if asked), the gateway check, base64 keys written 0600, idempotent and
reconciled submission by job name, and a login node that is a network namespace of its own."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from akoflow.config import RuntimeConfig
from akoflow.runtimes.base import JobSpec, Outcome, RuntimeUnavailable
from akoflow.runtimes.hpc import HpcRuntime
from akoflow.runtimes.hpc.ssh import SshLink
from akoflow.spec import Activity
from tests.hpc_runtime.conftest import runtime_env
from tests.slurm_support.cluster import NETNS_LOGIN_ADDR, NODE_CPUS, SlurmCluster, free_port


class Recorder:
    def __init__(self) -> None:
        self.finished: dict[str, Outcome] = {}
        self.running: dict[str, str | None] = {}

    def job_running(self, key: str, node: str | None) -> None:
        self.running[key] = node

    def job_finished(self, key: str, outcome: Outcome) -> None:
        self.finished[key] = outcome


def job_spec(tmp_path: Path, name: str, run: str, attempt: int = 1) -> JobSpec:
    attempts = tmp_path / "attempts"
    attempts.mkdir(exist_ok=True)
    (tmp_path / "data").mkdir(exist_ok=True)
    return JobSpec(
        key=f"wf1-{name}-a{attempt}",
        workflow_id=1,
        workflow_name="direct",
        activity_id=7,
        activity=Activity(name=name, run=run, runtime="hpc"),
        attempt=attempt,
        data_dir=tmp_path / "data",
        attempt_dir=attempts,
    )


def make(env: dict[str, str], events: Recorder | None = None, name: str = "hpc") -> HpcRuntime:
    return HpcRuntime(name, RuntimeConfig.from_env(name, env), events or Recorder())


# A success SLURM calls COMPLETED: no scancel reached the job while it ran (it would be
# CANCELLED), so a stop asked meanwhile came too late (test_hpc_stop_too_late.py).
COMPLETED = Outcome(True, 0, ended_unstopped=True)


def ended(outcome: Outcome | None) -> Outcome | None:
    """How an attempt ended, without its file listings (test_remote_provenance checks them)
    and when (an adopted end's time: checked where it matters)."""
    if outcome is None:
        return None
    return dataclasses.replace(outcome, files=None, ended_at=None)


async def wait_finished(events: Recorder, key: str, timeout: float = 30.0) -> Outcome:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while key not in events.finished:
        if loop.time() > deadline:
            raise AssertionError(f"{key} did not finish in {timeout}s")
        await asyncio.sleep(0.05)
    return events.finished[key]


def test_host_key_mismatch_is_refused_with_a_clear_error(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, key = other.with_suffix(".pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{slurm_cluster.ssh_port} {kind} {key}\n")
    env = runtime_env(slurm_cluster, "hpc", "mount/hostkey", KNOWN_HOSTS=str(known))
    # Asking to accept *new* keys does not accept a *changed* one.
    env["HPC_ACCEPT_NEW_HOST_KEY"] = "true"
    before = slurm_cluster.sshd.connections()

    async def scenario() -> None:
        rt = make(env)
        await rt.start()
        try:
            health = await rt.health()
            assert not health.ready
            assert "host key verification failed" in (health.reason or "")
            assert str(known) in (health.reason or "")
            with pytest.raises(Exception, match="host key verification failed"):
                await rt.submit(job_spec(tmp_path, "never", "touch never"))
        finally:
            await rt.stop()

    asyncio.run(scenario())
    assert known.read_text().count("\n") == 1  # nothing was added
    assert slurm_cluster.sshd.connections() == before  # never authenticated


def test_new_host_key_accepted_only_when_asked(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    env = runtime_env(slurm_cluster, "hpc", "mount/newkey", KNOWN_HOSTS=str(known))

    async def scenario() -> None:
        rt = make(env)
        await rt.start()
        try:
            health = await rt.health()  # no file: refused
            assert not health.ready and "does not exist" in (health.reason or "")
        finally:
            await rt.stop()
        known.write_text("")
        rt = make(env)
        await rt.start()
        try:
            health = await rt.health()  # an empty file: the host is unknown, refused
            assert not health.ready and "host key verification failed" in (health.reason or "")
        finally:
            await rt.stop()
        rt = make({**env, "HPC_ACCEPT_NEW_HOST_KEY": "yes"})
        await rt.start()
        try:
            health = await rt.health()
            assert health.ready, health.reason
        finally:
            await rt.stop()

    asyncio.run(scenario())
    host_key = slurm_cluster.host_key.with_suffix(".pub").read_text().split()[1]
    assert known.read_text().split() == [f"[127.0.0.1]:{slurm_cluster.ssh_port}", "ssh-ed25519",
                                         host_key]  # fmt: skip


def test_gateway_unreachable_means_not_ready(slurm_cluster: SlurmCluster) -> None:
    closed = free_port()
    env = runtime_env(slurm_cluster, "hpc", "mount/gw", GATEWAY=f"127.0.0.1:{closed}")
    reachable = runtime_env(
        slurm_cluster, "hpc", "mount/gw", GATEWAY=f"127.0.0.1:{slurm_cluster.ssh_port}"
    )

    async def scenario() -> None:
        rt = make(env)
        await rt.start()
        try:
            health = await rt.health()
            assert not health.ready
            assert health.reason == (
                f"gateway 127.0.0.1:{closed} is not reachable: Connect call failed "
                f"('127.0.0.1', {closed})"
            ) or f"gateway 127.0.0.1:{closed} is not reachable" in (health.reason or "")
            assert rt.connections_opened == 0  # the login node is not even tried
        finally:
            await rt.stop()
        rt = make(reachable)
        await rt.start()
        try:
            assert (await rt.health()).ready
            nodes = await rt.nodes()
            assert [n.name for n in nodes] == ["localhost"]
            assert nodes[0].cpu_capacity == NODE_CPUS and nodes[0].memory_capacity == 4096 << 20
        finally:
            await rt.stop()

    asyncio.run(scenario())


def test_base64_key_stays_in_memory_is_0600_and_never_logged(
    slurm_cluster: SlurmCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_text = slurm_cluster.client_key.read_text()
    encoded = base64.b64encode(key_text.encode()).decode()
    env = runtime_env(slurm_cluster, "hpc", "mount/b64")
    del env["HPC_KEY_FILE"]
    env["HPC_SSHKEYPRIVK"] = encoded
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        rt = make(env)
        await rt.start()
        try:
            assert (await rt.health()).ready
            assert isinstance(rt._transport, SshLink)
            key_file = rt._transport.key_file
            assert key_file is not None
            # An anonymous in-memory file of this process: on no disk, gone with it.
            assert key_file.startswith(f"/proc/{os.getpid()}/fd/")
            assert os.readlink(key_file).startswith("/memfd:akoflow-key")
            assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
            assert Path(key_file).read_text().strip() == key_text.strip()
            assert "SSHKEYPRIVK" not in repr(rt._s) and encoded not in repr(rt._s)
        finally:
            await rt.stop()

    asyncio.run(scenario())
    body = key_text.strip().splitlines()[1]
    assert body not in caplog.text and encoded not in caplog.text
    assert RuntimeConfig.from_env("hpc", env).redacted()["HPC_SSHKEYPRIVK"] == "***"


def test_submit_is_idempotent_by_name_and_adopt_claims_what_never_ran(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """A second runtime (an engine restarted after an ambiguous submit) asked for the same
    attempt finds the job by name instead of submitting it again; an attempt that never
    reached SLURM is claimed, so a late copy of its job cannot run the script."""
    env = runtime_env(slurm_cluster, "hpc", "mount/idem")
    mount = Path(env["HPC_MOUNT_PATH"])
    job = job_spec(tmp_path, "once", "echo ran >> once.count; sleep 1")
    never = job_spec(tmp_path, "lost", "echo ran >> lost.count")

    async def scenario() -> None:
        first_events, second_events = Recorder(), Recorder()
        first, second = make(env, first_events), make(env, second_events)
        await first.start()
        await second.start()
        try:
            h1 = await first.submit(job)
            h2 = await second.submit(job)
            assert h1["job_id"] == h2["job_id"] and h1["name"] == h2["name"]
            assert ended(await wait_finished(first_events, job.key)) == COMPLETED
            # The restarted engine adopts the finished attempt from its exit file/record.
            restarted = make(env)
            await restarted.start()
            try:
                adopted = await restarted.adopt(job, {})
            finally:
                await restarted.stop()
            assert adopted.kind == "finished" and ended(adopted.outcome) == COMPLETED
            # When its command ran, as the job recorded it on the node (about 1 s: sleep 1)
            began, end = adopted.started_at, adopted.outcome.ended_at  # type: ignore[union-attr]
            assert began is not None and end is not None and end - began >= 1, adopted
            assert adopted.handle["job_id"] == h1["job_id"]
            # An attempt recorded but never sent: proven never started, and claimed.
            third = make(env)
            await third.start()
            try:
                adopted = await third.adopt(never, {})
                assert adopted.kind == "never_started"
            finally:
                await third.stop()
            # A straggling submission of it (as a crash mid-sbatch could leave) does not run.
            late = await second.submit(never)
            outcome = await wait_finished(second_events, never.key)
            assert not outcome.succeeded and "claimed" in (outcome.reason or ""), outcome
            assert h1 is not None and late is not None
        finally:
            await first.stop()
            await second.stop()

    asyncio.run(scenario())
    assert (mount / "once.count").read_text() == "ran\n"
    assert not (mount / "lost.count").exists()
    names = [n for n in slurm_cluster.squeue_names() if n.endswith("-wf1-once-a1")]
    assert len(names) == 1


def test_login_node_in_its_own_network_namespace(login_node: SlurmCluster, tmp_path: Path) -> None:
    env = runtime_env(login_node, "hpc-login01", "mount-netns/ns", netns=True)
    events = Recorder()
    job = job_spec(tmp_path, "where", 'echo "$SSH_CONNECTION" > via.txt; hostname > node.txt')

    async def scenario() -> Any:
        rt = make(env, events, name="hpc-login01")
        await rt.start()
        try:
            health = await rt.health()
            assert health.ready, health.reason
            await rt.submit(job)
            return await wait_finished(events, job.key)
        finally:
            await rt.stop()

    before_local = login_node.sshd.connections()
    outcome = asyncio.run(scenario())
    assert outcome.succeeded, outcome
    assert login_node.login_sshd.connections() == 1  # everything went through login01
    assert login_node.sshd.connections() == before_local
    mount = Path(env["HPC_LOGIN01_MOUNT_PATH"])
    via = (mount / "via.txt").read_text().split()
    assert via[0] == "198.18.99.1" and via[2:] == [NETNS_LOGIN_ADDR, "22"]


def test_submit_while_slurmctld_is_down_is_held_and_never_runs_twice(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """sbatch fails because the controller is away (a submission that might have reached it):
    the job cannot be looked up either, so the attempt's ``started`` claim is taken (a late
    copy of the job would run nothing) and the submit reports a transient failure; the
    engine's next attempt runs once the controller is back."""
    env = runtime_env(slurm_cluster, "hpc", "mount/ctld-down")
    mount = Path(env["HPC_MOUNT_PATH"])
    events = Recorder()
    first = job_spec(tmp_path, "held", "echo ran >> held.count")
    second = job_spec(tmp_path, "held", "echo ran >> held.count", attempt=2)

    async def scenario() -> None:
        rt = make(env, events)
        await rt.start()
        try:
            assert (await rt.health()).ready
            await asyncio.to_thread(slurm_cluster.stop_ctld)
            try:
                with pytest.raises(RuntimeUnavailable, match="did not reach SLURM"):
                    await rt.submit(first)
            finally:
                await asyncio.to_thread(slurm_cluster.start_ctld)
            _, paths = rt._paths(first)
            assert Path(paths.started).is_dir()  # claimed by the engine
            await rt.submit(second)
            assert ended(await wait_finished(events, second.key)) == COMPLETED
        finally:
            await rt.stop()

    asyncio.run(scenario())
    assert (mount / "held.count").read_text() == "ran\n"
