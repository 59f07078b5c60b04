"""What a hostile pass over the HPC login found, held: an ssh config whose Include lines
include each other, a ``Match exec`` command that never ends, ``PASSWORD`` sent only to a
password question (never to an MFA code's), and a host key that changes while a job runs (the
monitor stays quiet, health says why, a cancel waits for the cluster to answer again)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from akoflow.config import RuntimeConfig
from akoflow.runtimes.hpc import sshconfig
from akoflow.runtimes.hpc.settings import read_settings
from akoflow.runtimes.hpc.ssh import SshLink, SshTarget, SshUnavailable, link_for
from akoflow.runtimes.hpc.transport import HpcMisconfigured
from tests.hpc_runtime.conftest import runtime_env
from tests.hpc_runtime.test_hpc_runtime import Recorder, job_spec, make, wait_finished
from tests.slurm_support.cluster import SlurmCluster


def test_an_include_loop_is_a_misconfiguration_with_its_fix(tmp_path: Path) -> None:
    config = tmp_path / "config"
    other = tmp_path / "other"
    config.write_text(f"Include {other}\nHost mycluster\n  HostName 127.0.0.1\n")
    other.write_text(f"Include {config}\n")
    with pytest.raises(HpcMisconfigured) as info:
        sshconfig.resolve([str(config)], "mycluster")
    assert "include each other without end" in info.value.problem
    assert "remove the Include" in info.value.hint


def test_a_match_exec_that_does_not_end_is_told_within_the_connect_timeout(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    count = tmp_path / "count"
    config = tmp_path / "config"
    # Blocks until the test opens the FIFO for writing; counts how often it was started.
    exec_line = f'Match exec "echo >> {count}; cat {gate} >/dev/null"\n'
    config.write_text(exec_line + "  HostName 127.0.0.2\n")
    env = {
        "HPC_HOST_CLUSTER": "mycluster", "HPC_USER": "me", "HPC_MOUNT_PATH": "/scratch/me",
        "HPC_SSH_CONFIG_FILE": str(config), "HPC_CONNECT_TIMEOUT": "1",
    }  # fmt: skip
    link = link_for(read_settings(RuntimeConfig.from_env("hpc", env)))

    async def scenario() -> sshconfig.Resolved:
        try:
            for _ in range(2):  # the second call waits for the same read, starts none
                with pytest.raises(SshUnavailable, match="does a Match exec command"):
                    await link.read_config()
            with pytest.raises(SshUnavailable, match="does a Match exec command"):
                await link.open()  # a login reads the config the same way
            writer = os.open(gate, os.O_WRONLY)  # the command ends
            os.close(writer)
            return await link.read_config()
        finally:
            await link.close()

    resolved = asyncio.run(scenario())
    assert resolved.host == "127.0.0.2"  # the command ended with 0: the block applies
    assert count.read_text() == "\n"  # started once, for the three calls


def test_the_password_answers_a_password_question_and_no_mfa_code() -> None:
    asked: list[list[tuple[str, bool]]] = []

    async def prompter(where: str, name: str, instructions: str, prompts: object) -> list[str]:
        asked.append(list(prompts))  # type: ignore[call-overload]
        return ["123456"]

    link = SshLink(SshTarget("login", password="pw-s3cr3t"), prompter=prompter)

    async def scenario() -> tuple[list[str] | None, list[str] | None]:
        password = await link._answer("login", "", "", [("Password: ", False)])
        code = await link._answer("login", "", "", [("Verification code: ", False)])
        return password, code

    password, code = asyncio.run(scenario())
    assert password == ["pw-s3cr3t"]
    assert code == ["123456"] and asked == [[("Verification code: ", False)]]


def test_a_host_key_that_changes_while_a_job_runs(
    slurm_cluster: SlurmCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    known = tmp_path / "known_hosts"
    shutil.copy(slurm_cluster.known_hosts, known)
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, key = other.with_suffix(".pub").read_text().split()[:2]
    env = runtime_env(slurm_cluster, "hpc", "mount/keychange", KNOWN_HOSTS=str(known))
    Path(env["HPC_MOUNT_PATH"]).mkdir(parents=True, exist_ok=True)
    events = Recorder()
    caplog.set_level(logging.DEBUG, logger="akoflow.runtimes.hpc")

    async def scenario() -> None:
        rt = make(env, events)
        await rt.start()
        try:
            job = job_spec(tmp_path, "long", "sleep 60")
            handle = await rt.submit(job)
            for _ in range(200):  # bounded: the job shows up in squeue within seconds
                if job.key in events.running:
                    break
                await asyncio.sleep(0.05)
            assert job.key in events.running
            known.write_text(f"[127.0.0.1]:{slurm_cluster.ssh_port} {kind} {key}\n")
            link = rt._transport
            assert isinstance(link, SshLink) and link._conn is not None
            conn = link._conn
            conn.close()  # the connection drops; the next one meets the "new" key
            await conn.wait_closed()
            health = await rt.health()
            assert not health.ready and health.misconfigured
            assert "host key verification failed" in (health.reason or "")
            for _ in range(5):  # a few monitor cycles (POLL_INTERVAL 0.3 s)
                await asyncio.sleep(0.3)
            await rt.cancel(job.key, handle)  # kept until the cluster answers again
            assert job.key not in events.finished
            shutil.copy(slurm_cluster.known_hosts, known)  # the key is fixed
            outcome = await wait_finished(events, job.key)
            assert not outcome.succeeded  # the pending scancel was sent
        finally:
            await rt.stop()

    asyncio.run(scenario())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert any("cannot cancel" in r.getMessage() for r in caplog.records)
