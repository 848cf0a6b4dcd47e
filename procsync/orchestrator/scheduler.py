"""One thread for everything the orchestrator does later: pending restarts and stability checks.

A heap of due times, not one timer thread per server: 200 servers in
backoff cost one sleeping thread. Jobs are not cancelled; each checks, when
it runs, that the server is still in the generation it was scheduled for.

A quick job (`call_later`) runs on the scheduler thread and must not block.
A batch job (`batch_later`) may block (a restart claims and spawns): its
handler runs on a worker thread, one per handler, with every item that has
fallen due since its last round as one list. So the first restart of a
quiet moment starts at once, and the 99 that fall due while it runs start
together in the next round: 100 restarts due in the same instant cost a
few batches, not 100.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..locks import ordered_lock

log = logging.getLogger("procsync.orchestrator")


class Scheduler:
    """A heap of due jobs and the `procsync-scheduler` thread that runs them."""

    def __init__(self) -> None:
        self._lock = ordered_lock("scheduler")
        self._wake = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, bool, Callable[..., Any], Any]] = []
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._workers: set[threading.Thread] = set()
        self._due: dict[Callable[..., Any], list[Any]] = {}  # handler -> items due, not taken

    def call_later(self, delay: float, fn: Callable[[Any], None], arg: Any) -> None:
        """Run `fn(arg)` on the scheduler thread in `delay` s (it must not block)."""
        self._push(delay, False, fn, arg)

    def batch_later(self, delay: float, handler: Callable[[list[Any]], None], item: Any) -> None:
        """Run `handler([item, ...])` on a worker thread in `delay` s, with the other items of
        `handler` due at the same time."""
        self._push(delay, True, handler, item)

    def _push(self, delay: float, batch: bool, fn: Callable[..., Any], arg: Any) -> None:
        due = time.monotonic() + max(0.0, delay)
        with self._lock:
            if self._stop.is_set():
                return
            heapq.heappush(self._heap, (due, next(self._seq), batch, fn, arg))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="procsync-scheduler",
                                                daemon=True)
                self._thread.start()
            else:
                self._wake.notify()  # it may be the new earliest job

    def pending(self) -> int:
        """Jobs waiting in the heap (for tests and benchmarks)."""
        with self._lock:
            return len(self._heap)

    def stop(self, timeout: float = 10.0) -> None:
        """Drop every pending job, stop the thread and join the workers still running."""
        self._stop.set()
        with self._lock:
            self._heap.clear()
            self._due.clear()
            thread, self._thread = self._thread, None
            self._wake.notify()
            workers = list(self._workers)
        current = threading.current_thread()
        if thread is not None and thread is not current:
            thread.join(timeout)
        deadline = time.monotonic() + timeout
        for worker in workers:
            if worker is not current:
                worker.join(max(0.0, deadline - time.monotonic()))

    def forget_after_fork(self) -> None:
        """In a forked child: no threads; fresh lock; the parent's jobs are not ours."""
        self._lock = ordered_lock("scheduler")
        self._wake = threading.Condition(self._lock)
        self._heap = []
        self._thread = None
        self._workers = set()
        self._due = {}

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stop.is_set():
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        break
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._wake.wait(wait)
                if self._stop.is_set():
                    return
                due: list[tuple[float, int, bool, Callable[..., Any], Any]] = []
                moment = time.monotonic()
                while self._heap and self._heap[0][0] <= moment:
                    due.append(heapq.heappop(self._heap))
            batches: dict[Callable[..., Any], list[Any]] = {}
            for _, _, batch, fn, arg in due:
                if batch:
                    batches.setdefault(fn, []).append(arg)
                    continue
                try:
                    fn(arg)
                except Exception:
                    log.exception("scheduled job %s failed", getattr(fn, "__name__", fn))
            for handler, items in batches.items():
                self._start_worker(handler, items)

    def _start_worker(self, handler: Callable[[list[Any]], None], items: list[Any]) -> None:
        """Hand `items` to `handler`'s worker, starting one if none runs."""
        with self._lock:
            if self._stop.is_set():
                return
            running = handler in self._due
            self._due.setdefault(handler, []).extend(items)
            if running:
                return  # its worker takes them in its next round
            worker = threading.Thread(target=self._work, args=(handler,), name="procsync-restart",
                                      daemon=True)
            self._workers.add(worker)
        worker.start()

    def _work(self, handler: Callable[[list[Any]], None]) -> None:
        try:
            while True:
                with self._lock:
                    items = self._due.get(handler)
                    if not items or self._stop.is_set():
                        self._due.pop(handler, None)
                        return
                    self._due[handler] = []
                try:
                    handler(items)
                except Exception:
                    log.exception("scheduled batch %s failed", getattr(handler, "__name__", handler))
        finally:
            with self._lock:
                self._workers.discard(threading.current_thread())


__all__ = ["Scheduler"]
