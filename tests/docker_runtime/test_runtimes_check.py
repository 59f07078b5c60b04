"""``akoflow runtimes check docker`` through the real CLI: the private daemon passes every
step; a socket nobody listens on fails the reachability step with its fix, exit 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def check(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "akoflow", "runtimes", "check", "docker", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return proc.returncode, json.loads(proc.stdout)


def test_the_private_daemon_passes_every_step(docker_env: dict[str, str]) -> None:
    code, report = check(docker_env)
    assert code == 0, report
    assert report["ok"] is True and report["steps"], report
    assert all(s["status"] == "ok" for s in report["steps"]), report


def test_a_dead_socket_fails_with_its_fix(docker_env: dict[str, str], tmp_path: Path) -> None:
    env = {**docker_env, "DOCKER_HOST": f"unix://{tmp_path / 'nobody.sock'}"}
    code, report = check(env)
    assert code == 1
    failed = [s for s in report["steps"] if s["status"] == "failed"]
    assert failed and failed[0]["fix"], report
    assert "nobody.sock" in failed[0]["detail"], failed[0]
