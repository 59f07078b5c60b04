"""Staging of ``spec.volumes`` (``local:remote``) with rsync, along the route the runtime's
transport gives (:class:`~akoflow.runtimes.hpc.transport.RsyncRoute`): over SSH with the
runtime's identity, or a copy on this host when the engine runs on the login node (nothing at
all when both sides are the same directory).

rsync runs as an argv list (no local shell); the SSH transport's ``-e`` command keeps host key
checking on against the runtime's known_hosts file. Both sides are absolute paths (never read
as ``host:path``); ``--protect-args`` keeps the remote shell away from them, and ``--update``
never overwrites a newer file on the receiving side (an activity's fresh output is not
clobbered by another activity's stage-in).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass

from akoflow.config import activity_environ
from akoflow.runtimes.base import RuntimeUnavailable, SubmitError
from akoflow.runtimes.hpc.transport import RsyncRoute

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


def rsync_argv(route: RsyncRoute, transfer: Transfer, *, upload: bool) -> list[str]:
    """rsync of one volume in one direction, through ``route`` (a remote shell, or none when
    the cluster's files are on this host)."""
    slash = "/" if transfer.is_dir else ""
    local = transfer.local + slash
    remote = transfer.remote + slash
    if route.host is not None:
        remote = f"{route.host}:{remote}"
    src, dst = (local, remote) if upload else (remote, local)
    shell = ["-e", route.rsh] if route.rsh is not None else []
    return ["rsync", "-a", "--update", "--protect-args", *shell, "--", src, dst]


def same_place(route: RsyncRoute, transfer: Transfer) -> bool:
    """Both sides of a volume are one directory (or file) of this host: nothing to copy."""
    if not route.is_local:
        return False
    try:
        return os.path.samefile(transfer.local, transfer.remote)
    except OSError:
        return os.path.realpath(transfer.local) == os.path.realpath(transfer.remote)


async def run_rsync(argv: list[str], on_start: Callable[[int], None] | None = None) -> None:
    """Run rsync; a connection problem is transient, anything else fails the attempt.
    ``on_start`` gets its pid as soon as it exists (its writes are the attempt's)."""
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
    if on_start is not None:
        on_start(proc.pid)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), RSYNC_TIMEOUT)
    except TimeoutError:
        raise RuntimeUnavailable(f"rsync took more than {RSYNC_TIMEOUT:g}s") from None
    finally:
        if proc.returncode is None:  # timed out or cancelled: never leave it behind
            proc.kill()
            await proc.wait()
    if proc.returncode == 0:
        return
    message = err.decode(errors="replace").strip().splitlines()
    tail = message[-1] if message else ""
    if proc.returncode in (10, 12, 30, 35, 255):  # socket/protocol/timeouts/ssh failure
        raise RuntimeUnavailable(f"rsync could not reach the cluster: {tail}")
    raise SubmitError(f"rsync failed (exit {proc.returncode}): {tail}")
