"""A runtime that cannot become READY by waiting fails the work held for it, with the reason:
a bad setting (it never heals while the engine runs) at once, any NOT_READY after
``{NAME}_READY_TIMEOUT``. Without either, NOT_READY holds work (test_engine_inprocess.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from akoflow.config import RuntimeConfig
from akoflow.runtimes.base import RuntimeEvents
from akoflow.states import ActivityState, WorkflowState
from tests.conftest import Akoflow, cli_env
from tests.e2e.test_engine_inprocess import SwitchableLocal, engine_with

TWO = """\
name: held
spec:
  activities:
    - name: a
      run: echo ran >> {data}/ran.a
    - name: b
      dependsOn: [a]
      run: echo ran >> {data}/ran.b
"""


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LOCAL_HEALTH_TIMEOUT", "nan", "LOCAL_HEALTH_TIMEOUT must be a positive number"),
        ("LOCAL_HEALTH_TIMEOUT", "1e309", "LOCAL_HEALTH_TIMEOUT must be a positive number"),
        ("LOCAL_MAX_PARALLEL", "1.5", "LOCAL_MAX_PARALLEL must be a positive integer"),
        ("LOCAL_MAX_PARALLEL", "0", "LOCAL_MAX_PARALLEL must be a positive integer"),
        ("LOCAL_MAX_PARALLEL", "\u0661", "LOCAL_MAX_PARALLEL must be a positive integer"),
        ("LOCAL_READY_TIMEOUT", "-1", "LOCAL_READY_TIMEOUT must be a positive number"),
        ("LOCAL_CGROUPS", "maybe", "LOCAL_CGROUPS must be one of"),
    ],
)
def test_a_bad_setting_fails_the_run_at_once_with_its_reason(
    akoflow: Akoflow, tmp_path: Path, variable: str, value: str, message: str
) -> None:
    data = tmp_path / "data"
    wf = tmp_path / "wf.yaml"
    wf.write_text(TWO.format(data=data))
    done = akoflow("run", str(wf), "--data-dir", str(data), env=cli_env(**{variable: value}))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "runtime local is misconfigured" in done.stdout and message in done.stdout.replace(
        "\n", " "
    ), done.stdout
    assert not (data / "ran.a").exists() and not (data / "ran.b").exists()
    status = akoflow("status", "1", "--json")
    assert '"failed"' in status.stdout and '"skipped"' in status.stdout


@pytest.mark.parametrize("alpha", ["nan", "abc", "1.5", "-5"])
def test_a_bad_alpha_fails_placed_work_with_its_reason(
    akoflow: Akoflow, tmp_path: Path, alpha: str
) -> None:
    """{NAME}_ALPHA weighs AkôScore: a bad one ended the engine (nan) or became 0.5 (abc)."""
    data = tmp_path / "data"
    wf = tmp_path / "wf.yaml"
    wf.write_text(TWO.format(data=data).replace("spec:\n", "spec:\n  schedule: akoscore\n"))
    done = akoflow("run", str(wf), "--data-dir", str(data), env=cli_env(LOCAL_ALPHA=alpha))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "LOCAL_ALPHA must be" in done.stdout.replace("\n", " "), done.stdout
    assert "internal error" not in done.stdout + done.stderr
    assert not (data / "ran.a").exists()


def test_work_held_longer_than_ready_timeout_fails_with_the_reason(tmp_path: Path) -> None:
    switch = tmp_path / "down"
    switch.touch()  # the backend is down from the start and stays down

    def factory(name: str, events: RuntimeEvents, config: RuntimeConfig | None) -> SwitchableLocal:
        runtime = SwitchableLocal(name, RuntimeConfig(name, {"LOCAL_READY_TIMEOUT": "0.5"}), events)
        runtime.switch = switch
        return runtime

    data = tmp_path / "data"

    async def scenario() -> dict[str, tuple[ActivityState, str | None]]:
        async with engine_with(
            tmp_path, TWO.format(data=data), runtime_factory=factory, health_interval=0.1
        ) as (_, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), 30)
            assert state is WorkflowState.FAILED
            return {a.name: (a.state, a.reason) for a in wf.activities.values()}

    states = asyncio.run(scenario())
    a_state, a_reason = states["a"]
    assert a_state is ActivityState.FAILED
    assert a_reason is not None and a_reason.startswith("runtime local was NOT_READY for ")
    assert "(LOCAL_READY_TIMEOUT=0.5): backend switched off by the test" in a_reason
    assert states["b"][0] is ActivityState.SKIPPED
    assert not (data / "ran.a").exists()
