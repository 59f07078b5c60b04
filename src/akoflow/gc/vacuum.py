"""Giving a database's free pages back to the file system without holding the engine up.

A database made by this version has ``auto_vacuum=INCREMENTAL``: deleted rows leave free
pages that ``PRAGMA incremental_vacuum(N)`` returns N at a time, each step a short write
transaction between which the engine writes as usual. A database made by an older version
(``auto_vacuum=NONE``) needs one full ``VACUUM`` first (``akoflow gc --compact``), which
rewrites the whole file and holds the write lock meanwhile: run it while no engine runs.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass

from akoflow.gc.rows import MAX_PAUSE, connect
from akoflow.store import Repository

STEP_PAGES = 256  # 1 MiB of 4 KiB pages per step: a few milliseconds of write lock
INCREMENTAL = 2


@dataclass(frozen=True, slots=True)
class Pages:
    free: int
    size: int
    auto_vacuum: int

    @property
    def free_bytes(self) -> int:
        return self.free * self.size


def pages(db: Repository | sqlite3.Connection) -> Pages:
    run = db._exec if isinstance(db, Repository) else db.execute
    free = run("PRAGMA freelist_count").fetchone()[0]
    size = run("PRAGMA page_size").fetchone()[0]
    mode = run("PRAGMA auto_vacuum").fetchone()[0]
    return Pages(int(free), int(size), int(mode))


def step(conn: sqlite3.Connection, count: int = STEP_PAGES) -> int:
    """Return up to ``count`` free pages; how many went."""
    before = pages(conn).free
    # A script: execute() steps a statement that returns no row once, which gives back one
    # page (a transaction per page); a script's statements are stepped to their end.
    try:
        conn.executescript(f"BEGIN IMMEDIATE; PRAGMA incremental_vacuum({int(count):d}); COMMIT;")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return before - pages(conn).free


async def give_back(repo: Repository, *, count: int = STEP_PAGES) -> int:
    """Every free page back, a step at a time, each in a worker thread on a connection of
    its own (the event loop and the engine's store lock stay free); the bytes returned.
    Nothing with a database an older version made (see :func:`compact`)."""
    conn = await asyncio.to_thread(connect, repo.path)
    try:
        found = await asyncio.to_thread(pages, conn)
        if found.auto_vacuum != INCREMENTAL:
            return 0
        freed = 0
        while True:
            began = time.monotonic()
            gone = await asyncio.to_thread(step, conn, count)
            freed += gone
            if gone == 0 or (await asyncio.to_thread(pages, conn)).free == 0:
                return freed * found.size
            await asyncio.sleep(min(time.monotonic() - began, MAX_PAUSE))  # see rows.pause
    finally:
        conn.close()


def compact(repo: Repository) -> int:
    """One full VACUUM that also turns ``auto_vacuum=INCREMENTAL`` on (an older database's
    one-time step); the bytes the file shrank by (its free pages)."""
    before = pages(repo)
    repo._exec("PRAGMA auto_vacuum = INCREMENTAL")
    repo._exec("VACUUM")
    return before.free_bytes


__all__ = ["Pages", "compact", "give_back", "pages", "step"]
