"""``GET /akoflow-api/runtimes/{name}/check`` on a real server, and ``akoflow runtimes check
--server``: the server checks its own runtime; token-protected, secrets masked, an unknown
name is a 404 (exit 2), a failing step exits 1."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from tests.conftest import cli_env
from tests.server.conftest import API, Server


def test_check_route_and_the_cli_against_it(start_server: Callable[..., Server]) -> None:
    server = start_server(LOCAL_CGROUPS="off", SINGULARITY_BINARY="/nonexistent/apptainer",
                          DOCKER_API_TOKEN="tok-s3cr3t")  # fmt: skip
    with server.client() as api:
        res = api.get(API + "/runtimes/local/check")
        assert res.status_code == 200, res.text
        report = res.json()["data"]
        assert report["ok"] is True and report["kind"] == "local"
        assert [s["name"] for s in report["steps"]] == ["settings", "bash", "cgroups"]
        assert "off (LOCAL_CGROUPS=off)" in report["steps"][2]["detail"]
        res = api.get(API + "/runtimes/nosuch/check")
        assert res.status_code == 404 and "unknown runtime 'nosuch'" in res.json()["detail"]
        res = api.get(API + "/runtimes/docker/check", params={"image": "busybox"})
        assert res.status_code == 200 and "tok-s3cr3t" not in res.text
        assert res.json()["data"]["settings"]["DOCKER_API_TOKEN"] == "***"
    with server.client(token="wrong") as bad:
        assert bad.get(API + "/runtimes/local/check").status_code == 401

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "akoflow", "runtimes", "check", *args]
        argv += ["--server", server.url, "--state-dir", str(server.state_dir)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=cli_env())

    ok = cli("local")
    assert ok.returncode == 0 and "✓" in ok.stdout and "all 3 checks passed" in ok.stdout
    missing = cli("singularity")
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert "✗" in missing.stdout and "/nonexistent/apptainer not found" in missing.stdout
    assert "SINGULARITY_BINARY" in missing.stdout
    assert cli("nosuch").returncode == 2
