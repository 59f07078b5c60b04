"""A store that cannot be written for want of room: a full disk (or a spent quota) under the
state dir.

The engine cannot go on then (its memory and its store would part: see
:mod:`akoflow.engine.loops`), but nothing is wrong with the run: what the store holds is
consistent, the running activities go on, and a new engine continues the run once there is
room again (:func:`wait_for_room`). Told apart from other store failures here, so that the
user is told what to do (free room) instead of being shown a traceback of an "internal error".
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from akoflow.room import has_room, host_short
from akoflow.runtimes.backoff import Backoff

# What a probe writes before the store is used again: more than the engine's largest batch
# writes at once (a write-ahead log of 1,000 pages between checkpoints is 4 MiB), so that a
# disk with a few pages free does not start an engine that stops again at once.
PROBE_BYTES = 4 << 20
PROBE_FIRST = 0.5  # s between probes while the disk stays full, doubled up to
PROBE_MAX = 10.0


def locked(exc: BaseException) -> str | None:
    """Another process held the database's write lock longer than the store waits
    (``AKOFLOW_STORE_BUSY_MS``): no bug, said in one line; None for any other failure."""
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return "the database is locked by another process"
    return None


def short_of_room(exc: BaseException, directory: Path) -> bool:
    """Whether ``exc``, or an error it was raised from, is a write under ``directory`` (the
    state dir) refused for want of room."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if host_short(current):
            return True
        if isinstance(current, sqlite3.Error):
            code = (getattr(current, "sqlite_errorcode", None) or 0) & 0xFF
            if code == sqlite3.SQLITE_FULL:
                return True
            # SQLite says FULL for ENOSPC only: a spent quota (EDQUOT) is an I/O error.
            if code == sqlite3.SQLITE_IOERR and not room_for_store(directory):
                return True
        current = current.__cause__ or current.__context__
    return False


def room_for_store(directory: Path) -> bool:
    """Whether the store's directory takes :data:`PROBE_BYTES` more now."""
    return has_room(str(directory), ("",), PROBE_BYTES)


async def wait_for_room(directory: Path) -> None:
    """Return once ``directory`` has room for the store again (probing less and less often)."""
    backoff = Backoff(PROBE_FIRST, PROBE_MAX)
    while not await asyncio.to_thread(room_for_store, directory):
        await asyncio.sleep(backoff.next())


__all__ = ["room_for_store", "short_of_room", "wait_for_room"]
