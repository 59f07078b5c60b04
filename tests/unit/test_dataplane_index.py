"""The data plane's indexes (issue 20: the end of a remote attempt looks at what it may have
touched, not at the whole run) decide exactly as the rules over the whole run do.

Random runs at one remote location (overlapping attempts, retries, declared outputs, files
collected) against a real store: at each dispatch and each end, what the data plane picks
through its indexes is compared with the rules of :mod:`akoflow.dataplane.plan` applied to every
replica of the run and every activity's window, as the data plane computed them before."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from akoflow import service
from akoflow.dataplane import DataPlane, plan
from akoflow.dataplane.index import Declarations, Replicas
from akoflow.dataplane.mover import Digest
from akoflow.engine.model import ActivityRun, WorkflowRun
from akoflow.provenance.declared import declares, literal_root
from akoflow.provenance.remote import RemoteFiles
from akoflow.provenance.snapshot import FileState
from akoflow.runtimes.base import Outcome
from akoflow.spec import load_workflow
from akoflow.states import ActivityState as A
from akoflow.states import WorkflowState
from akoflow.store.repository import Replica

LOC = "hpc:/m"


def test_declared_outputs_are_found_by_path_as_by_trying_every_pattern() -> None:
    declared = [
        ("out/a.txt",),
        ("out/*.csv", "logs/**"),
        ("[ab]/x",),
        ("deep/**/z.bin",),
        ("top?.txt", "a//b"),
        ("d/e[!0-9]/f",),
        (),
    ]
    index = Declarations(declared)
    paths = [
        "out/a.txt", "out/b.txt", "out/c.csv", "out/sub/c.csv", "logs/1", "logs/x/y",
        "a/x", "c/x", "deep/z.bin", "deep/1/2/z.bin", "deep/1/z.bim", "top1.txt",
        "top12.txt", "a//b", "a/b", "d/ex/f", "d/e1/f", "x", "",
    ]  # fmt: skip
    for path in paths:
        assert index.any_declares(path) == any(o and declares(o, path) for o in declared), path
    assert literal_root("a/b/*.txt") == "a/b" and literal_root("**/x") == "" == literal_root("x")


def test_a_locations_timeline_is_cleared_of_versions_brought_back() -> None:
    replicas = Replicas({})
    for i in range(1000):
        replicas.put(Replica(LOC, f"f{i}", 1, None, True, i, 1.0, None, float(i)))
        if i % 10:  # brought back: no longer fresh there
            replicas.put(Replica(LOC, f"f{i}", 1, "h", False, i, 1.0))
    assert [r.path for r in replicas.fresh_since(LOC, 990.0)] == ["f990"]
    assert [r.path for r in replicas.fresh_by(30)] == ["f30"] and not replicas.fresh_by(31)
    assert replicas.timeline_size(LOC) < 300  # not every version ever recorded there
    replicas.drop(LOC, "f990")
    assert replicas.fresh_since(LOC, 990.0) == [] and replicas.fresh_by(990) == []


class Mover:
    location = LOC

    async def put(self, source: Path, path: str, expected: Digest) -> None:
        pass

    async def get(self, path: str, destination: Path) -> Digest:
        return Digest(1, "0" * 64)

    async def stats(self, paths: object) -> None:
        return None


class Runtime:
    files_stay_remote = True

    def data_mover(self, job: object) -> Mover:
        return Mover()


def make_run(tmp_path: Path, rng: random.Random, n: int, collect: str) -> tuple[Any, WorkflowRun]:
    lines = ["name: r", "spec:", "  runtime: hpc", f"  collect: {collect}", "  activities:"]
    for i in range(n):
        lines += [f"    - name: t{i}", "      run: 'true'"]
        deps = sorted({f"t{rng.randrange(i)}" for _ in range(rng.randrange(3))}) if i else []
        if deps:
            lines.append(f"      dependsOn: [{', '.join(deps)}]")
        if rng.random() < 0.4:
            lines.append(f"      outputs: [{rng.choice([f'own{i}', f'g{i % 3}/*', 'shared'])}]")
    text = "\n".join(lines) + "\n"
    workflow = load_workflow(text)
    repo = service.open_repository(tmp_path / "state")
    wf_id = repo.create_workflow(
        workflow, spec_yaml=text, spec_hash="x", source=None, runs_root=tmp_path / "runs"
    )
    data = tmp_path / "data"
    data.mkdir()
    wf = WorkflowRun(wf_id, "r", workflow, data, tmp_path, WorkflowState.RUNNING)
    specs = {a.name: a for a in workflow.activities}
    for rec in repo.list_activities(wf_id):
        wf.activities[rec.name] = ActivityRun(
            rec.id, rec.name, specs[rec.name], "hpc", A.PENDING, 0, 2, wf
        )
    for act in wf.activities.values():
        act.deps = [wf.activities[d] for d in act.spec.depends_on]
        for dep in act.deps:
            dep.dependents.append(act)
    return repo, wf


def every_window(plane: DataPlane, wf: WorkflowRun) -> list[plan.Window]:
    """Every activity's window at the location, as the data plane made them from the run."""
    found = []
    for a in wf.activities.values():
        live = a.state.is_live
        if a.attempt < 1 and not live:
            continue
        writing = live and a.id not in plane._staging and (a.id, a.attempt) not in plane._ended
        found.append(plan.Window(a.id, a.dispatched_at, None if live else a.finished_at, writing))
    return found


def declared_by_writer(wf: WorkflowRun, held: Replica) -> bool:
    writer = next((a for a in wf.activities.values() if a.id == held.activity_id), None)
    return (
        writer is not None
        and bool(writer.spec.outputs)
        and declares(writer.spec.outputs, held.path)
    )


@pytest.mark.parametrize("seed", range(12))
def test_what_an_attempt_brings_and_takes_is_what_the_rules_over_the_whole_run_say(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    collect = ("all", "outputs")[seed % 2]
    repo, wf = make_run(tmp_path, rng, 40, collect)
    plane = DataPlane(repo, lambda name: runtime, lambda act: None)  # type: ignore[arg-type,return-value]
    runtime: Any = Runtime()
    acts = list(wf.activities.values())
    names = [f"own{i}" for i in range(40)] + ["shared", "g0/a", "g1/b", "g2/c", "x", "y/z"]
    running: list[ActivityRun] = []
    checked = fetches = 0
    try:
        for _ in range(400):
            ready = [
                a for a in acts
                if a.state in (A.PENDING, A.READY) and all(d.state is A.SUCCEEDED for d in a.deps)
            ]  # fmt: skip
            if ready and (not running or rng.random() < 0.5) and len(running) < 6:
                act = rng.choice(ready)
                act.state, act.attempt = A.RUNNING, act.attempt + 1
                act.dispatched_at = time.time()
                plane.dispatched(act)  # as the engine tells it at each dispatch
                running.append(act)
                # What it would fetch, to the host and to the location: the same both ways.
                for target in ("", LOC):
                    replicas = repo.data_replicas(wf.id)
                    everyone = {LOC: every_window(plane, wf)}
                    expected = plan.fetches(
                        replicas,
                        target=target,
                        writers={d.id for d in ancestors(act)},
                        inputs=act.spec.inputs,
                        windows=everyone,
                        declared=lambda r: declared_by_writer(wf, r),
                    )
                    assert plane._planned_fetches(act, target)[0] == expected
                    fetches += bool(expected)
                continue
            if not running:
                break
            act = running.pop(rng.randrange(len(running)))
            written = rng.sample(names, rng.randrange(4))
            after = {p: FileState(rng.randrange(1, 3), time.time()) for p in written}
            outcome = Outcome(rng.random() < 0.8, 0, files=RemoteFiles(LOC, {}, after))
            # The listing's versions it records: those not recorded yet that no other
            # activity declares (unless it does too).
            held = repo.data_replicas(wf.id)
            others = [a.spec.outputs for a in acts if a is not act]
            recorded = {
                p
                for p, state in after.items()
                if not plan.recorded(held.get((LOC, p)), state)
                and plan.claims(act.spec.outputs, others, p)
            }
            plane._ended.add((act.id, act.attempt))
            plane.record_outputs(act, runtime, outcome.files)
            now = repo.data_replicas(wf.id)
            assert {p for (_, p), r in now.items() if r.activity_id == act.id and r.fresh} >= (
                recorded
            )
            mirror = plane._index(wf).replicas.held
            assert mirror == now  # the mirror is the store
            windows = every_window(plane, wf)
            expected_back = plan.collectable(
                now,
                location=LOC,
                ending=act.id,
                windows=windows,
                collected=collected_by(wf, act, outcome),
                declared=lambda r: declared_by_writer(wf, r),
            )
            back = plane._collectable(act, outcome, LOC)
            assert back == expected_back
            checked += bool(back)
            for path in back:  # brought back: no longer fresh there
                r = now[LOC, path]
                plane._put_replica(
                    wf, Replica(LOC, path, r.size, "h", False, r.activity_id, r.mtime)
                )
            if outcome.succeeded:
                act.state, act.finished_at = A.SUCCEEDED, time.time()
            elif act.attempt < act.max_attempts:
                act.state = A.READY  # tried again: its window stays open until then
            else:
                act.state, act.finished_at = A.FAILED, time.time()
                for d in acts:
                    if act in ancestors(d) and not d.state.is_live:
                        d.state = A.SKIPPED
        assert checked  # files did come back
        assert fetches or collect == "all"  # kept there, some were needed elsewhere
        # What the data plane keeps as possibly running is what runs, once seen ended.
        plane._windows(wf, LOC, None)
        watched = plane._index(wf).windows.watched("hpc")
        assert watched == sum(
            1 for a in acts if a.state.is_live or (a.attempt >= 1 and a.finished_at is None)
        )
    finally:
        repo.close()


def ancestors(act: ActivityRun) -> set[ActivityRun]:
    seen: set[ActivityRun] = set()
    stack = list(act.deps)
    while stack:
        dep = stack.pop()
        if dep not in seen:
            seen.add(dep)
            stack.extend(dep.deps)
    return seen


def collected_by(wf: WorkflowRun, act: ActivityRun, outcome: Outcome) -> Any:
    policy = wf.workflow.collect

    def collected(activity_id: int) -> bool:
        other = next((a for a in wf.activities.values() if a.id == activity_id), None)
        if other is None or (policy == "outputs" and other.dependents):
            return False
        if other is act:
            return outcome.succeeded
        return other.state is A.SUCCEEDED

    return collected


def test_a_run_that_collects_nothing_keeps_only_what_runs_as_running(tmp_path: Path) -> None:
    rng = random.Random(7)
    repo, wf = make_run(tmp_path, rng, 300, "none")
    runtime: Any = Runtime()
    plane = DataPlane(repo, lambda name: runtime, lambda act: None)  # type: ignore[arg-type,return-value]
    try:
        for act in wf.activities.values():  # one after the other: its end collects nothing
            act.state, act.attempt, act.dispatched_at = A.RUNNING, 1, time.time()
            plane.dispatched(act)
            outcome = Outcome(True, 0, files=RemoteFiles(LOC, {}, {act.name: FileState(1, 1.0)}))
            assert not plane.wants_collect(act, runtime, outcome)
            plane.record_outputs(act, runtime, outcome.files)
            act.state, act.finished_at = A.SUCCEEDED, time.time()
        watched = plane._index(wf).windows.watched("hpc")
        assert watched <= 64 + 1
        assert len(plane._ended) <= 64 + 1  # ends noted, dropped once seen recorded
        # A run that ended is let go when the next one is indexed.
        wf.state = WorkflowState.SUCCEEDED
        other = WorkflowRun(wf.id + 1, "o", wf.workflow, wf.data_dir, tmp_path, wf.state)
        plane._index(other)
        assert list(plane._runs) == [other.id]
    finally:
        repo.close()
