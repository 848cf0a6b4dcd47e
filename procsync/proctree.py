"""The process table as procsync sees it: identity, liveness and a process's whole tree.

A process is its pid plus its create_time. A tree is the process, its
descendants, the members of its process group (when it leads its own) and
every process whose environment carries its spawn token, which is how a
grandchild that called setsid() is still found. The scan reads /proc
directly: one small read per process, several times cheaper than psutil,
which matters on the restart path.
"""

from __future__ import annotations

import os
import time

import psutil

from .records import ProcessInfo

TOKEN_VAR = "PROCSYNC_SPAWN"
CREATE_TIME_TOLERANCE = 0.005  # psutil create_time has clock-tick (10 ms) resolution


def same_identity(recorded: float | None, actual: float) -> bool:
    """True when `actual` create_time is the recorded one (None records prove nothing)."""
    return recorded is not None and abs(recorded - actual) < CREATE_TIME_TOLERANCE


def process_alive(pid: int | None, create_time: float | None) -> bool:
    """True when `pid` runs and is the process created at `create_time` (zombies are dead)."""
    if not pid or create_time is None:
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


def _newer_processes(create_time: float) -> list[tuple[int, int, int]]:
    """(pid, ppid, pgid) of every live process started no earlier than `create_time`.

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
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        # fields[0] is the state, [1] the ppid, [2] the pgid, [19] the start time in clock ticks
        if fields[0] in (b"Z", b"X") or int(fields[19]) < oldest:
            continue
        out.append((pid, int(fields[1]), int(fields[2])))
    return out


def _has_token(pid: int, token: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return False
    return TOKEN_VAR.encode() + b"=" + token in env.split(b"\0")


def process_tree(info: ProcessInfo, token: str | None, *, group: bool = True,
                 tokens: bool = True) -> list[psutil.Process]:
    """The process, its descendants, its group members and every process carrying `token`.

    A pid counts only while its create_time matches (the leader) or it is newer
    than the leader (everything else): a reused pid is never included.
    """
    own_group = group and info.pgid == info.pid
    wanted_token = token.encode() if tokens and token else None
    newer = _newer_processes(info.create_time)
    wanted: set[int] = set()
    try:
        if same_identity(info.create_time, psutil.Process(info.pid).create_time()):
            wanted.add(info.pid)
            children: dict[int, list[int]] = {}
            for pid, ppid, _ in newer:
                children.setdefault(ppid, []).append(pid)
            todo = [info.pid]
            while todo:  # descendants, through the parent links
                for kid in children.get(todo.pop(), ()):
                    if kid not in wanted:
                        wanted.add(kid)
                        todo.append(kid)
    except psutil.Error:
        pass
    for pid, _, pgid in newer:
        if pid not in wanted and (
            (own_group and pgid == info.pgid) or (wanted_token and _has_token(pid, wanted_token))
        ):
            wanted.add(pid)
    found: list[psutil.Process] = []
    for pid in wanted:
        try:
            found.append(psutil.Process(pid))
        except psutil.Error:
            continue
    return found


__all__ = [
    "CREATE_TIME_TOLERANCE",
    "TOKEN_VAR",
    "alive",
    "group_exists",
    "process_alive",
    "process_tree",
    "same_identity",
    "wait_gone",
]
