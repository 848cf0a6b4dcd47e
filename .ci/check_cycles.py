#!/usr/bin/env python3
"""Fail (exit 1) on any import cycle among procsync's modules, printing each one.

import-linter's `acyclic_siblings` contract (pyproject.toml) finds cycles
between the children of each package, but not a cycle through a package's
own ``__init__`` (``procsync.cli`` -> ``procsync.cli.main`` -> ... ->
``procsync.cli``) or through the root package. This check looks at the
module graph itself: every strongly connected set of two or more modules
is a cycle. Imports inside functions and under TYPE_CHECKING count.

Usage: python .ci/check_cycles.py [package]   (default: procsync)
"""

from __future__ import annotations

import sys
from collections import deque

import grimp


def strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """The graph's strongly connected sets of two or more modules (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    members = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        members.append(member)
                        if member == node:
                            break
                    if len(members) > 1:
                        found.append(sorted(members))
    return found


def shortest_cycle(graph: grimp.ImportGraph, members: list[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected set."""
    start, inside = members[0], set(members)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph.find_modules_directly_imported_by(node)):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if child in inside and child not in came_from:
                came_from[child] = node
                queue.append(child)
    return [start, start]  # not reached: a strongly connected set has a cycle through each member


def describe(graph: grimp.ImportGraph, cycle: list[str]) -> list[str]:
    """One line per import of the cycle: importer -> imported (l.N)."""
    lines = []
    for importer, imported in zip(cycle, cycle[1:], strict=False):
        details = graph.get_import_details(importer=importer, imported=imported)
        where = ", ".join(f"l.{d['line_number']}" for d in details)
        lines.append(f"  {importer} -> {imported}" + (f" ({where})" if where else ""))
    return lines


def main(argv: list[str]) -> int:
    package = argv[1] if len(argv) > 1 else "procsync"
    graph = grimp.build_graph(package, cache_dir=None)
    cycles = strongly_connected(graph)
    for members in cycles:
        print(f"import cycle among {len(members)} modules: {', '.join(members)}")
        print("\n".join(describe(graph, shortest_cycle(graph, members))))
    if cycles:
        print(f"{len(cycles)} import cycle(s) in {package}", file=sys.stderr)
        return 1
    print(f"no import cycles in {package} ({len(graph.modules)} modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
