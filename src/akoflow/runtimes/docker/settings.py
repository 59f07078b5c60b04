"""``{NAME}_*`` settings of a docker runtime, read once, checked up front."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import docker.constants
import docker.errors
import docker.utils

from akoflow.config import RuntimeConfig
from akoflow.errors import SettingError

PULL_POLICIES = ("never", "if-missing", "always")
CLEANUPS = ("always", "on-success", "never")
# Whole seconds, (least, most). Past the most, a wait is a mistake, not a policy: the SDK
# adds TIMEOUT and STOP_TIMEOUT into a socket timeout that overflowed, and a cancel or an
# activity's timeout waited as long as the script.
TIMEOUT_RANGE = (1, 3600)  # one SDK call
PULL_TIMEOUT_RANGE = (1, 86400)  # one image pull
STOP_TIMEOUT_RANGE = (0, 600)  # SIGTERM to SIGKILL
GO_TIMEOUT_RANGE = (1, 86400)  # a container waiting for the engine's go (see .gate)
_API_VERSION = re.compile(r"[1-9][0-9]*\.[0-9]+")


@dataclass(frozen=True, slots=True)
class Settings:
    host: str | None = None
    tls_verify: str | None = None
    cert_path: str | None = None
    api_version: str | None = None  # None: negotiated with the daemon
    timeout: int = 60  # seconds per SDK call
    network: str = "none"
    shell: str = "sh"
    pull_policy: str = "if-missing"
    pull_timeout: int = 600
    cleanup: str = "always"
    stop_timeout: int = 5
    init: bool = True
    go_timeout: int = 600

    @property
    def where(self) -> str:
        """The daemon, as messages name it."""
        return self.host or "unix:///var/run/docker.sock"

    @property
    def on_this_host(self) -> bool:
        """The daemon is reached by a unix socket: its containers are processes of this host
        (tcp:// and ssh:// daemons run them elsewhere, where the engine sees no process)."""
        return self.host is None or self.host.startswith("unix://")


def read_settings(config: RuntimeConfig, environ: Mapping[str, str] | None = None) -> Settings:
    """``{NAME}_*`` settings; raises :class:`akoflow.errors.SettingError`. Without
    ``{NAME}_HOST``, the daemon is the one the standard ``DOCKER_HOST``/``DOCKER_TLS_VERIFY``/
    ``DOCKER_CERT_PATH`` of ``environ`` (the process environment) name, else the default
    socket."""
    text = config.get_text
    std: Mapping[str, str] = {}
    host_variable = config.variable("HOST")
    if text("HOST") is None:
        std, host_variable = (os.environ if environ is None else environ), "DOCKER_HOST"
    tls_verify = text("TLS_VERIFY", std.get("DOCKER_TLS_VERIFY"))
    host = text("HOST", std.get("DOCKER_HOST") or None)
    _check_host(host, bool(tls_verify), host_variable)
    return Settings(
        host=host,
        tls_verify=tls_verify,
        cert_path=text("CERT_PATH", std.get("DOCKER_CERT_PATH")),
        api_version=_api_version(config),
        timeout=_seconds(config, "TIMEOUT", 60, TIMEOUT_RANGE),
        network=text("NETWORK") or "none",
        shell=text("SHELL") or "sh",
        pull_policy=config.get_choice("PULL_POLICY", PULL_POLICIES, "if-missing"),
        pull_timeout=_seconds(config, "PULL_TIMEOUT", 600, PULL_TIMEOUT_RANGE),
        cleanup=config.get_choice("CLEANUP", CLEANUPS, "always"),
        stop_timeout=_seconds(config, "STOP_TIMEOUT", 5, STOP_TIMEOUT_RANGE),
        init=config.get_bool("INIT", True),
        go_timeout=_seconds(config, "GO_TIMEOUT", 600, GO_TIMEOUT_RANGE),
    )


def _seconds(config: RuntimeConfig, key: str, default: int, bounds: tuple[int, int]) -> int:
    least, most = bounds
    return config.get_int(key, default, minimum=least, maximum=most)


def _api_version(config: RuntimeConfig) -> str | None:
    """``1.41``-like, at least the oldest this SDK speaks; ``auto`` or unset: negotiated."""
    raw = config.get_text("API_VERSION")
    if raw is None or raw.lower() == "auto":
        return None
    oldest = docker.constants.MINIMUM_DOCKER_API_VERSION
    if not _API_VERSION.fullmatch(raw) or docker.utils.version_lt(raw, oldest):
        raise config.invalid(
            "API_VERSION",
            f"must be a Docker API version from {oldest} (e.g. 1.41), or auto to agree on "
            f"one with the daemon; got {raw!r}",
        )
    return raw


def _check_host(host: str | None, tls: bool, variable: str) -> None:
    """The daemon's address as the SDK parses it (unix://, tcp://host:port, ssh://...)."""
    try:
        docker.utils.parse_host(host, tls=tls)
    except (docker.errors.DockerException, ValueError) as exc:
        raise SettingError(
            f"{variable} must be a Docker daemon address such as unix:///var/run/docker.sock "
            f"or tcp://host:2376 ({exc})",
            variable=variable,
        ) from None
