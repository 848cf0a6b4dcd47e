"""Auto-restart with real crashing processes: backoff, fatal, cancellation, stability, health."""

from __future__ import annotations

import time

from helpers import Recorder, free_port, is_gone, listener_code, python_cmd, wait_until

from procsync import ServerOrchestrator
from procsync.ports import listening_ports

CRASH = python_cmd("import sys; print('about to crash', flush=True); sys.exit(3)")


def test_backoff_delays_follow_the_formula(orch):
    rec = Recorder(orch, "process_exit", "process_started", "server_restarting")
    orch.register_server("crashy", {"command": CRASH, "autorestart": "on-failure", "max_restarts": 4,
                                    "backoff_initial": 0.1, "backoff_max": 0.3, "stable_after": 60})
    orch.start_server("crashy")
    wait_until(lambda: len(rec.named("process_exit")) == 5, 10, "five exits")
    wait_until(lambda: orch.get_server("crashy").status == "fatal", 10, "fatal")
    exits = [t for t, _ in rec.named("process_exit")]
    starts = [t for t, _ in rec.named("process_started")]
    assert len(exits) == 5 and len(starts) == 5
    waits = [starts[k + 1] - exits[k] for k in range(4)]
    expected = [0.0, 0.1, 0.2, 0.3]  # k=1 at once, then 0.1 * 2**(k-2), capped at 0.3
    # The recorder hears process_exit after the orchestrator's own receiver, which may
    # already have started the immediate first restart: a few ms "before" the exit.
    for got, want in zip(waits, expected, strict=True):
        assert want - 0.05 <= got <= want + 0.25, (waits, expected)
    restarting = [p for _, p in rec.named("server_restarting")]
    assert [p["attempt"] for p in restarting] == [1, 2, 3, 4]
    assert [p["delay"] for p in restarting] == expected
    assert all(p["reason"] == "crashed with exit code 3" and p["pid"] for p in restarting)


def test_fatal_after_max_restarts(orch):
    rec = Recorder(orch, "server_fatal")
    orch.register_server("crashy", {"command": CRASH, "autorestart": "always", "max_restarts": 2,
                                    "backoff_initial": 0.05})
    orch.start_server("crashy")
    wait_until(lambda: rec.named("server_fatal"), 10, "server_fatal")
    status = orch.get_server("crashy")
    assert status.status == "fatal" and not status.running and status.last_exit_code == 3
    assert status.message == "fatal: crashed 3 times in a row, last exit code 3"
    payload = rec.named("server_fatal")[0][1]
    assert payload["id"] == "crashy" and payload["restarts"] == 2 and payload["exit_code"] == 3
    history = orch.history("crashy")
    assert history[0].event == "fatal"
    crashed = [e for e in history if e.event == "crashed"]
    assert len(crashed) == 3 and crashed[0].reason == "crashed with exit code 3"
    assert crashed[0].log_tail and crashed[0].log_tail[-1] == "about to crash"
    assert orch.store.get_process("crashy").status == "fatal"
    # a start by request starts afresh
    orch.register_server("crashy", {"command": python_cmd("import time; time.sleep(60)"),
                                    "autorestart": "always"})
    assert orch.start_server("crashy").success
    assert orch.get_server("crashy").restarts == 0


def test_stop_cancels_a_pending_restart(orch):
    rec = Recorder(orch, "server_restarting", "process_started")
    orch.register_server("crashy", {"command": CRASH, "autorestart": "on-failure", "max_restarts": 5,
                                    "backoff_initial": 1.0})
    orch.start_server("crashy")
    # first restart is immediate, the second waits 1 s: stop during that wait
    wait_until(lambda: len(rec.named("server_restarting")) >= 2, 10, "second restart scheduled")
    assert orch.get_server("crashy").status == "backoff"
    result = orch.stop_server("crashy")
    assert result.success and "cancelled" in result.message
    started = len(rec.named("process_started"))
    time.sleep(1.3)  # past the cancelled restart's due time: nothing may start
    assert len(rec.named("process_started")) == started
    assert orch.get_server("crashy").status == "stopped"
    assert orch.history("crashy")[0].event == "stopped"


def test_manual_start_cancels_a_pending_restart(orch):
    rec = Recorder(orch, "server_restarting", "process_started")
    orch.register_server("crashy", {"command": CRASH, "autorestart": "on-failure",
                                    "backoff_initial": 1.0})
    orch.start_server("crashy")
    wait_until(lambda: len(rec.named("server_restarting")) >= 2, 10, "second restart scheduled")
    orch.register_server("crashy", {"command": python_cmd("import time; time.sleep(60)"),
                                    "autorestart": "on-failure", "backoff_initial": 1.0})
    result = orch.start_server("crashy")
    assert result.success
    started = len(rec.named("process_started"))
    time.sleep(1.3)
    assert len(rec.named("process_started")) == started
    assert orch.get_server("crashy").pid == result.pid


def test_policy_no_and_clean_exit_under_on_failure(orch):
    orch.register_server("once", {"command": CRASH})
    orch.register_server("clean", {"command": python_cmd("pass"), "autorestart": "on-failure"})
    orch.start_server("once")
    orch.start_server("clean")
    wait_until(lambda: orch.get_server("once").status == "crashed", 5, "crashed")
    wait_until(lambda: orch.get_server("clean").status == "exited", 5, "exited")
    assert orch.get_server("once").restarts == 0 and orch.get_server("clean").restarts == 0


def test_always_restarts_a_clean_exit_and_a_kill(orch):
    code = "import time; time.sleep(0.2)"
    orch.register_server("tick", {"command": python_cmd(code), "autorestart": "always",
                                  "max_restarts": 2, "backoff_initial": 0.05})
    orch.start_server("tick")
    wait_until(lambda: orch.get_server("tick").status == "fatal", 10, "fatal")
    assert "exited 3 times in a row, last exit code 0" in orch.get_server("tick").message


def test_restart_count_resets_after_stable_after(orch):
    marker_code = (
        "import os, sys, time, pathlib\n"
        "p = pathlib.Path(os.environ['MARK'])\n"
        "n = int(p.read_text()) if p.exists() else 0\n"
        "p.write_text(str(n + 1))\n"
        "if n < 2: sys.exit(1)\n"
        "time.sleep(60)\n"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        orch.register_server("flaky", {"command": python_cmd(marker_code), "env": {"MARK": f"{d}/n"},
                                       "autorestart": "on-failure", "backoff_initial": 0.05,
                                       "stable_after": 0.3})
        orch.start_server("flaky")
        wait_until(lambda: orch.get_server("flaky").restarts == 2 and
                   orch.get_server("flaky").status == "running", 5, "two restarts, then up")
        message = orch.get_server("flaky").message
        assert message == "restarted (attempt 2 of 5) after: crashed with exit code 1"
        wait_until(lambda: orch.get_server("flaky").restarts == 0, 5, "count reset after 0.3 s up")
        wait_until(lambda: orch.store.get_process("flaky").restarts == 0, 5, "reset stored")


def test_auto_restart_waits_for_the_old_tree_and_port(orch, tmp_path):
    """The leader crashes while its child (ignoring SIGTERM) still holds the port: the restart
    waits until that child is gone and the port is free, then binds it."""
    port = free_port()
    marker = tmp_path / "second-run"
    child = (
        "import signal, socket, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen(16)\n"
        "time.sleep(60)\n"
    )
    code = (
        "import pathlib, socket, subprocess, sys, time\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "if marker.exists():\n"
        f"    exec({listener_code(port)!r})\n"
        "marker.write_text('x')\n"
        f"subprocess.Popen([sys.executable, '-c', {child!r}])\n"
        "while True:\n"
        "    try:\n"
        f"        socket.create_connection(('127.0.0.1', {port}), 0.1).close(); break\n"
        "    except OSError: time.sleep(0.01)\n"
        "sys.exit(1)\n"
    )
    rec = Recorder(orch, "process_started", "process_exit")
    orch.register_server("web", {"command": python_cmd(code), "ports": [port], "autorestart": "on-failure",
                                 "max_restarts": 1, "stop_timeout": 0.5, "start_timeout": 5})
    orch.start_server("web", wait=False)
    wait_until(lambda: len(rec.named("process_started")) == 2, 10, "restarted")
    wait_until(lambda: orch.get_server("web").status == "running", 10, "second run ready")
    crash_at = rec.named("process_exit")[0][0]
    restart_at = rec.named("process_started")[1][0]
    assert restart_at - crash_at >= 0.4  # the orphaned child held the port for the stop timeout
    second = rec.named("process_started")[1][1]["pid"]
    assert listening_ports()[port] == second
    assert orch.get_server("web").restarts == 1


def test_unresponsive_server_is_restarted_under_its_policy(tmp_path):
    port = free_port()
    # accepts connections only for its first 0.6 s, then closes the socket but keeps running
    code = (
        "import socket, time\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen(16)\n"
        "time.sleep(0.6); s.close(); time.sleep(60)\n"
    )
    orch = ServerOrchestrator(tmp_path / "state.json", interval=0.1, log_dir=tmp_path / "logs",
                              port_timeout=0.2, unresponsive_after=2)
    try:
        orch.initialize()
        rec = Recorder(orch, "server_restarting")
        orch.register_server("hang", {"command": python_cmd(code), "ports": [port],
                                      "autorestart": "on-failure", "start_timeout": 5})
        first = orch.start_server("hang")
        assert first.success
        wait_until(lambda: rec.named("server_restarting"), 10, "restart after failed health checks")
        payload = rec.named("server_restarting")[0][1]
        assert payload["reason"] == "health check failed" and payload["pid"] == first.pid
        wait_until(lambda: is_gone(first.pid), 5, "old process killed")
    finally:
        orch.shutdown(stop_servers=True)
