"""Supervised engine loops: no exception may end one silently.

Every periodic or event-driven task of the engine runs through :func:`supervise`. A failure of
one iteration is logged with its traceback and the loop goes on after a back-off (doubling up
to a cap, reset by the next success), so a broken backend or a bug met once cannot stop the
health checks or the log sampling for good. A failure the loop cannot survive (the iteration
raised :class:`EngineFailure`, or the ``fatal`` predicate says so) is handed to ``on_fatal``
and the loop ends: the engine then fails its runs with the reason instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from akoflow.errors import AkoflowError
from akoflow.runtimes.backoff import Backoff
from akoflow.store.room import locked
from akoflow.tasks import cancel_and_wait

log = logging.getLogger(__name__)

FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0


class EngineFailure(AkoflowError, RuntimeError):
    """The engine cannot go on (its store failed, or a bug left its state unknown). Its runs
    are interrupted, not lost: what the store holds is consistent, and ``akoflow resume``
    continues them."""


class StoreShortOfRoom(EngineFailure):
    """The engine stopped because the disk under its store (the state dir ``directory``) was
    full: nothing is wrong with its runs, and a new engine continues them once there is room
    again (:func:`akoflow.store.room.wait_for_room`)."""

    def __init__(self, message: str, directory: Path) -> None:
        super().__init__(message)
        self.directory = directory

    @staticmethod
    def reason(exc: BaseException, directory: Path) -> str:
        """What is said of ``exc``, a write under the state dir ``directory`` refused for
        want of room."""
        return f"no room left under the state dir {directory} ({exc})"

    @classmethod
    def stopped_by(cls, exc: BaseException, directory: Path) -> StoreShortOfRoom:
        return cls(f"the engine stopped: {cls.reason(exc, directory)}", directory)


def no_explanation(exc: BaseException) -> str | None:
    return None


async def supervise(
    name: str,
    step: Callable[[], Awaitable[None]],
    *,
    on_fatal: Callable[[BaseException], None],
    fatal: Callable[[BaseException], bool] = lambda exc: isinstance(exc, EngineFailure),
    explain: Callable[[BaseException], str | None] = no_explanation,
    first_backoff: float = FIRST_BACKOFF,
    max_backoff: float = MAX_BACKOFF,
) -> None:
    """Run ``step`` again and again (it does its own waiting) until cancelled. A failure
    ``explain`` knows (a full disk) is logged as its one-line explanation; its traceback
    only at debug level (it says nothing more, and one per back-off buried the reason)."""
    backoff = Backoff(first_backoff, max_backoff)
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            known = explain(exc) or locked(exc)
            if known is not None:
                log.debug("engine loop %s failed", name, exc_info=exc)
            trace = exc if known is None else None
            why = "" if known is None else f": {known}"
            if fatal(exc):
                log.critical("engine loop %s cannot go on%s", name, why, exc_info=trace)
                on_fatal(exc)
                return
            delay = backoff.next()
            # A known cause (a full disk) is the user's to fix, and said once more by the
            # loop that cannot go on: a warning; anything else may be a bug.
            log.log(
                logging.ERROR if known is None else logging.WARNING,
                "engine loop %s failed%s; going on in %.1f s",
                name,
                why,
                delay,
                exc_info=trace,
            )
            await asyncio.sleep(delay)
        else:
            backoff.reset()


def log_unexpected_end(task: asyncio.Task[Any]) -> None:
    """Done-callback of the engine's long-lived tasks: they only end by cancellation, so any
    other end is reported (belt and braces around :func:`supervise`)."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.critical("engine task %s ended with an error", task.get_name(), exc_info=exc)


__all__ = [
    "EngineFailure",
    "StoreShortOfRoom",
    "cancel_and_wait",
    "log_unexpected_end",
    "no_explanation",
    "supervise",
]
