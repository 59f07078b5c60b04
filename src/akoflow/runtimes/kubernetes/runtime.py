"""Kubernetes runtime: one Job per attempt, followed by one watch per namespace.

- Client: lightkube (async). Per runtime: one API client, one watch of Jobs and one of Pods
  per namespace (label ``app.kubernetes.io/managed-by=akoflow``), resumed by resourceVersion
  and re-listed on 410. Nothing is polled per job.
- Per attempt the API sees: the Job create and one log stream (``follow``) into the attempt's
  file ``<prefix>.out/stdout``. The Jobs the cleanup policy removes go together, in one
  request (a label selector: the run's, or their names) when the run ends or once
  :data:`DELETE_BATCH` of them are waiting. So the requests per
  activity do not grow with its run time; the stored log is complete (the stream ends when the
  container ends) before the end is reported, hence before any deletion.
- Remote provenance: with ``record_files`` the pod lists its volume before and after the
  script into its own log (:mod:`.listing`); the log is filtered as it is stored (the file
  holds the script's output only) and the listings become :attr:`Outcome.files`, under
  ``<runtime>:pvc/<claim>``. No request is added.
- Data plane (:meth:`KubernetesRuntime.data_mover`): files reach the run's PVC and come back
  through ``pods/exec`` in a short-lived transfer pod that mounts it (:mod:`.transfer`,
  :mod:`.mover`): one request per copy, plus the pod's create and delete per run.
- Crash safety: Job names are deterministic (:func:`manifests.job_name`) and create is atomic
  by name: a 409 means "already there" and the Job is taken over, never created twice. After
  an engine restart :meth:`adopt` finds the Job by name and its pod by label.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.codecs import from_dict
from lightkube.config.client_adapter import AsyncClient as raw_client
from lightkube.config.kubeconfig import SingleConfig
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import (
    Namespace,
    Node,
    Pod,
)
from lightkube.types import CascadeType

from akoflow.provenance.remote import RemoteFiles, remote_files
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
from akoflow.runtimes.kubernetes import manifests as mf
from akoflow.runtimes.kubernetes.http import connection_params, transport_for, why_failed
from akoflow.runtimes.kubernetes.listing import LogCopy, files_token
from akoflow.runtimes.kubernetes.mover import KubernetesMover
from akoflow.runtimes.kubernetes.quantity import byte_count, cpu_cores
from akoflow.runtimes.kubernetes.settings import ConfigError, Settings, read_settings
from akoflow.runtimes.kubernetes.status import (
    PodView,
    job_view,
    outcome_of,
    pod_view,
    widest_run,
)
from akoflow.runtimes.kubernetes.transfer import PodKey, TransferPods, TransferRun
from akoflow.runtimes.kubernetes.watch import ResourceWatch
from akoflow.runtimes.scope import existing_scope, scope_of, scoped
from akoflow.tasks import cancel_and_wait

log = logging.getLogger(__name__)

PodMetrics = create_namespaced_resource("metrics.k8s.io", "v1beta1", "PodMetrics", "pods")
NodeMetrics = create_global_resource("metrics.k8s.io", "v1beta1", "NodeMetrics", "nodes")

MANAGED: dict[str, Any] = {mf.L_MANAGED: "akoflow"}
STREAMS = ("stdout",)  # a pod's log interleaves stdout and stderr
LOG_READ_MAX = 8 << 20
DELETE_BATCH = 50  # finished Jobs deleted by one request (their names in its URL: ~3 KiB)

RunKey = tuple[str, str, str]  # namespace, scope, workflow id: one run's Jobs there
EXIT_WAIT = 5.0  # after the Job ended, how long the pod's final status may lag behind
LOG_WAIT = 30.0  # after the Job ended, how long the log stream may take to drain


def _d(obj: Any) -> dict[str, Any]:
    """A lightkube object as the plain dict the API sent."""
    data: dict[str, Any] = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return data


def _unreachable(server: str, exc: BaseException) -> RuntimeUnavailable:
    return RuntimeUnavailable(f"Kubernetes API at {server} is not reachable: {why_failed(exc)}")


def _api_message(exc: ApiError) -> str:
    st = exc.status
    return f"{st.code} {st.reason or ''}: {st.message or ''}".strip()


class _Tracked:
    """One attempt's Job as this runtime follows it."""

    def __init__(
        self, key: str, name: str, namespace: str, prefix: str, transfer: PodKey | None = None
    ) -> None:
        self.key = key
        self.name = name
        self.namespace = namespace
        self.prefix = prefix
        self.transfer = transfer  # the run's transfer pod, deleted once no attempt is followed
        self.named = True  # the Job carries its name as a label (older versions' do not)
        self.run: RunKey | None = None  # whose Job it is, where
        self.token = files_token(name)  # of the listing blocks in the pod's log
        self.location: str | None = None  # "<runtime>:pvc/<claim>" of Outcome.files
        self.listings: dict[str, str] = {}  # "before"/"after", once the whole log is read
        self.pod: str | None = None
        self.node: str | None = None
        self.running_reported = False
        self.exit: PodView | None = None  # the pod once its container terminated
        self.terminated = asyncio.Event()
        self.follower: asyncio.Task[bool] | None = None
        self.finalizer: asyncio.Task[None] | None = None
        self.stuck_since: float | None = None
        self.stuck: str | None = None
        self.cancelled = False
        # A delete of this runtime was sent while the Job had not completed: it may have
        # reached its pod (SIGTERM). ``known``: every delete ever sent went through this
        # runtime (it created the Job; an adopted one may have had one from an engine before).
        self.deleted = False
        self.known = True
        self.done: Outcome | None = None
        # While adopt() has not returned the engine does not know the key: events wait here.
        self.held: list[tuple[str, Any]] | None = None
        # What submit or adopt returned: a second submit of the key returns it again (the
        # node may have changed since, as the pod was scheduled; the engine stored this one).
        self.handle: dict[str, Any] = {}


class KubernetesRuntime(Runtime):
    kind = "k8s"
    files_stay_remote = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._config_error: str | None = None
        self._cluster: SingleConfig | None = None
        try:
            self._s, self._cluster = read_settings(self.config)
        except ConfigError as exc:
            self._config_error = str(exc)
            self._s = Settings(server="(not configured)", namespace=None)
        self._client: AsyncClient | None = None
        self._raw: httpx2.AsyncClient | None = None
        self._jobs: dict[str, _Tracked] = {}  # Job name -> attempt
        self._released: dict[RunKey, list[str]] = {}  # Jobs to delete together, by run
        self._namespaces: dict[str, asyncio.Future[None]] = {}  # ensured (or being ensured)
        self._pvcs: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._watches: dict[str, tuple[ResourceWatch, ResourceWatch]] = {}
        self._placement: dict[tuple[int, str], str] = {}  # (workflow, activity) -> node
        self._nodes: list[NodeInfo] = []
        self._rr = itertools.count()
        self._metrics: dict[str, tuple[float, dict[str, Metrics]]] = {}  # ns -> (time, by pod)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._scopes: dict[Path, str] = {}  # attempt dir -> the run's scope
        self._transfers = TransferPods(
            api=self._api,
            cluster=self._cluster_config,
            prepare=self._prepare_transfer,
            manifest=self._transfer_manifest,
            followed=self._follows_run,
            spawn=self._spawn,
            server=self._s.server,
            grace=self._s.fail_fast_grace,
            timeout=self._s.timeout,
        )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._config_error or self._client is not None or self._cluster is None:
            return
        timeout = httpx2.Timeout(self._s.timeout)
        self._client = AsyncClient(
            self._cluster,
            namespace="default",
            timeout=timeout,
            trust_env=False,
            transport=transport_for(self._cluster),
        )
        self._raw = raw_client(self._cluster, connection_params(self._cluster, timeout))

    async def stop(self) -> None:
        """Jobs keep running in the cluster; a restarted engine adopts them. Transfer pods
        are deleted."""
        with contextlib.suppress(RuntimeUnavailable, SubmitError):
            await self._transfers.stop()
        # Released Jobs may go now (each request bounded by the client's timeout, all at once).
        await asyncio.gather(*(self._delete_released(run) for run in list(self._released)))
        for a, b in self._watches.values():
            await a.stop()
            await b.stop()
        self._watches.clear()
        tasks = list(self._tasks)
        await cancel_and_wait(tasks)  # a lost cancel must not hang the stop (akoflow.tasks)
        await asyncio.gather(*(t for t in tasks if t.done()), return_exceptions=True)
        for t in self._jobs.values():
            if t.follower is not None:
                t.follower.cancel()
            if t.finalizer is not None:
                t.finalizer.cancel()
        self._jobs.clear()
        client, raw, self._client, self._raw = self._client, self._raw, None, None
        if client is not None:
            await client.close()
        if raw is not None:
            await raw.aclose()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _api(self) -> AsyncClient:
        if self._config_error:
            raise SubmitError(self._config_error)
        if self._client is None:
            raise RuntimeUnavailable(f"runtime {self.name} is not started")
        return self._client

    def _raw_api(self) -> httpx2.AsyncClient:
        self._api()
        assert self._raw is not None
        return self._raw

    def _namespace(self, job: JobSpec) -> str:
        return self._s.namespace or job.namespace

    # ------------------------------------------------------------------ ensure objects

    async def _once(self, table: dict[Any, asyncio.Future[None]], key: Any, coro: Any) -> None:
        """Run ``coro`` once per key (concurrent callers share it; a failure is retried)."""
        fut = table.get(key)
        if fut is None:
            fut = asyncio.ensure_future(coro)
            table[key] = fut
        else:
            coro.close()
        try:
            await asyncio.shield(fut)
        except BaseException:
            if table.get(key) is fut and fut is not None and fut.done():
                del table[key]
            raise

    async def _create(self, manifest: dict[str, Any]) -> bool:
        """Create; False if it already existed (409)."""
        try:
            await self._api().create(from_dict(manifest))
        except ApiError as exc:
            if exc.status.code == 409:
                return False
            raise
        return True

    async def _ensure_namespace(self, ns: str) -> None:
        async def ensure() -> None:
            try:
                await self._create(mf.namespace_manifest(ns))
            except ApiError as exc:
                if exc.status.code != 403:  # may not create namespaces: it must exist
                    raise
                await self._api().get(Namespace, ns)
            await self._create(mf.service_account_manifest(self._s.service_account, ns))

        await self._once(self._namespaces, ns, ensure())
        self._watch(ns)

    def _watch(self, ns: str) -> None:
        if ns in self._watches:
            return
        client = self._api()
        timeout = self._s.watch_timeout
        jobs = ResourceWatch(
            client,
            Job,
            ns,
            MANAGED,
            on_event=self._on_job_event,
            on_list=lambda items: self._on_job_list(ns, items),
            server_timeout=timeout,
        )
        pods = ResourceWatch(
            client,
            Pod,
            ns,
            MANAGED,
            on_event=self._on_pod_event,
            on_list=self._on_pod_list,
            server_timeout=timeout,
        )
        self._watches[ns] = (jobs, pods)
        jobs.start()
        pods.start()

    async def _ensure_pvc(self, job: JobSpec, ns: str, name: str, mode: str) -> None:
        policy = job.storage_policy
        manifest = mf.pvc_manifest(
            name,
            ns,
            size=policy.storage_size or self._s.storage_size,
            storage_class=policy.storage_class_name or self._s.storage_class,
            access_mode=mode,
            labels={**MANAGED, mf.L_WORKFLOW: str(job.workflow_id)},
        )
        await self._once(self._pvcs, (ns, name), self._create(manifest))

    async def _storage(self, job: JobSpec, ns: str) -> tuple[str, str | None]:
        """(PVC, node) per storage policy: standalone = one shared PVC per workflow, the Job
        pinned only where the engine's placement policy chose a node; distributed = one PVC per
        node, the Job pinned to that node."""
        if job.storage_policy.type != "distributed":
            pvc = mf.standalone_pvc_name(job)
            await self._ensure_pvc(job, ns, pvc, self._s.access_mode)
            return pvc, job.node
        node = await self._place(job)
        pvc = mf.node_pvc_name(job, node)
        await self._ensure_pvc(job, ns, pvc, "ReadWriteOnce")
        return pvc, node

    async def _place(self, job: JobSpec) -> str:
        """Distributed storage: the node whose PVC the attempt uses. A dependent goes where its
        first placed dependency ran (its inputs are there); others where the engine's placement
        policy chose (``spec.schedule``), else round-robin."""
        act = job.activity
        pinned = act.node_selector.get(mf.HOSTNAME_LABEL)
        if pinned:
            node = pinned
        else:
            node = next(
                (
                    self._placement[(job.workflow_id, d)]
                    for d in act.depends_on
                    if (job.workflow_id, d) in self._placement
                ),
                "",
            )
        if not node and job.node:
            node = job.node
        if not node:
            prior = self._placement.get((job.workflow_id, act.name))
            if prior:
                node = prior
        if not node:
            if not self._nodes:
                await self.nodes()
            ready = sorted(n.name for n in self._nodes if n.ready)
            if not ready:
                raise RuntimeUnavailable(f"Kubernetes API at {self._s.server}: no ready node")
            node = ready[next(self._rr) % len(ready)]
        self._placement[(job.workflow_id, act.name)] = node
        return node

    # ------------------------------------------------------------------ submit

    async def submit(self, job: JobSpec) -> dict[str, Any]:
        self._api()
        job = scoped(job)
        ns, name, prefix = self._namespace(job), mf.job_name(job), str(job.attempt_prefix)
        handle: dict[str, Any] = {"name": name, "namespace": ns, "prefix": prefix}
        if name in self._jobs:
            return dict(self._jobs[name].handle)
        try:
            await self._ensure_namespace(ns)
            pvc, node = await self._storage(job, ns)
            opts = mf.JobOptions(
                namespace=ns,
                service_account=self._s.service_account,
                shell=self._s.shell,
                ttl_seconds=self._s.ttl_seconds,
                default_image=self._s.default_image,
            )
            manifest = mf.job_manifest(job, opts, pvc=pvc, node=node)
        except ValueError as exc:
            raise SubmitError(str(exc)) from None
        except ApiError as exc:
            raise SubmitError(f"cannot prepare {ns}: {_api_message(exc)}") from None
        except (httpx2.HTTPError, OSError) as exc:
            raise _unreachable(self._s.server, exc) from None
        Path(prefix + ".out").mkdir(parents=True, exist_ok=True)
        t = _Tracked(job.key, name, ns, prefix, (ns, mf.transfer_pod_name(job)))
        t.run = (ns, job.scope, str(job.workflow_id))
        t.node = node
        t.location = f"{self.name}:pvc/{pvc}"
        t.handle = {**handle, "node": node}
        self._jobs[name] = t  # before the create: the watch may report it at once
        try:
            created = await self._create(manifest)
        except ApiError as exc:
            self._jobs.pop(name, None)
            if (exc.status.code or 0) >= 500:
                raise RuntimeUnavailable(f"creating Job {name}: {_api_message(exc)}") from None
            raise SubmitError(f"Kubernetes refused Job {name}: {_api_message(exc)}") from None
        except (httpx2.HTTPError, OSError) as exc:
            # The create may have reached the server: the name makes a retry safe (409).
            self._jobs.pop(name, None)
            raise _unreachable(self._s.server, exc) from None
        if not created:  # there already: take it over (never a second copy)
            await self._take_over(t, job.key)
        return dict(t.handle)

    async def _take_over(self, t: _Tracked, key: str) -> None:
        obj = _d(await self._api().get(Job, t.name, namespace=t.namespace))
        view = job_view(obj)
        if view.key != key:
            self._jobs.pop(t.name, None)
            raise SubmitError(f"Job {t.name} exists but is not attempt {key}")
        t.named = mf.is_named(obj)
        t.location = self._location(obj)
        await self._sync_pods(t)
        self._on_job_event("MODIFIED", obj)

    async def _sync_pods(self, t: _Tracked) -> None:
        pods = self._api().list(
            Pod, namespace=t.namespace, labels={"batch.kubernetes.io/job-name": t.name}
        )
        async for pod in pods:
            self._on_pod_event("ADDED", pod)

    # ------------------------------------------------------------------ watch handlers

    def _on_pod_list(self, items: list[Any]) -> None:
        for pod in items:
            self._on_pod_event("ADDED", pod)

    def _on_job_list(self, ns: str, items: list[Any]) -> None:
        seen = set()
        for obj in items:
            data = _d(obj)
            seen.add(job_view(data).name)
            self._on_job_event("ADDED", data)
        for t in list(self._jobs.values()):  # gone while we were not watching
            if t.namespace == ns and t.name not in seen and t.done is None and t.held is None:
                if t.finalizer is None and t.running_reported:
                    self._end(t, self._gone(t))

    def _gone(self, t: _Tracked) -> Outcome:
        if t.cancelled:
            return Outcome(False, None, "cancelled")
        return Outcome(False, None, "the Job was deleted before it finished")

    def _on_job_event(self, kind: str, obj: Any) -> None:
        data = _d(obj)
        view = job_view(data)
        t = self._jobs.get(view.name)
        if t is None or t.done is not None:
            return
        if kind == "DELETED":
            if t.finalizer is None:
                self._end(t, self._gone(t))
            return
        if (view.complete or view.failed) and t.finalizer is None:
            t.finalizer = self._spawn(self._finalize(t, view.complete, view.reason))

    def _on_pod_event(self, kind: str, obj: Any) -> None:
        data = _d(obj)
        if mf.is_transfer_pod(data):
            self._transfers.on_pod(kind, data)
            return
        view = pod_view(data)
        t = self._jobs.get(view.job or "")
        if t is None or t.done is not None or kind == "DELETED":
            return
        t.pod = view.name
        t.node = view.node or t.node
        if view.running or view.terminated:
            t.stuck = t.stuck_since = None
            if not t.running_reported:
                t.running_reported = True
                self._emit(t, "running", t.node)
            if t.follower is None:
                t.follower = self._spawn(self._follow(t))
        if view.terminated and t.exit is None:
            t.exit = view
            t.terminated.set()
        if view.stuck and not view.terminated:
            if t.stuck_since is None:
                t.stuck_since = time.monotonic()
                grace = self._s.fail_fast_grace
                asyncio.get_running_loop().call_later(grace, self._check_stuck, t)
            t.stuck = view.stuck
        elif not view.stuck:
            t.stuck = t.stuck_since = None

    def _check_stuck(self, t: _Tracked) -> None:
        if t.done is not None or t.finalizer is not None or t.stuck is None:
            return
        if t.stuck_since is None:
            return
        if time.monotonic() - t.stuck_since < self._s.fail_fast_grace - 0.01:
            return
        reason = f"the pod could not start: {t.stuck}"
        log.info("Job %s: %s; deleting it", t.name, reason)
        t.finalizer = self._spawn(self._fail_stuck(t, reason))

    async def _fail_stuck(self, t: _Tracked, reason: str) -> None:
        """Delete the Job first (its pod would keep retrying), then report the end."""
        with contextlib.suppress(ApiError, httpx2.HTTPError, OSError, RuntimeUnavailable):
            await self._delete(t.name, t.namespace)
        self._end(t, Outcome(False, None, reason))

    async def _finalize(self, t: _Tracked, complete: bool, failed_reason: str | None) -> None:
        """The Job ended: wait for its pod's exit code and the rest of its log, then report."""
        try:
            if t.exit is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(t.terminated.wait(), EXIT_WAIT)
            if t.exit is None:
                with contextlib.suppress(Exception):
                    await self._sync_pods(t)
            if t.follower is not None:
                try:
                    complete_log = await asyncio.wait_for(asyncio.shield(t.follower), LOG_WAIT)
                except Exception:
                    complete_log = False
                if not complete_log:
                    t.follower.cancel()
                    await self._fetch_whole_log(t)
            elif t.pod is not None:
                await self._fetch_whole_log(t)
            code = t.exit.exit_code if t.exit else None
            reason = t.exit.reason if t.exit else None
            outcome = outcome_of(
                complete=complete,
                failed_reason=failed_reason,
                exit_code=code,
                term_reason=reason,
            )
            # Complete, and no delete of ours was sent before: any stop the engine asked
            # came too late (nothing was left to stop), and the success stands.
            unstopped = outcome.succeeded and t.known and not t.deleted
            outcome = dataclasses.replace(outcome, files=self._files(t), ended_unstopped=unstopped)
            window = widest_run(t.exit) if unstopped and t.cancelled and t.exit else None
            if window is not None:
                # Asked to stop (a cancel, or its timeout's) once it had ended: judged by
                # when it ran, not when its end was read (one that ended in time, read after
                # its deadline, was recorded timed out and run again); both by the cluster's
                # clock (the engine's may differ), in whole seconds, widened (a false
                # success is worse than a run too many).
                outcome = dataclasses.replace(outcome, started_at=window[0], ended_at=window[1])
            self._end(t, outcome)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never leave an attempt without an end
            log.exception("finishing Job %s", t.name)
            self._end(t, Outcome(False, None, f"cannot collect the Job's end: {exc}"))

    def _end(self, t: _Tracked, outcome: Outcome) -> None:
        if t.done is not None:
            return
        if t.cancelled and not outcome.succeeded:
            outcome = dataclasses.replace(outcome, reason="cancelled")
        t.done = outcome
        if t.follower is not None and not t.follower.done() and t.finalizer is None:
            t.follower.cancel()
        self._emit(t, "finished", outcome)

    def _emit(self, t: _Tracked, what: str, payload: Any) -> None:
        if t.held is not None:
            t.held.append((what, payload))
        elif what == "running":
            self.events.job_running(t.key, payload)
        else:
            self.events.job_finished(t.key, payload)

    def _unhold(self, t: _Tracked) -> None:
        held, t.held = t.held or [], None
        for what, payload in held:
            self._emit(t, what, payload)

    # ------------------------------------------------------------------ logs

    def _log_path(self, t: _Tracked) -> Path:
        return Path(t.prefix + ".out") / "stdout"

    def _location(self, job: Mapping[str, Any]) -> str:
        """Where a Job's files live: ``<runtime>:pvc/<claim>`` (else its working dir)."""
        claim = mf.claim_of(job)
        if claim:
            return f"{self.name}:pvc/{claim}"
        pod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
        containers = pod.get("containers") or [{}]
        return f"{self.name}:{containers[0].get('workingDir') or mf.DEFAULT_MOUNT}"

    def _files(self, t: _Tracked) -> RemoteFiles | None:
        """Both listings of the attempt, when its whole log had them."""
        if t.location is None:
            return None
        return remote_files(t.location, t.listings.get("before"), t.listings.get("after"))

    async def _follow(self, t: _Tracked) -> bool:
        """Stream the pod's log into the attempt's file (one request; again after a cut, from
        the start, skipping what is written). What is written is filtered (:mod:`.listing`):
        the script's output only; the listings go to ``t.listings``. True once the stream
        ended with the container."""
        path = self._log_path(t)
        path.parent.mkdir(parents=True, exist_ok=True)
        backoff = Backoff(0.2, 5.0)
        while True:
            written = path.stat().st_size if path.exists() else 0
            url = f"/api/v1/namespaces/{t.namespace}/pods/{t.pod}/log"
            params = {"follow": "true", "container": mf.CONTAINER}
            try:
                raw = self._raw_api()
                timeout = httpx2.Timeout(self._s.timeout, read=None)
                async with raw.stream("GET", url, params=params, timeout=timeout) as resp:
                    if resp.status_code == 404:
                        return False  # the pod is gone
                    if resp.status_code == 400:  # not started yet
                        await resp.aread()
                        await asyncio.sleep(backoff.first)
                        continue
                    resp.raise_for_status()
                    copy = LogCopy(t.token, written)
                    with open(path, "ab") as f:
                        async for chunk in resp.aiter_bytes():
                            new = copy.feed(chunk)
                            if new:
                                f.write(new)
                                f.flush()
                # Ended cleanly: the container ended (or the server went away politely).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(t.terminated.wait(), 2.0)
                if t.terminated.is_set():
                    new = copy.close()
                    if new:
                        with open(path, "ab") as f:
                            f.write(new)
                    t.listings = copy.listings
                    return True
            except asyncio.CancelledError:
                raise
            except (httpx2.HTTPError, OSError, RuntimeUnavailable) as exc:
                log.debug("log stream of %s: %s", t.name, exc)
            await asyncio.sleep(backoff.next())

    async def _fetch_whole_log(self, t: _Tracked) -> None:
        """One plain read of the whole log (after a lost stream, or at adoption)."""
        if t.pod is None:
            return
        url = f"/api/v1/namespaces/{t.namespace}/pods/{t.pod}/log"
        try:
            resp = await self._raw_api().get(url, params={"container": mf.CONTAINER})
        except (httpx2.HTTPError, OSError) as exc:
            log.warning("cannot read the log of %s: %s", t.name, exc)
            return
        if resp.status_code != 200:
            return
        path = self._log_path(t)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The log only grows: keep what is stored, add the rest (filtered, as when streamed).
        copy = LogCopy(t.token, path.stat().st_size if path.exists() else 0)
        new = copy.feed(resp.content) + copy.close()
        t.listings = copy.listings
        if new:
            with open(path, "ab") as f:
                f.write(new)

    async def logs(
        self, key: str, handle: Mapping[str, Any], offsets: Mapping[str, int]
    ) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        prefix = str(handle.get("prefix", ""))
        start = offsets.get("stdout", 0)
        try:
            with open(f"{prefix}.out/stdout", "rb") as f:
                if os.fstat(f.fileno()).st_size > start:
                    f.seek(start)
                    out["stdout"] = f.read(LOG_READ_MAX)
        except FileNotFoundError:
            pass
        return out

    # ------------------------------------------------------------------ cancel, adopt

    async def _delete(self, name: str, ns: str) -> None:
        try:
            await self._api().delete(Job, name, namespace=ns, cascade=CascadeType.BACKGROUND)
        except ApiError as exc:
            if exc.status.code != 404:
                log.warning("cannot delete Job %s: %s", name, _api_message(exc))
                raise

    async def cancel(self, key: str, handle: Mapping[str, Any]) -> None:
        name, ns = str(handle.get("name", "")), str(handle.get("namespace", ""))
        if not name:
            return
        t = self._jobs.get(name)
        if t is not None:
            t.cancelled = True
            if await self._ended_before_stop(t):
                return  # nothing to stop: its end comes from its finalizer
            t.deleted = True
        try:
            await asyncio.shield(self._delete(name, ns))
        except (httpx2.HTTPError, OSError) as exc:
            log.warning("cannot delete Job %s now: %s", name, exc)
            return
        except ApiError:
            return
        if t is not None and t.finalizer is None and t.done is None:
            self._end(t, Outcome(False, None, "cancelled"))

    async def _ended_before_stop(self, t: _Tracked) -> bool:
        """Whether the Job had ended before any delete of ours: its end seen (Complete or
        Failed, its finalizer started), else the API's own word that it is Complete. Then
        a delete would stop nothing (and remove the pod whose log and exit code its end
        still reads): it is not sent. Unknown (the API not answering): False."""
        if t.finalizer is None and t.done is None and not t.deleted:
            try:
                obj = _d(await self._api().get(Job, t.name, namespace=t.namespace))
            except (ApiError, httpx2.HTTPError, OSError, RuntimeUnavailable):
                return False
            if not job_view(obj).complete:
                return t.finalizer is not None or t.done is not None  # seen while we asked
            self._on_job_event("MODIFIED", obj)  # its finalizer starts, if not yet
        return not t.deleted

    async def adopt(self, job: JobSpec, handle: Mapping[str, Any]) -> Adopted:
        if self._config_error:
            raise RuntimeUnavailable(self._config_error)
        job = scoped(job)
        # The name the submission recorded, else the one it would have had: a Job made
        # before the run's scope was a token of its own is found by its older name.
        name = str(handle.get("name") or mf.job_name(job))
        ns, prefix = self._namespace(job), str(job.attempt_prefix)
        base: dict[str, Any] = {"name": name, "namespace": ns, "prefix": prefix}
        if handle.get("node"):
            self._placement[(job.workflow_id, job.activity.name)] = str(handle["node"])
        try:
            self._watch(ns)
            obj = _d(await self._api().get(Job, name, namespace=ns))
        except ApiError as exc:
            if exc.status.code != 404:
                raise RuntimeUnavailable(f"reading Job {name}: {_api_message(exc)}") from None
            if Path(prefix + ".out/stdout").exists() or handle.get("name"):
                lost = "the Job was deleted before the engine collected its end"
                return Adopted("finished", base, Outcome(False, None, lost))
            # Never created: create is atomic by name and only this engine makes this name.
            return Adopted("never_started")
        except (httpx2.HTTPError, OSError) as exc:
            raise _unreachable(self._s.server, exc) from None
        view = job_view(obj)
        if view.key != job.key:
            return Adopted("finished", base, Outcome(False, None, f"Job {name} is not {job.key}"))
        Path(prefix + ".out").mkdir(parents=True, exist_ok=True)
        t = _Tracked(job.key, name, ns, prefix, (ns, mf.transfer_pod_name(job)))
        t.run = (ns, job.scope, str(job.workflow_id))
        t.named = mf.is_named(obj)
        t.location = self._location(obj)
        t.held = []
        t.known = False  # an engine before this one may have deleted it
        t.running_reported = True  # the engine records it running itself
        self._jobs[name] = t
        try:
            await self._sync_pods(t)
            if view.complete or view.failed:
                await self._fetch_whole_log(t)
                if t.follower is not None:
                    t.follower.cancel()
                code = t.exit.exit_code if t.exit else None
                reason = t.exit.reason if t.exit else None
                outcome = outcome_of(
                    complete=view.complete,
                    failed_reason=view.reason,
                    exit_code=code,
                    term_reason=reason,
                )
                # When it ran, by the cluster's clock: its timeout is judged by that (it ended
                # while no engine watched), its end recorded as when it was. The API gives
                # whole seconds: from the end of its start's second to the start of its end's,
                # never judged longer than it ran.
                began = t.exit.started_at + 1.0 if t.exit and t.exit.started_at else None
                ended = t.exit.finished_at if t.exit and began else None
                outcome = dataclasses.replace(outcome, files=self._files(t), ended_at=ended)
                t.done = outcome
                return Adopted("finished", base, outcome, t.node, started_at=began)
        except (httpx2.HTTPError, OSError) as exc:
            self._jobs.pop(name, None)
            raise _unreachable(self._s.server, exc) from None
        asyncio.get_running_loop().call_soon(self._unhold, t)
        self._on_job_event("MODIFIED", obj)
        t.handle = {**base, "node": t.node}
        return Adopted("running", dict(t.handle), node=t.node)

    # ------------------------------------------------------------------ observe

    async def metrics(self, jobs: Mapping[str, Mapping[str, Any]]) -> dict[str, Metrics]:
        """From metrics.k8s.io: one list per namespace, at most every METRICS_INTERVAL (the
        metrics server's own resolution), whatever the number of jobs."""
        wanted = [t for t in self._jobs.values() if t.key in jobs and t.pod and t.done is None]
        result: dict[str, Metrics] = {}
        for ns in {t.namespace for t in wanted}:
            cached = self._metrics.get(ns)
            now = time.monotonic()
            if cached is None or now - cached[0] >= self._s.metrics_interval:
                by_pod: dict[str, Metrics] = {}
                try:
                    async for item in self._api().list(PodMetrics, namespace=ns, labels=MANAGED):
                        data = _d(item)
                        cpu = mem = None
                        for c in data.get("containers") or []:
                            usage = c.get("usage") or {}
                            cpu = (cpu or 0.0) + (cpu_cores(usage.get("cpu")) or 0.0)
                            mem = (mem or 0) + (byte_count(usage.get("memory")) or 0)
                        name = str((data.get("metadata") or {}).get("name"))
                        by_pod[name] = Metrics(cpu * 100 if cpu is not None else None, mem)
                except (ApiError, httpx2.HTTPError, OSError) as exc:
                    log.debug("pod metrics of %s: %s", ns, exc)
                cached = (now, by_pod)
                self._metrics[ns] = cached
            for t in wanted:
                if t.namespace == ns and t.pod in cached[1]:
                    result[t.key] = cached[1][t.pod]
        return result

    async def health(self) -> Health:
        if self._config_error:
            return Health(False, self._config_error, misconfigured=True)
        try:
            resp = await self._raw_api().get("/healthz")
        except (httpx2.HTTPError, OSError, RuntimeUnavailable) as exc:
            return Health(False, str(_unreachable(self._s.server, exc)))
        if resp.status_code == 401:
            return Health(False, f"Kubernetes API at {self._s.server} rejected the token (401)")
        if resp.status_code == 403:
            return Health(False, f"Kubernetes API at {self._s.server}: /healthz forbidden (403)")
        if resp.status_code != 200 or resp.text.strip() != "ok":
            return Health(
                False,
                f"Kubernetes API at {self._s.server} is unhealthy: "
                f"{resp.status_code} {resp.text[:200]}",
            )
        return Health(True)

    async def nodes(self) -> Sequence[NodeInfo]:
        usage: dict[str, tuple[float | None, int | None]] = {}
        with contextlib.suppress(ApiError):  # no metrics server: capacity only
            async for item in self._api().list(NodeMetrics):
                data = _d(item)
                u = data.get("usage") or {}
                name = str((data.get("metadata") or {}).get("name"))
                usage[name] = (cpu_cores(u.get("cpu")), byte_count(u.get("memory")))
        found: list[NodeInfo] = []
        async for node in self._api().list(Node):
            data = _d(node)
            name = str((data.get("metadata") or {}).get("name"))
            status = data.get("status") or {}
            alloc = status.get("allocatable") or status.get("capacity") or {}
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or []
            )
            unschedulable = bool((data.get("spec") or {}).get("unschedulable"))
            cpu_u, mem_u = usage.get(name, (None, None))
            found.append(
                NodeInfo(
                    name=name,
                    ready=ready and not unschedulable,
                    cpu_capacity=cpu_cores(alloc.get("cpu")),
                    memory_capacity=byte_count(alloc.get("memory")),
                    cpu_usage=cpu_u,
                    memory_usage=mem_u,
                )
            )
        self._nodes = found
        return found

    async def release(self, key: str, handle: Mapping[str, Any], *, succeeded: bool) -> None:
        """Cleanup policy. The log is already whole in the attempt's file."""
        name, ns = str(handle.get("name", "")), str(handle.get("namespace", ""))
        t = self._jobs.pop(name, None)
        if t is not None and t.transfer is not None and not self._follows_run(t.transfer):
            # The run's last attempt here: its transfer pod goes unless a copy uses it soon
            # (a fetch for the next activity elsewhere), at the latest when the run ends.
            self._transfers.idle(t.transfer)
        policy = self._s.cleanup
        if not name or policy == "never" or (policy == "on-success" and not succeeded):
            return
        if t is not None and t.named and t.run:  # with others: at the run's end, or 50
            released = self._released.setdefault(t.run, [])
            released.append(name)
            if len(released) >= DELETE_BATCH:
                # Taken out now: the shielded request starts in a later turn of the loop, and
                # the releases of that turn would have joined it (a batch of any size).
                del self._released[t.run]
                await asyncio.shield(self._delete_in_batches(t.run, released))
            return
        with contextlib.suppress(ApiError, httpx2.HTTPError, OSError, RuntimeUnavailable):
            await asyncio.shield(self._delete(name, ns))

    async def _delete_released(self, run: RunKey, *, whole_run: bool = False) -> None:
        """Delete the released Jobs of ``run`` (and their pods) in one request: those named,
        or (``whole_run``, once every attempt of the run is released) every Job of the run
        there, also those an engine that died before deleting them left. Not reached: they
        wait for the next time (their ``ttlSecondsAfterFinished`` bounds it)."""
        names = self._released.pop(run, [])
        if whole_run:
            await self._delete_jobs(run, names, whole_run=True)
        else:
            await self._delete_in_batches(run, names)

    async def _delete_in_batches(self, run: RunKey, names: list[str]) -> None:
        """At most :data:`DELETE_BATCH` names per request (those a failed request put back
        join the next ones)."""
        for start in range(0, len(names), DELETE_BATCH):
            await self._delete_jobs(run, names[start : start + DELETE_BATCH])

    async def _delete_jobs(self, run: RunKey, names: list[str], *, whole_run: bool = False) -> None:
        """Delete the Jobs ``names`` of ``run`` (``whole_run``: every Job of the run) in one
        request; those not deleted go back to the run's released ones."""
        ns, scope, workflow_id = run
        selector = mf.run_jobs(scope, workflow_id) if whole_run else mf.jobs_named(names)
        url = f"/apis/batch/v1/namespaces/{ns}/jobs"
        params = {"labelSelector": selector, "propagationPolicy": "Background"}
        try:
            resp = await self._raw_api().request("DELETE", url, params=params)
            if resp.status_code >= 500:
                raise RuntimeUnavailable(f"{resp.status_code} {resp.text[:200]}")
            if resp.status_code >= 400:  # refused: trying again would not help
                log.warning("cannot delete %d Jobs in %s: %s", len(names), ns, resp.text[:200])
        except (httpx2.HTTPError, OSError, RuntimeUnavailable) as exc:
            log.warning("cannot delete %d Jobs in %s now: %s", len(names), ns, exc)
            self._released.setdefault(run, [])[:0] = names

    # ------------------------------------------------------------------ data plane

    async def run_ended(self, job: JobSpec) -> None:
        job = scoped(job)
        run = (self._namespace(job), job.scope, str(job.workflow_id))
        whole_run = self._s.cleanup == "always"  # else only those released for deletion
        await asyncio.shield(self._delete_released(run, whole_run=whole_run))
        mover = self.data_mover(job)
        if mover is not None:
            await asyncio.shield(self._transfers.retire(mover.transfer_pod))

    def data_mover(self, job: JobSpec) -> KubernetesMover | None:
        """Copies to and from the run's standalone PVC (``<runtime>:pvc/<claim>``, where its
        Jobs' files are listed) through a transfer pod that mounts it (:mod:`.transfer`).
        None with ``storagePolicy: distributed``: each node has a PVC of its own, chosen
        when an attempt is placed (``spec.schedule``, its dependencies' node), so no one
        volume is where the run's files are."""
        if job.storage_policy.type == "distributed":
            return None
        scope = self._scopes.get(job.attempt_dir)
        if scope is None:
            scope = self._scopes[job.attempt_dir] = scope_of(job.attempt_dir)
        job = dataclasses.replace(job, scope=scope)
        ns, pvc = self._namespace(job), mf.standalone_pvc_name(job)
        return KubernetesMover(f"{self.name}:pvc/{pvc}", TransferRun(job, ns, pvc), self._transfers)

    def _cluster_config(self) -> SingleConfig:
        self._api()
        assert self._cluster is not None
        return self._cluster

    async def _prepare_transfer(self, job: JobSpec, ns: str, pvc: str) -> None:
        """The namespace (and its watch) and the PVC, as the run's first Job makes them: a
        copy may come first."""
        try:
            await self._ensure_namespace(ns)
            await self._ensure_pvc(job, ns, pvc, self._s.access_mode)
        except (httpx2.HTTPError, OSError) as exc:
            raise _unreachable(self._s.server, exc) from None

    def _transfer_manifest(self, run: TransferRun) -> dict[str, Any]:
        return mf.transfer_pod_manifest(
            run.job,
            namespace=run.namespace,
            pvc=run.pvc,
            image=self._s.transfer_image,
            service_account=self._s.service_account,
        )

    def _follows_run(self, key: PodKey) -> bool:
        return any(t.transfer == key for t in self._jobs.values())

    async def leftovers(self, workflow_id: int, attempt_dir: Path) -> dict[str, dict[str, Any]]:
        """Transfer pods of the run that an engine which died left, found by label (scope and
        workflow: another state dir's never) and deleted; no attempt's Job is listed."""
        scope = existing_scope(attempt_dir)
        if scope is None:
            return {}
        labels: dict[str, Any] = {
            mf.L_ROLE: mf.TRANSFER_ROLE,
            mf.L_SCOPE: scope,
            mf.L_WORKFLOW: str(workflow_id),
        }
        # The workflow's namespace is not known here: every namespace, or, where listing
        # them all is forbidden, those this runtime works in (adopted attempts' among them).
        places = [self._s.namespace] if self._s.namespace else ["*"]
        found: list[PodKey] = []
        try:
            for where in places:
                try:
                    async for pod in self._api().list(Pod, namespace=where, labels=labels):
                        meta = _d(pod).get("metadata") or {}
                        found.append((str(meta.get("namespace")), str(meta.get("name"))))
                except ApiError as exc:
                    if exc.status.code != 403 or where != "*":
                        raise
                    places += sorted(set(self._watches) | {mf.DEFAULT_NAMESPACE})
            for key in found:
                await self._transfers.remove(key)
        except ApiError as exc:
            log.warning("cannot list or delete transfer pods of run %s: %s", workflow_id, exc)
        except (httpx2.HTTPError, OSError) as exc:
            raise _unreachable(self._s.server, exc) from None
        return {}

    async def forget_run(self, run: RunTrace) -> Forgotten:  # a deleted run's objects: .forget
        from akoflow.runtimes.kubernetes.forget import forget_remote

        ns, server = self._s.namespace or run.namespace, self._s.server
        return await forget_remote(self._api(), ns, run, lambda exc: _unreachable(server, exc))
