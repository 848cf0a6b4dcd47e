"""Test helpers: a deadline poller, free ports, and a guard against leaked processes.

Every process a test starts inherits PROCSYNC_TEST_RUN from this session, so
after each test any live (non-zombie) process carrying the marker is a leak:
it is killed and the test fails, even when the leak is a grandchild that
left its process group or was reparented to PID 1.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil

from procsync.health import port_open

T = TypeVar("T")

RUN_MARKER = "PROCSYNC_TEST_RUN"
os.environ.setdefault(RUN_MARKER, uuid.uuid4().hex)  # a nested run (manage.py test) keeps its parent's
PY = sys.executable


def wait_until(predicate: Callable[[], T], timeout: float = 5.0, what: str = "condition") -> T:
    """Poll `predicate` every 10 ms until it is truthy; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)
    return result


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_gone(pid: int) -> bool:
    """True when `pid` no longer runs (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def marked_processes(token: str | None = None) -> list[psutil.Process]:
    """Live processes started during this test session (they carry the run marker), or carrying
    `token` as their marker instead (a fixture that outlives one test gives its processes one)."""
    token = token or os.environ[RUN_MARKER]
    me = os.getpid()
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(RUN_MARKER) == token:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def running_counts() -> collections.Counter[str]:
    """PROCSYNC_ID -> how many live processes of this test run carry it."""
    counts: collections.Counter[str] = collections.Counter()
    for proc in marked_processes():
        try:
            sid = proc.environ().get("PROCSYNC_ID")
        except psutil.Error:
            continue
        if sid:
            counts[sid] += 1
    return counts


def kill_marked(token: str | None = None) -> list[str]:
    """Kill every marked process (and its group); describe what was found."""
    leaked = marked_processes(token)
    described = []
    for proc in leaked:
        try:
            described.append(f"pid {proc.pid}: {' '.join(proc.cmdline())[:120]}")
            proc.kill()
        except psutil.Error:
            pass
    for proc in leaked:
        try:
            proc.wait(timeout=5)
        except psutil.Error:
            pass
    return described


def kill_marked_after_grace(grace: float = 2.0, token: str | None = None) -> list[str]:
    """Leaked processes, allowing `grace` s for ones already dying (signalled, not yet reaped)."""
    deadline = time.monotonic() + grace
    while marked_processes(token) and time.monotonic() < deadline:
        time.sleep(0.02)
    return kill_marked(token)


@contextlib.contextmanager
def serving(app: Any, name: str = "test-http") -> Iterator[int]:
    """Serve the WSGI `app` on a free loopback port from a thread; yields the port, shuts down after."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


SUPERVISORD = Path(sys.executable).with_name("supervisord")  # from the test extra


@contextlib.contextmanager
def supervisord(config: Path) -> Iterator[Any]:
    """Run ``supervisord -n -c config`` in its own session; SIGTERM after, then SIGKILL its group."""
    proc = subprocess.Popen([str(SUPERVISORD), "-n", "-c", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def stop_group(proc: subprocess.Popen) -> str:
    """SIGTERM the process group `proc` leads (SIGKILL after 20 s), reap it; what it printed."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return out or ""


def python_cmd(code: str) -> list[str]:
    """A command that runs `code` in a fresh Python interpreter."""
    return [PY, "-c", code]


def listener_code(port: int, delay: float = 0.0) -> str:
    """Python code for a child that listens on `port` (after `delay` s) until killed."""
    return (
        "import socket, time\n"
        f"time.sleep({delay})\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen(16)\n"
        "while True:\n"
        "    c, _ = s.accept(); c.close()\n"
    )


def ignore_term_code(ready_file: str) -> str:
    """Python code for a child that ignores SIGTERM and says so in `ready_file`."""
    return (
        "import signal, time, pathlib\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({ready_file!r}).write_text('ready')\n"
        "while True: time.sleep(1)\n"
    )


HTTP_SERVER = """
import http.server, sys
ROUTES = {"/": 200, "/created": 201, "/bad": 500, "/missing": 404}
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/bad")
        else:
            self.send_response(ROUTES.get(self.path, 404))
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def fill_backlog(server: socket.socket) -> list[socket.socket]:
    """Fill a listen(0) socket's accept queue so that further SYNs are dropped.

    Returns the connected clients, which must stay open (and unaccepted).
    """
    port = server.getsockname()[1]
    clients: list[socket.socket] = []
    for _ in range(16):
        if clients and not port_open(port, timeout=0.2):
            return clients
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
        clients.append(client)
    for client in clients:
        client.close()
    raise AssertionError("the accept queue never filled up")


def hup_counter_code(count_file: str | Path, ready_file: str | Path | None = None) -> str:
    """Python code for a child that appends its pid to `count_file` per SIGHUP; once the handler
    is set it prints 'handler installed' (and writes `ready_file`, if given)."""
    ready = f"pathlib.Path({str(ready_file)!r}).write_text('ready')\n" if ready_file else ""
    return (
        "import os, pathlib, signal, time\n"
        f"count = pathlib.Path({str(count_file)!r})\n"
        "def on_hup(signum, frame):\n"
        "    with count.open('a') as f:\n"
        "        f.write(f'{os.getpid()}\\n')\n"
        "signal.signal(signal.SIGHUP, on_hup)\n"
        "print('handler installed', flush=True)\n"
        f"{ready}"
        "while True:\n"
        "    time.sleep(0.05)\n"
    )


def hups(count_file: Path) -> list[str]:
    """The pids a `hup_counter_code` child wrote, one per SIGHUP it received."""
    try:
        return count_file.read_text().split()
    except FileNotFoundError:
        return []


class Recorder:
    """Collects the signals `names` of an orchestrator with their arrival time (monotonic)."""

    def __init__(self, orch: Any, *names: str) -> None:
        self.events: list[tuple[float, str, dict]] = []
        self.lock = threading.Lock()
        for name in names:
            orch.on(name, self._receiver(name))

    def _receiver(self, name: str) -> Callable[..., None]:
        def receive(sender: Any, **payload: Any) -> None:
            with self.lock:
                self.events.append((time.monotonic(), name, payload))
        return receive

    def named(self, name: str) -> list[tuple[float, dict]]:
        """(time, payload) of every `name` signal so far."""
        with self.lock:
            return [(t, p) for t, n, p in self.events if n == name]

    def first(self, name: str, sid: str, **match: Any) -> float:
        """When the first `name` signal about `sid` (with `match` in its payload) arrived."""
        with self.lock:
            for t, n, p in self.events:
                if n == name and p.get("id") == sid and all(p.get(k) == v for k, v in match.items()):
                    return t
        raise AssertionError(f"no {name} for {sid!r} {match or ''}")


__all__ = [
    "HTTP_SERVER",
    "Recorder",
    "hup_counter_code",
    "hups",
    "fill_backlog",
    "kill_marked_after_grace",
    "marked_processes",
    "running_counts",
    "PY",
    "free_port",
    "ignore_term_code",
    "is_gone",
    "listener_code",
    "python_cmd",
    "wait_until",
    "signal",
]
