"""How the HPC runtime reaches its cluster: the one seam between the SLURM adapter and the host
its commands run on.

A :class:`Transport` runs SLURM's commands (argv lists, never a shell line built from values),
reads and writes the runtime's files under MOUNT_PATH, and says how rsync reaches that file
system. Two implementations: :class:`~akoflow.runtimes.hpc.ssh.SshLink` (a login node over one
SSH connection, the default) and :class:`~akoflow.runtimes.hpc.local.LocalTransport` (the
engine itself runs on a login node: ``{NAME}_TRANSPORT=local``).

Errors are the runtime's transient kind: :class:`TransportUnavailable` when nothing was done,
:class:`TransportAmbiguous` when a command may or may not have run (the adapter then looks the
job up by name before it trusts either answer); and one that is not transient,
:class:`HpcMisconfigured`: a setup that will not heal while the engine runs (no credential the
server takes, an unreadable key, an unknown host alias, a refused host key, no sbatch on the
remote PATH, an unknown QUEUE). Work sent there fails at once with the reason and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from akoflow.runtimes.base import RuntimeUnavailable, SubmitError

TRANSPORTS = ("ssh", "local")


class TransportUnavailable(RuntimeUnavailable):
    """The cluster cannot be reached (or refused us); nothing was done."""


class TransportAmbiguous(RuntimeUnavailable):
    """The command was interrupted: it may or may not have run."""


class HpcMisconfigured(SubmitError):
    """The cluster's setup is wrong and retrying will not fix it: ``problem`` says what is
    wrong, ``hint`` what to do about it (both free of secrets)."""

    def __init__(self, problem: str, hint: str = "") -> None:
        super().__init__(f"{problem}; {hint}" if hint else problem)
        self.problem = problem
        self.hint = hint


@dataclass(frozen=True, slots=True)
class Completed:
    """How a command ended: its exit status (255 when a signal killed it) and its output."""

    exit_status: int
    stdout: str
    stderr: str


@dataclass(frozen=True, slots=True)
class RsyncRoute:
    """How rsync reaches the cluster's files: through a remote shell on ``host``, or (both
    None) on this host's own file system."""

    rsh: str | None = None
    """The ``-e`` command (already quoted: rsync splits it itself)."""
    host: str | None = None

    @property
    def is_local(self) -> bool:
        return self.host is None


class Transport(Protocol):
    """What the HPC adapter needs from the host its SLURM commands run on."""

    @property
    def where(self) -> str:
        """The cluster as named in messages (``user@host:port``, ``this host``)."""
        ...

    @property
    def connections_opened(self) -> int:
        """Sessions opened so far: the adapter prepares MOUNT_PATH once per session."""
        ...

    @property
    def user(self) -> str | None:
        """The user SLURM's commands run as (None until known: an SSH login tells)."""
        ...

    async def open(self) -> None:
        """Be ready to run commands (connect if needed). Raises :class:`TransportUnavailable`."""
        ...

    async def close(self) -> None: ...

    async def run(self, argv: Sequence[str], *, timeout: float | None = None) -> Completed:
        """Run ``argv`` (no shell parses it); ``timeout`` overrides the transport's default."""
        ...

    async def write_files(self, directory: str, files: Mapping[str, bytes]) -> None:
        """Create ``directory`` (and parents) and write the files in it."""
        ...

    async def makedirs(self, path: str) -> None: ...

    async def mkdir_exclusive(self, path: str) -> bool:
        """``mkdir`` that fails if ``path`` exists (atomic, also on shared file systems): True
        when this call created it."""
        ...

    async def read_from(self, path: str, offset: int, limit: int) -> bytes | None:
        """At most ``limit`` bytes of a file after ``offset`` (None when it does not exist)."""
        ...

    async def read_whole(self, path: str) -> bytes | None:
        """The whole file, or None when it cannot be read (missing, no permission)."""
        ...

    async def missing_programs(self, programs: Sequence[str]) -> list[str]:
        """Those of ``programs`` known to be absent from the PATH commands run with (a check a
        transport may leave to the commands themselves: then none)."""
        ...

    async def rsync_route(self) -> RsyncRoute:
        """How rsync reaches the cluster's files (over SSH: through this transport's own
        connection, so no second login)."""
        ...
