"""AkôScore: the placement score of AkôFlow's papers, as a pure function.

    S(i, j) = A(i, j) · [ α · (M_free(j) − M_req(i)) / M_max  +  (1 − α) / T(i, j) ]

- ``A(i, j)`` is 1 when node ``j`` is ready and has the free CPU and memory activity ``i`` asks
  for, else 0 (the node is not a candidate).
- ``M_free(j)`` is the node's memory capacity minus what is in use: the larger of the usage the
  runtime reports and what AkôFlow has already placed there (so a burst of placements in one
  instant does not all land on the same node before its usage shows).
- ``M_max`` is the largest memory capacity among the runtime's nodes, so the memory term is in
  [0, 1].
- ``T(i, j)`` is the expected run time in seconds: the mean of this activity's earlier successful
  runs on ``j`` when there are some; else its mean anywhere (or 1 s when it never ran) scaled by
  how many cores ``j`` has against the mean of the candidates — a node with twice the cores is
  expected to take half the time. ``1/T`` is capped at 1 so the two terms stay comparable.
- ``α`` weighs memory headroom (1) against speed (0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a type only: placement needs no runtime at import
    from akoflow.runtimes.base import NodeInfo

DEFAULT_ALPHA = 0.5
DEFAULT_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Demand:
    """What one activity asks of a node, and what is known of its past runs."""

    activity: str
    cpu: float | None = None
    memory: int | None = None
    mean_seconds: float | None = None
    """Mean duration of earlier successful runs anywhere (None: never ran)."""
    mean_seconds_by_node: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reserved:
    """CPU and memory AkôFlow has placed on a node and that is still running."""

    cpu: float = 0.0
    memory: int = 0


@dataclass(frozen=True, slots=True)
class Candidate:
    """A node as a placement policy weighed it."""

    node: str
    feasible: bool
    score: float
    reason: str | None = None
    """Why the node is not feasible."""
    free_memory: int | None = None
    free_cpu: float | None = None
    expected_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a placement policy puts an activity, and the candidates it weighed."""

    policy: str
    node: str | None
    """The chosen node; None when no node is feasible (the activity waits)."""
    candidates: tuple[Candidate, ...]
    alpha: float | None = None
    never_feasible: str | None = None
    """Set when no node could ever run the activity (its demand exceeds every capacity)."""


def free_resources(node: NodeInfo, reserved: Reserved) -> tuple[float | None, int | None]:
    """(free CPU, free memory) of a node, or None where the runtime does not know."""
    cpu = None
    if node.cpu_capacity is not None:
        cpu = node.cpu_capacity - max(node.cpu_usage or 0.0, reserved.cpu)
    memory = None
    if node.memory_capacity is not None:
        memory = node.memory_capacity - max(node.memory_usage or 0, reserved.memory)
    return cpu, memory


def feasibility(
    demand: Demand, node: NodeInfo, reserved: Reserved
) -> tuple[bool, str | None, float | None, int | None]:
    """A(i, j) with the reason when 0, plus the node's free CPU and memory."""
    free_cpu, free_memory = free_resources(node, reserved)
    if not node.ready:
        return False, "node not ready", free_cpu, free_memory
    if demand.cpu is not None and free_cpu is not None and demand.cpu > free_cpu + 1e-9:
        return False, f"needs {demand.cpu:g} CPU, {max(free_cpu, 0):g} free", free_cpu, free_memory
    if demand.memory is not None and free_memory is not None and demand.memory > free_memory:
        return (
            False,
            f"needs {demand.memory} B of memory, {max(free_memory, 0)} B free",
            free_cpu,
            free_memory,
        )
    return True, None, free_cpu, free_memory


def never_fits(demand: Demand, nodes: Sequence[NodeInfo]) -> str | None:
    """Why no node could run the activity even when idle, or None if one could."""
    if not nodes:
        return None  # nodes unknown yet: wait for the runtime to report them
    for node in nodes:
        cpu_ok = demand.cpu is None or node.cpu_capacity is None or demand.cpu <= node.cpu_capacity
        memory_ok = (
            demand.memory is None
            or node.memory_capacity is None
            or demand.memory <= node.memory_capacity
        )
        if cpu_ok and memory_ok:
            return None
    largest_cpu = max((n.cpu_capacity or 0.0) for n in nodes)
    largest_memory = max((n.memory_capacity or 0) for n in nodes)
    return (
        f"activity {demand.activity!r} asks for cpu={demand.cpu} memory={demand.memory} B, more "
        f"than any node has (largest: {largest_cpu:g} CPU, {largest_memory} B)"
    )


def expected_seconds(demand: Demand, node: NodeInfo, mean_cpu: float | None) -> float:
    """T(i, j): history on this node, else history anywhere scaled by the node's cores."""
    on_node = demand.mean_seconds_by_node.get(node.name)
    if on_node is not None:
        return max(on_node, 1e-3)
    base = demand.mean_seconds if demand.mean_seconds is not None else DEFAULT_SECONDS
    if node.cpu_capacity and mean_cpu:
        base *= mean_cpu / node.cpu_capacity
    return max(base, 1e-3)


def akoscore(
    demand: Demand,
    nodes: Sequence[NodeInfo],
    reserved: Mapping[str, Reserved],
    alpha: float = DEFAULT_ALPHA,
) -> Decision:
    """Score every node for one activity; the highest feasible score wins (ties: first node)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    capacities = [n.memory_capacity for n in nodes if n.memory_capacity]
    memory_max = max(capacities) if capacities else None
    cpus = [n.cpu_capacity for n in nodes if n.cpu_capacity]
    mean_cpu = sum(cpus) / len(cpus) if cpus else None
    candidates: list[Candidate] = []
    for node in nodes:
        ok, reason, free_cpu, free_memory = feasibility(
            demand, node, reserved.get(node.name, Reserved())
        )
        seconds = expected_seconds(demand, node, mean_cpu)
        score = 0.0
        if ok:
            memory_term = 0.0
            if memory_max and free_memory is not None:
                memory_term = (free_memory - (demand.memory or 0)) / memory_max
            score = alpha * memory_term + (1.0 - alpha) * min(1.0, 1.0 / seconds)
        candidates.append(
            Candidate(node.name, ok, round(score, 6), reason, free_memory, free_cpu, seconds)
        )
    best = max((c for c in candidates if c.feasible), key=lambda c: c.score, default=None)
    return Decision(
        policy="akoscore",
        node=best.node if best else None,
        candidates=tuple(candidates),
        alpha=alpha,
        never_feasible=never_fits(demand, nodes) if best is None else None,
    )
