"""Where to kill: one seeded plan per trial (pure: the same seed gives the same plan).

A trial runs one workflow in a fresh state dir. Its first kill aims at one phase of the run;
then each recovery (``resume``, or re-running the file) may be killed in turn, and a last
recovery runs the workflow to its end.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tests.torture.workflows import TIMEOUT_SECONDS, TortureWorkflow

PHASES = (
    "startup",
    "dispatch",
    "mid-run",
    "end",
    "retry",
    "timeout",
    "cancel",
    "sigterm-while-down",
)
STARTUP_WINDOW = 0.9  # s: imports, opening the store, storing the run, attaching
RETRY_WINDOW = 0.6  # s after a planned failure: its record, the back-off (0.25 s), the retry
CANCEL_GAP = 0.1  # s at most between the cancel request and the kill (a cancel takes ~0.1 s)
END_WINDOW = 0.02  # s after the last activity ended: storing it, closing the run, leaving
RERUN_SHARE = 0.25  # recoveries that re-run the file instead of `akoflow resume`


@dataclass(frozen=True)
class Trigger:
    """Kill ``delay`` s after the ``count``-th new ledger line matching ``pattern`` (counted
    from the process's start), or ``delay`` s after the start when there is no pattern."""

    pattern: str | None
    count: int
    delay: float

    def describe(self) -> str:
        when = f"{self.count}x /{self.pattern}/ then " if self.pattern else "start then "
        return f"{when}+{self.delay:.3f}s"


@dataclass(frozen=True)
class KillPlan:
    phase: str
    trigger: Trigger
    cancel: str | None = None  # "sigint" or "cancel-cli": asked before the kill
    cancel_gap: float = 0.0
    # Once the engine is dead, SIGTERM the attempts of the timed activities, sure to be asleep
    # then (as a system shutdown or an administrator would): the resumed engine must not take
    # them for successes. (Not the others: one hit just after its end line would be retried
    # and rightly reach its end twice.)
    terminate_attempts: bool = False

    def describe(self) -> str:
        text = f"{self.phase}: {self.trigger.describe()}"
        if self.cancel:
            text += f", {self.cancel} then SIGKILL after {self.cancel_gap:.3f}s"
        if self.terminate_attempts:
            text += ", then SIGTERM to the timed attempts"
        return text


@dataclass(frozen=True)
class TrialPlan:
    index: int
    seed: str
    workflow: TortureWorkflow
    first: KillPlan
    recovery_kills: tuple[KillPlan, ...]  # kills of the recoveries, in order
    recoveries: tuple[str, ...]  # "resume" or "rerun", one more than recovery_kills

    def describe(self) -> str:
        steps = [f"run killed at {self.first.describe()}"]
        for how, kill in zip(self.recoveries, self.recovery_kills, strict=False):
            steps.append(f"{how} killed at {kill.describe()}")
        steps.append(f"{self.recoveries[-1]} to the end")
        return f"trial {self.index} (seed {self.seed}) {self.workflow.name}: " + "; ".join(steps)


def trial_seed(master: int, index: int) -> str:
    return f"{master}:{index}"


def _compatible(phase: str, wf: TortureWorkflow) -> bool:
    if phase == "cancel":  # runs long enough for a cancel to find work in flight
        return wf.kind != "chain"
    if phase == "retry":
        return bool(wf.flaky)
    if phase in ("timeout", "sigterm-while-down"):  # long attempts: sure to find one running
        return bool(wf.timed)
    return True


def _first_kill(rng: random.Random, phase: str, wf: TortureWorkflow) -> KillPlan:
    lines = max(wf.lines, 4)
    if phase == "startup":
        return KillPlan(phase, Trigger(None, 0, rng.uniform(0.0, STARTUP_WINDOW)))
    if phase == "dispatch":
        return KillPlan(phase, Trigger(r"^start ", rng.randint(1, 6), rng.uniform(0, 0.01)))
    if phase == "mid-run":
        count = rng.randint(lines // 10 + 1, lines * 9 // 10)
        return KillPlan(phase, Trigger(r"^(start|end) ", count, rng.uniform(0, 0.02)))
    if phase == "end":
        return KillPlan(phase, Trigger(rf"^end {wf.last} ", 1, rng.uniform(0, END_WINDOW)))
    if phase == "retry":
        count = rng.randint(1, min(4, len(wf.flaky)))
        return KillPlan(phase, Trigger(r"^fail ", count, rng.uniform(0, RETRY_WINDOW)))
    if phase == "timeout":
        names = "|".join(sorted(wf.timed))
        delay = rng.uniform(0.6 * TIMEOUT_SECONDS, 1.8 * TIMEOUT_SECONDS)
        return KillPlan(phase, Trigger(rf"^start ({names}) 1 ", 1, delay))
    if phase == "cancel":
        count = rng.randint(1, lines // 2)
        how = rng.choice(("sigint", "cancel-cli"))
        trigger = Trigger(r"^(start|end) ", count, rng.uniform(0, 0.02))
        # Half of the kills within 10 ms: while stopped attempts are still being collected.
        gap = rng.uniform(0, rng.choice((0.01, CANCEL_GAP)))
        return KillPlan(phase, trigger, how, gap)
    if phase == "sigterm-while-down":
        names = "|".join(sorted(wf.timed))
        trigger = Trigger(rf"^start ({names}) 1 ", 1, rng.uniform(0, 0.5 * TIMEOUT_SECONDS))
        return KillPlan(phase, trigger, terminate_attempts=True)
    raise ValueError(f"unknown phase {phase!r}")


def _recovery_kill(rng: random.Random, wf: TortureWorkflow) -> KillPlan:
    if rng.random() < 0.5:
        return KillPlan("resume", Trigger(None, 0, rng.uniform(0.05, 1.2)))
    count = rng.randint(1, max(1, wf.lines // 2))
    return KillPlan("resume", Trigger(r"^(start|end) ", count, rng.uniform(0, 0.02)))


def plan_trial(
    master: int, index: int, phases: tuple[str, ...], workflows: list[TortureWorkflow]
) -> TrialPlan:
    """Phases take turns; the workflow, the instants and the recoveries are drawn from the
    trial's own seed."""
    seed = trial_seed(master, index)
    rng = random.Random(seed)
    phase = phases[index % len(phases)]
    candidates = [wf for wf in workflows if _compatible(phase, wf)]
    if not candidates:
        raise ValueError(f"no workflow can exercise phase {phase!r}")
    wf = rng.choice(candidates)
    first = _first_kill(rng, phase, wf)
    n_recovery_kills = rng.choices((0, 1, 2), weights=(55, 30, 15))[0]
    recovery_kills = tuple(_recovery_kill(rng, wf) for _ in range(n_recovery_kills))
    recoveries = tuple(
        "rerun" if rng.random() < RERUN_SHARE else "resume" for _ in range(n_recovery_kills + 1)
    )
    return TrialPlan(index, seed, wf, first, recovery_kills, recoveries)
