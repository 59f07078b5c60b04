"""Docker runtime: one container per attempt on a Docker daemon, through the official SDK.

- The SDK blocks; every call runs on this runtime's own small thread pool, so a daemon that
  hangs never blocks the event loop, the engine's default executor or another runtime.
- The script never reaches a command line: it is a file of the attempt, bind-mounted read-only
  and run by a constant wrapper, ``exec "$0" /.akoflow/script.sh >out/stdout 2>out/stderr``
  (``$0`` is the configured shell). Output goes to files of the attempt, so logs are read by
  byte offset, survive the container's removal and do not depend on the daemon's log driver.
- Ends are pushed: one thread per runtime follows the daemon's event stream (``die`` of
  containers labelled ``akoflow.key``); after every (re)connection it inspects the containers
  it tracks, so an end during a disconnection is not missed. No polling per container.
- Crash safety: the container name is deterministic and ``create`` is atomic by name; only
  the container's wrapper creates its output files; the exit code is written to
  ``<prefix>.exit`` before an end is reported. No container and no output: it never ran, and
  it never will (nothing else creates that name).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.constants
import docker.errors
import docker.utils
import requests
from docker.types import Mount

from akoflow.config import RuntimeConfig
from akoflow.errors import SettingError
from akoflow.runtimes.backoff import Backoff
from akoflow.runtimes.base import (
    Adopted,
    Health,
    JobSpec,
    JobStatus,
    Metrics,
    NodeInfo,
    Outcome,
    Runtime,
    RuntimeUnavailable,
    SubmitError,
)
from akoflow.runtimes.scope import existing_scope, scope_of, scoped

log = logging.getLogger(__name__)
T = TypeVar("T")

CONTROL_DIR = "/.akoflow"  # reserved in the container: the script and the output dir
SCRIPT_PATH = f"{CONTROL_DIR}/script.sh"
OUT_DIR = f"{CONTROL_DIR}/out"
WRAPPER = f'exec "$0" {SCRIPT_PATH} >{OUT_DIR}/stdout 2>{OUT_DIR}/stderr'
DEFAULT_MOUNT = "/data"
LABEL_KEY = "akoflow.key"
LABEL_SCOPE = "akoflow.scope"
STREAMS = ("stdout", "stderr")
LOG_READ_MAX = 8 << 20  # bytes per stream and call, as the local runtime
PULL_POLICIES = ("never", "if-missing", "always")
CLEANUPS = ("always", "on-success", "never")
HEALTH_TIMEOUT = 5.0
POOL_THREADS = 8
WRAPPER_LOG_TAIL = 50  # lines of the container's own output kept when it fails
_BAD_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_.-]")


def container_name(job: JobSpec) -> str:
    """``akoflow-<scope>-<key>``: the run's scope tells apart state dirs (users, test runs, a
    state dir made again at the same path) that share one daemon: same key, other run."""
    scope = job.scope or scope_of(job.attempt_dir)
    return _BAD_NAME_CHARS.sub("-", f"akoflow-{scope}-{job.key}")


@dataclass(frozen=True, slots=True)
class _Settings:
    host: str | None = None
    tls_verify: str | None = None
    cert_path: str | None = None
    api_version: str | None = None
    timeout: int = 60
    network: str = "none"
    shell: str = "sh"
    pull_policy: str = "if-missing"
    pull_timeout: int = 600
    cleanup: str = "always"
    stop_timeout: int = 5
    init: bool = True


def _read_settings(config: RuntimeConfig) -> _Settings:
    """``{NAME}_*`` settings. Without ``{NAME}_HOST``, the daemon is the one the standard
    ``DOCKER_HOST``/``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH`` name (else the default socket)."""
    text = config.get_text
    std = {} if text("HOST") is not None else os.environ
    return _Settings(
        host=text("HOST", std.get("DOCKER_HOST") or None),
        tls_verify=text("TLS_VERIFY", std.get("DOCKER_TLS_VERIFY")),
        cert_path=text("CERT_PATH", std.get("DOCKER_CERT_PATH")),
        api_version=text("API_VERSION"),
        timeout=config.get_int("TIMEOUT", 60, minimum=1),
        network=text("NETWORK") or "none",
        shell=text("SHELL") or "sh",
        pull_policy=config.get_choice("PULL_POLICY", PULL_POLICIES, "if-missing"),
        pull_timeout=config.get_int("PULL_TIMEOUT", 600, minimum=1),
        cleanup=config.get_choice("CLEANUP", CLEANUPS, "always"),
        stop_timeout=config.get_int("STOP_TIMEOUT", 5, minimum=0),
        init=config.get_bool("INIT", True),
    )


class _Job:
    __slots__ = ("cancelled", "cid", "held", "key", "prefix", "started")

    def __init__(self, key: str, cid: str, prefix: str, started: float | None) -> None:
        self.key = key
        self.cid = cid
        self.prefix = prefix  # attempt files: prefix + ".sh", ".out/stdout", ".exit"
        self.started = started  # monotonic start, for the first CPU sample (None: adopted)
        self.cancelled = False
        # While adopt() has not returned, the engine does not know the key yet: an end seen
        # meanwhile waits here (code, oom, note) and is reported right after.
        self.held: list[tuple[int | None, bool, str | None]] | None = None


def _ran(prefix: str) -> bool:
    """Only the container's wrapper creates these files: they exist iff it has run."""
    return any(os.path.exists(f"{prefix}.out/{s}") for s in STREAMS)


def _write_exit_record(prefix: str, code: int | None, oom: bool) -> None:
    tmp = f"{prefix}.exit.tmp"
    with open(tmp, "w") as f:
        json.dump({"exit_code": code, "oom": oom}, f)
    os.replace(tmp, f"{prefix}.exit")


def _read_exit_record(prefix: str) -> tuple[int | None, bool] | None:
    try:
        with open(f"{prefix}.exit") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    code = record.get("exit_code")
    return (code if isinstance(code, int) else None), bool(record.get("oom"))


def _exit_of(info: Mapping[str, Any]) -> tuple[int, bool]:
    """(exit code, OOM-killed) of an inspected container that is not running."""
    state = info["State"]
    return int(state.get("ExitCode", -1)), bool(state.get("OOMKilled"))


def _outcome(
    code: int | None, oom: bool, *, cancelled: bool = False, note: str | None = None
) -> Outcome:
    if code == 0 and not cancelled:
        return Outcome(True, 0)  # a child OOM-killed while the script went on is not a failure
    if cancelled:
        reason = "cancelled"
    elif code is None:
        reason = "the container ended but its exit code was lost"
    elif oom:
        reason = "out of memory"
    else:
        reason = f"exit code {code}"
        if 128 < code < 128 + signal.NSIG:
            with contextlib.suppress(ValueError):  # real-time signals have no name
                reason += f" (killed by {signal.Signals(code - 128).name})"
    return Outcome(False, code, f"{reason}; {note}" if note else reason)


class _NotSent(RuntimeUnavailable):
    """The daemon's socket refused us: no request reached it."""


def _explain(exc: docker.errors.APIError) -> str:
    return str(exc.explanation or exc)


class DockerRuntime(Runtime):
    kind = "docker"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._config_error: str | None = None
        try:
            self._s = _read_settings(self.config)
        except SettingError as exc:
            self._s, self._config_error = _Settings(), str(exc)
        self._api: docker.APIClient | None = None
        self._api_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: dict[str, _Job] = {}  # key -> running container (changed on the loop only)
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._stream: Any = None
        self._images: set[str] = set()  # present on the daemon (not re-checked per submit)
        self._pulls: dict[str, asyncio.Future[None]] = {}
        self._cpu: dict[str, tuple[int, float]] = {}  # key -> (cpu ns, monotonic) last sample
        self._node: str | None = None

    @property
    def _where(self) -> str:
        return self._s.host or "unix:///var/run/docker.sock"

    def _probe(self) -> None:
        """Fail fast, with a plain message, when a unix-socket daemon is not there (the SDK
        would also leave the failed socket unclosed)."""
        url = str(docker.utils.parse_host(self._s.host, tls=bool(self._s.tls_verify)))
        if not url.startswith("http+unix://"):
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(HEALTH_TIMEOUT)
            try:
                sock.connect(url.removeprefix("http+unix://"))
            except OSError as exc:
                raise _NotSent(
                    f"docker daemon at {self._where} is not reachable: {exc.strerror or exc}"
                ) from None

    # ------------------------------------------------------------------ plumbing

    def _client(self) -> docker.APIClient:
        """The runtime's one client, made on first use (the daemon may be down at start)."""
        with self._api_lock:
            if self._api is None:
                names = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
                values = (self._s.host, self._s.tls_verify, self._s.cert_path)
                env = {k: v for k, v in zip(names, values, strict=True) if v is not None}
                kwargs = docker.utils.kwargs_from_env(environment=env)
                version = self._s.api_version
                if version is None:  # negotiate: min(daemon's, this SDK's)
                    probe = docker.APIClient(
                        version=docker.constants.MINIMUM_DOCKER_API_VERSION,
                        timeout=min(self._s.timeout, 10),
                        **kwargs,
                    )
                    try:
                        server = str(probe.version(api_version=False)["ApiVersion"])
                    finally:
                        probe.close()
                    newest = docker.constants.DEFAULT_DOCKER_API_VERSION
                    version = server if docker.utils.version_lt(server, newest) else newest
                self._api = docker.APIClient(version=version, timeout=self._s.timeout, **kwargs)
            return self._api

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        self._probe()
        try:
            return fn(*args)
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise RuntimeUnavailable(
                f"docker daemon at {self._where} is not reachable: {exc}"
            ) from exc
        except docker.errors.DockerException as exc:
            if isinstance(exc, docker.errors.APIError) and exc.response is not None:
                raise
            raise RuntimeUnavailable(f"docker daemon at {self._where}: {exc}") from exc

    def _call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run a blocking SDK call on the pool; submitted at once (before any await)."""
        if self._pool is None:
            raise RuntimeUnavailable(f"runtime {self.name} is not started")
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._pool, self._guarded, fn, *args)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        """From a thread: run ``fn`` on the event loop."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed: the engine is gone
                self._loop.call_soon_threadsafe(fn, *args)

    def _inspect(self, ref: str) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = self._client().inspect_container(ref)
        except docker.errors.NotFound:
            return None
        return info

    def _checked(self) -> _Settings:
        if self._config_error:
            raise SubmitError(self._config_error)
        return self._s

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix=f"akoflow-{self.name}")
        if self._watcher is None:
            self._stopping.clear()
            self._watcher = threading.Thread(
                target=self._watch, name=f"akoflow-{self.name}-events", daemon=True
            )
            self._watcher.start()

    async def stop(self) -> None:
        """Containers keep running (a restarted engine adopts them); removals in flight end."""
        self._stopping.set()
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        watcher, pool = self._watcher, self._pool
        self._watcher = self._pool = None
        self._jobs.clear()

        def shutdown() -> None:
            if watcher is not None:
                watcher.join(timeout=5)
            if pool is not None:
                pool.shutdown(wait=True)
            if self._api is not None:
                self._api.close()
                self._api = None

        await asyncio.to_thread(shutdown)

    # ------------------------------------------------------------------ completion

    def _watch(self) -> None:
        """Thread: follow ``die`` events; reconnect (and re-inspect what we track) when the
        stream drops, e.g. while the daemon restarts."""
        since = int(time.time()) - 2  # replay a little: the stream may start after a start
        backoff, unreachable = Backoff(0.1, 2.0), False
        while not self._stopping.is_set():
            try:
                self._probe()
                stream = self._client().events(
                    since=since,
                    filters={"type": "container", "event": ["die"], "label": [LABEL_KEY]},
                    decode=True,
                )
            except Exception as exc:
                log.debug("docker events of %s: %s", self.name, exc)
                unreachable = True
                self._stopping.wait(backoff.next())
                continue
            self._stream, connected = stream, time.monotonic()
            try:
                if self._stopping.is_set():
                    break
                self._sweep(
                    "it ended while the docker daemon was unreachable" if unreachable else None
                )
                unreachable = False
                for event in stream:
                    since = max(since, int(event.get("time") or since))
                    attrs = (event.get("Actor") or {}).get("Attributes") or {}
                    job = self._jobs.get(str(attrs.get(LABEL_KEY)))
                    if job is not None and job.cid == event.get("id"):
                        self._collect(job, self._inspect(job.cid), attrs.get("exitCode"))
            except Exception as exc:
                log.debug("docker event stream of %s ended: %s", self.name, exc)
            finally:
                self._stream = None
                with contextlib.suppress(Exception):
                    stream.close()
            if time.monotonic() - connected < 1.0:  # a stream that keeps failing: back off
                self._stopping.wait(backoff.next())
            else:
                backoff.reset()

    def _sweep(self, note: str | None) -> None:
        for job in self._jobs.copy().values():
            try:
                self._recheck(job, note)
            except docker.errors.APIError as exc:  # this one only; a lost daemon propagates
                log.warning("cannot inspect the container of %s: %s", job.key, _explain(exc))

    def _recheck(self, job: _Job, note: str | None = None) -> None:
        info = self._inspect(job.cid)
        if info is None or not info["State"].get("Running"):
            self._collect(job, info, None, note)

    def _collect(
        self, job: _Job, info: dict[str, Any] | None, event_code: Any, note: str | None = None
    ) -> None:
        """Thread: record how a container ended, then report it on the loop."""
        code: int | None
        if info is not None:
            if info["State"].get("Running"):
                return
            code, oom = _exit_of(info)
            if code:
                self._keep_wrapper_output(job)
        else:  # removed behind our back: the event's code is all there is
            code = int(event_code) if str(event_code).lstrip("-").isdigit() else None
            oom = False
            note = note or "the container was removed before AkôFlow collected it"
        try:
            _write_exit_record(job.prefix, code, oom)
        except OSError as exc:  # e.g. the run dir was deleted: still report the end
            log.warning("cannot record the exit code of %s: %s", job.key, exc)
        self._post(self._finished, job, code, oom, note)

    def _keep_wrapper_output(self, job: _Job) -> None:
        """What the container itself printed (the wrapper's own errors, e.g. a read-only
        output dir) goes to the end of the attempt's stderr."""
        with contextlib.suppress(Exception):
            data = self._client().logs(job.cid, stdout=True, stderr=True, tail=WRAPPER_LOG_TAIL)
            if data:
                with open(f"{job.prefix}.out/stderr", "ab") as f:
                    f.write(data)

    def _finished(self, job: _Job, code: int | None, oom: bool, note: str | None) -> None:
        if self._jobs.get(job.key) is not job:
            return  # already reported (event and sweep both saw it)
        if job.held is not None:
            job.held.append((code, oom, note))
            return
        del self._jobs[job.key]
        self._cpu.pop(job.key, None)
        self.events.job_finished(job.key, _outcome(code, oom, cancelled=job.cancelled, note=note))

    def _track(self, key: str, cid: str, prefix: str, started: float | None) -> _Job:
        job = _Job(key, cid, prefix, started)
        self._jobs[key] = job
        return job

    def _unhold(self, job: _Job) -> None:
        held, job.held = job.held or [], None
        for code, oom, note in held[:1]:
            self._finished(job, code, oom, note)

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
        info = await self._call(self._inspect, name)
        if info is not None:  # idempotent by key: this attempt's container exists
            return await self._take_over(job, info, handle)
        if _ran(prefix):
            raise SubmitError(f"attempt {job.key} already ran once; not starting it again")
        await self._ensure_image(image, settings)
        Path(prefix + ".out").mkdir(exist_ok=True)
        Path(prefix + ".sh").write_bytes(job.activity.run.encode())
        try:
            cid = await self._call(self._create, job, image, name, settings)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # created meanwhile under this name
                info = await self._call(self._inspect, name)
                if info is not None:
                    return await self._take_over(job, info, handle)
            if exc.status_code == 404:
                self._images.discard(image)
            raise SubmitError(f"cannot create the container: {_explain(exc)}") from exc
        self._track(job.key, cid, prefix, time.monotonic())
        await self._start(job.key, cid)
        return {**handle, "id": cid}

    async def _start(self, key: str, cid: str) -> None:
        try:
            await self._call(lambda: self._client().start(cid))
        except Exception as exc:
            self._jobs.pop(key, None)
            if isinstance(exc, _NotSent):
                raise  # transient: the created container never starts; a new attempt will
            if isinstance(exc, docker.errors.APIError):
                with contextlib.suppress(Exception):
                    await self._call(lambda: self._client().remove_container(cid, force=True))
                raise SubmitError(f"cannot start the container: {_explain(exc)}") from exc
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
        """Track an existing container as ``job``'s. Only if it is: its key label is the
        attempt's and its scope label the run's (the same key of another run, e.g. of an old
        state dir at the same path, is not ours), or it is the very container the submission
        recorded (``recorded``: its id; older versions labelled another scope)."""
        labels = info.get("Config", {}).get("Labels") or {}
        ours = labels.get(LABEL_SCOPE) == job.scope or (recorded and info["Id"] == recorded)
        if labels.get(LABEL_KEY) != job.key or not ours:
            raise SubmitError(
                f"container {handle['name']} exists but is not attempt {job.key} of this run"
            )
        cid = str(info["Id"])
        tracked = self._track(job.key, cid, str(job.attempt_prefix), None)
        if hold:
            tracked.held = []
        if info["State"].get("Status") == "created":  # the engine died between create and start
            tracked.started = time.monotonic()
            await self._start(job.key, cid)
        else:  # it may have ended before we tracked it: the event could be gone
            await self._call(self._recheck, tracked)
        return {**handle, "id": cid}

    def _create(self, job: JobSpec, image: str, name: str, settings: _Settings) -> str:
        """Thread: create (not start) the attempt's container."""
        api = self._client()
        act, prefix = job.activity, str(job.attempt_prefix)
        mount = act.mount_path or DEFAULT_MOUNT
        env = {**job.env, "ACTIVITY_MOUNT_PATH": mount, "AKOFLOW_DATA_DIR": mount, **act.env}
        mem = act.memory_bytes
        host_config = api.create_host_config(
            mounts=[
                Mount(mount, os.path.abspath(job.data_dir), type="bind"),
                Mount(SCRIPT_PATH, os.path.abspath(prefix + ".sh"), type="bind", read_only=True),
                Mount(OUT_DIR, os.path.abspath(prefix + ".out"), type="bind"),
            ],
            nano_cpus=round(act.cpu_cores * 1e9) if act.cpu_cores else None,
            mem_limit=mem,
            memswap_limit=mem,  # no swap beyond the limit: over it is out of memory
            network_mode=settings.network,
            init=settings.init,  # tini as PID 1: SIGTERM reaches the script's shell
        )
        labels = {
            "akoflow.workflow": str(job.workflow_id),
            "akoflow.workflow-name": job.workflow_name,
            "akoflow.activity": act.name,
            "akoflow.attempt": str(job.attempt),
            LABEL_KEY: job.key,
            LABEL_SCOPE: job.scope,
        }
        created = api.create_container(
            image,
            command=[],
            entrypoint=[settings.shell, "-c", WRAPPER, settings.shell],
            name=name,
            labels=labels,
            environment=env,
            working_dir=mount,
            host_config=host_config,
        )
        return str(created["Id"])

    async def _ensure_image(self, image: str, settings: _Settings) -> None:
        if image in self._images:
            return
        if settings.pull_policy != "always":
            if await self._call(self._image_present, image):
                self._images.add(image)
                return
            if settings.pull_policy == "never":
                raise SubmitError(
                    f"image {image!r} is not present on the docker daemon at {self._where} "
                    f"and {self.config.variable('PULL_POLICY')} is never: load, import or build "
                    "it there first"
                )
        pending = self._pulls.get(image)
        if pending is None:  # one pull per image at a time; later submits wait for it
            pending = asyncio.ensure_future(self._pull(image, settings.pull_timeout))
            self._pulls[image] = pending
            pending.add_done_callback(lambda _: self._pulls.pop(image, None))
        await asyncio.shield(pending)
        if settings.pull_policy != "always":
            self._images.add(image)

    def _image_present(self, image: str) -> bool:
        try:
            self._client().inspect_image(image)  # type: ignore[no-untyped-call]
        except docker.errors.ImageNotFound:
            return False
        return True

    async def _pull(self, image: str, timeout: int) -> None:
        try:
            await asyncio.wait_for(self._call(self._pull_blocking, image), timeout)
        except TimeoutError:
            raise SubmitError(f"pulling image {image!r} took more than {timeout}s") from None
        except docker.errors.APIError as exc:
            raise SubmitError(f"cannot pull image {image!r}: {_explain(exc)}") from exc

    def _pull_blocking(self, image: str) -> None:
        repository, tag = docker.utils.parse_repository_tag(image)
        for line in self._client().pull(repository, tag=tag or "latest", stream=True, decode=True):
            if isinstance(line, dict) and line.get("error"):
                raise SubmitError(f"cannot pull image {image!r}: {line['error']}")

    # ------------------------------------------------------------------ cancel, restart

    async def cancel(self, key: str, handle: Mapping[str, Any]) -> None:
        job = self._jobs.get(key)
        if job is not None:
            job.cancelled = True
        ref = job.cid if job is not None else str(handle.get("id") or handle.get("name") or "")
        if not ref:
            return
        await asyncio.shield(self._call(self._stop, key, ref))

    def _stop(self, key: str, ref: str) -> None:
        try:  # SIGTERM, then SIGKILL after the timeout; the end arrives as a die event
            self._client().stop(ref, timeout=self._s.stop_timeout)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            log.warning("cannot stop container of %s: %s", key, _explain(exc))

    async def adopt(self, job: JobSpec, handle: Mapping[str, Any]) -> Adopted:
        if self._config_error:
            raise RuntimeUnavailable(self._config_error)
        job = scoped(job)
        # The container the submission recorded, else the one it would have made: one made
        # before the run's scope was a token of its own is found by its id.
        recorded = str(handle.get("id") or "")
        name, prefix = str(handle.get("name") or container_name(job)), str(job.attempt_prefix)
        base: dict[str, Any] = {"id": "", "name": name, "prefix": prefix}
        info = await self._call(self._inspect, recorded or name)
        if info is None:
            record = _read_exit_record(prefix)
            if record is not None:
                return Adopted("finished", base, _outcome(*record))
            if _ran(prefix):
                lost = "the container ran but was removed before it was collected"
                return Adopted("finished", base, Outcome(False, None, lost))
            # Never created (create is atomic by name, only this engine creates it): it has
            # not run, and without a container it never will.
            return Adopted("never_started")
        state = info["State"]
        if state.get("Running") or state.get("Status") in ("created", "paused", "restarting"):
            try:
                new = await self._take_over(job, info, base, hold=True, recorded=recorded)
            except SubmitError as exc:
                return Adopted("finished", base, Outcome(False, None, str(exc)))
            tracked = self._jobs.get(job.key)
            if tracked is not None:  # runs once the engine has recorded the adoption: the
                asyncio.get_running_loop().call_soon(self._unhold, tracked)  # caller goes on
            return Adopted("running", new, node=self._node)  # synchronously after our return
        code, oom = _exit_of(info)
        _write_exit_record(prefix, code, oom)
        return Adopted("finished", {**base, "id": str(info["Id"])}, _outcome(code, oom), self._node)

    # ------------------------------------------------------------------ observe

    async def status(self, jobs: Mapping[str, Mapping[str, Any]]) -> dict[str, JobStatus]:
        result: dict[str, JobStatus] = {}
        for key, handle in jobs.items():
            ref = str(handle.get("id") or handle.get("name") or "")
            info = None
            if key not in self._jobs and ref:
                info = await self._call(self._inspect, ref)
            state = info["State"] if info is not None else {}
            record = _read_exit_record(str(handle.get("prefix", "")))
            if key in self._jobs or state.get("Running"):
                result[key] = JobStatus("running", node=self._node)
            elif state.get("Status") == "created":
                result[key] = JobStatus("queued")
            elif info is not None:
                result[key] = JobStatus("finished", _outcome(*_exit_of(info)))
            elif record is not None:
                result[key] = JobStatus("finished", _outcome(*record))
            else:
                result[key] = JobStatus("unknown")
        return result

    async def logs(
        self, key: str, handle: Mapping[str, Any], offsets: Mapping[str, int]
    ) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        prefix = str(handle.get("prefix", ""))
        for stream in STREAMS:
            start = offsets.get(stream, 0)
            try:
                with open(f"{prefix}.out/{stream}", "rb") as f:
                    if os.fstat(f.fileno()).st_size <= start:
                        continue
                    f.seek(start)
                    out[stream] = f.read(LOG_READ_MAX)
            except FileNotFoundError:
                continue
        return out

    def _stats(self, cid: str) -> tuple[dict[str, Any], float]:
        api = self._client()
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
            *(self._call(self._stats, j.cid) for j in wanted), return_exceptions=True
        )
        result: dict[str, Metrics] = {}
        for job, sample in zip(wanted, samples, strict=True):
            if isinstance(sample, BaseException):
                continue
            stats, now = sample
            mem = stats.get("memory_stats") or {}
            usage = mem.get("usage")
            if not isinstance(usage, int):
                continue  # it stopped meanwhile: an empty sample
            cpu_ns = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage")
            cpu: float | None = None
            if isinstance(cpu_ns, int):
                prev = self._cpu.get(job.key)
                if prev is None and job.started is not None:
                    prev = (0, job.started)
                if prev is not None and now > prev[1]:
                    cpu = max(0.0, (cpu_ns - prev[0]) / 1e9 / (now - prev[1]) * 100)
                self._cpu[job.key] = (cpu_ns, now)
            inner = mem.get("stats") or {}
            cache = inner.get("total_inactive_file", inner.get("inactive_file", 0))
            result[job.key] = Metrics(cpu, max(0, usage - int(cache)))
        return result

    async def health(self) -> Health:
        if self._config_error:
            return Health(False, self._config_error)
        try:
            await asyncio.wait_for(self._call(lambda: self._client().ping()), HEALTH_TIMEOUT)
        except RuntimeUnavailable as exc:
            return Health(False, str(exc))
        except TimeoutError:
            return Health(False, f"docker daemon at {self._where} did not answer a ping in time")
        except docker.errors.APIError as exc:
            return Health(False, f"docker daemon at {self._where}: {_explain(exc)}")
        return Health(True)

    async def nodes(self) -> Sequence[NodeInfo]:
        info: dict[str, Any] = await self._call(lambda: self._client().info())
        self._node = str(info.get("Name") or self._where)
        ncpu, mem = info.get("NCPU"), info.get("MemTotal")
        return [
            NodeInfo(
                name=self._node,
                ready=True,
                cpu_capacity=float(ncpu) if isinstance(ncpu, int) else None,
                memory_capacity=mem if isinstance(mem, int) else None,
            )
        ]

    async def release(self, key: str, handle: Mapping[str, Any], *, succeeded: bool) -> None:
        """Cleanup policy. The logs are files of the attempt: removing loses nothing."""
        self._cpu.pop(key, None)
        policy = self._s.cleanup
        ref = str(handle.get("id") or handle.get("name") or "")
        if not ref or policy == "never" or (policy == "on-success" and not succeeded):
            return
        # Shielded: the engine may stop (cancelling this task) right after it asked.
        await asyncio.shield(self._call(self._remove, key, ref))

    async def leftovers(self, workflow_id: int, attempt_dir: Path) -> dict[str, dict[str, Any]]:
        """The run's containers still on the daemon, by attempt key (scope and workflow id
        labels: another state dir's containers on the same daemon are never listed)."""
        scope = existing_scope(attempt_dir)
        if scope is None:  # no object of the run was ever named
            return {}
        labels = [f"{LABEL_SCOPE}={scope}", f"akoflow.workflow={workflow_id}"]

        def listing() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = self._client().containers(
                all=True, filters={"label": labels}
            )
            return found

        found: dict[str, dict[str, Any]] = {}
        for info in await self._call(listing):
            key = (info.get("Labels") or {}).get(LABEL_KEY)
            if key:
                found[key] = {"id": info["Id"]}
        return found

    def _remove(self, key: str, ref: str) -> None:
        try:
            self._client().remove_container(ref, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            log.warning("cannot remove container of %s: %s", key, _explain(exc))


__all__ = ["DockerRuntime", "container_name", "scope_of"]  # scope_of: the shared one
