"""``GET /metrics``: the server in Prometheus' text format, read from the store at scrape time.

Nothing is counted in a process-wide registry: each scrape builds a registry with one
:class:`StoreCollector`, whose numbers come from a few aggregate SQL queries (``GROUP BY``:
SQLite does the counting, never a Python loop over the rows) on a read-only connection of its
own, in a worker thread, so a scrape neither blocks the event loop nor holds the engine's
repository lock while it aggregates. The only numbers not in the store, the calls each runtime
made to its backend, are the live runtimes' counters (:attr:`Runtime.backend_calls`), copied
on the event loop before the thread starts. Counters restart at zero with the server (or a
restarted engine): Prometheus' ``rate()`` handles such resets.

Token-protected like every route, unless ``AKOFLOW_METRICS_PUBLIC=1``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from akoflow.engine import Engine
from akoflow.server.auth import bearer, require_token
from akoflow.server.context import ServerContext, get_context
from akoflow.states import ActivityState, WorkflowState

PUBLIC_ENV = "AKOFLOW_METRICS_PUBLIC"
PUBLIC_VALUES = ("1", "true", "yes", "on")

# Upper bounds (seconds) of the histograms' buckets: activities run from seconds to a day;
# a queue wait is short on a free runtime and hours on a busy cluster.
DURATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 86400)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400)

Ctx = Annotated[ServerContext, Depends(get_context)]


def metrics_public() -> bool:
    return os.environ.get(PUBLIC_ENV, "").strip().lower() in PUBLIC_VALUES


async def scrape_auth(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """The bearer token, unless the operator made the metrics public (a Prometheus without
    the token, on a network that may see them)."""
    if not metrics_public():
        await require_token(request, credentials)


router = APIRouter(tags=["metrics"])


@dataclass(frozen=True, slots=True)
class BackendCounts:
    runtime: str
    kind: str
    calls: dict[str, int]
    errors: dict[str, int]


def backend_counts(engine: Engine) -> list[BackendCounts]:
    """A copy of each live runtime's call counters (on the event loop, which updates them)."""
    return [
        BackendCounts(
            name,
            slot.runtime.kind,
            dict(slot.runtime.backend_calls),
            dict(slot.runtime.backend_errors),
        )
        for name, slot in sorted(engine.runtimes.slots.items())
    ]


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics (text format); public with AKOFLOW_METRICS_PUBLIC=1",
    dependencies=[Depends(scrape_auth)],
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
async def metrics(ctx: Ctx) -> Response:
    backends = backend_counts(ctx.engine)
    # What a request of the engine or the API waits for the store now: one small read through
    # the engine's own repository (its lock and connection).
    started = time.perf_counter()
    ctx.repo.count_workflows(unfinished_only=True)
    engine_read = time.perf_counter() - started
    body = await asyncio.to_thread(render, ctx.repo.path, backends, engine_read)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def render(db_path: str, backends: Sequence[BackendCounts], engine_read: float) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(db_path, backends, engine_read))
    return generate_latest(registry)


def _histogram_sql(value: str, where: str, buckets: Sequence[float]) -> str:
    """Per runtime: count, sum, and the cumulative count at or under each bucket's bound."""
    under = ", ".join(f"SUM({value} <= {bound!r})" for bound in buckets)
    return (
        f"SELECT runtime, COUNT(*), TOTAL({value}), {under} FROM attempts "
        f"WHERE {where} GROUP BY runtime ORDER BY runtime"
    )


DURATION_SQL = _histogram_sql(
    "finished_at - started_at",
    "started_at IS NOT NULL AND finished_at IS NOT NULL",
    DURATION_BUCKETS,
)
WAIT_SQL = _histogram_sql("started_at - submitted_at", "started_at IS NOT NULL", WAIT_BUCKETS)


class StoreCollector(Collector):
    """The metrics of one scrape: counts from the store, the runtimes' backend counters."""

    def __init__(self, db_path: str, backends: Sequence[BackendCounts], engine_read: float) -> None:
        self.db_path = db_path
        self.backends = backends
        self.engine_read = engine_read

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        uri = f"file:{quote(self.db_path)}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN")  # one snapshot: the numbers agree with each other
            yield from self._states(conn)
            yield from self._histograms(conn)
            yield from self._runtimes(conn)
        finally:
            conn.close()
        yield from self._backends()
        store = GaugeMetricFamily(
            "akoflow_store_latency_seconds",
            "Time of store reads at this scrape: 'engine' one small read through the engine's "
            "repository (its lock included), 'scrape' the scrape's aggregate queries.",
            labels=["reader"],
        )
        store.add_metric(["engine"], self.engine_read)
        store.add_metric(["scrape"], time.perf_counter() - started)
        yield store

    @staticmethod
    def _states(conn: sqlite3.Connection) -> Iterator[Metric]:
        for name, table, states in (
            ("akoflow_workflows", "workflows", list(WorkflowState)),
            ("akoflow_activities", "activities", list(ActivityState)),
        ):
            counts = dict(conn.execute(f"SELECT state, COUNT(*) FROM {table} GROUP BY state"))
            family = GaugeMetricFamily(
                name, f"Stored {table} by state (the store may lag the engine by a second).",
                labels=["state"],
            )  # fmt: skip
            for state in states:
                family.add_metric([state.value], counts.get(state.value, 0))
            yield family

    @staticmethod
    def _histograms(conn: sqlite3.Connection) -> Iterator[Metric]:
        for name, doc, sql, buckets in (
            (
                "akoflow_activity_duration_seconds",
                "Run time of the attempts that ended (started -> finished), by runtime.",
                DURATION_SQL,
                DURATION_BUCKETS,
            ),
            (
                "akoflow_queue_wait_seconds",
                "Queue wait of the attempts that started (submitted -> started), by runtime.",
                WAIT_SQL,
                WAIT_BUCKETS,
            ),
        ):
            family = HistogramMetricFamily(name, doc, labels=["runtime"])
            for runtime, count, total, *under in conn.execute(sql):
                points = [(repr(float(b)), int(n)) for b, n in zip(buckets, under, strict=True)]
                family.add_metric([runtime], [*points, ("+Inf", int(count))], float(total))
            yield family

    @staticmethod
    def _runtimes(conn: sqlite3.Connection) -> Iterator[Metric]:
        ready = GaugeMetricFamily(
            "akoflow_runtime_ready",
            "1 when the runtime is READY at its last health check, 0 when NOT_READY.",
            labels=["runtime", "kind"],
        )
        for name, kind, status in conn.execute(
            "SELECT name, kind, status FROM runtimes ORDER BY name"
        ):
            ready.add_metric([name, kind], 1.0 if status == "READY" else 0.0)
        yield ready

    def _backends(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "akoflow_backend_calls",
            "Calls of the engine to a runtime's backend (submit, cancel, logs, health, ...) "
            "since the engine started.",
            labels=["runtime", "kind", "call"],
        )
        errors = CounterMetricFamily(
            "akoflow_backend_errors",
            "Backend calls that raised an error (a NOT_READY health answer is no error: see "
            "akoflow_runtime_ready).",
            labels=["runtime", "kind", "call"],
        )
        for b in self.backends:
            for call, n in sorted(b.calls.items()):
                calls.add_metric([b.runtime, b.kind, call], n)
                errors.add_metric([b.runtime, b.kind, call], b.errors.get(call, 0))
        yield calls
        yield errors
