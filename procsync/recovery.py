"""Recovery at `initialize()`: adopt the live processes the store records, end the dead ones.

A record is settled (adopted or marked ended) only by the instance that owns
it, or by the leader once its owner is gone; a live pid that cannot be proven
to be the recorded process is never adopted nor signalled: it shows as an
orphan when it holds one of the server's ports.
"""

# Methods here annotate `self` as the ServerOrchestrator they are mixed into, so mypy checks
# them against it; mypy reports such a self type on a mixin as "misc", hence:
# mypy: disable-error-code="misc"

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from . import signals
from .errors import DuplicateProcessError, IdentityMismatch, ProcessNotFound
from .leader import owner_alive
from .ports import listening_sockets
from .records import ProcessInfo
from .server_state import ACTIVE, LIVE_RECORD, classify, now

if TYPE_CHECKING:  # pragma: no cover
    from .orchestrator import ServerOrchestrator

log = logging.getLogger("procsync.orchestrator")  # its records keep the orchestrator's logger name


class RecoveryMixin:
    """The recovery part of ServerOrchestrator (its methods run on the orchestrator)."""

    def initialize(self: ServerOrchestrator) -> None:
        """Load the store, adopt live recorded processes, mark dead ones ended, start the monitor.

        Sends `initialized` with the ids recovered, ended and orphaned. Safe to call twice.
        """
        with self._lock:
            self._check_open()
            if self._initialized:
                return
            self._initialized = True
        self.leader.try_acquire(self.instance.name)
        records = self.store.load()
        recovered: list[str] = []
        ended: list[str] = []
        orphaned: list[str] = []
        for sid, record in records.items():
            with self._lock:
                registered = sid in self._servers
                if not registered:
                    self._pending[sid] = record
            if registered:
                outcome = self._recover(sid, record)
            else:
                outcome = self._recover_unregistered(sid, record)
            {"adopted": recovered, "ended": ended, "orphaned": orphaned}.get(outcome, []).append(sid)
        self._sync.prime(records)
        self.monitor.start(self.interval)
        self._sync.start()
        signals.send(signals.initialized, self, recovered=recovered, ended=ended, orphaned=orphaned)

    def _ensure_initialized(self: ServerOrchestrator) -> None:
        """Recover before the first start: a start must never duplicate a recorded live process."""
        if not self._initialized and not self._closed:
            self.initialize()

    def _recover_unregistered(self: ServerOrchestrator, sid: str, record: Any) -> str:
        """A record of an id nobody registered (yet): only mark a dead one ended."""
        kind, _ = classify(record)
        if kind != "dead" or not self._may_settle(record):
            return "pending"
        with self._lock:
            self._pending.pop(sid, None)
        self._record_ended_while_away(sid, record)
        return "ended"

    def _recover(self: ServerOrchestrator, sid: str, record: Any) -> str:
        """Adopt, end or disown one stored record of a registered server; the outcome's name."""
        with self._lock:
            server = self._servers.get(sid)
            if server is None:
                return "pending"
        if record.status in LIVE_RECORD and not self._may_settle(record):
            # another live instance owns it (or the leader will take it over): watch it only
            self._sync.apply(sid, None, record, emit=False)
            return "adopted" if record.status in ACTIVE else "pending"
        with self._lock:
            server.restarts = record.restarts or 0
            server.last_exit_code = record.exit_code
            server.last_pid = record.pid or None
            server.log_file = record.log_file
            if record.status in ("stopped", "exited", "crashed", "fatal"):
                server.status = record.status
            elif record.status == "backoff":  # a pending restart: the leader carries it on
                server.status = "backoff"
                server.owner = record.owner
                server.message = f"restart pending (attempt {server.restarts})"
                return "pending"
            config = server.config
        kind, actual = classify(record)
        if kind == "inactive":
            return "inactive"
        if kind == "dead":
            self._record_ended_while_away(sid, record)
            return "ended"
        if kind == "same":
            try:
                info = self.manager.adopt(
                    sid, record.pid, actual, command=record.command, cwd=record.cwd,
                    ports=tuple(config.ports) or tuple(record.ports), log_file=record.log_file,
                    stop_signal=config.stop_signal, stop_timeout=config.stop_timeout,
                    start_time=record.start_time,
                )
            except ProcessNotFound:
                self._record_ended_while_away(sid, record)
                return "ended"
            except IdentityMismatch:
                kind = "unproven"
            except DuplicateProcessError:
                return "inactive"
            else:
                self._adopted(sid, info)
                return "adopted"
        # alive, but not provably ours: never adopted, never signalled
        ports = tuple(config.ports) or tuple(record.ports)
        held = {port for port, pids in listening_sockets().items() if record.pid in pids}
        holding = [p for p in ports if p in held]
        if holding:
            with self._lock:
                server.status = "stopped"
                server.message = (
                    f"pid {record.pid} from an earlier run holds port {holding[0]} but cannot be "
                    "proven to be the recorded process; not adopted"
                )
            log.warning("server %r: recorded pid %s is alive but not provably ours; left alone "
                        "(it holds port %s, so it shows as an orphan)", sid, record.pid, holding[0])
            return "orphaned"
        log.warning("server %r: recorded pid %s now belongs to another process; record dropped",
                    sid, record.pid)
        self._safe(self.store.remove_process, sid)
        return "dropped"

    def _record_ended_while_away(self: ServerOrchestrator, sid: str, record: Any) -> None:
        reason = "ended while procsync was not watching it (exit code unknown)"
        with self._lock:
            server = self._servers.get(sid)
            if server is not None:
                server.status = "crashed"
                server.message = reason
                server.last_pid = record.pid
        self._safe(self.store.update_process, sid, lambda old: old and (dataclasses.replace(
            old, status="crashed", owner=self._owner, updated_at=now()) if old.pid == record.pid
            and old.status == record.status else old))
        self._history(sid, "crashed", pid=record.pid, exit_code=record.exit_code, reason=reason,
                      log_file=record.log_file)

    def _may_settle(self: ServerOrchestrator, record: Any) -> bool:
        """Whether this instance may adopt or end `record` now: it is ours, or its owner is gone
        and we lead (only the leader takes over what a dead instance left)."""
        if record.owner == self._owner:
            return True
        return self.is_leader and not owner_alive(record.owner)

    def _adopted(self: ServerOrchestrator, sid: str, info: ProcessInfo,
                 reason: str = "recovered after a restart of procsync") -> None:
        with self._lock:
            server = self._servers[sid]
            server.owner = self._owner
            server.status = "running"
            server.pid = server.last_pid = info.pid
            server.pgid = info.pgid
            server.create_time = info.create_time
            server.started_at = info.start_time
            server.log_file = info.log_file
            server.ready = True
            server.message = None
            server.generation += 1
            gen = server.generation
            uptime = (now() - info.start_time).total_seconds()
            self._schedule_stable(server, gen, max(0.0, server.config.stable_after - uptime))
            config = server.config
        self.monitor.watch(sid, health=config.health, start_timeout=0.0)
        self._persist(sid)
        self._history(sid, "adopted", pid=info.pid, reason=reason)


__all__ = ["RecoveryMixin"]
