"""The events hub (signals -> SSE, replay, slow subscribers) and the log follower."""

from __future__ import annotations

import json
import math
import os
import threading
from datetime import UTC, datetime

import pytest
from flask import Flask
from helpers import wait_until

from procsync import ServerConfig, ServerOrchestrator, signals
from procsync.flask_ext import ProcSync
from procsync.flask_ext.events import EventHub, hub_for, jsonable
from procsync.flask_ext.logstream import LogFollower
from procsync.logs import rotate
from procsync.records import ProcessStatus


@pytest.fixture
def quiet_orch(tmp_path):
    """An orchestrator initialized before any hub listens, with no monitor ticking (interval 0):
    the only events are the ones a test sends."""
    quiet = ServerOrchestrator(tmp_path / "state.json", interval=0, log_dir=tmp_path / "logs")
    quiet.initialize()
    try:
        yield quiet
    finally:
        quiet.shutdown(stop_servers=True)

def parse(chunk: bytes) -> list[dict]:
    """SSE bytes -> [{"id", "event", "data"}] (comments as {"comment": text})."""
    out = []
    for block in chunk.decode().split("\n\n"):
        if not block.strip():
            continue
        event: dict = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                event["comment"] = line[1:].strip()
            else:
                key, _, value = line.partition(": ")
                event[key] = value
        if "data" in event:
            event["data"] = json.loads(event["data"])
        if "id" in event:
            event["id"] = int(event["id"])
        out.append(event)
    return out


def test_jsonable_converts_records_and_hides_env_values():
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    status = ProcessStatus("web", 10, True, "healthy", {8000: True}, last_check=at, cpu_percent=math.nan)
    assert jsonable(status) == {
        "id": "web", "pid": 10, "alive": True, "health": "healthy", "ports": {"8000": True},
        "consecutive_failures": 0, "last_check": "2026-01-02T03:04:05+00:00", "cpu_percent": None,
        "memory_rss": 0, "error": None,
    }
    config = ServerConfig(command=["x"], env={"API_KEY": "very-secret", "DEBUG": "1"})
    payload = jsonable({"config": config, "env": {"TOKEN": "also-secret"}, "ports": (1, 2)})
    text = json.dumps(payload)
    assert "secret" not in text
    assert payload["env_keys"] == ["TOKEN"] and payload["config"]["env_keys"] == ["API_KEY", "DEBUG"]
    assert payload["ports"] == [1, 2]
    assert jsonable(ValueError("bad")) == "bad" and jsonable(object()).startswith("<object")


def test_signals_of_its_orchestrator_only_become_numbered_events(orch, tmp_path):
    other = ServerOrchestrator(tmp_path / "other.json", log_dir=tmp_path / "other-logs")
    try:
        hub = EventHub(orch)
        sub, replay = hub.subscribe()
        assert replay == []
        signals.send(signals.server_started, orch, id="web", pid=42)
        signals.send(signals.process_died, orch.monitor, id="web", pid=42, exit_code=-9)
        signals.send(signals.server_started, other, id="elsewhere", pid=7)
        got = parse(sub.queue.get_nowait() + sub.queue.get_nowait())
        assert sub.queue.empty()
        assert [(e["id"], e["event"], e["data"]) for e in got] == [
            (1, "server_started", {"id": "web", "pid": 42}),
            (2, "process_died", {"id": "web", "pid": 42, "exit_code": -9}),
        ]
        hub.close()
        signals.send(signals.server_started, orch, id="web", pid=43)
        assert hub.last_id == 2
    finally:
        other.shutdown()


def test_last_event_id_replays_from_a_bounded_buffer(orch):
    hub = EventHub(orch, buffer_size=5)
    for n in range(1, 9):
        hub.publish("server_started", {"id": "web", "pid": n})
    _, replay = hub.subscribe(last_event_id=5)
    assert [e["id"] for e in parse(b"".join(replay))] == [6, 7, 8]
    _, replay = hub.subscribe(last_event_id=1)  # older than the buffer: what is left
    assert [e["id"] for e in parse(b"".join(replay))] == [4, 5, 6, 7, 8]
    _, replay = hub.subscribe(last_event_id=500)  # from before a restart of the server
    assert replay == []
    _, replay = hub.subscribe(last_event_id=8)
    assert replay == []
    hub.close()


def test_slow_subscriber_is_dropped_and_never_blocks_senders(orch):
    hub = EventHub(orch, queue_size=5)
    slow, _ = hub.subscribe()
    fast, _ = hub.subscribe()
    received = []
    for n in range(50):  # would block forever if a full queue made publish() wait
        signals.send(signals.server_started, orch, id="web", pid=n)
        received.append(fast.queue.get_nowait())
    assert slow.dropped and not fast.dropped
    assert hub.dropped == 1 and hub.subscriber_count == 1
    assert [e["data"]["pid"] for e in parse(b"".join(received))] == list(range(50))
    hub.close()


def test_stream_sends_snapshot_events_and_heartbeats(quiet_orch):
    quiet_orch.register_server("web", {"command": ["true"]})
    hub = EventHub(quiet_orch, status_interval=0)
    stream = hub.stream(heartbeat=0.05)
    assert next(stream).startswith(b"retry: ")
    snapshot = parse(next(stream))[0]
    assert snapshot["event"] == "snapshot" and "id" not in snapshot
    assert [s["id"] for s in snapshot["data"]["servers"]] == ["web"]
    assert snapshot["data"]["servers"][0]["status"] == "stopped"
    assert parse(next(stream)) == [{"comment": "heartbeat"}]
    hub.publish("server_stopped", {"id": "web", "pid": 1, "exit_code": 0})
    event = parse(next(stream))[0]
    assert event["event"] == "server_stopped" and event["id"] == 1
    # Heartbeats keep coming while events flow too.
    seen = []
    while {"comment": "heartbeat"} not in seen:
        hub.publish("health_check", {"statuses": []})
        seen += parse(next(stream))
    assert hub.subscriber_count == 1
    stream.close()
    assert hub.subscriber_count == 0
    hub.close()


def test_stream_replays_before_the_snapshot_and_ends_when_dropped(orch):
    hub = EventHub(orch, queue_size=2, status_interval=0)
    for n in range(3):
        hub.publish("server_started", {"id": "web", "pid": n})
    stream = hub.stream(last_event_id=1, heartbeat=5)
    next(stream)
    assert [e["id"] for e in parse(next(stream))] == [2, 3]
    assert parse(next(stream))[0]["event"] == "snapshot"
    for n in range(5):  # overflow this subscriber's queue while it does not read
        hub.publish("server_started", {"id": "web", "pid": n})
    assert list(stream) == []  # dropped: the stream ends, the client reconnects and replays
    hub.close()


def test_close_ends_open_streams_at_once(quiet_orch):
    hub = EventHub(quiet_orch, status_interval=0)
    stream = hub.stream(heartbeat=60)
    next(stream), next(stream)  # retry, snapshot
    rest: list[bytes] = []
    reader = threading.Thread(target=lambda: rest.extend(stream))
    reader.start()
    wait_until(lambda: hub.subscriber_count == 1, 5, "the subscriber")
    hub.close()
    reader.join(5)
    assert not reader.is_alive() and rest == []
    assert hub.subscriber_count == 0


def test_periodic_status_runs_only_while_someone_listens(quiet_orch):
    quiet_orch.register_server("web", {"command": ["true"]})
    hub = EventHub(quiet_orch, status_interval=0.05)
    sub, _ = hub.subscribe()
    item = wait_until(lambda: not sub.queue.empty() and sub.queue.get_nowait(), 5, "a status event")
    event = parse(item)[0]
    assert event["event"] == "status" and "id" not in event
    assert event["data"]["servers"][0]["id"] == "web"
    hub.unsubscribe(sub)
    wait_until(lambda: hub._ticker is None, 5, "the status thread to end")
    hub.close()


def test_one_hub_per_orchestrator_shared_by_apps(orch, tmp_path):
    app1, app2 = Flask("a1"), Flask("a2")
    ProcSync(app1, orch)
    ProcSync(app2, orch, url_prefix="/other")
    assert hub_for(orch) is hub_for(orch)
    other = ServerOrchestrator(tmp_path / "o2.json", log_dir=tmp_path / "o2")
    try:
        assert hub_for(other) is not hub_for(orch)
    finally:
        other.shutdown()
    before = hub_for(orch).last_id
    signals.send(signals.server_started, orch, id="x", pid=1)
    assert hub_for(orch).last_id == before + 1  # one hub: one event, not one per app


def test_a_hub_lives_as_long_as_its_orchestrator_and_no_longer():
    import gc
    import weakref

    from procsync.flask_ext.events import HubRegistry

    class StandIn:  # what a hub needs of an orchestrator: on() (the real one is never collected
        def __init__(self):  # while its threads run, which would hide a leak)
            self.receivers = []

        def on(self, name, receiver):
            self.receivers.append(receiver)

    registry = HubRegistry()
    first, second = StandIn(), StandIn()
    hub = registry.hub_for(first)
    assert registry.hub_for(first) is hub and registry.hub_for(second) is not hub
    assert len(first.receivers) == len(signals.ALL)  # connected once, on first use
    gone = weakref.ref(hub)
    del hub, first
    gc.collect()
    assert gone() is None  # keyed by the object, weakly: a new object can never get its hub
    assert registry.hub_for(second) is registry.hub_for(second)


# -- log follower --------------------------------------------------------------------


def test_follower_reads_new_complete_lines_only(tmp_path):
    path = tmp_path / "app.log"
    path.write_text("old line\n")
    follower = LogFollower(lambda: str(path))
    follower.start_at_end()
    assert follower.poll() == ([], False)
    with open(path, "a") as f:
        f.write("one\ntwo\npart")
    assert follower.poll() == (["one", "two"], False)
    with open(path, "a") as f:
        f.write("ial \u00e9\r\n")
    assert follower.poll() == (["partial \u00e9"], False)
    follower.close()


def test_follower_backlog_then_new_lines_without_gap(tmp_path):
    path = tmp_path / "app.log"
    (tmp_path / "app.log.1").write_text("rotated 1\nrotated 2\n")
    path.write_text("now 1\nnow 2\nunfini")
    follower = LogFollower(lambda: str(path))
    assert follower.start_at_end(4) == ["rotated 1", "rotated 2", "now 1", "now 2"]
    follower.close()
    follower = LogFollower(lambda: str(path))
    assert follower.start_at_end(3) == ["rotated 2", "now 1", "now 2"]
    with open(path, "a") as f:
        f.write("shed\nnext\n")
    assert follower.poll() == (["unfinished", "next"], False)
    follower.close()
    assert LogFollower(lambda: None).start_at_end(5) == []


def test_follower_waits_for_a_file_that_does_not_exist_yet(tmp_path):
    path = tmp_path / "later.log"
    follower = LogFollower(lambda: str(path) if path.exists() else None)
    follower.start_at_end()
    assert follower.poll() == ([], False)
    path.write_text("first\n")
    assert follower.poll() == (["first"], False)
    follower.close()


def test_follower_survives_copy_truncate_rotation_without_losing_lines(tmp_path):
    path = tmp_path / "srv.log"
    path.write_text("")
    follower = LogFollower(lambda: str(path))
    follower.start_at_end()
    with open(path, "a") as f:
        f.write("line 1\nline 2\n")
        f.flush()
        assert follower.poll() == (["line 1", "line 2"], False)
        f.write("line 3\nline 4\n")  # written, not read yet, then rotated away
        f.flush()
        assert rotate(path, 2)
        f.write("line 5 is longer than the old content was\n")
        f.flush()
    lines, rotated = follower.poll()
    assert rotated and lines == ["line 3", "line 4", "line 5 is longer than the old content was"]
    assert follower.rotations == 1
    follower.close()


def test_follower_survives_rename_rotation(tmp_path):
    path = tmp_path / "srv.log"
    path.write_text("")
    follower = LogFollower(lambda: str(path))
    follower.start_at_end()
    with open(path, "a") as f:
        f.write("a\n")
    os.replace(path, tmp_path / "srv.log.1")
    assert follower.poll() == (["a"], False)  # the new file is not there yet
    path.write_text("b\n")
    assert follower.poll() == (["b"], True)
    follower.close()


def test_follower_reads_unsynchronised_writer(tmp_path):
    path = tmp_path / "busy.log"
    path.write_text("")
    follower = LogFollower(lambda: str(path))
    follower.start_at_end()
    done = threading.Event()

    def write():
        with open(path, "a") as f:
            for n in range(2000):
                f.write(f"n={n}\n")
                f.flush()
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    seen: list[str] = []
    while not done.is_set() or (lines := follower.poll()[0]):
        seen.extend(follower.poll()[0] if not done.is_set() else lines)
    writer.join()
    follower.close()
    assert seen == [f"n={n}" for n in range(2000)]
