"""Keep one orchestrator in step with the other instances that share its state file.

The store is the meeting point. Every record names its `owner`, the
instance (`procsync.leader.InstanceId`) whose manager runs or watches the
process. `InstanceSync` works on its ServerOrchestrator's internals:

- a daemon thread polls ``store.version()`` every `SYNC_INTERVAL` s; when it
  changed, the records written by other instances are applied to this
  instance's view (their live processes are adopted for watching, through
  pidfd, so a death is seen at once) and the matching signals are sent
  from this orchestrator with ``instance=<name of the instance that acted>``;
- each tick also tries the leader lock; the leader adopts the processes of
  instances that are gone, records the deaths of their processes
  ("crashed, exit code unknown") and runs every pending automatic restart; a
  live record it cannot prove (no create time, or a protected pid) it leaves
  alone: never adopted, never signalled, never recorded dead while it lives;
- `claim_spawn` spawns under the store's cross-process lock, so two
  instances asked to start one server at once start one process;
- `exit_is_foreign` decides who handles an exit: the owner, else the leader.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import signals
from .config import ServerConfig, SpawnConfig
from .errors import DuplicateProcessError, IdentityMismatch, ProcessNotFound, StateStoreError
from .leader import owner_alive, owner_name
from .ports import identify
from .proctree import process_alive
from .records import ProcessInfo
from .restart import backoff_delay, describe_exit
from .store import StoredProcessInfo

if TYPE_CHECKING:  # pragma: no cover
    from .orchestrator import ServerOrchestrator

log = logging.getLogger(__name__)

SYNC_INTERVAL = 0.5  # seconds between two looks at the store (each wake-up costs ~0.1 ms CPU)
DEAD_GRACE = 2.0  # seconds a living owner has to record the death of its process
ACTIVE = ("starting", "running", "stopping")


def _now() -> datetime:
    return datetime.now(UTC)


def _same(old: StoredProcessInfo | None, new: StoredProcessInfo | None) -> bool:
    """Equal records, ignoring when they were written."""
    if old is None or new is None:
        return old is new
    return dataclasses.replace(old, updated_at=None) == dataclasses.replace(new, updated_at=None)


class Taken(Exception):
    """Raised inside a claim: the server runs already, as `record` says."""

    def __init__(self, record: StoredProcessInfo) -> None:
        super().__init__(record.id)
        self.record = record


def taken_message(record: StoredProcessInfo) -> str:
    """Why a start was refused: who runs the server already."""
    who = owner_name(record.owner)
    where = f" through instance {who!r}" if who else ""
    return f"server {record.id!r} is already {record.status} (pid {record.pid}, started{where})"


class InstanceSync:
    """The cross-instance half of a ServerOrchestrator: store polling, leadership, ownership."""

    def __init__(self, orch: ServerOrchestrator, interval: float = SYNC_INTERVAL) -> None:
        self._orch = orch
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: dict[str, StoredProcessInfo] = {}
        self._dead_since: dict[tuple[str, int], float] = {}  # (id, pid) -> when first seen dead
        self._unproven: set[tuple[str, int]] = set()  # (id, pid) already warned about
        self._version: Any = None  # the store's version at the last full look
        self._ids: tuple[str, ...] = ()  # the registered ids at the last full look
        self._leader_work = True  # some record needs the leader's periodic attention

    # ------------------------------------------------------------ thread

    def prime(self, records: dict[str, StoredProcessInfo]) -> None:
        """Take `records` (loaded at initialize) as already seen: no signals for them."""
        with self._lock:
            self._seen = dict(records)

    def start(self) -> None:
        """Start the polling thread (idempotent)."""
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="procsync-sync", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the polling thread; safe to call twice."""
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def forget_after_fork(self) -> None:
        """In a forked child: the thread is gone; make fresh locks."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:
                log.exception("sync tick failed")

    def tick(self) -> None:
        """One look: try to lead, apply what other instances wrote, do the leader's work."""
        orch = self._orch
        if orch._closed:
            return
        leader = orch.leader
        became_leader = not leader.is_leader and leader.try_acquire(orch.instance.name)
        if became_leader:
            log.info("instance %r is now the leader for %s", orch.instance.name, orch.store.path)
        # An idle instance costs one stat and one read per tick: the records are looked at
        # only when another writer committed, or while some record needs the leader.
        version = orch.store.version()
        ids = tuple(orch.configs)
        if version != self._version or ids != self._ids or became_leader or self._leader_work:
            self._version, self._ids = version, ids
            records = self._records()
            for sid in ids:
                self._observe(sid, records.get(sid))
            me = orch._owner
            self._leader_work = any(
                r.status == "backoff" or (r.status in ACTIVE and r.owner != me)
                for r in records.values()
            )
            if leader.is_leader and not orch._closed:
                self._lead(records)

    def refresh(self, sid: str | None = None) -> None:
        """Apply what other instances wrote for `sid` (every server if None) now, not at the next tick."""
        orch = self._orch
        records = self._records()
        for one in ([sid] if sid is not None else list(orch.configs)):
            self._observe(one, records.get(one))

    def _records(self) -> dict[str, StoredProcessInfo]:
        """The store's records by id (a cached read unless another writer committed)."""
        return {record.id: record for record in self._orch.store.get_all_processes()}

    def _observe(self, sid: str, record: StoredProcessInfo | None) -> None:
        """Apply `record` once: whoever sees a change first (thread or caller) applies it."""
        with self._lock:
            old = self._seen.get(sid)
            if _same(old, record):
                return
            if record is None:
                self._seen.pop(sid, None)
            else:
                self._seen[sid] = record
        self.apply(sid, old, record)

    # ------------------------------------------------------------ applying records

    def apply(self, sid: str, old: StoredProcessInfo | None, new: StoredProcessInfo | None,
              *, emit: bool = True) -> None:
        """Bring this instance's view of `sid` in line with `new`, written by another instance.

        The signals sent follow from what this instance believed before (not
        from `old`), under the orchestrator's lock: however many threads apply
        one record, each change is announced once.
        """
        orch = self._orch
        me = orch._owner
        if new is not None and new.owner == me:
            with orch._lock:  # our own record; the spawner may have added the exit code
                server = orch._servers.get(sid)
                if (server is not None and new.exit_code is not None and server.last_exit_code is None
                        and server.last_pid == new.pid and server.status not in ACTIVE):
                    server.last_exit_code = new.exit_code
            return
        watch: ServerConfig | None = None
        with orch._lock:
            server = orch._servers.get(sid)
            if server is None:
                return
            before = (server.status, server.pid, server.restarts)
            if new is None:
                if server.owner in (None, me) or server.status not in (*ACTIVE, "backoff"):
                    return
                server.cancel_timers()
                server.generation += 1
                server.status, server.pid, server.ready, server.owner = "stopped", None, False, None
                orch._changed.notify_all()
                return
            server.owner = new.owner
            server.cancel_timers()
            server.generation += 1
            server.restarts = new.restarts
            server.last_pid = new.pid
            server.last_exit_code = new.exit_code
            server.log_file = new.log_file or server.log_file
            server.verdict = server.verdict_at = None
            server.kill_reason = None
            server.status = new.status
            if new.status in ACTIVE:
                server.pid = new.pid
                server.pgid = new.pgid
                server.create_time = new.create_time
                server.started_at = new.start_time
                server.ready = new.status == "running"
                server.message = None
                watch = server.config
            else:
                server.pid = None
                server.ready = False
                server.message = self._describe(new, server.config)
            sends = self._transitions(before, new, server.config) if emit else []
            orch._changed.notify_all()
        if watch is not None:
            self.watch(sid, new, watch)
        who = owner_name(new.owner)
        for signal, payload in sends:
            signals.send(signal, orch, id=sid, instance=who, **payload)

    @staticmethod
    def _describe(record: StoredProcessInfo, config: ServerConfig) -> str | None:
        who = owner_name(record.owner)
        by = f" (through instance {who!r})" if who else ""
        if record.status == "backoff":
            return (f"{describe_exit(record.exit_code)}; restarting (attempt {record.restarts} "
                    f"of {config.max_restarts}){by}")
        if record.status == "fatal":
            return f"fatal after {record.restarts} restarts, last {describe_exit(record.exit_code)}{by}"
        if record.status in ("crashed", "exited"):
            return f"{describe_exit(record.exit_code)}{by}"
        return None

    def watch(self, sid: str, record: StoredProcessInfo, config: ServerConfig) -> ProcessInfo | None:
        """Have this instance's manager watch `record`'s process (identity checked); its info or None."""
        manager = self._orch.manager
        info = manager.get_process(sid)
        if info is not None and info.pid == record.pid and manager.is_running(sid):
            return info
        if record.create_time is None:
            return None  # no identity recorded: never adopted
        for attempt in (1, 2):
            try:
                info = manager.adopt(
                    sid, record.pid, record.create_time, command=record.command, cwd=record.cwd,
                    ports=tuple(config.ports) or tuple(record.ports), log_file=record.log_file,
                    stop_signal=config.stop_signal, stop_timeout=config.stop_timeout,
                    start_time=record.start_time,
                )
            except (ProcessNotFound, IdentityMismatch):  # ProtectedProcessError is one
                return None
            except DuplicateProcessError:
                # we still track an older process under this id: if it has ended and the
                # manager has not said so yet, let it finish, then adopt the new one
                old = manager.get_process(sid)
                if attempt == 2 or old is None or process_alive(old.pid, old.create_time):
                    return None
                manager.wait(sid, timeout=1.0)
                continue
            self._orch.monitor.watch(sid, health=config.health)
            return info
        return None

    @staticmethod
    def _transitions(before: tuple[str, int | None, int], new: StoredProcessInfo,
                     config: ServerConfig) -> list[tuple[Any, dict[str, Any]]]:
        """The signals for going from `before` (status, pid, restarts) to `new`."""
        status, pid, restarts = before
        sends: list[tuple[Any, dict[str, Any]]] = []
        was_active = status in ACTIVE and pid is not None
        if was_active and new.status not in ("stopping", "stopped") and (
                new.pid != pid or new.status not in ACTIVE):
            sends.append((signals.process_died, {"pid": pid, "exit_code": new.exit_code}))
        if new.status == "running":
            if not (status == "running" and pid == new.pid):
                sends.append((signals.server_started, {"pid": new.pid, "ready": True}))
        elif new.status == "stopped":
            if status in (*ACTIVE, "backoff"):
                sends.append((signals.server_stopped, {"pid": pid or new.pid,
                                                       "exit_code": new.exit_code}))
        elif new.status == "backoff":
            if status != "backoff" or restarts != new.restarts:
                delay = backoff_delay(max(1, new.restarts), config.backoff_initial, config.backoff_max)
                sends.append((signals.server_restarting, {
                    "pid": new.pid, "attempt": new.restarts, "delay": delay,
                    "reason": describe_exit(new.exit_code)}))
        elif new.status == "fatal":
            if status != "fatal":
                sends.append((signals.server_fatal, {"pid": new.pid, "restarts": new.restarts,
                                                      "exit_code": new.exit_code}))
        return sends

    # ------------------------------------------------------------ starting

    def claim_spawn(self, sid: str, spawn: SpawnConfig, restarts: int,
                    ) -> tuple[ProcessInfo | None, StoredProcessInfo | None]:
        """Spawn `spawn` under the store's lock unless another process runs `sid` already.

        Returns (info, None) when we spawned, (None, record) when the record
        shows a live process of `sid` (the caller answers "already running").
        SpawnError and DuplicateProcessError pass through; nothing is written then.
        """
        orch = self._orch
        spawned: list[ProcessInfo] = []

        def claim(old: StoredProcessInfo | None) -> StoredProcessInfo:
            if old is not None and old.status in ACTIVE and process_alive(old.pid, old.create_time):
                raise Taken(old)
            info = orch.manager.spawn(spawn)
            spawned.append(info)
            return StoredProcessInfo.from_process_info(
                info, status="starting", restarts=restarts, owner=orch._owner,
                exit_code=old.exit_code if old is not None else None)

        try:
            orch.store.update_process(sid, claim)
        except Taken as taken:
            return None, taken.record
        except StateStoreError:
            if spawned:
                log.exception("spawned %r but could not record it in the state store", sid)
            else:
                log.exception("state store unavailable; starting %r without the cross-instance claim",
                              sid)
                return orch.manager.spawn(spawn), None
        return spawned[0], None

    # ------------------------------------------------------------ stopping

    def take_for_stop(self, sid: str, pid: int | None, create_time: float | None) -> None:
        """Before this instance stops `sid`'s process `pid`: mark it "stopping" by us and watch it."""
        orch = self._orch
        me = orch._owner

        def take(old: StoredProcessInfo | None) -> StoredProcessInfo | None:
            if old is None or old.pid != pid or old.owner == me:
                return old
            status = "stopping" if old.status in ACTIVE else old.status
            return dataclasses.replace(old, status=status, owner=me)

        orch._safe(orch.store.update_process, sid, take)
        with orch._lock:
            server = orch._servers.get(sid)
            if server is not None:
                server.owner = me
            config = server.config if server is not None else None
        if pid is None or config is None or create_time is None:
            return
        record = orch.store.get_process(sid)
        if record is not None and record.pid == pid:
            self.watch(sid, record, config)

    # ------------------------------------------------------------ exits

    def exit_is_foreign(self, sid: str, pid: int, exit_code: int | None,
                        info: ProcessInfo | None) -> bool:
        """Called first on every process_exit: True when another instance handles this exit.

        The spawner records the exit code it alone knows; the owner decides
        what follows; when the owner is gone, the leader takes the record
        over and decides (exit code unknown).
        """
        orch = self._orch
        me = orch._owner
        record = orch._safe(orch.store.get_process, sid)
        if record is None:
            return False
        spawned_here = info is not None and not info.adopted
        if record.pid != pid:
            with orch._lock:
                server = orch._servers.get(sid)
                stale = server is not None and server.pid == pid and server.owner not in (None, me)
            if stale:
                self.apply(sid, None, record)
            return stale
        if record.owner == me:
            return False
        if spawned_here and exit_code is not None:
            def add_code(old: StoredProcessInfo | None) -> StoredProcessInfo | None:
                if old is None or old.pid != pid or old.exit_code == exit_code:
                    return old
                return dataclasses.replace(old, exit_code=exit_code)

            record = orch._safe(orch.store.update_process, sid, add_code) or record
        alive = owner_alive(record.owner)
        if alive or not orch.is_leader:
            if record.status not in ("starting", "running"):
                self.apply(sid, None, record)
            return True
        taken = self._take(sid, record)
        if taken is None:
            return True
        if taken.status == "stopping":  # its stopper is gone: finish the stop
            self._finish_stop(sid, taken, exit_code)
            return True
        with orch._lock:
            server = orch._servers.get(sid)
            if server is None:
                return True
            server.owner = me
            server.pid = pid
            server.status = taken.status if taken.status in ACTIVE else "running"
        return False

    def _take(self, sid: str, record: StoredProcessInfo) -> StoredProcessInfo | None:
        """Make this instance the owner of `record` if nobody changed it meanwhile."""
        me = self._orch._owner

        def take(old: StoredProcessInfo | None) -> StoredProcessInfo | None:
            if old is None or old.pid != record.pid or old.owner != record.owner:
                return old
            return dataclasses.replace(old, owner=me)

        taken = self._orch._safe(self._orch.store.update_process, sid, take)
        return taken if taken is not None and taken.owner == me else None

    def _finish_stop(self, sid: str, record: StoredProcessInfo, exit_code: int | None) -> None:
        orch = self._orch
        with orch._lock:
            server = orch._servers.get(sid)
            if server is None:
                return
            server.cancel_timers()
            server.generation += 1
            server.status, server.pid, server.ready, server.owner = "stopped", None, False, orch._owner
            server.last_pid = record.pid
            if exit_code is not None:
                server.last_exit_code = exit_code
        orch._persist(sid, take=True)
        orch._history(sid, "stopped", pid=record.pid, exit_code=exit_code,
                      reason="stopped by request (finished by the leader)")
        signals.send(signals.server_stopped, orch, id=sid, pid=record.pid, exit_code=exit_code,
                     instance=orch.instance.name)

    # ------------------------------------------------------------ the leader's work

    def _lead(self, records: dict[str, StoredProcessInfo]) -> None:
        orch = self._orch
        me = orch._owner
        configs = orch.configs
        current = {(sid, r.pid) for sid, r in records.items() if r.status in ACTIVE}
        for key in [k for k in self._dead_since if k not in current]:
            del self._dead_since[key]
        for sid, record in records.items():
            config = configs.get(sid)
            if config is None or orch._closed:
                continue
            if record.status in ACTIVE and record.owner != me:
                if self._unprovable(sid, record):
                    continue
                if not owner_alive(record.owner):
                    self._take_over(sid, record, config)
                elif self._overdue(sid, record):
                    log.warning("server %r: pid %s ended but its instance %r did not record it; "
                                "the leader does", sid, record.pid, owner_name(record.owner))
                    self._record_death(sid, record)
            elif record.status == "backoff":
                self._ensure_restart(sid, record, config)

    def _unprovable(self, sid: str, record: StoredProcessInfo) -> bool:
        """True when `record`'s pid lives but cannot be proven to be its process (no create
        time) or is protected: the leader neither adopts it nor records it dead (warned once)."""
        kind, _ = identify(record.pid, record.create_time)
        if kind not in ("unverified", "protected"):
            self._unproven.discard((sid, record.pid))
            return False
        if (sid, record.pid) not in self._unproven:
            self._unproven.add((sid, record.pid))
            log.warning("server %r: recorded pid %s is %s; not adopted, never signalled",
                        sid, record.pid, "a protected process" if kind == "protected"
                        else "alive but its record has no create time to prove it")
        return True

    def _take_over(self, sid: str, record: StoredProcessInfo, config: ServerConfig) -> None:
        """A live record whose instance is gone: adopt its process, or record its death."""
        orch = self._orch
        gone = owner_name(record.owner)
        if process_alive(record.pid, record.create_time):
            info = self.watch(sid, record, config)
            if info is None:
                return
            taken = self._take(sid, record)
            if taken is None:
                return
            orch._adopted(sid, info, reason=f"its instance {gone!r} is gone; adopted by the leader")
            if taken.status == "stopping":  # its stopper is gone: finish the stop
                orch._spawn_worker(orch.stop_server, sid, name=f"procsync-finish-stop-{sid}")
            return
        self._record_death(sid, record)

    def _record_death(self, sid: str, record: StoredProcessInfo) -> None:
        """The process of `record` is dead and nobody recorded it: take it over and decide."""
        orch = self._orch
        taken = self._take(sid, record)
        if taken is None:
            return
        if taken.status == "stopping":
            self._finish_stop(sid, taken, None)
            return
        with orch._lock:  # handle it as if our manager had seen it end
            server = orch._servers.get(sid)
            if server is None:
                return
            server.owner = orch._owner
            server.pid = server.last_pid = record.pid
            server.status = record.status
            server.started_at = record.start_time
            server.create_time = record.create_time
        orch._on_process_exit(orch.manager, id=sid, pid=record.pid, exit_code=None, expected=False)

    def _overdue(self, sid: str, record: StoredProcessInfo) -> bool:
        """True once `record`'s process has been dead for DEAD_GRACE s and its (living) owner
        still has not recorded it: that instance no longer watches it."""
        key = (sid, record.pid)
        if process_alive(record.pid, record.create_time):
            self._dead_since.pop(key, None)
            return False
        now = time.monotonic()
        first = self._dead_since.setdefault(key, now)
        if now - first < DEAD_GRACE:
            return False
        del self._dead_since[key]
        return True

    def _ensure_restart(self, sid: str, record: StoredProcessInfo, config: ServerConfig) -> None:
        """A pending automatic restart: make sure this (leading) instance has a timer for it."""
        orch = self._orch
        delay = backoff_delay(max(1, record.restarts), config.backoff_initial, config.backoff_max)
        written = record.updated_at or _now()
        remaining = max(0.0, delay - (_now() - written).total_seconds())
        orch._arm_restart(sid, remaining)


__all__ = ["ACTIVE", "SYNC_INTERVAL", "InstanceSync", "Taken", "process_alive", "taken_message"]
