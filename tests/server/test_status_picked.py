"""`akoflow status` over the API shows what the local one shows: the list of runs, and of a
big run the rows shown, which the server answers picked by its store (`?picked=true`), not
a listing of every activity paged over the API (at 20,000 activities: 1.0-1.2 s ->
0.45-0.6 s)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from akoflow.cli.progress import STATUS_ROWS
from tests.conftest import cli_env
from tests.server.conftest import API, Server, activity, submit, wait_workflow, workflow_yaml

WIDE = STATUS_ROWS + 20
FAILING = {WIDE - 1, WIDE - 2}  # the last ones: picked first, past the first 100 in file order


def akoflow(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "akoflow", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=cli_env())


def activities_asked(server: Server, wf_id: int) -> list[str]:
    """The activity listings of run ``wf_id`` the server answered so far (its access log)."""
    found = rf'"GET (/akoflow-api/workflows/{wf_id}/activities/\S*) HTTP'
    return re.findall(found, server.output())


def both(server: Server, *args: str) -> tuple[str, str]:
    """The output of `akoflow ARGS` over the API, and from the server's store directly."""
    state = ("--state-dir", str(server.state_dir))
    remote = akoflow(*args, "--server", server.url, *state)
    assert remote.returncode == 0, remote.stderr
    local = akoflow(*args, *state)
    assert local.returncode == 0, local.stderr
    return remote.stdout, local.stdout


def test_status_over_the_api_is_the_local_one_from_the_rows_shown_only(
    shared_server: Server,
) -> None:
    server = shared_server
    acts = [activity(f"t{i:03d}", "exit 3" if i in FAILING else "true") for i in range(WIDE)]
    with server.client() as api:
        wf_id = submit(api, workflow_yaml("big", *acts))
        assert wait_workflow(api, wf_id)["state"] == "failed"

        page = api.get(f"{API}/workflows/{wf_id}/activities/", params={"picked": "true"})
        assert page.status_code == 200, page.text
        body = page.json()
        assert body["total"] == WIDE and body["nextAfter"] is None
        assert len(body["data"]) == STATUS_ROWS  # the default limit: the rows shown
        names = [a["name"] for a in body["data"]]
        assert names == sorted(names)  # in file order
        assert {f"t{i:03d}" for i in FAILING} <= set(names)
        small = api.get(
            f"{API}/workflows/{wf_id}/activities/", params={"picked": "true", "limit": 2}
        ).json()["data"]
        assert [a["name"] for a in small] == [f"t{i:03d}" for i in sorted(FAILING)]
        for bad in ({"after": 5}, {"offset": 5}, {"state": "failed"}, {"page": 2}):
            res = api.get(f"{API}/workflows/{wf_id}/activities/", params={"picked": "true", **bad})
            assert res.status_code == 400, (bad, res.text)
        res = api.get(f"{API}/workflows/{wf_id}/activities/", params={"picked": "maybe"})
        assert res.status_code == 400

    asked = len(activities_asked(server, wf_id))
    remote, local = both(server, "status", str(wf_id))
    assert remote == local
    assert "succeeded 118  failed 2" in remote
    assert f"... {WIDE - STATUS_ROWS} more activities not shown" in remote
    assert re.search(r"t119 +local +failed", remote)
    # One request for its activities: the picked page, no page after page of every one.
    assert activities_asked(server, wf_id)[asked:] == [
        f"/akoflow-api/workflows/{wf_id}/activities/?picked=true&limit={STATUS_ROWS}"
    ]


def test_the_list_of_runs_over_the_api_is_the_local_one(shared_server: Server) -> None:
    with shared_server.client() as api:
        ok = submit(api, workflow_yaml("ok", activity("a", "true"), activity("b", "true")))
        bad = submit(api, workflow_yaml("bad", activity("a", "exit 1"), activity("b", "true")))
        for wf_id in (ok, bad):
            wait_workflow(api, wf_id)
    remote, local = both(shared_server, "status")
    assert remote == local
    assert re.search(rf"{ok} +ok +succeeded +2/2", remote)
    assert re.search(rf"{bad} +bad +failed +2/2", remote)
    remote, local = both(shared_server, "status", "--json", "--limit", "2")
    assert json.loads(remote) == json.loads(local)
    assert [(r["id"], r["name"], r["state"]) for r in json.loads(remote)] == [
        (bad, "bad", "failed"),
        (ok, "ok", "succeeded"),
    ]
