"""Backends' RFC 3339 times (dockerd, the Kubernetes API) and the timeout judged from them."""

from __future__ import annotations

from datetime import UTC, datetime

from akoflow.runtimes.docker.status import run_times
from akoflow.runtimes.instants import instant
from akoflow.runtimes.kubernetes.status import pod_view
from akoflow.states import ran_over


def test_times_as_backends_write_them() -> None:
    base = datetime(2026, 12, 6, 10, 21, tzinfo=UTC).timestamp()
    assert instant("2026-12-06T10:21:00Z") == base
    assert instant("2026-12-06T10:21:00.123456789Z") == base + 0.123456
    assert instant("2026-12-06T11:21:00.5+01:00") == base + 0.5
    # A daemon's "never", a time without its zone, and what is no time at all
    for raw in ("0001-01-01T00:00:00Z", "2026-12-06T10:21:00", "yesterday", "", None, 5):
        assert instant(raw) is None, raw


def test_a_containers_run_times() -> None:
    ended = {"StartedAt": "2026-12-06T10:21:00.25Z", "FinishedAt": "2026-12-06T10:21:03Z"}
    began, finished = run_times({"State": ended})
    assert began is not None and finished is not None and finished - began == 2.75
    assert run_times({"State": {"StartedAt": "0001-01-01T00:00:00Z"}}) == (None, None)


def test_a_terminated_pods_run_times() -> None:
    term = {
        "exitCode": 0,
        "startedAt": "2026-12-06T10:21:00Z",
        "finishedAt": "2026-12-06T10:21:04Z",
    }
    pod = {"status": {"containerStatuses": [{"state": {"terminated": term}}]}}
    view = pod_view(pod)
    assert view.started_at is not None and view.finished_at is not None
    assert view.finished_at - view.started_at == 4
    running = {"status": {"containerStatuses": [{"state": {"running": term}}]}}
    assert (pod_view(running).started_at, pod_view(running).finished_at) == (None, None)


def test_ran_over_judges_only_what_it_knows() -> None:
    assert ran_over(1.0, 100.0, 101.5)
    assert not ran_over(1.0, 100.0, 101.0)  # exactly its limit: in time
    assert not ran_over(None, 100.0, 200.0)
    assert not ran_over(1.0, None, 200.0)
    assert not ran_over(1.0, 100.0, None)
    assert not ran_over(1.0, 101.0, 100.0)  # a clock that went back: never over
