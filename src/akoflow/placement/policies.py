"""Placement policies, found as Python entry points (group ``akoflow.placement``).

A workflow names its policy in ``spec.schedule`` (upstream's field). Policies are installed
Python packages that register an entry point, never code uploaded over HTTP (upstream compiled
Go sent to an unauthenticated route). AkôFlow ships ``akoscore`` and ``round-robin``; a lab
adds its own with, in its package's pyproject::

    [project.entry-points."akoflow.placement"]
    my-policy = "mylab.placement:MyPolicy"

where ``MyPolicy()`` has a ``name`` and ``place(demand, nodes, reserved, alpha) -> Decision``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from akoflow.errors import AkoflowError
from akoflow.placement.akoscore import (
    Candidate,
    Decision,
    Demand,
    Reserved,
    akoscore,
    feasibility,
    never_fits,
)

if TYPE_CHECKING:  # a type only: placement needs no runtime at import
    from akoflow.runtimes.base import NodeInfo

ENTRY_POINT_GROUP = "akoflow.placement"


class PlacementPolicy(Protocol):
    name: str

    def place(
        self,
        demand: Demand,
        nodes: Sequence[NodeInfo],
        reserved: Mapping[str, Reserved],
        alpha: float,
    ) -> Decision: ...


class AkoScore:
    """The default policy: the highest AkôScore wins."""

    name = "akoscore"

    def place(
        self,
        demand: Demand,
        nodes: Sequence[NodeInfo],
        reserved: Mapping[str, Reserved],
        alpha: float,
    ) -> Decision:
        return akoscore(demand, nodes, reserved, alpha)


class RoundRobin:
    """Feasible nodes in turn, ignoring scores: spreads work evenly (e.g. for I/O-bound steps)."""

    name = "round-robin"

    def __init__(self) -> None:
        self._next = 0

    def place(
        self,
        demand: Demand,
        nodes: Sequence[NodeInfo],
        reserved: Mapping[str, Reserved],
        alpha: float,
    ) -> Decision:
        candidates = []
        for node in nodes:
            ok, reason, free_cpu, free_memory = feasibility(
                demand, node, reserved.get(node.name, Reserved())
            )
            candidates.append(
                Candidate(node.name, ok, 1.0 if ok else 0.0, reason, free_memory, free_cpu)
            )
        chosen = None
        for step in range(len(candidates)):
            candidate = candidates[(self._next + step) % len(candidates)]
            if candidate.feasible:
                chosen = candidate.node
                self._next = (self._next + step + 1) % len(candidates)
                break
        return Decision(
            policy=self.name,
            node=chosen,
            candidates=tuple(candidates),
            never_feasible=never_fits(demand, nodes) if chosen is None else None,
        )


class UnknownPolicy(AkoflowError, ValueError):
    pass


def available_policies() -> list[str]:
    import importlib.metadata  # scanning installed distributions is slow: only when asked

    return sorted(ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def load_policy(name: str) -> PlacementPolicy:
    """A fresh instance of the policy registered under ``name``."""
    import importlib.metadata

    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=name):
        factory = entry_point.load()
        policy: PlacementPolicy = factory()
        return policy
    known = ", ".join(available_policies()) or "none installed"
    raise UnknownPolicy(f"unknown placement policy {name!r} in spec.schedule (available: {known})")
