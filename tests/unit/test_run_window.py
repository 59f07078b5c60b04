"""How long an attempt ran, for its timeout, is taken by one clock (engine.attempts.run_window).

A remote runtime gives the start and end of a job by its node's clock; mixing the node's end
with the engine's start let a job that ran over its timeout pass for one that ended in time
when the node's clock was behind the engine's (a false success, its timeout's stop having
come too late)."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from akoflow.engine.attempts import ended_in_time, ended_over_time, run_window
from akoflow.runtimes.base import Outcome
from akoflow.runtimes.kubernetes.status import PodView, widest_run


def _act(started: float | None, timeout: float = 5.0) -> Any:
    return SimpleNamespace(
        attempt_started=started,
        spec=SimpleNamespace(timeout_seconds=timeout),
        cancel_requested=False,
        wf=SimpleNamespace(cancelling=False),
    )


def _success(started: float | None, ended: float | None) -> Outcome:
    return Outcome(True, 0, started_at=started, ended_at=ended, ended_unstopped=True)


def test_a_node_behind_the_engine_does_not_shorten_a_job_that_ran_over() -> None:
    act = _act(started=1000.0)  # the engine's clock; the node's is 10 s behind
    outcome = _success(started=990.0, ended=996.0)  # 6 s, of a 5 s timeout
    assert run_window(act, outcome) == (990.0, 996.0)
    assert not ended_in_time(act, outcome)


def test_a_node_ahead_of_the_engine_does_not_lengthen_a_job_in_time() -> None:
    act = _act(started=1000.0)
    outcome = _success(started=1010.0, ended=1014.5)  # 4.5 s
    assert ended_in_time(act, outcome)
    assert not ended_over_time(act, outcome)


def test_an_end_alone_counts_from_the_engines_start() -> None:
    act = _act(started=1000.0)
    assert run_window(act, _success(None, 1004.0)) == (1000.0, 1004.0)
    assert ended_in_time(act, _success(None, 1004.0))
    assert not ended_in_time(act, _success(None, 1006.0))
    assert not ended_in_time(act, _success(None, None))  # unknown: judged as timed out


def test_a_local_start_after_the_engines_send_counts() -> None:
    act = _act(started=1000.0, timeout=1.0)  # sent at 1000.0, started by its spawner 20 ms on
    outcome = _success(started=1000.02, ended=1001.01)  # ran 0.99 s
    assert ended_in_time(act, outcome)
    assert ended_over_time(act, _success(started=1000.02, ended=1001.05))


def _pod(started: float | None, finished: float | None) -> PodView:
    return PodView(
        name="p",
        job="j",
        node="n",
        running=False,
        exit_code=0,
        terminated=True,
        reason=None,
        stuck=None,
        started_at=started,
        finished_at=finished,
    )


def test_a_kubernetes_run_in_whole_seconds_is_judged_no_shorter_than_it_ran() -> None:
    """The API's startedAt/finishedAt are whole seconds (a container that ran 4.9 s from
    100.9 to 105.8 reads 100 and 105): judged as 100-106, over a 5 s timeout; one that read
    100 and 103 (at most 4 s) in time. Before, the end alone (105) against the engine's start
    (101.0, its own clock) judged the 4.9 s run in time."""
    act = _act(started=101.0)
    over = Outcome(True, 0, ended_unstopped=True)
    window = widest_run(_pod(100.0, 105.0))
    assert window == (100.0, 106.0)
    assert not ended_in_time(act, replace(over, started_at=window[0], ended_at=window[1]))
    window = widest_run(_pod(100.0, 103.0))
    assert window is not None
    assert ended_in_time(act, replace(over, started_at=window[0], ended_at=window[1]))
    assert widest_run(_pod(None, 103.0)) is None
