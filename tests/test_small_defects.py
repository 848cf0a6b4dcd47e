"""Small things the status and the answers got wrong, with real processes.

- `ActionResult.to_dict()`, like ServerStatus and HistoryEntry have;
- a running server's `last_exit_code` is None, not the previous run's;
- a server with nothing to check (no ports, no health check) is "healthy"
  as soon as it runs, not "unknown" until the monitor's first look.
"""

from __future__ import annotations

import json

import psutil
from helpers import PY, wait_until

from procsync import ActionResult, ProcessMonitor, ServerOrchestrator, SpawnConfig

SLEEP = [PY, "-c", "import time; time.sleep(60)"]


# ----------------------------------------------------------- ActionResult.to_dict


def test_action_result_to_dict_is_json_ready(orch):
    orch.register_server("web", {"command": SLEEP})
    started = orch.start_server("web")
    again = orch.start_server("web")
    assert started.to_dict() == {"success": True, "message": started.message, "pid": started.pid,
                                 "code": None}
    assert started.pid is not None and orch.get_server("web").pid == started.pid
    assert json.loads(json.dumps(again.to_dict())) == {
        "success": False, "message": again.message, "pid": started.pid, "code": "already_running"}
    assert ActionResult(**again.to_dict()) == again


# ----------------------------------------------------------- last_exit_code


def test_a_running_server_shows_no_exit_code_of_its_previous_run(orch, tmp_path):
    first, go = tmp_path / "ran-once", tmp_path / "go"
    code = (  # the first run exits 3 at once; the second waits for `go`, then exits 4
        "import os, sys, time\n"
        f"if not os.path.exists({str(first)!r}):\n"
        f"    open({str(first)!r}, 'w').close()\n"
        "    sys.exit(3)\n"
        f"while not os.path.exists({str(go)!r}):\n"
        "    time.sleep(0.01)\n"
        "sys.exit(4)\n"
    )
    orch.register_server("job", {"command": [PY, "-c", code]})
    orch.start_server("job")
    wait_until(lambda: not orch.get_server("job").running and orch.get_server("job").last_exit_code == 3,
               what="the first run's exit code 3")
    assert orch.start_server("job").success
    running = orch.get_server("job")
    listed = next(s for s in orch.get_server_status() if s.id == "job")
    assert running.running and listed.running
    assert running.last_exit_code is None and listed.last_exit_code is None
    assert running.to_dict()["last_exit_code"] is None
    go.touch()
    wait_until(lambda: not orch.get_server("job").running, what="the second run to end")
    assert orch.get_server("job").last_exit_code == 4


def test_an_automatic_restart_shows_no_exit_code_while_it_runs(orch, tmp_path):
    first = tmp_path / "ran-once"
    code = (
        "import os, sys, time\n"
        f"if not os.path.exists({str(first)!r}):\n"
        f"    open({str(first)!r}, 'w').close()\n"
        "    sys.exit(3)\n"
        "time.sleep(60)\n"
    )
    orch.register_server("srv", {"command": [PY, "-c", code], "autorestart": "always"})
    first_pid = orch.start_server("srv").pid
    restarted = wait_until(lambda: (s := orch.get_server("srv")).status == "running"
                           and s.pid != first_pid and s, what="the automatic restart")
    assert restarted.restarts == 1 and restarted.last_exit_code is None


# ----------------------------------------------------------- health of a server with no checks


def test_monitor_calls_a_process_with_nothing_to_check_healthy_when_watched(manager):
    monitor = ProcessMonitor(manager, interval=30)  # no thread: no tick can have looked
    try:
        manager.spawn(SpawnConfig(id="bare", command=SLEEP))
        manager.spawn(SpawnConfig(id="offered", command=SLEEP, ports=(1,)))
        manager.spawn(SpawnConfig(id="listens", command=SLEEP, ports=(1,)))
        monitor.watch("bare")
        monitor.watch("offered", ports_required=False)  # a port offered, not waited for
        monitor.watch("listens")  # its port must be checked first
        assert monitor.get_status("bare").health == "healthy"
        assert monitor.get_status("bare").alive
        assert monitor.get_status("offered").health == "healthy"
        assert monitor.get_status("listens").health == "unknown"
        manager.kill("bare")
        assert monitor.get_status("bare").health == "dead"
    finally:
        monitor.stop()


def test_an_adopted_server_with_no_ports_is_healthy_before_any_tick(tmp_path):
    """The first tick of the new orchestrator is held up by another server's health check."""
    hold = tmp_path / "hold"
    check = [PY, "-c", f"import os, time\nwhile os.path.exists({str(hold)!r}): time.sleep(0.01)\n"]
    state, logs = tmp_path / "state.json", tmp_path / "logs"

    def make() -> ServerOrchestrator:
        orch = ServerOrchestrator(state, interval=30, log_dir=logs)
        orch.register_server("worker", {"command": SLEEP})
        orch.register_server("gate", {"command": SLEEP, "health": {"command": check, "timeout": 30}})
        return orch

    first = make()
    try:
        assert first.start_server("gate").success and first.start_server("worker").success
    finally:
        first.shutdown(stop_servers=False)  # both keep running, handed over
    hold.touch()
    second = make()
    try:
        second.initialize()  # adopts both; its monitor's first tick waits on the gate's check
        worker = second.get_server("worker")
        assert worker.status == "running" and worker.pid is not None
        assert worker.health == "healthy"
        assert second.get_server("gate").health == "unknown"  # the check has not answered
    finally:
        hold.unlink()
        second.shutdown(stop_servers=True)
    wait_until(lambda: not [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == check],
               what="the gate's check to end")
