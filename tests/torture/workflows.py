"""The runtimes and workflows the torture runs: every activity writes the ledger.

A workflow builder takes the runtime under test and returns a :class:`TortureWorkflow`; a new
runtime needs one :class:`RuntimeUnderTest` (its name, spec keys, CLI environment, shell and a
way to list what it left running), and the builders work unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.torture.ledger import LEDGER, LOCKS

FLAKY_EXIT = 3
TIMEOUT_SECONDS = 1
SLOW_SECONDS = 30  # far past the timeout: a timed-out attempt never reaches its end


@dataclass(frozen=True)
class Shell:
    """How an activity's shell writes the ledger."""

    name: str
    # Run first: records an `overlap` line when another attempt of the same activity still
    # holds its lock (a kernel lock: released when the last process holding it dies).
    overlap_guard: str
    stamp: str  # appended to each line, for the humans reading a failed trial's ledger


BASH = Shell(
    "bash",
    overlap_guard=(
        f'exec 9>>"{LOCKS}/$AKOFLOW_ACTIVITY_NAME"\n'
        f'flock -n 9 || echo "overlap $AKOFLOW_ACTIVITY_NAME $AKOFLOW_ATTEMPT $$" >> {LEDGER}\n'
    ),
    stamp=" $EPOCHREALTIME",
)
# busybox sh: no flock applet, no EPOCHREALTIME; overlaps are then judged from the ledger's
# order alone (a start of another attempt between one attempt's start and end).
POSIX_SH = Shell("sh", overlap_guard="", stamp="")


@dataclass(frozen=True)
class RuntimeUnderTest:
    name: str  # the runtime name activities use
    spec: dict[str, Any]  # extra `spec:` keys (e.g. the image of a container runtime)
    env: dict[str, str]  # environment of every CLI process
    shell: Shell
    # Descriptions of what the runs of a state dir left behind (processes, containers).
    leftovers: Callable[[Path], list[str]]
    # Sends SIGTERM to the running attempts of these activities; returns how many.
    terminate: Callable[[Path, frozenset[str]], int]


@dataclass(frozen=True)
class TortureWorkflow:
    name: str
    text: str
    deps: dict[str, list[str]]  # every activity, with what it depends on
    last: str  # the activity that ends last (its end line marks the end of the run)
    flaky: frozenset[str] = frozenset()  # fail their first attempt, succeed later
    timed: frozenset[str] = frozenset()  # their first attempt sleeps past its timeout
    lines: int = 0  # about how many ledger lines a run without crash writes

    @property
    def kind(self) -> str:
        return self.name.split("-")[0]


@dataclass
class _Builder:
    rt: RuntimeUnderTest
    activities: list[dict[str, Any]] = field(default_factory=list)
    deps: dict[str, list[str]] = field(default_factory=dict)
    flaky: set[str] = field(default_factory=set)
    timed: set[str] = field(default_factory=set)

    def add(self, name: str, body: str = "", deps: list[str] | None = None, **extra: Any) -> None:
        shell = self.rt.shell
        script = (
            shell.overlap_guard
            + f'echo "start $AKOFLOW_ACTIVITY_NAME $AKOFLOW_ATTEMPT $${shell.stamp}" >> {LEDGER}\n'
            + body
            + f'echo "end $AKOFLOW_ACTIVITY_NAME $AKOFLOW_ATTEMPT $${shell.stamp}" >> {LEDGER}\n'
        )
        act: dict[str, Any] = {"name": name, "run": script}
        if deps:
            act["dependsOn"] = deps
        act.update(extra)
        self.activities.append(act)
        self.deps[name] = list(deps or [])

    def add_flaky(self, name: str, deps: list[str] | None = None) -> None:
        """Fails its first attempt before its end; the retry succeeds."""
        stamp = self.rt.shell.stamp
        body = (
            'if [ "$AKOFLOW_ATTEMPT" -lt 2 ]; then\n'
            f'  echo "fail $AKOFLOW_ACTIVITY_NAME $AKOFLOW_ATTEMPT $${stamp}" >> {LEDGER}\n'
            f"  exit {FLAKY_EXIT}\n"
            "fi\n"
        )
        self.add(name, body, deps, retries=2)
        self.flaky.add(name)

    def add_timed(self, name: str, deps: list[str] | None = None) -> None:
        """Its first attempt sleeps past its timeout and is stopped; the retry is quick."""
        body = f'if [ "$AKOFLOW_ATTEMPT" -lt 2 ]; then sleep {SLOW_SECONDS}; fi\n'
        self.add(name, body, deps, retries=2, timeout=f"{TIMEOUT_SECONDS}s")
        self.timed.add(name)

    def build(self, name: str, last: str) -> TortureWorkflow:
        spec = {"runtime": self.rt.name, **self.rt.spec, "activities": self.activities}
        text = yaml.safe_dump({"name": name, "spec": spec}, sort_keys=False, width=1 << 20)
        lines = 2 * len(self.deps) + 2 * len(self.flaky) + len(self.timed)
        return TortureWorkflow(
            name, text, self.deps, last, frozenset(self.flaky), frozenset(self.timed), lines
        )


def _pause(i: int) -> str:
    """A little work for some activities, so that kills find attempts in flight."""
    return f"sleep 0.0{i % 4 * 3}\n" if i % 4 else ""


def wide(rt: RuntimeUnderTest, width: int = 200) -> TortureWorkflow:
    """`width` independent activities and one that joins them all."""
    b = _Builder(rt)
    names = [f"w{i}" for i in range(width)]
    for i, name in enumerate(names):
        b.add(name, _pause(i))
    b.add("join", deps=names)
    return b.build(f"wide-{width}", "join")


def chain(rt: RuntimeUnderTest, length: int = 30) -> TortureWorkflow:
    """`length` activities, each depending on the one before."""
    b = _Builder(rt)
    for i in range(length):
        b.add(f"c{i}", deps=[f"c{i - 1}"] if i else None)
    return b.build(f"chain-{length}", f"c{length - 1}")


def retrying(
    rt: RuntimeUnderTest, flaky: int = 6, timed: int = 2, plain: int = 8, chained: int = 3
) -> TortureWorkflow:
    """Activities that fail their first attempt, some in a chain, activities whose first
    attempt times out, plain ones, and a join of everything."""
    b = _Builder(rt)
    ends: list[str] = []
    for i in range(flaky):
        b.add_flaky(f"f{i}")
        ends.append(f"f{i}")
    for i in range(chained):
        b.add_flaky(f"g{i}", deps=[f"g{i - 1}"] if i else None)
    if chained:
        ends.append(f"g{chained - 1}")
    for i in range(timed):
        b.add_timed(f"t{i}")
        ends.append(f"t{i}")
    for i in range(plain):
        b.add(f"p{i}", _pause(i))
        ends.append(f"p{i}")
    b.add("join", deps=ends)
    return b.build(f"retrying-{flaky + chained}f{timed}t", "join")


Builder = Callable[[RuntimeUnderTest], TortureWorkflow]
