"""Repository queries the server uses: pages, counts, look-ups, and delete with its cascade."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from akoflow.spec import Activity, Workflow
from akoflow.states import ActivityState, WorkflowState
from akoflow.store import Repository


def chain(name: str, n: int) -> Workflow:
    return Workflow(
        name=name,
        activities=tuple(
            Activity(
                name=f"a{i}", run="true", runtime="local", depends_on=(f"a{i - 1}",) if i else ()
            )
            for i in range(n)
        ),
    )


def store(repo: Repository, wf: Workflow, tmp_path: Path) -> int:
    return repo.create_workflow(
        wf, spec_yaml="x", spec_hash=wf.name, source=None, runs_root=tmp_path
    )


def test_activity_pages_by_keyset_offset_and_state(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "s.db")
    wf_id = store(repo, chain("c", 25), tmp_path)
    store(repo, chain("other", 3), tmp_path)
    page = repo.list_activities_page(wf_id, limit=10)
    assert [a.position for a in page] == list(range(10))
    after = repo.list_activities_page(wf_id, limit=10, after=page[-1].position)
    assert [a.name for a in after] == [f"a{i}" for i in range(10, 20)]
    assert [a.position for a in repo.list_activities_page(wf_id, limit=10, offset=20)] == [
        20,
        21,
        22,
        23,
        24,
    ]
    ids = [a.id for a in repo.list_activities(wf_id)[:3]]
    repo.set_activity_states([(ids[1], ActivityState.READY)])
    ready = repo.list_activities_page(wf_id, limit=10, state=ActivityState.READY)
    assert [a.name for a in ready] == ["a1"]
    assert repo.count_activities(wf_id) == 25
    assert repo.count_activities(wf_id, ActivityState.READY) == 1
    assert repo.count_activities(wf_id, ActivityState.FAILED) == 0
    assert repo.dependency_names(wf_id)[:2] == [("a1", "a0"), ("a2", "a1")]


def test_workflow_filters_counts_and_unfinished(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "s.db")
    first = store(repo, chain("x", 1), tmp_path)
    second = store(repo, chain("y", 1), tmp_path)
    third = store(repo, chain("x", 1), tmp_path)
    repo.set_workflow_state(second, WorkflowState.SUCCEEDED)
    repo.set_workflow_state(third, WorkflowState.RUNNING)
    assert [w.id for w in repo.list_workflows(name="x")] == [third, first]
    assert repo.count_workflows() == 3
    assert repo.count_workflows(name="x") == 2
    assert repo.count_workflows(unfinished_only=True) == 2
    assert repo.unfinished_workflow_ids() == [first, third]


def test_delete_workflow_removes_everything_of_it(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "s.db")
    doomed = store(repo, chain("d", 2), tmp_path)
    kept = store(repo, chain("k", 2), tmp_path)
    for wf_id in (doomed, kept):
        act = repo.list_activities(wf_id)[0]
        repo.begin_attempt(act.id, 1, runtime="local", handle={})
        repo.append_log(act.id, 1, "stdout", 0, "out\n")
        repo.add_metrics([(act.id, 1, 1.0, 50.0, 1024)])
    assert repo.delete_workflow(doomed) is True
    assert repo.delete_workflow(doomed) is False
    assert repo.get_workflow(doomed) is None
    raw = sqlite3.connect(tmp_path / "s.db")
    for table in ("activities", "dependencies", "attempts", "logs", "metrics"):
        n = raw.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        assert n == (2 if table == "activities" else 1), table
    assert repo.count_activities(kept) == 2


def test_runtime_and_nodes_lookups(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "s.db")
    assert repo.get_runtime("local") is None
    repo.upsert_runtime("local", kind="local", status="READY", reason=None, config={"A": "1"})
    rt = repo.get_runtime("local")
    assert rt is not None and rt.config == {"A": "1"} and rt.status == "READY"
    repo.upsert_nodes("local", [("n2", "READY", 2.0, 1024, 0.5, 512), ("n1", "READY", 1, 1, 0, 0)])
    assert [n.name for n in repo.list_nodes("local")] == ["n1", "n2"]
    assert repo.list_nodes("other") == []


def test_activities_that_ran_is_one_query_over_the_run(tmp_path: Path) -> None:
    """Those with an attempt that started or finished; one only submitted did not run."""
    repo = Repository(tmp_path / "s.db")
    wf_id = store(repo, chain("c", 4), tmp_path)
    other = store(repo, chain("other", 2), tmp_path)
    ids = {a.name: a.id for a in repo.list_activities(wf_id)}
    for name in ("a0", "a1", "a2"):
        repo.begin_attempt(ids[name], 1, runtime="local", handle={})
    repo.attempt_finished(
        ids["a0"],
        1,
        attempt_state="succeeded",
        activity_state=ActivityState.SUCCEEDED,
        exit_code=0,
        reason=None,
        finished_at=2.0,
        started_at=1.0,
    )
    repo.attempt_running(ids["a1"], 1, handle={}, node=None, started_at=1.5)
    first = repo.list_activities(other)[0]
    repo.begin_attempt(first.id, 1, runtime="local", handle={})
    repo.attempt_running(first.id, 1, handle={}, node=None, started_at=1.0)
    assert repo.activities_that_ran(wf_id) == {"a0", "a1"}
