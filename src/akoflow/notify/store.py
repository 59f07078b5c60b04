"""Notifications in the state database (migration 0012).

``notify_events`` rows are written by triggers in the transaction that records a run's end or
an activity's failure. A sender turns each into one ``notify_deliveries`` row per webhook and
deletes the event in one transaction (two senders at once: the UNIQUE (event_id, url) keeps
one row). A delivery is leased (``lease_until``, its try counted) before its request goes
out and marked delivered once the receiver answered 2xx, so a delivered one is not sent again,
and one whose sender died is taken over when its lease ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from akoflow.notify.payload import ActivityFacts, RunFacts
from akoflow.store import Repository

FINAL_RUNS = ("succeeded", "failed", "cancelled")
_UNSENT = "delivered_at IS NULL AND given_up_at IS NULL"
MAX_IDS = 500


@dataclass(frozen=True, slots=True)
class Event:
    """A stored event a webhook may be told of."""

    id: int
    workflow_id: int
    activity_id: int | None
    event: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event to one webhook, with its body made once and its tries so far."""

    id: int
    workflow_id: int
    event: str
    url: str
    secret_env: str | None
    body: bytes
    tries: int  # counting the one being made


@dataclass(frozen=True, slots=True)
class Made:
    """An event turned into deliveries: (url, secret variable, body) per webhook."""

    event: Event
    deliveries: Sequence[tuple[str, str | None, bytes]]


def pending_events(repo: Repository, limit: int) -> list[Event]:
    rows = repo._exec(
        "SELECT id, workflow_id, activity_id, event, created_at FROM notify_events "
        "ORDER BY id LIMIT ?",
        (limit,),
    ).fetchall()
    return [Event(*row) for row in rows]


def run_facts(repo: Repository, wf_id: int) -> tuple[RunFacts, str, str] | None:
    """The run, its stored workflow text and that text's hash (None: deleted since)."""
    row = repo._exec(
        "SELECT id, name, namespace, state, created_at, started_at, finished_at, spec_yaml, "
        "spec_hash FROM workflows WHERE id = ?",
        (wf_id,),
    ).fetchone()
    if row is None:
        return None
    return RunFacts(*row[:7]), str(row[7]), str(row[8])


def activity_counts(repo: Repository, wf_id: int) -> dict[str, int]:
    rows = repo._exec(
        "SELECT state, COUNT(*) FROM activities WHERE workflow_id = ? GROUP BY state", (wf_id,)
    ).fetchall()
    return {str(state): int(n) for state, n in rows}


def activity_facts(repo: Repository, activity_id: int) -> ActivityFacts | None:
    row = repo._exec(
        "SELECT name, state, runtime, attempt, max_attempts, exit_code, reason, node, "
        "started_at, finished_at FROM activities WHERE id = ?",
        (activity_id,),
    ).fetchone()
    return None if row is None else ActivityFacts(*row)


def record(repo: Repository, made: Iterable[Made], now: float) -> int:
    """Each event's deliveries, and the event gone, in one transaction; the rows added."""
    added = 0
    with repo.transaction():
        for item in made:
            ev = item.event
            for url, secret_env, body in item.deliveries:
                cur = repo._exec(
                    "INSERT OR IGNORE INTO notify_deliveries (event_id, workflow_id, event, "
                    "url, secret_env, body, next_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (ev.id, ev.workflow_id, ev.event, url, secret_env, body, now, now),
                )
                added += cur.rowcount
            repo._exec("DELETE FROM notify_events WHERE id = ?", (ev.id,))
    return added


def lease_due(repo: Repository, now: float, lease: float, limit: int) -> list[Delivery]:
    """Take up to ``limit`` deliveries due now that no sender holds, counting their try."""
    if limit <= 0:
        return []
    due = f"WHERE {_UNSENT} AND next_at <= ? AND (lease_until IS NULL OR lease_until <= ?)"
    # Looked at first without the write lock: taken at every pass of the sender, it waited
    # (on the event loop) for any long write, such as a big workflow being stored.
    if repo._exec(f"SELECT 1 FROM notify_deliveries {due} LIMIT 1", (now, now)).fetchone() is None:
        return []
    with repo.transaction():
        rows = repo._exec(
            "SELECT id, workflow_id, event, url, secret_env, body, tries FROM notify_deliveries "
            f"{due} ORDER BY next_at, id LIMIT ?",
            (now, now, limit),
        ).fetchall()
        for row in rows:
            repo._exec(
                "UPDATE notify_deliveries SET lease_until = ?, tries = tries + 1 WHERE id = ?",
                (now + lease, row[0]),
            )
    return [Delivery(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6] + 1) for r in rows]


def delivered(repo: Repository, delivery_id: int, now: float) -> None:
    repo._exec(
        "UPDATE notify_deliveries SET delivered_at = ?, lease_until = NULL, last_error = NULL "
        "WHERE id = ?",
        (now, delivery_id),
    )


def retry_at(repo: Repository, delivery_id: int, when: float, error: str) -> None:
    repo._exec(
        "UPDATE notify_deliveries SET next_at = ?, lease_until = NULL, last_error = ? WHERE id = ?",
        (when, error, delivery_id),
    )


def gave_up(repo: Repository, delivery_id: int, now: float, error: str) -> None:
    repo._exec(
        "UPDATE notify_deliveries SET given_up_at = ?, lease_until = NULL, last_error = ? "
        "WHERE id = ?",
        (now, error, delivery_id),
    )


def released(repo: Repository, delivery_id: int, now: float) -> None:
    """Its sender stopped mid-try: the next one may send it at once (the receiver may have
    got it: the delivery id tells it so)."""
    repo._exec(
        "UPDATE notify_deliveries SET lease_until = NULL, next_at = MIN(next_at, ?) WHERE id = ?",
        (now, delivery_id),
    )


def has_events(repo: Repository) -> bool:
    return repo._exec("SELECT 1 FROM notify_events LIMIT 1").fetchone() is not None


def next_due(repo: Repository) -> float | None:
    """When the earliest unsent delivery may be tried (its lease ended, its back-off over)."""
    row = repo._exec(
        f"SELECT MIN(MAX(next_at, COALESCE(lease_until, 0))) FROM notify_deliveries WHERE {_UNSENT}"
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def pending_for(repo: Repository, wf_ids: Sequence[int]) -> tuple[int, int, float | None]:
    """These runs' events not turned into deliveries yet, their deliveries neither sent nor
    given up, and the earliest time one of those may be tried."""
    if not wf_ids:
        return 0, 0, None
    # Many runs (a server's): every run's count, a superset, keeps the query's size bounded.
    ids = tuple(wf_ids) if len(wf_ids) <= MAX_IDS else ()
    among = f"workflow_id IN ({','.join('?' * len(ids))})" if ids else "1"
    events = repo._exec(f"SELECT COUNT(*) FROM notify_events WHERE {among}", ids).fetchone()[0]
    count, due = repo._exec(
        "SELECT COUNT(*), MIN(MAX(next_at, COALESCE(lease_until, 0))) FROM notify_deliveries "
        f"WHERE {_UNSENT} AND {among}",
        ids,
    ).fetchone()
    return int(events), int(count), (None if due is None else float(due))


__all__ = [
    "Delivery",
    "Event",
    "Made",
    "activity_counts",
    "activity_facts",
    "delivered",
    "gave_up",
    "has_events",
    "lease_due",
    "next_due",
    "pending_events",
    "pending_for",
    "record",
    "released",
    "retry_at",
    "run_facts",
]
