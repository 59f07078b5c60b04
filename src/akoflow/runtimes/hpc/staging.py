"""Staging of ``spec.volumes`` (``local:remote``) with rsync over the runtime's SSH identity.

rsync runs as an argv list (no local shell); its ``-e`` ssh command is built with
:func:`shlex.join` and keeps host key checking on against the runtime's known_hosts file.
``--protect-args`` keeps the remote shell away from the paths, and ``--update`` never
overwrites a newer file on the receiving side (an activity's fresh output is not clobbered by
another activity's stage-in).
"""

from __future__ import annotations

import asyncio
import os
import shlex
from dataclasses import dataclass

from akoflow.config import activity_environ
from akoflow.runtimes.base import RuntimeUnavailable, SubmitError

RSYNC_TIMEOUT = 600.0


@dataclass(frozen=True, slots=True)
class Transfer:
    local: str
    remote: str
    is_dir: bool


def resolve(local: str, remote: str, local_base: str, remote_base: str) -> Transfer:
    """Absolute paths: a relative ``local`` is under the workflow's data dir, a relative
    ``remote`` under MOUNT_PATH."""
    loc = os.path.normpath(os.path.join(local_base, local))
    rem = os.path.normpath(os.path.join(remote_base, remote))
    is_dir = local.endswith("/") or os.path.isdir(loc) or not os.path.exists(loc)
    return Transfer(loc, rem, is_dir)


def ssh_command(
    *, port: int, user: str, key_file: str, known_hosts: str, connect_timeout: float
) -> str:
    return shlex.join(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-p",
            str(port),
            "-l",
            user,
            "-i",
            key_file,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            f"ConnectTimeout={max(1, int(connect_timeout))}",
        ]
    )


def rsync_argv(ssh: str, host: str, transfer: Transfer, *, upload: bool) -> list[str]:
    slash = "/" if transfer.is_dir else ""
    local = transfer.local + slash
    remote = f"{host}:{transfer.remote}{slash}"
    src, dst = (local, remote) if upload else (remote, local)
    return ["rsync", "-a", "--update", "--protect-args", "-e", ssh, "--", src, dst]


async def run_rsync(argv: list[str]) -> None:
    """Run rsync; a connection problem is transient, anything else fails the attempt."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=activity_environ(),  # rsync and its ssh need none of the engine's secrets
        )
    except OSError as exc:
        raise SubmitError(f"cannot run rsync: {exc.strerror}") from None
    try:
        _, err = await asyncio.wait_for(proc.communicate(), RSYNC_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeUnavailable(f"rsync took more than {RSYNC_TIMEOUT:g}s") from None
    if proc.returncode == 0:
        return
    message = err.decode(errors="replace").strip().splitlines()
    tail = message[-1] if message else ""
    if proc.returncode in (10, 12, 30, 35, 255):  # socket/protocol/timeouts/ssh failure
        raise RuntimeUnavailable(f"rsync could not reach the cluster: {tail}")
    raise SubmitError(f"rsync failed (exit {proc.returncode}): {tail}")
