"""WebhookDispatcher: real signals POSTed to a real local HTTP server, from background threads."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import free_port, wait_until

from procsync import signals
from procsync.orchestrator import ServerOrchestrator
from procsync.webhooks import DEFAULT_EVENTS, WebhookDispatcher, signature


class Hub:
    """The part of ServerOrchestrator the dispatcher uses: on/off for signals sent by this object."""

    instance_name = "here"

    def on(self, name, receiver):
        signals.get(name).connect(receiver, sender=self, weak=False)

    def off(self, name, receiver):
        signals.get(name).disconnect(receiver, sender=self)


class Receiver:
    """A local HTTP server recording every POST; answers with the statuses queued in `replies`."""

    def __init__(self):
        self.requests: queue.Queue = queue.Queue()
        self.replies: list[int] = []
        self.default = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.put((self.path, dict(self.headers), body))
                status = outer.replies.pop(0) if outer.replies else outer.default
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook?x=1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def get(self, timeout=5.0):
        path, headers, body = self.requests.get(timeout=timeout)
        return path, headers, body, json.loads(body)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def hub():
    return Hub()


@pytest.fixture
def dispatcher(hub):
    d = WebhookDispatcher(hub, timeout=2.0, backoff=0.01)
    yield d
    d.close(timeout=1.0)


@pytest.fixture
def black_hole():
    """A port that accepts connections and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    yield f"http://127.0.0.1:{s.getsockname()[1]}/"
    s.close()


def test_signal_is_posted_as_json_with_hmac_signature(hub, dispatcher, receiver):
    dispatcher.add(receiver.url, events=["server_fatal"], secret="s3cret")
    signals.send(signals.server_fatal, hub, id="web", pid=42, restarts=5, exit_code=1)
    path, headers, body, data = receiver.get()
    assert path == "/hook?x=1"
    assert data["event"] == "server_fatal"
    assert data["data"] == {"id": "web", "pid": 42, "restarts": 5, "exit_code": 1}
    assert data["sent_at"].endswith("+00:00")
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Procsync-Signature"] == expected == signature("s3cret", body)
    assert headers["X-Procsync-Event"] == "server_fatal"
    assert headers["Content-Type"] == "application/json"


def test_only_chosen_events_and_only_from_this_orchestrator(hub, dispatcher, receiver):
    dispatcher.add(receiver.url, events=["process_died"])
    other = Hub()
    signals.send(signals.server_fatal, hub, id="a", pid=1, restarts=0, exit_code=1)  # not chosen
    signals.send(signals.process_died, other, id="b", pid=2, exit_code=1)  # another sender
    signals.send(signals.process_died, hub, id="c", pid=3, exit_code=-9)
    _, headers, _, data = receiver.get()
    assert data["data"]["id"] == "c" and "X-Procsync-Signature" not in headers
    dispatcher.close()
    assert receiver.requests.empty()


def test_events_another_instance_acted_on_are_left_to_that_instance(hub, dispatcher, receiver):
    dispatcher.add(receiver.url, events=["server_started"])
    signals.send(signals.server_started, hub, id="a", pid=1, instance="elsewhere")
    signals.send(signals.server_started, hub, id="b", pid=2, instance="here")
    signals.send(signals.server_started, hub, id="c", pid=3)
    assert [receiver.get()[3]["data"]["id"] for _ in range(2)] == ["b", "c"]
    dispatcher.close()
    assert receiver.requests.empty()


def test_default_events_are_all_but_health_check(hub, dispatcher, receiver):
    hook = dispatcher.add(receiver.url)
    assert hook.events == frozenset(DEFAULT_EVENTS) == frozenset(signals.ALL) - {"health_check"}
    signals.send(signals.health_check, hub, statuses=[])
    signals.send(signals.server_stopped, hub, id="web", pid=7, exit_code=0)
    assert receiver.get()[3]["event"] == "server_stopped"


def test_records_and_datetimes_become_json(hub, dispatcher, receiver):
    from datetime import UTC, datetime

    from procsync.records import ProcessInfo

    dispatcher.add(receiver.url, events=["process_started"])
    info = ProcessInfo(id="w", pid=5, pgid=5, command="x", cwd=None,
                       start_time=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), create_time=1.5, ports=(80,))
    signals.send(signals.process_started, hub, id="w", pid=5, info=info)
    sent = receiver.get()[3]["data"]["info"]
    assert sent["start_time"] == "2025-01-02T03:04:05+00:00" and sent["ports"] == [80]


def test_retries_with_backoff_then_delivers(hub, dispatcher, receiver):
    receiver.replies = [500, 503]
    hook = dispatcher.add(receiver.url, events=["server_started"])
    signals.send(signals.server_started, hub, id="web", pid=9)
    attempts = [receiver.get() for _ in range(3)]
    assert len({a[1]["X-Procsync-Delivery"] for a in attempts}) == 1  # the same delivery each time
    wait_until(lambda: hook.delivered == 1, what="the delivery to count")
    assert hook.failed == 0


def test_gives_up_after_three_retries_and_does_not_retry_a_4xx(hub, dispatcher, receiver):
    receiver.default = 500
    hook = dispatcher.add(receiver.url, events=["server_started"])
    signals.send(signals.server_started, hub, id="web", pid=9)
    for _ in range(4):
        receiver.get()
    wait_until(lambda: hook.failed == 1, what="the delivery to be given up")
    assert receiver.requests.empty()
    receiver.default = 400
    signals.send(signals.server_started, hub, id="web", pid=10)
    receiver.get()
    wait_until(lambda: hook.failed == 2, what="the 400 to be given up")
    dispatcher.close()
    assert receiver.requests.empty(), "a 400 was retried"


def test_dead_endpoints_do_not_slow_the_sender_or_other_webhooks(hub, receiver, black_hole):
    dispatcher = WebhookDispatcher(hub, queue_size=2, timeout=0.5, backoff=0.01)
    try:
        refused = dispatcher.add(f"http://127.0.0.1:{free_port()}/", events=["server_started"])
        stuck = dispatcher.add(black_hole, events=["server_started"])
        good = dispatcher.add(receiver.url, events=["server_started"])
        for n in range(20):  # would block (and time out the test) if sending waited on the network
            signals.send(signals.server_started, hub, id="web", pid=n)
        got = sorted(receiver.get()[3]["data"]["pid"] for _ in range(2))
        assert got[0] == 0
        assert stuck.dropped >= 17 and refused.dropped >= 17  # bounded queues: the rest are dropped
        wait_until(lambda: refused.failed >= 1, what="the refused endpoint to be given up")
        assert good.failed == 0
    finally:
        dispatcher.close(timeout=0.5)
    assert all(not h._thread.is_alive() for h in (refused, stuck, good))


def test_bad_arguments_and_close(hub, receiver):
    dispatcher = WebhookDispatcher(hub)
    with pytest.raises(ValueError, match="is not an http"):
        dispatcher.add("ftp://example.com/")
    with pytest.raises(ValueError, match="unknown signal 'nope'"):
        dispatcher.add(receiver.url, events=["nope"])
    dispatcher.close()
    dispatcher.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        dispatcher.add(receiver.url)


def test_real_orchestrator_posts_process_exit(tmp_path, receiver):
    orch = ServerOrchestrator(tmp_path / "state.json", interval=0.2, log_dir=tmp_path / "logs")
    try:
        orch.initialize()
        orch.add_webhook(receiver.url, events=["process_exit"], secret="k")
        orch.register_server("crash", {"command": [sys.executable, "-c", "import sys; sys.exit(3)"]})
        orch.start_server("crash", wait=False)
        _, headers, body, data = receiver.get(timeout=10)
        assert data["event"] == "process_exit"
        assert data["data"]["id"] == "crash" and data["data"]["exit_code"] == 3
        assert headers["X-Procsync-Signature"] == signature("k", body)
    finally:
        orch.shutdown(stop_servers=True)
