"""A command that leaves at once (a second Ctrl-C or SIGTERM) writes the log lines still
queued for its log handler's thread first: before, os._exit dropped the last lines logged
before it (found by helper h79's hostile pass). The wait lasts while lines are written (a
busy machine writes slowly), and never long without one: a stderr nobody reads still never
holds the exit."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from tests.conftest import cli_env, wait_for
from tests.notify.conftest import query


def run_left_at_once(
    tmp_path: Path,
    lines: int,
    stderr: IO[Any] | int,
    started: Callable[[subprocess.Popen[str]], None] | None = None,
) -> subprocess.Popen[str]:
    """`akoflow run -v` whose run is still cancelling (its activity ignores SIGTERM) when a
    second Ctrl-C leaves at once, logging ``lines`` lines as it leaves: the process, left.
    ``started`` is called with the process as soon as it runs."""
    state, go = tmp_path / "state", tmp_path / "go"
    wf = tmp_path / "w.yaml"
    wf.write_text(
        "name: w\nspec:\n  activities:\n    - name: s\n      run: |\n        trap '' TERM\n"
        f"        for i in $(seq 1200); do [ -e '{go}' ] && break; sleep 0.05; done\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.logged_as_it_leaves", str(lines), "run", str(wf)]
        + ["-v", "--state-dir", str(state)],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
        env=cli_env(),
    )
    if started is not None:
        started(proc)
    try:
        wait_for(lambda: (state / "runs" / "1-w" / "attempts" / "s.1.exit").exists(), timeout=60)
        proc.send_signal(signal.SIGINT)
        # Its cancel is recorded (read from the store: stderr may be a pipe nobody reads).
        wait_for(
            lambda: [r["cancel_requested"] for r in query(state, "SELECT * FROM workflows")] == [1]
        )
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)  # it leaves (a hang fails here)
    finally:
        go.touch()  # the activity that outlived the command ends
        if proc.poll() is None:  # failed: not left running
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    return proc


def test_the_lines_logged_as_the_command_leaves_reach_stderr(tmp_path: Path) -> None:
    with (tmp_path / "stderr").open("w") as sink:
        run_left_at_once(tmp_path, 3, sink)
    err = (tmp_path / "stderr").read_text()
    assert "Traceback" not in err, err
    assert {int(n) for n in re.findall(r"line (\d+) of 3, logged as", err)} == {0, 1, 2}, err


def test_a_stderr_nobody_reads_does_not_hold_the_exit(tmp_path: Path) -> None:
    # ~300 KB logged as it leaves: several times a pipe's buffer, never read until it left.
    proc = run_left_at_once(tmp_path, 3000, subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    assert "Traceback" not in err
    assert "cancelling" in err


def test_lines_written_slowly_are_all_written_before_the_exit(tmp_path: Path) -> None:
    """A reader slower than the handler's thread (a loaded machine, a slow terminal): 1,000
    lines, several pipe buffers, read a bufferful at a time with 0.2 s pauses, so that
    writing them all takes about a second. A fixed 0.5 s wait left most of them unwritten
    (as the clean-clone CI saw, with 3 lines, on a machine busy with a hostile pass); the
    exit waits as long as lines are written, and a pause under LEAVE_STALL is no stall."""
    read: list[str] = []

    def slow_reader(stream: IO[str]) -> None:
        fd = stream.fileno()
        while chunk := os.read(fd, 1 << 16):
            read.append(chunk.decode(errors="replace"))
            time.sleep(0.2)

    readers: list[threading.Thread] = []

    def reading(proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        thread = threading.Thread(target=slow_reader, args=(proc.stderr,), daemon=True)
        thread.start()
        readers.append(thread)

    proc = run_left_at_once(tmp_path, 1000, subprocess.PIPE, started=reading)
    readers[0].join(timeout=60)
    assert proc.stderr is not None
    proc.stderr.close()
    err = "".join(read)
    assert "Traceback" not in err
    found = {int(n) for n in re.findall(r"line (\d+) of 1000, logged as", err)}
    assert found == set(range(1000)), f"{len(found)} of 1000 lines written"
    assert proc.returncode == 1
