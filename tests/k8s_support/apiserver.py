"""A small Kubernetes API server emulator for tests: state, REST routes, watch, auth, TLS.

No real kube-apiserver can run on our machines, so this stands in for one with the behaviour
the runtime depends on: a global resourceVersion, uids, label and field selectors, watch
streams replayed from a bounded history (``410 Expired`` when a version is too old), ``Status``
errors (401, 404 NotFound, 409 AlreadyExists, 422 Invalid), the bearer token required on every
route (``/healthz`` too), and strict validation of every object it receives against the real
OpenAPI schema (``kubernetes-validate``). Every request is counted per route so tests and the
benchmark can read how many calls an activity cost.

Controllers (the test kubelet) mutate the store directly through :class:`Store`.

``pods/{name}/exec`` is served over WebSocket as the real API server serves it (see
:mod:`tests.k8s_support.exec_ws`): subprotocols ``v5.channel.k8s.io`` and ``v4.channel.k8s.io``,
the command run for real in the pod's container by the kubelet.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import json
import re
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import kubernetes_validate
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from tests.k8s_support import exec_ws

K8S_VERSION = "1.37"
HOLD_MAX = 5.0  # seconds a held create waits for the others (see ApiServer.together)
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Kind:
    group: str  # "" for core
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def rkey(self) -> str:
        return f"{self.api_version}/{self.plural}"


KINDS = [
    Kind("", "v1", "namespaces", "Namespace", False),
    Kind("", "v1", "nodes", "Node", False),
    Kind("", "v1", "serviceaccounts", "ServiceAccount", True),
    Kind("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True),
    Kind("", "v1", "configmaps", "ConfigMap", True),
    Kind("", "v1", "pods", "Pod", True),
    Kind("batch", "v1", "jobs", "Job", True),
]
BY_PATH = {(k.group, k.version, k.plural): k for k in KINDS}
BY_RKEY = {k.rkey: k for k in KINDS}


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_error(code: int, reason: str, message: str) -> JSONResponse:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return JSONResponse(body, status_code=code)


class ApiProblem(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


# ---------------------------------------------------------------- selectors


def _lookup(obj: dict[str, Any], dotted: str) -> Any:
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def parse_label_selector(text: str | None) -> Callable[[dict[str, str]], bool]:
    """``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, ``a in (x,y)``, ``a notin (x,y)``."""
    if not text:
        return lambda labels: True
    terms: list[Callable[[dict[str, str]], bool]] = []
    for raw in re.split(r",(?![^()]*\))", text):
        term = raw.strip()
        m = re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term)
        if m:
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if op == "in":
                terms.append(lambda lb, k=key, vs=values: lb.get(k) in vs)
            else:
                terms.append(lambda lb, k=key, vs=values: lb.get(k) not in vs)
        elif "!=" in term:
            key, value = (x.strip() for x in term.split("!=", 1))
            terms.append(lambda lb, k=key, v=value: lb.get(k) != v)
        elif "=" in term:
            key, value = (x.strip() for x in re.split(r"==?", term, maxsplit=1))
            terms.append(lambda lb, k=key, v=value: lb.get(k) == v)
        elif term.startswith("!"):
            terms.append(lambda lb, k=term[1:]: k not in lb)
        else:
            terms.append(lambda lb, k=term: k in lb)
    return lambda labels: all(t(labels) for t in terms)


def parse_field_selector(text: str | None) -> Callable[[dict[str, Any]], bool]:
    if not text:
        return lambda obj: True
    terms: list[tuple[str, str, bool]] = []
    for raw in text.split(","):
        neg = "!=" in raw
        key, value = re.split(r"!=|==?", raw, maxsplit=1)
        terms.append((key.strip(), value.strip(), neg))
    return lambda obj: all((str(_lookup(obj, k) or "") == v) != neg for k, v, neg in terms)


# ---------------------------------------------------------------- store


@dataclass
class Event:
    rv: int
    rkey: str
    namespace: str
    type: str
    obj: dict[str, Any]


@dataclass
class Subscriber:
    rkey: str
    namespace: str | None
    match: Callable[[dict[str, Any]], bool]
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)


class Store:
    """Objects, the resourceVersion counter and the event history (one event loop only)."""

    def __init__(self, history: int = 1000) -> None:
        self.rv = 0
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {k.rkey: {} for k in KINDS}
        self.history: deque[Event] = deque(maxlen=history)
        self.dropped = False  # has the history lost events yet (410 possible)
        self.subscribers: list[Subscriber] = []
        self.listeners: list[Callable[[Event], None]] = []

    def _emit(self, rkey: str, ns: str, kind: str, obj: dict[str, Any]) -> None:
        ev = Event(self.rv, rkey, ns, kind, copy.deepcopy(obj))
        if len(self.history) == self.history.maxlen:
            self.dropped = True
        self.history.append(ev)
        for sub in list(self.subscribers):
            if sub.rkey == rkey and (sub.namespace is None or sub.namespace == ns):
                if sub.match(ev.obj):
                    sub.queue.put_nowait(ev)
        for listener in list(self.listeners):
            listener(ev)

    def get(self, rkey: str, ns: str, name: str) -> dict[str, Any] | None:
        return self.objects[rkey].get((ns, name))

    def list(self, rkey: str, ns: str | None) -> list[dict[str, Any]]:
        return [o for (n, _), o in sorted(self.objects[rkey].items()) if ns is None or n == ns]

    def create(self, rkey: str, obj: dict[str, Any]) -> dict[str, Any]:
        kind = BY_RKEY[rkey]
        meta = obj.setdefault("metadata", {})
        ns = meta.get("namespace", "") if kind.namespaced else ""
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["generateName"] + uuid.uuid4().hex[:5]
            meta["name"] = name
        if (ns, name) in self.objects[rkey]:
            raise ApiProblem(
                409,
                "AlreadyExists",
                f'{kind.plural}.{kind.group or "core"} "{name}" already exists',
            )
        if kind.namespaced and ns not in {n for _, n in self.objects["v1/namespaces"]}:
            raise ApiProblem(404, "NotFound", f'namespaces "{ns}" not found')
        self.rv += 1
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        meta.update(
            uid=str(uuid.uuid4()),
            resourceVersion=str(self.rv),
            creationTimestamp=now_iso(),
            generation=1,
        )
        if kind.kind == "Job":
            default_job(obj)
        self.objects[rkey][(ns, name)] = obj
        self._emit(rkey, ns, "ADDED", obj)
        return obj

    def update(self, rkey: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        ns = meta.get("namespace", "") if BY_RKEY[rkey].namespaced else ""
        if (ns, meta["name"]) not in self.objects[rkey]:
            raise ApiProblem(404, "NotFound", f'"{meta["name"]}" not found')
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        self.objects[rkey][(ns, meta["name"])] = obj
        self._emit(rkey, ns, "MODIFIED", obj)
        return obj

    def delete(self, rkey: str, ns: str, name: str) -> dict[str, Any]:
        obj = self.objects[rkey].pop((ns, name), None)
        if obj is None:
            kind = BY_RKEY[rkey]
            raise ApiProblem(404, "NotFound", f'{kind.plural} "{name}" not found')
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        obj["metadata"]["deletionTimestamp"] = now_iso()
        self._emit(rkey, ns, "DELETED", obj)
        return obj


# ---------------------------------------------------------------- validation and defaulting


def validate(obj: dict[str, Any]) -> None:
    """Strict schema validation plus the name and label rules the schema does not carry."""
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise ApiProblem(
            422, "Invalid", f"{obj.get('kind')} is invalid: {where}: {exc.message}"
        ) from None
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    limit = 63 if obj.get("kind") in ("Job", "Namespace") else 253
    if not name or len(name) > limit or not _DNS_SUBDOMAIN.match(name):
        raise ApiProblem(422, "Invalid", f"metadata.name {name!r} is not a valid name")
    for labels in (meta.get("labels") or {}, _lookup(obj, "spec.template.metadata.labels") or {}):
        for k, v in labels.items():
            if len(v) > 63 or not _LABEL_VALUE.match(v) or len(k.split("/")[-1]) > 63:
                raise ApiProblem(422, "Invalid", f"label {k}={v!r} is invalid")


def default_job(job: dict[str, Any]) -> None:
    """What the API server adds to a Job: selector and the controller's pod labels."""
    meta, spec = job["metadata"], job["spec"]
    uid, name = meta["uid"], meta["name"]
    extra = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }
    tmeta = spec["template"].setdefault("metadata", {})
    tmeta.setdefault("labels", {}).update(extra)
    spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
    spec.setdefault("completions", 1)
    spec.setdefault("parallelism", 1)
    job.setdefault("status", {})


# ---------------------------------------------------------------- the ASGI app


class ApiServer:
    """Routes over a :class:`Store`; ``pod_logs`` and ``metrics`` come from the kubelet."""

    def __init__(self, store: Store, token: str) -> None:
        self.store = store
        self.token = token
        self.counts: Counter[str] = Counter()
        self.requests: list[tuple[str, str, str]] = []  # (verb, resource, name)
        self.closing = asyncio.Event()
        self.pod_log: Callable[[str, str], tuple[bytes, bool] | None] | None = None
        self.pod_metrics: Callable[[str], Awaitable[list[dict[str, Any]]]] | None = None
        self.node_metrics: Callable[[], list[dict[str, Any]]] | None = None
        self.pod_exec: exec_ws.Starter | None = None
        self.stdin_gate: exec_ws.StdinGate | None = None  # sessions started from now on
        # Creates of a resource (plural) held until that many are in flight (at most
        # HOLD_MAX seconds), and the most seen in flight at once: were they sent together?
        self.together: dict[str, int] = {}
        self.creating: Counter[str] = Counter()
        self.peak_creating: Counter[str] = Counter()
        self._arrivals: asyncio.Condition | None = None
        self.app = Starlette(
            routes=[
                WebSocketRoute("/api/v1/namespaces/{ns}/pods/{name}/exec", self.exec),
                Route(
                    "/{path:path}", self.dispatch, methods=["GET", "POST", "DELETE", "PUT", "PATCH"]
                ),
            ]
        )

    def count(self, verb: str, resource: str, name: str = "") -> None:
        self.counts[f"{verb} {resource}"] += 1
        self.requests.append((verb, resource, name))

    async def dispatch(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            self.count("unauthorized", request.url.path)
            return status_error(401, "Unauthorized", "Unauthorized")
        try:
            return await self._route(request)
        except ApiProblem as exc:
            return status_error(exc.code, exc.reason, exc.message)

    async def _route(self, request: Request) -> Response:
        path = request.path_params["path"].strip("/")
        q = request.query_params
        if path in ("healthz", "livez", "readyz"):
            self.count("get", path)
            return PlainTextResponse("ok")
        if path == "version":
            self.count("get", "version")
            return JSONResponse(
                {
                    "major": "1",
                    "minor": K8S_VERSION.split(".")[1],
                    "gitVersion": f"v{K8S_VERSION}.0-akoflow-emulator",
                }
            )
        parts = path.split("/")
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiProblem(404, "NotFound", f"the server could not find /{path}")
        ns: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        plural, name, sub = (
            rest[0],
            (rest[1] if len(rest) > 1 else None),
            (rest[2] if len(rest) > 2 else None),
        )
        if group == "metrics.k8s.io":
            return await self._metrics(plural, ns, name, q.get("labelSelector"))
        kind = BY_PATH.get((group, version, plural))
        if kind is None:
            raise ApiProblem(404, "NotFound", f"the server could not find /{path}")
        rkey = kind.rkey
        method = request.method
        if sub == "exec" and plural == "pods":
            self.count("exec", "pods", name or "")
            raise ApiProblem(400, "BadRequest", "Upgrade request required")
        if sub == "log" and plural == "pods" and method == "GET" and ns is not None and name:
            self.count("log", "pods", name)
            return await self._log(ns, name, q.get("follow") == "true")
        if method == "GET" and name is None:
            if q.get("watch") in ("true", "1"):
                self.count("watch", plural)
                return self._watch(kind, ns, q)
            self.count("list", plural)
            lmatch = parse_label_selector(q.get("labelSelector"))
            fmatch = parse_field_selector(q.get("fieldSelector"))
            items = [
                o
                for o in self.store.list(rkey, ns)
                if lmatch(o["metadata"].get("labels") or {}) and fmatch(o)
            ]
            return JSONResponse(
                {
                    "apiVersion": kind.api_version,
                    "kind": f"{kind.kind}List",
                    "metadata": {"resourceVersion": str(self.store.rv)},
                    "items": items,
                }
            )
        key_ns = ns or ""
        if method == "GET":
            self.count("get", plural, name or "")
            obj = self.store.get(rkey, key_ns, name or "")
            if obj is None:
                raise ApiProblem(404, "NotFound", f'{plural}.{group or "core"} "{name}" not found')
            return JSONResponse(obj)
        if method == "POST" and name is None:
            self.count("create", plural)
            self.creating[plural] += 1
            try:
                await self._held(plural)
            finally:
                self.creating[plural] -= 1
            body = await request.json()
            validate(body)
            if kind.namespaced:
                body["metadata"].setdefault("namespace", ns)
                if body["metadata"]["namespace"] != ns:
                    raise ApiProblem(
                        400, "BadRequest", "the namespace of the object does not match"
                    )
            created = self.store.create(rkey, body)
            return JSONResponse(created, status_code=201)
        if method == "DELETE" and name is None and ns is not None:  # deletecollection
            self.count("deletecollection", plural)
            lmatch = parse_label_selector(q.get("labelSelector"))
            policy = q.get("propagationPolicy")
            gone = []
            for obj in self.store.list(rkey, ns):
                if lmatch(obj["metadata"].get("labels") or {}):
                    gone.append(self.store.delete(rkey, ns, obj["metadata"]["name"]))
                    if kind.kind == "Job" and policy in ("Background", "Foreground"):
                        self._collect_pods(ns, obj["metadata"]["uid"])
            return JSONResponse(
                {
                    "apiVersion": kind.api_version,
                    "kind": f"{kind.kind}List",
                    "metadata": {"resourceVersion": str(self.store.rv)},
                    "items": gone,
                }
            )
        if method == "DELETE" and name:
            self.count("delete", plural, name)
            policy = q.get("propagationPolicy")
            raw = await request.body()
            if raw:
                policy = json.loads(raw).get("propagationPolicy", policy)
            obj = self.store.delete(rkey, key_ns, name)
            if kind.kind == "Job" and policy in ("Background", "Foreground"):
                self._collect_pods(key_ns, obj["metadata"]["uid"])
            return JSONResponse(obj)
        raise ApiProblem(405, "MethodNotAllowed", f"{method} is not supported here")

    async def _held(self, plural: str) -> None:
        """Note how many creates of ``plural`` are in flight; hold this one until
        ``together[plural]`` are (the first group only), or HOLD_MAX passed."""
        self.peak_creating[plural] = max(self.peak_creating[plural], self.creating[plural])
        want = self.together.get(plural)
        if not want:
            return
        if self._arrivals is None:
            self._arrivals = asyncio.Condition()
        async with self._arrivals:
            self._arrivals.notify_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._arrivals.wait_for(lambda: self.creating[plural] >= want), HOLD_MAX
                )
            self.together.pop(plural, None)

    async def exec(self, ws: WebSocket) -> None:
        """``GET pods/{name}/exec`` upgraded to WebSocket; errors before the upgrade are a
        ``Status`` with its HTTP code, as the real server answers them."""
        ns, name = ws.path_params["ns"], ws.path_params["name"]
        if ws.headers.get("authorization") != f"Bearer {self.token}":
            self.count("unauthorized", ws.url.path)
            await ws.send_denial_response(status_error(401, "Unauthorized", "Unauthorized"))
            return
        self.count("exec", "pods", name)
        assert self.pod_exec is not None
        try:
            request = exec_ws.parse_request(ws.query_params, ws.scope.get("subprotocols") or [])
            pod = self.store.get("v1/pods", ns, name)
            if pod is None:
                raise ApiProblem(404, "NotFound", f'pods "{name}" not found')
            container = exec_ws.container_of(pod, request.container)
            process = await self.pod_exec(ns, name, container, request)
        except (ApiProblem, exec_ws.Refused) as exc:
            await ws.send_denial_response(status_error(exc.code, exc.reason, exc.message))
            return
        await exec_ws.serve(ws, process, request, self.closing, self.stdin_gate)

    def _collect_pods(self, ns: str, owner_uid: str) -> None:
        """The garbage collector: pods owned by a deleted Job go too."""
        for pod in self.store.list("v1/pods", ns):
            owners = pod["metadata"].get("ownerReferences") or []
            if any(o.get("uid") == owner_uid for o in owners):
                self.store.delete("v1/pods", ns, pod["metadata"]["name"])

    def _watch(self, kind: Kind, ns: str | None, q: Any) -> Response:
        store = self.store
        lmatch = parse_label_selector(q.get("labelSelector"))
        fmatch = parse_field_selector(q.get("fieldSelector"))

        def match(o: dict[str, Any]) -> bool:
            return lmatch(o["metadata"].get("labels") or {}) and fmatch(o)

        timeout = float(q.get("timeoutSeconds") or 1800)
        rv_text = q.get("resourceVersion")
        initial: list[Event] = []
        if rv_text and rv_text != "0":
            since = int(rv_text)
            if store.dropped and store.history and store.history[0].rv > since + 1:
                gone = {
                    "type": "ERROR",
                    "object": {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "reason": "Expired",
                        "code": 410,
                        "message": f"too old resource version: {since} ({store.history[0].rv - 1})",
                    },
                }
                return Response(json.dumps(gone) + "\n", media_type="application/json")
            initial = [
                e
                for e in store.history
                if e.rv > since
                and e.rkey == kind.rkey
                and (ns is None or e.namespace == ns)
                and match(e.obj)
            ]
        else:
            initial = [
                Event(store.rv, kind.rkey, ns or "", "ADDED", copy.deepcopy(o))
                for o in store.list(kind.rkey, ns)
                if match(o)
            ]
        sub = Subscriber(kind.rkey, ns, match)
        store.subscribers.append(sub)
        closing = self.closing

        async def stream() -> AsyncIterator[bytes]:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            try:
                for ev in initial:
                    yield (json.dumps({"type": ev.type, "object": ev.obj}) + "\n").encode()
                while not closing.is_set():
                    left = deadline - loop.time()
                    if left <= 0:
                        return
                    try:
                        ev = await asyncio.wait_for(sub.queue.get(), min(left, 0.5))
                    except TimeoutError:
                        continue
                    if ev is None:
                        return
                    yield (json.dumps({"type": ev.type, "object": ev.obj}) + "\n").encode()
            finally:
                if sub in store.subscribers:
                    store.subscribers.remove(sub)

        return StreamingResponse(stream(), media_type="application/json")

    async def _log(self, ns: str, name: str, follow: bool) -> Response:
        if self.store.get("v1/pods", ns, name) is None:
            raise ApiProblem(404, "NotFound", f'pods "{name}" not found')
        assert self.pod_log is not None
        first = self.pod_log(ns, name)
        if first is None:
            raise ApiProblem(
                400,
                "BadRequest",
                f'container "activity" in pod "{name}" is waiting to start: ContainerCreating',
            )
        if not follow:
            return Response(first[0], media_type="text/plain")
        closing = self.closing
        pod_log = self.pod_log

        async def stream() -> AsyncIterator[bytes]:
            sent = 0
            while True:
                got = pod_log(ns, name)
                if got is None:
                    return
                data, done = got
                if len(data) > sent:
                    yield data[sent:]
                    sent = len(data)
                if done or closing.is_set():
                    return
                await asyncio.sleep(0.05)

        return StreamingResponse(stream(), media_type="text/plain")

    async def _metrics(
        self, plural: str, ns: str | None, name: str | None, selector: str | None
    ) -> Response:
        self.count("list" if name is None else "get", f"metrics/{plural}")
        if plural == "pods" and self.pod_metrics is not None:
            match = parse_label_selector(selector)
            items = [
                m
                for m in await self.pod_metrics(ns or "")
                if match(m["metadata"].get("labels") or {})
            ]
            kind = "PodMetrics"
        elif plural == "nodes" and self.node_metrics is not None:
            items, kind = self.node_metrics(), "NodeMetrics"
        else:
            raise ApiProblem(404, "NotFound", "the server could not find the requested resource")
        if name is not None:
            found = [m for m in items if m["metadata"]["name"] == name]
            if not found:
                raise ApiProblem(404, "NotFound", f'{plural} "{name}" not found')
            return JSONResponse(found[0])
        return JSONResponse(
            {
                "apiVersion": "metrics.k8s.io/v1beta1",
                "kind": f"{kind}List",
                "metadata": {},
                "items": items,
            }
        )
