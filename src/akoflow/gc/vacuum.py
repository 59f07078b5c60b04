"""Giving a database's free pages back to the file system without holding the engine up.

A database made by this version has ``auto_vacuum=INCREMENTAL``: deleted rows leave free
pages that ``PRAGMA incremental_vacuum(N)`` returns N at a time, each step a short write
transaction between which the engine writes as usual. A database made by an older version
(``auto_vacuum=NONE``) needs one full ``VACUUM`` first (``akoflow gc --compact``), which
rewrites the whole file and holds the write lock meanwhile: run it while no engine runs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

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


def pages(repo: Repository) -> Pages:
    free = repo._exec("PRAGMA freelist_count").fetchone()[0]
    size = repo._exec("PRAGMA page_size").fetchone()[0]
    mode = repo._exec("PRAGMA auto_vacuum").fetchone()[0]
    return Pages(int(free), int(size), int(mode))


def step(repo: Repository, count: int = STEP_PAGES) -> int:
    """Return up to ``count`` free pages; how many went."""
    before = pages(repo).free
    with repo.transaction():
        repo._exec(f"PRAGMA incremental_vacuum({int(count):d})").fetchall()  # steps them all
    return before - pages(repo).free


async def give_back(repo: Repository, *, count: int = STEP_PAGES) -> int:
    """Every free page back, a step at a time (the event loop runs between steps); the bytes
    returned. Nothing with a database an older version made (see :func:`compact`)."""
    found = pages(repo)
    if found.auto_vacuum != INCREMENTAL:
        return 0
    freed = 0
    while True:
        gone = step(repo, count)
        freed += gone
        if gone == 0 or pages(repo).free == 0:
            return freed * found.size
        await asyncio.sleep(0)


def compact(repo: Repository) -> int:
    """One full VACUUM that also turns ``auto_vacuum=INCREMENTAL`` on (an older database's
    one-time step); the bytes the file shrank by (its free pages)."""
    before = pages(repo)
    repo._exec("PRAGMA auto_vacuum = INCREMENTAL")
    repo._exec("VACUUM")
    return before.free_bytes


__all__ = ["Pages", "compact", "give_back", "pages", "step"]
