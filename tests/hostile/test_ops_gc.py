"""Hostile pass on `akoflow delete` / `akoflow gc` (issue 19): what a deletion must never
remove (another run's data dir that lies in the deleted run's dir, what links planted in a
run dir point to), a run id given twice, and a deletion killed half way."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import cli_env, wait_for
from tests.server.conftest import (  # noqa: F401
    API,
    Server,
    activity,
    start_server,
    submit,
    wait_workflow,
    workflow_yaml,
)


def cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "akoflow", *args, "--state-dir", str(state)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=cli_env())


def workflow(tmp: Path, name: str, script: str) -> Path:
    body = "".join(f"        {line}\n" for line in script.splitlines())
    path = tmp / f"{name}-{time.monotonic_ns()}.yaml"
    path.write_text(
        f"name: {name}\nspec:\n  activities:\n    - name: step\n      cache: false\n"
        f"      run: |\n{body}"
    )
    return path


def run(state: Path, tmp: Path, name: str, script: str, *extra: str) -> None:
    res = cli(state, "run", str(workflow(tmp, name, script)), "-q", "--new", *extra)
    assert res.returncode == 0, res.stdout + res.stderr


def workflow_rows(state: Path) -> set[int]:
    with sqlite3.connect(state / "akoflow.db") as db:
        return {int(r[0]) for r in db.execute("SELECT id FROM workflows")}


def test_a_run_id_given_twice_is_deleted_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    run(state, tmp_path, "twice", "head -c 5000 /dev/zero > out.bin")
    res = cli(state, "delete", "1", "1", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert [d["id"] for d in report["deleted"]] == [1] and report["refused"] == []
    assert report["deleted"][0]["freedBytes"] >= 5000


def test_links_planted_in_a_run_dir_are_removed_never_followed(tmp_path: Path) -> None:
    """An activity leaves links to precious files and directories outside (and a hard link
    to one): the deletion removes the links, counts none of their targets' bytes, and every
    target is left whole."""
    state, precious = tmp_path / "state", tmp_path / "precious"
    (precious / "dir").mkdir(parents=True)
    (precious / "dir" / "keep.txt").write_bytes(b"k" * 7000)
    (precious / "hard.bin").write_bytes(b"h" * 9000)
    script = (
        f"ln -s {precious} to-dir\nln -s {precious}/dir/keep.txt to-file\n"
        f"ln {precious}/hard.bin hard\nmkdir deep\nln -s / deep/root\n"
        f"ln -s {precious} ../planted\nhead -c 4000 /dev/zero > own.bin"
    )
    run(state, tmp_path, "links", script)
    assert (state / "runs" / "1-links" / "planted").is_symlink()
    res = cli(state, "delete", "1", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert not (state / "runs" / "1-links").exists()
    assert (precious / "dir" / "keep.txt").read_bytes() == b"k" * 7000
    assert (precious / "hard.bin").read_bytes() == b"h" * 9000
    # own.bin and the attempt files only: no byte of the link targets or the hard link.
    assert 4000 <= report["deleted"][0]["freedBytes"] < 4000 + 7000


def test_a_deletion_killed_half_way_leaves_what_the_next_gc_finishes(tmp_path: Path) -> None:
    """SIGKILL once the rows are gone (the run dir being removed): the other runs are whole,
    status works, and the next gc removes the rest as an orphan."""
    state = tmp_path / "state"
    run(state, tmp_path, "many", "mkdir m\ncd m\nseq 1 3000 | xargs touch")
    run(state, tmp_path, "other", "echo keep > keep.txt")
    argv = [sys.executable, "-m", "akoflow", "delete", "1", "--state-dir", str(state)]
    proc = subprocess.Popen(
        argv, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: 1 not in workflow_rows(state) or proc.poll() is not None)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert workflow_rows(state) == {2}
    status = cli(state, "status", "--json")
    assert status.returncode == 0, status.stderr
    res = cli(state, "gc", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert not (state / "runs" / "1-many").exists()
    assert (state / "runs" / "2-other" / "data" / "keep.txt").read_text() == "keep\n"
    assert cli(state, "logs", "2", "step").returncode == 0


def _start(state: Path, path: Path, *extra: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "akoflow", "run", str(path), "-q", "--state-dir", str(state)]
    return subprocess.Popen(
        [*argv, *extra], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def test_a_running_runs_data_dir_inside_a_deleted_runs_dir_is_never_removed(
    tmp_path: Path,
) -> None:
    """A careless user runs a second workflow on the first one's results (`--data-dir
    ~/.akoflow/runs/1-a/data`), then deletes the first run while the second works."""
    state = tmp_path / "state"
    run(state, tmp_path, "a", "echo result > result.txt")
    data = state / "runs" / "1-a" / "data"
    go = tmp_path / "go"  # outside the data dir: the activity waits for it
    script = f"cat result.txt > copy.txt\ntouch started\nwhile [ ! -e {go} ]; do sleep 0.1; done"
    second = workflow(tmp_path, "b", script + "\ncat result.txt >> copy.txt")
    engine = _start(state, second, "--data-dir", str(data))
    try:
        wait_for(lambda: (data / "started").exists())
        res = cli(state, "delete", "1", "--json")
        removed = not (data / "copy.txt").exists()
        go.touch()
        assert engine.wait(60) is not None
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait(10)
    assert not removed, f"run 2's data dir was removed while it ran: {res.stdout}"
    assert engine.returncode == 0
    assert res.returncode == 1, res.stdout + res.stderr
    (refused,) = json.loads(res.stdout)["refused"]
    assert refused["id"] == 1 and "run 2 works in it" in refused["reason"]
    assert workflow_rows(state) == {1, 2}, "a refused run's rows were deleted"


def test_a_finished_runs_data_dir_inside_a_deleted_runs_dir_is_left_and_said(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    run(state, tmp_path, "a", "echo result > result.txt")
    data = state / "runs" / "1-a" / "data"
    run(state, tmp_path, "b", "cat result.txt > copy.txt", "--data-dir", str(data))
    res = cli(state, "delete", "1", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (data / "copy.txt").read_text() == "result\n", "run 2's results were deleted"
    (deleted,) = json.loads(res.stdout)["deleted"]
    assert any("data dir of run 2" in note for note in deleted["left"]), deleted
    assert not (state / "runs" / "1-a" / "attempts").exists()
    # Run 1's dir now matches no run: the orphan sweep leaves run 2's data dir in it too.
    res = cli(state, "gc", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (data / "copy.txt").read_text() == "result\n", "the orphan sweep removed it"
    assert any("data dir of run 2" in note for note in json.loads(res.stdout)["left"])
    # Once run 2 is deleted (its --data-dir left alone), the next gc removes the dir.
    assert cli(state, "delete", "2").returncode == 0
    assert (data / "copy.txt").exists()
    res = cli(state, "gc", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert not (state / "runs" / "1-a").exists()


def test_a_data_dir_named_like_a_gone_runs_dir_is_never_swept(tmp_path: Path) -> None:
    """`--data-dir <state>/runs/1-x` once run 1 is gone: the orphan sweep's pattern matches
    it; a run working there is never removed, a finished one's data dir is kept."""
    state = tmp_path / "state"
    run(state, tmp_path, "gone", "true")
    assert cli(state, "delete", "1").returncode == 0
    data = state / "runs" / "1-x"
    run(state, tmp_path, "user", "echo mine > mine.txt", "--data-dir", str(data))
    res = cli(state, "gc", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (data / "mine.txt").read_text() == "mine\n"
    report = json.loads(res.stdout)
    assert report["orphans"] == [] and any("run 2" in note for note in report["left"])


def _add_log_rows(state: Path, wf_id: int, count: int) -> None:
    """``count`` log lines for the run's activity, written straight into the store (an
    activity printing them would take minutes)."""
    with sqlite3.connect(state / "akoflow.db", timeout=30) as db:
        (act,) = db.execute("SELECT id FROM activities WHERE workflow_id = ?", (wf_id,)).fetchone()
        db.executemany(
            "INSERT INTO logs (activity_id, attempt, stream, offset, data, created_at) "
            "VALUES (?, 1, 'stdout', ?, ?, 0)",
            ((act, i * 61, "x" * 60) for i in range(count)),
        )


def _deleting(state: Path) -> set[int]:
    with sqlite3.connect(state / "akoflow.db", timeout=30) as db:
        return {int(r[0]) for r in db.execute("SELECT workflow_id FROM gc_deleting")}


def test_a_deletion_killed_between_batches_is_finished_by_the_next_gc(tmp_path: Path) -> None:
    """The rows go in batches, the workflow's row last: SIGKILL once the deletion began
    leaves the run marked, and a plain gc finishes it (rows, then its dir)."""
    state = tmp_path / "state"
    run(state, tmp_path, "big", "echo out > out.txt")
    run(state, tmp_path, "other", "echo keep | tee keep.txt")
    _add_log_rows(state, 1, 300_000)
    argv = [sys.executable, "-m", "akoflow", "delete", "1", "--state-dir", str(state)]
    proc = subprocess.Popen(
        argv, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: 1 in _deleting(state) or proc.poll() is not None)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "the deletion ended before it was killed"
    assert workflow_rows(state) == {1, 2} and _deleting(state) == {1}
    res = cli(state, "gc", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert [d["id"] for d in json.loads(res.stdout)["deleted"]] == [1]
    assert workflow_rows(state) == {2} and _deleting(state) == set()
    assert not (state / "runs" / "1-big").exists()
    with sqlite3.connect(state / "akoflow.db") as db:
        assert db.execute("SELECT COUNT(*) FROM logs").fetchone()[0] > 0  # run 2's
        assert (
            db.execute(
                "SELECT COUNT(*) FROM logs WHERE activity_id NOT IN (SELECT id FROM activities)"
            ).fetchone()[0]
            == 0
        )
    assert cli(state, "logs", "2", "step").returncode == 0


def test_the_server_answers_while_it_deletes_a_run_of_many_rows(
    start_server: Any,  # noqa: F811
) -> None:
    """A DELETE of a run with 300,000 log rows: the health check and the API answer while
    it is under way (they waited for the whole deletion, on the server's event loop)."""
    server: Server = start_server()
    with server.client() as api:
        wf_id = submit(api, workflow_yaml("many", activity("step", "echo hi")))
        assert wait_workflow(api, wf_id)["state"] == "succeeded"
    _add_log_rows(server.state_dir, wf_id, 300_000)
    answer: dict[str, Any] = {}

    def delete() -> None:
        with server.client() as api:
            answer["delete"] = api.delete(f"{API}/workflows/{wf_id}/", timeout=120)

    deleting = threading.Thread(target=delete)
    deleting.start()
    try:
        wait_for(lambda: wf_id in _deleting(server.state_dir) or not deleting.is_alive())
        with server.client() as api:
            health = api.get("/akoflow-server/check-service/", timeout=60)
            listed = api.get(f"{API}/workflows/", timeout=60)
        # The mark goes with the workflow's row, the last of the run's rows to go.
        answered_during = wf_id in _deleting(server.state_dir)
    finally:
        deleting.join(120)
    assert health.status_code == 200 and listed.status_code == 200
    assert answer["delete"].status_code == 200, answer["delete"].text
    assert answered_during, "the server answered only once the run's rows were deleted"
