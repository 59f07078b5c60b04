"""Keep Python's cyclic garbage collector off the objects of big runs.

A full collection walks every object the collector tracks: with 20,000 activities attached
(each an ActivityRun with its dependency lists, spec and strings) one took 40-57 ms, and
grows with the run, during which the event loop stood still (the engine, and in a server
the API). It runs when the tracked objects grew by a quarter: while a run is attached and
at its end. The objects alive once a big run is attached are moved out of the collector's
reach (``gc.freeze``):
they are freed by reference counting as before, and only cycles among them wait. They are
given back (``gc.unfreeze``) as soon as no big run is attached, and the next full collection
then takes what became garbage meanwhile. What the ends of a frozen run's attempts leave is
frozen too, every FREEZE_AT ends (:meth:`HeapGuard.ended`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)

FREEZE_AT = 5_000  # activities attached; below, a full collection costs a few ms


# A workflow text this long (about 2,500 of the smallest activities) is paused for (see
# :func:`paused_for`); below, the collector's walks of what it builds take milliseconds.
BIG_TEXT = 100_000
_pause_lock = threading.Lock()
_pauses = 0
_enable_after = False


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No automatic collection until the last block that paused it ends, in any thread.

    For what builds a big run's objects (validation, the store, the engine's attach): each
    automatic full collection walks them all again as they grow (a 100,000-activity
    submission spent 1.8 of its 8.6 s in nine collections of up to 340 ms, the server's
    event loop standing still in each). They hold no cycles to collect; a big run's are
    frozen (:class:`HeapGuard`) before the collector runs again."""
    global _pauses, _enable_after
    with _pause_lock:
        if _pauses == 0:
            _enable_after = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _enable_after:
                gc.enable()


def paused_for(text: str) -> contextlib.AbstractContextManager[None]:
    """:func:`paused` for a big workflow's text, nothing for a small one: a pause counts
    across the process, and overlapping small submissions kept the collector off almost
    all the time (96% of a minute of 16 clients posting)."""
    return paused() if len(text) >= BIG_TEXT else contextlib.nullcontext()


class HeapGuard:
    """Told how many activities the engine has attached after each change, and how many
    attempts ended."""

    def __init__(self, freeze_at: int | None = None) -> None:
        self.freeze_at = FREEZE_AT if freeze_at is None else freeze_at
        self.frozen_at = 0  # activities attached at the last freeze (0: not frozen)
        self.ends = 0  # attempts ended since the last freeze

    def ended(self, count: int) -> None:
        """``count`` more attempts ended. While big runs are frozen, what the ends leave
        (records, fingerprints, about an object each) joins the frozen every ``freeze_at``
        ends: each full collection walked all of it, 40-80 ms at 60,000-100,000 ends,
        during which a server's API stood still (a page took 182 ms)."""
        if not self.frozen_at:
            return
        self.ends += count
        if self.ends >= self.freeze_at:
            self._freeze()

    def attached(self, activities: int) -> None:
        if activities < self.freeze_at:
            if self.frozen_at:
                gc.unfreeze()  # collected as usual again, their cycles included
                self.frozen_at = 0
            return
        if activities < self.frozen_at:  # a run forgotten: a next big one counts from here
            self.frozen_at = activities
        if activities >= self.frozen_at + self.freeze_at:  # a big run more since
            self.frozen_at = activities
            self._freeze()

    def _freeze(self) -> None:
        began = time.monotonic()
        # The young garbage of now is not frozen with the rest (a full collection here
        # would be the very pause this avoids); older garbage waits for the thaw. While
        # the collector is paused (the run just built), the young are the run's objects:
        # walking them is the cost the pause saves.
        if gc.isenabled():
            gc.collect(1)
        gc.freeze()
        self.ends = 0
        if log.isEnabledFor(logging.DEBUG):  # counting walks every frozen object: 80 ms
            log.debug(
                "heap: %d objects out of the collector's reach (%d activities attached) in %.0f ms",
                gc.get_freeze_count(),
                self.frozen_at,
                (time.monotonic() - began) * 1000,
            )

    def release(self) -> None:
        """The engine stops: everything goes back to the collector."""
        self.attached(0)
