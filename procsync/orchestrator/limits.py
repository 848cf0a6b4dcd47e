"""The memory limit (`memory_limit`, `memory_action`): checked against each monitor tick.

The monitor sends `health_check` with every tick's `ProcessStatus`es, whose
`memory_rss` is the RSS of the whole process tree. For each server with a
`memory_limit` that is starting or running, with the very pid the status
is about, a tick over the limit is a breach:

- "restart" and "stop" act once per generation of the server: the history
  gets a `memory_limit` event, `memory_limit_exceeded` is sent, and a
  worker thread restarts (history "restarting") or stops (history
  "stopped") it; the restart or stop starts a new generation, which is
  watched afresh;
- "alert" only records and sends, once per crossing: it may fire again
  after a tick has seen the tree back under the limit.

Nothing blocking runs on the monitor thread: the registry lock is held
only to read the server and mark the breach, and the action is handed to
a worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .. import signals
from ..config.units import format_size
from ..records import ActionResult, ProcessStatus
from .context import Context

log = logging.getLogger("procsync.orchestrator")

_VERBS = {"restart": "restarting", "stop": "stopping", "alert": "alert only"}


class Limits:
    """Compares each tick's tree RSS with the server's memory_limit and acts on a breach."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.restart: Callable[[str, str], ActionResult]  # Stopper.restart(sid, reason)
        self.stop: Callable[..., ActionResult]  # Stopper.stop(sid, event=..., reason=...)
        self._over: dict[str, int] = {}  # sid -> the generation a breach was handled in (registry lock)

    def on_health_check(self, sender: Any, statuses: list[ProcessStatus] | None = None,
                        **extra: Any) -> None:
        """The monitor's `health_check` (on the monitor thread): compare, hand any action off."""
        breaches: list[tuple[str, int, int, int, int, str]] = []
        registry = self.ctx.registry
        with registry.lock:
            if registry.closed:
                return
            for status in statuses or ():
                breach = self._check(status)
                if breach is not None:
                    breaches.append(breach)
        for sid, gen, pid, rss, limit, action in breaches:
            self._report(sid, gen, pid, rss, limit, action)

    def _check(self, status: ProcessStatus) -> tuple[str, int, int, int, int, str] | None:
        """A new breach in `status` (under the registry lock), or None."""
        if status.pid is None or not status.alive:
            return None
        server = self.ctx.registry.servers.get(status.id)
        if server is None or server.config.memory_limit is None:
            return None
        if server.status not in ("starting", "running") or server.pid != status.pid:
            return None  # an old tick, or a process that is on its way out
        if server.owner not in (None, self.ctx.owner):
            return None  # another instance's process: its owner watches it
        limit = int(server.config.memory_limit)
        action = server.config.memory_action
        handled = self._over.get(status.id) == server.generation
        if status.memory_rss <= limit:
            if handled and action == "alert":
                del self._over[status.id]  # back under: the next crossing alerts again
            return None
        if handled:
            return None
        self._over[status.id] = server.generation
        return status.id, server.generation, status.pid, status.memory_rss, limit, action

    def _report(self, sid: str, gen: int, pid: int, rss: int, limit: int, action: str) -> None:
        ctx = self.ctx
        reason = (f"memory {format_size(rss)} is over the limit of {format_size(limit)}; "
                  f"{_VERBS.get(action, action)}")
        log.warning("server %r (pid %s): %s", sid, pid, reason)
        ctx.journal.event(sid, "memory_limit", pid=pid, reason=reason)
        signals.send(signals.memory_limit_exceeded, ctx.sender, id=sid, pid=pid, rss=rss,
                     limit=limit, action=action)
        if action in ("restart", "stop"):
            ctx.spawn_worker(self._act, sid, gen, action, reason, name=f"procsync-memory-{sid}")

    def _act(self, sid: str, gen: int, action: str, reason: str) -> None:
        """On a worker: restart or stop `sid`, unless it moved on since the breach."""
        registry = self.ctx.registry
        with registry.lock:
            server = registry.servers.get(sid)
            if registry.closed or server is None or server.generation != gen:
                return
        if action == "restart":
            result = self.restart(sid, reason)
        else:
            result = self.stop(sid, event="stopped", reason=reason)
        if not result.success:
            log.warning("server %r: %s after a memory limit breach failed: %s", sid, action,
                        result.message)


__all__ = ["Limits"]
