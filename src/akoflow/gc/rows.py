"""A run's rows deleted in batches, on a connection of its own (called in a worker thread).

One transaction for a run of a million log rows held the store's write lock for seconds, and
ran on the server's event loop. Here the big tables go ``BATCH`` rows per short transaction,
leaves first, each batch checking again that the run may go (a retry may reopen it
meanwhile); an engine writing in between waits for one batch at most. The workflow's row goes
last, in the transaction that records what the run left on runtimes (``gc_remote``) and
cascades to the few rows left (activities, dependencies, notification events...).

A ``gc_deleting`` mark, written first, goes with the workflow's row: a deletion killed half
way leaves a finished run with the mark, whose deletion the next gc finishes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from akoflow.gc.records import why_not
from akoflow.store.repository import busy_timeout_ms

BATCH = 10_000  # rows per transaction: tens of milliseconds of write lock
MAX_PAUSE = 0.1  # s between batches, at most

_ACTIVITIES = "SELECT id FROM activities WHERE workflow_id = :wf"
_FILES = f"SELECT id FROM files WHERE activity_id IN ({_ACTIVITIES})"
# (table, which of its rows are the run's), leaves before what they refer to.
CHILDREN: tuple[tuple[str, str], ...] = (
    ("file_derivations", f"generated_id IN ({_FILES})"),
    ("logs", f"activity_id IN ({_ACTIVITIES})"),
    ("metrics", f"activity_id IN ({_ACTIVITIES})"),
    ("placements", f"activity_id IN ({_ACTIVITIES})"),
    ("cache_entries", "workflow_id = :wf"),
    ("files", f"activity_id IN ({_ACTIVITIES})"),
    ("initial_files", "workflow_id = :wf"),
    (
        "ambiguous_candidates",
        "file_id IN (SELECT id FROM ambiguous_files WHERE workflow_id = :wf)",
    ),
    ("ambiguous_files", "workflow_id = :wf"),
    ("data_replicas", "workflow_id = :wf"),
    ("data_copies", "workflow_id = :wf"),
    ("attempts", f"activity_id IN ({_ACTIVITIES})"),
)

Left = Iterable[tuple[str, str, str, Sequence[str]]]


def connect(path: str) -> sqlite3.Connection:
    """A connection of its own to the store, used by one thread at a time."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms()}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def pause(held: float) -> None:
    """Leave the write lock free as long as it was held: SQLite's waiting writers poll it
    (every few ms, then every 100 ms), never queue for it, so batch after batch without a
    gap starved an engine's writes (seconds behind the lock)."""
    time.sleep(min(held, MAX_PAUSE))


def _refused(conn: sqlite3.Connection, wf_id: int) -> str | None:
    row = conn.execute(
        "SELECT state, owner_pid, owner_started FROM workflows WHERE id = ?", (wf_id,)
    ).fetchone()
    if row is None:
        return "it no longer exists"
    return why_not(row[0], row[1], row[2])


def delete_run(path: str, wf_id: int, left: Left, *, batch: int = BATCH) -> str | None:
    """Delete the run's rows (see the module's text); None, or why it was not deleted (then
    the rows deleted so far stay deleted, and the mark goes)."""
    conn = connect(path)
    try:
        with transaction(conn):
            if (refused := _refused(conn, wf_id)) is not None:
                return refused
            conn.execute(
                "INSERT OR IGNORE INTO gc_deleting (workflow_id, started_at) VALUES (?, ?)",
                (wf_id, time.time()),
            )
        for table, which in CHILDREN:
            sql = (
                f"DELETE FROM {table} WHERE rowid IN "
                f"(SELECT rowid FROM {table} WHERE {which} LIMIT :n)"
            )
            while True:
                began = time.monotonic()
                with transaction(conn):
                    if (refused := _refused(conn, wf_id)) is not None:
                        conn.execute("DELETE FROM gc_deleting WHERE workflow_id = ?", (wf_id,))
                        return refused
                    gone = conn.execute(sql, {"wf": wf_id, "n": batch}).rowcount
                if gone < batch:
                    break
                pause(time.monotonic() - began)
        with transaction(conn):
            return _last(conn, wf_id, left)
    finally:
        conn.close()


def _last(conn: sqlite3.Connection, wf_id: int, left: Left) -> str | None:
    """The workflow's row, with the record of what the run ``left`` on runtimes ((runtime,
    scope, namespace, nodes) each), once more checking that it may go."""
    row = conn.execute(
        "SELECT name, state, owner_pid, owner_started FROM workflows WHERE id = ?", (wf_id,)
    ).fetchone()
    if row is None:
        return "it no longer exists"
    if (refused := why_not(row[1], row[2], row[3])) is not None:
        conn.execute("DELETE FROM gc_deleting WHERE workflow_id = ?", (wf_id,))
        return refused
    now = time.time()
    for runtime, scope, namespace, nodes in left:
        conn.execute(
            "INSERT INTO gc_remote (workflow_id, workflow_name, runtime, scope, namespace, "
            "nodes, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (runtime, scope, workflow_id) DO NOTHING",
            (wf_id, row[0], runtime, scope, namespace, json.dumps(list(nodes)), now),
        )
    # Sent notifications of the run go with it; pending ones are sent still.
    conn.execute(
        "DELETE FROM notify_deliveries WHERE workflow_id = ? "
        "AND (delivered_at IS NOT NULL OR given_up_at IS NOT NULL)",
        (wf_id,),
    )
    conn.execute("DELETE FROM workflows WHERE id = ?", (wf_id,))
    return None


__all__ = ["BATCH", "CHILDREN", "connect", "delete_run", "pause", "transaction"]
