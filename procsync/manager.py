"""ProcessManager: spawn, kill, reap and adopt processes, and notice every exit at once.

Each process runs in its own session and process group with stdin from
/dev/null and stdout/stderr appended to its log file, so it outlives the
Python process that started it and never blocks on a pipe. It starts with
every signal at its default disposition and an empty signal mask, whatever
this process ignores or blocks (procsync.spawn: posix_spawn, no Python code
between fork and exec).

One daemon thread waits on a pidfd per process (``os.pidfd_open``), so an
exit is seen within a millisecond, for spawned children (which it reaps,
and only those: never ``waitpid(-1)``) and for adopted processes alike.

Every child's environment carries ``PROCSYNC_ID`` and a per-spawn
``PROCSYNC_SPAWN`` token; a stop kills the process group, the descendants
and any process carrying the token, so a grandchild that called setsid()
does not survive to hold the port. An adopted process's sweep stays inside
what is provably its own: its group and session (when it leads them) and its
token, never a walk of its descendants. No pid is signalled unless its
create_time still matches the one recorded, and PID 1, the host process and
its ancestors are never adopted nor signalled.

The watcher thread only notices exits, reaps and sends ``process_exit``:
its receivers run on that thread, one exit after another, so they must not
block (hand slow work to a queue). What a crashed process left behind is
stopped on a short-lived thread of its own; what a stop left behind, by
the stop itself. ``kill_many`` stops a batch with one scan of /proc.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import queue
import selectors
import signal as _signal
import subprocess
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import psutil

from . import signals
from .config import SpawnConfig, child_environ, signal_name
from .errors import (
    DuplicateProcessError,
    IdentityMismatch,
    ProcessNotFound,
    ProtectedProcessError,
    SpawnError,
)
from .locks import ordered_lock
from .logs import LogFileError, LogRotator, ensure_log_dir, open_log
from .proctree import (
    ID_VAR,
    TOKEN_VAR,
    Owner,
    alive,
    create_time_of,
    find_trees,
    group_exists,
    process_alive,
    protected_pids,
    protected_reason,
    same_identity,
    wait_gone,
)
from .records import KillResult, ProcessInfo
from .redact import shown_command
from .spawn import Child, WorkingDirectoryError, spawn

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.05  # seconds, only where pidfd_open is missing
SWEEP_ROUNDS = 5  # scans of /proc a stop makes at most for what a batch left behind
KILL_GRACE = 5.0  # seconds to wait for a process to end after SIGKILL


def default_log_dir() -> Path:
    """Where logs go when no log_dir is given: a per-user folder in the temp dir."""
    import tempfile  # here: it pulls in shutil, bz2, lzma and hashlib

    return Path(tempfile.gettempdir()) / f"procsync-{os.getuid()}" / "logs"


@dataclasses.dataclass(slots=True, eq=False)
class _Entry:
    """The manager's mutable bookkeeping for one id (never handed out)."""

    info: ProcessInfo
    config: SpawnConfig | None
    token: str | None
    child: Child | None = None  # a process we spawned (and reap); None when adopted
    pidfd: int | None = None
    stop_requested: bool = False
    ended: threading.Event = dataclasses.field(default_factory=threading.Event)
    reported: threading.Event = dataclasses.field(default_factory=threading.Event)
    swept: threading.Event = dataclasses.field(default_factory=threading.Event)
    last_signal: str | None = None


@dataclasses.dataclass(slots=True, eq=False)
class _Stop:
    """One process of a kill_many() batch: its stop signal and its own deadline."""

    entry: _Entry
    signal: _signal.Signals
    deadline: float
    result: KillResult | None = None  # set when it was refused (protected, not ours)


class ProcessManager:
    """Spawns and tracks processes by id; thread-safe."""

    def __init__(self, log_dir: str | os.PathLike[str] | None = None) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else default_log_dir()
        self._lock = ordered_lock("manager")
        self._entries: dict[str, _Entry] = {}
        self._spawning: set[str] = set()
        self._pending: list[_Entry] = []  # entries waiting for the watcher to register them
        self._polled: list[_Entry] = []  # entries without a pidfd
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread: threading.Thread | None = None
        self._rotator = LogRotator(self._rotation_targets, on_missing=self._log_missing)
        # crashed spawns whose strays (processes that left the group with the spawn's
        # token) the `procsync-sweep` thread looks for, one after another
        self._strays: queue.SimpleQueue[_Entry | None] = queue.SimpleQueue()
        self._sweeper: threading.Thread | None = None
        self._targets: list[tuple[str, int, int]] | None = None  # the rotator's, until entries change
        self._closed = False

    # ----------------------------------------------------------------- spawn

    def spawn(self, config: SpawnConfig, *, announce: bool = True) -> ProcessInfo:
        """Start `config.command` under `config.id`; DuplicateProcessError if it runs already.

        With `announce=False` the caller sends process_started later (`announce(info)`),
        once it holds no lock: the orchestrator spawns inside its store claim.
        """
        with self._lock:
            current = self._entries.get(config.id)
            if config.id in self._spawning or (current is not None and not current.ended.is_set()):
                raise DuplicateProcessError(config.id, current.info.pid if current else None)
            self._spawning.add(config.id)
        try:
            entry = self._start(config)
        finally:
            with self._lock:
                self._spawning.discard(config.id)
        self._ensure_thread()
        self._watch(entry)
        if announce:
            self.announce(entry.info)
        return entry.info

    def announce(self, info: ProcessInfo) -> None:
        """Send process_started for `info`, a process `spawn(..., announce=False)` started."""
        signals.send(signals.process_started, self, id=info.id, pid=info.pid, info=info)

    def _start(self, config: SpawnConfig) -> _Entry:
        try:
            argv = config.argv()
        except ValueError as err:
            self._spawn_failed(config, str(err))
        if config.cwd is not None and not os.path.isdir(config.cwd):
            self._spawn_failed(config, f"working directory {config.cwd!r} does not exist")
        log_path = Path(self.log_file_for(config.id, config.log_file))
        token = os.urandom(16).hex()
        env = child_environ(config.env)  # procsync's own secrets stay in procsync
        env[ID_VAR] = config.id
        env[TOKEN_VAR] = token
        try:
            ensure_log_dir(log_path.parent)  # 0700 when we create it
            log_fd = open_log(log_path)  # never through a symbolic link
        except LogFileError as err:
            self._spawn_failed(config, err.strerror or str(err))
        except OSError as err:
            self._spawn_failed(config, f"cannot open log file {str(log_path)!r}: {err.strerror}")
        try:
            child = spawn(argv, env=env, cwd=config.cwd, output=log_fd)
        except WorkingDirectoryError as err:
            if err.errno == errno.ENOENT:
                self._spawn_failed(config, f"working directory {config.cwd!r} does not exist")
            self._spawn_failed(config, f"cannot enter working directory {config.cwd!r}: "
                                       f"{(err.strerror or str(err)).lower()}")
        except FileNotFoundError as err:
            missing = err.filename or argv[0]
            self._spawn_failed(config, f"executable {missing!r} not found")
        except PermissionError as err:
            self._spawn_failed(config, f"permission denied running {err.filename or argv[0]!r}")
        except OSError as err:
            if err.errno == errno.ENOEXEC:
                self._spawn_failed(config, f"{argv[0]!r} is not an executable program (exec format error)")
            self._spawn_failed(config, f"{err.strerror or err} ({argv[0]!r})")
        except ValueError as err:  # a NUL byte or an illegal variable name
            self._spawn_failed(config, str(err))
        finally:
            os.close(log_fd)
        create_time = create_time_of(child.pid)  # one read of /proc/<pid>/stat
        if create_time is None:  # already gone and reaped by someone else: a best guess
            create_time = time.time()
        info = ProcessInfo(
            id=config.id,
            pid=child.pid,
            pgid=child.pid,
            command=shown_command(config.command),  # secrets masked
            cwd=config.cwd,
            start_time=datetime.now(UTC),
            create_time=create_time,
            status="running",
            ports=tuple(config.ports),
            log_file=str(log_path),
        )
        entry = _Entry(info=info, config=config, token=token, child=child)
        with self._lock:
            self._entries[config.id] = entry
            self._targets = None
        return entry

    def _spawn_failed(self, config: SpawnConfig, problem: str) -> NoReturn:
        error = SpawnError(config.id, problem)
        signals.send(
            signals.process_error, self, id=config.id, pid=None, error=str(error),
            command=shown_command(config.command),  # secrets masked
        )
        raise error

    # ----------------------------------------------------------------- adopt

    def adopt(
        self,
        id: str,
        pid: int,
        create_time: float | None = None,
        *,
        command: str | None = None,
        cwd: str | None = None,
        ports: tuple[int, ...] | list[int] = (),
        log_file: str | None = None,
        stop_signal: str = "SIGTERM",
        stop_timeout: float = 10.0,
        start_time: datetime | None = None,
    ) -> ProcessInfo:
        """Track a live process this manager did not spawn (e.g. after a restart of the host).

        `create_time` is the proof that `pid` is the process meant. Without one,
        only a process that carries a procsync spawn marker (``PROCSYNC_SPAWN``
        in its environment: a process some procsync spawned) is adopted.

        Raises ProcessNotFound when `pid` is not alive; ProtectedProcessError
        (an IdentityMismatch) for PID 1, this process or one of its ancestors;
        IdentityMismatch when its create_time differs from `create_time`, or
        when `create_time` is None and it carries no spawn marker;
        DuplicateProcessError when `id` runs.
        """
        why = protected_reason(pid)
        if why is not None:
            raise ProtectedProcessError(id, pid, why)
        try:
            proc = psutil.Process(pid)
            actual = proc.create_time()
            if proc.status() == psutil.STATUS_ZOMBIE:
                raise ProcessNotFound(id, f"live process with pid {pid} for")
            pgid = os.getpgid(pid)
            try:
                token = proc.environ().get(TOKEN_VAR)
            except psutil.AccessDenied:
                token = None
            if command is None:
                command = shown_command(proc.cmdline())
        except (psutil.NoSuchProcess, ProcessLookupError):
            raise ProcessNotFound(id, f"live process with pid {pid} for") from None
        if create_time is None and not token:
            raise IdentityMismatch(id, pid, "has no create time to prove it is the process meant and "
                                   "carries no procsync spawn marker; not adopted")
        if create_time is not None and not same_identity(create_time, actual):
            raise IdentityMismatch(id, pid, f"was created at {actual}, not at the recorded {create_time}")
        config = SpawnConfig(
            id=id, command=command or "?", cwd=cwd, ports=tuple(ports), log_file=log_file,
            stop_signal=stop_signal, stop_timeout=stop_timeout,
        )
        info = ProcessInfo(
            id=id,
            pid=pid,
            pgid=pgid,
            command=command or "?",
            cwd=cwd,
            start_time=start_time or datetime.fromtimestamp(actual, UTC),
            create_time=actual,
            status="running",
            ports=tuple(config.ports),
            log_file=log_file,
            adopted=True,
        )
        entry = _Entry(info=info, config=config, token=token)
        with self._lock:
            current = self._entries.get(id)
            if id in self._spawning or (current is not None and not current.ended.is_set()):
                raise DuplicateProcessError(id, current.info.pid if current else None)
            self._entries[id] = entry
            self._targets = None
        self._ensure_thread()
        self._watch(entry)
        return info

    # ------------------------------------------------------------------ kill

    def kill(self, id: str, timeout: float | None = None) -> KillResult:
        """Stop `id`: stop signal to its group, SIGKILL after the timeout, then its leftovers.

        A batch of one (`kill_many`): one pass over /proc once the process has
        ended finds what it left behind (descendants, group, session, token).
        """
        return self.kill_many([id], timeout=timeout)[id]

    def kill_many(self, ids: Iterable[str], timeout: float | None = None) -> dict[str, KillResult]:
        """Stop several processes at once; one KillResult per id (unknown ids included).

        Each gets its stop signal (to its process group) at once; they are
        waited for together (the watcher's pidfds tell when each ends), each
        is SIGKILLed after its own stop timeout (`timeout` overrides them
        all), and then ONE scan of /proc finds what the whole batch left
        behind (members of their groups and sessions, processes carrying
        their spawn tokens), which gets the stop signal and, past its
        deadline, SIGKILL. The rules of a single stop hold for each: a pid
        whose create_time changed is never signalled, protected pids never,
        and nothing outside what provably belongs to these processes.
        """
        ids = list(dict.fromkeys(ids))
        results: dict[str, KillResult] = {}
        entries: list[_Entry] = []
        with self._lock:
            for id in ids:
                entry = self._entries.get(id)
                if entry is None:
                    results[id] = KillResult(False, id, None, None, None, f"unknown process {id!r}")
                elif entry.ended.is_set():
                    info = entry.info
                    results[id] = KillResult(False, id, info.pid, None, info.exit_code,
                                             f"process {id!r} is not running ({info.status})")
                else:
                    entry.stop_requested = True
                    entries.append(entry)
        batch: list[_Stop] = []
        try:
            protected = protected_pids()  # once for the batch: a few small reads
            started = time.monotonic()
            for entry in entries:
                stop = self._prepare_stop(entry, timeout, started, protected)
                if stop.result is not None:
                    results[entry.info.id] = stop.result
                    continue
                self._signal_leader(entry, stop.signal, protected)
                entry.last_signal = stop.signal.name
                batch.append(stop)
            for stop in sorted(batch, key=lambda s: s.deadline):  # all signalled: wait together
                if not self._await_end(stop.entry, stop.deadline):
                    self._signal_leader(stop.entry, _signal.SIGKILL, protected)
                    stop.entry.last_signal = "SIGKILL"
            self._sweep_batch(batch, protected)
            for stop in batch:
                entry = stop.entry
                self._await_end(entry, time.monotonic() + KILL_GRACE)
                if not entry.ended.is_set():
                    log.warning("process %r (pid %s) did not end after SIGKILL", entry.info.id,
                                entry.info.pid)
        finally:
            for entry in entries:
                entry.swept.set()
        if threading.current_thread() is not self._thread:
            for stop in batch:
                stop.entry.reported.wait(KILL_GRACE)  # process_exit delivered before we answer
        for stop in batch:
            info = stop.entry.info
            results[info.id] = KillResult(
                success=True, id=info.id, pid=info.pid, signal=stop.entry.last_signal,
                exit_code=info.exit_code,
                message=f"stopped {info.id!r} (pid {info.pid}) with {stop.entry.last_signal}",
            )
        return {id: results[id] for id in ids}

    def send_signal(self, id: str, sig: int) -> int | None:
        """Send `sig` to the process group `id` leads (identity checked); its pid, or None when
        `id` has no live process of ours. For reloads (SIGHUP), not for stopping."""
        with self._lock:
            entry = self._entries.get(id)
        if entry is None or entry.ended.is_set() or not self._verify(entry):
            return None
        self._signal_leader(entry, sig, protected_pids())
        return entry.info.pid

    def kill_all(self) -> list[KillResult]:
        """Kill every running process, all at once (`kill_many`)."""
        with self._lock:
            ids = [i for i, e in self._entries.items() if not e.ended.is_set()]
        if not ids:
            return []
        return list(self.kill_many(ids).values())

    def _prepare_stop(self, entry: _Entry, timeout: float | None, now: float,
                      protected: dict[int, str]) -> _Stop:
        """The stop of `entry`, or a refusal (protected pid, pid no longer ours) in `result`."""
        info, config = entry.info, entry.config
        stop_timeout = timeout if timeout is not None else (config.stop_timeout if config else 10.0)
        sig = _signal.Signals[signal_name(config.stop_signal if config else "SIGTERM", info.id)]
        stop = _Stop(entry, sig, now + stop_timeout)
        why = protected_reason(info.pid, protected)
        if why is not None:
            self._mark_ended(entry, None)
            stop.result = KillResult(False, info.id, info.pid, None, None,
                                     f"pid {info.pid} is {why}; procsync never signals it")
        elif not self._verify(entry):
            self._mark_ended(entry, None)
            stop.result = KillResult(False, info.id, info.pid, None, None,
                                     f"pid {info.pid} is no longer the process started for "
                                     f"{info.id!r}; not signalled")
        return stop

    def _await_end(self, entry: _Entry, deadline: float) -> bool:
        """Wait until `entry` has ended or `deadline` (monotonic) passed; True if it ended."""
        while True:
            self._check_unwatched(entry)
            left = deadline - time.monotonic()
            if left <= 0:
                return entry.ended.is_set()
            if entry.ended.wait(min(0.05, left)):
                return True

    def _check_unwatched(self, entry: _Entry) -> None:
        """After close() nobody watches adopted processes: notice their end here."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        if not entry.ended.is_set() and not self._still_alive(entry):
            self._mark_ended(entry, entry.child.returncode if entry.child is not None else None)
            entry.swept.set()
            entry.reported.set()

    def _verify(self, entry: _Entry) -> bool:
        """True when the recorded pid is still the process we recorded."""
        if entry.child is not None and entry.child.returncode is None:
            return True  # our unreaped child: its pid cannot have been reused
        actual = create_time_of(entry.info.pid)
        return actual is not None and same_identity(entry.info.create_time, actual)

    def _signal_leader(self, entry: _Entry, sig: int, protected: dict[int, str]) -> None:
        """`sig` to the process group `entry` leads (else to the process alone), identity checked."""
        info = entry.info
        if entry.ended.is_set() or protected_reason(info.pid, protected) is not None:
            return
        if not self._verify(entry):
            return
        if info.pgid == info.pid and info.pgid != os.getpgid(0):
            try:
                os.killpg(info.pgid, sig)
                return
            except (ProcessLookupError, PermissionError):
                pass
        try:
            proc = psutil.Process(info.pid)
            if same_identity(info.create_time, proc.create_time()):
                proc.send_signal(sig)
        except psutil.Error:
            pass

    def _owner(self, entry: _Entry, *, group: bool = True, tokens: bool = True) -> Owner:
        """What a sweep of `entry` may signal (protected pids are never in it).

        A process spawned here: its descendants, group, session and token. An
        adopted one: only what provably is that server's, its token and, when
        it leads them, its group and (with a token: a procsync spawn) session;
        never a walk of the descendants of a pid someone else started.
        """
        info = entry.info
        if entry.child is not None:
            return Owner(info.id, info.pid, info.pgid, info.create_time, entry.token,
                         group=group, session=group, tokens=tokens)
        return Owner(info.id, info.pid, info.pgid, info.create_time, entry.token,
                     descendants=False, group=group, session=group and entry.token is not None,
                     tokens=tokens)

    def _foreign_sessions(self, mine: set[str]) -> set[int]:
        """Sessions led by our other running spawns: none of their members carries our tokens."""
        with self._lock:
            return {e.info.pid for e in self._entries.values()
                    if e.child is not None and not e.ended.is_set() and e.info.id not in mine}

    def _trees(self, owners: list[Owner], protected: dict[int, str] | None = None
               ) -> dict[str, list[psutil.Process]]:
        foreign = self._foreign_sessions({owner.key for owner in owners})
        return find_trees(owners, foreign_sessions=foreign, protected=protected)

    def _sweep_batch(self, batch: list[_Stop], protected: dict[int, str]) -> None:
        """Stop what the batch left behind: one scan of /proc per round, the stop signal
        first and SIGKILL once a process's deadline has passed, until nothing is left."""
        todo = list(batch)
        for _ in range(SWEEP_ROUNDS):
            if not todo:
                return
            trees = self._trees([self._owner(stop.entry) for stop in todo], protected)
            todo = [stop for stop in todo if trees.get(stop.entry.info.id)]
            if not todo:
                return
            now = time.monotonic()
            signalled: list[psutil.Process] = []
            for stop in todo:
                late = now >= stop.deadline
                if late:
                    stop.entry.last_signal = "SIGKILL"
                for proc in trees[stop.entry.info.id]:
                    try:
                        proc.send_signal(_signal.SIGKILL if late else stop.signal)  # psutil
                    except psutil.Error:  # refuses a pid that was reused
                        pass
                    signalled.append(proc)
            waits = [stop.deadline - now for stop in todo if now < stop.deadline]
            wait_gone(signalled, min(waits) if waits else KILL_GRACE / 5)

    # ------------------------------------------------------------- queries

    def get_process(self, id: str) -> ProcessInfo | None:
        """The last known ProcessInfo for `id` (kept after it ends until spawned again)."""
        with self._lock:
            entry = self._entries.get(id)
            return entry.info if entry else None

    def get_all_processes(self) -> list[ProcessInfo]:
        """Every tracked id's last ProcessInfo, running or ended."""
        with self._lock:
            return [e.info for e in self._entries.values()]

    def is_running(self, id: str) -> bool:
        """True while `id` runs."""
        with self._lock:
            entry = self._entries.get(id)
            return entry is not None and not entry.ended.is_set()

    def wait(self, id: str, timeout: float | None = None) -> ProcessInfo | None:
        """Block until `id` has ended and its leftovers are cleaned up; None on timeout."""
        with self._lock:
            entry = self._entries.get(id)
        if entry is None:
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        if not entry.ended.wait(timeout):
            return None
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not entry.swept.wait(remaining):
            return None
        return entry.info

    def forget(self, id: str) -> None:
        """Drop the record of an ended process."""
        with self._lock:
            entry = self._entries.get(id)
            if entry is not None and entry.ended.is_set():
                del self._entries[id]

    def log_file_for(self, id: str, log_file: str | None = None) -> str:
        """Where a spawn of `id` logs: its own `log_file`, else `<log_dir>/<id>.log`."""
        return log_file or os.path.join(self.log_dir, f"{id}.log")

    def log_path(self, id: str) -> str | None:
        """The log file of `id`, if known."""
        info = self.get_process(id)
        return info.log_file if info else None

    def close(self) -> None:
        """Stop watching; processes keep running. Safe to call twice.

        Children this manager spawned are still reaped when they end (by the
        watcher thread, which then sends nothing and exits once none is left),
        so closing never leaves a zombie behind.
        """
        self._rotator.stop()
        if self._sweeper is not None:
            self._strays.put(None)  # it ends after the strays already queued
        with self._lock:
            self._closed = True
            live_children = any(e.child is not None and not e.ended.is_set() for e in self._entries.values())
        if not live_children:
            self._stop.set()
        self._wake()
        thread = self._thread
        if not live_children and thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    # ------------------------------------------------------------- watcher

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set() or self._closed:
                return
            self._thread = threading.Thread(target=self._run, name="procsync-watcher", daemon=True)
            self._thread.start()
        self._rotator.start()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def _watch(self, entry: _Entry) -> None:
        """Open a pidfd for `entry` and hand it to the watcher thread (runs on the caller's)."""
        try:
            entry.pidfd = os.pidfd_open(entry.info.pid)
        except ProcessLookupError:
            entry.pidfd = None  # already gone: the poll path reports it at once
        except (AttributeError, OSError):
            entry.pidfd = None
        if entry.pidfd is not None and entry.child is None:
            actual = create_time_of(entry.info.pid)  # the pidfd names this pid's process now
            if actual is None or not same_identity(entry.info.create_time, actual):
                os.close(entry.pidfd)  # gone (or reused) before it was opened: poll decides
                entry.pidfd = None
        with self._lock:
            self._pending.append(entry)
        self._wake()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                pending, self._pending = self._pending, []
                polled = bool(self._polled)
            for entry in pending:
                if entry.pidfd is not None:
                    self._selector.register(entry.pidfd, selectors.EVENT_READ, entry)
                else:
                    with self._lock:
                        self._polled.append(entry)
                    polled = True
            try:
                events = self._selector.select(POLL_INTERVAL if polled else None)
            except OSError:
                log.exception("watcher select failed")
                events = []
            for key, _ in events:
                if key.data is None:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                self._exited(key.data)
            if polled:
                self._poll_fallback()
            if self._closed and not self._live_children():
                break
        self._selector.close()

    def _live_children(self) -> bool:
        with self._lock:
            return any(e.child is not None and not e.ended.is_set() for e in self._entries.values())

    def _poll_fallback(self) -> None:
        with self._lock:
            polled = list(self._polled)
        for entry in polled:
            if not self._still_alive(entry):
                with self._lock:
                    if entry in self._polled:
                        self._polled.remove(entry)
                self._finish(entry)

    def _still_alive(self, entry: _Entry) -> bool:
        if entry.child is not None:
            return entry.child.poll() is None
        return process_alive(entry.info.pid, entry.info.create_time)

    def _exited(self, entry: _Entry) -> None:
        """A pidfd became readable: the process ended."""
        if entry.child is not None and entry.child.poll() is None:
            try:  # readable pidfd but not yet waitable: wait briefly (never blocks long)
                entry.child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                return
        # an adopted process's pidfd was checked against its create_time when it was opened:
        # readable now means that very process ended (no /proc reads on this thread)
        assert entry.pidfd is not None
        self._selector.unregister(entry.pidfd)
        os.close(entry.pidfd)
        entry.pidfd = None
        self._finish(entry)

    def _finish(self, entry: _Entry) -> None:
        code = entry.child.returncode if entry.child is not None else None
        info = self._mark_ended(entry, code)
        sig = _signal.Signals(-code).name if code is not None and code < 0 else None
        if self._closed:
            entry.swept.set()
            entry.reported.set()
            return
        if entry.stop_requested:
            pass  # kill_many() sweeps what it left behind and then sets `swept`
        elif entry.child is None and not entry.token:
            entry.swept.set()  # adopted, not a procsync spawn: nothing is provably its
        elif info.pgid == info.pid and group_exists(info.pgid):
            # a crash that left processes in its group: they are stopped (which waits) on
            # a thread of their own, never here
            threading.Thread(target=self._sweep_after_exit, args=(entry,),
                             name="procsync-leftovers", daemon=True).start()
        else:  # a crash with an empty group, the common case: a restart need not wait
            entry.swept.set()
            if entry.token:
                self._sweep_strays(entry)
        try:
            signals.send(
                signals.process_exit, self, id=info.id, pid=info.pid, exit_code=code, signal=sig,
                expected=entry.stop_requested, info=info,
            )
        finally:
            entry.reported.set()

    def _mark_ended(self, entry: _Entry, code: int | None) -> ProcessInfo:
        if code is None:
            status = "exited" if entry.stop_requested else "crashed"
        else:
            status = "exited" if code == 0 else "crashed"
        with self._lock:
            entry.info = dataclasses.replace(entry.info, status=status, exit_code=code)
            entry.ended.set()
            self._targets = None
            return entry.info

    def _sweep_strays(self, entry: _Entry) -> None:
        """Queue the crashed `entry` for the `procsync-sweep` thread (started on first use)."""
        self._strays.put(entry)
        if self._sweeper is None:
            self._sweeper = threading.Thread(target=self._sweep_loop, name="procsync-sweep",
                                             daemon=True)
            self._sweeper.start()

    def _sweep_loop(self) -> None:
        while (entry := self._strays.get()) is not None:
            try:
                self._stop_leftovers(entry, self._trees([self._owner(entry, group=False)])[entry.info.id])
            except Exception:
                log.exception("cleaning up after %r failed", entry.info.id)

    def _sweep_after_exit(self, entry: _Entry) -> None:
        """After the leader crashed, stop what it left behind: no stray grandchild keeps a port.

        The group is checked first with one killpg(0), the common case: when
        it is empty `swept` is set at once, so that a restart need not wait,
        and only processes that left the group carrying the spawn's token
        are looked for; otherwise one scan finds the whole tree.
        """
        try:
            info = entry.info
            if info.pgid == info.pid and group_exists(info.pgid):
                self._stop_leftovers(entry, self._trees([self._owner(entry)])[info.id])
            else:
                entry.swept.set()
                if entry.token:
                    self._stop_leftovers(entry, self._trees([self._owner(entry, group=False)])[info.id])
        except Exception:
            log.exception("cleaning up after %r failed", entry.info.id)
        finally:
            entry.swept.set()

    def _stop_leftovers(self, entry: _Entry, leftovers: list[psutil.Process]) -> None:
        leftovers = [p for p in leftovers if alive(p)]
        if not leftovers:
            return
        config = entry.config
        sig = _signal.Signals[config.stop_signal if config else "SIGTERM"]
        log.info("process %r ended; stopping %d leftover process(es)", entry.info.id, len(leftovers))
        for proc in leftovers:
            try:
                proc.send_signal(sig)
            except psutil.Error:
                pass
        wait_gone(leftovers, config.stop_timeout if config else 10.0)
        for proc in leftovers:
            if alive(proc):
                try:
                    proc.kill()
                except psutil.Error:
                    pass
        wait_gone(leftovers, 5.0)

    def _rotation_targets(self) -> list[tuple[str, int, int]]:
        """(path, max_bytes, backups) of every live process's log, for the rotator.

        Rebuilt only after a spawn, an adoption or an exit, not on every look.
        """
        with self._lock:
            if self._targets is None:
                self._targets = [
                    (e.info.log_file, e.config.log_max_bytes, e.config.log_backups)
                    for e in self._entries.values()
                    if not e.ended.is_set() and e.info.log_file and e.config is not None
                ]
            return self._targets

    def _log_missing(self, path: str) -> None:
        """The rotator found the log `path` of a live process deleted: say so (once per loss)."""
        with self._lock:
            owners = [(e.info.id, e.info.pid) for e in self._entries.values()
                      if not e.ended.is_set() and e.info.log_file == path]
        for id, pid in owners:
            log.warning("server %r (pid %s) keeps running, but its log file %s was deleted: "
                        "its output is lost until it is restarted (a start creates the file "
                        "and its folder again)", id, pid, path)

    def __del__(self) -> None:  # pragma: no cover - best effort
        for fd in (getattr(self, "_wake_r", None), getattr(self, "_wake_w", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass


__all__ = ["ID_VAR", "TOKEN_VAR", "ProcessManager", "default_log_dir", "same_identity"]
