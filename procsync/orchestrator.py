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

This module holds the registry, stop/restart, shutdown and the shared
helpers; ServerOrchestrator takes its other parts from mixins, each in its
own module: starting.py (start and readiness), recovery.py (`initialize()`),
autorestart.py (the restart policy at work), status.py (status and orphans);
server_state.py holds the per-server record. Cross-instance work is sync.py's.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from blinker import Signal

from . import forks, signals
from .autorestart import AutoRestartMixin
from .config import ServerConfig, as_server_config, command_text
from .errors import ConfigError, ProcessNotFound, StateStoreError
from .leader import InstanceId, LeaderLock, leader_path
from .logs import tail_lines
from .manager import ProcessManager
from .monitor import ProcessMonitor
from .ports import owner_of, tracked_processes
from .proctree import process_alive
from .records import ActionResult
from .recovery import RecoveryMixin
from .server_state import ACTIVE, LOG_TAIL, ServerState, fail, now
from .starting import StartMixin
from .status import StatusMixin
from .store import ProcessStateStore, SQLiteStateStore, StoredProcessInfo, open_store
from .sync import InstanceSync

log = logging.getLogger(__name__)


class ServerOrchestrator(StartMixin, RecoveryMixin, AutoRestartMixin, StatusMixin):
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
        self._servers: dict[str, ServerState] = {}
        self._pending: dict[str, Any] = {}  # stored records of ids not registered yet
        self._initialized: bool = False
        self._closed: bool = False
        self._closing = threading.Event()
        self._workers: set[threading.Thread] = set()
        self._subscriptions: list[tuple[Signal, Callable[..., Any]]] = []
        self._webhooks: Any = None  # a procsync.webhooks.WebhookDispatcher, made by add_webhook()
        self._owner = self.instance.token  # the store's `owner` of our records
        self.leader: LeaderLock = LeaderLock(leader_path(getattr(self.store, "path", state_path)))
        # every spawn carries it (STATE_VAR), so a process spawned just before this host died,
        # and never recorded, is found again by initialize()
        self._state_key = os.path.realpath(getattr(self.store, "path", state_path))
        self._sync: InstanceSync = InstanceSync(self)
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
                self._servers[id] = ServerState(id, checked)
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

    def _get(self, id: str) -> ServerState:
        with self._lock:
            server = self._servers.get(id)
        if server is None:
            raise ProcessNotFound(id, "server")
        return server

    def _check_open(self) -> None:
        self._check_fork()
        if self._closed:
            raise RuntimeError("this ServerOrchestrator has been shut down")

    # --------------------------------------------------------------- stop (start: starting.py)

    def stop_server(self, id: str) -> ActionResult:
        """Stop server `id` (its whole process tree); cancels a pending automatic restart."""
        return self._stop(id, event="stopped", reason="stopped by request")

    def _stop(self, id: str, *, event: str, reason: str) -> ActionResult:
        self._check_fork()
        self._refresh(id)
        with self._lock:
            server = self._servers.get(id)
            if server is None:
                return fail(f"unknown server {id!r}", "unknown")
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
                return fail(f"server {id!r} {what}", "already_stopped", server.pid)
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
                return fail(f"could not stop {id!r}: pid {pid} is still running", "stop_failed", pid)
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
                return fail(f"unknown server {id!r}", "unknown")
            status = server.status
        if status == "stopping":
            return fail(f"server {id!r} is stopping; try again once it has stopped", "already_running",
                         server.pid)
        if status in ("starting", "running", "backoff"):
            stopped = self._stop(id, event="restarting", reason="restarted by request")
            if not stopped.success and stopped.code != "already_stopped":
                return stopped
            self._wait_released(server, stopped.pid, timeout=server.config.stop_timeout + 5.0)
        return self.start_server(id)

    def _wait_released(self, server: ServerState, old_pid: int | None, timeout: float) -> None:
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
                    start_time=server.started_at or (old.start_time if old is not None else now()),
                    status=server.status, ports=tuple(config.ports), create_time=server.create_time,
                    pgid=server.pgid, log_file=server.log_file, restarts=server.restarts,
                    exit_code=code, owner=None if release else self._owner, updated_at=now(),
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
        except StateStoreError as err:  # the disk: no traceback per write (it may be full too)
            log.warning("state store call %s failed: %s", getattr(fn, "__name__", fn), err)
            return None
        except Exception:
            log.exception("state store call %s failed", getattr(fn, "__name__", fn))
            return None


__all__ = ["ServerOrchestrator"]
