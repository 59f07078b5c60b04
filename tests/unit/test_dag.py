from __future__ import annotations

import random
import sys
import time
from collections.abc import Mapping, Sequence

import pytest

from akoflow.spec.dag import find_cycle, find_cycles, levels, topological_order

N = 100_000


def assert_is_cycle(deps: Mapping[str, Sequence[str]], cycle: list[str]) -> None:
    """A cycle closes on itself and each element depends on the next."""
    assert len(cycle) >= 2
    assert cycle[0] == cycle[-1]
    for a, b in zip(cycle, cycle[1:], strict=False):
        assert b in deps[a]


def chain(n: int) -> dict[str, list[str]]:
    return {f"n{i}": [f"n{i - 1}"] if i else [] for i in range(n)}


def test_three_cycle_found() -> None:
    deps = {"a": ["b"], "b": ["c"], "c": ["a"], "d": []}
    cycle = find_cycle(deps)
    assert cycle == ["a", "b", "c", "a"]
    assert_is_cycle(deps, cycle)


def test_cycle_starts_at_first_member_in_mapping_order() -> None:
    deps = {"x": [], "c": ["a"], "b": ["c"], "a": ["b"]}
    assert find_cycle(deps) == ["c", "a", "b", "c"]


def test_no_cycle_in_dag() -> None:
    deps = {"a": [], "b": ["a"], "c": ["a", "b"], "d": ["c"]}
    assert find_cycle(deps) is None
    assert find_cycles(deps) == []


def test_self_loop_is_a_cycle() -> None:
    assert find_cycle({"a": ["a"]}) == ["a", "a"]


def test_unknown_names_are_ignored_by_cycle_search() -> None:
    assert find_cycle({"a": ["ghost"], "b": ["a", "phantom"]}) is None


def test_find_cycles_reports_each_group() -> None:
    deps = {"x": ["x"], "a": ["b"], "b": ["a", "c"], "c": ["b"], "d": ["e"], "e": ["d"], "f": []}
    cycles = find_cycles(deps)
    assert [c[0] for c in cycles] == ["x", "a", "d"]
    for cycle in cycles:
        assert_is_cycle(deps, cycle)


def test_cycle_with_forward_references_only() -> None:
    # every activity depends on a later one: not a cycle
    deps = {"a": ["b"], "b": ["c"], "c": []}
    assert find_cycle(deps) is None
    assert topological_order(deps) == ["c", "b", "a"]


def test_long_chain_has_no_recursion_error() -> None:
    deps = chain(N)
    assert sys.getrecursionlimit() < N
    assert find_cycle(deps) is None
    order = topological_order(deps)
    assert order[0] == "n0" and order[-1] == f"n{N - 1}"
    assert levels(deps)[f"n{N - 1}"] == N - 1


def test_long_reversed_chain_uses_the_general_algorithms() -> None:
    # each activity depends on the next one: file order is not a valid order
    deps = {f"n{i}": [f"n{i + 1}"] if i < N - 1 else [] for i in range(N)}
    assert find_cycle(deps) is None
    order = topological_order(deps)
    assert order[0] == f"n{N - 1}" and order[-1] == "n0"
    assert levels(deps)["n0"] == N - 1


def test_cycle_through_a_100k_chain() -> None:
    deps = chain(N)
    deps["n0"] = [f"n{N - 1}"]
    cycle = find_cycle(deps)
    assert cycle is not None
    assert len(cycle) == N + 1
    assert cycle[0] == "n0"
    assert_is_cycle(deps, cycle)
    with pytest.raises(ValueError, match="dependency cycle: n0 -> "):
        topological_order(deps)


def test_100k_random_dag_is_fast() -> None:
    rng = random.Random(7)
    names = [f"a{i}" for i in range(N)]
    deps = {
        name: [names[rng.randrange(i)] for _ in range(rng.choice((1, 2)))] if i else []
        for i, name in enumerate(names)
    }
    shuffled = list(deps.items())
    rng.shuffle(shuffled)  # forces the general (non file-order) code paths
    for graph in (deps, dict(shuffled)):
        start = time.perf_counter()
        assert find_cycle(graph) is None
        order = topological_order(graph)
        depth = levels(graph)
        elapsed = time.perf_counter() - start
        position = {name: i for i, name in enumerate(order)}
        assert all(position[d] < position[n] for n, ds in graph.items() for d in ds)
        assert all(depth[n] > depth[d] for n, ds in graph.items() for d in ds)
        assert elapsed < 10  # generous: catches quadratic behaviour, not machine speed


def test_topological_order_breaks_ties_in_file_order() -> None:
    assert topological_order({"d": ["c"], "c": [], "b": [], "a": ["b"]}) == ["c", "d", "b", "a"]
    assert topological_order({"c": [], "a": [], "b": ["c"]}) == ["c", "a", "b"]
    assert topological_order({"z": [], "y": [], "x": []}) == ["z", "y", "x"]


def test_topological_order_is_deterministic() -> None:
    deps = {"e": ["a", "b"], "a": [], "d": ["b"], "b": [], "c": ["a"]}
    assert topological_order(deps) == topological_order(dict(deps))
    assert topological_order(deps) == ["a", "b", "e", "d", "c"]


def test_topological_order_errors() -> None:
    with pytest.raises(ValueError, match="'b' depends on unknown activity 'ghost'"):
        topological_order({"a": [], "b": ["ghost"]})
    with pytest.raises(ValueError, match=r"dependency cycle: a -> b -> a"):
        topological_order({"a": ["b"], "b": ["a"]})
    with pytest.raises(ValueError, match="unknown"):
        levels({"a": ["nope"]})


def test_levels() -> None:
    deps = {"root": [], "left": ["root"], "right": ["root"], "join": ["left", "right"]}
    assert levels(deps) == {"root": 0, "left": 1, "right": 1, "join": 2}
    assert levels({"b": ["a"], "a": []}) == {"b": 1, "a": 0}
    assert levels({}) == {}


def test_duplicate_dependencies_are_harmless() -> None:
    deps = {"b": ["a", "a"], "a": [], "c": ["b", "b", "a"]}
    assert topological_order(deps) == ["a", "b", "c"]
    assert levels(deps) == {"b": 1, "a": 0, "c": 2}
