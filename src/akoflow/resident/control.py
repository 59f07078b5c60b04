"""``akoflow resident start | stop | status``: the resident server of this state dir."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from akoflow.config import is_engine_secret
from akoflow.errors import AkoflowError
from akoflow.resident import wire

DEFAULT_IDLE_SECONDS = 30 * 60.0
START_SECONDS = 60.0  # the server imports the engine first: ~0.3 s here, more on a busy node


class ResidentError(AkoflowError, RuntimeError):
    """The resident server could not be started or asked."""


def ask(directory: str, what: str) -> dict[str, Any] | None:
    """The server's answer to a control request, or None when none listens there."""
    path = os.path.join(directory, wire.SOCKET_NAME)
    try:
        sock = wire.connect(path, timeout=10.0)
    except OSError:
        return None
    try:
        if wire.peer_uid(sock) != os.getuid():  # another user's: not ours to ask or stop
            return None
        wire.send(sock, {"control": what})
        reply, _ = wire.receive(sock)
        return reply
    except (OSError, wire.WireError):
        return None
    finally:
        sock.close()


def start(directory: str, idle_seconds: float) -> dict[str, Any]:
    """Start the server (it answers before this returns); ResidentError if one runs already
    or it could not start (with the end of its log)."""
    # The server runs in /: a relative $AKOFLOW_HOME is the command's, from its directory.
    directory = os.path.abspath(directory)
    running = ask(directory, "status")
    if running is not None:
        raise ResidentError(f"a resident engine runs already (process {running['pid']})")
    # The state dir too, private as every command makes it (os.makedirs gives parents 755);
    # through a symlink that points nowhere yet, as a command follows it.
    try:
        for path in (os.path.dirname(directory), directory):
            os.makedirs(os.path.realpath(path), mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ResidentError(f"cannot create {directory}: {exc.strerror or exc}") from None
    log_path = os.path.join(directory, wire.LOG_NAME)
    # Its copies' start-up environment block is its own: no secret may be in it (see
    # akoflow.secret_handoff); each command hands over its own environment, secrets with it.
    env = {k: v for k, v in os.environ.items() if not is_engine_secret(k)}
    ready_r, ready_w = os.pipe()
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "akoflow.resident.server",
                    "--dir",
                    directory,
                    "--idle",
                    str(idle_seconds),
                    "--ready-fd",
                    str(ready_w),
                ],
                cwd="/",
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=[ready_w],
                start_new_session=True,
            )
        finally:
            os.close(ready_w)
    try:
        said = _read_line(ready_r, START_SECONDS)
    finally:
        os.close(ready_r)
    if not said.startswith("ready"):
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reason = said.removeprefix("error: ").strip() or f"it ended with code {proc.returncode}"
        raise ResidentError(f"the resident engine did not start: {reason} (log: {log_path})")
    status = ask(directory, "status")
    if status is None:
        proc.kill()  # none can reach it: it must not linger
        proc.wait()
        raise ResidentError(f"the resident engine started but does not answer (log: {log_path})")
    return status


def stop(directory: str, wait_seconds: float) -> dict[str, Any] | None:
    """Ask the server to stop (it lets the commands it runs end first); wait up to
    ``wait_seconds`` for it to leave. None when none was running."""
    reply = ask(directory, "stop")
    if reply is None:
        return None
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline and _alive(int(reply["pid"])):
        time.sleep(0.05)
    reply["left"] = not _alive(int(reply["pid"]))
    return reply


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie of ours is gone for this purpose
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return False


def _read_line(fd: int, seconds: float) -> str:
    import select

    data = b""
    deadline = time.monotonic() + seconds
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return "error: no answer in time"
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace")
