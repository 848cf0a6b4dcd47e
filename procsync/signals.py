"""The blinker signals procsync sends, in a namespace of its own.

Receivers are called as ``receiver(sender, **payload)`` and should accept
``**extra``: later versions may add keys. blinker holds receivers weakly by
default, so connect closures with ``weak=False`` or keep a reference.
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import Namespace, Signal

log = logging.getLogger(__name__)

_ns = Namespace()

# Sent by ProcessManager.
process_started = _ns.signal("process_started", doc="sender: ProcessManager; id, pid, info")
process_exit = _ns.signal(
    "process_exit", doc="sender: ProcessManager; id, pid, exit_code, signal, expected, info"
)
process_error = _ns.signal("process_error", doc="sender: ProcessManager; id, pid=None, error")

# Sent by ProcessMonitor.
health_check = _ns.signal("health_check", doc="sender: ProcessMonitor; statuses (list of ProcessStatus)")
status_change = _ns.signal(
    "status_change", doc="sender: ProcessMonitor; id, pid, previous, current, status"
)
process_died = _ns.signal("process_died", doc="sender: ProcessMonitor; id, pid, exit_code")

# Sent by ServerOrchestrator.
initialized = _ns.signal("initialized", doc="sender: ServerOrchestrator; recovered, ended, orphaned, "
                         "unverified, protected")
server_started = _ns.signal("server_started", doc="sender: ServerOrchestrator; id, pid")
server_stopped = _ns.signal("server_stopped", doc="sender: ServerOrchestrator; id, pid, exit_code")
server_restarting = _ns.signal(
    "server_restarting", doc="sender: ServerOrchestrator; id, pid, attempt, delay, reason"
)
server_fatal = _ns.signal("server_fatal", doc="sender: ServerOrchestrator; id, pid, restarts, exit_code")
orphan_killed = _ns.signal("orphan_killed", doc="sender: ServerOrchestrator; id, pid, signal")
server_skipped = _ns.signal(
    "server_skipped", doc="sender: ServerOrchestrator; id, pid=None, dependency, reason"
)
server_reloaded = _ns.signal("server_reloaded", doc="sender: ServerOrchestrator; id, pid, signal")
memory_limit_exceeded = _ns.signal(
    "memory_limit_exceeded", doc="sender: ServerOrchestrator; id, pid, rss, limit, action"
)

#: Every signal by name, in the order above.
ALL: dict[str, Signal] = {
    name: _ns[name]
    for name in (
        "process_started",
        "process_exit",
        "process_error",
        "health_check",
        "status_change",
        "process_died",
        "initialized",
        "server_started",
        "server_stopped",
        "server_restarting",
        "server_fatal",
        "orphan_killed",
        "server_skipped",
        "server_reloaded",
        "memory_limit_exceeded",
    )
}


def get(name: str) -> Signal:
    """The signal called `name`; ValueError listing the valid names otherwise."""
    try:
        return ALL[name]
    except KeyError:
        raise ValueError(
            f"unknown signal {name!r}; valid signals: {', '.join(sorted(ALL))}"
        ) from None


def send(sig: Signal, sender: Any, /, **payload: Any) -> None:
    """Send `sig`, calling every receiver even if one raises (that one is logged)."""
    if not sig.receivers:
        return
    for receiver in sig.receivers_for(sender):
        try:
            receiver(sender, **payload)
        except Exception:
            log.exception("receiver %r of signal %r raised", receiver, getattr(sig, "name", sig))


__all__ = ["ALL", "get", "send", *ALL]
