"""Live events: one hub per orchestrator turns its signals into Server-Sent Events.

Each signal becomes one SSE event (``id: N``, ``event: <signal name>``,
``data: <JSON>``), kept in a bounded buffer so a client reconnecting with
``Last-Event-ID`` gets what it missed. Every subscriber has a bounded queue;
a subscriber that falls behind is dropped (its stream ends, the client
reconnects and replays from the buffer), so a slow or dead client never
blocks the thread that sent the signal.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import queue
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, time, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

from .. import signals
from ..locks import ordered_lock

if TYPE_CHECKING:
    from ..orchestrator import ServerOrchestrator
    from ..records import ServerStatus

log = logging.getLogger(__name__)

RETRY_MS = 2000  # what the browser waits before reconnecting


def jsonable(value: Any, _depth: int = 0) -> Any:
    """`value` as plain JSON types: records to dicts, datetimes to ISO 8601, env to its keys."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if _depth > 20:
        return repr(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return jsonable(value.value, _depth + 1)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, BaseException):
        return str(value)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and not isinstance(value, type):
        return jsonable(to_dict(), _depth + 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _mapping({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, _depth)
    if isinstance(value, Mapping):
        return _mapping(value, _depth)
    if isinstance(value, list | tuple | set | frozenset | deque):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [jsonable(v, _depth + 1) for v in items]
    return str(value)


def _mapping(data: Mapping[Any, Any], depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "env" and isinstance(value, Mapping):
            out["env_keys"] = sorted(str(k) for k in value)  # values may hold secrets
            continue
        out[str(key)] = jsonable(value, depth + 1)
    return out


def dumps(value: Any) -> str:
    """Compact JSON of jsonable(value), on one line."""
    return json.dumps(jsonable(value), separators=(",", ":"), allow_nan=False)


def sse(event: str | None, data: str, event_id: int | None = None) -> bytes:
    """One SSE message; `data` must be a single line (compact JSON is)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    if event:
        head += f"event: {event}\n"
    return f"{head}data: {data}\n\n".encode()


def comment(text: str) -> bytes:
    """An SSE comment line (ignored by clients; keeps proxies and sockets awake)."""
    return f": {text}\n\n".encode()


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One published event, already encoded as SSE."""

    id: int
    name: str
    payload: bytes


class Subscriber:
    """One connected client: a bounded queue of encoded events."""

    __slots__ = ("queue", "dropped")

    def __init__(self, size: int) -> None:
        self.queue: queue.Queue[bytes] = queue.Queue(maxsize=size)
        self.dropped = False

    def offer(self, item: bytes) -> bool:
        """Queue `item` without waiting; False when the queue is full."""
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            return False
        return True


class PortScan:
    """The last listening-port scan, reused for `ttl` seconds (one scan costs milliseconds).

    Concurrent callers never wait on each other: while one rescans, the others
    use the previous scan (or scan themselves when there is none yet).
    """

    def __init__(self, ttl: float = 1.0) -> None:
        self.ttl = ttl
        self._lock = ordered_lock("ports")
        self._scan: dict[int, int] | None = None
        self._at = 0.0
        self._busy = False

    def get(self) -> dict[int, int]:
        from ..ports import listening_ports

        now = _monotonic()
        with self._lock:
            fresh = self._scan is not None and now - self._at < self.ttl
            if fresh or (self._busy and self._scan is not None):
                return self._scan  # type: ignore[return-value]
            self._busy = True
        try:
            scan = listening_ports()
        finally:
            with self._lock:
                self._busy = False
        with self._lock:
            self._scan, self._at = scan, _monotonic()
        return scan


def _monotonic() -> float:
    import time as _time

    return _time.monotonic()


class EventHub:
    """Fans one orchestrator's signals out to SSE subscribers. Get it with `hub_for()`.

    It holds its orchestrator weakly: the orchestrator holds the hub (through
    the receivers it calls), not the other way round.
    """

    def __init__(
        self,
        orchestrator: ServerOrchestrator,
        *,
        buffer_size: int = 1000,
        buffer_bytes: int = 4 * 1024 * 1024,
        queue_size: int = 2000,
        status_interval: float = 5.0,
        connect: bool = True,
    ) -> None:
        self._orchestrator = weakref.ref(orchestrator)
        self.buffer_size = buffer_size
        self.buffer_bytes = buffer_bytes
        self.queue_size = queue_size
        self.status_interval = status_interval
        self.dropped = 0  # subscribers dropped for falling behind
        self._lock = ordered_lock("flask.hub")
        self._next_id = 1
        self._buffer: deque[Event] = deque()
        self._buffered_bytes = 0
        self._subscribers: set[Subscriber] = set()
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self.ports = PortScan()
        # Strong references: blinker may hold receivers weakly.
        self._receivers = {name: self._receiver(name) for name in signals.ALL}
        if connect:
            self.connect()

    def connect(self) -> None:
        """Receive every signal of the orchestrator (its own, its manager's and its monitor's)."""
        orchestrator = self._orchestrator()
        if orchestrator is None:
            return
        for name, receiver in self._receivers.items():
            orchestrator.on(name, receiver)

    def _receiver(self, name: str) -> Callable[..., None]:
        def receive(sender: Any, **payload: Any) -> None:
            self.publish(name, payload)

        receive.__name__ = f"procsync_events_{name}"
        return receive

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    @property
    def last_id(self) -> int:
        with self._lock:
            return self._next_id - 1

    def publish(self, name: str, payload: Mapping[str, Any]) -> int:
        """Buffer and fan out one event; never blocks. Returns its id."""
        try:
            data = dumps(payload)
        except (TypeError, ValueError) as err:  # cannot happen with jsonable, but never raise here
            data = dumps({"error": f"payload not serialisable: {err}"})
        with self._lock:
            event_id = self._next_id
            self._next_id += 1
            event = Event(event_id, name, sse(name, data, event_id))
            self._buffer.append(event)
            self._buffered_bytes += len(event.payload)
            while self._buffer and (
                len(self._buffer) > self.buffer_size or self._buffered_bytes > self.buffer_bytes
            ):
                self._buffered_bytes -= len(self._buffer.popleft().payload)
            self._fan_out(event.payload)
        return event_id

    def _fan_out(self, item: bytes) -> None:
        # Called with the lock held; put_nowait never blocks.
        slow = [sub for sub in self._subscribers if not sub.offer(item)]
        for sub in slow:
            sub.dropped = True
            self._subscribers.discard(sub)
            self.dropped += 1
        if slow:
            log.warning("dropped %d slow event subscriber(s)", len(slow))

    def subscribe(self, last_event_id: int | None = None) -> tuple[Subscriber, list[bytes]]:
        """A new subscriber and the buffered events after `last_event_id` (if it is ours)."""
        sub = Subscriber(self.queue_size)
        with self._lock:
            replay: list[bytes] = []
            if last_event_id is not None and last_event_id < self._next_id:
                replay = [e.payload for e in self._buffer if e.id > last_event_id]
            self._subscribers.add(sub)
            start_ticker = self._ticker is None and self.status_interval > 0
            if start_ticker:
                self._stop.clear()
                self._ticker = threading.Thread(
                    target=self._tick, name="procsync-events", daemon=True
                )
        if start_ticker and self._ticker is not None:
            self._ticker.start()
        return sub, replay

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    def server_status(self) -> list[ServerStatus]:
        """The orchestrator's get_server_status(), reusing a port scan up to a second old."""
        orchestrator = self._orchestrator()
        if orchestrator is None:
            return []
        return orchestrator.get_server_status(current_ports=self.ports.get())

    def instance(self) -> dict[str, Any] | None:
        """Which orchestrator instance answers, and which one leads (see docs/deployment.md)."""
        orchestrator = self._orchestrator()
        if orchestrator is None:
            return None
        try:
            return orchestrator.instance_info()
        except Exception:
            log.exception("cannot read the instance info")
            return None

    def snapshot(self) -> bytes:
        """A `snapshot` event with every server's status (no id: it is not replayed)."""
        return sse("snapshot", dumps({"servers": self.server_status(), "last_id": self.last_id,
                                      "instance": self.instance()}))

    def stream(self, last_event_id: int | None = None, heartbeat: float = 15.0) -> Iterator[bytes]:
        """The bytes of one client's event stream: replay, snapshot, then live events."""
        sub, replay = self.subscribe(last_event_id)
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            if replay:
                yield b"".join(replay)
            try:
                yield self.snapshot()
            except Exception:
                log.exception("cannot build the status snapshot")
            get = sub.queue.get
            next_beat = _monotonic() + heartbeat
            while not sub.dropped:
                now = _monotonic()
                if now >= next_beat:  # every `heartbeat` s, busy or not
                    yield comment("heartbeat")
                    next_beat = now + heartbeat
                try:
                    item = get(timeout=max(0.0, next_beat - now))
                except queue.Empty:
                    continue
                batch = [item]
                while len(batch) < 256:
                    try:
                        batch.append(sub.queue.get_nowait())
                    except queue.Empty:
                        break
                if sub.dropped:
                    break
                yield b"".join(batch)
        finally:
            self.unsubscribe(sub)

    def _tick(self) -> None:
        """Send a `status` event to live subscribers every status_interval s while any exist."""
        while not self._stop.wait(self.status_interval):
            with self._lock:
                if not self._subscribers:
                    self._ticker = None
                    return
            if self._orchestrator() is None:
                break
            try:
                item = sse("status", dumps({"servers": self.server_status(),
                                            "instance": self.instance()}))
            except Exception:
                log.exception("periodic status failed")
                continue
            with self._lock:
                self._fan_out(item)
        with self._lock:
            self._ticker = None

    def close(self) -> None:
        """Disconnect from the orchestrator and stop the status thread. Safe to call twice."""
        orchestrator = self._orchestrator()
        if orchestrator is not None:
            for name, receiver in self._receivers.items():
                try:
                    orchestrator.off(name, receiver)
                except Exception:
                    log.debug("cannot disconnect %s", name, exc_info=True)
        self._stop.set()
        with self._lock:
            thread, self._ticker = self._ticker, None
            for sub in self._subscribers:
                sub.dropped = True
                sub.offer(b"")  # wake its stream so it ends now
            self._subscribers.clear()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)


class HubRegistry:
    """The one EventHub of each orchestrator, kept as long as that orchestrator lives.

    An orchestrator's hub is shared by every app and blueprint that serves
    it (one numbering of events, one set of receivers), so it is attached to
    the orchestrator itself: weakly keyed by the object, never by its id(),
    and gone with it. procsync keeps one registry, `HUBS`.
    """

    def __init__(self) -> None:
        self._lock = ordered_lock("flask.hubs")
        self._hubs: weakref.WeakKeyDictionary[ServerOrchestrator, EventHub] = (
            weakref.WeakKeyDictionary()
        )

    def hub_for(self, orchestrator: ServerOrchestrator) -> EventHub:
        """The hub of `orchestrator`, made and connected on first use (it starts no thread)."""
        with self._lock:
            hub = self._hubs.get(orchestrator)
            if hub is not None:
                return hub
            hub = self._hubs[orchestrator] = EventHub(orchestrator, connect=False)
        hub.connect()  # on() takes the orchestrator's lock, which ranks before ours
        return hub


HUBS = HubRegistry()


def hub_for(orchestrator: ServerOrchestrator) -> EventHub:
    """The one EventHub of `orchestrator` (see HubRegistry)."""
    return HUBS.hub_for(orchestrator)


__all__ = ["HUBS", "Event", "EventHub", "HubRegistry", "PortScan", "Subscriber", "comment", "dumps", "hub_for", "jsonable", "sse"]
