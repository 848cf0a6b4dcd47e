"""The orchestrator's mutable record of one server, and the small helpers its parts share."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime
from typing import Any

from .config import ServerConfig
from .ports import identify
from .records import ActionResult

READY_POLL = 0.01  # seconds between readiness probes while starting
LOG_TAIL = 20  # log lines quoted when a start fails or a process exits
ACTIVE = ("starting", "running", "stopping")  # a process of ours exists
LIVE_RECORD = ("starting", "running", "stopping", "backoff")


def now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def fail(message: str, code: str, pid: int | None = None) -> ActionResult:
    """A failed ActionResult."""
    return ActionResult(False, message, pid, code)


def classify(record: Any) -> tuple[str, float | None]:
    """("inactive" or an outcome of `ports.identify`, live create_time) for a stored record."""
    if record.status not in LIVE_RECORD or not record.pid:
        return "inactive", None
    return identify(record.pid, record.create_time)


@dataclasses.dataclass(eq=False)
class ServerState:
    """The orchestrator's mutable state for one registered server (never handed out)."""

    id: str
    config: ServerConfig
    status: str = "stopped"
    previous: str = "stopped"  # status before the current start attempt
    pid: int | None = None  # the live process, if any
    last_pid: int | None = None
    pgid: int | None = None
    create_time: float | None = None
    started_at: datetime | None = None
    restarts: int = 0  # consecutive automatic restarts
    last_exit_code: int | None = None
    last_failure: str | None = None  # why the last unrequested exit happened
    message: str | None = None
    generation: int = 0  # bumped by every start, stop and scheduled restart
    ready: bool = False
    verdict: str | None = None  # our own health verdict ("healthy"/"unhealthy") ...
    verdict_at: datetime | None = None  # ... and when it was reached
    kill_reason: str | None = None  # set when we kill it for failing health checks
    log_file: str | None = None
    ended: dict[int, int | None] = dataclasses.field(default_factory=dict)  # generation -> exit code
    timer: threading.Timer | None = None  # pending automatic restart
    stable_timer: threading.Timer | None = None
    owner: str | None = None  # the instance (InstanceId.token) whose process this is

    def cancel_timers(self) -> None:
        """Cancel the pending restart and stability timers, if any."""
        for timer in (self.timer, self.stable_timer):
            if timer is not None:
                timer.cancel()
        self.timer = self.stable_timer = None


__all__ = ["ACTIVE", "LIVE_RECORD", "LOG_TAIL", "READY_POLL", "ServerState", "classify", "fail", "now"]
