"""The HPC adapter: each attempt is one SLURM batch job, sent through the login node.

- One transport per runtime (:mod:`.transport`) carries every command and file transfer: one
  SSH connection to the login node (:mod:`.ssh`, the default), or, with
  ``{NAME}_TRANSPORT=local``, this host itself when the engine runs on the login node
  (:mod:`.local`).
- Submit: stage volumes in (rsync), upload the activity's script and the rendered sbatch script
  (SFTP), then one ``sbatch --parsable`` guarded by a ``submitted`` claim, paced by
  ``SUBMIT_RATE``. The job name is deterministic, so an attempt can always be found again.
- Monitor: one ``squeue`` per poll for every job of the runtime; jobs that left the queue are
  resolved with ``sacct`` (or ``sacct -c``) and the job's own exit file. Ends are pushed to the
  engine after the volumes are staged back. A failed query changes nothing ("unknown").
- Crash safety: after an engine restart or an ambiguous submit, the attempt is looked up by job
  name (squeue, then accounting, then its exit file); if it is nowhere, the engine takes the
  attempt's ``started`` claim, so a straggling copy can never run the script: never twice.
- Provenance: with ``JobSpec.record_files`` the job lists MOUNT_PATH before and after its
  command (:mod:`.sbatch`); whatever way an attempt's end is learnt (its exit file, squeue,
  sacct, adoption after a restart), both listings are read through the transport and handed
  to the engine in :attr:`Outcome.files` (location ``<runtime name>:<MOUNT_PATH>``), missing
  ones as None.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from akoflow.provenance.remote import RemoteFiles, remote_files
from akoflow.runtimes.apptainer import exec_command
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
from akoflow.runtimes.hpc import sbatch, slurm, ssh, staging
from akoflow.runtimes.hpc.local import LocalTransport
from akoflow.runtimes.hpc.mover import HpcMover
from akoflow.runtimes.hpc.settings import HpcSettings, SettingsError, read_settings
from akoflow.runtimes.hpc.transport import (
    Completed,
    HpcMisconfigured,
    RsyncRoute,
    Transport,
    TransportAmbiguous,
    TransportUnavailable,
)
from akoflow.runtimes.scope import scope_of
from akoflow.tasks import cancel_and_wait

log = logging.getLogger(__name__)

STREAMS = ("stdout", "stderr")
LOG_READ_MAX = 8 << 20
EXIT_READ = 128  # bytes of an exit file read: ``CODE BEGAN ENDED``
MISSES_BEFORE_LOST = 2  # successful squeue polls without the job before it counts as gone
NODES_CACHE_SECONDS = 2.0
CONTAINER_SHELL = "/bin/sh"
ADOPT_ROWS_SECONDS = 10.0  # an array's squeue rows serve the adoption of all its elements
LISTING_READS = 8  # attempts whose listings are read (and held in memory) at once
FILE_OPS = 32  # remote file operations at once while an array's elements are prepared
SLURM_PROGRAMS = ("sbatch", "squeue", "sinfo", "scancel")  # without them nothing can run
# sbatch messages that mean "could not talk to slurmctld" (the job may or may not exist).
_CONTROLLER_TROUBLE = (
    "Unable to contact slurm controller",
    "Socket timed out",
    "Connection refused",
    "Zero Bytes were transmitted",
    "Slurm backup controller in standby mode",
    "Communication connection failure",
)


class _NeverRan(RuntimeUnavailable):
    """An ambiguous submission proven harmless: the attempt's script can never run."""


_NODE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # a SLURM node name, safe in an #SBATCH line
# Exit files read in one adoption or one poll, by path: their text, or None where none is.
_ExitTexts = dict[str, str | None]


class _Job:
    __slots__ = (
        "cancel_pending",
        "cancelled",
        "cpu",
        "index",
        "job_id",
        "key",
        "last_log",
        "misses",
        "name",
        "node",
        "own_id",
        "paths",
        "record_files",
        "running_reported",
        "state",
        "transfers",
        "workdir",
    )

    def __init__(
        self,
        key: str,
        name: str,
        paths: sbatch.AttemptPaths,
        job_id: str | None,
        transfers: Sequence[staging.Transfer],
        record_files: bool = False,
        workdir: str | None = None,
        index: int | None = None,
    ) -> None:
        self.key = key
        self.index = index  # its index in the array ``name``; None: a plain job
        self.workdir = workdir  # where it works (None: MOUNT_PATH)
        self.record_files = record_files  # the job lists its working dir (provenance)
        self.name = name
        self.paths = paths
        self.job_id = job_id
        self.own_id: str | None = None  # an element's own SLURM job id once it runs (sstat's)
        self.transfers = tuple(transfers)
        self.state: str | None = None
        self.node: str | None = None
        self.misses = 0
        self.running_reported = False
        self.cancelled = False
        self.cancel_pending = False
        self.last_log = 0.0
        self.cpu: tuple[float, float] | None = None  # (cpu seconds, monotonic) last sample

    @property
    def row_key(self) -> tuple[str, int | None]:
        """How squeue lists it: by job name, and index for an array's element."""
        return (self.name, self.index)

    def handle(self) -> dict[str, Any]:
        handle: dict[str, Any] = {
            "name": self.name,
            "job_id": self.job_id,
            "dir": self.paths.dir,
            "volumes": [[t.local, t.remote, t.is_dir] for t in self.transfers],
            "files": self.record_files,
        }
        if self.index is not None:  # an element: array job id + index (job_id: "ID_INDEX")
            handle["array"] = self.name
            handle["index"] = self.index
        return handle


def _transfers_of(handle: Mapping[str, Any]) -> list[staging.Transfer]:
    found = []
    for item in handle.get("volumes") or []:
        if isinstance(item, list) and len(item) == 3:
            found.append(staging.Transfer(str(item[0]), str(item[1]), bool(item[2])))
    return found


def _text(data: bytes | None) -> str | None:
    return data.decode(errors="replace") if data is not None else None


def _ended_at(outcome: Outcome) -> float:
    """The remote clock when the attempt's command ended (its last listing), if known."""
    files: RemoteFiles | None = outcome.files
    if files is None or files.after_time is None:
        return math.inf
    return files.after_time


def transport_for(s: HpcSettings) -> Transport:
    """The transport the settings ask for (``{NAME}_TRANSPORT``)."""
    if s.transport == "local":
        return LocalTransport(command_timeout=s.command_timeout, max_sessions=s.max_sessions)
    return ssh.link_for(s)


_FIX_SETTING = "fix the setting and start again"


def _tail(text: str) -> str:
    """The last line of a command's message that says something (SLURM's clients end a
    refused option with a `Try "sbatch --help"` hint after the line that says what)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    said = [line for line in lines if not (line.startswith("Try ") and "--help" in line)]
    return (said or lines or ["(no message)"])[-1]


class HpcRuntime(Runtime):
    kind = "hpc"
    files_stay_remote = True
    submits_batches = True  # a fan-out becomes job arrays (submit_many)
    starts_when_reported = True  # jobs wait in SLURM's queue: a timeout counts from their start
    default_max_parallel = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._config_error: str | None = None
        try:
            self._s: HpcSettings | None = read_settings(self.config)
        except SettingsError as exc:
            self._s, self._config_error = None, str(exc)
        self._transport: Transport | None = None
        self._jobs: dict[str, _Job] = {}
        self._monitor_task: asyncio.Task[None] | None = None
        self._prepared = -1  # connection number on which MOUNT_PATH was created
        self._next_submit = 0.0
        self._gate = asyncio.Lock()
        self._volume_locks: dict[str, asyncio.Lock] = {}
        self._nodes: tuple[float, list[NodeInfo]] | None = None
        self._last_metrics: tuple[float, dict[str, Metrics]] = (0.0, {})
        self._accounting: str | None = None  # resolved mode: sacct, jobcomp or none
        # Cancels asked for in one wake-up, not sent yet, and the task that sends them.
        self._cancels: tuple[dict[str, _Job], asyncio.Task[None]] | None = None
        # squeue's rows of arrays whose elements are being adopted: (when, rows by index).
        self._adopt_rows: dict[str, tuple[float, dict[int | None, slurm.QueueRow]]] = {}
        self._scopes: dict[Path, str] = {}
        self._misconfigured: HpcMisconfigured | None = None
        self.status_queries = 0
        """squeue calls made by the monitor (one per poll with live jobs)."""
        self.submissions = 0
        """Attempts given to SLURM (an array's elements each count)."""
        self.sbatch_calls = 0
        """``sbatch`` commands that created jobs (an array is one)."""
        self.lookups = 0
        """``squeue --name`` calls (adoption, ambiguous submissions)."""
        self.scancel_calls = 0
        """``scancel`` commands sent (one names every job cancelled in one wake-up)."""

    # ------------------------------------------------------------------ plumbing

    @property
    def max_parallel(self) -> int:
        """Jobs this engine keeps in the cluster's queue at once: ``{NAME}_MAX_PARALLEL``,
        else ``{NAME}_MAX_QUEUED`` (default 100)."""
        if self.config.get("MAX_PARALLEL"):
            return super().max_parallel
        if self._s is None:
            return 1
        if self._s.arrays:  # a fan-out of ARRAY_MAX is one array, MAX_QUEUED of it at once
            return max(self._s.max_queued, self._s.array_max)
        return self._s.max_queued

    @property
    def connections_opened(self) -> int:
        return self._transport.connections_opened if self._transport is not None else 0

    def _settings(self) -> HpcSettings:
        if self._s is None:  # the settings' error, with its fix (a SubmitError: not transient)
            raise HpcMisconfigured(self._config_error or "invalid settings", _FIX_SETTING)
        return self._s

    @property
    def misconfigured(self) -> HpcMisconfigured | None:
        """The setup problem the last health check or submission found, when it is one that
        does not heal while the engine runs (bad settings, no accepted credential, refused
        host key, unknown alias, no sbatch on the PATH, unknown QUEUE); None otherwise. Work
        held for this runtime will not start until someone fixes it."""
        if self._config_error:
            return HpcMisconfigured(self._config_error, _FIX_SETTING)
        return self._misconfigured

    def _require_transport(self) -> Transport:
        if self._transport is None:
            if self._config_error:
                raise HpcMisconfigured(self._config_error)
            raise RuntimeUnavailable(f"runtime {self.name} is not started")
        return self._transport

    def _where(self) -> str:
        return self._transport.where if self._transport is not None else self.name

    async def _ready_transport(self) -> Transport:
        """The open transport, with MOUNT_PATH created once per connection (a file operation,
        not a command: a remote shell's start-up can cost more than the command)."""
        transport = self._require_transport()
        await transport.open()
        if self._prepared != transport.connections_opened:
            await transport.makedirs(self._settings().mount_path)
            self._prepared = transport.connections_opened
        return transport

    async def _run(self, argv: Sequence[str], timeout: float | None = None) -> Completed:
        transport = await self._ready_transport()
        return await transport.run(argv, timeout=timeout)

    async def _user(self) -> str:
        """The cluster account jobs run as: ``USER``, else the one the ssh config logs in as."""
        s = self._settings()
        if s.user is not None:
            return s.user
        transport = await self._ready_transport()
        return transport.user or "root"

    def _not_found(self, program: str) -> HpcMisconfigured:
        return HpcMisconfigured(
            f"{program} not found on the PATH of {self._where()}",
            "install SLURM's client commands there, or make a non-interactive login find them "
            "(e.g. `module load slurm` or a PATH line in ~/.bashrc before its interactive "
            "check); `ssh HOST which sbatch` must print its path",
        )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        s = self._s
        if s is None or self._transport is not None:
            return
        self._transport = transport_for(s)
        self._monitor_task = asyncio.create_task(self._monitor(), name=f"akoflow-{self.name}-poll")

    async def stop(self) -> None:
        """Jobs keep running in SLURM; a restarted engine adopts them by name."""
        task, self._monitor_task = self._monitor_task, None
        if task is not None:
            # A lost cancel made this stop wait for ever once (CI): see akoflow.tasks.
            await cancel_and_wait([task])
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: the poll loop logs its own failures
        if self._cancels is not None:  # cancels asked for just now: sent before the close
            with contextlib.suppress(Exception):
                await asyncio.shield(self._cancels[1])
        self._adopt_rows.clear()
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.close()
        self._jobs.clear()

    # ------------------------------------------------------------------ health, nodes

    async def health(self) -> Health:
        if self._s is None:
            return Health(False, self._config_error, misconfigured=True)
        try:
            return await self._health(self._s)
        except HpcMisconfigured as exc:
            self._misconfigured = exc
            return Health(False, str(exc), misconfigured=True)

    async def _health(self, s: HpcSettings) -> Health:
        if s.gateway is not None:
            problem = await self._check_gateway(*s.gateway, s.connect_timeout)
            if problem:
                return Health(False, problem)
        if self._transport is not None:
            try:
                await self._ready_transport()
                missing = await self._transport.missing_programs(SLURM_PROGRAMS)
            except RuntimeUnavailable as exc:
                return Health(False, str(exc))
            if missing:
                raise self._not_found(", ".join(missing))
        try:
            nodes = await self._sinfo()
        except RuntimeUnavailable as exc:
            return Health(False, str(exc))
        where = f"partition {s.queue}" if s.queue else "the cluster"
        if not nodes:
            if s.queue and not await self._partition_exists(s.queue):
                raise HpcMisconfigured(
                    f"partition {s.queue} does not exist on {self._where()} (sinfo)",
                    f"set {s.variable_prefix}QUEUE to one of the partitions `sinfo -s` lists",
                )
            return Health(False, f"{where} has no nodes (sinfo)")
        self._misconfigured = None
        if not any(n.ready for n in nodes):
            return Health(False, f"no node of {where} is up (sinfo)")
        return Health(True)

    @staticmethod
    async def _check_gateway(host: str, port: int, timeout: float) -> str | None:
        """The seed's VPN check as a real one: can we open a TCP connection to GATEWAY?"""
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError) as exc:
            why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            return f"gateway {host}:{port} is not reachable: {why}"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return None

    async def _sinfo(self) -> list[NodeInfo]:
        s = self._settings()
        res = await self._run(slurm.sinfo_argv(s.queue))
        if res.exit_status == 127:
            raise self._not_found("sinfo")
        if res.exit_status != 0:
            raise RuntimeUnavailable(
                f"sinfo -p {s.queue or '(default)'} failed on {self._where()}: {_tail(res.stderr)}"
            )
        nodes = slurm.parse_sinfo_nodes(res.stdout)
        self._nodes = (time.monotonic(), nodes)
        return nodes

    async def _partition_exists(self, queue: str) -> bool:
        res = await self._run(["sinfo", "-h", "-o", "%R"])
        if res.exit_status != 0:
            return True  # cannot tell: not a verdict
        return queue in res.stdout.split()

    async def nodes(self) -> Sequence[NodeInfo]:
        cached = self._nodes
        if cached is not None and time.monotonic() - cached[0] < NODES_CACHE_SECONDS:
            return cached[1]  # read by the health check just now
        return await self._sinfo()

    # ------------------------------------------------------------------ submit

    def _scope(self, job: JobSpec) -> str:
        scope = job.scope or self._scopes.get(job.attempt_dir)
        if not scope:
            scope = self._scopes[job.attempt_dir] = scope_of(job.attempt_dir)
        return scope

    def _paths(self, job: JobSpec) -> tuple[str, sbatch.AttemptPaths]:
        s = self._settings()
        scope = self._scope(job)
        return sbatch.job_name(scope, job.key), sbatch.AttemptPaths.of(s.mount_path, scope, job.key)

    def _transfers(self, job: JobSpec) -> list[staging.Transfer]:
        s = self._settings()
        return [
            staging.resolve(v.local, v.remote, str(job.data_dir), s.mount_path) for v in job.volumes
        ]

    def request(self, job: JobSpec) -> sbatch.JobRequest:
        """The job script's inputs for ``job`` (pure given the settings)."""
        s = self._settings()
        name, paths = self._paths(job)
        act = job.activity
        env = {**job.env, **act.env}
        workdir = self._workdir(job)
        inner = act.mount_path or s.mount_path  # MOUNT_PATH as the command sees it
        here = inner + workdir[len(s.mount_path) :]  # its working dir, seen the same way
        env["AKOFLOW_DATA_DIR"] = here
        env["ACTIVITY_MOUNT_PATH"] = here
        command: list[str] = ["bash", paths.script]
        if act.image and s.singularity:
            script = inner + paths.script[len(s.mount_path) :]
            ex = exec_command(
                s.singularity,
                act.image,
                script,
                binds=[(s.mount_path, inner)],
                pwd=here,
                shell=CONTAINER_SHELL,
                env=env,
            )
            command, env = ex.argv, ex.env
        return sbatch.JobRequest(
            name=name,
            paths=paths,
            workdir=workdir,
            sentinel=sbatch.sentinel_path(s.mount_path, job.workflow_id, job.activity_id),
            command=command,
            env=env,
            partition=s.queue,
            account=s.group,
            comment=f"akoflow:{s.project}" if s.project else None,
            time=sbatch.time_limit(s.time, act.timeout_seconds),
            cpus=sbatch.cpu_request(act.cpu_cores),
            mem=sbatch.memory_request(s.mem, act.memory_bytes),
            ntasks=s.ntasks,
            nodes=s.nodes,
            gpus=s.gpus,
            cpus_per_gpu=s.cpus_per_gpu,
            nodelist=job.node if job.node and _NODE_NAME.match(job.node) else None,
            record_files=job.record_files,
        )

    async def submit(self, job: JobSpec) -> dict[str, Any]:
        s = self._settings()
        tracked = self._jobs.get(job.key)
        if tracked is not None:
            return tracked.handle()
        name, paths = self._paths(job)
        staged = self._transfers(job)
        transfers = staged if job.volumes_out else []  # staged back after it (the handle's)
        try:
            req = self.request(job)
            script = sbatch.render(req, s.template)
        except ValueError as exc:
            raise SubmitError(str(exc)) from None
        transport = await self._ready_transport()
        if s.run_dirs:
            await transport.makedirs(self._workdir(job))
        for transfer in staged if job.volumes_in else ():
            await self._stage(transfer, upload=True)
        await transport.write_files(
            paths.dir, {"script.sh": job.activity.run.encode(), "job.sbatch": script.encode()}
        )
        if not await transport.mkdir_exclusive(paths.submitted):
            return await self._after_ambiguous(job, name, paths, transfers)  # sent before
        await self._pace(s.submit_rate)
        try:
            res = await transport.run(sbatch.sbatch_argv(paths, name))
        except TransportAmbiguous:
            return await self._after_ambiguous(job, name, paths, transfers)
        self.submissions += 1
        self.sbatch_calls += 1
        if res.exit_status == 127:
            raise self._not_found("sbatch")
        if res.exit_status != 0:
            message = _tail(res.stderr)
            if any(t in res.stderr for t in _CONTROLLER_TROUBLE):
                # slurmctld is away: squeue would not answer either; the claim decides.
                return await self._after_ambiguous(job, name, paths, transfers, look_first=False)
            if "Invalid partition name" in res.stderr:
                raise HpcMisconfigured(
                    f"sbatch refused {name}: {message}",
                    f"set {s.variable_prefix}QUEUE to one of the partitions `sinfo -s` lists",
                )
            raise SubmitError(f"sbatch refused {name}: {message}")
        job_id = res.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise SubmitError(f"sbatch printed no job id for {name}: {res.stdout.strip()!r}")
        tracked = _Job(
            job.key, name, paths, job_id, transfers, job.record_files, self._workdir(job)
        )
        self._jobs[job.key] = tracked
        return tracked.handle()

    # ------------------------------------------------------------------ job arrays

    async def submit_many(self, jobs: Sequence[JobSpec]) -> list[dict[str, Any] | Exception]:
        """Attempts whose sbatch options are the same (resources, partition, template) go as
        one ``sbatch --array`` (:mod:`.sbatch`), ``ARRAY_MAX`` elements at most, at most
        ``MAX_QUEUED`` of them running at once (``%N``); a group of one is a plain job.
        With ``ARRAYS=off``, every attempt is a plain job (submitted side by side)."""
        s = self._s
        if s is None or not s.arrays or len(jobs) < 2:
            return await self._submit_each(jobs)
        results: dict[str, dict[str, Any] | Exception] = {}
        groups: dict[tuple[str, ...], list[tuple[JobSpec, sbatch.JobRequest]]] = {}
        for job in jobs:
            tracked = self._jobs.get(job.key)
            if tracked is not None:
                results[job.key] = tracked.handle()
                continue
            try:
                req = self.request(job)
                sbatch.render(req, s.template)  # a template this attempt cannot use: its error
            except ValueError as exc:
                results[job.key] = SubmitError(str(exc))
                continue
            groups.setdefault(sbatch.options_key(req), []).append((job, req))
        singles: list[JobSpec] = []
        for members in groups.values():
            for start in range(0, len(members), s.array_max):
                chunk = members[start : start + s.array_max]
                if len(chunk) == 1:
                    singles.append(chunk[0][0])
                    continue
                try:
                    await self._submit_array(chunk, results)
                except Exception as exc:  # what the array's sbatch said is every element's
                    for job, _ in chunk:
                        results.setdefault(job.key, exc)
        for job, result in zip(singles, await self._submit_each(singles), strict=True):
            results[job.key] = result
        return [results[job.key] for job in jobs]

    async def _submit_each(self, jobs: Sequence[JobSpec]) -> list[dict[str, Any] | Exception]:
        """Plain jobs, side by side (their sbatch calls paced by ``SUBMIT_RATE``)."""
        answers = await asyncio.gather(*(self.submit(job) for job in jobs), return_exceptions=True)
        results: list[dict[str, Any] | Exception] = []
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                raise answer  # cancelled
            results.append(answer)
        return results

    async def _submit_array(
        self,
        members: Sequence[tuple[JobSpec, sbatch.JobRequest]],
        results: dict[str, dict[str, Any] | Exception],
    ) -> None:
        """One ``sbatch --array`` for ``members`` (same options); each one's handle or error
        goes to ``results``. Every element's files and ``submitted`` claim first, as a plain
        job's; one sent before is looked for, not sent again."""
        s = self._settings()
        transport = await self._ready_transport()
        first = members[0][0]
        scope = self._scope(first)
        array = sbatch.array_name(scope, first.key)
        apaths = sbatch.ArrayPaths.of(s.mount_path, scope, first.key)
        if s.run_dirs:
            for workdir in dict.fromkeys(self._workdir(job) for job, _ in members):
                await transport.makedirs(workdir)
        ins = [t for job, _ in members if job.volumes_in for t in self._transfers(job)]
        for transfer in dict.fromkeys(ins):  # a volume every element reads: sent once
            await self._stage(transfer, upload=True)
        gate = asyncio.Semaphore(FILE_OPS)

        async def prepare(job: JobSpec, req: sbatch.JobRequest) -> bool:
            files = {"script.sh": job.activity.run.encode(),
                     "element.sh": sbatch.element_body(req).encode()}  # fmt: skip
            async with gate:
                await transport.write_files(req.paths.dir, files)
                return await transport.mkdir_exclusive(req.paths.submitted)

        claimed = await asyncio.gather(*(prepare(job, req) for job, req in members))
        fresh = [m for m, ok in zip(members, claimed, strict=True) if ok]
        for (job, req), ok in zip(members, claimed, strict=True):
            if not ok:  # sent before (another engine's submit): found, never sent twice
                try:
                    results[job.key] = await self._sent_before(job, req.paths)
                except Exception as exc:
                    results[job.key] = exc
        if not fresh:
            return

        async def refer(i: int, req: sbatch.JobRequest) -> None:
            async with gate:  # before the sbatch: a restarted engine finds the element by it
                await transport.write_files(
                    req.paths.dir, {"array": sbatch.array_ref_text(array, i)}
                )

        await asyncio.gather(*(refer(i, req) for i, (_, req) in enumerate(fresh)))
        shared = dataclasses.replace(fresh[0][1], name=array, output=apaths.output)
        script = sbatch.render_array(shared, [req.paths.dir for _, req in fresh], s.template)
        await transport.write_files(apaths.dir, {"job.sbatch": script.encode()})
        await self._pace(s.submit_rate)
        argv = sbatch.array_argv(apaths, array, len(fresh), s.max_queued)
        try:
            res = await transport.run(argv)
        except TransportAmbiguous:
            await self._array_ambiguous(fresh, array, results)
            return
        self.sbatch_calls += 1
        if res.exit_status == 127:
            raise self._not_found("sbatch")
        if res.exit_status != 0:
            message = _tail(res.stderr)
            if any(t in res.stderr for t in _CONTROLLER_TROUBLE):
                await self._array_ambiguous(fresh, array, results, look_first=False)
                return
            if "Invalid partition name" in res.stderr:
                raise HpcMisconfigured(
                    f"sbatch refused {array}: {message}",
                    f"set {s.variable_prefix}QUEUE to one of the partitions `sinfo -s` lists",
                )
            if slurm.array_refused(res.stderr):
                raise HpcMisconfigured(
                    f"sbatch refused the job array {array} of {len(fresh)}: {message}",
                    f"set {s.variable_prefix}ARRAY_MAX below the cluster's MaxArraySize "
                    f"(`scontrol show config`), or {s.variable_prefix}ARRAYS=off",
                )
            raise SubmitError(f"sbatch refused {array}: {message}")
        array_id = res.stdout.strip().split(";")[0]
        if not array_id.isdigit():
            raise SubmitError(f"sbatch printed no job id for {array}: {res.stdout.strip()!r}")
        self.submissions += len(fresh)
        for i, (job, req) in enumerate(fresh):
            results[job.key] = self._track_element(job, req, array, i, f"{array_id}_{i}")

    def _track_element(
        self, job: JobSpec, req: sbatch.JobRequest, array: str, index: int, job_id: str | None
    ) -> dict[str, Any]:
        transfers = self._transfers(job) if job.volumes_out else []
        tracked = _Job(job.key, array, req.paths, job_id, transfers, job.record_files,
                       self._workdir(job), index)  # fmt: skip
        self._jobs[job.key] = tracked
        return tracked.handle()

    async def _sent_before(self, job: JobSpec, paths: sbatch.AttemptPaths) -> dict[str, Any]:
        """An attempt whose ``submitted`` claim was taken already: as a plain job, or as the
        element its ``array`` file names."""
        name, _ = self._paths(job)
        element = sbatch.parse_array_ref(await self._require_transport().read_from(
            paths.array_ref, 0, 4096))  # fmt: skip
        index = None
        if element is not None:
            name, index = element
        transfers = self._transfers(job) if job.volumes_out else []
        return await self._after_ambiguous(job, name, paths, transfers, index=index)

    async def _array_ambiguous(
        self,
        fresh: Sequence[tuple[JobSpec, sbatch.JobRequest]],
        array: str,
        results: dict[str, dict[str, Any] | Exception],
        *,
        look_first: bool = True,
    ) -> None:
        """The array's sbatch may or may not have created it: found by name, its elements
        are tracked; not found, each element's ``started`` claim is taken (one that runs
        later exits at once): those are reported never sent, those whose claim was taken
        (they started: the array exists) are tracked."""
        rows: dict[int | None, slurm.QueueRow] = {}
        claim = True
        try:
            if look_first:
                rows = await self._named_rows(array)
        except (TransportUnavailable, TransportAmbiguous):
            claim = False  # the login node is away: the monitor finds them by name later
        except RuntimeUnavailable:
            pass  # SLURM cannot tell now: the claims decide
        if rows:
            claim = False  # the array exists: every element is SLURM's
        for i, (job, req) in enumerate(fresh):
            if claim:
                try:
                    if await self._claim(req.paths):
                        results[job.key] = _NeverRan(
                            f"the submission of {array} did not reach SLURM (or its element "
                            f"{i} can no longer run); it will be sent again as a new attempt"
                        )
                        continue
                except RuntimeUnavailable:
                    claim = False  # away now: the rest are looked for by the monitor
            row = rows.get(i)
            results[job.key] = self._track_element(
                job, req, array, i, row.job_id if row is not None else None
            )

    async def _pace(self, rate: float) -> None:
        """At most ``rate`` sbatch calls per second from this runtime."""
        async with self._gate:
            now = time.monotonic()
            wait = self._next_submit - now
            if wait > 0:
                await asyncio.sleep(wait)
            self._next_submit = max(now, self._next_submit) + 1.0 / rate

    async def _after_ambiguous(
        self,
        job: JobSpec,
        name: str,
        paths: sbatch.AttemptPaths,
        transfers: list[staging.Transfer],
        *,
        look_first: bool = True,
        index: int | None = None,
    ) -> dict[str, Any]:
        """sbatch may or may not have created the job (the element ``index`` of the array
        ``name``): find it by name, or make sure that it can never run before reporting the
        submission as not done."""
        row: slurm.QueueRow | None = None
        try:
            try:
                if look_first:
                    row = await self._lookup(name, index)
            except (TransportUnavailable, TransportAmbiguous):
                raise
            except RuntimeUnavailable:
                row = None  # SLURM cannot tell now; the claim below decides
            if row is None:
                if await self._claim(paths):
                    raise _NeverRan(
                        f"the submission of {name} did not reach SLURM (or its job can no "
                        "longer run); it will be sent again as a new attempt"
                    )
                with contextlib.suppress(RuntimeUnavailable):  # it started: visible by now
                    row = await self._lookup(name, index)
        except _NeverRan:
            raise
        except RuntimeUnavailable:
            row = None  # the login node is away: the monitor finds the job by name later
        job_id = row.job_id if row else None
        tracked = _Job(
            job.key, name, paths, job_id, transfers, job.record_files, self._workdir(job), index
        )
        self._jobs[job.key] = tracked
        return tracked.handle()

    async def _lookup(self, name: str, index: int | None = None) -> slurm.QueueRow | None:
        """The job named ``name`` (the element ``index`` of the array of that name)."""
        return (await self._named_rows(name)).get(index)

    async def _named_rows(self, name: str) -> dict[int | None, slurm.QueueRow]:
        """squeue's rows of the job (or every element of the array) named ``name``, by
        index; a live row wins over an ended one of the same index."""
        self.lookups += 1
        res = await self._run(slurm.squeue_by_name_argv(await self._user(), name))
        if res.exit_status != 0:
            raise RuntimeUnavailable(f"squeue failed on {self._where()}: {_tail(res.stderr)}")
        found: dict[int | None, slurm.QueueRow] = {}
        for row in slurm.parse_squeue(res.stdout):
            if row.name == name and (row.index not in found or row.live):
                found[row.index] = row
        return found

    async def _claim(self, paths: sbatch.AttemptPaths) -> bool:
        """Take the attempt's ``started`` claim: True means its script never ran and never
        will (a job that starts later finds the claim taken and exits)."""
        transport = await self._ready_transport()
        await transport.makedirs(paths.dir)
        return await transport.mkdir_exclusive(paths.started)

    async def _stage(
        self, transfer: staging.Transfer, *, upload: bool, key: str | None = None
    ) -> None:
        route = await (await self._ready_transport()).rsync_route()
        lock = self._volume_locks.setdefault(transfer.remote, asyncio.Lock())
        async with lock:
            if upload:
                await (await self._ready_transport()).makedirs(transfer.remote)
                if not os.path.exists(transfer.local):
                    return  # nothing to send yet (an output-only volume)
            else:
                os.makedirs(
                    transfer.local if transfer.is_dir else os.path.dirname(transfer.local),
                    exist_ok=True,
                )
            if staging.same_place(route, transfer):
                return  # the engine's side is the cluster's side (TRANSPORT=local)
            # Staging back writes the attempt's files into the engine's data dir: its rsync
            # is the attempt's process there (observed provenance).
            announce = None if upload or key is None else self._announcer(key)
            await staging.run_rsync(staging.rsync_argv(route, transfer, upload=upload), announce)

    def _announcer(self, key: str) -> Callable[[int], None]:
        def announce(pid: int) -> None:
            self.announce_process(key, pid=pid)

        return announce

    # ------------------------------------------------------------------ monitor

    async def _monitor(self) -> None:
        s = self._settings()
        while True:
            await asyncio.sleep(s.poll_interval)
            if not self._jobs:
                continue
            try:
                await self._poll()
            except (RuntimeUnavailable, HpcMisconfigured) as exc:
                # A setup broken mid-run (a changed host key, a revoked key) is told once, by
                # health() as NOT_READY with its reason: not a traceback at every poll.
                log.debug("status of %s unknown this cycle: %s", self.name, exc)
            except Exception:
                log.exception("monitoring %s failed this cycle", self.name)

    async def _squeue(self) -> dict[tuple[str, int | None], slurm.QueueRow] | None:
        res = await self._run(slurm.squeue_argv(await self._user()))
        if res.exit_status != 0:
            log.debug("squeue failed on %s: %s", self._where(), _tail(res.stderr))
            return None
        rows: dict[tuple[str, int | None], slurm.QueueRow] = {}
        for row in slurm.parse_squeue(res.stdout):
            key = (row.name, row.index)
            if row.name.startswith("akf-") and (key not in rows or row.live):
                rows[key] = row
        return rows

    async def _poll(self) -> None:
        rows = await self._squeue()
        self.status_queries += 1
        if rows is None:
            return  # unknown: nothing changes
        ended: list[tuple[_Job, slurm.QueueRow]] = []
        missing: list[_Job] = []
        unsent: list[_Job] = []  # cancels the cluster could not take before
        for job in list(self._jobs.values()):
            row = rows.get(job.row_key)
            if row is None:
                job.misses += 1
                if job.misses >= MISSES_BEFORE_LOST:
                    missing.append(job)
                continue
            job.misses = 0
            job.job_id = row.job_id
            job.state, job.node = row.state, row.node or job.node
            if row.state != "PENDING":  # pending elements show their array's id
                job.own_id = row.own_id or job.own_id
            if job.cancel_pending:
                unsent.append(job)
            if not row.live:
                ended.append((job, row))
            elif row.state == "RUNNING" and not job.running_reported:
                job.running_reported = True
                self.events.job_running(job.key, row.node)
        if unsent:
            await self._send_cancels(unsent)
        exits: _ExitTexts = {}
        outcomes = await self._final_outcomes([(job, row.state) for job, row in ended], exits)
        finished = [(job, out) for (job, _), out in zip(ended, outcomes, strict=True)]
        if missing:
            finished += await self._resolve_missing(missing, exits)
        await self._complete(finished)

    async def _complete(self, finished: Sequence[tuple[_Job, Outcome]]) -> None:
        """Report ends: listings read side by side (a few at a time: they can be large), then
        the ends in the order the jobs ended on the cluster, so that the engine knows who
        wrote a file before it looks at a later attempt that found it there."""
        gate = asyncio.Semaphore(LISTING_READS)

        async def with_files(job: _Job, outcome: Outcome) -> Outcome:
            async with gate:
                return await self._with_files(job, outcome)

        results = await asyncio.gather(
            *(with_files(job, outcome) for job, outcome in finished), return_exceptions=True
        )
        ready: list[tuple[_Job, Outcome]] = []
        for (job, _), result in zip(finished, results, strict=True):
            if isinstance(result, RuntimeUnavailable):
                continue  # the cluster is away: read again next poll, the end is not lost
            if isinstance(result, BaseException):
                raise result
            ready.append((job, result))
        ready.sort(key=lambda item: _ended_at(item[1]))
        for job, outcome in ready:
            await self._finish(job, outcome)

    def _workdir(self, job: JobSpec) -> str:
        """Where the run's activities work: MOUNT_PATH (upstream's way: shared by every run
        that uses it), or with {NAME}_RUN_DIRS a directory of the run's own under it."""
        s = self._settings()
        if not s.run_dirs:
            return s.mount_path
        scope = job.scope or scope_of(job.attempt_dir)
        return f"{s.mount_path.rstrip('/')}/runs/{scope}-wf{job.workflow_id}"

    def _location(self, workdir: str | None = None) -> str:
        """Where an attempt's listed files live, as shown to users."""
        return f"{self.name}:{workdir or self._settings().mount_path}"

    def data_mover(self, job: JobSpec) -> HpcMover | None:
        s = self._settings()
        if s.transport == "local" and staging.same_place(
            RsyncRoute(), staging.Transfer(str(job.data_dir), s.mount_path, True)
        ):
            return None  # the engine on the login node, its data dir MOUNT_PATH itself
        tag = f"{job.scope or scope_of(job.attempt_dir)}-wf{job.workflow_id}"  # this run
        workdir = self._workdir(job)
        return HpcMover(self._location(workdir), workdir, self._ready_transport, run_tag=tag)

    async def _with_files(self, job: _Job, outcome: Outcome) -> Outcome:
        """``outcome`` with the attempt's two listings when the job asked for them and made
        both (a job killed or cancelled before its command ended has none: ``files`` stays
        None). Raises :class:`RuntimeUnavailable` only when the cluster could not be asked."""
        if not job.record_files:
            return outcome
        transport = self._require_transport()
        try:
            after = _text(await transport.read_whole(job.paths.files_after))
            if after is None:
                return outcome
            before = _text(await transport.read_whole(job.paths.files_before))
            files = remote_files(self._location(job.workdir), before, after)
        except RuntimeUnavailable:
            raise
        except Exception:  # provenance never holds back or fails an end
            log.exception("reading the file listings of %s failed", job.name)
            return outcome
        return dataclasses.replace(outcome, files=files) if files is not None else outcome

    async def _exit_text(self, paths: sbatch.AttemptPaths, exits: _ExitTexts) -> str | None:
        """The attempt's exit file (None: there is none), read once over the transport for
        all who ask with the same ``exits`` (one adoption, one poll: an ended job's file no
        longer changes)."""
        if paths.exit not in exits:
            data = await self._require_transport().read_from(paths.exit, 0, EXIT_READ)
            exits[paths.exit] = data.decode(errors="replace") if data is not None else None
        return exits[paths.exit]

    async def _read_times(
        self, paths: sbatch.AttemptPaths, exits: _ExitTexts
    ) -> tuple[float | None, float | None]:
        try:
            text = await self._exit_text(paths, exits)
        except Exception as exc:  # only a duration is lost, and the timeout's second look
            log.warning("cannot read when %s ran: %s", paths.exit, exc)
            return None, None
        return slurm.parse_exit_times(text)

    async def _read_exit(self, paths: sbatch.AttemptPaths, exits: _ExitTexts) -> int | None:
        return slurm.parse_exit_file(await self._exit_text(paths, exits))

    async def _final_outcomes(
        self, ended: Sequence[tuple[_Job, str]], exits: _ExitTexts
    ) -> list[Outcome]:
        """Outcomes of jobs squeue shows in a final state: their exit files, and for those
        without one (killed, cancelled, claim lost) SLURM's exit code from one sacct call."""
        codes = await asyncio.gather(*(self._read_exit(job.paths, exits) for job, _ in ended))
        unknown = [job for (job, _), code in zip(ended, codes, strict=True) if code is None]
        acct = await self._accounting_rows(unknown) if unknown else {}
        outcomes = []
        for (job, state), code in zip(ended, codes, strict=True):
            row = acct.get(job.key)
            slurm_code, sig = (row.exit_code, row.signal) if row is not None else (None, None)
            outcome = self._outcome(job, state, code, slurm_code, sig)
            outcomes.append(await self._when_unstopped(job, outcome, exits))
        return outcomes

    async def _when_unstopped(self, job: _Job, outcome: Outcome, exits: _ExitTexts) -> Outcome:
        """A success a stop of ours came too late for (a cancel, or its timeout's) with when
        its command ran, by the node's clock (its exit file, read already): the engine judges
        by that whether it ended within its timeout (without it, one that ended in time, its
        end read after its deadline, was recorded timed out and run again)."""
        if not (job.cancelled and outcome.ended_unstopped):
            return outcome
        began, ended = await self._read_times(job.paths, exits)
        if began is None or ended is None:
            return outcome
        return dataclasses.replace(outcome, started_at=began, ended_at=ended)

    def _outcome(
        self,
        job: _Job,
        state: str,
        code: int | None,
        slurm_code: int | None,
        sig: int | None,
        *,
        by_slurm: bool = True,
    ) -> Outcome:
        """``by_slurm``: ``state`` is SLURM's word (squeue, sacct), not inferred from the
        exit file."""
        claim_lost = code is None and slurm_code == sbatch.CLAIM_LOST_EXIT
        outcome = slurm.outcome_of(state, code, slurm_code=slurm_code, signal=sig,
                                   claim_lost=claim_lost)  # fmt: skip
        if job.cancelled and not outcome.succeeded:
            return Outcome(False, outcome.exit_code, "cancelled")
        if outcome.succeeded and by_slurm:
            # COMPLETED, by SLURM: a scancel that reached the job while it ran would have
            # made it CANCELLED (a script that traps the stop and exits 0 included). Any
            # stop came too late (the job had ended, its end not read yet): the success
            # stands (one recorded cancelled was run again by a retry).
            return dataclasses.replace(outcome, ended_unstopped=True)
        return outcome

    async def _final_outcome(
        self, job: _Job, state: str, exits: _ExitTexts, slurm_code: int | None, sig: int | None
    ) -> Outcome:
        code = await self._read_exit(job.paths, exits)
        outcome = self._outcome(job, state, code, slurm_code, sig)
        return await self._when_unstopped(job, outcome, exits)

    async def _accounting_rows(self, jobs: Sequence[_Job]) -> dict[str, slurm.AcctRow]:
        """Final states of jobs that left the queue, in one sacct call, by attempt key.
        Plain jobs are matched by name; array elements (one name for all) by their own job
        id, recorded in their dir when they started (``sacct -c`` knows no ``ID_INDEX``),
        else by ``ID_INDEX`` (slurmdbd's sacct shows either as ``ID_INDEX``)."""
        s = self._settings()
        ids: list[str] = []
        by_id: dict[str, _Job] = {}
        for j in jobs:
            if not j.job_id:
                continue
            if j.index is None:
                ids.append(j.job_id)
                continue
            own = await self._element_job_id(j)
            ids.append(own or j.job_id)
            by_id[j.job_id] = j
            if own is not None:
                by_id[own] = j
        if not ids or s.accounting == "none":
            return {}
        plain = {j.name: j for j in jobs if j.index is None}

        def matched(rows: list[slurm.AcctRow]) -> dict[str, slurm.AcctRow]:
            found: dict[str, slurm.AcctRow] = {}
            for r in rows:
                job = by_id.get(r.job_id) or plain.get(r.name)
                if job is not None:
                    found[job.key] = r
            return found

        modes = [s.accounting] if s.accounting != "auto" else [self._accounting or "sacct"]
        if s.accounting == "auto" and self._accounting is None:
            modes.append("jobcomp")
        for mode in modes:
            res = await self._run(slurm.sacct_argv(ids, jobcomp=mode == "jobcomp"))
            if res.exit_status == 0 and "accounting storage is disabled" not in res.stderr:
                if s.accounting == "auto":
                    self._accounting = mode
                return matched(slurm.parse_sacct(res.stdout))
        return {}

    async def _element_job_id(self, job: _Job) -> str | None:
        data = await self._require_transport().read_from(job.paths.slurm_job_id, 0, 64)
        text = data.decode(errors="replace").strip() if data is not None else ""
        return text if text.isdigit() else None

    async def _resolve_missing(
        self, jobs: Sequence[_Job], exits: _ExitTexts
    ) -> list[tuple[_Job, Outcome]]:
        acct = await self._accounting_rows(jobs)
        result: list[tuple[_Job, Outcome]] = []
        for job in jobs:
            row = acct.get(job.key)
            if row is not None and row.state not in slurm.LIVE_STATES:
                outcome = await self._final_outcome(
                    job, row.state, exits, row.exit_code, row.signal
                )
                result.append((job, outcome))
                continue
            code = await self._read_exit(job.paths, exits)
            if code is not None:
                state = "COMPLETED" if code == 0 else "FAILED"  # not SLURM's word
                result.append((job, self._outcome(job, state, code, None, None, by_slurm=False)))
            elif job.job_id is None and await self._claim(job.paths):
                result.append((job, Outcome(False, None, "the submission never reached SLURM")))
            elif job.index is not None and await self._claim(job.paths):
                # A pending element cancelled in SLURM leaves its array without a record of
                # its own; its claim taken now, it never ran and never will.
                result.append((job, Outcome(False, None, self._removed_reason(job))))
            else:
                reason = "the job left the SLURM queue without recording an exit code"
                result.append((job, Outcome(False, None, reason)))
        return result

    @staticmethod
    def _removed_reason(job: _Job) -> str:
        if job.cancelled:
            return "cancelled"
        return (
            f"cancelled in SLURM before it started: element {job.index} was removed from its "
            "job array while it waited (scancel); it never ran"
        )

    async def _finish(self, job: _Job, outcome: Outcome) -> None:
        for transfer in job.transfers:
            try:
                await self._stage(transfer, upload=False, key=job.key)
            except RuntimeUnavailable:
                return  # the cluster is away: try again next poll, the end is not lost
            except SubmitError as exc:
                if outcome.succeeded:
                    outcome = Outcome(False, outcome.exit_code, f"staging back failed: {exc}")
        if self._jobs.pop(job.key, None) is not None:
            self.events.job_finished(job.key, outcome)

    # ------------------------------------------------------------------ cancel, adopt

    async def cancel(self, key: str, handle: Mapping[str, Any]) -> None:
        """Cancels asked for in the same wake-up (a run's whole fan-out) go as one scancel,
        an array's elements named as one ``ARRAYID_[0-99]`` (one RPC)."""
        job = self._jobs.get(key)
        if job is None:
            return
        job.cancelled = True
        if self._cancels is None:
            batch: dict[str, _Job] = {}
            task = asyncio.create_task(
                self._cancel_batch(batch), name=f"akoflow-{self.name}-scancel"
            )
            self._cancels = (batch, task)
        batch, task = self._cancels
        batch[key] = job
        await asyncio.shield(task)

    async def _cancel_batch(self, batch: dict[str, _Job]) -> None:
        await asyncio.sleep(0)  # the other cancels of this wake-up join the batch
        self._cancels = None
        await self._send_cancels(list(batch.values()))

    async def _send_cancels(self, jobs: Sequence[_Job]) -> None:
        try:
            await self._scancel(jobs)
        except (RuntimeUnavailable, HpcMisconfigured) as exc:
            for job in jobs:
                job.cancel_pending = True  # sent by the monitor once the cluster answers again
            log.warning("cannot cancel %d job(s) of %s now (%s); will retry", len(jobs),
                        self.name, exc)  # fmt: skip

    async def _scancel(self, jobs: Sequence[_Job]) -> None:
        """One scancel for every job with a known id (plain ids, and each array's elements as
        one ``ARRAYID_[...]``); a plain job without one by its name."""
        self._settings()  # bad settings: SubmitError
        ids: list[str] = []
        by_name: list[_Job] = []
        for job in jobs:
            job.cancel_pending = False
            if job.job_id:
                ids.append(job.job_id)  # an element: ID_INDEX, that element only
            elif job.index is not None:
                job.cancel_pending = True  # by name it would be the whole array: wait for its id
            else:
                by_name.append(job)
        commands = [["scancel", *slurm.scancel_targets(ids)]] if ids else []
        for job in by_name:
            commands.append(["scancel", f"--name={job.name}", f"--user={await self._user()}"])
        for argv in commands:
            self.scancel_calls += 1
            res = await self._run(argv)
            if res.exit_status != 0:
                log.warning("scancel of %d job(s): %s", len(argv) - 1, _tail(res.stderr))

    async def adopt(self, job: JobSpec, handle: Mapping[str, Any]) -> Adopted:
        self._require_transport()
        name, paths = self._paths(job)
        index = None
        element = await self._element_of(paths, handle)
        if element is not None:  # given to an array: found by its name and index
            name, index = element
        transfers = _transfers_of(handle) if "volumes" in handle else self._transfers(job)
        tracked = _Job(job.key, name, paths, None, transfers, job.record_files,
                       self._workdir(job), index)  # fmt: skip
        exits: _ExitTexts = {}  # its exit file, read once: its code, then when it ran

        async def finished(outcome: Outcome, node: str | None = None) -> Adopted:
            outcome = await self._with_files(tracked, outcome)
            # When its command ran, by the node's clock, as the job recorded it: an end no
            # engine saw is judged by its timeout, and recorded as when it was.
            began, ended = await self._read_times(paths, exits)
            outcome = dataclasses.replace(outcome, ended_at=ended)
            return Adopted("finished", tracked.handle(), outcome, node, started_at=began)

        row = await (self._lookup(name) if index is None else self._element_row(name, index))
        if row is not None:
            tracked.job_id, tracked.state, tracked.node = row.job_id, row.state, row.node
            tracked.own_id = row.own_id if row.state != "PENDING" else None
            if row.live:
                self._jobs[job.key] = tracked
                return Adopted("running", tracked.handle(), node=row.node)
            (outcome,) = await self._final_outcomes([(tracked, row.state)], exits)
            return await finished(outcome, row.node)
        tracked.job_id = str(handle.get("job_id") or "") or None
        if tracked.job_id is None and index is None:  # (an array's name is no element's)
            tracked.job_id = await self._job_id_from_accounting(name)
        resolved = await self._resolve_missing([tracked], exits) if tracked.job_id else []
        if resolved:
            return await finished(resolved[0][1])
        code = await self._read_exit(paths, exits)
        if code is not None:
            state = "COMPLETED" if code == 0 else "FAILED"  # not SLURM's word
            return await finished(self._outcome(tracked, state, code, None, None, by_slurm=False))
        if await self._claim(paths):
            return Adopted("never_started")
        lost = "the job ran but left neither a SLURM record nor an exit code"
        return await finished(Outcome(False, None, lost))

    async def _element_row(self, array: str, index: int) -> slurm.QueueRow | None:
        """The element's squeue row, from one squeue for the whole array while its elements
        are adopted one by one (reused for ``ADOPT_ROWS_SECONDS``): an array of N costs one
        call, not N. A stale row only delays what the monitor sees next; an element missing
        from it is proven never to run by its ``started`` claim, as without the cache."""
        now = time.monotonic()
        cached = self._adopt_rows.get(array)
        if cached is None or now - cached[0] > ADOPT_ROWS_SECONDS:
            for old in [
                k for k, (at, _) in self._adopt_rows.items() if now - at > ADOPT_ROWS_SECONDS
            ]:
                del self._adopt_rows[old]
            cached = self._adopt_rows[array] = (now, await self._named_rows(array))
        return cached[1].get(index)

    async def _element_of(
        self, paths: sbatch.AttemptPaths, handle: Mapping[str, Any]
    ) -> tuple[str, int] | None:
        """(array name, index) when the attempt was given to a job array: from its handle,
        else (an engine that died before storing it) from the reference in its dir."""
        if "name" in handle:
            array, index = handle.get("array"), handle.get("index")
            if isinstance(array, str) and isinstance(index, int) and not isinstance(index, bool):
                return array, index
            return None  # a plain job's handle
        data = await self._require_transport().read_from(paths.array_ref, 0, 4096)
        return sbatch.parse_array_ref(data)

    async def _job_id_from_accounting(self, name: str) -> str | None:
        s = self._settings()
        modes = {"auto": ["sacct", "jobcomp"], "none": []}.get(s.accounting, [s.accounting])
        for mode in modes:
            res = await self._run(slurm.sacct_argv(name=name, jobcomp=mode == "jobcomp"))
            if res.exit_status == 0:
                rows = [r for r in slurm.parse_sacct(res.stdout) if r.name == name]
                if rows:
                    return rows[-1].job_id
        return None

    # ------------------------------------------------------------------ observe

    async def logs(
        self, key: str, handle: Mapping[str, Any], offsets: Mapping[str, int]
    ) -> dict[str, bytes]:
        directory = str(handle.get("dir") or "")
        if not directory:
            return {}
        job = self._jobs.get(key)
        if job is not None:  # still live: pending jobs have no output; poll at most per cycle
            if job.state == "PENDING":
                return {}
            now = time.monotonic()
            if now - job.last_log < self._settings().poll_interval:
                return {}
            job.last_log = now
        transport = self._require_transport()
        out: dict[str, bytes] = {}
        for stream in STREAMS:
            data = await transport.read_from(
                f"{directory}/{stream}", offsets.get(stream, 0), LOG_READ_MAX
            )
            if data:
                out[stream] = data
        return out

    async def metrics(self, jobs: Mapping[str, Mapping[str, Any]]) -> dict[str, Metrics]:
        """CPU (% of one core, between two samples) and memory of running jobs, from one
        ``sstat`` of their batch steps, at most every ``METRICS_INTERVAL`` seconds."""
        s = self._settings()
        if s.metrics_interval <= 0:
            return {}
        now = time.monotonic()
        if now - self._last_metrics[0] < s.metrics_interval:
            return {}
        running: dict[str, _Job] = {}
        for key in jobs:
            j = self._jobs.get(key)
            if j is None or j.state != "RUNNING":
                continue
            step = j.own_id if j.index is not None else j.job_id  # sstat takes no ID_INDEX
            if step:
                running[step] = j
        if not running:
            return {}
        self._last_metrics = (now, {})
        res = await self._run(slurm.sstat_argv(running))
        if res.exit_status != 0 and not res.stdout:
            return {}
        result: dict[str, Metrics] = {}
        for job_id, (cpu_s, mem) in slurm.parse_sstat(res.stdout).items():
            job = running.get(job_id)
            if job is None:
                continue
            cpu_pct: float | None = None
            if cpu_s is not None:
                if job.cpu is not None and now > job.cpu[1]:
                    cpu_pct = max(0.0, (cpu_s - job.cpu[0]) / (now - job.cpu[1]) * 100)
                job.cpu = (cpu_s, now)
            result[job.key] = Metrics(cpu_pct, mem)
        return result

    async def forget_run(self, run: RunTrace) -> Forgotten:  # a deleted run's dirs: .forget
        from akoflow.runtimes.hpc.forget import forget_remote

        return await forget_remote(self._settings().mount_path, run, self._ready_transport)


__all__ = ["HpcRuntime", "scope_of"]
