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

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psutil

from ..config import command_text
from ..errors import (
    DuplicateProcessError,
    IdentityMismatch,
    ProcessNotFound,
    ProtectedProcessError,
    StateStoreError,
)
from ..instances.leader import handed_over, owner_alive
from ..instances.sync import safe
from ..ports import identify, listening_sockets, pgid_of, terminate
from ..proctree import (
    Spawned,
    process_alive,
    protected_reason,
    same_identity,
    spawns_for_state,
)
from ..records import ProcessInfo
from ..store import StoredProcessInfo
from .context import Context
from .lifecycle import ACTIVE, IDLE, LIVE_RECORD, advance, observed
from .registry import now

if TYPE_CHECKING:  # pragma: no cover
    from .mirror import Mirror
    from .restarter import Restarter
    from .status import StatusView
    from .timetable import Timetable

log = logging.getLogger("procsync.orchestrator")  # its records keep the orchestrator's logger name

RECOVERED = "recovered after a restart of procsync"


def classify(record: Any) -> tuple[str, float | None]:
    """("inactive" or an outcome of `ports.identify`, live create_time) for a stored record."""
    if record.status not in LIVE_RECORD or not record.pid:
        return "inactive", None
    return identify(record.pid, record.create_time)


class Recovery:
    """What one orchestrator does at `initialize()`, and when a recorded id is registered late."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.mirror: Mirror
        self.restarter: Restarter
        self.status_view: StatusView
        self.timetable: Timetable

    def recover_all(self) -> dict[str, list[str]]:
        """Load the store and settle every record: adopt, end, or report; the ids by outcome."""
        ctx = self.ctx
        registry = ctx.registry
        records = self._claim_unrecorded(ctx.store.load())
        lists: dict[str, list[str]] = {name: [] for name in
                                       ("adopted", "ended", "orphaned", "unverified", "protected")}
        for sid, record in records.items():
            with registry.lock:
                registered = sid in registry.servers
                if not registered:
                    registry.pending[sid] = record
            if registered:
                outcomes = self.recover(sid, record).split("+")
            else:
                outcomes = [self._recover_unregistered(sid, record)]
            for outcome in outcomes:
                lists.get(outcome, []).append(sid)
        ctx.sync.prime(records)
        return lists

    def _claim_unrecorded(self, records: dict[str, Any]) -> dict[str, Any]:
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
        ctx = self.ctx
        for spawn in spawns_for_state(ctx.state_key):
            server = ctx.registry.find(spawn.id)
            if server is None or (spawn.top is not None and _names(proven, spawn.top)):
                continue  # the ordinary recovery adopts it
            decision: list[str] = []
            log_file = self.status_view.log_path(spawn.id)  # not inside the store's lock: it takes ours

            def claim(old: Any, spawn: Spawned = spawn, config: Any = server.config,
                      decision: list[str] = decision, log_file: str | None = log_file) -> Any:
                top = spawn.top
                if top is not None and old is not None and _names({(old.pid, old.create_time)}, top):
                    decision.append("recorded")  # its instance recorded it meanwhile
                    return old
                if (old is not None and old.status == "starting" and old.owner != ctx.owner
                        and owner_alive(old.owner)):
                    decision.append("recorded")  # a live instance's start in progress: its own
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
                    log_file=log_file, owner=ctx.owner)

            try:
                record = ctx.store.update_process(spawn.id, claim)
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

    def _stop_unrecorded(self, spawn: Spawned) -> None:
        """Stop what an unrecorded spawn left running: a second copy, or leftovers of an ended one."""
        pids = ", ".join(str(pid) for pid, _ in spawn.members)
        log.warning("server %r: stopping pid(s) %s, spawned but never recorded, as %s", spawn.id,
                    pids, "its top has ended" if spawn.top is None else "the server runs already")
        for pid, created in spawn.members:
            try:
                terminate(psutil.Process(pid), created, group=False, timeout=2.0)
            except psutil.Error:
                continue
        self.ctx.journal.event(spawn.id, "stopped", pid=spawn.top[0] if spawn.top else None,
                      reason=f"stopped pid(s) {pids}: spawned but never recorded")

    def _recover_unregistered(self, sid: str, record: Any) -> str:
        """A record of an id nobody registered (yet): only mark a dead one ended."""
        kind, _ = classify(record)
        if kind != "dead" or not self._may_settle(record):
            return "pending"
        with self.ctx.registry.lock:
            self.ctx.registry.pending.pop(sid, None)
        self._record_ended_while_away(sid, record)
        return "ended"

    def recover(self, sid: str, record: Any) -> str:
        """Adopt, end or disown one stored record of a registered server; the outcome's name.

        Outcomes: adopted, ended, orphaned, dropped, inactive, pending, and for
        a record left alone, unverified or protected, each with "+orphaned"
        when that pid holds one of the server's ports.
        """
        ctx = self.ctx
        registry = ctx.registry
        server = registry.find(sid)
        if server is None:
            return "pending"
        if record.status in LIVE_RECORD and not self._may_settle(record):
            # another live instance owns it (or the leader will take it over): watch it only
            self.mirror.apply(sid, record, emit=False)
            return "adopted" if record.status in ACTIVE else "pending"
        with registry.lock:
            server.restarts = record.restarts or 0
            server.last_exit_code = record.exit_code
            server.last_pid = record.pid or None
            server.log_file = record.log_file
            if record.status in IDLE:
                advance(server, observed(record.status))
            elif record.status == "waiting":  # the wait for its dependencies ended with its instance
                advance(server, observed("stopped"))
            elif record.status == "backoff":  # a pending restart: the leader carries it on
                advance(server, observed("backoff"))
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
                info = ctx.manager.adopt(
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
                self.adopted(sid, info, None if handed_over(record.owner, ctx.owner) else RECOVERED)
                return "adopted"
        # alive, but not provably ours: never adopted, never signalled
        ports = tuple(config.ports) or tuple(record.ports)
        held = {port for port, pids in listening_sockets().items() if record.pid in pids}
        holding = [p for p in ports if p in held]
        if kind in ("unverified", "protected"):
            self._not_adopted(sid, record, kind, holding)
            return f"{kind}+orphaned" if holding else kind
        if holding:
            with registry.lock:
                if server.status != "stopped":
                    advance(server, observed("stopped"))
                server.message = (
                    f"pid {record.pid} from an earlier run holds port {holding[0]} but cannot be "
                    "proven to be the recorded process; not adopted"
                )
            log.warning("server %r: recorded pid %s is alive but not provably ours; left alone "
                        "(it holds port %s, so it shows as an orphan)", sid, record.pid, holding[0])
            return "orphaned"
        log.warning("server %r: recorded pid %s now belongs to another process; record dropped",
                    sid, record.pid)
        safe(ctx.store.remove_process, sid)
        return "dropped"

    def _not_adopted(self, sid: str, record: Any, kind: str,
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
        with self.ctx.registry.lock:
            server = self.ctx.registry.servers.get(sid)
            if server is not None:
                server.message = message
        log.warning("server %r: %s", sid, message)
        self.ctx.journal.event(sid, "not_adopted", pid=record.pid, reason=message)

    def _record_ended_while_away(self, sid: str, record: Any) -> None:
        reason = "ended while procsync was not watching it (exit code unknown)"
        ctx = self.ctx
        with ctx.registry.lock:
            server = ctx.registry.servers.get(sid)
            if server is not None:
                advance(server, "ended_unseen")
                server.message = reason
                server.last_pid = record.pid
        safe(ctx.store.update_process, sid, lambda old: old and (dataclasses.replace(
            old, status="crashed", owner=ctx.owner, updated_at=now()) if old.pid == record.pid
            and old.status == record.status else old))
        ctx.journal.event(sid, "crashed", pid=record.pid, exit_code=record.exit_code, reason=reason,
                      log_file=record.log_file)

    def _may_settle(self, record: Any) -> bool:
        """Whether this instance may adopt or end `record` now: it is ours, or its owner is gone
        and we lead (only the leader takes over what a dead instance left)."""
        if record.owner == self.ctx.owner:
            return True
        return self.ctx.leader.is_leader and not owner_alive(record.owner)

    def adopted(self, sid: str, info: ProcessInfo, reason: str | None = RECOVERED) -> None:
        """Make `info` the live process of `sid`, owned and watched by this instance.

        `reason` is the history entry's; None writes none (a hand-over, see
        `instances.leader.handed_over`).
        """
        ctx = self.ctx
        with ctx.registry.lock:
            server = ctx.registry.servers.get(sid)
            if server is None:
                return
            server.owner = ctx.owner
            advance(server, "adopt")
            server.pid = server.last_pid = info.pid
            server.pgid = info.pgid
            server.create_time = info.create_time
            server.started_at = info.start_time
            server.log_file = info.log_file
            server.ready = True
            server.run_spawned = server.run_ready = server.log_seen = True  # it ran: conditions met
            gen = server.generation
            uptime = (now() - info.start_time).total_seconds()
            config = server.config
            ctx.registry.changed.notify_all()
        self.restarter.schedule_stable(server, gen, max(0.0, config.stable_after - uptime))
        if config.restart_schedule is not None:
            self.timetable.arm(sid, gen, config)
        ctx.monitor.watch(sid, health=config.health, start_timeout=0.0,
                          ports_required=config.ports_required)
        ctx.journal.persist(sid, take=True)  # ours now, whoever owned the record before
        if reason is not None:
            ctx.journal.event(sid, "adopted", pid=info.pid, reason=reason)
        else:
            log.info("server %r: pid %s handed over to instance %r", sid, info.pid,
                     ctx.instance.name)


def _names(records: set[tuple[int, float | None]], process: tuple[int, float]) -> bool:
    """Whether one of the (pid, create_time) `records` is the live `process`."""
    pid, created = process
    return any(p == pid and same_identity(ct, created) for p, ct in records)


__all__ = ["Recovery", "classify"]
