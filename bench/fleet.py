"""Many children under one supervisor: the shared harness of bench_storm and bench_scale.

Each tool (procsync, supervisord, circus, PM2) runs N copies of the same
child, `/bin/sh child.sh`, which exports a marker variable, writes its pid
into a FIFO the bench holds open, then execs `sleep 3600` (same pid). Reading
the FIFO timestamps every start at no cost to the tools; pidfds on the
children's pids timestamp every exit the same way.

Each tool is driven by an already-running controller, so no client start-up
is timed: procsync by a host process (HOST below: a ServerOrchestrator that
reads commands on stdin), supervisord over XML-RPC, circus by a small
CircusClient script run with $BENCH_VENV's Python, PM2 by a small node script
using PM2's programmatic API. Commands block until the tool says they are
done: procsync `start_all()`/`stop_all()`, supervisord
`startAllProcesses(wait=True)`/`stopAllProcesses(wait=True)`, circus
`start`/`stop` with `waiting`, PM2 `start(ecosystem)`/`stop("all")`.

Every daemon runs in its own session; `Tool.close()` stops it, and
`kill_leftovers(RUN)` (from bench_footprint) kills any marked child left.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from bench_footprint import MARK, RUN, alive, kill_leftovers, terminate, wait_until
from others import BENCH_VENV, CIRCUSD, PM2, SUPERVISORD, free_port

__all__ = ["MARK", "RUN", "TOOLS", "Fifo", "Tool", "alive", "kill_leftovers", "timed",
           "wait_gone", "child_script"]

STOP_DEADLINE = 60.0

HOST = r"""
import json, signal, sys, threading, time
import procsync
from procsync import ServerOrchestrator, signals

count, state, logs, script = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
interval, extra = sys.argv[5], json.loads(sys.argv[6])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

def reply(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()

note = ""
if interval == "off":
    try:
        orch = ServerOrchestrator(state, interval=0, log_dir=logs)
        note = "interval=0"
    except (ValueError, TypeError) as err:  # checks cannot be turned off: a very long interval
        orch = ServerOrchestrator(state, interval=365 * 86400.0, log_dir=logs)
        note = "interval=1 year (interval=0 refused)"
        print(f"interval=0 refused: {err}", file=sys.stderr)
else:
    orch = ServerOrchestrator(state, interval=float(interval), log_dir=logs)
    note = f"interval={float(interval):g}"
for i in range(count):
    orch.register_server(f"s{i:03d}", {"command": ["/bin/sh", script], "autorestart": "always",
                                       **extra})
old = set()
started = {}
everyone = threading.Event()

def on_started(sender, id, pid, **_):
    if old and pid not in old and id not in started:
        started[id] = time.monotonic()
        if len(started) == count:
            everyone.set()

signals.server_started.connect(on_started, sender=orch, weak=False)
try:
    orch.initialize()
    reply(ready=True, note=note, procsync=procsync.__file__)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "start":
            results = orch.start_all()
            reply(ok=all(r.success for r in results.values()),
                  failed={k: r.message for k, r in results.items() if not r.success})
        elif cmd[0] == "stop":
            results = orch.stop_all()
            reply(ok=all(r.success for r in results.values()),
                  failed={k: r.message for k, r in results.items() if not r.success})
        elif cmd[0] == "arm":  # the next starts with a pid not in this set are restarts
            started.clear()
            everyone.clear()
            old = {s.pid for s in orch.get_server_status()}
            reply(ok=True, pids=len(old))
        elif cmd[0] == "restarted":  # when every server ran again, by server_started
            ok = everyone.wait(float(cmd[1]))
            statuses = orch.get_server_status()
            running = sum(1 for s in statuses if s.status == "running" and s.pid not in old)
            reply(ok=ok, last=max(started.values(), default=None), running=running)
finally:
    orch.shutdown(stop_servers=True)
"""

CIRCUS_CONTROLLER = r"""
import json, sys
from circus.client import CircusClient
client = CircusClient(endpoint=sys.argv[1], timeout=120)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    res = client.call({"command": line.strip(), "properties": {"name": "child", "waiting": True}})
    print(json.dumps({"ok": res.get("status") == "ok", "reply": res}), flush=True)
"""

PM2_CONTROLLER = r"""
const pm2 = require(process.argv[1]);
const file = process.argv[2];
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");
pm2.connect((err) => {
  if (err) { say({error: String(err)}); process.exit(1); }
  say({ready: true});
  const rl = require("readline").createInterface({input: process.stdin});
  rl.on("line", (line) => {
    const done = (e) => say(e ? {ok: false, error: String(e.message || e)} : {ok: true});
    if (line === "start") pm2.start(file, done);
    else if (line === "stop") pm2.stop("all", done);
    else if (line === "kill") pm2.killDaemon((e) => { done(e); pm2.disconnect(); });
  });
  rl.on("close", () => pm2.disconnect());
});
"""


def child_script(work: Path, fifo: Path, token: str) -> Path:
    """The child every tool runs: marked, reports its pid, then is `sleep`."""
    script = work / "child.sh"
    script.write_text(f"#!/bin/sh\nexport {MARK}={token}\necho $$ > {fifo}\nexec sleep 3600\n")
    return script


class Fifo:
    """A FIFO every child writes its pid into; reading it timestamps each start."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self.buffer = b""

    def collect(self, count: int, timeout: float, exclude: set[int] = frozenset()) -> dict[int, float]:  # type: ignore[assignment]
        """The next `count` distinct pids not in `exclude`, each with its monotonic arrival time."""
        got: dict[int, float] = {}
        deadline = time.monotonic() + timeout
        while len(got) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"only {len(got)} of {count} children started within {timeout:g} s")
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                continue
            self.buffer += os.read(self.fd, 65536)
            stamp = time.monotonic()
            *lines, self.buffer = self.buffer.split(b"\n")
            for line in lines:
                pid = int(line)
                if pid not in exclude:
                    got.setdefault(pid, stamp)
        return got

    def drain(self) -> None:
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass
        self.buffer = b""

    def close(self) -> None:
        os.close(self.fd)


def wait_gone(pids: list[int], timeout: float) -> float:
    """Block until every pid has ended (dead or zombie); return the monotonic time of the last."""
    poller = select.poll()
    fds: dict[int, int] = {}
    last = time.monotonic()
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue  # already reaped
        fds[fd] = pid
        poller.register(fd, select.POLLIN)
    try:
        deadline = time.monotonic() + timeout
        while fds:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(fds)} children still alive after {timeout:g} s")
            for fd, _ in poller.poll(left * 1000):
                last = time.monotonic()
                poller.unregister(fd)
                os.close(fd)
                del fds[fd]
    finally:
        for fd in fds:
            os.close(fd)
    return last


def timed(command: Callable[[], None], watch: Callable[[], float]) -> tuple[float, float]:
    """Run `command` on a thread while `watch` waits for its effect; (command s, effect s)."""
    error: list[BaseException] = []
    done: list[float] = []

    def run() -> None:
        try:
            command()
            done.append(time.monotonic())
        except BaseException as err:  # noqa: BLE001 - re-raised below
            error.append(err)

    t0 = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        effect = watch()
    finally:
        thread.join(STOP_DEADLINE * 2)
    if error:
        raise error[0]
    if not done:
        raise TimeoutError("the command did not return")
    return done[0] - t0, effect - t0


class LineProcess:
    """A controller process speaking one JSON line per command on stdin/stdout."""

    def __init__(self, args: list[str], work: Path, env: dict[str, str] | None = None) -> None:
        self.out = open(work / "tool.out", "ab")  # noqa: SIM115 - closed in close()
        # cwd: a `python -c` puts its cwd first on sys.path, ahead of $PYTHONPATH
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.out, env=env, cwd=work, start_new_session=True)
        self.buffer = b""
        hello = self.read(120)
        if not hello.get("ready"):
            raise RuntimeError(f"controller {args[:2]} did not start: {hello}")
        self.hello = hello

    def read(self, timeout: float) -> dict[str, object]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer from pid {self.proc.pid} in {timeout:g} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError(f"controller pid {self.proc.pid} ended "
                                       f"(exit code {self.proc.wait()})")
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def call(self, command: str, timeout: float = STOP_DEADLINE * 2) -> dict[str, object]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        answer = self.read(timeout)
        if not answer.get("ok"):
            raise RuntimeError(f"{command!r} failed: {answer}")
        return answer

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()  # EOF: the controller winds down
            except BrokenPipeError:
                pass
        try:
            self.proc.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        finally:
            self.out.close()


class Tool:
    """One supervisor with `count` children registered, none started yet."""

    name = "tool"
    root: int  # the supervising process (children excluded) whose CPU is measured
    location = "?"  # where the tool's code came from (Procsync: procsync's __file__)

    def start_all(self) -> None:
        raise NotImplementedError

    def stop_all(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class Procsync(Tool):
    """A ServerOrchestrator in its own process (HOST), so its CPU is its own."""

    def __init__(self, work: Path, script: Path, count: int, interval: str = "3",
                 extra: dict[str, object] | None = None) -> None:
        self.name = "procsync" if interval != "off" else "procsync, checks off"
        self.host = LineProcess([sys.executable, "-c", HOST, str(count), str(work / "state.json"),
                                 str(work / "logs"), str(script), interval,
                                 json.dumps(extra or {})], work)
        self.root = self.host.proc.pid
        self.note = str(self.host.hello.get("note", ""))
        self.location = str(self.host.hello.get("procsync", "?"))

    def start_all(self) -> None:
        self.host.call("start")

    def stop_all(self) -> None:
        self.host.call("stop")

    def arm(self) -> None:
        self.host.call("arm")

    def restarted(self, timeout: float) -> tuple[float | None, int]:
        """(monotonic time every server was running again, how many run a new pid)."""
        assert self.host.proc.stdin is not None
        self.host.proc.stdin.write(f"restarted {timeout}\n".encode())
        self.host.proc.stdin.flush()
        answer = self.host.read(timeout + 30)
        last = answer.get("last")
        return (float(last) if answer.get("ok") and last is not None else None,  # type: ignore[arg-type]
                int(answer.get("running", 0)))  # type: ignore[call-overload]

    def close(self) -> None:
        self.host.close()


class Supervisord(Tool):
    name = "supervisord"

    def __init__(self, work: Path, script: Path, count: int) -> None:
        port = free_port()
        conf = work / "supervisord.conf"
        conf.write_text(
            "[supervisord]\n"
            f"nodaemon=true\nlogfile={work}/supervisord.log\npidfile={work}/supervisord.pid\n"
            f"childlogdir={work}\n"
            f"[inet_http_server]\nport=127.0.0.1:{port}\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
            f"[program:child]\ncommand=/bin/sh {script}\nnumprocs={count}\n"
            "process_name=%(program_name)s_%(process_num)03d\nautostart=false\nautorestart=true\n"
            "startretries=100\nstopasgroup=true\nkillasgroup=true\n"
        )
        with open(work / "tool.out", "ab") as out:
            self.proc = subprocess.Popen([str(SUPERVISORD), "-c", str(conf)], stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.root = self.proc.pid
        self.rpc = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/RPC2")
        try:
            wait_until(self._up, 30, "supervisord's XML-RPC")
        except BaseException:
            self.close()
            raise

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"supervisord ended with {self.proc.returncode}")
        try:
            state: Any = self.rpc.supervisor.getState()
            return bool(state["statename"] == "RUNNING")
        except OSError:
            return False

    def start_all(self) -> None:
        self.rpc.supervisor.startAllProcesses(True)

    def stop_all(self) -> None:
        self.rpc.supervisor.stopAllProcesses(True)

    def close(self) -> None:
        terminate(self.proc)


class Circus(Tool):
    name = "circus"

    def __init__(self, work: Path, script: Path, count: int) -> None:
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        conf = work / "circus.ini"
        conf.write_text(
            "[circus]\n"
            f"endpoint = {endpoint}\n"
            f"pubsub_endpoint = tcp://127.0.0.1:{free_port()}\n"
            "statsd = false\n"
            f"[watcher:child]\ncmd = /bin/sh {script}\nnumprocesses = {count}\n"
            "autostart = false\n"
        )
        with open(work / "tool.out", "ab") as out:
            self.proc = subprocess.Popen([str(CIRCUSD), str(conf)], stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.root = self.proc.pid
        try:
            self.ctl = LineProcess([str(BENCH_VENV / "bin" / "python"), "-c", CIRCUS_CONTROLLER,
                                    endpoint], work)
        except BaseException:
            terminate(self.proc)
            raise

    def start_all(self) -> None:
        self.ctl.call("start")

    def stop_all(self) -> None:
        self.ctl.call("stop")

    def close(self) -> None:
        try:
            self.ctl.close()
        finally:
            terminate(self.proc)


class Pm2(Tool):
    name = "pm2"

    def __init__(self, work: Path, script: Path, count: int) -> None:
        self.home = work / "pm2"
        env = dict(os.environ, PM2_HOME=str(self.home))
        apps = work / "ecosystem.json"
        apps.write_text(json.dumps({"apps": [
            {"name": f"s{i:03d}", "script": str(script), "interpreter": "/bin/sh",
             "autorestart": True} for i in range(count)]}))
        module = PM2.resolve().parent.parent  # node_modules/pm2/bin/pm2 -> node_modules/pm2
        self.ctl: LineProcess | None = None
        try:
            self.ctl = LineProcess(["node", "-e", PM2_CONTROLLER, "--", str(module), str(apps)],
                                   work, env=env)
            self.root = int((self.home / "pm2.pid").read_text())
        except BaseException:
            self.close()
            raise

    def start_all(self) -> None:
        assert self.ctl is not None
        self.ctl.call("start")

    def stop_all(self) -> None:
        assert self.ctl is not None
        self.ctl.call("stop")

    def close(self) -> None:
        pidfile = self.home / "pm2.pid"
        god = None
        if pidfile.exists():
            try:
                god = psutil.Process(int(pidfile.read_text()))
            except (ValueError, psutil.NoSuchProcess):
                god = None
        try:
            if self.ctl is not None:
                try:
                    self.ctl.call("kill", timeout=30)
                finally:
                    self.ctl.close()
        finally:
            if god is not None and alive(god):
                god.kill()


def make_supervisord(work: Path, script: Path, count: int) -> Tool:
    return Supervisord(work, script, count)


def make_circus(work: Path, script: Path, count: int) -> Tool:
    return Circus(work, script, count)


def make_pm2(work: Path, script: Path, count: int) -> Tool:
    return Pm2(work, script, count)


# name -> (factory, binary that must exist, settings shown in the tables)
TOOLS: dict[str, tuple[Callable[[Path, Path, int], Tool], Path, str]] = {
    "supervisord": (make_supervisord, SUPERVISORD, "numprocs=N, autorestart=true"),
    "circus": (make_circus, CIRCUSD, "numprocesses=N, defaults"),
    "pm2": (make_pm2, PM2, "N apps, fork mode, autorestart (default)"),
}


def run_with_tool(key: str, count: int, make_procsync: Callable[[Path, Path], tuple[Tool, str]],
                  work_on: Callable[[Tool, Fifo], Any]) -> tuple[Any, str]:
    """Run `work_on(tool, fifo)` with tool `key` supervising `count` children; (result, note).

    "procsync..." keys get their tool from `make_procsync(work, script)`. Whatever happens,
    the tool is closed and every child of this run is killed afterwards.
    """
    import tempfile

    token = f"{RUN}-{key}"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fifo = Fifo(work / "started.fifo")
        script = child_script(work, fifo.path, token)
        tool: Tool | None = None
        try:
            if key.startswith("procsync"):
                tool, note = make_procsync(work, script)
                print(f"{key}: procsync from {Path(tool.location).parent}", flush=True)
            else:
                make, _, note = TOOLS[key]
                tool = make(work, script, count)
            return work_on(tool, fifo), note
        except Exception:
            log = work / "tool.out"
            if log.exists():
                sys.stderr.write(log.read_text(errors="replace")[-3000:])
            raise
        finally:
            try:
                if tool is not None:
                    tool.close()
            finally:
                fifo.close()
                left = kill_leftovers(token)
                if left:
                    print(f"{key} left {len(left)} children running (killed)", file=sys.stderr)


def run_tools(tools: str, procsync_keys: tuple[str, ...], run_one: Callable[[str], Any],
              error: Callable[[str], Any]) -> dict[str, Any]:
    """`run_one(key)` for each tool of the comma-separated `tools`, skipping those not installed;
    every child of this run is killed afterwards, also on SIGTERM. `error(message)` for an
    unknown name (argparse's parser.error)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the clean-up on a kill too
    results: dict[str, Any] = {}
    try:
        for key in [k for k in tools.split(",") if k]:
            if key not in TOOLS and key not in procsync_keys:
                error(f"unknown tool {key!r}")
            if key in TOOLS and not TOOLS[key][1].exists():
                print(f"skipping {key}: {TOOLS[key][1]} is not installed", file=sys.stderr)
                continue
            results[key] = run_one(key)
            print(f"  {key}: done", file=sys.stderr)
    finally:
        left = kill_leftovers(RUN)
        if left:
            print(f"killed leftover children {left}", file=sys.stderr)
    return results
