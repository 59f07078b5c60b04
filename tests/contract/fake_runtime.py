"""The smallest runtime that honours the contract, over an in-memory backend.

:class:`FakeBackend` plays the backend (a daemon, a cluster): it holds every attempt by key,
its output and its end, and outlives the :class:`FakeRuntime` instances that talk to it, as
jobs outlive an engine. Scripts really run (``sh -c``, in the job's data dir), so what they do
can be checked; their output is kept in memory and read by offset. It documents the contract:

- submit is idempotent by key: the backend already has the key -> its handle, nothing started;
- the runtime that submitted or adopted an attempt reports its end once, through
  ``job_finished``; a stopped instance reports nothing (its jobs keep running);
- adopt: ``running`` (tracked again: the end comes as an event), ``finished`` (with its
  outcome) or ``never_started``, which is a promise: the key is claimed and can never run;
- cancel stops the job, whose end is still reported (once);
- logs: what each stream wrote after the given offsets;
- leftovers: what the backend still holds for a run; release lets it go.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from akoflow.config import RuntimeConfig
from akoflow.runtimes.base import (
    Adopted,
    Health,
    JobSpec,
    Outcome,
    Runtime,
    RuntimeEvents,
    SubmitError,
)

STREAMS = ("stdout", "stderr")


class FakeJob:
    def __init__(self, job: JobSpec, serial: int) -> None:
        self.key = job.key
        self.workflow_id = job.workflow_id
        self.attempt_dir = job.attempt_dir
        self.handle: dict[str, Any] = {"key": job.key, "serial": serial}
        self.output: dict[str, bytearray] = {s: bytearray() for s in STREAMS}
        self.outcome: Outcome | None = None
        self.cancelled = False
        self.watcher: FakeRuntime | None = None  # the instance that reports its end
        self.process: asyncio.subprocess.Process | None = None
        self.task: asyncio.Task[None] | None = None


class FakeBackend:
    """Attempts by key, shared by every instance of the runtime (and surviving them)."""

    def __init__(self) -> None:
        self.jobs: dict[str, FakeJob] = {}
        self.claimed: set[str] = set()  # adopted as never started: never to run
        self.started: list[FakeJob] = []  # every script started, released or not
        self._serials = itertools.count(1)

    async def start(self, job: JobSpec) -> FakeJob:
        fake = FakeJob(job, next(self._serials))
        fake.process = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            job.activity.run,
            cwd=job.data_dir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self.started.append(fake)
        self.jobs[job.key] = fake
        fake.task = asyncio.ensure_future(self._run(fake))
        return fake

    async def _run(self, fake: FakeJob) -> None:
        process = fake.process
        assert process is not None and process.stdout and process.stderr

        async def copy(stream: asyncio.StreamReader, into: bytearray) -> None:
            while chunk := await stream.read(65536):
                into.extend(chunk)

        await asyncio.gather(
            copy(process.stdout, fake.output["stdout"]),
            copy(process.stderr, fake.output["stderr"]),
        )
        code = await process.wait()
        if code == 0 and not fake.cancelled:
            fake.outcome = Outcome(True, 0)
        elif fake.cancelled:
            fake.outcome = Outcome(False, code if code >= 0 else 128 - code, "cancelled")
        else:
            fake.outcome = Outcome(False, code if code >= 0 else 128 - code, f"exit code {code}")
        if fake.watcher is not None:
            fake.watcher.report(fake)

    async def close(self) -> None:
        """Kill what still runs and wait for it (the end of a test)."""
        for fake in self.started:
            if fake.process is not None and fake.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(fake.process.pid, signal.SIGKILL)
        await asyncio.gather(*(f.task for f in self.started if f.task is not None))


class FakeRuntime(Runtime):
    kind = "fake"

    def __init__(self, name: str, config: RuntimeConfig, events: RuntimeEvents) -> None:
        super().__init__(name, config, events)
        self.backend: FakeBackend | None = None
        self.stopped = False

    @classmethod
    def on(cls, backend: FakeBackend, events: RuntimeEvents) -> FakeRuntime:
        runtime = cls("fake", RuntimeConfig.from_env("fake", {}), events)
        runtime.backend = backend
        return runtime

    def _backend(self) -> FakeBackend:
        assert self.backend is not None, "FakeRuntime.on(backend, events)"
        return self.backend

    def _watch(self, fake: FakeJob) -> None:
        fake.watcher = self
        if fake.outcome is not None:  # ended before this instance took it: still told once
            asyncio.get_running_loop().call_soon(self.report, fake)

    def report(self, fake: FakeJob) -> None:
        if fake.watcher is self and not self.stopped and fake.outcome is not None:
            fake.watcher = None
            self.events.job_finished(fake.key, fake.outcome)

    async def stop(self) -> None:
        self.stopped = True
        for fake in self._backend().jobs.values():
            if fake.watcher is self:
                fake.watcher = None

    async def submit(self, job: JobSpec) -> dict[str, Any]:
        backend = self._backend()
        if job.key in backend.claimed:
            raise SubmitError(f"attempt {job.key} was adopted as never started")
        fake = backend.jobs.get(job.key)
        if fake is None:
            fake = await backend.start(job)
            self.events.job_running(job.key, None)
            self._watch(fake)
        elif fake.watcher is not self:  # another instance's (an engine that died): take it
            self._watch(fake)
        return fake.handle

    async def cancel(self, key: str, handle: Mapping[str, Any]) -> None:
        fake = self._backend().jobs.get(key)
        if fake is None or fake.process is None or fake.outcome is not None:
            return
        fake.cancelled = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(fake.process.pid, signal.SIGTERM)  # the script and what it started

    async def adopt(self, job: JobSpec, handle: Mapping[str, Any]) -> Adopted:
        backend = self._backend()
        fake = backend.jobs.get(job.key)
        if fake is None:
            backend.claimed.add(job.key)
            return Adopted("never_started")
        if fake.outcome is not None:
            return Adopted("finished", fake.handle, fake.outcome)
        fake.watcher = self
        return Adopted("running", fake.handle)

    async def logs(
        self, key: str, handle: Mapping[str, Any], offsets: Mapping[str, int]
    ) -> dict[str, bytes]:
        fake = self._backend().jobs.get(key)
        if fake is None:
            return {}
        out = {s: bytes(data[offsets.get(s, 0) :]) for s, data in fake.output.items()}
        return {s: data for s, data in out.items() if data}

    async def health(self) -> Health:
        return Health(True)

    async def release(self, key: str, handle: Mapping[str, Any], *, succeeded: bool) -> None:
        backend = self._backend()
        fake = backend.jobs.get(key)
        if fake is not None and fake.outcome is not None:
            del backend.jobs[key]

    async def leftovers(self, workflow_id: int, attempt_dir: Path) -> dict[str, dict[str, Any]]:
        return {
            key: fake.handle
            for key, fake in self._backend().jobs.items()
            if fake.workflow_id == workflow_id and fake.attempt_dir == attempt_dir
        }
