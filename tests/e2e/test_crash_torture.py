"""Crash-point torture of the engine on the local runtime, as storage engines are tested.

The real `akoflow run` is SIGKILLed at seeded random instants (start-up, dispatch, mid-run, end
of run, around retries and timeouts, right after a cancel, or followed by a SIGTERM to its
still-running attempts as on a shutdown), then `akoflow resume` (or re-running the file), itself
sometimes killed too, finishes the run. After each trial the activities' own
ledger is checked against the store: nothing recorded SUCCEEDED that did not run to its end,
nothing ran twice or overlapped, nothing started before its dependencies ended, the run ended
as it should and nothing is left running. See tests/torture/ for the machinery.

Replay a failure with the seed and trial numbers it prints:
    AKOFLOW_TORTURE_SEED=123 AKOFLOW_TORTURE_TRIALS=4,9 pytest tests/e2e/test_crash_torture.py
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import cli_env
from tests.torture.runner import local_leftovers, local_terminate, run_torture
from tests.torture.workflows import BASH, Builder, RuntimeUnderTest, chain, retrying, wide

MIN_KILLS = 50
# A wider dispatch than the default (2 x CPUs): more attempts in flight at each kill.
LOCAL = RuntimeUnderTest(
    name="local",
    spec={},
    env=cli_env(LOCAL_MAX_PARALLEL="16"),
    shell=BASH,
    leftovers=local_leftovers,
    terminate=local_terminate,
)
WORKFLOWS: list[Builder] = [wide, chain, retrying]


@pytest.mark.timeout(360)
@pytest.mark.parametrize(("runtime", "builders"), [(LOCAL, WORKFLOWS)], ids=["local"])
def test_sigkill_at_random_instants_then_resume_keeps_every_promise(
    runtime: RuntimeUnderTest, builders: list[Builder], tmp_path: Path
) -> None:
    report = run_torture(runtime, builders, tmp_path, min_kills=MIN_KILLS, max_trials=3 * MIN_KILLS)
    print(report.details())
    print(report.summary())
    assert not report.failures(), report.failure_text()
    assert report.landed() >= MIN_KILLS or report.only, report.summary()
