"""A savepoint block taken at its first write (hostile pass on 8dbae2c), where a write does
not go through the block's own statements: a transaction begun inside a block that is
outside any transaction, threads writing while a block is open, statements that are writes
without saying INSERT first. Nothing of a block that raised stays (real SQLite)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from akoflow.store import Repository


class Boom(Exception):
    pass


def _repo(tmp_path: Path) -> Repository:
    repo = Repository(tmp_path / "s.db")
    repo._exec("CREATE TABLE t (v TEXT)")
    return repo


def _values(repo: Repository) -> list[str]:
    return [r[0] for r in repo._exec("SELECT v FROM t ORDER BY rowid").fetchall()]


@pytest.mark.parametrize("raises", [False, True])
def test_a_transaction_inside_a_block_outside_any_stores_nothing_of_a_failed_block(
    tmp_path: Path, raises: bool
) -> None:
    # The block was taken at once before: the BEGIN failed, nothing was written. Taken at
    # the first write, the BEGIN went first, its COMMIT stored the write and released the
    # block's savepoint under it: the block then failed at its end, its write kept.
    repo = _repo(tmp_path)
    failed: BaseException | None = None
    try:
        with repo.savepoint():
            with repo.transaction():
                repo._exec("INSERT INTO t VALUES ('inner')")
            if raises:
                raise Boom()
    except (Boom, sqlite3.OperationalError) as exc:
        failed = exc
    assert not repo._conn.in_transaction
    assert repo._savepoints == []
    # A write stays only when the block ended without an error.
    assert _values(repo) == ([] if failed is not None else ["inner"])
    if raises:
        assert failed is not None
    with repo.transaction():  # the repository goes on
        repo._exec("INSERT INTO t VALUES ('after')")
    assert _values(repo)[-1] == "after"


def test_writes_that_do_not_start_with_insert_are_undone_with_their_block(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    with repo.transaction():
        repo._exec("INSERT INTO t VALUES ('kept')")
        with pytest.raises(Boom), repo.savepoint():
            repo._exec("  INSERT INTO t VALUES ('leading space')")
            repo._exec("WITH x(v) AS (SELECT 'cte') INSERT INTO t SELECT v FROM x")
            repo._exec("select 1").fetchall()
            repo._exec("insert into t values ('lower case')")
            raise Boom()
        with pytest.raises(Boom), repo.savepoint():
            repo._exec("SELECT 1").fetchall()
            repo._exec("WITH x(v) AS (SELECT 'cte') INSERT INTO t SELECT v FROM x")
            raise Boom()
    assert _values(repo) == ["kept"]


def test_another_threads_write_waits_for_an_open_block(tmp_path: Path) -> None:
    # The repository's lock is held for the whole block: another thread's write is not
    # taken into it (undone with it), it runs after the block.
    repo = _repo(tmp_path)
    entered = threading.Event()
    wrote = threading.Event()

    def other() -> None:
        entered.wait()
        repo._exec("INSERT INTO t VALUES ('other thread')")
        wrote.set()

    thread = threading.Thread(target=other)
    thread.start()
    with pytest.raises(Boom), repo.transaction(), repo.savepoint():
        entered.set()
        assert not wrote.wait(0.05)  # blocked on the lock (not a timing threshold: a bound)
        repo._exec("INSERT INTO t VALUES ('block')")
        raise Boom()
    thread.join()
    assert _values(repo) == ["other thread"]
