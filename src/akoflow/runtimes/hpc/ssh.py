"""One SSH connection per cluster (asyncssh), shared by every command, file and transfer of the
runtime: one login per cluster per run, so a centre that asks for MFA at each login asks once.

- The login follows the user's OpenSSH setup (:mod:`.sshconfig`): ``HOST_CLUSTER`` may be a
  ``Host`` alias; HostName, Port, User, IdentityFile, IdentitiesOnly, ProxyJump, ProxyCommand,
  UserKnownHostsFile and Include come from the config, keys from ssh-agent (``SSH_AUTH_SOCK``)
  and ``~/.ssh/id_*``, unless a ``{NAME}_*`` setting says otherwise (a setting always wins).
  Jump hosts (ProxyJump or ``JUMP_HOST``) are connected by this module, hop by hop, with the
  same credentials and questions as the login node.
- Commands are argv lists, joined with :func:`shlex.join` for the remote shell: nothing from a
  workflow is ever parsed by it. Files travel over one SFTP channel of the same connection;
  rsync's remote side runs on it too (:mod:`.relay`).
- At most ``max_sessions`` channels are open at once (sshd's ``MaxSessions`` is 10 by default).
- Keepalives detect a dead peer; a lost connection is replaced on the next use, with an
  exponential back-off between failed attempts so a down login node is not hammered.
- Host keys are verified against known_hosts files (hashed entries and ``@cert-authority``
  lines included). ``accept_new`` adds the key of a host that has no entry yet (like OpenSSH's
  ``StrictHostKeyChecking=accept-new``); a *different* key for a known host is always refused.
  Passwords go to asyncssh only, never to a command line.
- Keyboard-interactive questions (MFA) are asked through :mod:`.prompt`: on the terminal of
  ``akoflow run``, once per login; without a terminal the login fails and says why.
- What cannot heal (no credential accepted, unreadable key, unknown alias, refused host key,
  questions nobody can answer) raises :class:`HpcMisconfigured`; what can (host unreachable,
  connection dropped) raises :class:`SshUnavailable`.
- A key given as data (``SSHKEYPRIVK``, with ``SSHKEYPUBLK``) and an ssh_config snippet
  (``SSHCONFIG``) are written to a private 0700 directory that lives as long as the link
  (:func:`link_for`).

This is the :class:`~akoflow.runtimes.hpc.transport.Transport` the HPC runtime uses by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import asyncssh

from akoflow.runtimes.backoff import Backoff
from akoflow.runtimes.hpc import prompt, sshconfig
from akoflow.runtimes.hpc.relay import RsyncRelay
from akoflow.runtimes.hpc.settings import HpcSettings
from akoflow.runtimes.hpc.transport import (
    Completed,
    HpcMisconfigured,
    RsyncRoute,
    TransportAmbiguous,
    TransportUnavailable,
)

log = logging.getLogger(__name__)

_UNKNOWN_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


class SshUnavailable(TransportUnavailable):
    """The login node cannot be reached now; nothing was sent."""


class SshAmbiguous(TransportAmbiguous):
    """The connection broke while a command was running: it may or may not have run."""


@dataclass(frozen=True, slots=True)
class SshTarget:
    """The login as the settings give it; what they leave unset (None) the ssh config and
    OpenSSH's defaults fill in."""

    host: str
    port: int | None = None
    user: str | None = None
    known_hosts: str | None = None
    accept_new: bool = False
    key_file: str | None = None
    cert_file: str | None = None
    passphrase: str | None = None
    password: str | None = None
    jump: str | None = None
    config_paths: tuple[str, ...] = ()
    names: dict[str, str] = field(default_factory=dict)  # setting -> its variable, for hints

    def __repr__(self) -> str:
        return f"SshTarget({self.where})"

    @property
    def where(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{self.host}{port}"

    def variable(self, key: str) -> str:
        return self.names.get(key, key)


class _Client(asyncssh.SSHClient):
    def __init__(self, link: SshLink, where: str) -> None:
        self._link = link
        self._where = where
        self._conn: asyncssh.SSHClientConnection | None = None
        self._password_answered = False

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self._conn = conn

    def connection_lost(self, exc: Exception | None) -> None:
        if self._link._conn is self._conn:  # not a connection already replaced
            self._link._lost(exc)

    def kbdint_auth_requested(self) -> str | None:
        return ""  # let the server ask; the answers decide

    async def kbdint_challenge_received(
        self, name: str, instructions: str, lang: str, prompts: Sequence[tuple[str, bool]]
    ) -> list[str] | None:
        if self._link._asks_password(prompts):
            # PASSWORD once per login: a refused one sent again until the server's
            # MaxAuthTries disconnects looks like a lost connection (held forever, not a
            # wrong setting) and counts failures that can lock the account.
            if self._password_answered:
                return None
            self._password_answered = True
        return await self._link._answer(self._where, name, instructions, prompts)

    def password_auth_requested(self) -> str | None:
        # asyncssh has sent the ``password`` option once already: a refused one is not
        # sent again (see kbdint_challenge_received).
        return None


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
        memory_fds: tuple[int, ...] = (),
        prompter: prompt.Prompter | None = None,
    ) -> None:
        self.target = target
        self._key_dir = key_dir  # private: config snippet, public key, socket; removed on close
        self._memory_fds = memory_fds  # a private key given as data: closed on close
        self._sessions = asyncio.Semaphore(max_sessions)
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._prompter = prompter
        self._conn: asyncssh.SSHClientConnection | None = None
        self._hops: list[asyncssh.SSHClientConnection] = []
        self._sftp: asyncssh.SFTPClient | None = None
        self._lock = asyncio.Lock()
        self._sftp_lock = asyncio.Lock()
        self._retry_at = 0.0
        self._backoff = Backoff(0.25, max(0.25, reconnect_max))
        self._last_error: Exception | None = None
        self._prompting = 0  # questions on the terminal now (the login clock stops meanwhile)
        self._prompt_serial = 0
        self._unanswerable = False  # the server asked and there is nobody to ask
        self._relay: RsyncRelay | None = None
        self._checked_programs: tuple[int, list[str]] | None = None
        self.resolved: sshconfig.Resolved | None = None
        self._reading: asyncio.Future[sshconfig.Resolved] | None = None  # the config, read now
        self.connections_opened = 0
        """SSH connections this link has opened (for benchmarks and tests)."""
        self.prompts_answered = 0
        """Keyboard-interactive rounds answered (for tests)."""

    # ------------------------------------------------------------------ connection

    def _lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.info("ssh connection to %s lost: %s", self.where, exc)
        self._conn = None
        self._sftp = None

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def where(self) -> str:
        return self.resolved.where if self.resolved is not None else self.target.where

    @property
    def user(self) -> str | None:
        return self.resolved.user if self.resolved is not None else self.target.user

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
            if time.monotonic() < self._retry_at and self._last_error is not None:
                raise self._again(self._last_error)
            try:
                self._conn = await self._open()
            except (SshUnavailable, HpcMisconfigured) as exc:
                self._last_error = exc
                self._retry_at = time.monotonic() + self._backoff.next()
                raise
            self._backoff.reset()
            self._retry_at = 0.0
            self._last_error = None
            self.connections_opened += 1
            return self._conn

    @staticmethod
    def _again(exc: Exception) -> Exception:
        if isinstance(exc, HpcMisconfigured):
            return HpcMisconfigured(exc.problem, exc.hint)
        return SshUnavailable(str(exc))

    def resolve(self) -> sshconfig.Resolved:
        """The login as it will be made (settings, then the ssh config), without connecting;
        reads the config files (call it off the event loop). Raises HpcMisconfigured."""
        self.resolved = self._resolve()
        return self.resolved

    async def read_config(self) -> sshconfig.Resolved:
        """:meth:`resolve` in a thread of its own, bounded by the connect timeout: a ``Match
        exec`` command that does not end (asyncssh runs it without a limit) makes the login
        unavailable with that reason instead of a hang. A read still running is waited for
        again by the next call, never started twice; a daemon thread, so that it does not keep
        the process alive either. Raises HpcMisconfigured or SshUnavailable."""
        if self._reading is None:
            self._reading = self._read_in_thread()
        reading = self._reading
        try:
            resolved = await asyncio.wait_for(asyncio.shield(reading), self._connect_timeout)
        except TimeoutError:
            files = ", ".join(self.target.config_paths) or "none"
            raise SshUnavailable(
                f"ssh {self.target.where}: reading the ssh config ({files}) took more than "
                f"{self._connect_timeout:g} s: does a Match exec command there not end?"
            ) from None
        finally:
            if reading.done():
                self._reading = None
        self.resolved = resolved
        return resolved

    def _read_in_thread(self) -> asyncio.Future[sshconfig.Resolved]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[sshconfig.Resolved] = loop.create_future()
        future.add_done_callback(_retrieve)  # nobody may wait for it any more (closed link)

        def settle(result: sshconfig.Resolved | None, exc: BaseException | None) -> None:
            if future.done():
                return
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        def read() -> None:
            try:
                outcome: tuple[Any, BaseException | None] = (self._resolve(), None)
            except BaseException as exc:  # handed to the waiting task
                outcome = (None, exc)
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(settle, *outcome)

        threading.Thread(target=read, name="akoflow-ssh-config", daemon=True).start()
        return future

    def known_host_files(self, resolved: sshconfig.Resolved) -> list[str]:
        """The existing known_hosts files the login checks the host key against."""
        return [p for p in resolved.known_hosts if os.path.exists(p)]

    def host_key_known(self, resolved: sshconfig.Resolved, files: list[str]) -> bool:
        """``files`` have an entry (plain, hashed or ``@cert-authority``) for the host."""
        return self._host_known(resolved, files)

    def _resolve(self) -> sshconfig.Resolved:
        t = self.target
        return sshconfig.resolve(
            list(t.config_paths),
            t.host,
            user=t.user,
            port=t.port,
            known_hosts=t.known_hosts,
            jump=t.jump,
            key_file=t.key_file,
            names=t.names,
        )

    async def _open(self) -> asyncssh.SSHClientConnection:
        resolved = await self.read_config()
        known = self._known_hosts(resolved)
        self._unanswerable = False
        hops: list[asyncssh.SSHClientConnection] = []
        try:
            for hop in resolved.jump:
                hops.append(await self._hop(hop, hops, resolved))
            try:
                conn = await self._login(
                    resolved.alias, None, None, hops, resolved.where, known, node=True
                )
            except asyncssh.HostKeyNotVerifiable:
                if not (self.target.accept_new and not self._host_known(resolved, known)):
                    raise
                await self._learn_host_key(resolved, known, hops[-1] if hops else None)
                conn = await self._login(
                    resolved.alias, None, None, hops, resolved.where, known, node=True
                )
        except BaseException as exc:
            for opened in reversed(hops):
                opened.close()
            if isinstance(exc, (HpcMisconfigured, SshUnavailable)):
                raise
            if isinstance(exc, (OSError, asyncssh.Error, TimeoutError, ValueError)):
                raise self._classify(exc, resolved, known) from None
            raise
        self._hops = hops
        return conn

    async def _hop(
        self,
        hop: sshconfig.Hop,
        hops: list[asyncssh.SSHClientConnection],
        resolved: sshconfig.Resolved,
    ) -> asyncssh.SSHClientConnection:
        """The login to jump host ``hop``; its host key must be known (ACCEPT_NEW_HOST_KEY
        covers the login node only: a new bastion is a decision for its user)."""
        try:
            return await self._login(hop.host, hop.port, hop.user, hops, str(hop))
        except (asyncssh.ConnectionLost, asyncssh.ProtocolError, OSError, TimeoutError) as exc:
            # Say which hop: "... via B: timed out" reads as if the login node did.
            if isinstance(exc, socket.gaierror) and exc.errno in _UNKNOWN_NAME:
                raise HpcMisconfigured(
                    f"ssh jump host {hop} (on the way to {resolved.where}): host {hop.host} "
                    "is unknown",
                    f"fix {self.target.variable('JUMP_HOST')} or the config's ProxyJump",
                ) from None
            raise SshUnavailable(
                f"ssh jump host {hop} (on the way to {resolved.where}): {_describe(exc)}"
            ) from None
        except asyncssh.HostKeyNotVerifiable as exc:
            files = self.target.known_hosts or "the config's UserKnownHostsFile or ~/.ssh"
            raise HpcMisconfigured(
                f"ssh jump host {hop} (on the way to {resolved.where}): host key verification "
                f"failed ({exc.reason}); refusing to connect",
                f"record the jump host's key in {files} with one `ssh {hop}` by hand "
                f"({self.target.variable('ACCEPT_NEW_HOST_KEY')} covers the login node only)",
            ) from None

    def _known_hosts(self, resolved: sshconfig.Resolved) -> list[str]:
        """The known_hosts files to check against; the first is created empty when new keys
        may be accepted."""
        existing = [p for p in resolved.known_hosts if os.path.exists(p)]
        if existing:
            return existing
        first = resolved.known_hosts[0]
        if not self.target.accept_new:
            raise HpcMisconfigured(
                f"ssh {resolved.where}: known hosts file {first} does not exist",
                f"add the cluster's host key to it (ssh-keyscan, or one `ssh {resolved.alias}` "
                f"by hand), set {self.target.variable('KNOWN_HOSTS')}, or allow accepting a new "
                f"key with {self.target.variable('ACCEPT_NEW_HOST_KEY')}=true",
            )
        os.makedirs(os.path.dirname(first) or ".", exist_ok=True)
        with open(first, "a"):
            pass
        return [first]

    def _options(self, known: list[str] | None) -> dict[str, Any]:
        """What the settings set explicitly; the rest is asyncssh's reading of the config."""
        t = self.target
        options: dict[str, Any] = {
            "config": list(t.config_paths),
            "keepalive_interval": self._keepalive,
            "keepalive_count_max": 3,
            "connect_timeout": None,  # the whole login is timed by _login
            "login_timeout": self._connect_timeout + prompt.ANSWER_TIMEOUT,
        }
        if known is not None:
            options["known_hosts"] = known
        elif t.known_hosts is not None:
            options["known_hosts"] = t.known_hosts
        if t.key_file is not None:
            options["client_keys"] = [t.key_file]
            options["agent_path"] = None  # the key that was set, only
            if t.cert_file is not None:
                options["client_certs"] = [t.cert_file]
        if t.passphrase is not None:
            options["passphrase"] = t.passphrase
        if t.password is not None:
            options["password"] = t.password
        return options

    async def _login(
        self,
        host: str,
        port: int | None,
        user: str | None,
        hops: list[asyncssh.SSHClientConnection],
        where: str,
        known: list[str] | None = None,
        *,
        node: bool = False,
    ) -> asyncssh.SSHClientConnection:
        """One SSH login (to a jump host, or the login node with ``node``), through the hops
        so far. The clock stops while a question waits on the terminal."""
        options = self._options(known)
        if "agent_path" not in options and not await agent_answers():
            options["agent_path"] = None  # asyncssh would wait on it: the default keys then
        t = self.target
        if node:  # the settings' port and user (a jump host on the same name has its own)
            port, user = t.port, t.user
        if port is not None:
            options["port"] = port
        if user is not None:
            options["username"] = user
        options["tunnel"] = hops[-1] if hops else None

        async def connect() -> asyncssh.SSHClientConnection:
            conn, _ = await asyncssh.create_connection(
                lambda: _Client(self, where), host, **options
            )
            return conn

        task = asyncio.create_task(connect())
        try:
            while True:
                serial = self._prompt_serial
                done, _ = await asyncio.wait({task}, timeout=self._connect_timeout)
                if done:
                    return task.result()
                if not self._prompting and serial == self._prompt_serial:
                    raise TimeoutError
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def _answer(
        self, where: str, name: str, instructions: str, prompts: Sequence[tuple[str, bool]]
    ) -> list[str] | None:
        if not prompts:
            return []
        if self._asks_password(prompts):
            return [self.target.password or ""]  # PAM's "Password:" through kbdint
        if self._prompter is None:
            self._unanswerable = True
            return None  # asyncssh moves on to the next method (there is none: denied)
        self._prompting += 1
        self._prompt_serial += 1
        try:
            answers = await self._prompter(where, name, instructions, prompts)
        except TimeoutError:
            self._unanswerable = True
            return None
        finally:
            self._prompting -= 1
            self._prompt_serial += 1
        self.prompts_answered += 1
        return answers

    def _asks_password(self, prompts: Sequence[tuple[str, bool]]) -> bool:
        """One hidden question that asks for a password, and PASSWORD is set: answered with
        it. Any other question (an MFA code asked after the password) goes to the terminal:
        sending the password there would fail the login without ever asking the code."""
        if self.target.password is None or len(prompts) != 1:
            return False
        text, echo = prompts[0]
        return not echo and "password" in text.lower()

    def _classify(
        self, exc: BaseException, resolved: sshconfig.Resolved, known: list[str]
    ) -> Exception:
        """The error to raise for a failed login: HpcMisconfigured when waiting will not
        help, SshUnavailable when it may."""
        where = resolved.where
        t = self.target
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            return HpcMisconfigured(
                f"ssh {where}: host key verification failed: the key the server presented "
                f"does not match {', '.join(known)} ({exc.reason}); refusing to connect",
                "if the host key really changed, update that file (ssh-keygen -R HOST, then "
                f"one `ssh {resolved.alias}` by hand to check and record the new key)",
            )
        if isinstance(exc, asyncssh.PermissionDenied):
            if self._unanswerable:
                return HpcMisconfigured(
                    f"ssh {where}: the server asks keyboard-interactive questions (MFA or a "
                    "password) and this process has no terminal to ask them on",
                    "run `akoflow run` in a terminal to answer them once per run, or use a key "
                    "(ssh-agent, IdentityFile, or "
                    f"{t.variable('KEY_FILE')}) the server accepts without questions",
                )
            tried = ", ".join(resolved.identity_files) or "ssh-agent and ~/.ssh/id_*"
            if t.password is not None:
                tried += f"; the password of {t.variable('PASSWORD')} was refused"
            return HpcMisconfigured(
                f"ssh {where}: authentication failed (keys tried: {tried})",
                f"check that `ssh {resolved.alias}` logs in without a password from this "
                f"machine as this user, or set {t.variable('KEY_FILE')} / "
                f"{t.variable('SSHKEYPRIVK')} to a key the cluster accepts",
            )
        if isinstance(exc, (asyncssh.KeyImportError, asyncssh.KeyEncryptionError)):
            return HpcMisconfigured(
                f"ssh {where}: the private key cannot be used: {exc}",
                f"check the key file, or set {t.variable('KEY_PASSPHRASE')} for an encrypted "
                "key (or load it into ssh-agent)",
            )
        if isinstance(exc, socket.gaierror) and exc.errno in _UNKNOWN_NAME:
            return HpcMisconfigured(
                f"ssh {where}: host {resolved.host} is unknown"
                + (
                    f" (it is no Host alias of {', '.join(t.config_paths) or 'any ssh config'})"
                    if resolved.looks_unknown
                    else ""
                ),
                f"set {t.variable('HOST_CLUSTER')} to the alias `ssh ALIAS` uses (a Host block "
                f"of ~/.ssh/config or {t.variable('SSH_CONFIG_FILE')}) or to the login node's "
                "name",
            )
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError) and (
            exc.filename is not None
        ):
            return HpcMisconfigured(
                f"ssh {where}: cannot read {exc.filename}: {exc.strerror}",
                f"fix the path or its permissions ({t.variable('KEY_FILE')}, the config's "
                "IdentityFile)",
            )
        if isinstance(exc, ValueError) and not isinstance(exc, asyncssh.Error):
            return HpcMisconfigured(f"ssh {where}: {exc}", "fix the ssh settings or config")
        if resolved.proxy_command and isinstance(
            exc, (asyncssh.ConnectionLost, asyncssh.ProtocolError, TimeoutError, ConnectionError)
        ):
            # The bytes came from the config's ProxyCommand: it failed, or is no SSH path.
            return SshUnavailable(
                f"ssh {where}: {_describe(exc)} (through the config's ProxyCommand "
                f"`{resolved.proxy_command}`: does it run and reach an SSH server?)"
            )
        return SshUnavailable(f"ssh {where}: {_describe(exc)}")

    def _host_known(self, resolved: sshconfig.Resolved, known: list[str]) -> bool:
        try:
            hosts = asyncssh.read_known_hosts(known)
        except (OSError, ValueError):
            return False
        trusted, cas = hosts.match(resolved.host, "", resolved.port)[:2]
        return bool(trusted or cas)

    async def _learn_host_key(
        self,
        resolved: sshconfig.Resolved,
        known: list[str],
        tunnel: asyncssh.SSHClientConnection | None,
    ) -> None:
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(
                resolved.host, resolved.port, tunnel=tunnel, config=list(self.target.config_paths)
            ),
            self._connect_timeout,
        )
        if key is None:
            raise SshUnavailable(f"ssh {resolved.where}: the server presented no host key")
        host = resolved.host
        pattern = host if resolved.port == sshconfig.DEFAULT_PORT else f"[{host}]:{resolved.port}"
        line = f"{pattern} {key.export_public_key('openssh').decode().strip()}\n"
        with open(known[0], "a") as f:
            f.write(line)
        log.warning("added the host key of %s to %s", resolved.where, known[0])

    async def close(self) -> None:
        reading, self._reading = self._reading, None
        if reading is not None:
            reading.cancel()
        relay, self._relay = self._relay, None
        if relay is not None:
            await relay.close()
        conn, self._conn, self._sftp = self._conn, None, None
        hops, self._hops = self._hops, []
        for c in [conn, *reversed(hops)]:
            if c is not None:
                # A ProxyCommand's process: asyncssh forgets it as soon as the connection is
                # closed, and its wait_closed then returns before that process has ended (an
                # event loop closed meanwhile left it running, and a ResourceWarning).
                tunnel = getattr(c, "_tunnel", None)
                c.close()
                await self._closed(c)
                if tunnel is not None and not isinstance(tunnel, asyncssh.SSHClientConnection):
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(tunnel.wait_closed(), self._connect_timeout)
        if self._key_dir is not None:
            shutil.rmtree(self._key_dir, ignore_errors=True)
            self._key_dir = None
        fds, self._memory_fds = self._memory_fds, ()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    async def _closed(self, conn: asyncssh.SSHClientConnection) -> None:
        """Wait until ``conn`` (asked to close) has closed: its socket drained, a ProxyCommand
        ended. A peer that stopped reading never lets the socket drain: after the command
        timeout the connection is aborted (what was not sent is dropped), not waited for
        forever."""
        with contextlib.suppress(Exception):
            try:
                await asyncio.wait_for(conn.wait_closed(), self.command_timeout)
            except TimeoutError:
                log.info("ssh connection to %s did not close in time: aborted", self.where)
                conn.abort()
                await asyncio.wait_for(conn.wait_closed(), self._connect_timeout)

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
                raise SshUnavailable(f"ssh {self.where}: {_describe(exc)}") from None
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                self._maybe_broken(conn)
                raise SshAmbiguous(
                    f"ssh {self.where}: {argv[0]} interrupted: {_describe(exc)}"
                ) from None
        status = result.exit_status
        if status is None or (status < 0 and result.exit_signal is None):
            # The channel closed without an exit status: the connection went away mid-command.
            self._maybe_broken(conn)
            raise SshAmbiguous(f"ssh {self.where}: the connection closed while {argv[0]} ran")
        if status < 0:  # killed by a signal on the remote side
            status = 255
        return Completed(status, str(result.stdout or ""), str(result.stderr or ""))

    def broken(self) -> None:
        """A caller saw the connection fail (an SFTP copy cut by a restarted sshd): the next
        call logs in again."""
        self._lost(None)

    def _maybe_broken(self, conn: asyncssh.SSHClientConnection) -> None:
        if self._conn is conn and conn.is_closed():
            self._lost(None)

    async def sftp(self) -> asyncssh.SFTPClient:
        conn = await self.connection()
        # One client per login: callers at the same moment (a fan-out's copies) each started
        # one, and the extra channels stayed open until the login closed.
        async with self._sftp_lock:
            if self._sftp is not None:
                return self._sftp
            try:
                async with self._answered():
                    client = await conn.start_sftp_client()
            except TimeoutError as exc:
                if self._conn is not conn:  # replaced meanwhile: that one is not closed
                    raise SshUnavailable(f"sftp {self.where}: no answer") from None
                self._sftp_failed(exc)
            except (OSError, asyncssh.Error) as exc:
                self._maybe_broken(conn)
                raise SshUnavailable(f"sftp {self.where}: {_describe(exc)}") from None
            if self._conn is conn:  # (a client of a login lost meanwhile serves this call)
                self._sftp = client
            return client

    async def missing_programs(self, programs: Sequence[str]) -> list[str]:
        """Those of ``programs`` a non-interactive login's PATH lacks: one ``command -v`` per
        connection (a module system or a ~/.bashrc decides that PATH, not the engine)."""
        conn_no = self.connections_opened
        checked = self._checked_programs
        if checked is not None and checked[0] == conn_no and conn_no > 0:
            return checked[1]
        script = 'for p; do command -v "$p" >/dev/null 2>&1 || echo "$p"; done'
        res = await self.run(["sh", "-c", script, "sh", *programs])
        if res.exit_status != 0:
            return []  # no answer: the commands themselves will tell
        missing = [p for p in res.stdout.split() if p in programs]
        self._checked_programs = (self.connections_opened, missing)
        return missing

    async def start_process(self, command: str) -> asyncssh.SSHClientProcess[bytes]:
        """A remote command with its streams as bytes, for the rsync relay (its channel
        counts against ``max_sessions`` until it ends)."""
        conn = await self.connection()
        await self._sessions.acquire()
        try:
            proc = await conn.create_process(command, encoding=None)
        except (OSError, asyncssh.Error) as exc:
            self._sessions.release()
            self._maybe_broken(conn)
            raise SshUnavailable(f"ssh {self.where}: {_describe(exc)}") from None
        asyncio.get_running_loop().create_task(self._release_when_closed(proc))
        return proc

    async def _release_when_closed(self, proc: asyncssh.SSHClientProcess[bytes]) -> None:
        try:
            await proc.wait_closed()
        finally:
            self._sessions.release()

    async def rsync_route(self) -> RsyncRoute:
        """rsync through this link's connection (:mod:`.relay`): no second login."""
        if self._relay is None:
            if self._key_dir is None:
                self._key_dir = _private_dir()
            self._relay = RsyncRelay(self._key_dir, self.start_process)
        return await self._relay.route()

    @property
    def rsync_commands(self) -> int:
        """Remote rsync commands run through the connection so far."""
        return self._relay.commands if self._relay is not None else 0

    def _answered(self) -> asyncio.Timeout:
        """The bound of one file operation: an SFTP server that stopped answering (a hung
        file system under it) is a lost connection after the command timeout, not a wait
        forever (asyncssh's requests have no timeout of their own)."""
        return asyncio.timeout(self.command_timeout)

    async def write_files(self, directory: str, files: Mapping[str, bytes]) -> None:
        """Create ``directory`` (and parents) and write the files in it."""
        sftp = await self.sftp()
        try:
            async with self._answered():
                await sftp.makedirs(directory, exist_ok=True)
                for name, data in files.items():
                    async with _opened(sftp, f"{directory}/{name}", "wb") as f:
                        await f.write(data)
        except (OSError, asyncssh.Error) as exc:
            self._sftp_failed(exc, sftp)

    async def makedirs(self, path: str) -> None:
        sftp = await self.sftp()
        try:
            async with self._answered():
                await sftp.makedirs(path, exist_ok=True)
        except (OSError, asyncssh.Error) as exc:
            self._sftp_failed(exc, sftp)

    async def mkdir_exclusive(self, path: str) -> bool:
        """``mkdir`` that fails if ``path`` exists (atomic, also on shared file systems):
        True when this call created it."""
        sftp = await self.sftp()
        try:
            async with self._answered():
                await sftp.mkdir(path)
        except asyncssh.SFTPError as exc:
            try:
                async with self._answered():
                    if await sftp.exists(path):
                        return False
            except (OSError, asyncssh.Error) as again:
                self._sftp_failed(again, sftp)
            self._sftp_failed(exc, sftp)
        except (OSError, asyncssh.Error) as exc:
            self._sftp_failed(exc, sftp)
        return True

    def stalled(self, sftp: asyncssh.SFTPClient | None) -> None:
        """A request of ``sftp`` went unanswered for the command timeout: its login is closed
        (its channels wait on a server that does not answer) and the next call logs in again.
        Nothing is done when the login was replaced meanwhile (another request's stall)."""
        if sftp is not None and sftp is not self._sftp:
            return
        if self._conn is not None:
            self._conn.close()
        self._lost(None)

    def _sftp_failed(self, exc: BaseException, sftp: asyncssh.SFTPClient | None = None) -> NoReturn:
        if isinstance(exc, TimeoutError):
            self.stalled(sftp)
        elif not isinstance(exc, asyncssh.SFTPError):
            self._lost(None)
        if isinstance(exc, TimeoutError):
            raise SshUnavailable(
                f"sftp {self.where}: no answer in {self.command_timeout:g} s (a hung file "
                "system there?); logging in again"
            ) from None
        raise SshUnavailable(f"sftp {self.where}: {_describe(exc)}") from None

    async def read_from(self, path: str, offset: int, limit: int) -> bytes | None:
        """Bytes of a remote file after ``offset`` (None when the file does not exist)."""
        sftp = await self.sftp()
        try:
            async with self._answered(), _opened(sftp, path, "rb") as f:
                await f.seek(offset)
                data = await f.read(limit)
        except asyncssh.SFTPNoSuchFile:
            return None
        except (OSError, asyncssh.Error) as exc:
            self._sftp_failed(exc, sftp)
        return data if isinstance(data, bytes) else data.encode()

    async def read_whole(self, path: str) -> bytes | None:
        """The whole remote file, or None when the server cannot give it (missing, not
        readable). Raises :class:`SshUnavailable` only when the connection failed."""
        sftp = await self.sftp()
        try:
            async with self._answered(), _opened(sftp, path, "rb") as f:
                data = await f.read()
        except asyncssh.SFTPError:
            return None
        except (OSError, asyncssh.Error) as exc:
            self._sftp_failed(exc, sftp)
        return data if isinstance(data, bytes) else data.encode()


@contextlib.asynccontextmanager
async def _opened(
    sftp: asyncssh.SFTPClient, path: str, mode: str
) -> AsyncIterator[asyncssh.SFTPClientFile]:
    """``sftp.open`` whose close is not waited for after a cancellation (the command timeout
    of a server that stopped answering): that close would wait on the same server forever,
    and the login is closed instead (:meth:`SshLink.stalled`)."""
    f = await sftp.open(path, mode)
    try:
        yield f
    except asyncio.CancelledError:
        raise
    except BaseException:
        await f.close()
        raise
    await f.close()


PRIVATE_PREFIX = "akoflow-hpc-"


def _private_dir() -> str:
    """A 0700 directory for this link's files, named after this process so that the ones a
    killed engine left are removed by the next one (:func:`_sweep_private_dirs`)."""
    _sweep_private_dirs()
    path = tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-")
    os.chmod(path, 0o700)
    return path


def _sweep_private_dirs() -> None:
    """Remove this user's private dirs whose engine process is gone (killed: never closed)."""
    root = tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        pid_text = name[len(PRIVATE_PREFIX) :].partition("-")[0]
        if not name.startswith(PRIVATE_PREFIX) or not pid_text.isdigit():
            continue
        path = os.path.join(root, name)
        try:
            if os.lstat(path).st_uid != os.geteuid() or os.path.exists(f"/proc/{pid_text}"):
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)


def _memory_file(data: bytes) -> tuple[int, str]:
    """``data`` in an anonymous in-memory file and the path this process opens it by: a
    private key given as data never touches a disk, and nothing of it outlives the engine,
    even one killed with SIGKILL."""
    fd = os.memfd_create("akoflow-key", os.MFD_CLOEXEC)
    os.fchmod(fd, 0o600)
    view = memoryview(data if data.endswith(b"\n") else data + b"\n")
    while view:
        view = view[os.write(fd, view) :]
    return fd, f"/proc/{os.getpid()}/fd/{fd}"


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data if data.endswith(b"\n") else data + b"\n")


def link_for(s: HpcSettings, prompter: prompt.Prompter | None = None) -> SshLink:
    """The link a runtime with settings ``s`` uses. A key given as data (with its public half
    or certificate) and an ssh_config snippet are written to 0600 files in a private 0700
    directory, removed when the link is closed. ``prompter`` answers keyboard-interactive
    questions (default: :func:`prompt.default_prompter`)."""
    key_dir = _private_dir()
    key_file, cert_file, snippet_file = s.key_file, None, None
    memory_fds: list[int] = []
    if s.key_data is not None:
        fd, key_file = _memory_file(s.key_data)
        memory_fds.append(fd)
        if s.public_key is not None:
            is_cert = b"-cert-v01@openssh.com" in s.public_key.split(b" ", 1)[0]
            name = "id-cert.pub" if is_cert else "id.pub"
            _write_private(os.path.join(key_dir, name), s.public_key)
            cert_file = os.path.join(key_dir, name) if is_cert else None
    if s.ssh_config_snippet is not None:
        snippet_file = os.path.join(key_dir, "ssh_config")
        _write_private(snippet_file, s.ssh_config_snippet.encode())
    prefix = s.variable_prefix
    keys = ("KEY_FILE", "SSHKEYPRIVK", "KEY_PASSPHRASE", "KNOWN_HOSTS", "ACCEPT_NEW_HOST_KEY",
            "HOST_CLUSTER", "SSH_CONFIG_FILE", "USER", "JUMP_HOST", "PASSWORD")  # fmt: skip
    target = SshTarget(
        host=s.host,
        port=s.port,
        user=s.user,
        known_hosts=s.known_hosts_path,
        accept_new=s.accept_new_host_key,
        key_file=key_file,
        cert_file=cert_file,
        passphrase=s.key_passphrase,
        password=s.password,
        jump=s.jump_host,
        config_paths=tuple(sshconfig.config_paths(s.ssh_config_file, snippet_file)),
        names={k: prefix + k for k in keys},
    )
    return SshLink(
        target,
        max_sessions=s.max_sessions,
        keepalive=s.keepalive,
        connect_timeout=s.connect_timeout,
        command_timeout=s.command_timeout,
        reconnect_max=s.reconnect_max,
        key_dir=key_dir,
        memory_fds=tuple(memory_fds),
        prompter=prompter if prompter is not None else prompt.default_prompter(),
    )


AGENT_TIMEOUT = 3.0  # s for ssh-agent to list its keys


async def agent_answers() -> bool:
    """Whether the ssh-agent of ``SSH_AUTH_SOCK`` (if any) lists its keys in time. One that
    accepts and never answers would hold the login until it times out, the default keys
    never tried; a missing or dead one asyncssh already skips."""
    path = os.environ.get("SSH_AUTH_SOCK")
    if not path:
        return True
    agent: asyncssh.SSHAgentClient | None = None
    try:
        async with asyncio.timeout(AGENT_TIMEOUT):
            agent = await asyncssh.connect_agent(path)
            await agent.get_keys()
    except TimeoutError:
        log.warning("ssh-agent at %s does not answer: using the default keys", path)
        return False
    except (OSError, asyncssh.Error, ValueError):
        return True  # unusable at once: asyncssh goes on without it
    finally:
        if agent is not None:
            agent.close()
            with contextlib.suppress(Exception):
                await agent.wait_closed()
    return True


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.Error):
        return exc.reason or type(exc).__name__
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
