"""The records procsync hands out: frozen snapshots, changed with dataclasses.replace()."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """One process the manager runs or watches. With `pid`, `create_time` is its identity."""

    id: str
    pid: int
    pgid: int
    command: str
    cwd: str | None
    start_time: datetime  # aware, UTC
    create_time: float  # psutil's create_time()
    status: str = "running"  # "running" | "exited" | "crashed"
    ports: tuple[int, ...] = ()
    exit_code: int | None = None  # -N for a death by signal N; None while running or unknown
    log_file: str | None = None
    adopted: bool = False  # True when the manager did not spawn it (so it cannot reap it)


@dataclass(frozen=True, slots=True)
class KillResult:
    """What `kill` did: the last signal sent and how the process ended."""

    success: bool
    id: str
    pid: int | None
    signal: str | None  # name of the last signal sent, e.g. "SIGKILL"
    exit_code: int | None
    message: str


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The answer to start / stop / restart."""

    success: bool
    message: str
    pid: int | None = None
    code: str | None = None  # on failure: unknown, already_running, already_stopped, port_in_use,
    #                          start_failed, start_cancelled, start_timeout, stop_failed, bad_config,
    #                          dependency_failed, not_supported

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values under the same keys: success, message, pid, code."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


HEALTH_STATES = ("healthy", "unhealthy", "unresponsive", "dead", "unknown")


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    """One process as the monitor last saw it."""

    id: str
    pid: int | None
    alive: bool
    health: str  # "healthy" | "unhealthy" | "unresponsive" | "dead" | "unknown"
    ports: dict[int, bool] = field(default_factory=dict)
    consecutive_failures: int = 0
    last_check: datetime | None = None
    cpu_percent: float = 0.0
    memory_rss: int = 0  # bytes, whole process tree
    error: str | None = None


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """One registered server as the orchestrator sees it now."""

    id: str
    name: str
    color: str | None
    command: str
    cwd: str | None
    ports: tuple[int, ...]
    status: str  # stopped | waiting | starting | running | stopping | backoff | fatal | exited
    #              | crashed | completed | skipped
    running: bool
    pid: int | None
    health: str
    uptime: float | None
    restarts: int
    last_exit_code: int | None
    cpu_percent: float
    memory_rss: int
    orphaned: bool
    orphaned_pid: int | None
    log_file: str | None
    started_at: datetime | None = None
    autorestart: str = "no"
    message: str | None = None  # plain words about the last thing that went wrong
    env_keys: tuple[str, ...] = ()
    kind: str = "server"  # "server" | "job"
    group: str | None = None
    depends_on: dict[str, str] = field(default_factory=dict)  # id -> condition
    reload_signal: str | None = None
    listening: tuple[int, ...] = ()  # the ports of `ports` its process tree listens on now
    ports_required: bool = True  # False: `ports` are offered (a Procfile's PORT), not waited for

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values under the same snake_case keys; times as ISO 8601."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class ResourceMark:
    """A moment on a server's resource history: "start" (a new pid), "exit" or "health" (a change)."""

    time: float  # unix seconds
    kind: str  # "start" | "exit" | "health"
    pid: int | None
    detail: str  # e.g. "pid 4242 exited with code 3", "healthy -> unhealthy"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values under the same keys."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class ResourceHistory:
    """One server's recent monitor samples, oldest first, as parallel columns.

    Sample i was taken at `times[i]` (unix seconds) and saw `cpu_percent[i]`
    (of one core, the whole process tree), `memory_rss[i]` (bytes, whole
    tree), `health[i]`, `ports_up[i]` of `ports_total[i]` configured ports
    accepting connections, and `pids[i]` (None: not running). `window` is
    how many seconds of samples are kept; `interval` the monitor's tick.
    """

    id: str
    interval: float
    window: float
    times: tuple[float, ...] = ()
    cpu_percent: tuple[float, ...] = ()
    memory_rss: tuple[int, ...] = ()
    health: tuple[str, ...] = ()
    ports_up: tuple[int, ...] = ()
    ports_total: tuple[int, ...] = ()
    pids: tuple[int | None, ...] = ()
    marks: tuple[ResourceMark, ...] = ()

    def __len__(self) -> int:
        return len(self.times)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: columns as lists, marks as dicts."""
        out: dict[str, Any] = {f.name: list(getattr(self, f.name)) for f in fields(self)
                               if f.name not in ("id", "interval", "window", "marks")}
        out.update(id=self.id, interval=self.interval, window=self.window,
                   marks=[mark.to_dict() for mark in self.marks])
        return out


__all__ = ["HEALTH_STATES", "ActionResult", "KillResult", "ProcessInfo", "ProcessStatus", "ResourceHistory",
           "ResourceMark", "ServerStatus"]
