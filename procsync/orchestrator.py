"""ServerOrchestrator: the registry of servers, their start/stop/restart, recovery and auto-restart.

One object ties together a ProcessManager (spawn, kill, adopt), a
ProcessMonitor (health checks on a daemon thread) and a state store (what
runs, and the history of what happened). Each server is a small state
machine::

    stopped -> starting -> running -> stopping -> stopped
                  |           |
                  +-----------+--> (unrequested exit) -> backoff -> starting ...
                                                      -> fatal | exited | crashed

Every transition happens under one short lock; nothing blocking (spawn,
kill, readiness waits, store writes, signal sends) runs while holding it.
Automatic restarts run on timer threads, never on the manager's watcher
thread that reports exits.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psutil
from blinker import Signal

from . import forks, signals
from .config import HealthCheck, ServerConfig, as_server_config, command_text
from .errors import (
    ConfigError,
    DuplicateProcessError,
    IdentityMismatch,
    ProcessNotFound,
    SpawnError,
)
from .health import port_open, run_health_check
from .leader import InstanceId, LeaderLock, leader_path, owner_alive
from .logs import tail_lines
from .manager import ProcessManager
from .monitor import ProcessMonitor
from .ports import (
    UNKNOWN_PID,
    describe_pid,
    identify,
    listening_ports,
    listening_sockets,
    owner_of,
    pgid_of,
    terminate,
    tracked_processes,
)
from .records import ActionResult, KillResult, ProcessInfo, ServerStatus
from .restart import FATAL, RESTART, RestartDecision, decide, describe_exit, exit_event
from .store import ProcessStateStore, SQLiteStateStore, StoredProcessInfo, open_store
from .sync import InstanceSync, process_alive, taken_message

log = logging.getLogger(__name__)

READY_POLL = 0.01  # seconds between readiness probes while starting
LOG_TAIL = 20  # log lines quoted when a start fails or a process exits
ACTIVE = ("starting", "running", "stopping")  # a process of ours exists
LIVE_RECORD = ("starting", "running", "stopping", "backoff")


def _now() -> datetime:
    return datetime.now(UTC)


def _fail(message: str, code: str, pid: int | None = None) -> ActionResult:
    return ActionResult(False, message, pid, code)


def _classify(record: Any) -> tuple[str, float | None]:
    """("inactive" | "dead" | "same" | "unproven", live create_time) for a stored record."""
    if record.status not in LIVE_RECORD or not record.pid:
        return "inactive", None
    return identify(record.pid, record.create_time, record.command)


@dataclasses.dataclass(eq=False)
class _Server:
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
        for timer in (self.timer, self.stable_timer):
            if timer is not None:
                timer.cancel()
        self.timer = self.stable_timer = None


class ServerOrchestrator:
    """Registers servers and starts, stops, restarts, recovers and watches them. Thread-safe."""

    def __init__(
        self,
        state_path: str | os.PathLike[str] = "process-state.json",
        interval: float = 3.0,
        *,
        log_dir: str | os.PathLike[str] | None = None,
        store: Any = None,
        port_timeout: float = 1.0,
        unresponsive_after: int = 3,
        instance_name: str | None = None,
    ) -> None:
        self.instance = InstanceId.current(instance_name)
        self._named = instance_name is not None
        self.store = store if store is not None else open_store(state_path)
        self.manager = ProcessManager(log_dir)
        self.monitor = ProcessMonitor(
            self.manager, interval=interval, port_timeout=port_timeout,
            unresponsive_after=unresponsive_after,
        )
        self.interval = interval
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._servers: dict[str, _Server] = {}
        self._pending: dict[str, Any] = {}  # stored records of ids not registered yet
        self._initialized = False
        self._closed = False
        self._closing = threading.Event()
        self._workers: set[threading.Thread] = set()
        self._subscriptions: list[tuple[Signal, Callable[..., Any]]] = []
        self._webhooks: Any = None  # a procsync.webhooks.WebhookDispatcher, made by add_webhook()
        self._owner = self.instance.token  # the store's `owner` of our records
        self.leader = LeaderLock(leader_path(getattr(self.store, "path", state_path)))
        self._sync = InstanceSync(self)
        self._forked_from: int | None = None
        signals.process_exit.connect(self._on_process_exit, sender=self.manager, weak=False)
        signals.status_change.connect(self._on_status_change, sender=self.monitor, weak=False)
        forks.track(self)

    # ------------------------------------------------------------ instances

    @property
    def instance_name(self) -> str:
        """This instance's name (``instance_name=`` or ``<host>:<pid>``)."""
        return self.instance.name

    @property
    def is_leader(self) -> bool:
        """True while this instance holds the leader lock beside the state file."""
        return self.leader.is_leader

    def instance_info(self) -> dict[str, Any]:
        """This instance for the API: its name, whether it leads, and the leader's name."""
        leading = self.leader.is_leader
        return {"name": self.instance.name, "pid": self.instance.pid, "is_leader": leading,
                "leader": self.instance.name if leading else self.leader.holder()}

    def _after_fork_in_child(self) -> None:
        """In a forked child (see procsync.forks): rebuild if nothing had started, else refuse."""
        parent = self.instance.pid
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._workers = set()
        self.leader.forget_after_fork()
        self._sync.forget_after_fork()
        manager = self.manager  # read without its lock: a thread may have held it at the fork
        started = (self._initialized or self._webhooks is not None
                   or bool(getattr(manager, "_entries", None))
                   or getattr(manager, "_thread", None) is not None)
        if started or self._closed:
            self._forked_from = parent
            return
        self.instance = InstanceId.current(self.instance.name if self._named else None)
        self._owner = self.instance.token
        old_manager, old_monitor = self.manager, self.monitor
        signals.process_exit.disconnect(self._on_process_exit, sender=old_manager)
        signals.status_change.disconnect(self._on_status_change, sender=old_monitor)
        self.manager = ProcessManager(old_manager.log_dir)
        self.monitor = ProcessMonitor(
            self.manager, interval=old_monitor.interval, port_timeout=old_monitor.port_timeout,
            unresponsive_after=old_monitor.unresponsive_after,
        )
        signals.process_exit.connect(self._on_process_exit, sender=self.manager, weak=False)
        signals.status_change.connect(self._on_status_change, sender=self.monitor, weak=False)
        for signal, receiver in self._subscriptions:
            for old, new in ((old_manager, self.manager), (old_monitor, self.monitor)):
                signal.disconnect(receiver, sender=old)
                signal.connect(receiver, sender=new, weak=False)
        if isinstance(self.store, ProcessStateStore | SQLiteStateStore):
            self.store = type(self.store)(self.store.path)

    def _refresh(self, sid: str | None) -> None:
        """Take in what other instances wrote to the store since our last look (see sync.py)."""
        if self._initialized and not self._closed:
            try:
                self._sync.refresh(sid)
            except Exception:
                log.exception("reading the state store failed")

    def _check_fork(self) -> None:
        if self._forked_from is not None:
            raise forks.ForkedOrchestratorError(self._forked_from)

    # ------------------------------------------------------------ registry

    def register_server(self, id: str, config: ServerConfig | Mapping[str, Any]) -> None:
        """Register (or replace the config of) server `id`; ConfigError names the id and field.

        A new config takes effect at the server's next start. When called after
        `initialize()`, a recorded live process of `id` is adopted now.
        """
        checked = as_server_config(id, config)
        with self._lock:
            self._check_open()
            server = self._servers.get(id)
            if server is None:
                self._servers[id] = _Server(id, checked)
            else:
                server.config = checked
            record = self._pending.pop(id, None) if self._initialized else None
        if record is not None:
            record = self._safe(self.store.get_process, id) or record  # others may have moved on
            self._recover(id, record)

    def register_servers(self, registry: Mapping[str, ServerConfig | Mapping[str, Any]]) -> None:
        """Register every server of `registry` (id -> config); all are validated first."""
        if not isinstance(registry, Mapping):
            raise ConfigError("?", "registry", f"must be a mapping of id to config, not {type(registry).__name__}")
        checked = {sid: as_server_config(sid, cfg) for sid, cfg in registry.items()}
        for sid, cfg in checked.items():
            self.register_server(sid, cfg)

    def unregister_server(self, id: str) -> None:
        """Stop server `id` if it runs and forget it (its history stays in the store)."""
        server = self._get(id)
        if server.status in (*ACTIVE, "backoff"):
            self.stop_server(id)
        with self._lock:
            server.cancel_timers()
            server.generation += 1
            self._servers.pop(id, None)
        self.monitor.unwatch(id)
        self.manager.forget(id)
        self.store.remove_process(id)

    def apply(self, registry: Mapping[str, ServerConfig | Mapping[str, Any]]) -> dict[str, str]:
        """Reload: make the registry `registry`. Returns id -> "added" | "removed" | "changed" | "unchanged".

        Removed servers are stopped; changed ones that run are restarted with their new config.
        """
        checked = {sid: as_server_config(sid, cfg) for sid, cfg in registry.items()}
        with self._lock:
            current = {sid: s.config for sid, s in self._servers.items()}
        outcome: dict[str, str] = {}
        for sid in current:
            if sid not in checked:
                self.unregister_server(sid)
                outcome[sid] = "removed"
        for sid, cfg in checked.items():
            if sid not in current:
                self.register_server(sid, cfg)
                outcome[sid] = "added"
            elif current[sid] == cfg:
                outcome[sid] = "unchanged"
            else:
                self.register_server(sid, cfg)
                outcome[sid] = "changed"
                if self._servers[sid].status in ("starting", "running"):
                    self.restart_server(sid)
        return outcome

    @property
    def configs(self) -> dict[str, ServerConfig]:
        """The registered configs, id -> ServerConfig, in registration order (a copy)."""
        with self._lock:
            return {sid: s.config for sid, s in self._servers.items()}

    def _get(self, id: str) -> _Server:
        with self._lock:
            server = self._servers.get(id)
        if server is None:
            raise ProcessNotFound(id, "server")
        return server

    def _check_open(self) -> None:
        self._check_fork()
        if self._closed:
            raise RuntimeError("this ServerOrchestrator has been shut down")

    # ------------------------------------------------------------ recovery

    def initialize(self) -> None:
        """Load the store, adopt live recorded processes, mark dead ones ended, start the monitor.

        Sends `initialized` with the ids recovered, ended and orphaned. Safe to call twice.
        """
        with self._lock:
            self._check_open()
            if self._initialized:
                return
            self._initialized = True
        self.leader.try_acquire(self.instance.name)
        records = self.store.load()
        recovered: list[str] = []
        ended: list[str] = []
        orphaned: list[str] = []
        for sid, record in records.items():
            with self._lock:
                registered = sid in self._servers
                if not registered:
                    self._pending[sid] = record
            if registered:
                outcome = self._recover(sid, record)
            else:
                outcome = self._recover_unregistered(sid, record)
            {"adopted": recovered, "ended": ended, "orphaned": orphaned}.get(outcome, []).append(sid)
        self._sync.prime(records)
        self.monitor.start(self.interval)
        self._sync.start()
        signals.send(signals.initialized, self, recovered=recovered, ended=ended, orphaned=orphaned)

    def _ensure_initialized(self) -> None:
        """Recover before the first start: a start must never duplicate a recorded live process."""
        if not self._initialized and not self._closed:
            self.initialize()

    def _recover_unregistered(self, sid: str, record: Any) -> str:
        """A record of an id nobody registered (yet): only mark a dead one ended."""
        kind, _ = _classify(record)
        if kind != "dead" or not self._may_settle(record):
            return "pending"
        with self._lock:
            self._pending.pop(sid, None)
        self._record_ended_while_away(sid, record)
        return "ended"

    def _recover(self, sid: str, record: Any) -> str:
        """Adopt, end or disown one stored record of a registered server; the outcome's name."""
        with self._lock:
            server = self._servers.get(sid)
            if server is None:
                return "pending"
        if record.status in LIVE_RECORD and not self._may_settle(record):
            # another live instance owns it (or the leader will take it over): watch it only
            self._sync.apply(sid, None, record, emit=False)
            return "adopted" if record.status in ACTIVE else "pending"
        with self._lock:
            server.restarts = record.restarts or 0
            server.last_exit_code = record.exit_code
            server.last_pid = record.pid or None
            server.log_file = record.log_file
            if record.status in ("stopped", "exited", "crashed", "fatal"):
                server.status = record.status
            elif record.status == "backoff":  # a pending restart: the leader carries it on
                server.status = "backoff"
                server.owner = record.owner
                server.message = f"restart pending (attempt {server.restarts})"
                return "pending"
            config = server.config
        kind, actual = _classify(record)
        if kind == "inactive":
            return "inactive"
        if kind == "dead":
            self._record_ended_while_away(sid, record)
            return "ended"
        if kind == "same":
            try:
                info = self.manager.adopt(
                    sid, record.pid, actual, command=record.command, cwd=record.cwd,
                    ports=tuple(config.ports) or tuple(record.ports), log_file=record.log_file,
                    stop_signal=config.stop_signal, stop_timeout=config.stop_timeout,
                    start_time=record.start_time,
                )
            except ProcessNotFound:
                self._record_ended_while_away(sid, record)
                return "ended"
            except IdentityMismatch:
                kind = "unproven"
            except DuplicateProcessError:
                return "inactive"
            else:
                self._adopted(sid, info)
                return "adopted"
        # alive, but not provably ours: never adopted, never signalled
        ports = tuple(config.ports) or tuple(record.ports)
        held = {port for port, pids in listening_sockets().items() if record.pid in pids}
        holding = [p for p in ports if p in held]
        if holding:
            with self._lock:
                server.status = "stopped"
                server.message = (
                    f"pid {record.pid} from an earlier run holds port {holding[0]} but cannot be "
                    "proven to be the recorded process; not adopted"
                )
            log.warning("server %r: recorded pid %s is alive but not provably ours; left alone "
                        "(it holds port %s, so it shows as an orphan)", sid, record.pid, holding[0])
            return "orphaned"
        log.warning("server %r: recorded pid %s now belongs to another process; record dropped",
                    sid, record.pid)
        self._safe(self.store.remove_process, sid)
        return "dropped"

    def _record_ended_while_away(self, sid: str, record: Any) -> None:
        reason = "ended while procsync was not watching it (exit code unknown)"
        with self._lock:
            server = self._servers.get(sid)
            if server is not None:
                server.status = "crashed"
                server.message = reason
                server.last_pid = record.pid
        self._safe(self.store.update_process, sid, lambda old: old and (dataclasses.replace(
            old, status="crashed", owner=self._owner, updated_at=_now()) if old.pid == record.pid
            and old.status == record.status else old))
        self._history(sid, "crashed", pid=record.pid, exit_code=record.exit_code, reason=reason,
                      log_file=record.log_file)

    def _may_settle(self, record: Any) -> bool:
        """Whether this instance may adopt or end `record` now: it is ours, or its owner is gone
        and we lead (only the leader takes over what a dead instance left)."""
        if record.owner == self._owner:
            return True
        return self.is_leader and not owner_alive(record.owner)

    def _adopted(self, sid: str, info: ProcessInfo,
                 reason: str = "recovered after a restart of procsync") -> None:
        with self._lock:
            server = self._servers[sid]
            server.owner = self._owner
            server.status = "running"
            server.pid = server.last_pid = info.pid
            server.pgid = info.pgid
            server.create_time = info.create_time
            server.started_at = info.start_time
            server.log_file = info.log_file
            server.ready = True
            server.message = None
            server.generation += 1
            gen = server.generation
            uptime = (_now() - info.start_time).total_seconds()
            self._schedule_stable(server, gen, max(0.0, server.config.stable_after - uptime))
            config = server.config
        self.monitor.watch(sid, health=config.health, start_timeout=0.0)
        self._persist(sid)
        self._history(sid, "adopted", pid=info.pid, reason=reason)

    # -------------------------------------------------------------- start

    def start_server(self, id: str, wait: bool = True) -> ActionResult:
        """Start server `id`; with ports or a health check and `wait`, return once it is ready."""
        self._check_fork()
        self._ensure_initialized()
        self._refresh(id)
        with self._lock:
            server = self._servers.get(id)
            if server is None:
                return _fail(f"unknown server {id!r}", "unknown")
            refused = self._refuse_start(server)
            if refused is not None:
                return refused
            server.restarts = 0  # a start by request begins a fresh restart count
            gen = self._begin(server)
        return self._launch(server, gen, wait=wait, automatic=False)

    def _refuse_start(self, server: _Server) -> ActionResult | None:
        if self._closed:
            return _fail("the orchestrator is shut down", "start_failed")
        if server.status in ("starting", "running"):
            where = f" (pid {server.pid})" if server.pid else ""
            return _fail(f"server {server.id!r} is already {server.status}{where}", "already_running",
                         server.pid)
        if server.status == "stopping":
            return _fail(f"server {server.id!r} is stopping; start it once it has stopped",
                         "already_running", server.pid)
        return None

    def _begin(self, server: _Server) -> int:
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

    def _launch(self, server: _Server, gen: int, *, wait: bool, automatic: bool) -> ActionResult:
        """Check, spawn and (maybe) wait for readiness: the rest of a start after `_begin`."""
        sid, config = server.id, server.config
        try:
            config.check_runtime(sid)
            spawn = config.to_spawn(sid)
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
            return self._abort(server, gen, f"start of {sid!r} was cancelled", "start_failed", automatic)
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
            return _fail(f"start of {sid!r} was cancelled", "start_failed", info.pid)
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

    def _taken(self, record: Any) -> ActionResult:
        """Another instance runs the server (`record`): show it, and answer "already running"."""
        self._sync.apply(record.id, None, record)
        return _fail(taken_message(record), "already_running", record.pid)

    def _abort(self, server: _Server, gen: int, message: str, code: str, automatic: bool) -> ActionResult:
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
        return _fail(message, code)

    @staticmethod
    def _ready_now(config: ServerConfig) -> tuple[bool, str | None]:
        if isinstance(config.health, HealthCheck):
            return run_health_check(config.health)
        closed = [p for p in config.ports if not port_open(p, timeout=0.5)]
        return (not closed, f"port {closed[0]} does not accept connections" if closed else None)

    def _await_ready(self, server: _Server, gen: int, info: ProcessInfo) -> ActionResult:
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
                return _fail(f"start of {server.id!r} interrupted by shutdown", "start_failed", info.pid)

    def _mark_ready(self, server: _Server, gen: int, info: ProcessInfo, began: float | None) -> ActionResult:
        with self._lock:
            if server.generation != gen or server.status != "starting":
                current = False
            else:
                current = True
                server.status = "running"
                server.ready = True
                server.verdict, server.verdict_at = "healthy", _now()
        if not current:
            return self._start_interrupted(server, gen, info)
        self._persist(server.id)
        signals.send(signals.server_started, self, id=server.id, pid=info.pid, ready=True,
                     instance=self.instance.name)
        text = f"started {server.id!r} (pid {info.pid})"
        if began is not None:
            text += f", ready after {time.monotonic() - began:.2f} s"
        return ActionResult(True, text, info.pid)

    def _mark_timeout(self, server: _Server, gen: int, info: ProcessInfo, error: str | None) -> ActionResult:
        timeout = server.config.start_timeout
        message = f"not ready after {timeout:g} s" + (f": {error}" if error else "")
        with self._lock:
            current = server.generation == gen and server.status == "starting"
            if current:
                server.status = "running"
                server.verdict, server.verdict_at = "unhealthy", _now()
                server.message = message
        if not current:
            return self._start_interrupted(server, gen, info)
        self._persist(server.id)
        signals.send(signals.server_started, self, id=server.id, pid=info.pid, ready=False,
                     instance=self.instance.name)
        return _fail(f"server {server.id!r} (pid {info.pid}) {message}; it is left running",
                     "start_timeout", info.pid)

    def _start_interrupted(self, server: _Server, gen: int, info: ProcessInfo) -> ActionResult:
        """The start of generation `gen` ended before readiness: it exited, or was stopped."""
        with self._lock:
            exited = gen in server.ended
            code = server.ended.get(gen)
        if exited:
            lines = self.tail_log(server.id, LOG_TAIL)
            text = f"server {server.id!r} (pid {info.pid}) {describe_exit(code)} before it was ready"
            if lines:
                text += "; last log lines:\n" + "\n".join(lines)
            return _fail(text, "start_failed", info.pid)
        return _fail(f"start of {server.id!r} (pid {info.pid}) was cancelled by a stop", "start_failed",
                     info.pid)

    def _ports_held(self, ports: Iterable[int]) -> tuple[int, int] | None:
        ports = tuple(ports)
        if not ports:
            return None
        scan = listening_ports()
        for port in ports:
            if port in scan:
                return port, scan[port]
        return None

    def _describe_holder(self, pid: int) -> str:
        text = describe_pid(pid)
        owner = owner_of(pid, tracked_processes(self.manager.get_all_processes()))
        return f"{text}, a process of server {owner!r}" if owner else text

    # --------------------------------------------------------------- stop

    def stop_server(self, id: str) -> ActionResult:
        """Stop server `id` (its whole process tree); cancels a pending automatic restart."""
        return self._stop(id, event="stopped", reason="stopped by request")

    def _stop(self, id: str, *, event: str, reason: str) -> ActionResult:
        self._check_fork()
        self._refresh(id)
        with self._lock:
            server = self._servers.get(id)
            if server is None:
                return _fail(f"unknown server {id!r}", "unknown")
            deadline = time.monotonic() + 10.0
            while server.status == "starting" and server.pid is None and time.monotonic() < deadline:
                self._changed.wait(0.05)  # a spawn is under way: its pid comes in milliseconds
            foreign = server.owner not in (None, self._owner)  # another instance's process
            create_time = server.create_time
            if foreign and server.status in ("starting", "running"):
                server.last_exit_code = None  # its spawner records the code it alone knows
            if server.status == "backoff":
                server.cancel_timers()
                server.generation += 1
                server.status = "stopped"
                server.message = None
                server.restarts = 0
                pid = server.last_pid
                cancelled = True
            elif server.status in ("starting", "running") and server.pid is not None:
                server.cancel_timers()
                server.generation += 1
                server.previous = server.status
                server.status = "stopping"
                pid = server.pid
                cancelled = False
            else:
                what = "is already stopping" if server.status == "stopping" else f"is not running ({server.status})"
                return _fail(f"server {id!r} {what}", "already_stopped", server.pid)
        if foreign:  # take it over first (identity checked), so its owner does not restart it
            self._sync.take_for_stop(id, pid, create_time)
        if cancelled:
            self._persist(id, take=True)
            self._history(id, event, pid=pid, reason=f"{reason}; pending restart cancelled")
            signals.send(signals.server_stopped, self, id=id, pid=pid, exit_code=None,
                         instance=self.instance.name)
            return ActionResult(True, f"stopped {id!r}: pending restart cancelled", pid)
        result = self.manager.kill(id)
        self.manager.wait(id, timeout=5.0)
        if pid is not None and process_alive(pid, create_time):
            # the process to stop is not the one our manager held under this id
            if foreign:
                self._sync.take_for_stop(id, pid, create_time)
            result = self.manager.kill(id)
            self.manager.wait(id, timeout=5.0)
            if process_alive(pid, create_time):
                with self._lock:
                    if server.status == "stopping":
                        server.status = server.previous
                log.error("server %r: pid %s could not be stopped", id, pid)
                return _fail(f"could not stop {id!r}: pid {pid} is still running", "stop_failed", pid)
        with self._lock:
            code = result.exit_code if result.exit_code is not None else server.last_exit_code
            if result.exit_code is not None:
                server.last_exit_code = result.exit_code
            server.status = "stopped"
            server.pid = None
            server.ready = False
            server.message = None
            server.restarts = 0
            server.verdict = server.verdict_at = None
            server.owner = self._owner
        self._persist(id, take=True)
        self._history(id, event, pid=pid, exit_code=code, reason=reason)
        signals.send(signals.server_stopped, self, id=id, pid=pid, exit_code=code,
                     instance=self.instance.name)
        how = f" with {result.signal}" if result.signal else ""
        return ActionResult(True, f"stopped {id!r} (pid {pid}){how}", pid)

    def restart_server(self, id: str) -> ActionResult:
        """Stop server `id` if it runs, wait until its processes and ports are gone, start it again."""
        self._check_fork()
        self._ensure_initialized()
        self._refresh(id)
        with self._lock:
            server = self._servers.get(id)
            if server is None:
                return _fail(f"unknown server {id!r}", "unknown")
            status = server.status
        if status == "stopping":
            return _fail(f"server {id!r} is stopping; try again once it has stopped", "already_running",
                         server.pid)
        if status in ("starting", "running", "backoff"):
            stopped = self._stop(id, event="restarting", reason="restarted by request")
            if not stopped.success and stopped.code != "already_stopped":
                return stopped
            self._wait_released(server, stopped.pid, timeout=server.config.stop_timeout + 5.0)
        return self.start_server(id)

    def _wait_released(self, server: _Server, old_pid: int | None, timeout: float) -> None:
        """Wait until the process tree of `old_pid` is gone and the server's ports are free."""
        deadline = time.monotonic() + timeout
        info = self.manager.get_process(server.id)
        if info is not None and old_pid is not None and info.pid == old_pid:
            self.manager.wait(server.id, timeout=timeout)
        ports = tuple(server.config.ports)
        while ports and time.monotonic() < deadline and not self._closing.is_set():
            held = self._ports_held(ports)
            if held is None:
                return
            owner = owner_of(held[1], tracked_processes(self.manager.get_all_processes()))
            if owner is None and held[1] != old_pid:
                return  # someone else's process: the start reports it
            self._closing.wait(0.02)

    # --------------------------------------------------------- auto-restart

    def _on_process_exit(self, sender: Any, *, id: str, pid: int, exit_code: int | None = None,
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
            uptime = (_now() - server.started_at).total_seconds() if server.started_at else None
            decision = decide(server.config, server.restarts, exit_code, uptime=uptime, reason=reason)
            after = self._apply_decision(server, decision, pid, exit_code=exit_code, record_exit=True)
            self._changed.notify_all()
        for action in after:
            action()

    def _apply_decision(self, server: _Server, decision: RestartDecision, pid: int | None, *,
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
        at = _now()  # history is ordered by this, so the writes below may land after the restart
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

    def _auto_restart(self, sid: str, gen: int) -> None:
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

    def _arm_restart(self, sid: str, delay: float) -> None:
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

    def _schedule_stable(self, server: _Server, gen: int, delay: float) -> None:
        """Under the lock: reset the restart count once generation `gen` has run `delay` s."""
        if server.stable_timer is not None:
            server.stable_timer.cancel()
        timer = threading.Timer(delay, self._stable, (server.id, gen))
        timer.daemon = True
        timer.name = f"procsync-stable-{server.id}"
        server.stable_timer = timer
        if not self._closed:
            timer.start()

    def _stable(self, sid: str, gen: int) -> None:
        with self._lock:
            server = self._servers.get(sid)
            if server is None or server.generation != gen or server.status not in ("starting", "running"):
                return
            server.stable_timer = None
            if server.restarts == 0:
                return
            server.restarts = 0
        self._persist(sid)

    def _on_status_change(self, sender: Any, *, id: str, pid: int | None = None,
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

    # ------------------------------------------------------------- status

    def get_server_status(self, current_ports: Mapping[int, int] | None = None) -> list[ServerStatus]:
        """One ServerStatus per registered server, in registration order.

        `current_ports` (port -> pid) saves the port scan when the caller has one.
        """
        self._check_fork()
        self._refresh(None)
        with self._lock:
            servers = list(self._servers.values())
            snapshots = [dataclasses.replace(s, ended=dict(s.ended)) for s in servers]
        wanted = {p for s in snapshots for p in s.config.ports}
        if current_ports is not None:
            scan = dict(current_ports)
        elif wanted:
            scan = listening_ports()
        else:
            scan = {}
        tracked = tracked_processes(self.manager.get_all_processes())
        return [self._status_of(s, scan, tracked) for s in snapshots]

    def get_server(self, id: str) -> ServerStatus:
        """The status of server `id`; ProcessNotFound if it is not registered."""
        self._check_fork()
        self._refresh(id)
        server = self._get(id)
        with self._lock:
            snapshot = dataclasses.replace(server, ended=dict(server.ended))
        scan = listening_ports() if snapshot.config.ports else {}
        return self._status_of(snapshot, scan, tracked_processes(self.manager.get_all_processes()))

    def _status_of(self, s: _Server, scan: Mapping[int, int], tracked: Mapping[int, str]) -> ServerStatus:
        config = s.config
        orphan_pid = None
        for port in config.ports:
            holder = scan.get(port)
            if holder and holder != UNKNOWN_PID and holder != os.getpid() and owner_of(holder, tracked) is None:
                orphan_pid = holder
                break
        active = s.status in ACTIVE and s.pid is not None
        mon = self.monitor.get_status(s.id) if active else None
        if mon is not None and mon.pid not in (None, s.pid):
            mon = None
        if s.status == "starting":
            health = "unknown"
        elif active:
            fresh = mon is not None and mon.last_check is not None and (
                s.verdict_at is None or mon.last_check > s.verdict_at)
            health = mon.health if fresh and mon is not None else (s.verdict or "unknown")
        else:
            health = "unknown" if s.status == "stopped" else "dead"
        uptime = (_now() - s.started_at).total_seconds() if active and s.started_at else None
        return ServerStatus(
            id=s.id,
            name=config.name or s.id,
            color=config.color,
            command=command_text(config.command),
            cwd=config.cwd,
            ports=tuple(config.ports),
            status=s.status,
            running=active,
            pid=s.pid if active else None,
            health=health,
            uptime=uptime,
            restarts=s.restarts,
            last_exit_code=s.last_exit_code,
            cpu_percent=mon.cpu_percent if mon else 0.0,
            memory_rss=mon.memory_rss if mon else 0,
            orphaned=orphan_pid is not None,
            orphaned_pid=orphan_pid,
            log_file=s.log_file or self._default_log(s.id, config),
            started_at=s.started_at if active else None,
            autorestart=config.autorestart,
            message=s.message,
            env_keys=tuple(config.env or ()),
        )

    # ------------------------------------------------------------ orphans

    def kill_orphaned_process(self, server_id: str, pid: int) -> KillResult:
        """Kill `pid` if, right now, it listens on a port of `server_id` and is not ours. TERM, then KILL."""
        self._check_fork()
        def refuse(why: str) -> KillResult:
            return KillResult(False, server_id, pid if isinstance(pid, int) else None, None, None, why)

        with self._lock:
            server = self._servers.get(server_id)
        if server is None:
            return refuse(f"unknown server {server_id!r}")
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            return refuse(f"{pid!r} is not a process id")
        if pid == os.getpid() or pid in {p.pid for p in psutil.Process().parents()}:
            return refuse(f"pid {pid} is this process or one of its parents; not killed")
        config = server.config
        if not config.ports:
            return refuse(f"server {server_id!r} has no ports, so it cannot have an orphan")
        holders = listening_sockets()
        ports = [p for p in config.ports if pid in holders.get(p, ())]
        if not ports:
            return refuse(f"pid {pid} does not listen on any port of server {server_id!r} "
                          f"({', '.join(map(str, config.ports))}); not an orphan, not killed")
        owner = owner_of(pid, tracked_processes(self.manager.get_all_processes()))
        if owner is not None:
            return refuse(f"pid {pid} belongs to server {owner!r}, which procsync manages; "
                          "stop that server instead")
        try:
            proc = psutil.Process(pid)
            created = proc.create_time()
            name = proc.name()
        except psutil.Error:
            return refuse(f"pid {pid} is gone")
        group = pgid_of(pid) == pid and pid != os.getpgid(0)
        sent = terminate(proc, created, group, min(config.stop_timeout, 10.0))
        if sent is None:
            return refuse(f"pid {pid} ended or changed before it could be signalled")
        deadline = time.monotonic() + 2.0
        while self._ports_held(ports) is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        what = "process group" if group else "process"
        message = f"killed orphan {what} {pid} ({name}) holding port {ports[0]} of {server_id!r} with {sent}"
        self._history(server_id, "orphan_killed", pid=pid, reason=message)
        signals.send(signals.orphan_killed, self, id=server_id, pid=pid, signal=sent)
        return KillResult(True, server_id, pid, sent, None, message)

    # --------------------------------------------------------------- bulk

    def start_all(self) -> dict[str, ActionResult]:
        """Start every registered server in parallel (waiting for each to be ready)."""
        self._ensure_initialized()
        return self._each(self.start_server, list(self.configs))

    def stop_all(self) -> dict[str, ActionResult]:
        """Stop every registered server in parallel."""
        return self._each(self.stop_server, list(self.configs))

    @staticmethod
    def _each(action: Callable[[str], ActionResult], ids: list[str]) -> dict[str, ActionResult]:
        if not ids:
            return {}
        with ThreadPoolExecutor(max_workers=min(32, len(ids)), thread_name_prefix="procsync-all") as pool:
            return dict(zip(ids, pool.map(action, ids), strict=True))

    # --------------------------------------------------------------- logs

    def log_path(self, id: str) -> str | None:
        """The log file of server `id` (None if it never ran); ProcessNotFound if unknown."""
        server = self._get(id)
        return self.manager.log_path(id) or server.log_file or self._default_log(id, server.config)

    def _default_log(self, sid: str, config: ServerConfig) -> str | None:
        path = config.log_file or os.path.join(self.manager.log_dir, f"{sid}.log")
        return path if os.path.exists(path) else None

    def tail_log(self, id: str, lines: int = 100) -> list[str]:
        """The last `lines` lines of server `id`'s log (reaching into the rotated `<log>.1`)."""
        return tail_lines(self.log_path(id), lines)

    def history(self, id: str, limit: int = 50) -> list[Any]:
        """The stored history of server `id`, newest first."""
        return self.store.history(id, limit)

    # -------------------------------------------------------------- events

    def on(self, event_name: str, receiver: Callable[..., Any]) -> Callable[..., Any]:
        """Call `receiver(sender, **payload)` for `event_name` from this orchestrator, its manager
        and its monitor (held strongly). ValueError lists the valid names."""
        signal = signals.get(event_name)
        for sender in (self, self.manager, self.monitor):
            signal.connect(receiver, sender=sender, weak=False)
        with self._lock:
            self._subscriptions.append((signal, receiver))
        return receiver

    def off(self, event_name: str, receiver: Callable[..., Any]) -> None:
        """Undo `on(event_name, receiver)`."""
        signal = signals.get(event_name)
        for sender in (self, self.manager, self.monitor):
            signal.disconnect(receiver, sender=sender)
        with self._lock:
            self._subscriptions = [(s, r) for s, r in self._subscriptions
                                   if not (s is signal and r == receiver)]

    def add_webhook(self, url: str, events: Iterable[str] | None = None, secret: str | None = None) -> Any:
        """POST every `events` signal (all by default) as JSON to `url`; see procsync.webhooks."""
        from .webhooks import WebhookDispatcher

        with self._lock:
            self._check_open()
            if self._webhooks is None:
                self._webhooks = WebhookDispatcher(self)
            dispatcher = self._webhooks
        return dispatcher.add(url, events=events, secret=secret)

    # ------------------------------------------------------------ shutdown

    def shutdown(self, stop_servers: bool = False) -> None:
        """Stop the monitor and timers and save; servers keep running unless `stop_servers`.

        Running servers are recorded with no owner: the leader (this instance
        next time, or another one now) adopts them. In a process forked from
        the one that started this orchestrator, nothing is touched.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._closing.set()
            if self._forked_from is not None:
                return  # the parent's servers, threads and store are not ours
            for server in self._servers.values():
                server.cancel_timers()
            workers = list(self._workers)
        self._sync.stop()
        for worker in workers:
            if worker is not threading.current_thread():
                worker.join(timeout=10)
        if stop_servers:
            self._each(self._stop_for_shutdown, list(self.configs))
        self.monitor.stop()
        for sid in list(self.configs):
            self._persist(sid, release=True)
        self.leader.release()
        self.manager.close()
        if self._webhooks is not None:
            self._webhooks.close()
        signals.process_exit.disconnect(self._on_process_exit, sender=self.manager)
        signals.status_change.disconnect(self._on_status_change, sender=self.monitor)
        with self._lock:
            subscriptions, self._subscriptions = self._subscriptions, []
        for signal, receiver in subscriptions:
            for sender in (self, self.manager, self.monitor):
                signal.disconnect(receiver, sender=sender)

    def _stop_for_shutdown(self, sid: str) -> ActionResult:
        with self._lock:
            server = self._servers.get(sid)
            active = server is not None and server.status in (*ACTIVE, "backoff")
        if not active:
            return ActionResult(True, f"{sid!r} was not running")
        return self._stop(sid, event="stopped", reason="stopped at shutdown")

    def __enter__(self) -> ServerOrchestrator:
        self.initialize()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(stop_servers=False)

    # ----------------------------------------------------------- helpers

    def _spawn_worker(self, target: Callable[..., Any], *args: Any, name: str) -> None:
        def run() -> None:
            try:
                target(*args)
            except Exception:
                log.exception("%s failed", name)
            finally:
                with self._lock:
                    self._workers.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._workers = {t for t in self._workers if t.is_alive()}
            self._workers.add(thread)
        thread.start()

    def _persist(self, sid: str, *, take: bool = False, release: bool = False) -> None:
        """Write server `sid`'s current state to the store (built inside the store's lock).

        Another instance's record is left alone unless `take` (we are taking the
        server over). `release` (at shutdown) writes our record with no owner, so
        the leader adopts what keeps running.
        """

        def build(old: Any) -> Any:
            foreign = old is not None and old.owner not in (None, self._owner)
            if foreign and not take:
                return old
            with self._lock:
                server = self._servers.get(sid)
                if server is None:
                    return old
                pid = server.pid or server.last_pid or (old.pid if old is not None else None)
                if not pid or (foreign and old.pid != pid):
                    return old  # another instance has started a new process meanwhile
                config = server.config
                code = server.last_exit_code
                if code is None and old is not None and old.pid == pid:
                    code = old.exit_code  # recorded by the instance that spawned it
                return StoredProcessInfo(
                    id=sid, pid=pid, command=command_text(config.command), cwd=config.cwd,
                    start_time=server.started_at or (old.start_time if old is not None else _now()),
                    status=server.status, ports=tuple(config.ports), create_time=server.create_time,
                    pgid=server.pgid, log_file=server.log_file, restarts=server.restarts,
                    exit_code=code, owner=None if release else self._owner, updated_at=_now(),
                )

        self._safe(self.store.update_process, sid, build)

    def _history(self, sid: str, event: str, *, pid: int | None = None, exit_code: int | None = None,
                 reason: str | None = None, log_file: str | None = None,
                 at: datetime | None = None) -> None:
        tail: list[str] | None = None
        if event in ("exited", "crashed", "restarting", "fatal", "stopped"):
            try:
                path = log_file or self.log_path(sid)
            except ProcessNotFound:
                path = log_file
            tail = tail_lines(path, LOG_TAIL) if path else None
        self._safe(self.store.record_event, sid, event, pid=pid, exit_code=exit_code, reason=reason,
                   log_tail=tail, at=at)

    @staticmethod
    def _safe(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception:
            log.exception("state store call %s failed", getattr(fn, "__name__", fn))
            return None


__all__ = ["ServerOrchestrator"]
