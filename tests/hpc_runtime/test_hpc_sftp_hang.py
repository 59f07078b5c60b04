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


def new_file_servers(before: dict[int, int]) -> list[int]:
    """The SFTP servers logins started since ``before``: new sshd processes with no sshd
    child whose command line names internal-sftp (``sshd: USER@internal-sftp``; a command's
    session run meanwhile is another leaf)."""
    now = _sshd_processes()
    found = []
    for pid in now.keys() - before.keys():
        if pid in now.values():
            continue
        with contextlib.suppress(OSError):
            if b"sftp" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def _new_file_server(before: dict[int, int]) -> int:
    (server,) = new_file_servers(before)
    return server


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


def test_callers_at_the_same_moment_share_one_file_server(slurm_cluster: SlurmCluster) -> None:
    """A fan-out's copies ask for the login's SFTP client at once: one is started (each
    started its own before, and the extra channels stayed open until the login closed)."""
    env = runtime_env(slurm_cluster, "hpc", "mount/sftp-shared")
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    for i in range(8):
        (mount / f"f{i}").write_bytes(b"%d" % i)

    async def scenario() -> None:
        rt = make(env)
        await rt.start()
        link = rt._transport
        assert isinstance(link, SshLink)
        try:
            await link.open()
            before = _sshd_processes()
            got = await asyncio.gather(*(link.read_whole(str(mount / f"f{i}")) for i in range(8)))
            assert got == [b"%d" % i for i in range(8)]
            assert len(new_file_servers(before)) == 1
        finally:
            await rt.stop()

    asyncio.run(scenario())
