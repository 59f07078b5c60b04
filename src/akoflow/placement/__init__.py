"""Placement of ready activities on a runtime's nodes (AkôScore and other policies)."""

from akoflow.placement.akoscore import Candidate, Decision, Demand, Reserved, akoscore
from akoflow.placement.policies import (
    ENTRY_POINT_GROUP,
    PlacementPolicy,
    UnknownPolicy,
    available_policies,
    load_policy,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Candidate",
    "Decision",
    "Demand",
    "PlacementPolicy",
    "Reserved",
    "UnknownPolicy",
    "akoscore",
    "available_policies",
    "load_policy",
]
