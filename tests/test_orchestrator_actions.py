"""start / stop / restart with real processes: readiness, refusals, store, logs, threads."""

from __future__ import annotations

import os
import threading
import time

import psutil
import pytest
from helpers import PY, free_port, is_gone, listener_code, python_cmd, wait_until

from procsync import ServerOrchestrator
from procsync.health import port_open
from procsync.ports import listening_ports


def sleeper(seconds: float = 60) -> list[str]:
    return python_cmd(f"import time; time.sleep({seconds})")


# ------------------------------------------------------------------ start


def test_start_waits_for_the_port_and_reports_ready(orch):
    port = free_port()
    orch.register_server("web", {"command": python_cmd(listener_code(port, delay=0.3)), "ports": [port]})
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(orch.get_server("web").status)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = orch.start_server("web")
    finally:
        stop.set()
        watcher.join()
    assert result.success, result.message
    assert port_open(port, timeout=0.5)  # ready means the port accepts right now
    assert "starting" in seen
    status = orch.get_server("web")
    assert status.status == "running" and status.running and status.pid == result.pid
    assert status.health == "healthy"
    assert status.uptime is not None and status.uptime >= 0


def test_start_without_checks_runs_at_once(orch):
    orch.register_server("worker", {"command": sleeper()})
    result = orch.start_server("worker")
    assert result.success and result.pid
    assert orch.get_server("worker").status == "running"
    assert psutil.pid_exists(result.pid)


def test_start_with_wait_false_returns_then_becomes_running(orch):
    port = free_port()
    orch.register_server("web", {"command": python_cmd(listener_code(port, delay=0.2)), "ports": [port]})
    result = orch.start_server("web", wait=False)
    assert result.success and result.pid
    assert orch.get_server("web").status == "starting"
    wait_until(lambda: orch.get_server("web").status == "running", 5, "ready in background")


def test_start_health_check_http(orch, tmp_path):
    port = free_port()
    orch.register_server("http", {
        "command": [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        "cwd": str(tmp_path), "ports": [port],
        "health": {"http": f"http://127.0.0.1:{port}/"},
    })
    result = orch.start_server("http")
    assert result.success, result.message
    assert orch.get_server("http").health == "healthy"


def test_start_refuses_already_running(orch):
    orch.register_server("worker", {"command": sleeper()})
    first = orch.start_server("worker")
    again = orch.start_server("worker")
    assert not again.success and again.code == "already_running"
    assert "already running" in again.message and str(first.pid) in again.message


def test_exit_during_start_reports_code_and_log(orch):
    port = free_port()
    code = "import sys\nfor i in range(30): print('line', i)\nsys.stdout.flush()\nsys.exit(7)"
    orch.register_server("bad", {"command": python_cmd(code), "ports": [port], "start_timeout": 10})
    result = orch.start_server("bad")
    assert not result.success and result.code == "start_failed"
    assert "exit code 7" in result.message
    assert "line 29" in result.message and "line 10" in result.message
    assert "line 9\n" not in result.message  # only the last 20 lines
    status = orch.get_server("bad")
    assert status.status == "crashed" and status.last_exit_code == 7
    assert "crashed with exit code 7" in status.message


def test_start_timeout_leaves_process_running_and_unhealthy(tmp_path):
    # The monitor's own ticks would, after `unresponsive_after` of them, rightly
    # move the health on to "unresponsive"; a long interval leaves only the
    # start's verdict to read, however slowly this machine runs.
    orch = ServerOrchestrator(tmp_path / "state.json", interval=60, log_dir=tmp_path / "logs")
    try:
        port = free_port()
        orch.register_server("slow", {"command": sleeper(), "ports": [port], "start_timeout": 0.3})
        result = orch.start_server("slow")
        assert not result.success and result.code == "start_timeout"
        assert "left running" in result.message
        status = orch.get_server("slow")
        assert status.status == "running" and status.running and status.health == "unhealthy"
        assert psutil.pid_exists(result.pid)
    finally:
        orch.shutdown(stop_servers=True)


def test_start_refuses_port_held_by_another_process(orch, outsider):
    port = free_port()
    holder = outsider(listener_code(port), port)
    orch.register_server("web", {"command": python_cmd(listener_code(port)), "ports": [port]})
    result = orch.start_server("web")
    assert not result.success and result.code == "port_in_use"
    assert f"port {port}" in result.message and f"pid {holder.pid}" in result.message
    assert "python" in result.message  # the process name
    assert orch.get_server("web").status == "stopped"
    assert orch.manager.get_process("web") is None  # nothing was spawned


def test_start_refuses_missing_cwd(orch, tmp_path):
    orch.register_server("w", {"command": sleeper(), "cwd": str(tmp_path / "nope")})
    result = orch.start_server("w")
    assert not result.success and result.code == "bad_config"
    assert "cwd" in result.message and "nope" in result.message


def test_start_reports_a_missing_executable(orch):
    orch.register_server("w", {"command": ["/nonexistent/binary"]})
    result = orch.start_server("w")
    assert not result.success and result.code == "start_failed"
    assert "not found" in result.message
    assert orch.get_server("w").status == "stopped"


def test_fifty_threads_starting_one_server_give_one_process(orch):
    port = free_port()
    orch.register_server("web", {"command": python_cmd(listener_code(port, delay=0.1)), "ports": [port]})
    barrier = threading.Barrier(50)
    results = []
    lock = threading.Lock()

    def go() -> None:
        barrier.wait()
        r = orch.start_server("web")
        with lock:
            results.append(r)

    threads = [threading.Thread(target=go) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [r for r in results if r.success]
    refused = [r for r in results if not r.success]
    assert len(ok) == 1 and len(refused) == 49
    assert all(r.code == "already_running" for r in refused)
    assert all("already" in r.message for r in refused)
    children = [p for p in psutil.Process().children() if p.status() != psutil.STATUS_ZOMBIE]
    assert [p.pid for p in children] == [ok[0].pid]


# ------------------------------------------------------------- stop/restart


def test_stop_kills_the_whole_tree(orch):
    port = free_port()
    code = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', {listener_code(port)!r}])\n"
        "time.sleep(60)\n"
    )
    orch.register_server("tree", {"command": python_cmd(code), "ports": [port], "stop_timeout": 2})
    started = orch.start_server("tree")
    assert started.success, started.message
    child = listening_ports()[port]
    result = orch.stop_server("tree")
    assert result.success and "stopped" in result.message
    assert is_gone(started.pid) and is_gone(child)
    status = orch.get_server("tree")
    assert status.status == "stopped" and not status.running and status.pid is None
    again = orch.stop_server("tree")
    assert not again.success and again.code == "already_stopped"


def test_restart_gives_a_new_process_on_the_same_port(orch):
    port = free_port()
    orch.register_server("web", {"command": python_cmd(listener_code(port)), "ports": [port]})
    first = orch.start_server("web")
    second = orch.restart_server("web")
    assert second.success, second.message
    assert second.pid != first.pid and is_gone(first.pid)
    assert listening_ports()[port] == second.pid
    events = [e.event for e in orch.history("web")]
    assert events[:3] == ["started", "restarting", "started"]
    assert orch.history("web")[1].reason == "restarted by request"


def test_restart_of_a_stopped_server_starts_it(orch):
    orch.register_server("w", {"command": sleeper()})
    result = orch.restart_server("w")
    assert result.success and orch.get_server("w").status == "running"


# ------------------------------------------------------------ store, status


def test_every_state_change_is_in_the_store(orch):
    orch.register_server("w", {"command": sleeper(), "env": {"SECRET": "x", "MODE": "y"}})
    started = orch.start_server("w")
    stored = orch.store.get_process("w")
    assert stored.status == "running" and stored.pid == started.pid
    assert stored.create_time == pytest.approx(psutil.Process(started.pid).create_time(), abs=0.01)
    assert stored.pgid == started.pid
    orch.stop_server("w")
    stored = orch.store.get_process("w")
    assert stored.status == "stopped" and stored.exit_code == -15
    history = orch.history("w")
    assert [e.event for e in history[:2]] == ["stopped", "started"]
    assert history[0].reason == "stopped by request"
    status = orch.get_server("w")
    assert status.env_keys == ("SECRET", "MODE")
    assert "x" not in repr(status.to_dict()["env_keys"])


def test_status_uses_the_callers_port_scan(orch):
    port = free_port()
    orch.register_server("web", {"command": sleeper(), "ports": [port]})
    me = os.getppid()  # a live process that procsync does not track
    statuses = orch.get_server_status(current_ports={port: me})
    assert statuses[0].orphaned and statuses[0].orphaned_pid == me
    assert not orch.get_server_status(current_ports={})[0].orphaned


def test_status_has_monitor_figures(orch):
    orch.initialize()
    orch.register_server("w", {"command": python_cmd("x = b'x' * 20_000_000\nimport time\ntime.sleep(60)")})
    orch.start_server("w")
    status = wait_until(lambda: (s := orch.get_server("w")).memory_rss > 10_000_000 and s, 5, "memory")
    assert status.health == "healthy" and status.cpu_percent >= 0


def test_tail_log_reads_across_rotation(orch, tmp_path):
    log_file = tmp_path / "w.log"
    orch.register_server("w", {"command": python_cmd("print('new1'); print('new2', flush=True)"),
                               "log_file": str(log_file)})
    log_file.with_name("w.log.1").write_text("".join(f"old{i}\n" for i in range(500)))
    orch.start_server("w")
    wait_until(lambda: orch.get_server("w").status == "exited", 5, "worker exits")
    assert orch.tail_log("w", 2) == ["new1", "new2"]
    assert orch.tail_log("w", 4) == ["old498", "old499", "new1", "new2"]
    assert orch.log_path("w") == str(log_file)


def test_server_started_and_stopped_signals(orch):
    got = []
    orch.on("server_started", lambda sender, **p: got.append(("started", p["id"], p["pid"])))
    orch.on("server_stopped", lambda sender, **p: got.append(("stopped", p["id"], p["pid"])))
    orch.on("process_exit", lambda sender, **p: got.append(("exit", p["id"], p["pid"])))
    orch.register_server("w", {"command": sleeper()})
    pid = orch.start_server("w").pid
    orch.stop_server("w")
    assert ("started", "w", pid) in got and ("stopped", "w", pid) in got and ("exit", "w", pid) in got


def test_start_all_and_stop_all_in_parallel(orch):
    ports = [free_port() for _ in range(3)]
    for i, port in enumerate(ports):
        orch.register_server(f"s{i}", {"command": python_cmd(listener_code(port, 0.2)), "ports": [port]})
    started = orch.start_all()
    assert set(started) == {"s0", "s1", "s2"} and all(r.success for r in started.values())
    stopped = orch.stop_all()
    assert all(r.success for r in stopped.values())
    assert all(is_gone(r.pid) for r in started.values())


# ------------------------------------------------------------ registry changes


def test_apply_adds_removes_and_restarts_changed(orch):
    orch.register_servers({"keep": {"command": sleeper()}, "drop": {"command": sleeper()},
                           "edit": {"command": sleeper()}})
    pids = {sid: orch.start_server(sid).pid for sid in ("keep", "drop", "edit")}
    outcome = orch.apply({"keep": {"command": sleeper()}, "edit": {"command": sleeper(61)},
                          "new": {"command": sleeper()}})
    assert outcome == {"drop": "removed", "keep": "unchanged", "edit": "changed", "new": "added"}
    assert list(orch.configs) == ["keep", "edit", "new"]
    assert is_gone(pids["drop"]) and is_gone(pids["edit"])
    assert orch.get_server("keep").pid == pids["keep"]
    edited = orch.get_server("edit")
    assert edited.status == "running" and "61" in edited.command
    assert orch.get_server("new").status == "stopped"
    assert orch.store.get_process("drop") is None


def test_unregister_stops_and_forgets(orch):
    orch.register_server("w", {"command": sleeper()})
    pid = orch.start_server("w").pid
    orch.unregister_server("w")
    assert is_gone(pid) and "w" not in orch.configs


def test_add_webhook_subscribes_through_on(orch):
    hook = orch.add_webhook("http://127.0.0.1:9/hook", events=["server_started"])
    assert hook.url == "http://127.0.0.1:9/hook"
    assert "server_started" in hook.events


def test_mixed_actions_from_many_threads_keep_one_process_per_server(orch):
    import random

    ports = [free_port(), free_port()]
    for i, port in enumerate(ports):
        orch.register_server(f"s{i}", {"command": python_cmd(listener_code(port)), "ports": [port],
                                       "stop_timeout": 2})
    errors: list[BaseException] = []
    overlaps: list[str] = []

    def live_per_id() -> dict[str, int]:
        counts: dict[str, int] = {}
        for proc in psutil.Process().children():
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    sid = proc.environ().get("PROCSYNC_ID", "?")
                    counts[sid] = counts.get(sid, 0) + 1
            except psutil.Error:
                continue
        return counts

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            for _ in range(8):
                sid = rnd.choice(["s0", "s1"])
                action = rnd.choice([orch.start_server, orch.stop_server, orch.restart_server,
                                     lambda s: orch.get_server_status()])
                action(sid)
                counts = live_per_id()
                overlaps.extend(f"{k}={v}" for k, v in counts.items() if v > 1)
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert not overlaps
    for status in orch.get_server_status():
        if status.status == "running":
            assert listening_ports().get(status.ports[0]) == status.pid
        else:
            assert status.status == "stopped" and status.pid is None
