"""`akoflow status ID --server` of a big run shows what the local `status` shows, and the
server answers it with the rows shown, picked by its store (`?picked=true`): not a listing of
every activity paged over the API (at 20,000 activities: 1.0-1.2 s -> 0.45-0.6 s)."""

from __future__ import annotations

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


def activities_asked(server: Server) -> list[str]:
    """The activity listings the server answered so far (its access log)."""
    return re.findall(r'"GET (/akoflow-api/workflows/1/activities/\S*) HTTP', server.output())


def test_status_over_the_api_is_the_local_one_from_the_rows_shown_only(server: Server) -> None:
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

    asked = len(activities_asked(server))
    remote = akoflow("status", "1", "--server", server.url, "--state-dir", str(server.state_dir))
    assert remote.returncode == 0, remote.stderr
    local = akoflow("status", "1", "--state-dir", str(server.state_dir))
    assert local.returncode == 0, local.stderr
    assert remote.stdout == local.stdout
    assert "succeeded 118  failed 2" in remote.stdout
    assert f"... {WIDE - STATUS_ROWS} more activities not shown" in remote.stdout
    assert re.search(r"t119 +local +failed", remote.stdout)
    # One request for its activities: the picked page, no page after page of every one.
    assert activities_asked(server)[asked:] == [
        f"/akoflow-api/workflows/1/activities/?picked=true&limit={STATUS_ROWS}"
    ]
