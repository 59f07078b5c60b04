"""``akoflow runtimes check`` of a Kubernetes runtime against the emulated API server, through
the real CLI: a good setup passes every step; a wrong token fails the token step, a wrong CA
the TLS step, each with its fix, exit 1, the token never shown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import trustme

from tests.conftest import cli_env
from tests.k8s_support.cluster import EmulatedCluster


def check(env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "akoflow", "runtimes", "check", "k8s", "--json"],
        capture_output=True,
        text=True,
        env=cli_env(**env),
        timeout=60,
    )
    return proc.returncode, json.loads(proc.stdout), proc.stdout + proc.stderr


def steps(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {s["name"]: s for s in report["steps"]}


def test_a_good_setup_passes_every_step(cluster: EmulatedCluster) -> None:
    code, report, output = check(cluster.env("k8s"))
    assert code == 0, report
    assert report["ok"] is True
    assert [s["name"] for s in report["steps"]][:4] == ["settings", "API server", "TLS", "token"]
    assert all(s["status"] == "ok" for s in report["steps"]), report
    assert cluster.token not in output


def test_a_wrong_token_fails_the_token_step(cluster: EmulatedCluster) -> None:
    code, report, output = check(cluster.env("k8s", API_SERVER_TOKEN="not-the-token"))
    assert code == 1
    token = steps(report)["token"]
    assert token["status"] == "failed" and "401" in token["detail"], token
    assert "K8S_API_SERVER_TOKEN" in token["fix"]
    assert "not-the-token" not in output


def test_a_wrong_ca_fails_the_tls_step(cluster: EmulatedCluster, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    other.write_bytes(trustme.CA().cert_pem.bytes())
    code, report, _ = check(cluster.env("k8s", CA_FILE=str(other)))
    assert code == 1
    tls = steps(report)["TLS"]
    assert tls["status"] == "failed" and "not trusted" in tls["detail"], tls
    assert "K8S_CA_FILE" in tls["fix"]
