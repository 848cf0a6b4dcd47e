"""The state stores' write_batch, and reads that never wait behind a write; both stores."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from helpers import wait_until

import procsync.store.jsonfile
from procsync.errors import StateStoreError
from procsync.store import EventSpec, ProcessStateStore, StateStore, StoredProcessInfo, open_store

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def make(id: str = "web", pid: int = 4242, **changes) -> StoredProcessInfo:
    values = dict(id=id, pid=pid, command="python -m http.server", cwd="/srv/app",
                  start_time=T0, status="running", ports=(8000,), create_time=1767323045.67)
    values.update(changes)
    return StoredProcessInfo(**values)


@pytest.fixture(params=["json", "sqlite"])
def state_path(request, tmp_path):
    return tmp_path / ("state.json" if request.param == "json" else "state.db")


@pytest.fixture
def stores(state_path):
    """open() -> a new store on the state path; every store opened is closed afterwards."""
    opened = []

    def open_one():
        store = open_store(state_path)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


def burst(n: int = 100):
    """n updates (each id created with its index as restarts) and n events, one per id."""
    updates = {f"s{i:03d}": (lambda old, i=i: make(f"s{i:03d}", pid=1000 + i, restarts=i))
               for i in range(n)}
    events = [EventSpec(f"s{i:03d}", "started", pid=1000 + i, at=T0 + timedelta(seconds=i))
              for i in range(n)]
    return updates, events


def check_burst(store, n: int = 100) -> None:
    entries = store.load()
    assert sorted(entries) == [f"s{i:03d}" for i in range(n)]
    assert all(entries[f"s{i:03d}"].restarts == i for i in range(n))
    for i in range(n):
        (event,) = store.history(f"s{i:03d}")
        assert (event.event, event.pid, event.at) == ("started", 1000 + i, T0 + timedelta(seconds=i))


# ---------------------------------------------------------------- write_batch


def test_json_batch_of_100_updates_and_100_events_is_two_file_writes(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    store = ProcessStateStore(path)
    store.save_process(make("s000", restarts=99))  # an old entry the batch replaces
    writes, fsyncs = [], []
    real_write, real_fsync = procsync.store.jsonfile.atomic_write, os.fsync
    monkeypatch.setattr(procsync.store.jsonfile, "atomic_write",
                        lambda p, data: (writes.append(p.name), real_write(p, data))[1])
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    updates, events = burst()
    results = store.write_batch(updates, events)
    assert sorted(writes) == ["state.json", "state.json.history.json"]
    assert len(fsyncs) == 4, "each file: its own fsync and its directory's"
    assert results["s007"].restarts == 7 and results["s007"].updated_at is not None
    check_burst(store)
    check_burst(ProcessStateStore(path))  # what is on disk, through another instance


def test_sqlite_batch_of_100_updates_and_100_events_is_one_transaction(tmp_path):
    path = tmp_path / "state.db"
    with open_store(path) as store:
        store.save_process(make("s000", restarts=99))
        statements = []
        store._connection().set_trace_callback(statements.append)
        updates, events = burst()
        store.write_batch(updates, events)
        store._connection().set_trace_callback(None)
        assert [s for s in statements if s.split()[0] in ("BEGIN", "COMMIT", "ROLLBACK")] == [
            "BEGIN IMMEDIATE", "COMMIT"]
        check_burst(store)
    with open_store(path) as other:
        check_burst(other)


def test_batch_returns_what_update_process_would(stores):
    store = stores()
    kept = store.save_process(make("kept"))
    results = store.write_batch({"kept": lambda old: old, "gone": lambda old: None,
                                 "new": lambda old: make("new")})
    assert results["kept"] == kept, "an updater returning the old entry writes nothing"
    assert results["gone"] is None
    assert results["new"].id == "new" and results["new"].updated_at is not None
    assert sorted(store.load()) == ["kept", "new"]
    assert store.write_batch({}, []) == {}


def test_batch_updater_that_raises_leaves_its_id_and_writes_the_rest(stores):
    store = stores()
    store.save_process(make("bad", restarts=1))

    def boom(old):
        raise RuntimeError("boom")

    updates = {"a": lambda old: make("a"), "bad": boom, "b": lambda old: make("b"),
               "wrong": lambda old: make("other")}
    with pytest.raises(RuntimeError, match="boom"):
        store.write_batch(updates, [EventSpec("a", "started", pid=5)])
    other = stores()
    assert sorted(other.load()) == ["a", "b", "bad"]
    assert other.get_process("bad").restarts == 1, "the id whose updater raised is unchanged"
    assert [e.event for e in other.history("a")] == ["started"]


def test_batch_with_a_bad_event_or_id_writes_nothing(stores):
    store = stores()
    before = store.version()
    with pytest.raises(ValueError, match="event: expected one of"):
        store.write_batch({"a": lambda old: make("a")}, [EventSpec("a", "exploded")])
    with pytest.raises(ValueError, match="id: expected a non-empty string"):
        store.write_batch({"": lambda old: make("a")}, [])
    assert store.load() == {} and store.history("a") == []
    assert store.version() == before


def test_json_batch_that_cannot_be_written_is_kept_and_flushed_later(tmp_path, monkeypatch):
    store = ProcessStateStore(tmp_path / "state.json")
    real_write = procsync.store.jsonfile.atomic_write

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(procsync.store.jsonfile, "atomic_write", full)
    updates, events = burst(5)
    with pytest.raises(StateStoreError, match="No space left on device"):
        store.write_batch(updates, events)
    check_burst(store, 5)  # reads show the changes kept in memory
    assert store.pending_writes == 10
    monkeypatch.setattr(procsync.store.jsonfile, "atomic_write", real_write)
    assert store.flush() and store.pending_writes == 0
    check_burst(ProcessStateStore(tmp_path / "state.json"), 5)


def test_the_base_fallback_applies_the_same_changes(stores):
    store = stores()
    updates, events = burst(5)
    results = StateStore.write_batch(store, updates, events)  # one write per change
    assert sorted(results) == sorted(updates)
    check_burst(stores(), 5)


def test_event_spec_takes_record_events_arguments():
    spec = EventSpec("web", "crashed", pid=7, exit_code=-9, reason="killed --token=abc",
                     log_tail=["x" * 600], at=T0)
    entry = spec.entry()
    assert (entry.id, entry.event, entry.pid, entry.exit_code, entry.at) == (
        "web", "crashed", 7, -9, T0)
    assert "abc" not in entry.reason and len(entry.log_tail[0]) == 500
    with pytest.raises(AttributeError):
        spec.pid = 8  # frozen


# ---------------------------------------------------------------- reads never wait for a write


def writer_lock_held(store) -> bool:
    """Whether some other thread holds the store's writer lock."""
    if store._lock.acquire(blocking=False):
        store._lock.release()
        return False
    return True


@contextlib.contextmanager
def other_writer_holding(store):
    """Hold the store's cross-process write lock from elsewhere (another open file or connection)."""
    if isinstance(store, ProcessStateStore):
        fd = os.open(store.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
    else:
        conn = sqlite3.connect(store.path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            finally:
                conn.execute("ROLLBACK")
        finally:
            conn.close()


def test_reads_complete_while_a_write_waits_for_the_lock(stores):
    store, other_instance = stores(), stores()
    store.save_process(make())
    store.record_event("web", "started", pid=4242, at=T0)
    other_instance.save_process(make("api", pid=7))  # read back only by re-reading the file
    version = store.version()
    results, errors = {}, []
    got_lock = threading.Event()

    def bump(old):
        got_lock.set()
        return replace(old, restarts=7)

    def write():
        try:
            store.update_process("web", bump)
        except Exception as err:  # reported below
            errors.append(err)

    def read():
        results["get"] = store.get_process("web")
        results["all"] = sorted(info.id for info in store.get_all_processes())
        results["load"] = sorted(store.load())
        results["version"] = store.version()
        results["history"] = [e.event for e in store.history("web")]

    with other_writer_holding(store):
        writer = threading.Thread(target=write, name="test-writer", daemon=True)
        writer.start()
        wait_until(lambda: writer_lock_held(store), 10, "the writer to take the writer lock")
        reader = threading.Thread(target=read, name="test-reader", daemon=True)
        reader.start()
        reader.join(timeout=8)
        assert not reader.is_alive(), "a read waited behind the blocked write"
        assert writer.is_alive() and not got_lock.is_set(), "the write was still waiting"
    assert results.pop("get").restarts == 0, "reads show the last committed state"
    assert results == {"all": ["api", "web"], "load": ["api", "web"], "version": version,
                       "history": ["started"]}
    writer.join(timeout=15)
    assert not writer.is_alive() and not errors
    assert store.get_process("web").restarts == 7, "once the write returns, reads show it"
    assert store.version() != version
    assert other_instance.get_process("web").restarts == 7


def test_reads_show_writes_of_other_threads_at_once(stores):
    """Read-your-writes across threads: each write is visible as soon as it returns."""
    store = stores()
    store.save_process(make())
    for n in range(1, 21):
        done = threading.Event()

        def write(n=n, done=done):
            store.update_process("web", lambda old: replace(old, restarts=n))
            store.record_event("web", "restarting", at=T0 + timedelta(seconds=n))
            done.set()

        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        thread.join(timeout=10)
        assert done.is_set()
        assert store.get_process("web").restarts == n
        assert store.history("web", limit=1)[0].at == T0 + timedelta(seconds=n)
