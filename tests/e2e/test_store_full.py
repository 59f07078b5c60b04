"""A full disk under the state database does not end `akoflow run`: the engine stops (its
memory and its store would part), the command says why and waits, the running activities go
on, and once there is room a new engine continues the run, adopting what ran meanwhile.
Nothing runs twice, nothing is reported done that was not.

The state dir is a real tmpfs (mounted here, as root: CI runs the tests as root), filled with
one file while the activities run; each activity appends a line to its own file outside it.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import cli_env, flat, running_cli, wait_for
from tests.scenarios import attempt_rows
from tests.tmpfs import fill_space, tmpfs

WIDTH = 60
HELD = "waits until there is room"


@pytest.fixture
def small_state(tmp_path: Path) -> Iterator[Path]:
    """A state dir alone on a 16 MiB tmpfs."""
    with tmpfs(tmp_path / "small", "size=16m,mode=0700") as mount:
        yield mount / "state"


def _workflow(tmp_path: Path, side: Path) -> Path:
    side.mkdir()
    lines = ["name: store-full", "spec:", "  activities:"]
    for i in range(WIDTH):
        lines += [f"    - name: a{i}", f"      run: 'sleep 0.1; echo $$ >> {side}/a{i}'"]
    lines += [
        "    - name: join",
        f"      run: 'echo $$ >> {side}/join'",
        "      dependsOn: [" + ", ".join(f"a{i}" for i in range(WIDTH)) + "]",
    ]
    path = tmp_path / "wf.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def _held(tmp_path: Path, state: Path) -> Iterator[tuple[subprocess.Popen[str], Path, Path, Path]]:
    """`akoflow run` of the workflow, the state dir's disk filled once a few activities ran,
    and the command saying it holds the run: the process, the side-effect dir, its stderr
    and the fill."""
    side = tmp_path / "side"
    wf = _workflow(tmp_path, side)
    log = tmp_path / "stderr"
    with running_cli(["run", str(wf), "--state-dir", str(state)], stderr=log) as proc:
        wait_for(lambda: len(list(side.iterdir())) >= 5 or proc.poll() is not None, 60)
        assert proc.poll() is None, log.read_text()
        fill = state.parent / "fill"
        fill_space(fill)
        wait_for(lambda: HELD in flat(log.read_text()) or proc.poll() is not None, 60)
        assert proc.poll() is None, log.read_text()
        yield proc, side, log, fill


def _cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "akoflow", *args, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
        check=False,
    )


def _each_once(side: Path) -> None:
    names = sorted(p.name for p in side.iterdir())
    assert len(names) == WIDTH + 1, names
    for path in side.iterdir():
        assert path.read_text().count("\n") == 1, path  # ran once


@pytest.mark.needs_root  # a tmpfs mount
def test_a_full_store_holds_the_run_until_there_is_room(tmp_path: Path, small_state: Path) -> None:
    with _held(tmp_path, small_state) as (proc, side, log, fill):
        time.sleep(2)  # it waits: no exit, no error, while the disk stays full
        assert proc.poll() is None, log.read_text()
        fill.unlink()
        proc.wait(timeout=120)
    text = flat(log.read_text())
    assert proc.returncode == 0, text
    assert "no room left under the state dir" in text, text
    assert "room again under the state dir: run 1 goes on" in text, text
    assert "Traceback" not in text, text  # a full disk is no internal error
    _each_once(side)
    assert [s for _, s, _ in attempt_rows(small_state, "join")] == ["succeeded"]


@pytest.mark.needs_root  # a tmpfs mount
def test_ctrl_c_while_held_leaves_the_run_for_resume(tmp_path: Path, small_state: Path) -> None:
    with _held(tmp_path, small_state) as (proc, side, log, fill):
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)  # at once: no engine runs, nothing to cancel
    text = flat(log.read_text())
    assert proc.returncode == 1, text
    assert "run 1 is interrupted, not lost" in text, text
    fill.unlink()
    resumed = _cli(small_state, "resume", "1")
    assert resumed.returncode == 0, resumed.stderr
    _each_once(side)


@pytest.mark.needs_root  # a tmpfs mount
def test_a_store_that_cannot_even_be_opened_says_the_disk_is_full(
    tmp_path: Path, small_state: Path
) -> None:
    # With no engine running, SQLite needs room to open the database (its index file): on a
    # full disk every command failed with a bare "disk I/O error".
    side = tmp_path / "side"
    wf = _workflow(tmp_path, side)
    ran = _cli(small_state, "run", str(wf), "--quiet")
    assert ran.returncode == 0, ran.stderr
    fill_space(small_state.parent / "fill")
    for command in (["status"], ["delete", "1"], ["gc", "--keep-last", "0"]):
        res = _cli(small_state, *command)
        assert res.returncode == 2, (command, res.stdout, res.stderr)
        assert "no room left on its disk" in flat(res.stderr), (command, res.stderr)
    (small_state.parent / "fill").unlink()
    res = _cli(small_state, "delete", "1")
    assert res.returncode == 0, res.stderr  # room again: the store is whole
