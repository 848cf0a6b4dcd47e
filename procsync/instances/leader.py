"""Which orchestrator instance leads, and who the other instances are.

Several ServerOrchestrator instances, in several processes, may share one
state file (Flask's reloader, gunicorn workers, the `procsync` command
beside a web app). Exactly one of them is the leader: the holder of an
exclusive ``fcntl.flock`` on ``<state file>.leader``. The lock is tried
without blocking, again on every sync tick, so when the leader's process
ends (even by SIGKILL: the kernel drops the lock with the last descriptor)
another instance takes over within one tick. The leader writes its name
into the file so every instance can show who leads.

An instance is identified in the store's ``owner`` field by its name, pid
and the process's create_time (`InstanceId.token`): `owner_alive` tells
whether the instance that owns a record may still be running.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

import psutil

from ..locks import ordered_lock

log = logging.getLogger("procsync.leader")

_TOKEN = re.compile(r"^(?P<name>.*) \[pid (?P<pid>\d+) @(?P<ct>\d+(?:\.\d+)?)\]$")
_OLD_TOKEN = re.compile(r"^pid (?P<pid>\d+)$")  # written before instances had names


def _create_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:  # pragma: no cover - our own process always exists
        return 0.0


@dataclass(frozen=True, slots=True)
class InstanceId:
    """One orchestrator instance: a name for people, pid + create_time for liveness."""

    name: str
    pid: int
    create_time: float

    @classmethod
    def current(cls, name: str | None = None) -> InstanceId:
        """This process's identity; `name` defaults to ``<host>:<pid>``."""
        pid = os.getpid()
        if name is None:
            name = f"{socket.gethostname()}:{pid}"
        elif not isinstance(name, str) or not name.strip() or "\n" in name:
            raise ValueError(f"instance_name: must be a non-empty one-line string, not {name!r}")
        return cls(name, pid, _create_time(pid))

    @property
    def token(self) -> str:
        """The store's `owner` value for records this instance owns."""
        return f"{self.name} [pid {self.pid} @{self.create_time:.3f}]"


def owner_name(owner: str | None) -> str | None:
    """The instance name inside an `owner` token (the token itself if it has no name part)."""
    if owner is None:
        return None
    match = _TOKEN.match(owner)
    return match.group("name") if match else owner


def handed_over(owner: str | None, me: str) -> bool:
    """Whether taking over a live record of `owner` is a hand-over, not a recovery: it was
    released at a clean shutdown (no owner) or left by another orchestrator of this very
    process. A hand-over writes no history entry: the server's history is its own lifecycle,
    not every reload of its host."""
    return owner is None or owner == me


def owner_alive(owner: str | None) -> bool:
    """True when the instance named by `owner` may still be running (its process lives)."""
    if not owner:
        return False
    match = _TOKEN.match(owner)
    if match is not None:
        pid, recorded = int(match.group("pid")), float(match.group("ct"))
    else:
        old = _OLD_TOKEN.match(owner)
        if old is None:
            return False
        pid, recorded = int(old.group("pid")), None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        actual = proc.create_time()
    except psutil.Error:
        return False
    # the token keeps 3 decimals; psutil's value has clock-tick (10 ms) resolution
    return recorded is None or abs(actual - recorded) < 0.01


def leader_path(state_path: str | os.PathLike[str]) -> Path:
    """The leader lock file beside `state_path`: ``<state file>.leader``."""
    path = Path(os.path.realpath(os.fspath(state_path)))
    return path.with_name(path.name + ".leader")


class LeaderLock:
    """A non-blocking exclusive flock on one file; whoever holds it leads. Thread-safe."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = ordered_lock("instances.leader")
        self._fd: int | None = None
        self._open_error: int | None = None  # the errno already warned about, so a tick doesn't repeat it

    @property
    def is_leader(self) -> bool:
        """True while this object holds the lock."""
        with self._lock:
            return self._fd is not None

    def try_acquire(self, name: str) -> bool:
        """Take the lock if it is free (never waits); True when held afterwards.

        A lock file procsync cannot open (a directory in its place, no permission)
        is logged once as a warning: this instance then never leads.
        """
        with self._lock:
            if self._fd is not None:
                return True
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as err:
                repeated, self._open_error = err.errno == self._open_error, err.errno
                failure = err
            else:
                self._open_error = None
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    return False
                self._fd = fd
                with contextlib.suppress(OSError):
                    data = (name + "\n").encode()
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, data, 0)
                return True
        if not repeated:
            log.warning("cannot open the leader lock file %s: %s; this instance cannot lead until it can",
                        self.path, failure.strerror or failure)
        return False

    def release(self) -> None:
        """Give the lock up (safe to call when not held)."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)

    def holder(self) -> str | None:
        """The name the current leader wrote into the file; None if no instance leads."""
        with self._lock:
            if self._fd is None:
                try:
                    fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    return None
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except OSError:
                    pass  # somebody holds it: read the name
                else:
                    os.close(fd)  # nobody leads right now
                    return None
                try:
                    text = os.pread(fd, 4096, 0)
                finally:
                    os.close(fd)
            else:
                text = os.pread(self._fd, 4096, 0)
        name = text.decode("utf-8", "replace").strip()
        return name or None

    def forget_after_fork(self) -> None:
        """In a forked child: drop the inherited descriptor without unlocking the parent's lock."""
        self._lock = ordered_lock("instances.leader")
        self._open_error = None
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # the parent still holds its own copy, so the lock stays its


__all__ = ["InstanceId", "LeaderLock", "handed_over", "leader_path", "owner_alive", "owner_name"]
