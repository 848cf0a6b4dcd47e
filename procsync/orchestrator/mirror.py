"""Taking in what another instance wrote: this instance's view follows the store's record.

When a record of the shared state file was written by another instance,
`Mirror.apply` moves the server to the recorded state (through the
lifecycle's `observed_<state>` events), watches the recorded live process,
and sends the signals the change means, once, from this orchestrator, with
``instance=<the instance that acted>``.
"""

from __future__ import annotations

from typing import Any

from .. import signals
from ..config import ServerConfig
from ..instances.leader import owner_name
from ..store import StoredProcessInfo
from .context import Context
from .lifecycle import ACTIVE, BACKOFF, STOPPED, advance, observed
from .policy import backoff_delay, describe_exit


def transitions(before: tuple[str, int | None, int], new: StoredProcessInfo,
                config: ServerConfig) -> list[tuple[Any, dict[str, Any]]]:
    """The signals for going from `before` (status, pid, restarts) to the record `new`."""
    status, pid, restarts = before
    sends: list[tuple[Any, dict[str, Any]]] = []
    was_active = status in ACTIVE and pid is not None
    if was_active and new.status not in ("stopping", "stopped") and (
            new.pid != pid or new.status not in ACTIVE):
        sends.append((signals.process_died, {"pid": pid, "exit_code": new.exit_code}))
    if new.status == "running":
        if not (status == "running" and pid == new.pid):
            sends.append((signals.server_started, {"pid": new.pid, "ready": True}))
    elif new.status == "stopped":
        if status in (*ACTIVE, BACKOFF):
            sends.append((signals.server_stopped, {"pid": pid or new.pid,
                                                   "exit_code": new.exit_code}))
    elif new.status == "backoff":
        if status != "backoff" or restarts != new.restarts:
            delay = backoff_delay(max(1, new.restarts), config.backoff_initial, config.backoff_max)
            sends.append((signals.server_restarting, {
                "pid": new.pid, "attempt": new.restarts, "delay": delay,
                "reason": describe_exit(new.exit_code)}))
    elif new.status == "fatal":
        if status != "fatal":
            sends.append((signals.server_fatal, {"pid": new.pid, "restarts": new.restarts,
                                                  "exit_code": new.exit_code}))
    return sends


def describe(record: StoredProcessInfo, config: ServerConfig) -> str | None:
    """The message shown for a server whose record another instance wrote."""
    who = owner_name(record.owner)
    by = f" (through instance {who!r})" if who else ""
    if record.status == "backoff":
        return (f"{describe_exit(record.exit_code)}; restarting (attempt {record.restarts} "
                f"of {config.max_restarts}){by}")
    if record.status == "fatal":
        return f"fatal after {record.restarts} restarts, last {describe_exit(record.exit_code)}{by}"
    if record.status in ("crashed", "exited", "completed"):
        return f"{describe_exit(record.exit_code, tuple(config.success_exit_codes))}{by}"
    return None


class Mirror:
    """Applies other instances' records to one orchestrator's view."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def apply(self, sid: str, new: StoredProcessInfo | None, *, emit: bool = True) -> None:
        """Bring this instance's view of `sid` in line with `new`, written by another instance.

        The signals sent follow from what this instance believed before,
        under the registry lock: however many threads apply one record, each
        change is announced once.
        """
        ctx = self.ctx
        me = ctx.owner
        registry = ctx.registry
        if new is not None and new.owner == me:
            with registry.lock:  # our own record; the spawner may have added the exit code
                server = registry.servers.get(sid)
                if (server is not None and new.exit_code is not None and server.last_exit_code is None
                        and server.last_pid == new.pid and server.status not in ACTIVE):
                    server.last_exit_code = new.exit_code
            return
        watch: ServerConfig | None = None
        with registry.lock:
            server = registry.servers.get(sid)
            if server is None:
                return
            before = (server.status, server.pid, server.restarts)
            if new is None:
                if server.owner in (None, me) or server.status not in (*ACTIVE, BACKOFF):
                    return
                advance(server, observed(STOPPED))
                server.pid, server.ready, server.owner = None, False, None
                registry.changed.notify_all()
                return
            server.owner = new.owner
            advance(server, observed(new.status))
            server.restarts = new.restarts
            server.last_pid = new.pid
            server.last_exit_code = new.exit_code
            server.log_file = new.log_file or server.log_file
            server.verdict = server.verdict_at = None
            server.kill_reason = None
            if new.status in ACTIVE:
                server.pid = new.pid
                server.pgid = new.pgid
                server.create_time = new.create_time
                server.started_at = new.start_time
                server.ready = new.status == "running"
                server.message = None
                watch = server.config
            else:
                server.pid = None
                server.ready = False
                server.message = describe(new, server.config)
            sends = transitions(before, new, server.config) if emit else []
            registry.changed.notify_all()
        if watch is not None:
            ctx.sync.watch(sid, new, watch)
        who = owner_name(new.owner)
        for signal, payload in sends:
            signals.send(signal, ctx.sender, id=sid, instance=who, **payload)


__all__ = ["Mirror", "describe", "transitions"]
