"""Recovery at `initialize()`: adopt the live processes the store records, end the dead ones.

A record is settled (adopted or marked ended) only by the instance that owns
it, or by the leader once its owner is gone. A live pid is adopted only when
its create time matches the record's; one that cannot be proven to be the
recorded process is never adopted nor signalled: it shows as an orphan when
it holds one of the server's ports. A live record without a create time
("unverified") or naming PID 1, this process or an ancestor ("protected") is
reported (a warning, a "not_adopted" history entry, the server's message and
the `initialized` payload) and kept in the store until a start of that id
replaces it.
"""

# Methods here annotate `self` as the ServerOrchestrator they are mixed into, so mypy checks
# them against it; mypy reports such a self type on a mixin as "misc", hence:
# mypy: disable-error-code="misc"

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psutil

from . import signals
from .config import command_text
from .errors import (
    DuplicateProcessError,
    IdentityMismatch,
    ProcessNotFound,
    ProtectedProcessError,
    StateStoreError,
)
from .leader import owner_alive
from .ports import listening_sockets, pgid_of, terminate
from .proctree import (
    Spawned,
    process_alive,
    protected_reason,
    same_identity,
    spawns_for_state,
)
from .records import ProcessInfo
from .server_state import ACTIVE, LIVE_RECORD, classify, now
from .store import StoredProcessInfo

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
        records = self._claim_unrecorded(self.store.load())
        lists: dict[str, list[str]] = {name: [] for name in
                                       ("adopted", "ended", "orphaned", "unverified", "protected")}
        for sid, record in records.items():
            with self._lock:
                registered = sid in self._servers
                if not registered:
                    self._pending[sid] = record
            if registered:
                outcomes = self._recover(sid, record).split("+")
            else:
                outcomes = [self._recover_unregistered(sid, record)]
            for outcome in outcomes:
                lists.get(outcome, []).append(sid)
        self._sync.prime(records)
        self.monitor.start(self.interval)
        self._sync.start()
        signals.send(signals.initialized, self, recovered=lists["adopted"], ended=lists["ended"],
                     orphaned=lists["orphaned"], unverified=lists["unverified"],
                     protected=lists["protected"])

    def _claim_unrecorded(self: ServerOrchestrator, records: dict[str, Any]) -> dict[str, Any]:
        """Find spawns of this state file that no record names, and settle each; the records after.

        A host killed between spawning a server and recording it leaves such a
        process. It carries this state file, its id and its spawn token in its
        environment, so it is provably ours: it is recorded (and then adopted by the
        ordinary recovery) when its id runs nothing else; otherwise, or when only what
        it left behind still runs, it is stopped. The decision is taken under the
        store's lock, which a live instance holds from its spawn to its record.
        """
        records = dict(records)
        proven = {(r.pid, r.create_time) for r in records.values() if r.pid}
        for spawn in spawns_for_state(self._state_key):
            with self._lock:
                server = self._servers.get(spawn.id)
            if server is None or (spawn.top is not None and _names(proven, spawn.top)):
                continue  # the ordinary recovery adopts it
            decision: list[str] = []

            def claim(old: Any, spawn: Spawned = spawn, config: Any = server.config,
                      decision: list[str] = decision) -> Any:
                top = spawn.top
                if top is not None and old is not None and _names({(old.pid, old.create_time)}, top):
                    decision.append("recorded")  # its instance recorded it meanwhile
                    return old
                if top is None or (old is not None and old.status in ACTIVE
                                   and process_alive(old.pid, old.create_time)):
                    decision.append("stop")
                    return old
                decision.append("record")
                pid, created = top
                return StoredProcessInfo(
                    id=spawn.id, pid=pid, command=command_text(config.command), cwd=config.cwd,
                    start_time=datetime.fromtimestamp(created, UTC), status="running",
                    ports=tuple(config.ports), create_time=created, pgid=pgid_of(pid),
                    log_file=self.log_path(spawn.id), owner=self._owner)

            try:
                record = self.store.update_process(spawn.id, claim)
            except StateStoreError as err:
                log.warning("server %r: cannot record pid %s found running: %s", spawn.id,
                            spawn.top and spawn.top[0], err)
                continue
            if decision == ["record"] and record is not None:
                log.warning("server %r: pid %s was spawned but never recorded (procsync stopped "
                            "in between); recorded now and adopted", spawn.id, record.pid)
                records[spawn.id] = record
            elif decision == ["stop"]:
                self._stop_unrecorded(spawn)
        return records

    def _stop_unrecorded(self: ServerOrchestrator, spawn: Spawned) -> None:
        """Stop what an unrecorded spawn left running: a second copy, or leftovers of an ended one."""
        pids = ", ".join(str(pid) for pid, _ in spawn.members)
        log.warning("server %r: stopping pid(s) %s, spawned but never recorded, as %s", spawn.id,
                    pids, "its top has ended" if spawn.top is None else "the server runs already")
        for pid, created in spawn.members:
            try:
                terminate(psutil.Process(pid), created, group=False, timeout=2.0)
            except psutil.Error:
                continue
        self._history(spawn.id, "stopped", pid=spawn.top[0] if spawn.top else None,
                      reason=f"stopped pid(s) {pids}: spawned but never recorded")

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
        """Adopt, end or disown one stored record of a registered server; the outcome's name.

        Outcomes: adopted, ended, orphaned, dropped, inactive, pending, and for
        a record left alone, unverified or protected, each with "+orphaned"
        when that pid holds one of the server's ports.
        """
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
            except ProtectedProcessError:
                kind = "protected"
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
        if kind in ("unverified", "protected"):
            self._not_adopted(sid, record, kind, holding)
            return f"{kind}+orphaned" if holding else kind
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

    def _not_adopted(self: ServerOrchestrator, sid: str, record: Any, kind: str,
                     holding: list[int]) -> None:
        """Report a live record that is never adopted; it stays in the store for the user to clear."""
        if kind == "protected":
            why = (f"pid {record.pid} is {protected_reason(record.pid) or 'protected'}, which "
                   "procsync never adopts or signals")
        else:
            why = (f"the record of pid {record.pid} has no create time, so nothing proves that pid "
                   "is still the recorded process (a matching command line proves nothing)")
        port = f" (it holds port {holding[0]}, so it shows as an orphan)" if holding else ""
        message = (f"not adopted: {why}; the process is left alone and never signalled{port}. "
                   f"Start {sid!r} to replace the record")
        with self._lock:
            server = self._servers.get(sid)
            if server is not None:
                server.message = message
        log.warning("server %r: %s", sid, message)
        self._history(sid, "not_adopted", pid=record.pid, reason=message)

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


def _names(records: set[tuple[int, float | None]], process: tuple[int, float]) -> bool:
    """Whether one of the (pid, create_time) `records` is the live `process`."""
    pid, created = process
    return any(p == pid and same_identity(ct, created) for p, ct in records)


__all__ = ["RecoveryMixin"]
