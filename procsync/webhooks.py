"""POSTing signals to HTTP endpoints, from background threads.

`WebhookDispatcher(orchestrator)` subscribes to the orchestrator's signals
through `orchestrator.on(name, receiver)`. Each matching signal is turned
into JSON at once and put on the webhook's own bounded queue; a daemon
thread per webhook delivers it (5 s timeout, 3 retries with backoff). A
slow or dead endpoint only ever fills its own queue (then events for it are
dropped and logged): the orchestrator's threads never wait on the network.

Body: ``{"event": NAME, "sent_at": ISO-8601, "data": {...payload...}}``.
Headers: ``X-Procsync-Event``, ``X-Procsync-Delivery`` (a unique id) and,
with a secret, ``X-Procsync-Signature: sha256=<hex HMAC-SHA256 of the body>``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import http.client
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from . import signals
from .locks import ordered_lock

log = logging.getLogger(__name__)

#: Signals a webhook receives when it names no events: all but the periodic health_check.
DEFAULT_EVENTS = tuple(name for name in signals.ALL if name != "health_check")
_STOP = object()


def to_jsonable(value: Any) -> Any:
    """Records, datetimes, tuples and dicts as plain JSON values (anything else as str)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        if callable(to_dict):
            return to_jsonable(to_dict())
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return str(value)


def signature(secret: str, body: bytes) -> str:
    """The X-Procsync-Signature header value for `body`: 'sha256=<hex>'."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Webhook:
    """One endpoint: its events, its queue and the daemon thread delivering to it."""

    def __init__(self, url: str, events: Iterable[str] | None, secret: str | None, *,
                 queue_size: int, timeout: float, retries: int, backoff: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook URL {url!r} is not an http(s) URL")
        self.url = url
        self.events = frozenset(DEFAULT_EVENTS if events is None else events)
        for name in self.events:
            signals.get(name)  # ValueError listing the valid names
        self.secret = secret
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._failing = False  # the last attempt failed
        self._parts = parts
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="procsync-webhook", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<Webhook {self.url} events={sorted(self.events)}>"

    def enqueue(self, event: str, body: bytes) -> None:
        """Queue one delivery; drop it (and log) when the queue is full. Never blocks."""
        try:
            self._queue.put_nowait((event, body))
        except queue.Full:
            self.dropped += 1
            log.warning("webhook %s is not keeping up: dropped a %s event", self.url, event)

    def close(self, deadline: float) -> None:
        """Deliver what is queued until `deadline` (monotonic), then stop the thread.

        An endpoint whose last attempt failed is not waited for: its queue is dropped.
        """
        if self._failing:
            self._stop.set()
        try:
            self._queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
        except queue.Full:
            pass
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._stop.set()
        self._thread.join(timeout=self.timeout + 1)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP or self._stop.is_set():
                return
            event, body = item
            try:
                self._deliver(event, body)
            except Exception:  # a bug here must not end deliveries
                log.exception("webhook %s: delivering %s failed", self.url, event)

    def _deliver(self, event: str, body: bytes) -> bool:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "procsync-webhook",
            "X-Procsync-Event": event,
            "X-Procsync-Delivery": uuid.uuid4().hex,
        }
        if self.secret:
            headers["X-Procsync-Signature"] = signature(self.secret, body)
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt and self._stop.wait(self.backoff * 2 ** (attempt - 1)):
                break
            status, problem = self._post(body, headers)
            if status is not None and 200 <= status < 300:
                self.delivered += 1
                self._failing = False
                return True
            self._failing = True
            if status is not None and 400 <= status < 500 and status not in (408, 429):
                break  # the endpoint refuses this request: retrying will not help
        self.failed += 1
        log.warning("webhook %s: gave up on a %s event: %s", self.url, event, problem)
        return False

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
        parts = self._parts
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = kind(parts.hostname or "", parts.port, timeout=self.timeout)
        try:
            conn.request("POST", target, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status, f"HTTP {response.status} {response.reason}"
        except (OSError, http.client.HTTPException) as err:
            return None, f"{type(err).__name__}: {err}"
        finally:
            conn.close()


class WebhookDispatcher:
    """Sends the signals of one orchestrator to the webhooks added with `add()`."""

    def __init__(self, orchestrator: Any, *, queue_size: int = 1000, timeout: float = 5.0,
                 retries: int = 3, backoff: float = 1.0) -> None:
        self.orchestrator = orchestrator
        self.queue_size, self.timeout, self.retries, self.backoff = queue_size, timeout, retries, backoff
        self._lock = ordered_lock("webhooks")
        self._hooks: list[Webhook] = []
        self._receivers: dict[str, Callable[..., None]] = {}  # strong refs: blinker holds weakly
        self._closed = False

    @property
    def webhooks(self) -> list[Webhook]:
        with self._lock:
            return list(self._hooks)

    def add(self, url: str, events: Iterable[str] | None = None, secret: str | None = None) -> Webhook:
        """POST every signal in `events` (default: all but health_check) to `url`."""
        hook = Webhook(url, events, secret, queue_size=self.queue_size, timeout=self.timeout,
                       retries=self.retries, backoff=self.backoff)
        subscribe = []
        with self._lock:
            if self._closed:
                hook.close(time.monotonic())
                raise RuntimeError("this WebhookDispatcher is closed")
            self._hooks.append(hook)
            for name in sorted(hook.events):
                if name not in self._receivers:
                    self._receivers[name] = self._receiver(name)
                    subscribe.append(name)
        for name in subscribe:
            self.orchestrator.on(name, self._receivers[name])
        return hook

    def _receiver(self, name: str) -> Callable[..., None]:
        def receive(sender: Any, **payload: Any) -> None:
            hooks = [h for h in self.webhooks if name in h.events]
            if not hooks:
                return
            acting = payload.get("instance")
            if acting is not None and acting != getattr(self.orchestrator, "instance_name", acting):
                return  # another instance on the same state file posts its own events
            body = json.dumps({
                "event": name,
                "sent_at": datetime.now(UTC).isoformat(),
                "data": to_jsonable(payload),
            }).encode()
            for hook in hooks:
                hook.enqueue(name, body)

        receive.__name__ = f"webhook_{name}"
        return receive

    def close(self, timeout: float = 5.0) -> None:
        """Unsubscribe, deliver what is queued for up to `timeout` s, stop the threads. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            hooks, self._hooks = self._hooks, []
            receivers = dict(self._receivers)
        off = getattr(self.orchestrator, "off", None)
        if off is not None:
            for name, receiver in receivers.items():
                try:
                    off(name, receiver)
                except Exception:
                    log.debug("could not unsubscribe the %s webhook receiver", name, exc_info=True)
        deadline = time.monotonic() + timeout
        for hook in hooks:
            hook.close(deadline)


__all__ = ["DEFAULT_EVENTS", "Webhook", "WebhookDispatcher", "signature", "to_jsonable"]
