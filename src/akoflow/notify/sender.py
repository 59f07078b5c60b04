"""The engine's notification sender: one supervised loop (see :mod:`akoflow.engine.loops`).

Each pass turns recorded events into deliveries (one body per webhook that wants the event:
the run's own ``spec.notify``, then ``AKOFLOW_NOTIFY_URL``), then leases the deliveries that
are due and POSTs each in a task of its own, at most :data:`CONCURRENCY` at once, every
request cut at the timeout: a receiver that hangs holds one slot for that long and nothing
else. A failed try is tried again after a back-off doubled each time, up to the tries
allowed; then the delivery is given up, with its reason logged and kept in the store.

Everything is in the store first, so an engine killed at any point loses nothing: the next
engine of the state dir (a server, a later ``akoflow run``) expands what was not yet
expanded and sends what was not yet delivered, taking over a lease once it has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from akoflow import __version__
from akoflow.errors import SettingError
from akoflow.notify import payload, store
from akoflow.notify.settings import NotifySettings, load, webhooks_of
from akoflow.spec.workflow import Webhook, Workflow
from akoflow.store import Repository

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

CONCURRENCY = 8  # requests at once per engine
BATCH = 200  # events expanded per pass
POLL = 0.5  # s between looks at the store when nothing is due sooner
MIN_PAUSE = 0.02  # s: never a busy loop
_CACHED_SPECS = 256

# httpx logs each request with its full URL (at INFO, which a server shows): a webhook's
# user info, path and query often hold the receiver's token. Its lines about our requests
# are dropped (ours say the outcome, naming the webhook by scheme, host and port only).
_SENDING: contextvars.ContextVar[bool] = contextvars.ContextVar("akoflow_notify", default=False)


class _QuietAboutWebhooks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _SENDING.get()


def _quiet_httpx() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _QuietAboutWebhooks) for f in logger.filters):
        logger.addFilter(_QuietAboutWebhooks())


class Notifier:
    def __init__(
        self,
        repo: Repository,
        *,
        workflow_of: Callable[[int], Workflow | None] = lambda wf_id: None,
        settings: NotifySettings | None = None,
    ) -> None:
        """``workflow_of(id)``: an attached run's workflow (its webhooks without reading its
        stored text again). A bad ``AKOFLOW_NOTIFY_*`` value turns sending off in this engine
        (said in the log; `akoflow server` refuses to start with it): the runs go on and their
        notifications wait in the store for an engine whose settings are valid."""
        self.repo = repo
        self.problem: str | None = None
        if settings is None:
            try:
                settings = load()
            except SettingError as exc:
                self.problem = str(exc)
                settings = NotifySettings()
                log.error(
                    "notifications are off in this engine: %s; they wait in the state dir for "
                    "an engine whose settings are valid",
                    exc,
                )
        self.settings = settings
        self._workflow_of = workflow_of
        self._hooks: dict[tuple[int, str], tuple[Webhook, ...]] = {}
        self._wake = asyncio.Event()
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._client: httpx.AsyncClient | None = None
        self.running = False

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ the loop

    async def step(self) -> None:
        """One pass of the loop: expand, send what is due, wait for the next thing to do."""
        if self.problem is not None:
            await asyncio.Event().wait()  # off (see __init__): until the engine stops
        self.running = True
        more = await self.expand()
        self.send_due()
        await self._pause(0.0 if more else None)

    async def _pause(self, delay: float | None) -> None:
        if delay is None:
            delay = POLL
            due = store.next_due(self.repo)
            if due is not None and len(self._inflight) < CONCURRENCY:
                delay = min(delay, due - time.time())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(delay, MIN_PAUSE)):
                await self._wake.wait()
        self._wake.clear()

    async def expand(self) -> bool:
        """Turn recorded events into deliveries; True when more events are waiting."""
        events = store.pending_events(self.repo, BATCH)
        if not events:
            return False
        made = [await self._deliveries(ev) for ev in events]
        added = store.record(self.repo, made, time.time())
        if added:
            log.info("notifications: %d delivery(ies) made from %d event(s)", added, len(events))
        return len(events) == BATCH

    async def _deliveries(self, ev: store.Event) -> store.Made:
        facts = store.run_facts(self.repo, ev.workflow_id)
        if facts is None:  # deleted since (its events went with it)
            return store.Made(ev, ())
        run, spec_yaml, spec_hash = facts
        hooks = [
            h for h in await self._webhooks(run.id, spec_yaml, spec_hash) if ev.event in h.events
        ]
        if not hooks:
            return store.Made(ev, ())
        activity = None
        if ev.activity_id is not None:
            activity = store.activity_facts(self.repo, ev.activity_id)
        else:
            run = dataclasses.replace(run, counts=store.activity_counts(self.repo, run.id))
        public = self.settings.public_url
        return store.Made(
            ev,
            [
                (
                    h.url,
                    h.secret_env,
                    payload.body(ev.event, ev.created_at, run, activity, public_url=public),
                )
                for h in hooks
            ],
        )

    async def _webhooks(self, wf_id: int, spec_yaml: str, spec_hash: str) -> list[Webhook]:
        attached = self._workflow_of(wf_id)
        if attached is not None:
            return webhooks_of(attached.notify, self.settings.default)
        key = (wf_id, spec_hash)
        own = self._hooks.get(key)
        if own is None:
            own = await self._read_webhooks(wf_id, spec_yaml)
            if len(self._hooks) >= _CACHED_SPECS:
                self._hooks.clear()
            self._hooks[key] = own
        return webhooks_of(own, self.settings.default)

    @staticmethod
    async def _read_webhooks(wf_id: int, spec_yaml: str) -> tuple[Webhook, ...]:
        """A run this engine does not hold: its webhooks from its stored workflow (parsed in a
        thread: a large workflow must not stall the engine's loop)."""
        if "notify" not in spec_yaml:
            return ()
        from akoflow.spec import load_workflow

        try:
            workflow = await asyncio.to_thread(load_workflow, spec_yaml)
        except Exception as exc:
            log.error(
                "notifications: run %d's stored workflow cannot be read for its webhooks (%s); "
                "only the default webhook is told",
                wf_id,
                type(exc).__name__,
            )
            return ()
        return workflow.notify

    def send_due(self) -> None:
        free = CONCURRENCY - len(self._inflight)
        for d in store.lease_due(self.repo, time.time(), self.settings.lease, free):
            task = asyncio.create_task(self._deliver(d), name=f"akoflow-notify-{d.id}")
            self._inflight[d.id] = task
            task.add_done_callback(functools.partial(self._ended, d.id))

    def _ended(self, delivery_id: int, task: asyncio.Task[None]) -> None:
        self._inflight.pop(delivery_id, None)
        self._wake.set()  # a slot is free
        if not task.cancelled() and task.exception() is not None:
            # Its lease ends and the next pass tries it again.
            log.error(
                "notifications: delivery %d failed inside the sender",
                delivery_id,
                exc_info=task.exception(),
            )

    # ------------------------------------------------------------------ one try

    async def _deliver(self, d: store.Delivery) -> None:
        try:
            problem = await self._post(d)
        except asyncio.CancelledError:
            store.released(self.repo, d.id, time.time())
            raise
        now = time.time()
        where = payload.shown_url(d.url)
        if problem is None:
            store.delivered(self.repo, d.id, now)
            log.info(
                "notification %s of run %d delivered to %s (try %d)",
                d.event,
                d.workflow_id,
                where,
                d.tries,
            )
        elif d.tries >= self.settings.tries:
            store.gave_up(self.repo, d.id, now, problem)
            log.error(
                "notification %s of run %d to %s: %s; given up after %d tries",
                d.event,
                d.workflow_id,
                where,
                problem,
                d.tries,
            )
        else:
            delay = self.settings.delay(d.tries)
            store.retry_at(self.repo, d.id, now + delay, problem)
            log.warning(
                "notification %s of run %d to %s: %s; try %d of %d, the next in %g s",
                d.event,
                d.workflow_id,
                where,
                problem,
                d.tries,
                self.settings.tries,
                delay,
            )

    async def _post(self, d: store.Delivery) -> str | None:
        """POST the delivery once: None when the receiver took it (2xx), else why not."""
        headers = {
            "Content-Type": "application/json",
            payload.EVENT_HEADER: d.event,
            payload.DELIVERY_HEADER: payload.delivery_id(d.body),
        }
        if d.secret_env:
            secret = os.environ.get(d.secret_env, "")
            if not secret:
                return f"the variable holding its secret ({d.secret_env}) is not set here"
            headers[payload.SIGNATURE_HEADER] = payload.signature(d.body, secret)
        import httpx  # here: an engine that never sends does not pay for its import

        timeout = self.settings.timeout
        _SENDING.set(True)  # this task's own context: its requests only
        try:
            async with asyncio.timeout(timeout):
                client = self._http()
                async with client.stream("POST", d.url, content=d.body, headers=headers) as r:
                    status, phrase = r.status_code, r.reason_phrase  # the body is not read
        except (TimeoutError, httpx.TimeoutException):
            return f"no answer within {timeout:g} s"
        except httpx.HTTPError as exc:
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return payload.scrubbed(text, d.url)
        if 200 <= status < 300:
            return None
        return f"the receiver answered HTTP {status}" + (f" {phrase}" if phrase else "")

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            from akoflow.notify.transport import CancelSafeTransport

            _quiet_httpx()
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.timeout),
                transport=CancelSafeTransport(),  # a try cut in its TLS handshake closes it
                follow_redirects=False,  # a redirect is an answer: the body goes where named
                headers={"User-Agent": f"AkoFlow/{__version__}"},
            )
        return self._client

    # ------------------------------------------------------------------ the end

    async def drain(self, wf_ids: Sequence[int]) -> None:
        """Wait a bounded time (AKOFLOW_NOTIFY_WAIT) for these runs' notifications to go;
        what is left stays in the store for the next engine, and a log line says so."""
        wait = self.settings.wait
        if not wf_ids or wait <= 0 or not self.running:
            return
        deadline = time.monotonic() + wait
        # Expanded here rather than on the loop's next pass: a run without webhooks (the
        # usual case) is then known to have nothing pending at once.
        while await self.expand():
            pass
        self.wake()
        while True:
            events, deliveries, due = store.pending_for(self.repo, wf_ids)
            if events + deliveries == 0:
                return
            left = deadline - time.monotonic()
            later = (
                not events and not self._inflight and due is not None and due - time.time() > left
            )
            if left <= 0 or later:
                runs = ", ".join(map(str, sorted(wf_ids)[:10])) + (
                    ", …" if len(wf_ids) > 10 else ""
                )
                log.warning(
                    "notifications: %d of run(s) %s not delivered yet; left in the state dir "
                    "for the next engine there (akoflow server, or a later akoflow run), which "
                    "sends them",
                    events + deliveries,
                    runs,
                )
                return
            await asyncio.sleep(min(0.05, max(left, 0.0)))

    async def close(self) -> None:
        """Stop sending (the loop's task is cancelled by the engine first): tries in flight
        are cut and given back to the store."""
        self.running = False
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


__all__ = ["CONCURRENCY", "Notifier"]
