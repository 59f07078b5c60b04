"""Schema migrations: numbered SQL files in ``store/migrations/`` applied by ``user_version``.

``0001_initial.sql`` is the schema AkôFlow first created; every later file is one step from
the version before it (``000N_what.sql`` makes version N). A fresh database runs every step, an
older one the steps it lacks, each in its own transaction that also records the version it
reaches: an interrupted upgrade leaves a whole version behind, never half of one. A database
newer than the last step is refused. A released step is never edited: add the next one.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from akoflow.errors import StoreError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

_FILE_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the store's schema."""

    version: int
    """The schema version this step makes (from its file name's number)."""
    name: str
    sql: str


def parse_migrations(files: Iterable[tuple[str, str]]) -> tuple[Migration, ...]:
    """The steps of ``(file name, SQL text)`` pairs in order; ValueError unless they are
    numbered 1, 2, ... N without a gap or a twin."""
    steps = []
    for name, sql in files:
        match = _FILE_NAME.fullmatch(name)
        if match is None:
            raise ValueError(f"migration file {name!r} is not named like 0002_what_it_does.sql")
        steps.append(Migration(int(match[1]), name, sql))
    steps.sort(key=lambda step: (step.version, step.name))
    numbers = [step.version for step in steps]
    if numbers != list(range(1, len(steps) + 1)):
        raise ValueError(f"migrations must be numbered 1..N with no gap or twin, got {numbers}")
    return tuple(steps)


@cache
def migrations() -> tuple[Migration, ...]:
    """The steps shipped with this AkôFlow (package data)."""
    # The package's directory when it has one (every install but a zip import), read without
    # importlib.resources: its import (its readers, zipfile) was ~1.5 ms of each `akoflow run`.
    folder: Traversable = Path(__file__).with_name("migrations")
    if not folder.is_dir():
        from importlib import resources

        folder = resources.files("akoflow.store").joinpath("migrations")
    return parse_migrations(
        (entry.name, entry.read_text("utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )


SCHEMA_VERSION = migrations()[-1].version


def statements(sql: str) -> list[str]:
    """A script's statements, cut where SQLite's own tokenizer says one is complete (a ';'
    in a string, a comment or a trigger body does not end one)."""
    found: list[str] = []
    pending = ""
    *pieces, tail = sql.split(";")
    for piece in pieces:
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            found.append(pending)
            pending = ""
    pending += tail
    if pending.strip():  # a last statement without ';', or comments (which run as nothing)
        found.append(pending)
    return found


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def newer_than_known(path: str, version: int, known: int) -> StoreError:
    return StoreError(
        f"state database {path} has schema version {version}, newer than this "
        f"AkôFlow understands ({known}); upgrade AkôFlow"
    )


def migrate(conn: sqlite3.Connection, path: str, steps: tuple[Migration, ...] | None = None) -> int:
    """Bring the database on ``conn`` (autocommit mode) up to the last of ``steps`` (those
    shipped by default); returns the version it had. Another process may upgrade the same
    file at the same time: each step re-reads the version once it holds the write lock."""
    steps = migrations() if steps is None else steps
    latest = steps[-1].version if steps else 0
    found = user_version(conn)
    if found > latest:
        raise newer_than_known(path, found, latest)
    if found < 0:  # SQLite takes any integer; AkôFlow never writes one below 0
        raise StoreError(
            f"state database {path} has schema version {found}, which no AkôFlow writes: "
            "it was not made by AkôFlow, or it is damaged"
        )
    for step in steps[found:]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = user_version(conn)
            if version > latest:
                raise newer_than_known(path, version, latest)
            if version < step.version:
                _apply(conn, step)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return found


def _apply(conn: sqlite3.Connection, step: Migration) -> None:
    try:
        for statement in statements(step.sql):
            conn.execute(statement)
    except sqlite3.Error as exc:
        # Same class (service.py words sqlite3 errors for people), with the step named.
        raise type(exc)(
            f"upgrading its schema to version {step.version} ({step.name}) failed: {exc}"
        ) from exc
    if not conn.in_transaction:
        raise StoreError(f"migration {step.name} ended its own transaction")
    conn.execute(f"PRAGMA user_version = {step.version:d}")
