"""Schema migrations: every step from a database at the version before it, with its rows;
databases as older AkôFlow wrote them; fresh equals migrated; newer refused; atomic steps."""

from __future__ import annotations

import sqlite3
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest

from akoflow.errors import StoreError
from akoflow.spec import load_workflow
from akoflow.states import ActivityState
from akoflow.store import Repository
from akoflow.store.migrate import (
    SCHEMA_VERSION,
    migrate,
    migrations,
    parse_migrations,
    statements,
)

ROOT = Path(__file__).resolve().parents[2]
OLD_SCHEMA_V4 = Path(__file__).parent / "data" / "schema_v4.sql"

SPEC = """\
name: wf
spec:
  activities:
    - name: a
      run: echo a
    - name: b
      dependsOn: [a]
      retries: 2
      run: echo b
"""


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def at_version(path: Path, version: int) -> sqlite3.Connection:
    """A database made by the steps up to ``version``."""
    conn = connect(path)
    migrate(conn, str(path), migrations()[:version])
    return conn


def fill(conn: sqlite3.Connection, version: int) -> None:
    """Rows as AkôFlow wrote them at ``version``: a failed run whose activity b used its three
    attempts (retries: 2), with logs, metrics, a runtime, a node, placements and files."""
    conn.execute(
        "INSERT INTO workflows (id, name, state, spec_yaml, spec_hash, source, data_dir, "
        "created_at, started_at, finished_at) VALUES (7, 'wf', 'failed', ?, 'h', "
        "'wf.yaml', '/runs/7-wf/data', 1.0, 2.0, 9.0)",
        (SPEC,),
    )
    activities = [
        {"id": 11, "position": 0, "name": "a", "image": None, "state": "succeeded"}
        | {"attempt": 1, "retries": 0, "max_attempts": 1, "exit_code": 0, "reason": None}
        | {"started_at": 2.0, "finished_at": 3.0},
        {"id": 12, "position": 1, "name": "b", "image": "alpine", "state": "failed"}
        | {"attempt": 3, "retries": 2, "max_attempts": 3, "exit_code": 1, "reason": "exit 1"}
        | {"started_at": 4.0, "finished_at": 9.0},
    ]
    for activity in activities:
        if version >= 6:  # activities.retries copied the spec's until then
            del activity["retries"]
        conn.execute(
            f"INSERT INTO activities (workflow_id, runtime, node, created_at, "
            f"{', '.join(activity)}) VALUES (7, 'local', 'n1', 1.0{', ?' * len(activity)})",
            tuple(activity.values()),
        )
    conn.executescript(
        "INSERT INTO dependencies VALUES (7, 12, 11);"
        "INSERT INTO attempts (activity_id, number, state, runtime, handle, node, submitted_at, "
        "started_at, finished_at, exit_code, reason, cpu_seconds, max_rss_bytes) VALUES "
        "(11, 1, 'succeeded', 'local', '{\"pid\": 5}', 'n1', 2.0, 2.1, 3.0, 0, NULL, 0.5, 1024),"
        "(12, 3, 'failed', 'local', '{}', 'n1', 8.0, 8.1, 9.0, 1, 'exit 1', NULL, NULL);"
        "INSERT INTO logs (activity_id, attempt, stream, offset, data, created_at) "
        "VALUES (11, 1, 'stdout', 0, 'a\n', 3.0);"
        "INSERT INTO metrics (activity_id, attempt, ts, cpu_percent, memory_bytes) "
        "VALUES (11, 1, 2.5, 50.0, 2048);"
        "INSERT INTO runtimes VALUES ('local', 'local', 'ready', NULL, '{\"A\": \"1\"}', 5.0, 5.0);"
        "INSERT INTO nodes VALUES ('local', 'n1', 'ready', 4.0, 8192, 1.0, 1024, 5.0);"
    )
    if version >= 2:
        conn.execute(
            "INSERT INTO placements (activity_id, attempt, runtime, policy, node, alpha, "
            "candidates, decided_at) VALUES (12, 3, 'local', 'akoscore', 'n1', 0.5, '[]', 8.0)"
        )
    if version >= 3:
        conn.execute(
            "INSERT INTO files (activity_id, attempt, role, path, size, mtime, sha256) "
            "VALUES (11, 1, 'generated', 'out.txt', 2, 3.0, 'abc')"
        )
    if version >= 4:
        conn.execute(
            "INSERT INTO files (activity_id, attempt, role, path, size, mtime, sha256, location) "
            "VALUES (12, 3, 'used', 'in.dat', 5, 1.0, NULL, 'hpc:/scratch')"
        )
    if version >= 5:
        conn.execute(
            "INSERT INTO initial_files (workflow_id, location, path, size, mtime, sha256) "
            "VALUES (7, '', 'in.txt', 1, 0.5, 'def')"
        )


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def rows(conn: sqlite3.Connection) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, by column name."""
    tables = [
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'sqlite_sequence'"
        )
    ]
    found = {}
    for table in tables:
        cur = conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2")
        names = [d[0] for d in cur.description]
        found[table] = [dict(zip(names, row, strict=True)) for row in cur]
    return found


def schema_sql(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    return conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name"
    ).fetchall()


def shape(conn: sqlite3.Connection) -> dict[str, Any]:
    """A schema's structure, whatever the text that made it (CREATE or ALTER, comments)."""
    found: dict[str, Any] = {}
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        indexes = {}
        for index in conn.execute(f"PRAGMA index_list({table})").fetchall():
            columns = [c[2] for c in conn.execute(f"PRAGMA index_info({index[1]})")]
            indexes[index[1]] = (index[2], index[3], columns)  # unique, origin, columns
        found[table] = (
            conn.execute(f"PRAGMA table_xinfo({table})").fetchall(),
            conn.execute(f"PRAGMA foreign_key_list({table})").fetchall(),
            indexes,
        )
    return found


def version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def test_the_steps_are_numbered_one_to_the_current_version() -> None:
    assert [m.version for m in migrations()] == list(range(1, SCHEMA_VERSION + 1))


def test_the_package_data_ships_every_step() -> None:
    """pyproject's package-data patterns cover every migration file (a wheel without them
    could open no database)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["akoflow"]
    package = ROOT / "src" / "akoflow"
    shipped = {path for pattern in patterns for path in package.glob(pattern)}
    steps = set((package / "store" / "migrations").glob("*"))
    assert len(steps) == SCHEMA_VERSION and steps <= shipped


@pytest.mark.parametrize("target", range(2, SCHEMA_VERSION + 1))
def test_each_step_keeps_the_rows_of_the_version_before(tmp_path: Path, target: int) -> None:
    path = tmp_path / "s.db"
    conn = at_version(path, target - 1)
    fill(conn, target - 1)
    before = rows(conn)
    assert migrate(conn, str(path), migrations()[:target]) == target - 1
    assert version(conn) == target
    after = rows(conn)
    assert set(after) >= set(before)
    for table, old in before.items():
        kept, was = columns(conn, table), set(old[0]) if old else set()
        assert [{k: v for k, v in row.items() if k in was} for row in after[table]] == [
            {k: v for k, v in row.items() if k in kept} for row in old
        ], table
    if target == 2:
        assert after["placements"] == []
    if target == 3:
        assert after["files"] == []
    if target == 4:
        assert [(r["path"], r["location"]) for r in after["files"]] == [("out.txt", "")]
    if target == 5:
        assert after["initial_files"] == []
    if target == 6:
        assert "retries" not in columns(conn, "activities")
        assert [r["max_attempts"] for r in after["activities"]] == [1, 3]
    if target == 7:
        assert after["ambiguous_files"] == after["provenance_mechanisms"] == []
    if target == 8:
        assert {r["stop_reason"] for r in after["attempts"]} == {None}


def test_a_first_version_database_opens_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    conn = at_version(path, 1)
    fill(conn, 1)
    conn.close()
    repo = Repository(path)
    wf = repo.get_workflow(7)
    assert wf is not None and (wf.name, wf.source, wf.finished_at) == ("wf", "wf.yaml", 9.0)
    acts = repo.list_activities(7)
    assert [(a.name, a.state, a.attempt, a.max_attempts) for a in acts] == [
        ("a", ActivityState.SUCCEEDED, 1, 1),
        ("b", ActivityState.FAILED, 3, 3),
    ]
    assert repo.list_dependencies(7) == [(12, 11)]
    assert [(a.number, a.handle, a.max_rss_bytes) for a in repo.list_attempts(11)] == [
        (1, {"pid": 5}, 1024)
    ]
    assert repo.log_offsets(11, 1) == {"stdout": 2}
    assert [(n.name, n.cpu_capacity) for n in repo.list_nodes("local")] == [("n1", 4.0)]
    assert repo.list_placements(7) == [] and repo.list_files(7) == []
    repo.add_files(11, 1, "generated", [("out", 1, 2.0, None)], location="hpc:/scratch")
    assert [f.qualified_path for f in repo.list_files(7)] == ["hpc:/scratch/out"]
    repo.close()


def test_a_version_6_database_records_ambiguous_files_and_the_mechanism(
    tmp_path: Path,
) -> None:
    """Version 7: a file version with its candidate attempts (none of them its generator),
    and how the run's accesses were known."""
    path = tmp_path / "s.db"
    conn = at_version(path, 6)
    fill(conn, 6)
    conn.close()
    repo = Repository(path)
    assert repo.list_ambiguous_files(7) == [] and repo.provenance_mechanism(7) is None
    with repo.transaction():
        repo.add_ambiguous_file(7, ("o\udcff.txt", 3, 4.0, None), "two writers", [(12, 3), (11, 1)])
        repo.set_provenance_mechanism(7, "inferred from timing")
        repo.set_provenance_mechanism(7, "observed (fanotify)")
    (found,) = repo.list_ambiguous_files(7)
    assert (found.path, found.size, found.reason) == ("o\udcff.txt", 3, "two writers")
    assert [(c.activity, c.attempt) for c in found.candidates] == [("a", 1), ("b", 3)]
    assert repo.provenance_mechanism(7) == "observed (fanotify)"
    assert repo.delete_workflow(7)
    assert repo.list_ambiguous_files(7) == [] and repo.provenance_mechanism(7) is None
    repo.close()


def test_a_version_7_database_keeps_why_an_attempt_was_asked_to_stop(tmp_path: Path) -> None:
    """Version 8: the stop reason of an attempt (timeout, cancel) is stored before the stop."""
    path = tmp_path / "s.db"
    conn = at_version(path, 7)
    fill(conn, 7)
    conn.close()
    repo = Repository(path)
    assert {a.stop_reason for a in repo.list_attempts(11)} == {None}
    repo.attempt_stop_requested(11, 1, "timeout")
    assert [a.stop_reason for a in repo.list_attempts(11)][0] == "timeout"
    repo.close()


def test_retry_after_the_drop_gives_the_specs_retries(tmp_path: Path) -> None:
    """activities.retries is gone: a retried activity's new budget comes from the stored
    spec (b: retries 2, 3 attempts used: up to attempt 6)."""
    path = tmp_path / "s.db"
    conn = at_version(path, 5)  # the version before the drop
    fill(conn, 5)
    conn.close()
    repo = Repository(path)
    wf = repo.get_workflow(7)
    assert wf is not None
    assert repo.reopen_workflow(7, load_workflow(wf.spec_yaml, source="wf.yaml")) == 1
    acts = repo.list_activities(7)
    assert [(a.name, a.state, a.max_attempts) for a in acts] == [
        ("a", ActivityState.SUCCEEDED, 1),
        ("b", ActivityState.PENDING, 6),
    ]
    repo.close()


def test_a_fresh_database_is_every_step_applied(tmp_path: Path) -> None:
    """One step at a time, each database opened and closed in between (the way upgrades
    happen over releases), gives the same schema, text and all, as a fresh database."""
    Repository(tmp_path / "fresh.db").close()
    stepwise = tmp_path / "stepwise.db"
    for target in range(1, SCHEMA_VERSION + 1):
        at_version(stepwise, target).close()
    fresh, stepped = connect(tmp_path / "fresh.db"), connect(stepwise)
    assert version(fresh) == version(stepped) == SCHEMA_VERSION
    assert schema_sql(fresh) == schema_sql(stepped)
    activities = fresh.execute("SELECT sql FROM sqlite_master WHERE name = 'activities'")
    assert "retries" not in activities.fetchone()[0]


def old_version_4(path: Path, *, with_initial_files: bool) -> None:
    """A version-4 database as AkôFlow made it before migrations (its schema.sql executed
    whole); before initial_files existed, version 4 had no such table."""
    conn = connect(path)
    conn.executescript(OLD_SCHEMA_V4.read_text("utf-8") + "PRAGMA user_version = 4;")
    if not with_initial_files:
        conn.execute("DROP TABLE initial_files")
    fill(conn, 4)
    conn.close()


@pytest.mark.parametrize("with_initial_files", [True, False])
def test_a_version_4_database_of_the_old_code_opens_with_its_data(
    tmp_path: Path, with_initial_files: bool
) -> None:
    path = tmp_path / "s.db"
    old_version_4(path, with_initial_files=with_initial_files)
    conn = connect(path)
    before = rows(conn)
    conn.close()
    repo = Repository(path)
    assert [(f.path, f.location) for f in repo.list_files(7)] == [
        ("out.txt", ""),
        ("in.dat", "hpc:/scratch"),
    ]
    assert [p.node for p in repo.list_placements(7)] == ["n1"]
    repo.add_initial_files(7, [("in.txt", 1, 0.5, None)])
    assert [f.path for f in repo.list_initial_files(7)] == ["in.txt"]
    repo.close()
    Repository(tmp_path / "fresh.db").close()
    migrated, fresh = connect(path), connect(tmp_path / "fresh.db")
    assert version(migrated) == SCHEMA_VERSION
    assert shape(migrated) == shape(fresh)
    after = rows(migrated)
    for table, old in before.items():
        trimmed = [{k: v for k, v in row.items() if k != "retries"} for row in old]
        added = {"attempts": {"stop_reason": None}}.get(table, {})  # columns of later steps
        assert after[table][: len(old)] == [{**row, **added} for row in trimmed], table


def test_a_newer_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Repository(path).close()
    conn = connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = schema_sql(conn)
    conn.close()
    with pytest.raises(StoreError) as refused:
        Repository(path)
    assert str(refused.value) == (
        f"state database {path} has schema version {SCHEMA_VERSION + 1}, newer than this "
        f"AkôFlow understands ({SCHEMA_VERSION}); upgrade AkôFlow"
    )
    conn = connect(path)
    assert version(conn) == SCHEMA_VERSION + 1 and schema_sql(conn) == before


def test_a_negative_version_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Repository(path).close()
    conn = connect(path)
    conn.execute("PRAGMA user_version = -1")
    conn.close()
    with pytest.raises(StoreError, match="schema version -1, which no AkôFlow writes"):
        Repository(path)
    conn = connect(path)
    assert version(conn) == -1
    conn.close()


def test_a_failing_step_leaves_the_version_before_it_whole(tmp_path: Path) -> None:
    steps = parse_migrations(
        [
            ("0001_a.sql", "CREATE TABLE a (x);"),
            ("0002_b.sql", "CREATE TABLE b (x);INSERT INTO a VALUES (1);INSERT INTO c VALUES (1)"),
        ]
    )
    path = tmp_path / "s.db"
    conn = connect(path)
    with pytest.raises(sqlite3.OperationalError) as failed:
        migrate(conn, str(path), steps)
    assert str(failed.value) == (
        "upgrading its schema to version 2 (0002_b.sql) failed: no such table: c"
    )
    assert not conn.in_transaction and version(conn) == 1
    assert [n for (n,) in conn.execute("SELECT name FROM sqlite_master")] == ["a"]
    assert conn.execute("SELECT count(*) FROM a").fetchone()[0] == 0


def test_a_step_may_not_end_its_own_transaction(tmp_path: Path) -> None:
    steps = parse_migrations([("0001_a.sql", "CREATE TABLE a (x); COMMIT;")])
    conn = connect(tmp_path / "s.db")
    with pytest.raises(StoreError, match="0001_a.sql ended its own transaction"):
        migrate(conn, "s.db", steps)
    assert version(conn) == 0


def test_two_processes_upgrading_at_once_apply_each_step_once(tmp_path: Path) -> None:
    """A second opener that read the old version before the first one took the write lock
    re-reads it once it holds the lock, and skips what the first one did."""
    path = tmp_path / "s.db"
    first = at_version(path, 1)
    fill(first, 1)
    second = connect(path)
    second.execute("PRAGMA busy_timeout = 30000")
    waiting = threading.Event()
    second.set_trace_callback(lambda sql: sql == "BEGIN IMMEDIATE" and waiting.set())
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            migrate(second, str(path))
        except BaseException as exc:
            errors.append(exc)

    first.execute("BEGIN IMMEDIATE")  # the first opener holds the write lock
    worker = threading.Thread(target=upgrade)
    worker.start()
    assert waiting.wait(30)  # it read version 1 and now waits for the lock
    for step in migrations()[1:]:
        for statement in statements(step.sql):
            first.execute(statement)
    first.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    first.execute("COMMIT")
    worker.join(30)
    assert not worker.is_alive() and errors == []
    assert version(second) == SCHEMA_VERSION
    assert second.execute("SELECT count(*) FROM activities").fetchone()[0] == 2


def test_migration_files_are_checked() -> None:
    with pytest.raises(ValueError, match="not named like"):
        parse_migrations([("1_initial.sql", "")])
    with pytest.raises(ValueError, match=r"no gap or twin, got \[1, 3\]"):
        parse_migrations([("0001_a.sql", ""), ("0003_c.sql", "")])
    with pytest.raises(ValueError, match=r"no gap or twin, got \[1, 1\]"):
        parse_migrations([("0001_a.sql", ""), ("0001_b.sql", "")])


def test_statements_end_where_sqlite_says() -> None:
    script = (
        "-- a comment; with a semicolon\n"
        "CREATE TABLE t (x TEXT DEFAULT ';');  -- trailing; comment\n"
        "CREATE TRIGGER g AFTER INSERT ON t BEGIN UPDATE t SET x = 'a;b'; END;\n"
        "INSERT INTO t VALUES ('last, no semicolon')"
    )
    found = statements(script)
    assert len(found) == 3
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for statement in found:
        conn.execute(statement)
    assert conn.execute("SELECT x FROM t").fetchall() == [("a;b",)]


def test_no_step_writes_the_version_or_a_transaction_itself() -> None:
    # A statement of its own that controls the transaction; a trigger's BEGIN ... END is not.
    control = ("BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE")
    for step in migrations():
        assert "USER_VERSION" not in step.sql.upper()
        for statement in statements(step.sql):
            code = [ln for ln in statement.splitlines() if not ln.strip().startswith("--")]
            words = " ".join(code).split()
            assert not words or words[0].upper().rstrip(";") not in control, statement


def test_the_steps_read_from_the_package_directory_are_those_its_loader_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The steps are read from the package's directory (without importlib.resources); a
    package with none (a zip import) has them read through importlib.resources: the same."""
    from akoflow.store import migrate as module

    assert len(migrations()) == SCHEMA_VERSION
    monkeypatch.setattr(module, "Path", lambda _: Path("/nonexistent/akoflow/store/migrate.py"))
    assert module.migrations.__wrapped__() == migrations()
