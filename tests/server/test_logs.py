"""Logs over the API: pages read on from a row id, filters by attempt and stream, and the live
follow stream (Server-Sent Events) that ends when the activity does."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from tests.conftest import EXAMPLES
from tests.server.conftest import API, activity, submit, wait_workflow, workflow_yaml


def read_all(api: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = []
    after = 0
    while True:
        page = api.get(path, params={**params, "after": after, "limit": 2}).json()
        chunks += page["data"]
        after = page["nextAfter"]
        if page["complete"]:
            return chunks
        assert page["data"], "an incomplete page of a finished activity must hold data"


def test_logs_read_on_from_an_offset_with_attempt_and_stream_filters(api: httpx.Client) -> None:
    wf_id = submit(
        api,
        workflow_yaml(
            "chatty",
            activity(
                "talk",
                "echo one\nsleep 1.3\necho oops >&2\necho two\nsleep 1.3\necho three",
            ),
        ),
    )
    assert wait_workflow(api, wf_id)["state"] == "succeeded"
    path = f"{API}/workflows/{wf_id}/activities/talk/logs/"
    everything = api.get(path).json()
    assert everything["complete"] is True
    chunks = everything["data"]
    assert len(chunks) >= 3  # stored incrementally while it ran, not only at the end
    assert [c["id"] for c in chunks] == sorted(c["id"] for c in chunks)
    stdout = "".join(c["data"] for c in chunks if c["stream"] == "stdout")
    assert stdout == "one\ntwo\nthree\n"
    assert "".join(c["data"] for c in chunks if c["stream"] == "stderr") == "oops\n"
    rest = api.get(path, params={"after": chunks[0]["id"]}).json()["data"]
    assert rest == chunks[1:]
    assert api.get(path, params={"offset": chunks[0]["id"]}).json()["data"] == chunks[1:]
    tail = api.get(path, params={"after": chunks[-1]["id"]}).json()
    assert tail["data"] == [] and tail["complete"] is True
    assert tail["nextAfter"] == chunks[-1]["id"]
    only_err = api.get(path, params={"stream": "stderr"}).json()["data"]
    assert [c["data"] for c in only_err] == ["oops\n"]
    assert read_all(api, path) == chunks  # paging by 2 with nextAfter sees every chunk once
    assert api.get(path, params={"stream": "nope"}).status_code == 400

    wf_id = submit(api, (EXAMPLES / "retries.yaml").read_text())
    wait_workflow(api, wf_id)
    path = f"{API}/workflows/{wf_id}/activities/flaky/logs/"
    first = api.get(path, params={"attempt": 1}).json()["data"]
    assert {c["attempt"] for c in first} == {1}
    assert "attempt 1 (try 1)" in "".join(c["data"] for c in first)
    third = "".join(c["data"] for c in api.get(path, params={"attempt": 3}).json()["data"])
    assert "attempt 3 (try 3)" in third
    every = api.get(path).json()["data"]
    assert {c["attempt"] for c in every} == {1, 2, 3}


def sse(lines: Any) -> Any:
    event: dict[str, str] = {}
    for line in lines:
        if not line:
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            event[key] = value


def test_follow_streams_output_live_and_ends_with_the_activity(api: httpx.Client) -> None:
    script = "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.5; done\necho bye >&2"
    wf_id = submit(api, workflow_yaml("live", activity("ticker", script)))
    path = f"{API}/workflows/{wf_id}/activities/ticker/logs/stream/"
    received: list[tuple[float, dict[str, Any]]] = []
    end: dict[str, Any] = {}
    with api.stream("GET", path) as res:
        assert res.status_code == 200
        assert res.headers["content-type"].startswith("text/event-stream")
        for event in sse(res.iter_lines()):
            if event["event"] == "log":
                chunk = json.loads(event["data"])
                assert event["id"] == str(chunk["id"])
                received.append((time.time(), chunk))
            else:
                assert event["event"] == "end"
                end = json.loads(event["data"])
    assert end == {"state": "succeeded", "attempt": 1, "exitCode": 0}
    text = "".join(c["data"] for _, c in received if c["stream"] == "stdout")
    assert text == "".join(f"line {i}\n" for i in range(1, 7))
    assert [c["data"] for _, c in received if c["stream"] == "stderr"] == ["bye\n"]
    # Live: the first lines arrived well before the activity ended.
    finished = api.get(f"{API}/workflows/{wf_id}/activities/ticker/").json()["data"]
    assert received[0][0] < finished["finishedAt"] - 1.0
    assert len(received) >= 3
    # Reconnecting after a chunk (Last-Event-ID) gives only what follows, then the end.
    second = received[1][1]["id"]
    res = api.get(path, headers={"Last-Event-ID": str(second)})
    events = list(sse(res.text.splitlines()))
    assert [json.loads(e["data"]) for e in events if e["event"] == "log"] == [
        c for _, c in received[2:]
    ]
    assert events[-1]["event"] == "end"


def test_follow_of_one_attempt_ends_when_that_attempt_ends(api: httpx.Client) -> None:
    wf_id = submit(api, (EXAMPLES / "retries.yaml").read_text())
    path = f"{API}/workflows/{wf_id}/activities/flaky/logs/stream/"
    res = api.get(path, params={"attempt": 1, "stream": "stdout"})
    events = list(sse(res.text.splitlines()))
    logs = [json.loads(e["data"]) for e in events if e["event"] == "log"]
    assert {(c["attempt"], c["stream"]) for c in logs} == {(1, "stdout")}
    assert "attempt 1 (try 1)" in "".join(c["data"] for c in logs)
    assert events[-1]["event"] == "end"
    wait_workflow(api, wf_id)
