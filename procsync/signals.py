"""The blinker signals procsync sends, in a namespace of its own.

Receivers are called as ``receiver(sender, **payload)`` and should accept
``**extra``: later versions may add keys. blinker holds receivers weakly by
default, so connect closures with ``weak=False`` or keep a reference.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from blinker import Namespace, Signal

log = logging.getLogger(__name__)

_ns = Namespace()


@dataclass(frozen=True, slots=True)
class SignalDoc:
    """What a signal says: who sends it, the payload keys it always carries, when.

    `optional` keys come with some sends only (`instance` when the event was
    seen in another instance's records). The signals reference of the
    documentation is generated from these, and a test checks them against the
    payloads real runs send.
    """

    name: str
    sender: str
    keys: tuple[str, ...]
    when: str
    optional: tuple[str, ...] = ()


#: Every signal's SignalDoc by name, in the order they are declared.
DOCS: dict[str, SignalDoc] = {}


def _declare(name: str, sender: str, keys: str, when: str, optional: str = "") -> Signal:
    doc = SignalDoc(name, sender, tuple(keys.split()), when, tuple(optional.split()))
    DOCS[name] = doc
    return _ns.signal(name, doc=f"sender: {sender}; {', '.join(doc.keys)}. {when}")


_ORCH = "ServerOrchestrator"

# Sent by ProcessManager.
process_started = _declare("process_started", "ProcessManager", "id pid info",
                           "a process was spawned (`info` is its ProcessInfo)")
process_exit = _declare("process_exit", "ProcessManager", "id pid exit_code signal expected info",
                        "a spawned process ended, noticed through its pidfd; `exit_code` is "
                        "`-N` for a death by signal N, `signal` the killing signal's name or "
                        "None, `expected` True when a stop asked for it")
process_error = _declare("process_error", "ProcessManager", "id pid error command",
                         "a spawn failed (`pid` is None; `command` has secrets masked)")

# Sent by ProcessMonitor.
health_check = _declare("health_check", "ProcessMonitor", "statuses",
                        "every monitor tick, with a ProcessStatus per watched process")
status_change = _declare("status_change", "ProcessMonitor", "id pid previous current status",
                         "a process's health changed (`current` is the new health state, "
                         "`status` its ProcessStatus)")
process_died = _declare("process_died", "ProcessMonitor", "id pid exit_code",
                        "the monitor found a process dead that the manager did not report (an "
                        "adopted one); a ServerOrchestrator sends it too, with `instance`, for a "
                        "server another instance ran", optional="instance")

# Sent by ServerOrchestrator.
initialized = _declare("initialized", _ORCH, "recovered ended orphaned unverified protected",
                       "initialize() finished: the ids adopted, found ended, with an orphan on "
                       "a port, with a pid that could not be verified, and refused as protected")
server_started = _declare("server_started", _ORCH, "id pid ready instance",
                          "a server was started (`ready` False when it ran but did not pass its "
                          "readiness checks in time)")
server_stopped = _declare("server_stopped", _ORCH, "id pid exit_code instance",
                          "a server was stopped on request")
server_restarting = _declare("server_restarting", _ORCH, "id pid attempt delay reason instance",
                             "a server that exited will be restarted after `delay` seconds")
server_fatal = _declare("server_fatal", _ORCH, "id pid restarts exit_code instance",
                        "a server used up `max_restarts` and is left stopped")
orphan_killed = _declare("orphan_killed", _ORCH, "id pid signal",
                         "kill_orphan() killed the process holding a server's port")
server_skipped = _declare("server_skipped", _ORCH, "id pid dependency reason instance",
                          "a waiting server will not start because `dependency` did not reach "
                          "its condition (`pid` is None)")
server_reloaded = _declare("server_reloaded", _ORCH, "id pid signal instance",
                           "reload_server() sent the server its `reload_signal`")
memory_limit_exceeded = _declare("memory_limit_exceeded", _ORCH, "id pid rss limit action",
                                 "a server's process tree went over its `memory_limit` (bytes); "
                                 "`action` is what follows: restart, stop or alert")

#: Every signal by name, in the order above.
ALL: dict[str, Signal] = {name: _ns[name] for name in DOCS}


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


__all__ = ["ALL", "DOCS", "SignalDoc", "get", "send", *ALL]
