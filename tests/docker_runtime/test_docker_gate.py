"""An observed container's command waits for the engine's go (issue 15): it runs only once
the container's first process is announced; an engine killed before the go leaves a
container that a resumed engine lets go (exact lineage), or that ends without running its
command after GO_TIMEOUT and is retried with the reason, never a false success."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prov.model import ProvDocument

from akoflow import service
from akoflow.runtimes.docker import gate
from akoflow.runtimes.docker.runtime import in_container
from akoflow.runtimes.docker.settings import Settings
from tests.conftest import Akoflow, start_cli, wait_for
from tests.docker_runtime.test_docker_engine import Recorder, ended, job_spec, runtime
from tests.docker_support.dockerd import IMAGE, PrivateDockerd
from tests.prov_support import ambiguous, mechanism, relations

REPO_ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------- the gate's FIFO


def test_a_go_written_before_the_wrapper_opens_the_gate_waits_for_it(tmp_path: Path) -> None:
    prefix = str(tmp_path / "a.1")
    os.mkdir(gate.control_dir(prefix))
    assert gate.release(prefix) is None  # no gate: nothing to do
    gate.make(prefix)
    gate.make(prefix)  # kept: a created container taken over after a crash
    held = gate.release(prefix)  # no reader yet: the go is held in the FIFO
    assert held is not None
    try:
        assert not gate.consumed(held)
        with open(gate.gate_path(prefix), "rb") as wrapper:
            assert wrapper.readline() == gate.GO
        assert gate.consumed(held)
    finally:
        os.close(held)
    # A reader already there (the wrapper waiting): written through and closed at once.
    waiting = os.open(gate.gate_path(prefix), os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert gate.release(prefix) is None
        assert os.read(waiting, 64) == gate.GO
    finally:
        os.close(waiting)
    gate.remove(prefix)
    assert not os.path.lexists(gate.gate_path(prefix))


def test_only_a_process_of_the_container_on_this_host_is_announced() -> None:
    assert Settings().on_this_host and Settings(host="unix:///run/d.sock").on_this_host
    # Elsewhere: its pids are another host's, and no FIFO of ours reaches its containers.
    assert not Settings(host="tcp://h:2376").on_this_host
    assert not Settings(host="ssh://me@h").on_this_host
    assert not in_container(os.getpid(), "0123456789ab" * 5)  # not a container's
    assert not in_container(0, "0123456789ab") and not in_container(os.getpid(), "")


# ---------------------------------------------------------------------- the runtime alone


def test_an_observed_command_runs_only_after_its_first_process_is_announced(
    dockerd: PrivateDockerd, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    calls: list[tuple[str, int | None, str | None, bool]] = []

    def observed(key: str, pid: int | None, cgroup: str | None) -> bool:
        ran = (data / "out.txt").exists() or os.path.exists(f"{job.attempt_prefix}.out/stdout")
        calls.append((key, pid, cgroup, ran))
        return True

    job = job_spec(tmp_path, "gated", "echo x > out.txt")

    async def scenario() -> None:
        events = Recorder()
        rt = runtime(dockerd.host, events)
        rt.process_hook = observed
        await rt.start()
        try:
            handle = await rt.submit(job)
            await asyncio.wait_for(events.event.wait(), 20)
            assert ended(events.finished[job.key]) == (True, 0)
            cid = handle["id"]
            # Its cgroup before start, its first pid after, and the command had not run
            # when the pid was announced: nothing it did can be missed.
            assert [(k, p is not None, c, r) for k, p, c, r in calls] == [
                (job.key, False, cid, False),
                (job.key, True, cid, False),
            ]
            assert (calls[1][1] or 0) > 0
            assert (data / "out.txt").read_text() == "x\n"
            assert not os.path.lexists(gate.gate_path(str(job.attempt_prefix)))  # ended
        finally:
            await rt.stop()

    asyncio.run(scenario())


def test_an_unobserved_command_runs_at_once_without_a_gate(
    dockerd: PrivateDockerd, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    calls: list[tuple[int | None, str | None]] = []

    def unobserved(key: str, pid: int | None, cgroup: str | None) -> bool:
        calls.append((pid, cgroup))
        return False

    job = job_spec(tmp_path, "free", "echo x > out.txt; until [ -e done ]; do sleep 0.05; done")

    async def scenario() -> None:
        events = Recorder()
        rt = runtime(dockerd.host, events)
        rt.process_hook = unobserved
        await rt.start()
        try:
            handle = await rt.submit(job)
            # Running, and it never had a gate; nothing asked for its pid.
            await asyncio.to_thread(wait_for, lambda: (data / "out.txt").exists())
            assert not os.path.lexists(gate.gate_path(str(job.attempt_prefix)))
            assert calls == [(None, handle["id"])]
            (data / "done").touch()
            await asyncio.wait_for(events.event.wait(), 20)
            assert ended(events.finished[job.key]) == (True, 0)
        finally:
            await rt.stop()

    asyncio.run(scenario())


# ---------------------------------------------------------------------- engine killed


def held_engine(
    state_dir: Path, data: Path, wf: Path, env: dict[str, str], *options: str
) -> subprocess.Popen[str]:
    """An engine that starts the container and is to be killed before its go."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.docker_runtime.held_engine",
            str(state_dir),
            str(data),
            str(wf),
            *options,
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@contextlib.contextmanager
def left_behind(
    engine: subprocess.Popen[str], dockerd: PrivateDockerd, workflow: str
) -> Iterator[None]:
    """Whatever the test fails at: the held engine killed, the run's containers removed."""
    try:
        yield
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.communicate()
        for c in dockerd.containers(**{"akoflow.workflow-name": workflow}):
            dockerd.api.remove_container(c["Id"], force=True)


def waiting_container(dockerd: PrivateDockerd, workflow: str) -> dict[str, Any]:
    """The run's one container, once its wrapper waits for the go (its sleep holds the
    gate), else {}."""
    found = dockerd.api.containers(filters={"label": f"akoflow.workflow-name={workflow}"})
    if len(found) != 1:
        return {}
    processes = dockerd.api.top(found[0]["Id"]).get("Processes") or []
    waiting = any("sleep" in " ".join(p) for p in processes)
    return dict(found[0]) if waiting else {}


def attempts_of(state_dir: Path, activity: str) -> list[Any]:
    repo = service.open_repository(state_dir)
    try:
        act = repo.get_activity(1, activity)
        assert act is not None
        return list(repo.list_attempts(act.id))
    finally:
        repo.close()


def go_lost_workflow(tmp_path: Path, timeout: int, sleep: float) -> Path:
    """Activity ``a`` (timeout ``timeout`` s, one retry) writes "run", sleeps, writes "end"."""
    wf = tmp_path / "go-lost.yaml"
    wf.write_text(
        f"name: golost\nspec:\n  image: {IMAGE}\n  runtime: docker\n  activities:\n"
        f"    - name: a\n      retries: 1\n      timeout: {timeout}s\n"
        f"      run: |\n        echo run >> count.a\n        sleep {sleep}\n"
        "        echo end >> count.a\n"
    )
    return wf


def killed_with_its_go_lost(
    engine: subprocess.Popen[str], dockerd: PrivateDockerd, state_dir: Path
) -> Any:
    """The --go-lost engine SIGKILLed once its container waits at the gate and the attempt's
    start is stored (before its timeout fires); that stored attempt."""
    wait_for(lambda: waiting_container(dockerd, "golost"))
    wait_for(lambda: attempts_of(state_dir, "a")[0].started_at is not None)
    (stored,) = attempts_of(state_dir, "a")
    os.kill(engine.pid, signal.SIGKILL)
    engine.communicate(timeout=10)
    return stored


def kill_then_resume(
    engine: subprocess.Popen[str], state_dir: Path, env: dict[str, str]
) -> tuple[int, str]:
    if engine.poll() is None:
        os.kill(engine.pid, signal.SIGKILL)
    engine.communicate(timeout=10)
    resume = start_cli(["resume", "--state-dir", str(state_dir)], env)
    try:
        out, err = resume.communicate(timeout=60)
    finally:
        if resume.poll() is None:
            resume.kill()
            resume.communicate()
    return resume.returncode, out + err


def test_a_container_waiting_for_its_go_when_the_engine_died_is_let_go_on_resume(
    akoflow: Akoflow,
    docker_env: dict[str, str],
    dockerd: PrivateDockerd,
    state_dir: Path,
    tmp_path: Path,
) -> None:
    wf = tmp_path / "held.yaml"
    wf.write_text(
        f"name: held\nspec:\n  image: {IMAGE}\n  runtime: docker\n  activities:\n"
        "    - name: a\n      run: |\n        echo run >> count.a\n        echo x > out.txt\n"
    )
    data = tmp_path / "data"
    engine = held_engine(state_dir, data, wf, docker_env)
    with left_behind(engine, dockerd, "held"):
        wait_for(lambda: waiting_container(dockerd, "held"))
        # Its command has not run: it waits for a go that this engine never gives.
        prefix = state_dir.resolve() / "runs" / "1-held" / "attempts" / "a.1"
        assert not (data / "count.a").exists()
        assert not Path(f"{prefix}.out/stdout").exists()
        code, output = kill_then_resume(engine, state_dir, docker_env)
    assert code == 0, output
    (attempt,) = attempts_of(state_dir, "a")  # adopted, let go, not run again
    assert (attempt.state, attempt.exit_code) == ("succeeded", 0)
    assert (data / "count.a").read_text() == "run\n"
    prov = akoflow("prov", "1", env=docker_env)
    assert prov.returncode == 0, prov.stderr
    doc = ProvDocument.deserialize(io.StringIO(prov.stdout), format="json")
    assert mechanism(doc) == "observed (fanotify)"
    _, generated = relations(doc)
    unsure = ambiguous(doc)
    assert unsure == {}, (unsure, generated)
    assert generated == {("a", "count.a"), ("a", "out.txt")}, prov.stdout


def test_a_timeout_of_a_container_let_go_on_resume_counts_from_its_go(
    docker_env: dict[str, str],
    dockerd: PrivateDockerd,
    state_dir: Path,
    tmp_path: Path,
) -> None:
    """The engine recorded the attempt's start, then died before its go reached the
    container. When resumed after the timeout would have expired, the command runs only now:
    its timeout counts from the go, so it ends once, not "timed out" and run again."""
    data = tmp_path / "data"
    engine = held_engine(
        state_dir, data, go_lost_workflow(tmp_path, 2, 0.5), docker_env, "--go-lost"
    )
    with left_behind(engine, dockerd, "golost"):
        stored = killed_with_its_go_lost(engine, dockerd, state_dir)
        assert stored.stop_reason is None, stored
        wait_for(lambda: time.time() > stored.started_at + 3, timeout=10)  # expired
        assert not (data / "count.a").exists()  # still waiting for its go
        assert waiting_container(dockerd, "golost")
        code, output = kill_then_resume(engine, state_dir, docker_env)
    assert code == 0, output
    attempts = attempts_of(state_dir, "a")
    assert [(a.state, a.exit_code, a.reason) for a in attempts] == [("succeeded", 0, None)]
    (attempt,) = attempts
    assert attempt.started_at > stored.started_at + 3  # when its command began
    assert (data / "count.a").read_text() == "run\nend\n"


def never_let_go(
    docker_env: dict[str, str],
    dockerd: PrivateDockerd,
    state_dir: Path,
    data: Path,
    wf: Path,
    go_timeout: int,
) -> tuple[int, str]:
    """Run ``wf`` (workflow ``late``, activity ``a`` appending to count.a) until its container
    waits at its gate, SIGKILL the engine, wait until the container ends without its go
    (``DOCKER_GO_TIMEOUT`` s later) and check its command never ran; then `resume`: its exit
    code and output."""
    env = {**docker_env, "DOCKER_GO_TIMEOUT": str(go_timeout)}
    engine = held_engine(state_dir, data, wf, env)
    with left_behind(engine, dockerd, "late"):
        wait_for(lambda: waiting_container(dockerd, "late"))
        os.kill(engine.pid, signal.SIGKILL)
        engine.communicate(timeout=10)

        def exited() -> dict[str, Any]:
            (c,) = dockerd.api.containers(all=True, filters={"label": "akoflow.workflow-name=late"})
            state: dict[str, Any] = dockerd.api.inspect_container(c["Id"])["State"]
            return state if state["Status"] == "exited" else {}

        wait_for(exited)  # no engine to give the go: it ends once its sleep does
        assert exited()["ExitCode"] == gate.NOT_RELEASED
        assert not (data / "count.a").exists()  # the command never ran
        resume = start_cli(["resume", "--state-dir", str(state_dir)], env)
        try:
            out, err = resume.communicate(timeout=60)
        finally:
            if resume.poll() is None:
                resume.kill()
                resume.communicate()
    return resume.returncode, out + err


def test_a_container_never_let_go_ends_without_its_command_and_is_retried(
    akoflow: Akoflow,
    docker_env: dict[str, str],
    dockerd: PrivateDockerd,
    state_dir: Path,
    tmp_path: Path,
) -> None:
    wf = tmp_path / "late.yaml"
    wf.write_text(
        f"name: late\nspec:\n  image: {IMAGE}\n  runtime: docker\n  activities:\n"
        "    - name: a\n      retries: 1\n      run: echo run >> count.a\n"
    )
    data = tmp_path / "data"
    code, output = never_let_go(docker_env, dockerd, state_dir, data, wf, go_timeout=1)
    assert code == 0, output
    first, second = attempts_of(state_dir, "a")
    assert (first.state, first.exit_code) == ("failed", None), first
    assert "waited for the engine's go" in (first.reason or "")
    assert "DOCKER_GO_TIMEOUT" in (first.reason or "")
    assert (second.state, second.exit_code) == ("succeeded", 0)
    assert (data / "count.a").read_text() == "run\n"  # once: the retry
    doc = json.loads(akoflow("status", "1", "--json", env=docker_env).stdout)
    assert {a["name"]: a["state"] for a in doc["activities"]} == {"a": "succeeded"}


def test_a_container_never_let_go_is_not_judged_by_its_timeout(
    docker_env: dict[str, str],
    dockerd: PrivateDockerd,
    state_dir: Path,
    tmp_path: Path,
) -> None:
    """The same with ``timeout: 1s`` and DOCKER_GO_TIMEOUT=3: the container waited 3 s for
    a go that never came and ended, its command never run, while no engine ran. The next
    engine judged the wait as the attempt's run (the daemon's start to end) and recorded it
    "timed out after 1s (it ran 3.0s ...)", losing why: its command did not run at all. The
    reason is the gate's, and the retry runs the command once."""
    wf = tmp_path / "late.yaml"
    wf.write_text(
        f"name: late\nspec:\n  image: {IMAGE}\n  runtime: docker\n  activities:\n"
        "    - name: a\n      retries: 1\n      timeout: 1s\n      run: echo run >> count.a\n"
    )
    data = tmp_path / "data"
    code, output = never_let_go(docker_env, dockerd, state_dir, data, wf, go_timeout=3)
    assert code == 0, output
    first, second = attempts_of(state_dir, "a")
    assert (first.state, first.exit_code) == ("failed", None), first
    assert "waited for the engine's go" in (first.reason or ""), first.reason
    assert (second.state, second.exit_code) == ("succeeded", 0)
    assert (data / "count.a").read_text() == "run\n"  # once: the retry
