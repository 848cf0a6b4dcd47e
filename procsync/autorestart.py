"""Automatic restarts: react to unrequested exits and unresponsive servers under the restart policy.

Exits arrive on the manager's watcher thread and are only decided and
scheduled there; restarts run on timer threads (on the leader only), and a
stability timer resets the restart count once a process has run long enough.
"""

# Methods here annotate `self` as the ServerOrchestrator they are mixed into, so mypy checks
# them against it; mypy reports such a self type on a mixin as "misc", hence:
# mypy: disable-error-code="misc"

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import signals
from .records import ProcessInfo
from .restart import FATAL, RESTART, RestartDecision, decide, exit_event
from .server_state import ServerState, now

if TYPE_CHECKING:  # pragma: no cover
    from .orchestrator import ServerOrchestrator

log = logging.getLogger("procsync.orchestrator")  # its records keep the orchestrator's logger name


class AutoRestartMixin:
    """The auto-restart part of ServerOrchestrator (its methods run on the orchestrator)."""

    def _on_process_exit(self: ServerOrchestrator, sender: Any, *, id: str, pid: int, exit_code: int | None = None,
                         expected: bool = False, info: ProcessInfo | None = None, **extra: Any) -> None:
        """process_exit from our manager (its watcher thread): decide, schedule, record; never block."""
        if self._sync.exit_is_foreign(id, pid, exit_code, info):
            return  # another instance's process: its owner (or the leader) decides
        with self._lock:
            server = self._servers.get(id)
            if server is None:
                return
            if server.pid != pid:
                if not (server.status == "starting" and server.pid is None):
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
            if server.stable_timer is not None:
                server.stable_timer.cancel()
                server.stable_timer = None
            if server.status == "stopping" or (expected and server.kill_reason is None):
                return  # a stop or restart by request is under way; it finishes the bookkeeping
            reason, server.kill_reason = server.kill_reason, None
            uptime = (now() - server.started_at).total_seconds() if server.started_at else None
            decision = decide(server.config, server.restarts, exit_code, uptime=uptime, reason=reason)
            after = self._apply_decision(server, decision, pid, exit_code=exit_code, record_exit=True)
            self._changed.notify_all()
        for action in after:
            action()

    def _apply_decision(self: ServerOrchestrator, server: ServerState, decision: RestartDecision, pid: int | None, *,
                        exit_code: int | None = None, record_exit: bool = False) -> list[Callable[[], None]]:
        """Under the lock: put `decision` in force; the sends and writes to do after releasing it."""
        sid = server.id
        server.status = decision.status
        server.restarts = decision.restarts
        server.message = decision.message
        server.last_failure = decision.reason
        server.pid = None
        server.ready = False
        server.verdict = server.verdict_at = None
        log_file = server.log_file
        at = now()  # history is ordered by this, so the writes below may land after the restart
        actions: list[Callable[[], None]] = []
        if decision.action == RESTART:
            server.generation += 1
            timer = threading.Timer(decision.delay, self._auto_restart, (sid, server.generation))
            timer.daemon = True
            timer.name = f"procsync-restart-{sid}"
            server.timer = timer
            attempt, delay = decision.restarts, decision.delay

            def restart() -> None:
                # first the signal and the timer, then the slower writes: an immediate
                # restart must not wait for the store's fsyncs
                signals.send(signals.server_restarting, self, id=sid, pid=pid, attempt=attempt,
                             delay=delay, reason=decision.reason, instance=self.instance.name)
                with self._lock:
                    if self._closed or not self.is_leader:
                        timer.cancel()  # only the leader runs restarts: it finds the backoff record
                        if server.timer is timer:
                            server.timer = None
                    self._workers = {t for t in self._workers if t.is_alive()}
                    self._workers.add(timer)
                timer.start()

            actions.append(restart)
        actions.append(lambda: self._persist(sid))
        if record_exit:
            event = exit_event(exit_code)
            actions.append(lambda: self._history(sid, event, pid=pid, exit_code=exit_code,
                                                 reason=decision.reason, log_file=log_file, at=at))
        if decision.action == RESTART:
            actions.append(lambda: self._history(
                sid, "restarting", pid=pid, exit_code=exit_code, at=at,
                reason=f"{decision.reason}; attempt {attempt} in {delay:.1f} s"))
        elif decision.action == FATAL:
            restarts = decision.restarts

            def fatal() -> None:
                self._history(sid, "fatal", pid=pid, exit_code=exit_code, reason=decision.message)
                signals.send(signals.server_fatal, self, id=sid, pid=pid, restarts=restarts,
                             exit_code=exit_code, instance=self.instance.name)

            actions.append(fatal)
        return actions

    def _auto_restart(self: ServerOrchestrator, sid: str, gen: int) -> None:
        """Timer thread: start `sid` again unless a stop or start came first."""
        try:
            with self._lock:
                server = self._servers.get(sid)
                if server is None or server.generation != gen or server.status != "backoff" or self._closed:
                    return
                # server.timer stays set (running, not finished) so the leader's sync arms no other
                old_pid = server.last_pid
            self._wait_released(server, old_pid, timeout=server.config.stop_timeout + 5.0)
            with self._lock:
                if server.generation != gen or server.status != "backoff" or self._closed:
                    return
                new_gen = self._begin(server)
            self._launch(server, new_gen, wait=True, automatic=True)
        except Exception:
            log.exception("automatic restart of %r failed", sid)
        finally:
            with self._lock:
                self._workers.discard(threading.current_thread())

    def _arm_restart(self: ServerOrchestrator, sid: str, delay: float) -> None:
        """(Leader) run the pending automatic restart of `sid` in `delay` s unless one is armed."""
        with self._lock:
            server = self._servers.get(sid)
            if server is None or self._closed or server.status != "backoff":
                return
            if server.timer is not None and not server.timer.finished.is_set():
                return
            timer = threading.Timer(delay, self._auto_restart, (sid, server.generation))
            timer.daemon = True
            timer.name = f"procsync-restart-{sid}"
            server.timer = timer
            self._workers = {t for t in self._workers if t.is_alive()}
            self._workers.add(timer)
            timer.start()  # under the lock: shutdown never sees it unstarted

    def _schedule_stable(self: ServerOrchestrator, server: ServerState, gen: int, delay: float) -> None:
        """Under the lock: reset the restart count once generation `gen` has run `delay` s."""
        if server.stable_timer is not None:
            server.stable_timer.cancel()
        timer = threading.Timer(delay, self._stable, (server.id, gen))
        timer.daemon = True
        timer.name = f"procsync-stable-{server.id}"
        server.stable_timer = timer
        if not self._closed:
            timer.start()

    def _stable(self: ServerOrchestrator, sid: str, gen: int) -> None:
        with self._lock:
            server = self._servers.get(sid)
            if server is None or server.generation != gen or server.status not in ("starting", "running"):
                return
            server.stable_timer = None
            if server.restarts == 0:
                return
            server.restarts = 0
        self._persist(sid)

    def _on_status_change(self: ServerOrchestrator, sender: Any, *, id: str, pid: int | None = None,
                          current: str | None = None, **extra: Any) -> None:
        """A server that was ready and turned unresponsive is restarted under its policy."""
        if current != "unresponsive":
            return
        with self._lock:
            server = self._servers.get(id)
            if (server is None or server.pid is None or server.pid != pid or not server.ready
                    or server.status != "running" or server.config.autorestart == "no"
                    or server.owner not in (None, self._owner)):
                return  # another instance's process is that instance's to restart
            server.kill_reason = "health check failed"
        log.warning("server %r (pid %s) stopped answering its health check; restarting it", id, pid)
        self._spawn_worker(self.manager.kill, id, name=f"procsync-unresponsive-{id}")


__all__ = ["AutoRestartMixin"]
