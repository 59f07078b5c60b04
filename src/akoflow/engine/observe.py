"""Output and resource use of running attempts: logs stored by byte offset, metrics sampled.

Logs are read from the runtime by offset and appended to the store while an attempt runs
(every ``log_interval``) and in full when it ends, up to :data:`LOG_STORE_LIMIT` per stream
(the rest stays in the attempt's files, and the store says so). Metrics are sampled every
``metrics_interval``. Every backend call is bounded: a runtime that hangs costs a warning,
never a stalled run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from akoflow.engine.model import ActivityRun, RuntimeSlot
from akoflow.states import ActivityState
from akoflow.store import Repository

log = logging.getLogger(__name__)

LOG_CALL_TIMEOUT = 30.0  # s per read of a job's output: a hung backend must not stall the run
LOG_STORE_LIMIT = 64 << 20  # bytes per stream and attempt kept in the database

Fetched = tuple[dict[str, int], dict[str, bytes]]  # (offsets read from, new bytes per stream)


class OutputSampler:
    def __init__(
        self,
        repo: Repository,
        slots: Mapping[str, RuntimeSlot],
        jobs: Mapping[str, ActivityRun],
        *,
        metrics_interval: float,
    ) -> None:
        self.repo = repo
        self._slots = slots
        self._jobs = jobs  # attempt key -> activity, for metrics that arrive by key
        self._metrics_interval = metrics_interval
        self._last_metrics = 0.0  # monotonic
        self._log_failing: set[str] = set()  # attempts whose last log read failed (warned)

    async def fetch_logs(self, act: ActivityRun, *, final: bool = False) -> Fetched:
        """New output of an attempt since what is stored; when ``final``, all of it (up to
        :data:`LOG_STORE_LIMIT` per stream)."""
        base = dict(act.log_offsets)
        if act.key is None or not act.handle:
            return base, {}
        runtime = self._slots[act.runtime].runtime
        chunks: dict[str, bytes] = {}
        offsets = dict(base)
        try:
            while True:
                if runtime.instant_logs:
                    new = await runtime.logs(act.key, act.handle, offsets)
                else:
                    async with asyncio.timeout(LOG_CALL_TIMEOUT):
                        new = await runtime.logs(act.key, act.handle, offsets)
                # One read past the cap (offset == cap) is kept: it says there was more.
                new = {k: v for k, v in new.items() if v and offsets.get(k, 0) <= LOG_STORE_LIMIT}
                for stream, data in new.items():
                    chunks[stream] = chunks.get(stream, b"") + data
                    offsets[stream] = offsets.get(stream, 0) + len(data)
                if not final or not new:
                    break
        except Exception as exc:
            # Once per outage of an attempt (its runtime's NOT_READY says the rest), not at
            # every cycle while a cluster is out of reach.
            level = logging.DEBUG if act.key in self._log_failing else logging.WARNING
            self._log_failing.add(act.key)
            log.log(level, "cannot read logs of %s: %s", act.key, exc or type(exc).__name__)
        else:
            self._log_failing.discard(act.key)
        if final:
            self._log_failing.discard(act.key)  # its last read: nothing more to warn about
        return base, chunks

    def store_logs(self, act: ActivityRun, fetched: Fetched) -> None:
        base, chunks = fetched
        if base != act.log_offsets:
            return  # stored meanwhile by another reader (the final fetch and the sampler race)
        for stream, data in chunks.items():
            offset = act.log_offsets.get(stream, 0)
            if offset > LOG_STORE_LIMIT:
                continue  # the notice is stored already
            keep = data[: max(0, LOG_STORE_LIMIT - offset)]
            text = keep.decode("utf-8", "replace")
            if len(keep) < len(data):
                text += (
                    f"\n[akoflow: output beyond {LOG_STORE_LIMIT >> 20} MiB is not stored in the "
                    "database; the complete file is in the run's attempts directory]\n"
                )
            self.repo.append_log(act.id, act.attempt, stream, offset, text)
            act.log_offsets[stream] = offset + len(data)

    async def sample(self, live: list[ActivityRun]) -> None:
        """New output of the running attempts ``live`` (stored in one transaction), and their
        metrics when a metrics period has passed."""
        fetched = [(act, await self.fetch_logs(act)) for act in live]
        with self.repo.transaction():
            for act, chunks in fetched:
                if act.state is ActivityState.RUNNING:
                    self.store_logs(act, chunks)
        now = time.monotonic()
        if now - self._last_metrics < self._metrics_interval:
            return
        self._last_metrics = now
        samples: list[tuple[int, int, float, float | None, int | None]] = []
        for name, slot in self._slots.items():
            jobs = {a.key: a.handle for a in live if a.runtime == name and a.key}
            if not jobs:
                continue
            try:
                timeout = slot.runtime.health_timeout
                async with asyncio.timeout(timeout):
                    metrics = await slot.runtime.metrics(jobs)
            except Exception as exc:
                log.warning("cannot sample metrics on %s: %s", name, exc or type(exc).__name__)
                continue
            ts = time.time()
            for key, m in metrics.items():
                owner = self._jobs.get(key)
                if owner is not None:
                    samples.append((owner.id, owner.attempt, ts, m.cpu_percent, m.memory_bytes))
        if samples:
            self.repo.add_metrics(samples)


__all__ = ["LOG_STORE_LIMIT", "Fetched", "OutputSampler"]
