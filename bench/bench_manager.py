"""Exit-detection and spawn latency of ProcessManager.

Measures, as medians over N runs (default 50):
- exit detection: SIGKILL sent from outside -> process_exit received, for a
  spawned child and for an adopted process (not our child; watched via pidfd);
- spawn: ProcessManager.spawn() of a small shell script against a bare
  subprocess.Popen() of the same script with the same session and log file;
- bulk (with --bulk N, default 200): N `sleep` processes spawned from 16
  threads (first spawn call -> last spawn returned), then all of them
  stopped at once (kill_many, or kill_all where it is missing) -> every
  pid gone (a zombie counts as gone).

Run: python bench/bench_manager.py [--runs 50] [--bulk 200]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from procsync import ProcessManager, SpawnConfig, signals


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.3f}"


def p90(values: list[float]) -> str:
    return f"{statistics.quantiles(values, n=10)[-1] * 1000:8.3f}"


def detached_sleeper() -> tuple[int, float]:
    """A sleeping process that is not our child (its parent exits at once)."""
    out = subprocess.run(
        [sys.executable, "-c",
         "import subprocess\n"
         "p = subprocess.Popen(['sleep', '60'], start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
         "print(p.pid)"],
        capture_output=True, text=True, check=True,
    )
    pid = int(out.stdout)
    return pid, psutil.Process(pid).create_time()


def measure_exit(manager: ProcessManager, runs: int, adopted: bool) -> list[float]:
    got = threading.Event()
    stamp: list[float] = []

    def on_exit(sender, **payload):
        stamp.append(time.perf_counter())
        got.set()

    signals.process_exit.connect(on_exit, sender=manager)
    samples = []
    try:
        for n in range(runs):
            got.clear()
            stamp.clear()
            pid_id = f"{'adopted' if adopted else 'spawned'}-{n}"
            if adopted:
                pid, create_time = detached_sleeper()
                manager.adopt(pid_id, pid, create_time)
            else:
                pid = manager.spawn(SpawnConfig(id=pid_id, command=["sleep", "60"])).pid
            time.sleep(0.01)  # let the watcher settle into select()
            t0 = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            if not got.wait(5):
                raise RuntimeError(f"no process_exit for {pid_id}")
            samples.append(stamp[0] - t0)
            manager.forget(pid_id)
    finally:
        signals.process_exit.disconnect(on_exit)
    return samples


def measure_spawn(manager: ProcessManager, runs: int, workdir: Path) -> tuple[list[float], list[float]]:
    script = workdir / "small.sh"
    script.write_text("#!/bin/sh\nexec sleep 60\n")
    script.chmod(0o755)
    bare, ours = [], []
    for n in range(runs):
        log = open(workdir / "bare.log", "ab")  # noqa: SIM115 - closed below
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(script)], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        bare.append(time.perf_counter() - t0)
        log.close()
        proc.kill()
        proc.wait()

        t0 = time.perf_counter()
        manager.spawn(SpawnConfig(id=f"s{n}", command=[str(script)]))
        ours.append(time.perf_counter() - t0)
        manager.kill(f"s{n}", timeout=1)
        manager.forget(f"s{n}")
    return bare, ours


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def measure_bulk(manager: ProcessManager, count: int) -> tuple[float, float]:
    """Seconds to spawn `count` sleeps from 16 threads, and to stop them all in one call."""
    from concurrent.futures import ThreadPoolExecutor

    configs = [SpawnConfig(id=f"bulk-{n}", command=["sleep", "600"]) for n in range(count)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        pids = [info.pid for info in pool.map(manager.spawn, configs)]
    spawned = time.perf_counter() - t0
    time.sleep(0.5)  # let the watcher register every pidfd
    kill_many = getattr(manager, "kill_many", None)
    t0 = time.perf_counter()
    if kill_many is not None:
        kill_many([c.id for c in configs])
    else:
        manager.kill_all()
    while not all(gone(pid) for pid in pids):
        time.sleep(0.001)
    stopped = time.perf_counter() - t0
    for c in configs:
        manager.forget(c.id)
    return spawned, stopped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--bulk", type=int, default=200, help="processes for the bulk rows (0: skip)")
    args = parser.parse_args()
    bulk: tuple[float, float] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        manager = ProcessManager(log_dir=tmp)
        try:
            spawned = measure_exit(manager, args.runs, adopted=False)
            adopted = measure_exit(manager, args.runs, adopted=True)
            bare, ours = measure_spawn(manager, args.runs, Path(tmp))
            if args.bulk:
                bulk = measure_bulk(manager, args.bulk)
        finally:
            manager.kill_all()
            manager.close()
    overhead = [o - b for o, b in zip(ours, bare, strict=True)]
    print(f"ProcessManager latency, {args.runs} runs each (ms)")
    print(f"{'measure':44} {'median':>8} {'p90':>8}")
    print(f"{'exit detection, spawned child (kill -9)':44} {ms(spawned)} {p90(spawned)}")
    print(f"{'exit detection, adopted process (kill -9)':44} {ms(adopted)} {p90(adopted)}")
    print(f"{'spawn, bare subprocess.Popen':44} {ms(bare)} {p90(bare)}")
    print(f"{'spawn, ProcessManager.spawn':44} {ms(ours)} {p90(ours)}")
    print(f"{'spawn overhead over bare Popen (paired)':44} {ms(overhead)} {p90(overhead)}")
    if bulk is not None:
        how = "kill_many" if hasattr(ProcessManager, "kill_many") else "kill_all"
        print(f"\nbulk, {args.bulk} sleep processes")
        print(f"{'spawn all (16 threads) -> all running':44} {bulk[0] * 1000:8.1f} ms")
        print(f"{how + ' -> all gone':44} {bulk[1] * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
