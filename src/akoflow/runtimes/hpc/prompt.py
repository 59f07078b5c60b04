"""Answers to an SSH server's keyboard-interactive questions (MFA codes, passwords asked by
PAM): asked on this process's terminal, once per login, or not at all.

:func:`default_prompter` asks on the controlling terminal when standard input is one (``akoflow
run`` in a shell); a server, a CI job or anything started without a terminal gets None, and the
login then fails with a reason that says so instead of waiting for an answer that cannot come.
:func:`use` replaces that choice for the whole process (None: never ask).

Nothing typed is logged or kept: the answers go to asyncssh and are dropped.
"""

from __future__ import annotations

import asyncio
import os
import select
import sys
import termios
import threading
from collections.abc import Awaitable, Callable, Sequence

from akoflow import terminal

Prompts = Sequence[tuple[str, bool]]  # (prompt, echo the answer)
Prompter = Callable[[str, str, str, Prompts], Awaitable[list[str]]]
"""``(where, name, instructions, prompts) -> answers``; raises TimeoutError when nobody
answered in :data:`ANSWER_TIMEOUT`."""

ANSWER_TIMEOUT = 120.0  # sshd's LoginGraceTime: longer would be cut by the server anyway
_UNSET = object()
_chosen: object = _UNSET
_terminal = threading.Lock()  # one question on the terminal at a time, whichever runtime asks


def use(prompter: Prompter | None) -> None:
    """Ask with ``prompter`` from now on (None: never ask; logins that need answers fail)."""
    global _chosen
    _chosen = prompter


def default_prompter() -> Prompter | None:
    """The prompter :func:`use` chose, else the terminal's when standard input is one."""
    if _chosen is not _UNSET:
        return _chosen  # type: ignore[return-value]
    try:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):  # closed or detached stdin
        interactive = False
    return ask_on_terminal if interactive else None


async def ask_on_terminal(where: str, name: str, instructions: str, prompts: Prompts) -> list[str]:
    """Ask ``prompts`` on the terminal (/dev/tty, or the one a resident engine's command
    passed: akoflow.terminal); answers not echoed unless the server allows it."""
    return await asyncio.to_thread(_ask, where, name, instructions, list(prompts))


def _ask(where: str, name: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
    with _terminal:
        fd = terminal.open_terminal()
        try:
            header = f"\r\n{where} asks for keyboard-interactive login"
            header += f" ({name})" if name else ""
            _write(fd, header + ":\r\n" + (f"{instructions.strip()}\r\n" if instructions else ""))
            return [_answer(fd, text, echo) for text, echo in prompts]
        finally:
            os.close(fd)


def _write(fd: int, text: str) -> None:
    data = text.encode(errors="replace")
    while data:
        data = data[os.write(fd, data) :]


def _answer(fd: int, text: str, echo: bool) -> str:
    old = termios.tcgetattr(fd)
    if not echo:  # before the question shows: an answer typed at once is not echoed either
        new = list(old)
        new[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSANOW, new)
    try:
        _write(fd, text)
        line = _read_line(fd, ANSWER_TIMEOUT)
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, old)
        if not echo:
            _write(fd, "\r\n")
    return line


def _read_line(fd: int, timeout: float) -> str:
    """One line from the terminal; TimeoutError when none came within ``timeout``."""
    loop_deadline = _now() + timeout
    data = b""
    while not data.endswith(b"\n"):
        left = loop_deadline - _now()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError("no answer")
        chunk = os.read(fd, 1024)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").rstrip("\r\n")


def _now() -> float:
    import time

    return time.monotonic()
