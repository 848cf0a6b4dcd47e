"""Soak: many start/stop and crash/auto-restart cycles against one in-process orchestrator.

After the cycles the test process has grown by less than 5 MB of RSS, its
open descriptors and threads are back to their counts after the warm-up,
and no child of ours is a zombie or still running. CI runs 200 + 200
cycles; `PROCSYNC_SOAK_CYCLES=1000` gives the full run (figures in
docs/reliability.md). Run with `-s` to see the figures.
"""

from __future__ import annotations

import gc
import os
import shutil
import threading
import time

import psutil
import pytest
from helpers import python_cmd, wait_until

from procsync import ServerOrchestrator

CYCLES = int(os.environ.get("PROCSYNC_SOAK_CYCLES", "200"))
WARMUP = 20
RSS_LIMIT = 5 * 1024 * 1024

_SLEEP = shutil.which("sleep")
_SH = shutil.which("sh")
# tiny servers that start in a millisecond or two; Python children where coreutils are missing
SERVER = [_SLEEP, "1000"] if _SLEEP else python_cmd("import time; time.sleep(1000)")
CRASHER = [_SH, "-c", "exit 1"] if _SH else python_cmd("raise SystemExit(1)")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _threads() -> int:
    return threading.active_count()


def _rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def _children() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)


def _zombies() -> list[int]:
    out = []
    for child in _children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                out.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return out


def _start_stop(orch: ServerOrchestrator, n: int) -> None:
    for i in range(n):
        started = orch.start_server("web")
        assert started.success, f"cycle {i}: {started.message}"
        assert orch.get_server("web").status == "running"
        stopped = orch.stop_server("web")
        assert stopped.success, f"cycle {i}: {stopped.message}"
        assert orch.get_server("web").status == "stopped"
        wait_until(lambda pid=started.pid: not psutil.pid_exists(pid), timeout=5,
                   what=f"pid {started.pid} reaped (cycle {i})")


def _crash_loop(orch: ServerOrchestrator, exits: list[int], n: int) -> None:
    target = len(exits) + n
    started = orch.start_server("crashy", wait=False)  # may report the first crash already
    assert started.pid is not None, started.message
    wait_until(lambda: len(exits) >= target, timeout=max(60.0, n * 0.2),
               what=f"{n} crash/auto-restart cycles")
    stopped = orch.stop_server("crashy")
    assert stopped.success or stopped.code == "already_stopped", stopped.message
    wait_until(lambda: orch.get_server("crashy").status in ("stopped", "crashed", "fatal"),
               timeout=10, what="the crash loop stopped")
    assert orch.get_server("crashy").status == "stopped"


def _settled(orch: ServerOrchestrator, fds: int, threads: int) -> bool:
    return (not _children() and _fds() <= fds and _threads() <= threads
            and not [w for w in orch._workers if w.is_alive()])


@pytest.mark.timeout(3600)
def test_soak_start_stop_and_crash_restart_cycles(tmp_path):
    orch = ServerOrchestrator(tmp_path / "state.json", interval=0.5, log_dir=tmp_path / "logs")
    exits: list[int] = []

    def count_exit(sender, *, id, **extra):
        if id == "crashy":
            exits.append(1)

    try:
        orch.initialize()
        orch.on("process_exit", count_exit)
        orch.register_server("web", {"command": SERVER, "stop_timeout": 5.0})
        orch.register_server("crashy", {
            "command": CRASHER, "autorestart": "always", "max_restarts": 10 * CYCLES + 1000,
            "backoff_initial": 0.001, "backoff_max": 0.005, "stable_after": 3600.0,
        })
        _start_stop(orch, WARMUP)
        _crash_loop(orch, exits, WARMUP)
        wait_until(lambda: not _children(), timeout=10, what="no children after the warm-up")
        wait_until(lambda: not [w for w in orch._workers if w.is_alive()], timeout=10,
                   what="worker threads of the warm-up to end")
        fds, threads, rss = _fds(), _threads(), _rss()

        t0 = time.monotonic()
        _start_stop(orch, CYCLES)
        t1 = time.monotonic()
        _crash_loop(orch, exits, CYCLES)
        t2 = time.monotonic()

        wait_until(lambda: _settled(orch, fds, threads), timeout=15,
                   what=f"children gone, fds back to {fds} (now {_fds()}), "
                        f"threads back to {threads} (now {_threads()})")
        growth = _rss() - rss
        print(f"\nsoak: {CYCLES} start/stop cycles in {t1 - t0:.1f} s, {CYCLES} crash/auto-restart "
              f"cycles in {t2 - t1:.1f} s; RSS growth {growth / 1024:.0f} KiB "
              f"({rss / 1048576:.1f} MiB after warm-up); fds {fds} -> {_fds()}; "
              f"threads {threads} -> {_threads()}; zombies {len(_zombies())}")
        assert not _zombies()
        assert growth < RSS_LIMIT, f"RSS grew by {growth / 1048576:.1f} MiB over the cycles"
        assert orch.get_server("web").status == "stopped"
        assert orch.get_server("crashy").status == "stopped"
        assert len(orch.history("crashy", 200)) == 200  # kept bounded, not dropped
    finally:
        orch.shutdown(stop_servers=True)
