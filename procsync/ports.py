"""Which process listens on which TCP port, and whose process it is.

`listening_ports()` maps each listening port to the pid holding it, from
one psutil scan. When several processes share one listening socket (a
pre-fork server's master and workers), the pid reported is the one that is
not a child of another holder, i.e. the master. The other helpers answer
the questions the orchestrator asks about such a pid: is it the process we
recorded (`identify`: by create time only, never by command line), does it
belong to a server we run (`owner_of`), and how to stop it safely
(`terminate`, which never signals a protected pid).
"""

from __future__ import annotations

import os
import signal as _signal
import time
from collections.abc import Iterable, Mapping

import psutil

from .proctree import process_alive, protected_reason, same_identity
from .records import ProcessInfo

#: pid 0 in a scan result: the port is held, but by a process we cannot see.
UNKNOWN_PID = 0


def listening_sockets() -> dict[int, set[int]]:
    """Every listening TCP port (IPv4 and IPv6) -> the pids holding it (empty set if unknown)."""
    found: dict[int, set[int]] = {}
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:  # pragma: no cover - not root on a locked-down system
        conns = []
    for conn in conns:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr:
            continue
        pids = found.setdefault(conn.laddr.port, set())
        if conn.pid:
            pids.add(conn.pid)
    return found


def _master(pids: set[int]) -> int:
    if not pids:
        return UNKNOWN_PID
    if len(pids) == 1:
        return next(iter(pids))
    for pid in sorted(pids):
        try:
            if psutil.Process(pid).ppid() not in pids:
                return pid
        except psutil.Error:
            continue
    return min(pids)


def listening_ports() -> dict[int, int]:
    """Listening TCP port -> pid holding it (UNKNOWN_PID when the holder is not visible)."""
    return {port: _master(pids) for port, pids in listening_sockets().items()}


def process_name(pid: int) -> str:
    """The process name of `pid`, or "?" when it cannot be read."""
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return "?"


def describe_pid(pid: int) -> str:
    """A pid as a person reads it: "pid 4242 (python3)"."""
    if pid == UNKNOWN_PID:
        return "a process procsync cannot see"
    return f"pid {pid} ({process_name(pid)})"


def port_holder(port: int, current: Mapping[int, int] | None = None) -> str | None:
    """Who listens on `port`, e.g. "pid 4242 (python3)"; None if nobody does.

    `current` is a port -> pid mapping from an earlier `listening_ports()` call.
    """
    ports = listening_ports() if current is None else current
    if port not in ports:
        return None
    return describe_pid(ports[port])


def port_holders(ports: tuple[int, ...] | list[int],
                 current: Mapping[int, int] | None = None) -> dict[int, int]:
    """The subset of `ports` someone listens on, each -> holder pid (one scan)."""
    if not ports:
        return {}
    scan = listening_ports() if current is None else current
    return {port: scan[port] for port in ports if port in scan}


def pgid_of(pid: int) -> int | None:
    """The process group of `pid`, None if it is gone."""
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def identify(pid: int, create_time: float | None) -> tuple[str, float | None]:
    """Is live `pid` the process recorded with `create_time`? Its create time is the only proof.

    Returns (outcome, the live create_time or None), the outcome one of
    "dead"; "same"; "unproven" (another create time: the pid was reused);
    "unverified" (alive, but the record has no create time, so nothing can
    prove it is the recorded process: a matching command line proves nothing);
    "protected" (PID 1, this process or an ancestor, see `protected_reason`).
    """
    try:
        proc = psutil.Process(pid)
        actual = proc.create_time()
        if proc.status() == psutil.STATUS_ZOMBIE:
            return "dead", None
    except psutil.NoSuchProcess:
        return "dead", None
    except psutil.Error:
        return "unproven", None
    if protected_reason(pid) is not None:
        return "protected", actual
    if create_time is None:
        return "unverified", actual
    return ("same" if same_identity(create_time, actual) else "unproven"), actual


def tracked_processes(infos: Iterable[ProcessInfo]) -> dict[int, str]:
    """pid -> id of every running process in `infos`, plus -pgid -> id for group leaders."""
    tracked: dict[int, str] = {}
    for info in infos:
        if info.status == "running":
            tracked[info.pid] = info.id
            if info.pgid == info.pid:
                tracked.setdefault(-info.pgid, info.id)  # negative keys: process groups
    return tracked


def owner_of(pid: int, tracked: Mapping[int, str]) -> str | None:
    """The id whose process, process group or process tree `pid` belongs to, if any."""
    if pid in tracked:
        return tracked[pid]
    pgid = pgid_of(pid)
    if pgid is not None and -pgid in tracked:
        return tracked[-pgid]
    try:
        for parent in psutil.Process(pid).parents():
            if parent.pid in tracked:
                return tracked[parent.pid]
    except psutil.Error:
        pass
    return None


def terminate(proc: psutil.Process, created: float, group: bool, timeout: float) -> str | None:
    """SIGTERM `proc` (its whole group when `group`), SIGKILL after `timeout` s.

    Never signals a pid whose create_time is no longer `created`, nor a
    protected pid (`protected_reason`), nor the process group procsync runs
    in. Returns the last signal's name, or None when nothing was sent.
    """
    if protected_reason(proc.pid) is not None:
        return None
    group = group and proc.pid != os.getpgid(0)

    def send(sig: int) -> bool:
        if not process_alive(proc.pid, created):
            return False
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except (ProcessLookupError, PermissionError, psutil.Error):
            return False
        return True

    if not send(_signal.SIGTERM):
        return None
    last = "SIGTERM"
    deadline = time.monotonic() + timeout
    while process_alive(proc.pid, created) and time.monotonic() < deadline:
        time.sleep(0.01)
    if process_alive(proc.pid, created) and send(_signal.SIGKILL):
        last = "SIGKILL"
        deadline = time.monotonic() + 5.0
        while process_alive(proc.pid, created) and time.monotonic() < deadline:
            time.sleep(0.01)
    return last


__all__ = [
    "UNKNOWN_PID",
    "describe_pid",
    "identify",
    "listening_ports",
    "listening_sockets",
    "pgid_of",
    "port_holder",
    "port_holders",
    "owner_of",
    "process_name",
    "terminate",
    "tracked_processes",
]
