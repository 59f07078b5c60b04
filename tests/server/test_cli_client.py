"""The CLI in client mode against a real server: submit (--wait: `run`'s progress and exit
codes), status, logs (-f), cancel, retry, runtimes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import EXAMPLES, cli_env, wait_for
from tests.server.conftest import (
    Server,
    activity,
    free_port,
    pid_gone,
    workflow_yaml,
)


def cli(
    server: Server, *args: str, flags: bool = True, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """`akoflow ARGS` with --server and the server's state dir (its api-token file)."""
    argv = [sys.executable, "-m", "akoflow", *args]
    if flags:
        argv += ["--server", server.url, "--state-dir", str(server.state_dir)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=cli_env(**env))


def test_submit_wait_has_the_progress_and_exit_codes_of_run(server: Server) -> None:
    res = cli(server, "submit", str(EXAMPLES / "hello.yaml"), "--wait")
    assert res.returncode == 0, res.stderr + res.stdout
    assert "submitted hello #1" in res.stderr
    for name in ("make-input", "count-letters", "upper-case", "reverse", "report"):
        assert f"succeeded {name}" in res.stdout
    assert "workflow hello #1 succeeded" in res.stdout

    res = cli(server, "submit", str(EXAMPLES / "failing.yaml"), "--wait")
    assert res.returncode == 1, res.stderr + res.stdout
    assert "failed broken-step" in res.stdout and "exit code 3" in res.stdout
    assert "skipped after-broken" in res.stdout
    assert "✗ broken-step" in res.stdout and "about to fail" in res.stdout  # stderr tail

    res = cli(server, "submit", str(EXAMPLES / "retries.yaml"), "--wait", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["workflow"]["state"] == "succeeded"
    assert {a["name"]: a["attempts"] for a in doc["activities"]} == {"flaky": 3, "uses-flaky": 1}

    res = cli(server, "submit", str(EXAMPLES / "hello.yaml"))
    assert res.returncode == 0 and "submitted hello #4" in res.stdout


def test_submit_of_an_invalid_workflow_exits_2_and_stores_nothing(
    server: Server, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nspec:\n  activities:\n    - name: a\n      run: x\n      dependsOn: [b]\n"
    )
    res = cli(server, "submit", str(bad), "--wait")
    assert res.returncode == 2
    assert f"invalid workflow {bad}: 1 error" in " ".join(res.stderr.split())
    assert "spec.activities[0].dependsOn[0]" in res.stderr and ":6:" in res.stderr
    res = cli(server, "submit", str(tmp_path / "missing.yaml"))
    assert res.returncode == 2 and "cannot read" in res.stderr
    listed = cli(server, "status", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []


def test_status_logs_and_runtimes(server: Server) -> None:
    assert cli(server, "submit", str(EXAMPLES / "hello.yaml"), "--wait").returncode == 0
    res = cli(server, "status")
    assert res.returncode == 0 and "hello" in res.stdout and "5/5" in res.stdout
    doc = json.loads(cli(server, "status", "1", "--json").stdout)
    assert doc["workflow"]["state"] == "succeeded"
    assert {a["state"] for a in doc["activities"]} == {"succeeded"}
    by_name = cli(server, "status", "hello")
    assert by_name.returncode == 0 and "report" in by_name.stdout
    assert cli(server, "status", "999").returncode == 2
    logs = cli(server, "logs", "1", "report")
    assert logs.returncode == 0 and "first upper: ALPHA" in logs.stdout
    missing = cli(server, "logs", "1", "nope")
    assert missing.returncode == 2 and "has no activity nope" in missing.stderr
    # The server and the token from the environment instead of flags.
    env = {"AKOFLOW_SERVER": server.url, "AKOFLOW_API_TOKEN": server.token}
    res = cli(server, "runtimes", flags=False, **env)
    assert res.returncode == 0 and "local" in res.stdout and "READY" in res.stdout
    rows = json.loads(cli(server, "runtimes", "--json", flags=False, **env).stdout)
    assert [r["name"] for r in rows] == ["local"]
    res = cli(server, "status", "1", flags=False, **env)
    assert res.returncode == 0 and "succeeded" in res.stdout


def test_follow_logs_then_cancel_from_the_client(server: Server) -> None:
    ticker = (
        "for i in 1 2 3; do echo line $i; sleep 0.3; done\nsleep 60 &\necho $! > child.pid\nwait"
    )
    wf = server.state_dir.parent / "ticker.yaml"
    wf.write_text(workflow_yaml("ticker", activity("tick", ticker)))
    res = cli(server, "submit", str(wf))
    assert res.returncode == 0 and "#1" in res.stdout
    follower = subprocess.Popen(
        [
            sys.executable, "-m", "akoflow", "logs", "1", "tick", "-f",
            "--server", server.url, "--state-dir", str(server.state_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )  # fmt: skip
    data = server.state_dir / "runs" / "1-ticker" / "data"
    wait_for(lambda: (data / "child.pid").exists() and (data / "child.pid").read_text().strip())
    child = int((data / "child.pid").read_text())
    time.sleep(1.5)  # the follower has printed the three lines by now (stored every second)
    assert follower.poll() is None  # still following: the activity runs
    res = cli(server, "cancel", "1")
    assert res.returncode == 0 and "cancel requested" in res.stdout
    out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert out == "line 1\nline 2\nline 3\n"
    wait_for(lambda: pid_gone(child), timeout=10)
    doc = json.loads(cli(server, "status", "1", "--json").stdout)
    assert doc["workflow"]["state"] == "cancelled"
    again = cli(server, "cancel", "ticker")
    assert again.returncode == 0 and "already ended" in again.stderr


def test_retry_from_the_client_and_errors(server: Server, tmp_path: Path) -> None:
    wf = tmp_path / "fixable.yaml"
    wf.write_text(workflow_yaml("fixable", activity("check", "test -f fixed")))
    assert cli(server, "submit", str(wf), "--wait").returncode == 1
    (server.state_dir / "runs" / "1-fixable" / "data" / "fixed").touch()
    res = cli(server, "retry", "1")
    assert res.returncode == 0, res.stderr + res.stdout
    assert "workflow fixable #1 succeeded" in res.stdout
    res = cli(server, "retry", "1")
    assert res.returncode == 1 and "only a failed or cancelled" in res.stderr
    bad = cli(server, "status", flags=False, AKOFLOW_SERVER=server.url, AKOFLOW_API_TOKEN="no")
    assert bad.returncode == 2 and "refused the token" in bad.stderr
    gone = cli(
        server, "status", flags=False, AKOFLOW_SERVER=f"http://127.0.0.1:{free_port()}",
        AKOFLOW_API_TOKEN="x",
    )  # fmt: skip
    assert gone.returncode == 1 and "cannot reach the server" in gone.stderr


def test_embedded_cancel_reaches_the_server_owning_the_run(server: Server) -> None:
    """`akoflow cancel ID --state-dir` without --server: the request goes through the store
    and SIGUSR1 to the owning process, here the server."""
    wf = server.state_dir.parent / "nap.yaml"
    wf.write_text(workflow_yaml("nap", activity("nap", "echo $$ > nap.pid\nsleep 60")))
    assert cli(server, "submit", str(wf)).returncode == 0
    pid_file = server.state_dir / "runs" / "1-nap" / "data" / "nap.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    res = cli(server, "cancel", "1", "--state-dir", str(server.state_dir), flags=False)
    assert res.returncode == 0 and f"pid {server.proc.pid}" in res.stdout  # type: ignore[union-attr]
    wait_for(lambda: pid_gone(int(pid_file.read_text())), timeout=15)
    wait_for(
        lambda: (
            json.loads(cli(server, "status", "1", "--json").stdout)["workflow"]["state"]
            == "cancelled"
        ),
        timeout=15,
    )
