"""The JSON state store (the default): one file keyed by id, its history beside it.

The state file is an object keyed by id in the seed's camelCase shape; the
event history lives in a sibling `<state>.history.json`. Every write is
atomic and made under a lock file (`<state>.lock`, `fcntl.flock`), so threads
and processes can share one file. Bad content never makes `load()` raise: the
file is copied aside as `<state>.corrupt-<UTC time>`, a warning is logged, and
the valid entries are kept. See docs/state-file.md.

Reads take no lock across file I/O: they check the files' stamps against the
store's snapshot and re-parse (without the writer lock) only when another
process committed. Writes hold the writer lock and the flock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import StateStoreError
from .atomic import FILE_MODE, atomic_write, read_all, reserve_aside, temp_prefix
from .base import (
    HISTORY_PER_ID,
    DocSnapshot,
    EventSpec,
    HistoryEntry,
    ReadAgain,
    Snapshot,
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


Stamp = tuple[Any, ...]


def _read_file(path: Path, what: str, generation: int,
               known: Stamp | None) -> tuple[Stamp, bytes | None]:
    """`path`'s stamp and content; content None when the stamp is `known` (unchanged)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return ("missing", generation), b""
    except OSError as err:
        raise StateStoreError(f"cannot read {what} {path}: {err.strerror}") from err
    try:
        st = os.fstat(fd)
        stamp = (st.st_mtime_ns, st.st_ino, st.st_size, st.st_ctime_ns, generation)
        if stamp == known:
            return stamp, None
        return stamp, read_all(fd)
    except OSError as err:
        raise StateStoreError(f"cannot read {what} {path}: {err.strerror}") from err
    finally:
        os.close(fd)


class _JsonDocument:
    """One JSON file written whole and atomically; the writer's parse of it, cached per stamp."""

    def __init__(self, path: Path, what: str, parse: Callable[[bytes], tuple[Any, list[str]]],
                 dump: Callable[[Any], bytes]) -> None:
        self.path, self.what, self.parse, self._dump = path, what, parse, dump
        self.data: dict[str, Any] = {}
        self.stamp: Stamp | None = None
        self.problems: list[str] = []
        self.raw = b""

    def refresh(self, generation: int) -> bool:
        """Re-read the file if it changed; True while its content has unrepaired problems."""
        stamp, raw = _read_file(self.path, self.what, generation, self.stamp)
        if raw is None:
            return bool(self.problems)
        self.data, self.problems = self.parse(raw)
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


class _Busy(Exception):
    """The lock a write needs is held by another thread or process (non-blocking attempts)."""


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
        self._lock_fd: int | None = None  # the flocked lock file, while the writer holds it
        self._cleaned = False
        self._init_store()

    # -- locking and generations

    @contextlib.contextmanager
    def _locked(self, blocking: bool = True) -> Iterator[None]:
        """The writer lock plus the cross-process flock on the lock file (re-entrant).

        With `blocking` False, raise _Busy instead of waiting for either.
        """
        with self._writer(blocking) as got:
            if not got:
                raise _Busy
            if self._lock_fd is not None:
                yield
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            except OSError as err:
                raise StateStoreError(f"cannot open lock file {self.lock_path}: {err}") from err
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                except BlockingIOError:
                    raise _Busy from None
                self._lock_fd = fd
                if not self._cleaned:
                    self._clean_temps()
                yield
            finally:
                self._lock_fd = None
                os.close(fd)  # releases the flock

    def _generation(self, fd: int | None = None) -> int:
        """The commit counter kept in the lock file (0 when there is none yet).

        The writer passes its flocked fd; readers pass none and open their own.
        """
        own = fd is None
        try:
            if fd is None:
                fd = os.open(self.lock_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return 0
        try:
            text = os.pread(fd, 32, 0)
        except OSError:
            return 0
        finally:
            if own:
                os.close(fd)
        try:
            return int(text.decode("ascii").strip() or 0)
        except ValueError:
            return 0

    def _fresh(self, doc: _JsonDocument, blocking: bool = True) -> dict[str, Any]:
        """`doc`'s committed content, re-read if changed, repaired if bad (writer lock held)."""
        if doc.refresh(self._generation(self._lock_fd)):
            try:
                with self._locked(blocking):
                    if doc.refresh(self._generation(self._lock_fd)):  # still bad under the lock
                        self._repair(doc)
            except (OSError, StateStoreError) as err:
                log.warning("%s %s had bad content (%s) and could not be moved aside (%s); "
                            "using its %d valid entries", doc.what, doc.path,
                            summary(doc.problems), err, len(doc.data))
                doc.problems = []  # reported; not again until the file changes
        return doc.data

    def _commit(self, doc: _JsonDocument, data: dict[str, Any]) -> None:
        """Write `doc` atomically, bump the generation, remember the new stamp (flock held)."""
        fd = self._lock_fd
        if fd is None:  # pragma: no cover - every caller holds _locked()
            raise StateStoreError("internal: commit without the lock")
        self._committing()
        with self.write_time.time():
            doc.write(data)
        previous = self._generation(fd)
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

    # -- the snapshot reads use

    def _writer_snapshot(self) -> Snapshot:
        snap = Snapshot(pending=self._pending.copy())
        parts = {}
        for which, doc in (("entries", self._state), ("history", self._history)):
            if doc.stamp is None:
                parts[which] = DocSnapshot()  # unknown: the next read re-reads the file
            else:
                parts[which] = snap.doc(which, doc.stamp, doc.data, bool(doc.problems))
        return Snapshot(parts["entries"], parts["history"], snap.pending)

    def _read_doc(self, which: str, snap: Snapshot) -> tuple[Mapping[str, Any], Snapshot | None]:
        """`which` part of `snap` if the file is unchanged, else the file re-read (no writer lock)."""
        part = snap.entries if which == "entries" else snap.history
        doc = self._state if which == "entries" else self._history  # its path and parser only
        known = None if part.problems or part.view is None else part.token
        stamp, raw = _read_file(doc.path, doc.what, self._generation(), known)
        if raw is None and part.view is not None:
            return part.view, None
        data, problems = doc.parse(raw or b"")
        if problems and self._try_repair(doc):
            raise ReadAgain  # the writer repaired the file and published it
        fresh = snap.doc(which, stamp, data, bool(problems))
        newer = Snapshot(fresh, snap.history, snap.pending) if which == "entries" else \
            Snapshot(snap.entries, fresh, snap.pending)
        return fresh.view or {}, newer

    def _try_repair(self, doc: _JsonDocument) -> bool:
        """Repair `doc` now if no writer is busy; False if one is (it or a later read repairs)."""
        with self._writer(blocking=False) as got:
            if not got:
                return False
            try:
                self._fresh(doc, blocking=False)
            except _Busy:
                return False
            return True

    # -- reads

    def _entries(self) -> Mapping[str, StoredProcessInfo]:
        return self._lockfree(lambda snap: self._read_doc("entries", snap), self._current)

    def _current(self) -> dict[str, StoredProcessInfo]:
        """The entries as the writer sees them: committed, with pending changes (writer lock held)."""
        return self._pending.apply_entries(self._fresh(self._state))

    def load(self) -> dict[str, StoredProcessInfo]:
        """Every stored process by id; also removes temp files left by killed writers."""
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
        if self._retry_due():
            self._try_flush()
        try:
            st = os.stat(self.path)
            stamp: tuple[Any, ...] = (st.st_mtime_ns, st.st_ino, st.st_size, st.st_ctime_ns)
        except FileNotFoundError:
            stamp = ("missing",)
        except OSError as err:
            raise StateStoreError(f"cannot stat {self.path}: {err.strerror}") from err
        return (*stamp, self._generation())

    def history(self, id: str, limit: int = 50) -> list[HistoryEntry]:
        check_limit(limit)
        view = self._lockfree(lambda snap: self._read_doc("history", snap),
                              lambda: self._pending.apply_history(self._fresh(self._history)))
        items: list[HistoryEntry] = view.get(id, [])
        return items[::-1][:limit]

    # -- writes

    def _enter_write_lock(self, stack: contextlib.ExitStack,
                          blocking: bool = True) -> StateStoreError | None:
        """Take the locks for a write; the error if the lock file cannot be used (writer lock held)."""
        try:
            stack.enter_context(self._locked(blocking))
        except StateStoreError as err:
            return err
        return None

    def _flush_doc(self, doc: _JsonDocument, blocked: StateStoreError | None,
                   other_too: bool = True) -> None:
        """Write `doc`'s pending changes (its locks are held unless `blocked`); raise if that fails.

        After a success, the other file's pending changes are written too when
        `other_too` (a write that works shows the disk is back).
        """
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
        if other_too and (self._pending.has_history() if state else self._pending.has_entries()):
            with contextlib.suppress(StateStoreError):
                self._flush_doc(other, None)  # failed before: this write shows it works again
        self._write_resumed()

    def flush(self) -> bool:
        with self._writer():
            return self._flush()

    def _flush(self, blocking: bool = True) -> bool:
        with contextlib.ExitStack() as stack:
            if not self._pending:
                return True
            blocked = self._enter_write_lock(stack, blocking)
            try:
                if self._pending.has_entries():
                    self._flush_doc(self._state, blocked)
                if self._pending.has_history():
                    self._flush_doc(self._history, blocked)
            except StateStoreError:
                return False
            return True

    def _try_flush(self) -> None:
        """Retry the writes that failed, unless a writer is busy (then it retries them itself)."""
        with self._writer(blocking=False) as got:
            if got:
                with contextlib.suppress(_Busy):
                    self._flush(blocking=False)

    def update_process(self, id: str, fn: Updater) -> StoredProcessInfo | None:
        """See `StateStore.update_process`. When the write fails, StateStoreError is raised and
        the change is kept in memory (reads show it) until a later write succeeds."""
        check_id(id)
        with self._writer(), contextlib.ExitStack() as stack:
            blocked = self._enter_write_lock(stack)
            old = self._current().get(id)
            new = self._checked(id, old, fn(old))
            if new is old:
                return old
            self._pending.set_entry(id, new)
            self._flush_doc(self._state, blocked)
            return new

    def write_batch(self, updates: Mapping[str, Updater],
                    events: Sequence[EventSpec] = ()) -> dict[str, StoredProcessInfo | None]:
        """See `StateStore.write_batch`: at most one write of the state file and one of the history."""
        entries = self._checked_batch(updates, events)
        errors: list[Exception] = []
        with self._writer(), contextlib.ExitStack() as stack:
            blocked = self._enter_write_lock(stack)
            results, changed = self._run_updaters(self._current(), updates, errors)
            for id, new in changed.items():
                self._pending.set_entry(id, new)
            for entry in entries:
                self._pending.add_event(entry)  # written in time order by apply_history
            try:
                if self._pending.has_entries():
                    self._flush_doc(self._state, blocked, other_too=False)
                if self._pending.has_history():
                    self._flush_doc(self._history, blocked, other_too=False)
            except StateStoreError as err:
                errors.insert(0, err)
        self._batch_done(errors)
        return results

    def clear(self) -> None:
        with self._writer(), contextlib.ExitStack() as stack:
            blocked = self._enter_write_lock(stack)
            self._pending.clear_entries()
            self._flush_doc(self._state, blocked)

    def record_event(self, id: str, event: str, *, pid: int | None = None,
                     exit_code: int | None = None, reason: str | None = None,
                     log_tail: list[str] | None = None, at: datetime | None = None) -> HistoryEntry:
        entry = new_event(id, event, pid, exit_code, reason, log_tail, at)
        with self._writer(), contextlib.ExitStack() as stack:
            blocked = self._enter_write_lock(stack)
            self._pending.add_event(entry)  # written in time order by apply_history
            self._flush_doc(self._history, blocked)
        return entry

    def clear_history(self, id: str | None = None) -> None:
        with self._writer(), contextlib.ExitStack() as stack:
            blocked = self._enter_write_lock(stack)
            self._pending.clear_history(id)
            self._flush_doc(self._history, blocked)


__all__ = ["ProcessStateStore"]
