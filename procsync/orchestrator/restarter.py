"""Exits and automatic restarts: hand exits off the watcher, decide, schedule, restart.

The manager's watcher thread only queues each exit here (`on_process_exit`)
and goes back to watching: no store, no disk, no lock of ours beyond the
queue's. The `procsync-exits` thread takes them in order, asks the
instances package whose exit it is, decides under the restart policy
(`policy.decide`), moves the server through the lifecycle, queues the
store writes on the journal and schedules the restart on the scheduler.
Restarts that fall due together start as one batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import signals
from ..ports import owner_of, tracked_processes
from ..records import ProcessInfo
from ..store import StoredProcessInfo
from .context import Context
from .lifecycle import ServerState, advance, observed
from .policy import FATAL, RESTART, RestartDecision, backoff_delay, decide, exit_event
from .queue_thread import QueueThread
from .registry import now

if TYPE_CHECKING:  # pragma: no cover
    from .status import StatusView

log = logging.getLogger("procsync.orchestrator")

_DECISION_EVENTS = {"backoff": "restart_due", "fatal": "gave_up", "exited": "exited_ok",
                    "crashed": "died", "completed": "job_done"}


class Restarter:
    """Exit handling and the restart policy at work, for one orchestrator."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.begin: Callable[[ServerState], int]  # Starter.begin: under the lock, to "starting"
        self.launch: Callable[..., Any]  # Starter.launch: the rest of a batch of starts
        self.status_view: StatusView
        self._exits = QueueThread("procsync-exits", "exits", self._handle_exits)

    # ------------------------------------------------------------ the hand-off

    def on_process_exit(self, sender: Any, **exit: Any) -> None:
        """process_exit from our manager, on its watcher thread: queue it and return."""
        self._exits.put(exit, start=True)

    def stop(self, timeout: float = 5.0) -> None:
        """Handle the exits queued so far, then stop the thread."""
        self._exits.stop(timeout)

    def forget_after_fork(self) -> None:
        """In a forked child: no thread, fresh lock; the parent's exits are not ours."""
        self._exits.forget_after_fork()

    def _handle_exits(self, exits: list[dict[str, Any]]) -> None:
        for exit in exits:
            try:
                self.handle_exit(**exit)
            except Exception:
                log.exception("handling the exit of %r failed", exit.get("id"))

    # ------------------------------------------------------------ deciding

    def handle_exit(self, *, id: str, pid: int, exit_code: int | None = None,
                    expected: bool = False, info: ProcessInfo | None = None,
                    owner_checked: bool = False, **extra: Any) -> None:
        """Decide what follows the exit of `pid` (server `id`); never blocks on a process."""
        ctx = self.ctx
        if not owner_checked:
            foreign, taken = ctx.sync.exit_owner(id, pid, exit_code, info)
            if foreign:
                return  # another instance's process: its owner (or the leader) decides
            if taken is not None:
                with ctx.registry.lock:  # the leader took it over: handle it as ours
                    server = ctx.registry.servers.get(id)
                    if server is None:
                        return
                    server.owner = ctx.owner
                    if server.status != "stopping":  # a stop of ours under way finishes it
                        advance(server, observed(taken.status if taken.status in
                                                 ("starting", "running") else "running"))
                        server.pid = pid
        after: list[Callable[[], object]] = []
        registry = ctx.registry
        with registry.lock:
            server = registry.servers.get(id)
            if server is None:
                return
            if server.pid != pid:
                if not (server.status == "starting" and server.pid is None
                        and pid != server.last_pid and (info is None or not info.adopted)):
                    return
                server.pid = server.last_pid = pid  # exited before spawn() returned to us
                if info is not None:
                    server.started_at = info.start_time
                    server.create_time = info.create_time
                    server.pgid = info.pgid
                    server.log_file = info.log_file
            server.ended[server.generation] = exit_code
            while len(server.ended) > 8:
                server.ended.pop(next(iter(server.ended)))
            server.last_exit_code = exit_code
            if server.status == "stopping" or (expected and server.kill_reason is None):
                registry.changed.notify_all()
                return  # a stop or restart by request is under way; it finishes the bookkeeping
            reason, server.kill_reason = server.kill_reason, None
            uptime = (now() - server.started_at).total_seconds() if server.started_at else None
            decision = decide(server.config, server.restarts, exit_code, uptime=uptime, reason=reason)
            after = self.apply_decision(server, decision, pid, exit_code=exit_code, record_exit=True)
            registry.changed.notify_all()
        for action in after:
            action()

    def apply_decision(self, server: ServerState, decision: RestartDecision, pid: int | None, *,
                       exit_code: int | None = None,
                       record_exit: bool = False) -> list[Callable[[], object]]:
        """Under the lock: put `decision` in force; the sends and writes to do after releasing it."""
        ctx = self.ctx
        sid = server.id
        advance(server, _DECISION_EVENTS[decision.status])
        server.restarts = decision.restarts
        server.message = decision.message
        server.last_failure = decision.reason
        log_file = server.log_file
        gen = server.generation
        at = now()  # history is ordered by this, so the writes below may land after the restart
        actions: list[Callable[[], object]] = []
        if decision.action == RESTART:
            attempt, delay = decision.restarts, decision.delay

            def restart() -> None:
                # first the signal and the schedule, then the writes: an immediate restart
                # never waits for the store
                signals.send(signals.server_restarting, ctx.sender, id=sid, pid=pid, attempt=attempt,
                             delay=delay, reason=decision.reason, instance=ctx.instance.name)
                self._schedule_restart(sid, gen, delay)

            actions.append(restart)
        journal = ctx.journal
        actions.append(lambda: journal.persist(sid))
        if record_exit:
            event = ("completed" if decision.status == "completed"
                     else exit_event(exit_code, tuple(server.config.success_exit_codes)))
            actions.append(lambda: journal.event(sid, event, pid=pid, exit_code=exit_code,
                                                 reason=decision.reason, log_file=log_file, at=at))
        if decision.action == RESTART:
            actions.append(lambda: journal.event(
                sid, "restarting", pid=pid, exit_code=exit_code, at=at, log_file=log_file,
                reason=f"{decision.reason}; attempt {decision.restarts} in {decision.delay:.1f} s"))
        elif decision.action == FATAL:
            restarts = decision.restarts

            def fatal() -> None:
                journal.event(sid, "fatal", pid=pid, exit_code=exit_code, reason=decision.message,
                              log_file=log_file)
                signals.send(signals.server_fatal, ctx.sender, id=sid, pid=pid, restarts=restarts,
                             exit_code=exit_code, instance=ctx.instance.name)

            actions.append(fatal)
        return actions

    # ------------------------------------------------------------ restarting

    def _schedule_restart(self, sid: str, gen: int, delay: float) -> None:
        """(Leader) run the restart of `sid`, generation `gen`, in `delay` s."""
        ctx = self.ctx
        if not ctx.leader.is_leader:
            return  # only the leader runs restarts: its sync finds the backoff record
        with ctx.registry.lock:
            server = ctx.registry.servers.get(sid)
            if (server is None or ctx.registry.closed or server.generation != gen
                    or server.status != "backoff" or server.restart_gen == gen):
                return
            server.restart_gen = gen
            # how long a restart may wait for the old tree and its ports to go
            deadline = time.monotonic() + delay + server.config.stop_timeout + 5.0
        ctx.scheduler.batch_later(delay, self.restart_due, (sid, gen, deadline))

    def arm_restart(self, sid: str, record: StoredProcessInfo) -> None:
        """(Leader) schedule the pending restart `record` shows, unless one is scheduled."""
        ctx = self.ctx
        with ctx.registry.lock:
            server = ctx.registry.servers.get(sid)
            if server is None or ctx.registry.closed or server.status != "backoff":
                return
            if server.restart_gen == server.generation:
                return
            config, gen = server.config, server.generation
        delay = backoff_delay(max(1, record.restarts), config.backoff_initial, config.backoff_max)
        written = record.updated_at or now()
        remaining = max(0.0, delay - (now() - written).total_seconds())
        self._schedule_restart(sid, gen, remaining)

    def restart_due(self, items: list[tuple[str, int, float]]) -> None:
        """The restart worker: start again every server of `items` (id, generation, deadline)
        unless a stop or start came first; one not yet released waits its turn (never here)."""
        ctx = self.ctx
        registry = ctx.registry
        ready: list[tuple[ServerState, int]] = []
        for sid, gen, deadline in items:
            with registry.lock:
                server = registry.servers.get(sid)
                if (server is None or server.generation != gen or server.status != "backoff"
                        or registry.closed):
                    continue
                old_pid = server.last_pid
            if time.monotonic() < deadline and not self._released(server, old_pid):
                ctx.scheduler.batch_later(0.02, self.restart_due, (sid, gen, deadline))
                continue
            ready.append((server, gen))
        batch = []
        with registry.lock:
            for server, gen in ready:
                if server.generation != gen or server.status != "backoff" or registry.closed:
                    continue
                batch.append((server, self.begin(server), True))
        self.launch(batch, wait=False)  # readiness, where needed, on threads of its own

    def _released(self, server: ServerState, old_pid: int | None) -> bool:
        """Whether the old process tree of `server` is gone and its ports are free (no wait)."""
        info = self.ctx.manager.get_process(server.id)
        if (info is not None and old_pid is not None and info.pid == old_pid
                and self.ctx.manager.wait(server.id, timeout=0) is None):
            return False
        return self._ports_free(server, old_pid)

    def _ports_free(self, server: ServerState, old_pid: int | None) -> bool:
        """Whether no process of ours (or `old_pid`) holds a port of `server` right now."""
        ports = tuple(server.config.ports)
        if not ports:
            return True
        held = self.status_view.ports_held(ports)
        if held is None:
            return True
        owner = owner_of(held[1], tracked_processes(self.ctx.manager.get_all_processes()))
        return owner is None and held[1] != old_pid  # someone else's: the start reports it

    def wait_released(self, server: ServerState, old_pid: int | None, timeout: float) -> None:
        """Wait until the process tree of `old_pid` is gone and the server's ports are free."""
        ctx = self.ctx
        deadline = time.monotonic() + timeout
        info = ctx.manager.get_process(server.id)
        if info is not None and old_pid is not None and info.pid == old_pid:
            ctx.manager.wait(server.id, timeout=timeout)
        while (not self._ports_free(server, old_pid) and time.monotonic() < deadline
               and not ctx.registry.closing.is_set()):
            ctx.registry.closing.wait(0.02)

    # ------------------------------------------------------------ stability and health

    def schedule_stable(self, server: ServerState, gen: int, delay: float) -> None:
        """Reset the restart count once generation `gen` has run `delay` s."""
        self.ctx.scheduler.call_later(delay, self._stable, (server.id, gen))

    def _stable(self, job: tuple[str, int]) -> None:
        sid, gen = job
        ctx = self.ctx
        with ctx.registry.lock:
            server = ctx.registry.servers.get(sid)
            if server is None or server.generation != gen or server.status not in ("starting", "running"):
                return
            if server.restarts == 0:
                return
            server.restarts = 0
        ctx.journal.persist(sid)

    def exit_seen(self, sid: str, record: StoredProcessInfo) -> None:
        """(Leader) the process of `record`, now ours, ended unseen: decide, exit code unknown."""
        ctx = self.ctx
        with ctx.registry.lock:
            server = ctx.registry.servers.get(sid)
            if server is None:
                return
            server.owner = ctx.owner
            advance(server, observed(record.status))
            server.pid = server.last_pid = record.pid
            server.started_at = record.start_time
            server.create_time = record.create_time
        self.handle_exit(id=sid, pid=record.pid, exit_code=None, expected=False, owner_checked=True)

    def on_status_change(self, sender: Any, *, id: str, pid: int | None = None,
                         current: str | None = None, **extra: Any) -> None:
        """A server that was ready and turned unresponsive is restarted under its policy."""
        if current != "unresponsive":
            return
        ctx = self.ctx
        with ctx.registry.lock:
            server = ctx.registry.servers.get(id)
            if (server is None or server.pid is None or server.pid != pid or not server.ready
                    or server.status != "running" or server.config.autorestart == "no"
                    or server.owner not in (None, ctx.owner)):
                return  # another instance's process is that instance's to restart
            server.kill_reason = "health check failed"
        log.warning("server %r (pid %s) stopped answering its health check; restarting it", id, pid)
        ctx.spawn_worker(ctx.manager.kill, id, name=f"procsync-unresponsive-{id}")


__all__ = ["Restarter"]
