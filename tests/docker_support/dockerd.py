"""A private Docker daemon for tests and benchmarks, and a busybox image built locally.

The daemon runs under one directory (data root, exec root, pidfile, unix socket, log) with no
bridge and no iptables, so it touches nothing of the machine's own Docker. The image is a
busybox-static rootfs put into a tarball here and ``docker import``-ed: no registry is used.

    python -m tests.docker_support.dockerd up DIR     # start, import, print DOCKER_HOST
    python -m tests.docker_support.dockerd down DIR   # stop it (by its PID)
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import docker
import docker.errors
import requests

IMAGE = "akoflow-test/busybox:1"
BUSYBOX = "/usr/bin/busybox"  # Debian busybox-static


class DockerdError(RuntimeError):
    pass


def busybox_rootfs_tar() -> bytes:
    """A rootfs with a static busybox and one symlink per applet, as a tar in memory."""
    if not os.path.exists(BUSYBOX):
        raise DockerdError(f"{BUSYBOX} not found: install Debian's busybox-static")
    applets = subprocess.run(
        [BUSYBOX, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "dev", "etc", "proc", "root", "sys", "tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, "bin/busybox")
        for applet in applets:
            if applet != "busybox":
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
        for name, text in (
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
            ("etc/group", "root:x:0:\n"),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class PrivateDockerd:
    """``dockerd`` under ``root``; :meth:`start` may be called again after :meth:`stop`
    (same data root: containers and images survive, as after a daemon restart)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.pidfile = root / "dockerd.pid"
        self.log = root / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.driver: str | None = None
        self._api: docker.APIClient | None = None

    @property
    def api(self) -> docker.APIClient:
        if self._api is None:
            self._api = docker.APIClient(base_url=self.host, version="1.41", timeout=30)
        return self._api

    def start(self, timeout: float = 30.0) -> None:
        if shutil.which("dockerd") is None:
            raise DockerdError("dockerd not found: install Debian's docker.io")
        self.root.mkdir(parents=True, exist_ok=True)
        drivers = [self.driver] if self.driver else ["overlay2", "vfs"]
        errors = []
        for driver in drivers:
            if self._start_with(driver, timeout):
                self.driver = driver
                return
            errors.append(f"--storage-driver={driver}:\n{self.log_tail()}")
        raise DockerdError("dockerd did not start:\n" + "\n".join(errors))

    def _start_with(self, driver: str, timeout: float) -> bool:
        with contextlib.suppress(OSError):
            self.socket.unlink()
        log = open(self.log, "ab")  # handed to the daemon
        self.proc = subprocess.Popen(
            [
                "dockerd",
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.pidfile),
                "-H",
                self.host,
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                f"--storage-driver={driver}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # a Ctrl-C of the test run is not the daemon's
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self.ping():
                return True
            time.sleep(0.05)
        self.stop()
        return False

    def ping(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:  # the SDK leaves a socket unclosed when the connect fails
                sock.connect(str(self.socket))
            except OSError:
                return False
        try:
            return bool(self.api.ping())
        except (requests.exceptions.RequestException, docker.errors.DockerException):
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Stop the daemon by its PID (then its managed containerd and shims, by PID)."""
        proc, self.proc = self.proc, None
        if self._api is not None:
            self._api.close()
            self._api = None
        if proc is None or proc.poll() is not None:
            return
        leftovers = self._descendants(proc.pid)
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        for pid in leftovers:  # containerd and shims, if they outlived the daemon
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    @staticmethod
    def _descendants(pid: int) -> list[int]:
        import psutil

        try:
            return [p.pid for p in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []

    def import_image(self, tag: str = IMAGE) -> str:
        repository, _, version = tag.partition(":")
        tarball = self.root / "rootfs.tar"
        tarball.write_bytes(busybox_rootfs_tar())
        self.api.import_image_from_file(str(tarball), repository=repository, tag=version or "1")
        image_id: str = self.api.inspect_image(tag)["Id"]  # type: ignore[no-untyped-call]
        return image_id

    def run_ok(self, image: str = IMAGE) -> str:
        """Run ``echo ok`` in ``image`` (no pull, no network): the daemon really runs things."""
        c = self.api.create_container(
            image,
            ["sh", "-c", "echo ok"],
            host_config=self.api.create_host_config(network_mode="none"),
        )
        try:
            self.api.start(c["Id"])
            code = self.api.wait(c["Id"], timeout=30)["StatusCode"]
            out = self.api.logs(c["Id"]).decode()
        finally:
            self.api.remove_container(c["Id"], force=True)
        if code != 0 or out.strip() != "ok":
            raise DockerdError(f"a test container did not run: exit {code}, output {out!r}")
        return out

    def containers(self, **labels: str) -> list[dict[str, object]]:
        """Containers (any state) carrying all these labels."""
        flt = [f"{k}={v}" for k, v in labels.items()]
        found: list[dict[str, object]] = self.api.containers(all=True, filters={"label": flt})
        return found

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        print(__doc__, file=sys.stderr)
        return 2
    d = PrivateDockerd(Path(argv[1]).resolve())
    if argv[0] == "up":
        d.start()
        d.import_image()
        d.run_ok()
        print(f"export DOCKER_HOST={d.host}  # dockerd pid {d.proc.pid if d.proc else '?'}")
        d.proc = None  # leave it running
        return 0
    if d.pidfile.exists():
        pid = int(d.pidfile.read_text())
        os.kill(pid, signal.SIGTERM)
        for _ in range(300):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
