"""The process table as procsync sees it: identity, liveness and a process's whole tree.

A process is its pid plus its create_time. A tree is the process, its
descendants (only for processes procsync spawned), the members of its
process group and session (when it leads its own) and every process whose
environment carries its spawn token, which is how a grandchild that called
setsid() is still found. The scan reads /proc directly: one small read per
process, several times cheaper than psutil, which matters on the restart path.

Some pids are never procsync's to adopt or signal, whatever a record says:
PID 1, the process procsync runs in and every ancestor of it
(`protected_reason`). They never count as alive here and never appear in a tree.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

from .records import ProcessInfo

TOKEN_VAR = "PROCSYNC_SPAWN"
ID_VAR = "PROCSYNC_ID"
#: Set by the orchestrator on every spawn: the state file the spawn belongs to, so that a
#: process spawned just before procsync died (and never recorded) can still be found.
STATE_VAR = "PROCSYNC_STATE"
CREATE_TIME_TOLERANCE = 0.005  # psutil create_time has clock-tick (10 ms) resolution


def _stat_fields(pid: int | str) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name, or None when it is gone.

    [0] is the state, [1] the ppid, [2] the pgid, [3] the session, [19] the start
    time in clock ticks. One small read: several times cheaper than psutil.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2:].split()


def _ppid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[1])


def protected_pids() -> dict[int, str]:
    """pid -> why procsync must never adopt or signal it: PID 1, this process, its ancestors.

    Read fresh on every call (a few small reads): ancestors change when a
    parent exits, and a fork has a pid of its own.
    """
    me = os.getpid()
    found = {1: "PID 1 (the init process)", me: "the process procsync runs in"}
    pid = me
    while True:
        parent = _ppid(pid)
        if parent is None or parent <= 0 or parent in found:
            return found
        found[parent] = "an ancestor of the process procsync runs in"
        pid = parent


def protected_reason(pid: int) -> str | None:
    """Why `pid` must never be adopted or signalled, or None when nothing forbids it."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return "not a process id (signalling it would reach a whole process group)"
    if pid == 1:
        return "PID 1 (the init process)"
    return protected_pids().get(pid)


def same_identity(recorded: float | None, actual: float) -> bool:
    """True when `actual` create_time is the recorded one (None records prove nothing)."""
    return recorded is not None and abs(recorded - actual) < CREATE_TIME_TOLERANCE


def process_alive(pid: int | None, create_time: float | None) -> bool:
    """True when `pid` runs and is the process created at `create_time` (zombies are dead).

    A protected pid (`protected_reason`) is never one of ours, so it is never alive here.
    """
    if not pid or create_time is None or protected_reason(pid) is not None:
        return False
    try:
        proc = psutil.Process(pid)
        return same_identity(create_time, proc.create_time()) and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_gone(procs: list[psutil.Process], timeout: float) -> bool:
    """Wait until none of `procs` is alive; never reaps (psutil's wait() would steal our children)."""
    deadline = time.monotonic() + timeout
    while True:
        procs = [p for p in procs if alive(p)]
        if not procs:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _boot_ticks() -> tuple[float, int]:
    return psutil.boot_time(), os.sysconf("SC_CLK_TCK")


_BOOT_TIME, _CLK_TCK = _boot_ticks()


def _newer_processes(create_time: float) -> list[tuple[int, int, int, int]]:
    """(pid, ppid, pgid, sid) of every live process started no earlier than `create_time`.

    Reads /proc/<pid>/stat directly: one small read per process, several
    times cheaper than a psutil scan, which matters on the restart path.
    A descendant can never be older than its ancestor, so older ones are skipped.
    """
    oldest = int((create_time - _BOOT_TIME) * _CLK_TCK) - 1
    me = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid == me:
            continue
        fields = _stat_fields(name)
        if fields is None or fields[0] in (b"Z", b"X") or int(fields[19]) < oldest:
            continue
        out.append((pid, int(fields[1]), int(fields[2]), int(fields[3])))
    return out


def _has_token(pid: int, token: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return False
    return TOKEN_VAR.encode() + b"=" + token in env.split(b"\0")


@dataclass(frozen=True, slots=True)
class Spawned:
    """One spawn found in the process table by its markers: its id, token and live processes.

    `top` is (pid, create_time) of the process procsync spawned, None when it has
    ended and only processes it left behind (`members`, top included) still run.
    """

    id: str
    token: str
    top: tuple[int, float] | None
    members: tuple[tuple[int, float], ...]


def _leads_session(pid: int) -> bool:
    try:
        return os.getsid(pid) == pid
    except OSError:
        return False


def spawns_for_state(state: str) -> list[Spawned]:
    """Every live spawn whose environment names the state file `state` (STATE_VAR).

    Reads /proc/<pid>/environ of every process (a few ms at startup, never on a
    hot path). A process counts only with all three markers; zombies and
    protected pids never count.
    """
    wanted = STATE_VAR.encode() + b"=" + os.fsencode(state)
    protected = protected_pids()
    carriers: dict[bytes, list[tuple[int, int, str]]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in protected:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if wanted not in env:
            continue
        values = dict(item.split(b"=", 1) for item in env if b"=" in item)
        token, sid = values.get(TOKEN_VAR.encode()), values.get(ID_VAR.encode())
        ppid = _ppid(int(name))
        if token and sid and ppid is not None:
            carriers.setdefault(token, []).append((int(name), ppid, os.fsdecode(sid)))
    found = []
    for token, procs in carriers.items():
        pids = {pid for pid, _, _ in procs}
        members, top = [], None
        for pid, ppid, _ in procs:
            try:
                proc = psutil.Process(pid)
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                member = (pid, proc.create_time())
            except psutil.Error:
                continue
            members.append(member)
            if ppid not in pids and _leads_session(pid):
                top = member if top is None or member[1] < top[1] else top
        # the top led its own session and is the oldest carrier whose parent carries nothing;
        # when a carrier is older still, the top has ended and these are what it left behind
        if top is not None and any(ct < top[1] for _, ct in members):
            top = None
        if members:
            found.append(Spawned(procs[0][2], os.fsdecode(token), top, tuple(members)))
    return found


def process_tree(info: ProcessInfo, token: str | None, *, group: bool = True,
                 tokens: bool = True, descendants: bool = True,
                 session: bool = False) -> list[psutil.Process]:
    """The process and what provably belongs to it, protected pids never included.

    That is: its descendants (when `descendants`), the members of its process
    group (when `group` and it leads its own group) and of its session (when
    `session`; a session's id is its leader's pid), and every process
    carrying `token`. A pid counts only while its create_time matches (the
    leader) or it is newer than the leader (everything else): a reused pid is
    never included, and when the leader's pid now names another process,
    group and session ids prove nothing and are not used.
    """
    newer = _newer_processes(info.create_time)
    wanted: set[int] = set()
    try:
        leader = same_identity(info.create_time, psutil.Process(info.pid).create_time())
        reused = not leader
    except psutil.NoSuchProcess:
        leader, reused = False, False
    except psutil.Error:
        leader, reused = False, True
    if leader:
        wanted.add(info.pid)
        if descendants:
            children: dict[int, list[int]] = {}
            for pid, ppid, _, _ in newer:
                children.setdefault(ppid, []).append(pid)
            todo = [info.pid]
            while todo:  # descendants, through the parent links
                for kid in children.get(todo.pop(), ()):
                    if kid not in wanted:
                        wanted.add(kid)
                        todo.append(kid)
    own_group = group and info.pgid == info.pid and not reused
    own_session = session and not reused
    wanted_token = token.encode() if tokens and token else None
    for pid, _, pgid, sid in newer:
        if pid not in wanted and (
            (own_group and pgid == info.pgid) or (own_session and sid == info.pid)
            or (wanted_token and _has_token(pid, wanted_token))
        ):
            wanted.add(pid)
    protected = protected_pids()
    found: list[psutil.Process] = []
    for pid in wanted:
        if pid in protected:
            continue
        try:
            found.append(psutil.Process(pid))
        except psutil.Error:
            continue
    return found


__all__ = [
    "ID_VAR",
    "STATE_VAR",
    "Spawned",
    "spawns_for_state",
    "CREATE_TIME_TOLERANCE",
    "TOKEN_VAR",
    "alive",
    "group_exists",
    "process_alive",
    "process_tree",
    "protected_pids",
    "protected_reason",
    "same_identity",
    "wait_gone",
]
