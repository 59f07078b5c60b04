"""Activities cannot read the engine's secrets through its start-up environment.

Any process of the same user may read ``/proc/PID/environ``. A local activity is a child of
its runtime's spawner, whose environment is empty, and a grandchild of the engine; the engine
execs itself again without its secrets at start (handing them over through a memfd), so
neither the activity's own environment nor its ancestors' hold them, while the engine itself
still has them (the runtime config shows the redacted key).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Akoflow, cli_env
from tests.server.conftest import API, Server, submit, wait_workflow

SECRET = "s3cr3t-value-for-environ-test"
SECRETS = {
    "HPC_X_SSHKEYPRIVK": SECRET + "-ssh",
    "K8S_Y_TOKEN": SECRET + "-k8s",
    "LOCAL_PASSWORD": SECRET + "-pw",
}
# Prints the engine's start-up environment (the parent of its parent, the spawner), the
# spawner's, then its own, NUL-separated, and the engine's open memfds (none may remain: the
# handed-over secrets are read and closed).
PROBE = (
    "name: probe\nspec:\n  activities:\n    - name: peek\n      run: |\n"
    "        engine=$(awk '/^PPid:/ {print $2}' /proc/$PPID/status)\n"
    "        tr '\\0' '\\n' < /proc/$engine/environ\n"
    "        echo ---\n"
    "        tr '\\0' '\\n' < /proc/$PPID/environ\n"
    "        echo ---\n"
    "        env\n"
    "        echo ---\n"
    "        ls -l /proc/$engine/fd | grep -c memfd || true\n"
)


def test_cli_engine_environment_holds_no_secrets(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    wf = tmp_path / "probe.yaml"
    wf.write_text(PROBE)
    env = cli_env(**SECRETS, MARKER_VISIBLE="yes-visible")
    res = akoflow("run", str(wf), "--quiet", env=env)
    assert res.returncode == 0, res.stderr
    res = akoflow("logs", "1", "peek", env=cli_env())
    assert res.returncode == 0, res.stderr
    engine, spawner, own, memfds = res.stdout.split("---\n")
    # The probe read real environments: the user's own variable is in the engine's and the
    # activity's; the spawner's is empty.
    assert "MARKER_VISIBLE=yes-visible" in engine
    assert "MARKER_VISIBLE=yes-visible" in own
    assert spawner == ""
    assert SECRET not in res.stdout
    assert "AKOFLOW_SECRETS_FD" not in own  # only a descriptor number, and not passed on
    assert memfds.strip() == "0"
    assert SECRET not in res.stderr


def test_server_environment_holds_no_secrets(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    token = "api-" + SECRET
    server = start_server(**SECRETS, AKOFLOW_API_TOKEN=token, MARKER_VISIBLE="yes-visible")
    assert server.proc is not None
    # The server's own start-up environment, read as any same-user process could.
    environ = Path(f"/proc/{server.proc.pid}/environ").read_bytes()
    assert b"MARKER_VISIBLE=yes-visible" in environ
    assert SECRET.encode() not in environ
    with server.client() as api:  # the token still works: the server got it back
        wf_id = submit(api, PROBE)
        doc = wait_workflow(api, wf_id)
        assert doc["state"] == "succeeded"
        res = api.get(f"{API}/workflows/{wf_id}/activities/peek/logs/")
        assert res.status_code == 200
        assert "MARKER_VISIBLE=yes-visible" in res.text
        assert SECRET not in res.text
    server.stop()
    assert SECRET not in server.output()
    assert os.environ.get("AKOFLOW_SECRETS_FD") is None


def test_a_hand_set_secrets_fd_is_refused_cleanly(akoflow: Akoflow, tmp_path: Path) -> None:
    # Only the in-memory file akoflow hands to itself is read: never a standard stream (that
    # would read a terminal, or close stderr), a huge number or another open file.
    other = tmp_path / "not-secrets.json"
    other.write_text('{"HPC_X_SSHKEYPRIVK": "planted"}')
    for value in ("99999999999999999999", "2", "0", "1", "-1", "abc", "", "7"):
        res = akoflow("status", env=cli_env(AKOFLOW_SECRETS_FD=value))
        assert res.returncode == 2, (value, res.stdout, res.stderr)
        assert "is not a hand-over from akoflow itself" in res.stderr, value
        assert "Traceback" not in res.stderr
    with other.open() as f:
        fd = str(f.fileno())
        res = subprocess.run(
            [sys.executable, "-m", "akoflow", "status", "--state-dir", str(tmp_path / "s")],
            env=cli_env(AKOFLOW_SECRETS_FD=fd),
            capture_output=True,
            text=True,
            pass_fds=(f.fileno(),),
            timeout=60,
        )
    assert res.returncode == 2 and "not a hand-over" in res.stderr
