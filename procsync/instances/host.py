"""The narrow interface through which the instances package works on one orchestrator.

`InstanceSync` needs a few things from the orchestrator it keeps in step:
what it believes about a server, and a handful of operations that change
that belief. The orchestrator implements `Host` and hands itself in; the
instances package never touches its private names, and it imports nothing
above the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..config import ServerConfig
from ..manager import ProcessManager
from ..monitor import ProcessMonitor
from ..records import ProcessInfo
from ..store import StoredProcessInfo
from .leader import LeaderLock


@dataclass(frozen=True, slots=True)
class ServerView:
    """What the orchestrator believes about one server right now (a copy)."""

    id: str
    pid: int | None
    owner: str | None
    config: ServerConfig


class Host(Protocol):
    """An orchestrator as the instances package sees it."""

    @property
    def owner(self) -> str:
        """This instance's token, the `owner` of the records it writes."""
        ...

    @property
    def instance_name(self) -> str:
        """This instance's name."""
        ...

    @property
    def store(self) -> Any:
        """The state store (a ProcessStateStore, SQLiteStateStore or an object like them)."""
        ...

    @property
    def manager(self) -> ProcessManager:
        """The orchestrator's process manager."""
        ...

    @property
    def monitor(self) -> ProcessMonitor:
        """The orchestrator's monitor."""
        ...

    @property
    def leader(self) -> LeaderLock:
        """The leader lock beside the state file."""
        ...

    @property
    def closed(self) -> bool:
        """True once shutdown began."""
        ...

    def server_ids(self) -> tuple[str, ...]:
        """The registered ids, in registration order."""
        ...

    def view(self, sid: str) -> ServerView | None:
        """What this instance believes about `sid`; None if it is not registered."""
        ...

    def mirror(self, sid: str, record: StoredProcessInfo | None, *, emit: bool = True) -> None:
        """Take in `record`, written by another instance (None: the record was removed)."""
        ...

    def mark_owned(self, sid: str) -> None:
        """This instance has taken `sid`'s record over (to stop it)."""
        ...

    def adopted(self, sid: str, info: ProcessInfo, reason: str | None) -> None:
        """This instance now watches and owns `info`, the live process of `sid` (`reason`: the
        history entry's; None for a hand-over, which writes none)."""
        ...

    def exit_seen(self, sid: str, record: StoredProcessInfo) -> None:
        """The process of `record` (now ours) ended unseen: decide as for an exit, code unknown."""
        ...

    def finish_stop(self, sid: str, pid: int, exit_code: int | None) -> None:
        """A stop another instance began has ended: record it as stopped."""
        ...

    def stop_later(self, sid: str) -> None:
        """Stop `sid` on a worker thread (its stopper is gone)."""
        ...

    def arm_restart(self, sid: str, record: StoredProcessInfo) -> None:
        """Schedule the pending automatic restart `record` shows (when its backoff ends),
        unless one is scheduled already."""
        ...


__all__ = ["Host", "ServerView"]
