"""The local runtime holds its promises whatever the activity's environment says and whenever
the engine dies: no script runs partly, no fd leaks on a failed start, the prelude always runs,
nothing an activity starts outlives it, its files are private.

The runtime is driven directly (real bash processes, real cgroups) where the workflow loader
would refuse the input; the CLI where the engine's own environment is the hostile part.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import psutil
import pytest

from akoflow.config import RuntimeConfig
from akoflow.runtimes import cgroups
from akoflow.runtimes.base import JobSpec, Outcome, SubmitError
from akoflow.runtimes.local import LocalRuntime
from tests.conftest import ROOT, Akoflow, cli_env, start_cli, wait_for
from tests.scenarios import direct_job


class Collected:
    """RuntimeEvents that keep each attempt's outcome."""

    def __init__(self) -> None:
        self.finished: dict[str, Outcome] = {}

    def job_running(self, key: str, node: str | None) -> None:
        pass

    def job_finished(self, key: str, outcome: Outcome) -> None:
        self.finished[key] = outcome


def job(tmp_path: Path, name: str, run: str, env: Mapping[str, str] = {}, n: int = 1) -> JobSpec:
    return direct_job(tmp_path, name, run, "local", None, attempt=n, env=env)


async def started_runtime(
    config: RuntimeConfig | None = None,
) -> tuple[LocalRuntime, Collected]:
    events = Collected()
    rt = LocalRuntime("local", config or RuntimeConfig.from_env("local"), events)
    await rt.start()
    return rt, events


async def run_to_end(rt: LocalRuntime, events: Collected, spec: JobSpec) -> Outcome:
    await rt.submit(spec)
    return await end_of(events, spec)


async def end_of(events: Collected, spec: JobSpec) -> Outcome:
    """The outcome of ``spec`` once its runtime reports it (30 s at most)."""
    for _ in range(600):
        if spec.key in events.finished:
            return events.finished[spec.key]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{spec.key} did not end")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def read_pid(path: Path) -> int:
    return int(path.read_text())


# ---------------------------------------------------------------- 1. never a partial script

ENGINE_DIES_AFTER_SPAWN = """
import asyncio, os, signal, sys
from pathlib import Path
from akoflow.config import RuntimeConfig
from akoflow.runtimes.base import JobSpec
from akoflow.runtimes.local import LocalRuntime
from akoflow.spec import Activity

real_spawned = LocalRuntime._spawned

def spawned_then_die(self, key, pid):
    real_spawned(self, key, pid)
    print(pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the engine dies the instant bash exists

LocalRuntime._spawned = spawned_then_die
tmp = Path(sys.argv[1])
(tmp / "attempts").mkdir()
(tmp / "data").mkdir()
act = Activity(name="w", run=Path(sys.argv[2]).read_text(), runtime="local")
spec = JobSpec(key="wf1-w-a1", workflow_id=1, workflow_name="x", activity_id=1, activity=act,
               attempt=1, data_dir=tmp / "data", attempt_dir=tmp / "attempts")

async def main():
    rt = LocalRuntime("local", RuntimeConfig.from_env("local"), None)
    await rt.start()
    await rt.submit(spec)
    await asyncio.sleep(30)  # killed when the spawner says bash started

asyncio.run(main())
"""


@pytest.mark.parametrize("size", ["small", "big"])
def test_engine_killed_right_after_spawning_bash_leaves_it_its_whole_script(
    tmp_path: Path, size: str
) -> None:
    """The engine is SIGKILLed at the instant it hears that bash started: that bash still runs
    the complete script (its file was whole before bash existed) and its spawner records its
    end."""
    padding = "#" + "x" * (1 << 20) + "\n" if size == "big" else ""
    script = tmp_path / "script.sh"
    script.write_text(f"{padding}echo first >> marker\nsleep 0.2\necho last >> marker\n")
    engine = subprocess.run(
        [sys.executable, "-c", ENGINE_DIES_AFTER_SPAWN, str(tmp_path), str(script)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert engine.returncode == -signal.SIGKILL, engine.stderr
    exit_file = tmp_path / "attempts" / "w.1.exit"
    wait_for(lambda: exit_file.exists() and exit_file.read_text().startswith("exit "))
    assert exit_file.read_text() == "exit 0\n"
    assert (tmp_path / "data" / "marker").read_text() == "first\nlast\n"
    # No engine saw it end: its spawner removed its cgroup, empty once bash was reaped.
    base = cgroups.usable_base()
    if base is not None:
        cgroup = cgroups.attempt_cgroup(base, str(tmp_path / "attempts" / "w.1"))
        wait_for(lambda: not os.path.exists(cgroup))


# ---------------------------------------------------------------- 2. failed starts

BAD_ENVS = {
    "nul": ({"BAD": "a\0b"}, "NUL byte"),
    "name": ({"A=B": "x"}, "invalid name"),
    "e2big": ({"HUGE": "x" * (200 * 1024)}, "too big"),
}


@pytest.mark.parametrize("case", sorted(BAD_ENVS))
def test_failed_starts_leak_no_descriptor_and_say_why(tmp_path: Path, case: str) -> None:
    env, reason = BAD_ENVS[case]

    async def scenario() -> None:
        rt, _ = await started_runtime()
        fds = len(os.listdir("/proc/self/fd"))
        for n in range(1, 41):
            spec = job(tmp_path, "bad", "echo never > ran.txt", env, n)
            with pytest.raises(SubmitError, match=reason):
                await rt.submit(spec)
            assert not Path(f"{spec.attempt_prefix}.exit").exists()
            if rt._cgroup_base is not None:
                cgroup = cgroups.attempt_cgroup(rt._cgroup_base, str(spec.attempt_prefix))
                assert not os.path.exists(cgroup)
        assert len(os.listdir("/proc/self/fd")) == fds
        await rt.stop()

    asyncio.run(scenario())
    assert not (tmp_path / "data" / "ran.txt").exists()


# ---------------------------------------------------------------- 3. bash start-up names

EVIL = 'touch "$PWNED"; exec >/dev/null 2>&1; cd /\n'
HOSTILE = {
    "BASH_ENV": {"BASH_ENV": "{evil}"},
    "ENV": {"ENV": "{evil}", "POSIXLY_CORRECT": "1"},
    "POSIXLY_CORRECT": {"POSIXLY_CORRECT": "y"},
    "SHELLOPTS-posix": {"SHELLOPTS": "posix"},
    "SHELLOPTS-xtrace": {"SHELLOPTS": "xtrace", "PS4": '$(touch "$PWNED")+ '},
    "SHELLOPTS-noexec": {"SHELLOPTS": "noexec"},
    "BASHOPTS": {"BASHOPTS": "xpg_echo"},
    "BASH_FUNC": {
        "BASH_FUNC_printf%%": '() { touch "$PWNED"; }',
        "BASH_FUNC_cd%%": '() { touch "$PWNED"; }',
        "BASH_FUNC_exec%%": '() { touch "$PWNED"; }',
        "BASH_FUNC_trap%%": '() { touch "$PWNED"; }',
        "BASH_FUNC_umask%%": '() { touch "$PWNED"; }',
    },
}
PROBE = "echo out\necho err >&2\npwd > where.txt\necho 'a\\tb' > echo.txt\nexit 7\n"


@pytest.mark.parametrize("source", ["activity", "engine"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_bash_start_up_names_cannot_bypass_the_prelude(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, source: str
) -> None:
    evil = tmp_path / "evil.sh"
    evil.write_text(EVIL)
    pwned = tmp_path / "pwned"
    env = {k: v.replace("{evil}", str(evil)) for k, v in HOSTILE[case].items()}
    monkeypatch.setenv("PWNED", str(pwned))
    if source == "engine":
        for k, v in env.items():
            monkeypatch.setenv(k, v)
    spec = job(tmp_path, "probe", PROBE, env if source == "activity" else {})

    async def scenario() -> Outcome:
        rt, events = await started_runtime()
        try:
            return await run_to_end(rt, events, spec)
        finally:
            await rt.stop()

    outcome = asyncio.run(scenario())
    prefix = str(spec.attempt_prefix)
    data = tmp_path / "data"
    assert (outcome.exit_code, outcome.reason) == (7, "exit code 7")
    assert Path(prefix + ".exit").read_text() == "exit 7\n"
    assert Path(prefix + ".stdout").read_text() == "out\n"
    assert Path(prefix + ".stderr").read_text() == "err\n"
    assert (data / "where.txt").read_text() == f"{data}\n"
    assert (data / "echo.txt").read_text() == "a\\tb\n"  # bash's default options (no xpg_echo)
    assert not pwned.exists()


def test_engine_started_from_a_hostile_shell_still_runs_activities_right(
    akoflow: Akoflow, tmp_path: Path
) -> None:
    """The user's shell exported BASH_ENV, POSIXLY_CORRECT, SHELLOPTS and a function: the CLI's
    activities still have their output captured, run in the data dir, and are recorded."""
    evil = tmp_path / "evil.sh"
    evil.write_text(EVIL)
    pwned = tmp_path / "pwned"
    env = cli_env(
        BASH_ENV=str(evil),
        POSIXLY_CORRECT="1",
        SHELLOPTS="xtrace",
        PS4='$(touch "$PWNED")+ ',
        PWNED=str(pwned),
        **{"BASH_FUNC_printf%%": '() { touch "$PWNED"; }'},
    )
    wf = tmp_path / "w.yaml"
    wf.write_text(
        "name: w\nspec:\n  activities:\n"
        "    - name: a\n      run: |\n        pwd > where.txt\n        echo hello\n"
        "    - name: b\n      dependsOn: [a]\n      run: exit 3\n"
    )
    data = tmp_path / "data"
    res = akoflow("run", str(wf), "--json", "--data-dir", str(data), env=env)
    assert res.returncode == 1, res.stderr
    states = {a["name"]: a["state"] for a in json.loads(res.stdout)["activities"]}
    assert states == {"a": "succeeded", "b": "failed"}
    assert (data / "where.txt").read_text() == f"{data}\n"
    logs = akoflow("logs", "1", "a", env=env)
    assert logs.stdout == "hello\n", logs.stderr
    assert not pwned.exists()


# ---------------------------------------------------------------- 4. nothing outlives it

ESCAPES = (
    "setsid -f bash -c 'echo $$ > s1.pid; exec sleep 300'\n"
    "(setsid bash -c 'echo $$ > s2.pid; exec sleep 300' &)\n"
    "sleep 300 &\necho $! > s3.pid\n"
    "while [ ! -s s1.pid ] || [ ! -s s2.pid ]; do sleep 0.02; done\n"
)
ESCAPED = ("s1.pid", "s2.pid", "s3.pid")


def assert_cleaned(data: Path, cgroup: str | None) -> None:
    for name in ESCAPED:
        pid = read_pid(data / name)
        wait_for(lambda pid=pid: gone(pid), timeout=10)
    if cgroup is not None:
        wait_for(lambda: not os.path.exists(cgroup), timeout=10)


@pytest.mark.needs_root  # creates cgroups
@pytest.mark.parametrize("end", ["exits", "cancelled"])
def test_processes_started_in_a_new_session_die_with_the_activity(tmp_path: Path, end: str) -> None:
    run = ESCAPES + ("echo done\n" if end == "exits" else "touch waiting\nsleep 60\n")
    spec = job(tmp_path, "escape", run)
    data = tmp_path / "data"

    async def scenario() -> tuple[Outcome, str | None]:
        rt, events = await started_runtime()
        assert rt._cgroup_base is not None, "the engine cannot create cgroups here"
        cgroup = cgroups.attempt_cgroup(rt._cgroup_base, str(spec.attempt_prefix))
        try:
            if end == "exits":
                return await run_to_end(rt, events, spec), cgroup
            handle = await rt.submit(spec)
            while not (data / "waiting").exists():
                await asyncio.sleep(0.05)
            assert os.path.isdir(cgroup)
            assert len(cgroups.members(cgroup)) >= 4  # bash, its sleep, the two escapees
            metrics = await rt.metrics({spec.key: handle})
            assert metrics[spec.key].memory_bytes > 0
            await rt.cancel(spec.key, handle)
            while spec.key not in events.finished:
                await asyncio.sleep(0.05)
            return events.finished[spec.key], cgroup
        finally:
            await rt.stop()

    outcome, cgroup = asyncio.run(scenario())
    assert outcome.succeeded is (end == "exits"), outcome
    assert_cleaned(data, cgroup)


def test_without_cgroups_the_session_is_still_killed(tmp_path: Path) -> None:
    spec = job(tmp_path, "bg", "sleep 300 &\necho $! > bg.pid\n")

    async def scenario() -> Outcome:
        # As on a host where the engine may not create cgroups.
        rt, events = await started_runtime(RuntimeConfig("local", {"LOCAL_CGROUPS": "off"}))
        assert rt._cgroup_base is None
        try:
            return await run_to_end(rt, events, spec)
        finally:
            await rt.stop()

    assert asyncio.run(scenario()).succeeded
    pid = read_pid(tmp_path / "data" / "bg.pid")
    wait_for(lambda: gone(pid), timeout=10)


@pytest.mark.parametrize("when", ["running", "ended"])
@pytest.mark.needs_root  # creates cgroups
def test_a_resumed_engine_kills_what_an_adopted_activity_left(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path, when: str
) -> None:
    """The engine is SIGKILLed while the activity runs; the resumed engine finds its cgroup
    whether the activity is still running (adopted) or ended while no engine watched."""
    base = cgroups.usable_base()
    assert base is not None, "the engine cannot create cgroups here"
    wf = tmp_path / "w.yaml"
    wf.write_text(
        "name: w\nspec:\n  activities:\n    - name: a\n      run: |\n"
        + "".join(f"        {line}\n" for line in ESCAPES.splitlines())
        + "        touch started\n        sleep 1.5\n"
    )
    data = tmp_path / "data"
    engine = start_cli(
        ["run", str(wf), "--quiet", "--state-dir", str(state_dir), "--data-dir", str(data)]
    )
    wait_for(lambda: (data / "started").exists())
    os.kill(engine.pid, signal.SIGKILL)
    engine.communicate(timeout=10)
    prefix = state_dir / "runs" / "1-w" / "attempts" / "a.1"
    cgroup = cgroups.attempt_cgroup(base, str(prefix))
    if when == "ended":
        exit_file = Path(f"{prefix}.exit")
        wait_for(lambda: exit_file.read_text() == "exit 0\n")
        assert not gone(read_pid(data / "s1.pid"))  # nobody killed it yet
    res = akoflow("resume", "--json")
    assert res.returncode == 0, res.stderr + res.stdout
    assert json.loads(res.stdout)["activities"][0]["state"] == "succeeded"
    assert_cleaned(data, cgroup)


# ---------------------------------------------------------------- 5. private attempt files


def test_attempt_files_are_private_and_the_script_keeps_its_umask(tmp_path: Path) -> None:
    small = job(tmp_path, "small", "touch made.txt\nmkdir made.dir\numask > umask.txt\n")
    big = job(tmp_path, "big", "#" + "x" * (1 << 20) + "\necho big\n")

    async def scenario() -> None:
        rt, events = await started_runtime()
        try:
            for spec in (small, big):
                assert (await run_to_end(rt, events, spec)).succeeded
        finally:
            await rt.stop()

    old = os.umask(0o002)  # the engine's umask, which the script inherits
    try:
        asyncio.run(scenario())
    finally:
        os.umask(old)
    for spec in (small, big):
        for ext in ("stdout", "stderr", "exit"):
            assert os.stat(f"{spec.attempt_prefix}.{ext}").st_mode & 0o777 == 0o600
    assert os.stat(f"{big.attempt_prefix}.sh").st_mode & 0o777 == 0o600
    data = tmp_path / "data"
    assert (data / "made.txt").stat().st_mode & 0o777 == 0o664
    assert (data / "made.dir").stat().st_mode & 0o777 == 0o775
    assert (data / "umask.txt").read_text() == "0002\n"


@pytest.mark.needs_root  # creates cgroups
def test_the_start_up_sweep_removes_only_empty_attempt_cgroups(tmp_path: Path) -> None:
    """Cgroups of attempts that ended while no engine watched, never resumed, are removed by
    the next engine's start; one with a process in it stays."""
    base = cgroups.usable_base()
    assert base is not None, "the engine cannot create cgroups here"
    private = os.path.join(base, f"{cgroups.NAME_PREFIX}sweep-test-{os.getpid()}")
    os.mkdir(private)  # its own parent: the sweep never touches other engines' cgroups
    empty, busy = (os.path.join(private, cgroups.NAME_PREFIX + n) for n in ("empty", "busy"))
    other = os.path.join(private, "not-ours")
    for path in (empty, busy, other):
        os.mkdir(path)
    proc = subprocess.Popen(["sleep", "60"])
    try:
        Path(busy, "cgroup.procs").write_text(f"{proc.pid}\n")
        assert cgroups.sweep(private, 3600) == 0  # all too young
        assert cgroups.sweep(private, 0) == 1
        assert not os.path.exists(empty)
        assert os.path.isdir(busy) and os.path.isdir(other)
    finally:
        cgroups.kill(busy)
        proc.wait()
        wait_for(lambda: cgroups.remove(private))


# ---------------------------------------------------------------- cancel before the start


def test_a_cancel_sent_before_the_spawner_answered_stops_the_attempt(tmp_path: Path) -> None:
    """The engine may cancel an attempt in the same turn it submitted it, before the spawner
    has said it started: the cancel reaches the process once it exists (in order, through
    the spawner), and the attempt ends as cancelled without running its script to its end."""
    spec = job(tmp_path, "early", "sleep 30\necho end > end.txt\n")

    async def scenario() -> Outcome:
        rt, events = await started_runtime()
        try:
            handle = await rt.submit(spec)
            await rt.cancel(spec.key, handle)  # same turn: not started yet
            return await end_of(events, spec)
        finally:
            await rt.stop()

    outcome = asyncio.run(scenario())
    assert not outcome.succeeded
    assert outcome.exit_code == 128 + signal.SIGTERM, outcome
    assert not (tmp_path / "data" / "end.txt").exists()
    assert (tmp_path / "attempts" / "early.1.exit").read_text() == f"exit {128 + signal.SIGTERM}\n"
