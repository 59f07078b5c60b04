from __future__ import annotations

import sqlite3
from pathlib import Path

from akoflow.spec import Activity, Workflow
from akoflow.states import ActivityState, WorkflowState
from akoflow.store import Repository


def sample() -> Workflow:
    return Workflow(
        name="wf",
        activities=(
            Activity(name="a", run="echo a", runtime="local"),
            Activity(name="b", run="echo b", runtime="local", depends_on=("a",), retries=2),
        ),
    )


def test_schema_pragmas_and_roundtrip(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "s.db")
    wf_id = repo.create_workflow(
        sample(), spec_yaml="x", spec_hash="h", source="f.yaml", runs_root=tmp_path / "runs"
    )
    raw = sqlite3.connect(tmp_path / "s.db")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexes = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"ix_activities_wf_state", "ix_logs_activity"} <= indexes
    rec = repo.get_workflow(wf_id)
    assert rec is not None and rec.state is WorkflowState.PENDING
    assert rec.data_dir == str(tmp_path / "runs" / f"{wf_id}-wf" / "data")
    acts = repo.list_activities(wf_id)
    assert [a.name for a in acts] == ["a", "b"]
    assert acts[1].max_attempts == 3
    assert repo.list_dependencies(wf_id) == [(acts[1].id, acts[0].id)]
    assert repo.find_unfinished(spec_hash="h") == rec
    assert repo.find_unfinished(spec_hash="other") is None


def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "s.db")
    try:
        repo.begin_attempt(999, 1, runtime="local", handle={})
    except sqlite3.IntegrityError:
        pass
    else:
        raise AssertionError("attempt for a missing activity was accepted")


def test_attempt_lifecycle_and_logs(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "s.db")
    wf_id = repo.create_workflow(
        sample(), spec_yaml="x", spec_hash="h", source=None, runs_root=tmp_path
    )
    a = repo.list_activities(wf_id)[0]
    with repo.transaction():
        repo.begin_attempt(a.id, 1, runtime="local", handle={})
    assert [x.number for x in repo.live_attempts(wf_id)] == [1]
    repo.attempt_running(a.id, 1, handle={"pid": 42}, node="n1", started_at=1.0)
    repo.append_log(a.id, 1, "stdout", 0, "héllo\n")
    repo.append_log(a.id, 1, "stdout", 7, "world\n")
    assert repo.log_offsets(a.id, 1) == {"stdout": 13}
    repo.attempt_finished(
        a.id,
        1,
        attempt_state="succeeded",
        activity_state=ActivityState.SUCCEEDED,
        exit_code=0,
        reason=None,
        finished_at=2.0,
    )
    assert repo.live_attempts(wf_id) == []
    got = repo.get_activity(wf_id, "a")
    assert got is not None and got.state is ActivityState.SUCCEEDED and got.node == "n1"
    chunks = repo.read_logs(a.id)
    assert "".join(c.data for _, c in chunks) == "héllo\nworld\n"
    last_id = chunks[0][0]
    assert [c.data for _, c in repo.read_logs(a.id, after_id=last_id)] == ["world\n"]


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "s.db")
    try:
        with repo.transaction():
            repo.create_workflow(
                sample(), spec_yaml="x", spec_hash="h", source=None, runs_root=tmp_path
            )
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert repo.list_workflows() == []


def test_claim_is_compare_and_set(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "s.db")
    wf_id = repo.create_workflow(
        sample(), spec_yaml="x", spec_hash="h", source=None, runs_root=tmp_path
    )
    assert repo.claim_workflow(wf_id, pid=1, started=1.0, expect_pid=None, expect_started=None)
    assert not repo.claim_workflow(wf_id, pid=2, started=2.0, expect_pid=None, expect_started=None)
    assert repo.claim_workflow(wf_id, pid=2, started=2.0, expect_pid=1, expect_started=1.0)
