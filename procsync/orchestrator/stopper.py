"""Stopping servers, one or a whole batch at once, and restarting them by request.

A stop moves each server to "stopping" (or cancels its pending restart),
then stops every process of the batch together (`ProcessManager.kill_many`:
one signal round, one wait, one sweep for leftovers), then records the
outcome of all of them in one journal commit. `stop_all()` of 200 servers
costs about what one stop does.
"""

from __future__ import annotations

import dataclasses
import logging
import signal as _signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import signals
from ..proctree import process_alive, signal_group
from ..records import ActionResult, KillResult
from .context import Context
from .journal import Ticket
from .lifecycle import ACTIVE, BACKOFF, PENDING, WAITING, ServerState, advance
from .registry import fail

if TYPE_CHECKING:  # pragma: no cover
    from .restarter import Restarter
    from .starter import Starter

log = logging.getLogger("procsync.orchestrator")


@dataclasses.dataclass(slots=True)
class _Stop:
    server: ServerState
    pid: int | None
    create_time: float | None
    foreign: bool
    cancelled: bool  # a pending restart (or wait for dependencies) was cancelled; no process
    result: ActionResult | None = None
    pending: str = "pending restart"  # what was cancelled


class Stopper:
    """The stop and restart paths of one orchestrator."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.starter: Starter
        self.restarter: Restarter
        # the start after a restart's stop (the facade routes it through the start order)
        self.start_again: Callable[[str], ActionResult] = lambda sid: self.starter.start(sid, restart=True)

    def stop(self, sid: str, *, event: str = "stopped", reason: str = "stopped by request") -> ActionResult:
        """Stop server `sid` (its whole process tree); cancels a pending automatic restart."""
        return self.stop_many([sid], event=event, reason=reason)[sid]

    def stop_many(self, ids: list[str], *, event: str = "stopped", reason: str = "stopped by request",
                  only_active: bool = False) -> dict[str, ActionResult]:
        """Stop every server of `ids` together; the result of each.

        `only_active` (shutdown) answers "was not running" for the others
        instead of an "already_stopped" failure.
        """
        ctx = self.ctx
        registry = ctx.registry
        results: dict[str, ActionResult] = {}
        stops: list[_Stop] = []
        with registry.lock:
            for sid in ids:
                server = registry.servers.get(sid)
                if server is None:
                    results[sid] = fail(f"unknown server {sid!r}", "unknown")
                    continue
                deadline = time.monotonic() + 10.0
                while (server.status == "starting" and server.pid is None
                       and time.monotonic() < deadline):
                    registry.changed.wait(0.05)  # a spawn is under way: its pid comes in ms
                foreign = server.owner not in (None, ctx.owner)  # another instance's process
                if foreign and server.status in ("starting", "running"):
                    server.last_exit_code = None  # its spawner records the code it alone knows
                if server.status == BACKOFF:
                    pid = server.last_pid
                    advance(server, "cancel_restart")
                    stops.append(_Stop(server, pid, server.create_time, foreign, cancelled=True))
                elif server.status == WAITING:
                    advance(server, "cancel_wait")
                    stops.append(_Stop(server, None, None, False, cancelled=True,
                                       pending="wait for its dependencies"))
                elif server.status in ("starting", "running") and server.pid is not None:
                    pid = server.pid
                    advance(server, "stop")
                    stops.append(_Stop(server, pid, server.create_time, foreign, cancelled=False))
                elif only_active:
                    results[sid] = ActionResult(True, f"{sid!r} was not running")
                else:
                    what = ("is already stopping" if server.status == "stopping"
                            else f"is not running ({server.status})")
                    results[sid] = fail(f"server {sid!r} {what}", "already_stopped", server.pid)
            registry.changed.notify_all()
        for stop in stops:  # take it over first (identity checked), so its owner won't restart it
            if stop.foreign:
                ctx.sync.take_for_stop(stop.server.id, stop.pid, stop.create_time)
        tickets: list[Ticket] = []
        killing = [s for s in stops if not s.cancelled]
        killed = self._kill([s.server.id for s in killing])
        for stop in stops:
            if stop.cancelled:
                tickets.append(self._cancelled(stop, event, reason))
            else:
                ticket = self._finish(stop, killed.get(stop.server.id), event, reason)
                if ticket is not None:
                    tickets.append(ticket)
        for stop in stops:
            assert stop.result is not None
            results[stop.server.id] = stop.result
        for ticket in tickets:
            ticket.wait()
        return {sid: results[sid] for sid in ids}

    def _kill(self, ids: list[str]) -> dict[str, KillResult]:
        manager = self.ctx.manager
        if not ids:
            return {}
        if len(ids) > 1 and hasattr(manager, "kill_many"):
            results = manager.kill_many(ids)
        else:
            results = {sid: manager.kill(sid) for sid in ids}
        for sid in ids:
            manager.wait(sid, timeout=5.0)
        return results

    def _cancelled(self, stop: _Stop, event: str, reason: str) -> Ticket:
        ctx = self.ctx
        sid, pid = stop.server.id, stop.pid
        ctx.journal.persist(sid, take=True)
        ticket = ctx.journal.event(sid, event, pid=pid, reason=f"{reason}; {stop.pending} cancelled")
        signals.send(signals.server_stopped, ctx.sender, id=sid, pid=pid, exit_code=None,
                     instance=ctx.instance.name)
        stop.result = ActionResult(True, f"stopped {sid!r}: {stop.pending} cancelled", pid)
        return ticket

    def _finish(self, stop: _Stop, result: KillResult | None, event: str, reason: str) -> Ticket | None:
        ctx = self.ctx
        server, pid = stop.server, stop.pid
        sid = server.id
        if result is None:
            result = ctx.manager.kill(sid)
        if pid is not None and process_alive(pid, stop.create_time):
            # the process to stop is not the one our manager held under this id
            if stop.foreign:
                ctx.sync.take_for_stop(sid, pid, stop.create_time)
            result = ctx.manager.kill(sid)
            ctx.manager.wait(sid, timeout=5.0)
            if process_alive(pid, stop.create_time):
                with ctx.registry.lock:
                    if server.status == "stopping":
                        advance(server, "stop_failed")
                    ctx.registry.changed.notify_all()
                log.error("server %r: pid %s could not be stopped", sid, pid)
                stop.result = fail(f"could not stop {sid!r}: pid {pid} is still running",
                                   "stop_failed", pid)
                return None
        with ctx.registry.lock:
            code = result.exit_code if result.exit_code is not None else server.last_exit_code
            if result.exit_code is not None:
                server.last_exit_code = result.exit_code
            if server.status == "stopping":
                advance(server, "stopped")
            server.verdict = server.verdict_at = None
            server.owner = ctx.owner
            ctx.registry.changed.notify_all()
        ctx.journal.persist(sid, take=True)
        ticket = ctx.journal.event(sid, event, pid=pid, exit_code=code, reason=reason)
        signals.send(signals.server_stopped, ctx.sender, id=sid, pid=pid, exit_code=code,
                     instance=ctx.instance.name)
        how = f" with {result.signal}" if result.signal else ""
        stop.result = ActionResult(True, f"stopped {sid!r} (pid {pid}){how}", pid)
        return ticket

    def reload(self, sid: str) -> ActionResult:
        """Send `sid`'s reload_signal to its process group; its history records it."""
        ctx = self.ctx
        with ctx.registry.lock:
            server = ctx.registry.servers.get(sid)
            if server is None:
                return fail(f"unknown server {sid!r}", "unknown")
            config, status, pid, create_time = server.config, server.status, server.pid, server.create_time
        if config.reload_signal is None:
            return fail(f"server {sid!r} has no reload_signal configured", "not_supported")
        if status not in ("starting", "running") or pid is None:
            return fail(f"server {sid!r} is not running ({status})", "already_stopped")
        signum = int(getattr(_signal, config.reload_signal))
        sent = ctx.manager.send_signal(sid, signum)
        if sent is None and signal_group(pid, create_time, signum):
            sent = pid  # another instance's process: its identity is checked all the same
        if sent is None or sent != pid:
            return fail(f"server {sid!r} (pid {pid}) is no longer running", "already_stopped", pid)
        ctx.journal.event(sid, "reloaded", pid=pid, reason=f"sent {config.reload_signal}")
        signals.send(signals.server_reloaded, ctx.sender, id=sid, pid=pid, signal=config.reload_signal,
                     instance=ctx.instance.name)
        return ActionResult(True, f"sent {config.reload_signal} to {sid!r} (pid {pid})", pid)

    def restart(self, sid: str, reason: str = "restarted by request") -> ActionResult:
        """Stop `sid` if it runs, wait until its processes and ports are gone, start it again.

        `reason` goes in the history (a timetable or a memory limit gives its own)."""
        ctx = self.ctx
        with ctx.registry.lock:
            server = ctx.registry.servers.get(sid)
            if server is None:
                return fail(f"unknown server {sid!r}", "unknown")
            status = server.status
        if status == "stopping":
            return fail(f"server {sid!r} is stopping; try again once it has stopped",
                        "already_running", server.pid)
        if status in (*ACTIVE, *PENDING):
            stopped = self.stop(sid, event="restarting", reason=reason)
            if not stopped.success and stopped.code != "already_stopped":
                return stopped
            self.restarter.wait_released(server, stopped.pid,
                                         timeout=server.config.stop_timeout + 5.0)
        return self.start_again(sid)


__all__ = ["Stopper"]
