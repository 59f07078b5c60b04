"""The engine is killed (SIGKILL) mid-run; resuming never runs an activity twice.

Each activity appends one line to its own side-effect file in the data dir, so the number of
lines is the number of times it really ran.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from akoflow import service
from akoflow.runtimes.local_spawner import Frames
from tests.conftest import Akoflow, cli_env, start_cli, wait_for
from tests.scenarios import (
    run_held_open,
    spawn_attempt,
    spawner_in_process,
    store_intent_engine_gone,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

N_FAST = 6


def crash_workflow(path: Path) -> None:
    """Fast activities, a slow one that is running when the engine dies, and dependents."""
    acts = [
        "    - name: slow\n      run: |\n        echo run >> count.slow\n        sleep 3\n"
        "        echo done > slow.out\n"
    ]
    for i in range(N_FAST):
        acts.append(f"    - name: fast{i}\n      run: echo run >> count.fast{i}\n")
    acts.append(
        "    - name: after-slow\n      dependsOn: [slow]\n"
        "      run: |\n        echo run >> count.after\n        cat slow.out\n"
    )
    acts.append(
        "    - name: gate\n      dependsOn: [fast0]\n"
        "      run: |\n        echo run >> count.gate\n        sleep 2\n"
    )
    path.write_text("name: crashy\nspec:\n  activities:\n" + "".join(acts))


def run_counts(data: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in data.glob("count.*")}


@pytest.mark.parametrize("how", ["resume", "rerun"])
def test_sigkill_mid_run_then_resume_runs_nothing_twice(
    how: str, akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    wf = tmp_path / "crash.yaml"
    crash_workflow(wf)
    data = tmp_path / "data"
    engine = start_cli(
        ["run", str(wf), "--quiet", "--state-dir", str(state_dir), "--data-dir", str(data)]
    )
    # Kill it while `slow` and `gate` run and the fast ones are done.
    wait_for(lambda: (data / "count.slow").exists() and (data / "count.gate").exists())
    os.kill(engine.pid, signal.SIGKILL)
    engine.communicate(timeout=10)
    assert engine.returncode == -signal.SIGKILL
    assert not (data / "count.after").exists()

    if how == "resume":
        res = akoflow("resume", "--json")
    else:
        res = akoflow("run", str(wf), "--json", "--data-dir", str(data))
    assert res.returncode == 0, res.stderr + res.stdout
    doc = json.loads(res.stdout)
    assert doc["workflow"]["id"] == 1  # the same run was resumed, no new one created
    assert {a["state"] for a in doc["activities"]} == {"succeeded"}
    counts = run_counts(data)
    assert counts == {f"count.fast{i}": 1 for i in range(N_FAST)} | {
        "count.slow": 1,
        "count.after": 1,
        "count.gate": 1,
    }
    # The adopted `slow` reported its real completion, and its dependent saw its output.
    assert (data / "slow.out").read_text() == "done\n"
    assert json.loads(akoflow("status", "1", "--json").stdout)["workflow"]["state"] == "succeeded"


def test_kill_between_intent_and_launch_is_not_run_twice(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """An attempt recorded as submitted whose process never claimed it is proven not started,
    claimed by the engine, and run once as a new attempt; a late copy of it refuses to run."""
    wf = tmp_path / "one.yaml"
    wf.write_text(
        "name: one\nspec:\n  activities:\n    - name: only\n      run: echo run >> count.only\n"
    )
    data = tmp_path / "data"
    # Store the run and record the intent of attempt 1, as the engine does before launching,
    # then "crash" before anything is launched.
    wf_id, _ = store_intent_engine_gone(state_dir, wf, data)

    res = akoflow("resume", "--json")
    assert res.returncode == 0, res.stderr
    assert (data / "count.only").read_text() == "run\n"
    doc = json.loads(res.stdout)
    assert doc["activities"][0]["attempts"] == 2  # attempt 1 lost before launch, 2 ran
    attempt1 = state_dir / "runs" / f"{wf_id}-one" / "attempts" / "only.1"
    assert Path(f"{attempt1}.exit").read_text() == "engine\n"
    # A straggler launch of attempt 1 (a request the crash left in the spawner's way) must
    # not run: the spawner's claim finds the engine's.
    with spawner_in_process() as (spawner, engine_end):
        spawn_attempt(spawner, str(attempt1), b"echo run >> count.only\n", data)
        spawner.flush()  # what the spawner's loop does after each turn
        (answer,) = Frames().feed(engine_end.recv(4096))
    assert answer[:2] == ("failed", "only.1") and "already launched once" in answer[2]
    assert not spawner.children
    assert Path(f"{attempt1}.exit").read_text() == "engine\n"
    assert (data / "count.only").read_text() == "run\n"


@pytest.mark.parametrize("quiet", [[], ["--quiet"]])
def test_ctrl_c_cancels_and_kills_the_process_group(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path, quiet: list[str]
) -> None:
    # --quiet: no output module is loaded before the Ctrl-C's message (printed after the
    # stops are on their way, not before).
    wf = tmp_path / "long.yaml"
    wf.write_text(
        "name: long\nspec:\n  activities:\n"
        "    - name: sleeper\n      run: |\n        sleep 60 &\n        echo $! > child.pid\n"
        "        wait\n"
        "    - name: after\n      dependsOn: [sleeper]\n      run: echo never > never.txt\n"
    )
    data = tmp_path / "data"
    engine = start_cli(
        ["run", str(wf), "--state-dir", str(state_dir), "--data-dir", str(data), *quiet]
    )
    wait_for(lambda: (data / "child.pid").exists() and (data / "child.pid").read_text().strip())
    child = int((data / "child.pid").read_text())
    assert psutil.pid_exists(child)
    engine.send_signal(signal.SIGINT)
    out, err = engine.communicate(timeout=30)
    assert engine.returncode == 1
    assert "cancelling" in err
    wait_for(
        lambda: (
            not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
        ),
        timeout=10,
    )
    doc = json.loads(akoflow("status", "1", "--json").stdout)
    assert doc["workflow"]["state"] == "cancelled"
    states = {a["name"]: a["state"] for a in doc["activities"]}
    assert states == {"sleeper": "cancelled", "after": "cancelled"}
    assert not (data / "never.txt").exists()


@pytest.mark.parametrize(
    ("quiet", "signal_name"),
    [([], "SIGINT"), (["--quiet"], "SIGINT"), ([], "SIGHUP"), (["--quiet"], "SIGTERM")],
)
def test_a_ctrl_c_right_after_the_run_is_stored_cancels_it(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path, quiet: list[str], signal_name: str
) -> None:
    """Before the engine's handlers were set, a Ctrl-C raised KeyboardInterrupt: exit 130
    with the stored run left pending, and a later `akoflow resume` ran all of it. A SIGHUP
    (the terminal closed) killed the process, the run pending; it cancels, as later."""
    wf = tmp_path / "w.yaml"
    wf.write_text(
        "name: w\nspec:\n  activities:\n"
        + "".join(f"    - name: a{i}\n      run: echo run >> count.a{i}\n" for i in range(20))
    )
    data = tmp_path / "data"
    argv = ["run", str(wf), "--state-dir", str(state_dir), "--data-dir", str(data), *quiet]
    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e.interrupted_after_claim", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env=cli_env(INTERRUPT_WITH=signal_name),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cancelling" in done.stderr
    assert "Traceback" not in done.stderr
    doc = json.loads(akoflow("status", "1", "--json").stdout)
    assert doc["workflow"]["state"] == "cancelled"
    assert {a["state"] for a in doc["activities"]} == {"cancelled"}
    assert not list(data.glob("count.*"))  # nothing ran
    resumed = akoflow("resume", "1")
    assert not list(data.glob("count.*")), resumed.stdout + resumed.stderr


def test_a_stored_cancel_no_engine_carried_out_is_shown_and_ended_by_resume(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """A second Ctrl-C right after the first leaves at once: the run keeps its cancel request
    with no engine (as a crash between the request and the attach would). `status` says so,
    and `resume` ends it cancelled without running anything."""
    wf = tmp_path / "w.yaml"
    wf.write_text("name: w\nspec:\n  activities:\n    - name: a\n      run: echo run >> count.a\n")
    repo = service.open_repository(state_dir)
    try:
        prepared = service.validate_text(wf.read_text(), "w.yaml")
        wf_id = service.store(repo, state_dir, prepared, tmp_path / "data")
        repo.request_cancel(wf_id)
    finally:
        repo.close()
    shown = akoflow("status", str(wf_id))
    assert shown.returncode == 0, shown.stderr
    assert "cancel requested; no engine runs it" in " ".join(shown.stdout.split())
    resumed = akoflow("resume", str(wf_id))
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr  # cancelled, not succeeded
    doc = json.loads(akoflow("status", str(wf_id), "--json").stdout)
    assert doc["workflow"]["state"] == "cancelled"
    assert not (tmp_path / "data" / "count.a").exists()
    assert "cancel requested" not in akoflow("status", str(wf_id)).stdout


def test_second_engine_refuses_a_workflow_owned_by_a_live_one(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    with run_held_open(tmp_path, state_dir):
        res = akoflow("resume")
        assert res.returncode == 1
        assert "is being run by process" in res.stderr


def test_files_written_while_no_engine_watched_keep_their_provenance(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """`writer` writes its output after the engine was killed and ends before it is back;
    the resumed run still records its version, who may have generated it and who used it:
    nothing observed the write, and timing says only that `writer` alone ran then, so it is
    its one candidate, never said to be its generator."""
    wf = tmp_path / "prov.yaml"
    wf.write_text(
        "name: unwatched\nspec:\n  activities:\n"
        "    - name: writer\n      run: |\n        touch started\n        sleep 1\n"
        "        echo late > late.txt\n"
        "    - name: reader\n      dependsOn: [writer]\n      run: cat late.txt > copy.txt\n"
    )
    data = tmp_path / "data"
    data.mkdir()
    (data / "input.txt").write_text("in\n")
    engine = start_cli(
        ["run", str(wf), "--quiet", "--state-dir", str(state_dir), "--data-dir", str(data)]
    )
    wait_for(lambda: (data / "started").exists())
    os.kill(engine.pid, signal.SIGKILL)
    engine.communicate(timeout=10)
    wait_for(lambda: (data / "late.txt").exists())  # written while no engine watched
    time.sleep(0.2)  # and `writer` has ended
    res = akoflow("resume", "--json")
    assert res.returncode == 0, res.stderr + res.stdout
    repo = service.open_repository(state_dir)
    files = {(f.activity, f.role, f.path) for f in repo.list_files(1)}
    unsure = {f.path: [c.activity for c in f.candidates] for f in repo.list_ambiguous_files(1)}
    assert unsure == {"late.txt": ["writer"], "started": ["writer"]}
    assert not any(a == "writer" for a, _, _ in files)
    assert ("reader", "used", "late.txt") in files
    assert ("reader", "generated", "copy.txt") in files
    assert [f.path for f in repo.list_initial_files(1)] == ["input.txt"]


def ended(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize(
    "sig",
    [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU, signal.SIGVTALRM]
    + [signal.SIGABRT, signal.SIGSEGV, signal.SIGSYS, signal.SIGTRAP, signal.SIGKILL],
)
@pytest.mark.parametrize("target", ["group", "script"])
def test_attempt_ended_by_a_signal_while_no_engine_watched_is_not_a_success(
    sig: signal.Signals, target: str, akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    # The engine is SIGKILLed, then the attempt gets a signal (as on a shutdown, or from a
    # CPU-time limit) while its script waits on `sleep`: to its whole process group, or to
    # the script's shell alone. Its record must never say "exit 0" (the status of the
    # script's last command), and its dependent must not run.
    wf = tmp_path / "signal.yaml"
    wf.write_text(
        "name: signalled\nspec:\n  activities:\n"
        "    - name: long\n      run: sleep 30; echo finished > finished.txt\n"
        "    - name: after\n      dependsOn: [long]\n      run: echo ran > after.txt\n"
    )
    data = tmp_path / "data"
    engine = start_cli(
        ["run", str(wf), "--quiet", "--state-dir", str(state_dir), "--data-dir", str(data)]
    )
    if target == "script" and sig is signal.SIGINT:
        # bash waiting on a foreground command that SIGINT did not end goes on with the
        # script (it ends 30 s later, legitimately exit 0): not the case under test here.
        sig = signal.SIGUSR1
    exit_file = state_dir / "runs" / "1-signalled" / "attempts" / "long.1.exit"
    wait_for(lambda: exit_file.exists() and exit_file.read_text().startswith("pid "))
    pid = int(exit_file.read_text().split()[1])

    def sleeper() -> psutil.Process | None:
        for proc in psutil.Process(pid).children(recursive=True):
            if proc.name() == "sleep":
                return proc
        return None

    wait_for(lambda: sleeper() is not None)
    script = pid  # the script's own shell (its `sleep` is its child)
    os.kill(engine.pid, signal.SIGKILL)
    engine.communicate(timeout=10)
    if target == "group":
        os.killpg(pid, sig)
    else:
        os.kill(script, sig)  # its `sleep` lives on; the resumed run's cleanup ends it
    wait_for(lambda: ended(pid))
    # Its spawner, alive, records how it ended.
    wait_for(lambda: exit_file.read_text().startswith("exit "))
    assert exit_file.read_text() in (f"exit {128 + sig}\n", "exit 137\n")

    res = akoflow("resume", "--json")
    assert res.returncode == 1, res.stderr + res.stdout
    doc = json.loads(res.stdout)
    states = {a["name"]: a["state"] for a in doc["activities"]}
    assert states == {"long": "failed", "after": "skipped"}
    assert not (data / "finished.txt").exists() and not (data / "after.txt").exists()


@pytest.mark.parametrize("cgroups", ["on", "off"])
def test_a_script_orphaned_while_no_engine_watched_is_stopped_before_its_retry(
    cgroups: str, akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    # The engine is SIGKILLed, then the attempt's spawner (which would record its end) is
    # killed: the script runs on, orphaned, and its end can no longer be known. The resumed
    # engine must stop it before the retry starts, with or without cgroups, so that two
    # attempts never run at once.
    wf = tmp_path / "orphan.yaml"
    wf.write_text(
        "name: orphan\nspec:\n  activities:\n    - name: long\n      retries: 1\n      run: |\n"
        '        echo "start $AKOFLOW_ATTEMPT" >> ../started\n'
        "        sleep 3\n"
        '        echo "end $AKOFLOW_ATTEMPT" >> ../ended\n'
    )
    env = cli_env(LOCAL_CGROUPS=cgroups)
    engine = start_cli(["run", str(wf), "--quiet", "--state-dir", str(state_dir)], env=env)
    run = state_dir / "runs" / "1-orphan"
    exit_file = run / "attempts" / "long.1.exit"
    wait_for(lambda: (run / "started").exists())
    spawner = int(exit_file.read_text().split()[3])  # "pid C by SPAWNER"
    os.kill(engine.pid, signal.SIGKILL)
    engine.communicate(timeout=10)
    os.kill(spawner, signal.SIGKILL)  # the script is orphaned, its end unrecorded
    res = akoflow("resume", "--json", env=env)
    assert res.returncode == 0, res.stderr + res.stdout
    assert (run / "started").read_text() == "start 1\nstart 2\n"
    # Attempt 2 ran its whole `sleep 3` after attempt 1's began: a surviving attempt 1 would
    # have written its end before the resume returned.
    assert (run / "ended").read_text() == "end 2\n"
