"""Recovery after the host dies, stale and reused pids, orphans, events, shutdown."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import textwrap

import psutil
import pytest
from helpers import PY, free_port, is_gone, listener_code, python_cmd, wait_until

from procsync import ServerOrchestrator
from procsync.health import port_open


def registry(ports: list[int]) -> dict:
    """Three servers: two listeners (one of them with a child in its group) and a worker."""
    tree = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"exec({listener_code(ports[1])!r})\n"
    )
    return {
        "web": {"command": python_cmd(listener_code(ports[0])), "ports": [ports[0]]},
        "api": {"command": python_cmd(tree), "ports": [ports[1]], "stop_timeout": 2},
        "worker": {"command": python_cmd("import time\nwhile True: time.sleep(1)")},
    }


HOST = textwrap.dedent("""
    import json, sys, time
    from procsync import ServerOrchestrator
    state, logs, registry = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    orch = ServerOrchestrator(state, interval=0.2, log_dir=logs)
    orch.register_servers(registry)
    orch.initialize()
    pids = {}
    for sid in registry:
        result = orch.start_server(sid)
        assert result.success, result.message
        pids[sid] = result.pid
    print(json.dumps(pids), flush=True)
    time.sleep(120)
""")


@pytest.fixture
def procs():
    """Processes the test starts itself (not through procsync); killed afterwards."""
    started: list[subprocess.Popen] = []

    def start(argv, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(argv, **kw)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def write_state(path, entries: dict) -> None:
    path.write_text(json.dumps(entries))


def entry(sid: str, pid: int, command: str, ports=(), **extra) -> dict:
    return {"id": sid, "pid": pid, "command": command, "cwd": None,
            "startTime": "2025-11-04T12:00:00.000Z", "status": "running", "ports": list(ports), **extra}


# ----------------------------------------------------------------- host crash


def test_host_killed_then_new_orchestrator_adopts_all_three(tmp_path, procs, make_orch):
    ports = [free_port(), free_port()]
    reg = registry(ports)
    host = procs([PY, "-c", HOST, str(tmp_path / "state.json"), str(tmp_path / "logs"), json.dumps(reg)],
                 stdout=subprocess.PIPE, text=True)
    pids = json.loads(host.stdout.readline())
    api_child = [c.pid for c in psutil.Process(pids["api"]).children()]
    assert len(api_child) == 1
    host.send_signal(signal.SIGKILL)
    host.wait()
    assert all(psutil.pid_exists(p) and not is_gone(p) for p in pids.values())

    orch = make_orch()
    got = []
    orch.on("initialized", lambda sender, **p: got.append(p))
    orch.register_server("web", reg["web"])
    orch.register_server("api", reg["api"])
    orch.initialize()  # "worker" is registered later
    assert got and sorted(got[0]["recovered"]) == ["api", "web"]
    assert got[0]["ended"] == [] and got[0]["orphaned"] == []
    orch.register_server("worker", reg["worker"])
    statuses = {s.id: s for s in orch.get_server_status()}
    for sid, pid in pids.items():
        assert statuses[sid].status == "running" and statuses[sid].pid == pid, sid
        assert not statuses[sid].orphaned
    assert [e.event for e in orch.history("web")][:2] == ["adopted", "started"]
    # adopted servers are watched: the monitor sees their ports
    wait_until(lambda: orch.get_server("web").health == "healthy", 5, "adopted web healthy")
    # starting again is refused: no duplicate
    assert orch.start_server("web").code == "already_running"
    # stopping an adopted process kills its whole group
    result = orch.stop_server("api")
    assert result.success, result.message
    wait_until(lambda: is_gone(pids["api"]) and is_gone(api_child[0]), 5, "api group gone")
    # an adopted process that dies by itself is noticed and recorded
    os.kill(pids["worker"], signal.SIGKILL)
    wait_until(lambda: orch.get_server("worker").status == "crashed", 5, "adopted worker crash seen")
    wait_until(lambda: orch.history("worker")[0].event == "crashed", 5, "crash in history")


def test_dead_record_is_marked_ended(tmp_path, procs, make_orch):
    dead = procs([PY, "-c", "pass"])
    dead.wait()
    write_state(tmp_path / "state.json", {"gone": entry("gone", dead.pid, "x", createTime=1.0)})
    orch = make_orch()
    got = []
    orch.on("initialized", lambda sender, **p: got.append(p))
    orch.register_server("gone", {"command": "x"})
    orch.initialize()
    assert got[0]["ended"] == ["gone"]
    status = orch.get_server("gone")
    assert status.status == "crashed" and not status.running
    assert "not watching" in status.message
    assert orch.store.get_process("gone").status == "crashed"
    assert orch.history("gone")[0].event == "crashed"


def test_reused_pid_is_never_adopted_nor_signalled(tmp_path, procs, make_orch, caplog):
    stranger = procs(python_cmd("import time; time.sleep(60)"))
    wait_until(lambda: psutil.Process(stranger.pid).cmdline()[-1:] == ["import time; time.sleep(60)"],
               5, "stranger up")
    real = psutil.Process(stranger.pid).create_time()
    write_state(tmp_path / "state.json", {
        "a": entry("a", stranger.pid, "node server.js", createTime=real - 100),  # other create_time
        "b": entry("b", stranger.pid, "node server.js"),  # no createTime, other command
    })
    orch = make_orch()
    got = []
    orch.on("initialized", lambda sender, **p: got.append(p))
    orch.register_servers({"a": {"command": "node server.js"}, "b": {"command": "node server.js"}})
    with caplog.at_level(logging.WARNING, logger="procsync.orchestrator"):
        orch.initialize()
    assert got[0]["recovered"] == [] and got[0]["orphaned"] == []
    assert got[0]["unverified"] == ["b"]  # no create time: reported, kept for the user to clear
    assert "record dropped" in caplog.text and "no create time" in caplog.text
    assert orch.store.get_process("a") is None and orch.store.get_process("b") is not None
    assert orch.get_server("a").status == "stopped" and orch.get_server("a").pid is None
    orch.shutdown(stop_servers=True)
    assert stranger.poll() is None  # never signalled
    assert psutil.Process(stranger.pid).status() != psutil.STATUS_ZOMBIE


def test_unproven_pid_holding_the_port_shows_as_orphan(tmp_path, procs, make_orch):
    port = free_port()
    stranger = procs(python_cmd(listener_code(port)))
    wait_until(lambda: port_open(port, timeout=0.2), 5, "stranger listening")
    write_state(tmp_path / "state.json", {"web": entry("web", stranger.pid, "other command", [port])})
    orch = make_orch()
    got = []
    orch.on("initialized", lambda sender, **p: got.append(p))
    orch.register_server("web", {"command": python_cmd(listener_code(port)), "ports": [port]})
    orch.initialize()
    assert got[0]["orphaned"] == ["web"]
    status = orch.get_server("web")
    assert status.orphaned and status.orphaned_pid == stranger.pid and not status.running
    orch.shutdown(stop_servers=True)
    assert stranger.poll() is None


# A seed record without createTime is never adopted, whatever its command: see
# tests/test_adoption_rules.py.


# -------------------------------------------------------------------- orphans


def test_orphan_detection_and_kill(tmp_path, procs, make_orch):
    port, other_port = free_port(), free_port()
    # the orphan leads its own group and has a child in it
    orphan_code = (
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"exec({listener_code(port)!r})\n"
    )
    orphan = procs(python_cmd(orphan_code), start_new_session=True)
    wait_until(lambda: port_open(port, timeout=0.2), 5, "orphan listening")
    grandchild = wait_until(lambda: psutil.Process(orphan.pid).children(), 5, "orphan child")[0].pid
    bystander = procs(python_cmd("import time; time.sleep(60)"))
    orch = make_orch()
    orch.initialize()
    orch.register_server("web", {"command": python_cmd(listener_code(port)), "ports": [port]})
    orch.register_server("other", {"command": python_cmd(listener_code(other_port)), "ports": [other_port]})
    assert orch.start_server("other").success
    killed = []
    orch.on("orphan_killed", lambda sender, **p: killed.append(p))

    status = orch.get_server("web")
    assert status.orphaned and status.orphaned_pid == orphan.pid
    assert not orch.get_server("other").orphaned  # its listener is ours

    refused = orch.kill_orphaned_process("web", bystander.pid)  # not listening on web's port
    assert not refused.success and "not an orphan" in refused.message
    refused = orch.kill_orphaned_process("other", orch.get_server("other").pid)  # tracked by us
    assert not refused.success and "manages" in refused.message
    assert not orch.kill_orphaned_process("web", os.getpid()).success
    assert not orch.kill_orphaned_process("web", "123").success
    assert bystander.poll() is None and orch.get_server("other").running

    result = orch.kill_orphaned_process("web", orphan.pid)
    assert result.success and result.signal == "SIGTERM" and result.pid == orphan.pid
    orphan.wait(timeout=5)
    wait_until(lambda: is_gone(grandchild), 5, "orphan's group member gone")
    assert not port_open(port, timeout=0.2)
    assert killed == [{"id": "web", "pid": orphan.pid, "signal": "SIGTERM"}]
    assert orch.history("web")[0].event == "orphan_killed"
    assert not orch.get_server("web").orphaned
    assert orch.start_server("web").success


def test_orphan_that_ignores_term_gets_kill_and_only_its_pid_when_not_group_leader(procs, make_orch):
    port = free_port()
    code = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + listener_code(port)
    orphan = procs(python_cmd(code))  # shares the test's process group: only the pid is signalled
    wait_until(lambda: port_open(port, timeout=0.2), 5, "orphan listening")
    orch = make_orch()
    orch.register_server("web", {"command": "x", "ports": [port], "stop_timeout": 0.3})
    result = orch.kill_orphaned_process("web", orphan.pid)
    assert result.success and result.signal == "SIGKILL", result.message
    assert orphan.wait(timeout=5) == -signal.SIGKILL


# --------------------------------------------------------------------- events


def test_events_come_from_own_orchestrator_only(tmp_path, make_orch):
    one = make_orch()
    two = ServerOrchestrator(tmp_path / "two.json", interval=0.2, log_dir=tmp_path / "logs2")
    try:
        seen_one, seen_two = [], []
        def rec_one(sender, **p):
            seen_one.append((type(sender).__name__, p["id"]))
        one.on("process_started", rec_one)
        one.on("server_started", rec_one)
        two.on("process_started", lambda sender, **p: seen_two.append(p["id"]))
        cmd = python_cmd("import time; time.sleep(60)")
        one.register_server("a", {"command": cmd})
        two.register_server("b", {"command": cmd})
        one.start_server("a")
        two.start_server("b")
        assert ("ProcessManager", "a") in seen_one and ("ServerOrchestrator", "a") in seen_one
        assert all(sid == "a" for _, sid in seen_one) and seen_two == ["b"]
        one.off("process_started", rec_one)
        one.off("server_started", rec_one)
        one.restart_server("a")
        assert len(seen_one) == 2
    finally:
        two.shutdown(stop_servers=True)


# ------------------------------------------------------------------- shutdown


def test_shutdown_leaves_servers_running_for_the_next_initialize(tmp_path, make_orch):
    cmd = python_cmd("import time; time.sleep(60)")
    with ServerOrchestrator(tmp_path / "state.json", interval=0.2, log_dir=tmp_path / "logs") as first:
        first.register_server("w", {"command": cmd})
        pid = first.start_server("w").pid
        assert first.monitor.running
    assert not first.monitor.running
    assert psutil.pid_exists(pid) and not is_gone(pid)
    assert first.store.get_process("w").status == "running"
    second = make_orch()
    second.register_server("w", {"command": cmd})
    second.initialize()
    assert second.get_server("w").pid == pid
    second.shutdown(stop_servers=True)
    assert is_gone(pid)
    assert second.store.get_process("w").status == "stopped"


def test_shutdown_stop_servers_stops_all_in_parallel_and_cancels_timers(tmp_path, make_orch):
    orch = make_orch()
    marks = tmp_path / "marks"
    marks.mkdir()
    slow_stop = (
        "import os, signal, sys, time\n"
        "def term(*a):\n"
        f"    open(os.path.join({str(marks)!r}, str(os.getpid())), 'w').write(repr(time.monotonic()))\n"
        "    time.sleep(0.4); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, term)\n"
        "time.sleep(60)\n"
    )
    for i in range(4):
        orch.register_server(f"s{i}", {"command": python_cmd(slow_stop)})
    orch.register_server("crashy", {"command": python_cmd("import sys; sys.exit(1)"),
                                    "autorestart": "always", "backoff_initial": 30})
    pids = [orch.start_server(f"s{i}").pid for i in range(4)]
    orch.start_server("crashy")
    wait_until(lambda: orch.get_server("crashy").status == "backoff", 10, "crashy waits")
    orch.shutdown(stop_servers=True)
    assert all(is_gone(p) for p in pids)
    terms = sorted(float(f.read_text()) for f in marks.iterdir())
    assert len(terms) == 4
    assert terms[-1] - terms[0] < 0.4  # every TERM arrived before the first server had finished
    assert orch.get_server("crashy").status == "stopped"
