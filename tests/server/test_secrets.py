"""Runtime secrets never leave the server: not in any answer, not in its own output."""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import EXAMPLES, wait_for
from tests.server.conftest import API, HEALTH, Server, submit, wait_workflow

SECRET = "supersecret"


def test_runtime_secrets_are_redacted_everywhere(start_server: Callable[..., Server]) -> None:
    server = start_server(
        LOCAL_API_TOKEN=SECRET,
        LOCAL_PASSWORD=SECRET + "-pw",
        LOCAL_SSH_PRIVATE_KEY=SECRET + "-key",
        LOCAL_MAX_PARALLEL="3",
    )
    with server.client() as api:
        wf_id = submit(api, (EXAMPLES / "failing.yaml").read_text())
        wait_workflow(api, wf_id)
        runtimes = api.get(API + "/runtimes/").json()["data"]
        (local,) = [r for r in runtimes if r["name"] == "local"]
        assert local["metadata"] == {
            "LOCAL_API_TOKEN": "***",
            "LOCAL_MAX_PARALLEL": "3",
            "LOCAL_PASSWORD": "***",
            "LOCAL_SSH_PRIVATE_KEY": "***",
        }
        assert (local["status"], local["state"], local["kind"]) == (1, "READY", "local")
        wait_for(lambda: api.get(API + "/runtimes/local/nodes/").json()["data"], timeout=15)
        paths = [
            "/openapi.json",
            "/akoflow-admin/",
            HEALTH,
            API + "/runtimes/",
            API + "/runtimes/local/nodes/",
            API + "/workflows/",
            f"{API}/workflows/{wf_id}/",
            f"{API}/workflows/{wf_id}/lineage/",
            f"{API}/workflows/{wf_id}/activities/",
        ]
        for act in ("prepare", "broken-step", "after-broken", "independent"):
            base = f"{API}/workflows/{wf_id}/activities/{act}/"
            paths += [base, base + "logs/", base + "logs/stream/", base + "metrics/"]
        bodies = []
        for path in paths:
            res = api.get(path)
            assert res.status_code == 200, (path, res.text)
            bodies.append(res.text)
    for body in bodies:
        assert SECRET not in body
        assert server.token not in body
    server.stop()
    output = server.output()
    assert SECRET not in output
    assert output.count(server.token) == 1  # shown at the first start, never logged
