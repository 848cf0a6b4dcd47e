"""Restarts on a timetable (`restart_schedule`): "03:00" daily, "every 6h", or a cron line.

Each start of a server with a `restart_schedule` that spawns a process
(`Starter` calls `arm`) puts one job on the orchestrator's scheduler: the
next due time after now, by the orchestrator's wall clock (`ctx.clock`, an
aware datetime; tests inject one that runs from a chosen moment). When it
is due, the job checks under the registry lock that the server is still
in the generation it was armed for and is running, and hands a graceful
restart (`Stopper.restart`, history "restarting" with the reason) to a
worker thread; that restart's start arms the next job. A stop, a crash or
any other start moves the generation on, so the job lapses and nothing is
cancelled by hand.

The scheduler counts its delays on the monotonic clock, so a job waits at
most `RECHECK` seconds before it reads the wall clock again: a wall clock
set forwards or back, or a machine that slept, moves the restart to the
right moment within that much.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime

from ..config import ServerConfig
from ..config.schedule import Schedule, parse_schedule
from ..records import ActionResult
from .context import Context

log = logging.getLogger("procsync.orchestrator")

RECHECK = 300.0  # seconds: the longest a job sleeps before it reads the wall clock again
EARLY = 0.5  # seconds: a job this close to its due time runs (the two clocks drift apart)


@dataclasses.dataclass(frozen=True, slots=True)
class _Job:
    sid: str
    gen: int
    text: str  # the config's restart_schedule, as written
    schedule: Schedule
    due: datetime


class Timetable:
    """Schedules each running server's next timetabled restart on the orchestrator's scheduler.

    The orchestrator's `ctx.clock` must advance like a clock: a job runs
    once it reaches its due time.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.restart: Callable[[str, str], ActionResult]  # Stopper.restart(sid, reason)
        self._last_due: dict[str, datetime] = {}  # sid -> the due time of its last restart (registry lock)

    def arm(self, sid: str, gen: int, config: ServerConfig) -> None:
        """A start of `sid` (generation `gen`) spawned, or its process was adopted: schedule its
        next timetabled restart.

        Call it outside the registry lock. The next due time is counted from
        now, or from the restart that just ran if the clock still reads
        before it, so one due time never restarts a server twice.
        """
        if config.restart_schedule is None:
            return
        try:
            schedule = parse_schedule(config.restart_schedule)  # validated at registration
        except ValueError as err:
            log.error("server %r: restart_schedule: %s; no timetabled restarts", sid, err)
            return
        moment = self.ctx.clock()
        with self.ctx.registry.lock:
            last = self._last_due.get(sid)
        if last is not None and last > moment:
            moment = last
        due = schedule.next_after(moment)
        log.debug("server %r: next timetabled restart at %s (%s)", sid, due.isoformat(),
                  schedule.describe())
        self._wait(_Job(sid, gen, config.restart_schedule, schedule, due))

    def _wait(self, job: _Job) -> None:
        delay = (job.due - self.ctx.clock()).total_seconds()
        self.ctx.scheduler.call_later(min(max(delay, 0.0), RECHECK), self._due, job)

    def _due(self, job: _Job) -> None:
        """On the scheduler thread (must not block): restart now, wait on, or lapse."""
        early = (job.due - self.ctx.clock()).total_seconds()
        registry = self.ctx.registry
        with registry.lock:
            server = registry.servers.get(job.sid)
            if (registry.closed or server is None or server.generation != job.gen
                    or server.status not in ("starting", "running")
                    or server.config.restart_schedule != job.text):
                return  # stopped, ended, restarted or reconfigured meanwhile: the next start arms
            if early <= EARLY:
                self._last_due[job.sid] = job.due
            starting = server.status == "starting"
        if early > EARLY:
            self._wait(job)  # the monotonic delay ran out before the wall clock did
            return
        if starting:  # still not ready: leave it be, and restart at the next due time
            log.warning("server %r: timetabled restart (%s) skipped: it is still starting",
                        job.sid, job.schedule.describe())
            self._wait(dataclasses.replace(job, due=job.schedule.next_after(job.due)))
            return
        reason = f"scheduled restart ({job.schedule.describe()})"
        self.ctx.spawn_worker(self._restart, job, reason, name=f"procsync-timetable-{job.sid}")

    def _restart(self, job: _Job, reason: str) -> None:
        """On a worker: the graceful restart, unless the server moved on since the job was due."""
        registry = self.ctx.registry
        with registry.lock:
            server = registry.servers.get(job.sid)
            if registry.closed or server is None or server.generation != job.gen:
                return
        log.info("server %r: %s", job.sid, reason)
        result = self.restart(job.sid, reason)
        if not result.success:
            log.warning("server %r: %s failed: %s", job.sid, reason, result.message)


__all__ = ["RECHECK", "Timetable"]
