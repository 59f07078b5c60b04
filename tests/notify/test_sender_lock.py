"""The webhook sender takes the database's write lock only when a delivery is due: it took
it at every pass, on the event loop, which then waited for any long write of another
connection (a big workflow being stored: seconds)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from akoflow import service
from akoflow.notify import store


def test_nothing_due_is_found_while_another_connection_writes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    repo = service.open_repository(state)
    writer = sqlite3.connect(repo.path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a long write elsewhere: the lock held
    found: list[object] = []
    try:
        thread = threading.Thread(
            target=lambda: found.append(store.lease_due(repo, time.time(), 60.0, 4))
        )
        thread.start()
        thread.join(10)
        assert found == [[]], "the sender waited for the other connection's write lock"
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        thread.join()
        repo.close()
