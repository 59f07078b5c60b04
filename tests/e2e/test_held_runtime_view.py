"""A NOT_READY runtime that holds work, as `akoflow run` and `akoflow status` show it: its
reason and for how long, through the real CLI. The runtime is an HPC one whose login node
refuses connections (a closed port: transient, so the work is held) until its
READY_TIMEOUT fails the work."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import cli_env, start_cli


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed


def test_run_and_status_show_the_held_runtime_with_reason_and_time(tmp_path: Path) -> None:
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    known = tmp_path / "known_hosts"
    known.write_text("")
    port = closed_port()
    env = cli_env(
        HPC_HOST_CLUSTER="127.0.0.1", HPC_PORT=str(port), HPC_USER="nobody",
        HPC_MOUNT_PATH="/tmp/akoflow-held", HPC_KEY_FILE=str(key),
        HPC_KNOWN_HOSTS=str(known), HPC_SSH_CONFIG_FILE="none", HPC_READY_TIMEOUT="4",
        HPC_RECONNECT_MAX="0.5",
    )  # fmt: skip
    wf = tmp_path / "held.yaml"
    wf.write_text(
        "name: held\nspec:\n  runtime: hpc\n  activities:\n"
        "    - name: a\n      run: echo a\n    - name: b\n      run: echo b\n"
    )
    state = tmp_path / "state"
    run = start_cli(["run", str(wf), "--state-dir", str(state)], env)
    shown = ""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and run.poll() is None:
            status = subprocess.run(
                [sys.executable, "-m", "akoflow", "status", "held", "--state-dir", str(state)],
                capture_output=True, text=True, env=env, timeout=30,
            )  # fmt: skip
            if "NOT_READY" in status.stdout:
                shown = status.stdout
                break
            time.sleep(0.2)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    # status, from another process: the runtime, for how long, what it holds and why.
    assert "⏸ runtime hpc NOT_READY for " in shown, shown
    assert "holding 2 activities" in shown and "Connect call failed" in shown, shown
    # run (no terminal: one line when the runtime starts holding work), then READY_TIMEOUT.
    assert run.returncode == 1, out + err
    assert "⏸ runtime hpc NOT_READY" in out and "holding 2 activities" in out, out
    assert f"127.0.0.1:{port}" in out and "Connect call failed" in out, out
    assert "HPC_READY_TIMEOUT=4" in out, out
