"""A savepoint block (bookkeeping that must never cost the run) is taken at its first write:
a block that only reads costs no statement, and a block that raises undoes exactly its own
writes, nested or not (real SQLite, its statements traced)."""

from __future__ import annotations

from pathlib import Path

import pytest

from akoflow.store import Repository


class Boom(Exception):
    pass


def _repo(tmp_path: Path) -> tuple[Repository, list[str]]:
    repo = Repository(tmp_path / "s.db")
    repo._exec("CREATE TABLE t (v TEXT)")
    said: list[str] = []
    repo._conn.set_trace_callback(said.append)
    return repo, said


def _values(repo: Repository) -> list[str]:
    return [r[0] for r in repo._exec("SELECT v FROM t ORDER BY rowid").fetchall()]


def test_a_block_that_only_reads_takes_no_savepoint(tmp_path: Path) -> None:
    repo, said = _repo(tmp_path)
    with repo.transaction(), repo.savepoint(), repo.savepoint():
        repo._exec("SELECT count(*) FROM t").fetchone()
    assert not [s for s in said if "SAVEPOINT" in s or "RELEASE" in s]


def test_a_block_that_raises_undoes_its_own_writes_only(tmp_path: Path) -> None:
    repo, said = _repo(tmp_path)
    with repo.transaction():
        repo._exec("INSERT INTO t VALUES ('before')")
        with pytest.raises(Boom), repo.savepoint():
            repo._exec("SELECT 1").fetchone()  # a read first: still nothing to undo
            repo._exec("INSERT INTO t VALUES ('undone')")
            raise Boom
        repo._exec("INSERT INTO t VALUES ('after')")
    assert _values(repo) == ["before", "after"]
    assert [s for s in said if "akoflow_block" in s] == [
        "SAVEPOINT akoflow_block",
        "ROLLBACK TO akoflow_block",
        "RELEASE akoflow_block",
    ]


def test_nested_blocks_take_the_outer_savepoint_first(tmp_path: Path) -> None:
    repo, _ = _repo(tmp_path)
    with repo.transaction():
        with repo.savepoint():  # writes nothing itself before the inner block writes
            with pytest.raises(Boom), repo.savepoint():
                repo._exec("INSERT INTO t VALUES ('inner, undone')")
                raise Boom
            repo._exec("INSERT INTO t VALUES ('outer, kept')")
        with pytest.raises(Boom), repo.savepoint():
            with repo.savepoint():
                repo._execmany("INSERT INTO t VALUES (?)", [("inner of a failed outer",)])
            raise Boom  # the outer block fails: the inner one's writes go with it
    assert _values(repo) == ["outer, kept"]


def test_a_block_outside_a_transaction_keeps_what_it_wrote(tmp_path: Path) -> None:
    repo, _ = _repo(tmp_path)
    with repo.savepoint():
        repo._exec("INSERT INTO t VALUES ('kept')")
    with pytest.raises(Boom), repo.savepoint():
        repo._exec("INSERT INTO t VALUES ('undone')")
        raise Boom
    assert _values(repo) == ["kept"]
    assert not repo._conn.in_transaction
