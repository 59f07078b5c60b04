"""Keep runtime secrets out of the engine's initial environment block.

Any process of the same user can read another's start-up environment
(``/proc/PID/environ``), and an activity is a child of the engine: a script could print
``/proc/$PPID/environ`` into its log and hand over every cluster token and SSH key the engine
was started with. So a command started with such secrets in its environment execs itself again
without them, handing them over through an anonymous in-memory file (``memfd``) whose
descriptor number travels in :data:`HANDOFF_VAR`. The new image reads and closes it and puts the
values back into ``os.environ``, which is process memory, not the start-up block that
``/proc/PID/environ`` shows. Activities never get them (see
:func:`akoflow.config.activity_environ`).

Costs one interpreter start-up (~0.1 s), only when secrets are present.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from akoflow.config import is_engine_secret
from akoflow.errors import AkoflowError

HANDOFF_VAR = "AKOFLOW_SECRETS_FD"
MAX_HANDOFF_BYTES = 16 << 20
MEMFD_NAME = "akoflow-secrets"

log = logging.getLogger(__name__)


class HandoffError(AkoflowError, RuntimeError):
    """The handed-over secrets could not be read."""


def secret_names(environ: dict[str, str] | os._Environ[str]) -> list[str]:
    return sorted(k for k in environ if is_engine_secret(k))


_block_clean = False  # True: this process's environment block never held a secret


def started_without_secrets() -> None:
    """Say that this process's start-up environment block holds no secret whatever
    ``os.environ`` holds now: a resident engine's copy of itself, whose block is the server's
    (started without them), takes the command's environment into ``os.environ`` only."""
    global _block_clean
    _block_clean = True


def reexec_without_secrets() -> None:
    """Exec this program again without its secrets in the environment block (no return on
    success); does nothing when there are none or this is already the re-executed image."""
    if _block_clean or HANDOFF_VAR in os.environ or not hasattr(os, "memfd_create"):
        return
    names = secret_names(os.environ)
    if not names:
        return
    payload = json.dumps({k: os.environ[k] for k in names}).encode()
    fd = os.memfd_create(MEMFD_NAME, 0)  # inherited across exec on purpose
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        env = {k: v for k, v in os.environ.items() if k not in names}
        env[HANDOFF_VAR] = str(fd)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os.execve(sys.executable, sys.orig_argv, env)
    except OSError as exc:  # cannot exec: go on with the secrets where they are
        os.close(fd)
        log.warning("cannot re-execute without secrets in the environment: %s", exc)


def _handed_over_fd(raw: str) -> int:
    """The descriptor ``raw`` names, if it is the in-memory file a previous image of this
    process handed over (never a terminal, a pipe or a standard stream set by hand)."""
    problem = f"{HANDOFF_VAR}={raw!r} is not a hand-over from akoflow itself; unset it"
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6 or int(raw) < 3:
        raise HandoffError(problem)
    fd = int(raw)
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        raise HandoffError(problem) from None
    if not target.startswith(f"/memfd:{MEMFD_NAME} "):
        raise HandoffError(problem)
    return fd


def receive_secrets() -> None:
    """In the re-executed image: take the secrets back from the handed-over descriptor."""
    raw = os.environ.pop(HANDOFF_VAR, None)
    if raw is None:
        return
    fd = _handed_over_fd(raw)
    try:
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_HANDOFF_BYTES:
                raise HandoffError(f"{HANDOFF_VAR}: more than {MAX_HANDOFF_BYTES} bytes")
        values = json.loads(b"".join(chunks))
    except (OSError, ValueError) as exc:
        raise HandoffError(f"cannot read the secrets handed over in {HANDOFF_VAR}: {exc}") from None
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    if not isinstance(values, dict):
        raise HandoffError(f"{HANDOFF_VAR}: not a mapping of names to values")
    for key, value in values.items():
        if isinstance(key, str) and isinstance(value, str):
            os.environ[key] = value


__all__ = ["HANDOFF_VAR", "HandoffError", "receive_secrets", "reexec_without_secrets"]
