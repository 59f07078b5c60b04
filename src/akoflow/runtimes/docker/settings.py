"""``{NAME}_*`` settings of a docker runtime, read once, checked up front."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from akoflow.config import RuntimeConfig

PULL_POLICIES = ("never", "if-missing", "always")
CLEANUPS = ("always", "on-success", "never")


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

    @property
    def where(self) -> str:
        """The daemon, as messages name it."""
        return self.host or "unix:///var/run/docker.sock"


def read_settings(config: RuntimeConfig, environ: Mapping[str, str] | None = None) -> Settings:
    """``{NAME}_*`` settings; raises :class:`akoflow.errors.SettingError`. Without
    ``{NAME}_HOST``, the daemon is the one the standard ``DOCKER_HOST``/``DOCKER_TLS_VERIFY``/
    ``DOCKER_CERT_PATH`` of ``environ`` (the process environment) name, else the default
    socket."""
    text = config.get_text
    std: Mapping[str, str] = {}
    if text("HOST") is None:
        std = os.environ if environ is None else environ
    return Settings(
        host=text("HOST", std.get("DOCKER_HOST") or None),
        tls_verify=text("TLS_VERIFY", std.get("DOCKER_TLS_VERIFY")),
        cert_path=text("CERT_PATH", std.get("DOCKER_CERT_PATH")),
        api_version=text("API_VERSION"),
        timeout=config.get_int("TIMEOUT", 60, minimum=1),
        network=text("NETWORK") or "none",
        shell=text("SHELL") or "sh",
        pull_policy=config.get_choice("PULL_POLICY", PULL_POLICIES, "if-missing"),
        pull_timeout=config.get_int("PULL_TIMEOUT", 600, minimum=1),
        cleanup=config.get_choice("CLEANUP", CLEANUPS, "always"),
        stop_timeout=config.get_int("STOP_TIMEOUT", 5, minimum=0),
        init=config.get_bool("INIT", True),
    )
