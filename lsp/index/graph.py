"""Import-graph algorithms: strongly connected components (iterative Tarjan) and, for each
component, concrete cycles (shortest path orders) that together cover every file in it."""

from __future__ import annotations

from collections import deque


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Components with more than one node (or a self-loop), each sorted, the list sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    result.append(sorted(component))
    result.sort()
    return result


def _shortest_cycle_through(start: str, graph: dict[str, set[str]], members: set[str]) -> list[str]:
    parents = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph.get(node, ())):
            if child not in members:
                continue
            if child == start:
                path = [node]
                while parents[path[-1]] is not None:
                    path.append(parents[path[-1]])
                return list(reversed(path))
            if child not in parents:
                parents[child] = node
                queue.append(child)
    return [start]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Concrete cycles [a, b, c] (meaning a -> b -> c -> a) covering every file of every component;
    each file appears in the first cycle that covers it."""
    found = []
    for component in strongly_connected(graph):
        members = set(component)
        covered: set[str] = set()
        for node in component:
            if node in covered:
                continue
            cycle = _shortest_cycle_through(node, graph, members)
            if len(cycle) > 1:
                found.append(cycle)
                covered.update(cycle)
    return found
