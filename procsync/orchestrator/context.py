"""What every part of one orchestrator shares.

Every part receives the same `Context`: the registry (servers, the lock and
a condition on it), the manager, monitor and store, who this instance is,
the journal, the scheduler and the instances' sync. Parts call each other
through the references the facade wires in; none reaches into another's
fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..instances.leader import InstanceId, LeaderLock
from ..instances.sync import InstanceSync
from ..manager import ProcessManager
from ..monitor import ProcessMonitor
from .journal import Journal
from .registry import Registry, now
from .scheduler import Scheduler


@dataclasses.dataclass(eq=False)
class Context:
    """What every part of one orchestrator shares (the facade builds it and swaps parts at a fork)."""

    registry: Registry
    manager: ProcessManager
    monitor: ProcessMonitor
    store: Any
    instance: InstanceId
    leader: LeaderLock
    state_key: str  # the state file's real path, carried by every spawn
    sender: Any  # the ServerOrchestrator: the sender of its signals
    clock: Callable[[], datetime] = now  # the wall clock (timetabled restarts); tests inject one
    journal: Journal = dataclasses.field(init=False)
    scheduler: Scheduler = dataclasses.field(init=False)
    sync: InstanceSync = dataclasses.field(init=False)
    spawn_worker: Callable[..., None] = dataclasses.field(init=False)

    @property
    def owner(self) -> str:
        """This instance's token: the `owner` of the records it writes."""
        return self.instance.token


__all__ = ["Context"]
