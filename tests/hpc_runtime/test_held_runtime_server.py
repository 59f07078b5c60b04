"""A NOT_READY runtime holding work, as a server shows it: in ``GET /workflows/{id}/``
(``holds``), in ``akoflow status ID --server URL`` (text and ``--json``) and in ``akoflow status
ID --json`` read from the server's state dir. The runtime is an HPC one whose login node
refuses connections (a closed port: transient, so the work is held, not failed)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import cli_env
from tests.server.conftest import API, Server, start_server, submit  # noqa: F401  (fixture)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed


def test_status_through_the_server_shows_the_held_runtime(
    start_server: Callable[..., Server],  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (tmp_path / "known_hosts").write_text("")
    port = closed_port()
    server = start_server(
        HPC_HOST_CLUSTER="127.0.0.1", HPC_PORT=str(port), HPC_USER="nobody",
        HPC_MOUNT_PATH="/tmp/akoflow-held", HPC_KEY_FILE=str(key),
        HPC_KNOWN_HOSTS=str(tmp_path / "known_hosts"), HPC_SSH_CONFIG_FILE="none",
        HPC_RECONNECT_MAX="0.5",
    )  # fmt: skip
    text = (
        "name: held\nspec:\n  runtime: hpc\n  activities:\n"
        "    - name: a\n      run: echo a\n    - name: b\n      run: echo b\n"
    )
    with server.client() as api:
        wf_id = submit(api, text)
        deadline = time.monotonic() + 30
        holds: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not holds:
            doc = api.get(f"{API}/workflows/{wf_id}/").json()["data"]
            holds = doc["holds"]
            time.sleep(0.2)
        assert doc["state"] in ("pending", "running"), doc["state"]
        (hold,) = holds
        assert (hold["runtime"], hold["activities"]) == ("hpc", 2), hold
        assert "Connect call failed" in hold["reason"] and f"127.0.0.1:{port}" in hold["reason"]
        assert hold["notReadyFor"] is not None and hold["notReadyFor"] >= 0
        listed = api.get(f"{API}/workflows/").json()["data"]
        (row,) = [w for w in listed if w["id"] == wf_id]
        assert [h["runtime"] for h in row["holds"]] == ["hpc"]  # the list shows it too

    def status(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "akoflow", "status", str(wf_id), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                              env=cli_env(COLUMNS="300"))  # fmt: skip

    via_server = ["--server", server.url, "--state-dir", str(server.state_dir)]
    shown = status(*via_server)
    assert shown.returncode == 0, shown.stderr
    assert "⏸ runtime hpc NOT_READY for " in shown.stdout, shown.stdout
    assert "holding 2 activities" in shown.stdout and "Connect call failed" in shown.stdout
    for args in (via_server, ["--state-dir", str(server.state_dir)]):  # the server's, the store's
        as_json = status(*args, "--json")
        assert as_json.returncode == 0, as_json.stderr
        (hold,) = json.loads(as_json.stdout)["holds"]
        assert (hold["runtime"], hold["activities"]) == ("hpc", 2), (args, hold)
        assert "Connect call failed" in hold["reason"] and hold["not_ready_for"] >= 0, hold
    server.stop()
