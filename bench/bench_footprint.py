"""Memory and idle CPU of the supervising process: procsync against supervisord, circus and PM2.

Each tool, one after the other in the same run, supervises N identical
children (`/bin/sh child.sh`, which execs `sleep 3600`) with auto-restart on
and otherwise default settings. The script exports a marker variable that
the `sleep` inherits, so the children can be told apart from the tool's own
processes. Once all N marked children run, the bench measures the
supervisor's process tree *without* the children (procsync: the Python
process hosting a ServerOrchestrator with its monitor at the default 3 s
interval; supervisord; circusd; PM2's God daemon):

- CPU seconds it uses over an idle window of W seconds (user + system,
  including any helper it spawned and reaped meanwhile), as % of one core;
- RSS and USS (psutil memory_full_info) summed over its processes, taken at
  the end of the window. RSS counts shared library pages (the interpreter
  or node runtime) in full; USS is what would be freed if it exited. USS
  leaves out pages shared with any other process, the bench's own Python
  included, which favours the Python tools a little against node; it also
  moves by a few MiB from run to run.

After the window one child is killed with SIGKILL and the bench checks that
the tool brings N children back ("restart" column), then everything is
stopped and the bench checks that no marked child is left (leftovers are
killed by process group, and the run fails).

supervisord and circus are taken from $BENCH_VENV/bin, PM2 from $PM2_BIN;
by default from bench/.tools, which `bash bench/setup-tools.sh` fills. A
tool that is missing is skipped.

A sweep gives one result per count per tool (RSS against the number of
servers): `--children 20,50,100,200` runs every tool at 20, then at 50, ...

Run: python bench/bench_footprint.py [--children 20[,50,...]] [--window 20]
     [--json PATH] [--plot]
(results go to bench/results/footprint.json; --plot redraws docs/bench/ after)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil
from others import (
    CIRCUSD,
    PM2,
    SUPERVISORD,
    default_json,
    free_port,
    plot_now,
    tool_version,
    write_results,
)

MARK = "PROCSYNC_FOOTPRINT_MARK"
RUN = uuid.uuid4().hex[:12]  # every marker of this run starts with it
START_DEADLINE = 60.0
STOP_DEADLINE = 30.0

HOST = r"""
import signal, sys
from procsync import ServerOrchestrator

state, logs, script, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
orch = ServerOrchestrator(state, log_dir=logs)
for i in range(count):
    orch.register_server(f"child-{i:02d}", {"command": ["/bin/sh", script], "autorestart": "always"})
try:
    orch.initialize()
    failed = {sid: r.message for sid, r in orch.start_all().items() if not r.success}
    if failed:
        sys.exit(f"start_all failed: {failed}")
    print("started", flush=True)
    sys.stdin.read()
finally:
    orch.shutdown(stop_servers=True)
"""


@dataclass(frozen=True, slots=True)
class Started:
    """A running tool: the pid of its supervising process and how to stop it."""

    root: int
    stop: Callable[[], None]


@dataclass(frozen=True, slots=True)
class Footprint:
    procs: int
    rss: int
    uss: int | None
    cpu_percent: float
    restart_ok: bool



def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
    return result


def alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def marked(prefix: str) -> list[psutil.Process]:
    """Live `sleep` processes whose marker starts with `prefix`."""
    found = []
    for p in psutil.process_iter(["name"]):
        if p.info["name"] != "sleep":
            continue
        try:
            if p.environ().get(MARK, "").startswith(prefix) and alive(p):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def wait_children(token: str, count: int, timeout: float,
                  root: psutil.Process | None = None) -> list[psutil.Process]:
    """Wait until exactly `count` marked children are alive; check the root is still up."""
    def ready() -> list[psutil.Process] | None:
        if root is not None and not alive(root):
            raise RuntimeError(f"supervising process {root.pid} ended")
        kids = marked(token)
        return kids if len(kids) == count else None
    return wait_until(ready, timeout, f"{count} marked children")  # type: ignore[return-value]


def tree(root: psutil.Process, children: Iterable[psutil.Process]) -> list[psutil.Process]:
    """The root and its descendants, less the supervised children."""
    skip = {c.pid for c in children}
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    return [p for p in procs if p.pid not in skip and alive(p)]


def cpu_snapshot(procs: Iterable[psutil.Process]) -> dict[tuple[int, float], float]:
    snap = {}
    for p in procs:
        try:
            t = p.cpu_times()
            snap[(p.pid, p.create_time())] = t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return snap


def memory(procs: Iterable[psutil.Process]) -> tuple[int, int | None]:
    rss, uss = 0, 0
    readable = True
    for p in procs:
        try:
            rss += p.memory_info().rss
            if readable:
                uss += p.memory_full_info().uss
        except psutil.AccessDenied:
            readable = False
        except psutil.NoSuchProcess:
            pass
    return rss, uss if readable else None


def measure(token: str, count: int, window: float, started: Started) -> Footprint:
    root = psutil.Process(started.root)
    kids = wait_children(token, count, START_DEADLINE, root)
    descendants = {p.pid for p in root.children(recursive=True)}
    outside = [k.pid for k in kids if k.pid not in descendants]
    if outside:
        raise RuntimeError(f"children {outside} are not in the tree of pid {root.pid}")
    before = cpu_snapshot(tree(root, kids))
    time.sleep(window)  # the measured idle window
    kids = marked(token)
    procs = tree(root, kids)
    after = cpu_snapshot(procs)
    used = sum(v - before.get(k, 0.0) for k, v in after.items())
    rss, uss = memory(procs)
    victim = kids[0]
    victim.kill()
    try:
        wait_until(lambda: not alive(victim) and len(marked(token)) == count, 15, "a restarted child")
        restart_ok = True
    except TimeoutError:
        restart_ok = False
    return Footprint(len(procs), rss, uss, 100.0 * used / window, restart_ok)


def popen(args: list[str], work: Path, stdin: int | None = None) -> subprocess.Popen[bytes]:
    with open(work / "tool.out", "ab") as out:
        return subprocess.Popen(args, stdin=stdin, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start_procsync(work: Path, script: Path, count: int) -> Started:
    proc = popen([sys.executable, "-c", HOST, str(work / "state.json"), str(work / "logs"),
                  str(script), str(count)], work, stdin=subprocess.PIPE)

    def stop() -> None:
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()  # EOF: the host shuts down with stop_servers=True
        try:
            proc.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            terminate(proc)

    return Started(proc.pid, stop)


def start_supervisord(work: Path, script: Path, count: int) -> Started:
    conf = work / "supervisord.conf"
    conf.write_text(
        "[supervisord]\n"
        f"nodaemon=true\nlogfile={work}/supervisord.log\npidfile={work}/supervisord.pid\n"
        f"childlogdir={work}\n"
        f"[unix_http_server]\nfile={work}/supervisor.sock\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        f"[program:child]\ncommand=/bin/sh {script}\nnumprocs={count}\n"
        "process_name=%(program_name)s_%(process_num)02d\nautorestart=true\n"
        "stopasgroup=true\nkillasgroup=true\n"
    )
    proc = popen([str(SUPERVISORD), "-c", str(conf)], work)
    return Started(proc.pid, lambda: terminate(proc))


def start_circus(work: Path, script: Path, count: int) -> Started:
    conf = work / "circus.ini"
    conf.write_text(
        "[circus]\n"
        f"endpoint = tcp://127.0.0.1:{free_port()}\n"
        f"pubsub_endpoint = tcp://127.0.0.1:{free_port()}\n"
        "statsd = false\n"
        f"[watcher:child]\ncmd = /bin/sh {script}\nnumprocesses = {count}\n"
    )
    proc = popen([str(CIRCUSD), str(conf)], work)
    return Started(proc.pid, lambda: terminate(proc))


def start_pm2(work: Path, script: Path, count: int) -> Started:
    env = dict(os.environ, PM2_HOME=str(work / "pm2"))
    apps = work / "ecosystem.json"
    apps.write_text(json.dumps({"apps": [
        {"name": f"child-{i:02d}", "script": str(script), "interpreter": "/bin/sh",
         "autorestart": True} for i in range(count)]}))

    def pm2(*args: str) -> None:
        with open(work / "tool.out", "ab") as out:
            subprocess.run([str(PM2), *args], env=env, check=True, stdout=out,
                           stderr=subprocess.STDOUT, timeout=60)

    pidfile = work / "pm2" / "pm2.pid"
    try:
        pm2("start", str(apps))
        god = psutil.Process(int(pidfile.read_text()))
    except BaseException:
        _stop_pm2(pm2, pidfile)
        raise
    return Started(god.pid, lambda: _stop_pm2(pm2, pidfile, god))


def _stop_pm2(pm2: Callable[..., None], pidfile: Path, god: psutil.Process | None = None) -> None:
    if god is None and pidfile.exists():
        god = psutil.Process(int(pidfile.read_text()))
    try:
        pm2("kill")
    finally:
        if god is not None and alive(god):
            god.kill()


def kill_leftovers(prefix: str) -> list[int]:
    """SIGKILL the process group of every marked child still alive; return their pids."""
    left = marked(prefix)
    own = os.getpgrp()
    for p in left:
        try:
            pgid = os.getpgid(p.pid)
            if pgid > 1 and pgid != own:
                os.killpg(pgid, signal.SIGKILL)
            else:
                p.kill()
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return [p.pid for p in left]


TOOLS: list[tuple[str, Callable[[Path, Path, int], Started], Path | None, str]] = [
    ("procsync", start_procsync, None, "autorestart=always, monitor interval 3 s"),
    ("supervisord", start_supervisord, SUPERVISORD, "numprocs=N, autorestart=true"),
    ("circus", start_circus, CIRCUSD, "numprocesses=N, defaults"),
    ("pm2", start_pm2, PM2, "N apps, fork mode, defaults"),
]


def run_tool(name: str, start: Callable[[Path, Path, int], Started], count: int,
             window: float) -> Footprint:
    token = f"{RUN}-{name}"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        script = work / "child.sh"
        script.write_text(f"#!/bin/sh\nexport {MARK}={token}\nexec sleep 3600\n")
        started = start(work, script, count)
        try:
            return measure(token, count, window, started)
        except Exception:
            log = work / "tool.out"
            if log.exists():
                sys.stderr.write(log.read_text(errors="replace")[-2000:])
            raise
        finally:
            try:
                started.stop()
                wait_until(lambda: not marked(token), STOP_DEADLINE, f"{name}'s children to end")
            finally:
                left = kill_leftovers(token)
                if left:
                    raise RuntimeError(f"{name} left children {left} running (killed)")


def ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "n/a"
    return f"{value / base:.2f}"


def counts(text: str) -> list[int]:
    """`--children`: one count or a comma-separated sweep, each >= 1."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers") from err
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every count must be >= 1")
    return values


def report(count: int, window: float, results: dict[str, Footprint], notes: dict[str, str]) -> None:
    mib = 1024 * 1024
    base = results.get("procsync", next(iter(results.values())))
    print(f"supervisor footprint, {count} children each (sleep, auto-restart on), "
          f"idle window {window:g} s")
    print(f"{'tool':12} {'procs':>5} {'RSS MiB':>8} {'x':>5} {'USS MiB':>8} {'x':>5} "
          f"{'idle CPU %':>10} {'x':>5} {'restart':>7}  settings")
    for name, r in results.items():
        uss = f"{r.uss / mib:8.1f}" if r.uss is not None else f"{'n/a':>8}"
        print(f"{name:12} {r.procs:5d} {r.rss / mib:8.1f} {ratio(r.rss, base.rss):>5} {uss} "
              f"{ratio(r.uss, base.uss):>5} {r.cpu_percent:10.3f} "
              f"{ratio(r.cpu_percent, base.cpu_percent):>5} {'ok' if r.restart_ok else 'NO':>7}  "
              f"{notes[name]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=counts, default=[20],
                        help="children per tool, or a sweep such as 20,50,100,200 (default 20)")
    parser.add_argument("--window", type=float, default=20.0, help="idle window, seconds (default 20)")
    parser.add_argument("--json", type=Path, default=default_json("footprint"),
                        help="where to write the results (default bench/results/footprint.json)")
    parser.add_argument("--plot", action="store_true",
                        help="then redraw the charts in docs/bench/ (python bench/plot.py)")
    args = parser.parse_args()
    if args.window <= 0:
        parser.error("--window must be > 0")
    results: dict[int, dict[str, Footprint]] = {}
    notes: dict[str, str] = {}
    began = time.monotonic()
    try:
        for count in args.children:
            results[count] = {}
            for name, start, binary, note in TOOLS:
                if binary is not None and not binary.exists():
                    print(f"skipping {name}: {binary} is not installed", file=sys.stderr)
                    continue
                results[count][name] = run_tool(name, start, count, args.window)
                notes[name] = note
                print(f"  {name} at {count}: done", file=sys.stderr)
    finally:
        left = kill_leftovers(RUN)
        if left:
            print(f"killed leftover children {left}", file=sys.stderr)
    for count, by_tool in results.items():
        report(count, args.window, by_tool, notes)
    tick = 100.0 / os.sysconf("SC_CLK_TCK") / args.window
    print(f"total {time.monotonic() - began:.0f} s; x = ratio to procsync; procs = supervisor "
          f"processes measured (children excluded); CPU % of one core, resolution {tick:.3f} %")
    versions = {name: tool_version(name) for name in notes}
    rows = [{"tool": name, "version": versions[name], "settings": notes[name], "children": count,
             "procs": r.procs, "rss_bytes": r.rss, "uss_bytes": r.uss,
             "idle_cpu_percent": round(r.cpu_percent, 4), "restart_ok": r.restart_ok}
            for count, by_tool in results.items() for name, r in by_tool.items()]
    write_results(args.json, "footprint", {"children": args.children, "window_s": args.window,
                                           "cpu_resolution_percent": round(tick, 4)}, rows)
    if args.plot:
        plot_now()


if __name__ == "__main__":
    main()
