"""``akoflow run --dry-run``: which activities a new run of a workflow would run, and why,
without running or storing anything.

Decided as the engine would (:mod:`.decide`, without copying): in dependency order, an
activity would be reused when an ended run's entry of its key holds for the data dir the run
would get, seen with the outputs its reused upstream activities would restore there. An
activity downstream of one that would run is *undecided*: its upstream's fingerprint and
outputs are known only once that one ran (the run may still reuse it, when what it reads is
the same).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from akoflow.cache.decide import Decider, Hit, Request
from akoflow.cache.files import Hasher
from akoflow.cache.fingerprint import (
    components,
    inherited,
    key_of,
    runtime_settings,
    sentence,
)
from akoflow.cache.stage import cache_wanted
from akoflow.cache.store import CacheStore
from akoflow.config import activity_environ, env_prefix
from akoflow.runtimes.registry import adapter_for
from akoflow.spec.dag import levels
from akoflow.spec.workflow import Workflow
from akoflow.store import Repository

REMOTE_KINDS = ("hpc", "k8s")  # runtimes whose files stay remote: never reused
NAMED_MOST = 5  # upstream activities a reason names (a join of 1,000 named them all: 7 KB)


@dataclass(frozen=True)
class Planned:
    activity: str
    reused_from: int | None  # the run whose result would be reused; None: it would run
    reason: str
    undecided: bool = False  # decided only once an upstream activity ran

    @property
    def runs(self) -> bool:
        """It would run (for sure, or perhaps: :attr:`undecided`)."""
        return self.reused_from is None

    @property
    def would(self) -> str:
        """``"run"``, ``"cached"`` or ``"undecided"`` (after an upstream activity runs)."""
        if self.undecided:
            return "undecided"
        return "run" if self.runs else "cached"


def plan(
    repo: Repository | None,
    workflow: Workflow,
    data_dir: Path,
    *,
    no_cache: bool = False,
    environ: Mapping[str, str] | None = None,
) -> list[Planned]:
    """What a new run of ``workflow`` in ``data_dir`` would do, activity by activity (in
    dependency order)."""
    env = os.environ if environ is None else environ
    inheritable = activity_environ(env)  # what a local activity's processes inherit
    depth = levels({a.name: a.depends_on for a in workflow.activities})
    order = sorted(workflow.activities, key=lambda a: depth[a.name])
    decider = Decider(CacheStore(repo), Hasher()) if repo is not None else None
    fps: dict[str, str] = {}
    # What reused activities would put in the data dir: seen by the next levels (the engine
    # decides the activities that become ready together at once, each without the others').
    restored: dict[str, str] = {}
    level_restores: dict[str, str] = {}
    level = 0
    producers: dict[str, set[str]] = {}  # path -> the activities that would restore it
    deps = {a.name: a.depends_on for a in workflow.activities}
    found: dict[str, Planned] = {}
    for act in order:
        if depth[act.name] != level:
            level = depth[act.name]
            restored.update(level_restores)
            level_restores = {}
        adapter = adapter_for(act.runtime)
        kind = adapter.kind if adapter is not None else act.runtime
        running = [d for d in act.depends_on if found[d].runs]
        reason = None
        undecided = False
        if no_cache or not cache_wanted():
            reason = "caching is off (--no-cache or AKOFLOW_CACHE=off)"
        elif not act.cache:
            reason = "cache: false"
        elif kind in REMOTE_KINDS:
            reason = f"its files stay on runtime {act.runtime} (remote results are not reused)"
        elif running:  # its upstream's fingerprint and files are known once it ran
            sure = [d for d in running if not found[d].undecided]
            if sure:
                shown = sentence(sure, NAMED_MOST)
                reason = f"decided after {shown} {'runs' if len(sure) == 1 else 'run'}"
            else:
                reason = f"decided after {sentence(running, NAMED_MOST)}"
            undecided = True
        elif decider is None:
            reason = "no earlier run of it (no state dir yet)"
        if reason is not None:
            found[act.name] = Planned(act.name, None, reason, undecided)
            continue
        assert decider is not None
        parts = components(
            workflow,
            act,
            runtime=runtime_settings(kind, env, env_prefix(act.runtime)),
            upstream={d: fps[d] for d in act.depends_on},
            environ=inherited(act, kind, inheritable),
        )
        request = Request(
            None,
            workflow.name,
            act.name,
            key_of(parts),
            parts,
            data_dir,
            act.inputs,
            act.outputs,
            plan_only=True,
            planned=restored,
            unrelated=functools.partial(_unrelated, act.name, deps, producers),
        )
        decision = decider.decide(request)
        if isinstance(decision, Hit):
            fps[act.name] = decision.entry.fingerprint
            level_restores.update((p, version.sha256) for p, version in decision.outputs)
            for path, _ in decision.outputs:
                producers.setdefault(path, set()).add(act.name)
            found[act.name] = Planned(
                act.name,
                decision.entry.workflow_id,
                f"reuses attempt {decision.entry.attempt} of run #{decision.entry.workflow_id}",
            )
        else:
            found[act.name] = Planned(act.name, None, decision.reason)
    return [found[a.name] for a in workflow.activities]


def _unrelated(
    name: str, deps: Mapping[str, Sequence[str]], producers: Mapping[str, set[str]]
) -> set[str]:
    """The paths restored by activities ``name`` does not depend on (see
    :attr:`Request.unrelated`)."""
    upstream: set[str] = set()
    todo = list(deps[name])
    while todo:
        dep = todo.pop()
        if dep not in upstream:
            upstream.add(dep)
            todo.extend(deps[dep])
    return {path for path, names in producers.items() if not names & upstream}


__all__ = ["Planned", "plan"]
