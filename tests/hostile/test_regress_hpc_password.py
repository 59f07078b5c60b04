"""Regression (hostile pass on issue 16): a wrong ``{NAME}_PASSWORD`` fails fast.

asyncssh sent the password from its options once, then asked the client again and again, and
the client gave the same refused password each time, until sshd's ``MaxAuthTries`` cut the
connection ("Too many authentication failures"): a lost connection, so the runtime was held
NOT_READY and ``akoflow run`` waited forever, while every health check (each 5 s) counted
six more failed logins against the account (fail2ban or PAM's faillock would lock it). The
password is sent once per login, by either method; a refusal is "authentication failed",
misconfigured, naming the variable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from akoflow.runtimes.hpc.ssh import SshLink, SshTarget, _Client
from tests.hpc_runtime.test_hpc_runtime import make
from tests.slurm_support.cluster import Sshd, free_port

pytestmark = [pytest.mark.slurm, pytest.mark.needs_root]


@pytest.fixture
def password_sshd(tmp_path: Path) -> Iterator[Sshd]:
    """An sshd of its own that takes passwords (no account here has the one tried)."""
    host_key = tmp_path / "host_key"
    host_key.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    host_key.chmod(0o600)
    authorized = tmp_path / "authorized_keys"
    authorized.write_text("")
    sshd = Sshd(
        tmp_path, "pwsshd", "127.0.0.1", free_port(), tmp_path / "slurm.conf",
        extra="PasswordAuthentication yes\nMaxAuthTries 6\n",
    )  # fmt: skip
    sshd.write_config(host_key, authorized)
    public = asyncssh.read_private_key(host_key).export_public_key().decode().strip()
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{sshd.port} {public}\n")
    sshd.start()
    try:
        yield sshd
    finally:
        sshd.stop()


def test_a_refused_password_is_misconfigured_after_one_try(
    password_sshd: Sshd, tmp_path: Path
) -> None:
    env = {
        "HPC_HOST_CLUSTER": "127.0.0.1", "HPC_PORT": str(password_sshd.port),
        "HPC_USER": "akoflow-nobody", "HPC_MOUNT_PATH": "/scratch/me", "HPC_QUEUE": "debug",
        "HPC_PASSWORD": "wrong-pw", "HPC_KNOWN_HOSTS": str(tmp_path / "known_hosts"),
        "HPC_SSH_CONFIG_FILE": "none", "HPC_CONNECT_TIMEOUT": "10",
    }  # fmt: skip

    async def scenario() -> tuple[bool, bool, str]:
        rt = make(env)
        await rt.start()
        try:
            health = await asyncio.wait_for(rt.health(), 60)
            return health.ready, health.misconfigured, health.reason or ""
        finally:
            await rt.stop()

    ready, misconfigured, reason = asyncio.run(scenario())
    assert not ready and misconfigured, reason
    assert "authentication failed" in reason and "HPC_PASSWORD was refused" in reason, reason
    assert "wrong-pw" not in reason
    log = password_sshd.log.read_text(errors="replace")
    assert log.count("Failed password") == 1, log
    assert "Too many authentication failures" not in log


def test_a_password_question_is_answered_once_per_login() -> None:
    """keyboard-interactive (PAM's "Password:"): the second question of one login gets no
    answer, so the login fails as refused instead of trying until the server gives up."""

    async def scenario() -> list[list[str] | None]:
        link = SshLink(SshTarget("login", password="pw-s3cr3t"))
        client = _Client(link, "login")
        question = [("Password: ", False)]
        try:
            return [
                await client.kbdint_challenge_received("", "", "", question),
                await client.kbdint_challenge_received("", "", "", question),
                client.password_auth_requested(),
            ]
        finally:
            await link.close()

    assert asyncio.run(scenario()) == [["pw-s3cr3t"], None, None]
