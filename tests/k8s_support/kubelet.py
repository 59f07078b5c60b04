"""The test "job controller + scheduler + kubelet" of the emulated cluster.

For each Job it creates a Pod (owned by the Job, labelled like the real controller does),
schedules it on a node matching its nodeSelector (else ``Unschedulable``), and runs its
container FOR REAL on the private dockerd of the tests (``--network none``, no pull, memory and
CPU limits from the pod's limits, each PVC a host directory bind-mounted). An image the daemon
does not have gives ``ErrImagePull`` then ``ImagePullBackOff``. The container's output is
streamed into a log file served by ``pods/{name}/log``; when it exits, the Pod gets
``state.terminated.exitCode`` and the Job the ``Complete`` or ``Failed`` condition, in that
order, as a real cluster would. Deleting a Pod removes its container. A Pod created through
the API on its own (no owning Job: a transfer pod, say) is scheduled and run the same way.
``pods/exec`` runs ``docker exec`` in a running pod's container (:meth:`Kubelet.exec_process`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

from akoflow.spec.quantities import parse_cpu, parse_memory
from tests.k8s_support.apiserver import Event, Store, now_iso
from tests.k8s_support.exec_ws import ExecRequest, Refused

log = logging.getLogger(__name__)
LABEL = "akoflow-test.kubelet"
# Images every node has as if pulled (the private dockerd cannot pull): the runtime's default
# image, which its transfer pods use unless {NAME}_TRANSFER_IMAGE says otherwise.
PRELOADED = {"busybox:stable": "akoflow-test/busybox:1"}


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' variable expansion of container command, args and env values: ``$(NAME)``
    becomes NAME's value when it is defined (else stays as written), ``$$`` becomes ``$``, any
    other ``$`` stays."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2 : close]
                out.append(env.get(name, f"$({name})"))
                i = close + 1
        else:
            out.append("$" + following)
            i += 2
    return "".join(out)


@dataclass
class NodeSpec:
    name: str
    cpu: str = "2"
    memory: str = "4Gi"


@dataclass
class _Pod:
    ns: str
    name: str
    log: Path
    container: str | None = None
    running: bool = False  # its container started and not yet ended
    done: bool = False
    deleted: bool = False
    started: float = field(default_factory=time.monotonic)


class Kubelet:
    def __init__(
        self,
        store: Store,
        docker_host: str,
        root: Path,
        nodes: list[NodeSpec],
        cluster_id: str,
    ) -> None:
        self.store = store
        self.root = root
        self.nodes = nodes
        self.cluster_id = cluster_id
        self._docker_host = docker_host
        self._local = threading.local()
        self._clients: list[docker.APIClient] = []
        self._clients_lock = threading.Lock()
        self.pods: dict[tuple[str, str], _Pod] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        store.listeners.append(self._on_event)
        for n in nodes:
            self._add_node(n)
        for name, source in PRELOADED.items():
            if not self._has_image(name) and self._has_image(source):
                repository, _, tag = name.rpartition(":")
                self.api.tag(source, repository, tag)

    @property
    def api(self) -> docker.APIClient:
        """One client per thread (requests sessions are not thread-safe)."""
        api = getattr(self._local, "api", None)
        if api is None:
            api = docker.APIClient(base_url=self._docker_host, version="1.41", timeout=60)
            self._local.api = api
            with self._clients_lock:
                self._clients.append(api)
        return api

    def _add_node(self, n: NodeSpec) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": n.name, "labels": {"kubernetes.io/hostname": n.name}},
            "spec": {},
            "status": {
                "capacity": {"cpu": n.cpu, "memory": n.memory, "pods": "110"},
                "allocatable": {"cpu": n.cpu, "memory": n.memory, "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            },
        }
        self.store.create("v1/nodes", node)

    # ------------------------------------------------------------------ events

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_event(self, ev: Event) -> None:
        if ev.rkey == "batch/v1/jobs" and ev.type == "ADDED":
            self._spawn(self._run_job(ev.namespace, ev.obj["metadata"]["name"]))
        elif ev.rkey == "v1/pods" and ev.type == "ADDED":
            owners = ev.obj["metadata"].get("ownerReferences") or []
            if not any(o.get("kind") == "Job" for o in owners):  # a Job's pod is run by _run_job
                self._spawn(self._run_bare_pod(ev.namespace, ev.obj["metadata"]["name"]))
        elif ev.rkey == "v1/pods" and ev.type == "DELETED":
            pod = self.pods.get((ev.namespace, ev.obj["metadata"]["name"]))
            if pod is not None:
                pod.deleted = True
                if pod.container:
                    spec = ev.obj.get("spec") or {}
                    grace = int(spec.get("terminationGracePeriodSeconds", 30))
                    self._spawn(asyncio.to_thread(self._remove, pod.container, grace))

    def _remove(self, cid: str, grace: int = 0) -> None:
        """As a kubelet deleting a pod: SIGTERM to the container's PID 1, SIGKILL after the
        grace period (0: at once), then the container is gone."""
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            if grace:
                self.api.stop(cid, timeout=grace)
            self.api.remove_container(cid, force=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for pod in self.pods.values():
            if pod.container:
                await asyncio.to_thread(self._remove, pod.container)
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for api in clients:
            api.close()

    # ------------------------------------------------------------------ pod lifecycle

    def _set_pod_status(self, ns: str, name: str, status: dict[str, Any]) -> bool:
        pod = self.store.get("v1/pods", ns, name)
        if pod is None:
            return False
        pod["status"] = status
        self.store.update("v1/pods", pod)
        return True

    def _schedule(self, spec: dict[str, Any]) -> str | None:
        selector = spec.get("nodeSelector") or {}
        for n in self.nodes:
            labels = {"kubernetes.io/hostname": n.name}
            if all(labels.get(k) == v for k, v in selector.items()):
                return n.name
        return None

    async def _run_job(self, ns: str, job_name: str) -> None:
        job = self.store.get("batch/v1/jobs", ns, job_name)
        if job is None:
            return
        template = job["spec"]["template"]
        pod_name = f"{job_name[:57]}-{secrets.token_hex(3)[:5]}"
        spec = dict(template["spec"])
        node = self._schedule(spec)
        if node:
            spec["nodeName"] = node
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": ns,
                "labels": dict(template["metadata"].get("labels") or {}),
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": job_name,
                        "uid": job["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": spec,
            "status": {"phase": "Pending"},
        }
        self.store.create("v1/pods", pod)
        self._set_job_status(ns, job_name, {"active": 1, "startTime": now_iso()})
        p = self._track(ns, pod_name)

        def job_ended(code: int) -> None:
            if code == 0:
                cond = {"type": "Complete", "status": "True", "lastTransitionTime": now_iso()}
                self._set_job_status(
                    ns,
                    job_name,
                    {"succeeded": 1, "completionTime": now_iso(), "conditions": [cond]},
                )
            else:
                cond = {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                    "lastTransitionTime": now_iso(),
                }
                self._set_job_status(ns, job_name, {"failed": 1, "conditions": [cond]})

        await self._run_pod(p, spec, node, job_ended)

    def _track(self, ns: str, pod_name: str) -> _Pod:
        p = _Pod(ns, pod_name, self.root / "logs" / f"{self.cluster_id}-{ns}-{pod_name}.log")
        self.pods[(ns, pod_name)] = p
        return p

    async def _run_bare_pod(self, ns: str, pod_name: str) -> None:
        """A Pod created through the API: the scheduler binds it (``spec.nodeName``), then it
        runs as a Job's pod does."""
        pod = self.store.get("v1/pods", ns, pod_name)
        if pod is None:
            return
        p = self._track(ns, pod_name)
        spec = pod["spec"]
        node = spec.get("nodeName") or self._schedule(spec)
        if node and not spec.get("nodeName"):
            spec["nodeName"] = node
            pod["status"] = {"phase": "Pending"}
            self.store.update("v1/pods", pod)
        await self._run_pod(p, dict(spec), node, lambda code: None)

    async def _run_pod(
        self,
        p: _Pod,
        spec: dict[str, Any],
        node: str | None,
        ended: Callable[[int], None],
    ) -> None:
        """Runs a created pod's first container; ``ended(exit code)`` once the pod's final
        status is written (the Job's status goes after it), before the container is removed."""
        ns, pod_name = p.ns, p.name
        if node is None:
            self._set_pod_status(
                ns,
                pod_name,
                {
                    "phase": "Pending",
                    "conditions": [
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "Unschedulable",
                            "message": f"0/{len(self.nodes)} nodes are available: node(s) didn't "
                            "match Pod's node affinity/selector",
                        }
                    ],
                },
            )
            return
        container = spec["containers"][0]
        image = container["image"]
        if not await asyncio.to_thread(self._has_image, image):
            await self._image_pull_failure(p, container["name"], image)
            return
        try:
            cid = await asyncio.to_thread(self._create_container, p, spec, container)
        except Exception as exc:  # report it like a kubelet would
            self._set_pod_status(
                ns,
                pod_name,
                self._waiting(container["name"], image, "CreateContainerError", str(exc)),
            )
            return
        p.container = cid
        if p.deleted:
            await asyncio.to_thread(self._remove, cid)
            return
        await asyncio.to_thread(self.api.start, cid)
        p.running = True
        started = now_iso()
        self._set_pod_status(
            ns,
            pod_name,
            {
                "phase": "Running",
                "startTime": started,
                "hostIP": "198.18.0.1",
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "True"},
                ],
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": image,
                        "imageID": image,
                        "ready": True,
                        "restartCount": 0,
                        "started": True,
                        "state": {"running": {"startedAt": started}},
                    }
                ],
            },
        )
        code, oom = await asyncio.to_thread(self._follow_and_wait, p, cid)
        p.running = False
        p.done = True
        if p.deleted:
            return
        reason = "OOMKilled" if oom else ("Completed" if code == 0 else "Error")
        self._set_pod_status(
            ns,
            pod_name,
            {
                "phase": "Succeeded" if code == 0 else "Failed",
                "startTime": started,
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "False"},
                ],
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": image,
                        "imageID": image,
                        "ready": False,
                        "restartCount": 0,
                        "started": False,
                        "state": {
                            "terminated": {
                                "exitCode": code,
                                "reason": reason,
                                "startedAt": started,
                                "finishedAt": now_iso(),
                            }
                        },
                    }
                ],
            },
        )
        ended(code)
        await asyncio.to_thread(self._remove, cid)

    def _set_job_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        job = self.store.get("batch/v1/jobs", ns, name)
        if job is not None:
            job["status"] = {**job.get("status", {}), **status}
            if "conditions" in status:
                job["status"].pop("active", None)
            self.store.update("batch/v1/jobs", job)

    @staticmethod
    def _waiting(cname: str, image: str, reason: str, message: str) -> dict[str, Any]:
        return {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [
                {
                    "name": cname,
                    "image": image,
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "started": False,
                    "state": {"waiting": {"reason": reason, "message": message}},
                }
            ],
        }

    async def _image_pull_failure(self, p: _Pod, cname: str, image: str) -> None:
        msg = f'Failed to pull image "{image}": not found in the test cluster'
        self._set_pod_status(p.ns, p.name, self._waiting(cname, image, "ErrImagePull", msg))
        await asyncio.sleep(0.5)
        backoff = f'Back-off pulling image "{image}"'
        self._set_pod_status(p.ns, p.name, self._waiting(cname, image, "ImagePullBackOff", backoff))

    # ------------------------------------------------------------------ docker (threads)

    def _has_image(self, image: str) -> bool:
        try:
            self.api.inspect_image(image)  # type: ignore[no-untyped-call]
        except docker.errors.ImageNotFound:
            return False
        return True

    def pvc_dir(self, ns: str, claim: str) -> Path:
        return self.root / "pv" / self.cluster_id / ns / claim

    def _create_container(self, p: _Pod, spec: dict[str, Any], c: dict[str, Any]) -> str:
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        binds = []
        for m in c.get("volumeMounts") or []:
            v = volumes[m["name"]]
            claim = v["persistentVolumeClaim"]["claimName"]
            if self.store.get("v1/persistentvolumeclaims", p.ns, claim) is None:
                raise RuntimeError(f'persistentvolumeclaim "{claim}" not found')
            host = self.pvc_dir(p.ns, claim)
            host.mkdir(parents=True, exist_ok=True)
            binds.append(f"{host}:{m['mountPath']}")
        limits = (c.get("resources") or {}).get("limits") or {}
        mem = parse_memory(limits["memory"]) if "memory" in limits else None
        cpu = parse_cpu(limits["cpu"]) if "cpu" in limits else None
        host_config = self.api.create_host_config(
            binds=binds,
            network_mode="none",
            mem_limit=mem,
            memswap_limit=mem,
            nano_cpus=round(cpu * 1e9) if cpu else None,
        )
        # As a real kubelet: $(VAR) references in env values (to the variables defined
        # before) and in command/args are expanded; $$ stands for $.
        environment: dict[str, str] = {}
        for e in c.get("env") or []:
            environment[e["name"]] = expand(e.get("value", ""), environment)
        argv = [
            expand(a, environment) for a in list(c.get("command") or []) + list(c.get("args") or [])
        ]
        created = self.api.create_container(
            c["image"],
            command=argv[1:],
            entrypoint=argv[:1],
            environment=environment,
            working_dir=c.get("workingDir"),
            host_config=host_config,
            labels={LABEL: self.cluster_id, "pod": p.name},
        )
        return str(created["Id"])

    def _follow_and_wait(self, p: _Pod, cid: str) -> tuple[int, bool]:
        p.log.parent.mkdir(parents=True, exist_ok=True)
        with open(p.log, "ab") as f:
            try:
                for chunk in self.api.logs(cid, stream=True, follow=True):
                    f.write(chunk)
                    f.flush()
            except docker.errors.APIError:
                pass
        try:
            code = int(self.api.wait(cid, timeout=3600)["StatusCode"])
            oom = bool(self.api.inspect_container(cid)["State"].get("OOMKilled"))
        except docker.errors.NotFound:
            return 137, False
        return code, oom

    # ------------------------------------------------------------------ for the API server

    async def exec_process(
        self, ns: str, name: str, container: str, request: ExecRequest
    ) -> asyncio.subprocess.Process:
        """The command of a ``pods/exec`` started in the pod's running container (``docker
        exec``, so it sees the pod's volumes where the pod mounts them); refused as the real
        API server refuses it when the container is not running."""
        p = self.pods.get((ns, name))
        if p is None or not p.running or p.container is None or p.deleted:
            pod = self.store.get("v1/pods", ns, name) or {}
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                message = (
                    f"cannot exec into a container in a completed pod; current phase is {phase}"
                )
            else:
                message = f'unable to upgrade connection: container not found ("{container}")'
            raise Refused(400, "BadRequest", message)
        docker_cli = shutil.which("docker")
        if docker_cli is None:
            raise Refused(500, "InternalError", "the docker CLI is not installed")
        argv = [docker_cli, "-H", self._docker_host, "exec"]
        if request.stdin:
            argv.append("-i")
        argv += [p.container, *request.command]
        pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=pipe if request.stdin else devnull,
            stdout=pipe if request.stdout else devnull,
            stderr=pipe if request.stderr else devnull,
        )

    def pod_log(self, ns: str, name: str) -> tuple[bytes, bool] | None:
        """(log so far, complete) of a started pod; None before it started."""
        p = self.pods.get((ns, name))
        if p is None or p.container is None:
            return None
        try:
            data = p.log.read_bytes()
        except FileNotFoundError:
            data = b""
        return data, p.done or p.deleted

    async def pod_metrics(self, ns: str) -> list[dict[str, Any]]:
        running = []
        for (pns, name), p in list(self.pods.items()):
            pod = self.store.get("v1/pods", pns, name)
            if pns == ns and pod is not None and p.container and not (p.done or p.deleted):
                running.append((name, p, dict(pod["metadata"].get("labels") or {})))
        items = []
        for name, p, labels in running:
            try:
                stats = await asyncio.to_thread(
                    self.api.stats, p.container, stream=False, one_shot=True
                )
            except Exception:
                continue
            mem = (stats.get("memory_stats") or {}).get("usage") or 0
            if not mem:  # stopped meanwhile: metrics-server has no sample for it either
                continue
            cpu_ns = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0
            elapsed = max(time.monotonic() - p.started, 1e-3)
            usage = {"cpu": f"{int(cpu_ns / elapsed)}n", "memory": f"{int(mem) // 1024}Ki"}
            items.append(
                {
                    "metadata": {
                        "name": name,
                        "namespace": ns,
                        "labels": labels,
                        "creationTimestamp": now_iso(),
                    },
                    "timestamp": now_iso(),
                    "window": "15s",
                    "containers": [{"name": "activity", "usage": usage}],
                }
            )
        return items

    def node_metrics(self) -> list[dict[str, Any]]:
        return [
            {
                "metadata": {"name": n.name, "creationTimestamp": now_iso()},
                "timestamp": now_iso(),
                "window": "15s",
                "usage": {"cpu": "50m", "memory": "262144Ki"},
            }
            for n in self.nodes
        ]
