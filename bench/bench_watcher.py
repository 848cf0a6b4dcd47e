"""Time the ProcessManager's watcher thread is busy per exit, with a real ServerOrchestrator attached.

While the watcher thread handles one exit it sees no other: whatever runs in
the `process_exit` receivers (the orchestrator's bookkeeping) delays the
next exit's detection. The bench wraps the manager's per-exit methods on the
instance (default `_exited`, the pidfd hop, and `_finish`, which marks the
entry ended and sends `process_exit`; `--methods` names others) with a
timer, then crashes servers one at a time with SIGKILL and waits for each
auto-restart before the next kill.

Servers: N copies of `sleep 3600` with `autorestart="always"`, the JSON
store, the monitor at its default 3 s interval. Kills go round-robin and a
server is killed again only after it has been stable (`stable_after=0.2`),
so each crash is a first, immediate restart.

Run: python bench/bench_watcher.py [--crashes 120] [--servers 20] [--gap 0.05]
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from procsync import ServerOrchestrator, signals

CONFIG = {"command": ["sleep", "3600"], "autorestart": "always", "stable_after": 0.2,
          "max_restarts": 100_000, "backoff_initial": 0.01, "backoff_max": 0.05, "stop_timeout": 5}


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def wrap(obj: Any, name: str, into: list[float]) -> None:
    """Replace `obj.name` on the instance by a copy that records each call's duration."""
    method: Callable[..., Any] = getattr(obj, name)

    @functools.wraps(method)
    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - t0)

    setattr(obj, name, timed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crashes", type=int, default=120, help="kills in all (default 120)")
    parser.add_argument("--servers", type=int, default=20, help="servers killed in turn (default 20)")
    parser.add_argument("--gap", type=float, default=0.05,
                        help="seconds after a restart before the next kill (default 0.05)")
    parser.add_argument("--methods", default="_exited,_finish",
                        help="ProcessManager methods the watcher calls per exit (default _exited,_finish)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # shut down (children too) on a kill
    import procsync

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        orch = ServerOrchestrator(work / "state.json", log_dir=work / "logs")
        for n in range(args.servers):
            orch.register_server(f"s{n:02d}", dict(CONFIG))
        timings: dict[str, list[float]] = {}
        for name in (m for m in args.methods.split(",") if m):
            if not callable(getattr(orch.manager, name, None)):
                parser.error(f"ProcessManager has no method {name!r}")
            timings[name] = []
            wrap(orch.manager, name, timings[name])
        started: dict[str, tuple[int, float]] = {}
        arrived = threading.Condition()

        def on_started(sender: Any, id: str, pid: int, **_: Any) -> None:
            with arrived:
                started[id] = (pid, time.perf_counter())
                arrived.notify_all()

        signals.server_started.connect(on_started, sender=orch, weak=False)
        restart_latency: list[float] = []
        try:
            failed = [k for k, r in orch.start_all().items() if not r.success]
            if failed:
                raise RuntimeError(f"start_all failed for {failed}")
            for values in timings.values():
                values.clear()  # the starts are not exits
            ids = sorted(orch.configs)
            time.sleep(0.5)  # every server past stable_after
            for n in range(args.crashes):
                sid = ids[n % len(ids)]
                pid = orch.get_server(sid).pid
                assert pid is not None, f"{sid} is not running"
                t0 = time.perf_counter()
                os.kill(pid, signal.SIGKILL)
                restarted = functools.partial(lambda sid, pid: started[sid][0] != pid, sid, pid)
                with arrived:
                    if not arrived.wait_for(restarted, timeout=30):
                        raise RuntimeError(f"{sid} (pid {pid}) was not restarted within 30 s")
                    restart_latency.append(started[sid][1] - t0)
                time.sleep(args.gap)
            deadline = time.monotonic() + 30
            while any(len(v) < args.crashes for v in timings.values() if v) and time.monotonic() < deadline:
                time.sleep(0.01)  # the last exit's handling may still run after its restart
            timings = {name: list(values) for name, values in timings.items()}  # not the shutdown's
        finally:
            signals.server_started.disconnect(on_started, sender=orch)
            orch.shutdown(stop_servers=True)

    print(f"watcher thread busy per exit: {args.crashes} crashes (SIGKILL, one at a time) over "
          f"{args.servers} servers, auto-restart on, JSON store; procsync from "
          f"{Path(procsync.__file__).parent}")
    print(f"{'method':12} {'calls':>6} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
    for name, values in timings.items():
        if not values:
            print(f"{name:12} {0:6d}  (never called: the watcher uses another method)")
            continue
        print(f"{name:12} {len(values):6d} {statistics.median(values) * 1000:10.3f} "
              f"{percentile(values, 95) * 1000:8.3f} {max(values) * 1000:8.3f}")
    print(f"kill -> server_started: median {statistics.median(restart_latency) * 1000:.2f} ms, "
          f"p95 {percentile(restart_latency, 95) * 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
