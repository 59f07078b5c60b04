"""Notifications from the real server: its default webhook (AKOFLOW_NOTIFY_URL, _SECRET,
_EVENTS) next to a workflow's own spec.notify, links with AKOFLOW_PUBLIC_URL, secrets in no
log line and no API answer, and bad settings or webhooks refused."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import wait_for
from tests.notify.conftest import SECRET, env, query
from tests.notify.receiver import Receiver
from tests.server.conftest import API, Server, b64, submit, wait_workflow

DEFAULT_SECRET = "d3fault-s3cret-91b2"


def test_default_webhook_and_the_runs_own(
    start_server: Callable[..., Server], receiver: Receiver
) -> None:
    server = start_server(
        **env(
            AKOFLOW_NOTIFY_URL=receiver.url("/default?t=q-tok"),
            AKOFLOW_NOTIFY_SECRET=DEFAULT_SECRET,
            AKOFLOW_NOTIFY_EVENTS="workflow.succeeded, workflow.failed",
            AKOFLOW_PUBLIC_URL="https://akoflow.example.org/",
        )
    )
    text = (
        "name: told\nspec:\n  notify:\n"
        f"    - url: {receiver.url('/own')}\n      secret: AKOFLOW_NOTIFY_SECRET_HOOK\n"
        "  activities:\n    - name: bad\n      run: exit 4\n      cache: false\n"
    )
    with server.client() as api:
        wf_id = submit(api, text)
        assert wait_workflow(api, wf_id)["state"] == "failed"
        wait_for(lambda: len(receiver.answered(200)) == 3)
        answers = [
            api.get(f"{API}/workflows/{wf_id}/").text,
            api.get(f"{API}/workflows/{wf_id}/activities/bad/").text,
            api.get("/akoflow-admin/").text,
        ]
    by_path = {}
    for r in receiver.all():
        by_path.setdefault(r.path, []).append(r)
    own = {r.json["event"]: r for r in by_path["/own"]}
    assert sorted(own) == ["activity.failed", "workflow.failed"]
    assert all(r.signed_with(SECRET) for r in own.values())
    (default,) = by_path["/default?t=q-tok"]  # its events leave activity.failed out
    assert default.json["event"] == "workflow.failed"
    assert default.signed_with(DEFAULT_SECRET) and not default.signed_with(SECRET)
    link = f"https://akoflow.example.org/akoflow-admin/workflows/{wf_id}/"
    assert default.json["workflow"]["url"] == link
    assert own["activity.failed"].json["activity"]["exitCode"] == 4
    server.stop()
    for secret in (SECRET, DEFAULT_SECRET):
        assert secret not in server.output()
        assert all(secret not in answer for answer in answers)
    assert "q-tok" not in server.output()
    assert all(
        d["delivered_at"] is not None
        for d in query(server.state_dir, "SELECT * FROM notify_deliveries")
    )


def test_a_bad_webhook_is_refused_and_nothing_stored(server: Server) -> None:
    bad = (
        "name: bad\nspec:\n  notify:\n    - url: ftp://example.org/x\n"
        "      events: [workflow.ended]\n      secret: 'hunter2 is my password'\n"
        "  activities:\n    - name: a\n      run: 'true'\n"
    )
    with server.client() as api:
        res = api.post(f"{API}/workflows/", json={"workflow": b64(bad)})
        listed = api.get(f"{API}/workflows/").json()
    assert res.status_code == 422
    text = res.text
    assert "must start with http:// or https://" in text
    assert "workflow.ended" in text and "workflow.succeeded" in text
    assert "name of the environment variable that holds the secret" in text
    assert "hunter2" not in text
    assert not query(server.state_dir, "SELECT id FROM workflows")
    assert listed is not None


def test_bad_settings_stop_the_servers_start(tmp_path: Path) -> None:
    for name, value, said in (
        ("AKOFLOW_NOTIFY_URL", "file:///etc/passwd", "AKOFLOW_NOTIFY_URL is not a webhook URL"),
        ("AKOFLOW_NOTIFY_EVENTS", "workflow.done", "AKOFLOW_NOTIFY_EVENTS names unknown events"),
        ("AKOFLOW_NOTIFY_TRIES", "0", "AKOFLOW_NOTIFY_TRIES must be a positive integer"),
        ("AKOFLOW_PUBLIC_URL", "akoflow.example.org", "AKOFLOW_PUBLIC_URL must be"),
    ):
        environ = env(**{"AKOFLOW_NOTIFY_URL": "http://127.0.0.1:9/x", name: value})
        argv = [sys.executable, "-m", "akoflow", "server", "--port", "1"]
        argv += ["--state-dir", str(tmp_path / "state")]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=environ)
        assert res.returncode == 2, (name, res.stderr)
        assert said in " ".join((res.stdout + res.stderr).split()), res.stderr
        assert "Traceback" not in res.stderr
