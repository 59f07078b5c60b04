"""The local spawner's records of ends, under scripts that tamper with their own record (hostile
pass on 70bfd97: an end is written over the claim in place). The script knows its record's
path ($AKOFLOW_ATTEMPT_FILES.exit). Real workflows through the CLI; an engine or spawner that
hangs is killed at the end of the test, which then fails."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import cli_env, wait_for
from tests.scenarios import attempt_rows
from tests.tmpfs import tmpfs

HANG_LIMIT = 60.0  # s: far beyond these few short activities; reached only by a hang

# The record replaced by a FIFO: opening it to write the end waited for a reader forever,
# and with it every later end that spawner had to record (and the engine for them).
FIFO_RECORD = 'rm -f "$AKOFLOW_ATTEMPT_FILES.exit"; mkfifo "$AKOFLOW_ATTEMPT_FILES.exit"'


def workflow(path: Path, tamper: str) -> None:
    lines = ["name: records", "spec:", "  activities:", "    - name: tamper", "      run: |"]
    lines += [f"        {line}" for line in tamper.splitlines()]
    for i in range(4):  # siblings on both spawners, ending after the tamperer
        lines += [f"    - name: s{i}", f"      run: sleep 0.5; echo once >> s{i}"]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    """CLI processes the test starts; whatever is left of them (and of their spawners) is
    killed at its end."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        kill_spawners(proc)
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def spawners_of(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    try:
        return psutil.Process(proc.pid).children()
    except psutil.NoSuchProcess:
        return []


def kill_spawners(proc: subprocess.Popen[str], found: list[psutil.Process] | None = None) -> None:
    for child in spawners_of(proc) if found is None else found:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_cli(started: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
    """The CLI started in the background (the fixture kills what is left of it)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "akoflow", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    started.append(proc)
    return proc


def start_run(
    started: list[subprocess.Popen[str]], wf: Path, state: Path, data: Path
) -> subprocess.Popen[str]:
    return start_cli(
        started, "run", str(wf), "--state-dir", str(state), "--data-dir", str(data), "-q"
    )


def cli(started: list[subprocess.Popen[str]], *args: str) -> tuple[int | None, str]:
    """Run the CLI to its end (None: still running after HANG_LIMIT, left to the fixture)."""
    proc = start_cli(started, *args)
    try:
        out, err = proc.communicate(timeout=HANG_LIMIT)
    except subprocess.TimeoutExpired:
        return None, ""
    return proc.returncode, out + err


def states(state: Path) -> dict[str, tuple[str, int | None]]:
    return {name: (a["state"], a["exit_code"]) for name, a in activities(state).items()}


def activities(state: Path) -> dict[str, dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "akoflow", "status", "1", "--json", "--all"]
        + ["--state-dir", str(state)],
        capture_output=True,
        text=True,
        env=cli_env(),
        check=True,
    )
    return {a["name"]: a for a in json.loads(done.stdout)["activities"]}


def test_a_fifo_put_over_its_record_hangs_no_spawner(
    tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    workflow(tmp_path / "wf.yaml", FIFO_RECORD)
    (tmp_path / "data").mkdir()
    state = tmp_path / "state"
    code, output = cli(
        started,
        "run",
        str(tmp_path / "wf.yaml"),
        "--state-dir",
        str(state),
        "--data-dir",
        str(tmp_path / "data"),
        "-q",
    )
    assert code is not None, "the run hung on the FIFO"
    assert code == 0, output
    # Its end reached the engine (its exit code, 0, from the spawner's message).
    assert states(state) == {
        "tamper": ("succeeded", 0),
        **{f"s{i}": ("succeeded", 0) for i in range(4)},
    }
    for i in range(4):
        assert (tmp_path / "data" / f"s{i}").read_text() == "once\n"


def test_a_fifo_put_over_its_record_hangs_no_resume(
    tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    # The engine and its spawners are killed while the tamperer runs: no one records its
    # end (the FIFO is no record anyway); the resumed engine opened the FIFO to read it and
    # waited for a writer forever.
    workflow(tmp_path / "wf.yaml", f"{FIFO_RECORD}\ntouch tampered\nsleep 1")
    data = tmp_path / "data"
    data.mkdir()
    state = tmp_path / "state"
    engine = start_run(started, tmp_path / "wf.yaml", state, data)
    wait_for(lambda: (data / "tampered").exists())
    kill_spawners(engine)
    engine.send_signal(signal.SIGKILL)
    engine.communicate()
    code, output = cli(started, "resume", "1", "--state-dir", str(state), "-q")
    assert code is not None, "the resume hung on the FIFO"
    found = states(state)
    # Its exit code is lost: a failure, never a success. Its siblings lost their spawner:
    # each ran at most once, and none succeeded without its line.
    assert found["tamper"] == ("failed", None), output
    for i in range(4):
        lines = (data / f"s{i}").read_text() if (data / f"s{i}").exists() else ""
        assert lines in ("", "once\n")
        assert found[f"s{i}"][0] != "succeeded" or lines == "once\n"


# Two attempts run (one on each spawner) while a third fills the file system that holds the
# attempts' files (bounded: it is a small tmpfs); two more are then started. Each spawner's
# claim of one of those could not be written: the spawner died of it, and the two running
# attempts, healthy, were stopped and counted lost.
FULL_DISK = """name: full
spec:
  activities:
    - name: long0
      run: touch started0; while [ ! -e go ]; do sleep 0.05; done; echo once >> long0
    - name: long1
      run: touch started1; while [ ! -e go ]; do sleep 0.05; done; echo once >> long1
    - name: filler
      run: |
        while [ ! -e started0 ] || [ ! -e started1 ]; do sleep 0.05; done
        head -c 4194304 /dev/zero > "$(dirname "$AKOFLOW_ATTEMPT_FILES")/fill" 2>/dev/null
        touch filled
    - name: after0
      run: echo once >> after0
      dependsOn: [filler]
    - name: after1
      run: echo once >> after1
      dependsOn: [filler]
"""


@pytest.fixture
def small_runs_dir(tmp_path: Path) -> Iterator[Path]:
    """A state dir whose runs (the attempts' files) are on a 512 KiB tmpfs; the database is
    not (its own full disk is another matter). Room enough, once freed, for the runtime's
    probe of a start (64 KiB and three more files): on 64 KiB it only passed while the
    probe took a short write for room."""
    state = tmp_path / "state"
    with tmpfs(state / "runs", "size=512k"):
        state.chmod(0o700)
        yield state


@pytest.mark.needs_root  # a tmpfs mount
def test_a_full_disk_holds_the_attempts_it_cannot_claim_and_no_other(
    tmp_path: Path, small_runs_dir: Path, started: list[subprocess.Popen[str]]
) -> None:
    (tmp_path / "wf.yaml").write_text(FULL_DISK)
    data = tmp_path / "data"
    data.mkdir()
    state = small_runs_dir
    engine = start_run(started, tmp_path / "wf.yaml", state, data)
    wait_for(lambda: (data / "filled").exists())

    # Both claims were refused before the running ones may end: lost, no retry spent (they
    # have none), and they wait for room instead of failing the run.
    def held(i: int) -> bool:
        return [row[:2] for row in attempt_rows(state, f"after{i}")] == [(1, "lost")]

    wait_for(lambda: held(0) and held(1))
    for i in range(2):  # each says why, in its own words
        reason = str(attempt_rows(state, f"after{i}")[0][2])
        assert reason.startswith("cannot claim attempt ") and "No space left" in reason
    assert engine.poll() is None
    assert not (data / "after0").exists() and not (data / "after1").exists()
    for fill in (state / "runs").glob("*/attempts/fill"):
        fill.unlink()  # room again
    (data / "go").touch()
    try:
        out, err = engine.communicate(timeout=HANG_LIMIT)
    except subprocess.TimeoutExpired:
        pytest.fail("the run hung")
    found = states(state)
    assert found["long0"] == found["long1"] == ("succeeded", 0), err
    assert (data / "long0").read_text() == (data / "long1").read_text() == "once\n"
    assert found["after0"] == found["after1"] == ("succeeded", 0), err
    assert (data / "after0").read_text() == (data / "after1").read_text() == "once\n"
    for i in range(2):
        assert [r[:2] for r in attempt_rows(state, f"after{i}")] == [(1, "lost"), (2, "succeeded")]
    assert "Traceback" not in out + err


def test_a_record_removed_by_its_script_is_written_again_at_its_end(
    tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    # The end was written over the claim in place: with the claim removed, nothing was
    # written, and the engine resumed after it had ended claimed the attempt as never started
    # and ran it again (its line twice).
    script = 'rm -f "$AKOFLOW_ATTEMPT_FILES.exit"\ntouch removed\nsleep 1\necho once >> ran'
    (tmp_path / "wf.yaml").write_text(
        "name: removed\nspec:\n  activities:\n    - name: remover\n      run: |\n"
        + "".join(f"        {line}\n" for line in script.splitlines())
    )
    data = tmp_path / "data"
    data.mkdir()
    state = tmp_path / "state"
    engine = start_run(started, tmp_path / "wf.yaml", state, data)
    wait_for(lambda: (data / "removed").exists())
    spawners = spawners_of(engine)
    engine.send_signal(signal.SIGKILL)
    engine.communicate()
    wait_for(lambda: not any(map(alive, spawners)))  # it ended, its end recorded
    code, output = cli(started, "resume", "1", "--state-dir", str(state), "-q")
    assert code == 0, output
    assert (data / "ran").read_text() == "once\n"
    assert activities(state)["remover"]["attempts"] == 1
    assert states(state)["remover"] == ("succeeded", 0)
