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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values under the same snake_case keys; times as ISO 8601."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


__all__ = ["ActionResult", "KillResult", "ProcessInfo", "ProcessStatus", "ServerStatus"]
