"""Adoption and identity rules: procsync never adopts or signals a process it cannot prove is its own.

Every test here runs under `signal_guard`: os.kill and os.killpg are wrapped so
that a signal to anything but a process this test session started (it carries
the run marker) is refused and recorded (signal 0, the existence probe, passes). A test then asserts
that procsync attempted no such signal, so a regression can never reach
PID 1, this process, its parents or another user's processes.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
from datetime import UTC, datetime

import psutil
import pytest
from helpers import (
    PY,
    RUN_MARKER,
    free_port,
    is_gone,
    listener_code,
    python_cmd,
    running_counts,
    wait_until,
)

from procsync import (
    IdentityMismatch,
    ServerOrchestrator,
    StoredProcessInfo,
    open_store,
)
from procsync.ports import terminate

TOKEN_VAR = "PROCSYNC_SPAWN"


class SignalGuard:
    """Wraps os.kill / os.killpg: signals outside this test's own process tree are refused."""

    def __init__(self) -> None:
        self.raw_kill = os.kill
        self.raw_killpg = os.killpg
        self.refused: list[tuple[str, int, int]] = []  # (call, pid or pgid, signal)
        self.sent: list[tuple[str, int, int]] = []

    @staticmethod
    def _ours(pid: int) -> bool:
        """A process this test session started (it carries the run marker), never this one.

        A pid that is gone or a zombie passes too: a signal cannot reach anyone through it.
        """
        if pid == os.getpid():
            return False
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
            return proc.environ().get(RUN_MARKER) == os.environ[RUN_MARKER]
        except psutil.NoSuchProcess:  # ZombieProcess is one
            return True
        except psutil.Error:
            return False

    def kill(self, pid: int, sig: int) -> None:
        if sig != 0:
            if pid <= 1 or not self._ours(pid):
                self.refused.append(("kill", pid, sig))
                raise PermissionError(1, f"test guard: refused signal {sig} to pid {pid}")
            self.sent.append(("kill", pid, sig))
        self.raw_kill(pid, sig)

    def killpg(self, pgid: int, sig: int) -> None:
        if sig != 0:
            members = []
            for proc in psutil.process_iter():
                try:
                    if os.getpgid(proc.pid) == pgid:
                        members.append(proc.pid)
                except OSError:
                    continue
            if pgid <= 1 or not members or not all(self._ours(pid) for pid in members):
                self.refused.append(("killpg", pgid, sig))
                raise PermissionError(1, f"test guard: refused signal {sig} to group {pgid}")
            self.sent.append(("killpg", pgid, sig))
        self.raw_killpg(pgid, sig)

    def touched(self, *pids: int) -> list[tuple[str, int, int]]:
        """Every signal (sent or refused) that named one of `pids` (as a pid or a group)."""
        return [call for call in self.sent + self.refused if call[1] in pids]


@pytest.fixture(autouse=True)
def signal_guard():
    guard = SignalGuard()
    os.kill, os.killpg = guard.kill, guard.killpg
    try:
        yield guard
    finally:
        os.kill, os.killpg = guard.raw_kill, guard.raw_killpg


@pytest.fixture
def procs(signal_guard):
    """Processes the test starts itself (not through procsync), each in its own session."""
    started: list[subprocess.Popen] = []

    def start(code: str) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k != TOKEN_VAR}  # not a procsync spawn
        proc = subprocess.Popen(python_cmd(code), start_new_session=True, env=env,
                                stdout=subprocess.PIPE, text=True)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            try:
                signal_guard.raw_killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
            proc.stdout.close()


#: A process with a child in its process group; prints the child's pid, then sleeps.
WITH_CHILD = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(120)\n"
)


def started_with_child(procs, code: str = WITH_CHILD) -> tuple[subprocess.Popen, int]:
    proc = procs(code)
    child = int(proc.stdout.readline())
    return proc, child


def write_state(path, entries: dict) -> None:
    path.write_text(json.dumps(entries))


def entry(sid: str, pid: int, command: str, **extra) -> dict:
    return {"id": sid, "pid": pid, "command": command, "cwd": None,
            "startTime": "2025-11-04T12:00:00.000Z", "status": "running", "ports": [], **extra}


def initialized_payload(orch: ServerOrchestrator) -> dict:
    got: list[dict] = []
    orch.on("initialized", lambda sender, **p: got.append(p))
    orch.initialize()
    assert len(got) == 1
    return got[0]


# ------------------------------------------------------------ records without a create time


def test_record_without_create_time_is_not_adopted_even_when_its_command_matches(
        tmp_path, procs, make_orch, signal_guard, caplog):
    live, child = started_with_child(procs)
    command = " ".join(psutil.Process(live.pid).cmdline())  # the live process's exact command line
    write_state(tmp_path / "state.json", {"w": entry("w", live.pid, command)})
    orch = make_orch()
    orch.register_server("w", {"command": python_cmd(WITH_CHILD), "stop_timeout": 2})
    with caplog.at_level(logging.WARNING, logger="procsync.orchestrator"):
        payload = initialized_payload(orch)

    assert payload["recovered"] == []
    assert payload.get("unverified") == ["w"]
    status = orch.get_server("w")
    assert not status.running and status.pid is None
    assert "not adopted" in status.message and "no create time" in status.message
    assert "no create time" in caplog.text
    assert orch.history("w")[0].event == "not_adopted"
    kept = orch.store.get_process("w")  # kept for the user to clear
    assert kept is not None and kept.pid == live.pid and kept.create_time is None
    assert not orch.stop_server("w").success  # nothing of ours to stop

    # a start of that id replaces the record with a proven one
    started = orch.start_server("w")
    assert started.success, started.message
    record = orch.store.get_process("w")
    assert record.pid == started.pid != live.pid and record.create_time is not None
    assert orch.stop_server("w").success
    orch.shutdown(stop_servers=True)

    assert live.poll() is None and not is_gone(child)
    assert signal_guard.touched(live.pid, child) == [] and signal_guard.refused == []


def test_record_without_create_time_holding_the_port_is_an_orphan_and_left_alone(
        tmp_path, procs, make_orch, signal_guard):
    port = free_port()
    live = procs(listener_code(port))
    wait_until(lambda: port in {c.laddr.port for c in psutil.Process(live.pid).net_connections()
                                if c.status == psutil.CONN_LISTEN}, 10, "listener up")
    command = " ".join(psutil.Process(live.pid).cmdline())
    write_state(tmp_path / "state.json", {"web": entry("web", live.pid, command, ports=[port])})
    orch = make_orch()
    orch.register_server("web", {"command": python_cmd(listener_code(port)), "ports": [port]})
    payload = initialized_payload(orch)
    assert payload["recovered"] == [] and payload["orphaned"] == ["web"]
    assert payload.get("unverified") == ["web"]
    status = orch.get_server("web")
    assert status.orphaned and status.orphaned_pid == live.pid and not status.running
    orch.shutdown(stop_servers=True)
    assert live.poll() is None and signal_guard.touched(live.pid) == []


def test_adopt_without_create_time_needs_the_procsync_spawn_marker(manager, procs, signal_guard):
    stranger = procs("import time; time.sleep(120)")
    with pytest.raises(IdentityMismatch, match="no create time"):
        manager.adopt("s", stranger.pid)
    assert manager.get_process("s") is None

    env = {**os.environ, TOKEN_VAR: "0123abcd"}  # as a procsync spawn carries it
    spawned = subprocess.Popen(python_cmd("import time; time.sleep(120)"), env=env,
                               start_new_session=True)
    try:
        wait_until(lambda: psutil.Process(spawned.pid).environ().get(TOKEN_VAR) == "0123abcd",
                   10, "marker visible")
        info = manager.adopt("p", spawned.pid)
        assert info.adopted and info.create_time == psutil.Process(spawned.pid).create_time()
        assert manager.kill("p", timeout=5).success
        spawned.wait(timeout=10)
    finally:
        if spawned.poll() is None:
            signal_guard.raw_killpg(spawned.pid, signal.SIGKILL)
        spawned.wait()
    assert stranger.poll() is None and signal_guard.touched(stranger.pid) == []


# ------------------------------------------------------------ protected pids


def test_records_naming_pid_1_this_process_or_its_parent_are_never_adopted(
        tmp_path, make_orch, signal_guard, caplog):
    me, parent = os.getpid(), os.getppid()
    created = {pid: psutil.Process(pid).create_time() for pid in (1, me, parent)}
    write_state(tmp_path / "state.json", {
        "init": entry("init", 1, "init", createTime=created[1]),
        "self": entry("self", me, "pytest", createTime=created[me]),
        "parent": entry("parent", parent, "shell", createTime=created[parent]),
    })
    orch = make_orch()
    cmd = python_cmd("import time; time.sleep(120)")
    for sid in ("init", "self", "parent"):
        orch.register_server(sid, {"command": cmd, "stop_timeout": 1})
    with caplog.at_level(logging.WARNING, logger="procsync.orchestrator"):
        payload = initialized_payload(orch)

    assert payload["recovered"] == []
    assert sorted(payload.get("protected", [])) == ["init", "parent", "self"]
    for sid in ("init", "self", "parent"):
        status = orch.get_server(sid)
        assert not status.running and status.pid is None, sid
        assert "never adopts or signals" in status.message, sid
        assert orch.history(sid)[0].event == "not_adopted", sid
        assert not orch.stop_server(sid).success, sid
    assert "PID 1" in orch.get_server("init").message
    assert "PID 1" in caplog.text
    # a start replaces such a record: it is not "already running"
    started = orch.start_server("init")
    assert started.success, started.message
    assert orch.store.get_process("init").pid == started.pid != 1
    orch.shutdown(stop_servers=True)
    assert signal_guard.refused == []
    assert signal_guard.touched(1, me, parent) == []


def test_manager_never_adopts_pid_1_this_process_or_its_parent(manager, signal_guard):
    for pid in (1, os.getpid(), os.getppid()):
        created = psutil.Process(pid).create_time()
        with pytest.raises(IdentityMismatch, match="never adopts or signals"):
            manager.adopt("x", pid, created)
        assert manager.get_process("x") is None
        assert not manager.kill("x").success
    assert signal_guard.refused == []


def test_terminate_never_signals_pid_1_or_this_process(signal_guard):
    for pid in (1, os.getpid()):
        proc = psutil.Process(pid)
        assert terminate(proc, proc.create_time(), group=True, timeout=0.1) is None
    assert signal_guard.refused == [] and signal_guard.sent == []


# ------------------------------------------------------------ the sweep of an adopted process


def test_adopted_unrelated_process_that_exits_keeps_its_child(manager, procs, signal_guard):
    stranger, child = started_with_child(procs)
    created = psutil.Process(stranger.pid).create_time()
    manager.adopt("u", stranger.pid, created)
    signal_guard.raw_kill(stranger.pid, signal.SIGKILL)  # it dies on its own, not by our stop
    wait_until(lambda: manager.wait("u", timeout=0.1) is not None, 15, "exit seen and cleaned up")
    assert manager.get_process("u").status == "crashed"
    stranger.wait(timeout=5)
    assert not is_gone(child), "the crash cleanup killed a child of a process procsync did not start"
    assert signal_guard.touched(child, stranger.pid) == [] and signal_guard.refused == []


def test_stopping_an_adopted_process_stays_inside_its_group(manager, procs, signal_guard):
    # its child leaves the group and session: a descendant, but nothing proves it is the server's
    code = WITH_CHILD.replace(
        "[sys.executable, '-c', 'import time; time.sleep(120)']",
        "[sys.executable, '-c', 'import time; time.sleep(120)'], start_new_session=True")
    stranger, escaped = started_with_child(procs, code)
    wait_until(lambda: os.getsid(escaped) == escaped, 10, "child in its own session")
    manager.adopt("u", stranger.pid, psutil.Process(stranger.pid).create_time())
    result = manager.kill("u", timeout=5)
    assert result.success, result.message
    stranger.wait(timeout=10)
    assert not is_gone(escaped)
    assert signal_guard.touched(escaped) == [] and signal_guard.refused == []
    signal_guard.raw_kill(escaped, signal.SIGKILL)
    wait_until(lambda: is_gone(escaped), 10, "escaped child gone")


def test_adopted_record_with_matching_create_time_is_still_adopted(tmp_path, procs, make_orch):
    live, child = started_with_child(procs)
    created = psutil.Process(live.pid).create_time()
    command = " ".join(psutil.Process(live.pid).cmdline())
    write_state(tmp_path / "state.json", {"w": entry("w", live.pid, command, createTime=created)})
    orch = make_orch()
    orch.register_server("w", {"command": python_cmd(WITH_CHILD), "stop_timeout": 2})
    payload = initialized_payload(orch)
    assert payload["recovered"] == ["w"]
    assert orch.get_server("w").pid == live.pid
    assert orch.stop_server("w").success  # a stop takes its group: the child goes with it
    live.wait(timeout=10)
    wait_until(lambda: is_gone(child), 10, "the adopted process's group member gone")


def test_guard_refuses_signals_outside_this_test(signal_guard):
    with pytest.raises(PermissionError):
        os.kill(1, signal.SIGTERM)
    with pytest.raises(PermissionError):
        os.killpg(os.getpgid(0), signal.SIGTERM)
    proc = subprocess.Popen([PY, "-c", "import time; time.sleep(120)"])
    try:  # once exec'd, it carries the run marker: one of ours
        wait_until(lambda: psutil.Process(proc.pid).environ().get(RUN_MARKER), 10, "child exec'd")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert signal_guard.refused[:1] == [("kill", 1, signal.SIGTERM)]


def test_leader_leaves_a_record_without_create_time_alone(tmp_path, procs, make_orch, signal_guard, caplog):
    """A record of a gone instance whose pid lives but has no create time: the leader neither
    adopts it nor records it dead (which would restart the server beside it)."""
    live, child = started_with_child(procs)
    orch = make_orch()
    orch.register_server("w", {"command": python_cmd("import time; time.sleep(120)"),
                               "autorestart": "always"})
    with caplog.at_level(logging.WARNING, logger="procsync.sync"):
        orch.initialize()
        wait_until(lambda: orch.is_leader, 10, "the only instance leads")
        record = StoredProcessInfo(id="w", pid=live.pid, command="something else", cwd=None,
                                   start_time=datetime.now(UTC), status="running", ports=(),
                                   owner="gone-instance [pid 999999999 @1.000]")
        open_store(tmp_path / "state.json").save_process(record)  # as another instance wrote it
        wait_until(lambda: "no create time" in caplog.text or orch.history("w"), 15,
                   "the leader looked at the record")
    kept = orch.store.get_process("w")
    assert kept.pid == live.pid and kept.status == "running" and kept.create_time is None
    assert [e.event for e in orch.history("w")] == []  # not recorded dead, not restarted
    assert running_counts()["w"] == 0
    orch.shutdown(stop_servers=True)
    assert live.poll() is None and not is_gone(child)
    assert signal_guard.touched(live.pid, child) == [] and signal_guard.refused == []
