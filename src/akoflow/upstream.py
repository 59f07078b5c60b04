"""What an activity of a run depends on, directly or through others (the engine's model,
walked by the cache, the data plane and the provenance recorder)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Node(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def deps(self) -> Sequence[Node]: ...


def upstream_ids(act: Node) -> set[int]:
    """The ids of the activities ``act`` depends on, directly or not (iteratively: DAGs are
    deep)."""
    found: set[int] = set()
    stack = list(act.deps)
    while stack:
        dep = stack.pop()
        if dep.id not in found:
            found.add(dep.id)
            stack.extend(dep.deps)
    return found


__all__ = ["upstream_ids"]
