"""What must hold after any sequence of kills and recoveries, judged from the ledger (what the
activities really did) against the store (what the engine says they did).

Pure: :func:`check` takes a snapshot of the store and the parsed ledger and returns every
violation found, as sentences naming the activity and attempt.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from akoflow.service import DB_NAME
from akoflow.store import Repository
from tests.torture.ledger import Entry
from tests.torture.workflows import TortureWorkflow

FINAL_ACTIVITY = {"succeeded", "failed", "cancelled", "skipped"}
LIVE_ATTEMPT = {"submitted", "running"}


@dataclass(frozen=True)
class AttemptView:
    number: int
    state: str
    exit_code: int | None
    reason: str | None


@dataclass(frozen=True)
class ActivityView:
    name: str
    state: str
    attempt: int
    exit_code: int | None
    reason: str | None
    attempts: tuple[AttemptView, ...]


@dataclass(frozen=True)
class StoreView:
    runs: tuple[tuple[int, str], ...]  # (id, state) of every stored run
    activities: dict[str, ActivityView]  # of the first run

    @property
    def state(self) -> str | None:
        return self.runs[0][1] if self.runs else None


def read_store(state_dir: Path) -> StoreView:
    """The store as the engine left it (call only when no engine runs on it)."""
    if not (state_dir / DB_NAME).exists():
        return StoreView((), {})
    repo = Repository(state_dir / DB_NAME)
    try:
        runs = tuple((w.id, str(w.state)) for w in reversed(repo.list_workflows(limit=100)))
        activities: dict[str, ActivityView] = {}
        if runs:
            for a in repo.list_activities(runs[0][0]):
                attempts = tuple(
                    AttemptView(t.number, t.state, t.exit_code, t.reason)
                    for t in repo.list_attempts(a.id)
                )
                activities[a.name] = ActivityView(
                    a.name, str(a.state), a.attempt, a.exit_code, a.reason, attempts
                )
    finally:
        repo.close()
    return StoreView(runs, activities)


def check(
    wf: TortureWorkflow,
    store: StoreView,
    entries: list[Entry],
    bad_lines: list[str],
    *,
    cancelled: bool,
    terminated: bool = False,
) -> list[str]:
    """Every violation of: one run; it ended (SUCCEEDED unless it was cancelled, or attempts
    were terminated from outside, which may fail it); each
    SUCCEEDED activity ran to its end exactly once, in the attempt recorded as the succeeded
    one; nothing ran to its end twice; no attempt ran twice or overlapped another of the same
    activity; no attempt ran that the store says never started (or does not know); nothing
    started before its dependencies ended; no attempt is left live in the store."""
    v: list[str] = [f"malformed ledger line {line!r}" for line in bad_lines]
    if len(store.runs) != 1:
        return v + [f"{len(store.runs)} runs stored, expected exactly one: {store.runs}"]
    allowed = {"succeeded"} | ({"cancelled"} if cancelled else set())
    allowed |= {"failed"} if terminated else set()
    if store.state not in allowed:
        v.append(f"run ended {store.state}, expected {' or '.join(sorted(allowed))}")
    if set(store.activities) != set(wf.deps):
        v.append(f"stored activities differ from the workflow's: {sorted(store.activities)}")
    by_activity: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        by_activity[e.activity].append(e)
    unknown = set(by_activity) - set(wf.deps)
    v += [f"ledger names an activity the workflow does not have: {n}" for n in sorted(unknown)]
    ends = {n: [e for e in es if e.kind == "end"] for n, es in by_activity.items()}
    for name, act in store.activities.items():
        v += _check_activity(act, by_activity.get(name, []), cancelled=cancelled)
        v += _check_dependencies(name, wf.deps[name], by_activity.get(name, []), ends)
    return v


def _check_activity(act: ActivityView, entries: list[Entry], *, cancelled: bool) -> list[str]:
    name = act.name
    v: list[str] = []
    starts = [e for e in entries if e.kind == "start"]
    ends = [e for e in entries if e.kind == "end"]
    v += [
        f"{name}: attempt {e.attempt} overlapped another attempt (lock held)"
        for e in entries
        if e.kind == "overlap"
    ]
    if act.state not in FINAL_ACTIVITY:
        v.append(f"{name}: left {act.state}")
    stored = {t.number: t for t in act.attempts}
    # The store's own consistency.
    numbers = sorted(stored)
    if numbers != list(range(1, len(numbers) + 1)) or act.attempt != len(numbers):
        v.append(f"{name}: attempt counter {act.attempt}, attempt records {numbers}")
    v += [
        f"{name}: attempt {t.number} left {t.state}"
        for t in act.attempts
        if t.state in LIVE_ATTEMPT
    ]
    succeeded = [t.number for t in act.attempts if t.state == "succeeded"]
    # Against what really ran.
    if len(ends) > 1:
        v.append(f"{name}: ran to its end {len(ends)} times (attempts {[e.attempt for e in ends]})")
    if act.state == "succeeded":
        if not ends:
            v.append(
                f"{name}: recorded SUCCEEDED (attempt {succeeded}) but never reached its "
                f"end: false success"
            )
        if succeeded != [numbers[-1] if numbers else None]:
            v.append(f"{name}: SUCCEEDED with succeeded attempts {succeeded} of {numbers}")
        elif ends and ends[0].attempt != succeeded[0]:
            v.append(
                f"{name}: attempt {succeeded[0]} recorded as the one that succeeded, but "
                f"attempt {ends[0].attempt} is the one that reached its end"
            )
        if act.exit_code != 0:
            v.append(f"{name}: SUCCEEDED with exit code {act.exit_code}")
    else:
        if succeeded:
            v.append(f"{name}: {act.state} with a succeeded attempt {succeeded}")
        if ends and not (cancelled and act.state == "cancelled"):
            v.append(
                f"{name}: reached its end (attempt {ends[0].attempt}) but recorded "
                f"{act.state} ({act.reason})"
            )
    seen_starts: dict[int, Entry] = {}
    for e in starts:
        if e.attempt in seen_starts:
            v.append(
                f"{name}: attempt {e.attempt} started twice (pids "
                f"{seen_starts[e.attempt].pid} and {e.pid})"
            )
        seen_starts.setdefault(e.attempt, e)
    for e in entries:
        if e.kind not in ("start", "end", "fail"):
            continue
        t = stored.get(e.attempt)
        if t is None:
            v.append(
                f"{name}: attempt {e.attempt} ran ({e.kind}) but the store has no such attempt"
            )
        elif t.state == "lost":
            v.append(
                f"{name}: attempt {e.attempt} ran ({e.kind}) but is recorded as never "
                f"started ({t.reason})"
            )
    for e in ends:
        s = seen_starts.get(e.attempt)
        if s is None or s.pos > e.pos:
            v.append(f"{name}: attempt {e.attempt} ended without starting")
            continue
        intruders = [o.attempt for o in starts if o.attempt != e.attempt and s.pos < o.pos < e.pos]
        if intruders:
            v.append(f"{name}: attempts {intruders} started while attempt {e.attempt} ran")
    return v


def _check_dependencies(
    name: str, deps: list[str], entries: list[Entry], ends: dict[str, list[Entry]]
) -> list[str]:
    v: list[str] = []
    for e in entries:
        if e.kind != "start":
            continue
        for dep in deps:
            if not any(d.pos < e.pos for d in ends.get(dep, [])):
                v.append(f"{name}: attempt {e.attempt} started before its dependency {dep} ended")
    return v
