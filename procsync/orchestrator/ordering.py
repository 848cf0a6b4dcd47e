"""Start order: a server starts once what it depends on meets its condition; stops go in reverse.

`depends_on` names, for each dependency, the condition to wait for:
"started", "healthy", "completed", "completed_successfully" or
"log_ready". A start of servers that have dependencies is a plan: every
idle server the targets need (transitively) moves to "waiting", and one
coordinating loop, woken by every status change, starts each server whose
dependencies are all met, together with the others met at the same moment
(so independent branches start side by side), and moves to "skipped" each
server whose dependency can no longer meet its condition. A stop of a
waiting server (or of its dependency) ends the wait at once.

Servers with no dependencies anywhere in a start take the starter's batch
path unchanged.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from .. import signals
from ..config.graph import closure, dependencies, dependents, stop_waves
from ..records import ActionResult
from .context import Context
from .lifecycle import (
    BACKOFF,
    COMPLETED,
    CRASHED,
    EXITED,
    FATAL,
    IDLE,
    RUNNING,
    SKIPPED,
    STARTING,
    STOPPED,
    WAITING,
    ServerState,
    advance,
)
from .policy import describe_exit
from .registry import fail

if TYPE_CHECKING:  # pragma: no cover
    from .starter import Starter
    from .stopper import Stopper

log = logging.getLogger("procsync.orchestrator")

MET, WAIT, FAILED = "met", "wait", "failed"
WAKE = 0.5  # seconds between looks when no status change wakes the plan (a safety net)


def _ended(dep: ServerState) -> str:
    """How the last run of `dep` ended, in words."""
    return describe_exit(dep.last_exit_code, tuple(dep.config.success_exit_codes))


def _unmet(dep: ServerState) -> str:
    """Why an idle `dep` that never got going cannot meet a condition now."""
    if dep.status == STOPPED:
        return "was stopped" if dep.run_spawned else (
            f"could not start: {dep.message}" if dep.message else "was stopped")
    if dep.status == SKIPPED:
        return f"was skipped ({dep.message})" if dep.message else "was skipped"
    if dep.status == FATAL:
        return f"turned fatal ({dep.message})" if dep.message else "turned fatal"
    if not dep.run_spawned and dep.message:
        return f"could not start: {dep.message}"
    return _ended(dep)


def condition_state(dep: ServerState, condition: str) -> tuple[str, str]:
    """(MET | WAIT | FAILED, why) for `condition` on `dep` as it stands (under the lock)."""
    status = dep.status
    idle = status in IDLE
    if condition == "started":
        if dep.run_spawned or status == RUNNING or (status == STARTING and dep.pid is not None):
            return MET, ""
        return (FAILED, _unmet(dep)) if idle else (WAIT, "")
    if condition == "healthy":
        if dep.run_ready or (status == RUNNING and dep.ready):
            return MET, ""
        if status == RUNNING:  # left running after start_timeout without becoming ready
            return FAILED, f"was not ready within {dep.config.start_timeout:g} s"
        if idle:
            return FAILED, (f"{_ended(dep)} before it was ready" if dep.run_spawned and status in
                            (EXITED, COMPLETED, CRASHED) else _unmet(dep))
        return WAIT, ""
    if condition == "log_ready":
        if dep.log_seen:
            return MET, ""
        if status == RUNNING:
            return FAILED, f"no line matching {dep.config.ready_log_line!r} within its start_timeout"
        if idle:
            return FAILED, (f"{_ended(dep)} before its ready_log_line appeared"
                            if dep.run_spawned and status in (EXITED, COMPLETED, CRASHED) else _unmet(dep))
        return WAIT, ""
    # completed, completed_successfully: it ran to its end
    if not idle or not dep.run_spawned or status in (STOPPED, SKIPPED):
        return (FAILED, _unmet(dep)) if idle else (WAIT, "")
    if condition == "completed" or status in (EXITED, COMPLETED):
        return MET, ""
    return FAILED, (_unmet(dep) if status == FATAL else _ended(dep))  # not a success


class Ordering:
    """Starts in dependency order, stops in reverse order, restarts what depends on a restart."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.starter: Starter
        self.stopper: Stopper

    # ------------------------------------------------------------ starting

    def start(self, ids: list[str], wait: bool = True, *, restart: bool = False) -> dict[str, ActionResult]:
        """Start `ids` and what they need first, in dependency order; the result of each id.

        Without `wait`, the plan runs in the background and each id answers at once.
        """
        configs = self.ctx.registry.configs()
        plan = closure(ids, configs)
        if not any(configs[sid].depends_on for sid in plan):
            return self.starter.start_many(ids, wait=wait, restart=restart)
        results: dict[str, ActionResult] = {}
        waits: dict[str, int] = {}
        registry = self.ctx.registry
        targets = set(ids)
        with registry.lock:
            for sid in ids:
                refused = self.starter.refusal(sid)[1]
                if refused is not None:
                    results[sid] = refused
            for sid in plan:
                server = registry.servers[sid]
                if sid in results or (sid not in targets and server.status not in IDLE):
                    continue  # running, starting or waiting already: its condition is watched
                if advance(server, "wait"):
                    server.restarts = 0
                    server.kill_reason = None
                    needs = ", ".join(f"{d} ({c})" for d, c in dependencies(server.config).items())
                    server.message = f"waiting for {needs}" if needs else None
                    waits[sid] = server.generation
            registry.changed.notify_all()
        for sid in waits:
            self.ctx.journal.persist(sid)
        if not wait:
            self.ctx.spawn_worker(self._run, waits, set(), restart, name="procsync-start-order")
            for sid in ids:
                if sid not in results:
                    needs = ", ".join(dependencies(configs[sid])) or "nothing"
                    results[sid] = ActionResult(True, f"starting {sid!r} after {needs}")
            return {sid: results[sid] for sid in ids}
        launched = self._run(waits, targets, restart)
        for sid in ids:
            if sid not in results:
                results[sid] = launched.get(sid) or fail(f"start of {sid!r} failed", "start_failed")
        return {sid: results[sid] for sid in ids}

    def _run(self, waits: dict[str, int], targets: set[str], restart: bool) -> dict[str, ActionResult]:
        """The coordinating loop of one plan: launch what is met, skip what cannot be; results.

        A target's start is awaited on a thread of its own (readiness waits
        overlap the rest of the plan); a dependency's readiness is waited
        for in the background, as a start with wait=False does.
        """
        registry = self.ctx.registry
        results: dict[str, ActionResult] = {}
        threads: list[threading.Thread] = []
        pending = dict(waits)
        while pending:
            launch: list[tuple[ServerState, int, bool]] = []
            skipped: list[tuple[str, str, str]] = []
            with registry.lock:
                for sid, gen in list(pending.items()):
                    server = registry.servers.get(sid)
                    if (server is None or server.generation != gen or server.status != WAITING
                            or registry.closed):
                        results[sid] = fail(f"start of {sid!r} was cancelled while it waited for "
                                            "its dependencies", "start_cancelled")
                        del pending[sid]
                        continue
                    verdict, dep, why = self._verdict(server)
                    if verdict == MET:
                        advance(server, "deps_met")
                        server.kill_reason = None
                        server.message = None
                        launch.append((server, server.generation, False))
                        del pending[sid]
                    elif verdict == FAILED:
                        condition = dependencies(server.config).get(dep, "started")
                        message = (f"skipped: dependency {dep!r} {why} "
                                   f"({sid!r} needs it {condition.replace('_', ' ')})")
                        advance(server, "skip")
                        server.message = message
                        skipped.append((sid, dep, message))
                        results[sid] = fail(message, "dependency_failed")
                        del pending[sid]
                if skipped or launch:
                    registry.changed.notify_all()
                elif pending:
                    registry.changed.wait(WAKE)
            for sid, dep, message in skipped:
                self._skipped(sid, dep, message)
            mine = [b for b in launch if b[0].id in targets]
            if mine:
                threads.append(self._launch(mine, results, restart))
            others = [b for b in launch if b[0].id not in targets]
            if others:
                results.update(self.starter.launch(others, wait=False))
        for thread in threads:
            thread.join()
        return results

    def _verdict(self, server: ServerState) -> tuple[str, str, str]:
        """(MET | WAIT | FAILED, the dependency that decided, why) for every dependency of `server`."""
        servers = self.ctx.registry.servers
        verdict = MET
        for dep_id, condition in dependencies(server.config).items():
            dep = servers.get(dep_id)
            if dep is None:
                return FAILED, dep_id, "is not registered"
            state, why = condition_state(dep, condition)
            if state == FAILED:
                return FAILED, dep_id, why
            if state == WAIT:
                verdict = WAIT
        return verdict, "", ""

    def _launch(self, batch: list[tuple[ServerState, int, bool]], results: dict[str, ActionResult],
                restart: bool) -> threading.Thread:
        """Start `batch` on a thread of its own (readiness waits overlap the rest of the plan)."""
        def run() -> None:
            try:
                answers = self.starter.launch(
                    [(server, gen, automatic) for server, gen, automatic in batch], wait=True)
            except Exception as err:  # launch ends each start itself; this is a last resort
                log.exception("starting %s failed", [s.id for s, _, _ in batch])
                answers = {s.id: fail(f"start of {s.id!r} failed: {err}", "start_failed") for s, _, _ in batch}
            results.update(answers)

        names = ",".join(server.id for server, _, _ in batch)
        thread = threading.Thread(target=run, name=f"procsync-start-{names}"[:60], daemon=True)
        thread.start()
        return thread

    def _skipped(self, sid: str, dep: str, message: str) -> None:
        ctx = self.ctx
        ctx.journal.persist(sid)
        ctx.journal.event(sid, "skipped", reason=message)
        signals.send(signals.server_skipped, ctx.sender, id=sid, pid=None, dependency=dep, reason=message,
                     instance=ctx.instance.name)

    # ------------------------------------------------------------ stopping and restarting

    def stop(self, ids: list[str], *, event: str = "stopped",
             reason: str = "stopped by request") -> dict[str, ActionResult]:
        """Stop `ids` in reverse dependency order, each wave gone before the next is signalled."""
        configs = self.ctx.registry.configs()
        results: dict[str, ActionResult] = {}
        for wave in stop_waves([sid for sid in ids if sid in configs], configs):
            results.update(self.stopper.stop_many(wave, event=event, reason=reason))
        for sid in ids:
            if sid not in results:
                results[sid] = fail(f"unknown server {sid!r}", "unknown")
        return {sid: results[sid] for sid in ids}

    def restart(self, ids: list[str], reason: str = "restarted by request") -> dict[str, ActionResult]:
        """Stop the active ones of `ids` in reverse order, then start all of them in order."""
        registry = self.ctx.registry
        with registry.lock:
            active = [sid for sid in ids if (s := registry.servers.get(sid)) is not None
                      and s.status not in IDLE]
        if active:
            self.stop(active, event="restarting", reason=reason)
            with registry.lock:
                servers = [registry.servers[sid] for sid in active if sid in registry.servers]
            for server in servers:
                self.stopper.restarter.wait_released(server, server.last_pid,
                                                     timeout=server.config.stop_timeout + 5.0)
        return self.start(ids, restart=True)

    def restart_dependents(self, sid: str) -> None:
        """`sid` was restarted and is ready: restart the servers that depend on it and run."""
        configs = self.ctx.registry.configs()
        registry = self.ctx.registry
        with registry.lock:
            users = [d for d in dependents(sid, configs)
                     if (s := registry.servers.get(d)) is not None and s.status in (STARTING, RUNNING, BACKOFF)]
        if users:
            log.info("restarting %s after %r restarted", ", ".join(users), sid)
            self.restart(users, reason=f"restarted after {sid!r}, which it depends on, restarted")


__all__ = ["FAILED", "MET", "WAIT", "Ordering", "condition_state"]
