"""A Procfile's formation: how many copies of each process to run, as foreman's ``-m`` says.

``"all=1,web=2,worker=3"`` runs two copies of ``web`` and three of
``worker``; ``all`` sets the count of every process not named. A process
with one copy keeps its Procfile name (``web``); copies are named
``web.1``, ``web.2`` … and form a group named after the process. Each copy
gets foreman's port: the Procfile's n-th process (from 0) gets
``base + 100 * n``, and its k-th copy (from 1) that plus ``k - 1``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .units import whole_number

#: Copies of one process: each takes one port of its block of PORT_STEP.
MAX_COPIES = 100
PORT_STEP = 100

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class FormationError(ValueError):
    """A formation that cannot be read or does not fit the Procfile; `problem` says why."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Copy:
    """One process to run: its id, the Procfile process it copies, its number and its port."""

    id: str
    process: str
    number: int  # 1-based, as foreman's PS=web.1
    port: int
    group: str | None  # the process name when it runs in more than one copy


def parse_formation(text: str) -> dict[str, int]:
    """``"all=1, web=2"`` -> ``{"all": 1, "web": 2}``; FormationError names the bad entry."""
    counts: dict[str, int] = {}
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, count = (part.strip() for part in entry.partition("="))
        if not sep or not _NAME.match(name):
            raise FormationError(f"{entry!r} is not NAME=COUNT (e.g. web=2)")
        number = _count(repr(entry), whole_number(count))
        if name in counts:
            raise FormationError(f"{name!r} is given twice")
        counts[name] = number
    return counts


def expand(processes: list[str], formation: Mapping[str, int] | None, base_port: int) -> list[Copy]:
    """Every copy to run, in Procfile order, with foreman's names and ports."""
    counts = dict(formation or {})
    default = counts.pop("all", 1)
    unknown = [name for name in counts if name not in processes]
    if unknown:
        raise FormationError(f"{unknown[0]!r} is not a process of the Procfile "
                             f"(it has {', '.join(processes) or 'none'})")
    for name, count in {"all": default, **counts}.items():
        _count(f"{name}={count!r}", count)
    copies: list[Copy] = []
    for index, name in enumerate(processes):
        count = counts.get(name, default)
        for number in range(1, count + 1):
            copy_id = name if count == 1 else f"{name}.{number}"
            port = base_port + PORT_STEP * index + number - 1  # may pass 65535: the caller says where
            copies.append(Copy(copy_id, name, number, port, name if count > 1 else None))
    for copy in copies:  # the only way two copies can share an id
        if copy.group is not None and copy.id in processes:
            raise FormationError(f"{copy.id!r} is both a process of the Procfile and a copy of "
                                 f"{copy.process!r}; rename the process or run one copy")
    return copies


def _count(shown: str, count: object) -> int:
    """`count` if it is a whole number of copies, else FormationError; `shown` is the entry as given."""
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_COPIES:
        raise FormationError(f"{shown}: the count must be a whole number 0..{MAX_COPIES}")
    return count


def formation_text(formation: Mapping[str, int]) -> str:
    """The formation as ``-m`` takes it: ``web=2,worker=3``."""
    return ",".join(f"{name}={count}" for name, count in formation.items())


__all__ = ["MAX_COPIES", "PORT_STEP", "Copy", "FormationError", "expand", "formation_text",
           "parse_formation"]
