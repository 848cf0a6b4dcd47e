"""procsync's locks, named and ranked, with an optional checker of the order they nest in.

Every lock procsync takes is made here, by name. A thread may take a lock
only while it holds locks of a lower rank (outer locks have lower ranks),
so two threads can never wait for each other. The order is the table
below, and docs/internals.md explains it.

With ``PROCSYNC_LOCK_ORDER=1`` in the environment when a lock is made, the
lock checks that order on every acquire and raises `LockOrderError` naming
both locks when it is broken; the test suite runs with it on. Without it,
`ordered_lock` returns a plain ``threading.Lock`` (or ``RLock``): no cost.
"""

from __future__ import annotations

import os
import threading
from typing import Any

ENV_VAR = "PROCSYNC_LOCK_ORDER"

# Outer first. A lock may be taken while holding only locks listed above it.
ORDER: tuple[str, ...] = (
    "django.host",  # the Django app's orchestrator of this process (held while one is made)
    "forks",  # the registry of orchestrators to fix after a fork
    "orchestrator",  # the registry of servers and their state machine
    "orchestrator.workers",  # the orchestrator's worker threads and subscriptions
    "instances.sync",  # the records already applied from other instances
    "instances.leader",  # the leader lock's file descriptor
    "scheduler",  # the heap of due restarts and stability checks
    "journal",  # the queue of store writes
    "exits",  # the queue of exits handed off the manager's watcher thread
    "webhooks",  # the webhook dispatcher's hooks
    "flask.hubs",  # the SSE hubs' bookkeeping
    "flask.hub",  # one SSE hub's buffer and subscribers
    "flask.logstream",  # the log streams' bookkeeping
    "store",  # a state store's writer (held across the flock, a claim's spawns and the fsync)
    "store.snapshot",  # a state store's last committed records (reads)
    "manager",  # the process table of a ProcessManager (a claim spawns inside the store lock)
    "logs.rotator",  # the log rotator's thread
    "monitor",  # the monitor's watches and statuses
    "series",  # the resource history rings
    "ports",  # the cached port scan
    "redact",  # the cache of masked commands
    "timing",  # one DurationMeter's figures (taken alone)
    "spawn.child",  # one spawned child's waitpid (taken alone, never waited for)
)
RANK = {name: rank for rank, name in enumerate(ORDER)}


class LockOrderError(RuntimeError):
    """A lock was taken while a lock that must be taken after it was held."""


_held = threading.local()


def _stack() -> list[_CheckedLock]:
    stack = getattr(_held, "stack", None)
    if stack is None:
        stack = _held.stack = []
    return stack


class _CheckedLock:
    """A Lock or RLock that raises LockOrderError when taken out of ORDER."""

    def __init__(self, name: str, reentrant: bool) -> None:
        self.name = name
        self.rank = RANK[name]
        self._lock: Any = threading.RLock() if reentrant else threading.Lock()
        self._reentrant = reentrant
        self._owner: int | None = None

    def _check(self) -> None:
        stack = _stack()
        if self._reentrant and any(held is self for held in stack):
            return
        for held in stack:
            if held.rank >= self.rank:
                raise LockOrderError(
                    f"lock {self.name!r} taken while holding {held.name!r}; the order is "
                    f"{held.name!r} only after {self.name!r} (see procsync.locks.ORDER)"
                )

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self._check()
        got = bool(self._lock.acquire(blocking, timeout))
        if got:
            _stack().append(self)
            self._owner = threading.get_ident()
        return got

    def release(self) -> None:
        stack = _stack()
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is self:
                del stack[i]
                break
        if not self._reentrant or not any(held is self for held in stack):
            self._owner = None
        self._lock.release()

    def _is_owned(self) -> bool:  # threading.Condition asks this
        return self._owner == threading.get_ident()

    def locked(self) -> bool:
        return self._owner is not None

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<checked lock {self.name!r} rank {self.rank}>"


def checking() -> bool:
    """Whether locks made now check their order (``PROCSYNC_LOCK_ORDER`` is set and not "0")."""
    return os.environ.get(ENV_VAR, "") not in ("", "0")


def ordered_lock(name: str, *, reentrant: bool = False) -> Any:
    """A new lock called `name` (one of ORDER); checked when `checking()`, else a plain lock."""
    if name not in RANK:
        raise ValueError(f"unknown lock name {name!r}; add it to procsync.locks.ORDER")
    if checking():
        return _CheckedLock(name, reentrant)
    return threading.RLock() if reentrant else threading.Lock()


__all__ = ["ENV_VAR", "ORDER", "LockOrderError", "checking", "ordered_lock"]
