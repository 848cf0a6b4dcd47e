"""A real threaded werkzeug server: /events and a log stream read with http.client."""

from __future__ import annotations

import http.client
import json
import re

import pytest
from flask import Flask
from helpers import python_cmd, serving, wait_until

from procsync import ServerOrchestrator
from procsync.flask_ext import ProcSync

TOKEN = "live-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"
TICKER = (
    "import time\n"
    "n = 0\n"
    "while True:\n"
    "    print(f'tick {n:06d} ' + 'x' * 40, flush=True)\n"
    "    n += 1\n"
    "    time.sleep(0.005)\n"
)


class SSEClient:
    """A minimal SSE reader over http.client (one connection)."""

    def __init__(self, port: int, path: str, headers: dict[str, str] | None = None,
                 timeout: float = 10.0) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.conn.request("GET", path, headers={"Accept": "text/event-stream", **AUTH,
                                                **(headers or {})})
        self.resp = self.conn.getresponse()
        self.comments: list[str] = []

    def next_event(self) -> dict:
        event: dict = {}
        while True:
            raw = self.resp.readline()
            if not raw:
                raise EOFError("stream ended")
            line = raw.decode().rstrip("\n")
            if not line:
                if "data" in event or "retry" in event:
                    return event
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            key, _, value = line.partition(": ")
            if key == "data":
                event["data"] = json.loads(value)
            elif key == "id":
                event["id"] = int(value)
            else:
                event[key] = value

    def until(self, predicate, limit: int = 500) -> dict:
        for _ in range(limit):
            event = self.next_event()
            if predicate(event):
                return event
        raise AssertionError("event not seen")

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def orch(tmp_path):
    o = ServerOrchestrator(tmp_path / "state.json", interval=0.2, log_dir=tmp_path / "logs")
    o.register_servers({
        "sleeper": {"command": python_cmd(SLEEPER), "stop_timeout": 2, "color": "teal"},
        "ticker": {"command": python_cmd(TICKER), "stop_timeout": 2, "log_max_bytes": 4_000,
                   "log_backups": 2},
    })
    try:
        yield o
    finally:
        o.shutdown(stop_servers=True)


@pytest.fixture
def live(orch):
    app = Flask("live")
    app.config.update(PROCSYNC_AUTH_TOKEN=TOKEN, PROCSYNC_EVENTS_HEARTBEAT=0.3)
    ProcSync(app, orch)
    clients: list[SSEClient] = []
    with serving(app) as port:

        def connect(path: str, headers: dict[str, str] | None = None) -> SSEClient:
            client = SSEClient(port, path, headers)
            clients.append(client)
            return client

        connect.port = port  # type: ignore[attr-defined]
        try:
            yield connect
        finally:
            for client in clients:
                client.close()


def call(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        headers = {**AUTH, "Content-Type": "application/json"}
        conn.request(method, path, body=json.dumps(body or {}) if method == "POST" else None,
                     headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_events_stream_snapshot_signals_and_replay(live, orch):
    port = live.port
    events = live("/procsync/api/events")
    assert events.resp.status == 200
    assert events.resp.getheader("Content-Type").startswith("text/event-stream")
    assert events.resp.getheader("Cache-Control").startswith("no-cache")
    assert "retry" in events.next_event()
    snapshot = events.next_event()
    assert snapshot["event"] == "snapshot" and "id" not in snapshot
    assert [s["id"] for s in snapshot["data"]["servers"]] == ["sleeper", "ticker"]
    assert snapshot["data"]["servers"][0]["status"] == "stopped"

    status, body = call(port, "POST", "/procsync/api/servers/sleeper/start")
    assert status == 200, body
    pid = body["pid"]
    started = events.until(lambda e: e.get("event") == "server_started")
    assert started["data"]["id"] == "sleeper" and started["data"]["pid"] == pid
    seen_ids = [started["id"]]
    events.close()

    # While nobody listens: stop it. A reconnect with Last-Event-ID replays what was missed.
    status, body = call(port, "POST", "/procsync/api/servers/sleeper/stop")
    assert status == 200, body
    replay_client = live("/procsync/api/events", {"Last-Event-ID": str(seen_ids[-1])})
    assert "retry" in replay_client.next_event()
    replayed = []
    while True:
        event = replay_client.next_event()
        if event.get("event") == "snapshot":
            break
        replayed.append(event)
    assert replayed, "nothing replayed"
    ids = [e["id"] for e in replayed]
    assert ids == list(range(seen_ids[-1] + 1, seen_ids[-1] + 1 + len(ids)))  # none missing
    stopped = [e for e in replayed if e["event"] == "server_stopped"]
    assert stopped and stopped[0]["data"]["id"] == "sleeper" and stopped[0]["data"]["pid"] == pid
    assert event["data"]["servers"][0]["status"] == "stopped"


def test_events_heartbeat_and_auth(live):
    port = live.port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/procsync/api/events")
    resp = conn.getresponse()
    assert resp.status == 401 and json.loads(resp.read())["error"] == "unauthorized"
    conn.close()
    events = live("/procsync/api/events")
    events.next_event()
    events.next_event()  # snapshot
    # Nothing happens now: the next line is a heartbeat comment (0.3 s apart; socket timeout 10 s).
    lines = []
    while ": heartbeat" not in lines and len(lines) < 20:  # a periodic status may come first
        lines.append(events.resp.readline().decode().rstrip("\n"))
    assert ": heartbeat" in lines


def test_log_stream_follows_new_lines_across_rotation(live, orch):
    port = live.port
    status, body = call(port, "POST", "/procsync/api/servers/ticker/start")
    assert status == 200, body
    wait_until(lambda: len(orch.tail_log("ticker", 3)) == 3, 5, "three log lines")
    stream = live("/procsync/api/servers/ticker/logs/stream?lines=3")
    assert stream.resp.status == 200
    assert "retry" in stream.next_event()
    backlog = stream.next_event()
    assert backlog["event"] == "lines" and len(backlog["data"]["lines"]) == 3
    numbers = [int(re.match(r"tick (\d+)", line).group(1)) for line in backlog["data"]["lines"]]
    rotated_at = None
    while rotated_at is None or numbers[-1] < rotated_at + 100:
        event = stream.next_event()
        if event["event"] == "rotated":
            rotated_at = numbers[-1] if rotated_at is None else rotated_at
            continue
        assert event["event"] == "lines"
        for line in event["data"]["lines"]:
            match = re.fullmatch(r"tick (\d+) x{40}", line)
            assert match, f"garbled line {line!r} after {numbers[-3:]}"
            numbers.append(int(match.group(1)))
    # Every line, in order, none lost or repeated across the rotation.
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert orch.tail_log("ticker", 1)


def test_log_stream_of_unknown_server_is_404(live):
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=5)
    conn.request("GET", "/procsync/api/servers/ghost/logs/stream", headers=AUTH)
    resp = conn.getresponse()
    assert resp.status == 404 and json.loads(resp.read())["error"] == "unknown"
    conn.close()
