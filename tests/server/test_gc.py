"""Deleting runs: `akoflow delete` and `akoflow gc` on a local state dir and through a real
server (DELETE, POST /akoflow-api/gc, AKOFLOW_RETENTION), and `akoflow files` / `download`.

Bytes freed are checked against the files the runs wrote (sizes made by the test), a running
run is refused, --dry-run removes nothing, and another state dir is never touched."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import cli_env, wait_for
from tests.server.conftest import API, Server, activity, submit, wait_workflow, workflow_yaml

BIG = 3_000_000  # bytes an activity writes, so sizes are the test's own numbers


def wf(name: str, size: int = BIG, run: str | None = None) -> str:
    script = run or (
        f"echo making\nhead -c {size} /dev/zero > out.bin\n"
        "printf 'odd' > \"$(printf 'b\\377.txt')\""
    )
    return workflow_yaml(name, activity("make", script, extra="      cache: false\n"))


def cli(
    state: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "akoflow", *args, "--state-dir", str(state)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env or cli_env())


def run_file(state: Path, tmp: Path, text: str, *extra: str) -> None:
    path = tmp / f"wf-{time.monotonic_ns()}.yaml"
    path.write_text(text)
    res = cli(state, "run", str(path), "-q", "--new", *extra)
    assert res.returncode == 0, res.stderr


def tree_bytes(root: Path) -> int:
    """The test's own count: every regular file's size (no hard links are made here)."""
    total = 0
    for base, _, names in os.walk(root):
        for name in names:
            p = Path(base) / name
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
    return total


def rows(state: Path, table: str, where: str = "1") -> int:
    with sqlite3.connect(state / "akoflow.db") as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}").fetchone()[0])


def columns(state: Path) -> list[tuple[str, str]]:
    """(table, column) of every table with a workflow_id or activity_id (but the records of
    what deleted runs left on backends, which outlive them on purpose)."""
    with sqlite3.connect(state / "akoflow.db") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        found = []
        for table in tables:
            names = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
            for column in ("workflow_id", "activity_id"):
                if column in names and table not in ("gc_remote", "notify_deliveries"):
                    found.append((table, column))
    assert len(found) > 10
    return found


def test_delete_and_gc_locally(tmp_path: Path) -> None:
    state, other = tmp_path / "state", tmp_path / "other"
    for _ in range(3):
        run_file(state, tmp_path, wf("keep"))
    run_file(other, tmp_path, wf("keep"))  # another state dir: its run 1 must stay
    runs = state / "runs"
    expected = {i: tree_bytes(runs / f"{i}-keep") for i in (1, 2, 3)}
    assert all(n > BIG for n in expected.values())

    # --dry-run: the sizes, and nothing removed.
    res = cli(state, "gc", "--keep-last", "1", "--dry-run", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [d["id"] for d in doc["deleted"]] == [1, 2]
    assert doc["freedBytes"] == expected[1] + expected[2]
    assert sorted(os.listdir(runs)) == ["1-keep", "2-keep", "3-keep"]
    assert rows(state, "workflows") == 3

    # delete: bytes as counted by the test, every row of the run gone.
    assert rows(state, "logs", "activity_id IN (SELECT id FROM activities WHERE workflow_id=1)")
    res = cli(state, "delete", "1", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["deleted"][0]["freedBytes"] == expected[1] == doc["freedBytes"]
    assert not (runs / "1-keep").exists()
    assert rows(state, "logs") > 0 and rows(state, "files") > 0  # the other runs' stay
    for table, column in columns(state):  # no row of any table refers to the run
        if column == "workflow_id":
            assert rows(state, table, "workflow_id = 1") == 0, table
        else:
            assert rows(state, table, "activity_id NOT IN (SELECT id FROM activities)") == 0

    # Unknown id, bad options: exit 2, nothing deleted.
    res = cli(state, "delete", "2", "99")
    assert res.returncode == 2 and "no workflow 99" in res.stderr
    assert (runs / "2-keep").exists()
    res = cli(state, "gc", "--older-than", "soon")
    assert res.returncode == 2 and "invalid duration" in res.stderr
    res = cli(state, "gc", "--keep-last", "-1")
    assert res.returncode == 2

    # gc by count: the newest stays; the text report says what went.
    res = cli(state, "gc", "--keep-last", "1")
    assert res.returncode == 0, res.stderr
    assert f"deleted run 2 (keep, succeeded): {expected[2]:,} bytes" in res.stdout
    assert sorted(os.listdir(runs)) == ["3-keep"]
    assert (other / "runs" / "1-keep").is_dir()
    assert rows(other, "workflows") == 1

    # A run dir a killed deletion left (rows gone, dir there) goes with the next gc.
    (runs / "2-keep" / "attempts").mkdir(parents=True)
    (runs / "2-keep" / "attempts" / "x.stdout").write_bytes(b"x" * 1000)
    res = cli(state, "gc", "--json")
    doc = json.loads(res.stdout)
    assert doc["orphans"] == [{"path": str(runs / "2-keep"), "freedBytes": 1000}]
    assert doc["deleted"] == [] and sorted(os.listdir(runs)) == ["3-keep"]


def test_space_goes_back_to_the_file_system(tmp_path: Path) -> None:
    state = tmp_path / "state"
    noisy = "for i in $(seq 1 3000); do echo line $i of some log output here; done"
    for _ in range(2):
        run_file(state, tmp_path, wf("noisy", run=noisy))
    db = state / "akoflow.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
    res = cli(state, "delete", "1", "2", "--json")
    doc = json.loads(res.stdout)
    assert res.returncode == 0 and doc["databaseBytes"] > 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0


def test_a_running_run_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = tmp_path / "slow.yaml"
    path.write_text(wf("slow", run="touch started; sleep 60"))
    argv = [sys.executable, "-m", "akoflow", "run", str(path), "-q", "--state-dir", str(state)]
    engine = subprocess.Popen(
        argv, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for(lambda: (state / "runs" / "1-slow" / "data" / "started").exists())
        res = cli(state, "delete", "1")
        assert res.returncode == 1
        assert "refused run 1: it is running; cancel it first" in res.stdout
        res = cli(state, "gc", "--older-than", "1s", "--keep-last", "0", "--json")
        assert json.loads(res.stdout)["deleted"] == []
        assert (state / "runs" / "1-slow" / "data" / "started").exists()
    finally:
        engine.terminate()
        engine.wait(30)
        assert engine.stderr is not None
        engine.stderr.close()
    res = cli(state, "delete", "1")  # cancelled now: it goes
    assert res.returncode == 0, res.stdout + res.stderr
    assert not (state / "runs" / "1-slow").exists()


def test_files_and_download_locally(tmp_path: Path) -> None:
    state = tmp_path / "state"
    run_file(state, tmp_path, wf("files", size=1000))
    res = cli(state, "files", "1", "--json")
    assert res.returncode == 0, res.stderr
    listed = {r["path"]: r for r in json.loads(res.stdout)}
    assert listed["out.bin"]["size"] == 1000 and listed["out.bin"]["activity"] == "make"
    assert listed["b\\xff.txt"]["pathEncoded"] == "b%FF.txt"
    out = tmp_path / "got.bin"
    res = cli(state, "download", "1", "out.bin", "-o", str(out))
    assert res.returncode == 0 and out.read_bytes() == b"\0" * 1000
    res = cli(state, "download", "1", "b%FF.txt", "--encoded", "-o", "-")
    assert res.returncode == 0 and res.stdout == "odd"
    res = cli(state, "download", "1", "../akoflow.db", "-o", str(tmp_path / "db"))
    assert res.returncode == 2 and not (tmp_path / "db").exists()
    res = cli(state, "download", "1", "out.bin", "-o", str(out))
    assert res.returncode == 2 and "exists" in res.stderr


def test_through_the_server(start_server: Any, tmp_path: Path) -> None:
    server: Server = start_server()
    env = cli_env(AKOFLOW_API_TOKEN=server.token)
    with server.client() as api:
        ids = [submit(api, wf("srv")) for _ in range(3)]
        for wf_id in ids:
            wait_workflow(api, wf_id)
        runs = server.state_dir / "runs"
        sizes = {i: tree_bytes(runs / f"{i}-srv") for i in ids}

        # files and download through the server
        res = cli(server.state_dir, "files", str(ids[0]), "--server", server.url, env=env)
        assert res.returncode == 0 and "out.bin" in res.stdout and str(BIG) in res.stdout
        target = tmp_path / "bad.txt"
        res = cli(
            server.state_dir, "download", str(ids[0]), os.fsdecode(b"b\xff.txt"),
            "-o", str(target), "--server", server.url, env=env,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert target.read_bytes() == b"odd"

        # DELETE reports what it freed
        res = api.delete(f"{API}/workflows/{ids[0]}/")
        assert res.status_code == 200, res.text
        report = res.json()["data"]["report"]
        assert report["deleted"][0]["freedBytes"] == sizes[ids[0]]
        assert api.get(f"{API}/workflows/{ids[0]}/").status_code == 404

        # POST /gc: bad options are 400, a dry run removes nothing, then by count
        assert api.post(f"{API}/gc", json={"olderThan": "x"}).status_code == 400
        assert api.post(f"{API}/gc", json={"keepLast": -1}).status_code == 400
        assert api.post(f"{API}/gc", json={"nope": 1}).status_code == 400
        dry = api.post(f"{API}/gc", json={"keepLast": 1, "dryRun": True}).json()["data"]
        assert [d["id"] for d in dry["deleted"]] == [ids[1]] and (runs / f"{ids[1]}-srv").exists()
        assert httpx.post(server.url + API + "/gc").status_code == 401

        res = cli(server.state_dir, "gc", "--keep-last", "1", "--server", server.url, env=env)
        assert res.returncode == 0, res.stderr
        assert f"deleted run {ids[1]} (srv, succeeded): {sizes[ids[1]]:,} bytes" in res.stdout
        assert sorted(os.listdir(runs)) == [f"{ids[2]}-srv"]
        res = cli(server.state_dir, "delete", "42", "--server", server.url, env=env)
        assert res.returncode == 2


def test_retention_deletes_old_runs_in_the_server(start_server: Any) -> None:
    server: Server = start_server(AKOFLOW_RETENTION="1s", AKOFLOW_RETENTION_INTERVAL="1s")
    with server.client() as api:
        wf_id = submit(api, wf("old", size=10))
        wait_workflow(api, wf_id)
        wait_for(lambda: api.get(f"{API}/workflows/{wf_id}/").status_code == 404)
    # The rows go first (the API says 404 from then on), the run's files and the log after.
    wait_for(lambda: "retention: 1 run(s) older than 1 s deleted" in server.output())
    assert not (server.state_dir / "runs" / f"{wf_id}-old").exists()


def test_a_bad_retention_setting_stops_the_server_at_start(tmp_path: Path) -> None:
    env = cli_env(AKOFLOW_RETENTION="a month")
    argv = [sys.executable, "-m", "akoflow", "server", "--state-dir", str(tmp_path / "s")]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 2 and "AKOFLOW_RETENTION" in res.stderr
