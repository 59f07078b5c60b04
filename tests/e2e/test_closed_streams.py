"""`akoflow` started with stdin, stdout or stderr closed (`>&-`, a careless cron line or
service unit): the run is run once and reported as it ended, with no traceback, and no file
the engine opens takes a standard stream's number.

Found by a hostile pass: with stdout closed a run that succeeded exited 1 with a traceback
(sys.stdout None at the last flush); without --quiet it died of a RecursionError before
running anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env, wait_for

WORKFLOW = """\
name: closed
spec:
  activities:
    - name: a
      run: echo once >> side-a; echo out; echo err >&2
    - name: b
      dependsOn: [a]
      run: echo once >> side-b; exit {code}
"""


def closed_run(closing: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``akoflow ARGS`` with the streams ``closing`` closes (bash's syntax) closed."""
    return subprocess.run(
        ["bash", "-c", f'exec "$@" {closing}', "bash", sys.executable, "-m", "akoflow", *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )


@pytest.mark.parametrize("closing", [">&-", "2>&-", "<&- >&-", "<&- >&- 2>&-"])
@pytest.mark.parametrize("quiet", [True, False])
@pytest.mark.parametrize("code", [0, 3])
def test_a_run_with_closed_streams_is_run_once_and_reported_as_it_ended(
    tmp_path: Path, closing: str, quiet: bool, code: int
) -> None:
    wf, state = tmp_path / "wf.yaml", tmp_path / "state"
    wf.write_text(WORKFLOW.format(code=code))
    args = ["run", str(wf), "--state-dir", str(state), *(["--quiet"] if quiet else [])]
    done = closed_run(closing, *args)
    assert done.returncode == (0 if code == 0 else 1), done.stderr
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr
    data = next((state / "runs").glob("*/data"))
    assert (data / "side-a").read_text() == "once\n"
    assert (data / "side-b").read_text() == "once\n"
    status = subprocess.run(
        [sys.executable, "-m", "akoflow", "status", "1", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert status.returncode == 0, status.stderr  # the store is whole
    assert ("succeeded" if code == 0 else "failed") in status.stdout


def test_version_with_stdout_closed_exits_0() -> None:
    done = closed_run(">&-", "--version")
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_the_engine_holds_dev_null_on_the_closed_streams_numbers(tmp_path: Path) -> None:
    """Whatever the engine opened (the store, its logs, sockets), 0, 1 and 2 are /dev/null."""
    wf, state, release = tmp_path / "wf.yaml", tmp_path / "state", tmp_path / "release"
    wf.write_text(
        "name: fds\nspec:\n  activities:\n    - name: a\n"
        f"      run: touch started; while [ ! -e {release} ]; do sleep 0.05; done\n"
    )
    argv = [sys.executable, "-m", "akoflow", "run", str(wf), "--state-dir", str(state), "-q"]
    engine = subprocess.Popen(
        ["bash", "-c", 'exec "$@" <&- >&- 2>&-', "bash", *argv], env=cli_env()
    )
    try:
        wait_for(lambda: list((state / "runs").glob("*/data/started")), 60)
        held = [os.readlink(f"/proc/{engine.pid}/fd/{fd}") for fd in (0, 1, 2)]
        assert held == [os.devnull] * 3
    finally:
        release.touch()
        assert engine.wait(60) == 0


@pytest.mark.parametrize("args", [["run", "--json"], ["run"], ["status", "1", "--json"]])
def test_output_a_full_disk_refused_is_said_on_stderr(tmp_path: Path, args: list[str]) -> None:
    """stdout a file on a full disk (here /dev/full): the run goes on and its exit code is
    its outcome as before, but the command says on stderr that its output is incomplete.
    Before, `run --json` or `status --json` into a full disk left a cut document and exit
    code 0 with nothing said (found by a hostile pass, h89)."""
    wf, state = tmp_path / "wf.yaml", tmp_path / "state"
    wf.write_text(WORKFLOW.format(code=0))
    if args[0] == "status":
        first = subprocess.run(
            [sys.executable, "-m", "akoflow", "run", str(wf), "--state-dir", str(state), "-q"],
            env=cli_env(),
            timeout=120,
        )
        assert first.returncode == 0
    argv = [*args[:1], *([str(wf)] if args[0] == "run" else []), *args[1:]]
    done = closed_run("> /dev/full", *argv, "--state-dir", str(state))
    assert done.returncode == 0, done.stderr
    assert "output is incomplete" in done.stderr and "No space left" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    data = next((state / "runs").glob("*/data"))
    assert (data / "side-a").read_text() == "once\n"
