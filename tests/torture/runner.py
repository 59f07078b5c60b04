"""Runs trials: the real CLI, SIGKILLed where the plan says, recovered, then checked.

    report = run_torture(runtime, [wide, chain, retrying], min_kills=50, base_dir=tmp)
    assert not report.failures(), report.failure_text()

The master seed comes from $AKOFLOW_TORTURE_SEED (else a fresh one, printed with every
failure); $AKOFLOW_TORTURE_TRIALS=3,17 replays only those trials of that seed;
$AKOFLOW_TORTURE_KILLS=500 asks for more kills than a test's own minimum (a soak run).
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.torture import ledger
from tests.torture.invariants import check, read_store
from tests.torture.plans import PHASES, KillPlan, TrialPlan, plan_trial
from tests.torture.workflows import Builder, RuntimeUnderTest, TortureWorkflow

SEED_ENV = "AKOFLOW_TORTURE_SEED"
TRIALS_ENV = "AKOFLOW_TORTURE_TRIALS"
KILLS_ENV = "AKOFLOW_TORTURE_KILLS"
POLL = 0.003  # s between looks at the ledger while waiting for a trigger
STALL_LIMIT = 60.0  # s without reaching the kill point nor ending: the engine hangs
FINISH_LIMIT = 120.0  # s for the last recovery to finish the run
LEFTOVER_GRACE = 10.0  # s for what a finished run stopped to disappear
FINAL_WORKFLOW = {"succeeded", "failed", "cancelled"}


@dataclass
class Kill:
    plan: KillPlan
    landed: bool  # the process was alive when SIGKILL was sent, and died of it
    note: str = ""


@dataclass
class TrialResult:
    plan: TrialPlan
    trial_dir: Path
    kills: list[Kill] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    cancelled: bool = False
    terminated: int = 0  # attempts sent SIGTERM while no engine ran
    seconds: float = 0.0


class _Cli:
    """The real CLI for one trial; each process writes its output to files of the trial."""

    def __init__(self, trial_dir: Path, wf_file: Path, env: dict[str, str]) -> None:
        self.trial_dir = trial_dir
        self.state = trial_dir / "state"
        self.data = trial_dir / "data"
        self.wf_file = wf_file
        self.env = env
        self.seq = 0
        self.stderr: dict[int, Path] = {}  # of each process started

    def start(self, args: list[str]) -> subprocess.Popen[bytes]:
        self.seq += 1
        stem = self.trial_dir / f"{self.seq:02d}-{args[0]}"
        with open(f"{stem}.out", "wb") as out, open(f"{stem}.err", "wb") as err:
            proc = subprocess.Popen(
                # faulthandler: a hung process is asked for its threads' stacks (SIGABRT)
                [sys.executable, "-X", "faulthandler", "-m", "akoflow", *args]
                + ["--state-dir", str(self.state)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self.env,
            )
        self.stderr[proc.pid] = Path(f"{stem}.err")
        return proc

    def run_argv(self) -> list[str]:
        return ["run", str(self.wf_file), "--quiet", "--data-dir", str(self.data)]

    def recovery_argv(self, how: str) -> list[str] | None:
        """How to continue the run; None when it already ended."""
        runs = read_store(self.state).runs
        if not runs:  # killed before the run was stored: run the file again
            return self.run_argv()
        if runs[0][1] in FINAL_WORKFLOW:
            return None
        return self.run_argv() if how == "rerun" else ["resume", "--quiet"]

    def cancel(self, wf: TortureWorkflow) -> None:
        proc = self.start(["cancel", wf.name])
        proc.wait(timeout=60)


def _wait_for_trigger(
    proc: subprocess.Popen[bytes], plan: KillPlan, tail: ledger.Tail
) -> str | None:
    """Wait until the plan's instant; a note instead when the process ended first."""
    trigger = plan.trigger
    pattern = re.compile(trigger.pattern) if trigger.pattern else None
    started = time.monotonic()
    matched = 0
    while True:
        if proc.poll() is not None:
            return f"ended by itself (exit {proc.returncode}) before the kill point"
        now = time.monotonic()
        if pattern is None and now - started >= trigger.delay:
            return None
        if pattern is not None:
            matched += tail.count(pattern)
            if matched >= trigger.count:
                time.sleep(trigger.delay)
                return None
        if now - started > STALL_LIMIT:
            return "STALL"
        time.sleep(POLL)


def _hung(proc: subprocess.Popen[bytes], cli: _Cli, what: str) -> str:
    """Describe a hung CLI process, after asking it for its threads' stacks and killing it."""
    state = read_store(cli.state).state
    proc.send_signal(signal.SIGABRT)  # faulthandler writes every thread's stack to stderr
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
    return (
        f"{what} (hang; the run was {state} in the store); its threads' stacks are in "
        f"{cli.stderr[proc.pid].name}"
    )


def _strike(
    proc: subprocess.Popen[bytes], plan: KillPlan, cli: _Cli, wf: TortureWorkflow
) -> tuple[Kill, bool, str | None]:
    """Kill ``proc`` as planned. Returns the kill, whether a cancel was requested, and a
    violation if the process hung instead."""
    tail = ledger.Tail(cli.data)
    note = _wait_for_trigger(proc, plan, tail)
    if note == "STALL":
        what = f"neither reached the kill point nor ended in {STALL_LIMIT:g}s"
        return Kill(plan, False, "hung"), False, _hung(proc, cli, what)
    cancel_sent = False
    if note is None and plan.cancel:
        cancel_sent = True
        if plan.cancel == "sigint":
            proc.send_signal(signal.SIGINT)
        else:
            cli.cancel(wf)
        time.sleep(plan.cancel_gap)
    alive = proc.poll() is None
    if alive:
        proc.kill()
    proc.wait(timeout=30)
    landed = alive and proc.returncode == -signal.SIGKILL
    if note is None and not landed:
        note = f"ended by itself (exit {proc.returncode}) before the kill"
    return Kill(plan, landed, note or ""), cancel_sent, None


def _finish(cli: _Cli, how: str) -> list[str]:
    """Run the last recovery to its end; violations if it hangs or its exit code lies."""
    argv = cli.recovery_argv(how)
    if argv is None:
        return []
    proc = cli.start(argv)
    try:
        code = proc.wait(timeout=FINISH_LIMIT)
    except subprocess.TimeoutExpired:
        return [_hung(proc, cli, f"`{argv[0]}` did not end within {FINISH_LIMIT:g}s")]
    state = read_store(cli.state).state
    expected = 0 if state == "succeeded" else 1
    if code != expected:
        return [f"`{argv[0]}` exited {code} for a run that ended {state}"]
    return []


def _tracebacks(trial_dir: Path) -> list[str]:
    return [
        f"traceback in {p.name}: {p.read_text(errors='replace')[-600:]}"
        for p in sorted(trial_dir.glob("*.err"))
        if "Traceback" in p.read_text(errors="replace")
    ]


def _leftovers(rt: RuntimeUnderTest, state_dir: Path) -> list[str]:
    deadline = time.monotonic() + LEFTOVER_GRACE
    while True:
        left = rt.leftovers(state_dir)
        if not left or time.monotonic() > deadline:
            return [f"left behind after the run ended: {x}" for x in left]
        time.sleep(0.1)


def run_trial(plan: TrialPlan, rt: RuntimeUnderTest, base_dir: Path) -> TrialResult:
    wf = plan.workflow
    trial_dir = base_dir / f"trial-{plan.index:03d}-{plan.first.phase}-{wf.name}"
    result = TrialResult(plan, trial_dir)
    began = time.monotonic()
    (trial_dir / "data" / ledger.LOCKS).mkdir(parents=True)
    wf_file = trial_dir / f"{wf.name}.yaml"
    wf_file.write_text(wf.text)
    cli = _Cli(trial_dir, wf_file, rt.env)
    for i, kill_plan in enumerate((plan.first, *plan.recovery_kills)):
        argv = cli.run_argv() if i == 0 else cli.recovery_argv(plan.recoveries[i - 1])
        if argv is None:  # the run already ended
            break
        kill, cancel_sent, hang = _strike(cli.start(argv), kill_plan, cli, wf)
        result.kills.append(kill)
        result.cancelled |= cancel_sent
        if kill.landed and kill_plan.terminate_attempts:
            result.terminated += rt.terminate(cli.state, wf.timed)
        if hang:
            result.violations.append(f"{argv[0]}: {hang}")
    result.violations += _finish(cli, plan.recoveries[-1])
    entries, bad = ledger.read(cli.data)
    result.violations += check(wf, read_store(cli.state), entries, bad, cancelled=result.cancelled)
    result.violations += _tracebacks(trial_dir)
    result.violations += _leftovers(rt, cli.state)
    result.seconds = time.monotonic() - began
    return result


@dataclass
class TortureReport:
    runtime: str
    master_seed: int
    results: list[TrialResult]
    seconds: float
    only: bool = False  # replaying chosen trials ($AKOFLOW_TORTURE_TRIALS)

    def landed(self) -> int:
        return sum(k.landed for r in self.results for k in r.kills)

    def kills_by_phase(self) -> Counter[str]:
        return Counter(k.plan.phase for r in self.results for k in r.kills if k.landed)

    def missed(self) -> int:
        return sum(not k.landed for r in self.results for k in r.kills)

    def failures(self) -> list[TrialResult]:
        return [r for r in self.results if r.violations]

    def summary(self) -> str:
        phases = ", ".join(f"{p} {n}" for p, n in sorted(self.kills_by_phase().items()))
        return (
            f"torture on {self.runtime}: seed {self.master_seed}, {len(self.results)} trials, "
            f"{self.landed()} kills survived ({phases}), {self.missed()} kill points the "
            f"process ended before, {len(self.failures())} trials failed, "
            f"{self.seconds:.1f}s"
        )

    def details(self) -> str:
        """One line per trial: its plan and what each kill did."""
        lines = []
        for r in self.results:
            kills = ", ".join("killed" if k.landed else k.note for k in r.kills)
            verdict = f"{len(r.violations)} VIOLATIONS" if r.violations else "ok"
            lines.append(f"{r.plan.describe()} -> {kills} -> {verdict} ({r.seconds:.1f}s)")
        return "\n".join(lines)

    def failure_text(self) -> str:
        parts = [self.summary()]
        for r in self.failures():
            kills = "; ".join(
                f"{k.plan.describe()} -> {'killed' if k.landed else k.note}" for k in r.kills
            )
            parts.append(
                f"\n{r.plan.describe()}\n  kills: {kills}\n  dir: {r.trial_dir}\n  "
                + "\n  ".join(r.violations[:25])
                + (f"\n  ... {len(r.violations) - 25} more" if len(r.violations) > 25 else "")
            )
        indices = ",".join(str(r.plan.index) for r in self.failures())
        parts.append(f"\nreplay: {SEED_ENV}={self.master_seed} {TRIALS_ENV}={indices}")
        return "\n".join(parts)


def master_seed() -> int:
    value = os.environ.get(SEED_ENV)
    return int(value) if value else secrets.randbits(32)


def _only() -> list[int] | None:
    value = os.environ.get(TRIALS_ENV)
    return [int(i) for i in value.split(",") if i.strip()] if value else None


def run_torture(
    rt: RuntimeUnderTest,
    builders: list[Builder],
    base_dir: Path,
    *,
    min_kills: int,
    max_trials: int,
    phases: tuple[str, ...] = PHASES,
    workers: int = 2,
) -> TortureReport:
    """Trials until every phase was tried and ``min_kills`` kills landed (at most
    ``max_trials``), ``workers`` at once."""
    seed = master_seed()
    if os.environ.get(KILLS_ENV):
        min_kills = int(os.environ[KILLS_ENV])
        max_trials = max(max_trials, 3 * min_kills)
    workflows = [build(rt) for build in builders]
    only = _only()
    indices = iter(only if only is not None else range(max_trials))
    results: list[TrialResult] = []
    began = time.monotonic()

    started = 0

    def enough() -> bool:  # every phase tried once, and enough kills landed
        landed = sum(k.landed for r in results for k in r.kills)
        return only is None and started >= len(phases) and landed >= min_kills

    with ThreadPoolExecutor(workers) as pool:
        running: set[Future[TrialResult]] = set()
        while True:
            while len(running) < workers and not enough():
                index = next(indices, None)
                if index is None:
                    break
                plan = plan_trial(seed, index, phases, workflows)
                running.add(pool.submit(run_trial, plan, rt, base_dir))
                started += 1
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            results += [f.result() for f in done]
    results.sort(key=lambda r: r.plan.index)
    return TortureReport(rt.name, seed, results, time.monotonic() - began, only is not None)


def _attempt_processes(state_dir: Path) -> list[tuple[psutil.Process, str]]:
    """Live processes of local attempts of this state dir, with their attempt."""
    prefix = str(state_dir.resolve()) + os.sep
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            attempt = proc.environ().get("AKOFLOW_ATTEMPT_FILES", "")
            if attempt.startswith(prefix) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append((proc, attempt))
        except (psutil.Error, OSError):
            continue
    return found


def local_leftovers(state_dir: Path) -> list[str]:
    found = _attempt_processes(state_dir)
    return [f"pid {p.pid} {p.info['cmdline']} of {attempt}" for p, attempt in found]


def local_terminate(state_dir: Path, activities: frozenset[str]) -> int:
    """SIGTERM to the process group (led by its bash) of every running local attempt of
    these activities."""
    count = 0
    for proc, attempt in _attempt_processes(state_dir):
        if Path(attempt).name.rpartition(".")[0] not in activities:
            continue
        try:
            if os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, signal.SIGTERM)
                count += 1
        except ProcessLookupError:
            continue
    return count
