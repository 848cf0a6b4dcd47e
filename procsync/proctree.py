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
from collections.abc import Collection, Mapping, Sequence
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


def protected_reason(pid: int, protected: Mapping[int, str] | None = None) -> str | None:
    """Why `pid` must never be adopted or signalled, or None when nothing forbids it.

    `protected` is a `protected_pids()` answer the caller already has (one per batch).
    """
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return "not a process id (signalling it would reach a whole process group)"
    if pid == 1:
        return "PID 1 (the init process)"
    return (protected_pids() if protected is None else protected).get(pid)


def create_time_of(pid: int) -> float | None:
    """psutil's create_time of `pid` from one read of /proc/<pid>/stat; None when it is gone."""
    fields = _stat_fields(pid)
    return None if fields is None else ticks_to_time(int(fields[19]))


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


def signal_group(pid: int, create_time: float | None, sig: int) -> bool:
    """Send `sig` to the process group `pid` leads (to `pid` alone if it leads none), only while
    `pid` is the process created at `create_time`; whether it was sent."""
    if not process_alive(pid, create_time):
        return False
    try:
        if os.getpgid(pid) == pid and pid != os.getpgid(0):
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


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


def ticks_to_time(ticks: int) -> float:
    """A start time in clock ticks after boot (/proc/<pid>/stat) as psutil's create_time."""
    return _BOOT_TIME + ticks / _CLK_TCK


def _time_to_ticks(create_time: float) -> int:
    return int((create_time - _BOOT_TIME) * _CLK_TCK)


@dataclass(frozen=True, slots=True)
class Usage:
    """What one read of /proc/<pid>/stat says about a process's identity and resource use."""

    start: int  # clock ticks after boot; with the pid, the identity
    zombie: bool
    cpu: int  # user + system time, clock ticks
    rss: int  # bytes


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def usage_of(pid: int) -> Usage | None:
    """Start time, state, CPU time and RSS of `pid` from two small reads; None when it is gone.

    psutil reads stat once for each of these and statm for memory: two
    reads are several times cheaper for a monitor tick. RSS comes from
    statm, as psutil's: stat's own field is approximate on recent kernels.
    """
    fields = _stat_fields(pid)
    if fields is None:
        return None
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            rss = int(f.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        rss = int(fields[21]) * _PAGE_SIZE
    return Usage(int(fields[19]), fields[0] in (b"Z", b"X"), int(fields[11]) + int(fields[12]), rss)


def clock_ticks() -> int:
    """Clock ticks per second, the unit of `Usage.cpu` and `Usage.start`."""
    return _CLK_TCK


class ParentLinks:
    """Who is whose child, for every process, kept up to date by reading only what changed.

    `children()` lists /proc (cheap) and reads the stat file only of pids
    that appeared since the last call and of processes whose parent went
    away (they were reparented); every `refresh_every` calls it reads them
    all again, which also catches a pid reused between two calls. A
    monitor tick needs the links to sum a server's descendants; reading
    every process's stat on every tick cost more than everything else.
    Safe to share between threads (each call swaps in new dicts).
    """

    def __init__(self, refresh_every: int = 20) -> None:
        self.refresh_every = refresh_every
        self._pids: frozenset[str] = frozenset()
        self._ppids: dict[int, int] = {}
        self._children: dict[int, list[int]] = {}
        self._calls = 0

    def children(self) -> dict[int, list[int]]:
        """pid -> the pids whose parent it is (read-only: shared between callers)."""
        pids = frozenset(name for name in os.listdir("/proc") if name.isdigit())
        if pids == self._pids and self._calls % self.refresh_every:
            self._calls += 1
            return self._children
        if self._calls % self.refresh_every == 0 or not self._ppids:
            ppids: dict[int, int] = {}
            todo = [int(name) for name in pids]
        else:
            gone = {int(name) for name in self._pids - pids}
            ppids = {pid: ppid for pid, ppid in self._ppids.items() if pid not in gone}
            todo = [int(name) for name in pids - self._pids]
            todo += [pid for pid, ppid in ppids.items() if ppid in gone]  # reparented
        for pid in todo:
            parent = _ppid(pid)
            if parent is None:
                ppids.pop(pid, None)
            else:
                ppids[pid] = parent
        children: dict[int, list[int]] = {}
        for pid, ppid in ppids.items():
            if pid != ppid:
                children.setdefault(ppid, []).append(pid)
        self._pids, self._ppids, self._children = pids, ppids, children
        self._calls += 1
        return children


@dataclass(frozen=True, slots=True)
class Row:
    """One process of the table, from one read of /proc/<pid>/stat."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    start: int  # clock ticks after boot; with pid, the identity
    zombie: bool


def scan(since: float | None = None) -> list[Row]:
    """Every process started no earlier than `since` (all when None), this one excepted.

    One pass over /proc, one small read per process. A descendant is never
    older than its ancestor, so a sweep for what a process left behind
    passes that process's create_time and skips everything older.
    """
    oldest = -1 if since is None else _time_to_ticks(since) - 1
    me = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(name)
        if fields is None:
            continue
        start = int(fields[19])
        if start < oldest:
            continue
        pid = int(name)
        if pid == me:
            continue
        out.append(Row(pid, int(fields[1]), int(fields[2]), int(fields[3]), start,
                       fields[0] in (b"Z", b"X")))
    return out


_TOKEN_KEY = TOKEN_VAR.encode() + b"="


def _token_of(pid: int) -> bytes | None:
    """The spawn token in the environment of `pid`, None when it has none (or is gone)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return None
    if env.startswith(_TOKEN_KEY):
        begin = len(_TOKEN_KEY)
    else:
        at = env.find(b"\0" + _TOKEN_KEY)
        if at < 0:
            return None
        begin = at + 1 + len(_TOKEN_KEY)
    end = env.find(b"\0", begin)
    return env[begin:] if end < 0 else env[begin:end]


@dataclass(frozen=True, slots=True)
class Owner:
    """What a sweep looks for on behalf of one process, named `key` in the answer.

    Its descendants (when `descendants`), the members of its process group
    (when `group` and it leads its own group), of its session (when
    `session`) and every process carrying `token` (when `tokens`).
    """

    key: str
    pid: int
    pgid: int
    create_time: float
    token: str | None = None
    descendants: bool = True
    group: bool = True
    session: bool = False
    tokens: bool = True


def find_trees(owners: Sequence[Owner], *, foreign_sessions: Collection[int] = (),
               protected: Collection[int] | None = None) -> dict[str, list[psutil.Process]]:
    """The live processes that provably belong to each owner, from ONE pass over /proc.

    A pid counts only while its create_time matches (the owner's own pid) or
    it is newer than the owner (everything else): a reused pid is never
    included, and when an owner's pid now names another process its group
    and session ids prove nothing and are not used. Environments are read
    only of processes that no owner claims by descent, group or session and
    that are in none of `foreign_sessions` (sessions led by other spawns,
    whose members inherit that spawn's token, never these), each at most
    once however many owners there are. Protected pids (`protected_pids`,
    or `protected` when the caller has them) are never included; zombies
    neither.
    """
    if not owners:
        return {}
    rows = scan(min(owner.create_time for owner in owners))
    by_pid = {row.pid: row for row in rows}
    children: dict[int, list[int]] = {}
    groups: dict[int, list[int]] = {}
    sessions: dict[int, list[int]] = {}
    for row in rows:
        children.setdefault(row.ppid, []).append(row.pid)
        groups.setdefault(row.pgid, []).append(row.pid)
        sessions.setdefault(row.sid, []).append(row.pid)
    wanted: dict[str, set[int]] = {}
    claimed: set[int] = set()
    by_token: dict[bytes, list[Owner]] = {}
    for owner in owners:
        found = wanted.setdefault(owner.key, set())
        oldest = _time_to_ticks(owner.create_time) - 1
        own = by_pid.get(owner.pid)
        leader = own is not None and same_identity(owner.create_time, ticks_to_time(own.start))
        reused = own is not None and not leader
        if leader:
            found.add(owner.pid)
            if owner.descendants:
                todo = [owner.pid]
                while todo:  # descendants, through the parent links
                    for kid in children.get(todo.pop(), ()):
                        if kid not in found and by_pid[kid].start >= oldest:
                            found.add(kid)
                            todo.append(kid)
        if owner.group and owner.pgid == owner.pid and not reused:
            found.update(pid for pid in groups.get(owner.pgid, ()) if by_pid[pid].start >= oldest)
        if owner.session and not reused:
            found.update(pid for pid in sessions.get(owner.pid, ()) if by_pid[pid].start >= oldest)
        claimed |= found
        if owner.tokens and owner.token:
            by_token.setdefault(owner.token.encode(), []).append(owner)
    if protected is None:
        protected = protected_pids()
    if by_token:
        oldest_carrier = min(_time_to_ticks(o.create_time) for group in by_token.values()
                             for o in group) - 1
        for row in rows:
            if (row.zombie or row.pid in claimed or row.start < oldest_carrier
                    or row.sid in foreign_sessions or row.pid in protected):
                continue
            token = _token_of(row.pid)
            for owner in by_token.get(token, ()) if token else ():
                if row.start >= _time_to_ticks(owner.create_time) - 1:
                    wanted[owner.key].add(row.pid)
    answer: dict[str, list[psutil.Process]] = {}
    for key, pids in wanted.items():
        procs = answer.setdefault(key, [])
        for pid in pids:
            row = by_pid[pid]
            if row.zombie or pid in protected:
                continue
            try:
                proc = psutil.Process(pid)
                if not same_identity(ticks_to_time(row.start), proc.create_time()):
                    continue  # ended and reused since the scan
            except psutil.Error:
                continue
            procs.append(proc)
    return answer


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

    One owner's `find_trees` (see there): its descendants (when
    `descendants`), its process group (when `group` and it leads it), its
    session (when `session`) and every process carrying `token` (when
    `tokens`). Zombies are left out.
    """
    owner = Owner(info.id, info.pid, info.pgid, info.create_time, token,
                  descendants=descendants, group=group, session=session, tokens=tokens)
    return find_trees([owner])[info.id]


__all__ = [
    "ID_VAR",
    "Owner",
    "ParentLinks",
    "Row",
    "Usage",
    "STATE_VAR",
    "Spawned",
    "spawns_for_state",
    "CREATE_TIME_TOLERANCE",
    "TOKEN_VAR",
    "alive",
    "clock_ticks",
    "create_time_of",
    "find_trees",
    "group_exists",
    "process_alive",
    "process_tree",
    "protected_pids",
    "protected_reason",
    "same_identity",
    "scan",
    "signal_group",
    "ticks_to_time",
    "usage_of",
    "wait_gone",
]
