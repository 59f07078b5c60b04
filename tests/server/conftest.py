"""The real server as a subprocess (`python -m akoflow server`) on a free port, and helpers to
talk to it over HTTP with httpx."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import cli_env

API = "/akoflow-api"
HEALTH = "/akoflow-server/check-service/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def workflow_yaml(name: str, *activities: str) -> str:
    """``activities`` are YAML blocks of one activity each, indented for the list."""
    return f"name: {name}\nspec:\n  activities:\n" + "".join(activities)


def activity(name: str, run: str, *, depends: list[str] | None = None, extra: str = "") -> str:
    body = "".join(f"        {line}\n" for line in run.splitlines())
    deps = f"      dependsOn: [{', '.join(depends)}]\n" if depends else ""
    return f"    - name: {name}\n      run: |\n{body}{deps}{extra}"


@dataclass
class Server:
    state_dir: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""
    logs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        n = len(self.logs)
        out = self.state_dir.parent / f"server-{self.port}-{n}.out"
        err = self.state_dir.parent / f"server-{self.port}-{n}.err"
        self.logs += [out, err]
        argv = [sys.executable, "-m", "akoflow", "server", "--port", str(self.port)]
        argv += ["--state-dir", str(self.state_dir)]
        with out.open("wb") as fo, err.open("wb") as fe:
            self.proc = subprocess.Popen(argv, stdout=fo, stderr=fe, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + HEALTH, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        else:
            raise AssertionError("server did not come up:\n" + self.output())
        self.token = self.env.get("AKOFLOW_API_TOKEN") or (
            (self.state_dir / "api-token").read_text().strip()
        )

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token or self.token}"},
            timeout=60,
        )


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start a real server on a fresh state dir (``**env`` added to its environment)."""
    started: list[Server] = []

    def start(state_dir: Path | None = None, **env: str) -> Server:
        server = Server(
            state_dir=state_dir or tmp_path / f"state{len(started)}",
            port=free_port(),
            env=cli_env(**env),
        )
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc is not None:
            server.stop()


@pytest.fixture
def server(start_server: Callable[..., Server]) -> Server:
    return start_server()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for a whole test module (starting one costs about a second). Its tests
    submit the same workflows again and again and look at what ran: result caching (tested
    in tests/cache) would reuse them, so it is off here."""
    server = Server(
        state_dir=tmp_path_factory.mktemp("server") / "state",
        port=free_port(),
        env=cli_env(AKOFLOW_CACHE="off"),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def api(shared_server: Server) -> Iterator[httpx.Client]:
    with shared_server.client() as client:
        yield client


def submit(api: httpx.Client, text: str, path: str = API + "/workflows/") -> int:
    res = api.post(path, json={"workflow": b64(text)})
    assert res.status_code == 200, res.text
    return int(res.json()["workflow_id"])


def wait_workflow(
    api: httpx.Client, wf_id: int, timeout: float = 60.0, until: str = "final"
) -> dict[str, Any]:
    """Poll until the workflow is final (or in state ``until``); its upstream-shaped doc."""
    deadline = time.monotonic() + timeout
    while True:
        res = api.get(f"{API}/workflows/{wf_id}/")
        assert res.status_code == 200, res.text
        doc: dict[str, Any] = res.json()["data"]
        final = doc["state"] in ("succeeded", "failed", "cancelled")
        if (until == "final" and final) or doc["state"] == until:
            return doc
        if time.monotonic() > deadline:
            raise AssertionError(f"workflow {wf_id} still {doc['state']}")
        time.sleep(0.1)


def activity_states(doc: dict[str, Any]) -> dict[str, str]:
    return {a["name"]: a["state"] for a in doc["spec"]["activities"]}


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie (not reaped yet) is gone for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].startswith("Z")
    except OSError:
        return True
