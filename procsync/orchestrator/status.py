"""Status of the registered servers, and finding and killing orphans that hold their ports.

An orphan is a process listening on a server's port that no server of this
orchestrator tracks (and that is not this process).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping

import psutil

from .. import signals
from ..config import ServerConfig
from ..config.graph import dependencies
from ..errors import ProcessNotFound
from ..logs import tail_lines
from ..ports import (
    UNKNOWN_PID,
    describe_pid,
    listening_ports,
    listening_sockets,
    owner_of,
    pgid_of,
    terminate,
    tracked_processes,
)
from ..proctree import protected_reason
from ..records import KillResult, ServerStatus
from ..redact import redact_text, shown_command
from .context import Context
from .lifecycle import ACTIVE, ServerState
from .registry import now


class StatusView:
    """Status, logs, ports and orphans of one orchestrator's servers."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------- status

    def get_server_status(self, current_ports: Mapping[int, int] | None = None) -> list[ServerStatus]:
        """One ServerStatus per registered server, in registration order.

        `current_ports` (port -> pid) saves the port scan when the caller has one.
        """
        registry = self.ctx.registry
        with registry.lock:
            snapshots = [registry.snapshot(s) for s in registry.servers.values()]
        wanted = {p for s in snapshots for p in s.config.ports}
        if current_ports is not None:
            scan = dict(current_ports)
        elif wanted:
            scan = listening_ports()
        else:
            scan = {}
        tracked = tracked_processes(self.ctx.manager.get_all_processes())
        return [self._status_of(s, scan, tracked) for s in snapshots]

    def get_server(self, id: str) -> ServerStatus:
        """The status of server `id`; ProcessNotFound if it is not registered."""
        registry = self.ctx.registry
        server = registry.get(id)
        with registry.lock:
            snapshot = registry.snapshot(server)
        scan = listening_ports() if snapshot.config.ports else {}
        return self._status_of(snapshot, scan,
                               tracked_processes(self.ctx.manager.get_all_processes()))

    def _status_of(self, s: ServerState, scan: Mapping[int, int], tracked: Mapping[int, str]) -> ServerStatus:
        config = s.config
        orphan_pid = None
        listening: list[int] = []
        active = s.status in ACTIVE and s.pid is not None
        for port in config.ports:
            holder = scan.get(port)
            if not holder or holder == UNKNOWN_PID or holder == os.getpid():
                continue
            owner = owner_of(holder, tracked)
            if owner is None and orphan_pid is None:
                orphan_pid = holder
            elif active and owner == s.id:
                listening.append(port)
        mon = self.ctx.monitor.get_status(s.id) if active else None
        if mon is not None and mon.pid not in (None, s.pid):
            mon = None
        message = s.message
        if s.status == "starting":
            # what the checks see so far (the monitor checks a new process at once), so a
            # person can tell why it is not ready yet; "unknown" only before any check
            checked = mon is not None and mon.last_check is not None
            health = mon.health if checked and mon is not None else "unknown"
            if checked and mon is not None and mon.error and health != "healthy":
                waiting = f"not ready yet: {mon.error}"
                message = f"{message}; {waiting}" if message else waiting
        elif active:
            fresh = mon is not None and mon.last_check is not None and (
                s.verdict_at is None or mon.last_check > s.verdict_at)
            health = mon.health if fresh and mon is not None else (s.verdict or "unknown")
        else:
            health = "unknown" if s.status in ("stopped", "waiting", "skipped") else "dead"
        uptime = (now() - s.started_at).total_seconds() if active and s.started_at else None
        return ServerStatus(
            id=s.id,
            name=config.name or s.id,
            color=config.color,
            command=shown_command(config.command),  # secrets masked
            cwd=config.cwd,
            ports=tuple(config.ports),
            listening=tuple(listening),
            ports_required=config.ports_required,
            status=s.status,
            running=active,
            pid=s.pid if active else None,
            health=health,
            uptime=uptime,
            restarts=s.restarts,
            last_exit_code=None if active else s.last_exit_code,  # a run's, once it has ended
            cpu_percent=mon.cpu_percent if mon else 0.0,
            memory_rss=mon.memory_rss if mon else 0,
            orphaned=orphan_pid is not None,
            orphaned_pid=orphan_pid,
            log_file=s.log_file or self.default_log(s.id, config),
            started_at=s.started_at if active else None,
            autorestart=config.autorestart,
            message=redact_text(message),
            env_keys=tuple(config.env or ()),
            kind=config.kind,
            group=config.group,
            depends_on=dependencies(config),
            reload_signal=config.reload_signal,
        )

    # ------------------------------------------------------------ orphans

    def kill_orphaned_process(self, server_id: str, pid: int) -> KillResult:
        """Kill `pid` if, right now, it listens on a port of `server_id` and is not ours. TERM, then KILL."""
        def refuse(why: str) -> KillResult:
            return KillResult(False, server_id, pid if isinstance(pid, int) else None, None, None, why)

        server = self.ctx.registry.find(server_id)
        if server is None:
            return refuse(f"unknown server {server_id!r}")
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            return refuse(f"{pid!r} is not a process id")
        why = protected_reason(pid)
        if why is not None:
            return refuse(f"pid {pid} is {why}; procsync never signals it, not killed")
        config = server.config
        if not config.ports:
            return refuse(f"server {server_id!r} has no ports, so it cannot have an orphan")
        holders = listening_sockets()
        ports = [p for p in config.ports if pid in holders.get(p, ())]
        if not ports:
            return refuse(f"pid {pid} does not listen on any port of server {server_id!r} "
                          f"({', '.join(map(str, config.ports))}); not an orphan, not killed")
        owner = owner_of(pid, tracked_processes(self.ctx.manager.get_all_processes()))
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
        while self.ports_held(ports) is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        what = "process group" if group else "process"
        message = f"killed orphan {what} {pid} ({name}) holding port {ports[0]} of {server_id!r} with {sent}"
        self.ctx.journal.event(server_id, "orphan_killed", pid=pid, reason=message).wait()
        signals.send(signals.orphan_killed, self.ctx.sender, id=server_id, pid=pid, signal=sent)
        return KillResult(True, server_id, pid, sent, None, message)

    # -------------------------------------------------------------- ports

    def ports_held(self, ports: Iterable[int]) -> tuple[int, int] | None:
        ports = tuple(ports)
        if not ports:
            return None
        scan = listening_ports()
        for port in ports:
            if port in scan:
                return port, scan[port]
        return None

    def describe_holder(self, pid: int) -> str:
        text = describe_pid(pid)
        owner = owner_of(pid, tracked_processes(self.ctx.manager.get_all_processes()))
        return f"{text}, a process of server {owner!r}" if owner else text


    # -------------------------------------------------------------- logs

    def log_path(self, id: str) -> str | None:
        """The log file of server `id` (None if it never ran); ProcessNotFound if unknown."""
        server = self.ctx.registry.find(id)
        if server is None:
            raise ProcessNotFound(id, "server")
        return self.ctx.manager.log_path(id) or server.log_file or self.default_log(id, server.config)

    def default_log(self, sid: str, config: ServerConfig) -> str | None:
        path = self.ctx.manager.log_file_for(sid, config.log_file)
        return path if os.path.exists(path) else None

    def tail_log(self, id: str, lines: int = 100) -> list[str]:
        """The last `lines` lines of server `id`'s log (reaching into the rotated `<log>.1`)."""
        return tail_lines(self.log_path(id), lines)


__all__ = ["StatusView"]
