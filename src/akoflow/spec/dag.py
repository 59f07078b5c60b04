"""Graph algorithms on ``{activity: [activities it depends on]}`` mappings.

All functions are iterative (no recursion: a 100,000-long chain must not hit the recursion
limit) and linear or ``n log n`` in the number of activities and edges. Mapping order is the
file order and is used to break ties, so every result is deterministic.

Edge direction: ``deps["b"] == ["a"]`` means *b depends on a*, so *a* runs first.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

__all__ = ["find_cycle", "find_cycles", "levels", "topological_order"]

Deps = Mapping[str, Sequence[str]]


def _unknown(name: str, dep: str) -> ValueError:
    return ValueError(f"{name!r} depends on unknown activity {dep!r}")


def _csr(deps: Deps, *, strict: bool) -> tuple[list[str], list[int], list[int]]:
    """Names in mapping order plus the graph in compressed form: the dependencies of node
    ``i`` are ``targets[offsets[i]:offsets[i + 1]]`` (flat lists: no list per node).

    With ``strict``, a dependency that is not a key raises ValueError; otherwise unknown
    names are skipped.
    """
    names = list(deps)
    index = {name: i for i, name in enumerate(names)}
    get = index.get
    targets: list[int] = []
    offsets = [0]
    add, close = targets.append, offsets.append
    for name, upstream in deps.items():
        for dep in upstream:
            j = get(dep)
            if j is not None:
                add(j)
            elif strict:
                raise _unknown(name, dep)
        close(len(targets))
    return names, targets, offsets


def _has_cycle(targets: list[int], offsets: list[int]) -> bool:
    """Iterative three-colour DFS: cheaper than Tarjan when all we need is yes or no."""
    n = len(offsets) - 1
    state = bytearray(n)  # 0 unseen, 1 on the current path, 2 finished
    for root in range(n):
        if state[root]:
            continue
        state[root] = 1
        stack = [root]
        position = [offsets[root]]
        while stack:
            v = stack[-1]
            p = position[-1]
            if p < offsets[v + 1]:
                position[-1] = p + 1
                w = targets[p]
                seen = state[w]
                if not seen:
                    state[w] = 1
                    stack.append(w)
                    position.append(offsets[w])
                elif seen == 1:
                    return True
            else:
                state[v] = 2
                stack.pop()
                position.pop()
    return False


def _adjacency(targets: list[int], offsets: list[int]) -> list[list[int]]:
    return [targets[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def _strongly_connected(adjacency: list[list[int]]) -> list[list[int]]:
    """Tarjan's algorithm, iterative; returns only components that contain a cycle."""
    n = len(adjacency)
    order = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    components: list[list[int]] = []
    counter = 0
    for root in range(n):
        if order[root] != -1:
            continue
        order[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        work_nodes = [root]
        work_pos = [0]
        while work_nodes:
            v = work_nodes[-1]
            edges = adjacency[v]
            i = work_pos[-1]
            if i < len(edges):
                work_pos[-1] = i + 1
                w = edges[i]
                if order[w] == -1:
                    order[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = True
                    work_nodes.append(w)
                    work_pos.append(0)
                elif on_stack[w] and order[w] < low[v]:
                    low[v] = order[w]
                continue
            work_nodes.pop()
            work_pos.pop()
            if work_nodes and low[v] < low[work_nodes[-1]]:
                low[work_nodes[-1]] = low[v]
            if low[v] == order[v]:
                component: list[int] = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1 or v in adjacency[v]:
                    components.append(component)
    return components


def _cycle_in_component(adjacency: list[list[int]], component: list[int]) -> list[int]:
    """Shortest cycle through the component's first node (in file order), via BFS."""
    members = set(component)
    start = min(component)
    if start in adjacency[start]:
        return [start, start]
    parent: dict[int, int] = {start: start}
    frontier = [start]
    while frontier:
        next_frontier: list[int] = []
        for v in frontier:
            for w in adjacency[v]:
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    path.reverse()
                    return [*path, start]
                if w in members and w not in parent:
                    parent[w] = v
                    next_frontier.append(w)
        frontier = next_frontier
    raise AssertionError("a strongly connected component always contains a cycle")


def _points_backwards(deps: Deps) -> bool:
    """True when every known dependency comes earlier in the mapping: then there is no cycle.

    This is how workflows are usually written, so the check (one pass, no allocation per
    node) lets the common case skip the general algorithms.
    """
    index: dict[str, int] = {}
    for i, (name, upstream) in enumerate(deps.items()):
        index[name] = i
        for dep in upstream:
            j = index.get(dep)
            if j is None and dep in deps:  # a later activity (unknown names are ignored)
                return False
            if j == i:
                return False
    return True


def find_cycles(deps: Deps) -> list[list[str]]:
    """One cycle per group of mutually dependent activities, so all of them can be reported.

    Each cycle starts and ends at its member that comes first in the mapping, and each
    element depends on the next, e.g. ``["a", "b", "a"]``. Cycles are sorted by that first
    member. Dependencies on names that are not keys are ignored (they cannot form a cycle).
    """
    if _points_backwards(deps):
        return []
    names, targets, offsets = _csr(deps, strict=False)
    if not _has_cycle(targets, offsets):
        return []
    adjacency = _adjacency(targets, offsets)
    cycles = [_cycle_in_component(adjacency, c) for c in _strongly_connected(adjacency)]
    cycles.sort(key=lambda cycle: cycle[0])
    return [[names[i] for i in cycle] for cycle in cycles]


def find_cycle(deps: Deps) -> list[str] | None:
    """A dependency cycle such as ``["a", "b", "c", "a"]`` (a depends on b...), or None."""
    cycles = find_cycles(deps)
    return cycles[0] if cycles else None


def _depths_in_mapping_order(deps: Deps) -> list[int] | None:
    """Depths when every dependency comes earlier in the mapping (mapping order is then the
    Kahn order with file-order ties), else None. One pass: the common, fast case."""
    index: dict[str, int] = {}
    depth: list[int] = []
    for i, (name, upstream) in enumerate(deps.items()):
        index[name] = i
        level = 0
        for dep in upstream:
            j = index.get(dep)
            if j is None:
                if dep in deps:
                    return None
                raise _unknown(name, dep)
            if j == i:
                return None
            if depth[j] >= level:
                level = depth[j] + 1
        depth.append(level)
    return depth


def _kahn(deps: Deps) -> tuple[list[str], list[int], list[int]]:
    """Kahn's algorithm, ties broken by mapping order (a min-heap of file positions).

    Returns the names, the order (as indices) and each node's depth (0 for roots).
    """
    fast = _depths_in_mapping_order(deps)
    if fast is not None:
        return list(deps), list(range(len(fast))), fast
    names, targets, offsets = _csr(deps, strict=True)
    n = len(names)
    # A dependency listed twice is simply counted twice in ``remaining`` and in
    # ``dependents``, which keeps the counts consistent without deduplicating.
    remaining = [offsets[i + 1] - offsets[i] for i in range(n)]
    dependents: list[list[int]] = [[] for _ in range(n)]
    for i, count in enumerate(remaining):
        if count == 1:
            dependents[targets[offsets[i]]].append(i)
        elif count:
            for j in targets[offsets[i] : offsets[i + 1]]:
                dependents[j].append(i)
    ready = [i for i in range(n) if not remaining[i]]  # ascending: already a heap
    order: list[int] = []
    depth = [0] * n
    push, pop = heapq.heappush, heapq.heappop
    while ready:
        v = pop(ready)
        order.append(v)
        below = depth[v] + 1
        for w in dependents[v]:
            if depth[w] < below:
                depth[w] = below
            remaining[w] -= 1
            if not remaining[w]:
                push(ready, w)
    if len(order) != n:
        cycle = find_cycle(deps)
        shown = " -> ".join(cycle) if cycle else "?"
        raise ValueError(f"dependency cycle: {shown}")
    return names, order, depth


def topological_order(deps: Deps) -> list[str]:
    """Activities so that each comes after everything it depends on; ties in mapping order.

    Raises ValueError on a dependency that is not a key or on a cycle.
    """
    names, order, _ = _kahn(deps)
    return [names[i] for i in order]


def levels(deps: Deps) -> dict[str, int]:
    """Depth of each activity: 0 for roots, else 1 + the deepest dependency.

    Raises ValueError like :func:`topological_order`.
    """
    names, _, depth = _kahn(deps)
    return dict(zip(names, depth, strict=True))
