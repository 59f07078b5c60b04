"""The CLI under careless or hostile use: runs started at the same instant, a terminal that
closes, odd arguments, damaged state, unbounded files and file modes. Every refusal is one clear
line on stderr (exit 2, never a traceback) and stores nothing."""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.conftest import Akoflow, cli_env, wait_for

BIG = str(2**64)  # above SQLite's integers

# Each activity appends its name to `ledger`: the lines are what really ran. `first` waits
# for `release`, so the test decides when the run may end.
GATED = """name: once
spec:
  activities:
    - name: first
      run: |
        echo first >> ledger
        while [ ! -e {release} ]; do sleep 0.05; done
    - name: second
      dependsOn: [first]
      run: echo second >> ledger
"""

# Waits on a pipe the test writes to once every process is started, then becomes the CLI: the
# processes leave the barrier together instead of one fork apart.
BARRIER = (
    "import os, sys; fd = int(sys.argv[1]); os.read(fd, 1); os.close(fd); "
    "os.execv(sys.executable, [sys.executable, '-m', 'akoflow', *sys.argv[2:]])"
)


def start_together(argvs: list[list[str]]) -> list[subprocess.Popen[str]]:
    gate_r, gate_w = os.pipe()
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", BARRIER, str(gate_r), *argv],
                pass_fds=(gate_r,),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=cli_env(),
            )
            for argv in argvs
        ]
        os.write(gate_w, b"x" * len(procs))
    finally:
        os.close(gate_r)
        os.close(gate_w)
    return procs


def stop_all(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_clean_refusal(res: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    for fragment in fragments:
        assert fragment in res.stderr, (fragment, res.stderr)


def workflow_rows(state: Path) -> list[tuple[int, int | None]]:
    with sqlite3.connect(state / "akoflow.db") as db:
        return list(db.execute("SELECT id, owner_pid FROM workflows ORDER BY id"))


# ------------------------------------------------------------------ runs started at once


def finish_gated(
    procs: list[subprocess.Popen[str]], release: Path, started: Callable[[], int]
) -> list[tuple[subprocess.Popen[str], str, str]]:
    """Once every process has been refused or has started its gated first activity, open
    the gate and collect them all (the gate opens also on failure: attempts outlive a killed
    engine, and none may be left waiting forever)."""
    try:
        wait_for(lambda: sum(p.poll() is not None for p in procs) + started() >= len(procs), 60)
        release.touch()
        return [(p, *p.communicate(timeout=60)) for p in procs]
    finally:
        release.touch()
        stop_all(procs)


@pytest.mark.parametrize("trial", range(3))
def test_runs_of_one_file_started_at_once_make_one_run(tmp_path: Path, trial: int) -> None:
    state, data, release = tmp_path / "state", tmp_path / "data", tmp_path / "release"
    wf = tmp_path / "once.yaml"
    wf.write_text(GATED.format(release=release))
    argv = ["run", str(wf), "--quiet", "--state-dir", str(state), "--data-dir", str(data)]
    procs = start_together([argv] * 4)

    def first_lines() -> int:
        return (data / "ledger").read_text().count("first") if (data / "ledger").exists() else 0

    # Each process has either been refused or started `first` (once, unless it ran twice).
    results = finish_gated(procs, release, first_lines)
    winners = [p for p, _, _ in results if p.returncode == 0]
    assert len(winners) == 1, [(p.returncode, e) for p, _, e in results]
    for p, _, err in results:
        assert "Traceback" not in err, err
        if p is not winners[0]:
            assert p.returncode == 1, err
            assert f"workflow 1 (once) is being run by process {winners[0].pid}" in err, err
    assert (data / "ledger").read_text() == "first\nsecond\n"  # each activity ran once
    assert [wf_id for wf_id, _ in workflow_rows(state)] == [1]


def test_new_and_plain_runs_started_at_once_never_share_a_run(tmp_path: Path) -> None:
    """`--new` always makes its own run; a plain `run` either makes one or is refused by the
    live owner of the newest: every run is run by exactly one process, each activity once."""
    state, release = tmp_path / "state", tmp_path / "release"
    wf = tmp_path / "once.yaml"
    wf.write_text(GATED.format(release=release))
    base = ["run", str(wf), "--quiet", "--state-dir", str(state)]
    procs = start_together([[*base, "--new"], base, [*base, "--new"], base])

    def first_lines() -> int:
        return sum(p.read_text().count("first") for p in (state / "runs").glob("*/data/ledger"))

    # Each process has either been refused or started the first activity of its run.
    results = finish_gated(procs, release, first_lines)
    ran = [p for p, _, _ in results if p.returncode == 0]
    assert len(ran) >= 2  # both --new runs
    for p, _, err in results:
        assert "Traceback" not in err, err
        if p.returncode != 0:
            assert p.returncode == 1 and "is being run by process" in err, err
    rows = workflow_rows(state)
    assert len(rows) == len(ran)
    ledgers = sorted((state / "runs").glob("*/data/ledger"))
    assert len(ledgers) == len(ran)
    for ledger in ledgers:
        assert ledger.read_text() == "first\nsecond\n", ledger


# ------------------------------------------------------------------- terminal going away


def test_closing_the_terminal_cancels_the_run(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """`akoflow run` on a terminal that closes (the kernel's SIGHUP, then EIO on every write
    of the live view) cancels the run as Ctrl-C does: stored CANCELLED, activities stopped."""
    import fcntl
    import termios

    wf = tmp_path / "long.yaml"
    wf.write_text(
        "name: long\nspec:\n  activities:\n"
        "    - name: sleeper\n      run: |\n        echo $$ > shell.pid\n"
        "        sleep 60 &\n        echo $! > child.pid\n        wait\n"
        "    - name: after\n      dependsOn: [sleeper]\n      run: echo never > never.txt\n"
    )
    data = tmp_path / "data"
    master, slave = os.openpty()

    def take_terminal() -> None:  # in the child, after setsid: the pty is its terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [sys.executable, "-m", "akoflow", "run", str(wf), "--state-dir", str(state_dir)]
        + ["--data-dir", str(data)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=take_terminal,
        env=cli_env(TERM="xterm"),
    )
    os.close(slave)
    stop = threading.Event()

    def drain() -> None:  # what a terminal emulator does: read what is drawn
        while not stop.is_set():
            if select.select([master], [], [], 0.1)[0]:
                try:
                    os.read(master, 65536)
                except OSError:
                    return

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        wait_for(lambda: (data / "child.pid").exists() and (data / "child.pid").read_text())
        shell, child = int((data / "shell.pid").read_text()), int((data / "child.pid").read_text())
    finally:
        stop.set()
        reader.join()
        os.close(master)  # the terminal window closes
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1  # cancelled: not killed by the signal (-1)

    def gone(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(lambda: gone(shell) and gone(child), timeout=10)  # the whole process group
    doc = json.loads(akoflow("status", "1", "--json").stdout)
    assert doc["workflow"]["state"] == "cancelled"
    assert {a["name"]: a["state"] for a in doc["activities"]} == {
        "sleeper": "cancelled",
        "after": "cancelled",
    }
    assert not (data / "never.txt").exists()


def test_a_reader_that_goes_away_does_not_stop_the_run(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """`akoflow run wf.yaml | head -1`: output ends at the closed pipe, the run goes on."""
    wf = tmp_path / "w.yaml"
    wf.write_text(
        "name: piped\nspec:\n  activities:\n"
        + "".join(f"    - name: a{i}\n      run: echo run >> count.a{i}\n" for i in range(4))
    )
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "akoflow", "run", str(wf), "--state-dir", str(state_dir)]
        + ["--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader left before anything was written
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert proc.returncode == 0, err
    doc = json.loads(akoflow("status", "1", "--json").stdout)
    assert doc["workflow"]["state"] == "succeeded"
    assert {p.name: p.read_text() for p in data.glob("count.*")} == {
        f"count.a{i}": "run\n" for i in range(4)
    }
    for args in (["status", "1", "--json"], ["logs", "1", "a0"], ["schema"]):
        res = subprocess.Popen(
            [sys.executable, "-m", "akoflow", *args]
            + (["--state-dir", str(state_dir)] if args[0] != "schema" else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )
        assert res.stdout is not None
        res.stdout.close()
        _, err = res.communicate(timeout=30)
        assert "Traceback" not in err, (args, err)
        assert res.returncode == 0, (args, err)


# ------------------------------------------------------------------------ odd arguments


@pytest.fixture
def one_run(akoflow: Akoflow, tmp_path: Path) -> Path:
    """A state dir with run 1 (activity `a`, succeeded)."""
    wf = tmp_path / "one.yaml"
    wf.write_text("name: one\nspec:\n  activities:\n    - name: a\n      run: echo hi\n")
    res = akoflow("run", str(wf), "--quiet")
    assert res.returncode == 0, res.stderr
    return wf


def test_output_paths_that_cannot_be_written(
    akoflow: Akoflow, one_run: Path, tmp_path: Path
) -> None:
    a_dir, a_file = tmp_path / "somedir", tmp_path / "somefile"
    a_dir.mkdir()
    a_file.write_text("keep\n")
    missing = tmp_path / "missing" / "out.html"
    assert_clean_refusal(akoflow("report", "1", "-o", str(a_dir)), "is a directory")
    assert_clean_refusal(
        akoflow("report", "1", "-o", str(missing)), "cannot write", "No such file or directory"
    )
    for command in ("report", "prov"):  # one write path each, the disk full
        assert_clean_refusal(
            akoflow(command, "1", "-o", "/dev/full"), "cannot write /dev/full", "No space left"
        )
    assert_clean_refusal(akoflow("crate", "1", "-o", str(a_file)), "exists and is not a directory")
    assert a_file.read_text() == "keep\n"
    assert list(a_dir.iterdir()) == []
    assert not missing.parent.exists()


def test_numbers_beyond_any_id_are_unknown_ids(akoflow: Akoflow, one_run: Path) -> None:
    for args in (  # every command finds runs the same way (status, cancel, retry, ...)
        ["status", BIG],
        ["logs", BIG, "a"],
        ["report", BIG, "-o", "r.html"],
        ["resume", BIG],
        ["status", "²"],  # a digit to str.isdigit, not to int()
    ):
        assert_clean_refusal(akoflow(*args), f"no workflow {args[1]}")
    assert_clean_refusal(akoflow("logs", "1", "a", "--attempt", BIG), f"a has no attempt {BIG}")
    assert_clean_refusal(akoflow("logs", "1", "a", "--stream", "both"), "Invalid value", "--stream")
    res = akoflow("status", "--limit", BIG, "--json")  # more than there are: all of them
    assert res.returncode == 0, res.stderr
    assert [w["id"] for w in json.loads(res.stdout)] == [1]
    assert_clean_refusal(akoflow("resume", "7"), "no workflow 7")
    assert [wf_id for wf_id, _ in workflow_rows(one_run.parent / "state")] == [1]


def test_arguments_that_are_not_text(akoflow: Akoflow, one_run: Path, tmp_path: Path) -> None:
    """Bytes the locale cannot decode (a name typed in Latin-1) name no run or activity; a
    workflow file with such a name runs, shown with \\xNN."""
    latin1 = os.fsdecode(b"caf\xe9")
    assert_clean_refusal(akoflow("status", latin1), "no workflow caf\\xe9")
    assert_clean_refusal(akoflow("logs", "1", latin1), "workflow 1 has no activity caf\\xe9")
    odd_file = tmp_path / os.fsdecode(b"w\xff.yaml")
    odd_file.write_bytes(one_run.read_bytes())
    res = akoflow("validate", str(odd_file), state=False)
    assert res.returncode == 0 and "w\\xff.yaml: one, 1 activity" in res.stdout, res.stderr
    res = akoflow("run", str(odd_file), "--new", "--quiet")
    assert res.returncode == 0, res.stderr
    token = cli_env(AKOFLOW_API_TOKEN="t")  # client mode: refused before any request
    for args, message in (
        (["status", latin1, "--server", "http://127.0.0.1:9"], "no workflow caf\\xe9"),
        (["status", "--server", "http://[::1"], "invalid server URL"),
        (["runtimes", "--server", "ftp://host"], "invalid server URL"),
    ):
        assert_clean_refusal(akoflow(*args, env=token, state=False), message)


def test_a_data_dir_that_cannot_be_one(akoflow: Akoflow, tmp_path: Path, state_dir: Path) -> None:
    wf = tmp_path / "one.yaml"
    wf.write_text("name: one\nspec:\n  activities:\n    - name: a\n      run: echo hi\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("keep\n")
    for data in (a_file, Path("/dev/null"), Path("/proc/no-such-dir")):
        assert_clean_refusal(akoflow("run", str(wf), "--data-dir", str(data)), "--data-dir")
    assert a_file.read_text() == "keep\n"
    assert not state_dir.exists()  # nothing stored


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_database_is_a_clear_error(
    damage: str, akoflow: Akoflow, one_run: Path, state_dir: Path
) -> None:
    db = state_dir / "akoflow.db"
    for companion in ("akoflow.db-wal", "akoflow.db-shm"):
        (state_dir / companion).unlink(missing_ok=True)
    if damage == "garbage":
        db.write_bytes(b"this is not a database\n" * 200)
    else:
        os.truncate(db, db.stat().st_size // 2)
    before = db.read_bytes()
    for args in (
        ["status"],
        ["run", str(one_run)],
        ["resume"],
        ["logs", "1", "a"],
        ["report", "1", "-o", str(state_dir.parent / "r.html")],
    ):
        assert_clean_refusal(akoflow(*args), f"the state database {db} cannot be used", "damaged")
    assert db.read_bytes() == before
    assert not (state_dir.parent / "r.html").exists()


def test_a_state_dir_that_cannot_be_one(akoflow: Akoflow, one_run: Path, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "state-file"
    not_a_dir.write_text("mine\n")
    for args in (
        ["run", str(one_run)],
        ["status"],
        ["logs", "1", "a"],
        ["server", "--port", "1"],
    ):
        res = akoflow(*args, "--state-dir", str(not_a_dir), state=False)
        assert_clean_refusal(res, f"the state dir {not_a_dir} exists and is not a directory")
    assert not_a_dir.read_text() == "mine\n"
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    res = akoflow("status", "--state-dir", str(loop), state=False)
    assert_clean_refusal(res, "cannot use the state dir", "Symlink loop")
    assert_clean_refusal(akoflow("run", str(one_run), "--data-dir", str(loop)), "--data-dir")


# ------------------------------------------------------------------------ workflow files


def test_workflow_files_are_read_bounded_and_without_hanging(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    fifo = tmp_path / "nobody-writes"
    os.mkfifo(fifo)
    for command in ("run", "validate", "submit"):
        extra = ["--server", "http://127.0.0.1:9"] if command == "submit" else []
        res = akoflow(command, "/dev/zero", *extra, state=command == "run", timeout=60)
        assert_clean_refusal(res, "/dev/zero", "larger than the 64 MiB")
        res = akoflow(command, str(tmp_path), *extra, state=command == "run")
        assert_clean_refusal(res, "is a directory")
        res = akoflow(command, str(fifo), *extra, state=command == "run", timeout=30)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert not state_dir.exists()  # nothing stored, not even a state dir


def test_a_workflow_from_a_pipe_is_read(tmp_path: Path) -> None:
    """`akoflow validate <(envsubst < wf.yaml)`: a pipe with a writer is read to its end."""
    r, w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "akoflow", "validate", f"/dev/fd/{r}"],
        pass_fds=(r,),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    os.close(r)
    os.write(w, b"name: piped\nspec:\n  activities:\n    - name: a\n      run: echo\n")
    os.close(w)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "valid" in out and "piped, 1 activity" in out


# ---------------------------------------------------------------------------- file modes


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_is_private_to_the_user(tmp_path: Path) -> None:
    state, release = tmp_path / "new" / "state", tmp_path / "release"
    wf = tmp_path / "once.yaml"
    wf.write_text(GATED.format(release=release))
    proc = subprocess.Popen(
        [sys.executable, "-m", "akoflow", "run", str(wf), "--quiet", "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        wait_for(lambda: (state / "runs" / "1-once" / "data" / "ledger").exists())
        # While the engine has it open, SQLite's companions exist: made with the db's mode.
        for name in ("akoflow.db", "akoflow.db-wal", "akoflow.db-shm"):
            assert mode(state / name) == 0o600, name
        assert mode(state) == 0o700
        assert mode(state / "runs") == 0o700
    finally:
        release.touch()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "open to other users" not in err


def test_a_state_dir_others_can_enter_gets_one_warning(akoflow: Akoflow, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    res = akoflow("status", "--state-dir", str(shared), state=False)
    assert res.returncode == 0  # no runs yet: nothing opened, nothing to warn about
    wf = tmp_path / "one.yaml"
    wf.write_text("name: one\nspec:\n  activities:\n    - name: a\n      run: echo hi\n")
    res = akoflow("run", str(wf), "--quiet", "--state-dir", str(shared), state=False)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count(f"the state dir {shared} is open to other users (mode 0755)") == 1
    assert f"chmod 700 {shared}" in res.stderr
    assert mode(shared) == 0o755  # told, not changed behind the user's back
    assert mode(shared / "akoflow.db") == 0o600
    assert mode(shared / "runs") == 0o700


def test_server_state_dir_and_token_are_private(tmp_path: Path) -> None:
    state = tmp_path / "server-state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "akoflow", "server", "--port", str(free_port())]
        + ["--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        wait_for(lambda: (state / "api-token").exists() and (state / "akoflow.db").exists())
        assert mode(state) == 0o700
        assert mode(state / "api-token") == 0o600
        assert mode(state / "akoflow.db") == 0o600
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_a_new_database_never_reuses_the_run_dirs_of_a_lost_one(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    # The message for a damaged database says to move it away: the run dirs stay, and a new
    # run must not take their ids (their attempt files would read "already launched").
    wf = tmp_path / "once.yaml"
    wf.write_text(
        "name: once\nspec:\n  activities:\n    - name: a\n      run: echo a >> ../ledger\n"
    )
    assert akoflow("run", str(wf), "-q").returncode == 0
    for suffix in ("", "-wal", "-shm"):
        db = state_dir / f"akoflow.db{suffix}"
        if db.exists():
            db.rename(db.with_name(db.name + ".broken"))
    res = akoflow("run", str(wf), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["workflow"]["id"] == 2
    assert (state_dir / "runs" / "2-once" / "ledger").read_text() == "a\n"
    assert (state_dir / "runs" / "1-once" / "ledger").read_text() == "a\n"
