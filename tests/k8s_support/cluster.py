"""An emulated Kubernetes cluster for tests and benchmarks: API server + kubelet, on TLS.

The API server listens on 127.0.0.1 (a port of its own) with a certificate issued by a CA
that this module generates (``trustme``), so the runtime's certificate verification and bearer
token are exercised for real. Everything runs on one event loop in a background thread; the
API can be stopped and started again on the same port while the store and the kubelet (and
the containers it runs) live on, as when a real API server restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import trustme
import uvicorn

from tests.k8s_support.apiserver import ApiServer, Store
from tests.k8s_support.exec_ws import StdinGate
from tests.k8s_support.kubelet import Kubelet, NodeSpec

T = TypeVar("T")


class EmulatedCluster:
    def __init__(
        self,
        root: Path,
        docker_host: str,
        *,
        name: str = "cluster",
        nodes: list[NodeSpec] | None = None,
        history: int = 1000,
        ca: trustme.CA | None = None,
    ) -> None:
        self.root = root
        self.name = name
        self.token = secrets.token_urlsafe(24)
        self.ca = ca or trustme.CA()
        root.mkdir(parents=True, exist_ok=True)
        self.ca_file = root / f"{name}-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.key_file = root / f"{name}-server.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(self.key_file))
        self._nodes = nodes or [NodeSpec("node-a"), NodeSpec("node-b")]
        self._history = history
        self._docker_host = docker_host
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name=f"k8s-{name}"
        )
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Future[Any] | None = None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.store: Store
        self.api: ApiServer
        self.kubelet: Kubelet

    # -------------------------------------------------------------- thread plumbing

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the cluster's loop (the store is not thread-safe)."""

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)

    def _run(self, coro: Any) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(60)

    # -------------------------------------------------------------- lifecycle

    def start(self) -> EmulatedCluster:
        self._thread.start()

        async def setup() -> None:
            self.store = Store(history=self._history)
            self.api = ApiServer(self.store, self.token)
            self.kubelet = Kubelet(self.store, self._docker_host, self.root, self._nodes, self.name)
            self.api.pod_log = self.kubelet.pod_log
            self.api.pod_metrics = self.kubelet.pod_metrics
            self.api.node_metrics = self.kubelet.node_metrics
            self.api.pod_exec = self.kubelet.exec_process

        self._run(setup())
        self.start_api()
        return self

    def start_api(self) -> None:
        async def serve() -> None:
            self.api.closing = asyncio.Event()
            config = uvicorn.Config(
                self.api.app,
                host="127.0.0.1",
                port=self.port,
                ssl_certfile=str(self.key_file),
                ssl_keyfile=str(self.key_file),
                log_level="warning",
                lifespan="off",
                timeout_graceful_shutdown=1,
                ws="websockets-sansio",  # pods/exec (websockets is a dependency of the runtime)
                access_log=False,
            )
            server = uvicorn.Server(config)
            self._server = server
            self._serving = asyncio.ensure_future(server.serve())
            while not server.started:
                if self._serving.done():
                    self._serving.result()
                await asyncio.sleep(0.01)

        self._run(serve())

    def stop_api(self) -> None:
        """The API goes away (connections cut); the kubelet and its containers go on."""

        async def stop() -> None:
            self.api.closing.set()
            if self._server is not None:
                self._server.should_exit = True
            if self._serving is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._serving, 10)
            self._server = self._serving = None

        self._run(stop())

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self.stop_api()
        self._run(self.kubelet.close())

        async def cancel_rest() -> None:
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        self._run(cancel_rest())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # -------------------------------------------------------------- for tests

    def hold_exec_stdin(self, after: int) -> None:
        """Exec sessions started from now on pass their first ``after`` bytes of stdin to
        the command and hold the rest; after :meth:`release_exec_stdin` their stdin ends
        there (a stream cut at that byte)."""

        def hold() -> None:
            self.api.stdin_gate = StdinGate(after, asyncio.Event())

        self.call(hold)

    def release_exec_stdin(self) -> None:
        def release() -> None:
            gate, self.api.stdin_gate = self.api.stdin_gate, None
            if gate is not None:
                gate.released.set()

        self.call(release)

    def hold_creates(self, plural: str, together: int) -> None:
        """The next creates of ``plural`` (``jobs``) are answered only once ``together`` of
        them are in flight (or after a few seconds): :meth:`peak_creates` then tells whether
        the client sent them at once."""
        self.call(lambda: self.api.together.__setitem__(plural, together))

    def peak_creates(self, plural: str) -> int:
        """The most creates of ``plural`` that were in flight at once."""
        return self.call(lambda: self.api.peak_creating[plural])

    def counts(self) -> Counter[str]:
        return self.call(lambda: Counter(self.api.counts))

    def requests(self) -> list[tuple[str, str, str]]:
        return self.call(lambda: list(self.api.requests))

    def objects(self, rkey: str, ns: str | None = None) -> list[dict[str, Any]]:
        import copy

        return self.call(lambda: copy.deepcopy(self.store.list(rkey, ns)))

    def env(self, runtime: str, **extra: str) -> dict[str, str]:
        """``{NAME}_*`` variables of a runtime pointed at this cluster."""
        prefix = runtime.upper().replace("-", "_") + "_"
        values = {
            "API_SERVER_HOST": self.url,
            "API_SERVER_TOKEN": self.token,
            "CA_FILE": str(self.ca_file),
            **extra,
        }
        return {prefix + k: v for k, v in values.items()}
