"""A daemon thread fed by a queue: what the journal and the exit hand-off are built on.

`put` appends under a short lock and wakes the thread; the thread hands
everything queued since its last round to its handler, in order. `stop`
lets it handle what is queued, then joins it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ..locks import ordered_lock

log = logging.getLogger("procsync.orchestrator")


class QueueThread:
    """One daemon thread (`name`) that runs `handle(items)` for the items put since its last round."""

    def __init__(self, name: str, lock_name: str, handle: Callable[[list[Any]], None]) -> None:
        self._name = name
        self._lock_name = lock_name
        self._handle = handle
        self._reset()

    def _reset(self) -> None:
        self._lock = ordered_lock(self._lock_name)
        self._wake = threading.Condition(self._lock)
        self._items: list[Any] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def put(self, *items: Any, start: bool = False) -> bool:
        """Queue `items` (starting the thread if `start` and none runs); whether a thread takes them."""
        with self._lock:
            self._items.extend(items)
            if self._thread is None and start and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._wake.notify()
            return self._thread is not None

    def take_all(self) -> list[Any]:
        """Everything queued and not yet taken (for a caller that works without the thread)."""
        with self._lock:
            items, self._items = self._items, []
        return items

    def start(self) -> None:
        """Start the thread (idempotent)."""
        self.put(start=True)

    def stop(self, timeout: float) -> None:
        """Let the thread handle what is queued, then join it; later puts find no thread."""
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
            self._wake.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def forget_after_fork(self) -> None:
        """In a forked child: no thread, a fresh lock; what was queued belongs to the parent."""
        self._reset()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._items and not self._stop.is_set():
                    self._wake.wait()
                if not self._items:
                    return
                items, self._items = self._items, []
            try:
                self._handle(items)
            except Exception:  # never lose the thread
                log.exception("%s failed", self._name)


__all__ = ["QueueThread"]
