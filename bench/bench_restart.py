"""Crash-to-restart latency: procsync against supervisord, circus and PM2, in one run.

The same child runs under each: a shell script that writes its pid into a
FIFO the bench holds open, then execs `sleep`. Each round kills the child
with SIGKILL from outside and times the moment the replacement writes its
pid. Each tool uses its default restart settings except where a default
would keep it from restarting at all (noted in the table). Between kills
the bench waits past every tool's "stable" threshold, so each kill is a
first, immediate restart.

supervisord and circus are taken from $BENCH_VENV/bin, PM2 from $PM2_BIN;
by default from bench/.tools, which `bash bench/setup-tools.sh` fills. A
tool that is missing is skipped.

Run: python bench/bench_restart.py [--kills 20] [--json PATH] [--plot]
(results go to bench/results/restart.json; --plot redraws docs/bench/ after)
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

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

SETTLE = 1.5  # seconds between kills: past supervisord's startsecs=1 and our stable_after



class Fifo:
    """A FIFO the children write their pid to; reading it timestamps each start."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self.buffer = b""

    def next_pid(self, timeout: float) -> tuple[int, float]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no child started in time")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                self.buffer += os.read(self.fd, 4096)
        stamp = time.perf_counter()
        line, self.buffer = self.buffer.split(b"\n", 1)
        return int(line), stamp

    def close(self) -> None:
        os.close(self.fd)


def measure(fifo: Fifo, kills: int, start: Callable[[], None], stop: Callable[[], None]) -> list[float]:
    samples: list[float] = []
    start()
    try:
        pid, _ = fifo.next_pid(30)
        for _ in range(kills):
            time.sleep(SETTLE)
            t0 = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            pid, t1 = fifo.next_pid(30)
            samples.append(t1 - t0)
    finally:
        stop()
    return samples


def bench_procsync(work: Path, script: Path, fifo: Fifo, kills: int) -> list[float]:
    from procsync import ServerOrchestrator

    orch = ServerOrchestrator(work / "state.json", log_dir=work / "logs")
    orch.register_server("child", {
        "command": ["/bin/sh", str(script)], "autorestart": "always",
        "stable_after": 1.0, "max_restarts": kills + 5, "stop_timeout": 2,
    })
    orch.initialize()
    return measure(fifo, kills, lambda: orch.start_server("child"),
                   lambda: orch.shutdown(stop_servers=True))


def bench_supervisord(work: Path, script: Path, fifo: Fifo, kills: int) -> list[float]:
    conf = work / "supervisord.conf"
    conf.write_text(
        "[supervisord]\n"
        f"nodaemon=true\nlogfile={work}/supervisord.log\npidfile={work}/supervisord.pid\n"
        f"[unix_http_server]\nfile={work}/supervisor.sock\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        f"[program:child]\ncommand=/bin/sh {script}\nautorestart=true\n"
        f"startretries={kills + 5}\nstopasgroup=true\nkillasgroup=true\n"
    )
    proc: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        proc.append(subprocess.Popen([str(SUPERVISORD), "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    return measure(fifo, kills, start, lambda: _terminate(proc))


def bench_circus(work: Path, script: Path, fifo: Fifo, kills: int) -> list[float]:
    conf = work / "circus.ini"
    conf.write_text(
        "[circus]\n"
        f"endpoint = tcp://127.0.0.1:{free_port()}\n"
        f"pubsub_endpoint = tcp://127.0.0.1:{free_port()}\n"
        "statsd = false\n"
        f"[watcher:child]\ncmd = /bin/sh {script}\nnumprocesses = 1\n"
        f"max_retry = {kills + 5}\n"
    )
    proc: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        proc.append(subprocess.Popen([str(CIRCUSD), str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    return measure(fifo, kills, start, lambda: _terminate(proc))


def bench_pm2(work: Path, script: Path, fifo: Fifo, kills: int) -> list[float]:
    env = dict(os.environ, PM2_HOME=str(work / "pm2"))

    def pm2(*args: str) -> None:
        subprocess.run([str(PM2), *args], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    return measure(fifo, kills,
                   lambda: pm2("start", str(script), "--name", "child", "--interpreter", "/bin/sh"),
                   lambda: pm2("kill"))


def _terminate(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--json", type=Path, default=default_json("restart"),
                        help="where to write the results (default bench/results/restart.json)")
    parser.add_argument("--plot", action="store_true",
                        help="then redraw the charts in docs/bench/ (python bench/plot.py)")
    args = parser.parse_args()
    runners = [
        ("procsync", bench_procsync, "autorestart=always"),
        ("supervisord", bench_supervisord, "autorestart=true"),
        ("circus", bench_circus, "defaults"),
        ("pm2", bench_pm2, "defaults"),
    ]
    results: dict[str, list[float]] = {}
    notes: dict[str, str] = {}
    for name, runner, note in runners:
        tool = {"supervisord": SUPERVISORD,
                "circus": CIRCUSD, "pm2": PM2}.get(name)
        if tool is not None and not tool.exists():
            print(f"skipping {name}: {tool} is not installed", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            fifo = Fifo(work / "started.fifo")
            script = work / "child.sh"
            script.write_text(f"#!/bin/sh\necho $$ > {fifo.path}\nexec sleep 3600\n")
            try:
                results[name] = runner(work, script, fifo, args.kills)
                notes[name] = note
            finally:
                fifo.close()
    base = statistics.median(results["procsync"])
    print(f"crash-to-restart latency (kill -9 -> replacement running), {args.kills} kills each")
    print(f"{'tool':12} {'median ms':>10} {'p90 ms':>10} {'x procsync':>11}  settings")
    rows = []
    for name, samples in results.items():
        med = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1] if len(samples) > 1 else med
        print(f"{name:12} {med * 1000:10.2f} {p90 * 1000:10.2f} {med / base:11.1f}  {notes[name]}")
        rows.append({"tool": name, "version": tool_version(name), "settings": notes[name],
                     "kills": len(samples), "median_ms": round(med * 1000, 3),
                     "p90_ms": round(p90 * 1000, 3),
                     "samples_ms": [round(s * 1000, 3) for s in samples]})
    write_results(args.json, "restart", {"kills": args.kills, "settle_s": SETTLE}, rows)
    if args.plot:
        plot_now()


if __name__ == "__main__":
    main()
