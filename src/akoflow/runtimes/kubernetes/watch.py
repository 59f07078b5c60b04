"""One watch loop per resource kind and namespace (Jobs, Pods), label-selected.

The first watch starts from no resourceVersion: the API server sends what exists as ADDED
events, then the changes. A watch resumes from the last resourceVersion it saw after a
disconnection (API server restarted, network cut, server-side timeout); when that version has
expired (410 Gone), or none was seen, it lists, and the list is reported as a whole so the
owner can notice objects that went away meanwhile. The number of requests depends on the time
the watch is open, never on the number of jobs it covers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient

from akoflow.runtimes.backoff import Backoff
from akoflow.tasks import cancel_and_wait

log = logging.getLogger(__name__)

OnEvent = Callable[[str, Any], None]  # (ADDED | MODIFIED | DELETED, object)
OnList = Callable[[list[Any]], None]  # everything that exists now (after a (re)list)

BACKOFF_START, BACKOFF_MAX = 0.2, 5.0


class ResourceWatch:
    """Follows one resource kind in one namespace until :meth:`stop`."""

    def __init__(
        self,
        client: AsyncClient,
        resource: Any,
        namespace: str,
        labels: dict[str, Any],
        *,
        on_event: OnEvent,
        on_list: OnList,
        server_timeout: int,
    ) -> None:
        self._client = client
        self._res = resource
        self._ns = namespace
        self._labels = labels
        self._on_event = on_event
        self._on_list = on_list
        self._server_timeout = server_timeout
        self._task: asyncio.Task[None] | None = None
        self.version: str | None = None
        # Nothing was watched before: a watch from no version starts with an ADDED event per
        # object there (the API server's "get state and start at most recent"), which is what
        # the first list would have said. One request instead of two.
        self._first = True

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"watch-{self._ns}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])  # a lost cancel must not hang the stop
            if task.done():
                await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        backoff = Backoff(BACKOFF_START, BACKOFF_MAX)
        while True:
            try:
                if self.version is None and not self._first:
                    await self._list()
                self._first = False
                await self._watch()
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if exc.status.code == 410:  # our version is too old: list again
                    log.info("watch of %s in %s expired; listing again", self._kind, self._ns)
                    self.version = None
                    continue
                log.warning("watch of %s in %s: %s", self._kind, self._ns, exc.status.message)
            except (httpx2.HTTPError, OSError) as exc:
                log.debug("watch of %s in %s: %s", self._kind, self._ns, exc)
            except Exception:  # a decoding bug must not end the watch for good
                log.exception("watch of %s in %s failed", self._kind, self._ns)
            await asyncio.sleep(backoff.next())

    @property
    def _kind(self) -> str:
        return str(getattr(self._res, "__name__", self._res))

    async def _list(self) -> None:
        listing = self._client.list(self._res, namespace=self._ns, labels=self._labels)
        items = [obj async for obj in listing]
        self.version = listing.resourceVersion
        self._on_list(items)

    async def _watch(self) -> None:
        stream = self._client.watch(
            self._res,
            namespace=self._ns,
            labels=self._labels,
            resource_version=self.version,
            server_timeout=self._server_timeout,
        )
        # lightkube re-opens the watch from the last version when the server ends it cleanly
        async for kind, obj in stream:
            rv = obj.metadata.resourceVersion if obj.metadata else None
            if rv:
                self.version = rv
            self._on_event(kind, obj)
