"""A private key given as data (``{NAME}_SSHKEYPRIVK``) never touches a disk: the login reads
it from an anonymous in-memory file, gone with the engine even after SIGKILL; and the private
directories killed engines left in the temporary directory are removed by the next one; an
ssh-agent that accepts and never answers does not hold the login: the default keys are used."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from akoflow.config import RuntimeConfig
from akoflow.runtimes.hpc.settings import read_settings
from akoflow.runtimes.hpc.ssh import PRIVATE_PREFIX, link_for
from tests.hpc_runtime.conftest import runtime_env
from tests.slurm_support.cluster import SlurmCluster


def files_holding(data: bytes) -> list[str]:
    root = tempfile.gettempdir()
    found = []
    for name in os.listdir(root):
        if not name.startswith(PRIVATE_PREFIX):
            continue
        for folder, _, files in os.walk(os.path.join(root, name)):
            for f in files:
                path = os.path.join(folder, f)
                try:
                    if data.strip() in Path(path).read_bytes():
                        found.append(path)
                except OSError:
                    continue
    return found


def test_key_data_logs_in_without_a_key_file(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    env = runtime_env(slurm_cluster, "hpc", "mount/keydata")
    key = Path(env.pop("HPC_KEY_FILE")).read_bytes()
    env["HPC_SSHKEYPRIVK"] = base64.b64encode(key).decode()
    link = link_for(read_settings(RuntimeConfig.from_env("hpc", env)))

    async def scenario() -> str:
        try:
            await link.open()
            assert files_holding(key) == []  # not in the private dir, nor anywhere of ours
            result = await link.run(["echo", "in"])
            return result.stdout
        finally:
            await link.close()

    assert asyncio.run(scenario()) == "in\n"


def test_a_killed_engines_private_dir_is_removed_by_the_next(tmp_path: Path) -> None:
    # A process that makes its private dir and is killed before it closes it.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from akoflow.runtimes.hpc.ssh import _private_dir; "
            "print(_private_dir(), flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    left = child.stdout.readline().strip()
    child.kill()
    child.wait()
    child.stdout.close()
    assert os.path.isdir(left)
    from akoflow.runtimes.hpc.ssh import _private_dir

    mine = _private_dir()
    try:
        assert not os.path.exists(left)  # its process is gone: swept
        assert os.path.isdir(mine)
    finally:
        os.rmdir(mine)


def test_an_agent_that_never_answers_falls_back_to_the_default_keys(
    slurm_cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(slurm_cluster.client_key, home / ".ssh" / "id_ed25519")
    os.chmod(home / ".ssh" / "id_ed25519", 0o600)
    sock_path = str(tmp_path / "agent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen()  # accepts (the kernel's backlog) and never answers
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SSH_AUTH_SOCK", sock_path)
    env = runtime_env(slurm_cluster, "hpc", "mount/agent")
    del env["HPC_KEY_FILE"]
    link = link_for(read_settings(RuntimeConfig.from_env("hpc", env)))

    async def scenario() -> str:
        try:
            await link.open()
            return (await link.run(["echo", "in"])).stdout
        finally:
            await link.close()

    try:
        assert asyncio.run(scenario()) == "in\n"
    finally:
        listener.close()


def test_a_key_encrypted_in_openssh_format_logs_in_with_its_passphrase(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """ssh-keygen's own format with a passphrase (its default): asyncssh needs bcrypt."""
    key = tmp_path / "id_encrypted"
    shutil.copy(slurm_cluster.client_key, key)
    os.chmod(key, 0o600)
    subprocess.run(["ssh-keygen", "-q", "-p", "-f", str(key), "-N", "pp-word"], check=True)
    assert b"BEGIN OPENSSH PRIVATE KEY" in key.read_bytes()
    env = runtime_env(
        slurm_cluster, "hpc", "mount/encrypted", KEY_FILE=str(key), KEY_PASSPHRASE="pp-word"
    )
    link = link_for(read_settings(RuntimeConfig.from_env("hpc", env)))

    async def scenario() -> str:
        try:
            await link.open()
            return (await link.run(["echo", "in"])).stdout
        finally:
            await link.close()

    assert asyncio.run(scenario()) == "in\n"
