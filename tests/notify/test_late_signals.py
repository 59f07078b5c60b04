"""A Ctrl-C or SIGTERM after a run's outcome is decided changes nothing of it.

The engine's stop waits (bounded) for the ended run's webhook: a receiver that never answers
holds `akoflow run` there, after the run is stored succeeded, for as long as the test needs.
Before, the signal handlers were gone by then: the first Ctrl-C raised KeyboardInterrupt
and a succeeded run's command exited 130 (a `run && next` pipeline stopped)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.notify.conftest import env, hook, query, workflow
from tests.notify.receiver import HANG, Receiver

NOTE = "stopping the engine (Ctrl-C again to leave now)"


def held_at_stop(tmp_path: Path, receiver: Receiver) -> tuple[subprocess.Popen[str], Path]:
    """`akoflow run` of a succeeded run, waiting in its engine's stop for its webhook (its
    stderr in tmp_path/stderr, to read while it runs)."""
    state = tmp_path / "state"
    wf = workflow(
        tmp_path / "late.yaml", hook(receiver.url(), events=["workflow.succeeded"]), ("a", "true")
    )
    environ = env(AKOFLOW_NOTIFY_TIMEOUT="120", AKOFLOW_NOTIFY_WAIT="120")
    with (tmp_path / "stderr").open("w") as stderr:
        proc = subprocess.Popen(
            # --quiet: no summary to print, so the stop begins before the webhook can be
            # received (a signal during a summary is the run's own: it cancels nothing).
            [sys.executable, "-m", "akoflow", "run", str(wf), "--quiet", "--state-dir", str(state)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=environ,
        )
    # The run ended: its webhook is in flight.
    wait_for(lambda: receiver.all() or proc.poll() is not None, timeout=60)
    assert receiver.all(), (tmp_path / "stderr").read_text()
    assert [r["state"] for r in query(state, "SELECT state FROM workflows")] == ["succeeded"]
    assert proc.poll() is None, "the engine's stop waits for the webhook"
    return proc, state


def signalled_at_stop(tmp_path: Path, first: list[signal.Signals], second: signal.Signals) -> str:
    """`first` signals while the engine stops, then (once it said it is stopping) `second`:
    the command's stderr, once it checked it left with the run's exit code."""
    receiver = Receiver([HANG])
    proc = None
    try:
        proc, state = held_at_stop(tmp_path, receiver)
        for sig in first:
            proc.send_signal(sig)
        # The first Ctrl-C or SIGTERM says what it waits for, and waits; a second leaves now.
        wait_for(lambda: NOTE in (tmp_path / "stderr").read_text())
        assert proc.poll() is None
        proc.send_signal(second)
        proc.communicate(timeout=60)
    finally:
        if proc is not None and proc.poll() is None:  # failed: not left running
            proc.kill()
            proc.communicate()
        receiver.close()
    err = (tmp_path / "stderr").read_text()
    assert proc.returncode == 0, err
    assert [r["state"] for r in query(state, "SELECT state FROM workflows")] == ["succeeded"]
    return err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_engine_stops_keeps_the_runs_exit_code(
    tmp_path: Path, sig: signal.Signals
) -> None:
    assert "Traceback" not in signalled_at_stop(tmp_path, [sig], sig)


def test_a_closed_terminal_while_the_engine_stops_keeps_the_runs_exit_code(
    tmp_path: Path,
) -> None:
    # Nothing is left to cancel: the stop goes on.
    err = signalled_at_stop(tmp_path, [signal.SIGHUP, signal.SIGINT], signal.SIGINT)
    assert "cancelling" not in err
