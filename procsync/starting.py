"""Starting a server: refuse, spawn under the store's lock, then wait for readiness.

A start by request and an automatic restart share this path; each start
bumps the server's generation, and every step checks it is still current,
so a stop or a newer start that came meanwhile wins.
"""

# Methods here annotate `self` as the ServerOrchestrator they are mixed into, so mypy checks
# them against it; mypy reports such a self type on a mixin as "misc", hence:
# mypy: disable-error-code="misc"

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import signals
from .config import HealthCheck, ServerConfig
from .errors import ConfigError, DuplicateProcessError, SpawnError
from .health import port_open, run_health_check
from .proctree import STATE_VAR, process_alive
from .records import ActionResult, ProcessInfo
from .restart import decide, describe_exit
from .server_state import ACTIVE, LOG_TAIL, READY_POLL, ServerState, fail, now
from .sync import taken_message

if TYPE_CHECKING:  # pragma: no cover
    from .orchestrator import ServerOrchestrator

log = logging.getLogger("procsync.orchestrator")  # its records keep the orchestrator's logger name



class StartMixin:
    """The start path of ServerOrchestrator (its methods run on the orchestrator)."""

    def start_server(self: ServerOrchestrator, id: str, wait: bool = True) -> ActionResult:
        """Start server `id`; with ports or a health check and `wait`, return once it is ready."""
        self._check_fork()
        self._ensure_initialized()
        self._refresh(id)
        with self._lock:
            server = self._servers.get(id)
            if server is None:
                return fail(f"unknown server {id!r}", "unknown")
            refused = self._refuse_start(server)
            if refused is not None:
                return refused
            server.restarts = 0  # a start by request begins a fresh restart count
            gen = self._begin(server)
        return self._launch(server, gen, wait=wait, automatic=False)

    def _refuse_start(self: ServerOrchestrator, server: ServerState) -> ActionResult | None:
        if self._closed:
            return fail("the orchestrator is shut down", "start_failed")
        if server.status in ("starting", "running"):
            where = f" (pid {server.pid})" if server.pid else ""
            return fail(f"server {server.id!r} is already {server.status}{where}", "already_running",
                         server.pid)
        if server.status == "stopping":
            return fail(f"server {server.id!r} is stopping; start it once it has stopped",
                         "already_running", server.pid)
        return None

    def _begin(self: ServerOrchestrator, server: ServerState) -> int:
        """Under the lock: move `server` to "starting"; the new generation."""
        server.cancel_timers()
        # a start that fails before spawning goes back to this (a cancelled backoff has ended)
        server.previous = "crashed" if server.status == "backoff" else server.status
        server.status = "starting"
        server.pid = None
        server.ready = False
        server.verdict = server.verdict_at = None
        server.kill_reason = None
        server.generation += 1
        return server.generation

    def _launch(self: ServerOrchestrator, server: ServerState, gen: int, *, wait: bool, automatic: bool) -> ActionResult:
        """Check, spawn and (maybe) wait for readiness: the rest of a start after `_begin`.

        Whatever this raises ends the start as "crashed" with the reason (`_start_raised`):
        a server never stays "starting" because of an error nobody foresaw.
        """
        try:
            return self._launch_steps(server, gen, wait=wait, automatic=automatic)
        except Exception as err:
            return self._start_raised(server, gen, err, automatic)

    def _launch_steps(self: ServerOrchestrator, server: ServerState, gen: int, *, wait: bool,
                      automatic: bool) -> ActionResult:
        sid, config = server.id, server.config
        try:
            config.check_runtime(sid)
            # with the state file it belongs to: found again even if we die before recording it
            spawn = config.to_spawn(sid, extra_env={STATE_VAR: self._state_key})
        except ConfigError as err:
            return self._abort(server, gen, str(err), "bad_config", automatic)
        record = self._safe(self.store.get_process, sid)
        if (record is not None and record.status in ACTIVE and record.owner != self._owner
                and process_alive(record.pid, record.create_time)):
            return self._taken(record)  # started through another instance
        held = self._ports_held(config.ports)
        if held:
            port, pid = held
            return self._abort(server, gen, f"cannot start {sid!r}: port {port} is already in use "
                               f"by {self._describe_holder(pid)}", "port_in_use", automatic)
        with self._lock:
            cancelled = self._closed or server.generation != gen or server.status != "starting"
        if cancelled:
            return self._abort(server, gen, f"start of {sid!r} was cancelled", "start_cancelled", automatic)
        try:
            # spawned under the store's cross-process lock: one process however many instances ask
            spawned, taken = self._sync.claim_spawn(sid, spawn, server.restarts)
        except SpawnError as err:
            return self._abort(server, gen, str(err), "start_failed", automatic)
        except DuplicateProcessError as err:
            return self._abort(server, gen, str(err), "already_running", automatic)
        if taken is not None or spawned is None:
            return self._taken(taken)
        info = spawned
        with self._lock:
            current = server.generation == gen and server.status == "starting"
            if current:
                server.owner = self._owner
                server.pid = server.last_pid = info.pid
                server.pgid = info.pgid
                server.create_time = info.create_time
                server.started_at = info.start_time
                server.log_file = info.log_file
                server.message = (f"restarted (attempt {server.restarts} of {config.max_restarts}) "
                                  f"after: {server.last_failure}") if automatic else None
                self._schedule_stable(server, gen, config.stable_after)
            self._changed.notify_all()
            orphan = not current and server.pid != info.pid
        if orphan:  # unregistered or shut down while spawning: do not leave it running
            tracked = self.manager.get_process(sid)
            if tracked is not None and tracked.pid == info.pid:  # not a newer process of another
                self.manager.kill(sid)
            return fail(f"start of {sid!r} was cancelled", "start_cancelled", info.pid)
        if current:
            self.monitor.watch(sid, health=config.health, start_timeout=config.start_timeout)
            self._persist(sid)
            self._history(sid, "started", pid=info.pid,
                          reason="automatic restart" if automatic else "started by request")
        if not (config.ports or config.health):
            return self._mark_ready(server, gen, info, None)
        if wait:
            return self._await_ready(server, gen, info)
        self._spawn_worker(self._await_ready, server, gen, info, name=f"procsync-ready-{sid}")
        return ActionResult(True, f"starting {sid!r} (pid {info.pid})", info.pid)

    def _taken(self: ServerOrchestrator, record: Any) -> ActionResult:
        """Another instance runs the server (`record`): show it, and answer "already running"."""
        self._sync.apply(record.id, None, record)
        return fail(taken_message(record), "already_running", record.pid)

    def _abort(self: ServerOrchestrator, server: ServerState, gen: int, message: str, code: str, automatic: bool) -> ActionResult:
        """A start that never spawned a process: back to the previous status, or (automatic
        restarts) on to the next attempt or fatal."""
        after: list[Callable[[], None]] = []
        with self._lock:
            if server.generation == gen and server.status == "starting":
                if automatic and not self._closed:
                    decision = decide(server.config, server.restarts, None,
                                      reason=f"could not start: {message}")
                    after = self._apply_decision(server, decision, None)
                else:
                    server.status = server.previous
                    server.message = message
                self._changed.notify_all()
        for action in after:
            action()
        return fail(message, code)

    def _start_raised(self: ServerOrchestrator, server: ServerState, gen: int, err: Exception,
                      automatic: bool) -> ActionResult:
        """A start of generation `gen` raised: stop what it spawned, record the reason, and leave
        the server "crashed" (or, for an automatic restart, on to the next attempt or fatal)."""
        sid = server.id
        log.error("start of %r failed unexpectedly", sid, exc_info=err)
        message = f"cannot start {sid!r}: {type(err).__name__}: {err}"
        with self._lock:
            current = server.generation == gen and server.status == "starting"
            if current:
                # a newer generation first: the exit of anything this start spawned is not reported
                server.cancel_timers()
                server.generation += 1
                server.status = "crashed"
                server.pid = None
                server.ready = False
                server.verdict = server.verdict_at = None
                server.message = message
                server.last_failure = message
                self._changed.notify_all()
            pid = server.last_pid
        if not current:  # a stop or a newer start took over; it does the bookkeeping
            return fail(message, "start_failed")
        left = self.manager.get_process(sid)
        if left is not None and left.status == "running":  # spawned before the error: ours
            pid = left.pid
            with self._lock:
                server.last_pid = pid
            try:
                self.manager.kill(sid)
            except Exception:
                log.exception("could not stop pid %s left by the failed start of %r", pid, sid)
        after: list[Callable[[], None]] = []
        with self._lock:
            if automatic and not self._closed and server.status == "crashed" and server.generation == gen + 1:
                decision = decide(server.config, server.restarts, None, reason=message)
                after = self._apply_decision(server, decision, None)
                self._changed.notify_all()
        self._persist(sid)
        self._history(sid, "crashed", pid=pid, reason=message)
        for action in after:
            action()
        return fail(message, "start_failed", None)

    @staticmethod
    def _ready_now(config: ServerConfig) -> tuple[bool, str | None]:
        try:
            if isinstance(config.health, HealthCheck):
                return run_health_check(config.health)
            closed = [p for p in config.ports if not port_open(p, timeout=0.5)]
        except Exception as err:  # a probe that raises is a failing probe, not a stuck start
            log.warning("readiness check raised", exc_info=True)
            return False, f"the check raised {type(err).__name__}: {err}"
        return (not closed, f"port {closed[0]} does not accept connections" if closed else None)

    def _await_ready(self: ServerOrchestrator, server: ServerState, gen: int, info: ProcessInfo) -> ActionResult:
        """Probe every READY_POLL s until ready, exited, stopped or start_timeout passed."""
        config = server.config
        began = time.monotonic()
        deadline = began + config.start_timeout
        error: str | None = None
        while True:
            with self._lock:
                still = server.generation == gen and server.status == "starting"
            if not still:
                return self._start_interrupted(server, gen, info)
            ok, error = self._ready_now(config)
            if ok:
                return self._mark_ready(server, gen, info, began)
            if time.monotonic() >= deadline:
                return self._mark_timeout(server, gen, info, error)
            if self._closing.wait(READY_POLL):
                return fail(f"start of {server.id!r} interrupted by shutdown", "start_failed", info.pid)

    def _mark_ready(self: ServerOrchestrator, server: ServerState, gen: int, info: ProcessInfo, began: float | None) -> ActionResult:
        with self._lock:
            if server.generation != gen or server.status != "starting":
                current = False
            else:
                current = True
                server.status = "running"
                server.ready = True
                server.verdict, server.verdict_at = "healthy", now()
        if not current:
            return self._start_interrupted(server, gen, info)
        self._persist(server.id)
        signals.send(signals.server_started, self, id=server.id, pid=info.pid, ready=True,
                     instance=self.instance.name)
        text = f"started {server.id!r} (pid {info.pid})"
        if began is not None:
            text += f", ready after {time.monotonic() - began:.2f} s"
        return ActionResult(True, text, info.pid)

    def _mark_timeout(self: ServerOrchestrator, server: ServerState, gen: int, info: ProcessInfo, error: str | None) -> ActionResult:
        timeout = server.config.start_timeout
        message = f"not ready after {timeout:g} s" + (f": {error}" if error else "")
        with self._lock:
            current = server.generation == gen and server.status == "starting"
            if current:
                server.status = "running"
                server.verdict, server.verdict_at = "unhealthy", now()
                server.message = message
        if not current:
            return self._start_interrupted(server, gen, info)
        self._persist(server.id)
        signals.send(signals.server_started, self, id=server.id, pid=info.pid, ready=False,
                     instance=self.instance.name)
        return fail(f"server {server.id!r} (pid {info.pid}) {message}; it is left running",
                     "start_timeout", info.pid)

    def _start_interrupted(self: ServerOrchestrator, server: ServerState, gen: int, info: ProcessInfo) -> ActionResult:
        """The start of generation `gen` ended before readiness: it exited, or was stopped."""
        with self._lock:
            exited = gen in server.ended
            code = server.ended.get(gen)
        if exited:
            lines = self.tail_log(server.id, LOG_TAIL)
            text = f"server {server.id!r} (pid {info.pid}) {describe_exit(code)} before it was ready"
            if lines:
                text += "; last log lines:\n" + "\n".join(lines)
            return fail(text, "start_failed", info.pid)
        return fail(f"start of {server.id!r} (pid {info.pid}) was cancelled by a stop", "start_cancelled",
                     info.pid)


__all__ = ["StartMixin"]
