"""One SSH connection per cluster (asyncssh), shared by every command of the runtime.

- Commands are argv lists, joined with :func:`shlex.join` for the remote shell: nothing from a
  workflow is ever parsed by it. Files travel over one SFTP channel of the same connection.
- At most ``max_sessions`` channels are open at once (sshd's ``MaxSessions`` is 10 by default).
- Keepalives detect a dead peer; a lost connection is replaced on the next use, with an
  exponential back-off between failed attempts so a down login node is not hammered.
- Host keys are verified against a known_hosts file. ``accept_new`` adds the key of a host that
  has no entry yet (like OpenSSH's ``StrictHostKeyChecking=accept-new``); a *different* key for
  a known host is always refused. Passwords go to asyncssh only, never to a command line.
- A key given as data (``SSHKEYPRIVK``) is written to a private 0600 file that lives as long as
  the link (:func:`link_for`); rsync's own ssh uses the same key and known_hosts
  (:meth:`SshLink.rsync_route`).

This is the :class:`~akoflow.runtimes.hpc.transport.Transport` the HPC runtime uses by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

import asyncssh

from akoflow.runtimes.backoff import Backoff
from akoflow.runtimes.hpc.settings import HpcSettings
from akoflow.runtimes.hpc.transport import (
    Completed,
    RsyncRoute,
    TransportAmbiguous,
    TransportUnavailable,
)

log = logging.getLogger(__name__)


class SshUnavailable(TransportUnavailable):
    """The login node cannot be reached or refused us; nothing was sent."""


class SshAmbiguous(TransportAmbiguous):
    """The connection broke while a command was running: it may or may not have run."""


@dataclass(frozen=True, slots=True)
class SshTarget:
    host: str
    port: int
    user: str
    known_hosts: str
    accept_new: bool = False
    key_file: str | None = None
    passphrase: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        return f"SshTarget({self.user}@{self.host}:{self.port})"

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


class _Client(asyncssh.SSHClient):
    def __init__(self, link: SshLink) -> None:
        self._link = link
        self._conn: asyncssh.SSHClientConnection | None = None

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self._conn = conn

    def connection_lost(self, exc: Exception | None) -> None:
        if self._link._conn is self._conn:  # not a connection already replaced
            self._link._lost(exc)


class SshLink:
    def __init__(
        self,
        target: SshTarget,
        *,
        max_sessions: int = 8,
        keepalive: float = 15.0,
        connect_timeout: float = 10.0,
        command_timeout: float = 60.0,
        reconnect_max: float = 30.0,
        key_dir: str | None = None,
    ) -> None:
        self.target = target
        self._key_dir = key_dir  # a private dir holding the key file: removed on close
        self._sessions = asyncio.Semaphore(max_sessions)
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._lock = asyncio.Lock()
        self._retry_at = 0.0
        self._backoff = Backoff(0.25, max(0.25, reconnect_max))
        self._last_error = ""
        self.connections_opened = 0
        """SSH connections this link has opened (for benchmarks and tests)."""

    # ------------------------------------------------------------------ connection

    def _lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.info("ssh connection to %s lost: %s", self.target.where, exc)
        self._conn = None
        self._sftp = None

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def where(self) -> str:
        return self.target.where

    @property
    def key_file(self) -> str | None:
        return self.target.key_file

    async def open(self) -> None:
        await self.connection()

    async def connection(self) -> asyncssh.SSHClientConnection:
        conn = self._conn
        if conn is not None:
            return conn
        async with self._lock:
            if self._conn is not None:
                return self._conn
            now = time.monotonic()
            if now < self._retry_at:
                raise SshUnavailable(self._last_error)
            try:
                self._conn = await self._open()
            except SshUnavailable as exc:
                self._last_error = str(exc)
                self._retry_at = time.monotonic() + self._backoff.next()
                raise
            self._backoff.reset()
            self._retry_at = 0.0
            self.connections_opened += 1
            return self._conn

    async def _open(self) -> asyncssh.SSHClientConnection:
        t = self.target
        where = t.where
        try:
            return await self._connect()
        except asyncssh.HostKeyNotVerifiable as exc:
            if t.accept_new and not self._host_known():
                await self._learn_host_key()
                try:
                    return await self._connect()
                except (OSError, asyncssh.Error, TimeoutError) as again:
                    raise SshUnavailable(f"ssh {where}: {_describe(again)}") from None
            raise SshUnavailable(
                f"ssh {where}: host key verification failed: the key the server presented "
                f"does not match {t.known_hosts} ({exc.reason}); refusing to connect. If the "
                "host key really changed, update that file"
            ) from None
        except asyncssh.PermissionDenied:
            raise SshUnavailable(f"ssh {where}: authentication failed") from None
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise SshUnavailable(f"ssh {where}: {_describe(exc)}") from None

    async def _connect(self) -> asyncssh.SSHClientConnection:
        t = self.target
        if not os.path.exists(t.known_hosts):
            if not t.accept_new:
                raise SshUnavailable(
                    f"ssh {t.where}: known hosts file {t.known_hosts} does not exist; add the "
                    "cluster's host key to it (or allow accepting a new key explicitly)"
                )
            os.makedirs(os.path.dirname(t.known_hosts) or ".", exist_ok=True)
            with open(t.known_hosts, "a"):
                pass
        conn, _ = await asyncio.wait_for(
            asyncssh.create_connection(
                lambda: _Client(self),
                t.host,
                t.port,
                username=t.user,
                known_hosts=t.known_hosts,
                client_keys=[t.key_file] if t.key_file else None,
                passphrase=t.passphrase,
                password=t.password,
                agent_path=None,
                config=[],
                keepalive_interval=self._keepalive,
                keepalive_count_max=3,
                login_timeout=self._connect_timeout,
            ),
            self._connect_timeout,
        )
        return conn

    def _host_known(self) -> bool:
        t = self.target
        try:
            known = asyncssh.read_known_hosts(t.known_hosts)
        except (OSError, ValueError):
            return False
        trusted = known.match(t.host, "", t.port)[0]
        return bool(trusted)

    async def _learn_host_key(self) -> None:
        t = self.target
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(t.host, t.port), self._connect_timeout
        )
        if key is None:
            raise SshUnavailable(f"ssh {t.where}: the server presented no host key")
        pattern = t.host if t.port == 22 else f"[{t.host}]:{t.port}"
        line = f"{pattern} {key.export_public_key('openssh').decode().strip()}\n"
        with open(t.known_hosts, "a") as f:
            f.write(line)
        log.warning("added the host key of %s to %s", t.where, t.known_hosts)

    async def close(self) -> None:
        conn, self._conn, self._sftp = self._conn, None, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await conn.wait_closed()
        if self._key_dir is not None:
            shutil.rmtree(self._key_dir, ignore_errors=True)
            self._key_dir = None

    # ------------------------------------------------------------------ commands

    async def run(self, argv: Sequence[str], *, timeout: float | None = None) -> Completed:
        """Run ``argv`` on the login node. Raises :class:`SshUnavailable` when nothing was
        sent and :class:`SshAmbiguous` when the command may have run."""
        conn = await self.connection()
        command = shlex.join(argv)
        async with self._sessions:
            try:
                result = await conn.run(
                    command,
                    check=False,
                    timeout=timeout or self.command_timeout,
                    encoding="utf-8",
                    errors="replace",
                )
            except asyncssh.ChannelOpenError as exc:
                self._maybe_broken(conn)
                raise SshUnavailable(f"ssh {self.target.where}: {_describe(exc)}") from None
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                self._maybe_broken(conn)
                raise SshAmbiguous(
                    f"ssh {self.target.where}: {argv[0]} interrupted: {_describe(exc)}"
                ) from None
        status = result.exit_status
        if status is None or (status < 0 and result.exit_signal is None):
            # The channel closed without an exit status: the connection went away mid-command.
            self._maybe_broken(conn)
            raise SshAmbiguous(
                f"ssh {self.target.where}: the connection closed while {argv[0]} ran"
            )
        if status < 0:  # killed by a signal on the remote side
            status = 255
        return Completed(status, str(result.stdout or ""), str(result.stderr or ""))

    def _maybe_broken(self, conn: asyncssh.SSHClientConnection) -> None:
        if self._conn is conn and conn.is_closed():
            self._lost(None)

    async def sftp(self) -> asyncssh.SFTPClient:
        conn = await self.connection()
        if self._sftp is None:
            try:
                self._sftp = await conn.start_sftp_client()
            except (OSError, asyncssh.Error) as exc:
                self._maybe_broken(conn)
                raise SshUnavailable(f"sftp {self.target.where}: {_describe(exc)}") from None
        return self._sftp

    async def missing_programs(self, programs: Sequence[str]) -> list[str]:
        """Not checked ahead over SSH: a missing program shows in its command's output."""
        return []

    def rsync_route(self) -> RsyncRoute | None:
        """rsync through its own ssh with this link's key and known_hosts; None without a
        key file (rsync cannot answer a password)."""
        t = self.target
        if t.key_file is None:
            return None
        rsh = rsync_ssh_command(
            port=t.port,
            user=t.user,
            key_file=t.key_file,
            known_hosts=t.known_hosts,
            connect_timeout=self._connect_timeout,
        )
        return RsyncRoute(rsh, t.host)

    async def write_files(self, directory: str, files: Mapping[str, bytes]) -> None:
        """Create ``directory`` (and parents) and write the files in it."""
        sftp = await self.sftp()
        try:
            await sftp.makedirs(directory, exist_ok=True)
            for name, data in files.items():
                async with sftp.open(f"{directory}/{name}", "wb") as f:
                    await f.write(data)
        except (OSError, asyncssh.Error) as exc:
            self._sftp_failed(exc)

    async def makedirs(self, path: str) -> None:
        sftp = await self.sftp()
        try:
            await sftp.makedirs(path, exist_ok=True)
        except (OSError, asyncssh.Error) as exc:
            self._sftp_failed(exc)

    async def mkdir_exclusive(self, path: str) -> bool:
        """``mkdir`` that fails if ``path`` exists (atomic, also on shared file systems):
        True when this call created it."""
        sftp = await self.sftp()
        try:
            await sftp.mkdir(path)
        except asyncssh.SFTPError as exc:
            try:
                if await sftp.exists(path):
                    return False
            except (OSError, asyncssh.Error) as again:
                self._sftp_failed(again)
            self._sftp_failed(exc)
        except (OSError, asyncssh.Error) as exc:
            self._sftp_failed(exc)
        return True

    def _sftp_failed(self, exc: BaseException) -> NoReturn:
        if not isinstance(exc, asyncssh.SFTPError):
            self._lost(None)
        raise SshUnavailable(f"sftp {self.target.where}: {_describe(exc)}") from None

    async def read_from(self, path: str, offset: int, limit: int) -> bytes | None:
        """Bytes of a remote file after ``offset`` (None when the file does not exist)."""
        sftp = await self.sftp()
        try:
            async with sftp.open(path, "rb") as f:
                await f.seek(offset)
                data = await f.read(limit)
        except asyncssh.SFTPNoSuchFile:
            return None
        except (OSError, asyncssh.Error) as exc:
            self._sftp_failed(exc)
        return data if isinstance(data, bytes) else data.encode()

    async def read_whole(self, path: str) -> bytes | None:
        """The whole remote file, or None when the server cannot give it (missing, not
        readable). Raises :class:`SshUnavailable` only when the connection failed."""
        sftp = await self.sftp()
        try:
            async with sftp.open(path, "rb") as f:
                data = await f.read()
        except asyncssh.SFTPError:
            return None
        except (OSError, asyncssh.Error) as exc:
            self._sftp_failed(exc)
        return data if isinstance(data, bytes) else data.encode()


def link_for(s: HpcSettings) -> SshLink:
    """The link a runtime with settings ``s`` uses; a key given as data is written to a 0600
    file in a private 0700 directory, removed when the link is closed."""
    key_file, key_dir = s.key_file, None
    if s.key_data is not None:
        key_dir = tempfile.mkdtemp(prefix="akoflow-hpc-")
        os.chmod(key_dir, 0o700)
        key_file = os.path.join(key_dir, "id")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(s.key_data if s.key_data.endswith(b"\n") else s.key_data + b"\n")
    target = SshTarget(
        host=s.host,
        port=s.port,
        user=s.user,
        known_hosts=s.known_hosts_path,
        accept_new=s.accept_new_host_key,
        key_file=key_file,
        passphrase=s.key_passphrase,
        password=s.password,
    )
    return SshLink(
        target,
        max_sessions=s.max_sessions,
        keepalive=s.keepalive,
        connect_timeout=s.connect_timeout,
        command_timeout=s.command_timeout,
        reconnect_max=s.reconnect_max,
        key_dir=key_dir,
    )


def rsync_ssh_command(
    *, port: int, user: str, key_file: str, known_hosts: str, connect_timeout: float
) -> str:
    """rsync's ``-e``: OpenSSH with our key and known_hosts only, host keys checked."""
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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.Error):
        return exc.reason or type(exc).__name__
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
