"""The SQLite state store: the same methods as the JSON store, in one database (WAL mode).

Cheaper writes with many entries. The schema is versioned with `PRAGMA
user_version` and upgraded by `MIGRATIONS`. A corrupted database is moved
aside as `<db>.corrupt-<UTC time>` and a fresh one started; rows that fail
validation are copied aside (as JSON) and deleted. See docs/state-file.md.

Writes go through one connection under the writer lock. Reads use their own
connections (WAL lets them read while a writer commits) and the store's
snapshot of the entries, re-read when `PRAGMA data_version` on a probe
connection says some connection committed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import StateStoreError
from .atomic import FILE_MODE, exclusive_lock, reserve_aside
from .base import (
    HISTORY_PER_ID,
    EventSpec,
    HistoryEntry,
    NeedsWriter,
    PendingWrites,
    ReadAgain,
    Snapshot,
    StateStore,
    StoredProcessInfo,
    Updater,
    check_id,
    check_limit,
    fail,
    format_time,
    new_event,
    parse_time,
    show,
    summary,
)

log = logging.getLogger("procsync.store")  # the documented logger of both stores

SCHEMA_VERSION = 1  # SQLite PRAGMA user_version this code writes
BUSY_TIMEOUT = 10.0  # seconds SQLite waits for another writer
READERS_KEPT = 4  # idle reader connections kept open per store


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
    except (json.JSONDecodeError, RecursionError):  # RecursionError: nested too deeply
        raise fail("ports", "a JSON list of integers in 1..65535", ports) from None
    if not isinstance(port_list, list):
        raise fail("ports", "a JSON list of integers in 1..65535", ports)
    return StoredProcessInfo(
        id=pid_id, pid=pid, command=command, cwd=cwd, start_time=parse_time("start_time", start),
        status=status, ports=tuple(port_list), create_time=ctime, pgid=pgid, log_file=log_file,
        restarts=restarts, exit_code=exit_code, owner=owner,
        updated_at=parse_time("updated_at", updated) if updated is not None else None)


def _info_to_row(info: StoredProcessInfo) -> tuple[Any, ...]:
    return (info.id, info.pid, info.command, info.cwd, format_time(info.start_time), info.status,
            json.dumps(list(info.ports)), info.create_time, info.pgid, info.log_file,
            info.restarts, info.exit_code, info.owner,
            format_time(info.updated_at) if info.updated_at else None)


class _Conn:
    """A connection with the process and the file (inode) it was opened for."""

    __slots__ = ("conn", "pid", "ino", "number")

    def __init__(self, conn: sqlite3.Connection, ino: int, number: int = 0) -> None:
        self.conn, self.pid, self.ino, self.number = conn, os.getpid(), ino, number

    def fits(self, ino: int) -> bool:
        return self.pid == os.getpid() and self.ino == ino


class SQLiteStateStore(StateStore):
    """The same store in an SQLite database (WAL mode): cheaper writes with many entries."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.path.realpath(os.fspath(path)))
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._conn: sqlite3.Connection | None = None  # the writer's (writer lock)
        self._conn_pid = 0
        self._conn_ino = 0
        self._generation = 0  # bumped each time a connection is (re)opened
        self._commits = 0
        self._cache: tuple[Any, dict[str, StoredProcessInfo]] | None = None  # the writer's
        self._probe: _Conn | None = None  # asked for data_version (snapshot lock)
        self._probes = itertools.count(1)
        self._readers: list[_Conn] = []  # idle read connections (snapshot lock)
        self._unknown = itertools.count(1)
        self._init_store()

    # -- connection

    def _open(self) -> sqlite3.Connection:
        # created (or narrowed to) mode 0600 before SQLite opens it: its -wal and -shm files
        # take the database's mode, and all of them hold command lines and history
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))
        for name in (self.path, f"{self.path}-wal", f"{self.path}-shm", f"{self.path}-journal"):
            with contextlib.suppress(FileNotFoundError):
                mode = os.stat(name).st_mode & 0o777
                if mode & 0o077:
                    os.chmod(name, mode & 0o700)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            deadline = time.monotonic() + BUSY_TIMEOUT
            while True:  # switching to WAL can be refused at once, without the busy handler
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError as err:
                    if "locked" not in str(err) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
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

    def _newer_schema(self, version: int) -> StateStoreError:
        return StateStoreError(f"{self.path}: schema version {version} is newer than this "
                               f"procsync understands ({SCHEMA_VERSION})")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise self._newer_schema(version)
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
        """The writer's open connection (writer lock held), reopened after a fork or a file swap."""
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

    def _recover(self, problem: str) -> sqlite3.Connection:
        """Move a corrupted database aside (under the lock file) and start a fresh one."""
        with exclusive_lock(self.lock_path):
            try:
                return self._open()  # another process may have replaced it already
            except (sqlite3.DatabaseError, _Corrupt) as err:
                if not _is_corruption(err):
                    raise
            aside = reserve_aside(self.path)
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
            log.warning("state database %s is corrupted (%s); moved it aside to %s and started "
                        "an empty one", self.path, problem, aside)
            return self._open()

    def _run(self, op: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `op` with the writer's connection; a corruption found midway is recovered, then
        retried."""
        with self._writer():
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
        self._committing()  # from here on the database may change under the snapshot
        try:
            yield
            with self.write_time.time():
                conn.execute("COMMIT")  # may fail too (a full disk): then roll back as well
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        if conn.total_changes != changes:
            self._commits += 1

    def close(self) -> None:
        with self._writer():
            conn, self._conn = self._conn, None
            if conn is not None and self._conn_pid == os.getpid():
                conn.close()
        with self._snap_lock:
            idle, self._readers = self._readers, []
            probe, self._probe = self._probe, None
        for reader in [*idle, *([probe] if probe else [])]:
            if reader.pid == os.getpid():
                reader.conn.close()

    # -- connections for reads (no writer lock)

    def _open_reader(self, ino: int, number: int = 0) -> _Conn:
        """A read-only connection to the existing database (`ino` is its inode, taken before)."""
        uri = f"file:{urllib.parse.quote(str(self.path))}?mode=rw"  # never creates the file
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute("PRAGMA query_only = 1")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except BaseException:
            conn.close()
            raise
        if version > SCHEMA_VERSION:
            conn.close()
            raise self._newer_schema(version)
        return _Conn(conn, ino, number)

    def _read(self, op: Callable[[sqlite3.Connection], list[Any]]) -> list[Any]:
        """`op` on an idle read connection (opened if none): [] if the file or table is missing.

        Any other SQLite error raises NeedsWriter: the read is redone by the
        writer, which recovers a corrupted file.
        """
        try:
            ino = os.stat(self.path).st_ino
        except FileNotFoundError:
            return []
        except OSError as err:
            raise StateStoreError(f"cannot stat {self.path}: {err.strerror}") from err
        stale: list[_Conn] = []
        reader = None
        with self._snap_lock:
            while self._readers and reader is None:
                candidate = self._readers.pop()
                if candidate.fits(ino):
                    reader = candidate
                else:
                    stale.append(candidate)
        for old in stale:
            if old.pid == os.getpid():
                old.conn.close()
        try:
            if reader is None:
                reader = self._open_reader(ino)
            result = op(reader.conn)
        except sqlite3.Error as err:
            if reader is not None:
                reader.conn.close()
            if isinstance(err, sqlite3.OperationalError) and "no such table" in str(err):
                return []  # a database being created: nothing committed yet
            raise NeedsWriter(str(err)) from err
        with self._snap_lock:
            kept = len(self._readers) < READERS_KEPT
            if kept:
                self._readers.append(reader)
        if not kept:
            reader.conn.close()
        return result

    def _token(self) -> Any:
        """(inode, probe, data_version): changes whenever any connection commits; None if unknown."""
        try:
            ino = os.stat(self.path).st_ino
        except FileNotFoundError:
            return ("missing",)
        except OSError:
            return None
        with self._snap_lock:
            probe = self._probe
            if probe is not None and probe.fits(ino):
                try:  # reads the WAL index; never waits for a writer (busy_timeout 0)
                    return (ino, probe.number, probe.conn.execute(
                        "PRAGMA data_version").fetchone()[0])
                except sqlite3.Error:
                    return None
        try:
            fresh = self._open_reader(ino, next(self._probes))
            fresh.conn.execute("PRAGMA busy_timeout = 0")
        except sqlite3.Error:
            return None
        with self._snap_lock:
            old, self._probe = self._probe, fresh
        if old is not None and old.pid == os.getpid():
            old.conn.close()
        return self._token()

    # -- bad rows

    def _reject(self, conn: sqlite3.Connection, bad: list[tuple[tuple[Any, ...], str]]) -> None:
        """Delete rows that fail validation, keeping a copy in `<db>.corrupt-<time>` (JSON)."""
        aside = reserve_aside(self.path)
        rows = [dict(zip(_COLUMNS.split(", "), row, strict=True)) | {"problem": problem}
                for row, problem in bad]
        aside.write_text(json.dumps(rows, indent=2, default=repr) + "\n")
        conn.executemany("DELETE FROM processes WHERE id IS ?", [(row[0],) for row, _ in bad])
        log.warning("state database %s had %d bad row(s) (%s); moved them aside to %s",
                    self.path, len(bad), summary([p for _, p in bad]), aside)

    @staticmethod
    def _parse_row(row: tuple[Any, ...]) -> tuple[StoredProcessInfo | None, str | None]:
        try:
            return _row_to_info(row), None
        except ValueError as err:
            return None, f"row {show(row[0])}: {err}"

    @classmethod
    def _parse_rows(cls, rows: list[Any]) -> tuple[dict[str, StoredProcessInfo],
                                                   list[tuple[tuple[Any, ...], str]]]:
        entries, bad = {}, []
        for row in rows:
            info, problem = cls._parse_row(row)
            if info is None:
                bad.append((row, problem or "invalid"))
            else:
                entries[info.id] = info
        return entries, bad

    # -- reads

    def _writer_token(self, conn: sqlite3.Connection) -> Any:
        return (self._generation, conn.execute("PRAGMA data_version").fetchone()[0],
                self._commits)

    def _committed(self) -> dict[str, StoredProcessInfo]:
        """Every committed entry, read by the writer (writer lock held); bad rows moved aside."""
        def op(conn: sqlite3.Connection) -> dict[str, StoredProcessInfo]:
            token = self._writer_token(conn)
            if self._cache is not None and self._cache[0] == token:
                return self._cache[1]
            rows = conn.execute(f"SELECT {_COLUMNS} FROM processes ORDER BY rowid").fetchall()
            entries, bad = self._parse_rows(rows)
            if bad:
                with self._transaction(conn):
                    self._reject(conn, bad)
                token = self._writer_token(conn)
            self._cache = (token, entries)
            return entries

        result: dict[str, StoredProcessInfo] = self._run(op)
        return result

    def _writer_snapshot(self) -> Snapshot:
        # What the writer committed is not read back: the probe's data_version has moved, so the
        # next read re-reads the rows. The last snapshot's rows still serve when nothing committed.
        old = self._snapshot.entries
        snap = Snapshot(pending=self._pending.copy())
        if old.data is None:
            return snap
        return Snapshot(snap.doc("entries", old.token, old.data), snap.history, snap.pending)

    def _read_entries(self, snap: Snapshot) -> tuple[Mapping[str, StoredProcessInfo],
                                                      Snapshot | None]:
        token = self._token()
        part = snap.entries
        if token is not None and part.data is not None and part.token == token:
            return part.view or {}, None
        rows = self._read(lambda conn: conn.execute(
            f"SELECT {_COLUMNS} FROM processes ORDER BY rowid").fetchall())
        entries, bad = self._parse_rows(rows)
        if bad and self._try_reject():
            raise ReadAgain  # the writer moved the bad rows aside
        fresh = snap.doc("entries", token, entries)
        if token is None or bad:
            return fresh.view or {}, None
        return fresh.view or {}, Snapshot(fresh, snap.history, snap.pending)

    def _try_reject(self) -> bool:
        """Move bad rows aside now if no writer is busy; False if one is (a later read does it)."""
        with self._writer(blocking=False) as got:
            if got:
                self._committed()
            return got

    def _entries(self) -> Mapping[str, StoredProcessInfo]:
        return self._lockfree(self._read_entries,
                              lambda: self._pending.apply_entries(self._committed()))

    def version(self) -> Any:
        """The commit token; also retries, once a second, the writes that failed before."""
        if self._retry_due():
            with self._writer(blocking=False) as got:
                if got:
                    self.flush()
        token = self._token()
        return token if token is not None else ("unknown", next(self._unknown))

    # -- writes

    def _write_pending(self, conn: sqlite3.Connection) -> None:
        """Write the changes that failed before (inside the caller's transaction)."""
        pending = self._pending
        if not pending:
            return
        if pending.entries_cleared:
            conn.execute("DELETE FROM processes")
        for id, info in pending.entries.items():
            self._put(conn, id, info)
        if pending.all_history_cleared:
            conn.execute("DELETE FROM history")
        for id in pending.history_cleared:
            conn.execute("DELETE FROM history WHERE id = ?", (id,))
        for entry in pending.events:
            self._insert_event(conn, entry)

    def _write(self, change: Callable[[sqlite3.Connection], Any],
               keep: Callable[[], bool]) -> Any:
        """Run `change` in one transaction after the writes that failed before.

        If the transaction fails, `keep()` keeps the change in memory (False
        when it cannot) and StateStoreError says what went wrong.
        """
        with self._writer():
            def op(conn: sqlite3.Connection) -> Any:
                with self._transaction(conn):
                    self._write_pending(conn)
                    return change(conn)

            try:
                result = self._run(op)
            except StateStoreError as err:
                if not keep():
                    raise
                raise self._write_failed(f"state database {self.path}", err) from err
            if self._pending:
                self._pending = PendingWrites()
                self._cache = None
                self._write_resumed()
            return result

    def flush(self) -> bool:
        with self._writer():
            if not self._pending:
                return True
            try:
                self._write(lambda conn: None, lambda: True)
            except StateStoreError:
                return False
            return True

    def _old_row(self, conn: sqlite3.Connection, id: str) -> StoredProcessInfo | None:
        """The stored entry of `id` (inside the caller's transaction); a bad row is moved aside."""
        row = conn.execute(f"SELECT {_COLUMNS} FROM processes WHERE id = ?", (id,)).fetchone()
        if row is None:
            return None
        old, problem = self._parse_row(row)
        if old is None:
            self._reject(conn, [(row, problem or "invalid")])
        return old

    def update_process(self, id: str, fn: Updater) -> StoredProcessInfo | None:
        """See `StateStore.update_process`. When the write fails, StateStoreError is raised and
        the change is kept in memory (reads show it) until a later write succeeds."""
        check_id(id)
        computed: list[StoredProcessInfo | None] = []

        def change(conn: sqlite3.Connection) -> StoredProcessInfo | None:
            old = self._old_row(conn, id)
            new = self._checked(id, old, fn(old))
            if new is old:
                return old
            computed.append(new)
            self._put(conn, id, new)
            return new

        def keep() -> bool:
            if not computed:  # the database could not be reached before fn ran
                try:
                    old = self._entries().get(id)
                except StateStoreError:
                    return False
                new = self._checked(id, old, fn(old))
                if new is old:
                    return False
                computed.append(new)
            self._pending.set_entry(id, computed[-1])
            return True

        with self._writer():
            result: StoredProcessInfo | None = self._write(change, keep)
            return result

    def write_batch(self, updates: Mapping[str, Updater],
                    events: Sequence[EventSpec] = ()) -> dict[str, StoredProcessInfo | None]:
        """See `StateStore.write_batch`: one transaction for every change and event."""
        entries = self._checked_batch(updates, events)
        errors: list[Exception] = []
        done: list[tuple[dict[str, StoredProcessInfo | None],
                         dict[str, StoredProcessInfo | None], list[Exception]]] = []

        def change(conn: sqlite3.Connection) -> None:
            olds: dict[str, StoredProcessInfo] = {}
            for id in updates:
                old = self._old_row(conn, id)
                if old is not None:
                    olds[id] = old
            failed: list[Exception] = []
            results, changed = self._run_updaters(olds, updates, failed)
            done.append((results, changed, failed))  # all computed before anything is written
            for id, new in changed.items():
                self._put(conn, id, new)
            for entry in entries:
                self._insert_event(conn, entry)

        def keep() -> bool:
            if not done:  # the database could not be reached before the updaters ran
                try:
                    current = self._entries()
                except StateStoreError:
                    return False  # as update_process: nothing to apply them to, nothing kept
                failed: list[Exception] = []
                done.append((*self._run_updaters(current, updates, failed), failed))
            for id, new in done[-1][1].items():
                self._pending.set_entry(id, new)
            for entry in entries:
                self._pending.add_event(entry)
            return True

        with self._writer():
            try:
                self._write(change, keep)
            except StateStoreError as err:
                errors.append(err)
        errors.extend(done[-1][2] if done else [])
        self._batch_done(errors)
        return done[-1][0] if done else {}

    def clear(self) -> None:
        def keep() -> bool:
            self._pending.clear_entries()
            return True

        self._write(lambda conn: conn.execute("DELETE FROM processes"), keep)

    @staticmethod
    def _put(conn: sqlite3.Connection, id: str, info: StoredProcessInfo | None) -> None:
        """Write the row of `id` (delete it when `info` is None), inside the caller's transaction."""
        if info is None:
            conn.execute("DELETE FROM processes WHERE id = ?", (id,))
        else:
            conn.execute(f"INSERT OR REPLACE INTO processes ({_COLUMNS}) VALUES "
                         f"({', '.join('?' * 14)})", _info_to_row(info))

    @staticmethod
    def _insert_event(conn: sqlite3.Connection, entry: HistoryEntry) -> None:
        conn.execute(
            "INSERT INTO history (id, event, at, pid, exit_code, reason, log_tail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (entry.id, entry.event, format_time(entry.at), entry.pid, entry.exit_code,
             entry.reason, json.dumps(entry.log_tail)))
        conn.execute(
            "DELETE FROM history WHERE id = ? AND seq <= (SELECT seq FROM history "
            "WHERE id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
            (entry.id, entry.id, HISTORY_PER_ID))

    def record_event(self, id: str, event: str, *, pid: int | None = None,
                     exit_code: int | None = None, reason: str | None = None,
                     log_tail: list[str] | None = None, at: datetime | None = None) -> HistoryEntry:
        entry = new_event(id, event, pid, exit_code, reason, log_tail, at)

        def keep() -> bool:
            self._pending.add_event(entry)
            return True

        self._write(lambda conn: self._insert_event(conn, entry), keep)
        return entry

    def _history_rows(self, id: str, limit: int,
                      run: Callable[[Callable[[sqlite3.Connection], list[Any]]], list[Any]],
                      pending: PendingWrites) -> list[HistoryEntry]:
        """The last `limit` events of `id`: rows read with `run`, and `pending`'s, newest first."""
        def op(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(
                "SELECT event, at, pid, exit_code, reason, log_tail FROM history "
                "WHERE id = ? ORDER BY seq DESC LIMIT ?", (id, limit)).fetchall()

        cleared = pending.all_history_cleared or id in pending.history_cleared
        rows = [] if cleared else run(op)
        out = [e for e in pending.events if e.id == id]
        for event, at, pid, exit_code, reason, tail in rows:
            try:
                out.append(HistoryEntry(id, event, parse_time("at", at), pid, exit_code, reason,
                                        json.loads(tail) if isinstance(tail, str) else []))
            except ValueError as err:
                log.warning("state database %s: skipped a bad history row of %r: %s",
                            self.path, id, err)
        out.sort(key=lambda e: e.at, reverse=True)  # time order, even for an earlier moment recorded late
        return out[:limit]

    def history(self, id: str, limit: int = 50) -> list[HistoryEntry]:
        check_limit(limit)
        return self._lockfree(
            lambda snap: (self._history_rows(id, limit, self._read, snap.pending), None),
            lambda: self._history_rows(id, limit, self._run, self._pending))

    def clear_history(self, id: str | None = None) -> None:
        def change(conn: sqlite3.Connection) -> None:
            if id is None:
                conn.execute("DELETE FROM history")
            else:
                conn.execute("DELETE FROM history WHERE id = ?", (id,))

        def keep() -> bool:
            self._pending.clear_history(id)
            return True

        self._write(change, keep)


__all__ = ["BUSY_TIMEOUT", "MIGRATIONS", "SCHEMA_VERSION", "SQLiteStateStore"]
