"""ServerOrchestrator: the registry of servers, their start/stop/restart, recovery and auto-restart.

A thin facade. It builds one `Context` (the registry and its lock, the
manager, monitor and store, the journal of store writes, the scheduler)
and wires the parts that do the work, each in its own module:

- `lifecycle`: the server state machine (the only code that sets a status);
- `starter`: refusing, claiming, spawning and readiness, a batch at a time;
- `stopper`: stopping one server or many together, restarting by request;
- `restarter`: exits handed off the watcher thread, the restart policy at work;
- `recovery`: adopting or ending what the store records, at `initialize()`;
- `status`: status, logs, ports and orphans;
- `mirror`: taking in what other instances wrote (with `procsync.instances`);
- `journal` and `scheduler`: the store-writer thread and the timer heap.

Nothing blocking (spawn, kill, readiness waits, store writes, signal sends)
runs under the registry lock.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from blinker import Signal

from .. import signals
from ..config import LoadedConfig, ServerConfig, as_server_config
from ..config.graph import check_graph
from ..errors import ConfigError, ProcessNotFound
from ..instances import forks
from ..instances.host import ServerView
from ..instances.leader import InstanceId, LeaderLock, leader_path
from ..instances.sync import InstanceSync, safe
from ..locks import ordered_lock
from ..manager import ProcessManager
from ..monitor import ProcessMonitor
from ..records import ActionResult, KillResult, ResourceHistory, ServerStatus
from ..series import DEFAULT_WINDOW
from ..store import ProcessStateStore, SQLiteStateStore, StoredProcessInfo, open_store
from .context import Context
from .journal import Journal
from .lifecycle import ACTIVE, PENDING, ServerState, advance, observed
from .limits import Limits
from .mirror import Mirror
from .ordering import Ordering
from .recovery import Recovery
from .registry import Registry
from .restarter import Restarter
from .scheduler import Scheduler
from .starter import Starter
from .status import StatusView
from .stopper import Stopper
from .timetable import Timetable

log = logging.getLogger("procsync.orchestrator")


class _Parts:
    """The collaborators of one orchestrator, wired to each other."""

    def __init__(self, ctx: Context) -> None:
        self.status_view = StatusView(ctx)
        self.mirror = Mirror(ctx)
        self.restarter = Restarter(ctx)
        self.starter = Starter(ctx)
        self.stopper = Stopper(ctx)
        self.recovery = Recovery(ctx)
        self.timetable = Timetable(ctx)
        self.limits = Limits(ctx)
        self.timetable.restart = self.stopper.restart
        self.limits.restart = self.stopper.restart
        self.limits.stop = self.stopper.stop
        self.starter.timetable = self.timetable
        self.ordering = Ordering(ctx)
        self.ordering.starter = self.starter
        self.ordering.stopper = self.stopper
        ordering = self.ordering
        self.stopper.start_again = lambda sid: ordering.start([sid], restart=True)[sid]
        self.starter.restarted = lambda sid: ctx.spawn_worker(
            ordering.restart_dependents, sid, name=f"procsync-dependents-{sid}")
        self.recovery.timetable = self.timetable
        self.restarter.begin = self.starter.begin
        self.restarter.launch = self.starter.launch
        self.restarter.status_view = self.status_view
        self.starter.restarter = self.restarter
        self.starter.status_view = self.status_view
        self.starter.mirror = self.mirror
        self.stopper.starter = self.starter
        self.stopper.restarter = self.restarter
        self.recovery.mirror = self.mirror
        self.recovery.restarter = self.restarter
        self.recovery.status_view = self.status_view


class _Host:
    """The orchestrator as `procsync.instances` sees it (implements `instances.Host`)."""

    def __init__(self, ctx: Context, parts: _Parts) -> None:
        self._ctx = ctx
        self._parts = parts

    @property
    def owner(self) -> str:
        return self._ctx.owner

    @property
    def instance_name(self) -> str:
        return self._ctx.instance.name

    @property
    def store(self) -> Any:
        return self._ctx.store

    @property
    def manager(self) -> ProcessManager:
        return self._ctx.manager

    @property
    def monitor(self) -> ProcessMonitor:
        return self._ctx.monitor

    @property
    def leader(self) -> LeaderLock:
        return self._ctx.leader

    @property
    def closed(self) -> bool:
        return self._ctx.registry.closed

    def server_ids(self) -> tuple[str, ...]:
        return self._ctx.registry.ids()

    def view(self, sid: str) -> ServerView | None:
        registry = self._ctx.registry
        with registry.lock:
            s = registry.servers.get(sid)
            if s is None:
                return None
            return ServerView(s.id, s.pid, s.owner, s.config)

    def mirror(self, sid: str, record: StoredProcessInfo | None, *, emit: bool = True) -> None:
        self._parts.mirror.apply(sid, record, emit=emit)

    def mark_owned(self, sid: str) -> None:
        registry = self._ctx.registry
        with registry.lock:
            server = registry.servers.get(sid)
            if server is not None:
                server.owner = self._ctx.owner

    def adopted(self, sid: str, info: Any, reason: str | None) -> None:
        self._parts.recovery.adopted(sid, info, reason)

    def exit_seen(self, sid: str, record: StoredProcessInfo) -> None:
        self._parts.restarter.exit_seen(sid, record)

    def finish_stop(self, sid: str, pid: int, exit_code: int | None) -> None:
        ctx = self._ctx
        registry = ctx.registry
        with registry.lock:
            server = registry.servers.get(sid)
            if server is None:
                return
            advance(server, observed("stopped"))
            server.pid, server.ready, server.owner = None, False, ctx.owner
            server.last_pid = pid
            if exit_code is not None:
                server.last_exit_code = exit_code
            registry.changed.notify_all()
        ctx.journal.persist(sid, take=True)
        ctx.journal.event(sid, "stopped", pid=pid, exit_code=exit_code,
                          reason="stopped by request (finished by the leader)")
        signals.send(signals.server_stopped, ctx.sender, id=sid, pid=pid, exit_code=exit_code,
                     instance=ctx.instance.name)

    def stop_later(self, sid: str) -> None:
        self._ctx.spawn_worker(self._parts.stopper.stop, sid, name=f"procsync-finish-stop-{sid}")

    def arm_restart(self, sid: str, record: StoredProcessInfo) -> None:
        self._parts.restarter.arm_restart(sid, record)


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
        clock: Callable[[], datetime] | None = None,
        history: float = DEFAULT_WINDOW,
    ) -> None:
        instance = InstanceId.current(instance_name)
        self._named = instance_name is not None
        store = store if store is not None else open_store(state_path)
        manager = ProcessManager(log_dir)
        monitor = ProcessMonitor(manager, interval=interval, port_timeout=port_timeout,
                                 unresponsive_after=unresponsive_after, history=history)
        self.interval = interval
        ctx = Context(
            registry=Registry(), manager=manager, monitor=monitor, store=store, instance=instance,
            leader=LeaderLock(leader_path(getattr(store, "path", state_path))),
            # every spawn carries it (STATE_VAR), so a process spawned just before this host
            # died, and never recorded, is found again by initialize()
            state_key=os.path.realpath(getattr(store, "path", state_path)),
            sender=self,
        )
        if clock is not None:  # the wall clock timetabled restarts read (tests inject one)
            ctx.clock = clock
        self._ctx = ctx
        self._workers: set[threading.Thread] = set()
        self._workers_lock = ordered_lock("orchestrator.workers")
        self._parts = parts = _Parts(ctx)
        ctx.journal = Journal(ctx.registry, lambda: ctx.store, lambda: ctx.owner,
                              parts.status_view.log_path)
        ctx.scheduler = Scheduler()
        ctx.spawn_worker = self._spawn_worker
        ctx.sync = InstanceSync(_Host(ctx, parts))
        self._subscriptions: list[tuple[Signal, Callable[..., Any]]] = []
        self._webhooks: Any = None  # a procsync.webhooks.WebhookDispatcher, made by add_webhook()
        self._forked_from: int | None = None
        self._connect()
        forks.track(self)

    @classmethod
    def from_config(cls, loaded: LoadedConfig, **kwargs: Any) -> ServerOrchestrator:
        """An orchestrator for a loaded procsync.toml or Procfile (`procsync.config.load_config`).

        Its ``[procsync]`` settings give the state file, log folder, interval and
        history; its servers are registered and its webhooks added. Not
        initialized: call `initialize()` (or any method, which does it on first
        use). `kwargs` go to the constructor and win over the settings (e.g.
        ``instance_name``, ``state_path``).
        """
        conf = loaded.settings
        options: dict[str, Any] = {"interval": conf.interval, "log_dir": conf.log_dir,
                                   "history": conf.history, **kwargs}
        orchestrator = cls(options.pop("state_path", conf.state_file), **options)
        orchestrator.register_servers(loaded.registry)
        for hook in conf.webhooks:
            orchestrator.add_webhook(hook.url, events=hook.events, secret=hook.secret)
        return orchestrator

    def _connect(self) -> None:
        ctx, restarter = self._ctx, self._parts.restarter
        signals.process_exit.connect(restarter.on_process_exit, sender=ctx.manager, weak=False)
        signals.status_change.connect(restarter.on_status_change, sender=ctx.monitor, weak=False)
        signals.health_check.connect(self._parts.limits.on_health_check, sender=ctx.monitor, weak=False)

    def _disconnect(self, manager: ProcessManager, monitor: ProcessMonitor) -> None:
        restarter = self._parts.restarter
        signals.process_exit.disconnect(restarter.on_process_exit, sender=manager)
        signals.status_change.disconnect(restarter.on_status_change, sender=monitor)
        signals.health_check.disconnect(self._parts.limits.on_health_check, sender=monitor)

    # ------------------------------------------------------------ the parts, for users

    @property
    def store(self) -> Any:
        """The state store (ProcessStateStore, SQLiteStateStore or the one given)."""
        return self._ctx.store

    @property
    def manager(self) -> ProcessManager:
        """The ProcessManager that spawns, kills and reaps this orchestrator's processes."""
        return self._ctx.manager

    @property
    def monitor(self) -> ProcessMonitor:
        """The ProcessMonitor that checks this orchestrator's processes."""
        return self._ctx.monitor

    @property
    def instance(self) -> InstanceId:
        """Who this instance is (name, pid, token)."""
        return self._ctx.instance

    @property
    def leader(self) -> LeaderLock:
        """The leader lock beside the state file."""
        return self._ctx.leader

    @property
    def journal(self) -> Journal:
        """The thread that writes this orchestrator's store changes (`flush()` waits for it)."""
        return self._ctx.journal

    @property
    def _closed(self) -> bool:
        return self._ctx.registry.closed

    # ------------------------------------------------------------ instances

    @property
    def instance_name(self) -> str:
        """This instance's name (``instance_name=`` or ``<host>:<pid>``)."""
        return self._ctx.instance.name

    @property
    def is_leader(self) -> bool:
        """True while this instance holds the leader lock beside the state file."""
        return self._ctx.leader.is_leader

    def instance_info(self) -> dict[str, Any]:
        """This instance for the API: its name, whether it leads, and the leader's name."""
        ctx = self._ctx
        leading = ctx.leader.is_leader
        return {"name": ctx.instance.name, "pid": ctx.instance.pid, "is_leader": leading,
                "leader": ctx.instance.name if leading else ctx.leader.holder()}

    def _after_fork_in_child(self) -> None:
        """In a forked child (see procsync.instances.forks): rebuild if nothing had started,
        else refuse every call."""
        ctx = self._ctx
        parent = ctx.instance.pid
        registry = ctx.registry
        registry.reset_after_fork()
        self._workers = set()
        self._workers_lock = ordered_lock("orchestrator.workers")
        ctx.leader.forget_after_fork()
        ctx.sync.forget_after_fork()
        ctx.journal.forget_after_fork()
        ctx.scheduler.forget_after_fork()
        self._parts.restarter.forget_after_fork()
        manager = ctx.manager  # read without its lock: a thread may have held it at the fork
        started = (registry.initialized or self._webhooks is not None
                   or bool(getattr(manager, "_entries", None))
                   or getattr(manager, "_thread", None) is not None)
        if started or registry.closed:
            self._forked_from = parent
            return
        ctx.instance = InstanceId.current(ctx.instance.name if self._named else None)
        old_manager, old_monitor = ctx.manager, ctx.monitor
        self._disconnect(old_manager, old_monitor)
        ctx.manager = ProcessManager(old_manager.log_dir)
        ctx.monitor = ProcessMonitor(
            ctx.manager, interval=old_monitor.interval, port_timeout=old_monitor.port_timeout,
            unresponsive_after=old_monitor.unresponsive_after, history=old_monitor.series.window,
        )
        self._connect()
        for signal, receiver in self._subscriptions:
            for old, new in ((old_manager, ctx.manager), (old_monitor, ctx.monitor)):
                signal.disconnect(receiver, sender=old)
                signal.connect(receiver, sender=new, weak=False)
        if isinstance(ctx.store, ProcessStateStore | SQLiteStateStore):
            ctx.store = type(ctx.store)(ctx.store.path)

    def _check_fork(self) -> None:
        if self._forked_from is not None:
            raise forks.ForkedOrchestratorError(self._forked_from)

    def _check_open(self) -> None:
        self._check_fork()
        if self._ctx.registry.closed:
            raise RuntimeError("this ServerOrchestrator has been shut down")

    def _refresh(self, sid: str | None) -> None:
        """Take in what other instances wrote to the store since our last look."""
        registry = self._ctx.registry
        if registry.initialized and not registry.closed:
            try:
                self._ctx.sync.refresh(sid)
            except Exception:
                log.exception("reading the state store failed")

    # ------------------------------------------------------------ recovery

    def initialize(self) -> None:
        """Load the store, adopt live recorded processes, mark dead ones ended, start the monitor.

        Sends `initialized` with the ids recovered, ended and orphaned. Safe to call twice.
        """
        ctx = self._ctx
        registry = ctx.registry
        with registry.lock:
            self._check_open()
            if registry.initialized:
                return
            registry.initialized = True
        try:
            ctx.journal.start()
            ctx.leader.try_acquire(ctx.instance.name)
            lists = self._parts.recovery.recover_all()
            ctx.monitor.start(self.interval)
            ctx.journal.flush()  # the adoptions are written before the sync thread looks
            ctx.sync.start()
        finally:
            registry.recovered.set()  # callers waiting in _ready() go on (or fail as this did)
        signals.send(signals.initialized, self, recovered=lists["adopted"], ended=lists["ended"],
                     orphaned=lists["orphaned"], unverified=lists["unverified"],
                     protected=lists["protected"])

    def _ready(self) -> None:
        """Before any call that acts or answers: refuse in a forked child, and initialize on
        first use, so no call answers from a registry that has not read the store (a running
        server shown "stopped", a stop answered "already_stopped") nor starts a duplicate."""
        self._check_fork()
        registry = self._ctx.registry
        if registry.recovered.is_set() or registry.closed:
            return
        if not registry.initialized:
            self.initialize()
        else:  # another thread is initializing: answer once it has read the store
            while not registry.recovered.wait(0.1) and not registry.closed:
                pass

    # ------------------------------------------------------------ registry

    def register_server(self, id: str, config: ServerConfig | Mapping[str, Any]) -> None:
        """Register (or replace the config of) server `id`; ConfigError names the id and field.

        A new config takes effect at the server's next start. When called after
        `initialize()`, a recorded live process of `id` is adopted now.
        """
        self._register(id, as_server_config(id, config), check=True)

    def _register(self, id: str, checked: ServerConfig, *, check: bool) -> None:
        registry = self._ctx.registry
        with registry.lock:
            self._check_open()
            if check:  # its dependencies must be registered, and make no cycle
                check_graph({**{sid: s.config for sid, s in registry.servers.items()}, id: checked})
            server = registry.servers.get(id)
            if server is None:
                registry.servers[id] = ServerState(id, checked)
            else:
                server.config = checked
            record = registry.pending.pop(id, None) if registry.initialized else None
        if record is not None:
            record = safe(self._ctx.store.get_process, id) or record  # others may have moved on
            self._parts.recovery.recover(id, record)
            self._ctx.journal.flush()

    def register_servers(self, registry: Mapping[str, ServerConfig | Mapping[str, Any]]) -> None:
        """Register every server of `registry` (id -> config); all are validated first."""
        if not isinstance(registry, Mapping):
            raise ConfigError("?", "registry", f"must be a mapping of id to config, not {type(registry).__name__}")
        checked = {sid: as_server_config(sid, cfg) for sid, cfg in registry.items()}
        check_graph({**self.configs, **checked})  # the whole of it: entries may come in any order
        for sid, cfg in checked.items():
            self._register(sid, cfg, check=False)

    def unregister_server(self, id: str) -> None:
        """Stop server `id` if it runs and forget it (its history stays in the store)."""
        ctx = self._ctx
        server = ctx.registry.get(id)
        if server.status in (*ACTIVE, *PENDING):
            self.stop_server(id)
        with ctx.registry.lock:
            server.generation += 1  # every pending job of it lapses
            ctx.registry.servers.pop(id, None)
        ctx.monitor.unwatch(id)
        ctx.manager.forget(id)
        ctx.journal.flush()
        ctx.store.remove_process(id)

    def apply(self, registry: Mapping[str, ServerConfig | Mapping[str, Any]]) -> dict[str, str]:
        """Reload: make the registry `registry`. Returns id -> "added" | "removed" | "changed" | "unchanged".

        Removed servers are stopped; changed ones that run are restarted with their new config.
        """
        checked = {sid: as_server_config(sid, cfg) for sid, cfg in registry.items()}
        check_graph(checked)
        current = self.configs
        outcome: dict[str, str] = {}
        for sid in current:
            if sid not in checked:
                self.unregister_server(sid)
                outcome[sid] = "removed"
        for sid, cfg in checked.items():
            if sid not in current:
                self._register(sid, cfg, check=False)
                outcome[sid] = "added"
            elif current[sid] == cfg:
                outcome[sid] = "unchanged"
            else:
                self._register(sid, cfg, check=False)
                outcome[sid] = "changed"
                server = self._ctx.registry.find(sid)
                if server is not None and server.status in ("starting", "running"):
                    self.restart_server(sid)
        return outcome

    @property
    def configs(self) -> dict[str, ServerConfig]:
        """The registered configs, id -> ServerConfig, in registration order (a copy)."""
        return self._ctx.registry.configs()

    # ------------------------------------------------------------ start, stop, restart

    def start_server(self, id: str, wait: bool = True) -> ActionResult:
        """Start server `id`, after what it depends on meets its conditions (starting that too).

        With ports, a health check or a ready_log_line and `wait`, return once it is ready.
        A dependency that can no longer meet its condition ends the wait: the
        server reads "skipped" and the answer names the dependency.
        """
        self._ready()
        self._refresh(id)
        return self._parts.ordering.start([id], wait=wait)[id]

    def stop_server(self, id: str) -> ActionResult:
        """Stop server `id` (its whole process tree); cancels a pending automatic restart."""
        self._ready()
        self._refresh(id)
        return self._parts.stopper.stop(id)

    def restart_server(self, id: str) -> ActionResult:
        """Stop server `id` if it runs, wait until its processes and ports are gone, start it again."""
        self._ready()
        self._refresh(id)
        return self._parts.stopper.restart(id)

    def start_servers(self, ids: Iterable[str], wait: bool = True) -> dict[str, ActionResult]:
        """Start the servers `ids` (and what they need) as one plan, in dependency order."""
        self._ready()
        self._refresh(None)
        return self._parts.ordering.start(list(dict.fromkeys(ids)), wait=wait)

    def start_all(self) -> dict[str, ActionResult]:
        """Start every registered server in dependency order, independent ones together
        (waiting for each to be ready)."""
        return self.start_servers(self.configs)

    def stop_all(self) -> dict[str, ActionResult]:
        """Stop every registered server in reverse dependency order, each wave gone before the
        next is signalled (one wave, one signal round, when nothing depends on anything)."""
        self._ready()
        self._refresh(None)
        return self._parts.ordering.stop(list(self.configs))

    # ------------------------------------------------------------ groups and reloads

    def groups(self) -> dict[str, list[str]]:
        """Group name -> the ids of its servers, in registration order."""
        out: dict[str, list[str]] = {}
        for sid, config in self.configs.items():
            if config.group is not None:
                out.setdefault(config.group, []).append(sid)
        return out

    def _group(self, name: str) -> list[str]:
        ids = self.groups().get(name)
        if not ids:
            raise ProcessNotFound(name, "group")
        return ids

    def start_group(self, name: str) -> dict[str, ActionResult]:
        """Start the servers of group `name` (and what they need) in dependency order."""
        self._ready()
        return self.start_servers(self._group(name))

    def stop_group(self, name: str) -> dict[str, ActionResult]:
        """Stop the servers of group `name` in reverse dependency order."""
        self._ready()
        ids = self._group(name)
        self._refresh(None)
        return self._parts.ordering.stop(ids)

    def restart_group(self, name: str) -> dict[str, ActionResult]:
        """Stop the running servers of group `name` in reverse order, then start the group in order."""
        self._ready()
        ids = self._group(name)
        self._refresh(None)
        return self._parts.ordering.restart(ids)

    def reload_server(self, id: str) -> ActionResult:
        """Send server `id`'s `reload_signal` (e.g. SIGHUP) to its process group instead of a restart."""
        self._ready()
        self._refresh(id)
        return self._parts.stopper.reload(id)

    # ------------------------------------------------------------ status, logs, orphans

    def get_server_status(self, current_ports: Mapping[int, int] | None = None) -> list[ServerStatus]:
        """One ServerStatus per registered server, in registration order.

        `current_ports` (port -> pid) saves the port scan when the caller has one.
        """
        self._ready()
        self._refresh(None)
        return self._parts.status_view.get_server_status(current_ports)

    def get_server(self, id: str) -> ServerStatus:
        """The status of server `id`; ProcessNotFound if it is not registered."""
        self._ready()
        self._refresh(id)
        return self._parts.status_view.get_server(id)

    def get_metrics(self, id: str, since: float | None = None) -> ResourceHistory:
        """Server `id`'s resource history (CPU, memory, health, ports, pid per monitor tick).

        Samples at or after `since` (unix seconds; default: all kept, one hour
        at the default interval), oldest first, with its starts, exits and
        health changes marked. Kept in memory, per server id across its
        restarts; a restart of procsync starts it empty. ProcessNotFound if
        `id` is not registered.
        """
        self._ready()
        self._ctx.registry.get(id)  # ProcessNotFound if unknown
        return self._ctx.monitor.get_history(id, since)

    def kill_orphaned_process(self, server_id: str, pid: int) -> KillResult:
        """Kill `pid` if, right now, it listens on a port of `server_id` and is not ours. TERM, then KILL."""
        self._ready()
        return self._parts.status_view.kill_orphaned_process(server_id, pid)

    def log_path(self, id: str) -> str | None:
        """The log file of server `id` (None if it never ran); ProcessNotFound if unknown."""
        self._ready()
        return self._parts.status_view.log_path(id)

    def tail_log(self, id: str, lines: int = 100) -> list[str]:
        """The last `lines` lines of server `id`'s log (reaching into the rotated `<log>.1`)."""
        self._ready()
        return self._parts.status_view.tail_log(id, lines)

    def history(self, id: str, limit: int = 50) -> list[Any]:
        """The stored history of server `id`, newest first (after the writes queued so far)."""
        self._ready()
        self._ctx.journal.flush()
        return self._ctx.store.history(id, limit)

    # -------------------------------------------------------------- events

    def on(self, event_name: str, receiver: Callable[..., Any]) -> Callable[..., Any]:
        """Call `receiver(sender, **payload)` for `event_name` from this orchestrator, its manager
        and its monitor (held strongly). ValueError lists the valid names."""
        signal = signals.get(event_name)
        for sender in (self, self.manager, self.monitor):
            signal.connect(receiver, sender=sender, weak=False)
        with self._workers_lock:
            self._subscriptions.append((signal, receiver))
        return receiver

    def off(self, event_name: str, receiver: Callable[..., Any]) -> None:
        """Undo `on(event_name, receiver)`."""
        signal = signals.get(event_name)
        for sender in (self, self.manager, self.monitor):
            signal.disconnect(receiver, sender=sender)
        with self._workers_lock:
            self._subscriptions = [(s, r) for s, r in self._subscriptions
                                   if not (s is signal and r == receiver)]

    def add_webhook(self, url: str, events: Iterable[str] | None = None, secret: str | None = None) -> Any:
        """POST every `events` signal (all by default) as JSON to `url`; see procsync.webhooks."""
        from ..webhooks import WebhookDispatcher

        with self._ctx.registry.lock:
            self._check_open()
            if self._webhooks is None:
                self._webhooks = WebhookDispatcher(self)  # subscribes nothing until add()
            dispatcher = self._webhooks
        return dispatcher.add(url, events=events, secret=secret)

    @property
    def webhooks(self) -> list[Any]:
        """The webhooks added so far (each with its `url` and `dropped` count)."""
        dispatcher = self._webhooks
        return dispatcher.webhooks if dispatcher is not None else []

    # ------------------------------------------------------------ shutdown

    def shutdown(self, stop_servers: bool = False) -> None:
        """Stop the monitor and threads and save; servers keep running unless `stop_servers`.

        Running servers are recorded with no owner: the leader (this instance
        next time, or another one now) adopts them. In a process forked from
        the one that started this orchestrator, nothing is touched.
        """
        ctx = self._ctx
        registry = ctx.registry
        with registry.lock:
            if registry.closed:
                return
            registry.closed = True
            registry.closing.set()
            if self._forked_from is not None:
                return  # the parent's servers, threads and store are not ours
            registry.changed.notify_all()
        ctx.sync.stop()
        ctx.scheduler.stop()
        with self._workers_lock:
            workers = list(self._workers)
        for worker in workers:
            if worker is not threading.current_thread():
                worker.join(timeout=10)
        if stop_servers:
            self._parts.stopper.stop_many(list(self.configs), reason="stopped at shutdown",
                                          only_active=True)
        ctx.monitor.stop()
        self._parts.restarter.stop()
        for sid in self.configs:
            ctx.journal.persist(sid, release=True)
        ctx.journal.stop()
        ctx.leader.release()
        ctx.manager.close()
        if self._webhooks is not None:
            self._webhooks.close()
        self._disconnect(ctx.manager, ctx.monitor)
        with self._workers_lock:
            subscriptions, self._subscriptions = self._subscriptions, []
        for signal, receiver in subscriptions:
            for sender in (self, self.manager, self.monitor):
                signal.disconnect(receiver, sender=sender)

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
                with self._workers_lock:
                    self._workers.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._workers_lock:
            self._workers = {t for t in self._workers if t.is_alive()}
            self._workers.add(thread)
        thread.start()


__all__ = ["ServerOrchestrator"]
