"""The docker runtime in-process: against the engine (logs, metrics, a daemon that stops and
comes back) and on its own (health, nodes, idempotent submit, adoption of what never ran)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from akoflow.config import RuntimeConfig
from akoflow.engine import Engine
from akoflow.runtimes.base import JobSpec, Outcome
from akoflow.runtimes.docker import DockerRuntime, container_name, scope_of
from akoflow.states import ActivityState, WorkflowState
from tests.docker_runtime.conftest import start_private_dockerd
from tests.docker_support.dockerd import IMAGE, PrivateDockerd
from tests.e2e.test_engine_inprocess import engine_with
from tests.scenarios import busy_activity, direct_job, run_busy_workflow

A = ActivityState


async def until(predicate: object, timeout: float = 20.0, what: str = "condition") -> None:
    assert callable(predicate)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        await asyncio.sleep(0.05)


def test_logs_are_stored_while_running_and_metrics_sampled(
    dockerd: PrivateDockerd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    text = (
        f"name: busy\nspec:\n  image: {IMAGE}\n  runtime: docker\n  activities:\n" + busy_activity()
    )

    asyncio.run(run_busy_workflow(tmp_path, text))


# The SDK does not close a unix socket whose connect fails (docker/docker-py PR #3356, open):
# while dockerd shuts down, a call racing it drops one such socket (freed at once, but
# warned about). Only that warning is tolerated here.
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)
def test_daemon_stopped_mid_run_holds_work_then_completes(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dockerd stops mid-run: the runtime turns NOT_READY, a docker activity that becomes
    ready meanwhile waits (it does not fail), and the running container, which the daemon
    stops with it (no live-restore), is reported when the daemon is back and retried."""
    daemon = start_private_dockerd(tmp_path_factory.mktemp("dockerd-outage"))
    monkeypatch.setenv("DOCKER_HOST", daemon.host)
    data = tmp_path / "data"
    text = (
        f"name: outage\nspec:\n  image: {IMAGE}\n  activities:\n"
        "    - name: gate\n      runtime: local\n"
        "      run: while [ ! -e release ]; do sleep 0.05; done\n"
        "    - name: held\n      runtime: docker\n      dependsOn: [gate]\n"
        "      run: echo held ran > held.txt\n"
        "    - name: victim\n      runtime: docker\n      retries: 1\n      run: |\n"
        "        echo run >> victim.runs\n"
        "        if [ ! -e victim.first ]; then touch victim.first; sleep 60; fi\n"
    )

    async def scenario() -> None:
        async with engine_with(tmp_path, text, health_interval=0.2) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            held, victim = wf.activities["held"], wf.activities["victim"]
            await until(lambda: (data / "victim.first").exists(), what="victim running")
            await asyncio.to_thread(daemon.stop)
            await until(lambda: not engine.runtime_status()["docker"][0], what="NOT_READY")
            reason = engine.runtime_status()["docker"][1] or ""
            assert "not reachable" in reason and daemon.host in reason
            (data / "release").touch()
            await until(lambda: wf.activities["gate"].state is A.SUCCEEDED, what="gate done")
            await asyncio.sleep(1.0)
            # Held, not failed: the activity waits for its runtime.
            assert held.state is A.READY
            assert victim.state in (A.READY, A.RUNNING, A.SUBMITTED)
            rows = {r.name: r for r in repo.list_runtimes()}
            assert rows["docker"].status == "NOT_READY"
            await asyncio.to_thread(daemon.start)  # the same data root: a daemon restart
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=30)
            assert state is WorkflowState.SUCCEEDED, [
                (a.name, a.state, a.reason) for a in wf.activities.values()
            ]
            assert (data / "held.txt").read_text() == "held ran\n"
            assert (data / "victim.runs").read_text() == "run\nrun\n"
            attempts = repo.list_attempts(victim.id)
            first = attempts[0]
            assert first.state == "failed" and first.exit_code == 143, first
            assert "SIGTERM" in (first.reason or "")
            assert {r.name: r for r in repo.list_runtimes()}["docker"].status == "READY"

    try:
        asyncio.run(scenario())
    finally:
        daemon.stop()


# ---------------------------------------------------------------------- the runtime alone


class Recorder:
    def __init__(self) -> None:
        self.finished: dict[str, Outcome] = {}
        self.event = asyncio.Event()

    def job_running(self, key: str, node: str | None) -> None:
        return None

    def job_finished(self, key: str, outcome: Outcome) -> None:
        self.finished[key] = outcome
        self.event.set()


def ended(outcome: Outcome) -> tuple[bool, int | None]:
    """How an attempt ended, without what it used (:mod:`.test_docker_usage`)."""
    return outcome.succeeded, outcome.exit_code


def job_spec(tmp_path: Path, name: str, run: str, attempt: int = 1) -> JobSpec:
    return direct_job(tmp_path, name, run, "docker", IMAGE, attempt)


def runtime(host: str, events: Recorder, **settings: str) -> DockerRuntime:
    env = {"DOCKER_HOST": host, **{f"DOCKER_{k}": v for k, v in settings.items()}}
    return DockerRuntime("docker", RuntimeConfig.from_env("docker", env), events)


def test_runtime_health_nodes_idempotent_submit_and_never_started(
    dockerd: PrivateDockerd, tmp_path: Path
) -> None:
    async def scenario() -> None:
        events = Recorder()
        rt = runtime(dockerd.host, events)
        await rt.start()
        try:
            assert (await rt.health()).ready
            (node,) = await rt.nodes()
            assert node.cpu_capacity == os.cpu_count() and (node.memory_capacity or 0) > 1 << 28
            job = job_spec(tmp_path, "twice", "sleep 1; echo once >> count")
            first = await rt.submit(job)
            again = await rt.submit(job)  # the engine asking twice: the same container
            assert first == again and first["name"] == container_name(job)
            other = DockerRuntime("docker", rt.config, events)  # e.g. after a restart
            await other.start()
            try:
                assert (await other.submit(job))["id"] == first["id"]
            finally:
                await other.stop()
            await asyncio.wait_for(events.event.wait(), 10)
            assert ended(events.finished[job.key]) == (True, 0)
            assert (tmp_path / "data" / "count").read_text() == "once\n"
            assert len(dockerd.containers(**{"akoflow.key": job.key})) >= 1
            await rt.release(job.key, first, succeeded=True)
            assert dockerd.containers(**{"akoflow.key": job.key}) == []
            # Removed after its end: adoption still knows how it ended.
            adopted = await rt.adopt(job, first)
            assert adopted.kind == "finished" and adopted.outcome is not None
            assert ended(adopted.outcome) == (True, 0)
            # Never created: proven not started.
            ghost = job_spec(tmp_path, "ghost", "touch ghost")
            assert (await rt.adopt(ghost, {})).kind == "never_started"
            assert not (tmp_path / "data" / "ghost").exists()
        finally:
            await rt.stop()

    asyncio.run(scenario())


def test_runtime_reports_unreachable_daemon_and_bad_settings(tmp_path: Path) -> None:
    async def scenario() -> None:
        missing = f"unix://{tmp_path}/no-such.sock"
        rt = runtime(missing, Recorder())
        await rt.start()
        try:
            health = await rt.health()
            assert not health.ready and "not reachable" in (health.reason or "")
            with pytest.raises(Exception) as info:
                await rt.submit(job_spec(tmp_path, "a", "true"))
            assert getattr(info.value, "transient", False)  # the activity waits
        finally:
            await rt.stop()
        bad = runtime(missing, Recorder(), PULL_POLICY="sometimes")
        await bad.start()
        try:
            health = await bad.health()
            assert health.reason == (
                "DOCKER_PULL_POLICY must be one of never, if-missing, always; got 'sometimes'"
            )
        finally:
            await bad.stop()

    asyncio.run(scenario())


class MuteDaemon:
    """A unix socket that follows the event stream (headers, then nothing) but never
    answers any other request, as a hung daemon."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(8)
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            self._conns.append(conn)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                request += chunk
            if b" /v1.41/events" in request.split(b"\r\n", 1)[0]:
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )

    def close(self) -> None:
        self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._thread.join(timeout=5)
        for conn in self._conns:
            conn.close()


def test_the_ping_waits_as_long_as_the_health_timeout_says(tmp_path: Path) -> None:
    """A daemon that never answers: NOT_READY after {NAME}_HEALTH_TIMEOUT (not a fixed
    5 s); a bad value is NOT_READY naming it."""
    mute = MuteDaemon(tmp_path / "mute.sock")
    settings = {"API_VERSION": "1.41", "TIMEOUT": "1"}

    async def scenario() -> None:
        for timeout, expected in (
            ("0.3", "did not answer a ping in 0.3 s (DOCKER_HEALTH_TIMEOUT)"),
            ("soon", "DOCKER_HEALTH_TIMEOUT must be a positive number of seconds"),
        ):
            rt = runtime(f"unix://{mute.path}", Recorder(), HEALTH_TIMEOUT=timeout, **settings)
            await rt.start()
            try:
                health = await rt.health()
                assert not health.ready and expected in str(health.reason)
                assert health.misconfigured == (timeout == "soon")  # held work fails at once
            finally:
                await rt.stop()

    try:
        asyncio.run(scenario())
    finally:
        mute.close()


def test_cancel_reports_a_cancelled_end(dockerd: PrivateDockerd, tmp_path: Path) -> None:
    async def scenario() -> None:
        events = Recorder()
        rt = runtime(dockerd.host, events, CLEANUP="on-success")
        await rt.start()
        try:
            job = job_spec(tmp_path, "stopme", "sleep 60")
            handle = await rt.submit(job)
            await rt.cancel(job.key, handle)
            await asyncio.wait_for(events.event.wait(), 10)
            outcome = events.finished[job.key]
            assert (outcome.succeeded, outcome.exit_code) == (False, 128 + signal.SIGTERM)
            assert outcome.reason == "cancelled"
            await rt.release(job.key, handle, succeeded=False)  # on-success: kept
            (kept,) = dockerd.containers(**{"akoflow.key": job.key})
            assert kept["State"] == "exited"
            dockerd.api.remove_container(handle["id"])
        finally:
            await rt.stop()

    asyncio.run(scenario())


class FailingStops:
    """The daemon's client with its stop call failing as it did for a stop timeout out of
    range (the socket's timeout overflowed), and its first kill failing (daemon away)."""

    def __init__(self, api: Any) -> None:
        self._api = api
        self.kills = 0

    def post(self, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.endswith("/stop"):
            raise OverflowError("timeout doesn't fit into C timeval")
        return self._api.post(url, *args, **kwargs)

    def kill(self, *args: Any, **kwargs: Any) -> None:
        self.kills += 1
        if self.kills == 1:
            raise requests.exceptions.ConnectionError("the daemon went away")
        self._api.kill(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)


def test_a_failing_stop_call_still_stops_the_container(
    dockerd: PrivateDockerd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An activity's timeout or a cancel is never dropped: a stop call that fails is
    followed by a kill, tried again while the container runs."""

    async def scenario() -> None:
        events = Recorder()
        rt = runtime(dockerd.host, events)
        await rt.start()
        try:
            job = job_spec(tmp_path, "stubborn", "trap '' TERM; sleep 60 & wait; sleep 60")
            handle = await rt.submit(job)
            client = FailingStops(await asyncio.to_thread(rt._daemon.client))
            monkeypatch.setattr(rt._daemon, "client", lambda: client)
            await rt.cancel(job.key, handle)
            await asyncio.wait_for(events.event.wait(), 20)
            outcome = events.finished[job.key]
            assert (outcome.exit_code, outcome.reason) == (128 + signal.SIGKILL, "cancelled")
            assert client.kills == 2
            assert not dockerd.api.inspect_container(handle["id"])["State"]["Running"]
        finally:
            await rt.stop()

    asyncio.run(scenario())


class RefusedStops:
    """The daemon's client with every stop and kill refused (a daemon that answers events
    but errs on these calls)."""

    def __init__(self, api: Any) -> None:
        self._api = api
        self.tries = 0

    def post(self, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.endswith("/stop"):
            self.tries += 1
            raise requests.exceptions.ConnectionError("the daemon refuses")
        return self._api.post(url, *args, **kwargs)

    def kill(self, *args: Any, **kwargs: Any) -> None:
        raise requests.exceptions.ConnectionError("the daemon refuses")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)


def test_an_end_while_stops_are_refused_is_not_held_for_ever(
    dockerd: PrivateDockerd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container that ends on its own while its stop keeps failing: its end (which waits
    for the stop's answer, to know whether the stop reached it) is reported once the next
    try finds it ended, instead of waiting for a stop the daemon never takes (h92's wait made
    this a hang). Its wrapper never got a signal (the stops were refused) and says so: its
    success is its own (without that word: as stopped, the safe side)."""

    async def scenario() -> None:
        events = Recorder()
        rt = runtime(dockerd.host, events)
        await rt.start()
        try:
            job = job_spec(tmp_path, "short", "sleep 2")
            handle = await rt.submit(job)
            client = RefusedStops(await asyncio.to_thread(rt._daemon.client))
            monkeypatch.setattr(rt._daemon, "client", lambda: client)
            await rt.cancel(job.key, handle)
            await asyncio.wait_for(events.event.wait(), 30)
            outcome = events.finished[job.key]
            assert outcome.succeeded and outcome.ended_unstopped
            assert client.tries >= 1
        finally:
            await rt.stop()

    asyncio.run(scenario())


class ForgetfulDocker(DockerRuntime):
    """Loses its releases, as an engine that died right after storing an attempt's end."""

    async def release(self, key: str, handle: object, *, succeeded: bool) -> None:
        return None


def run_containers(dockerd: PrivateDockerd, attempts: Path) -> set[str]:
    """Keys of the containers of one run (its scope: the daemon is shared by many tests)."""
    import docker as docker_sdk

    client = docker_sdk.APIClient(base_url=dockerd.host)
    try:
        found = client.containers(
            all=True, filters={"label": [f"akoflow.scope={scope_of(attempts)}"]}
        )
        return {c["Labels"]["akoflow.key"] for c in found}
    finally:
        client.close()


def test_resume_removes_containers_a_crash_left_behind(
    dockerd: PrivateDockerd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    text = (
        f"name: leftover\nspec:\n  image: {IMAGE}\n  runtime: docker\n  activities:\n"
        "    - name: first\n      run: echo one > one.txt\n"
        "    - name: second\n      dependsOn: [first]\n"
        "      run: while [ ! -e release ]; do sleep 0.05; done\n"
    )

    def forgetful(name: str, events: object, config: RuntimeConfig | None) -> DockerRuntime:
        return ForgetfulDocker(name, config or RuntimeConfig.from_env(name), events)  # type: ignore[arg-type]

    attempts = tmp_path / "state" / "runs" / "1-leftover" / "attempts"

    async def scenario() -> None:
        async with engine_with(tmp_path, text, runtime_factory=forgetful) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            second = wf.activities["second"]
            await until(lambda: second.state is A.RUNNING, what="second running")
        # The first engine is gone; `first` ended but its container was never removed.
        assert run_containers(dockerd, attempts) == {"wf1-first-a1", "wf1-second-a1"}
        engine = Engine(repo, tmp_path / "state")
        await engine.start()
        try:
            await engine.attach(wf_id)
            await until(lambda: run_containers(dockerd, attempts) == {"wf1-second-a1"})
            (tmp_path / "data" / "release").touch()
            assert await engine.wait(wf_id) is WorkflowState.SUCCEEDED
            # Recorded as finished only once its containers are gone.
            assert run_containers(dockerd, attempts) == set()
        finally:
            await engine.stop()

    asyncio.run(scenario())


def test_cancel_requested_before_an_interruption_wins_over_outcomes_found_on_resume(
    dockerd: PrivateDockerd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `akoflow cancel` recorded the request, then the engine died before acting on it and the
    # containers were stopped (exit 143) while no engine watched. Docker's adopt awaits
    # between attempts: outcomes collected then must count as cancelled, not as failures.
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    text = (
        f"name: late-cancel\nspec:\n  image: {IMAGE}\n  runtime: docker\n  activities:\n"
        + "".join(f"    - name: l{i}\n      run: sleep 30\n" for i in range(4))
    )

    async def scenario() -> None:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            await until(
                lambda: all(a.state is A.RUNNING for a in wf.activities.values()),
                what="all running",
            )
            repo.request_cancel(wf_id)  # as `akoflow cancel` does before poking the engine
        import docker as docker_sdk

        client = docker_sdk.APIClient(base_url=dockerd.host)
        try:
            scope = scope_of(tmp_path / "state" / "runs" / "1-late-cancel" / "attempts")
            running = client.containers(filters={"label": [f"akoflow.scope={scope}"]})
            assert len(running) == 4
            for c in running:
                client.kill(c["Id"], signal="TERM")
        finally:
            client.close()
        engine2 = Engine(repo, tmp_path / "state")
        await engine2.start()
        try:
            await engine2.attach(wf_id)
            assert await engine2.wait(wf_id) is WorkflowState.CANCELLED
        finally:
            await engine2.stop()
        assert {a.state for a in repo.list_activities(wf_id)} == {A.CANCELLED}

    asyncio.run(scenario())
