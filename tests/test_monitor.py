"""ProcessMonitor against a real ProcessManager, real processes, ports and signals.

The monitor's logic is driven through check_now() (one tick in the test's
thread); the daemon thread is only started where the thread itself is
under test.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from datetime import UTC, datetime

import psutil
import pytest
from helpers import (
    HTTP_SERVER,
    PY,
    free_port,
    is_gone,
    listener_code,
    python_cmd,
    wait_until,
)

from procsync import ConfigError, ProcessManager, ProcessMonitor, SpawnConfig, signals
from procsync import monitor as monitor_module
from procsync.config import HealthCheck
from procsync.records import ProcessInfo

SLEEPER = python_cmd("import time; time.sleep(60)")
BUSY = python_cmd("while True: pass")


@pytest.fixture
def monitor(manager):
    mon = ProcessMonitor(manager, interval=0.1, port_timeout=0.3, unresponsive_after=3)
    try:
        yield mon
    finally:
        mon.stop()


class Recorder:
    """Collects the monitor's signals as (name, payload) pairs."""

    NAMES = ("health_check", "status_change", "process_died")

    def __init__(self, sender: object) -> None:
        self.sender = sender
        self.events: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._receivers = {}
        for name in self.NAMES:
            def receive(sender, _name=name, **payload):
                with self._lock:
                    self.events.append((_name, payload))
            self._receivers[name] = receive
            signals.get(name).connect(receive, sender=sender, weak=False)

    def of(self, name: str) -> list[dict]:
        with self._lock:
            return [payload for event, payload in self.events if event == name]

    def changes(self, id: str) -> list[tuple[str, str]]:
        return [(p["previous"], p["current"]) for p in self.of("status_change") if p["id"] == id]

    def close(self) -> None:
        for name, receive in self._receivers.items():
            signals.get(name).disconnect(receive, sender=self.sender)


@pytest.fixture
def events(monitor):
    recorder = Recorder(monitor)
    try:
        yield recorder
    finally:
        recorder.close()


def spawn(manager: ProcessManager, id: str, command: list[str], ports=()) -> ProcessInfo:
    return manager.spawn(SpawnConfig(id=id, command=command, ports=tuple(ports)))


def status_of(monitor: ProcessMonitor, id: str):
    return next(s for s in monitor.check_now() if s.id == id)


def listening(manager: ProcessManager, id: str, port: int, ports=None) -> ProcessInfo:
    info = spawn(manager, id, python_cmd(listener_code(port)), ports if ports is not None else (port,))
    wait_until(lambda: _accepts(port), 10, f"{id} listening on {port}")
    return info


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


# ------------------------------------------------------------------ ports and liveness


def test_open_and_closed_ports(manager, monitor):
    open_port, closed_port = free_port(), free_port()
    info = listening(manager, "web", open_port, ports=(open_port, closed_port))
    status = status_of(monitor, "web")
    assert status.pid == info.pid and status.alive
    assert status.ports == {open_port: True, closed_port: False}
    assert status.health == "unhealthy"
    assert status.error == f"port {closed_port}: refused"
    assert status.consecutive_failures == 1


def test_all_ports_open_is_healthy_and_no_ports_means_alive_is_healthy(manager, monitor):
    port = free_port()
    listening(manager, "web", port)
    spawn(manager, "worker", SLEEPER)
    statuses = {s.id: s for s in monitor.check_now()}
    assert statuses["web"].health == "healthy" and statuses["web"].ports == {port: True}
    assert statuses["worker"].health == "healthy" and statuses["worker"].ports == {}
    assert statuses["worker"].memory_rss > 0
    assert statuses["web"].last_check is not None and statuses["web"].last_check.tzinfo is not None
    assert monitor.get_status("web") == statuses["web"]
    assert sorted(s.id for s in monitor.get_all_statuses()) == ["web", "worker"]
    wait_until(lambda: status_of(monitor, "worker").memory_rss > 1_000_000, 10,
               "the interpreter's memory to show")  # a just-spawned process may still be exec'ing


def test_hanging_port_is_closed_and_does_not_stall_the_others(manager, monitor, hanging_port):
    port = free_port()
    listening(manager, "web", port)
    spawn(manager, "stuck", SLEEPER, ports=(hanging_port,))
    statuses = {s.id: s for s in monitor.check_now()}
    assert statuses["stuck"].ports == {hanging_port: False}
    assert statuses["stuck"].health == "unhealthy"
    assert statuses["stuck"].error == f"port {hanging_port}: timed out after 0.3s"
    assert statuses["web"].health == "healthy"


def test_status_before_the_first_tick_is_unknown(manager, monitor, events):
    info = spawn(manager, "worker", SLEEPER)
    early = monitor.get_status("worker")
    assert (early.pid, early.health, early.last_check) == (info.pid, "unknown", None)
    assert monitor.get_status("nobody") is None
    monitor.check_now()
    assert events.changes("worker") == [("unknown", "healthy")]


def test_a_reused_pid_is_dead():
    """The real manager never hands out a record whose pid was reused, so this one is made up."""
    me = psutil.Process()
    reused = ProcessInfo(id="ghost", pid=me.pid, pgid=os.getpgid(0), command="ghost", cwd=None,
                         start_time=datetime.now(UTC),
                         create_time=me.create_time() - 100.0)

    class Records:
        def get_all_processes(self):
            return [reused]

        def get_process(self, id):
            return reused if id == "ghost" else None

    mon = ProcessMonitor(Records())
    status = mon.check_now()[0]
    assert (status.alive, status.health) == (False, "dead")


# ------------------------------------------------------------------ health checks


def test_http_check(manager, monitor):
    port = free_port()
    spawn(manager, "api", python_cmd(HTTP_SERVER) + [str(port)], ports=(port,))
    wait_until(lambda: _accepts(port), 10, "the http server")
    monitor.watch("api", health=HealthCheck(http=f"http://127.0.0.1:{port}/"))
    assert status_of(monitor, "api").health == "healthy"
    monitor.watch("api", health={"http": f"http://127.0.0.1:{port}/bad"})
    status = status_of(monitor, "api")
    assert status.health == "unhealthy"
    assert status.error == f"GET http://127.0.0.1:{port}/bad: status 500"
    assert status.ports == {port: True}


def test_tcp_check_decides_over_ports(manager, monitor):
    port, closed = free_port(), free_port()
    listening(manager, "db", port, ports=(closed,))
    monitor.watch("db", health=HealthCheck(tcp=port))
    status = status_of(monitor, "db")
    assert status.health == "healthy"
    assert status.ports == {closed: False}  # probed and reported, but the check decides
    monitor.watch("db", health=HealthCheck(tcp=closed, timeout=0.5))
    status = status_of(monitor, "db")
    assert (status.health, status.error) == ("unhealthy", f"tcp port {closed}: refused")


def test_command_check(manager, monitor, tmp_path):
    flag = tmp_path / "ok"
    spawn(manager, "job", SLEEPER)
    code = f"import os, sys; sys.exit(0 if os.path.exists({str(flag)!r}) else 4)"
    monitor.watch("job", health=HealthCheck(command=python_cmd(code), timeout=5))
    status = status_of(monitor, "job")
    assert status.health == "unhealthy" and status.error == f"command {PY!r} exited with 4"
    flag.write_text("yes")
    assert status_of(monitor, "job").health == "healthy"


def test_command_check_timeout(manager, monitor):
    spawn(manager, "job", SLEEPER)
    monitor.watch("job", health=HealthCheck(command=SLEEPER, timeout=0.3))
    status = status_of(monitor, "job")
    assert (status.health, status.error) == ("unhealthy", f"command {PY!r}: timed out after 0.3s")
    # the leak guard fails this test if the timed-out check command were still alive


def test_unresponsive_after_n_failing_ticks_then_recovery(manager, monitor, events, tmp_path):
    flag = tmp_path / "ok"
    spawn(manager, "job", SLEEPER)
    code = f"import os, sys; sys.exit(0 if os.path.exists({str(flag)!r}) else 1)"
    monitor.watch("job", health=HealthCheck(command=python_cmd(code), timeout=5))
    seen = [(s.health, s.consecutive_failures) for s in (status_of(monitor, "job") for _ in range(4))]
    assert seen == [("unhealthy", 1), ("unhealthy", 2), ("unresponsive", 3), ("unresponsive", 4)]
    flag.write_text("yes")
    status = status_of(monitor, "job")
    assert (status.health, status.consecutive_failures, status.error) == ("healthy", 0, None)
    assert events.changes("job") == [
        ("unknown", "unhealthy"), ("unhealthy", "unresponsive"), ("unresponsive", "healthy"),
    ]


def test_start_timeout_keeps_a_young_process_from_being_unresponsive(manager, monitor):
    spawn(manager, "slow", SLEEPER, ports=(free_port(),))
    monitor.watch("slow", start_timeout=60)
    healths = [status_of(monitor, "slow").health for _ in range(4)]
    assert healths == ["unhealthy"] * 4
    monitor.watch("slow", start_timeout=0)
    status = status_of(monitor, "slow")
    assert (status.health, status.consecutive_failures) == ("unresponsive", 5)


def test_internal_error_in_one_check_marks_it_unknown_and_the_tick_goes_on(manager, monitor, monkeypatch):
    spawn(manager, "broken", SLEEPER)
    spawn(manager, "fine", SLEEPER)
    monitor.watch("broken", health=HealthCheck(command=["true"]))
    real = monitor_module.run_health_check

    def flaky(check, timeout=None):
        if check.command == ("true",):
            raise RuntimeError("probe exploded")
        return real(check, timeout)

    monkeypatch.setattr(monitor_module, "run_health_check", flaky)
    statuses = {s.id: s for s in monitor.check_now()}
    assert statuses["broken"].health == "unknown"
    assert statuses["broken"].error == "health check failed: RuntimeError: probe exploded"
    assert statuses["fine"].health == "healthy"


# ------------------------------------------------------------------ resources


def test_cpu_percent_counts_a_busy_grandchild(manager, monitor):
    code = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
        "time.sleep(60)\n"
    )
    info = spawn(manager, "parent", python_cmd(code))
    wait_until(lambda: psutil.Process(info.pid).children(), 10, "the busy grandchild")
    monitor.check_now()  # first sight: the baseline
    status = wait_until(
        lambda: (s := status_of(monitor, "parent")).cpu_percent > 10 and s, 10, "cpu_percent > 10"
    )
    own = psutil.Process(info.pid).memory_info().rss
    assert status.memory_rss > own  # the tree, not just the parent


def test_cpu_percent_of_a_busy_child(manager, monitor):
    spawn(manager, "busy", BUSY)
    monitor.check_now()
    wait_until(lambda: status_of(monitor, "busy").cpu_percent > 10, 10, "cpu_percent > 10")


# ------------------------------------------------------------------ deaths


def test_outside_kill_reported_by_the_manager_is_not_reported_twice(manager, monitor, events):
    port = free_port()
    info = listening(manager, "web", port)
    assert status_of(monitor, "web").health == "healthy"
    exits = []

    def on_exit(sender, **payload):
        exits.append(payload)

    signals.process_exit.connect(on_exit, sender=manager, weak=False)
    try:
        os.kill(info.pid, signal.SIGKILL)
        wait_until(lambda: exits, 10, "the manager's process_exit")
    finally:
        signals.process_exit.disconnect(on_exit, sender=manager)
    assert monitor.get_status("web").health == "dead"  # marked at once on process_exit
    status = status_of(monitor, "web")
    assert (status.alive, status.health, status.ports) == (False, "dead", {})
    assert events.changes("web") == [("unknown", "healthy"), ("healthy", "dead")]
    assert events.of("process_died") == []


def test_process_died_when_nobody_else_reported_it(tmp_path):
    mgr = ProcessManager(log_dir=tmp_path / "logs")
    mon = ProcessMonitor(mgr, port_timeout=0.3)
    events = Recorder(mon)
    info = spawn(mgr, "worker", SLEEPER)
    try:
        assert status_of(mon, "worker").alive
        mgr.close()  # its watcher stops: this death is the monitor's to find
        os.kill(info.pid, signal.SIGKILL)
        wait_until(lambda: is_gone(info.pid), 5, "the kill")  # a zombie: nobody reaps it now
        status = status_of(mon, "worker")
        assert (status.alive, status.health) == (False, "dead")
        died = events.of("process_died")
        assert [(p["id"], p["pid"]) for p in died] == [("worker", info.pid)]
        assert died[0]["exit_code"] in (None, -signal.SIGKILL)  # -9 once the manager has reaped it
        assert events.changes("worker") == [("unknown", "healthy"), ("healthy", "dead")]
        mon.check_now()
        assert len(events.of("process_died")) == 1  # once, not every tick
    finally:
        events.close()
        mgr.close()
        try:
            os.kill(info.pid, signal.SIGKILL)
            os.waitpid(info.pid, 0)  # the closed manager no longer reaps its child
        except (ProcessLookupError, ChildProcessError):
            pass


def test_ended_records_are_dead_without_process_died(manager, monitor, events):
    info = spawn(manager, "once", python_cmd("pass"))
    wait_until(lambda: not manager.is_running("once"), 10, "the short process to end")
    assert monitor.get_status("once").health == "dead"  # known from the manager before any tick
    status = status_of(monitor, "once")
    assert (status.pid, status.alive, status.health) == (info.pid, False, "dead")
    assert events.of("process_died") == []
    manager.forget("once")
    assert monitor.check_now() == [] and monitor.get_status("once") is None


# ------------------------------------------------------------------ watch / unwatch


def test_unwatch_drops_a_process_until_watched_again(manager, monitor):
    spawn(manager, "worker", SLEEPER)
    monitor.check_now()
    monitor.unwatch("worker")
    assert monitor.get_status("worker") is None
    assert [s.id for s in monitor.check_now()] == []
    monitor.watch("worker")
    assert [s.id for s in monitor.check_now()] == ["worker"]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"health": "http://x"}, "health"),
        ({"health": {"http": "ftp://x"}}, "health.http"),
        ({"start_timeout": -1}, "start_timeout"),
        ({"start_timeout": "5"}, "start_timeout"),
    ],
)
def test_watch_rejects_bad_config(monitor, kwargs, field):
    with pytest.raises(ConfigError) as err:
        monitor.watch("web", **kwargs)
    assert err.value.field == field and "'web'" in str(err.value)


def test_watch_rejects_bad_id(monitor):
    with pytest.raises(ConfigError, match="id"):
        monitor.watch("no spaces please")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"interval": -1}, "interval"),
        ({"interval": float("nan")}, "interval"),
        ({"port_timeout": -1}, "port_timeout"),
        ({"unresponsive_after": 0}, "unresponsive_after"),
        ({"unresponsive_after": 1.5}, "unresponsive_after"),
    ],
)
def test_constructor_rejects_bad_values(manager, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ProcessMonitor(manager, **kwargs)


# ------------------------------------------------------------------ signals and the thread


def test_health_check_is_sent_once_per_tick(manager, monitor, events):
    spawn(manager, "worker", SLEEPER)
    statuses = monitor.check_now()
    assert [p["statuses"] for p in events.of("health_check")] == [statuses]


def test_thread_ticks_on_its_own(manager, monitor, events):
    spawn(manager, "worker", SLEEPER)
    monitor.start(0.05)
    monitor.start()  # idempotent: still one thread
    assert monitor.running
    wait_until(lambda: len(events.of("health_check")) >= 3, 10, "three ticks")
    assert [t.name for t in threading.enumerate()].count("procsync-monitor") == 1
    assert monitor.get_status("worker").health == "healthy"


def test_a_raising_receiver_is_logged_and_the_thread_goes_on(manager, monitor, events, caplog):
    def explode(sender, **payload):
        raise RuntimeError("receiver bug")

    signals.health_check.connect(explode, sender=monitor, weak=False)
    try:
        with caplog.at_level(logging.ERROR, logger="procsync.signals"):
            monitor.start(0.05)
            wait_until(lambda: len(events.of("health_check")) >= 3, 10, "three ticks despite the bug")
    finally:
        signals.health_check.disconnect(explode, sender=monitor)
    assert monitor.running
    logged = [r for r in caplog.records if "receiver bug" in str(r.exc_info and r.exc_info[1])]
    assert logged and logged[0].exc_info is not None  # with its traceback


def _connecting_to(port: int) -> bool:
    """True while this process has a TCP connect to `port` in flight."""
    return any(
        c.raddr and c.raddr.port == port and c.status == psutil.CONN_SYN_SENT
        for c in psutil.Process().net_connections(kind="tcp")
    )


def test_stop_returns_quickly_mid_tick(manager, hanging_port):
    spawn(manager, "stuck", SLEEPER, ports=(hanging_port,))
    mon = ProcessMonitor(manager, interval=60, port_timeout=30)
    try:
        mon.start()
        wait_until(lambda: _connecting_to(hanging_port), 10, "the tick to be waiting on the port")
        started = time.monotonic()
        mon.stop()
        assert time.monotonic() - started < 1.0
        assert not mon.running
        wait_until(lambda: "procsync-monitor" not in [t.name for t in threading.enumerate()], 2,
                   "the thread to end")
    finally:
        mon.stop()


def test_stop_returns_quickly_mid_interval(manager, monitor, events):
    monitor.start(60)
    wait_until(lambda: events.of("health_check"), 10, "the first tick")
    started = time.monotonic()
    monitor.stop()
    monitor.stop()  # twice is fine
    assert time.monotonic() - started < 1.0
    wait_until(lambda: "procsync-monitor" not in [t.name for t in threading.enumerate()], 2,
               "the thread to end")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, True])
def test_interval_must_be_finite_and_positive(value):
    """An infinite interval would silently stop the monitor thread's ticks: refused up front."""
    manager = ProcessManager()
    with pytest.raises(ValueError, match="interval"):
        ProcessMonitor(manager, interval=value)
    monitor = ProcessMonitor(manager, interval=1.0)
    with pytest.raises(ValueError, match="interval"):
        monitor.start(interval=value)
    monitor.stop()


def test_interval_zero_runs_no_thread_and_exits_are_still_seen(manager):
    """Checks off: no monitor thread at all; the manager's watcher still reports an exit at once."""
    monitor = ProcessMonitor(manager, interval=0)
    recorder = Recorder(monitor)
    try:
        monitor.start()
        assert not monitor.running
        assert "procsync-monitor" not in [t.name for t in threading.enumerate()]
        info = spawn(manager, "worker", SLEEPER)
        assert monitor.check_now()[0].health == "healthy"  # on demand, still
        os.kill(info.pid, signal.SIGKILL)
        wait_until(lambda: monitor.get_status("worker").health == "dead", 5, "the exit seen")
        assert recorder.changes("worker") == [("unknown", "healthy"), ("healthy", "dead")]
        assert len(recorder.of("health_check")) == 1  # the one check_now(): nothing periodic
        assert not monitor.running
    finally:
        recorder.close()
        monitor.stop()


def test_start_with_interval_zero_stops_a_running_thread(manager, monitor):
    monitor.start(0.05)
    assert monitor.running
    monitor.start(0)
    assert not monitor.running and monitor.interval == 0
    wait_until(lambda: "procsync-monitor" not in [t.name for t in threading.enumerate()], 2,
               "the thread to end")
