"""``GET /metrics`` on a real server that ran real workflows: scraped and parsed with
Prometheus' own text parser, every number checked against what the API says ran."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server.conftest import API, Server, activity, submit, wait_workflow, workflow_yaml

MIXED = workflow_yaml(
    "mixed",
    activity("ok", "echo hi > out.txt"),
    activity("flaky", "exit 3", extra="      retries: 1\n"),  # two attempts, both fail
    activity("after", "echo never", depends=["flaky"]),  # skipped
    # The launcher is /bin/true (READY), the image is missing: its submit raises.
    activity("boxed", "echo boxed", extra="      runtime: singularity\n      image: /nope.sif\n"),
)
PLAIN = workflow_yaml(
    "plain", activity("one", "sleep 0.2"), activity("two", "true", depends=["one"])
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: httpx.Client) -> tuple[Samples, dict[str, str]]:
    res = client.get("/metrics")
    assert res.status_code == 200, res.text
    assert res.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(res.text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def attempts_of(api: httpx.Client, wf_id: int, names: list[str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for name in names:
        res = api.get(f"{API}/workflows/{wf_id}/activities/{name}/")
        assert res.status_code == 200, res.text
        found += res.json()["data"]["attempts"]
    return found


def test_metrics_match_what_ran(start_server: Callable[..., Server]) -> None:
    server = start_server(SINGULARITY_BINARY="/bin/true", LOCAL_CGROUPS="off")
    with server.client() as api:
        mixed = submit(api, MIXED)
        plain = submit(api, PLAIN)
        docs = {wf: wait_workflow(api, wf) for wf in (mixed, plain)}
        samples, types = scrape(api)

        assert {w: d["state"] for w, d in docs.items()} == {mixed: "failed", plain: "succeeded"}
        assert value(samples, "akoflow_workflows", state="failed") == 1
        assert value(samples, "akoflow_workflows", state="succeeded") == 1
        assert value(samples, "akoflow_workflows", state="running") == 0

        states: dict[str, int] = {}
        for doc in docs.values():
            for act in doc["spec"]["activities"]:
                states[act["state"]] = states.get(act["state"], 0) + 1
        assert states == {"succeeded": 3, "failed": 2, "skipped": 1}
        for state in ("pending", "ready", "submitted", "running", "succeeded", "failed",
                      "cancelled", "skipped", "cached"):  # fmt: skip
            assert value(samples, "akoflow_activities", state=state) == states.get(state, 0)

        attempts = attempts_of(api, mixed, ["ok", "flaky", "after", "boxed"])
        attempts += attempts_of(api, plain, ["one", "two"])
        assert types["akoflow_activity_duration_seconds"] == "histogram"
        for runtime in ("local", "singularity"):
            ran = [a for a in attempts if a["runtime"] == runtime]
            ended = [a["finishedAt"] - a["startedAt"] for a in ran if a["startedAt"] is not None
                     and a["finishedAt"] is not None]  # fmt: skip
            waited = [a["startedAt"] - a["submittedAt"] for a in ran if a["startedAt"] is not None]
            for name, seen in (
                ("akoflow_activity_duration_seconds", ended),
                ("akoflow_queue_wait_seconds", waited),
            ):
                if not seen:  # the singularity attempt never started: no series at all
                    assert (f"{name}_count", frozenset({("runtime", runtime)})) not in samples
                    continue
                assert value(samples, f"{name}_count", runtime=runtime) == len(seen)
                assert value(samples, f"{name}_sum", runtime=runtime) == pytest.approx(sum(seen))
                buckets = {
                    labels["le"]: v
                    for (n, key), v in samples.items()
                    if n == f"{name}_bucket" and (labels := dict(key))["runtime"] == runtime
                }
                assert buckets.pop("+Inf") == len(seen)
                for le, count in buckets.items():
                    assert count == sum(1 for d in seen if d <= float(le)), (name, le)
        local_attempts = [a for a in attempts if a["runtime"] == "local"]
        assert len(local_attempts) == 5  # ok, flaky twice, one, two: `after` never ran
        assert value(samples, "akoflow_activity_duration_seconds_count", runtime="local") == 5

        assert value(samples, "akoflow_runtime_ready", runtime="local", kind="local") == 1
        calls = "akoflow_backend_calls_total"
        errors = "akoflow_backend_errors_total"
        assert value(samples, calls, runtime="local", kind="local", call="submit") == 5
        assert value(samples, errors, runtime="local", kind="local", call="submit") == 0
        assert value(samples, calls, runtime="local", kind="local", call="health") >= 1
        # The missing image: one submit, which raised (SubmitError), and the activity failed.
        boxed = attempts_of(api, mixed, ["boxed"])
        assert len(boxed) == 1 and "/nope.sif does not exist" in (boxed[0]["reason"] or "")
        sing = {"runtime": "singularity", "kind": "singularity"}
        assert value(samples, calls, call="submit", **sing) == 1
        assert value(samples, errors, call="submit", **sing) == 1
        assert value(samples, "akoflow_runtime_ready", **sing) == 1
        assert value(samples, "akoflow_store_latency_seconds", reader="engine") > 0
        assert value(samples, "akoflow_store_latency_seconds", reader="scrape") > 0

        # A third run (new commands: no earlier result to reuse): the numbers move with it.
        third = workflow_yaml("third", activity("one", "echo 3"), activity("two", "echo 4"))
        wait_workflow(api, submit(api, third))
        again, _ = scrape(api)
        assert value(again, "akoflow_workflows", state="succeeded") == 2
        assert value(again, calls, runtime="local", kind="local", call="submit") == 7
        assert value(again, "akoflow_activity_duration_seconds_count", runtime="local") == 7
        # A deleted run's rows are gone from the counts too.
        assert api.delete(f"{API}/workflows/{plain}/").status_code == 200
        after_delete, _ = scrape(api)
        assert value(after_delete, "akoflow_workflows", state="succeeded") == 1
        assert value(after_delete, "akoflow_activity_duration_seconds_count", runtime="local") == 5


def test_metrics_need_the_token_unless_public(start_server: Callable[..., Server]) -> None:
    private = start_server()
    res = httpx.get(private.url + "/metrics")
    assert res.status_code == 401 and "bearer token" in res.json()["detail"]
    with private.client(token="wrong") as bad:
        assert bad.get("/metrics").status_code == 401
    with private.client() as good:
        samples, _ = scrape(good)
        assert value(samples, "akoflow_workflows", state="running") == 0
        assert value(samples, "akoflow_runtime_ready", runtime="local", kind="local") == 1

    public = start_server(AKOFLOW_METRICS_PUBLIC="1")
    with httpx.Client(base_url=public.url) as anonymous:
        samples, _ = scrape(anonymous)
        assert value(samples, "akoflow_workflows", state="succeeded") == 0
        # Only the metrics are public: the API still needs the token.
        assert anonymous.get(API + "/workflows/").status_code == 401
