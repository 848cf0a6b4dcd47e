"""The journal: one thread that does the orchestrator's store writes, a burst at a time.

Whoever changes a server (the thread that saw an exit, a stop, a start)
queues what must be written — "persist this server's record", "add this
history event" — and goes on; it never waits for the disk unless it asks
to (`Ticket.wait`). The journal thread takes everything queued so far,
builds the records from the servers' current state (under the registry
lock, briefly, before touching the store), reads the log tails the events
quote, and hands the lot to the store as one batch: N changes in one
instant cost one commit (two fsynced files for the JSON store, one
transaction for SQLite), not N.

Public calls that change a server wait for their ticket, so once
`stop_server()` returns its record and history are on disk; the manager's
watcher thread never waits.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..config import command_text
from ..errors import ProcessNotFound, StateStoreError
from ..logs import tail_lines
from ..store import StoredProcessInfo
from ..store.base import EventSpec
from .queue_thread import QueueThread
from .registry import LOG_TAIL, Registry, now

log = logging.getLogger("procsync.orchestrator")

TAIL_EVENTS = ("exited", "crashed", "restarting", "fatal", "stopped", "completed")  # events that quote the log


class Ticket:
    """Done once the writes queued up to it are committed (or failed and were logged)."""

    def __init__(self) -> None:
        self._done = threading.Event()

    def wait(self, timeout: float | None = 30.0) -> bool:
        """Wait until committed; False if `timeout` passed first."""
        return self._done.wait(timeout)

    def _set(self) -> None:
        self._done.set()


@dataclasses.dataclass(slots=True)
class _Persist:
    sid: str
    take: bool
    release: bool


@dataclasses.dataclass(slots=True)
class _Event:
    sid: str
    event: str
    pid: int | None
    exit_code: int | None
    reason: str | None
    log_file: str | None
    at: datetime


class Journal:
    """Queues store writes and commits them in batches on the `procsync-journal` thread."""

    def __init__(self, registry: Registry, store: Callable[[], Any], owner: Callable[[], str],
                 log_path: Callable[[str], str | None]) -> None:
        self._registry = registry
        self._store = store  # the orchestrator's current store (a forked child makes a new one)
        self._owner = owner  # this instance's token
        self._log_path = log_path
        self._queue = QueueThread("procsync-journal", "journal", self._commit)
        self.commits = 0  # batches written (for benchmarks and tests)
        self.changes = 0  # changes written

    # ------------------------------------------------------------ queueing

    def persist(self, sid: str, *, take: bool = False, release: bool = False) -> Ticket:
        """Queue: write `sid`'s record as the server stands when the batch is written.

        Another instance's record is left alone unless `take` (we are taking
        the server over); `release` (at shutdown) writes it with no owner, so
        the leader adopts what keeps running.
        """
        return self._put(_Persist(sid, take, release))

    def event(self, sid: str, event: str, *, pid: int | None = None, exit_code: int | None = None,
              reason: str | None = None, log_file: str | None = None,
              at: datetime | None = None) -> Ticket:
        """Queue a history event (timestamped now unless `at`); exits quote the log's tail."""
        return self._put(_Event(sid, event, pid, exit_code, reason, log_file, at or now()))

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until everything queued so far is committed; False on timeout."""
        return self._put(None).wait(timeout)  # the thread may be writing an earlier batch

    def _put(self, item: _Persist | _Event | None) -> Ticket:
        ticket = Ticket()
        queued = (ticket,) if item is None else (item, ticket)
        if not self._queue.put(*queued):
            self._commit(self._queue.take_all())  # not started (or stopped): write on the caller
        return ticket

    # ------------------------------------------------------------ thread

    def start(self) -> None:
        """Start the journal thread (idempotent)."""
        self._queue.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread; later writes run on the caller."""
        self._queue.stop(timeout)
        self._commit(self._queue.take_all())

    def forget_after_fork(self) -> None:
        """In a forked child: no thread; fresh lock; the queue belongs to the parent."""
        self._queue.forget_after_fork()

    # ------------------------------------------------------------ writing

    def _commit(self, batch: list[_Persist | _Event | Ticket]) -> None:
        if not batch:
            return
        tickets = [item for item in batch if isinstance(item, Ticket)]
        try:
            persists: dict[str, _Persist] = {}
            events: list[_Event] = []
            for item in batch:
                if isinstance(item, _Persist):
                    old = persists.get(item.sid)
                    persists[item.sid] = item if old is None else _Persist(
                        item.sid, old.take or item.take, old.release or item.release)
                elif isinstance(item, _Event):
                    events.append(item)
            if persists or events:
                self._write(persists, events)
        finally:
            for ticket in tickets:
                ticket._set()

    def _write(self, persists: dict[str, _Persist], events: list[_Event]) -> None:
        registry = self._registry
        with registry.lock:  # the servers as they stand now; built outside every store lock
            states = {sid: registry.snapshot(registry.servers[sid])
                      for sid in persists if sid in registry.servers}
        updates = {sid: _builder(states.get(sid), p, self._owner()) for sid, p in persists.items()}
        specs = [self._spec(e) for e in events]
        store = self._store()
        try:
            if hasattr(store, "write_batch"):
                store.write_batch(updates, [EventSpec(**spec) for spec in specs])
            else:  # a store object of the user's without batches
                for sid, fn in updates.items():
                    store.update_process(sid, fn)
                for spec in specs:
                    store.record_event(spec.pop("id"), spec.pop("event"), **spec)
        except StateStoreError as err:  # the disk: kept by the store, retried; no traceback each
            log.warning("state store write failed (%d records, %d events): %s",
                        len(updates), len(specs), err)
        except Exception:
            log.exception("state store write failed (%d records, %d events)", len(updates),
                          len(specs))
        self.commits += 1
        self.changes += len(updates) + len(specs)

    def _spec(self, e: _Event) -> dict[str, Any]:
        tail: list[str] | None = None
        if e.event in TAIL_EVENTS:
            path = e.log_file
            if path is None:
                try:
                    path = self._log_path(e.sid)
                except ProcessNotFound:
                    path = None
            tail = tail_lines(path, LOG_TAIL) if path else None
        return {"id": e.sid, "event": e.event, "pid": e.pid, "exit_code": e.exit_code,
                "reason": e.reason, "log_tail": tail, "at": e.at}


def _builder(server: Any, p: _Persist, me: str) -> Callable[[Any], Any]:
    """The store updater for one persist: the record of `server` (a snapshot) over `old`."""

    def build(old: StoredProcessInfo | None) -> StoredProcessInfo | None:
        foreign = old is not None and old.owner not in (None, me)
        if (foreign and not p.take) or server is None:
            return old
        pid = server.pid or server.last_pid or (old.pid if old is not None else None)
        if not pid or (foreign and old is not None and old.pid != pid):
            return old  # another instance has started a new process meanwhile
        config = server.config
        code = server.last_exit_code
        if code is None and old is not None and old.pid == pid:
            code = old.exit_code  # recorded by the instance that spawned it
        return StoredProcessInfo(
            id=server.id, pid=pid, command=command_text(config.command), cwd=config.cwd,
            start_time=server.started_at or (old.start_time if old is not None else now()),
            status=server.status, ports=tuple(config.ports), create_time=server.create_time,
            pgid=server.pgid, log_file=server.log_file, restarts=server.restarts,
            exit_code=code, owner=None if p.release else me, updated_at=now(),
        )

    return build


__all__ = ["Journal", "Ticket"]
