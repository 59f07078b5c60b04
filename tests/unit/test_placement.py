"""AkôScore and the other placement policies on crafted node inventories."""

from __future__ import annotations

import pytest

from akoflow.placement import Demand, Reserved, akoscore, available_policies, load_policy
from akoflow.placement.akoscore import expected_seconds
from akoflow.placement.policies import UnknownPolicy
from akoflow.runtimes.base import NodeInfo

GI = 1 << 30


def node(name: str, cpu: float, mem_gi: float, used_gi: float = 0, ready: bool = True) -> NodeInfo:
    return NodeInfo(name, ready, cpu, int(mem_gi * GI), 0.0, int(used_gi * GI))


def test_score_is_the_formula() -> None:
    nodes = [node("a", 4, 16, used_gi=4), node("b", 8, 32, used_gi=8)]
    demand = Demand("align", cpu=2, memory=2 * GI, mean_seconds=10.0)
    decision = akoscore(demand, nodes, {}, alpha=0.5)
    by_name = {c.node: c for c in decision.candidates}
    # a: M_free 12 Gi, T = 10 s * mean_cpu(6) / 4 = 15 s -> 0.5*(12-2)/32 + 0.5/15
    assert by_name["a"].score == pytest.approx(0.5 * 10 / 32 + 0.5 / 15, abs=1e-6)
    # b: M_free 24 Gi, T = 10 * 6 / 8 = 7.5 s -> 0.5*(24-2)/32 + 0.5/7.5
    assert by_name["b"].score == pytest.approx(0.5 * 22 / 32 + 0.5 / 7.5, abs=1e-6)
    assert decision.node == "b"
    assert decision.policy == "akoscore" and decision.alpha == 0.5


def test_alpha_zero_prefers_the_fast_node_alpha_one_the_roomy_one() -> None:
    fast_small = node("fast", 16, 8)
    slow_big = node("big", 2, 64)
    demand = Demand("sim", memory=1 * GI, mean_seconds=4.0)
    assert akoscore(demand, [fast_small, slow_big], {}, alpha=0.0).node == "fast"
    assert akoscore(demand, [fast_small, slow_big], {}, alpha=1.0).node == "big"


def test_history_on_the_node_beats_the_capacity_estimate() -> None:
    nodes = [node("a", 4, 16), node("b", 4, 16)]
    demand = Demand("x", mean_seconds=10.0, mean_seconds_by_node={"b": 2.0})
    assert expected_seconds(demand, nodes[1], 4.0) == 2.0
    assert expected_seconds(demand, nodes[0], 4.0) == 10.0
    assert akoscore(demand, nodes, {}, alpha=0.0).node == "b"


def test_infeasible_nodes_score_zero_with_a_reason() -> None:
    nodes = [
        node("tiny", 1, 1),
        node("busy", 8, 16, used_gi=15.5),
        node("down", 64, 256, ready=False),
        node("ok", 4, 8),
    ]
    decision = akoscore(Demand("big", cpu=2, memory=2 * GI), nodes, {}, alpha=0.5)
    by_name = {c.node: c for c in decision.candidates}
    assert decision.node == "ok"
    assert not by_name["tiny"].feasible and "CPU" in (by_name["tiny"].reason or "")
    assert not by_name["busy"].feasible and "memory" in (by_name["busy"].reason or "")
    assert by_name["down"].reason == "node not ready"
    assert all(by_name[n].score == 0.0 for n in ("tiny", "busy", "down"))
    assert by_name["ok"].score > 0


def test_no_feasible_node_waits_but_too_big_for_every_node_is_said() -> None:
    busy = [node("a", 4, 8, used_gi=7.5), node("b", 4, 8, used_gi=7.9)]
    waiting = akoscore(Demand("w", memory=1 * GI), busy, {}, alpha=0.5)
    assert waiting.node is None and waiting.never_feasible is None  # frees up later
    too_big = akoscore(Demand("w", memory=100 * GI), busy, {}, alpha=0.5)
    assert too_big.node is None
    assert too_big.never_feasible is not None and "more than any node" in too_big.never_feasible


def test_reservations_count_even_before_usage_shows() -> None:
    nodes = [node("a", 4, 8), node("b", 4, 8)]
    demand = Demand("d", cpu=3, memory=1 * GI)
    first = akoscore(demand, nodes, {}, alpha=0.5)
    reserved = {first.node or "": Reserved(cpu=3, memory=1 * GI)}
    second = akoscore(demand, nodes, reserved, alpha=0.5)
    assert {first.node, second.node} == {"a", "b"}
    full = {"a": Reserved(cpu=3), "b": Reserved(cpu=3)}
    assert akoscore(demand, nodes, full, alpha=0.5).node is None


def test_alpha_out_of_range_is_an_error() -> None:
    with pytest.raises(ValueError, match="alpha"):
        akoscore(Demand("x"), [node("a", 1, 1)], {}, alpha=1.5)


def test_policies_are_entry_points() -> None:
    assert {"akoscore", "round-robin"} <= set(available_policies())
    with pytest.raises(UnknownPolicy, match="available: .*akoscore"):
        load_policy("no-such-policy")


def test_round_robin_takes_feasible_nodes_in_turn() -> None:
    policy = load_policy("round-robin")
    nodes = [node("a", 4, 8), node("b", 1, 8), node("c", 4, 8)]
    demand = Demand("r", cpu=2)
    chosen = [policy.place(demand, nodes, {}, 0.5).node for _ in range(4)]
    assert chosen == ["a", "c", "a", "c"]  # b never fits 2 CPUs
