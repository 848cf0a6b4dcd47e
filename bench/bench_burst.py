"""Store writes per burst: N servers change status in one instant; how many fsyncs and file writes follow.

A ServerOrchestrator in this process runs N copies of `sleep 3600` on the
JSON store (`state.json` in a directory of its own). The bench wraps
`os.fsync`/`os.fdatasync` (every call in this process) and
`os.replace`/`os.rename` into the state directory (one per store file
written: the state file or its history file) and counts them during two
bursts:

1. crash: all N servers (`autorestart="no"`) killed with SIGKILL in one
   tight loop;
2. stop: `stop_all()` of the N servers (started again after burst 1).

Each burst counts from its first kill (or the `stop_all()` call) until the
store, read back through a second store object, shows every one of the N
changes ("until shown"), and again once no new write has come for 1 s
("settled"). The bench's own store reads are not counted.

Run: python bench/bench_burst.py [--servers 100]
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procsync import ServerOrchestrator, open_store

POLL = 0.01  # s between the bench's reads of the store
QUIET = 1.0  # s without a new write that counts as settled


class Counter:
    """Counts fsyncs and renames into `directory`, made by any thread but the bench's reader."""

    def __init__(self, directory: Path) -> None:
        self.directory = os.path.realpath(directory)
        self.local = threading.local()
        self.lock = threading.Lock()
        self.fsyncs = 0
        self.writes: collections.Counter[str] = collections.Counter()
        self.threads: collections.Counter[str] = collections.Counter()
        self.last = time.monotonic()
        self.originals: dict[str, Callable[..., Any]] = {}

    def install(self) -> None:
        for name in ("fsync", "fdatasync"):
            self._patch(name, self._on_fsync)
        for name in ("replace", "rename"):
            self._patch(name, self._on_rename)

    def uninstall(self) -> None:
        for name, original in self.originals.items():
            setattr(os, name, original)

    def _patch(self, name: str, hook: Callable[..., None]) -> None:
        original = getattr(os, name)
        self.originals[name] = original

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            if not getattr(self.local, "reading", False):
                hook(*args)
            return result

        setattr(os, name, wrapper)

    def _on_fsync(self, *_: Any) -> None:
        with self.lock:
            self.fsyncs += 1
            self.threads[threading.current_thread().name.rstrip("0123456789_-")] += 1
            self.last = time.monotonic()

    def _on_rename(self, src: Any, dst: Any, *_: Any) -> None:
        target = os.path.realpath(os.fspath(dst))
        if os.path.dirname(target) == self.directory:
            with self.lock:
                self.writes[os.path.basename(target)] += 1
                self.last = time.monotonic()

    def reset(self) -> None:
        with self.lock:
            self.fsyncs = 0
            self.writes.clear()
            self.threads.clear()
            self.last = time.monotonic()

    def snapshot(self) -> tuple[int, int, dict[str, int], dict[str, int]]:
        with self.lock:
            return self.fsyncs, sum(self.writes.values()), dict(self.writes), dict(self.threads)


@dataclass(frozen=True, slots=True)
class Burst:
    shown_after: float  # s until the store showed all N changes
    shown: tuple[int, int]  # (fsyncs, store file writes) by then
    settled: tuple[int, int]
    files: dict[str, int]  # store file -> writes, settled
    threads: dict[str, int]  # thread name -> fsyncs, settled


def store_shows(store: Any, counter: Counter, want: Callable[[Any], bool], ids: set[str]) -> bool:
    counter.local.reading = True
    try:
        records = {r.id: r for r in store.get_all_processes()}
    finally:
        counter.local.reading = False
    return all(want(records.get(sid)) for sid in ids)


def burst(counter: Counter, store: Any, ids: set[str], act: Callable[[], None],
          want: Callable[[Any], bool], timeout: float) -> Burst:
    counter.reset()
    t0 = time.monotonic()
    error: list[BaseException] = []

    def run() -> None:
        try:
            act()
        except BaseException as err:  # noqa: BLE001 - re-raised below
            error.append(err)

    worker = threading.Thread(target=run, name="bench-act")
    worker.start()
    try:
        while not store_shows(store, counter, want, ids):
            if error:
                raise error[0]
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"the store did not show all {len(ids)} changes in {timeout:g} s")
            time.sleep(POLL)
        shown_after = time.monotonic() - t0
        fsyncs, writes, _, _ = counter.snapshot()
    finally:
        worker.join(timeout)
    if error:
        raise error[0]
    while time.monotonic() - counter.last < QUIET:
        time.sleep(0.05)
    total_fsyncs, total_writes, files, threads = counter.snapshot()
    return Burst(shown_after, (fsyncs, writes), (total_fsyncs, total_writes), files, threads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=100, help="servers changing at once (default 100)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a burst may take (default 120)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # shut down (children too) on a kill
    import procsync

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "state").mkdir()
        path = work / "state" / "state.json"
        orch = ServerOrchestrator(path, log_dir=work / "logs")
        for n in range(args.servers):
            orch.register_server(f"s{n:03d}", {"command": ["sleep", "3600"], "autorestart": "no",
                                               "stop_timeout": 5})
        ids = set(orch.configs)
        reader = open_store(path)
        counter = Counter(path.parent)
        counter.install()
        results: dict[str, Burst] = {}
        try:
            for name in ("crash", "stop"):
                failed = [k for k, r in orch.start_all().items() if not r.success]
                if failed:
                    raise RuntimeError(f"start_all failed for {failed}")
                pids = {s.id: s.pid for s in orch.get_server_status()}
                running = lambda r, pids=pids: (r is not None and r.status == "running"  # noqa: E731
                                                and r.pid == pids[r.id])
                deadline = time.monotonic() + args.timeout
                while not store_shows(reader, counter, running, ids):
                    if time.monotonic() > deadline:
                        raise TimeoutError("the store never showed every server running")
                    time.sleep(POLL)
                while time.monotonic() - counter.last < QUIET:  # the starts' writes are done
                    time.sleep(0.05)
                changed = lambda r, pids=pids: (r is None or r.status != "running"  # noqa: E731
                                                or r.pid != pids[r.id])
                if name == "crash":
                    def act(pids: dict[str, int | None] = pids) -> None:
                        for pid in pids.values():
                            if pid is not None:
                                os.kill(pid, signal.SIGKILL)
                else:
                    def act(pids: dict[str, int | None] = pids) -> None:
                        orch.stop_all()
                results[name] = burst(counter, reader, ids, act, changed, args.timeout)
        finally:
            counter.uninstall()
            orch.shutdown(stop_servers=True)

    n = args.servers
    print(f"store writes per burst: {n} servers changing status at once, JSON store; "
          f"procsync from {Path(procsync.__file__).parent}")
    print(f"{'burst':6} {'shown after s':>13} {'fsyncs':>7} {'writes':>7} {'per change':>11} "
          f"{'settled fsyncs':>14} {'writes':>7} {'per change':>11}")
    for name, b in results.items():
        print(f"{name:6} {b.shown_after:13.3f} {b.shown[0]:7d} {b.shown[1]:7d} "
              f"{b.shown[1] / n:11.2f} {b.settled[0]:14d} {b.settled[1]:7d} {b.settled[1] / n:11.2f}")
    for name, b in results.items():
        print(f"{name}: writes by file {b.files}; fsyncs by thread {b.threads}")
    print("fsyncs: every os.fsync/os.fdatasync in this process; writes: renames into the state "
          "directory (one per store file written); per change = writes / servers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
