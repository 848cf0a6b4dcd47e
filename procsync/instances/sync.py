"""Keep one orchestrator in step with the other instances that share its state file.

The store is the meeting point. Every record names its `owner`, the
instance (`procsync.instances.leader.InstanceId`) whose manager runs or
watches the process. `InstanceSync` works on its orchestrator only through
the narrow `Host` interface:

- a daemon thread polls ``store.version()`` every `SYNC_INTERVAL` s; when it
  changed, the records written by other instances are handed to
  ``host.mirror`` (which updates the view and sends the matching signals),
  and their live processes are adopted for watching, through pidfd, so a
  death is seen at once;
- each tick also tries the leader lock; the leader adopts the processes of
  instances that are gone, records the deaths of their processes
  ("crashed, exit code unknown") and arms every pending automatic restart;
  a live record it cannot prove (no create time, or a protected pid) it
  leaves alone: never adopted, never signalled, never recorded dead;
- `claim_spawns` spawns under the store's cross-process lock, so two
  instances asked to start one server at once start one process;
- `exit_owner` decides who handles an exit: the owner, else the leader.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..config import ServerConfig, SpawnConfig
from ..errors import (
    DuplicateProcessError,
    IdentityMismatch,
    ProcessNotFound,
    SpawnError,
    StateStoreError,
)
from ..locks import ordered_lock
from ..ports import identify
from ..proctree import process_alive
from ..records import ProcessInfo
from ..store import StoredProcessInfo
from .host import Host
from .leader import handed_over, owner_alive, owner_name

log = logging.getLogger("procsync.sync")

SYNC_INTERVAL = 0.5  # seconds between two looks at the store (each wake-up costs ~0.1 ms CPU)
DEAD_GRACE = 2.0  # seconds a living owner has to record the death of its process
ACTIVE = ("starting", "running", "stopping")


_COMPARED = tuple(f.name for f in dataclasses.fields(StoredProcessInfo) if f.name != "updated_at")


def _same(old: StoredProcessInfo | None, new: StoredProcessInfo | None) -> bool:
    """Equal records, ignoring when they were written (field by field: no copies made)."""
    if old is new:
        return True
    if old is None or new is None:
        return False
    return all(getattr(old, name) == getattr(new, name) for name in _COMPARED)


def _older(new: StoredProcessInfo | None, old: StoredProcessInfo | None) -> bool:
    """True when `new` was written before `old`: read by a look at the store that another,
    later look overtook. The store moves each entry's `updated_at` only forward."""
    return (new is not None and old is not None and new.updated_at is not None
            and old.updated_at is not None and new.updated_at < old.updated_at)


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


def safe(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a store method; a failure is logged (once per kind of outage) and gives None."""
    try:
        return fn(*args, **kwargs)
    except StateStoreError as err:  # the disk: no traceback per write (it may be full too)
        log.warning("state store call %s failed: %s", getattr(fn, "__name__", fn), err)
        return None
    except Exception:
        log.exception("state store call %s failed", getattr(fn, "__name__", fn))
        return None


@dataclasses.dataclass(slots=True)
class Claim:
    """One start to claim: spawn `spawn` for `id` unless a live process of `id` is recorded.

    After `claim_spawns`, exactly one of `info` (we spawned), `taken` (the
    record of the live process that runs already) or `error` is set.
    """

    id: str
    spawn: SpawnConfig
    restarts: int
    info: ProcessInfo | None = None
    taken: StoredProcessInfo | None = None
    error: Exception | None = None
    last_exit_code: int | None = None  # the exit code the record held before this start


class InstanceSync:
    """The cross-instance half of an orchestrator: store polling, leadership, ownership."""

    def __init__(self, host: Host, interval: float = SYNC_INTERVAL) -> None:
        self._host = host
        self.interval = interval
        self._lock = ordered_lock("instances.sync")
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
        self._lock = ordered_lock("instances.sync")
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
        host = self._host
        if host.closed:
            return
        leader = host.leader
        became_leader = not leader.is_leader and leader.try_acquire(host.instance_name)
        if became_leader:
            log.info("instance %r is now the leader for %s", host.instance_name,
                     getattr(host.store, "path", "the state store"))
        # An idle instance costs one stat and one read per tick: the records are looked at
        # only when another writer committed, or while some record needs the leader.
        version = host.store.version()
        ids = host.server_ids()
        if version != self._version or ids != self._ids or became_leader or self._leader_work:
            self._version, self._ids = version, ids
            records = self._records()
            for sid in ids:
                self._observe(sid, records.get(sid))
            me = host.owner
            self._leader_work = any(
                r.status == "backoff" or (r.status in ACTIVE and r.owner != me)
                for r in records.values()
            )
            if leader.is_leader and not host.closed:
                self._lead(records)

    def refresh(self, sid: str | None = None) -> None:
        """Apply what other instances wrote for `sid` (every server if None) now, not at the next tick."""
        records = self._records()
        for one in ([sid] if sid is not None else list(self._host.server_ids())):
            self._observe(one, records.get(one))

    def _records(self) -> dict[str, StoredProcessInfo]:
        """The store's records by id (a cached read unless another writer committed)."""
        return {record.id: record for record in self._host.store.get_all_processes()}

    def _observe(self, sid: str, record: StoredProcessInfo | None) -> None:
        """Apply `record` once: whoever sees a change first (thread or caller) applies it,
        and never after a newer record of `sid` (the tick's pass over every server can be
        overtaken by a request's look at one)."""
        with self._lock:
            old = self._seen.get(sid)
            if _same(old, record) or _older(record, old):
                return
            if record is None:
                self._seen.pop(sid, None)
            else:
                self._seen[sid] = record
        self._host.mirror(sid, record)

    # ------------------------------------------------------------ watching

    def watch(self, sid: str, record: StoredProcessInfo, config: ServerConfig) -> ProcessInfo | None:
        """Have this instance's manager watch `record`'s process (identity checked); its info or None."""
        manager = self._host.manager
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
            self._host.monitor.watch(sid, health=config.health, ports_required=config.ports_required)
            return info
        return None

    # ------------------------------------------------------------ starting

    def claim_spawns(self, claims: Sequence[Claim]) -> None:
        """Spawn each of `claims` under the store's lock unless a live process of its id is recorded.

        This is the one place where procsync holds a lock across fork/exec and
        fsync, on purpose: the store's cross-process lock makes the check, the
        spawn and the record one step, so two instances asked to start one
        server at once start one process, and a spawn is never unrecorded
        while its instance lives. A batch of claims costs one lock and one
        commit. Each claim ends with `info`, `taken` or `error` set.
        """
        host = self._host
        me = host.owner
        manager = host.manager

        def updater(claim: Claim) -> Callable[[StoredProcessInfo | None], StoredProcessInfo | None]:
            def claim_one(old: StoredProcessInfo | None) -> StoredProcessInfo | None:
                if claim.info is not None:  # a retry of the batch: spawned already
                    return _record_of(claim, old)
                if old is not None and old.status in ACTIVE and process_alive(old.pid, old.create_time):
                    claim.taken = old
                    return old
                try:
                    claim.info = manager.spawn(claim.spawn, announce=False)
                except (SpawnError, DuplicateProcessError) as err:
                    claim.error = err
                    return old
                return _record_of(claim, old)

            def _record_of(claim: Claim, old: StoredProcessInfo | None) -> StoredProcessInfo | None:
                assert claim.info is not None
                claim.last_exit_code = old.exit_code if old is not None else None
                return StoredProcessInfo.from_process_info(
                    claim.info, status="starting", restarts=claim.restarts, owner=me,
                    exit_code=old.exit_code if old is not None else None)

            return claim_one

        updates = {claim.id: updater(claim) for claim in claims}
        store = host.store
        try:
            if hasattr(store, "write_batch"):
                store.write_batch(updates, ())
            else:
                for sid, fn in updates.items():
                    store.update_process(sid, fn)
        except StateStoreError:
            for claim in claims:
                if claim.info is not None:
                    log.exception("spawned %r but could not record it in the state store", claim.id)
                elif claim.taken is None and claim.error is None:
                    log.warning("state store unavailable; starting %r without the cross-instance "
                                "claim", claim.id)
                    try:
                        claim.info = manager.spawn(claim.spawn, announce=False)
                    except (SpawnError, DuplicateProcessError) as err:
                        claim.error = err
        for claim in claims:
            if claim.info is not None:
                manager.announce(claim.info)  # process_started, after every lock is released

    # ------------------------------------------------------------ stopping

    def take_for_stop(self, sid: str, pid: int | None, create_time: float | None) -> None:
        """Before this instance stops `sid`'s process `pid`: mark it "stopping" by us and watch it."""
        host = self._host
        me = host.owner

        def take(old: StoredProcessInfo | None) -> StoredProcessInfo | None:
            if old is None or old.pid != pid or old.owner == me:
                return old
            status = "stopping" if old.status in ACTIVE else old.status
            return dataclasses.replace(old, status=status, owner=me)

        safe(host.store.update_process, sid, take)
        host.mark_owned(sid)
        view = host.view(sid)
        if pid is None or view is None or create_time is None:
            return
        record = host.store.get_process(sid)
        if record is not None and record.pid == pid:
            self.watch(sid, record, view.config)

    # ------------------------------------------------------------ exits

    def exit_owner(self, sid: str, pid: int, exit_code: int | None,
                   info: ProcessInfo | None) -> tuple[bool, StoredProcessInfo | None]:
        """Called first on every exit our manager reports: (foreign, taken).

        `foreign` is True when another instance handles this exit. The
        spawner records the exit code it alone knows; the owner decides what
        follows; when the owner is gone, the leader takes the record over
        (`taken`, the record now ours) and decides with the exit code unknown.
        """
        host = self._host
        me = host.owner
        record = safe(host.store.get_process, sid)
        if record is None:
            return False, None
        spawned_here = info is not None and not info.adopted
        if record.pid != pid:
            view = host.view(sid)
            stale = view is not None and view.pid == pid and view.owner not in (None, me)
            if stale:
                host.mirror(sid, record)
            return stale, None
        if record.owner == me:
            return False, None
        if spawned_here and exit_code is not None:
            def add_code(old: StoredProcessInfo | None) -> StoredProcessInfo | None:
                if old is None or old.pid != pid or old.exit_code == exit_code:
                    return old
                return dataclasses.replace(old, exit_code=exit_code)

            record = safe(host.store.update_process, sid, add_code) or record
        if owner_alive(record.owner) or not host.leader.is_leader:
            if record.status not in ("starting", "running"):
                host.mirror(sid, record)
            return True, None
        taken = self._take(sid, record)
        if taken is None:
            return True, None
        if taken.status == "stopping":  # its stopper is gone: finish the stop
            host.finish_stop(sid, taken.pid, exit_code)
            return True, None
        return False, taken

    def _take(self, sid: str, record: StoredProcessInfo) -> StoredProcessInfo | None:
        """Make this instance the owner of `record` if nobody changed it meanwhile."""
        me = self._host.owner

        def take(old: StoredProcessInfo | None) -> StoredProcessInfo | None:
            if old is None or old.pid != record.pid or old.owner != record.owner:
                return old
            return dataclasses.replace(old, owner=me)

        taken = safe(self._host.store.update_process, sid, take)
        return taken if taken is not None and taken.owner == me else None

    # ------------------------------------------------------------ the leader's work

    def _lead(self, records: dict[str, StoredProcessInfo]) -> None:
        host = self._host
        me = host.owner
        current = {(sid, r.pid) for sid, r in records.items() if r.status in ACTIVE}
        for key in [k for k in self._dead_since if k not in current]:
            del self._dead_since[key]
        for sid, record in records.items():
            view = host.view(sid)
            if view is None or host.closed:
                continue
            if record.status in ACTIVE and record.owner != me:
                if self._unprovable(sid, record):
                    continue
                if not owner_alive(record.owner):
                    self._take_over(sid, record, view.config)
                elif self._overdue(sid, record):
                    log.warning("server %r: pid %s ended but its instance %r did not record it; "
                                "the leader does", sid, record.pid, owner_name(record.owner))
                    self._record_death(sid, record)
            elif record.status == "backoff":
                self._ensure_restart(sid, record, view.config)

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
        host = self._host
        gone = owner_name(record.owner)
        if process_alive(record.pid, record.create_time):
            info = self.watch(sid, record, config)
            if info is None:
                return
            taken = self._take(sid, record)
            if taken is None:
                return
            reason = (None if handed_over(record.owner, host.owner)
                      else f"its instance {gone!r} is gone; adopted by the leader")
            host.adopted(sid, info, reason)
            if taken.status == "stopping":  # its stopper is gone: finish the stop
                host.stop_later(sid)
            return
        self._record_death(sid, record)

    def _record_death(self, sid: str, record: StoredProcessInfo) -> None:
        """The process of `record` is dead and nobody recorded it: take it over and decide."""
        taken = self._take(sid, record)
        if taken is None:
            return
        if taken.status == "stopping":
            self._host.finish_stop(sid, taken.pid, None)
            return
        self._host.exit_seen(sid, record)

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
        """A pending automatic restart: make sure this (leading) instance has it scheduled."""
        self._host.arm_restart(sid, record)


__all__ = [
    "ACTIVE",
    "SYNC_INTERVAL",
    "Claim",
    "InstanceSync",
    "Taken",
    "safe",
    "taken_message",
]
