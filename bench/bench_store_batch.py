"""What a burst of store writes costs: N status changes one by one, against one write_batch.

Run: python bench/bench_store_batch.py [--changes 100] [--repeat 5]

For each store (JSON file, SQLite) it fills a fresh store in a temp directory
with N entries, then applies N status changes (plus one history event each)
twice: one `update_process` + one `record_event` per change, and one
`write_batch` of all of them. It reports the median wall time over the
repeats, and per run the fsyncs this process made through `os.fsync` (the
JSON store's; SQLite syncs inside its C library, so for it the commits are
counted instead: each is one WAL sync with `synchronous = FULL`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from procsync.store import EventSpec, StoredProcessInfo, open_store


def entry(i: int) -> StoredProcessInfo:
    return StoredProcessInfo(
        id=f"server-{i:04d}", pid=1000 + i, command=f"python -m http.server {8000 + i}",
        cwd="/srv/app", start_time=datetime.now(UTC), status="running", ports=(1024 + i,),
        create_time=time.time(), pgid=1000 + i)


class Counted:
    """Counts os.fsync calls and SQLite COMMITs while installed."""

    def __init__(self) -> None:
        self.fsyncs = 0
        self.commits = 0
        self._real = os.fsync

    def fsync(self, fd: Any) -> None:
        self.fsyncs += 1
        self._real(fd)

    def statement(self, sql: str) -> None:
        if sql.split()[:1] == ["COMMIT"]:
            self.commits += 1


def crashed(old: StoredProcessInfo | None) -> StoredProcessInfo | None:
    return None if old is None else replace(old, status="crashed")


def run(suffix: str, n: int, batched: bool) -> tuple[float, Counted]:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / f"state{suffix}")
        for i in range(n):
            store.save_process(entry(i))
        counted = Counted()
        conn: Any = getattr(store, "_conn", None)
        if conn is not None:
            conn.set_trace_callback(counted.statement)
        os.fsync = counted.fsync
        try:
            start = time.perf_counter()
            ids = [f"server-{i:04d}" for i in range(n)]
            if batched:
                store.write_batch(dict.fromkeys(ids, crashed),
                                  [EventSpec(id, "crashed", exit_code=-9) for id in ids])
            else:
                for id in ids:
                    store.update_process(id, crashed)
                    store.record_event(id, "crashed", exit_code=-9)
            elapsed = (time.perf_counter() - start) * 1000
        finally:
            os.fsync = counted._real
            if conn is not None:
                conn.set_trace_callback(None)
        assert all(info.status == "crashed" for info in store.get_all_processes())
        store.close()
        return elapsed, counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.changes} status changes + {args.changes} events, median of {args.repeat} runs")
    print(f"{'store':<7} {'how':<12} {'ms':>9} {'fsyncs':>7} {'commits':>8}")
    for name, suffix in (("JSON", ".json"), ("SQLite", ".db")):
        for how, batched in (("one by one", False), ("write_batch", True)):
            runs = [run(suffix, args.changes, batched) for _ in range(args.repeat)]
            ms = statistics.median(r[0] for r in runs)
            last = runs[-1][1]
            sqlite = name == "SQLite"  # its fsyncs are made in C: count them with strace
            commits = str(last.commits) if sqlite else "-"
            fsyncs = "-" if sqlite else str(last.fsyncs)
            print(f"{name:<7} {how:<12} {ms:>9.1f} {fsyncs:>7} {commits:>8}")


if __name__ == "__main__":
    main()
