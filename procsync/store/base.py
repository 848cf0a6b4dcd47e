"""What the state stores keep, and the methods and machinery they share.

`StoredProcessInfo` and `HistoryEntry` are the records, `EventSpec` one event
of a `write_batch`; `StateStore` is the surface both stores offer. It also
holds what lets reads skip the writer: the writer lock (``store``), and a
`Snapshot` of the last committed records behind a briefly held lock
(``store.snapshot``) that the writer swaps after every write. The JSON store
(`procsync.store.jsonfile`) and the SQLite store (`procsync.store.sqlite`)
build on it; `procsync.store` is the public module.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from ..errors import StateStoreError
from ..locks import ordered_lock
from ..records import ProcessInfo
from ..redact import redact_text, shown_command
from ..timing import DurationMeter

EVENTS = ("started", "stopped", "exited", "crashed", "restarting", "fatal", "orphan_killed", "adopted",
          "not_adopted", "completed", "skipped", "reloaded", "memory_limit")
HISTORY_PER_ID = 200  # events kept per id, oldest dropped first
LOG_TAIL_LINES = 20  # log lines kept with one event
LOG_LINE_CHARS = 500  # characters kept of one log line

log = logging.getLogger("procsync.store")  # the documented logger of both stores

Updater = Callable[["StoredProcessInfo | None"], "StoredProcessInfo | None"]
T = TypeVar("T")


# ---------------------------------------------------------------- validation helpers


def show(value: Any) -> str:
    """A short repr of `value` for error messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def fail(name: str, expected: str, value: Any) -> ValueError:
    """The ValueError for `name`: what was expected, what was got."""
    return ValueError(f"{name}: expected {expected}, got {show(value)}")


def summary(problems: list[str]) -> str:
    """The first five problems joined, and how many more."""
    shown = "; ".join(problems[:5])
    return shown + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive(value: Any) -> bool:
    return _is_int(value) and value > 0


def _is_number(value: Any) -> bool:
    """A finite, non-negative int or float."""
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value) and value >= 0


def _is_port(value: Any) -> bool:
    return _is_int(value) and 1 <= value <= 65535


def _optional(name: str, value: Any, ok: bool, expected: str) -> None:
    if value is not None and not ok:
        raise fail(name, expected + " or null", value)


def _now() -> datetime:
    return datetime.now(UTC)


_STEP = timedelta(microseconds=1)  # the least a write moves an entry's updated_at on


def format_time(value: datetime) -> str:
    """`value` as ISO 8601 in UTC with a `Z`."""
    value = value.astimezone(UTC)
    spec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
    return value.isoformat(timespec=spec).replace("+00:00", "Z")


def parse_time(name: str, value: Any) -> datetime:
    """An aware datetime from ISO 8601 text (naive means UTC)."""
    if not isinstance(value, str):
        raise fail(name, "an ISO 8601 time string", value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise fail(name, "an ISO 8601 time string", value) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _check_aware(name: str, value: Any, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise fail(name, "a timezone-aware datetime", value)


def check_id(value: Any) -> str:
    """`value` if it is a non-empty string, else ValueError."""
    if not isinstance(value, str) or not value:
        raise fail("id", "a non-empty string", value)
    return value


def write_error_reason(err: BaseException) -> str:
    """The OS's words for why a write failed (`No space left on device`), else the error's text."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__
    if isinstance(cause, OSError) and cause.strerror:
        name = errno.errorcode.get(cause.errno or 0)
        return f"{cause.strerror} ({name})" if name else cause.strerror
    return str(err)


# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class StoredProcessInfo:
    """What the store keeps about one process: enough to find it again after a restart."""

    id: str
    pid: int
    command: str
    cwd: str | None
    start_time: datetime  # aware
    status: str
    ports: tuple[int, ...]
    create_time: float | None = None  # psutil's create_time(); with pid, the identity
    pgid: int | None = None
    log_file: str | None = None
    restarts: int = 0
    exit_code: int | None = None
    owner: str | None = None
    updated_at: datetime | None = None  # set by the store on every write

    def __post_init__(self) -> None:
        check_id(self.id)
        if not _is_positive(self.pid):
            raise fail("pid", "a positive integer", self.pid)
        if not isinstance(self.command, str):
            raise fail("command", "a string", self.command)
        # display only (nothing compares it): stored with its secrets masked, see procsync.redact
        object.__setattr__(self, "command", shown_command(self.command))
        _optional("cwd", self.cwd, isinstance(self.cwd, str), "a string")
        _check_aware("start_time", self.start_time)
        if not isinstance(self.status, str) or not self.status:
            raise fail("status", "a non-empty string", self.status)
        ports = self.ports
        if not isinstance(ports, tuple | list) or not all(_is_port(p) for p in ports):
            raise fail("ports", "a list of integers in 1..65535", ports)
        object.__setattr__(self, "ports", tuple(ports))
        ct = self.create_time
        _optional("create_time", ct, _is_number(ct), "a non-negative number")
        if ct is not None:
            object.__setattr__(self, "create_time", float(ct))
        _optional("pgid", self.pgid, _is_positive(self.pgid), "a positive integer")
        _optional("log_file", self.log_file, isinstance(self.log_file, str), "a string")
        if not (_is_int(self.restarts) and _is_number(self.restarts)):
            raise fail("restarts", "a non-negative integer", self.restarts)
        _optional("exit_code", self.exit_code, _is_int(self.exit_code), "an integer")
        _optional("owner", self.owner, isinstance(self.owner, str), "a string")
        _check_aware("updated_at", self.updated_at, optional=True)

    @classmethod
    def from_process_info(cls, info: ProcessInfo, **changes: Any) -> StoredProcessInfo:
        """The stored form of a manager's `ProcessInfo`, with `changes` applied."""
        values: dict[str, Any] = {
            "id": info.id,
            "pid": info.pid,
            "command": info.command,
            "cwd": info.cwd,
            "start_time": info.start_time,
            "status": info.status,
            "ports": tuple(info.ports),
            "create_time": info.create_time,
            "pgid": info.pgid,
            "log_file": info.log_file,
            "exit_code": info.exit_code,
        }
        values.update(changes)
        return cls(**values)

    def to_state_dict(self) -> dict[str, Any]:
        """The state file's camelCase form (the seed's keys first, then ours)."""
        return {
            "id": self.id,
            "pid": self.pid,
            "command": self.command,
            "cwd": self.cwd,
            "startTime": format_time(self.start_time),
            "status": self.status,
            "ports": list(self.ports),
            "createTime": self.create_time,
            "pgid": self.pgid,
            "logFile": self.log_file,
            "restarts": self.restarts,
            "exitCode": self.exit_code,
            "owner": self.owner,
            "updatedAt": format_time(self.updated_at) if self.updated_at else None,
        }

    @classmethod
    def from_state_dict(cls, data: Any, key: str | None = None) -> StoredProcessInfo:
        """Parse one state-file entry; ValueError naming the field that is wrong."""
        if not isinstance(data, dict):
            raise fail("entry", "an object", data)
        missing = [k for k in ("id", "pid", "command", "cwd", "startTime", "status", "ports")
                   if k not in data]
        if missing:
            raise ValueError(f"missing key(s): {', '.join(missing)}")
        if key is not None and data["id"] != key:
            raise ValueError(f"id: {show(data['id'])} does not match its key {key!r}")
        ports = data["ports"]
        if not isinstance(ports, list):
            raise fail("ports", "a list of integers in 1..65535", ports)
        updated = data.get("updatedAt")
        return cls(
            id=data["id"],
            pid=data["pid"],
            command=data["command"],
            cwd=data["cwd"],
            start_time=parse_time("startTime", data["startTime"]),
            status=data["status"],
            ports=tuple(ports),
            create_time=data.get("createTime"),
            pgid=data.get("pgid"),
            log_file=data.get("logFile"),
            restarts=0 if data.get("restarts") is None else data["restarts"],
            exit_code=data.get("exitCode"),
            owner=data.get("owner"),
            updated_at=parse_time("updatedAt", updated) if updated is not None else None,
        )


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One thing that happened to a server: started, stopped, exited, crashed, ..."""

    id: str
    event: str
    at: datetime  # aware
    pid: int | None = None
    exit_code: int | None = None
    reason: str | None = None
    log_tail: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_id(self.id)
        if not isinstance(self.event, str) or not self.event:
            raise fail("event", "a non-empty string", self.event)
        _check_aware("at", self.at)
        _optional("pid", self.pid, _is_positive(self.pid), "a positive integer")
        _optional("exit_code", self.exit_code, _is_int(self.exit_code), "an integer")
        _optional("reason", self.reason, isinstance(self.reason, str), "a string")
        tail = self.log_tail
        if not isinstance(tail, list | tuple) or not all(isinstance(s, str) for s in tail):
            raise fail("log_tail", "a list of strings", tail)
        object.__setattr__(self, "log_tail", list(tail))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values under snake_case keys; `at` as ISO 8601."""
        return {
            "id": self.id,
            "event": self.event,
            "at": format_time(self.at),
            "pid": self.pid,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "log_tail": list(self.log_tail),
        }

    def _to_file(self) -> dict[str, Any]:
        return {"event": self.event, "at": format_time(self.at), "pid": self.pid,
                "exitCode": self.exit_code, "reason": self.reason, "logTail": list(self.log_tail)}

    @classmethod
    def _from_file(cls, server_id: str, data: Any) -> HistoryEntry:
        if not isinstance(data, dict):
            raise fail("event entry", "an object", data)
        event: Any = data.get("event")
        return cls(id=server_id, event=event, at=parse_time("at", data.get("at")),
                   pid=data.get("pid"), exit_code=data.get("exitCode"),
                   reason=data.get("reason"), log_tail=data.get("logTail") or [])


def new_event(server_id: str, event: str, pid: Any, exit_code: Any, reason: Any,
               log_tail: Any, at: datetime | None) -> HistoryEntry:
    """A checked `HistoryEntry` with its log tail trimmed to what is kept."""
    check_id(server_id)
    if event not in EVENTS:
        raise ValueError(f"event: expected one of {', '.join(EVENTS)}, got {show(event)}")
    tail = list(log_tail or [])
    if not all(isinstance(s, str) for s in tail):
        raise fail("log_tail", "a list of strings", log_tail)
    tail = [s.rstrip("\n")[:LOG_LINE_CHARS] for s in tail[-LOG_TAIL_LINES:]]
    if isinstance(reason, str):
        reason = redact_text(reason)
    return HistoryEntry(server_id, event, at or _now(), pid, exit_code, reason, tail)


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One history event for `StateStore.write_batch`: the arguments of `record_event`."""

    id: str
    event: str
    pid: int | None = None
    exit_code: int | None = None
    reason: str | None = None
    log_tail: Sequence[str] | None = None
    at: datetime | None = None

    def entry(self) -> HistoryEntry:
        """The checked `HistoryEntry` that `record_event` would append (ValueError if bad)."""
        return new_event(self.id, self.event, self.pid, self.exit_code, self.reason,
                         self.log_tail, self.at)


def check_limit(limit: Any) -> int:
    """`limit` if it is a positive integer, else ValueError."""
    if not _is_int(limit) or limit < 1:
        raise fail("limit", "a positive integer", limit)
    return limit


# ---------------------------------------------------------------- writes not made yet


RETRY_INTERVAL = 1.0  # seconds between two automatic retries of writes that failed


@dataclass(slots=True)
class PendingWrites:
    """Changes a store could not write (disk full, read-only), kept until a write works again.

    Reads of the store show them, so the store still tells what procsync did;
    the next write that works, `flush()`, or the periodic retry in `version()`
    writes them out. Only what is needed to redo them is kept: the latest
    entry per id, the events (at most HISTORY_PER_ID per id) and which
    histories were cleared.
    """

    entries: dict[str, StoredProcessInfo | None] = field(default_factory=dict)  # None: removed
    entries_cleared: bool = False
    events: list[HistoryEntry] = field(default_factory=list)
    history_cleared: set[str] = field(default_factory=set)
    all_history_cleared: bool = False

    def __bool__(self) -> bool:
        return self.has_entries() or self.has_history()

    def __len__(self) -> int:
        return (len(self.entries) + self.entries_cleared + len(self.events)
                + len(self.history_cleared) + self.all_history_cleared)

    def has_entries(self) -> bool:
        return bool(self.entries) or self.entries_cleared

    def has_history(self) -> bool:
        return bool(self.events) or bool(self.history_cleared) or self.all_history_cleared

    def copy(self) -> PendingWrites:
        """A copy that later changes to this one do not touch (the records are frozen)."""
        return PendingWrites(dict(self.entries), self.entries_cleared, list(self.events),
                             set(self.history_cleared), self.all_history_cleared)

    def set_entry(self, id: str, info: StoredProcessInfo | None) -> None:
        self.entries[id] = info

    def clear_entries(self) -> None:
        self.entries.clear()
        self.entries_cleared = True

    def add_event(self, entry: HistoryEntry) -> None:
        self.events.append(entry)
        mine = [e for e in self.events if e.id == entry.id]
        if len(mine) > HISTORY_PER_ID:  # older ones would be dropped by the write anyway
            oldest = mine[0]
            self.events.remove(oldest)

    def clear_history(self, id: str | None) -> None:
        if id is None:
            self.events.clear()
            self.history_cleared.clear()
            self.all_history_cleared = True
        else:
            self.events = [e for e in self.events if e.id != id]
            self.history_cleared.add(id)

    def apply_entries(self, data: dict[str, StoredProcessInfo]) -> dict[str, StoredProcessInfo]:
        """`data` (what is on disk) with the pending entry changes made."""
        if not self.has_entries():
            return data
        out = {} if self.entries_cleared else dict(data)
        for id, info in self.entries.items():
            if info is None:
                out.pop(id, None)
            else:
                out[id] = info
        return out

    def apply_history(self, data: dict[str, list[HistoryEntry]]) -> dict[str, list[HistoryEntry]]:
        """`data` (what is on disk) with the pending history changes made."""
        if not self.has_history():
            return data
        if self.all_history_cleared:
            out: dict[str, list[HistoryEntry]] = {}
        else:
            out = {k: v for k, v in data.items() if k not in self.history_cleared}
        for entry in self.events:
            items = list(out.get(entry.id, []))
            bisect.insort(items, entry, key=lambda e: e.at)
            out[entry.id] = items[-HISTORY_PER_ID:]
        return out

    def entries_written(self) -> None:
        self.entries.clear()
        self.entries_cleared = False

    def history_written(self) -> None:
        self.events.clear()
        self.history_cleared.clear()
        self.all_history_cleared = False


# ---------------------------------------------------------------- what reads see


@dataclass(frozen=True, slots=True)
class DocSnapshot:
    """One part of a `Snapshot`: committed content as read at `token`, and the view reads return.

    Nothing in it is ever changed after it is made: readers share it without a lock.
    """

    token: Any = None  # the file's or database's stamp when `data` was read; None: unknown
    data: Mapping[str, Any] | None = None  # the committed content; None: not read yet
    view: Mapping[str, Any] | None = None  # `data` with the snapshot's pending changes made
    problems: bool = False  # bad content not repaired yet: the next read tries again


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What reads return without the writer lock; the writer swaps in a new one after each write."""

    entries: DocSnapshot = DocSnapshot()
    history: DocSnapshot = DocSnapshot()
    pending: PendingWrites = field(default_factory=PendingWrites)  # a copy; never changed

    def doc(self, which: str, token: Any, data: Mapping[str, Any],
            problems: bool = False) -> DocSnapshot:
        """A `DocSnapshot` of `which` ("entries" or "history") with this snapshot's pending changes."""
        if which == "entries":
            view: Mapping[str, Any] = self.pending.apply_entries(data)  # type: ignore[arg-type]
        else:
            view = self.pending.apply_history(data)  # type: ignore[arg-type]
        return DocSnapshot(token, data, view, problems)


class NeedsWriter(Exception):
    """A read cannot be served from the snapshot or the disk alone: it is done under the writer lock."""


class ReadAgain(Exception):
    """A read found that the snapshot changed under it (a repair was made): it starts over."""


# ---------------------------------------------------------------- shared surface


class StateStore:
    """The methods both stores share, written once over `update_process` and `_entries`."""

    path: Path
    _pending: PendingWrites
    _retry_at: float
    _write_error: str | None

    def _init_store(self) -> None:
        """Make the locks, the first (empty) snapshot and the record of failed writes."""
        self._lock = ordered_lock("store", reentrant=True)  # the writer (flock, fsync, commit)
        self._snap_lock = ordered_lock("store.snapshot")  # `_snapshot` and `_epoch`: held briefly
        self._snapshot = Snapshot()
        self._epoch = 0  # odd while this store's writer may be changing the files
        self._depth = 0  # how deep the writer lock is taken (writer only)
        self._pending = PendingWrites()
        self._retry_at = 0.0
        self._write_error = None  # why the last write failed, while writes fail
        self.write_time = DurationMeter()  # each commit: a file written and fsynced, or a COMMIT

    # -- the writer lock and the snapshot

    @contextlib.contextmanager
    def _writer(self, blocking: bool = True) -> Iterator[bool]:
        """Hold the writer lock (re-entrant); the outermost exit publishes a new snapshot.

        Yields False, holding nothing, when `blocking` is False and another
        thread is writing.
        """
        if not self._lock.acquire(blocking):
            yield False
            return
        self._depth += 1
        try:
            yield True
        finally:
            self._depth -= 1
            try:
                if self._depth == 0:
                    self._publish()
            finally:
                self._lock.release()

    def _committing(self) -> None:
        """Mark that the writer is about to change the files (writer lock held)."""
        with self._snap_lock:
            if self._epoch % 2 == 0:
                self._epoch += 1

    def _publish(self) -> None:
        """Swap in the snapshot of what the writer knows now (writer lock held)."""
        try:
            snapshot = self._writer_snapshot()
        except Exception:  # pragma: no cover - building it does no I/O
            log.exception("cannot build the read snapshot of %s; reads take the writer lock",
                          self.path)
            return
        with self._snap_lock:
            self._snapshot = snapshot
            if self._epoch % 2:
                self._epoch += 1

    def _writer_snapshot(self) -> Snapshot:
        """The snapshot of the writer's committed view and its pending changes (writer lock held)."""
        raise NotImplementedError

    def _lockfree(self, read: Callable[[Snapshot], tuple[T, Snapshot | None]],
                  locked: Callable[[], T]) -> T:
        """`read(snapshot)` without the writer lock; `locked()` under it when that cannot be done.

        `read` returns its result and a newer snapshot to swap in (or None). It
        may re-read the files (another process committed) but must not write.
        Its result is used unless this store's writer began changing the files
        meanwhile while changes were kept in memory (the snapshot's copy of them
        may then be saved already): then it starts over. The writer lock is
        waited for only when such a write is in progress, or `read` raises
        NeedsWriter (a corrupted database, say).
        """
        for _ in range(3):
            with self._snap_lock:
                snap, epoch = self._snapshot, self._epoch
            if snap.pending and epoch % 2:
                break
            try:
                result, newer = read(snap)
            except ReadAgain:
                continue
            except NeedsWriter:
                break
            with self._snap_lock:
                if snap.pending and self._epoch != epoch:
                    continue
                if newer is not None and self._snapshot is snap:
                    self._snapshot = newer
            return result
        with self._writer():
            return locked()

    # -- reads

    def load(self) -> dict[str, StoredProcessInfo]:
        """Every stored process by id (re-read from disk when it changed); never raises on bad content."""
        return dict(self._entries())

    def get_process(self, id: str) -> StoredProcessInfo | None:
        """The stored entry for `id`, or None."""
        return self._entries().get(id)

    def get_all_processes(self) -> list[StoredProcessInfo]:
        """Every stored entry, in the order first written."""
        return list(self._entries().values())

    def save_process(self, info: StoredProcessInfo | ProcessInfo) -> StoredProcessInfo:
        """Store `info` under its id; a `ProcessInfo` keeps the stored restarts and owner."""
        if isinstance(info, ProcessInfo):
            fresh = StoredProcessInfo.from_process_info(info)

            def change(old: StoredProcessInfo | None) -> StoredProcessInfo:
                return fresh if old is None else replace(fresh, restarts=old.restarts,
                                                         owner=old.owner)
        elif isinstance(info, StoredProcessInfo):
            def change(old: StoredProcessInfo | None) -> StoredProcessInfo:
                return info
        else:
            raise TypeError(f"save_process: expected StoredProcessInfo or ProcessInfo, "
                            f"got {type(info).__name__}")
        saved = self.update_process(info.id, change)
        if saved is None:  # pragma: no cover - change never returns None
            raise StateStoreError(f"{info.id!r} was not saved")
        return saved

    def remove_process(self, id: str) -> None:
        """Forget `id` (nothing happens if it is not stored)."""
        self.update_process(id, lambda old: None)

    def update_process(self, id: str, fn: Updater) -> StoredProcessInfo | None:
        """Atomically replace the entry for `id` with `fn(old)`; None removes it.

        `fn` runs under the store's thread and process locks: keep it quick and
        do not call the store from it. If it raises, nothing is written.
        """
        raise NotImplementedError

    def write_batch(self, updates: Mapping[str, Updater],
                    events: Sequence[EventSpec] = ()) -> dict[str, StoredProcessInfo | None]:
        """Apply every updater as `update_process` would and append every event, in one write.

        One locked read-modify-write: the JSON store writes the state file and
        the history file at most once each, the SQLite store commits one
        transaction. Returns what `update_process` would have returned, by id.
        An id or event that is not valid raises ValueError before anything is
        written. An updater that raises (or returns a bad value) leaves its id
        unchanged; the others are written, then the first such error is
        re-raised. A write that fails raises StateStoreError with every change
        kept in memory, as for the single writes (it wins over an updater's
        error; a database that cannot be opened at all keeps nothing, as
        `update_process`). This fallback makes one write per change.
        """
        entries = self._checked_batch(updates, events)
        results: dict[str, StoredProcessInfo | None] = {}
        errors: list[Exception] = []
        for id, fn in updates.items():
            try:
                results[id] = self.update_process(id, fn)
            except Exception as err:  # re-raised below, after the rest is written
                errors.append(err)
        for entry in entries:
            try:
                self.record_event(entry.id, entry.event, pid=entry.pid, exit_code=entry.exit_code,
                                  reason=entry.reason, log_tail=entry.log_tail, at=entry.at)
            except StateStoreError as err:
                errors.append(err)
        self._batch_done(errors)
        return results

    @staticmethod
    def _checked_batch(updates: Mapping[str, Updater], events: Sequence[EventSpec]) -> list[HistoryEntry]:
        """The history entries of a batch; ValueError for a bad id or event, before anything is written."""
        for id in updates:
            check_id(id)
        return [spec.entry() for spec in events]

    def _run_updaters(self, current: Mapping[str, StoredProcessInfo], updates: Mapping[str, Updater],
                      errors: list[Exception]) -> tuple[dict[str, StoredProcessInfo | None],
                                                        dict[str, StoredProcessInfo | None]]:
        """Each updater on its current entry: (results by id, the changed ones by id).

        An updater that raises (or returns a bad value) is left out of both and
        its error appended to `errors`.
        """
        results: dict[str, StoredProcessInfo | None] = {}
        changed: dict[str, StoredProcessInfo | None] = {}
        for id, fn in updates.items():
            old = current.get(id)
            try:
                new = self._checked(id, old, fn(old))
            except Exception as err:  # the caller re-raises the first after the commit
                errors.append(err)
                continue
            results[id] = new
            if new is not old:
                changed[id] = new
        return results, changed

    @staticmethod
    def _batch_done(errors: list[Exception]) -> None:
        """Raise the first write error of a batch, else the first updater error, if any."""
        for err in errors:
            if isinstance(err, StateStoreError):
                raise err
        if errors:
            raise errors[0]

    def clear(self) -> None:
        """Remove every process entry (the history is kept; see `clear_history`)."""
        raise NotImplementedError

    def record_event(self, id: str, event: str, *, pid: int | None = None,
                     exit_code: int | None = None, reason: str | None = None,
                     log_tail: list[str] | None = None, at: datetime | None = None) -> HistoryEntry:
        """Append one event to `id`'s history (the oldest beyond HISTORY_PER_ID are dropped)."""
        raise NotImplementedError

    def history(self, id: str, limit: int = 50) -> list[HistoryEntry]:
        """The last `limit` events of `id`, newest first."""
        raise NotImplementedError

    def clear_history(self, id: str | None = None) -> None:
        """Drop the history of `id`, or of every id."""
        raise NotImplementedError

    def version(self) -> Any:
        """A hashable token that changes whenever any writer commits."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the store holds open (safe to call twice)."""

    # -- writes that failed

    @property
    def pending_writes(self) -> int:
        """How many changes are kept in memory because writing them failed (0 when all is saved)."""
        return len(self._pending)

    def flush(self) -> bool:
        """Try now to write the changes that failed before; True when nothing is left unwritten."""
        raise NotImplementedError

    def _retry_due(self) -> bool:
        return bool(self._pending) and time.monotonic() >= self._retry_at

    def _write_failed(self, what: str, err: BaseException) -> StateStoreError:
        """Note a failed write (warn once per outage) and return the error to raise."""
        self._retry_at = time.monotonic() + RETRY_INTERVAL
        reason = write_error_reason(err)
        if self._write_error is None:
            log.warning("cannot write %s: %s; the change is kept in memory (reads show it) and "
                        "written once writing works again", what, reason)
        else:
            log.debug("still cannot write %s: %s", what, reason)
        self._write_error = reason
        return StateStoreError(f"cannot write {what}: {reason}; the change is kept in memory "
                               f"and written once writing works again")

    def _write_resumed(self) -> None:
        if self._write_error is not None and not self._pending:
            log.warning("state store %s can be written again; the changes kept in memory are "
                        "saved", self.path)
            self._write_error = None

    def _entries(self) -> Mapping[str, StoredProcessInfo]:
        raise NotImplementedError

    def _checked(self, id: str, old: StoredProcessInfo | None,
                 new: Any) -> StoredProcessInfo | None:
        if new is None or new is old:
            return new
        if not isinstance(new, StoredProcessInfo):
            raise TypeError(f"update_process: fn must return StoredProcessInfo or None, "
                            f"got {type(new).__name__}")
        if new.id != id:
            raise ValueError(f"update_process: fn returned id {new.id!r} for {id!r}")
        stamp = _now()
        if old is not None and old.updated_at is not None and stamp <= old.updated_at:
            stamp = old.updated_at + _STEP  # one entry's stamps only go forward, whatever the clock
        return replace(new, updated_at=stamp)

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


__all__ = [
    "EVENTS",
    "DocSnapshot",
    "EventSpec",
    "HISTORY_PER_ID",
    "LOG_LINE_CHARS",
    "LOG_TAIL_LINES",
    "HistoryEntry",
    "NeedsWriter",
    "PendingWrites",
    "RETRY_INTERVAL",
    "ReadAgain",
    "Snapshot",
    "StateStore",
    "StoredProcessInfo",
    "Updater",
    "check_id",
    "check_limit",
    "fail",
    "format_time",
    "new_event",
    "parse_time",
    "show",
    "summary",
    "write_error_reason",
]
