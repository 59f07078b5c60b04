"""The engine's side of placement (``spec.schedule``): ask the run's policy for a node,
record the decision with every candidate's score, and hold the resources it reserves on that
node until the attempt ends (also across a restart: an adopted attempt reserves again).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from akoflow.engine.model import ActivityRun, RuntimeSlot
from akoflow.store import Repository

if TYPE_CHECKING:
    from akoflow.placement import Decision

# akoflow.placement is imported by the methods that need it: only a run with a policy
# (spec.schedule) places its work, and every other engine starts without it.


class Placer:
    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    def decide(self, act: ActivityRun, slot: RuntimeSlot) -> Decision:
        """Ask the workflow's policy for a node (no node known yet: wait for the runtime)."""
        from akoflow.placement import Demand
        from akoflow.placement.akoscore import DEFAULT_ALPHA

        assert act.wf.placement is not None
        history = act.wf.history.get(act.name, [])
        by_node: dict[str, list[float]] = {}
        for node, seconds in history:
            if node is not None:
                by_node.setdefault(node, []).append(seconds)
        demand = Demand(
            act.name,
            cpu=act.spec.cpu_cores,
            memory=act.spec.memory_bytes,
            mean_seconds=sum(s for _, s in history) / len(history) if history else None,
            mean_seconds_by_node={n: sum(v) / len(v) for n, v in by_node.items()},
        )
        alpha = act.wf.workflow.alpha
        if alpha is None:  # a bad {NAME}_ALPHA raises SettingError: the caller fails the work
            alpha = slot.runtime.config.get_float("ALPHA", DEFAULT_ALPHA, minimum=0, maximum=1)
        return act.wf.placement.place(demand, slot.nodes or [], slot.reserved, alpha)

    def record(self, act: ActivityRun, number: int, slot: RuntimeSlot, decision: Decision) -> None:
        """Store the decision for attempt ``number`` and reserve its resources."""
        assert decision.node is not None
        self._reserve(act, slot, decision.node)
        self.repo.add_placement(
            act.id,
            number,
            runtime=act.runtime,
            policy=decision.policy,
            node=decision.node,
            alpha=decision.alpha,
            candidates=[
                {
                    "node": c.node,
                    "feasible": c.feasible,
                    "score": c.score,
                    "reason": c.reason,
                    "freeCpu": c.free_cpu,
                    "freeMemory": c.free_memory,
                    "expectedSeconds": c.expected_seconds,
                }
                for c in decision.candidates
            ],
        )

    def record_unplaceable(self, act: ActivityRun, decision: Decision) -> None:
        """Store why no node of the runtime could ever hold the activity."""
        self.repo.add_placement(
            act.id,
            act.attempt + 1,
            runtime=act.runtime,
            policy=decision.policy,
            node=None,
            alpha=decision.alpha,
            candidates=[
                {"node": c.node, "feasible": False, "reason": c.reason} for c in decision.candidates
            ],
        )

    def reserve_again(self, act: ActivityRun, slot: RuntimeSlot, number: int) -> None:
        """An adopted attempt holds the resources its placement reserved before the restart."""
        node = self.repo.placement_node(act.id, number)
        if node is not None and act.placed is None:
            self._reserve(act, slot, node)

    def unreserve(self, act: ActivityRun, slot: RuntimeSlot) -> None:
        if act.placed is None:
            return
        from akoflow.placement import Reserved

        node, claim = act.placed
        act.placed = None
        held = slot.reserved.get(node, Reserved())
        slot.reserved[node] = Reserved(
            max(0.0, held.cpu - claim.cpu), max(0, held.memory - claim.memory)
        )

    @staticmethod
    def _reserve(act: ActivityRun, slot: RuntimeSlot, node: str) -> None:
        from akoflow.placement import Reserved

        claim = Reserved(act.spec.cpu_cores or 0.0, act.spec.memory_bytes or 0)
        held = slot.reserved.get(node, Reserved())
        slot.reserved[node] = Reserved(held.cpu + claim.cpu, held.memory + claim.memory)
        act.placed = (node, claim)


__all__ = ["Placer"]
