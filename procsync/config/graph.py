"""The dependency graph of a registry: checks, closures and start/stop waves.

`depends_on` makes a graph of server ids. `check_graph` refuses unknown
ids and cycles (printing the cycle) before anything is registered;
`waves` orders ids so that every server comes after what it depends on,
independent ones side by side; `stop_waves` is the reverse.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import cast

from ..errors import ConfigError
from .records import ServerConfig


def dependencies(config: ServerConfig) -> dict[str, str]:
    """`config`'s dependencies, id -> condition ({} without any)."""
    # ServerConfig turns a list into {id: "started"}: once validated it is a dict or None
    return dict(cast("Mapping[str, str]", config.depends_on or {}))


def check_graph(configs: Mapping[str, ServerConfig]) -> None:
    """ConfigError unless every dependency is a registered id and no dependencies form a cycle."""
    for sid, config in configs.items():
        for dep in dependencies(config):
            if dep not in configs:
                raise ConfigError(sid, "depends_on", f"depends on {dep!r}, which is not a registered server")
    cycle = find_cycle(configs)
    if cycle:
        raise ConfigError(cycle[0], "depends_on", "dependency cycle: " + " -> ".join(cycle))


def find_cycle(configs: Mapping[str, ServerConfig]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (unknown ids are ignored)."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(configs, white)
    for root in configs:
        if colour[root] != white:
            continue
        path: list[str] = [root]
        stack = [iter(dependencies(configs[root]))]
        colour[root] = grey
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                stack.pop()
                colour[path.pop()] = black
                continue
            if dep not in configs:
                continue
            if colour[dep] == grey:
                return path[path.index(dep):] + [dep]
            if colour[dep] == white:
                colour[dep] = grey
                path.append(dep)
                stack.append(iter(dependencies(configs[dep])))
    return None


def closure(ids: Iterable[str], configs: Mapping[str, ServerConfig]) -> list[str]:
    """`ids` and everything they depend on, transitively (registered ids only), in registry order."""
    seen: set[str] = set()
    todo = [sid for sid in ids if sid in configs]
    while todo:
        sid = todo.pop()
        if sid in seen:
            continue
        seen.add(sid)
        todo.extend(dep for dep in dependencies(configs[sid]) if dep in configs)
    return [sid for sid in configs if sid in seen]


def dependents(sid: str, configs: Mapping[str, ServerConfig]) -> list[str]:
    """The servers that depend on `sid` directly, in registry order."""
    return [other for other, config in configs.items() if sid in dependencies(config)]


def _layers(chosen: list[str], links: dict[str, list[str]]) -> list[list[str]]:
    """`chosen` in layers: each id one layer after the deepest of its `links` (cycles ignored)."""
    level: dict[str, int] = {}

    def depth(sid: str, trail: frozenset[str]) -> int:
        if sid not in level:
            level[sid] = 1 + max((depth(n, trail | {sid}) for n in links[sid] if n not in trail),
                                 default=-1)
        return level[sid]

    for sid in chosen:
        depth(sid, frozenset())
    out: list[list[str]] = [[] for _ in range(1 + max(level.values(), default=-1))]
    for sid in chosen:
        out[level[sid]].append(sid)
    return out


def waves(ids: Iterable[str], configs: Mapping[str, ServerConfig]) -> list[list[str]]:
    """`ids` in start order: each wave depends only on earlier ones (links outside `ids` ignored)."""
    wanted = set(ids)
    chosen = [sid for sid in configs if sid in wanted]
    return _layers(chosen, {sid: [d for d in dependencies(configs[sid]) if d in wanted] for sid in chosen})


def stop_waves(ids: Iterable[str], configs: Mapping[str, ServerConfig]) -> list[list[str]]:
    """`ids` in stop order: a server stops after every server of `ids` that depends on it."""
    wanted = set(ids)
    chosen = [sid for sid in configs if sid in wanted]
    users: dict[str, list[str]] = {sid: [] for sid in chosen}
    for sid in chosen:
        for dep in dependencies(configs[sid]):
            if dep in users:
                users[dep].append(sid)
    return _layers(chosen, users)


__all__ = ["check_graph", "closure", "dependencies", "dependents", "find_cycle", "stop_waves", "waves"]
