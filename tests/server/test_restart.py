"""A server killed (SIGKILL) or stopped mid-run resumes every in-flight workflow when it
starts again, and no activity runs twice (side-effect counter files)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from tests.conftest import wait_for
from tests.e2e.test_crash_resume import N_FAST, crash_workflow, run_counts
from tests.server.conftest import (
    Server,
    activity,
    activity_states,
    submit,
    wait_workflow,
    workflow_yaml,
)


def test_sigkill_mid_run_then_restart_completes_without_running_anything_twice(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = start_server()
    wf_file = tmp_path / "crash.yaml"
    crash_workflow(wf_file)
    with server.client() as api:
        crashy = submit(api, wf_file.read_text())
        second = submit(
            api, workflow_yaml("other", activity("nap", "echo run >> count.nap\nsleep 2"))
        )
        doc = wait_workflow(api, crashy, until="running")
        other = wait_workflow(api, second, until="running")
    data, other_data = Path(doc["dataDir"]), Path(other["dataDir"])
    wait_for(
        lambda: (
            (data / "count.slow").exists()
            and (data / "count.gate").exists()
            and (other_data / "count.nap").exists()
        )
    )
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    assert not (data / "count.after").exists()

    server.start()
    with server.client() as api:
        doc = wait_workflow(api, crashy)
        other = wait_workflow(api, second)
    assert doc["state"] == "succeeded", doc
    assert other["state"] == "succeeded", other
    assert run_counts(data) == {f"count.fast{i}": 1 for i in range(N_FAST)} | {
        "count.slow": 1,
        "count.after": 1,
        "count.gate": 1,
    }
    assert run_counts(other_data) == {"count.nap": 1}
    assert (data / "slow.out").read_text() == "done\n"  # adopted, and its dependent saw it
    assert "resuming 2 unfinished workflow(s)" in server.output()


def test_graceful_stop_leaves_activities_running_and_the_next_start_adopts_them(
    start_server: Callable[..., Server],
) -> None:
    server = start_server()
    with server.client() as api:
        wf_id = submit(
            api,
            workflow_yaml(
                "survivor",
                activity("long", "echo run >> count.long\nsleep 3\necho done > long.out"),
                activity("next", "echo run >> count.next\ncat long.out", depends=["long"]),
            ),
        )
        doc = wait_workflow(api, wf_id, until="running")
    data = Path(doc["dataDir"])
    wait_for(lambda: (data / "count.long").exists())
    server.stop(signal.SIGTERM)  # uvicorn re-raises the signal after its clean shutdown
    assert "Application shutdown complete" in server.output()
    server.start()
    with server.client() as api:
        doc = wait_workflow(api, wf_id)
        assert doc["state"] == "succeeded"
        assert activity_states(doc) == {"long": "succeeded", "next": "succeeded"}
        logs = api.get(f"/akoflow-api/workflows/{wf_id}/activities/next/logs/").json()["data"]
    assert "".join(c["data"] for c in logs) == "done\n"
    assert run_counts(data) == {"count.long": 1, "count.next": 1}
