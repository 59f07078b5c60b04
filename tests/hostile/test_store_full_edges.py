"""A full disk under the state database at the edges of a run's hold (hostile pass on
6a84884): before the engine first attaches the run, and when the user cancels (Ctrl-C) before
the engine noticed. Either way the run is held until there is room, never ended with a
traceback or an error that leaves it half-claimed.

The state dir is a real tmpfs (mounted here, as root: CI runs the tests as root); each
activity appends a line to its own file outside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from akoflow import service
from akoflow.cli.attached import AttachedRun
from tests.conftest import flat, running_cli, wait_for
from tests.scenarios import attempt_rows
from tests.tmpfs import fill_space, tmpfs

HELD = "waits until there is room"


@pytest.fixture
def small_state(tmp_path: Path) -> Iterator[Path]:
    """A state dir alone on a 16 MiB tmpfs."""
    with tmpfs(tmp_path / "small", "size=16m,mode=0700") as mount:
        yield mount / "state"


def _workflow_state(state: Path, wf_id: int) -> tuple[str, int]:
    uri = f"file:{state / 'akoflow.db'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        row = db.execute(
            "SELECT state, cancel_requested FROM workflows WHERE id = ?", (wf_id,)
        ).fetchone()
    return str(row[0]), int(row[1])


@pytest.mark.needs_root  # a tmpfs mount
def test_a_store_full_before_the_first_attach_holds_the_run(
    tmp_path: Path, small_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The disk filled between `akoflow run` storing (claiming) the run and its engine taking
    # it: the command ended with "the state database cannot be used" (exit 2, as if nothing
    # was stored), the run left pending under a dead owner.
    side = tmp_path / "side"
    side.mkdir()
    lines = ["name: first-attach", "spec:", "  activities:"]
    for i in range(5):
        lines += [f"    - name: a{i}", f"      run: 'echo $$ >> {side}/a{i}'"]
    repo = service.open_repository(small_state)
    prepared = service.validate_text("\n".join(lines) + "\n", "wf.yaml")
    claim = service.claim_run(repo, small_state, prepared)
    fill = small_state.parent / "fill"
    fill_space(fill)
    seen: list[str] = []

    async def free_once_held() -> None:
        while HELD not in flat("".join(seen)):
            seen.append(capsys.readouterr().err)
            await asyncio.sleep(0.05)
        fill.unlink()

    async def main() -> int:
        freeing = asyncio.ensure_future(free_once_held())
        try:
            return await AttachedRun(
                repo, small_state, [claim.wf_id], quiet=True, as_json=False
            ).run()
        finally:
            freeing.cancel()

    try:
        code = asyncio.run(main())
    finally:
        repo.close()
        fill.unlink(missing_ok=True)
    text = flat("".join(seen) + capsys.readouterr().err)
    assert code == 0, text
    assert HELD in text, text
    assert "Traceback" not in text, text
    assert _workflow_state(small_state, claim.wf_id)[0] == "succeeded"
    assert sorted(p.name for p in side.iterdir()) == [f"a{i}" for i in range(5)]
    for path in side.iterdir():
        assert path.read_text().count("\n") == 1, path  # ran once


@pytest.mark.needs_root  # a tmpfs mount
def test_ctrl_c_on_a_full_store_holds_then_cancels(tmp_path: Path, small_state: Path) -> None:
    # Ctrl-C while the disk is full, before the engine wrote (and failed): the cancel's own
    # write raised in the signal handler (a traceback), the "cancelling" line never came, and
    # the running activities were never stopped (they ran on; the run ended 'cancelled' with
    # every activity 'succeeded').
    side = tmp_path / "side"
    side.mkdir()
    go = tmp_path / "go"
    lines = ["name: ctrl-c-full", "spec:", "  activities:"]
    for i in range(2):
        lines += [
            f"    - name: a{i}",
            f"      run: 'touch {side}/started-a{i}; while [ ! -e {go} ]; do sleep 0.1; done; "
            f"echo $$ >> {side}/a{i}'",
        ]
    wf = tmp_path / "wf.yaml"
    wf.write_text("\n".join(lines) + "\n")
    log = tmp_path / "stderr"
    fill = small_state.parent / "fill"
    try:
        with running_cli(["run", str(wf), "--state-dir", str(small_state)], stderr=log) as proc:
            wait_for(
                lambda: (
                    all((side / f"started-a{i}").exists() for i in range(2))
                    or proc.poll() is not None
                ),
                60,
            )
            assert proc.poll() is None, log.read_text()
            wait_for(lambda: all(s == ["running"] for s in _attempt_states(small_state)), 60)
            fill_space(fill)
            proc.send_signal(signal.SIGINT)
            wait_for(lambda: HELD in flat(log.read_text()) or proc.poll() is not None, 60)
            assert proc.poll() is None, log.read_text()
            fill.unlink()
            proc.wait(timeout=120)  # room again: the new engine stops them, the run ends
    finally:
        go.touch()  # activities never stopped must not outlive the test
    text = flat(log.read_text())
    assert proc.returncode == 1, text
    assert "Traceback" not in text, text
    assert "cancelling" in text, text
    assert _workflow_state(small_state, 1) == ("cancelled", 1)
    assert not (side / "a0").exists() and not (side / "a1").exists()  # stopped, not run on
    assert [s for _, s, _ in attempt_rows(small_state, "a0")] == ["cancelled"]


def _attempt_states(state: Path) -> list[list[str]]:
    return [[s for _, s, _ in attempt_rows(state, f"a{i}")] for i in range(2)]
