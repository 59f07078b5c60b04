"""The cache's records in the state database (migration 0011) and the lineage it reads.

Entries live in ``cache_entries``; what an earlier attempt generated is its lineage
(``files``, role ``generated``), or, for a reused one, the entry's own ``outputs``. Every
write happens inside the caller's transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from akoflow.provenance.names import decoded, encoded, from_db
from akoflow.states import ActivityState, WorkflowState
from akoflow.store import Repository

FINAL_RUNS = tuple(
    s.value for s in (WorkflowState.SUCCEEDED, WorkflowState.FAILED, WorkflowState.CANCELLED)
)
CANDIDATES = 8  # earlier entries tried per activity, newest first


@dataclass(frozen=True, slots=True)
class Output:
    """A file an entry's activity wrote, as it was when recorded."""

    path: str
    size: int
    sha256: str | None
    mtime: float


@dataclass(frozen=True, slots=True)
class Entry:
    """A row of the cache: an attempt that succeeded under a key, and what its outputs were."""

    id: int
    workflow_id: int
    activity_id: int
    attempt: int
    activity_name: str
    key: str
    fingerprint: str
    components: dict[str, str]
    reads: tuple[tuple[str, str, float], ...]  # (path in memory form, sha256, mtime)
    outputs: tuple[Output, ...] | None
    not_reusable: str | None
    data_dir: str
    run_state: str


def encode_reads(reads: Iterable[tuple[str, str, float]]) -> str:
    return json.dumps(sorted((encoded(p), sha, mtime) for p, sha, mtime in set(reads)))


def _entry(row: Sequence[Any]) -> Entry:
    outputs = None
    if row[10] is not None:
        outputs = tuple(Output(decoded(p), size, sha, 0.0) for p, size, sha in json.loads(row[10]))
    return Entry(
        id=row[0],
        workflow_id=row[1],
        activity_id=row[2],
        attempt=row[3],
        activity_name=row[4],
        key=row[5],
        fingerprint=row[6],
        components=json.loads(row[7]),
        reads=tuple((decoded(p), sha, float(mtime)) for p, sha, mtime in json.loads(row[8])),
        outputs=outputs,
        not_reusable=row[9],
        data_dir=row[11],
        run_state=row[12],
    )


PART = 500  # values bound in one IN (...): far below SQLite's limit of variables


def _parts(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), PART):
        yield values[start : start + PART]


_ENTRY_COLS = (
    "e.id, e.workflow_id, e.activity_id, e.attempt, e.activity_name, e.key, e.fingerprint, "
    "e.components, e.reads, e.not_reusable, e.outputs, w.data_dir, w.state"
)


class CacheStore:
    """Reads and writes of the cache tables, through the engine's repository (its lock and
    its transactions)."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.repo._exec(sql, params)  # one connection, one lock: the repository's

    # ------------------------------------------------------------------ runs

    def disable(self, workflow_id: int) -> None:
        """No activity of this run reuses an earlier result (``--no-cache``)."""
        self._exec(
            "INSERT OR IGNORE INTO cache_disabled (workflow_id, disabled_at) VALUES (?, ?)",
            (workflow_id, time.time()),
        )

    def disabled(self, workflow_id: int) -> bool:
        row = self._exec(
            "SELECT 1 FROM cache_disabled WHERE workflow_id = ?", (workflow_id,)
        ).fetchone()
        return row is not None

    # ------------------------------------------------------------------ entries

    def add_entry(
        self,
        *,
        workflow_id: int,
        activity_id: int,
        attempt: int,
        workflow_name: str,
        activity_name: str,
        key: str,
        fingerprint: str,
        components: dict[str, str],
        reads: Iterable[tuple[str, str, float]],
        outputs: Sequence[Output] | None = None,
        not_reusable: str | None = None,
        cached_from: int | None = None,
    ) -> None:
        self._exec(
            "INSERT OR REPLACE INTO cache_entries (workflow_id, activity_id, attempt, "
            "workflow_name, activity_name, key, fingerprint, components, reads, outputs, "
            "not_reusable, cached_from, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                workflow_id,
                activity_id,
                attempt,
                workflow_name,
                activity_name,
                key,
                fingerprint,
                json.dumps(components, sort_keys=True),
                encode_reads(reads),
                None
                if outputs is None
                else json.dumps([(encoded(o.path), o.size, o.sha256) for o in outputs]),
                not_reusable,
                cached_from,
                time.time(),
            ),
        )

    def fingerprints(self, workflow_id: int) -> dict[int, str]:
        """activity id -> the fingerprint of its latest entry in this run."""
        rows = self._exec(
            "SELECT activity_id, fingerprint FROM cache_entries WHERE workflow_id = ? ORDER BY id",
            (workflow_id,),
        ).fetchall()
        return {int(a): str(fp) for a, fp in rows}

    def candidates(self, key: str, *, not_in: int | None) -> list[Entry]:
        """Entries of this key in ended runs (other than ``not_in``), newest first."""
        rows = self._exec(
            f"SELECT {_ENTRY_COLS} FROM cache_entries e JOIN workflows w ON w.id = e.workflow_id "
            "WHERE e.key = ? AND e.workflow_id IS NOT ? AND w.state IN (?, ?, ?) "
            "ORDER BY e.id DESC LIMIT ?",
            (key, not_in, *FINAL_RUNS, CANDIDATES),
        ).fetchall()
        return [_entry(r) for r in rows]

    def keys_with_candidates(self, keys: Iterable[str], *, not_in: int | None) -> set[str]:
        """Which of ``keys`` have an entry in an ended run other than ``not_in`` (what
        :meth:`candidates` finds for each, asked for many in a few statements)."""
        found: set[str] = set()
        for part in _parts(sorted(set(keys))):
            rows = self._exec(
                "SELECT DISTINCT e.key FROM cache_entries e JOIN workflows w "
                f"ON w.id = e.workflow_id WHERE e.key IN ({', '.join('?' * len(part))}) "
                "AND e.workflow_id IS NOT ? AND w.state IN (?, ?, ?)",
                (*part, not_in, *FINAL_RUNS),
            ).fetchall()
            found.update(str(r[0]) for r in rows)
        return found

    def latest_of_many(self, workflow_name: str, activity_names: Iterable[str]) -> dict[str, Entry]:
        """:meth:`latest_of` for each of ``activity_names`` (those with one), in a few
        statements."""
        found: dict[str, Entry] = {}
        for part in _parts(sorted(set(activity_names))):
            rows = self._exec(
                f"SELECT {_ENTRY_COLS} FROM cache_entries e JOIN workflows w "
                "ON w.id = e.workflow_id WHERE e.id IN (SELECT MAX(n.id) FROM cache_entries n "
                "JOIN workflows r ON r.id = n.workflow_id WHERE n.workflow_name = ? AND "
                f"n.activity_name IN ({', '.join('?' * len(part))}) AND r.state IN (?, ?, ?) "
                "GROUP BY n.activity_name)",
                (workflow_name, *part, *FINAL_RUNS),
            ).fetchall()
            for row in rows:
                entry = _entry(row)
                found[entry.activity_name] = entry
        return found

    def latest_of(self, workflow_name: str, activity_name: str) -> Entry | None:
        """The newest entry of this activity of this workflow in an ended run (what a miss is
        compared with to say what changed)."""
        row = self._exec(
            f"SELECT {_ENTRY_COLS} FROM cache_entries e JOIN workflows w ON w.id = e.workflow_id "
            "WHERE e.workflow_name = ? AND e.activity_name = ? AND w.state IN (?, ?, ?) "
            "ORDER BY e.id DESC LIMIT 1",
            (workflow_name, activity_name, *FINAL_RUNS),
        ).fetchone()
        return None if row is None else _entry(row)

    def hits(self, workflow_id: int) -> dict[int, tuple[int, str, int]]:
        """activity id -> (source run, source activity name, source attempt) of the run's
        reused activities."""
        rows = self._exec(
            "SELECT e.activity_id, s.workflow_id, s.activity_name, s.attempt "
            "FROM cache_entries e JOIN cache_entries s ON s.id = e.cached_from "
            "WHERE e.workflow_id = ?",
            (workflow_id,),
        ).fetchall()
        return {int(r[0]): (int(r[1]), str(r[2]), int(r[3])) for r in rows}

    # ------------------------------------------------------------------ lineage

    def used(self, activity_id: int, attempt: int) -> list[tuple[str, int, float, str | None]]:
        """(path, size, mtime, sha256) the attempt read in the engine host's data dir."""
        rows = self._exec(
            "SELECT path, size, mtime, sha256 FROM files WHERE activity_id = ? AND attempt = ? "
            "AND role = 'used' AND location = ''",
            (activity_id, attempt),
        ).fetchall()
        return [(from_db(p), int(size), float(mtime), sha) for p, size, mtime, sha in rows]

    def generated(self, activity_id: int, attempt: int) -> tuple[list[Output], bool]:
        """What the attempt generated on the engine host, and whether it generated anything
        elsewhere (a remote location: not restorable here)."""
        rows = self._exec(
            "SELECT path, size, mtime, sha256, location FROM files WHERE activity_id = ? "
            "AND attempt = ? AND role = 'generated'",
            (activity_id, attempt),
        ).fetchall()
        here = [Output(from_db(p), int(s), sha, float(m)) for p, s, m, sha, loc in rows if not loc]
        return here, any(loc for *_, loc in rows)

    def generators(self, workflow_id: int) -> dict[str, set[int]]:
        """Each path the run's activities made on the engine host so far (not one of its
        data dir's files at its start): the activities (ids) that generated a version of it
        (by running, or by a reuse that restored it)."""
        rows = self._exec(
            "SELECT f.path, f.activity_id FROM files f JOIN activities a ON a.id = f.activity_id "
            "WHERE a.workflow_id = ? AND f.role = 'generated' AND f.location = '' "
            "AND f.path NOT IN (SELECT path FROM initial_files WHERE workflow_id = ? "
            "AND location = '')",
            (workflow_id, workflow_id),
        ).fetchall()
        found: dict[str, set[int]] = {}
        for path, activity_id in rows:
            found.setdefault(from_db(path), set()).add(int(activity_id))
        return found

    def ambiguous(self, activity_id: int, attempt: int) -> list[str]:
        """The paths of the versions no one can be given that the attempt may have written."""
        rows = self._exec(
            "SELECT f.path FROM ambiguous_candidates c JOIN ambiguous_files f ON f.id = c.file_id "
            "WHERE c.activity_id = ? AND c.attempt = ?",
            (activity_id, attempt),
        ).fetchall()
        return [from_db(r[0]) for r in rows]

    def mechanism(self, workflow_id: int) -> str | None:
        return self.repo.provenance_mechanism(workflow_id)

    # ------------------------------------------------------------------ a reuse

    def record_hit(
        self,
        *,
        activity_id: int,
        number: int,
        runtime: str,
        reason: str,
        at: float,
    ) -> None:
        """Attempt ``number`` of the activity is a reuse: stored as a 'cached' attempt and the
        activity as CACHED (exit code 0), in the caller's transaction."""
        self._exec(
            "INSERT INTO attempts (activity_id, number, state, runtime, handle, submitted_at, "
            "started_at, finished_at, exit_code, reason) VALUES (?, ?, 'cached', ?, '{}', ?, ?, "
            "?, 0, ?)",
            (activity_id, number, runtime, at, at, at, reason),
        )
        self._exec(
            "UPDATE activities SET state = ?, attempt = ?, exit_code = 0, reason = ?, "
            "started_at = COALESCE(started_at, ?), finished_at = ? WHERE id = ?",
            (ActivityState.CACHED.value, number, reason, at, at, activity_id),
        )

    def add_files(
        self, activity_id: int, attempt: int, role: str, rows: Iterable[tuple[str, int, float, str]]
    ) -> None:
        self.repo.add_files(activity_id, attempt, role, rows)


__all__ = ["CANDIDATES", "CacheStore", "Entry", "Output", "encode_reads"]
