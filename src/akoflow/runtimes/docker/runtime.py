"""The docker runtime: one container per attempt on a Docker daemon, through the official SDK.

The adapter ties the parts together: :mod:`.daemon` (client and thread pool), :mod:`.container`
(what is created), :mod:`.images` (pull policy), :mod:`.monitor` (ends, pushed by events),
:mod:`.files` (the attempt's script, output and exit record), :mod:`.gate` (an observed
container's command waits until the engine knows its first process) and :mod:`.status`
(every reading of the daemon's answers, pure).

Crash safety: the container name is deterministic and ``create`` is atomic by name; only the
container's wrapper creates its output files; the exit code is written to ``<prefix>.exit``
before an end is reported. No container and no output: it never ran, and it never will
(nothing else creates that name). A container waiting for its go when the engine died is
let go by the engine that adopts it, once it has announced its processes; with no engine
for ``GO_TIMEOUT``, it ends without running the command (:mod:`.gate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.utils

from akoflow.errors import SettingError
from akoflow.provenance.observe.observer import cgroup_dir_of
from akoflow.runtimes.backoff import Backoff
from akoflow.runtimes.base import (
    Adopted,
    Forgotten,
    Health,
    JobSpec,
    Metrics,
    NodeInfo,
    Outcome,
    Runtime,
    RuntimeUnavailable,
    RunTrace,
    SubmitError,
)
from akoflow.runtimes.docker import daemon, files, gate
from akoflow.runtimes.docker import status as st
from akoflow.runtimes.docker.container import (
    ContainerRequest,
    container_name,
    container_request,
    run_filter,
)
from akoflow.runtimes.docker.daemon import Daemon, NotSent, explain
from akoflow.runtimes.docker.images import Images
from akoflow.runtimes.docker.monitor import EndWatcher, Tracked
from akoflow.runtimes.docker.settings import Settings, read_settings
from akoflow.runtimes.scope import existing_scope, scoped

log = logging.getLogger(__name__)

STOP_RETRY_FIRST, STOP_RETRY_CAP = 1.0, 30.0  # seconds between tries of a failed stop
GATE_CHECK_FIRST, GATE_CHECK_CAP = 0.005, 1.0  # seconds between looks at a held go


def in_container(pid: int, cid: str) -> bool:
    """Whether ``pid`` is a process of container ``cid`` on this host (its cgroup path holds
    the id): a daemon elsewhere names pids of its own host, and a pid read earlier may
    have been reused since; announcing such a pid would give another process's files to
    the attempt."""
    if pid <= 0 or not cid:
        return False
    try:
        with open(f"/proc/{pid}/cgroup", "rb") as f:
            return cid.encode() in f.read()
    except OSError:
        return False


class DockerRuntime(Runtime):
    kind = "docker"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._config_error: str | None = None
        try:
            self._s = read_settings(self.config)
        except SettingError as exc:
            self._s, self._config_error = Settings(), str(exc)
        self._daemon = Daemon(self.name, self._s)
        self._images = Images(self._daemon, self.config.variable("PULL_POLICY"))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: dict[str, Tracked] = {}  # key -> running container (changed on the loop only)
        self._watcher = EndWatcher(self._daemon, self._jobs, self._ended)
        self._cpu: dict[str, tuple[int, float]] = {}  # key -> (cpu ns, monotonic) last sample
        self._node: str | None = None

    def _checked(self) -> Settings:
        if self._config_error:
            raise SubmitError(self._config_error)
        return self._s

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._daemon.open()
        self._watcher.start()

    async def stop(self) -> None:
        """Containers keep running (a restarted engine adopts them); removals in flight end."""
        watcher = self._watcher.stop()
        close = self._daemon.detach()
        for job in self._jobs.values():
            self._close_gate(job)
        self._jobs.clear()

        def shutdown() -> None:
            if watcher is not None:
                watcher.join(timeout=5)
            close()

        await asyncio.to_thread(shutdown)

    # ------------------------------------------------------------------ ends

    def _ended(self, job: Tracked, end: st.End) -> None:
        """From the watcher's thread: report the end on the event loop."""
        end = dataclasses.replace(end, read_at=time.time())
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed: the engine is gone
                self._loop.call_soon_threadsafe(self._finished, job, end)

    def _finished(self, job: Tracked, end: st.End) -> None:
        if self._jobs.get(job.key) is not job:
            return  # already reported (event and sweep both saw it)
        if job.held is not None:
            job.held.append(end)
            return
        if job.stopping:  # whether that stop reached it is known once the daemon answers
            job.waiting = job.waiting or end
            return
        del self._jobs[job.key]
        self._cpu.pop(job.key, None)
        self._close_gate(job)
        gate.remove(job.prefix)
        # A stop that reached nothing (the daemon said it was not running) came too late:
        # the container ended on its own, and its exit code stands whatever the engine
        # asked meanwhile (a success recorded cancelled was run again).
        stopped = job.cancelled and (job.reached or not job.known)
        unstopped = job.known and not job.reached
        if stopped and end.code == 0 and files.unsignalled(job.prefix):
            # The stop reached the wrapper only, after its command had ended with 0 (every
            # stop reaches the command through the wrapper): it came too late, as above.
            stopped, unstopped = False, True
        outcome = self._outcome(job.prefix, end.code, end.oom, stopped, end.note, unstopped)
        if job.cancelled and unstopped and end.read_at is not None:
            # A deadline's stop that came too late: its success is judged by when it ended
            # (no later than its end was read), not by when the engine got it (one that ended
            # in time was recorded timed out and run again).
            outcome = dataclasses.replace(outcome, ended_at=end.read_at)
        self.events.job_finished(job.key, outcome)

    def _outcome(
        self,
        prefix: str,
        code: int | None,
        oom: bool,
        cancelled: bool,
        note: str | None,
        unstopped: bool = False,
    ) -> Outcome:
        """``cancelled``: a stop may have reached the container while it ran (then no
        success); ``unstopped``: no stop of this runtime's ever did
        (:attr:`Outcome.ended_unstopped`)."""
        waited = code == gate.NOT_RELEASED and not files.command_ran(prefix)
        variable = self.config.variable("GO_TIMEOUT")
        outcome = st.outcome(
            code,
            oom,
            cancelled=cancelled,
            note=note,
            command_ran=not waited,
            go_timeout=variable,
            unstopped=unstopped,
        )
        used = files.read_usage(prefix)
        return dataclasses.replace(
            outcome, cpu_seconds=used.cpu_seconds, max_rss_bytes=used.max_bytes
        )

    def _track(self, key: str, cid: str, prefix: str, started: float | None) -> Tracked:
        job = Tracked(key, cid, prefix, started)
        self._jobs[key] = job
        return job

    def _unhold(self, job: Tracked) -> None:
        held, job.held = job.held or [], None
        for end in held[:1]:
            self._finished(job, end)

    # ------------------------------------------------------------------ submit

    async def submit(self, job: JobSpec) -> dict[str, Any]:
        settings = self._checked()
        job = scoped(job)
        image = job.activity.image
        if not image:
            raise SubmitError(
                f"activity {job.activity.name!r} runs on the docker runtime {self.name!r} but "
                "has no image: set `image` on the activity or `spec.image`"
            )
        name, prefix = container_name(job), str(job.attempt_prefix)
        handle: dict[str, Any] = {"id": "", "name": name, "prefix": prefix}
        tracked = self._jobs.get(job.key)
        if tracked is not None:
            return {**handle, "id": tracked.cid}
        if files.ran(prefix):  # idempotent by key: its container ran, it may be there still
            info = await self._daemon.call(self._daemon.inspect, name)
            if info is not None:
                return await self._take_over(job, info, handle)
            raise SubmitError(f"attempt {job.key} already ran once; not starting it again")
        # Not run yet: a container made for it and not started (the engine died in between)
        # makes create fail with 409 and is taken over below; no inspect first.
        await self._images.ensure(image, settings)
        files.prepare(prefix, job.activity.run)
        request = container_request(job, image, name, settings)
        try:
            cid = await self._daemon.call(self._create, request)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # created meanwhile under this name
                info = await self._daemon.call(self._daemon.inspect, name)
                if info is not None:
                    return await self._take_over(job, info, handle)
            if exc.status_code == 404:
                self._images.forget(image)
            raise SubmitError(f"cannot create the container: {explain(exc)}") from exc
        tracked = self._track(job.key, cid, prefix, time.monotonic())
        # Before it starts: its processes are then known by their cgroup, which holds its
        # id. Observed, its command waits for the go, given once its first process (known
        # after start) is announced: every process of the command is then placed by its
        # ancestry, also one that ends before its accesses are read.
        observed = self.announce_process(job.key, cgroup=cid)
        gated = observed and self._s.on_this_host and self._make_gate(tracked)
        await self._start(job.key, cid)
        if gated:
            await self._let_go(tracked)
        return {**handle, "id": cid}

    def _make_gate(self, job: Tracked) -> bool:
        try:
            gate.make(job.prefix)
        except OSError as exc:  # provenance only: the command runs at once
            log.warning("cannot make the gate of %s: %s", job.key, exc)
            return False
        return True

    async def _let_go(self, job: Tracked) -> None:
        """Announce the container's first process (from ``inspect``), then let its command
        run; also when the inspect fails or is cancelled (its accesses may then be
        ambiguous, never the container left waiting)."""
        try:
            info = await self._daemon.call(self._daemon.inspect, job.cid)
            pid = st.pid_of(info)
            if self._jobs.get(job.key) is job and in_container(pid, job.cid):
                self.announce_process(job.key, pid=pid, cgroup=job.cid)
        except Exception as exc:  # provenance only: the attempt goes on
            log.debug("cannot inspect %s for its process: %s", job.cid, exc)
        finally:
            self._open_gate(job)

    def _adopted_go(self, job: Tracked, pid: int) -> None:
        """A taken-over container: its processes are older than this engine's observer,
        placed by their cgroup; one still waiting for its go is let go after that."""
        if self._jobs.get(job.key) is not job:
            return  # ended meanwhile
        if in_container(pid, job.cid):
            self.announce_process(job.key, pid=pid, cgroup=cgroup_dir_of(pid))
        if not files.command_ran(job.prefix):
            self._open_gate(job)

    def _open_gate(self, job: Tracked) -> None:
        """Write the container's go (no gate: nothing to do)."""
        if self._jobs.get(job.key) is not job or job.gate is not None:
            return  # ended meanwhile, or its go is written and held already
        try:
            job.gate = gate.release(job.prefix)
        except OSError as exc:  # it ends after GO_TIMEOUT with the reason, or is adopted
            log.warning("cannot let the container of %s go: %s", job.key, exc)
            return
        if job.gate is not None:  # until the wrapper has read it
            asyncio.get_running_loop().call_later(
                GATE_CHECK_FIRST, self._check_gate, job, GATE_CHECK_FIRST
            )

    def _check_gate(self, job: Tracked, delay: float) -> None:
        if job.gate is None:
            return
        try:
            done = gate.consumed(job.gate)
        except OSError:
            done = True
        if done:
            self._close_gate(job)
        else:
            delay = min(delay * 2, GATE_CHECK_CAP)
            asyncio.get_running_loop().call_later(delay, self._check_gate, job, delay)

    @staticmethod
    def _close_gate(job: Tracked) -> None:
        fd, job.gate = job.gate, None
        if fd is not None:
            os.close(fd)

    def _create(self, request: ContainerRequest) -> str:
        """Thread: create (not start) the attempt's container."""
        api = self._daemon.client()
        host_config = api.create_host_config(**request.host)
        created = api.create_container(request.image, host_config=host_config, **request.container)
        return str(created["Id"])

    async def _start(self, key: str, cid: str) -> None:
        api = self._daemon.client
        try:
            await self._daemon.call(lambda: api().start(cid))
        except Exception as exc:
            self._jobs.pop(key, None)
            if isinstance(exc, NotSent):
                raise  # transient: the created container never starts; a new attempt will
            if isinstance(exc, docker.errors.APIError):
                with contextlib.suppress(Exception):
                    await self._daemon.call(lambda: api().remove_container(cid, force=True))
                raise SubmitError(f"cannot start the container: {explain(exc)}") from exc
            # The request may have reached the daemon: fail rather than risk a second run.
            raise SubmitError(f"the container may not have started: {exc}") from exc

    async def _take_over(
        self,
        job: JobSpec,
        info: dict[str, Any],
        handle: dict[str, Any],
        *,
        hold: bool = False,
        recorded: str = "",
    ) -> dict[str, Any]:
        """Track an existing container as ``job``'s, only if it is (:func:`status.belongs_to`)."""
        if not st.belongs_to(info, job, recorded):
            raise SubmitError(
                f"container {handle['name']} exists but is not attempt {job.key} of this run"
            )
        cid = str(info["Id"])
        tracked = self._track(job.key, cid, str(job.attempt_prefix), None)
        tracked.known = False  # an engine before this one may have stopped it
        if hold:
            tracked.held = []
        if st.is_created(info):  # the engine died between create and start
            tracked.started = time.monotonic()
            if self.announce_process(job.key, cgroup=cid):  # (not yet known when adopting)
                self._make_gate(tracked)
            await self._start(job.key, cid)
            running: dict[str, Any] | None = await self._daemon.call(self._daemon.inspect, cid)
            info = running or info  # its first pid
        else:  # it may have ended before we tracked it: the event could be gone
            await self._daemon.call(self._watcher.recheck, tracked)
        if hold:  # runs once the engine has recorded the adoption: the caller goes on
            loop = asyncio.get_running_loop()  # synchronously after adopt() returns
            loop.call_soon(self._unhold, tracked)
            loop.call_soon(self._adopted_go, tracked, st.pid_of(info))
        else:
            self._adopted_go(tracked, st.pid_of(info))
        return {**handle, "id": cid}

    # ------------------------------------------------------------------ cancel, restart

    async def cancel(self, key: str, handle: Mapping[str, Any]) -> None:
        job = self._jobs.get(key)
        if job is not None:
            job.cancelled = True
        ref = job.cid if job is not None else str(handle.get("id") or handle.get("name") or "")
        if not ref:
            return
        await asyncio.shield(self._stop(key, ref))

    async def _stop(self, key: str, ref: str) -> None:
        """SIGTERM, then SIGKILL after ``STOP_TIMEOUT``; the end arrives as a die event. A
        failed stop is followed by a kill, and both are tried again (backing off) while the
        container is tracked: a cancel or an activity's timeout is never dropped. An end
        read meanwhile waits for the daemon's answer: whether this stop reached it."""
        job = self._jobs.get(key)
        if job is not None and job.cid != ref:
            job = None
        if job is not None:
            job.stopping += 1
        reached = True  # unless the daemon says it was not running
        try:
            reached = await self._stop_tries(key, ref)
        finally:
            if job is not None:
                job.reached = job.reached or reached
                job.stopping -= 1
                if job.waiting is not None and not job.stopping:
                    end, job.waiting = job.waiting, None
                    self._finished(job, end)

    async def _stop_tries(self, key: str, ref: str) -> bool:
        """Stop (or kill) until the daemon takes it; False when it answered that the
        container was not running (the stop reached nothing). Once a try has failed
        otherwise than unsent, its stop may have reached the container (its answer lost, a
        trapping script exiting 0 meanwhile): a later "not running" then says nothing of it,
        and the stop counts."""
        backoff = Backoff(STOP_RETRY_FIRST, STOP_RETRY_CAP)
        unknown = False  # a try failed after it may have been sent
        while True:
            try:
                answer = await self._daemon.call(self._stop_or_kill, key, ref)
                return answer or unknown
            except Exception as exc:
                unknown = unknown or not isinstance(exc, NotSent)
                reason = explain(exc) if isinstance(exc, docker.errors.APIError) else exc
                tracked = self._jobs.get(key)
                if tracked is None or tracked.cid != ref or tracked.waiting is not None:
                    # Ended meanwhile (its end waits for this answer: trying on would hold it
                    # for as long as the daemon refuses), or not ours to follow (not adopted
                    # yet). Whether this stop reached it is not known: as if it did.
                    log.warning("cannot stop the container of %s: %s", key, reason)
                    return True
                log.warning("cannot stop the container of %s (trying again): %s", key, reason)
            await asyncio.sleep(backoff.next())

    def _stop_or_kill(self, key: str, ref: str) -> bool:
        """Thread: stop the container; if the stop call fails, kill it. False only when the
        daemon answered the stop that the container was not running (or is gone): this
        stop reached nothing. A kill after a failed stop may follow one that did: True."""
        api = self._daemon.client()
        try:
            return daemon.stop(api, ref, self._s.stop_timeout)
        except docker.errors.NotFound:
            return False
        except Exception as exc:
            failed = explain(exc) if isinstance(exc, docker.errors.APIError) else exc
            log.warning("cannot stop the container of %s (%s): killing it", key, failed)
        try:
            api.kill(ref)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: it is not running (ended meanwhile)
                raise
        return True

    async def adopt(self, job: JobSpec, handle: Mapping[str, Any]) -> Adopted:
        if self._config_error:
            raise RuntimeUnavailable(self._config_error)
        job = scoped(job)
        # The container the submission recorded, else the one it would have made (a run an
        # older version started keeps the path hash it named containers by as its scope).
        recorded = str(handle.get("id") or "")
        name, prefix = str(handle.get("name") or container_name(job)), str(job.attempt_prefix)
        base: dict[str, Any] = {"id": "", "name": name, "prefix": prefix}
        info = await self._daemon.call(self._daemon.inspect, recorded or name)
        if info is None:
            record = files.read_exit_record(prefix)
            if record is not None:
                # (unsignalled: its wrapper reaped its command before any stop reached it)
                unstopped = files.unsignalled(prefix)
                outcome = self._outcome(prefix, *record, False, None, unstopped)
                return Adopted("finished", base, outcome)
            if files.ran(prefix):
                lost = "the container ran but was removed before it was collected"
                return Adopted("finished", base, Outcome(False, None, lost))
            # Never created (create is atomic by name, only this engine creates it): it has
            # not run, and without a container it never will.
            return Adopted("never_started")
        if st.is_live(info):
            # Created and not started, or waiting at its gate: its command begins when it
            # is taken over (a timeout counted from the stored start would fire at once).
            waiting = st.is_created(info) or (
                os.path.lexists(gate.gate_path(prefix)) and not files.command_ran(prefix)
            )
            try:
                new = await self._take_over(job, info, base, hold=True, recorded=recorded)
            except SubmitError as exc:
                return Adopted("finished", base, Outcome(False, None, str(exc)))
            if waiting:  # its go is given right after this returns
                now = time.time()
                return Adopted("running", new, node=self._node, started_at=now, began_now=True)
            return Adopted("running", new, node=self._node)
        code, oom = st.exit_of(info)
        files.write_exit_record(prefix, code, oom)
        done = {**base, "id": str(info["Id"])}
        # When it ran, by the daemon's clock: its timeout is judged by that (it ended while
        # no engine watched), and its end is recorded as when it was, not its collection.
        # Its container's start, or the start the engine stored when later (its go, after
        # a wait at its gate: an engine died before giving it, the next gave it).
        ran_from, ran_to = st.run_times(info)
        if ran_from and code == gate.NOT_RELEASED and not files.command_ran(prefix):
            # It waited at its gate for a go that never came: its command never ran, and
            # that wait is no run to judge by its timeout (its reason says why it failed).
            ran_from = ran_to
        # A success whose wrapper reaped its command before any signal came ended on its own,
        # whatever stop an engine asked meanwhile (one recorded cancelled was run again).
        unstopped = files.unsignalled(prefix)
        outcome = dataclasses.replace(
            self._outcome(prefix, code, oom, False, None, unstopped),
            ended_at=ran_to if ran_from else None,
        )
        return Adopted(
            "finished", done, outcome, self._node, started_at=ran_from, stored_start="latest"
        )

    # ------------------------------------------------------------------ observe

    async def logs(
        self, key: str, handle: Mapping[str, Any], offsets: Mapping[str, int]
    ) -> dict[str, bytes]:
        return files.read_logs(str(handle.get("prefix", "")), offsets)

    def _stats(self, cid: str) -> tuple[dict[str, Any], float]:
        api = self._daemon.client()
        if docker.utils.version_lt(api.api_version, "1.41"):
            stats = api.stats(cid, stream=False)  # the daemon waits ~1 s for a second sample
        else:
            stats = api.stats(cid, stream=False, one_shot=True)
        return stats, time.monotonic()

    async def metrics(self, jobs: Mapping[str, Mapping[str, Any]]) -> dict[str, Metrics]:
        """CPU (% of one core, from the CPU time between two samples) and memory without
        the page cache, from the stats API, one one-shot call per container."""
        wanted = [self._jobs[k] for k in jobs if k in self._jobs]
        if not wanted:
            return {}
        samples = await asyncio.gather(
            *(self._daemon.call(self._stats, j.cid) for j in wanted), return_exceptions=True
        )
        result: dict[str, Metrics] = {}
        for job, sample in zip(wanted, samples, strict=True):
            if isinstance(sample, BaseException):
                continue
            stats, now = sample
            memory = st.memory_used(stats)
            if memory is None:
                continue  # it stopped meanwhile: an empty sample
            cpu_ns, cpu = st.cpu_time_ns(stats), None
            if cpu_ns is not None:
                previous = self._cpu.get(job.key)
                if previous is None and job.started is not None:
                    previous = (0, job.started)
                cpu = st.cpu_percent(previous, cpu_ns, now)
                self._cpu[job.key] = (cpu_ns, now)
            result[job.key] = Metrics(cpu, memory)
        return result

    async def health(self) -> Health:
        if self._config_error:  # a bad setting never heals while the engine runs
            return Health(False, self._config_error, misconfigured=True)
        where, api = self._daemon.where, self._daemon.client
        try:
            timeout = self.health_timeout
        except SettingError as exc:
            return Health(False, str(exc), misconfigured=True)
        try:
            await asyncio.wait_for(self._daemon.call(lambda: api().ping()), timeout)
        except RuntimeUnavailable as exc:
            return Health(False, str(exc))
        except TimeoutError:
            variable = self.config.variable("HEALTH_TIMEOUT")
            late = f"did not answer a ping in {timeout:g} s ({variable})"
            return Health(False, f"docker daemon at {where} {late}")
        except docker.errors.APIError as exc:
            return Health(False, f"docker daemon at {where}: {explain(exc)}")
        return Health(True)

    async def nodes(self) -> Sequence[NodeInfo]:
        api = self._daemon.client
        info: dict[str, Any] = await self._daemon.call(lambda: api().info())
        node = st.node_info(info, self._daemon.where)
        self._node = node.name
        return [node]

    async def release(self, key: str, handle: Mapping[str, Any], *, succeeded: bool) -> None:
        """Cleanup policy. The logs are files of the attempt: removing loses nothing."""
        self._cpu.pop(key, None)
        policy = self._s.cleanup
        ref = str(handle.get("id") or handle.get("name") or "")
        if not ref or policy == "never" or (policy == "on-success" and not succeeded):
            return
        # Shielded: the engine may stop (cancelling this task) right after it asked.
        await asyncio.shield(self._daemon.call(self._remove, key, ref))

    async def leftovers(self, workflow_id: int, attempt_dir: Path) -> dict[str, dict[str, Any]]:
        """The run's containers still on the daemon, by attempt key (scope and workflow id
        labels: another state dir's containers on the same daemon are never listed)."""
        scope = existing_scope(attempt_dir)
        if scope is None:  # no object of the run was ever named
            return {}
        filters = run_filter(scope, workflow_id)

        def listing() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = self._daemon.client().containers(
                all=True, filters=filters
            )
            return found

        return st.handles_by_key(await self._daemon.call(listing))

    def _remove(self, key: str, ref: str) -> None:
        try:
            self._daemon.client().remove_container(ref, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            log.warning("cannot remove container of %s: %s", key, explain(exc))

    async def forget_run(self, run: RunTrace) -> Forgotten:  # a deleted run's containers
        from akoflow.runtimes.docker.forget import forget_remote

        return await forget_remote(self._daemon, run)
