"""What a failed login says names the part that failed: a jump host that accepts and never
speaks SSH, a ProxyCommand that exits at once (both: wait and try again, NOT_READY)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from akoflow.config import RuntimeConfig
from akoflow.runtimes.hpc.settings import read_settings
from akoflow.runtimes.hpc.ssh import SshUnavailable, link_for
from tests.hpc_runtime.conftest import runtime_env
from tests.slurm_support.cluster import SlurmCluster


def login_error(env: dict[str, str]) -> str:
    link = link_for(read_settings(RuntimeConfig.from_env("hpc", env)))

    async def scenario() -> str:
        try:
            with pytest.raises(SshUnavailable) as failed:
                await link.open()
            return str(failed.value)
        finally:
            await link.close()

    return asyncio.run(scenario())


def test_a_silent_jump_host_is_named(slurm_cluster: SlurmCluster) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts (the backlog) and never says a word
    try:
        port = silent.getsockname()[1]
        env = runtime_env(
            slurm_cluster, "hpc", "mount/silent", JUMP_HOST=f"root@127.0.0.1:{port}",
            CONNECT_TIMEOUT="2",
        )  # fmt: skip
        message = login_error(env)
    finally:
        silent.close()
    assert message.startswith(f"ssh jump host root@127.0.0.1:{port} (on the way to "), message
    assert "timed out" in message


def test_a_proxycommand_that_exits_is_named(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host viaproxy\n  HostName 127.0.0.1\n  ProxyCommand false\n")
    env = runtime_env(
        slurm_cluster, "hpc", "mount/proxy", HOST_CLUSTER="viaproxy",
        SSH_CONFIG_FILE=str(config), CONNECT_TIMEOUT="2",
    )  # fmt: skip
    message = login_error(env)
    assert "ProxyCommand `false`" in message, message
