"""The state stores: JSON file and SQLite, one suite run against both."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from helpers import PY, wait_until

from procsync.errors import StateStoreError
from procsync.records import ProcessInfo
from procsync.store import (
    HISTORY_PER_ID,
    LOG_TAIL_LINES,
    SCHEMA_VERSION,
    HistoryEntry,
    ProcessStateStore,
    SQLiteStateStore,
    StoredProcessInfo,
    open_store,
)

SEED = {"server-id": {"id": "server-id", "pid": 12345, "command": "node server.js",
                      "cwd": "/path/to/app", "startTime": "2025-11-04T12:00:00.000Z",
                      "status": "running", "ports": [3000, 3001]}}


def make(id: str = "web", pid: int = 4242, **changes) -> StoredProcessInfo:
    values = dict(id=id, pid=pid, command="python -m http.server", cwd="/srv/app",
                  start_time=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), status="running",
                  ports=(8000,), create_time=1767323045.67)
    values.update(changes)
    return StoredProcessInfo(**values)


def same(a: StoredProcessInfo | None, b: StoredProcessInfo | None) -> bool:
    """Equal apart from updated_at, which the store stamps on every write."""
    assert a is not None and b is not None
    return replace(a, updated_at=None) == replace(b, updated_at=None)


@pytest.fixture(params=["json", "sqlite"])
def state_path(request, tmp_path):
    return tmp_path / ("state.json" if request.param == "json" else "state.db")


@pytest.fixture
def stores(state_path):
    """open() -> a new store on the state path; every store opened is closed afterwards."""
    opened = []

    def open_one(path=None):
        store = open_store(path or state_path)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(stores):
    return stores()


def run_child(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([PY, "-c", code, *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def reap(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    if proc.stderr:
        proc.stderr.close()


# ---------------------------------------------------------------- basics, both stores


def test_open_store_chooses_by_suffix(tmp_path):
    for name in ("a.db", "a.sqlite", "a.SQLITE3"):
        with open_store(tmp_path / name) as store:
            assert isinstance(store, SQLiteStateStore), name
    for name in ("a.json", "process-state", "a.db.json"):
        assert isinstance(open_store(tmp_path / name), ProcessStateStore), name


def test_missing_file_is_an_empty_store(store, state_path):
    assert store.load() == {}
    assert store.get_process("web") is None
    assert store.get_all_processes() == []
    assert store.history("web") == []
    if isinstance(store, ProcessStateStore):
        assert not state_path.exists(), "reading must not create the state file"


def test_an_entrys_updated_at_only_goes_forward_even_when_the_clock_steps_back(stores, monkeypatch):
    # instances order what they read of one entry by it: a clock set back must not make a
    # newer write look older (the other instances would ignore it)
    import procsync.store.base as base

    first = stores()
    saved = first.save_process(make())
    monkeypatch.setattr(base, "_now", lambda: saved.updated_at - timedelta(hours=1))
    again = first.update_process("web", lambda old: replace(old, status="stopping"))
    assert again.updated_at > saved.updated_at
    third = first.update_process("web", lambda old: replace(old, status="stopped"))
    assert third.updated_at > again.updated_at
    assert stores().get_process("web").updated_at == third.updated_at  # kept by the file


def test_save_then_read_back_everywhere(stores):
    first = stores()
    info = make()
    saved = first.save_process(info)
    assert saved.updated_at is not None and same(saved, info)
    assert first.get_process("web") == saved
    assert first.load() == {"web": saved}
    assert first.get_all_processes() == [saved]
    second = stores()  # a new instance reads what the first committed
    assert second.load() == {"web": saved}


def test_save_accepts_process_info_and_keeps_restarts_and_owner(store):
    store.save_process(make(restarts=3, owner="host:1"))
    info = ProcessInfo(id="web", pid=999, pgid=999, command="serve", cwd=None,
                       start_time=datetime.now(UTC), create_time=5.0, ports=(9000,),
                       log_file="/tmp/web.log")
    saved = store.save_process(info)
    assert (saved.pid, saved.pgid, saved.command, saved.ports, saved.log_file) == (
        999, 999, "serve", (9000,), "/tmp/web.log")
    assert (saved.restarts, saved.owner) == (3, "host:1")
    assert store.get_process("web") == saved
    assert same(StoredProcessInfo.from_process_info(info, restarts=3, owner="host:1"), saved)


def test_remove_and_clear(store):
    for name in ("a", "b", "c"):
        store.save_process(make(name))
    store.remove_process("b")
    store.remove_process("never-there")
    assert sorted(store.load()) == ["a", "c"]
    store.clear()
    assert store.load() == {}


def test_update_process_creates_changes_and_removes(store):
    created = store.update_process("web", lambda old: old or make())
    assert same(created, make())
    bumped = store.update_process("web", lambda old: replace(old, restarts=old.restarts + 1))
    assert bumped.restarts == 1 and store.get_process("web").restarts == 1
    assert store.update_process("web", lambda old: None) is None
    assert store.get_process("web") is None


def test_update_process_that_raises_writes_nothing(store):
    store.save_process(make())
    before = store.version()

    def boom(old):
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        store.update_process("web", boom)
    assert same(store.get_process("web"), make())
    assert store.update_process("web", lambda old: old) == store.get_process("web")
    assert store.version() == before


def test_update_process_rejects_a_bad_result(store):
    with pytest.raises(ValueError, match="'other' for 'web'"):
        store.update_process("web", lambda old: make("other"))
    with pytest.raises(TypeError, match="dict"):
        store.update_process("web", lambda old: {"id": "web"})
    with pytest.raises(TypeError, match="StoredProcessInfo or ProcessInfo"):
        store.save_process({"id": "web"})
    assert store.load() == {}


@pytest.mark.parametrize("field, value, words", [
    ("pid", 0, "pid: expected a positive integer"),
    ("pid", True, "pid: expected a positive integer"),
    ("ports", (80, 70000), "ports: expected a list of integers in 1..65535"),
    ("start_time", datetime(2026, 1, 1), "start_time: expected a timezone-aware datetime"),
    ("id", "", "id: expected a non-empty string"),
    ("create_time", float("nan"), "create_time"),
    ("restarts", -1, "restarts"),
    ("status", "", "status"),
])
def test_bad_values_name_the_field(field, value, words):
    with pytest.raises(ValueError, match=words):
        make(**{field: value})


def test_version_changes_when_another_instance_commits(stores):
    mine, theirs = stores(), stores()
    v0 = mine.version()
    assert mine.version() == v0, "no commit, no change"
    theirs.save_process(make())
    v1 = mine.version()
    assert v1 != v0
    assert mine.get_process("web") is not None
    theirs.save_process(make(pid=4243))  # same size entry: still seen
    assert mine.version() != v1
    assert mine.get_process("web").pid == 4243


def test_threads_lose_no_update(stores):
    """Eight threads, half sharing one instance, half with their own, each adding 25."""
    shared = stores()
    shared.save_process(make())
    per_thread = [shared] * 4 + [stores() for _ in range(4)]
    errors = []

    def work(store):
        try:
            for _ in range(25):
                store.update_process("web", lambda old: replace(old, restarts=old.restarts + 1))
        except Exception as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(s,)) for s in per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert stores().get_process("web").restarts == 200


TWO_WRITERS = r"""
import pathlib, sys, time
from datetime import datetime, timezone
from procsync.store import StoredProcessInfo, open_store
store = open_store(sys.argv[1])
prefix, go = sys.argv[2], pathlib.Path(sys.argv[3])
pathlib.Path(sys.argv[4]).write_text("ready")
deadline = time.monotonic() + 20
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.001)
for i in range(50):
    store.save_process(StoredProcessInfo(f"{prefix}-{i}", 1000 + i, "cmd", None,
                                         datetime.now(timezone.utc), "running", (i + 1,)))
"""


def test_two_processes_saving_different_ids_lose_nothing(stores, state_path, tmp_path):
    go = tmp_path / "go"
    procs = []
    try:
        for prefix in ("left", "right"):
            ready = tmp_path / f"ready-{prefix}"
            procs.append(run_child(TWO_WRITERS, state_path, prefix, go, ready))
            wait_until(ready.exists, 10, f"writer {prefix} ready")
        go.write_text("go")
        for proc in procs:
            assert proc.wait(timeout=30) == 0, proc.stderr.read().decode()
    finally:
        for proc in procs:
            reap(proc)
    ids = set(stores().load())
    assert ids == {f"{p}-{i}" for p in ("left", "right") for i in range(50)}


KILLED_WRITER = r"""
import os, pathlib, sys, time
from datetime import datetime, timezone
from procsync.store import StoredProcessInfo, open_store
real_fsync = os.fsync
def slow_fsync(fd):  # a slower disk: kills land inside the write more often
    real_fsync(fd)
    time.sleep(0.002)
os.fsync = slow_fsync
store = open_store(sys.argv[1])
ready = pathlib.Path(sys.argv[2])
last = store.get_process("counter")
n = last.pid if last else 0
tail = ["a log line %03d %s" % (i, "x" * 60) for i in range(20)]
while True:
    n += 1
    store.save_process(StoredProcessInfo("counter", n, "y" * 200, "/", datetime.now(timezone.utc),
                                         "running", (n % 65535 + 1,), create_time=float(n)))
    store.record_event("counter", "restarting", pid=n, log_tail=tail)
    if not ready.exists():
        ready.write_text(str(n))
"""


def test_sigkill_at_random_moments_never_tears_the_file(stores, state_path, tmp_path):
    """30 writers killed at random instants: the file always parses and only moves forward.

    The writer's fsync is slowed (a slower disk) so that many kills land while a
    temp file is half written; at least one must, or the test proved nothing.
    """
    rng = random.Random(20261126)
    filler = stores()
    for i in range(300):  # a big file makes each write long enough to be hit mid-way
        filler.save_process(make(f"filler-{i:03d}", 1000 + i, command="z" * 100))
    filler.close()
    last = 0
    hit_mid_write = 0
    for round_no in range(30):
        ready = tmp_path / f"ready-{round_no}"
        proc = run_child(KILLED_WRITER, state_path, ready)
        try:
            wait_until(lambda r=ready, p=proc: r.exists() or p.poll() is not None, 10,
                       "writer ready")
            assert proc.poll() is None, proc.stderr.read().decode()
            threading.Event().wait(rng.uniform(0.0, 0.03))  # the random instant of the kill
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
        finally:
            reap(proc)
        temps = [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
        hit_mid_write += bool(temps)
        if isinstance(filler, ProcessStateStore):  # strict parse of the raw files
            doc = json.loads(state_path.read_bytes())
            for key, value in doc.items():
                StoredProcessInfo.from_state_dict(value, key)
            json.loads(state_path.with_name("state.json.history.json").read_bytes())
        else:
            with sqlite3.connect(state_path) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            conn.close()
        reader = stores()
        entries = reader.load()
        assert len(entries) == 301
        assert entries["counter"].pid >= last
        last = entries["counter"].pid
        assert reader.history("counter", limit=1)[0].pid in (last, last - 1, last + 1)
        reader.close()
    assert not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name], "stale temps cleaned on load"
    assert last >= 30
    if isinstance(filler, ProcessStateStore):
        assert hit_mid_write >= 3, f"only {hit_mid_write} kills landed during a write"


# ---------------------------------------------------------------- history, both stores


def test_history_newest_first_limited_and_bounded(stores):
    store = stores()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(HISTORY_PER_ID + 10):
        store.record_event("web", "restarting", pid=n + 1, at=t0 + timedelta(seconds=n))
    entry = store.record_event("web", "crashed", pid=7, exit_code=-9, reason="killed",
                               log_tail=[f"line {i}\n" for i in range(50)])
    store.record_event("api", "started", pid=9)
    assert len(entry.log_tail) == LOG_TAIL_LINES and entry.log_tail[-1] == "line 49"
    latest = store.history("web", limit=3)
    assert [e.event for e in latest] == ["crashed", "restarting", "restarting"]
    assert latest[1].pid == HISTORY_PER_ID + 10
    assert latest[0] == entry
    everything = stores().history("web", limit=10_000)  # another instance sees it all
    assert len(everything) == HISTORY_PER_ID
    assert everything[-1].pid == 12, "the oldest events were dropped"
    assert len(store.history("web")) == 50
    assert [e.event for e in store.history("api")] == ["started"]
    assert entry.to_dict() == {"id": "web", "event": "crashed", "at": entry.to_dict()["at"],
                               "pid": 7, "exit_code": -9, "reason": "killed",
                               "log_tail": entry.log_tail}
    store.clear_history("web")
    assert store.history("web") == [] and len(store.history("api")) == 1


def test_history_rejects_bad_input(store):
    with pytest.raises(ValueError, match="event: expected one of"):
        store.record_event("web", "exploded")
    with pytest.raises(ValueError, match="limit"):
        store.history("web", limit=0)
    with pytest.raises(ValueError, match="pid"):
        store.record_event("web", "started", pid=-3)
    with pytest.raises(ValueError, match="log_tail"):
        store.record_event("web", "started", log_tail=[1, 2])
    assert store.history("web") == []


def test_history_keeps_times_and_survives_process_removal(store):
    at = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=timezone(timedelta(hours=2)))
    store.save_process(make())
    store.record_event("web", "stopped", pid=4242, exit_code=0, at=at)
    store.remove_process("web")
    (entry,) = store.history("web")
    assert entry == HistoryEntry("web", "stopped", at, 4242, 0, None, [])


# ---------------------------------------------------------------- JSON file format


@pytest.fixture
def json_path(tmp_path):
    return tmp_path / "process-state.json"


def test_a_seed_shaped_file_loads(json_path):
    json_path.write_text(json.dumps(SEED))
    info = ProcessStateStore(json_path).get_process("server-id")
    assert info == StoredProcessInfo(
        "server-id", 12345, "node server.js", "/path/to/app",
        datetime(2025, 11, 4, 12, tzinfo=UTC), "running", (3000, 3001))
    assert json.loads(json_path.read_text()) == SEED, "reading does not rewrite"


def test_written_file_keeps_the_seed_shape(json_path):
    store = ProcessStateStore(json_path)
    store.save_process(make(pgid=4242, log_file="/logs/web.log", exit_code=None))
    doc = json.loads(json_path.read_text())
    assert list(doc) == ["web"]
    entry = doc["web"]
    assert list(entry)[:7] == ["id", "pid", "command", "cwd", "startTime", "status", "ports"]
    assert entry["startTime"] == "2026-01-02T03:04:05.678Z"
    assert entry["ports"] == [8000] and entry["pid"] == 4242 and entry["cwd"] == "/srv/app"
    assert entry["createTime"] == 1767323045.67 and entry["pgid"] == 4242
    assert entry["logFile"] == "/logs/web.log" and entry["restarts"] == 0
    assert entry["updatedAt"].endswith("Z")
    assert set(entry) == {"id", "pid", "command", "cwd", "startTime", "status", "ports",
                          "createTime", "pgid", "logFile", "restarts", "exitCode", "owner",
                          "updatedAt"}


def test_times_with_offsets_and_microseconds_round_trip(json_path):
    json_path.write_text(json.dumps({"a": dict(SEED["server-id"], id="a",
                                               startTime="2025-11-04T14:00:00+02:00")}))
    store = ProcessStateStore(json_path)
    assert store.get_process("a").start_time == datetime(2025, 11, 4, 12, tzinfo=UTC)
    precise = make(start_time=datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC))
    store.save_process(precise)
    assert same(ProcessStateStore(json_path).get_process("web"), precise)


def _entry(**changes):
    return dict(SEED["server-id"], **changes)


CORRUPTIONS = {
    "garbage bytes": (b"\x00\xff\x13garbage\x89", set(), "not UTF-8"),
    "truncated JSON": (json.dumps({"ok": _entry(id="ok"), "cut": _entry(id="cut")})[:-40].encode(),
                       {"ok"}, "not valid JSON"),
    "top-level list": (json.dumps([_entry()]).encode(), set(), "top level is a list"),
    "pid not a number": (json.dumps({"ok": _entry(id="ok"), "bad": _entry(id="bad", pid="12")})
                         .encode(), {"ok"}, "entry 'bad': pid: expected a positive integer"),
    "negative pid": (json.dumps({"bad": _entry(id="bad", pid=-4)}).encode(), set(), "pid"),
    "port out of range": (json.dumps({"ok": _entry(id="ok"), "bad": _entry(id="bad", ports=[0])})
                          .encode(), {"ok"}, "ports"),
    "unparseable startTime": (json.dumps({"bad": _entry(id="bad", startTime="yesterday")})
                              .encode(), set(), "startTime"),
    "id not its key": (json.dumps({"ok": _entry(id="ok"), "x": _entry(id="y")}).encode(), {"ok"},
                       "does not match its key"),
    "missing key": (json.dumps({"bad": {"id": "bad", "pid": 5}}).encode(), set(),
                    "missing key"),
    "entry not an object": (json.dumps({"ok": _entry(id="ok"), "bad": [1]}).encode(), {"ok"},
                            "expected an object"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_bad_content_is_moved_aside_and_valid_entries_kept(case, json_path, caplog):
    raw, kept, words = CORRUPTIONS[case]
    json_path.write_bytes(raw)
    with caplog.at_level(logging.WARNING, logger="procsync.store"):
        entries = ProcessStateStore(json_path).load()
    assert set(entries) == kept
    (aside,) = [p for p in json_path.parent.iterdir() if ".corrupt-" in p.name]
    assert aside.name.startswith("process-state.json.corrupt-2")
    assert aside.read_bytes() == raw, "the bad file is kept as it was"
    assert set(json.loads(json_path.read_text())) == kept, "valid entries are written back"
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(aside) in record.getMessage() and words in record.getMessage()
    assert ProcessStateStore(json_path).load() == entries  # and it is now clean


def test_moved_aside_names_are_unique_within_one_second(json_path, monkeypatch):
    monkeypatch.setattr("procsync.store.atomic.utc_stamp", lambda: "20261126T120000Z")
    for _ in range(2):
        json_path.write_text("[]")
        assert ProcessStateStore(json_path).load() == {}
    names = sorted(p.name for p in json_path.parent.iterdir() if ".corrupt-" in p.name)
    assert names == ["process-state.json.corrupt-20261126T120000Z",
                     "process-state.json.corrupt-20261126T120000Z-1"]


def test_bad_content_written_by_another_tool_later_is_caught(json_path, caplog):
    store = ProcessStateStore(json_path)
    store.save_process(make())
    json_path.write_text('{"web": {"id": "web"')  # another tool writes a torn file in place
    with caplog.at_level(logging.WARNING, logger="procsync.store"):
        assert store.load() == {}
        store.save_process(make("api"))
    assert set(json.loads(json_path.read_text())) == {"api"}
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_stale_temp_files_are_cleaned_on_load(json_path):
    ProcessStateStore(json_path).save_process(make())
    stale = json_path.with_name(".process-state.json.tmp-99999-deadbeef")
    stale_history = json_path.with_name(".process-state.json.history.json.tmp-99999-cafe")
    unrelated = json_path.with_name(".other.json.tmp-1-2")
    for path in (stale, stale_history, unrelated):
        path.write_text("{")
    assert set(ProcessStateStore(json_path).load()) == {"web"}
    assert not stale.exists() and not stale_history.exists()
    assert unrelated.exists()


def test_corrupt_history_file_is_moved_aside(json_path, caplog):
    store = ProcessStateStore(json_path)
    store.record_event("web", "started", pid=5)
    history_path = json_path.with_name("process-state.json.history.json")
    doc = json.loads(history_path.read_text())
    doc["web"].append({"event": "stopped", "at": "not a time"})
    doc["api"] = "nope"
    history_path.write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING, logger="procsync.store"):
        assert [e.event for e in ProcessStateStore(json_path).history("web")] == ["started"]
    assert [p for p in json_path.parent.iterdir() if "history.json.corrupt-" in p.name]
    assert "history of 'api'" in caplog.text and "at: expected an ISO 8601" in caplog.text


def test_unreadable_state_path_raises_state_store_error(json_path):
    json_path.mkdir()
    with pytest.raises(StateStoreError, match="process-state.json"):
        ProcessStateStore(json_path).load()


def test_creates_missing_directories_on_first_write(tmp_path):
    store = ProcessStateStore(tmp_path / "a" / "b" / "state.json")
    store.save_process(make())
    assert set(ProcessStateStore(tmp_path / "a" / "b" / "state.json").load()) == {"web"}


# ---------------------------------------------------------------- SQLite specifics


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "state.db"


def test_sqlite_schema_version_and_wal(db_path):
    with SQLiteStateStore(db_path) as store:
        store.save_process(make())
        with sqlite3.connect(db_path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master "
                                                 "WHERE type = 'table'")}
        conn.close()
    assert {"processes", "history"} <= tables


def test_sqlite_newer_schema_is_refused(db_path):
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(StateStoreError, match="schema version 99 is newer"):
        SQLiteStateStore(db_path).load()


def test_sqlite_corrupt_database_is_moved_aside(db_path, caplog):
    db_path.write_bytes(b"this is not a database at all" * 200)
    with caplog.at_level(logging.WARNING, logger="procsync.store"):
        with SQLiteStateStore(db_path) as store:
            assert store.load() == {}
            store.save_process(make())
            assert set(store.load()) == {"web"}
    (aside,) = [p for p in db_path.parent.iterdir() if p.name.startswith("state.db.corrupt-")]
    assert aside.read_bytes().startswith(b"this is not a database")
    assert str(aside) in caplog.text and "corrupted" in caplog.text


def test_sqlite_bad_rows_are_moved_aside_and_good_rows_kept(db_path, caplog):
    with SQLiteStateStore(db_path) as store:
        store.save_process(make("good"))
        store.save_process(make("bad"))
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE processes SET pid = -5, ports = '[0]' WHERE id = 'bad'")
    conn.commit()
    conn.close()
    with caplog.at_level(logging.WARNING, logger="procsync.store"):
        with SQLiteStateStore(db_path) as store:
            assert set(store.load()) == {"good"}
    (aside,) = [p for p in db_path.parent.iterdir() if ".corrupt-" in p.name]
    (row,) = json.loads(aside.read_text())
    assert row["id"] == "bad" and row["pid"] == -5 and "pid" in row["problem"]
    assert str(aside) in caplog.text
    with SQLiteStateStore(db_path) as store:
        assert set(store.load()) == {"good"}


def test_sqlite_store_holding_the_file_open_follows_a_move_aside(db_path, caplog):
    first = SQLiteStateStore(db_path)
    second = SQLiteStateStore(db_path)
    try:
        first.save_process(make("old"))
        assert set(second.load()) == {"old"}
        garbage = db_path.with_name("garbage")
        garbage.write_bytes(b"not a database" * 100)
        os.replace(garbage, db_path)  # the file under both open stores goes bad
        for suffix in ("-wal", "-shm"):
            db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)
        with caplog.at_level(logging.WARNING, logger="procsync.store"):
            assert first.load() == {}
            first.save_process(make("new"))
            assert set(second.load()) == {"new"}
        assert len([p for p in db_path.parent.iterdir() if ".corrupt-" in p.name]) == 1
    finally:
        first.close()
        second.close()
