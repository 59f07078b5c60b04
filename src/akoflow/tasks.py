"""Stopping asyncio tasks for sure.

A stop that cancels a task once and then awaits it can wait for ever: Python 3.11's
``asyncio.wait_for`` swallows a cancel that arrives as its inner call completes (and the
kubernetes client, asyncssh and the runtime adapters use it), so the task goes on as if it
had never been asked. Every stop of a long-lived task goes through :func:`cancel_and_wait`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

ROUND_SECONDS = 0.5


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], rounds: int = 20) -> None:
    """Cancel ``tasks`` and wait until they have ended, cancelling again every
    :data:`ROUND_SECONDS` those that did not; after ``rounds`` such rounds, those still
    running are logged and left (a stop must not hang)."""
    pending = {t for t in tasks if not t.done()}
    for _ in range(rounds):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=ROUND_SECONDS)
    for task in pending:
        log.error("task %s did not stop when cancelled", task.get_name())


__all__ = ["cancel_and_wait"]
