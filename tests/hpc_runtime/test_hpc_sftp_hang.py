"""An SFTP server that stops answering (what a hung file system under the login node does) is
a lost login after the command timeout, never an operation that waits forever."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from akoflow.dataplane.mover import Digest
from akoflow.runtimes.base import RuntimeUnavailable
from akoflow.runtimes.hpc.mover import HpcMover
from akoflow.runtimes.hpc.ssh import SshLink
from tests.hpc_runtime.conftest import runtime_env
from tests.hpc_runtime.test_hpc_runtime import make
from tests.slurm_support.cluster import SlurmCluster, process_table


def _sshd_processes() -> dict[int, int]:
    """sshd's processes, each with its parent."""
    table = process_table()
    return {pid: parent for pid, (parent, name) in table.items() if name.startswith("sshd")}


def _new_file_server(before: dict[int, int]) -> int:
    """The SFTP server (internal-sftp) a login started since ``before``: the process of its
    own each such channel gets, the only new sshd process with no sshd child."""
    now = _sshd_processes()
    (leaf,) = {pid for pid in now.keys() - before.keys() if pid not in now.values()}
    return leaf


def test_a_file_server_that_stops_answering_is_a_lost_login_not_a_hang(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    env = runtime_env(slurm_cluster, "hpc", "mount/sftp-hang", COMMAND_TIMEOUT="2")
    mount = Path(env["HPC_MOUNT_PATH"])
    (mount / "d").mkdir(parents=True, exist_ok=True)
    (mount / "d" / "f").write_bytes(b"before")
    big = os.urandom(4 << 20)  # many blocks: a copy of any length is bounded per block
    (mount / "d" / "big").write_bytes(big)
    (tmp_path / "big").write_bytes(big)
    digest = Digest(len(big), hashlib.sha256(big).hexdigest())

    async def scenario() -> None:
        rt = make(env)
        await rt.start()
        link = rt._transport
        assert isinstance(link, SshLink)
        mover = HpcMover("hpc:" + str(mount), str(mount), rt._ready_transport)
        loop = asyncio.get_running_loop()
        try:
            await link.open()
            operations: list[Callable[[], Awaitable[object]]] = [
                lambda: link.read_whole(str(mount / "d" / "f")),
                lambda: link.read_from(str(mount / "d" / "f"), 0, 10),
                lambda: link.makedirs(str(mount / "d" / "e")),
                lambda: link.write_files(str(mount / "d"), {"g": b"x"}),
                lambda: link.mkdir_exclusive(str(mount / "d" / "claim")),
                # The data plane's copies: a stall in a copy of any length.
                lambda: mover.get("d/big", tmp_path / "got"),
                lambda: mover.put(tmp_path / "big", "d/sent", digest),
            ]
            stopped: list[int] = []
            try:
                for operation in operations:
                    before = _sshd_processes()
                    assert await link.read_whole(str(mount / "d" / "f")) == b"before"
                    await rt._ready_transport()  # its one-time setup of a new login done
                    stopped.append(_new_file_server(before))
                    os.kill(stopped[-1], signal.SIGSTOP)
                    started = loop.time()
                    with pytest.raises(RuntimeUnavailable, match="no answer in 2 s"):
                        await operation()
                    assert loop.time() - started < 10
            finally:
                for pid in stopped:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)
            # A new login after each: the files are there again.
            assert await link.read_whole(str(mount / "d" / "f")) == b"before"
            assert link.connections_opened == 1 + len(operations)
            assert not (tmp_path / "got").exists() and not (mount / "d" / "sent").exists()
            await mover.get("d/big", tmp_path / "got")
            await mover.put(tmp_path / "big", "d/sent", digest)
            assert (tmp_path / "got").read_bytes() == (mount / "d" / "sent").read_bytes() == big
        finally:
            await rt.stop()

    asyncio.run(scenario())
