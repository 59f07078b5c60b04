"""``{NAME}_*`` settings of a Kubernetes runtime and the lightkube client configuration.

The cluster is either ``{NAME}_API_SERVER_HOST`` + ``{NAME}_API_SERVER_TOKEN`` (the seed's
variables; a host without scheme gets ``https://``) with ``{NAME}_CA_FILE`` or
``{NAME}_CA_DATA``, or ``{NAME}_KUBECONFIG`` with an optional ``{NAME}_CONTEXT``. TLS is
verified unless ``{NAME}_INSECURE_SKIP_TLS_VERIFY=true`` (then a warning is logged). The token
is never logged nor put in an error message.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass

from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.config.models import Cluster, User

from akoflow.config import RuntimeConfig, env_prefix

log = logging.getLogger(__name__)

CLEANUPS = ("always", "on-success", "never")
STORAGE_ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod")
_TRUE = ("1", "true", "yes", "on")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Settings:
    server: str
    namespace: str | None  # override of every workflow's spec.namespace
    service_account: str = "akoflow-runner"
    shell: str = "sh"
    default_image: str = "busybox:stable"
    ttl_seconds: int = 86400
    cleanup: str = "always"
    fail_fast_grace: float = 30.0  # ErrImagePull / Unschedulable tolerated this long
    storage_size: str = "1Gi"
    storage_class: str | None = None
    access_mode: str = "ReadWriteMany"
    metrics_interval: float = 15.0  # metrics-server's own resolution
    timeout: float = 10.0
    watch_timeout: int = 300  # server-side timeout of one watch request


def _text(config: RuntimeConfig, key: str) -> str | None:
    value = (config.get(key) or "").strip()
    return value or None


def read_settings(config: RuntimeConfig) -> tuple[Settings, SingleConfig]:
    """Settings and client config; raises :class:`ConfigError` with a message safe to show."""
    prefix = env_prefix(config.name)
    cluster_config = _client_config(config, prefix)

    def choice(key: str, allowed: tuple[str, ...], default: str) -> str:
        value = _text(config, key) or default
        if value not in allowed:
            raise ConfigError(f"{prefix}{key} must be one of {', '.join(allowed)}; got {value!r}")
        return value

    try:
        settings = Settings(
            server=cluster_config.cluster.server,
            namespace=_text(config, "NAMESPACE"),
            service_account=_text(config, "SERVICE_ACCOUNT") or "akoflow-runner",
            shell=_text(config, "SHELL") or "sh",
            default_image=_text(config, "IMAGE") or "busybox:stable",
            ttl_seconds=max(0, config.get_int("TTL_SECONDS_AFTER_FINISHED", 86400)),
            cleanup=choice("CLEANUP", CLEANUPS, "always"),
            fail_fast_grace=float(max(0, config.get_int("FAIL_FAST_GRACE", 30))),
            storage_size=_text(config, "STORAGE_SIZE") or "1Gi",
            storage_class=_text(config, "STORAGE_CLASS"),
            access_mode=choice("STORAGE_ACCESS_MODE", STORAGE_ACCESS_MODES, "ReadWriteMany"),
            metrics_interval=float(max(1, config.get_int("METRICS_INTERVAL", 15))),
            timeout=float(max(1, config.get_int("TIMEOUT", 10))),
            watch_timeout=max(5, config.get_int("WATCH_TIMEOUT", 300)),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return settings, cluster_config


def _client_config(config: RuntimeConfig, prefix: str) -> SingleConfig:
    kubeconfig = _text(config, "KUBECONFIG")
    insecure = (_text(config, "INSECURE_SKIP_TLS_VERIFY") or "false").lower() in _TRUE
    if kubeconfig:
        try:
            single = KubeConfig.from_file(kubeconfig).get(_text(config, "CONTEXT"))
        except Exception as exc:  # lightkube raises several kinds for a bad file
            raise ConfigError(f"{prefix}KUBECONFIG {kubeconfig}: {exc}") from None
        if single is None:
            raise ConfigError(f"{prefix}KUBECONFIG {kubeconfig}: no such context")
        if insecure or single.cluster.insecure:
            _warn_insecure(prefix)
        return single
    host = _text(config, "API_SERVER_HOST")
    if host is None:
        raise ConfigError(f"set {prefix}API_SERVER_HOST (and {prefix}API_SERVER_TOKEN)")
    server = host if "://" in host else f"https://{host}"
    if not server.startswith("https://"):
        raise ConfigError(f"{prefix}API_SERVER_HOST must be an https:// URL, got {server!r}")
    ca_file, ca_data = _text(config, "CA_FILE"), _text(config, "CA_DATA")
    if ca_data is not None:
        try:  # kubeconfig style: base64 of the PEM; a PEM as is works too
            if "-----BEGIN" not in ca_data:
                ca_data = base64.b64decode(ca_data, validate=True).decode()
        except ValueError:
            raise ConfigError(f"{prefix}CA_DATA is neither a PEM nor base64 of one") from None
    if insecure:
        _warn_insecure(prefix)
    cluster = Cluster(
        server=server.rstrip("/"),
        certificate_auth=ca_file,
        # lightkube expects kubeconfig's base64 form
        certificate_auth_data=base64.b64encode(ca_data.encode()).decode() if ca_data else None,
        insecure=insecure,
    )
    token = _text(config, "API_SERVER_TOKEN")
    user = User(token=token) if token else User()
    single = KubeConfig.from_one(cluster=cluster, user=user).get()
    assert single is not None
    return single


def _warn_insecure(prefix: str) -> None:
    log.warning(
        "%sINSECURE_SKIP_TLS_VERIFY is set: the API server's certificate is NOT verified, so "
        "anyone on the path can impersonate it and read the token",
        prefix,
    )
