"""Reconnect delays of the runtimes' links to their backends (docker events, the SSH link to
a cluster, Kubernetes watches): doubled after each failure up to a cap, back to the first
after a success, so a backend that is down is asked less and less often, and one that comes
back is used again at once."""

from __future__ import annotations


class Backoff:
    def __init__(self, first: float, cap: float) -> None:
        if not 0 < first <= cap:
            raise ValueError(f"backoff needs 0 < first <= cap (got {first}, {cap})")
        self.first = first
        self.cap = cap
        self._next = first

    def next(self) -> float:
        """The delay to wait after this failure (the next one waits twice as long)."""
        delay = self._next
        self._next = min(delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        """A success: the next failure waits the first delay again."""
        self._next = self.first
