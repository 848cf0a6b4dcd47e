"""Starting servers: refuse, claim and spawn (a batch at a time), then wait for readiness.

A start by request, `start_all()` and the automatic restarts that fall due
together share one path. Each start moves its server to "starting" with a
new generation; every later step checks the generation is still current,
so a stop or a newer start that came meanwhile wins. The claims of a batch
(check the store, spawn, record) are one step under the store's
cross-process lock and one commit, so 200 starts cost one fsync there, not
200.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import signals
from ..config import HealthCheck, ServerConfig
from ..errors import ConfigError, DuplicateProcessError
from ..health import port_open, run_health_check
from ..instances.sync import Claim, taken_message
from ..logs import LineWatch
from ..ports import listening_ports
from ..proctree import STATE_VAR, process_alive
from ..records import ActionResult, ProcessInfo
from .context import Context
from .journal import Ticket
from .lifecycle import ACTIVE, ServerState, advance
from .policy import decide, describe_exit
from .registry import LOG_TAIL, READY_POLL, fail, now

if TYPE_CHECKING:  # pragma: no cover
    from .mirror import Mirror
    from .restarter import Restarter
    from .status import StatusView
    from .timetable import Timetable

log = logging.getLogger("procsync.orchestrator")


@dataclasses.dataclass(slots=True)
class _Start:
    """One start of a batch: its server, generation and where it stands."""

    server: ServerState
    gen: int
    automatic: bool
    claim: Claim | None = None
    result: ActionResult | None = None
    restart: bool = False  # a restart (by request or automatic): dependents may follow it
    log_offset: int = 0  # where the log ended before the spawn (ready_log_line looks after it)


class Starter:
    """The start path of one orchestrator."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.restarter: Restarter
        self.status_view: StatusView
        self.mirror: Mirror
        self.timetable: Timetable
        self.restarted: Callable[[str], None] = lambda sid: None  # a restart became ready

    # ------------------------------------------------------------ entry points

    def start(self, sid: str, wait: bool = True, *, restart: bool = False) -> ActionResult:
        """Start `sid`; with ports or a health check and `wait`, return once it is ready."""
        return self.start_many([sid], wait=wait, restart=restart)[sid]

    def start_many(self, ids: list[str], wait: bool = True, *,
                   restart: bool = False) -> dict[str, ActionResult]:
        """Start every id of `ids` as one batch; the result of each."""
        registry = self.ctx.registry
        results: dict[str, ActionResult] = {}
        batch: list[_Start] = []
        with registry.lock:
            for sid in ids:
                server, refused = self.refusal(sid)
                if server is None or refused is not None:
                    results[sid] = refused or fail(f"unknown server {sid!r}", "unknown")
                    continue
                server.restarts = 0  # a start by request begins a fresh restart count
                batch.append(_Start(server, self.begin(server), automatic=False, restart=restart))
        results.update(self.launch(batch, wait=wait))
        return {sid: results[sid] for sid in ids}

    def refusal(self, sid: str) -> tuple[ServerState | None, ActionResult | None]:
        """Under the lock: the record of `sid` and why a start of it by request is refused now
        (None: it may start; an unknown id is refused)."""
        server = self.ctx.registry.servers.get(sid)
        if server is None:
            return None, fail(f"unknown server {sid!r}", "unknown")
        return server, self._refusal(server)

    def _refusal(self, server: ServerState) -> ActionResult | None:
        if self.ctx.registry.closed:
            return fail("the orchestrator is shut down", "start_failed")
        if server.status in ("starting", "running"):
            where = f" (pid {server.pid})" if server.pid else ""
            return fail(f"server {server.id!r} is already {server.status}{where}", "already_running",
                        server.pid)
        if server.status == "stopping":
            return fail(f"server {server.id!r} is stopping; start it once it has stopped",
                        "already_running", server.pid)
        if server.status == "waiting":
            return fail(f"server {server.id!r} is already waiting for its dependencies",
                        "already_running")
        return None

    def begin(self, server: ServerState) -> int:
        """Under the lock: move `server` to "starting"; the new generation."""
        advance(server, "start")
        server.kill_reason = None
        return server.generation

    # ------------------------------------------------------------ the batch

    def launch(self, batch: list[Any], *, wait: bool) -> dict[str, ActionResult]:
        """Check, claim, spawn and (maybe) wait for readiness: the rest of each start after `begin`.

        `batch` holds `_Start`s (or (server, gen, automatic) tuples). Whatever
        one start raises ends it as "crashed" with the reason: a server never
        stays "starting" because of an error nobody foresaw.
        """
        starts = [b if isinstance(b, _Start) else _Start(b[0], b[1], b[2], restart=b[2]) for b in batch]
        if not starts:
            return {}
        scan = self._port_scan(starts)
        claims: list[_Start] = []
        for start in starts:
            try:
                start.result = self._prepare(start, scan)
            except Exception as err:
                start.result = self._raised(start, err)
            if start.result is None:
                claims.append(start)
        if claims:
            try:
                self.ctx.sync.claim_spawns([s.claim for s in claims if s.claim is not None])
            except Exception as err:
                for start in claims:
                    if start.claim is not None and start.claim.info is None:
                        start.result = self._raised(start, err)
        tickets: list[Ticket] = []
        waiting: list[_Start] = []
        for start in claims:
            if start.result is not None:
                continue
            try:
                start.result, ticket = self._spawned(start)
                if ticket is not None:
                    tickets.append(ticket)
                if start.result is None:
                    waiting.append(start)
            except Exception as err:
                start.result = self._raised(start, err)
        self._await_all(waiting, wait)
        if wait and not all(s.automatic for s in starts):
            for ticket in tickets:  # a start's record is on disk before start_server returns
                ticket.wait()
        return {s.server.id: s.result or fail(f"start of {s.server.id!r} failed", "start_failed")
                for s in starts}

    @staticmethod
    def _port_scan(starts: list[_Start]) -> dict[int, int] | None:
        if not any(s.server.config.ports for s in starts):
            return None
        return listening_ports()

    def _prepare(self, start: _Start, scan: dict[int, int] | None) -> ActionResult | None:
        """Everything before the claim; a result when the start ends here."""
        ctx = self.ctx
        server, gen = start.server, start.gen
        sid, config = server.id, server.config
        try:
            config.check_runtime(sid)
            # with the state file it belongs to: found again even if we die before recording it
            spawn = config.to_spawn(sid, extra_env={STATE_VAR: ctx.state_key})
        except ConfigError as err:
            return self.abort(start, str(err), "bad_config")
        if config.ready_log_line is not None:  # only what is written from now on counts
            start.log_offset = LineWatch.size_of(ctx.manager.log_file_for(sid, spawn.log_file))
        try:
            record = ctx.store.get_process(sid)
        except Exception:
            log.warning("state store read failed before starting %r", sid, exc_info=True)
            record = None
        if (record is not None and record.status in ACTIVE and record.owner != ctx.owner
                and process_alive(record.pid, record.create_time)):
            return self._taken(start, record)  # started through another instance
        if config.ports and scan is not None:
            held = next(((p, scan[p]) for p in config.ports if p in scan), None)
            if held is not None:
                # a port freed since the scan is not in use: look again, for this one only
                held = self.status_view.ports_held(config.ports)
            if held:
                port, pid = held
                return self.abort(start, f"cannot start {sid!r}: port {port} is already in use "
                                  f"by {self.status_view.describe_holder(pid)}", "port_in_use")
        with ctx.registry.lock:
            cancelled = (ctx.registry.closed or server.generation != gen
                         or server.status != "starting")
        if cancelled:
            return self.abort(start, f"start of {sid!r} was cancelled", "start_cancelled")
        start.claim = Claim(sid, spawn, server.restarts)
        return None

    def _spawned(self, start: _Start) -> tuple[ActionResult | None, Ticket | None]:
        """After the claim: take in the new process, or end the start; (result, ticket)."""
        ctx = self.ctx
        server, gen, claim = start.server, start.gen, start.claim
        assert claim is not None
        sid, config = server.id, server.config
        if claim.error is not None:
            code = "already_running" if isinstance(claim.error, DuplicateProcessError) else "start_failed"
            return self.abort(start, str(claim.error), code), None
        if claim.info is None:
            if claim.taken is None:
                return fail(f"start of {sid!r} failed", "start_failed"), None
            return self._taken(start, claim.taken), None
        info = claim.info
        registry = ctx.registry
        with registry.lock:
            current = server.generation == gen and server.status == "starting"
            if current:
                server.owner = ctx.owner
                server.run_spawned = True
                server.pid = server.last_pid = info.pid
                server.pgid = info.pgid
                server.create_time = info.create_time
                server.started_at = info.start_time
                server.log_file = info.log_file
                if server.last_exit_code is None:  # another instance recorded the last exit
                    server.last_exit_code = claim.last_exit_code
                server.message = (f"restarted (attempt {server.restarts} of {config.max_restarts}) "
                                  f"after: {server.last_failure}") if start.automatic else None
                self.restarter.schedule_stable(server, gen, config.stable_after)
            registry.changed.notify_all()
            orphan = not current and server.pid != info.pid
        if orphan:  # unregistered or shut down while spawning: do not leave it running
            tracked = ctx.manager.get_process(sid)
            if tracked is not None and tracked.pid == info.pid:  # not a newer process of another
                ctx.manager.kill(sid)
            return fail(f"start of {sid!r} was cancelled", "start_cancelled", info.pid), None
        ticket = None
        if current:
            if config.restart_schedule is not None:
                self.timetable.arm(sid, gen, config)
            ctx.monitor.watch(sid, health=config.health, start_timeout=config.start_timeout,
                              ports_required=config.ports_required)
            ctx.journal.persist(sid)
            # timestamped at the spawn, so it sorts before an exit handled meanwhile
            ticket = ctx.journal.event(sid, "started", pid=info.pid, at=info.start_time,
                                       reason="automatic restart" if start.automatic
                                       else "started by request")
        if not (config.awaited_ports() or config.health or config.ready_log_line):
            return self.mark_ready(server, gen, info, None, restart=start.restart), ticket
        return None, ticket

    def _await_all(self, waiting: list[_Start], wait: bool) -> None:
        """Readiness: inline for one start, a thread each for several; or in the background."""
        if not waiting:
            return
        if not wait:
            for start in waiting:
                info = start.claim.info if start.claim is not None else None
                assert info is not None
                self.ctx.spawn_worker(self.await_ready, start.server, start.gen, info, start,
                                      name=f"procsync-ready-{start.server.id}")
                start.result = ActionResult(True, f"starting {start.server.id!r} (pid {info.pid})",
                                            info.pid)
            return

        def ready(start: _Start) -> None:
            info = start.claim.info if start.claim is not None else None
            assert info is not None
            try:
                start.result = self.await_ready(start.server, start.gen, info, start)
            except Exception as err:
                start.result = self._raised(start, err)

        if len(waiting) == 1:
            ready(waiting[0])
            return
        threads = [threading.Thread(target=ready, args=(s,), name=f"procsync-ready-{s.server.id}",
                                    daemon=True) for s in waiting]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # ------------------------------------------------------------ ending a start

    def _taken(self, start: _Start, record: Any) -> ActionResult:
        """Another instance runs the server (`record`): show it, and answer "already running"."""
        self.mirror.apply(record.id, record)
        with self.ctx.registry.lock:  # the mirror did not apply our own start's generation
            server = start.server
            if server.generation == start.gen and server.status == "starting":
                advance(server, "start_refused")
                self.ctx.registry.changed.notify_all()
        return fail(taken_message(record), "already_running", record.pid)

    def abort(self, start: _Start, message: str, code: str) -> ActionResult:
        """A start that never spawned a process: back to the previous status, or (automatic
        restarts) on to the next attempt or fatal."""
        server, gen = start.server, start.gen
        after: list[Callable[[], object]] = []
        registry = self.ctx.registry
        with registry.lock:
            if server.generation == gen and server.status == "starting":
                if start.automatic and not registry.closed:
                    decision = decide(server.config, server.restarts, None,
                                      reason=f"could not start: {message}")
                    after = self.restarter.apply_decision(server, decision, None)
                else:
                    advance(server, "start_refused")
                    server.message = message
                registry.changed.notify_all()
        for action in after:
            action()
        return fail(message, code)

    def _raised(self, start: _Start, err: Exception) -> ActionResult:
        """A start of generation `gen` raised: stop what it spawned, record the reason, and leave
        the server "crashed" (or, for an automatic restart, on to the next attempt or fatal)."""
        ctx = self.ctx
        server, gen = start.server, start.gen
        sid = server.id
        log.error("start of %r failed unexpectedly", sid, exc_info=err)
        message = f"cannot start {sid!r}: {type(err).__name__}: {err}"
        after: list[Callable[[], object]] = []
        registry = ctx.registry
        with registry.lock:
            current = server.generation == gen and server.status == "starting"
            if current:
                # a newer generation first: the exit of anything this start spawned is not reported
                if start.automatic and not registry.closed:
                    decision = decide(server.config, server.restarts, None, reason=message)
                    after = self.restarter.apply_decision(server, decision, None)
                else:
                    advance(server, "start_raised")
                server.message = message
                server.last_failure = message
                registry.changed.notify_all()
            pid = server.last_pid
        if not current:  # a stop or a newer start took over; it does the bookkeeping
            return fail(message, "start_failed")
        left = ctx.manager.get_process(sid)
        if left is not None and left.status == "running":  # spawned before the error: ours
            pid = left.pid
            with registry.lock:
                server.last_pid = pid
            try:
                ctx.manager.kill(sid)
            except Exception:
                log.exception("could not stop pid %s left by the failed start of %r", pid, sid)
        if not after:
            ctx.journal.persist(sid)
            ctx.journal.event(sid, "crashed", pid=pid, reason=message)
        for action in after:
            action()
        return fail(message, "start_failed", None)

    # ------------------------------------------------------------ readiness

    @staticmethod
    def _ready_now(config: ServerConfig) -> tuple[bool, str | None]:
        try:
            if isinstance(config.health, HealthCheck):
                return run_health_check(config.health)
            closed = [p for p in config.awaited_ports() if not port_open(p, timeout=0.5)]
        except Exception as err:  # a probe that raises is a failing probe, not a stuck start
            log.warning("readiness check raised", exc_info=True)
            return False, f"the check raised {type(err).__name__}: {err}"
        return (not closed, f"port {closed[0]} does not accept connections" if closed else None)

    def await_ready(self, server: ServerState, gen: int, info: ProcessInfo,
                    start: _Start | None = None) -> ActionResult:
        """Probe every READY_POLL s until ready, exited, stopped or start_timeout passed.

        With a `ready_log_line`, the log's new lines are read at each probe
        too; the server is ready once the line appeared and its ports or
        health check (if any) pass.
        """
        config = server.config
        watch = None
        if config.ready_log_line is not None:
            path = self.ctx.manager.log_file_for(server.id, info.log_file)
            watch = LineWatch(path, config.ready_log_line, start.log_offset if start else 0)
        try:
            return self._await(server, gen, info, watch, start.restart if start else False)
        finally:
            if watch is not None:
                watch.close()

    def _await(self, server: ServerState, gen: int, info: ProcessInfo, watch: LineWatch | None,
               restart: bool) -> ActionResult:
        registry = self.ctx.registry
        config = server.config
        began = time.monotonic()
        deadline = began + config.start_timeout
        error: str | None = None
        probes = bool(config.awaited_ports() or config.health)
        while True:
            with registry.lock:
                still = server.generation == gen and server.status == "starting"
            if not still:
                return self._interrupted(server, gen, info)
            logged = True
            if watch is not None and not server.log_seen:
                logged = watch.poll()
                if logged:
                    with registry.lock:
                        if server.generation == gen:
                            server.log_seen = True
                            registry.changed.notify_all()
            ok, error = self._ready_now(config) if probes else (True, None)
            if not logged:
                error = f"no line matching {config.ready_log_line!r} in its log yet"
            if ok and logged:
                return self.mark_ready(server, gen, info, began, restart=restart)
            if time.monotonic() >= deadline:
                return self._timed_out(server, gen, info, error)
            if registry.closing.wait(READY_POLL):
                return fail(f"start of {server.id!r} interrupted by shutdown", "start_failed", info.pid)

    def mark_ready(self, server: ServerState, gen: int, info: ProcessInfo,
                   began: float | None, *, restart: bool = False) -> ActionResult:
        interrupted = self._settle(server, gen, info, ready=True)
        if interrupted is not None:
            return interrupted
        if restart and server.config.restart_dependents:
            self.restarted(server.id)
        text = f"started {server.id!r} (pid {info.pid})"
        if began is not None:
            text += f", ready after {time.monotonic() - began:.2f} s"
        return ActionResult(True, text, info.pid)

    def _settle(self, server: ServerState, gen: int, info: ProcessInfo, *, ready: bool,
                message: str | None = None) -> ActionResult | None:
        """Give a start still in progress its readiness verdict, then record and announce it.

        None when done; the "interrupted" answer when a stop or a newer start came first.
        """
        ctx = self.ctx
        with ctx.registry.lock:
            current = server.generation == gen and server.status == "starting"
            if current:
                advance(server, "ready" if ready else "not_ready")
                if ready:
                    server.ready = server.run_ready = True
                server.verdict, server.verdict_at = ("healthy" if ready else "unhealthy"), now()
                if message is not None:
                    server.message = message
                ctx.registry.changed.notify_all()
        if not current:
            return self._interrupted(server, gen, info)
        ctx.journal.persist(server.id)
        signals.send(signals.server_started, ctx.sender, id=server.id, pid=info.pid, ready=ready,
                     instance=ctx.instance.name)
        return None

    def _timed_out(self, server: ServerState, gen: int, info: ProcessInfo,
                   error: str | None) -> ActionResult:
        timeout = server.config.start_timeout
        message = f"not ready after {timeout:g} s" + (f": {error}" if error else "")
        interrupted = self._settle(server, gen, info, ready=False, message=message)
        if interrupted is not None:
            return interrupted
        return fail(f"server {server.id!r} (pid {info.pid}) {message}; it is left running",
                    "start_timeout", info.pid)

    def _interrupted(self, server: ServerState, gen: int, info: ProcessInfo) -> ActionResult:
        """The start of generation `gen` ended before readiness: it exited, or was stopped."""
        with self.ctx.registry.lock:
            exited = gen in server.ended
            code = server.ended.get(gen)
        if exited:
            lines = self.status_view.tail_log(server.id, LOG_TAIL)
            text = (f"server {server.id!r} (pid {info.pid}) "
                    f"{describe_exit(code, tuple(server.config.success_exit_codes))} before it was ready")
            if lines:
                text += "; last log lines:\n" + "\n".join(lines)
            return fail(text, "start_failed", info.pid)
        return fail(f"start of {server.id!r} (pid {info.pid}) was cancelled by a stop",
                    "start_cancelled", info.pid)


__all__ = ["Starter"]
