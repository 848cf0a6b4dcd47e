"""The registry of servers: their records and the one lock that guards them, plus small helpers."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime
from typing import Any

from ..errors import ProcessNotFound
from ..locks import ordered_lock
from ..records import ActionResult
from .lifecycle import ServerState

READY_POLL = 0.01  # seconds between readiness probes while starting
LOG_TAIL = 20  # log lines quoted when a start fails or a process exits


def now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def fail(message: str, code: str, pid: int | None = None) -> ActionResult:
    """A failed ActionResult."""
    return ActionResult(False, message, pid, code)


class Registry:
    """The registered servers and the lock every change to them is made under."""

    def __init__(self) -> None:
        self.lock = ordered_lock("orchestrator")
        self.changed = threading.Condition(self.lock)  # notified on every status change
        self.servers: dict[str, ServerState] = {}
        self.pending: dict[str, Any] = {}  # stored records of ids not registered yet
        self.initialized = False  # initialize() has begun
        self.recovered = threading.Event()  # ... and has read the store and settled its records
        self.closed = False
        self.closing = threading.Event()

    def reset_after_fork(self) -> None:
        """In a forked child: fresh lock, condition and events (the records stay)."""
        self.lock = ordered_lock("orchestrator")
        self.changed = threading.Condition(self.lock)
        self.closing = threading.Event()
        self.recovered = threading.Event()  # a child that may work was never initialized

    def find(self, sid: str) -> ServerState | None:
        """The record of `sid`, or None (takes the lock)."""
        with self.lock:
            return self.servers.get(sid)

    def get(self, sid: str) -> ServerState:
        """The record of `sid`; ProcessNotFound if it is not registered."""
        server = self.find(sid)
        if server is None:
            raise ProcessNotFound(sid, "server")
        return server

    def ids(self) -> tuple[str, ...]:
        """The registered ids, in registration order."""
        with self.lock:
            return tuple(self.servers)

    def configs(self) -> dict[str, Any]:
        """The registered configs, id -> ServerConfig, in registration order (a copy)."""
        with self.lock:
            return {sid: s.config for sid, s in self.servers.items()}

    def snapshot(self, server: ServerState) -> ServerState:
        """A copy of `server` to read outside the lock (call under the lock)."""
        return dataclasses.replace(server, ended=dict(server.ended))


__all__ = ["LOG_TAIL", "READY_POLL", "Registry", "fail", "now"]
