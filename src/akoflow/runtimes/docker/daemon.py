"""The docker daemon as one runtime reaches it: one client, made on first use (the daemon
may be down at start), and a small thread pool of its own for the SDK's blocking calls, so a
daemon that hangs never blocks the event loop, the engine's default executor or another
runtime. Every call first checks that a unix socket answers (fail fast, with a plain
message) and turns a lost daemon into :class:`RuntimeUnavailable`."""

from __future__ import annotations

import asyncio
import socket
import threading
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
import docker.constants
import docker.errors
import docker.utils
import requests

from akoflow.runtimes.base import RuntimeUnavailable
from akoflow.runtimes.docker.settings import Settings

T = TypeVar("T")

PROBE_TIMEOUT = 5.0  # connecting to the daemon's unix socket
POOL_THREADS = 8


class NotSent(RuntimeUnavailable):
    """The daemon's socket refused us: no request reached it."""


def explain(exc: docker.errors.APIError) -> str:
    return str(exc.explanation or exc)


def stop(api: docker.APIClient, ref: str, timeout: int) -> bool:
    """Thread: ``docker stop`` (SIGTERM, SIGKILL after ``timeout`` seconds). False when the
    daemon answers that the container was not running (304 Not Modified: it looks before it
    signals anything), so this stop reached nothing; the SDK's own stop drops that answer."""
    path = urllib.parse.quote(ref, safe="/:")
    url = f"{api.base_url}/v{api.api_version}/containers/{path}/stop"
    wait = api.timeout + timeout if api.timeout is not None else None
    res = api.post(url, params={"t": timeout}, timeout=wait)
    if res.status_code == 304:
        return False
    try:
        res.raise_for_status()
    except requests.exceptions.HTTPError as exc:
        docker.errors.create_api_error_from_http_exception(exc)
    return True


class Daemon:
    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name  # the runtime's
        self.settings = settings
        self.where = settings.where
        self._api: docker.APIClient | None = None
        self._api_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def open(self) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix=f"akoflow-{self.name}")

    def detach(self) -> Callable[[], None]:
        """Refuse new calls from now on; the returned (blocking) function waits for the calls
        in flight, then closes the client."""
        pool, self._pool = self._pool, None

        def close() -> None:
            if pool is not None:
                pool.shutdown(wait=True)
            if self._api is not None:  # no lock: a thread stuck making one must not block us
                self._api.close()
                self._api = None

        return close

    def call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run a blocking SDK call on the pool; submitted at once (before any await)."""
        if self._pool is None:
            raise RuntimeUnavailable(f"runtime {self.name} is not started")
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._pool, self.guarded, fn, *args)

    def probe(self) -> None:
        """Fail fast, with a plain message, when a unix-socket daemon is not there (the SDK
        would also leave the failed socket unclosed)."""
        url = str(docker.utils.parse_host(self.settings.host, tls=bool(self.settings.tls_verify)))
        if not url.startswith("http+unix://"):
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(PROBE_TIMEOUT)
            try:
                sock.connect(url.removeprefix("http+unix://"))
            except OSError as exc:
                raise NotSent(
                    f"docker daemon at {self.where} is not reachable: {exc.strerror or exc}"
                ) from None

    def guarded(self, fn: Callable[..., T], *args: Any) -> T:
        """Thread: ``fn(*args)``; an unreachable daemon is :class:`RuntimeUnavailable`, an
        API error with an answer stays what it is."""
        self.probe()
        try:
            return fn(*args)
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise RuntimeUnavailable(
                f"docker daemon at {self.where} is not reachable: {exc}"
            ) from exc
        except docker.errors.DockerException as exc:
            if isinstance(exc, docker.errors.APIError) and exc.response is not None:
                raise
            raise RuntimeUnavailable(f"docker daemon at {self.where}: {exc}") from exc

    def client(self) -> docker.APIClient:
        """Thread: the one client, made on first use with the API version negotiated
        (the daemon's if older than this SDK's) unless one is configured."""
        with self._api_lock:
            if self._api is None:
                s = self.settings
                names = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
                values = (s.host, s.tls_verify, s.cert_path)
                env = {k: v for k, v in zip(names, values, strict=True) if v is not None}
                kwargs = docker.utils.kwargs_from_env(environment=env)
                version = s.api_version
                if version is None:  # negotiate: min(daemon's, this SDK's)
                    probe = docker.APIClient(
                        version=docker.constants.MINIMUM_DOCKER_API_VERSION,
                        timeout=min(s.timeout, 10),
                        **kwargs,
                    )
                    try:
                        server = str(probe.version(api_version=False)["ApiVersion"])
                    finally:
                        probe.close()
                    newest = docker.constants.DEFAULT_DOCKER_API_VERSION
                    version = server if docker.utils.version_lt(server, newest) else newest
                self._api = docker.APIClient(version=version, timeout=s.timeout, **kwargs)
            return self._api

    def inspect(self, ref: str) -> dict[str, Any] | None:
        """Thread: the container's ``inspect``; None if there is none."""
        try:
            info: dict[str, Any] = self.client().inspect_container(ref)
        except docker.errors.NotFound:
            return None
        return info
