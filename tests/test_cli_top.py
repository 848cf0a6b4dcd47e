"""`procsync top` / `status --watch`: the drawing helpers, plain frames when piped, and the real
command under a pseudo-terminal against a real `procsync serve`."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import free_port, listener_code, wait_until
from test_cli import BASE_ENV, PROCSYNC, Serve, server_table, write_config

from procsync.cli.top import SPARK, clip, cpu_ceiling, memory_scale, resample, screen, sparkline

ENV = {k: v for k, v in BASE_ENV.items() if k not in ("COLUMNS", "LINES")}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# -- the drawing helpers -------------------------------------------------------------------

def test_sparkline_scales_to_the_ceiling_and_right_aligns():
    assert sparkline([0, 50, 100], 3, 100) == "▁▅█"
    assert sparkline([0, 200], 2, 200) == "▁█"  # over 100 %: the ceiling is the peak
    assert sparkline([10, None, 10], 5, 10) == "  █ █"  # None (not running) is a gap
    assert sparkline(list(range(100)), 4, 99) == "████"  # only the last `width` values
    assert sparkline([0, 5], 2, 0) == "▁█"  # no range: something is full, nothing is empty
    assert sparkline([0, 1], 2, 1, chars="ab") == "ab"
    assert sparkline([10, 15, 20], 3, 20, floor=10) == "▁▅█"


def test_scales_cpu_from_zero_memory_from_near_its_peak():
    assert cpu_ceiling([1.0, None, 40.0]) == 100.0 and cpu_ceiling([250.0]) == 250.0
    steady = [100e6] * 5
    ceiling, floor = memory_scale(steady)
    assert sparkline(steady, 5, ceiling, floor=floor) == "█████"  # flat
    growing = [100e6 + 1e6 * n for n in range(5)]  # +4 %: visible
    ceiling, floor = memory_scale(growing)
    assert floor == pytest.approx(0.9 * 104e6)
    assert sparkline(growing, 5, ceiling, floor=floor) == "▅▆▇██"
    halved = [200e6, 100e6]  # more than 10 %: from the lowest value
    assert memory_scale(halved) == (200e6, 100e6) and memory_scale([None]) == (0.0, 0.0)


def test_resample_one_value_per_step_holding_gaps():
    times = [0.0, 0.5, 1.0, 1.5, 2.0, 5.0]
    values = [1.0, 9.0, 2.0, 3.0, 4.0, 7.0]
    # slots of 1 s ending at 5.0: (4,5] (3,4] (2,3] (1,2] (0,1] (-1,0]
    assert resample(times, values, 1.0, 10) == [1.0, 9.0, 4.0, 4.0, 4.0, 7.0]
    assert resample(times, values, 1.0, 2) == [4.0, 7.0]  # at most `count`, newest last
    assert resample([0.0, 1.0], [None, 3.0], 1.0, 5) == [None, 3.0]
    assert resample([], [], 1.0, 5) == []


def test_clip_counts_visible_characters_only():
    red = "\x1b[31mabc\x1b[0m"
    assert clip("abcdef", 3) == "abc"
    assert clip(red + "def", 2) == "\x1b[31mab\x1b[0m"  # the colour is closed where the line is cut
    assert clip(red + "def", 10) == red + "def"
    assert ANSI.sub("", clip(red + "de", 4)) == "abcd"


def test_screen_draws_in_place_within_the_terminal():
    drawn = screen(["title", "x" * 50, "short"], 10, 24)
    assert drawn.startswith("\x1b[H") and drawn.endswith("\x1b[J")
    assert [ANSI.sub("", line) for line in drawn.split("\r\n")] == ["title", "x" * 10, "short", ""]
    tall = screen([f"line {n}" for n in range(30)], 80, 5)
    rows = [ANSI.sub("", line) for line in tall.split("\r\n")]
    assert len(rows) == 5 and rows[-1].startswith("... 26 more lines") and not tall.endswith("\x1b[J")


# -- a procsync API on a real port, with canned answers -------------------------------------

WEB_HISTORY = {"id": "web", "interval": 0.2, "window": 3600.0,
               "times": [1000.0 + 0.2 * n for n in range(21)],
               "cpu_percent": [5.0 * n for n in range(21)],  # 0 .. 100 %
               "memory_rss": [50_000_000 + 1_000_000 * n for n in range(21)],
               "health": ["healthy"] * 21, "ports_up": [1] * 21, "ports_total": [1] * 21,
               "pids": [4242] * 21, "marks": []}
SERVERS = [
    {"id": "web", "status": "running", "running": True, "pid": 4242, "health": "healthy", "uptime": 75.0,
     "restarts": 2, "cpu_percent": 100.0, "memory_rss": 70_000_000},
    {"id": "worker", "status": "backoff", "running": False, "pid": None, "health": "dead", "uptime": None,
     "restarts": 5, "cpu_percent": 0.0, "memory_rss": 0},
]


class FakeApi:
    """GET <prefix>/api/servers and /servers/<id>/metrics on 127.0.0.1; counts the requests."""

    def __init__(self, port: int = 0, token: str | None = None) -> None:
        self.requests: Counter[str] = Counter()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests[self.path] += 1
                body: object
                if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
                    status, body = 401, {"error": "unauthorized", "message": "missing or wrong token"}
                elif self.path == "/procsync/api/servers":
                    status, body = 200, {"servers": SERVERS}
                elif self.path == "/procsync/api/servers/web/metrics":
                    status, body = 200, WEB_HISTORY
                elif self.path == "/procsync/api/servers/worker/metrics":
                    status, body = 200, {"id": "worker", "times": [], "cpu_percent": [], "memory_rss": []}
                else:
                    status, body = 404, {"error": "not_found", "message": f"no route {self.path}"}
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def fake_api():
    api = FakeApi()
    try:
        yield api
    finally:
        api.close()


class Piped:
    """`procsync <args>` with stdout on a pipe, read by a thread; `close()` ends its group."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen([*PROCSYNC, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, cwd=cwd, env=ENV, start_new_session=True)
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := os.read(self.proc.stdout.fileno(), 65536):
            self.chunks.append(chunk)

    def text(self) -> str:
        return b"".join(self.chunks).decode()

    def frames(self) -> list[str]:
        """The complete frames so far (each is followed by a blank line or the end)."""
        return self.text().split("\n\n")[:-1]

    def interrupt(self) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)
        code = self.proc.wait(timeout=20)
        self.reader.join(timeout=5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def rows_of(frame: str) -> dict[str, str]:
    return {line.split()[0]: line for line in frame.splitlines()[1:] if line.strip()}


def test_piped_frames_are_plain_and_metrics_are_fetched_once(tmp_path, fake_api):
    top = Piped(["top", "--url", fake_api.url, "-n", "0.2"], tmp_path)
    try:
        frames = wait_until(lambda: len(f := top.frames()) >= 4 and f, 30, "four frames")
        assert top.interrupt() == 0, top.proc.stderr.read().decode() if top.proc.stderr else ""
    finally:
        top.close()
    output = top.text()
    assert "\x1b" not in output  # piped: no escape codes at all
    for frame in frames:
        lines = frame.splitlines()
        assert lines[0].startswith(f"procsync top  {fake_api.url}/procsync  every 0.2s")
        assert lines[1].split() == ["ID", "STATUS", "HEALTH", "PID", "UPTIME", "RESTARTS", "CPU", "MEM",
                                    "CPU", "4s", "MEM", "4s"]
        rows = rows_of(frame)
        assert rows["web"].split()[:8] == ["web", "running", "healthy", "4242", "1m15s", "2", "100%", "66.8M"]
        assert rows["worker"].split()[:8] == ["worker", "backoff", "dead", "-", "-", "5", "-", "-"]
    cpu_spark, mem_spark = rows_of(frames[0])["web"].split()[-2:]
    # seeded from the history (0 .. 100 % rising), then the 100 % of the refresh
    assert len(cpu_spark) == 20 and list(cpu_spark) == sorted(cpu_spark) and cpu_spark.endswith("█")
    assert len(set(cpu_spark)) >= 5
    assert list(mem_spark) == sorted(mem_spark) and len(set(mem_spark)) >= 5 and mem_spark.endswith("█")
    assert not set(rows_of(frames[-1])["worker"].split("dead")[1]) & set(SPARK)  # never ran: no bars
    # one GET /servers per refresh; each server's history once, whatever the number of refreshes
    assert fake_api.requests["/procsync/api/servers"] >= 4
    assert fake_api.requests["/procsync/api/servers/web/metrics"] == 1
    assert fake_api.requests["/procsync/api/servers/worker/metrics"] == 1


def test_unreachable_is_shown_and_retried_until_it_answers(tmp_path):
    port = free_port()
    top = Piped(["status", "--watch", "--url", f"http://127.0.0.1:{port}", "-n", "0.2", "web"], tmp_path)
    api = None
    try:
        frames = wait_until(lambda: len(f := top.frames()) >= 2 and f, 30, "two frames without a server")
        assert f"error: cannot reach procsync at http://127.0.0.1:{port}/procsync" in frames[0]
        assert top.proc.poll() is None  # still running, retrying
        api = FakeApi(port)
        recovered = wait_until(lambda: [f for f in top.frames() if "running" in f], 30, "a frame with data")
        assert set(rows_of(recovered[0])) == {"ID", "web"}  # only the id asked for
        assert top.interrupt() == 0
    finally:
        top.close()
        if api is not None:
            api.close()


def test_once_unknown_ids_and_bad_combinations(tmp_path, fake_api):
    once = subprocess.run([*PROCSYNC, "top", "--once", "--url", fake_api.url, "worker", "nope"],
                          capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=60)
    assert once.returncode == 0, once.stderr
    assert set(rows_of(once.stdout)) == {"ID", "worker", "no"} and "no server 'nope'" in once.stdout
    down = subprocess.run([*PROCSYNC, "top", "--once", "--url", f"http://127.0.0.1:{free_port()}"],
                          capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=60)
    assert down.returncode == 3 and "cannot reach procsync" in down.stderr
    both = subprocess.run([*PROCSYNC, "status", "--watch", "--json", "--url", fake_api.url],
                          capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=60)
    assert both.returncode == 2 and "--watch and --json" in both.stderr


def test_a_refused_token_ends_it_with_exit_code_2(tmp_path):
    api = FakeApi(token="s3cret")
    top = Piped(["top", "--url", api.url, "-n", "0.2"], tmp_path)
    try:
        code = top.proc.wait(timeout=30)  # waiting would not help: it must exit by itself
        assert code == 2
        assert top.proc.stderr is not None and "missing or wrong token" in top.proc.stderr.read().decode()
        assert api.requests["/procsync/api/servers"] == 1
    finally:
        top.close()
        api.close()


# -- the real thing: procsync serve, and top on a terminal ----------------------------------

def read_available(fd: int, into: bytearray) -> bytes:
    """Whatever the terminal has for us now (nothing once the other side is closed)."""
    while select.select([fd], [], [], 0)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the last holder of the pty's other side has exited
            break
        if not chunk:
            break
        into += chunk
    return bytes(into)


def full_frames(raw: bytes) -> list[str]:
    """The frames drawn so far that are complete (cursor home ... erase below), escapes removed."""
    text = raw.decode("utf-8", "replace")
    return [ANSI.sub("", part).replace("\r", "") for part in text.split("\x1b[H")[1:] if "\x1b[J" in part]


def test_top_on_a_terminal_draws_in_place_and_restores_it(tmp_path):
    web_port = free_port()
    web = server_table("web", listener_code(web_port), ports=(web_port,))
    config = write_config(tmp_path, free_port(), web)
    serve = Serve(tmp_path, config)
    master, slave = pty.openpty()
    proc = None
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))  # rows, columns
        proc = subprocess.Popen([*PROCSYNC, "top", "--url", serve.url.rstrip("/"), "-n", "0.2"],
                                stdin=slave, stdout=slave, stderr=slave, env=ENV, cwd=tmp_path,
                                start_new_session=True)
        os.close(slave)
        slave = -1
        out = bytearray()

        def ready_frame() -> str | None:
            for frame in full_frames(read_available(master, out)):
                rows = rows_of(frame)
                if "web" in rows and rows["web"].split()[1:3] == ["running", "healthy"]:
                    return frame
            return None

        frame = wait_until(ready_frame, 60, "a frame with web running and healthy")
        assert bytes(out).startswith(b"\x1b[?1049h\x1b[?25l")  # alternate screen, cursor hidden
        lines = frame.split("\n")
        assert lines[0].startswith("procsync top  http://127.0.0.1:") and lines[1] == ""
        assert lines[2].split()[:8] == ["ID", "STATUS", "HEALTH", "PID", "UPTIME", "RESTARTS", "CPU", "MEM"]
        assert all(len(line) <= 100 for line in lines)  # fits the terminal, never wraps
        assert set(rows_of(frame)["web"]) & set(SPARK)  # the sparklines are drawn
        assert b"\x1b[32mrunning" in out and b"\x1b[32mhealthy" in out  # coloured like status

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=20) == 0
        tail = read_available(master, out)
        assert tail.endswith(b"\x1b[?25h\x1b[?1049l")  # cursor shown, normal screen back
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for fd in (master, slave):
            if fd >= 0:
                os.close(fd)
        serve.close()
