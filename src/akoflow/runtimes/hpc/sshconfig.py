"""What an SSH login to ``HOST_CLUSTER`` will use, as OpenSSH would resolve it: the settings
that are set, then the user's ssh config (``Host`` blocks, ``Include``, ``Match``: read by
asyncssh's own parser), then OpenSSH's defaults.

The config files are ``{NAME}_SSHCONFIG`` (a snippet, written to a private file and read
first, so it wins over the file like an earlier block in one file) and ``~/.ssh/config`` or
``{NAME}_SSH_CONFIG_FILE`` (``none``: no file). ``HOME`` moves ``~`` for all of them, as for
OpenSSH.

Pure apart from reading the config files: the connection itself is :mod:`.ssh`'s.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from asyncssh.config import SSHClientConfig

from akoflow.runtimes.hpc.transport import HpcMisconfigured

DEFAULT_PORT = 22
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"


@dataclass(frozen=True, slots=True)
class Hop:
    """One jump host of ``ProxyJump`` / ``JUMP_HOST``: ``[user@]host[:port]``."""

    host: str
    port: int | None = None
    user: str | None = None

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{self.host}{port}"


@dataclass(frozen=True, slots=True)
class Resolved:
    """The login as it will be made (no secrets in here)."""

    alias: str  # HOST_CLUSTER as given
    host: str  # after the config's HostName
    port: int
    user: str
    known_hosts: tuple[str, ...]  # files the host key is checked against
    jump: tuple[Hop, ...] = ()
    proxy_command: str | None = None
    identity_files: tuple[str, ...] = ()
    configured: bool = False  # the config gives the alias a HostName, ProxyJump or ProxyCommand

    @property
    def where(self) -> str:
        via = f" via {','.join(map(str, self.jump))}" if self.jump else ""
        shown = self.alias if self.alias == self.host else f"{self.alias} ({self.host})"
        return f"{self.user}@{shown}:{self.port}{via}"

    @property
    def looks_unknown(self) -> bool:
        """The alias names nothing the config knows and is no address: when this machine
        cannot resolve it either, it is a typo or a missing ``Host`` block."""
        if self.configured or self.proxy_command:
            return False
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return True
        return False


def unsafe_reason(value: str) -> str | None:
    """Why ``value`` cannot be a host or user name on an ssh or rsync command line (a
    ProxyCommand's ``%h``/``%r``, rsync's ``-e``): a leading ``-`` would be read as an option,
    blanks and control characters split or end the word. None when it is safe."""
    if value.startswith("-"):
        return "starts with '-' (it would be read as a command-line option)"
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return "contains blanks or control characters"
    return None


def _refuse_unsafe(resolved: Resolved, sources: dict[str, str]) -> None:
    """Raise :class:`HpcMisconfigured` when a name of the login (after the settings and the
    config) could be read as an option: ``sources`` says where each kind of name was set."""
    names = [("host", resolved.host), ("user", resolved.user)]
    for hop in resolved.jump:
        names += [("jump", hop.host)] + ([("jump", hop.user)] if hop.user else [])
    for kind, value in names:
        reason = unsafe_reason(value)
        if reason is not None:
            raise HpcMisconfigured(
                f"the ssh {'jump host' if kind == 'jump' else kind} {value!r} of "
                f"{resolved.alias!r} {reason}",
                f"fix {sources[kind]} (ssh -G {resolved.alias} shows what OpenSSH makes of it); "
                "refused so that no option reaches ssh, a ProxyCommand or rsync",
            )


def parse_jump(spec: str | None) -> tuple[Hop, ...]:
    """``[user@]host[:port]`` hops joined by commas; ``none`` (OpenSSH's way to switch an
    inherited ProxyJump off) is no hop."""
    if spec is None or spec.strip().lower() in ("", "none"):
        return ()
    hops = []
    for part in spec.split(","):
        part = part.strip()
        if part.startswith("ssh://"):
            part = part[len("ssh://") :]
        user, _, hostport = part.rpartition("@")
        host, port = hostport, None
        if hostport.startswith("["):  # [v6]:port
            host, _, rest = hostport[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
        elif hostport.count(":") == 1:
            name, _, number = hostport.partition(":")
            if number.isdigit():
                host, port = name, int(number)
        hops.append(Hop(host, port, user or None))
    return tuple(hops)


def config_paths(config_file: str | None, snippet_file: str | None) -> list[str]:
    """The config files a login reads, in order (missing ones are left out, as OpenSSH
    does with ``~/.ssh/config``)."""
    paths = [snippet_file] if snippet_file else []
    if config_file is not None:
        path = os.path.expanduser(config_file)
        if os.path.exists(path):
            paths.append(path)
    return paths


def load(paths: list[str], alias: str, user: str | None, port: int | None) -> SSHClientConfig:
    """asyncssh's reading of ``paths`` for ``alias``. Raises :class:`HpcMisconfigured` when a
    file cannot be read or parsed."""
    try:
        local_user = getpass.getuser()
    except (KeyError, OSError):
        local_user = str(os.geteuid())
    try:
        config = SSHClientConfig.load(
            None,
            [Path(p) for p in paths],
            False,
            False,
            False,
            local_user,
            user if user is not None else (),
            alias,
            port if port is not None else (),
        )
    except (OSError, ValueError) as exc:
        raise HpcMisconfigured(
            f"the ssh config for {alias} cannot be read: {exc}",
            "fix the file (ssh -G " + alias + " shows what OpenSSH makes of it)",
        ) from None
    except RecursionError:  # asyncssh follows Include without a depth limit
        raise HpcMisconfigured(
            f"the ssh config for {alias} cannot be read: its Include lines include "
            f"each other without end ({', '.join(paths)})",
            "remove the Include that leads back to a file already included (ssh -G "
            + alias
            + " refuses it too: 'Too many recursive configuration includes')",
        ) from None
    assert isinstance(config, SSHClientConfig)
    return config


def resolve(
    paths: list[str],
    alias: str,
    *,
    user: str | None = None,
    port: int | None = None,
    known_hosts: str | None = None,
    jump: str | None = None,
    key_file: str | None = None,
    names: dict[str, str] | None = None,
) -> Resolved:
    """The login to ``alias`` with the explicit settings given here winning over the config.
    ``names`` maps setting keys (``HOST_CLUSTER``, ``USER``, ``JUMP_HOST``) to their variables
    for messages. Raises :class:`HpcMisconfigured` for a name that could be read as an
    option."""
    alias_reason = unsafe_reason(alias)
    if alias_reason is not None:  # before asyncssh matches it against the config's patterns
        variable = (names or {}).get("HOST_CLUSTER", "HOST_CLUSTER")
        raise HpcMisconfigured(
            f"the ssh host {alias!r} {alias_reason}",
            f"set {variable} to the alias `ssh ALIAS` uses or the login node's name",
        )
    config = load(paths, alias, user, port)
    bare = load([], alias, user, port)  # what the alias gives without any config file
    host = str(config.get("Hostname", alias))
    resolved_port = port if port is not None else int(str(config.get("Port", DEFAULT_PORT)))
    resolved_user = user if user is not None else str(config.get("User") or bare.get("User", ""))
    if not resolved_user:
        resolved_user = getpass.getuser()
    if known_hosts is not None:
        files: tuple[str, ...] = (os.path.expanduser(known_hosts),)
    else:
        listed = config.get("UserKnownHostsFile")
        if isinstance(listed, list) and listed:
            files = tuple(os.path.expanduser(str(p)) for p in listed)
        else:
            files = (os.path.expanduser(DEFAULT_KNOWN_HOSTS),)
    proxy_jump = jump if jump is not None else config.get("ProxyJump")
    proxy_command = config.get("ProxyCommand")
    identities = [key_file] if key_file else config.get("IdentityFile") or []
    # Only these make the alias something other than a name to look up (``Host *`` giving
    # every host a User or Port does not make a typo a cluster).
    configured = any(
        config.get(option) is not None for option in ("Hostname", "ProxyJump", "ProxyCommand")
    )
    resolved = Resolved(
        alias=alias,
        host=host,
        port=resolved_port,
        user=resolved_user,
        known_hosts=files,
        jump=parse_jump(str(proxy_jump) if proxy_jump else None),
        proxy_command=str(proxy_command) if proxy_command else None,
        identity_files=tuple(str(p) for p in identities) if isinstance(identities, list) else (),
        configured=configured,
    )
    var = (names or {}).get
    in_config = f"the ssh config ({', '.join(paths) or 'none'})"
    _refuse_unsafe(
        resolved,
        {
            "host": f"the HostName of {in_config}",
            "user": var("USER", "USER") if user is not None else f"the User of {in_config}",
            "jump": var("JUMP_HOST", "JUMP_HOST")
            if jump is not None
            else f"the ProxyJump of {in_config}",
        },
    )
    return resolved
