"""The runtime contract (:mod:`akoflow.runtimes.base`) as tests that every runtime's suite runs.

A runtime's test module binds the suite to its backend::

    @pytest.fixture
    def contract_backend(tmp_path: Path, dockerd: PrivateDockerd) -> Backend:
        return Backend(make=..., job=..., workdir=...)

    class TestDockerContract(RuntimeContract):
        pass

and pytest collects the class there (this module is not a test module of its own, so the
directory's markers apply to the binding). Every test drives real runtime instances: a new
instance of the runtime is what an engine restart gives, and jobs outlive the instance that
submitted them. Scripts are POSIX sh (bash, busybox): each writes ``<name>.count`` in its working
directory when it runs, so a second copy would show; a gated one then waits for
``<name>.go`` (bounded: it gives up after a minute), which the test creates to let it end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from akoflow.runtimes.base import JobSpec, Outcome, Runtime, RuntimeEvents, SubmitError

LOG_LINES = 200  # lines before the gate, and as many after: more than one read may be needed


@dataclass(frozen=True)
class Backend:
    """What a runtime's tests give the contract suite."""

    make: Callable[[RuntimeEvents], Runtime]
    """A new, not yet started instance of the runtime reporting to the given events."""
    job: Callable[[str, str], JobSpec]
    """Attempt 1 of activity ``name`` running ``script``; every job of a test is one run's."""
    workdir: Callable[[JobSpec], Path]
    """Where the job's script runs (its working directory), as this host sees it."""
    timeout: float = 60.0
    """Seconds an attempt may take to start, or to end once let go, on this backend."""
    close: Callable[[], Awaitable[None]] | None = None
    """Called on the test's event loop at its end (e.g. to stop an in-memory backend's jobs)."""


class Events:
    """A :class:`RuntimeEvents` that keeps everything reported to it."""

    def __init__(self) -> None:
        self.running: dict[str, str | None] = {}
        self.ended: dict[str, list[Outcome]] = {}
        self._changed = asyncio.Event()

    def job_running(self, key: str, node: str | None) -> None:
        self.running[key] = node

    def job_finished(self, key: str, outcome: Outcome) -> None:
        self.ended.setdefault(key, []).append(outcome)
        self._changed.set()

    async def finished(self, key: str, timeout: float) -> Outcome:
        """The end reported for ``key`` (waiting for it); exactly one end so far."""
        async with asyncio.timeout(timeout):
            while key not in self.ended:
                self._changed.clear()
                await self._changed.wait()
        (outcome,) = self.ended[key]
        return outcome


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        await asyncio.sleep(0.05)


def gated(name: str, then: str = "") -> str:
    """A script that counts its run, waits for its gate (at most a minute), then runs ``then``."""
    return (
        f"echo ran >> {name}.count\n"
        f"i=0; while [ ! -e {name}.go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n"
        f"{then}"
    )


def counted(name: str, then: str = "") -> str:
    return f"echo ran >> {name}.count\n{then}"


class Scenario:
    """One test's runtimes and jobs: started instances are stopped, gates opened and handles
    released at the end, whatever happened."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.live: list[Runtime] = []
        self.jobs: list[JobSpec] = []
        self.handles: dict[str, tuple[JobSpec, dict[str, Any]]] = {}

    def job(self, name: str, script: str) -> JobSpec:
        job = self.backend.job(name, script)
        self.jobs.append(job)
        return job

    def workdir(self, job: JobSpec) -> Path:
        return self.backend.workdir(job)

    def count(self, job: JobSpec) -> str | None:
        """What ``<name>.count`` holds: one ``ran`` line per copy of the script that ran."""
        path = self.workdir(job) / f"{job.activity.name}.count"
        return path.read_text() if path.exists() else None

    async def ran(self, job: JobSpec) -> None:
        await until(lambda: self.count(job) is not None, self.backend.timeout, f"{job.key} ran")

    def open_gate(self, job: JobSpec) -> None:
        workdir = self.workdir(job)
        if workdir.is_dir():
            (workdir / f"{job.activity.name}.go").touch()

    async def start(self) -> tuple[Runtime, Events]:
        """A new instance of the runtime, started: an engine (re)start."""
        events = Events()
        runtime = self.backend.make(events)
        await runtime.start()
        self.live.append(runtime)
        return runtime, events

    async def stop(self, runtime: Runtime) -> None:
        """The engine goes away: its jobs keep running."""
        self.live.remove(runtime)
        await runtime.stop()

    async def submit(self, runtime: Runtime, job: JobSpec) -> dict[str, Any]:
        handle = await runtime.submit(job)
        self.handles[job.key] = (job, handle)
        return handle

    async def close(self) -> None:
        for job in self.jobs:
            self.open_gate(job)
        if self.live:
            for job, handle in self.handles.values():
                with contextlib.suppress(Exception):
                    await self.live[-1].release(job.key, handle, succeeded=True)
        for runtime in reversed(self.live):
            with contextlib.suppress(Exception):
                await runtime.stop()
        self.live.clear()
        if self.backend.close is not None:
            await self.backend.close()


@contextlib.asynccontextmanager
async def scenario(backend: Backend) -> AsyncIterator[Scenario]:
    s = Scenario(backend)
    try:
        yield s
    finally:
        await s.close()


def play(backend: Backend, test: Callable[[Scenario], Awaitable[None]]) -> None:
    async def main() -> None:
        async with scenario(backend) as s:
            await test(s)

    asyncio.run(main())


async def read_all(
    runtime: Runtime, job: JobSpec, handle: dict[str, Any], got: dict[str, bytearray]
) -> bool:
    """One :meth:`Runtime.logs` call from the offsets of what ``got`` holds; True if new."""
    offsets = {stream: len(data) for stream, data in got.items()}
    new = await runtime.logs(job.key, handle, offsets)
    for stream, data in new.items():
        got.setdefault(stream, bytearray()).extend(data)
    return any(new.values())


class RuntimeContract:
    """The contract's tests; a runtime's test module subclasses this as ``Test...`` and
    defines the ``contract_backend`` fixture."""

    def test_a_second_submit_of_a_key_returns_its_handle_and_starts_no_second_copy(
        self, contract_backend: Backend
    ) -> None:
        async def test(s: Scenario) -> None:
            job = s.job("twice", gated("twice"))
            runtime, events = await s.start()
            first = await s.submit(runtime, job)
            await s.ran(job)
            again = await runtime.submit(job)  # the engine asking again
            assert again == first, (first, again)
            s.open_gate(job)
            outcome = await events.finished(job.key, s.backend.timeout)
            assert (outcome.succeeded, outcome.exit_code) == (True, 0), outcome
            assert s.count(job) == "ran\n"  # one copy ran

        play(contract_backend, test)

    def test_after_a_restart_a_submit_of_a_key_that_ran_starts_no_second_copy(
        self, contract_backend: Backend
    ) -> None:
        """An engine that died before it recorded a submission may send it again: the new
        instance either takes the existing attempt over (and reports its end) or refuses;
        it never runs the script a second time."""

        async def test(s: Scenario) -> None:
            job = s.job("again", counted("again"))
            runtime, events = await s.start()
            await s.submit(runtime, job)
            assert (await events.finished(job.key, s.backend.timeout)).succeeded
            await s.stop(runtime)
            runtime, events = await s.start()
            try:
                await s.submit(runtime, job)
            except SubmitError:
                pass  # refused: nothing was started
            else:  # taken over: its end is reported to the new instance
                outcome = await events.finished(job.key, s.backend.timeout)
                assert (outcome.succeeded, outcome.exit_code) == (True, 0), outcome
            assert s.count(job) == "ran\n"

        play(contract_backend, test)

    def test_adopt_after_a_restart_tracks_a_running_attempt_to_its_end(
        self, contract_backend: Backend
    ) -> None:
        async def test(s: Scenario) -> None:
            job = s.job("adopted", gated("adopted", "exit 4"))
            old, old_events = await s.start()
            handle = await s.submit(old, job)
            await s.ran(job)
            await s.stop(old)
            runtime, events = await s.start()
            adopted = await runtime.adopt(job, handle)
            assert adopted.kind == "running", adopted
            s.handles[job.key] = (job, adopted.handle or handle)
            s.open_gate(job)
            outcome = await events.finished(job.key, s.backend.timeout)
            assert (outcome.succeeded, outcome.exit_code) == (False, 4), outcome
            assert s.count(job) == "ran\n"
            assert job.key not in old_events.ended  # a stopped instance reports nothing

        play(contract_backend, test)

    def test_adopt_after_a_restart_reports_how_a_finished_attempt_ended(
        self, contract_backend: Backend
    ) -> None:
        async def test(s: Scenario) -> None:
            job = s.job("ended", counted("ended", "exit 3"))
            old, old_events = await s.start()
            handle = await s.submit(old, job)
            seen = await old_events.finished(job.key, s.backend.timeout)
            assert (seen.succeeded, seen.exit_code) == (False, 3), seen
            await s.stop(old)
            runtime, events = await s.start()
            adopted = await runtime.adopt(job, handle)
            assert adopted.kind == "finished", adopted
            assert adopted.outcome is not None
            assert (adopted.outcome.succeeded, adopted.outcome.exit_code) == (False, 3)
            assert job.key not in events.ended  # told once, by adopt
            assert s.count(job) == "ran\n"

        play(contract_backend, test)

    def test_adopt_reports_an_end_that_came_while_no_engine_watched(
        self, contract_backend: Backend
    ) -> None:
        """The attempt ends between two engines: adopt says so (``finished``), or, if the
        backend has not settled yet, tracks it (``running``) and reports the end as an event."""

        async def test(s: Scenario) -> None:
            job = s.job("unwatched", gated("unwatched", "touch unwatched.done\nexit 5"))
            old, _ = await s.start()
            handle = await s.submit(old, job)
            await s.ran(job)
            await s.stop(old)
            s.open_gate(job)
            done = s.workdir(job) / "unwatched.done"
            await until(done.exists, s.backend.timeout, "the script reached its end")
            runtime, events = await s.start()
            adopted = await runtime.adopt(job, handle)
            if adopted.kind == "running":
                outcome = await events.finished(job.key, s.backend.timeout)
            else:
                assert adopted.kind == "finished" and adopted.outcome is not None, adopted
                outcome = adopted.outcome
            assert (outcome.succeeded, outcome.exit_code) == (False, 5), outcome

        play(contract_backend, test)

    def test_adopt_of_an_attempt_never_submitted_is_never_started(
        self, contract_backend: Backend
    ) -> None:
        """The engine recorded the attempt but died before submitting it."""

        async def test(s: Scenario) -> None:
            job = s.job("never", counted("never"))
            runtime, events = await s.start()
            adopted = await runtime.adopt(job, {})
            assert adopted.kind == "never_started", adopted
            assert s.count(job) is None
            assert job.key not in events.ended

        play(contract_backend, test)

    def test_cancel_reports_the_end_through_job_finished(self, contract_backend: Backend) -> None:
        async def test(s: Scenario) -> None:
            job = s.job("cancelled", gated("cancelled"))
            runtime, events = await s.start()
            handle = await s.submit(runtime, job)
            await s.ran(job)
            await runtime.cancel(job.key, handle)
            outcome = await events.finished(job.key, s.backend.timeout)
            assert not outcome.succeeded, outcome
            await runtime.cancel(job.key, handle)  # again, after its end: nothing more
            assert len(events.ended[job.key]) == 1

        play(contract_backend, test)

    def test_logs_are_read_by_offset_without_a_byte_repeated_or_lost(
        self, contract_backend: Backend
    ) -> None:
        def lines(tag: str) -> str:
            return f'i=0; while [ $i -lt {LOG_LINES} ]; do echo "{tag} $i"; i=$((i+1)); done\n'

        before = "".join(f"before {i}\n" for i in range(LOG_LINES)).encode()
        after = "".join(f"after {i}\n" for i in range(LOG_LINES)).encode()

        async def test(s: Scenario) -> None:
            job = s.job("logs", lines("before") + gated("logs", lines("after")))
            runtime, events = await s.start()
            handle = await s.submit(runtime, job)
            got: dict[str, bytearray] = {}
            loop = asyncio.get_running_loop()
            deadline = loop.time() + s.backend.timeout
            while bytes(got.get("stdout", b"")) != before:  # all of it while the job runs
                assert before.startswith(bytes(got.get("stdout", b""))), got
                assert loop.time() < deadline, f"output so far: {bytes(got.get('stdout', b''))!r}"
                await read_all(runtime, job, handle, got)
                await asyncio.sleep(0.05)
            s.open_gate(job)
            assert (await events.finished(job.key, s.backend.timeout)).succeeded
            for _ in range(100):  # once the end is reported the output is there to read
                if not await read_all(runtime, job, handle, got):
                    break
            assert bytes(got["stdout"]) == before + after
            tail = await runtime.logs(job.key, handle, {"stdout": len(before) + 7})
            assert tail.get("stdout") == after[7:]  # from any offset, to the end
            at_end = await runtime.logs(job.key, handle, {"stdout": len(before + after)})
            assert not at_end.get("stdout")

        play(contract_backend, test)

    def test_a_released_attempt_is_no_leftover(self, contract_backend: Backend) -> None:
        async def test(s: Scenario) -> None:
            job = s.job("released", counted("released"))
            runtime, events = await s.start()
            handle = await s.submit(runtime, job)
            assert (await events.finished(job.key, s.backend.timeout)).succeeded
            before = await runtime.leftovers(job.workflow_id, job.attempt_dir)
            assert set(before) <= {job.key}, before  # only what this run made
            await runtime.release(job.key, handle, succeeded=True)
            del s.handles[job.key]
            after = await runtime.leftovers(job.workflow_id, job.attempt_dir)
            assert job.key not in after, after

        play(contract_backend, test)
