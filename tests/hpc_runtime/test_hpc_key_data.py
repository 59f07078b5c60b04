"""A private key given as data (``{NAME}_SSHKEYPRIVK``) never touches a disk: the login reads
it from an anonymous in-memory file, gone with the engine even after SIGKILL; and the private
directories killed engines left in the temporary directory are removed by the next one."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import tempfile
from pathlib import Path

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
