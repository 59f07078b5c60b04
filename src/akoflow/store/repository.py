"""SQLite repository: every read and write of engine state goes through :class:`Repository`.

WAL mode with ``synchronous=NORMAL``: a commit survives the engine being killed (SIGKILL) because
the WAL lives in the OS page cache; only a power loss can drop the last commits, and then the
runtime reconciliation (by deterministic attempt keys) still prevents duplicate runs.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from akoflow.provenance.names import display, encoded, from_db, to_db
from akoflow.spec import Workflow
from akoflow.states import ActivityState, WorkflowState
from akoflow.store.migrate import migrate

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000  # how long a statement waits for another process's write lock


def busy_timeout_ms() -> int:
    """``AKOFLOW_STORE_BUSY_MS``, else :data:`BUSY_TIMEOUT_MS`: how long a statement waits
    for another process's lock on the database before it fails ("database is locked")."""
    raw = os.environ.get("AKOFLOW_STORE_BUSY_MS", "").strip()
    if not raw:
        return BUSY_TIMEOUT_MS
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        what = "AKOFLOW_STORE_BUSY_MS=%r is not a number of milliseconds: %d it is"
        log.warning(what, raw, BUSY_TIMEOUT_MS)
        return BUSY_TIMEOUT_MS
    return value


class Rows:
    """A statement's whole result, read while the connection's lock was held. A cursor
    handed out half read would keep a read transaction open on the shared connection: a
    ``BEGIN IMMEDIATE`` from another thread then fails at once with "database is locked"
    (SQLite skips its busy handler rather than risk a deadlock) whenever another process
    writes."""

    __slots__ = ("_rows", "_next", "rowcount", "lastrowid")

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._rows: list[Any] = cur.fetchall()
        self._next = 0
        self.rowcount: int = cur.rowcount
        self.lastrowid: int | None = cur.lastrowid

    def fetchone(self) -> Any:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[Any]:
        rest, self._next = self._rows[self._next :], len(self._rows)
        return rest

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


@dataclass(frozen=True, slots=True)
class WorkflowRecord:
    """A stored run."""

    id: int
    name: str
    namespace: str
    state: WorkflowState
    spec_yaml: str
    spec_hash: str
    source: str | None
    data_dir: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    owner_pid: int | None
    owner_started: float | None
    cancel_requested: bool


@dataclass(frozen=True, slots=True)
class ActivityRecord:
    """A stored activity of a run."""

    id: int
    workflow_id: int
    position: int
    name: str
    runtime: str
    image: str | None
    state: ActivityState
    attempt: int
    max_attempts: int
    exit_code: int | None
    reason: str | None
    node: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """A stored attempt of an activity."""

    id: int
    activity_id: int
    number: int
    state: str
    runtime: str
    handle: dict[str, Any]
    node: str | None
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    exit_code: int | None
    reason: str | None
    cpu_seconds: float | None
    max_rss_bytes: int | None
    stop_reason: str | None = None  # 'timeout' or 'cancel': the engine asked it to stop


@dataclass(frozen=True, slots=True)
class RuntimeRecord:
    """A runtime's last known health."""

    name: str
    kind: str
    status: str
    reason: str | None
    config: dict[str, str]
    checked_at: float | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A runtime's node as last seen."""

    runtime: str
    name: str
    status: str
    cpu_capacity: float | None
    memory_capacity: int | None
    cpu_usage: float | None
    memory_usage: int | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class PlacementRecord:
    """Where an attempt was placed, and by which policy."""

    activity_id: int
    activity: str
    attempt: int
    runtime: str
    policy: str
    node: str | None
    alpha: float | None
    candidates: list[dict[str, Any]]
    decided_at: float


class _Located:
    """A file version in the data dir or, with a ``location``, on a remote runtime."""

    __slots__ = ()
    path: str
    location: str
    """'' for the engine's data dir, else the remote runtime's location (``hpc:/scratch/x``)."""

    @property
    def qualified_path(self) -> str:
        """The path relative to the data dir, or ``<location>/<path>`` (in memory form: see
        :mod:`akoflow.provenance.names`)."""
        return f"{self.location}/{self.path}" if self.location else self.path

    @property
    def display_path(self) -> str:
        """:attr:`qualified_path` for people (valid Unicode, escapes where not plain text)."""
        return display(self.qualified_path)

    @property
    def encoded_path(self) -> str:
        """:attr:`qualified_path`'s bytes percent-encoded: lossless, URI-safe."""
        return encoded(self.qualified_path)


@dataclass(frozen=True, slots=True)
class InitialFile(_Located):
    """A file a run found in place before it started."""

    path: str
    size: int
    mtime: float
    sha256: str | None
    location: str = ""


@dataclass(frozen=True, slots=True)
class FileRecord(_Located):
    """A file an attempt used or generated (provenance)."""

    activity_id: int
    activity: str
    attempt: int
    role: str  # "used" | "generated"
    path: str
    size: int
    mtime: float
    sha256: str | None
    location: str = ""


@dataclass(frozen=True, slots=True)
class Candidate:
    """An attempt that may have generated an ambiguous file version."""

    activity_id: int
    activity: str
    attempt: int


@dataclass(frozen=True, slots=True)
class AmbiguousFile(_Located):
    """A file version no attempt can be said to have generated: ``candidates`` may have
    (see :mod:`akoflow.provenance`); ``reason`` says why it is not decided."""

    path: str
    size: int
    mtime: float
    sha256: str | None
    reason: str
    candidates: tuple[Candidate, ...]
    location: str = ""


@dataclass(frozen=True, slots=True)
class Replica:
    """What a remote location holds of a run's file (see migration 0009)."""

    location: str
    path: str
    size: int
    sha256: str | None  # None: written there by an activity, not yet hashed
    fresh: bool  # newer than the engine host's copy
    activity_id: int | None  # the activity that wrote it there (fresh ones)
    mtime: float | None = None  # the remote listing's time of this version, when known
    stamp: int | None = None  # the location's stamp of the file right after a copy (inode, ctime)
    recorded_at: float | None = None  # when an activity's write there was recorded (fresh)


@dataclass(frozen=True, slots=True)
class DataCopy:
    """A verified copy of a file from one location to another ('' = the engine host)."""

    activity_id: int | None
    path: str
    source: str
    destination: str
    bytes: int
    sha256: str
    started_at: float
    ended_at: float


@dataclass(frozen=True, slots=True)
class LogChunk:
    """A piece of an attempt's stdout or stderr."""

    attempt: int
    stream: str
    offset: int
    data: str


_WF_COLS = (
    "id, name, namespace, state, spec_yaml, spec_hash, source, data_dir, created_at, "
    "started_at, finished_at, owner_pid, owner_started, cancel_requested"
)
_ACT_COLS = (
    "id, workflow_id, position, name, runtime, image, state, attempt, max_attempts, exit_code, "
    "reason, node, created_at, started_at, finished_at"
)
_ATT_COLS = (
    "id, activity_id, number, state, runtime, handle, node, submitted_at, started_at, "
    "finished_at, exit_code, reason, cpu_seconds, max_rss_bytes, stop_reason"
)


def _workflow(row: sqlite3.Row) -> WorkflowRecord:
    return WorkflowRecord(
        id=row[0],
        name=row[1],
        namespace=row[2],
        state=WorkflowState(row[3]),
        spec_yaml=row[4],
        spec_hash=row[5],
        source=row[6],
        data_dir=row[7],
        created_at=row[8],
        started_at=row[9],
        finished_at=row[10],
        owner_pid=row[11],
        owner_started=row[12],
        cancel_requested=bool(row[13]),
    )


def _activity(row: sqlite3.Row) -> ActivityRecord:
    return ActivityRecord(
        id=row[0],
        workflow_id=row[1],
        position=row[2],
        name=row[3],
        runtime=row[4],
        image=row[5],
        state=ActivityState(row[6]),
        attempt=row[7],
        max_attempts=row[8],
        exit_code=row[9],
        reason=row[10],
        node=row[11],
        created_at=row[12],
        started_at=row[13],
        finished_at=row[14],
    )


def _attempt(row: sqlite3.Row) -> AttemptRecord:
    return AttemptRecord(
        id=row[0],
        activity_id=row[1],
        number=row[2],
        state=row[3],
        runtime=row[4],
        handle=json.loads(row[5]) if row[5] else {},
        node=row[6],
        submitted_at=row[7],
        started_at=row[8],
        finished_at=row[9],
        exit_code=row[10],
        reason=row[11],
        cpu_seconds=row[12],
        max_rss_bytes=row[13],
        stop_reason=row[14],
    )


_OPEN: weakref.WeakSet[Repository] = weakref.WeakSet()


def close_all() -> None:
    """Close every repository still open (a process about to leave without the interpreter's
    teardown, which would have closed them)."""
    for repo in list(_OPEN):
        repo.close()


class Repository:
    """All persistence of the engine. One instance per process; thread-safe via a lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._make_private(self.path)
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()
        self._savepoints: list[bool] = []  # open savepoint blocks: taken yet (first write)
        self._depth = 0
        _OPEN.add(self)
        try:
            self._prepare()
        except BaseException:  # a damaged or foreign file: leave nothing open behind
            self.close()
            raise

    def _prepare(self) -> None:
        c = self._conn
        c.execute(f"PRAGMA busy_timeout = {busy_timeout_ms()}")
        # Before WAL, which writes a new file's header: a new database gives deleted runs'
        # pages back in small steps (akoflow.gc.vacuum); an older one needs `gc --compact`.
        c.execute("PRAGMA auto_vacuum = INCREMENTAL")
        c.execute("PRAGMA journal_mode = WAL")
        c.execute("PRAGMA synchronous = NORMAL")
        c.execute("PRAGMA foreign_keys = ON")
        migrate(c, self.path)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        _OPEN.discard(self)

    @contextmanager
    def aside(self) -> Iterator[Repository]:
        """A repository on a connection of its own to the same database, for one long write
        (a big workflow's insert) that this one's users (a server's event loop) must not
        wait for: with WAL they read meanwhile, and only their writes wait. This one when
        that cannot be (an in-memory database, or a transaction of this thread open here:
        the other connection would wait for it for ever)."""
        # Not waited for: held by another thread, the lock says this one is in no block.
        inside = False
        if self._lock.acquire(blocking=False):
            try:
                inside = self._depth > 0 or bool(self._savepoints)
            finally:
                self._lock.release()
        if inside or self.path == ":memory:":
            yield self
            return
        other = Repository(self.path)
        try:
            yield other
        finally:
            other.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one commit; nests (only the outermost commits)."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                # In a savepoint block outside any transaction, the block is taken first, so
                # this BEGIN fails before any write, as it did when blocks were taken at once:
                # else the COMMIT below stored the block's writes (a raise did not undo them)
                # and released its savepoint under it (its end failed).
                self._take_savepoints()
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                try:
                    self._conn.execute("COMMIT")
                except BaseException:
                    # A commit refused for room (SQLITE_FULL) is rolled back by SQLite; one
                    # refused otherwise may stay open, and a later COMMIT stored its writes
                    # with the next transaction's (which its engine believed undone).
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Within a transaction: if the block raises, undo only its own writes (the rest of
        the transaction stands). Used for bookkeeping that must never cost the run. Taken
        at the block's first write only: most blocks write nothing (the provenance of an
        attempt that touched no file), and two statements per block were a tenth of a
        short activity's store work."""
        with self._lock:
            self._savepoints.append(False)
            level = len(self._savepoints) - 1
            try:
                yield
            except BaseException:
                if self._savepoints[level]:
                    self._conn.execute("ROLLBACK TO akoflow_block")
                    self._conn.execute("RELEASE akoflow_block")
                raise
            else:
                if self._savepoints[level]:
                    self._conn.execute("RELEASE akoflow_block")
            finally:
                del self._savepoints[level:]

    def _before_write(self, sql: str) -> None:
        """Take the savepoints the statement ``sql`` is in that are not taken yet (outer
        first); a read needs none."""
        if self._savepoints and not self._savepoints[-1] and not sql.startswith("SELECT"):
            self._take_savepoints()

    def _take_savepoints(self) -> None:
        for level, taken in enumerate(self._savepoints):
            if not taken:
                self._conn.execute("SAVEPOINT akoflow_block")
                self._savepoints[level] = True

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        with self._lock:
            self._before_write(sql)
            return Rows(self._conn.execute(sql, params))

    def _execmany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._lock:
            self._before_write(sql)
            self._conn.executemany(sql, rows)

    # ----------------------------------------------------------------- workflows

    def skip_workflow_ids(self, used: int) -> None:
        """Make the next workflow id greater than ``used``."""
        with self.transaction():
            self._exec(
                "UPDATE sqlite_sequence SET seq = ? WHERE name = 'workflows' AND seq < ?",
                (used, used),
            )
            self._exec(
                "INSERT INTO sqlite_sequence (name, seq) SELECT 'workflows', ? WHERE NOT EXISTS "
                "(SELECT 1 FROM sqlite_sequence WHERE name = 'workflows')",
                (used,),
            )

    def create_workflow(
        self,
        workflow: Workflow,
        *,
        spec_yaml: str,
        spec_hash: str,
        source: str | None,
        runs_root: Path,
        data_dir: Path | None = None,
    ) -> int:
        """Store a validated workflow, its activities and dependencies; returns its id.

        The data dir defaults to ``runs_root/<id>-<name>/data``: it needs the id, so it is set
        in the same transaction.
        """
        now = time.time()
        with self.transaction():
            cur = self._exec(
                "INSERT INTO workflows (name, namespace, state, spec_yaml, spec_hash, source, "
                "data_dir, created_at) VALUES (?, ?, ?, ?, ?, ?, '', ?)",
                (
                    workflow.name,
                    workflow.namespace,
                    WorkflowState.PENDING.value,
                    spec_yaml,
                    spec_hash,
                    source,
                    now,
                ),
            )
            wf_id = int(cur.lastrowid or 0)
            data = data_dir or runs_root / f"{wf_id}-{workflow.name}" / "data"
            self._exec("UPDATE workflows SET data_dir = ? WHERE id = ?", (str(data), wf_id))
            pending = ActivityState.PENDING.value
            self._execmany(
                "INSERT INTO activities (workflow_id, position, name, runtime, image, state, "
                "max_attempts, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (wf_id, i, a.name, a.runtime, a.image, pending, a.retries + 1, now)
                    for i, a in enumerate(workflow.activities)
                ),
            )
            # AUTOINCREMENT ids of one executemany are consecutive in a single writer txn,
            # but read them back rather than rely on it.
            ids = dict(
                self._exec("SELECT name, id FROM activities WHERE workflow_id = ?", (wf_id,))
            )
            self._execmany(
                "INSERT INTO dependencies (workflow_id, activity_id, depends_on_id) "
                "VALUES (?, ?, ?)",
                (
                    (wf_id, ids[a.name], ids[dep])
                    for a in workflow.activities
                    for dep in dict.fromkeys(a.depends_on)
                ),
            )
        return wf_id

    def get_workflow(self, wf_id: int) -> WorkflowRecord | None:
        row = self._exec(f"SELECT {_WF_COLS} FROM workflows WHERE id = ?", (wf_id,)).fetchone()
        return _workflow(row) if row else None

    @staticmethod
    def _workflow_filter(unfinished_only: bool, name: str | None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if unfinished_only:
            clauses.append("state NOT IN (?, ?, ?)")
            params += [
                WorkflowState.SUCCEEDED.value,
                WorkflowState.FAILED.value,
                WorkflowState.CANCELLED.value,
            ]
        if name is not None:
            clauses.append("name = ?")
            params.append(name)
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), params

    def list_workflows(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        unfinished_only: bool = False,
        name: str | None = None,
    ) -> list[WorkflowRecord]:
        """Newest first."""
        where, params = self._workflow_filter(unfinished_only, name)
        rows = self._exec(
            f"SELECT {_WF_COLS} FROM workflows {where} ORDER BY id DESC LIMIT ? OFFSET ?",
            (*params, limit, offset),
        ).fetchall()
        return [_workflow(r) for r in rows]

    def count_workflows(self, *, unfinished_only: bool = False, name: str | None = None) -> int:
        where, params = self._workflow_filter(unfinished_only, name)
        return int(self._exec(f"SELECT COUNT(*) FROM workflows {where}", params).fetchone()[0])

    def unfinished_workflow_ids(self) -> list[int]:
        """Every workflow not in a final state, oldest first (what a restarted server resumes)."""
        rows = self._exec(
            "SELECT id FROM workflows WHERE state IN (?, ?) ORDER BY id",
            (WorkflowState.PENDING.value, WorkflowState.RUNNING.value),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def delete_workflow(self, wf_id: int) -> bool:
        """Remove a workflow with its activities, attempts, logs and metrics (ON DELETE
        CASCADE). The caller makes sure it is finished; False if there was no such id."""
        with self.transaction():
            cur = self._exec("DELETE FROM workflows WHERE id = ?", (wf_id,))
        return cur.rowcount == 1

    def delete_unstarted(self, wf_id: int) -> bool:
        """Remove a run no process owns that never began (pending, not one attempt): a
        submission stored and then refused. False when it is not such a run."""
        with self.transaction():
            cur = self._exec(
                "DELETE FROM workflows WHERE id = ? AND owner_pid IS NULL AND state = ? "
                "AND NOT EXISTS (SELECT 1 FROM activities a JOIN attempts t "
                "ON t.activity_id = a.id WHERE a.workflow_id = workflows.id)",
                (wf_id, WorkflowState.PENDING.value),
            )
        return cur.rowcount == 1

    def find_unfinished(self, *, spec_hash: str) -> WorkflowRecord | None:
        """The newest unfinished run of exactly this workflow file, if any."""
        row = self._exec(
            f"SELECT {_WF_COLS} FROM workflows WHERE spec_hash = ? AND state IN (?, ?) "
            "ORDER BY id DESC LIMIT 1",
            (spec_hash, WorkflowState.PENDING.value, WorkflowState.RUNNING.value),
        ).fetchone()
        return _workflow(row) if row else None

    def claim_workflow(
        self,
        wf_id: int,
        *,
        pid: int,
        started: float,
        expect_pid: int | None,
        expect_started: float | None,
    ) -> bool:
        """Compare-and-set the owning engine process; False if someone else claimed it first."""
        cur = self._exec(
            "UPDATE workflows SET owner_pid = ?, owner_started = ? WHERE id = ? "
            "AND owner_pid IS ? AND owner_started IS ?",
            (pid, started, wf_id, expect_pid, expect_started),
        )
        return cur.rowcount == 1

    def release_workflow(self, wf_id: int, *, pid: int) -> None:
        self._exec(
            "UPDATE workflows SET owner_pid = NULL, owner_started = NULL "
            "WHERE id = ? AND owner_pid = ?",
            (wf_id, pid),
        )

    def set_workflow_state(
        self,
        wf_id: int,
        state: WorkflowState,
        *,
        started_at: float | None = None,
        finished_at: float | None = None,
    ) -> None:
        self._exec(
            "UPDATE workflows SET state = ?, started_at = COALESCE(?, started_at), "
            "finished_at = ? WHERE id = ?",
            (state.value, started_at, finished_at, wf_id),
        )

    def request_cancel(self, wf_id: int, requested: bool = True) -> None:
        self._exec(
            "UPDATE workflows SET cancel_requested = ? WHERE id = ?", (int(requested), wf_id)
        )

    # ---------------------------------------------------------------- activities

    def list_activities(self, wf_id: int) -> list[ActivityRecord]:
        rows = self._exec(
            f"SELECT {_ACT_COLS} FROM activities WHERE workflow_id = ? ORDER BY position",
            (wf_id,),
        ).fetchall()
        return [_activity(r) for r in rows]

    def list_activities_page(
        self,
        wf_id: int,
        *,
        limit: int,
        offset: int = 0,
        after: int | None = None,
        state: ActivityState | None = None,
    ) -> list[ActivityRecord]:
        """One page in position order, on the (workflow_id, position) index: ``after`` is a
        keyset cursor (the last position seen), so deep pages cost the same as the first."""
        sql = f"SELECT {_ACT_COLS} FROM activities WHERE workflow_id = ?"
        params: list[Any] = [wf_id]
        if after is not None:
            sql += " AND position > ?"
            params.append(after)
        if state is not None:
            sql += " AND state = ?"
            params.append(state.value)
        sql += " ORDER BY position LIMIT ? OFFSET ?"
        rows = self._exec(sql, (*params, limit, offset)).fetchall()
        return [_activity(r) for r in rows]

    def count_activities(self, wf_id: int, state: ActivityState | None = None) -> int:
        """On the (workflow_id, state) index: a few ms for 100,000 activities."""
        if state is None:
            row = self._exec("SELECT COUNT(*) FROM activities WHERE workflow_id = ?", (wf_id,))
        else:
            row = self._exec(
                "SELECT COUNT(*) FROM activities WHERE workflow_id = ? AND state = ?",
                (wf_id, state.value),
            )
        return int(row.fetchone()[0])

    def get_activity(self, wf_id: int, name: str) -> ActivityRecord | None:
        row = self._exec(
            f"SELECT {_ACT_COLS} FROM activities WHERE workflow_id = ? AND name = ?",
            (wf_id, name),
        ).fetchone()
        return _activity(row) if row else None

    def longest_activity(self, wf_id: int) -> str | None:
        """Name of the finished activity that took longest (upstream's workflow metric)."""
        row = self._exec(
            "SELECT name FROM activities WHERE workflow_id = ? AND started_at IS NOT NULL "
            "AND finished_at IS NOT NULL ORDER BY finished_at - started_at DESC LIMIT 1",
            (wf_id,),
        ).fetchone()
        return str(row[0]) if row else None

    def dependency_names(self, wf_id: int) -> list[tuple[str, str]]:
        """(activity, depends_on) name pairs of a workflow, in activity order."""
        rows = self._exec(
            "SELECT a.name, b.name FROM dependencies d "
            "JOIN activities a ON a.id = d.activity_id "
            "JOIN activities b ON b.id = d.depends_on_id "
            "WHERE d.workflow_id = ? ORDER BY a.position, b.position",
            (wf_id,),
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def list_dependencies(self, wf_id: int) -> list[tuple[int, int]]:
        """(activity_id, depends_on_id) pairs of a workflow."""
        rows = self._exec(
            "SELECT activity_id, depends_on_id FROM dependencies WHERE workflow_id = ?", (wf_id,)
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def status_picks(self, wf_id: int, limit: int) -> list[ActivityRecord]:
        """Up to ``limit`` activities in position order: those not succeeded first, then
        succeeded ones (what `akoflow status ID` shows of a big run, read without loading
        the other rows)."""
        succeeded = ActivityState.SUCCEEDED.value
        rows = self._exec(
            f"SELECT {_ACT_COLS} FROM activities WHERE workflow_id = ? AND state != ? "
            "ORDER BY position LIMIT ?",
            (wf_id, succeeded, limit),
        ).fetchall()
        if len(rows) < limit:
            rows += self._exec(
                f"SELECT {_ACT_COLS} FROM activities WHERE workflow_id = ? AND state = ? "
                "ORDER BY position LIMIT ?",
                (wf_id, succeeded, limit - len(rows)),
            ).fetchall()
        return sorted((_activity(r) for r in rows), key=lambda a: a.position)

    def ready_by_runtime(self, wf_id: int) -> dict[str, int]:
        """How many READY activities of the run wait for each runtime."""
        rows = self._exec(
            "SELECT runtime, COUNT(*) FROM activities WHERE workflow_id = ? AND state = ? "
            "GROUP BY runtime",
            (wf_id, ActivityState.READY.value),
        ).fetchall()
        return {str(r): int(n) for r, n in rows}

    def activity_counts(self, wf_id: int) -> dict[ActivityState, int]:
        rows = self._exec(
            "SELECT state, COUNT(*) FROM activities WHERE workflow_id = ? GROUP BY state",
            (wf_id,),
        ).fetchall()
        return {ActivityState(r[0]): r[1] for r in rows}

    def set_activity_states(
        self,
        updates: Iterable[tuple[int, ActivityState]],
        *,
        reason: str | None = None,
        finished_at: float | None = None,
    ) -> None:
        self._execmany(
            "UPDATE activities SET state = ?, reason = COALESCE(?, reason), "
            "finished_at = COALESCE(?, finished_at) WHERE id = ?",
            ((s.value, reason, finished_at, a) for a, s in updates),
        )

    def reopen_workflow(self, wf_id: int, workflow: Workflow) -> int:
        """Retry a failed or cancelled workflow from where it stopped: its failed, cancelled
        and skipped activities go back to PENDING with a fresh attempt budget, the retries
        of ``workflow`` (its stored spec), beyond the attempts they used (succeeded ones stay
        done). Returns how many activities were reopened."""
        again = (
            ActivityState.FAILED.value,
            ActivityState.CANCELLED.value,
            ActivityState.SKIPPED.value,
        )
        pending = ActivityState.PENDING.value
        sql = (
            "UPDATE activities SET state = ?, exit_code = NULL, reason = NULL, "
            "finished_at = NULL, max_attempts = attempt + ? + 1 "
            "WHERE workflow_id = ? AND name = ? AND state IN (?, ?, ?)"
        )
        with self.transaction():  # holds the lock
            self._before_write(sql)
            cur = self._conn.executemany(
                sql,
                ((pending, a.retries, wf_id, a.name, *again) for a in workflow.activities),
            )
            self._exec(
                "UPDATE workflows SET state = ?, finished_at = NULL, cancel_requested = 0 "
                "WHERE id = ?",
                (WorkflowState.RUNNING.value, wf_id),
            )
        return cur.rowcount

    # ------------------------------------------------------------------ attempts

    def begin_attempt(
        self, activity_id: int, number: int, *, runtime: str, handle: dict[str, Any]
    ) -> None:
        """Record the intent to start attempt `number` BEFORE anything is launched."""
        self.begin_attempts([(activity_id, number)], runtime=runtime, handle=handle)

    def begin_attempts(
        self, attempts: Sequence[tuple[int, int]], *, runtime: str, handle: dict[str, Any]
    ) -> None:
        """:meth:`begin_attempt` of each (activity id, attempt number), in two statements
        (a wide run's batch: one per runtime and wake-up)."""
        now = time.time()
        handle_json = json.dumps(handle)
        with self.transaction():
            self._execmany(
                "INSERT INTO attempts (activity_id, number, state, runtime, handle, "
                "submitted_at) VALUES (?, ?, 'submitted', ?, ?, ?)",
                [
                    (activity_id, number, runtime, handle_json, now)
                    for activity_id, number in attempts
                ],
            )
            self._execmany(
                "UPDATE activities SET state = ?, attempt = ?, exit_code = NULL, "
                "started_at = COALESCE(started_at, ?) WHERE id = ?",
                [
                    (ActivityState.SUBMITTED.value, number, now, activity_id)
                    for activity_id, number in attempts
                ],
            )

    def attempt_running(
        self,
        activity_id: int,
        number: int,
        *,
        handle: dict[str, Any],
        node: str | None,
        started_at: float,
    ) -> None:
        self._exec(
            "UPDATE attempts SET state = 'running', handle = ?, node = ?, started_at = ? "
            "WHERE activity_id = ? AND number = ?",
            (json.dumps(handle), node, started_at, activity_id, number),
        )
        self._exec(
            "UPDATE activities SET state = ?, node = ? WHERE id = ?",
            (ActivityState.RUNNING.value, node, activity_id),
        )

    def attempt_finished(
        self,
        activity_id: int,
        number: int,
        *,
        attempt_state: str,
        activity_state: ActivityState,
        exit_code: int | None,
        reason: str | None,
        finished_at: float,
        handle: dict[str, Any] | None = None,
        node: str | None = None,
        started_at: float | None = None,
        cpu_seconds: float | None = None,
        max_rss_bytes: int | None = None,
    ) -> None:
        """Close an attempt and move its activity (to a final state, or READY for a retry).

        ``handle``, ``node`` and ``started_at`` fill what a RUNNING record would have held,
        for attempts that end before it was written.
        """
        self._exec(
            "UPDATE attempts SET state = ?, exit_code = ?, reason = ?, finished_at = ?, "
            "handle = COALESCE(?, handle), node = COALESCE(?, node), "
            "started_at = COALESCE(started_at, ?), "
            "cpu_seconds = ?, max_rss_bytes = ? WHERE activity_id = ? AND number = ?",
            (
                attempt_state,
                exit_code,
                reason,
                finished_at,
                json.dumps(handle) if handle else None,
                node,
                started_at,
                cpu_seconds,
                max_rss_bytes,
                activity_id,
                number,
            ),
        )
        final = activity_state.is_final
        self._exec(
            "UPDATE activities SET state = ?, exit_code = ?, reason = ?, finished_at = ?, "
            "node = COALESCE(?, node) WHERE id = ?",
            (
                activity_state.value,
                exit_code,
                reason,
                finished_at if final else None,
                node,
                activity_id,
            ),
        )

    def attempt_lost(self, activity_id: int, number: int, *, reason: str) -> None:
        """An attempt provably never ran (lost in a crash before launch): it costs no retry."""
        self._exec(
            "UPDATE attempts SET state = 'lost', reason = ?, finished_at = ? "
            "WHERE activity_id = ? AND number = ?",
            (reason, time.time(), activity_id, number),
        )
        self._exec(
            "UPDATE activities SET state = ?, max_attempts = max_attempts + 1 WHERE id = ?",
            (ActivityState.READY.value, activity_id),
        )

    def list_attempts(self, activity_id: int) -> list[AttemptRecord]:
        rows = self._exec(
            f"SELECT {_ATT_COLS} FROM attempts WHERE activity_id = ? ORDER BY number",
            (activity_id,),
        ).fetchall()
        return [_attempt(r) for r in rows]

    def activities_that_ran(self, wf_id: int) -> set[str]:
        """Names of the workflow's activities with an attempt that started or finished."""
        rows = self._exec(
            "SELECT DISTINCT a.name FROM activities a JOIN attempts t ON t.activity_id = a.id "
            "WHERE a.workflow_id = ? AND (t.started_at IS NOT NULL OR t.finished_at IS NOT NULL)",
            (wf_id,),
        ).fetchall()
        return {r[0] for r in rows}

    def attempt_stop_requested(self, activity_id: int, number: int, reason: str) -> None:
        """The engine is about to ask the live attempt to stop, because of ``reason``
        ('timeout' or 'cancel'); kept so that its end is judged the same after a restart."""
        self._exec(
            "UPDATE attempts SET stop_reason = ? WHERE activity_id = ? AND number = ?",
            (reason, activity_id, number),
        )

    def live_attempts(self, wf_id: int) -> list[AttemptRecord]:
        """Attempts of a workflow that were submitted or running when last recorded."""
        rows = self._exec(
            f"SELECT {', '.join('t.' + c.strip() for c in _ATT_COLS.split(','))} "
            "FROM attempts t JOIN activities a ON a.id = t.activity_id "
            "WHERE a.workflow_id = ? AND t.state IN ('submitted', 'running')",
            (wf_id,),
        ).fetchall()
        return [_attempt(r) for r in rows]

    # ---------------------------------------------------------------- logs, metrics

    def append_log(
        self, activity_id: int, attempt: int, stream: str, offset: int, data: str
    ) -> None:
        self._exec(
            "INSERT INTO logs (activity_id, attempt, stream, offset, data, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (activity_id, attempt, stream, offset, data, time.time()),
        )

    def read_logs(
        self,
        activity_id: int,
        *,
        attempt: int | None = None,
        stream: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
    ) -> list[tuple[int, LogChunk]]:
        """Log chunks in write order; `after_id` lets a follower read only what is new."""
        sql = "SELECT id, attempt, stream, offset, data FROM logs WHERE activity_id = ? AND id > ?"
        params: list[Any] = [activity_id, after_id]
        if attempt is not None:
            sql += " AND attempt = ?"
            params.append(attempt)
        if stream is not None:
            sql += " AND stream = ?"
            params.append(stream)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self._exec(sql, params).fetchall()
        return [(r[0], LogChunk(r[1], r[2], r[3], r[4])) for r in rows]

    def log_offsets(self, activity_id: int, attempt: int) -> dict[str, int]:
        """Bytes already stored per stream, to resume incremental capture after a restart."""
        rows = self._exec(
            "SELECT stream, MAX(offset + LENGTH(CAST(data AS BLOB))) FROM logs "
            "WHERE activity_id = ? AND attempt = ? GROUP BY stream",
            (activity_id, attempt),
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def add_metrics(
        self, samples: Iterable[tuple[int, int, float, float | None, int | None]]
    ) -> None:
        """Rows of (activity_id, attempt, ts, cpu_percent, memory_bytes)."""
        self._execmany(
            "INSERT INTO metrics (activity_id, attempt, ts, cpu_percent, memory_bytes) "
            "VALUES (?, ?, ?, ?, ?)",
            samples,
        )

    def read_metrics(
        self,
        activity_id: int,
        *,
        attempt: int | None = None,
        limit: int = -1,
        offset: int = 0,
    ) -> list[tuple[int, float, float | None, int | None]]:
        """Samples of (attempt, ts, cpu_percent, memory_bytes), oldest first."""
        sql = "SELECT attempt, ts, cpu_percent, memory_bytes FROM metrics WHERE activity_id = ?"
        params: list[Any] = [activity_id]
        if attempt is not None:
            sql += " AND attempt = ?"
            params.append(attempt)
        rows = self._exec(
            sql + " ORDER BY attempt, ts LIMIT ? OFFSET ?", (*params, limit, offset)
        ).fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    # ------------------------------------------------------------------ runtimes

    def upsert_runtime(
        self, name: str, *, kind: str, status: str, reason: str | None, config: dict[str, str]
    ) -> None:
        """Store a runtime's health. `config` must already be redacted: no secrets here.
        ``checked_at`` is the last check; ``updated_at`` when the status last changed (how long
        a runtime has been NOT_READY)."""
        now = time.time()
        self._exec(
            "INSERT INTO runtimes (name, kind, status, reason, config, checked_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, "
            "status = excluded.status, reason = excluded.reason, config = excluded.config, "
            "checked_at = excluded.checked_at, updated_at = CASE WHEN runtimes.status = "
            "excluded.status THEN runtimes.updated_at ELSE excluded.updated_at END",
            (name, kind, status, reason, json.dumps(config), now, now),
        )

    def list_runtimes(self) -> list[RuntimeRecord]:
        rows = self._exec(
            "SELECT name, kind, status, reason, config, checked_at, updated_at FROM runtimes "
            "ORDER BY name"
        ).fetchall()
        return [RuntimeRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6]) for r in rows]

    def get_runtime(self, name: str) -> RuntimeRecord | None:
        row = self._exec(
            "SELECT name, kind, status, reason, config, checked_at, updated_at FROM runtimes "
            "WHERE name = ?",
            (name,),
        ).fetchone()
        if row is None:
            return None
        return RuntimeRecord(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6])

    def add_placement(
        self,
        activity_id: int,
        attempt: int,
        *,
        runtime: str,
        policy: str,
        node: str | None,
        alpha: float | None,
        candidates: list[dict[str, Any]],
    ) -> None:
        self._exec(
            "INSERT INTO placements (activity_id, attempt, runtime, policy, node, alpha, "
            "candidates, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                activity_id,
                attempt,
                runtime,
                policy,
                node,
                alpha,
                json.dumps(candidates, separators=(",", ":")),
                time.time(),
            ),
        )

    def list_placements(self, workflow_id: int) -> list[PlacementRecord]:
        """Every placement decision of a workflow's activities, in decision order."""
        rows = self._exec(
            "SELECT p.activity_id, a.name, p.attempt, p.runtime, p.policy, p.node, p.alpha, "
            "p.candidates, p.decided_at FROM placements p JOIN activities a "
            "ON a.id = p.activity_id WHERE a.workflow_id = ? ORDER BY p.id",
            (workflow_id,),
        ).fetchall()
        return [
            PlacementRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]), r[8])
            for r in rows
        ]

    def placement_node(self, activity_id: int, attempt: int) -> str | None:
        """The node the placement policy chose for one attempt (None: not placed)."""
        row = self._exec(
            "SELECT node FROM placements WHERE activity_id = ? AND attempt = ? "
            "ORDER BY id DESC LIMIT 1",
            (activity_id, attempt),
        ).fetchone()
        return None if row is None else cast(str | None, row[0])

    def duration_history(self, workflow_name: str) -> dict[str, list[tuple[str | None, float]]]:
        """(node, seconds) of the succeeded attempts of every activity of earlier runs of the
        workflow ``workflow_name``, by activity name (the input of AkôScore's T)."""
        rows = self._exec(
            "SELECT a.name, t.node, t.finished_at - t.started_at FROM attempts t "
            "JOIN activities a ON a.id = t.activity_id JOIN workflows w ON w.id = a.workflow_id "
            "WHERE w.name = ? AND t.state = 'succeeded' AND t.started_at IS NOT NULL "
            "AND t.finished_at IS NOT NULL",
            (workflow_name,),
        ).fetchall()
        history: dict[str, list[tuple[str | None, float]]] = {}
        for name, node, seconds in rows:
            history.setdefault(name, []).append((node, float(seconds)))
        return history

    def add_files(
        self,
        activity_id: int,
        attempt: int,
        role: str,
        files: Iterable[tuple[str, int, float, str | None]],
        location: str = "",
    ) -> None:
        """Rows of (path, size, mtime, sha256) an attempt used or generated, in the data dir
        or at a remote ``location``. Names that are not valid UTF-8 are stored as BLOBs of
        their bytes (see :func:`akoflow.provenance.names.to_db`)."""
        where = to_db(location)
        self._execmany(
            "INSERT INTO files (activity_id, attempt, role, path, size, mtime, sha256, location) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ((activity_id, attempt, role, to_db(p), *rest, where) for p, *rest in files),
        )

    def add_initial_files(
        self,
        workflow_id: int,
        files: Iterable[tuple[str, int, float, str | None]],
        location: str = "",
    ) -> None:
        """Rows of (path, size, mtime, sha256) a run found in place before it started."""
        where = to_db(location)
        self._execmany(
            "INSERT INTO initial_files (workflow_id, location, path, size, mtime, sha256) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            ((workflow_id, where, to_db(p), *rest) for p, *rest in files),
        )

    def initial_locations(self, workflow_id: int) -> set[str]:
        """The locations whose initial files were recorded ('' = the data dir)."""
        rows = self._exec(
            "SELECT DISTINCT location FROM initial_files WHERE workflow_id = ?", (workflow_id,)
        ).fetchall()
        return {from_db(r[0]) for r in rows}

    def list_initial_files(self, workflow_id: int) -> list[InitialFile]:
        rows = self._exec(
            "SELECT path, size, mtime, sha256, location FROM initial_files WHERE workflow_id = ? "
            "ORDER BY id",
            (workflow_id,),
        ).fetchall()
        return [
            InitialFile(from_db(path), size, mtime, sha, from_db(loc))
            for path, size, mtime, sha, loc in rows
        ]

    def add_derivations(
        self, activity_id: int, attempt: int, pairs: Iterable[tuple[str, str | None]]
    ) -> None:
        """(generated path, used path or None) of an attempt in the data dir: its latest
        generated version of the path derives from its used version of the other (None: from
        nothing it read). See migration 0010."""
        latest = (
            "(SELECT MAX(id) FROM files WHERE activity_id = ? AND attempt = ? AND role = ? "
            "AND location = '' AND path = ?)"
        )
        for generated, used in pairs:
            row = [activity_id, attempt, "generated", to_db(generated)]
            if used is None:
                self._exec(
                    f"INSERT INTO file_derivations (generated_id, used_id) SELECT {latest}, NULL "
                    f"WHERE {latest} IS NOT NULL",
                    row + row,
                )
            else:
                source = [activity_id, attempt, "used", to_db(used)]
                self._exec(
                    f"INSERT INTO file_derivations (generated_id, used_id) "
                    f"SELECT {latest}, {latest} WHERE {latest} IS NOT NULL "
                    f"AND {latest} IS NOT NULL",
                    row + source + row + source,
                )

    def list_derivations(self, workflow_id: int) -> list[tuple[FileRecord, FileRecord | None]]:
        """(generated version, the used version it derives from or None) recorded exactly."""
        columns = (
            "{x}.activity_id, a.name, {x}.attempt, {x}.role, {x}.path, {x}.size, {x}.mtime, "
            "{x}.sha256, {x}.location"
        )
        rows = self._exec(
            f"SELECT {columns.format(x='g')}, u.id, {columns.format(x='u')} "
            "FROM file_derivations d JOIN files g ON g.id = d.generated_id "
            "JOIN activities a ON a.id = g.activity_id LEFT JOIN files u ON u.id = d.used_id "
            "WHERE a.workflow_id = ? ORDER BY d.rowid",
            (workflow_id,),
        ).fetchall()

        def record(values: Sequence[Any]) -> FileRecord:
            act, name, attempt, role, path, size, mtime, sha, loc = values
            return FileRecord(
                act, name, attempt, role, from_db(path), size, mtime, sha, from_db(loc)
            )

        return [(record(r[:9]), None if r[9] is None else record(r[10:])) for r in rows]

    def remove_generated(
        self, activity_id: int, attempt: int, location: str, path: str, *, mtime: float
    ) -> None:
        """Take back a version of a file an attempt was said to generate (another one turned
        out to, or may have)."""
        self._exec(
            "DELETE FROM files WHERE activity_id = ? AND attempt = ? AND role = 'generated' "
            "AND location = ? AND path = ? AND mtime = ?",
            (activity_id, attempt, to_db(location), to_db(path), mtime),
        )

    def remove_ambiguous_file(
        self, workflow_id: int, location: str, path: str, mtime: float
    ) -> None:
        """Take back an ambiguous version (its candidates changed: recorded again)."""
        self._exec(
            "DELETE FROM ambiguous_files WHERE workflow_id = ? AND location = ? AND path = ? "
            "AND mtime = ?",
            (workflow_id, to_db(location), to_db(path), mtime),
        )

    def list_files(self, workflow_id: int) -> list[FileRecord]:
        rows = self._exec(
            "SELECT f.activity_id, a.name, f.attempt, f.role, f.path, f.size, f.mtime, f.sha256, "
            "f.location FROM files f JOIN activities a ON a.id = f.activity_id "
            "WHERE a.workflow_id = ? ORDER BY f.id",
            (workflow_id,),
        ).fetchall()
        return [
            FileRecord(act, name, attempt, role, from_db(path), size, mtime, sha, from_db(loc))
            for act, name, attempt, role, path, size, mtime, sha, loc in rows
        ]

    def add_ambiguous_file(
        self,
        workflow_id: int,
        file: tuple[str, int, float, str | None],
        reason: str,
        candidates: Iterable[tuple[int, int]],
        location: str = "",
    ) -> None:
        """A file version (path, size, mtime, sha256) with the attempts (activity id,
        attempt number) that may have generated it, none of them for sure."""
        path, size, mtime, sha = file
        cur = self._exec(
            "INSERT INTO ambiguous_files (workflow_id, location, path, size, mtime, sha256, "
            "reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (workflow_id, to_db(location), to_db(path), size, mtime, sha, reason),
        )
        self._execmany(
            "INSERT OR IGNORE INTO ambiguous_candidates (file_id, activity_id, attempt) "
            "VALUES (?, ?, ?)",
            ((cur.lastrowid, act, attempt) for act, attempt in candidates),
        )

    def list_ambiguous_files(self, workflow_id: int) -> list[AmbiguousFile]:
        rows = self._exec(
            "SELECT id, path, size, mtime, sha256, reason, location FROM ambiguous_files "
            "WHERE workflow_id = ? ORDER BY id",
            (workflow_id,),
        ).fetchall()
        found: dict[int, list[Candidate]] = {row[0]: [] for row in rows}
        for file_id, act, name, attempt in self._exec(
            "SELECT c.file_id, c.activity_id, a.name, c.attempt FROM ambiguous_candidates c "
            "JOIN ambiguous_files f ON f.id = c.file_id JOIN activities a ON a.id = c.activity_id "
            "WHERE f.workflow_id = ? ORDER BY a.position, a.id, c.attempt",
            (workflow_id,),
        ).fetchall():
            found[file_id].append(Candidate(act, name, attempt))
        return [
            AmbiguousFile(from_db(path), size, mtime, sha, reason, tuple(found[i]), from_db(loc))
            for i, path, size, mtime, sha, reason, loc in rows
        ]

    def set_remote_seen(
        self,
        workflow_id: int,
        location: str,
        path: str,
        version: tuple[int, float],
        seen: float,
        final: Iterable[tuple[int, int]],
    ) -> None:
        """When the last listing that showed a remote version was taken, and the attempts
        whose listing after their command showed it (see :meth:`remote_seen`)."""
        size, mtime = version
        self._exec(
            "INSERT INTO remote_seen (workflow_id, location, path, size, mtime, seen, final) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (workflow_id, location, path, size, mtime) "
            "DO UPDATE SET seen = excluded.seen, final = excluded.final",
            (
                workflow_id,
                to_db(location),
                to_db(path),
                size,
                mtime,
                seen,
                json.dumps(sorted([a, n] for a, n in final)),
            ),
        )

    def remote_seen(
        self, workflow_id: int
    ) -> dict[tuple[str, str, int, float], tuple[float, frozenset[tuple[int, int]]]]:
        """(location, path, size, mtime) -> (seen, final) of the run's remote versions."""
        rows = self._exec(
            "SELECT location, path, size, mtime, seen, final FROM remote_seen "
            "WHERE workflow_id = ?",
            (workflow_id,),
        ).fetchall()
        return {
            (from_db(loc), from_db(path), size, mtime): (
                seen,
                frozenset((int(a), int(n)) for a, n in json.loads(final)),
            )
            for loc, path, size, mtime, seen, final in rows
        }

    def set_provenance_mechanism(self, workflow_id: int, mechanism: str) -> None:
        """How the run's file accesses are known (the latest engine to run it says)."""
        self._exec(
            "INSERT INTO provenance_mechanisms (workflow_id, mechanism) VALUES (?, ?) "
            "ON CONFLICT (workflow_id) DO UPDATE SET mechanism = excluded.mechanism",
            (workflow_id, mechanism),
        )

    def provenance_mechanism(self, workflow_id: int) -> str | None:
        row = self._exec(
            "SELECT mechanism FROM provenance_mechanisms WHERE workflow_id = ?", (workflow_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def list_nodes(self, runtime: str) -> list[NodeRecord]:
        rows = self._exec(
            "SELECT runtime, name, status, cpu_capacity, memory_capacity, cpu_usage, "
            "memory_usage, updated_at FROM nodes WHERE runtime = ? ORDER BY name",
            (runtime,),
        ).fetchall()
        return [NodeRecord(*r) for r in rows]

    def upsert_nodes(
        self,
        runtime: str,
        nodes: Iterable[tuple[str, str, float | None, int | None, float | None, int | None]],
    ) -> None:
        """Rows of (name, status, cpu_capacity, memory_capacity, cpu_usage, memory_usage)."""
        now = time.time()
        self._execmany(
            "INSERT INTO nodes (runtime, name, status, cpu_capacity, memory_capacity, cpu_usage, "
            "memory_usage, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(runtime, name) DO UPDATE SET status = excluded.status, "
            "cpu_capacity = excluded.cpu_capacity, memory_capacity = excluded.memory_capacity, "
            "cpu_usage = excluded.cpu_usage, memory_usage = excluded.memory_usage, "
            "updated_at = excluded.updated_at",
            ((runtime, *n, now) for n in nodes),
        )

    # ----------------------------------------------------------------- data plane

    def data_replicas(self, workflow_id: int) -> dict[tuple[str, str], Replica]:
        """What each remote location holds of the run's files, by (location, path)."""
        rows = self._exec(
            "SELECT location, path, size, sha256, fresh, activity_id, mtime, stamp, "
            "recorded_at FROM data_replicas WHERE workflow_id = ?",
            (workflow_id,),
        ).fetchall()
        found: dict[tuple[str, str], Replica] = {}
        for location, path, size, sha256, fresh, activity_id, mtime, stamp, at in rows:
            name = from_db(path)
            found[(location, name)] = Replica(
                location, name, int(size), sha256, bool(fresh), activity_id, mtime, stamp, at
            )
        return found

    def put_replica(self, workflow_id: int, replica: Replica) -> None:
        self._exec(
            "INSERT OR REPLACE INTO data_replicas "
            "(workflow_id, location, path, size, sha256, fresh, activity_id, mtime, stamp, "
            "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                workflow_id,
                replica.location,
                to_db(replica.path),
                replica.size,
                replica.sha256,
                int(replica.fresh),
                replica.activity_id,
                replica.mtime,
                replica.stamp,
                replica.recorded_at,
            ),
        )

    def drop_replica(self, workflow_id: int, location: str, path: str) -> None:
        """``location`` no longer holds ``path`` (an activity deleted it there)."""
        self._exec(
            "DELETE FROM data_replicas WHERE workflow_id = ? AND location = ? AND path = ?",
            (workflow_id, location, to_db(path)),
        )

    def add_data_copy(self, workflow_id: int, copy: DataCopy) -> None:
        self._exec(
            "INSERT INTO data_copies (workflow_id, activity_id, path, source, destination, "
            "bytes, sha256, started_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                workflow_id,
                copy.activity_id,
                to_db(copy.path),
                copy.source,
                copy.destination,
                copy.bytes,
                copy.sha256,
                copy.started_at,
                copy.ended_at,
            ),
        )

    def list_data_copies(self, workflow_id: int) -> list[DataCopy]:
        rows = self._exec(
            "SELECT activity_id, path, source, destination, bytes, sha256, started_at, "
            "ended_at FROM data_copies WHERE workflow_id = ? ORDER BY id",
            (workflow_id,),
        ).fetchall()
        return [DataCopy(r[0], from_db(r[1]), *r[2:]) for r in rows]

    @staticmethod
    def _make_private(path: str) -> None:
        """Create the database file readable by its owner only (0600) before SQLite opens it:
        SQLite creates the -wal and -shm files with the database file's mode. A database of
        this user that others can read is made private too (it holds logs and settings)."""
        import os
        import stat

        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return  # read-only, a directory, ...: SQLite says what is wrong when it opens it
        try:
            info = os.fstat(fd)
            if stat.S_IMODE(info.st_mode) & 0o077 and info.st_uid == os.geteuid():
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        for companion in (path + "-wal", path + "-shm"):
            try:
                info = os.stat(companion)
                if stat.S_IMODE(info.st_mode) & 0o077 and info.st_uid == os.geteuid():
                    os.chmod(companion, 0o600)
            except OSError:
                continue  # none yet: SQLite creates it with the database's mode
