"""akoflow.Client and akoflow.AsyncClient against a live server (a real `akoflow server`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import akoflow
from akoflow import ActivityState as A
from akoflow import WorkflowState as W
from tests.conftest import EXAMPLES
from tests.server.conftest import Server, free_port


@pytest.fixture
def client(server: Server) -> Iterator[akoflow.Client]:
    with akoflow.Client(server.url, server.token) as c:
        yield c


def test_submit_wait_logs(client: akoflow.Client) -> None:
    wf = akoflow.Workflow("remote", runtime="local")
    make = wf.activity("make", run="echo made > made.txt; echo to-err >&2")
    wf.activity("show", run="cat made.txt", depends_on=make)
    run_id = client.submit(wf)
    status = client.wait(run_id, timeout=60)
    assert status.ok and status.id == run_id and status.name == "remote"
    assert {n: a.state for n, a in status.activities.items()} == {
        "make": A.SUCCEEDED,
        "show": A.SUCCEEDED,
    }
    assert status["show"].exit_code == 0 and status["show"].attempts == 1
    assert client.logs(run_id, "show") == "made\n"
    assert client.logs(run_id, "make", stream="stderr") == "to-err\n"
    assert client.logs("remote", "make", stream="stdout") == ""  # a name: its newest run
    chunks = list(client.follow_logs(run_id, "make"))
    assert {(c.stream, c.data) for c in chunks} == {("stderr", "to-err\n")}
    assert client.status(run_id) == status
    # A file and YAML text, as `akoflow submit` sends them.
    assert client.wait(client.submit(EXAMPLES / "hello.yaml"), timeout=60).ok
    assert client.wait(client.submit((EXAMPLES / "failing.yaml").read_text())).state is W.FAILED


def test_follow_and_cancel(client: akoflow.Client) -> None:
    wf = akoflow.Workflow("cancel-me", runtime="local")
    wf.activity("talk", run="echo one; sleep 60; echo never")
    run_id = client.submit(wf)
    follow = client.follow_logs(run_id, "talk")
    first = next(follow)
    assert (first.attempt, first.stream, first.data) == (1, "stdout", "one\n")
    assert client.cancel(run_id) in (W.RUNNING, W.CANCELLED)
    rest = list(follow)  # the stream ends with the activity
    assert all(c.data != "never\n" for c in rest)
    ended = client.wait(run_id, timeout=60)
    assert ended.state is W.CANCELLED and ended["talk"].state is A.CANCELLED
    with pytest.raises(akoflow.Conflict) as caught:
        client.cancel(run_id)
    assert caught.value.status == 409 and "already ended" in caught.value.detail
    assert client.retry(run_id) is W.RUNNING  # a cancelled run may run again
    client.cancel(run_id)
    assert client.wait(run_id, timeout=60).state is W.CANCELLED


def test_validation_rejected_carries_the_servers_422_detail(client: akoflow.Client) -> None:
    wf = akoflow.Workflow("bad")
    wf.activity("a", run="true", depends_on="ghost", memory_limit="lots")
    before = len(client._api.call("GET", "/workflows/", params={"per_page": 1000})["data"])
    with pytest.raises(akoflow.ValidationRejected) as caught:
        client.submit(wf)
    exc = caught.value
    assert isinstance(exc, akoflow.ServerError) and exc.status == 422
    assert exc.detail == "invalid workflow: 2 errors"
    lines = wf.to_yaml().splitlines()  # the server's lines are those of the YAML sent
    where = {e.path: lines[e.line - 1].strip() for e in exc.errors if e.line}
    assert where == {
        "spec.activities[0].dependsOn[0]": "- ghost",
        "spec.activities[0].memoryLimit": "memoryLimit: lots",
    }
    assert all(isinstance(e, akoflow.SpecError) for e in exc.errors)
    assert "unknown activity 'ghost'" in str(exc)
    after = len(client._api.call("GET", "/workflows/", params={"per_page": 1000})["data"])
    assert after == before  # nothing stored


def test_wrong_token_and_unknown_things(server: Server, client: akoflow.Client) -> None:
    secret = "wrong-" + "x" * 32
    with akoflow.Client(server.url, secret) as bad:
        assert secret not in repr(bad) and repr(bad) == f"Client({server.url!r})"
        with pytest.raises(akoflow.Unauthorized) as caught:
            bad.runtimes()
    assert caught.value.status == 401 and caught.value.detail == "invalid bearer token"
    assert secret not in str(caught.value) and server.token not in repr(client)
    with pytest.raises(akoflow.NotFound):
        client.status(999_999)
    with pytest.raises(akoflow.NotFound):
        client.logs("no-such-workflow", "a")
    with akoflow.Client(f"http://127.0.0.1:{free_port()}", "t") as nobody:
        with pytest.raises(akoflow.ServerUnreachable):
            nobody.status(1)
    with pytest.raises(akoflow.ServerError, match="http:// or https://"):
        akoflow.Client("ftp://example.org", "t")
    names = {r.name: r for r in client.runtimes()}
    assert names["local"].ready and names["local"].kind == "local"


def test_async_client(server: Server) -> None:
    async def main() -> None:
        async with akoflow.AsyncClient(server.url, server.token) as client:
            assert server.token not in repr(client)
            wf = akoflow.Workflow("async-remote", runtime="local")
            wf.activity("hi", run="echo hi; echo there >&2")
            run_id = await client.submit(wf)
            chunks = [c async for c in client.follow_logs(run_id, "hi")]
            assert sorted((c.stream, c.data) for c in chunks) == [
                ("stderr", "there\n"),
                ("stdout", "hi\n"),
            ]
            status = await client.wait("async-remote", timeout=60)
            assert status.ok and status.id == run_id
            assert await client.logs(run_id, "hi", stream="stdout") == "hi\n"
            assert (await client.status(run_id)) == status
            with pytest.raises(akoflow.Conflict):
                await client.cancel(run_id)
            with pytest.raises(akoflow.ValidationRejected) as caught:
                await client.submit("name: x\nspec:\n  activities: []\n")
            assert caught.value.errors[0].path == "spec.activities"
            assert [r.name for r in await client.runtimes()]
        async with akoflow.AsyncClient(server.url, "nope") as bad:
            with pytest.raises(akoflow.Unauthorized):
                await bad.status(1)

    asyncio.run(main())


def test_token_and_server_from_the_environment(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AKOFLOW_SERVER", server.url)
    monkeypatch.delenv("AKOFLOW_API_TOKEN", raising=False)
    with akoflow.Client(state_dir=server.state_dir) as c:  # the server's api-token file
        assert c.url == server.url and c.runtimes()
