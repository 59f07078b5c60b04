"""A read half taken by one thread must not make another thread's write fail at once.

Found by CI: four `akoflow run`s on one new store; an engine's notify loop logged
"database is locked" 0.1 s after start, while another process held the write lock and a
worker thread of the same engine was reading through the shared connection."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from akoflow.store import Repository


def test_a_write_waits_for_another_process_while_a_read_is_half_taken(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    repo = Repository(path)
    with repo.transaction():
        repo._exec("CREATE TABLE t (n INTEGER)")
        for n in range(50):
            repo._exec("INSERT INTO t VALUES (?)", (n,))
    # Another process's writer holds the lock for a moment.
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    try:
        half = repo._exec("SELECT n FROM t ORDER BY n")
        assert half.fetchone() is not None  # one row taken, 49 left
        with repo.transaction():  # waits for the other writer (busy handler), no error
            repo._exec("DELETE FROM t WHERE n = 0")
        assert len(half.fetchall()) == 49
    finally:
        release.join()
        other.close()
        repo.close()
    check = Repository(path)
    assert check._exec("SELECT COUNT(*) FROM t").fetchone()[0] == 49
    check.close()
