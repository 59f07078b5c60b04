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
from akoflow.errors import SettingError

log = logging.getLogger(__name__)

CLEANUPS = ("always", "on-success", "never")
STORAGE_ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod")

ConfigError = SettingError  # the shared settings error, under the name this module gave it


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
    transfer_image: str = "busybox:stable"  # of transfer pods: sh, head, cat, wc, sha256sum


def read_settings(config: RuntimeConfig) -> tuple[Settings, SingleConfig]:
    """Settings and client config; raises :class:`SettingError` with a message safe to show."""
    cluster_config = _client_config(config, env_prefix(config.name))
    text = config.get_text
    settings = Settings(
        server=cluster_config.cluster.server,
        namespace=text("NAMESPACE"),
        service_account=text("SERVICE_ACCOUNT") or "akoflow-runner",
        shell=text("SHELL") or "sh",
        default_image=text("IMAGE") or "busybox:stable",
        ttl_seconds=config.get_int("TTL_SECONDS_AFTER_FINISHED", 86400, minimum=0),
        cleanup=config.get_choice("CLEANUP", CLEANUPS, "always"),
        fail_fast_grace=config.get_seconds("FAIL_FAST_GRACE", 30.0, minimum=0),
        storage_size=text("STORAGE_SIZE") or "1Gi",
        storage_class=text("STORAGE_CLASS"),
        access_mode=config.get_choice("STORAGE_ACCESS_MODE", STORAGE_ACCESS_MODES, "ReadWriteMany"),
        metrics_interval=config.get_seconds("METRICS_INTERVAL", 15.0, minimum=1),
        timeout=config.get_seconds("TIMEOUT", 10.0, minimum=1),
        watch_timeout=config.get_int("WATCH_TIMEOUT", 300, minimum=5),
        transfer_image=text("TRANSFER_IMAGE") or "busybox:stable",
    )
    return settings, cluster_config


def _client_config(config: RuntimeConfig, prefix: str) -> SingleConfig:
    text = config.get_text
    kubeconfig = text("KUBECONFIG")
    insecure = config.get_bool("INSECURE_SKIP_TLS_VERIFY", False)
    if kubeconfig:
        try:
            single = KubeConfig.from_file(kubeconfig).get(text("CONTEXT"))
        except Exception as exc:  # lightkube raises several kinds for a bad file
            raise config.invalid("KUBECONFIG", f"{kubeconfig}: {exc}") from None
        if single is None:
            raise config.invalid("KUBECONFIG", f"{kubeconfig}: no such context")
        if insecure or single.cluster.insecure:
            _warn_insecure(prefix)
        return single
    host = text("API_SERVER_HOST")
    if host is None:
        raise SettingError(
            f"set {prefix}API_SERVER_HOST (and {prefix}API_SERVER_TOKEN)",
            variable=f"{prefix}API_SERVER_HOST",
        )
    server = host if "://" in host else f"https://{host}"
    if not server.startswith("https://"):
        raise config.invalid("API_SERVER_HOST", f"must be an https:// URL, got {server!r}")
    ca_file, ca_data = text("CA_FILE"), text("CA_DATA")
    if ca_data is not None:
        try:  # kubeconfig style: base64 of the PEM; a PEM as is works too
            if "-----BEGIN" not in ca_data:
                ca_data = base64.b64decode(ca_data, validate=True).decode()
        except ValueError:
            raise config.invalid("CA_DATA", "is neither a PEM nor base64 of one") from None
    if insecure:
        _warn_insecure(prefix)
    cluster = Cluster(
        server=server.rstrip("/"),
        certificate_auth=ca_file,
        # lightkube expects kubeconfig's base64 form
        certificate_auth_data=base64.b64encode(ca_data.encode()).decode() if ca_data else None,
        insecure=insecure,
    )
    token = text("API_SERVER_TOKEN")
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
