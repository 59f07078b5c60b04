"""spec.notify's validation (through `akoflow validate` and the loader), the settings, the
retry schedule, the signature and how webhooks are named in logs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import akoflow
from akoflow.errors import SettingError
from akoflow.notify import payload
from akoflow.notify.settings import NotifySettings, load, parse_events
from akoflow.spec import load_workflow
from tests.notify.conftest import env

ALL = ("workflow.succeeded", "workflow.failed", "workflow.cancelled", "activity.failed")


def doc(notify: str) -> str:
    return f"name: n\nspec:\n  notify:\n{notify}  activities:\n    - name: a\n      run: 'true'\n"


def test_webhooks_as_loaded() -> None:
    wf = load_workflow(
        doc(
            "    - url: https://hooks.example.org/x?y=1\n"
            "    - url: HTTP://127.0.0.1:8000/\n      events: [activity.failed, activity.failed]\n"
            "      secret: AKOFLOW_NOTIFY_SECRET_TEAM\n"
        )
    )
    first, second = wf.notify
    assert (first.url, first.events, first.secret_env) == (
        "https://hooks.example.org/x?y=1",
        ALL,
        None,
    )
    assert (second.events, second.secret_env) == (
        ("activity.failed",),
        "AKOFLOW_NOTIFY_SECRET_TEAM",
    )
    assert load_workflow(doc("    []\n").replace("notify:\n    []", "notify: []")).notify == ()


def test_invalid_webhooks_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        doc(
            "    - url: ftp://example.org/x\n"
            "      events: [workflow.failed, workflow.exploded]\n"
            "    - url: https://example.org/\n      secret: 's3cr3t value!'\n      colour: red\n"
            "    - url: https:///nohost\n"
            "    - url: http://example.org/\n      secret: AKOFLOW_API_TOKEN\n"
            "    - url: http://example.org/\n      events: []\n"
            "    - url: http://example.org/\n      secret: HOME\n"
            "    - url: http://example.org/\n      secret: AKOFLOW_NOTIFY_SECRET\n"
            "    - url: http://example.org/\n      secret: AKOFLOW_NOTIFY_SECRET_\n"
            "    - url: http://example.org/\n      secret: hunter2\n"
        )
    )
    argv = [sys.executable, "-m", "akoflow", "validate", str(bad)]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env())
    assert res.returncode == 2
    text = " ".join(res.stdout.split() + res.stderr.split())
    assert "Traceback" not in text
    assert ":4: spec.notify[0].url: the webhook URL must start with http:// or https://" in text
    assert "spec.notify[0].events[1]: must be 'workflow.succeeded'" in text
    assert "got 'workflow.exploded'" in text
    assert "spec.notify[1].secret: must be the name of the environment variable" in text
    assert "s3cr3t" not in text  # what was written there may be the secret itself
    assert "spec.notify[1].colour: unknown field 'colour' in a webhook of spec.notify" in text
    assert "spec.notify[2].url: the webhook URL has no host" in text
    assert "spec.notify[4].events" in text
    assert "spec.notify[4].events: List should have at least 1 item" in text
    # Only AKOFLOW_NOTIFY_SECRET_<NAME>: no other variable of the engine signs a workflow's
    # webhook (its receiver could test guesses of the value), not even the server's own key.
    for i in (3, 5, 6, 7, 8):
        assert f"spec.notify[{i}].secret: must name a variable AKOFLOW_NOTIFY_SECRET_<NAME>" in text
    assert "hunter2" not in text and "'HOME'" not in text  # names are not echoed either
    assert "11 errors" in text


def test_the_python_builder_keeps_webhooks() -> None:
    wf = akoflow.Workflow(
        "b", notify=[{"url": "https://example.org/h", "events": ["workflow.failed"]}]
    )
    wf.activity("a", run="true")
    text = wf.to_yaml()
    assert "notify:" in text
    assert load_workflow(text).notify[0].events == ("workflow.failed",)
    assert akoflow.load(text).notify == [
        {"url": "https://example.org/h", "events": ["workflow.failed"]}
    ]


def test_settings() -> None:
    s = load({})
    assert s.default is None and s.public_url is None
    s = load(
        {
            "AKOFLOW_NOTIFY_URL": " https://example.org/hook ",
            "AKOFLOW_NOTIFY_SECRET": "value-never-kept",
            "AKOFLOW_NOTIFY_EVENTS": "workflow.failed activity.failed,workflow.failed",
            "AKOFLOW_PUBLIC_URL": "https://akoflow.example.org/",
            "AKOFLOW_NOTIFY_TIMEOUT": "2.5",
        }
    )
    assert s.default is not None
    assert (s.default.url, s.default.secret_env) == (
        "https://example.org/hook",
        "AKOFLOW_NOTIFY_SECRET",
    )
    assert s.default.events == ("workflow.failed", "activity.failed")
    assert "value-never-kept" not in repr(s)
    assert s.public_url == "https://akoflow.example.org" and s.timeout == 2.5
    assert parse_events("", "X") == ALL
    with pytest.raises(SettingError, match="X names unknown events 'nope'"):
        parse_events("workflow.failed nope", "X")
    for environ, said in (
        ({"AKOFLOW_NOTIFY_URL": "gopher://h/?t=q-secret"}, "must start with http"),
        ({"AKOFLOW_NOTIFY_TIMEOUT": "0"}, "AKOFLOW_NOTIFY_TIMEOUT must be a positive"),
        ({"AKOFLOW_NOTIFY_TRIES": "1000"}, "at most 100"),
        ({"AKOFLOW_PUBLIC_URL": "ftp://x"}, "AKOFLOW_PUBLIC_URL must be"),
    ):
        with pytest.raises(SettingError, match=said) as caught:
            load(environ)
        assert "q-secret" not in str(caught.value)


def test_retry_schedule() -> None:
    s = NotifySettings()
    delays = [s.delay(n) for n in range(1, s.tries)]
    assert delays == [30, 60, 120, 240, 480, 960, 1920]  # 8 tries over about an hour
    assert sum(delays) == 3810
    assert NotifySettings(first_backoff=1000.0, max_backoff=5000.0).delay(5) == 5000.0
    assert s.lease == 15.0  # a try is cut at 10 s: another engine waits that and a margin


def test_signature_and_names_in_logs() -> None:
    raw = b'{"event":"workflow.succeeded"}'
    # As computed by `openssl dgst -sha256 -hmac k3y`.
    expected = "a923e2981fd359977ce4b6559eccf94fbc7ac73ec00406ee5e89d726e79604cb"
    assert payload.signature(raw, "k3y") == f"sha256={expected}"
    assert payload.shown_url("https://u:p@hooks.example.org:8443/T0/B0/XX?x=1") == (
        "https://hooks.example.org:8443/…"
    )
    assert payload.shown_url("http://[::1]:9/") == "http://[::1]:9/"
    url = "https://u:pw@h.example/p/a/t/h?token=abc"
    said = payload.scrubbed(f"ConnectError: cannot reach {url} (u:pw@h.example)", url)
    assert "pw" not in said and "token=abc" not in said and "/p/a/t/h" not in said
    body = payload.body(
        "workflow.failed",
        0.0,
        payload.RunFacts(3, "w", "akoflow", "running", 0.0, None, None),
        None,
        public_url="https://a.example",
        delivery="d-1",
    )
    assert payload.delivery_id(body) == "d-1"
    assert b'"state":"failed"' in body  # the state the event tells of
    assert b'"url":"https://a.example/akoflow-admin/workflows/3/"' in body
    assert b'"time":"1970-01-01T00:00:00.000Z"' in body
