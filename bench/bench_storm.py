"""Crash storm: N servers under auto-restart all killed with SIGKILL at once, against supervisord and PM2.

Each tool, one after the other in the same run, runs N identical children
(`/bin/sh child.sh`, which reports its pid through a FIFO and execs
`sleep 3600`) with auto-restart on and no restart delay. Once all run and
have been up past every tool's "stable" threshold, the bench takes their
pids and SIGKILLs them all in one tight loop, then times:

- every replacement running: kill of the first → the N-th new pid has
  reported itself (the FIFO timestamps each start; no polling);
- the median replacement, the same way;
- procsync only: kill → every server reported running again with a new pid
  (the `server_started` signal, in the host process; monotonic clocks agree
  across processes).

After each round the bench checks that all N new pids are alive. Rounds
repeat on the same tool after a settle pause, so each kill is a first,
immediate restart (procsync: `stable_after=1`, like supervisord's
`startsecs=1` and PM2's `min_uptime` of 1 s).

procsync runs in a host process of its own (fleet.py). supervisord and
circus come from $BENCH_VENV/bin, PM2 from $PM2_BIN; by default from
bench/.tools (`bash bench/setup-tools.sh`); a missing tool is skipped.
Nothing is left running, even on failure.

Run: python bench/bench_storm.py [--servers 100] [--rounds 3] [--tools procsync,supervisord,pm2]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from fleet import Fifo, Procsync, Tool, alive, run_tools, run_with_tool, timed

START_DEADLINE = 180.0
RESTART_DEADLINE = 120.0
STORM_CONFIG: dict[str, object] = {"stable_after": 1.0, "max_restarts": 1000, "stop_timeout": 5}


@dataclass(frozen=True, slots=True)
class Round:
    all_running: float  # s, first kill -> last replacement reported its pid
    median_child: float  # s, first kill -> the median replacement
    kill_loop: float  # s the kill loop itself took
    status_running: float | None  # procsync: first kill -> every server_started


def storm(tool: Tool, fifo: Fifo, count: int, rounds: int, settle: float) -> list[Round]:
    pids: list[int] = []

    def all_started() -> float:
        got = fifo.collect(count, START_DEADLINE)
        pids.extend(got)
        return max(got.values())

    timed(tool.start_all, all_started)
    seen = set(pids)
    results = []
    for n in range(rounds):
        time.sleep(settle)  # every child past the tools' stable thresholds
        if isinstance(tool, Procsync):
            tool.arm()
        t0 = time.monotonic()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        kill_loop = time.monotonic() - t0
        new = fifo.collect(count, RESTART_DEADLINE, exclude=seen)
        stamps = sorted(new.values())
        status = None
        if isinstance(tool, Procsync):
            last, running = tool.restarted(RESTART_DEADLINE)
            if last is None:
                raise RuntimeError(f"round {n}: procsync reported only {running} of {count} running again")
            status = last - t0
        pids = list(new)
        seen.update(pids)
        dead = [p for p in pids if not alive(psutil.Process(p))]
        if dead:
            raise RuntimeError(f"{tool.name}: replacements {dead[:5]} did not stay up")
        results.append(Round(stamps[-1] - t0, stamps[len(stamps) // 2] - t0, kill_loop, status))
    tool.stop_all()
    return results


def run_tool(key: str, count: int, rounds: int, settle: float) -> tuple[list[Round], str]:
    def make(work: Path, script: Path) -> tuple[Tool, str]:
        tool = Procsync(work, script, count, interval="3", extra=STORM_CONFIG)
        return tool, "autorestart=always, stable_after=1"

    return run_with_tool(key, count, make, lambda tool, fifo: storm(tool, fifo, count, rounds, settle))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=100, help="children per tool (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="storms per tool (default 3)")
    parser.add_argument("--settle", type=float, default=2.5,
                        help="seconds between the start or a storm and the next storm (default 2.5)")
    parser.add_argument("--tools", default="procsync,supervisord,pm2",
                        help="comma-separated; circus may be added")
    args = parser.parse_args()
    if args.servers < 1 or args.rounds < 1:
        parser.error("--servers and --rounds must be >= 1")
    results: dict[str, tuple[list[Round], str]] = run_tools(
        args.tools, ("procsync",), lambda key: run_tool(key, args.servers, args.rounds, args.settle),
        parser.error)
    if not results:
        return
    base_rounds = results.get("procsync", next(iter(results.values())))[0]
    base = statistics.median(r.all_running for r in base_rounds)
    print(f"crash storm: {args.servers} servers each killed with SIGKILL at once, "
          f"{args.rounds} rounds per tool, {os.cpu_count()} CPUs")
    print(f"{'tool':12} {'all running ms':>14} {'best':>8} {'worst':>8} {'x':>7} "
          f"{'median child ms':>15} {'kill loop ms':>12}  settings")
    for key, (rounds, note) in results.items():
        every = [r.all_running for r in rounds]
        med = statistics.median(every)
        print(f"{key:12} {med * 1000:14.1f} {min(every) * 1000:8.1f} {max(every) * 1000:8.1f} "
              f"{med / base:7.2f} {statistics.median(r.median_child for r in rounds) * 1000:15.1f} "
              f"{statistics.median(r.kill_loop for r in rounds) * 1000:12.2f}  {note}")
    if "procsync" in results:
        status = [r.status_running for r in results["procsync"][0] if r.status_running is not None]
        print(f"procsync: every server reported running again (server_started) after "
              f"{statistics.median(status) * 1000:.1f} ms median "
              f"(rounds: {', '.join(f'{s * 1000:.0f}' for s in status)} ms)")
    print("all running = first kill -> every replacement started; x = ratio to procsync")


if __name__ == "__main__":
    main()
