"""A server never asks keyboard-interactive (MFA) questions on the terminal it was started
from, even when it has one: started on a pseudo-terminal (its controlling terminal), with an
HPC runtime whose sshd asks a PAM question after the key (pam_wrapper), the runtime is
misconfigured with the reason, work sent to it fails with that reason, no question shows on
the terminal, and the line typed there stays unread."""

from __future__ import annotations

import fcntl
import os
import secrets
import select
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import cli_env
from tests.hpc_runtime.conftest import runtime_env
from tests.hpc_runtime.test_hpc_ssh_setup import known_hosts
from tests.server.conftest import API, HEALTH, b64, free_port
from tests.slurm_support.cluster import SlurmCluster

TYPED = b"424242\n"


class PtyServer:
    """``akoflow server`` on a new pseudo-terminal; what it writes there is collected."""

    def __init__(self, env: dict[str, str], state_dir: Path) -> None:
        self.port = free_port()
        self.token = secrets.token_hex(16)
        master, self.slave = os.openpty()
        self.master = master
        argv = [sys.executable, "-m", "akoflow", "server", "--port", str(self.port),
                "--state-dir", str(state_dir)]  # fmt: skip

        def controlling_terminal() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            argv, stdin=self.slave, stdout=self.slave, stderr=self.slave, start_new_session=True,
            env={**env, "AKOFLOW_API_TOKEN": self.token}, preexec_fn=controlling_terminal,
        )  # fmt: skip
        self.output = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                if not select.select([self.master], [], [], 0.2)[0]:
                    if self.proc.poll() is not None:
                        return
                    continue
                chunk = os.read(self.master, 65536)
            except OSError:  # the terminal closed
                return
            if not chunk:
                return
            self.output += chunk

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_up(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output.decode(errors="replace")
            try:
                if httpx.get(self.url + HEALTH, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError("server did not come up:\n" + self.output.decode(errors="replace"))

    def unread_input(self) -> int:
        """Bytes typed on the terminal that nobody has read yet."""
        buf = fcntl.ioctl(self.slave, termios.FIONREAD, struct.pack("i", 0))
        return int(struct.unpack("i", buf)[0])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def mfa_sshd(slurm_cluster: SlurmCluster) -> Iterator[Any]:
    sshd = slurm_cluster.pam_sshd(answer="424242")
    sshd.write_config(slurm_cluster.host_key, slurm_cluster.root / "authorized_keys")
    sshd.start()
    try:
        yield sshd
    finally:
        sshd.stop()


def test_the_server_never_asks_on_its_terminal(
    slurm_cluster: SlurmCluster, mfa_sshd: Any, tmp_path: Path
) -> None:
    known = known_hosts(slurm_cluster, mfa_sshd.port, tmp_path)
    env = cli_env(**runtime_env(slurm_cluster, "hpc", "mount/server-mfa",
                                PORT=str(mfa_sshd.port), KNOWN_HOSTS=str(known)))  # fmt: skip
    Path(env["HPC_MOUNT_PATH"]).mkdir(parents=True, exist_ok=True)
    server = PtyServer(env, tmp_path / "state")
    try:
        server.wait_up()
        os.write(server.master, TYPED)  # an answer typed ahead: the server must not take it
        headers = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as api:
            text = "name: mfa\nspec:\n  runtime: hpc\n  activities:\n"
            text += "    - name: a\n      run: 'true'\n"
            res = api.post(API + "/workflows/", json={"workflow": b64(text)})
            assert res.status_code == 200, res.text
            wf_id = res.json()["workflow_id"]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                doc = api.get(f"{API}/workflows/{wf_id}/").json()["data"]
                if doc["state"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.2)
            assert doc["state"] == "failed", doc["state"]
            (act,) = doc["spec"]["activities"]
            runtimes = api.get(API + "/runtimes/").json()["data"]
        (hpc,) = [r for r in runtimes if r["name"] == "hpc"]
        assert hpc["state"] == "NOT_READY"
        assert "asks keyboard-interactive questions" in hpc["reason"], hpc
        assert "no terminal to ask them on" in hpc["reason"], hpc
        detail = str(act)
        assert "keyboard-interactive" in detail, detail
        shown = server.output.decode(errors="replace")
        assert "asks for keyboard-interactive login" not in shown, shown
        assert "Password:" not in shown, shown
        assert server.unread_input() == len(TYPED)  # the typed line is still there, unread
        assert mfa_sshd.logins("keyboard-interactive/pam") == 0
    finally:
        server.close()
