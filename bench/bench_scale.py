"""Bulk start, bulk stop and idle CPU at N servers: procsync against supervisord, circus and PM2.

Each tool, one after the other in the same run, has N identical children
registered (`/bin/sh child.sh`, which reports its pid through a FIFO and
execs `sleep 3600`; auto-restart on), none started. The bench then times:

- start: the tool's start-everything command (procsync `start_all()`,
  supervisord `startAllProcesses(wait=True)`, circus `start` with
  `waiting`, PM2 `start(ecosystem)`) → every child has reported its pid
  ("all running"), and → the command returned;
- idle: CPU seconds (user + system) of the supervising process tree, the
  children left out, over an idle window, given per 30 s;
- stop: the stop-everything command → every child has ended, dead or
  zombie (pidfds on all N pids: no polling), and → the command returned.

procsync runs in a host process of its own (a ServerOrchestrator driven over
stdin, see fleet.py) twice: with the default checks (monitor interval 3 s)
and with checks off (`interval=0`; where that is refused, a one-year
interval, and the table says so). The other tools are driven by controllers
already connected to them, so no client start-up is timed (see fleet.py).

supervisord and circus come from $BENCH_VENV/bin, PM2 from $PM2_BIN; by
default from bench/.tools (`bash bench/setup-tools.sh`). A missing tool is
skipped. Nothing is left running: daemons are stopped, marked children
killed, even on failure.

Run: python bench/bench_scale.py [--servers 200] [--idle-seconds 30]
     [--tools procsync,procsync-off,supervisord,circus,pm2] [--json PATH] [--plot]
(results go to bench/results/scale.json; --plot redraws docs/bench/ after)
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from fleet import (
    Fifo,
    Procsync,
    Tool,
    alive,
    run_tools,
    run_with_tool,
    timed,
    wait_gone,
)
from others import default_json, plot_now, tool_version, write_results

START_DEADLINE = 180.0
STOP_DEADLINE = 180.0


@dataclass(frozen=True, slots=True)
class Scale:
    start_running: float  # s, command issued -> every child reported its pid
    start_returned: float  # s, command issued -> command returned
    idle_cpu: float  # CPU s per 30 s of the supervising tree
    stop_gone: float  # s, command issued -> every child ended
    stop_returned: float  # s


def cpu_seconds(root: psutil.Process, skip: set[int]) -> float:
    """User + system CPU of `root` and its descendants, less the `skip` pids."""
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess as err:
        raise RuntimeError(f"supervising process {root.pid} ended") from err
    total = 0.0
    for p in procs:
        if p.pid in skip:
            continue
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def measure(tool: Tool, fifo: Fifo, count: int, idle: float, settle: float) -> Scale:
    pids: list[int] = []

    def all_started() -> float:
        got = fifo.collect(count, START_DEADLINE)
        pids.extend(got)
        return max(got.values())

    start_returned, start_running = timed(tool.start_all, all_started)
    dead = [p for p in pids if not alive(psutil.Process(p))]
    if dead:
        raise RuntimeError(f"{tool.name}: children {dead[:5]} ended right after the start")
    time.sleep(settle)  # let the start's tail (readiness waits, startsecs) pass
    root = psutil.Process(tool.root)
    skip = set(pids)
    before = cpu_seconds(root, skip)
    time.sleep(idle)  # the measured idle window
    used = cpu_seconds(root, skip) - before
    stop_returned, stop_gone = timed(tool.stop_all, lambda: wait_gone(pids, STOP_DEADLINE))
    return Scale(start_running, start_returned, used * 30.0 / idle, stop_gone, stop_returned)


def run_tool(key: str, count: int, idle: float, settle: float) -> tuple[Scale, str]:
    def make(work: Path, script: Path) -> tuple[Tool, str]:
        tool = Procsync(work, script, count, interval="off" if key == "procsync-off" else "3")
        return tool, f"autorestart=always, {tool.note}"

    return run_with_tool(key, count, make, lambda tool, fifo: measure(tool, fifo, count, idle, settle))


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base > 0 else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=200, help="children per tool (default 200)")
    parser.add_argument("--idle-seconds", type=float, default=30.0,
                        help="idle window, seconds (default 30; CPU is given per 30 s)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds between the start and the idle window (default 2)")
    parser.add_argument("--tools", default="procsync,procsync-off,supervisord,circus,pm2")
    parser.add_argument("--json", type=Path, default=default_json("scale"),
                        help="where to write the results (default bench/results/scale.json)")
    parser.add_argument("--plot", action="store_true",
                        help="then redraw the charts in docs/bench/ (python bench/plot.py)")
    args = parser.parse_args()
    if args.servers < 1 or args.idle_seconds <= 0:
        parser.error("--servers must be >= 1 and --idle-seconds > 0")
    began = time.monotonic()
    results: dict[str, tuple[Scale, str]] = run_tools(
        args.tools, ("procsync", "procsync-off"),
        lambda key: run_tool(key, args.servers, args.idle_seconds, args.settle), parser.error)
    if not results:
        return
    base = results.get("procsync", next(iter(results.values())))[0]
    print(f"{args.servers} servers each (sh -> sleep, auto-restart on), idle window "
          f"{args.idle_seconds:g} s, {os.cpu_count()} CPUs, total {time.monotonic() - began:.0f} s")
    print(f"{'tool':22} {'start: all run s':>16} {'x':>6} {'returned s':>10} "
          f"{'stop: all gone ms':>17} {'x':>7} {'returned ms':>11} "
          f"{'idle CPU s/30s':>14} {'x':>6}  settings")
    for key, (r, note) in results.items():
        print(f"{key:22} {r.start_running:16.3f} {ratio(r.start_running, base.start_running):>6} "
              f"{r.start_returned:10.3f} {r.stop_gone * 1000:17.1f} "
              f"{ratio(r.stop_gone, base.stop_gone):>7} {r.stop_returned * 1000:11.1f} "
              f"{r.idle_cpu:14.3f} {ratio(r.idle_cpu, base.idle_cpu):>6}  {note}")
    tick = 30.0 / os.sysconf("SC_CLK_TCK") / args.idle_seconds
    print(f"x = ratio to procsync (default checks); CPU resolution {tick:.3f} s per 30 s")
    rows = [{"tool": key, "version": tool_version(key), "settings": note, "servers": args.servers,
             "start_running_s": round(r.start_running, 4),
             "start_returned_s": round(r.start_returned, 4),
             "stop_gone_ms": round(r.stop_gone * 1000, 2),
             "stop_returned_ms": round(r.stop_returned * 1000, 2),
             "idle_cpu_s_per_30s": round(r.idle_cpu, 4)}
            for key, (r, note) in results.items()]
    write_results(args.json, "scale", {"servers": args.servers, "idle_seconds": args.idle_seconds,
                                       "settle_s": args.settle,
                                       "cpu_resolution_s_per_30s": round(tick, 4)}, rows)
    if args.plot:
        plot_now()


if __name__ == "__main__":
    main()
