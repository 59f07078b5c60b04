"""The server's retention: ``AKOFLOW_RETENTION`` (e.g. ``30d``) deletes finished runs older
than that once a day (``AKOFLOW_RETENTION_INTERVAL``, default ``1d``), the first time soon
after the server starts. A pass that fails is logged with its reason and the next one comes
as planned; the loop never ends silently."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping

from akoflow.errors import AkoflowError
from akoflow.gc.collector import Report
from akoflow.gc.options import parse_age

log = logging.getLogger(__name__)

RETENTION_ENV = "AKOFLOW_RETENTION"
INTERVAL_ENV = "AKOFLOW_RETENTION_INTERVAL"
DEFAULT_INTERVAL = 86400.0
FIRST_DELAY = 5.0  # s after start: the engine resumes its runs first


class RetentionError(AkoflowError, ValueError):
    pass


def settings(
    environ: Mapping[str, str] | None = None,
) -> tuple[float, float] | None:
    """(age, interval) from the environment, None when retention is off; RetentionError for
    a value that is not a duration."""
    env = os.environ if environ is None else environ
    raw = env.get(RETENTION_ENV, "").strip()
    if not raw or raw.lower() in ("off", "0", "none"):
        return None
    try:
        age = parse_age(raw)
        interval = parse_age(env.get(INTERVAL_ENV, "").strip() or str(DEFAULT_INTERVAL))
    except ValueError as exc:
        raise RetentionError(f"{RETENTION_ENV}/{INTERVAL_ENV}: {exc}") from None
    return age, interval


async def retention_loop(
    collect: Callable[[], Awaitable[Report]],
    age: float,
    interval: float,
    first: float = FIRST_DELAY,
) -> None:
    """Every ``interval`` seconds, delete the finished runs that ended ``age`` ago."""
    delay = min(first, interval)
    while True:
        await asyncio.sleep(delay)
        delay = interval
        try:
            report = await collect()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("retention (%s): this pass failed; the next one in %g s", age, interval)
            continue
        left = report.left_remote
        log.info(
            "retention: %d run(s) older than %g s deleted, %d bytes freed here, %d bytes of "
            "database given back%s",
            len(report.deleted),
            age,
            report.freed_bytes,
            report.database_bytes,
            f"; left on backends: {len(left)} (retried next time)" if left else "",
        )


__all__ = ["RETENTION_ENV", "RetentionError", "retention_loop", "settings"]
