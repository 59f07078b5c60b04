"""A timeout falling due while a run waits for room under its state dir (hostile pass on the
full-disk hold): the stopped engine's timers must not fire. They did: the old engine's timer
wrote its stop request to the full store from an event-loop callback, and the user saw an
'Exception in callback' traceback per activity while the run was held. The engine that
continues the run arms the activity's timeout again from its recorded start.

The state dir is a real tmpfs (mounted here, as root: CI runs the tests as root); the
activity appends to its own file outside it.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.conftest import flat, running_cli, wait_for
from tests.scenarios import attempt_rows
from tests.tmpfs import fill_space, tmpfs

HELD = "waits until there is room"
TIMEOUT = 2


@pytest.mark.needs_root  # a tmpfs mount
def test_a_timeout_due_while_held_is_enforced_by_the_next_engine(tmp_path: Path) -> None:
    side = tmp_path / "side"
    side.mkdir()
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "name: timeout-held\nspec:\n  activities:\n    - name: slow\n"
        f"      timeout: {TIMEOUT}s\n      run: |\n"
        f"        echo start >> {side}/slow\n"
        f"        trap 'echo stopped >> {side}/slow; exit 143' TERM\n"
        f"        sleep 60 & wait\n"
        f"        echo done >> {side}/slow\n"
    )
    log = tmp_path / "stderr"
    with tmpfs(tmp_path / "small", "size=16m,mode=0700") as mount:
        state = mount / "state"
        fill = mount / "fill"
        with running_cli(["run", str(wf), "--state-dir", str(state)], stderr=log) as proc:
            wait_for(lambda: (side / "slow").exists() or proc.poll() is not None, 60)
            assert proc.poll() is None, log.read_text()
            wait_for(lambda: [s for _, s, _ in attempt_rows(state, "slow")] == ["running"], 60)
            began = time.time()
            fill_space(fill)
            wait_for(lambda: HELD in flat(log.read_text()) or proc.poll() is not None, 60)
            assert proc.poll() is None, log.read_text()
            # Held past the timeout: the stopped engine's timer falls due meanwhile.
            time.sleep(max(0.0, began + TIMEOUT + 1 - time.time()))
            fill.unlink()
            try:
                proc.wait(timeout=120)
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
        text = flat(log.read_text())
        rows = attempt_rows(state, "slow")
    assert "Traceback" not in text and "Exception in callback" not in text, text
    assert proc.returncode == 1, text  # the run failed: its activity timed out
    assert [(s, r) for _, s, r in rows] == [("failed", f"timed out after {TIMEOUT}s")], rows
    assert (side / "slow").read_text().split() == ["start", "stopped"]
