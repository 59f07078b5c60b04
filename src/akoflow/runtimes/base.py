"""The runtime contract: what every adapter (local, docker, singularity, hpc*, k8s*) provides.

The seed's IRuntime in async, batched form:

=============================  ===============================================================
seed (Go)                      here
=============================  ===============================================================
StartConnection                :meth:`Runtime.start`
StopConnection                 :meth:`Runtime.stop`
ApplyJob                       :meth:`Runtime.submit` (idempotent by key)
DeleteJob                      :meth:`Runtime.cancel` (the end still comes as an event)
GetStatus / VerifyActivities…  pushed, not polled: :class:`RuntimeEvents`; after an engine
                               restart, :meth:`Runtime.adopt` per attempt
GetLogs                        :meth:`Runtime.logs` (incremental, from offsets)
GetMetrics                     :meth:`Runtime.metrics` (all live jobs at once)
HealthCheck                    :meth:`Runtime.health`
=============================  ===============================================================

Runtimes push lifecycle events (:class:`RuntimeEvents`) instead of being polled by the engine:
a runtime whose backend offers notifications (pidfd, watch) uses them; one that must poll does
so itself, in one batched query per cycle. The engine never asks for a job's status: what it
knows comes from those events and, after a restart, from :meth:`Runtime.adopt`.

This module is imported by every adapter and by the placement policies' callers: it imports
only light modules (the plain workflow dataclasses, not the YAML loader). The contract is
exercised for every runtime by the suite in ``tests/contract/runtime_contract.py``; the
in-memory runtime of ``tests/contract/fake_runtime.py`` is the smallest one that honours it.
"""

from __future__ import annotations

import abc
import functools
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from akoflow.errors import AkoflowError
from akoflow.spec.workflow import StoragePolicy

if TYPE_CHECKING:  # types only: importing them here would load their packages' heavier parts
    from akoflow.config import RuntimeConfig
    from akoflow.dataplane.mover import DataMover
    from akoflow.provenance.remote import RemoteFiles
    from akoflow.spec.workflow import Activity, Volume

DEFAULT_HEALTH_TIMEOUT = 10.0  # s
# The methods that reach the backend, counted per runtime (see Runtime.backend_calls).
BACKEND_CALLS = (
    "start", "stop", "submit", "cancel", "adopt", "logs", "metrics", "health", "nodes",
    "release", "leftovers", "forget_run",
)  # fmt: skip
MAX_PARALLEL_LIMIT = 100_000  # more slots than any backend can hold: a typo


class RuntimeFailure(AkoflowError):
    """Base of runtime failures. ``transient`` ones leave the activity waiting, not failed."""

    transient: bool = False


class RuntimeUnavailable(RuntimeFailure):
    """The backend cannot be reached now (daemon down, VPN off, cluster unhealthy)."""

    transient = True


class SubmitError(RuntimeFailure):
    """The backend refused the job for a reason that retrying will not fix."""


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One attempt of one activity, as the engine asks a runtime to run it."""

    key: str
    """Deterministic name of this attempt on any backend: ``wf<id>-<activity>-a<attempt>``."""
    workflow_id: int
    workflow_name: str
    activity_id: int
    activity: Activity
    attempt: int
    data_dir: Path
    """The workflow's shared data dir on the engine host (mountPath semantics)."""
    attempt_dir: Path
    """Engine-side directory of the run's attempt files (shared by all attempts: one mkdir
    per run, not per attempt); this attempt's files start with :attr:`attempt_prefix`."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Variables AkôFlow sets for the activity (ids, names, data dir), before activity.env."""
    namespace: str = "akoflow"
    """The workflow's ``spec.namespace`` (Kubernetes namespace; a label elsewhere)."""
    volumes: tuple[Volume, ...] = ()
    """The workflow's ``spec.volumes`` (``local:remote``), staged by remote runtimes."""
    volumes_in: bool = True
    """Stage :attr:`volumes` to the backend before this attempt: what it reads may have
    changed elsewhere (it depends on no activity of its runtime, or declares inputs in one)."""
    volumes_out: bool = True
    """Stage them back after it: what it wrote is needed elsewhere (no activity of its runtime
    depends on it, or it declares outputs in one). A chain on one runtime stages once each way."""
    storage_policy: StoragePolicy = field(default_factory=StoragePolicy)
    """The workflow's ``spec.storagePolicy`` (Kubernetes volumes)."""
    node: str | None = None
    """The node the placement policy chose (``spec.schedule``); runtimes that can pin work to
    a node (Kubernetes, SLURM) do, the others have one node anyway."""
    record_files: bool = True
    """Provenance is on: a runtime whose files stay remote lists the attempt's working
    directory before and after the command and reports it in :attr:`Outcome.files`."""
    scope: str = ""
    """The run's scope (:func:`akoflow.runtimes.scope.scope_of`): which run of which state dir
    the attempt's backend objects belong to. Empty until a runtime fills it in with
    :func:`akoflow.runtimes.scope.scoped`; pure name builders require it."""

    @property
    def attempt_prefix(self) -> str:
        """``<attempt_dir>/<activity>.<attempt>``; activity names never contain dots. A
        string: a Path interns each of its parts (one per attempt of a 100,000-activity run,
        kept as long as the Path)."""
        return os.path.join(self.attempt_dir, f"{self.activity.name}.{self.attempt}")


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended. ``exit_code`` is the activity's real exit code when known."""

    succeeded: bool
    exit_code: int | None
    reason: str | None = None
    cpu_seconds: float | None = None
    max_rss_bytes: int | None = None
    files: RemoteFiles | None = None
    """Remote runtimes: the attempt's working directory before and after its command."""
    never_started: bool = False
    """The attempt provably never started and never will: it costs no retry, and the
    activity waits at the head of its runtime's queue for a new attempt."""
    short_of_room: bool = False
    """With :attr:`never_started`: because its host was short of room (no space for its
    files); the runtime is NOT_READY with ``reason`` until its health check finds room."""
    ended_at: float | None = None
    """When its process ended (epoch seconds), for an end collected after it happened (an
    adoption; the local runtime's spawner, whose word may reach the engine later): by the
    clock of :attr:`Adopted.started_at`. None: the engine takes the moment it learns of the
    end."""
    ended_unstopped: bool = False
    """The runtime knows no stop of its reached the attempt while it ran: it ended on its
    own, and its success stands even if the engine asked to stop it meanwhile (its end was
    on its way). False: unknown, and a success asked to stop counts as stopped."""
    started_at: float | None = None
    """When its process was started, no later than it really was, by the clock of
    :attr:`ended_at` (the local runtime's spawner). The engine counts an attempt's time from
    when it sent it, which may be earlier: a success :attr:`ended_unstopped` is judged by its
    own run time."""


@dataclass(frozen=True, slots=True)
class Adopted:
    """Result of reconciling an attempt after an engine restart."""

    kind: Literal["running", "finished", "never_started"]
    handle: dict[str, Any] = field(default_factory=dict)
    outcome: Outcome | None = None
    node: str | None = None
    started_at: float | None = None
    """When it started, as the runtime knows it (the store may not have it: the RUNNING
    record of a short attempt is written late, or never)."""
    stored_start: Literal["earliest", "latest"] | None = None
    """How the start the engine stored counts beside ``started_at`` when this runtime's times
    are by the engine's clock too (an end collected later is judged from the result):
    ``earliest``, a local runtime (its files' times, which a script can move; the store's it
    cannot); ``latest``, docker (a container starts before its command, which may wait at its
    gate for a go); None, another clock (``started_at`` alone)."""
    began_now: bool = False
    """Its command begins only now, at the adoption: it waited for a go that the engine which
    started it never gave (:mod:`akoflow.runtimes.docker.gate`). Its timeout and duration
    count from ``started_at`` then, not from the start the store kept."""


@dataclass(frozen=True, slots=True)
class Health:
    """Whether a runtime can take work now, and why not."""

    ready: bool
    reason: str | None = None
    misconfigured: bool = False
    """The setup is wrong and will not heal while the engine runs (a bad setting, a refused
    credential, an unknown queue): work held for the runtime fails at once with ``reason``
    instead of waiting."""


@dataclass(frozen=True, slots=True)
class Metrics:
    """A running attempt's CPU and memory use, as last sampled."""

    cpu_percent: float | None
    memory_bytes: int | None


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node of a runtime, with its capacity and use."""

    name: str
    ready: bool
    cpu_capacity: float | None
    memory_capacity: int | None
    cpu_usage: float | None = None
    memory_usage: int | None = None


@dataclass(frozen=True, slots=True)
class RunTrace:
    """What names a deleted run's objects on a backend (see :meth:`Runtime.forget_run`): its
    workflow id and scope (:mod:`akoflow.runtimes.scope`) together, never one alone (every
    state dir has a workflow 1)."""

    workflow_id: int
    scope: str
    namespace: str = "akoflow"
    """The workflow's ``spec.namespace`` (Kubernetes)."""
    nodes: tuple[str, ...] = ()
    """The nodes its attempts ran on (Kubernetes: one volume per node, distributed)."""


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What :meth:`Runtime.forget_run` removed from the backend."""

    removed: tuple[str, ...] = ()
    """Each object or path removed, as people name it (``Job akoflow/wf3-x-a1-...``)."""
    bytes: int | None = None
    """What the removed files took there, when the backend says (HPC)."""


ProcessHook = Callable[[str, int | None, str | None], bool]
"""(attempt key, pid, cgroup path) of an attempt's process on the engine's host; True when
the engine observes that attempt's file accesses."""


class RuntimeEvents(Protocol):
    """Where a runtime reports its jobs' lifecycle. Called on the event loop thread."""

    def job_running(self, key: str, node: str | None) -> None: ...

    def job_started(self, key: str) -> None:
        """An attempt that waited in the runtime's own line (:meth:`Runtime.in_line`)
        starts now: its timeout and running time count from here."""

    def job_finished(self, key: str, outcome: Outcome) -> None: ...


def _counted(
    call: str, method: Callable[..., Awaitable[Any]], runtime: Runtime
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def counted(*args: Any, **kwargs: Any) -> Any:
        runtime.backend_calls[call] += 1
        try:
            return await method(*args, **kwargs)
        except Exception:  # a cancellation is no backend error
            runtime.backend_errors[call] += 1
            raise

    return counted


class Runtime(abc.ABC):
    """One configured runtime (e.g. ``hpc-sdumont``) of one adapter kind (``hpc``)."""

    kind: ClassVar[str]
    default_max_parallel: ClassVar[int] = 8
    instant_submit: ClassVar[bool] = False
    """True when :meth:`submit` never waits on I/O (the engine then calls it inline)."""
    instant_logs: ClassVar[bool] = False
    """True when :meth:`logs` never waits (it reads files of this host): the engine then
    calls it without a timeout, which could not interrupt it anyway."""
    submits_batches: ClassVar[bool] = False
    """True when :meth:`submit_many` starts a batch in fewer requests than one per attempt:
    the engine then hands it each batch whole instead of one attempt per call."""
    starts_when_reported: ClassVar[bool] = False
    """True when jobs may wait in the backend's queue after submit (a batch system, a job
    array's throttle): their start is reported (``job_running`` with the node), and a timeout
    counts from then."""
    files_stay_remote: ClassVar[bool] = False
    """True when attempts work in a directory of the backend (a cluster's MOUNT_PATH, a
    PVC), not in the engine's data dir: their files are known from the job's own listings."""

    def __init__(self, name: str, config: RuntimeConfig, events: RuntimeEvents) -> None:
        self.name = name
        self.config = config
        self.events = events
        self.process_hook: ProcessHook | None = None  # set by an engine observing file access
        # Calls to the backend and those that raised, by method (read by GET /metrics): the
        # instance's methods are wrapped once, so a subclass's super() call counts once.
        self.backend_calls: Counter[str] = Counter()
        self.backend_errors: Counter[str] = Counter()
        for call in BACKEND_CALLS:
            setattr(self, call, _counted(call, getattr(self, call), self))

    def announce_process(
        self, key: str, *, pid: int | None = None, cgroup: str | None = None
    ) -> bool:
        """Runtimes whose attempts run as processes of the engine's host (local, singularity,
        docker) call this as soon as an attempt's first process (``pid``) or its cgroup
        exists, in the same event-loop turn as its start: the engine then attributes the
        files it reads and writes exactly (see :mod:`akoflow.provenance.observe`). True when
        the engine observes the attempt (docker then holds a container's command until its
        first process is announced)."""
        if self.process_hook is None:
            return False
        return self.process_hook(key, pid, cgroup)

    @property
    def max_parallel(self) -> int:
        """Activities run at once on this runtime: ``{NAME}_MAX_PARALLEL``."""
        return self.config.get_int(
            "MAX_PARALLEL", self.default_max_parallel, minimum=1, maximum=MAX_PARALLEL_LIMIT
        )

    @property
    def queue_ahead(self) -> int:
        """Attempts the engine may hand this runtime now beyond :attr:`max_parallel`: a
        runtime with a line of its own starts them as running ones end, without a round trip
        through the engine (see :meth:`in_line`). 0 for a runtime without one."""
        return 0

    @property
    def line_length(self) -> int:
        """Attempts waiting in this runtime's own line now."""
        return 0

    def serve(self) -> None:
        """Handle what the backend said and start what the runtime's own line holds, now.
        The engine calls it between the events of a batch it records (milliseconds of work
        during which the event loop does not run): a runtime with a line starts its next
        attempts then, instead of once the batch is committed. Never raises, never writes
        the store; nothing to do for a runtime without a line."""
        return None

    def leave_line(self, key: str) -> bool:
        """Take the attempt ``key`` out of this runtime's own line, now: it never starts,
        and its end ("stopped before it started") comes as an event in a later turn. False
        when it does not wait there. The engine calls it in the turn it stops an attempt:
        :meth:`cancel` runs in a later one, and an end read before that (:meth:`serve`
        while a batch is recorded, or the event loop) would have started it."""
        return False

    def in_line(self, key: str) -> bool:
        """Whether the attempt ``key`` waits in this runtime's own line: its start is then
        reported with :meth:`RuntimeEvents.job_started`, and its timeout counts from it."""
        return False

    @property
    def health_timeout(self) -> float:
        """Seconds one health check, node listing or metrics sample may take before the
        runtime counts as not answering: ``{NAME}_HEALTH_TIMEOUT`` (default 10)."""
        return self.config.get_seconds("HEALTH_TIMEOUT", DEFAULT_HEALTH_TIMEOUT)

    async def start(self) -> None:
        """Open connections. Raise :class:`RuntimeUnavailable` if the backend is unreachable."""
        return None

    async def stop(self) -> None:
        """Close connections. Running jobs are left running (the engine may adopt them later)."""
        return None

    @abc.abstractmethod
    async def submit(self, job: JobSpec) -> dict[str, Any]:
        """Start one attempt and return its handle (JSON-serialisable, stored by the engine).

        Must be idempotent by ``job.key``: if the backend already has this key, return its
        handle (the one returned before) instead of starting a second copy. An instance asked
        for an attempt that another instance launched (an engine that died before it stored
        the handle) takes it over and reports its end, or, if it cannot, refuses with
        :class:`SubmitError`; it never runs the attempt twice. Raises
        :class:`RuntimeUnavailable` (the activity waits) or :class:`SubmitError` (the attempt
        fails).
        """

    @abc.abstractmethod
    async def cancel(self, key: str, handle: Mapping[str, Any]) -> None:
        """Stop the job; its end is still reported, once, through
        :meth:`RuntimeEvents.job_finished`. Cancelling a job that has ended does nothing."""

    @abc.abstractmethod
    async def adopt(self, job: JobSpec, handle: Mapping[str, Any]) -> Adopted:
        """Reconcile an attempt recorded as submitted/running before an engine restart.

        ``never_started`` must be a guarantee: the attempt has not run and never will.
        A ``running`` attempt is tracked again and reports its end through the events (only
        after adopt has returned); a ``finished`` one carries its outcome, and no event follows.
        Runtimes stopped by :meth:`stop` report nothing more: their jobs are adopted later.
        """

    @abc.abstractmethod
    async def logs(
        self, key: str, handle: Mapping[str, Any], offsets: Mapping[str, int]
    ) -> dict[str, bytes]:
        """New output per stream (``stdout``, ``stderr``) after the given byte offsets: read
        from the offsets of what was received, successive calls give every byte once. Once
        the end is reported, the output is complete (a stream with nothing new is absent)."""

    async def metrics(self, jobs: Mapping[str, Mapping[str, Any]]) -> dict[str, Metrics]:
        """CPU and memory of running jobs; runtimes without a source return nothing."""
        return {}

    async def submit_many(self, jobs: Sequence[JobSpec]) -> list[dict[str, Any] | Exception]:
        """Start several attempts at once: per job, in order, its handle or the error
        :meth:`submit` would have raised (same idempotence and guarantees). By default one
        :meth:`submit` after the other; a runtime that can start many in one request (SLURM
        job arrays) overrides it and sets :attr:`submits_batches`."""
        results: list[dict[str, Any] | Exception] = []
        for job in jobs:
            try:
                results.append(await self.submit(job))
            except Exception as exc:  # the caller judges each error as submit's
                results.append(exc)
        return results

    @abc.abstractmethod
    async def health(self) -> Health:
        """Whether new work can be sent now (READY) or must wait (NOT_READY)."""

    async def nodes(self) -> Sequence[NodeInfo]:
        """The nodes this runtime can place work on, with capacity and use."""
        return []

    async def release(self, key: str, handle: Mapping[str, Any], *, succeeded: bool) -> None:
        """The engine has stored everything of a finished job: backend objects may go."""
        return None

    async def run_ended(self, job: JobSpec) -> None:
        """Every activity of ``job``'s run is final and every attempt here released: what
        the runtime keeps for the run as a whole (a transfer pod) may go. The run is recorded
        finished only after this returns."""
        return None

    def data_mover(self, job: JobSpec) -> DataMover | None:
        """How files reach the location where ``job`` (or any attempt of its run) works from
        the run's data dir and come back (:mod:`akoflow.dataplane`), for runtimes whose files
        stay remote; None when attempts work in the data dir itself (or the same directory),
        or files cannot move to that location."""
        return None

    async def forget_run(self, run: RunTrace) -> Forgotten:
        """The run is deleted (``akoflow delete``, ``gc``): remove whatever it left here
        (attempt dirs, volumes, leftover jobs and containers), found by its scope and workflow
        id together, never another run's or state dir's. Raises :class:`RuntimeUnavailable`
        when the backend cannot be reached (the deletion is tried again by the next gc).
        Runtimes whose runs leave nothing outside the state dir keep this default."""
        return Forgotten()

    async def leftovers(self, workflow_id: int, attempt_dir: Path) -> dict[str, dict[str, Any]]:
        """Backend objects this runtime still holds for a run's attempts (attempt key ->
        handle), so that a resumed engine can release those of attempts whose end is stored
        (an engine that died between storing an end and releasing it left them). Runtimes
        whose attempts leave nothing behind keep this default."""
        return {}
