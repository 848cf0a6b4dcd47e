"""The JSON state store (the default): one file keyed by id, its history beside it.

The state file is an object keyed by id in the seed's camelCase shape; the
event history lives in a sibling `<state>.history.json`. Every write is
atomic and made under a lock file (`<state>.lock`, `fcntl.flock`), so threads
and processes can share one file. Bad content never makes `load()` raise: the
file is copied aside as `<state>.corrupt-<UTC time>`, a warning is logged, and
the valid entries are kept. See docs/state-file.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from .atomic import FILE_MODE, atomic_write, read_all, reserve_aside, temp_prefix
from .errors import StateStoreError
from .store_base import (
    HISTORY_PER_ID,
    HistoryEntry,
    StateStore,
    StoredProcessInfo,
    Updater,
    check_id,
    check_limit,
    new_event,
    summary,
)

log = logging.getLogger("procsync.store")  # the documented logger of both stores


# ---------------------------------------------------------------- decoding


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
        except (json.JSONDecodeError, RecursionError):  # RecursionError: nested too deeply
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
    except RecursionError:
        problems.append("not valid JSON (nested too deeply)")
        return _salvage_object(text), problems



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


# ---------------------------------------------------------------- one file


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
            raw = read_all(fd)
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
            atomic_write(self.path, self._dump(data))
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
        self._init_pending()

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
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
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
                            summary(doc.problems), err, len(doc.data))
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
        try:
            os.pwrite(fd, b"%020d\n" % generation, 0)
            st = os.stat(doc.path)
        except OSError as err:  # the file is written; others see it by its stamp
            log.debug("cannot bump the commit counter in %s: %s", self.lock_path, err)
            doc.stamp = None
            return
        doc.stamp = (st.st_mtime_ns, st.st_ino, st.st_size, st.st_ctime_ns, generation)
        for other in (self._state, self._history):  # still current: nobody committed meanwhile
            if other is not doc and other.stamp is not None and other.stamp[-1] == previous:
                other.stamp = (*other.stamp[:-1], generation)

    def _repair(self, doc: _JsonDocument) -> None:
        """Copy bad content aside, log what was wrong, write back the valid part."""
        aside = reserve_aside(doc.path)
        with open(aside, "wb") as fh:
            fh.write(doc.raw)
            fh.flush()
            os.fsync(fh.fileno())
        problems, kept = doc.problems, len(doc.data)
        self._commit(doc, doc.data)
        log.warning("%s %s had bad content (%s); moved it aside to %s and kept %d valid entr%s",
                    doc.what, doc.path, summary(problems), aside, kept,
                    "y" if kept == 1 else "ies")

    def _clean_temps(self) -> None:
        """Remove temp files of killed writers (under the flock no writer of ours is mid-write)."""
        self._cleaned = True
        prefixes = (temp_prefix(self.path), temp_prefix(self.history_path))
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
            return self._pending.apply_entries(self._fresh(self._state))

    def load(self) -> dict[str, StoredProcessInfo]:
        """Every stored process by id; also removes temp files left by killed writers."""
        with self._lock:
            entries = dict(self._entries())
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
        """The commit token; also retries, once a second, the writes that failed before."""
        with self._lock:
            if self._retry_due():
                self.flush()
            try:
                st = os.stat(self.path)
                stamp: tuple[Any, ...] = (st.st_mtime_ns, st.st_ino, st.st_size, st.st_ctime_ns)
            except FileNotFoundError:
                stamp = ("missing",)
            except OSError as err:
                raise StateStoreError(f"cannot stat {self.path}: {err.strerror}") from err
            return (*stamp, self._generation())

    # -- writes

    def _enter_write_lock(self, stack: contextlib.ExitStack) -> StateStoreError | None:
        """Take the locks for a write; the error if the lock file cannot be used (thread lock held)."""
        try:
            stack.enter_context(self._locked())
        except StateStoreError as err:
            return err
        return None

    def _flush_doc(self, doc: _JsonDocument, blocked: StateStoreError | None) -> None:
        """Write `doc`'s pending changes (its locks are held unless `blocked`); raise if that fails."""
        state = doc is self._state
        what = f"{doc.what} {doc.path}"
        if blocked is not None:
            raise self._write_failed(what, blocked) from blocked
        try:
            if state:
                self._commit(doc, self._pending.apply_entries(self._fresh(doc)))
            else:
                self._commit(doc, self._pending.apply_history(self._fresh(doc)))
        except (OSError, StateStoreError) as err:
            raise self._write_failed(what, err) from err
        if state:
            self._pending.entries_written()
        else:
            self._pending.history_written()
        other = self._history if state else self._state
        if (self._pending.has_history() if state else self._pending.has_entries()):
            with contextlib.suppress(StateStoreError):
                self._flush_doc(other, None)  # failed before: this write shows it works again
        self._write_resumed()

    def flush(self) -> bool:
        with self._lock, contextlib.ExitStack() as stack:
            if not self._pending:
                return True
            blocked = self._enter_write_lock(stack)
            try:
                if self._pending.has_entries():
                    self._flush_doc(self._state, blocked)
                if self._pending.has_history():
                    self._flush_doc(self._history, blocked)
            except StateStoreError:
                return False
            return True

    def update_process(self, id: str, fn: Updater) -> StoredProcessInfo | None:
        """See `StateStore.update_process`. When the write fails, StateStoreError is raised and
        the change is kept in memory (reads show it) until a later write succeeds."""
        check_id(id)
        with self._lock, contextlib.ExitStack() as stack:
            blocked = self._enter_write_lock(stack)
            old = self._entries().get(id)
            new = self._checked(id, old, fn(old))
            if new is old:
                return old
            self._pending.set_entry(id, new)
            self._flush_doc(self._state, blocked)
            return new

    def clear(self) -> None:
        with self._lock, contextlib.ExitStack() as stack:
            blocked = self._enter_write_lock(stack)
            self._pending.clear_entries()
            self._flush_doc(self._state, blocked)

    def record_event(self, id: str, event: str, *, pid: int | None = None,
                     exit_code: int | None = None, reason: str | None = None,
                     log_tail: list[str] | None = None, at: datetime | None = None) -> HistoryEntry:
        entry = new_event(id, event, pid, exit_code, reason, log_tail, at)
        with self._lock, contextlib.ExitStack() as stack:
            blocked = self._enter_write_lock(stack)
            self._pending.add_event(entry)  # written in time order by apply_history
            self._flush_doc(self._history, blocked)
        return entry

    def history(self, id: str, limit: int = 50) -> list[HistoryEntry]:
        check_limit(limit)
        with self._lock:
            items = self._pending.apply_history(self._fresh(self._history)).get(id, [])
            return items[::-1][:limit]

    def clear_history(self, id: str | None = None) -> None:
        with self._lock, contextlib.ExitStack() as stack:
            blocked = self._enter_write_lock(stack)
            self._pending.clear_history(id)
            self._flush_doc(self._history, blocked)


__all__ = ["ProcessStateStore"]
