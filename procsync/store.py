"""Remember processes across restarts: a JSON state file (default) or an SQLite database.

Both stores offer the same methods (see `StateStore`). The JSON file is an
object keyed by id in the seed's camelCase shape; its event history lives in a
sibling `<state>.history.json`. Every write is atomic and made under a lock
file (`<state>.lock`, `fcntl.flock`), so threads and processes can share one
file. Bad content never makes `load()` raise: the file is copied aside as
`<state>.corrupt-<UTC time>`, a warning is logged, and the valid entries are
kept. See docs/state-file.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import StateStoreError
from .records import ProcessInfo

log = logging.getLogger(__name__)

EVENTS = ("started", "stopped", "exited", "crashed", "restarting", "fatal", "orphan_killed", "adopted")
HISTORY_PER_ID = 200  # events kept per id, oldest dropped first
LOG_TAIL_LINES = 20  # log lines kept with one event
LOG_LINE_CHARS = 500  # characters kept of one log line
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
SCHEMA_VERSION = 1  # SQLite PRAGMA user_version this code writes
BUSY_TIMEOUT = 10.0  # seconds SQLite waits for another writer

Updater = Callable[["StoredProcessInfo | None"], "StoredProcessInfo | None"]


# ---------------------------------------------------------------- validation helpers


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(name: str, expected: str, value: Any) -> ValueError:
    return ValueError(f"{name}: expected {expected}, got {_show(value)}")


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
        raise _fail(name, expected + " or null", value)


def _now() -> datetime:
    return datetime.now(UTC)


def _format_time(value: datetime) -> str:
    value = value.astimezone(UTC)
    spec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
    return value.isoformat(timespec=spec).replace("+00:00", "Z")


def _parse_time(name: str, value: Any) -> datetime:
    if not isinstance(value, str):
        raise _fail(name, "an ISO 8601 time string", value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(name, "an ISO 8601 time string", value) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _check_aware(name: str, value: Any, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise _fail(name, "a timezone-aware datetime", value)


def _check_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _fail("id", "a non-empty string", value)
    return value


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
        _check_id(self.id)
        if not _is_positive(self.pid):
            raise _fail("pid", "a positive integer", self.pid)
        if not isinstance(self.command, str):
            raise _fail("command", "a string", self.command)
        _optional("cwd", self.cwd, isinstance(self.cwd, str), "a string")
        _check_aware("start_time", self.start_time)
        if not isinstance(self.status, str) or not self.status:
            raise _fail("status", "a non-empty string", self.status)
        ports = self.ports
        if not isinstance(ports, tuple | list) or not all(_is_port(p) for p in ports):
            raise _fail("ports", "a list of integers in 1..65535", ports)
        object.__setattr__(self, "ports", tuple(ports))
        ct = self.create_time
        _optional("create_time", ct, _is_number(ct), "a non-negative number")
        if ct is not None:
            object.__setattr__(self, "create_time", float(ct))
        _optional("pgid", self.pgid, _is_positive(self.pgid), "a positive integer")
        _optional("log_file", self.log_file, isinstance(self.log_file, str), "a string")
        if not (_is_int(self.restarts) and _is_number(self.restarts)):
            raise _fail("restarts", "a non-negative integer", self.restarts)
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
            "startTime": _format_time(self.start_time),
            "status": self.status,
            "ports": list(self.ports),
            "createTime": self.create_time,
            "pgid": self.pgid,
            "logFile": self.log_file,
            "restarts": self.restarts,
            "exitCode": self.exit_code,
            "owner": self.owner,
            "updatedAt": _format_time(self.updated_at) if self.updated_at else None,
        }

    @classmethod
    def from_state_dict(cls, data: Any, key: str | None = None) -> StoredProcessInfo:
        """Parse one state-file entry; ValueError naming the field that is wrong."""
        if not isinstance(data, dict):
            raise _fail("entry", "an object", data)
        missing = [k for k in ("id", "pid", "command", "cwd", "startTime", "status", "ports")
                   if k not in data]
        if missing:
            raise ValueError(f"missing key(s): {', '.join(missing)}")
        if key is not None and data["id"] != key:
            raise ValueError(f"id: {_show(data['id'])} does not match its key {key!r}")
        ports = data["ports"]
        if not isinstance(ports, list):
            raise _fail("ports", "a list of integers in 1..65535", ports)
        updated = data.get("updatedAt")
        return cls(
            id=data["id"],
            pid=data["pid"],
            command=data["command"],
            cwd=data["cwd"],
            start_time=_parse_time("startTime", data["startTime"]),
            status=data["status"],
            ports=tuple(ports),
            create_time=data.get("createTime"),
            pgid=data.get("pgid"),
            log_file=data.get("logFile"),
            restarts=0 if data.get("restarts") is None else data["restarts"],
            exit_code=data.get("exitCode"),
            owner=data.get("owner"),
            updated_at=_parse_time("updatedAt", updated) if updated is not None else None,
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
        _check_id(self.id)
        if not isinstance(self.event, str) or not self.event:
            raise _fail("event", "a non-empty string", self.event)
        _check_aware("at", self.at)
        _optional("pid", self.pid, _is_positive(self.pid), "a positive integer")
        _optional("exit_code", self.exit_code, _is_int(self.exit_code), "an integer")
        _optional("reason", self.reason, isinstance(self.reason, str), "a string")
        tail = self.log_tail
        if not isinstance(tail, list | tuple) or not all(isinstance(s, str) for s in tail):
            raise _fail("log_tail", "a list of strings", tail)
        object.__setattr__(self, "log_tail", list(tail))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values under snake_case keys; `at` as ISO 8601."""
        return {
            "id": self.id,
            "event": self.event,
            "at": _format_time(self.at),
            "pid": self.pid,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "log_tail": list(self.log_tail),
        }

    def _to_file(self) -> dict[str, Any]:
        return {"event": self.event, "at": _format_time(self.at), "pid": self.pid,
                "exitCode": self.exit_code, "reason": self.reason, "logTail": list(self.log_tail)}

    @classmethod
    def _from_file(cls, server_id: str, data: Any) -> HistoryEntry:
        if not isinstance(data, dict):
            raise _fail("event entry", "an object", data)
        event: Any = data.get("event")
        return cls(id=server_id, event=event, at=_parse_time("at", data.get("at")),
                   pid=data.get("pid"), exit_code=data.get("exitCode"),
                   reason=data.get("reason"), log_tail=data.get("logTail") or [])


def _new_event(server_id: str, event: str, pid: Any, exit_code: Any, reason: Any,
               log_tail: Any, at: datetime | None) -> HistoryEntry:
    _check_id(server_id)
    if event not in EVENTS:
        raise ValueError(f"event: expected one of {', '.join(EVENTS)}, got {_show(event)}")
    tail = list(log_tail or [])
    if not all(isinstance(s, str) for s in tail):
        raise _fail("log_tail", "a list of strings", log_tail)
    tail = [s.rstrip("\n")[:LOG_LINE_CHARS] for s in tail[-LOG_TAIL_LINES:]]
    return HistoryEntry(server_id, event, at or _now(), pid, exit_code, reason, tail)


def _check_limit(limit: Any) -> int:
    if not _is_int(limit) or limit < 1:
        raise _fail("limit", "a positive integer", limit)
    return limit


# ---------------------------------------------------------------- shared surface


class StateStore:
    """The methods both stores share, written once over `update_process` and `_entries`."""

    path: Path

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

    def _entries(self) -> dict[str, StoredProcessInfo]:
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
        return replace(new, updated_at=_now())

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


# ---------------------------------------------------------------- file helpers


def _utc_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _reserve_aside(path: Path) -> Path:
    """Create and return a new empty `<path>.corrupt-<UTC time>[-N]` that did not exist."""
    base = f"{path}.corrupt-{_utc_stamp()}"
    for n in range(10_000):
        target = Path(base if n == 0 else f"{base}-{n}")
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            return target
        except FileExistsError:
            continue
    raise StateStoreError(f"cannot find a free name to move {path} aside")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.tmp-"


def _atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so a crash at any instant leaves the old file or the new one."""
    tmp = path.with_name(f"{_temp_prefix(path)}{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            with contextlib.suppress(FileNotFoundError):
                os.fchmod(fd, os.stat(path).st_mode & 0o777)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null",
            bool: "a boolean", int: "a number", float: "a number"}.get(type(value), "a value")


def _salvage_object(text: str) -> dict[str, Any]:
    """The complete `"key": value` pairs at the start of a broken JSON object."""
    decoder = json.JSONDecoder()
    out: dict[str, Any] = {}

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    i = skip(0)
    if text[i:i + 1] != "{":
        return out
    i += 1
    while True:
        try:
            key, i = decoder.raw_decode(text, skip(i))
            i = skip(i)
            if not isinstance(key, str) or text[i:i + 1] != ":":
                return out
            value, i = decoder.raw_decode(text, skip(i + 1))
        except json.JSONDecodeError:
            return out
        out[key] = value
        i = skip(i)
        if text[i:i + 1] != ",":
            return out
        i += 1


def _decode(raw: bytes) -> tuple[Any, list[str]]:
    """The JSON document in `raw` (or what can be salvaged of an object) and what was wrong."""
    problems = []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        problems.append(f"not UTF-8 text (bad byte at offset {err.start})")
        text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text), problems
    except json.JSONDecodeError as err:
        problems.append(f"not valid JSON ({err.msg} at line {err.lineno} column {err.colno})")
        return _salvage_object(text), problems


def _summary(problems: list[str]) -> str:
    shown = "; ".join(problems[:5])
    return shown + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")


def _parse_state(raw: bytes) -> tuple[dict[str, StoredProcessInfo], list[str]]:
    if not raw.strip():
        return {}, []
    doc, problems = _decode(raw)
    if not isinstance(doc, dict):
        return {}, problems + [f"top level is {_kind(doc)}, expected an object keyed by id"]
    entries = {}
    for key, value in doc.items():
        try:
            entries[key] = StoredProcessInfo.from_state_dict(value, key)
        except ValueError as err:
            problems.append(f"entry {key!r}: {err}")
    return entries, problems


class _StateEncoder:
    """The state file's text: one line per entry, each line cached while its entry is unchanged."""

    def __init__(self) -> None:
        self._lines: dict[str, tuple[StoredProcessInfo, str]] = {}

    def __call__(self, entries: dict[str, StoredProcessInfo]) -> bytes:
        lines: dict[str, tuple[StoredProcessInfo, str]] = {}
        for key, info in entries.items():
            cached = self._lines.get(key)
            if cached is None or cached[0] is not info:
                cached = (info, f"  {json.dumps(key)}: {json.dumps(info.to_state_dict())}")
            lines[key] = cached
        self._lines = lines
        if not lines:
            return b"{}\n"
        return ("{\n" + ",\n".join(line for _, line in lines.values()) + "\n}\n").encode()


def _parse_history(raw: bytes) -> tuple[dict[str, list[HistoryEntry]], list[str]]:
    if not raw.strip():
        return {}, []
    doc, problems = _decode(raw)
    if not isinstance(doc, dict):
        return {}, problems + [f"top level is {_kind(doc)}, expected an object keyed by id"]
    out: dict[str, list[HistoryEntry]] = {}
    for key, items in doc.items():
        if not isinstance(items, list):
            problems.append(f"history of {key!r}: expected a list, got {_kind(items)}")
            continue
        kept = []
        for n, item in enumerate(items):
            try:
                kept.append(HistoryEntry._from_file(key, item))
            except ValueError as err:
                problems.append(f"history of {key!r}, event {n}: {err}")
        out[key] = kept[-HISTORY_PER_ID:]
    return out, problems


def _dump_history(history: dict[str, list[HistoryEntry]]) -> bytes:
    blocks = [f"  {json.dumps(key)}: [\n" + ",\n".join(
        f"    {json.dumps(e._to_file())}" for e in items) + "\n  ]"
        for key, items in history.items() if items]
    return ("{\n" + ",\n".join(blocks) + "\n}\n").encode() if blocks else b"{}\n"


class _JsonDocument:
    """One JSON file written whole and atomically; its parsed content is cached per file stamp."""

    def __init__(self, path: Path, what: str, parse: Callable[[bytes], tuple[Any, list[str]]],
                 dump: Callable[[Any], bytes]) -> None:
        self.path, self.what, self._parse, self._dump = path, what, parse, dump
        self.data: dict[str, Any] = {}
        self.stamp: tuple[Any, ...] | None = None
        self.problems: list[str] = []
        self.raw = b""

    def refresh(self, generation: int) -> bool:
        """Re-read the file if it changed; True while its content has unrepaired problems."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self.data, self.stamp, self.problems, self.raw = {}, ("missing", generation), [], b""
            return False
        except OSError as err:
            raise StateStoreError(f"cannot read {self.what} {self.path}: {err.strerror}") from err
        try:
            st = os.fstat(fd)
            stamp = (st.st_mtime_ns, st.st_ino, st.st_size, st.st_ctime_ns, generation)
            if stamp == self.stamp:
                return bool(self.problems)
            raw = _read_all(fd)
        except OSError as err:
            raise StateStoreError(f"cannot read {self.what} {self.path}: {err.strerror}") from err
        finally:
            os.close(fd)
        self.data, self.problems = self._parse(raw)
        self.raw = raw if self.problems else b""
        self.stamp = stamp
        return bool(self.problems)

    def write(self, data: dict[str, Any]) -> None:
        """Replace the file with `data` (caller holds the store's locks)."""
        try:
            _atomic_write(self.path, self._dump(data))
        except OSError as err:
            raise StateStoreError(f"cannot write {self.what} {self.path}: {err}") from err
        self.data, self.problems, self.raw = data, [], b""


# ---------------------------------------------------------------- JSON store


class ProcessStateStore(StateStore):
    """The JSON state file (the default store); see the module docstring."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.path.realpath(os.fspath(path)))
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.history_path = self.path.with_name(self.path.name + ".history.json")
        self._state = _JsonDocument(self.path, "state file", _parse_state, _StateEncoder())
        self._history = _JsonDocument(self.history_path, "history file", _parse_history,
                                      _dump_history)
        self._lock = threading.RLock()
        self._lock_fd: int | None = None
        self._cleaned = False

    # -- locking and generations

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The thread lock plus the cross-process flock on the lock file (re-entrant)."""
        with self._lock:
            if self._lock_fd is not None:
                yield
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as err:
                raise StateStoreError(f"cannot open lock file {self.lock_path}: {err}") from err
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._lock_fd = fd
                if not self._cleaned:
                    self._clean_temps()
                yield
            finally:
                self._lock_fd = None
                os.close(fd)  # releases the flock

    def _generation(self) -> int:
        """The commit counter kept in the lock file (0 when there is none yet)."""
        fd = self._lock_fd
        try:
            if fd is None:
                fd = os.open(self.lock_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return 0
        try:
            text = os.pread(fd, 32, 0)
        finally:
            if fd != self._lock_fd:
                os.close(fd)
        try:
            return int(text.decode("ascii").strip() or 0)
        except ValueError:
            return 0

    def _fresh(self, doc: _JsonDocument) -> dict[str, Any]:
        """`doc`'s committed content, re-read if changed, repaired if bad (thread lock held)."""
        if doc.refresh(self._generation()):
            try:
                with self._locked():
                    if doc.refresh(self._generation()):  # still bad now that we hold the lock
                        self._repair(doc)
            except (OSError, StateStoreError) as err:
                log.warning("%s %s had bad content (%s) and could not be moved aside (%s); "
                            "using its %d valid entries", doc.what, doc.path,
                            _summary(doc.problems), err, len(doc.data))
                doc.problems = []  # reported; not again until the file changes
        return doc.data

    def _commit(self, doc: _JsonDocument, data: dict[str, Any]) -> None:
        """Write `doc` atomically, bump the generation, remember the new stamp (flock held)."""
        doc.write(data)
        fd = self._lock_fd
        if fd is None:  # pragma: no cover - every caller holds _locked()
            raise StateStoreError("internal: commit without the lock")
        previous = self._generation()
        generation = previous + 1
        os.pwrite(fd, b"%020d\n" % generation, 0)
        st = os.stat(doc.path)
        doc.stamp = (st.st_mtime_ns, st.st_ino, st.st_size, st.st_ctime_ns, generation)
        for other in (self._state, self._history):  # still current: nobody committed meanwhile
            if other is not doc and other.stamp is not None and other.stamp[-1] == previous:
                other.stamp = (*other.stamp[:-1], generation)

    def _repair(self, doc: _JsonDocument) -> None:
        """Copy bad content aside, log what was wrong, write back the valid part."""
        aside = _reserve_aside(doc.path)
        with open(aside, "wb") as fh:
            fh.write(doc.raw)
            fh.flush()
            os.fsync(fh.fileno())
        problems, kept = doc.problems, len(doc.data)
        self._commit(doc, doc.data)
        log.warning("%s %s had bad content (%s); moved it aside to %s and kept %d valid entr%s",
                    doc.what, doc.path, _summary(problems), aside, kept,
                    "y" if kept == 1 else "ies")

    def _clean_temps(self) -> None:
        """Remove temp files of killed writers (under the flock no writer of ours is mid-write)."""
        self._cleaned = True
        prefixes = (_temp_prefix(self.path), _temp_prefix(self.history_path))
        try:
            with os.scandir(self.path.parent) as entries:
                stale = [e.path for e in entries if e.name.startswith(prefixes)]
        except OSError:
            return
        for name in stale:
            with contextlib.suppress(OSError):
                os.unlink(name)
                log.info("removed %s left by an interrupted write", name)

    # -- reads

    def _entries(self) -> dict[str, StoredProcessInfo]:
        with self._lock:
            return self._fresh(self._state)

    def load(self) -> dict[str, StoredProcessInfo]:
        """Every stored process by id; also removes temp files left by killed writers."""
        with self._lock:
            entries = dict(self._fresh(self._state))
            self._try_clean_temps()
            return entries

    def _try_clean_temps(self) -> None:
        try:  # only if some writer of ours ever ran here (it made the lock file)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a writer is busy right now: clean another time
            os.close(fd)
            return
        try:
            self._clean_temps()
        finally:
            os.close(fd)

    def version(self) -> Any:
        with self._lock:
            try:
                st = os.stat(self.path)
                stamp: tuple[Any, ...] = (st.st_mtime_ns, st.st_ino, st.st_size, st.st_ctime_ns)
            except FileNotFoundError:
                stamp = ("missing",)
            except OSError as err:
                raise StateStoreError(f"cannot stat {self.path}: {err.strerror}") from err
            return (*stamp, self._generation())

    # -- writes

    def update_process(self, id: str, fn: Updater) -> StoredProcessInfo | None:
        _check_id(id)
        with self._locked():
            entries = self._fresh(self._state)
            old = entries.get(id)
            new = self._checked(id, old, fn(old))
            if new is old:
                return old
            data = dict(entries)
            if new is None:
                del data[id]
            else:
                data[id] = new
            self._commit(self._state, data)
            return new

    def clear(self) -> None:
        with self._locked():
            self._commit(self._state, {})

    def record_event(self, id: str, event: str, *, pid: int | None = None,
                     exit_code: int | None = None, reason: str | None = None,
                     log_tail: list[str] | None = None, at: datetime | None = None) -> HistoryEntry:
        entry = _new_event(id, event, pid, exit_code, reason, log_tail, at)
        with self._locked():
            history = dict(self._fresh(self._history))
            history[id] = [*history.get(id, []), entry][-HISTORY_PER_ID:]
            self._commit(self._history, history)
        return entry

    def history(self, id: str, limit: int = 50) -> list[HistoryEntry]:
        _check_limit(limit)
        with self._lock:
            items = self._fresh(self._history).get(id, [])
            return items[::-1][:limit]

    def clear_history(self, id: str | None = None) -> None:
        with self._locked():
            history = dict(self._fresh(self._history))
            if id is None:
                history.clear()
            else:
                history.pop(id, None)
            self._commit(self._history, history)


# ---------------------------------------------------------------- SQLite store

_COLUMNS = ("id, pid, command, cwd, start_time, status, ports, create_time, pgid, log_file, "
            "restarts, exit_code, owner, updated_at")

# Each schema version's statements, applied in order from the file's user_version up.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE IF NOT EXISTS processes (
            id TEXT PRIMARY KEY, pid INTEGER NOT NULL, command TEXT NOT NULL, cwd TEXT,
            start_time TEXT NOT NULL, status TEXT NOT NULL, ports TEXT NOT NULL DEFAULT '[]',
            create_time REAL, pgid INTEGER, log_file TEXT, restarts INTEGER NOT NULL DEFAULT 0,
            exit_code INTEGER, owner TEXT, updated_at TEXT)""",
        """CREATE TABLE IF NOT EXISTS history (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, event TEXT NOT NULL,
            at TEXT NOT NULL, pid INTEGER, exit_code INTEGER, reason TEXT,
            log_tail TEXT NOT NULL DEFAULT '[]')""",
        "CREATE INDEX IF NOT EXISTS history_by_id ON history (id, seq)",
    ),
}


class _Corrupt(Exception):
    pass


def _is_corruption(err: BaseException) -> bool:
    if isinstance(err, _Corrupt):
        return True
    code = getattr(err, "sqlite_errorcode", None)
    return isinstance(err, sqlite3.DatabaseError) and code is not None and (
        code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB))


def _row_to_info(row: tuple[Any, ...]) -> StoredProcessInfo:
    (pid_id, pid, command, cwd, start, status, ports, ctime, pgid, log_file, restarts,
     exit_code, owner, updated) = row
    try:
        port_list = json.loads(ports) if isinstance(ports, str) else ports
    except json.JSONDecodeError:
        raise _fail("ports", "a JSON list of integers in 1..65535", ports) from None
    if not isinstance(port_list, list):
        raise _fail("ports", "a JSON list of integers in 1..65535", ports)
    return StoredProcessInfo(
        id=pid_id, pid=pid, command=command, cwd=cwd, start_time=_parse_time("start_time", start),
        status=status, ports=tuple(port_list), create_time=ctime, pgid=pgid, log_file=log_file,
        restarts=restarts, exit_code=exit_code, owner=owner,
        updated_at=_parse_time("updated_at", updated) if updated is not None else None)


def _info_to_row(info: StoredProcessInfo) -> tuple[Any, ...]:
    return (info.id, info.pid, info.command, info.cwd, _format_time(info.start_time), info.status,
            json.dumps(list(info.ports)), info.create_time, info.pgid, info.log_file,
            info.restarts, info.exit_code, info.owner,
            _format_time(info.updated_at) if info.updated_at else None)


class SQLiteStateStore(StateStore):
    """The same store in an SQLite database (WAL mode): cheaper writes with many entries."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.path.realpath(os.fspath(path)))
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._conn_pid = 0
        self._conn_ino = 0
        self._generation = 0  # bumped each time a connection is (re)opened
        self._commits = 0
        self._cache: tuple[Any, dict[str, StoredProcessInfo]] | None = None

    # -- connection

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            self._migrate(conn)
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise _Corrupt(f"quick_check: {check}")
        except BaseException:
            conn.close()
            raise
        self._conn_ino = os.stat(self.path).st_ino
        self._generation += 1
        self._cache = None
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StateStoreError(f"{self.path}: schema version {version} is newer than this "
                                  f"procsync understands ({SCHEMA_VERSION})")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[step]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _connection(self) -> sqlite3.Connection:
        """The open connection (thread lock held), reopened after a fork or a file swap."""
        conn = self._conn
        if conn is not None and self._conn_pid == os.getpid():
            try:
                if os.stat(self.path).st_ino == self._conn_ino:
                    return conn
            except FileNotFoundError:
                pass
            conn.close()
        self._conn = None  # after a fork the parent's connection is left alone
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                conn = self._open()
            except (sqlite3.DatabaseError, _Corrupt) as err:
                if not _is_corruption(err):
                    raise
                conn = self._recover(str(err))
        except (sqlite3.Error, OSError) as err:
            raise StateStoreError(f"cannot open state database {self.path}: {err}") from err
        self._conn, self._conn_pid = conn, os.getpid()
        return conn

    @contextlib.contextmanager
    def _flock(self) -> Iterator[None]:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _recover(self, problem: str) -> sqlite3.Connection:
        """Move a corrupted database aside (under the lock file) and start a fresh one."""
        with self._flock():
            try:
                return self._open()  # another process may have replaced it already
            except (sqlite3.DatabaseError, _Corrupt) as err:
                if not _is_corruption(err):
                    raise
            aside = _reserve_aside(self.path)
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
            log.warning("state database %s is corrupted (%s); moved it aside to %s and started "
                        "an empty one", self.path, problem, aside)
            return self._open()

    def _run(self, op: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `op` with the connection; a corruption found midway is recovered, then retried."""
        with self._lock:
            for attempt in (1, 2):
                conn = self._connection()
                try:
                    return op(conn)
                except sqlite3.Error as err:
                    if attempt == 1 and _is_corruption(err):
                        conn.close()  # the next _connection() moves the file aside
                        self._conn = None
                        continue
                    raise StateStoreError(f"state database {self.path}: {err}") from err
            raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        changes = conn.total_changes
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        if conn.total_changes != changes:
            self._commits += 1

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and self._conn_pid == os.getpid():
                conn.close()

    # -- bad rows

    def _reject(self, conn: sqlite3.Connection, bad: list[tuple[tuple[Any, ...], str]]) -> None:
        """Delete rows that fail validation, keeping a copy in `<db>.corrupt-<time>` (JSON)."""
        aside = _reserve_aside(self.path)
        rows = [dict(zip(_COLUMNS.split(", "), row, strict=True)) | {"problem": problem}
                for row, problem in bad]
        aside.write_text(json.dumps(rows, indent=2, default=repr) + "\n")
        conn.executemany("DELETE FROM processes WHERE id IS ?", [(row[0],) for row, _ in bad])
        log.warning("state database %s had %d bad row(s) (%s); moved them aside to %s",
                    self.path, len(bad), _summary([p for _, p in bad]), aside)

    @staticmethod
    def _parse_row(row: tuple[Any, ...]) -> tuple[StoredProcessInfo | None, str | None]:
        try:
            return _row_to_info(row), None
        except ValueError as err:
            return None, f"row {_show(row[0])}: {err}"

    # -- reads

    def _token(self, conn: sqlite3.Connection) -> Any:
        return (self._generation, conn.execute("PRAGMA data_version").fetchone()[0],
                self._commits)

    def _entries(self) -> dict[str, StoredProcessInfo]:
        def op(conn: sqlite3.Connection) -> dict[str, StoredProcessInfo]:
            token = self._token(conn)
            if self._cache is not None and self._cache[0] == token:
                return self._cache[1]
            rows = conn.execute(f"SELECT {_COLUMNS} FROM processes ORDER BY rowid").fetchall()
            entries, bad = {}, []
            for row in rows:
                info, problem = self._parse_row(row)
                if info is None:
                    bad.append((row, problem or "invalid"))
                else:
                    entries[info.id] = info
            if bad:
                with self._transaction(conn):
                    self._reject(conn, bad)
                token = self._token(conn)
            self._cache = (token, entries)
            return entries

        return self._run(op)

    def version(self) -> Any:
        return self._run(self._token)

    # -- writes

    def update_process(self, id: str, fn: Updater) -> StoredProcessInfo | None:
        _check_id(id)

        def op(conn: sqlite3.Connection) -> StoredProcessInfo | None:
            with self._transaction(conn):
                row = conn.execute(f"SELECT {_COLUMNS} FROM processes WHERE id = ?",
                                   (id,)).fetchone()
                old = None
                if row is not None:
                    old, problem = self._parse_row(row)
                    if old is None:
                        self._reject(conn, [(row, problem or "invalid")])
                new = self._checked(id, old, fn(old))
                if new is old:
                    return old
                if new is None:
                    conn.execute("DELETE FROM processes WHERE id = ?", (id,))
                else:
                    conn.execute(f"INSERT OR REPLACE INTO processes ({_COLUMNS}) VALUES "
                                 f"({', '.join('?' * 14)})", _info_to_row(new))
                return new

        return self._run(op)

    def clear(self) -> None:
        def op(conn: sqlite3.Connection) -> None:
            with self._transaction(conn):
                conn.execute("DELETE FROM processes")

        self._run(op)

    def record_event(self, id: str, event: str, *, pid: int | None = None,
                     exit_code: int | None = None, reason: str | None = None,
                     log_tail: list[str] | None = None, at: datetime | None = None) -> HistoryEntry:
        entry = _new_event(id, event, pid, exit_code, reason, log_tail, at)

        def op(conn: sqlite3.Connection) -> None:
            with self._transaction(conn):
                conn.execute(
                    "INSERT INTO history (id, event, at, pid, exit_code, reason, log_tail) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (entry.id, entry.event, _format_time(entry.at), entry.pid, entry.exit_code,
                     entry.reason, json.dumps(entry.log_tail)))
                conn.execute(
                    "DELETE FROM history WHERE id = ? AND seq <= (SELECT seq FROM history "
                    "WHERE id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                    (id, id, HISTORY_PER_ID))

        self._run(op)
        return entry

    def history(self, id: str, limit: int = 50) -> list[HistoryEntry]:
        _check_limit(limit)

        def op(conn: sqlite3.Connection) -> list[HistoryEntry]:
            return conn.execute(
                "SELECT event, at, pid, exit_code, reason, log_tail FROM history "
                "WHERE id = ? ORDER BY seq DESC LIMIT ?", (id, limit)).fetchall()

        out = []
        for event, at, pid, exit_code, reason, tail in self._run(op):
            try:
                out.append(HistoryEntry(id, event, _parse_time("at", at), pid, exit_code, reason,
                                        json.loads(tail) if isinstance(tail, str) else []))
            except ValueError as err:
                log.warning("state database %s: skipped a bad history row of %r: %s",
                            self.path, id, err)
        return out

    def clear_history(self, id: str | None = None) -> None:
        def op(conn: sqlite3.Connection) -> None:
            with self._transaction(conn):
                if id is None:
                    conn.execute("DELETE FROM history")
                else:
                    conn.execute("DELETE FROM history WHERE id = ?", (id,))

        self._run(op)


def open_store(path: str | os.PathLike[str]) -> ProcessStateStore | SQLiteStateStore:
    """SQLiteStateStore for a path ending in .db, .sqlite or .sqlite3; else ProcessStateStore."""
    if Path(os.fspath(path)).suffix.lower() in SQLITE_SUFFIXES:
        return SQLiteStateStore(path)
    return ProcessStateStore(path)


__all__ = [
    "EVENTS",
    "HistoryEntry",
    "ProcessStateStore",
    "SQLiteStateStore",
    "StateStore",
    "StoredProcessInfo",
    "open_store",
]
