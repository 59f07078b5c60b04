"""Checks of a Kubernetes runtime: its settings, the API server answering, TLS, the token,
the namespace and the permissions the runtime needs (listing Jobs and Pods there; a
create dry-run is not used, as not every API server honours it)."""

from __future__ import annotations

from typing import Any

from akoflow.config import RuntimeConfig
from akoflow.runtimes.checks import Checklist, StepFailed

RBAC_FIX = (
    "give the token's service account a Role in that namespace with get/list/watch/create/"
    "delete on jobs, pods and pods/log (and namespaces, persistentvolumeclaims to create them)"
)


async def check(config: RuntimeConfig, checks: Checklist) -> None:
    from akoflow.runtimes.kubernetes.settings import read_settings

    found: list[Any] = []

    async def settings() -> str:
        found.extend(read_settings(config))
        return f"API server {found[0].server}"

    if not await checks.run(
        "settings", settings, fix="fix the setting the message names", required=True
    ):
        return
    s, single = found
    ns = s.namespace or "default"
    cluster, user = single.cluster, single.user
    if cluster.insecure:
        tls = f"NOT verified ({config.variable('INSECURE_SKIP_TLS_VERIFY')}=true)"
    elif cluster.certificate_auth or cluster.certificate_auth_data:
        tls = "verified against the configured CA"
    else:
        tls = "verified against this machine's CAs"
    shown = checks.report.resolved
    shown.update(server=s.server, namespace=ns, tls=tls)
    shown["auth"] = (
        "token ***" if user.token else ("client certificate" if user.client_cert else "none")
    )
    import httpx2
    from lightkube.config.client_adapter import AsyncClient as raw_client

    from akoflow.runtimes.kubernetes.http import connection_params

    client = raw_client(single, connection_params(single, httpx2.Timeout(checks.timeout)))
    try:
        await _steps(config, checks, client, s.server, ns, tls)
    finally:
        await client.aclose()


async def _steps(
    config: RuntimeConfig, checks: Checklist, client: Any, server: str, ns: str, tls: str
) -> None:
    import httpx2

    from akoflow.runtimes.kubernetes.http import is_certificate_failure, why_failed

    tls_error: list[str] = []
    answers: list[Any] = []  # the namespace as the token step read it

    async def reachable() -> str:
        try:
            resp = await client.get("/version")
        except (httpx2.HTTPError, OSError) as exc:
            if is_certificate_failure(exc):
                tls_error.append(str(exc) or type(exc).__name__)
                return "answers (TLS refused: see below)"
            raise StepFailed(
                f"{server} cannot be reached: {why_failed(exc)}",
                f"check {config.variable('API_SERVER_HOST')} and the network path (VPN, proxy)",
            ) from None
        if resp.status_code == 200:
            return f"{server}: Kubernetes {resp.json().get('gitVersion', '?')}"
        return f"{server} answers ({resp.status_code} to /version)"

    await checks.run("API server", reachable, required=True)

    async def tls_step() -> str:
        if tls_error:
            raise StepFailed(
                f"the server's certificate is not trusted: {tls_error[0]}",
                f"set {config.variable('CA_FILE')} or {config.variable('CA_DATA')} to the "
                "cluster's CA (a kubeconfig's certificate-authority-data)",
            )
        return tls

    await checks.run("TLS", tls_step, required=True)

    async def token() -> str:
        resp = await client.get(f"/api/v1/namespaces/{ns}")
        if resp.status_code == 401:
            raise StepFailed(
                "the API server rejected the credentials (401)",
                f"set {config.variable('API_SERVER_TOKEN')} to a valid token (kubectl create "
                "token SERVICE_ACCOUNT -n NAMESPACE)",
            )
        answers.append(resp)
        return "accepted"

    await checks.run("token", token, required=True)

    async def namespace() -> str:
        resp = answers[0]
        if resp.status_code == 200:
            return f"{ns} exists"
        if resp.status_code == 404:
            return f"{ns} does not exist yet: the runtime creates it at the first submit"
        if resp.status_code == 403:
            return f"{ns}: reading it is forbidden (403); the runtime only needs it to exist"
        raise StepFailed(f"{ns}: {resp.status_code} {resp.text[:200]}", "check the API server")

    await checks.run("namespace", namespace)

    async def permissions() -> str:
        allowed = []
        for what, path in (("jobs", f"/apis/batch/v1/namespaces/{ns}/jobs"),
                           ("pods", f"/api/v1/namespaces/{ns}/pods")):  # fmt: skip
            resp = await client.get(path, params={"limit": "1"})
            if resp.status_code == 403:
                raise StepFailed(f"listing {what} in {ns} is forbidden (403)", RBAC_FIX)
            if resp.status_code not in (200, 404):
                raise StepFailed(f"listing {what} in {ns}: {resp.status_code}", RBAC_FIX)
            allowed.append(what)
        return f"may list {' and '.join(allowed)} in {ns}"

    await checks.run("permissions", permissions)
