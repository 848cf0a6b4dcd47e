"""What one monitor tick costs, and what the monitor costs while idle.

    python bench/bench_monitor.py [--quick]

Tracked processes are real (`sleep` children spawned by a ProcessManager),
each with one port. The open ports are served by one listener child that
accepts and closes connections; the hanging ports are loopback listeners
made with listen(0) whose accept queue is full, so their SYNs are dropped.

Figures: wall and CPU time of one tick (median of a few, after a first tick
that sets the cpu_percent baselines) for 10, 100 and 500 processes with an
open port each and for 100 processes with a hanging port; then the
monitor thread's CPU use over 60 s (15 s with --quick) with 100 processes
at the default 3 s interval. Loopback traffic only; bounded well under 3 min.

    python bench/bench_monitor.py --idle 200 [--window 30]

measures instead the idle cost of the process layer as a host process pays
it: CPU seconds (psutil cpu_times, user + system, all threads) of this
process over `--window` seconds while a ProcessManager runs N `sleep`
children with no ports (its watcher and log rotator threads), once with a
ProcessMonitor at the default checks (3 s interval) and once with checks
off (interval=0: no monitor thread).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psutil

from procsync import ProcessManager, ProcessMonitor, SpawnConfig, signals
from procsync.health import check_ports

LISTENER = r"""
import selectors, socket, sys
sel = selectors.DefaultSelector()
ports = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    ports.append(s.getsockname()[1])
print(" ".join(map(str, ports)), flush=True)
while True:
    for key, _ in sel.select():
        try:
            conn, _ = key.fileobj.accept()
            conn.close()
        except BlockingIOError:
            pass
"""

TARGETS = {
    "hanging tick wall": "< 1.5 x port_timeout",
    "idle cpu": "< 1% of a core (100 processes)",
    "tick cpu per process": "< 0.3 ms",
}


def open_ports(count: int) -> tuple[subprocess.Popen[str], list[int]]:
    """One child process listening on `count` loopback ports."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LISTENER, str(count)], stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    ports = [int(p) for p in proc.stdout.readline().split()]
    if len(ports) != count:
        raise SystemExit(f"listener child gave {len(ports)} ports, wanted {count}")
    return proc, ports


def hanging_ports(count: int) -> tuple[list[socket.socket], list[int]]:
    """`count` ports whose SYNs are dropped: listen(0), accept queue filled, never accepted."""
    held: list[socket.socket] = []
    servers = {}
    for _ in range(count):
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        servers[server.getsockname()[1]] = server
        held.append(server)
    todo = list(servers)
    for _round in range(5):
        for port in todo:
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
            held.append(client)
        time.sleep(0.05)
        todo = [p for p, ok in check_ports(todo, timeout=0.2).items() if ok]
        if not todo:
            return held, list(servers)
    raise SystemExit(f"{len(todo)} ports still accept connections")


class Fleet:
    """`count` real sleep processes in a ProcessManager, one port each."""

    def __init__(self, ports: list[int], log_dir: str) -> None:
        self.manager = ProcessManager(log_dir=log_dir)
        self.pids = []
        for i, port in enumerate(ports):
            info = self.manager.spawn(SpawnConfig(id=f"p{i}", command=["sleep", "600"], ports=(port,)))
            self.pids.append(info.pid)

    def close(self) -> None:
        self.manager.close()  # stop watching first: these exits are ours to reap
        for pid in self.pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in self.pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def time_ticks(monitor: ProcessMonitor, rounds: int = 3) -> tuple[float, float, float, list]:
    """Median wall, thread-CPU and process-CPU seconds of `rounds` ticks (after a warm-up tick)."""
    statuses = monitor.check_now()
    walls, threads, procs = [], [], []
    for _ in range(rounds):
        w0, t0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
        statuses = monitor.check_now()
        walls.append(time.perf_counter() - w0)
        threads.append(time.thread_time() - t0)
        procs.append(time.process_time() - p0)
    return statistics.median(walls), statistics.median(threads), statistics.median(procs), statuses


def tick_row(label: str, count: int, ports: list[int], expect_open: bool, log_dir: str,
             rounds: int) -> tuple[str, int, float, float, float]:
    fleet = Fleet(ports[:count], log_dir)
    try:
        monitor = ProcessMonitor(fleet.manager)
        wall, thread_cpu, proc_cpu, statuses = time_ticks(monitor, rounds)
        healthy = sum(1 for s in statuses if s.health == "healthy")
        want = count if expect_open else 0
        if len(statuses) != count or healthy != want:
            raise SystemExit(f"{label}: {healthy} of {len(statuses)} healthy, expected {want}")
        return label, count, wall, thread_cpu, proc_cpu
    finally:
        fleet.close()


def monitor_thread_cpu(thread: threading.Thread) -> float:
    """CPU seconds used so far by `thread` (from the kernel's per-thread counters)."""
    for t in psutil.Process().threads():
        if t.id == thread.native_id:
            return t.user_time + t.system_time
    return 0.0


def idle_row(ports: list[int], seconds: float, log_dir: str) -> tuple[float, float, int]:
    fleet = Fleet(ports, log_dir)
    try:
        monitor = ProcessMonitor(fleet.manager)  # default interval: 3 s
        ticks = []

        def count(sender, **payload):
            ticks.append(1)

        signals.health_check.connect(count, sender=monitor)
        monitor.start()
        thread = next(t for t in threading.enumerate() if t.name == "procsync-monitor")
        time.sleep(0.5)  # past the first tick (baselines)
        c0, p0, w0 = monitor_thread_cpu(thread), time.process_time(), time.monotonic()
        time.sleep(seconds)
        c1, p1, w1 = monitor_thread_cpu(thread), time.process_time(), time.monotonic()
        monitor.stop()
        wall = w1 - w0
        return 100 * (c1 - c0) / wall, 100 * (p1 - p0) / wall, len(ticks)
    finally:
        fleet.close()


def host_cpu() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


def idle_host_row(count: int, window: float, interval: float | None, log_dir: str) -> float:
    """CPU seconds this process uses over `window` s with `count` idle children."""
    manager = ProcessManager(log_dir=log_dir)
    pids = [manager.spawn(SpawnConfig(id=f"idle{i}", command=["sleep", "3600"])).pid
            for i in range(count)]
    monitor = None
    try:
        if interval is not None:
            monitor = ProcessMonitor(manager, interval=interval)
            monitor.start()
        time.sleep(3.5)  # past the first tick (baselines) and the first log looks
        c0 = host_cpu()
        time.sleep(window)
        return host_cpu() - c0
    finally:
        if monitor is not None:
            monitor.stop()
        manager.kill_many([f"idle{i}" for i in range(count)]) if hasattr(manager, "kill_many") \
            else manager.kill_all()
        manager.close()
        for pid in pids:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def idle_host(count: int, window: float) -> None:
    with tempfile.TemporaryDirectory() as log_dir:
        checks = idle_host_row(count, window, 3.0, log_dir)
        try:
            off = idle_host_row(count, window, 0, log_dir)
            off_label = "checks off (interval=0)"
        except ValueError:  # before interval=0 existed: no monitor at all
            off = idle_host_row(count, window, None, log_dir)
            off_label = "no monitor"
    print(f"idle host CPU, {count} sleep children, {window:g} s window "
          f"(python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
    print(f"  default checks (interval 3 s): {checks:.3f} s CPU per {window:g} s")
    print(f"  {off_label}: {off:.3f} s CPU per {window:g} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="15 s idle run instead of 60 s")
    parser.add_argument("--idle", type=int, default=0,
                        help="only the idle host CPU with this many sleep children")
    parser.add_argument("--window", type=float, default=30.0, help="idle window for --idle, s")
    args = parser.parse_args()
    if args.idle:
        idle_host(args.idle, args.window)
        return
    idle_seconds = 15.0 if args.quick else 60.0
    rounds = 3
    listener, ports = open_ports(500)
    held, stuck = hanging_ports(100)
    began = time.monotonic()
    try:
        with tempfile.TemporaryDirectory() as log_dir:
            rows = [tick_row(f"{n} open ports", n, ports, True, log_dir, rounds) for n in (10, 100, 500)]
            rows.append(tick_row("100 hanging ports", 100, stuck, False, log_dir, rounds))
            idle_thread, idle_process, ticks = idle_row(ports[:100], idle_seconds, log_dir)
    finally:
        os.killpg(listener.pid, signal.SIGKILL)
        listener.wait()
        for sock in held:
            sock.close()

    print(f"procsync monitor bench  (python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
          f"port_timeout=1.0, median of {rounds} ticks)")
    print()
    print(f"{'tick':<20}{'procs':>6}{'wall ms':>10}{'thread cpu ms':>15}{'process cpu ms':>16}"
          f"{'cpu ms/proc':>13}")
    for label, count, wall, thread_cpu, proc_cpu in rows:
        print(f"{label:<20}{count:>6}{wall * 1000:>10.1f}{thread_cpu * 1000:>15.1f}"
              f"{proc_cpu * 1000:>16.1f}{thread_cpu * 1000 / count:>13.3f}")
    print()
    print(f"idle, 100 processes, interval 3 s, {idle_seconds:.0f} s ({ticks} ticks): "
          f"monitor thread {idle_thread:.2f}% of a core, whole bench process {idle_process:.2f}%")
    print()
    hang_wall = rows[3][2]
    worst_per_proc = max(r[3] / r[1] for r in rows[:3]) * 1000
    print("targets:")
    print(f"  tick with 100 hanging ports {hang_wall:.2f} s   target {TARGETS['hanging tick wall']}"
          f"  -> {'ok' if hang_wall < 1.5 else 'MISSED'}")
    print(f"  idle cpu {idle_thread:.2f}% of a core   target {TARGETS['idle cpu']}"
          f"  -> {'ok' if idle_thread < 1.0 else 'MISSED'}")
    print(f"  tick cpu {worst_per_proc:.3f} ms per process (worst)   target {TARGETS['tick cpu per process']}"
          f"  -> {'ok' if worst_per_proc < 0.3 else 'MISSED'}")
    print(f"\n(total {time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
