"""Disk trouble: a read-only state directory, a full disk, a log directory deleted under a server.

In each case the servers keep running, start/stop still work, status stays
right, a warning is logged, what was saved before stays intact, and once the
disk is fine again the in-memory state is written out without any further
action. As root the trouble is real (a read-only bind mount, a small tmpfs
filled up); elsewhere an OSError is injected at the store's atomic write.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import subprocess

import psutil
import pytest
from helpers import python_cmd, wait_until

import procsync.store.jsonfile
from procsync import ProcessStateStore, ServerOrchestrator, SQLiteStateStore, StateStoreError
from procsync.flask_ext import ProcSync

SLEEPER = python_cmd("import time\nwhile True: time.sleep(1)")
TICKER = python_cmd("import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.05)")


def _mount(*args: str) -> bool:
    try:
        done = subprocess.run(["mount", *args], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _umount(path: os.PathLike[str] | str) -> None:
    for flags in ([], ["-l"]):
        if subprocess.run(["umount", *flags, os.fspath(path)], capture_output=True,
                          timeout=30).returncode == 0:
            return


class Trouble:
    """Breaks and fixes writes under `directory`: for real when allowed, else by injection."""

    def __init__(self, directory, kind: str, monkeypatch) -> None:
        self.directory, self.kind, self._mp = directory, kind, monkeypatch
        self.real = False
        self.mounted = False
        self.broken = False
        directory.mkdir()
        if os.geteuid() == 0 and kind == "full":
            self.mounted = self.real = _mount("-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs",
                                              str(directory))
        elif os.geteuid() == 0 and kind == "read-only":
            self.real = _mount("--bind", str(directory), str(directory))
            if self.real:
                _umount(directory)  # the bind mount works: it is made again in break_()

    def break_(self) -> None:
        if self.real and self.kind == "read-only":
            assert _mount("--bind", str(self.directory), str(self.directory))
            self.mounted = True
            assert _mount("-o", "remount,bind,ro", str(self.directory))
        elif self.real:  # fill the tmpfs up
            fd = os.open(self.directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * 4096)
            finally:
                os.close(fd)
        else:
            code = errno.ENOSPC if self.kind == "full" else errno.EROFS
            real_write = procsync.store.jsonfile.atomic_write

            def failing(path, data):
                if self.broken:
                    raise OSError(code, os.strerror(code), str(path))
                return real_write(path, data)

            self._mp.setattr(procsync.store.jsonfile, "atomic_write", failing)
        self.broken = True

    def fix(self) -> None:
        if not self.broken:
            return
        if self.real and self.kind == "read-only":
            _umount(self.directory)
            self.mounted = False
        elif self.real:
            (self.directory / "filler").unlink()
        self.broken = False

    def close(self) -> None:
        if self.mounted:
            _umount(self.directory)


@pytest.fixture(params=["read-only", "full"])
def trouble(request, tmp_path, monkeypatch):
    t = Trouble(tmp_path / "state", request.param, monkeypatch)
    print(f"disk trouble {t.kind}: {'real (mount)' if t.real else 'injected OSError'}")
    try:
        yield t
    finally:
        t.close()


def _on_disk(path) -> dict:
    return json.loads(path.read_text())


def _store_warnings(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "procsync.store" and r.levelno == logging.WARNING and text in r.getMessage()]


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_orchestrator_survives_state_write_failures_and_writes_out_after(trouble, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    state = trouble.directory / "state.json"
    orch = ServerOrchestrator(state, interval=0.2, log_dir=tmp_path / "logs")
    try:
        orch.initialize()
        for sid in ("a", "b", "c"):
            orch.register_server(sid, {"command": SLEEPER})
        assert orch.start_server("a").success and orch.start_server("b").success
        saved = state.read_bytes()
        assert set(_on_disk(state)) == {"a", "b"}

        trouble.break_()
        stopped = orch.stop_server("a")
        started = orch.start_server("c")
        assert stopped.success, stopped.message
        assert started.success, started.message
        status = {s.id: s for s in orch.get_server_status()}
        assert (status["a"].status, status["b"].status, status["c"].status) == \
            ("stopped", "running", "running")
        assert not _alive(stopped.pid) and _alive(status["b"].pid) and _alive(started.pid)
        # a clear warning, once per outage, naming the file and the reason
        warned = _store_warnings(caplog, "cannot write")
        assert warned and str(state.parent) in warned[0], caplog.text
        reason = "No space left" if trouble.kind == "full" else "Read-only file system"
        assert reason in warned[0]
        # nothing already saved is lost, nothing torn, no temp file left behind
        assert state.read_bytes() == saved
        assert not [p for p in os.listdir(state.parent) if ".tmp-" in p]
        # the store still tells what procsync did
        assert orch.store.get_process("c").pid == started.pid
        assert orch.store.get_process("a").status == "stopped"

        trouble.fix()

        def written_out():
            doc = _on_disk(state)
            return (getattr(orch.store, "pending_writes", 0) == 0
                    and doc.get("a", {}).get("status") == "stopped"
                    and doc.get("c", {}).get("pid") == started.pid
                    and doc.get("b", {}).get("status") == "running")

        wait_until(written_out, timeout=10, what="the in-memory state written out")
        assert _store_warnings(caplog, "can be written again")
        events = [e.event for e in ProcessStateStore(state).history("a")]
        assert events[:2] == ["stopped", "started"]
        assert orch.stop_server("c").success
        assert _on_disk(state)["c"]["status"] == "stopped"
    finally:
        trouble.fix()
        orch.shutdown(stop_servers=True)


@pytest.mark.parametrize("store_class", [ProcessStateStore, SQLiteStateStore])
def test_store_keeps_failed_writes_in_memory_until_the_disk_is_fine(store_class, tmp_path,
                                                                     monkeypatch, caplog):
    """Injected ENOSPC at the store's lowest write call: a clear error, reads still right."""
    caplog.set_level(logging.WARNING)
    name = "state.json" if store_class is ProcessStateStore else "state.db"
    store = store_class(tmp_path / name)
    first = store.save_process(_info("a", 101))
    store.record_event("a", "started", pid=101)
    before = (tmp_path / name).read_bytes()

    broken = {"on": True}
    if store_class is ProcessStateStore:
        real_write = procsync.store.jsonfile.atomic_write

        def failing(path, data):
            if broken["on"]:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            return real_write(path, data)

        monkeypatch.setattr(procsync.store.jsonfile, "atomic_write", failing)
    else:
        real_write_pending = SQLiteStateStore._write_pending

        def failing_sql(self, conn):
            real_write_pending(self, conn)
            if broken["on"]:
                import sqlite3
                raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(SQLiteStateStore, "_write_pending", failing_sql)

    with pytest.raises(StateStoreError, match="kept in memory"):
        store.save_process(_info("b", 102))
    with pytest.raises(StateStoreError):
        store.remove_process("a")
    with pytest.raises(StateStoreError):
        store.record_event("b", "started", pid=102)
    assert len(_store_warnings(caplog, "cannot write")) == 1  # once per outage, not per write
    assert store.get_process("a") is None and store.get_process("b").pid == 102
    assert [e.event for e in store.history("b")] == ["started"]
    assert store.pending_writes == 3
    assert (tmp_path / name).read_bytes() == before or store_class is SQLiteStateStore
    assert store.flush() is False
    assert store_class(tmp_path / name).get_process("a") == first  # what was saved is intact

    broken["on"] = False
    assert store.flush() is True
    assert store.pending_writes == 0
    fresh = store_class(tmp_path / name)
    assert fresh.get_process("a") is None and fresh.get_process("b").pid == 102
    assert [e.event for e in fresh.history("b")] == ["started"]
    assert [e.event for e in fresh.history("a")] == ["started"]
    assert _store_warnings(caplog, "can be written again")
    store.close()
    fresh.close()


def _info(sid: str, pid: int):
    from datetime import UTC, datetime

    from procsync.store import StoredProcessInfo
    return StoredProcessInfo(id=sid, pid=pid, command="x", cwd=None,
                             start_time=datetime(2026, 1, 1, tzinfo=UTC), status="running",
                             ports=(), create_time=1.0)


def test_log_directory_deleted_while_running(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    logs = tmp_path / "logs"
    orch = ServerOrchestrator(tmp_path / "state.json", interval=0.2, log_dir=logs)
    try:
        orch.initialize()
        orch.register_server("a", {"command": TICKER})
        first = orch.start_server("a")
        assert first.success, first.message
        wait_until(lambda: orch.tail_log("a", 1) == ["tick"], what="the first log line")
        shutil.rmtree(logs)

        wait_until(lambda: [r for r in caplog.records if "log file" in r.getMessage()
                            and "deleted" in r.getMessage()], timeout=10,
                   what="a warning about the deleted log file")
        # the server keeps running and its status stays right
        assert _alive(first.pid)
        assert orch.get_server("a").status == "running" and orch.get_server("a").running
        # reading the log answers (empty, or what was written), never a traceback
        lines = orch.tail_log("a", 5)
        assert isinstance(lines, list) and all(isinstance(x, str) for x in lines)
        from flask import Flask
        app = Flask(__name__)
        ProcSync(app, orch)
        answer = app.test_client().get("/procsync/api/servers/a/logs?lines=5")
        assert answer.status_code == 200 and isinstance(answer.get_json()["lines"], list)

        stopped = orch.stop_server("a")
        assert stopped.success, stopped.message
        again = orch.start_server("a")
        assert again.success, again.message  # the next start makes the folder again
        assert logs.is_dir()
        wait_until(lambda: "tick" in orch.tail_log("a", 3), what="output in the new log")
    finally:
        orch.shutdown(stop_servers=True)
