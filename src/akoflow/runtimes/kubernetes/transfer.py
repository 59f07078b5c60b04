"""A run's transfer pod: the only way files reach its PVC (the engine talks to the API server
alone; nothing in the cluster is assumed to reach the engine).

One bare Pod per run and namespace (:func:`~.manifests.transfer_pod_manifest`: it mounts the
run's PVC and waits), created when the run's first copy needs it, reused by every copy of
the run, and deleted

- when the run ends (:meth:`TransferPods.retire`, from the runtime's ``run_ended``: the run
  is recorded finished only after it returns, so a run's end leaves no transfer pod behind);
- :data:`LINGER` seconds after its last copy when no attempt of the run is followed (the
  run's last attempt here was released: the next activity elsewhere may still fetch what it
  wrote, through the same pod, :meth:`TransferPods.idle`);
- when the runtime stops (:meth:`TransferPods.stop`);
- after an engine crash, by the resumed engine, found by label (:meth:`TransferPods.remove`,
  from the runtime's ``leftovers``). Its own command also ends after a day
  (:data:`~.manifests.TRANSFER_LIFETIME`), so even a pod no engine comes back for stops.

Its state is followed through the runtime's Pod watch (:meth:`TransferPods.on_pod`): waiting
for it to run costs no request. Commands run in it through ``pods/exec``
(:meth:`TransferPods.run`), at most :data:`PARALLEL` at once per runtime.

Errors: the API server out of reach, or an exec stream that broke, is
:class:`~akoflow.runtimes.base.RuntimeUnavailable` (held, retried); a pod Kubernetes refuses
or that cannot start (image pull, unschedulable) is
:class:`~akoflow.dataplane.mover.TransferFailed` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.codecs import from_dict
from lightkube.config.kubeconfig import SingleConfig
from lightkube.resources.core_v1 import Pod

from akoflow.dataplane.mover import TransferFailed
from akoflow.runtimes.backoff import Backoff
from akoflow.runtimes.base import JobSpec, RuntimeUnavailable
from akoflow.runtimes.kubernetes import manifests as mf
from akoflow.runtimes.kubernetes.exec_stream import (
    ExecFailed,
    ExecRefused,
    ExecResult,
    ExecTimeouts,
    ExecTransportError,
    Sink,
    exec_in_pod,
)
from akoflow.runtimes.kubernetes.status import PodView, pod_view

log = logging.getLogger(__name__)

PARALLEL = 4  # copies at once per runtime: each holds a stream through the API server
LINGER = 120.0  # s an unused transfer pod stays once no attempt of its run is followed here
START_TIMEOUT = 120.0  # s a transfer pod may take to run (pull, schedule, attach the volume)
GONE_TIMEOUT = 60.0  # s a deleted transfer pod may take to go before one of its name is made

PodKey = tuple[str, str]  # (namespace, pod name)
Prepare = Callable[[JobSpec, str, str], Awaitable[None]]  # (job, namespace, PVC)


def _d(obj: Any) -> dict[str, Any]:
    data: dict[str, Any] = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return data


def _api_message(exc: ApiError) -> str:
    st = exc.status
    return f"{st.code} {st.reason or ''}: {st.message or ''}".strip()


@dataclass(frozen=True)
class TransferRun:
    """What a copy of one run needs: the run (scoped), its namespace and PVC."""

    job: JobSpec
    namespace: str
    pvc: str

    @property
    def key(self) -> PodKey:
        return (self.namespace, mf.transfer_pod_name(self.job))


@dataclass
class _Pod:
    run: TransferRun
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # copies using it or waiting for it
    ready: bool = False  # running, made or found by this process
    uid: str | None = None  # of the pod this process made or found
    view: PodView | None = None  # its last state seen
    view_uid: str | None = None
    gone_uid: str | None = None  # the last deletion seen
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    linger: asyncio.TimerHandle | None = None


class TransferPods:
    """The transfer pods of one Kubernetes runtime (see the module's description)."""

    def __init__(
        self,
        *,
        api: Callable[[], AsyncClient],
        cluster: Callable[[], SingleConfig],
        prepare: Prepare,
        manifest: Callable[[TransferRun], dict[str, Any]],
        followed: Callable[[PodKey], bool],
        spawn: Callable[[Any], object],
        server: str,
        grace: float,
        timeout: float,
    ) -> None:
        self._api = api
        self._cluster = cluster
        self._prepare = prepare
        self._manifest = manifest
        self._followed = followed  # whether the runtime follows an attempt of the pod's run
        self._spawn = spawn
        self._server = server
        self._grace = grace  # a pod stuck (image pull, unschedulable) this long fails copies
        self._timeouts = ExecTimeouts(connect=timeout)
        self._pods: dict[PodKey, _Pod] = {}
        self._slots = asyncio.Semaphore(PARALLEL)

    # ------------------------------------------------------------------ commands

    async def run(
        self,
        run: TransferRun,
        command: Sequence[str],
        *,
        stdin: Callable[[], AsyncIterable[bytes]] | None = None,
        stdout: Sink | None = None,
    ) -> ExecResult:
        """``command`` in the run's transfer pod (made first if needed). Its exit code is the
        caller's to judge. A pod that refuses the exec (deleted, ended meanwhile) is made
        again once."""
        for attempt in range(2):
            async with self._use(run) as name:
                async with self._slots:
                    try:
                        return await exec_in_pod(
                            self._cluster(),
                            run.namespace,
                            name,
                            command,
                            container=mf.TRANSFER_CONTAINER,
                            stdin=stdin() if stdin is not None else None,
                            stdout=stdout,
                            check=False,
                            timeouts=self._timeouts,
                        )
                    except ExecTransportError as exc:
                        raise RuntimeUnavailable(str(exc)) from None
                    except ExecRefused as exc:
                        self._lost(run.key)
                        if attempt == 0 and exc.code in (400, 404):
                            log.info("transfer pod %s refused exec (%s): again", name, exc)
                            continue
                        raise TransferFailed(f"transfer pod {name} refused a copy: {exc}") from None
                    except ExecFailed as exc:  # could not be started (no exit code)
                        raise TransferFailed(f"in transfer pod {name}: {exc}") from None
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ the pod's life

    @contextlib.asynccontextmanager
    async def _use(self, run: TransferRun) -> AsyncIterator[str]:
        key = run.key
        pod = self._pods.get(key)
        if pod is None:
            pod = self._pods[key] = _Pod(run)
        pod.users += 1
        if pod.linger is not None:
            pod.linger.cancel()
            pod.linger = None
        try:
            async with pod.lock:
                if not pod.ready:
                    await self._start(pod)
            yield key[1]
        finally:
            pod.users -= 1
            if pod.users == 0 and self._pods.get(key) is pod:
                loop = asyncio.get_running_loop()
                pod.linger = loop.call_later(LINGER, self._lingered, key)

    def idle(self, key: PodKey) -> None:
        """No attempt of the pod's run is followed here any more: the pod goes after
        :data:`LINGER` seconds unless a copy uses it meanwhile (the run's next activity
        elsewhere may fetch what the last one here wrote: one pod serves that fetch too)."""
        pod = self._pods.get(key)
        if pod is None or pod.users:
            return
        if pod.linger is not None:
            pod.linger.cancel()
        pod.linger = asyncio.get_running_loop().call_later(LINGER, self._lingered, key)

    def _lingered(self, key: PodKey) -> None:
        pod = self._pods.get(key)
        if pod is not None:
            pod.linger = None
            if pod.users == 0 and not self._followed(key):
                self._spawn(self.retire(key))

    def _lost(self, key: PodKey) -> None:
        pod = self._pods.get(key)
        if pod is not None:
            pod.ready = False

    async def _start(self, pod: _Pod) -> None:
        """Make the run's transfer pod (its namespace and PVC first) and wait until it runs;
        one found running (made before an engine restart) is used as it is."""
        run = pod.run
        ns, name = run.key
        try:
            await self._prepare(run.job, ns, run.pvc)
            for _ in range(3):
                if await self._create(pod):
                    break
                try:  # one of its name is there: use it if it runs, else make it again
                    found = _d(await self._api().get(Pod, name, namespace=ns))
                except ApiError as exc:
                    if exc.status.code == 404:
                        continue  # deleted meanwhile
                    raise
                meta = found.get("metadata") or {}
                if not (meta.get("deletionTimestamp") or pod_view(found).terminated):
                    self._adopt(pod, str(meta.get("uid") or ""), found)
                    break
                await self._delete(ns, name)
                await self._wait_gone(ns, name)
            else:
                raise RuntimeUnavailable(f"transfer pod {ns}/{name} cannot be made again yet")
            await self._wait_running(pod)
        except ApiError as exc:
            if (exc.status.code or 0) >= 500:
                raise RuntimeUnavailable(f"transfer pod {ns}/{name}: {_api_message(exc)}") from None
            raise TransferFailed(
                f"Kubernetes refused transfer pod {ns}/{name}: {_api_message(exc)}"
            ) from None
        except (httpx2.HTTPError, OSError) as exc:
            raise RuntimeUnavailable(
                f"Kubernetes API at {self._server} is not reachable: {exc or type(exc).__name__}"
            ) from None
        pod.ready = True

    async def _create(self, pod: _Pod) -> bool:
        """Create the pod; False if one of its name is there already (409)."""
        try:
            made = _d(await self._api().create(from_dict(self._manifest(pod.run))))
        except ApiError as exc:
            if exc.status.code == 409:
                return False
            raise
        self._adopt(pod, str((made.get("metadata") or {}).get("uid") or ""), None)
        return True

    @staticmethod
    def _adopt(pod: _Pod, uid: str, found: dict[str, Any] | None) -> None:
        """From now on only events of the pod ``uid`` count (an earlier pod of the same
        name, deleted, may still be reported by the watch)."""
        pod.uid = uid or None
        if found is not None:
            pod.view, pod.view_uid = pod_view(found), pod.uid
        elif pod.view_uid != pod.uid:
            pod.view = None

    async def _wait_running(self, pod: _Pod) -> None:
        ns, name = pod.run.key
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        stuck_since: float | None = None
        while True:
            pod.changed.clear()  # before reading: a change from now on wakes the wait below
            now = loop.time()
            view = pod.view
            if pod.uid is not None and pod.gone_uid == pod.uid:
                raise TransferFailed(f"transfer pod {ns}/{name} was deleted before it ran")
            wait = deadline - now
            if view is not None:
                if view.running:
                    return
                if view.terminated:
                    reason = view.reason or f"exit code {view.exit_code}"
                    raise TransferFailed(f"transfer pod {ns}/{name} ended ({reason})")
                if view.stuck:
                    stuck_since = stuck_since if stuck_since is not None else now
                    if now - stuck_since >= self._grace:
                        with contextlib.suppress(ApiError, httpx2.HTTPError, OSError):
                            await self._delete(ns, name)
                        raise TransferFailed(
                            f"transfer pod {ns}/{name} could not start: {view.stuck}"
                        )
                    wait = min(wait, stuck_since + self._grace - now)
                else:
                    stuck_since = None
            if deadline - now <= 0:
                raise RuntimeUnavailable(
                    f"transfer pod {ns}/{name} is not running after {START_TIMEOUT:g} s"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pod.changed.wait(), max(wait, 0.01))

    def on_pod(self, kind: str, obj: dict[str, Any]) -> None:
        """A transfer pod's event from the runtime's Pod watch."""
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        pod = self._pods.get(key)
        if pod is None:
            return
        uid = str(meta.get("uid") or "") or None
        if pod.uid is not None and uid != pod.uid:
            return  # an earlier pod of the same name
        view = pod_view(obj)
        if kind == "DELETED":
            pod.gone_uid = uid
            pod.ready = False
        else:
            pod.view, pod.view_uid = view, uid
            if view.terminated or meta.get("deletionTimestamp"):
                pod.ready = False
        pod.changed.set()

    # ------------------------------------------------------------------ deletion

    async def _delete(self, ns: str, name: str) -> None:
        try:
            await self._api().delete(Pod, name, namespace=ns)
        except ApiError as exc:
            if exc.status.code != 404:
                raise

    async def _wait_gone(self, ns: str, name: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GONE_TIMEOUT
        backoff = Backoff(0.2, 2.0)
        while loop.time() < deadline:
            try:
                await self._api().get(Pod, name, namespace=ns)
            except ApiError as exc:
                if exc.status.code == 404:
                    return
                raise
            await asyncio.sleep(backoff.next())
        raise RuntimeUnavailable(f"transfer pod {ns}/{name} is still terminating")

    async def retire(self, key: PodKey) -> None:
        """Delete the pod unless a copy uses it (or waits for it)."""
        pod = self._pods.get(key)
        if pod is None:
            return
        async with pod.lock:
            if pod.users or self._pods.get(key) is not pod:
                return
            pod.ready = False  # a copy that waits for the lock meanwhile makes it again
            if pod.uid is not None:
                try:
                    await self._delete(*key)
                except (ApiError, httpx2.HTTPError, OSError, RuntimeUnavailable) as exc:
                    log.warning("cannot delete transfer pod %s/%s: %s", *key, exc)
                    return  # kept: stop() or a resumed engine's leftovers try again
            if pod.linger is not None:
                pod.linger.cancel()
            del self._pods[key]

    async def remove(self, key: PodKey) -> None:
        """A transfer pod found by label (left by an engine that died): deleted unless this
        process uses it now."""
        pod = self._pods.get(key)
        if pod is None:
            await self._delete(*key)
            return
        async with pod.lock:
            if not (pod.users or pod.ready):
                await self._delete(*key)

    async def stop(self) -> None:
        """Delete every transfer pod this process made or found (the runtime stops)."""
        for key in list(self._pods):
            pod = self._pods.pop(key)
            if pod.linger is not None:
                pod.linger.cancel()
            if pod.uid is None:
                continue
            try:
                await self._delete(*key)
            except (ApiError, httpx2.HTTPError, OSError, RuntimeUnavailable) as exc:
                log.warning("cannot delete transfer pod %s/%s: %s", *key, exc)


__all__ = ["PARALLEL", "TransferPods", "TransferRun"]
