"""50 workflows submitted at once through the API all complete; the one store connection
never reports "database is locked"."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.server.conftest import API, Server, activity, b64, workflow_yaml

N = 50


async def submit_all(server: Server) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {server.token}"}
    limits = httpx.Limits(max_connections=N)
    async with httpx.AsyncClient(
        base_url=server.url, headers=headers, timeout=120, limits=limits
    ) as client:
        return await asyncio.gather(
            *(
                client.post(
                    API + "/workflows/" if i % 2 else "/akoflow-server/workflow/",
                    json={
                        "workflow": b64(
                            workflow_yaml(
                                f"burst-{i}",
                                activity("make", f"echo {i} > n.txt"),
                                activity("use", "cat n.txt", depends=["make"]),
                            )
                        )
                    },
                )
                for i in range(N)
            )
        )


def test_fifty_concurrent_submissions_all_complete(server: Server) -> None:
    responses = asyncio.run(submit_all(server))
    assert [r.status_code for r in responses] == [200] * N, [r.text for r in responses]
    ids = {r.json()["workflow_id"] for r in responses}
    assert len(ids) == N
    deadline = time.monotonic() + 120
    with server.client() as api:
        while True:
            page = api.get(API + "/workflows/", params={"per_page": 100, "activities": "false"})
            states = {w["id"]: w["state"] for w in page.json()["data"]}
            if all(states.get(i) in ("succeeded", "failed", "cancelled") for i in ids):
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.2)
        assert {states[i] for i in ids} == {"succeeded"}
        for r in responses[:5]:
            wf_id = r.json()["workflow_id"]
            i = int(r.json()["workflow_entity"].split("-")[1])
            logs = api.get(f"{API}/workflows/{wf_id}/activities/use/logs/").json()["data"]
            assert "".join(c["data"] for c in logs) == f"{i}\n"
    output = server.output()
    assert "database is locked" not in output
    assert "Traceback" not in output
