"""What the resource history costs: memory for N servers x one hour, and time per tick.

    python bench/bench_history.py [--servers 200] [--ticks 20]

Memory: a SeriesBook with the defaults (one hour at a 3 s interval, so 1200
samples per server) filled with N servers x 1200 samples, measured with
tracemalloc (every byte the rings hold, arrays and marks) and compared
with the same samples kept as one small dataclass per sample.

Time: `record()` of one tick's N samples (median of 200), and one real
monitor tick (`check_now()`, wall and CPU, median of `--ticks`) over N real
`sleep` children with the history on (3600 s) and off (0), alternated in
the same run so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass

from procsync import ProcessManager, ProcessMonitor, SpawnConfig
from procsync.series import Sample, SeriesBook

INTERVAL = 3.0
WINDOW = 3600.0


@dataclass(slots=True)
class _Sample:  # the naive layout, for comparison
    time: float
    pid: int | None
    cpu: float
    rss: int
    health: str
    ports_up: int
    ports_total: int


def tick_samples(servers: int, n: int) -> list[Sample]:
    return [(f"server-{i}", 10_000 + i, float((n * 7 + i) % 100), 50_000_000 + n * 4096 + i,
             "healthy", 1, 1) for i in range(servers)]


def memory(servers: int) -> tuple[int, int, int]:
    """(bytes the book holds, its sample columns, bytes of the same as dataclasses)."""
    ticks = int(WINDOW / INTERVAL)
    batches = [tick_samples(servers, n) for n in range(ticks)]
    clock = [1_000_000.0]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    book = SeriesBook(WINDOW, INTERVAL, clock=lambda: clock[0])
    for batch in batches:
        clock[0] += INTERVAL
        book.record(batch)
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    columns = book.nbytes()
    assert len(book.history("server-0")) == ticks
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    naive = {f"server-{i}": [_Sample(1e6 + n * INTERVAL, *batches[n][i][1:]) for n in range(ticks)]
             for i in range(servers)}
    naive_bytes = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del naive
    return held, columns, naive_bytes


def record_cost(servers: int) -> float:
    """Median seconds of one record() of `servers` samples into full rings."""
    clock = [1_000_000.0]
    book = SeriesBook(WINDOW, INTERVAL, clock=lambda: clock[0])
    batch = tick_samples(servers, 0)
    for _ in range(int(WINDOW / INTERVAL) + 10):  # full: every append overwrites
        clock[0] += INTERVAL
        book.record(batch)
    times = []
    for _ in range(200):
        started = time.perf_counter()
        book.record(batch)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def tick_cost(servers: int, ticks: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) of one real tick with the history on and off, alternated."""
    with tempfile.TemporaryDirectory() as log_dir:
        manager = ProcessManager(log_dir=log_dir)
        ids = [f"s{i}" for i in range(servers)]
        for sid in ids:
            manager.spawn(SpawnConfig(id=sid, command=["sleep", "3600"]))
        try:
            monitors = {"on": ProcessMonitor(manager, history=WINDOW),
                        "off": ProcessMonitor(manager, history=0)}
            for monitor in monitors.values():
                monitor.check_now()  # the cpu baselines
            out: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
            for _ in range(ticks):
                for name, monitor in monitors.items():
                    w0, c0 = time.perf_counter(), time.thread_time()
                    monitor.check_now()
                    out[name].append((time.perf_counter() - w0, time.thread_time() - c0))
            return {name: (statistics.median(w for w, _ in rows), statistics.median(c for _, c in rows))
                    for name, rows in out.items()}
        finally:
            manager.kill_many(ids)
            manager.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=200)
    parser.add_argument("--ticks", type=int, default=20)
    args = parser.parse_args()
    held, columns, naive = memory(args.servers)
    per = held / (args.servers * WINDOW / INTERVAL)
    print(f"resource history, {args.servers} servers x {WINDOW / 3600:g} h at {INTERVAL:g} s "
          f"(python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
    print(f"  memory held by the rings: {held / 2**20:.2f} MiB ({per:.1f} bytes a sample; "
          f"sample columns {columns / 2**20:.2f} MiB)")
    print(f"  the same as one dataclass a sample: {naive / 2**20:.1f} MiB "
          f"({naive / held:.1f}x)")
    print(f"  record() of one tick's {args.servers} samples: "
          f"{record_cost(args.servers) * 1e6:.0f} us (median of 200)")
    costs = tick_cost(args.servers, args.ticks)
    for name in ("off", "on"):
        wall, cpu = costs[name]
        print(f"  one real tick, history {name:>3}: wall {wall * 1e3:.2f} ms, CPU {cpu * 1e3:.2f} ms")
    print(f"  CPU with history on / off: {costs['on'][1] / costs['off'][1]:.3f}")


if __name__ == "__main__":
    main()
