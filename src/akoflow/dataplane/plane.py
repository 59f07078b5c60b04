"""The engine's side of the data plane (see :mod:`akoflow.dataplane`): before an attempt is
submitted, :meth:`DataPlane.stage_in` brings what it needs to its location; when a remote
attempt ended, :meth:`DataPlane.record_outputs` notes what it wrote there and
:meth:`DataPlane.collect` brings it back to the host when the workflow's ``collect`` says so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from akoflow.dataplane.mover import (
    DataMover,
    Digest,
    HostFiles,
    TransferFailed,
    host_path,
    wanted_files,
)
from akoflow.provenance.declared import declares, inputs_problem
from akoflow.provenance.names import display, to_bytes
from akoflow.runtimes.base import JobSpec, Outcome, Runtime, RuntimeUnavailable
from akoflow.states import ActivityState
from akoflow.store import Repository
from akoflow.store.repository import DataCopy, Replica
from akoflow.upstream import upstream_ids

if TYPE_CHECKING:
    from akoflow.dataplane import plan
    from akoflow.dataplane.index import RunIndex
    from akoflow.engine.model import ActivityRun, WorkflowRun
    from akoflow.provenance.remote import RemoteFiles

# The plans (akoflow.dataplane.plan) and the index of a run's copies are imported where files
# are to move: every method that needs them is reached only by a run whose files are, or may
# be, elsewhere than the engine host (an engine with local runs only does without them).

log = logging.getLogger(__name__)
T = TypeVar("T")

COPIES_PER_LOCATION = 4  # copies to one destination at once (a cluster, the engine host)
COPY_TRIES = 3
RETRY_DELAY = 1.0  # s, growing with each try


def make_parents(data_dir: Path, path: str, location: str) -> None:
    """The directories of ``path`` under ``data_dir``, made one by one; a symbolic link on the
    way (an activity's ``ln -s /elsewhere out``) is refused: a fetched file is never written
    outside the data dir."""
    current = os.fsencode(data_dir)
    for part in to_bytes(path).split(b"/")[:-1]:
        if not part:
            continue
        current += b"/" + part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            try:
                os.mkdir(current)
            except FileExistsError:
                info = os.lstat(current)
            except OSError as exc:
                raise TransferFailed(
                    f"cannot bring {display(path)} from {location}: {exc.strerror}"
                ) from None
            else:
                continue
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            what = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a directory"
            raise TransferFailed(
                f"cannot bring {display(path)} from {location}: "
                f"{display(os.fsdecode(current))} is {what} in the data dir (never written "
                "through)"
            )


async def retried(copy: Callable[[int], Awaitable[T]]) -> T:
    """``copy(try number)``, made again when what arrived does not match what was sent (a
    file still being written on either side changes under the copy), up to
    :data:`COPY_TRIES` times."""
    for attempt in range(COPY_TRIES):
        try:
            return await copy(attempt)
        except TransferFailed:
            if attempt + 1 == COPY_TRIES:
                raise
            await asyncio.sleep(RETRY_DELAY * (attempt + 1))
    raise AssertionError("unreachable")


async def all_of(copies: Iterable[Awaitable[None]]) -> None:
    """Run ``copies`` at once (each waits for its destination's gate); every one ends before
    the first failure is raised: none is cut off half way, none is left running."""
    errors = [
        e
        for e in await asyncio.gather(*copies, return_exceptions=True)
        if isinstance(e, BaseException)
    ]
    for e in errors:  # a location out of reach first: the attempt is held, not failed
        if isinstance(e, RuntimeUnavailable):
            raise e
    if errors:
        raise errors[0]


def host_changes(data_dir: Path, paths: list[str]) -> dict[str, float]:
    """When each of ``paths`` last changed in the data dir (its mtime; absent: no file)."""
    found: dict[str, float] = {}
    for path in paths:
        try:
            found[path] = os.stat(host_path(data_dir, path), follow_symlinks=False).st_mtime
        except OSError:
            continue
    return found


class DataPlane:
    def __init__(
        self,
        repo: Repository,
        runtime_of: Callable[[str], Runtime | None],
        job_of: Callable[[ActivityRun], JobSpec],
    ) -> None:
        self.repo = repo
        self._runtime_of = runtime_of
        self._job_of = job_of  # what a runtime needs to name the run's location
        self.host = HostFiles()
        # Copies in flight by (run, destination, path): attempts that need the same file at
        # the same place at the same time wait for one copy.
        self._in_flight: dict[tuple[int, str, str], asyncio.Future[None]] = {}
        self._recorded: set[tuple[int, int]] = set()  # (activity, attempt) outputs noted
        self._gates: dict[str, asyncio.Semaphore] = {}  # destination -> copies at once
        self._remote_runs: dict[int, bool] = {}  # run -> whether a remote location holds files
        self._staging: set[int] = set()  # activities whose attempt is copying what it needs
        # Attempts whose end the runtime reported (their state moves on a moment later):
        # they write nothing more.
        self._ended: set[tuple[int, int]] = set()
        # What the data plane knows of each attached run, kept up to date as it changes: the
        # end of an attempt looks at what it may have touched, not at the whole run.
        self._runs: dict[int, RunIndex] = {}
        # Told of each file fetched into a data dir (the engine sets the provenance recorder's
        # copied_in): a copy the engine made, no activity's change on the host.
        self.fetched: Callable[[WorkflowRun, str, str], None] = lambda wf, path, location: None

    def holds_remote(self, workflow_id: int) -> bool:
        """Whether a location other than the engine host holds files of the run (else an
        activity on the host has nothing to wait for: the common case costs no query)."""
        known = self._remote_runs.get(workflow_id)
        if known is None:
            known = self._remote_runs[workflow_id] = bool(self.repo.data_replicas(workflow_id))
        return known

    def _index(self, wf: WorkflowRun) -> RunIndex:
        """The index of ``wf``, made from the store the first time (or for a run attached
        again); those of runs that ended are let go then."""
        from akoflow.dataplane.index import RunIndex

        index = self._runs.get(wf.id)
        if index is None or index.wf is not wf:
            for done in [k for k, i in self._runs.items() if i.wf.state.is_final]:
                del self._runs[done]
            held = self.repo.data_replicas(wf.id)
            index = self._runs[wf.id] = RunIndex(wf, held, self._remote, self._ended)
        return index

    def _remote(self, name: str) -> bool:
        runtime = self._runtime_of(name)
        return runtime is not None and runtime.files_stay_remote

    def _put_replica(self, wf: WorkflowRun, replica: Replica) -> None:
        self.repo.put_replica(wf.id, replica)
        self._index(wf).replicas.put(replica)
        self._remote_runs[wf.id] = True

    def _drop_replica(self, wf: WorkflowRun, location: str, path: str) -> None:
        self.repo.drop_replica(wf.id, location, path)
        self._index(wf).replicas.drop(location, path)

    # ---------------------------------------------------------------- before

    def dispatched(self, act: ActivityRun) -> None:
        """An attempt of ``act`` is dispatched (the engine's ``Attempts._begin``): from now
        on its window at its runtime may cover what listings there show. Nothing for one
        whose files are in the data dir."""
        runtime = self._runtime_of(act.runtime)
        if runtime is not None and self._mover(act, runtime) is not None:
            self._index(act.wf).windows.sight(act)

    def may_stage_in(self, act: ActivityRun, runtime: Runtime) -> bool:
        """Whether :meth:`stage_in` may have anything to do for ``act`` (False: an activity
        on the host of a run whose files are all there, the common case, skips it)."""
        return runtime.files_stay_remote or self.holds_remote(act.wf.id)

    async def stage_in(self, act: ActivityRun, runtime: Runtime) -> None:
        """Bring what ``act`` needs to ``runtime``'s location. Raises
        :class:`TransferFailed` (the attempt fails with the reason) or
        :class:`~akoflow.runtimes.base.RuntimeUnavailable` (a location is unreachable)."""
        wf = act.wf
        mover = self._mover(act, runtime)
        if runtime.files_stay_remote and mover is None:
            return  # files do not move to or from this runtime (yet): its own volume only
        if mover is None and not self.holds_remote(wf.id):
            return
        from akoflow.dataplane.plan import HOST

        target = mover.location if mover is not None else HOST
        self._staging.add(act.id)
        try:
            await self._stage_in(act, mover, target)
        finally:
            self._staging.discard(act.id)

    def _planned_fetches(
        self, act: ActivityRun, target: str
    ) -> tuple[list[plan.Fetch], dict[tuple[str, str], Replica]]:
        """What :func:`plan.fetches` brings to the host for ``act`` (at ``target``), from the
        versions it can pick: a fresh one that one of its ancestors recorded, or recorded
        while one of them ran at its location (their windows decide the rest)."""
        from akoflow.dataplane import plan

        wf = act.wf
        index = self._index(wf)
        if not index.replicas.fresh_elsewhere(target):
            return [], {}  # nothing newer elsewhere (a run at one location): nothing to bring
        writers = upstream_ids(act)
        replicas: dict[tuple[str, str], Replica] = {}
        windows: dict[str, list[plan.Window]] = {}
        locations = index.replicas.locations()
        for writer in writers:
            dep = index.by_id.get(writer)
            if dep is None:
                continue
            for r in index.replicas.fresh_by(writer):
                replicas[r.location, r.path] = r
            window = index.windows.of(dep, staging=self._staging)
            if window is None:
                continue
            for loc in locations.get(dep.runtime, ()):
                windows.setdefault(loc, []).append(window)
                for r in index.replicas.fresh_since(loc, window.start, window.end):
                    replicas[r.location, r.path] = r
        changed = host_changes(wf.data_dir, sorted({r.path for r in replicas.values()}))
        wanted = plan.fetches(
            replicas,
            target=target,
            writers=writers,
            inputs=act.spec.inputs,
            windows=windows,
            host_changed=changed,
            declared=partial(self._declared, wf),
        )
        return wanted, replicas

    async def _stage_in(self, act: ActivityRun, mover: DataMover | None, target: str) -> None:
        from akoflow.dataplane import plan
        from akoflow.dataplane.plan import HOST

        wf = act.wf
        inputs = act.spec.inputs
        wanted, replicas = self._planned_fetches(act, target)
        # Who runs at each of those locations now (a failed copy of a version one of them
        # may be writing is not this activity's failure).
        running = {f.location: self._windows(wf, f.location, None) for f in wanted}

        async def fetch(i: plan.Fetch) -> None:
            try:
                await self._once(
                    (wf.id, HOST, i.path), partial(self._fetch, act, i.location, i.path)
                )
            except TransferFailed as exc:
                held = replicas[i.location, i.path]
                if not plan.unsettled(held, running[i.location], declared=self._declared(wf, held)):
                    raise
                # Being written by a job still running there, which this one does not depend
                # on (as on a shared data dir, it is not this activity's to wait for).
                log.warning(
                    "%s: %s from %s not brought: %s (a job running there may be writing it)",
                    act.name,
                    display(i.path),
                    i.location,
                    exc,
                )

        await all_of(fetch(i) for i in wanted)
        if mover is None:
            missing = inputs_problem(act.spec, wf.data_dir) if inputs else None
            if missing is not None:
                raise TransferFailed(missing)
            return
        assert mover is not None
        host: dict[str, Digest] = {}
        # Looked for off the event loop: a run's data dir can hold many files.
        for path in await asyncio.to_thread(wanted_files, wf.data_dir, inputs):
            try:
                host[path] = await self.host.digest(host_path(wf.data_dir, path))
            except FileNotFoundError:
                continue  # gone meanwhile: not needed
            except OSError as exc:
                raise TransferFailed(
                    f"cannot read {display(path)} in the data dir to copy it to "
                    f"{target}: {exc.strerror}"
                ) from None
        held = self._index(wf).replicas
        replicas = {(target, p): r for p in host if (r := held.get(target, p)) is not None}
        recorded = [p for _, p in replicas]
        current = await mover.stats(recorded) if recorded else None
        changed = host_changes(wf.data_dir, recorded)
        needed = plan.puts(host, replicas, target=target, current=current, host_changed=changed)
        await all_of(
            self._once((wf.id, target, p), partial(self._put, act, mover, p, host[p]))
            for p in needed
        )

    async def _once(self, key: tuple[int, str, str], copy: Callable[[], Awaitable[None]]) -> None:
        running = self._in_flight.get(key)
        if running is not None:
            await asyncio.shield(running)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        gate = self._gates.setdefault(key[1], asyncio.Semaphore(COPIES_PER_LOCATION))
        try:
            async with gate:  # bounded per destination: a fan-out does not open 1,000 copies
                await copy()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        else:
            future.set_result(None)
        finally:
            del self._in_flight[key]

    async def _put(self, act: ActivityRun, mover: DataMover, path: str, digest: Digest) -> None:
        from akoflow.dataplane.plan import HOST

        wf = act.wf
        started = time.time()
        source = host_path(wf.data_dir, path)

        async def put(attempt: int) -> Digest:
            # Tried again, the file may be another branch's rewrite: hash what is there now.
            current = digest if attempt == 0 else await self.host.digest(source)
            await mover.put(source, path, current)
            return current

        try:
            digest = await retried(put)
        except FileNotFoundError:
            return  # gone meanwhile: nothing of it to bring
        now = await mover.stats([path])  # its stamp there, to tell if it is replaced later
        stamp = now[path][1] if now and path in now else None
        replica = Replica(
            mover.location, path, digest.size, digest.sha256, False, None, None, stamp
        )
        self._put_replica(wf, replica)
        self.repo.add_data_copy(
            wf.id,
            DataCopy(
                act.id, path, HOST, mover.location, digest.size, digest.sha256, started, time.time()
            ),
        )

    async def _fetch(self, act: ActivityRun, location: str, path: str) -> None:
        from akoflow.dataplane.plan import HOST

        wf = act.wf
        mover = self._mover_at(location, act)
        destination = host_path(wf.data_dir, path)
        make_parents(wf.data_dir, path, location)
        started = time.time()
        digest = await retried(lambda _: mover.get(path, destination))
        self.host.forget(destination)
        self.fetched(wf, path, location)
        held = self._index(wf).replicas.get(location, path)
        writer = held.activity_id if held is not None else None
        mtime = held.mtime if held is not None else None
        replica = Replica(location, path, digest.size, digest.sha256, False, writer, mtime)
        self._put_replica(wf, replica)
        self.repo.add_data_copy(
            wf.id,
            DataCopy(
                act.id, path, location, HOST, digest.size, digest.sha256, started, time.time()
            ),
        )

    def _windows(self, wf: WorkflowRun, location: str, since: float | None) -> list[plan.Window]:
        """When the activities of ``wf`` ran at ``location`` (its runtime's): who may have
        written what a listing there shows. Those that ended before ``since`` are left out
        (``None``: all that ended). An attempt still copying what it needs writes nothing yet."""
        return self._index(wf).windows.at(location.split(":", 1)[0], since, staging=self._staging)

    def _declared(self, wf: WorkflowRun, held: Replica) -> bool:
        """Whether the activity that recorded ``held`` declared it as an output."""
        writer = self._index(wf).by_id.get(held.activity_id) if held.activity_id else None
        outputs = writer.spec.outputs if writer is not None else ()
        return bool(outputs) and declares(outputs, held.path)

    def _mover(self, act: ActivityRun, runtime: Runtime) -> DataMover | None:
        if not runtime.files_stay_remote:
            return None
        return runtime.data_mover(self._job_of(act))

    def _mover_at(self, location: str, act: ActivityRun) -> DataMover:
        """The mover of ``location`` (where another activity of ``act``'s run wrote)."""
        runtime = self._runtime_of(location.split(":", 1)[0])
        mover = self._mover(act, runtime) if runtime is not None else None
        if mover is None or mover.location != location:
            raise TransferFailed(
                f"files written at {location} are needed, but no configured runtime reaches "
                "that location any more"
            )
        return mover

    # ---------------------------------------------------------------- after

    def record_outputs(self, act: ActivityRun, runtime: Runtime, files: RemoteFiles | None) -> None:
        """What attempt ``act.attempt`` wrote at its location (from its listings), where files
        can be brought from."""
        if files is None or (act.id, act.attempt) in self._recorded:
            return
        if self._mover(act, runtime) is None:
            return
        self._recorded.add((act.id, act.attempt))
        from akoflow.dataplane import plan

        written, deleted = plan.changed(files)
        index = self._index(act.wf)
        index.windows.sight(act)
        outputs = act.spec.outputs
        for path, state in written.items():
            if plan.recorded(index.replicas.get(files.location, path), state):
                continue  # another attempt's, recorded at its end (or fetched): unchanged
            # plan.claims, with every activity's declared outputs indexed by path:
            if not (outputs and declares(outputs, path)) and index.outputs.any_declares(path):
                continue  # another activity's declared output, seen in this one's listing
            replica = Replica(
                files.location, path, state.size, None, True, act.id, state.mtime, None, time.time()
            )
            self._put_replica(act.wf, replica)
        for path in deleted:
            self._drop_replica(act.wf, files.location, path)

    def needs_listing(self, act: ActivityRun, runtime: Runtime) -> bool:
        """Whether what an attempt of ``act`` writes on ``runtime`` may have to move: it is
        collected at its end, or an activity on another runtime depends on it."""
        if self._mover(act, runtime) is None:
            return False
        policy = act.wf.workflow.collect
        return (
            policy == "all"
            or (policy == "outputs" and not act.dependents)
            or any(d.runtime != act.runtime for d in act.dependents)
        )

    def wants_collect(self, act: ActivityRun, runtime: Runtime, outcome: Outcome) -> bool:
        """Whether files come back to the host before the end of the attempt is recorded (its
        listings noted first): what it may have written that the workflow's ``collect``
        brings back, and what another attempt there wrote while it ran, now complete (also
        at the end of an attempt that left no listing: cancelled, timed out, lost)."""
        mover = self._mover(act, runtime)
        if mover is None:
            return False  # its files are in the data dir: no location lists them
        self._ended.add((act.id, act.attempt))
        if act.wf.workflow.collect == "none":
            return False
        if outcome.files is not None:
            self.record_outputs(act, runtime, outcome.files)
        return bool(self._collectable(act, outcome, mover.location))

    async def collect(self, act: ActivityRun, runtime: Runtime, outcome: Outcome) -> None:
        """Bring back to the engine host what :meth:`wants_collect` said."""
        mover = self._mover(act, runtime)
        if mover is None:
            return
        from akoflow.dataplane.plan import HOST

        if outcome.files is not None:
            self.record_outputs(act, runtime, outcome.files)
        paths = self._collectable(act, outcome, mover.location)
        # What only another attempt's listing showed (taken while this one ran), not this
        # one's last: it may be gone since (a temporary file renamed or removed by its
        # writer, caught by that listing). Looked for first: what is gone is not brought.
        listed = outcome.files.after if outcome.files is not None else {}
        others = [p for p in paths if p not in listed]
        there = await mover.stats(others) if others else None
        for path in paths:
            if there is not None and path not in there and path not in listed:
                self._drop_replica(act.wf, mover.location, path)
                continue
            await self._once(
                (act.wf.id, HOST, path), partial(self._fetch, act, mover.location, path)
            )

    def _collectable(self, act: ActivityRun, outcome: Outcome, location: str) -> list[str]:
        from akoflow.dataplane import plan

        wf = act.wf
        policy = wf.workflow.collect
        index = self._index(wf)
        index.windows.sight(act)
        # What the rule can pick (plan.collectable: a fresh version at the location that
        # ``act`` recorded, or recorded while it ran there), and the windows that decide it.
        mine = self._window(act, location)
        picked = {
            (location, r.path): r for r in index.replicas.fresh_by(act.id) if r.location == location
        }
        if mine is not None:
            for r in index.replicas.fresh_since(location, mine.start, mine.end):
                picked[r.location, r.path] = r
        if not picked:
            return []
        times = [r.recorded_at for r in picked.values() if r.recorded_at is not None]

        def collected(activity_id: int) -> bool:
            other = index.by_id.get(activity_id)
            if other is None or (policy == "outputs" and other.dependents):
                return False
            if other is act:
                return outcome.succeeded
            return other.state is ActivityState.SUCCEEDED

        return plan.collectable(
            picked,
            location=location,
            ending=act.id,
            windows=self._windows(wf, location, min(times, default=None)),
            collected=collected,
            declared=partial(self._declared, wf),
        )

    def _window(self, act: ActivityRun, location: str) -> plan.Window | None:
        """``act``'s window at ``location`` (None: it has none there)."""
        if act.runtime != location.split(":", 1)[0]:
            return None
        return self._index(act.wf).windows.of(act, staging=self._staging)
