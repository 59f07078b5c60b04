"""Hostile cases of the SFTP bounds (COMMAND_TIMEOUT per lack of progress, not per copy): a
slow link that always moves bytes is never cut, whatever the copy's length."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from akoflow.dataplane.mover import Digest
from akoflow.runtimes.base import RuntimeUnavailable
from akoflow.runtimes.hpc import HpcRuntime
from akoflow.runtimes.hpc.mover import HpcMover
from akoflow.runtimes.hpc.ssh import SshLink
from tests.hpc_runtime.conftest import runtime_env
from tests.hpc_runtime.test_hpc_runtime import make
from tests.hpc_runtime.test_hpc_sftp_hang import _sshd_processes, new_file_servers
from tests.slurm_support.cluster import SlurmCluster

BURST = 32 << 10  # bytes a throttled direction passes per tick
TICK = 0.1  # seconds: 320 KiB/s, a 4 MiB block of a copy takes more than 12 s


async def _throttled_proxy(
    target_port: int, moved: list[int] | None = None
) -> tuple[asyncio.Server, list[asyncio.Task[None]]]:
    """A loopback TCP relay to sshd passing at most BURST bytes per TICK each way: a link
    that always moves bytes, slowly (a real slow network, not a stalled server). ``moved``
    counts the bytes passed [to the server, from it]."""
    pumps: list[asyncio.Task[None]] = []
    counts = moved if moved is not None else [0, 0]

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, way: int) -> None:
        try:
            while data := await reader.read(BURST):
                counts[way] += len(data)
                writer.write(data)
                await writer.drain()
                await asyncio.sleep(TICK)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", target_port)
        pumps.append(asyncio.create_task(pump(reader, up_w, 0)))
        pumps.append(asyncio.create_task(pump(up_r, writer, 1)))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, pumps


@contextlib.asynccontextmanager
async def _through_relay(
    cluster: SlurmCluster, env: dict[str, str], tmp_path: Path, moved: list[int] | None = None
) -> AsyncIterator[tuple[HpcRuntime, SshLink, HpcMover]]:
    """A started runtime whose login goes through the throttled relay, its link and a data
    mover on it; stopped, and the relay closed, at the end."""
    server, pumps = await _throttled_proxy(cluster.ssh_port, moved)
    port = server.sockets[0].getsockname()[1]
    known = tmp_path / "known_hosts"
    known.write_text(
        cluster.known_hosts.read_text().replace(
            f"[127.0.0.1]:{cluster.ssh_port} ", f"[127.0.0.1]:{port} "
        )
    )
    env["HPC_PORT"] = str(port)
    env["HPC_KNOWN_HOSTS"] = str(known)
    rt = make(env)
    await rt.start()
    link = rt._transport
    assert isinstance(link, SshLink)
    mount = env["HPC_MOUNT_PATH"]
    try:
        yield rt, link, HpcMover("hpc:" + mount, mount, rt._ready_transport)
    finally:
        await rt.stop()
        server.close()
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


def test_a_slow_link_that_always_moves_bytes_copies_files_longer_than_the_timeout(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """COMMAND_TIMEOUT=5 over a link of 320 KiB/s: a 6 MiB file takes about 20 s each way,
    each 4 MiB read of a download more than 12 s, yet bytes arrive every 0.1 s. Both copies
    must succeed, byte for byte (a hung server is told by no progress, not by a long copy)."""
    env = runtime_env(slurm_cluster, "hpc", "mount/sftp-slow", COMMAND_TIMEOUT="5")
    mount = Path(env["HPC_MOUNT_PATH"])
    (mount / "d").mkdir(parents=True, exist_ok=True)
    data = os.urandom(6 << 20)
    (mount / "d" / "big").write_bytes(data)
    (tmp_path / "big").write_bytes(data)
    digest = Digest(len(data), hashlib.sha256(data).hexdigest())

    async def scenario() -> None:
        async with _through_relay(slurm_cluster, env, tmp_path) as (_, link, mover):
            # The copy itself (get's hash on the cluster, a command run meanwhile, waits
            # behind the copy's blocks on so slow a link: its own timeout, not this one's).
            got = await mover._download(
                link, os.fsencode(mount / "d" / "big"), os.fsencode(tmp_path / "got"), "d/big"
            )
            assert got == digest
            assert (tmp_path / "got").read_bytes() == data
            await mover.put(tmp_path / "big", "d/sent", digest)
            assert (mount / "d" / "sent").read_bytes() == data

    asyncio.run(scenario())


def test_a_copy_whose_server_stops_mid_way_ends_with_no_partial_file_and_copies_again(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """Over a slow link, the SFTP server stops (SIGSTOP) after part of a file went through,
    in a download and then in an upload: each ends with the login lost (no hang: the remote
    file's close waits on that server too), no file at the destination or its temporary
    name, and copies again once the server goes on."""
    env = runtime_env(slurm_cluster, "hpc", "mount/sftp-midway", COMMAND_TIMEOUT="5")
    mount = Path(env["HPC_MOUNT_PATH"])
    (mount / "d").mkdir(parents=True, exist_ok=True)
    (mount / "d" / "f").write_bytes(b"small")
    data = os.urandom(2 << 20)
    (mount / "d" / "big").write_bytes(data)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big").write_bytes(data)
    (tmp_path / "dst").mkdir()
    digest = Digest(len(data), hashlib.sha256(data).hexdigest())

    unretrieved: list[dict[str, object]] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, c: unretrieved.append(c))
        moved = [0, 0]
        async with _through_relay(slurm_cluster, env, tmp_path, moved) as (rt, link, mover):
            stopped: list[int] = []
            got = os.fsencode(tmp_path / "dst" / "got")
            remote_big = os.fsencode(mount / "d" / "big")
            copies = [
                (lambda: mover._download(link, remote_big, got, "d/big"), 1),
                (lambda: mover.put(tmp_path / "src" / "big", "d/sent", digest), 0),
            ]
            try:
                for copy, way in copies:
                    before = _sshd_processes()
                    assert await link.read_whole(str(mount / "d" / "f")) == b"small"
                    await rt._ready_transport()
                    servers = new_file_servers(before)
                    assert servers
                    task = asyncio.ensure_future(copy())
                    start = moved[way]
                    for _ in range(600):  # part of the file went through (at most 60 s)
                        if moved[way] - start >= 256 << 10 or task.done():
                            break
                        await asyncio.sleep(0.1)
                    assert not task.done()
                    for pid in servers:
                        os.kill(pid, signal.SIGSTOP)
                        stopped.append(pid)
                    # 120 s: a hang guard, far above the 5 s of no progress that ends it.
                    with pytest.raises(RuntimeUnavailable, match="no answer in 5 s"):
                        await asyncio.wait_for(task, 120)
                    for pid in servers:
                        os.kill(pid, signal.SIGCONT)
                    assert sorted(os.listdir(tmp_path / "dst")) == []
                    assert sorted(os.listdir(mount / "d")) == ["big", "f"]
                assert await mover._download(link, remote_big, got, "d/big") == digest
                await mover.put(tmp_path / "src" / "big", "d/sent", digest)
                assert (tmp_path / "dst" / "got").read_bytes() == data
                assert (mount / "d" / "sent").read_bytes() == data
                assert sorted(os.listdir(mount / "d")) == ["big", "f", "sent"]
            finally:
                for pid in stopped:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)
        gc.collect()

    asyncio.run(scenario())
    assert [(c.get("message"), repr(c.get("future"))[:300]) for c in unretrieved] == []
