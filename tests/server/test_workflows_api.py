"""Workflows over the REST API of a real server: upstream's submission routes and shapes,
errors (422 with paths, 400, 404), pagination, cancel, retry, delete, lineage, nodes."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx

from tests.conftest import EXAMPLES, wait_for
from tests.server.conftest import (
    API,
    Server,
    activity,
    activity_states,
    b64,
    pid_gone,
    submit,
    wait_workflow,
    workflow_yaml,
)

HELLO = (EXAMPLES / "hello.yaml").read_text()


def test_submit_through_both_upstream_routes_runs_to_completion(api: httpx.Client) -> None:
    before = time.time()
    ids = []
    for path in ("/akoflow-server/workflow/", API + "/workflows/"):
        res = api.post(path, json={"workflow": b64(HELLO)})
        assert res.status_code == 200, res.text
        body = res.json()
        assert set(body) == {"workflow_entity", "workflow_id", "message"}  # upstream's answer
        assert body["workflow_entity"] == "hello"
        assert body["message"] == "Workflow has been deployed successfully."
        ids.append(body["workflow_id"])
    assert ids[1] == ids[0] + 1
    for wf_id in ids:
        doc = wait_workflow(api, wf_id)
        assert (doc["state"], doc["status"], doc["id"], doc["name"]) == (
            "succeeded",
            2,
            wf_id,
            "hello",
        )
        acts = {a["name"]: a for a in doc["spec"]["activities"]}
        assert list(acts) == ["make-input", "count-letters", "upper-case", "reverse", "report"]
        assert {a["status"] for a in acts.values()} == {2}  # upstream's "finished"
        assert {a["state"] for a in acts.values()} == {"succeeded"}
        assert acts["report"]["dependsOn"] == ["count-letters", "upper-case", "reverse"]
        assert "report.txt" in acts["report"]["run"]
        assert acts["report"]["workflowId"] == wf_id and acts["report"]["runtime"] == "local"
        assert doc["spec"]["startExecution"] and doc["spec"]["endExecution"]
        assert doc["spec"]["longestActivity"] in acts
        report = (Path(doc["dataDir"]) / "report.txt").read_text()
        assert f"workflow: hello (run {wf_id})" in report and "letters: 26" in report
    res = api.get(f"{API}/workflows/{ids[0]}/")
    assert set(res.json()) == {"data", "timestamp"}  # upstream's envelope
    assert before - 1 <= res.json()["timestamp"] <= time.time() + 1


def test_any_content_type_and_wrapped_base64_are_accepted(api: httpx.Client) -> None:
    """Upstream's clients post without a JSON content type, and `base64` wraps lines."""
    wrapped = base64.encodebytes(HELLO.encode()).decode()
    assert "\n" in wrapped
    res = api.post(
        API + "/workflows/",
        content=json.dumps({"workflow": wrapped}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert res.status_code == 200, res.text
    assert wait_workflow(api, res.json()["workflow_id"])["state"] == "succeeded"


def test_invalid_workflow_is_422_with_every_error_and_nothing_is_stored(
    api: httpx.Client,
) -> None:
    total = api.get(API + "/workflows/").json()["total"]
    bad = (
        "name: bad\nspec:\n  runtime: local\n  activities:\n"
        "    - name: a\n      run: echo a\n      dependsOn: [b]\n"
        "    - name: b\n      run: echo b\n      dependsOn: [a]\n"
        "    - name: c\n      run: echo c\n      memoryLimit: lots\n      colour: red\n"
        "    - name: d\n      run: echo d\n      dependsOn: [nope]\n"
    )
    for path in (API + "/workflows/", "/akoflow-server/workflow/", API + "/workflows/validate/"):
        res = api.post(path, json={"workflow": b64(bad)})
        assert res.status_code == 422, res.text
        body = res.json()
        errors = {(e["path"], e["line"]) for e in body["errors"]}
        assert ("spec.activities[2].memoryLimit", 13) in errors
        assert ("spec.activities[2].colour", 14) in errors
        assert ("spec.activities[3].dependsOn[0]", 17) in errors
        assert any("cycle" in e["message"] for e in body["errors"])
        assert body["detail"].startswith("invalid workflow")
    res = api.post(API + "/workflows/", json={"workflow": b64("name: [unclosed\n")})
    assert res.status_code == 422
    assert res.json()["errors"][0]["line"] is not None
    assert api.get(API + "/workflows/").json()["total"] == total


def test_malformed_requests_are_400_with_a_message(api: httpx.Client) -> None:
    total = api.get(API + "/workflows/").json()["total"]
    bodies: list[tuple[bytes, str]] = [
        (b'{"workflow": "not base64 at all!"}', "base64"),
        (json.dumps({"workflow": base64.b64encode(b"\xff\xfe\x00").decode()}).encode(), "UTF-8"),
        (b'{"workflow": ', "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xff", "not valid JSON"),
        (b"[1, 2]", "invalid request body"),
        (b'{"yaml": "eA=="}', "invalid request body"),
        (b'{"workflow": 12}', "invalid request body"),
    ]
    for path in (API + "/workflows/", "/akoflow-server/workflow/", API + "/workflows/validate/"):
        for body, message in bodies:
            res = api.post(path, content=body, headers={"Content-Type": "application/json"})
            assert res.status_code == 400, (path, body, res.text)
            assert message in res.json()["detail"], (body, res.json())
    for query in ("page=0", "per_page=5000", "limit=abc", "offset=-1", "activities=maybe"):
        res = api.get(f"{API}/workflows/?{query}")
        assert res.status_code == 400, (query, res.text)
        assert res.json()["errors"][0]["path"].startswith("query.")
    assert api.get(API + "/workflows/").json()["total"] == total


def test_unknown_ids_are_404(api: httpx.Client) -> None:
    wf_id = submit(api, HELLO)
    wait_workflow(api, wf_id)
    paths = [
        f"{API}/workflows/999999/",
        f"{API}/workflows/abc/",
        f"{API}/workflows/{2**70}/",
        f"{API}/workflows/0/",
        f"{API}/workflows/999999/activities/",
        f"{API}/workflows/{wf_id}/activities/nope/",
        f"{API}/workflows/{wf_id}/activities/Not_A_Name/",
        f"{API}/workflows/{wf_id}/activities/nope/logs/",
        f"{API}/workflows/{wf_id}/activities/nope/logs/stream/",
        f"{API}/workflows/{wf_id}/activities/nope/metrics/",
        f"{API}/workflows/999999/lineage/",
        f"{API}/runtimes/nope/nodes/",
        "/no/such/route",
    ]
    for path in paths:
        res = api.get(path)
        assert res.status_code == 404, (path, res.text)
        assert res.json()["detail"]
    for method, path in [
        ("POST", f"{API}/workflows/999999/cancel/"),
        ("POST", f"{API}/workflows/999999/retry/"),
        ("DELETE", f"{API}/workflows/999999/"),
        ("POST", f"{API}/workflows/{wf_id}/activities/nope/cancel/"),
    ]:
        assert api.request(method, path).status_code == 404, (method, path)


def test_validate_stores_nothing(api: httpx.Client) -> None:
    total = api.get(API + "/workflows/").json()["total"]
    res = api.post(API + "/workflows/validate/", json={"workflow": b64(HELLO)})
    assert res.status_code == 200, res.text
    assert res.json()["data"] == {
        "valid": True,
        "name": "hello",
        "activities": 5,
        "runtimes": ["local"],
    }
    assert api.get(API + "/workflows/").json()["total"] == total


def test_list_paginates_and_keeps_data_a_list(api: httpx.Client) -> None:
    ids = [submit(api, workflow_yaml(f"page-{i}", activity("only", "true"))) for i in range(3)]
    for wf_id in ids:
        wait_workflow(api, wf_id)
    total = api.get(API + "/workflows/").json()["total"]
    first = api.get(API + "/workflows/?page=1&per_page=2").json()
    second = api.get(API + "/workflows/?page=2&per_page=2").json()
    assert isinstance(first["data"], list) and len(first["data"]) == 2
    assert (first["total"], first["limit"], first["offset"]) == (total, 2, 0)
    assert second["offset"] == 2
    assert [w["id"] for w in first["data"]] == [ids[2], ids[1]]  # newest first
    assert second["data"][0]["id"] == ids[0]
    by_offset = api.get(API + "/workflows/?limit=1&offset=1").json()["data"]
    assert [w["id"] for w in by_offset] == [ids[1]]
    named = api.get(API + "/workflows/?name=page-1").json()
    assert [w["id"] for w in named["data"]] == [ids[1]] and named["total"] == 1
    light = api.get(API + "/workflows/?activities=false&per_page=1").json()["data"][0]
    assert light["spec"]["activities"] == [] and light["activityCount"] == 1


def test_activities_paginate_by_keyset_and_offset(api: httpx.Client) -> None:
    n = 250
    wf_id = submit(api, workflow_yaml("many", *(activity(f"t{i}", "true") for i in range(n))))
    wait_workflow(api, wf_id)
    names: list[str] = []
    after = None
    pages = 0
    while True:
        params = {"limit": 100} | ({"after": after} if after is not None else {})
        page = api.get(f"{API}/workflows/{wf_id}/activities/", params=params).json()
        pages += 1
        assert page["total"] == n
        names += [a["name"] for a in page["data"]]
        after = page["nextAfter"]
        if after is None:
            break
    assert pages == 3
    assert names == [f"t{i}" for i in range(n)]
    page3 = api.get(f"{API}/workflows/{wf_id}/activities/?page=3&per_page=100").json()
    assert [a["name"] for a in page3["data"]] == names[200:]
    assert page3["nextAfter"] is None
    done = api.get(f"{API}/workflows/{wf_id}/activities/?state=succeeded&limit=1").json()
    assert done["total"] == n
    none = api.get(f"{API}/workflows/{wf_id}/activities/?state=failed").json()
    assert (none["total"], none["data"]) == (0, [])


def test_activity_detail_lists_every_attempt(api: httpx.Client) -> None:
    wf_id = submit(api, (EXAMPLES / "retries.yaml").read_text())
    assert wait_workflow(api, wf_id)["state"] == "succeeded"
    res = api.get(f"{API}/workflows/{wf_id}/activities/flaky/")
    assert res.status_code == 200
    act = res.json()["data"]
    assert act["attempt"] == 3 and act["maxAttempts"] == 3 and act["retries"] == 2
    assert [(a["number"], a["state"]) for a in act["attempts"]] == [
        (1, "failed"),
        (2, "failed"),
        (3, "succeeded"),
    ]
    assert act["attempts"][0]["exitCode"] != 0 and act["attempts"][2]["exitCode"] == 0
    assert act["attempts"][2]["cpuSeconds"] is not None


def test_cancel_really_stops_a_running_sleep(api: httpx.Client) -> None:
    wf_id = submit(
        api,
        workflow_yaml(
            "sleepy",
            activity("sleeper", "sleep 60 &\necho $! > child.pid\nwait"),
            activity("after", "echo never > never.txt", depends=["sleeper"]),
        ),
    )
    doc = wait_workflow(api, wf_id, until="running")
    pid_file = Path(doc["dataDir"]) / "child.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    child = int(pid_file.read_text())
    assert not pid_gone(child)
    res = api.post(f"{API}/workflows/{wf_id}/cancel/")
    assert res.status_code == 202, res.text
    assert res.json()["data"]["cancelRequested"] is True
    doc = wait_workflow(api, wf_id, timeout=20)
    assert doc["state"] == "cancelled"
    assert activity_states(doc) == {"sleeper": "cancelled", "after": "cancelled"}
    wait_for(lambda: pid_gone(child), timeout=10)
    assert not (Path(doc["dataDir"]) / "never.txt").exists()
    again = api.post(f"{API}/workflows/{wf_id}/cancel/")
    assert again.status_code == 409 and "already ended" in again.json()["detail"]


def test_cancel_one_activity_lets_the_others_finish(api: httpx.Client) -> None:
    wf_id = submit(
        api,
        workflow_yaml(
            "partial",
            activity("slow", "echo $$ > slow.pid\nsleep 60"),
            activity("after-slow", "echo never > never.txt", depends=["slow"]),
            activity("quick", "sleep 1\necho done > quick.txt"),
        ),
    )
    doc = wait_workflow(api, wf_id, until="running")
    pid_file = Path(doc["dataDir"]) / "slow.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    res = api.post(f"{API}/workflows/{wf_id}/activities/slow/cancel/")
    assert res.status_code == 202, res.text
    doc = wait_workflow(api, wf_id, timeout=20)
    assert activity_states(doc) == {
        "slow": "cancelled",
        "after-slow": "skipped",
        "quick": "succeeded",
    }
    assert doc["state"] == "cancelled"
    assert (Path(doc["dataDir"]) / "quick.txt").read_text() == "done\n"
    wait_for(lambda: pid_gone(int(pid_file.read_text())), timeout=10)
    res = api.post(f"{API}/workflows/{wf_id}/activities/quick/cancel/")
    assert res.status_code == 409


def test_retry_runs_a_failed_workflow_from_where_it_stopped(api: httpx.Client) -> None:
    wf_id = submit(
        api,
        workflow_yaml(
            "fixable",
            activity("first", "echo run >> count.first"),
            activity("check", "echo run >> count.check\ntest -f fixed", depends=["first"]),
            activity("last", "echo run >> count.last", depends=["check"]),
        ),
    )
    doc = wait_workflow(api, wf_id)
    assert doc["state"] == "failed"
    assert activity_states(doc) == {"first": "succeeded", "check": "failed", "last": "skipped"}
    data = Path(doc["dataDir"])
    (data / "fixed").touch()
    res = api.post(f"{API}/workflows/{wf_id}/retry/")
    assert res.status_code == 202, res.text
    doc = wait_workflow(api, wf_id)
    assert doc["state"] == "succeeded"
    counts = {p.name: len(p.read_text().splitlines()) for p in data.glob("count.*")}
    assert counts == {"count.first": 1, "count.check": 2, "count.last": 1}
    again = api.post(f"{API}/workflows/{wf_id}/retry/")
    assert again.status_code == 409 and "only a failed or cancelled" in again.json()["detail"]


def test_delete_refuses_a_running_workflow_then_removes_a_finished_one(
    api: httpx.Client, shared_server: Server
) -> None:
    wf_id = submit(api, workflow_yaml("doomed", activity("wait", "sleep 30")))
    doc = wait_workflow(api, wf_id, until="running")
    res = api.delete(f"{API}/workflows/{wf_id}/")
    assert res.status_code == 409 and "cancel it" in res.json()["detail"]
    api.post(f"{API}/workflows/{wf_id}/cancel/")
    assert wait_workflow(api, wf_id, timeout=20)["state"] == "cancelled"
    run_dir = Path(doc["dataDir"]).parent
    assert run_dir.is_dir() and run_dir.parent == shared_server.state_dir / "runs"
    res = api.delete(f"{API}/workflows/{wf_id}/")
    assert res.status_code == 200, res.text
    assert res.json()["data"]["state"] == "cancelled"
    assert api.get(f"{API}/workflows/{wf_id}/").status_code == 404
    assert api.get(f"{API}/workflows/{wf_id}/activities/wait/logs/").status_code == 404
    assert not run_dir.exists()
    assert api.delete(f"{API}/workflows/{wf_id}/").status_code == 404


def test_lineage_graph_has_activities_files_and_their_relations(api: httpx.Client) -> None:
    wf_id = submit(api, HELLO)
    wait_workflow(api, wf_id)
    for path in (f"/workflows/{wf_id}/lineage/", f"/workflows/{wf_id}/storages/list-files/"):
        graph = api.get(API + path).json()["data"]
        activities = [n for n in graph["nodes"] if n["type"] == "activity"]
        assert {n["id"] for n in activities} == {
            f"activity:{a}"
            for a in ("make-input", "count-letters", "upper-case", "reverse", "report")
        }
        assert {n["state"] for n in activities} == {"succeeded"}
        files = {n["id"] for n in graph["nodes"] if n["type"] == "file"}
        assert files == {
            f"file:{f}"
            for f in ("words.txt", "letters.txt", "upper.txt", "reversed.txt", "report.txt")
        }
        edges = {(e["from"], e["to"], e["label"]) for e in graph["edges"]}
        assert ("activity:report", "activity:reverse", "dependsOn") in edges
        assert ("activity:count-letters", "activity:make-input", "dependsOn") in edges
        assert len([e for e in edges if e[2] == "dependsOn"]) == 6
        # Files, with PROV's directions. (Which of the three concurrent middle steps wrote
        # which file is not asserted: they write and exit within the same few ms.)
        assert ("file:words.txt", "activity:make-input", "wasGeneratedBy") in edges
        assert ("file:report.txt", "activity:report", "wasGeneratedBy") in edges
        for step in ("count-letters", "upper-case", "reverse"):
            assert (f"activity:{step}", "file:words.txt", "used") in edges
        for made in ("letters.txt", "upper.txt", "reversed.txt"):
            assert ("activity:report", f"file:{made}", "used") in edges


def test_lineage_shows_an_ambiguous_file_with_its_candidates(api: httpx.Client) -> None:
    """Two activities append to one file while both run: no activity generated it; the
    graph says so (type `ambiguous`, its candidates, no `wasGeneratedBy`)."""
    wf_id = submit(
        api,
        workflow_yaml(
            "overlap",
            activity("one", "echo 1 >> same.txt\nuntil grep -q 2 same.txt; do sleep 0.01; done"),
            activity("two", "until [ -s same.txt ]; do sleep 0.01; done\necho 2 >> same.txt"),
        ),
    )
    assert wait_workflow(api, wf_id)["state"] == "succeeded"
    graph = api.get(f"{API}/workflows/{wf_id}/lineage/").json()["data"]
    (node,) = [n for n in graph["nodes"] if n["id"] == "file:same.txt"]
    assert node["type"] == "ambiguous"
    assert node["candidates"] == ["one", "two"]
    assert "same time" in node["reason"]
    edges = {(e["from"], e["to"], e["label"]) for e in graph["edges"]}
    assert {e for e in edges if e[0] == "file:same.txt"} == {
        ("file:same.txt", "activity:one", "candidate"),
        ("file:same.txt", "activity:two", "candidate"),
    }


def test_nodes_of_a_runtime_and_metrics_of_an_activity(api: httpx.Client) -> None:
    def nodes() -> list[dict[str, object]]:
        res = api.get(API + "/runtimes/local/nodes/")
        assert res.status_code == 200
        return res.json()["data"]  # type: ignore[no-any-return]

    wait_for(nodes, timeout=15)  # the health loop records nodes every 5 s
    node = nodes()[0]
    assert node["runtime"] == "local" and node["status"] == "READY"
    assert isinstance(node["cpuCapacity"], float) and node["cpuCapacity"] >= 1
    wf_id = submit(
        api,
        workflow_yaml(
            "busy",
            activity("spin", "end=$((SECONDS + 5))\nwhile [ $SECONDS -lt $end ]; do :; done"),
        ),
    )
    assert wait_workflow(api, wf_id)["state"] == "succeeded"
    metrics = api.get(f"{API}/workflows/{wf_id}/activities/spin/metrics/").json()["data"]
    assert metrics["total"] >= 2  # one sample every 2 s; the first CPU reading is 0
    assert any((s["cpuPercent"] or 0) > 20 for s in metrics["samples"])
    (usage,) = metrics["attempts"]
    assert usage["number"] == 1 and usage["cpuSeconds"] > 1
    assert usage["peakMemoryBytes"] and usage["meanCpuPercent"]
