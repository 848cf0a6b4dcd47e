"""How long the state stores take: saving one entry, and loading, with 10 / 100 / 1,000 stored.

Run: python bench/bench_store.py [--repeat N]

For each store (JSON file, SQLite) and size it fills a fresh store in a temp
directory, then times, as medians over N runs:
  save      save_process() of one entry that is already stored (read-modify-write,
            atomic commit with fsync), the instance's cache warm
  open+load a new store instance on the file, then load() (parses every entry)
  load      load() again on that instance with nothing changed (cache check)
Targets: saving one entry with 1,000 stored under 5 ms (SQLite), 20 ms (JSON).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from procsync.store import StoredProcessInfo, open_store

SIZES = (10, 100, 1000)
TARGET_MS = {"JSON": 20.0, "SQLite": 5.0}


def entry(i: int, pid: int) -> StoredProcessInfo:
    return StoredProcessInfo(
        id=f"server-{i:04d}", pid=pid, command=f"python -m http.server {8000 + i}",
        cwd="/srv/app", start_time=datetime.now(UTC), status="running",
        ports=(1024 + i,), create_time=time.time(), pgid=pid, log_file=f"/var/log/s{i}.log")


def median_ms(fn, repeat: int) -> float:
    times = []
    for n in range(repeat):
        start = time.perf_counter()
        fn(n)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench(kind: str, size: int, repeat: int, directory: Path) -> tuple[float, float, float]:
    path = directory / f"state-{size}{'.json' if kind == 'JSON' else '.db'}"
    store = open_store(path)
    for i in range(size):
        store.save_process(entry(i, 10_000 + i))
    store.load()
    save = median_ms(lambda n: store.save_process(entry(n % size, 20_000 + n)), repeat)

    def open_and_load(n: int) -> None:
        fresh = open_store(path)
        assert len(fresh.load()) == size  # noqa: S101 - a bench sanity check
        fresh.close()

    cold = median_ms(open_and_load, repeat)
    warm = median_ms(lambda n: store.load(), repeat)
    store.close()
    return save, cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50, help="runs per figure (default 50)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="procsync-bench-") as tmp:
        for kind in ("JSON", "SQLite"):
            for size in SIZES:
                rows.append((kind, size, *bench(kind, size, args.repeat, Path(tmp))))
    print(f"median of {args.repeat} runs, milliseconds")
    print(f"{'store':<7} {'entries':>7} {'save':>8} {'open+load':>10} {'load':>8}  target (save)")
    for kind, size, save, cold, warm in rows:
        verdict = ""
        if size == 1000:
            target = TARGET_MS[kind]
            verdict = f"< {target:g} ms: {'met' if save < target else 'MISSED'}"
        print(f"{kind:<7} {size:>7} {save:>8.2f} {cold:>10.2f} {warm:>8.3f}  {verdict}")


if __name__ == "__main__":
    main()
