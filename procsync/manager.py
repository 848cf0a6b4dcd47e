"""ProcessManager: spawn, kill, reap and adopt processes, and notice every exit at once.

Each process runs in its own session and process group with stdin from
/dev/null and stdout/stderr appended to its log file, so it outlives the
Python process that started it and never blocks on a pipe. One daemon
thread waits on a pidfd per process (``os.pidfd_open``), so an exit is
seen within a millisecond, for spawned children (which it reaps, and only
those: never ``waitpid(-1)``) and for adopted processes alike.

Every child's environment carries ``PROCSYNC_ID`` and a per-spawn
``PROCSYNC_SPAWN`` token; a stop kills the process group, the descendants
and any process carrying the token, so a grandchild that called setsid()
does not survive to hold the port. An adopted process's sweep stays inside
what is provably its own: its group and session (when it leads them) and its
token, never a walk of its descendants. No pid is signalled unless its
create_time still matches the one recorded, and PID 1, the host process and
its ancestors are never adopted nor signalled.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import selectors
import signal as _signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
from .logs import LogFileError, LogRotator, ensure_log_dir, open_log
from .proctree import (
    ID_VAR,
    TOKEN_VAR,
    alive,
    group_exists,
    process_alive,
    process_tree,
    protected_reason,
    same_identity,
    wait_gone,
)
from .records import KillResult, ProcessInfo
from .redact import shown_command

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.05  # seconds, only where pidfd_open is missing
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
    popen: subprocess.Popen[bytes] | None = None
    pidfd: int | None = None
    stop_requested: bool = False
    ended: threading.Event = dataclasses.field(default_factory=threading.Event)
    reported: threading.Event = dataclasses.field(default_factory=threading.Event)
    swept: threading.Event = dataclasses.field(default_factory=threading.Event)
    last_signal: str | None = None


class ProcessManager:
    """Spawns and tracks processes by id; thread-safe."""

    def __init__(self, log_dir: str | os.PathLike[str] | None = None) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else default_log_dir()
        self._lock = threading.Lock()
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
        self._rotator = LogRotator(self._rotation_targets)
        self._missing_logs: set[tuple[str, int]] = set()  # (id, pid) whose log was deleted, warned
        self._closed = False

    # ----------------------------------------------------------------- spawn

    def spawn(self, config: SpawnConfig) -> ProcessInfo:
        """Start `config.command` under `config.id`; DuplicateProcessError if it runs already."""
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
        signals.send(signals.process_started, self, id=config.id, pid=entry.info.pid, info=entry.info)
        return entry.info

    def _start(self, config: SpawnConfig) -> _Entry:
        try:
            argv = config.argv()
        except ValueError as err:
            self._spawn_failed(config, str(err))
        if config.cwd is not None and not os.path.isdir(config.cwd):
            self._spawn_failed(config, f"working directory {config.cwd!r} does not exist")
        log_path = Path(config.log_file) if config.log_file else self.log_dir / f"{config.id}.log"
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
            popen = subprocess.Popen(
                argv,
                cwd=config.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError as err:
            missing = err.filename or argv[0]
            self._spawn_failed(config, f"executable {missing!r} not found")
        except PermissionError as err:
            self._spawn_failed(config, f"permission denied running {err.filename or argv[0]!r}")
        except OSError as err:
            if err.errno == errno.ENOEXEC:
                self._spawn_failed(config, f"{argv[0]!r} is not an executable program (exec format error)")
            self._spawn_failed(config, f"{err.strerror or err} ({argv[0]!r})")
        finally:
            os.close(log_fd)
        try:
            create_time = psutil.Process(popen.pid).create_time()
        except psutil.Error:  # already gone and reaped by someone else: a best guess
            create_time = time.time()
        info = ProcessInfo(
            id=config.id,
            pid=popen.pid,
            pgid=popen.pid,
            command=shown_command(config.command),  # secrets masked
            cwd=config.cwd,
            start_time=datetime.now(UTC),
            create_time=create_time,
            status="running",
            ports=tuple(config.ports),
            log_file=str(log_path),
        )
        entry = _Entry(info=info, config=config, token=token, popen=popen)
        with self._lock:
            self._entries[config.id] = entry
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
        self._ensure_thread()
        self._watch(entry)
        return info

    # ------------------------------------------------------------------ kill

    def kill(self, id: str, timeout: float | None = None) -> KillResult:
        """Stop `id`: stop signal to its group and descendants, SIGKILL after the timeout."""
        with self._lock:
            entry = self._entries.get(id)
            if entry is None:
                return KillResult(False, id, None, None, None, f"unknown process {id!r}")
            if entry.ended.is_set():
                info = entry.info
                return KillResult(False, id, info.pid, None, info.exit_code,
                                  f"process {id!r} is not running ({info.status})")
            entry.stop_requested = True
        info = entry.info
        config = entry.config
        stop_timeout = timeout if timeout is not None else (config.stop_timeout if config else 10.0)
        stop_sig = _signal.Signals[signal_name(config.stop_signal if config else "SIGTERM", id)]
        why = protected_reason(info.pid)
        if why is not None:
            self._mark_ended(entry, None)
            return KillResult(False, id, info.pid, None, None,
                              f"pid {info.pid} is {why}; procsync never signals it")
        if not self._verify(entry):
            self._mark_ended(entry, None)
            return KillResult(False, id, info.pid, None, None,
                              f"pid {info.pid} is no longer the process started for {id!r}; not signalled")
        deadline = time.monotonic() + stop_timeout
        targets = self._tree(entry)
        self._signal_all(entry, targets, stop_sig)
        entry.last_signal = stop_sig.name
        while time.monotonic() < deadline:
            self._check_unwatched(entry)
            if entry.ended.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
                targets = [p for p in self._tree(entry) if alive(p)]
                if not targets:
                    break
                wait_gone(targets, min(0.1, max(0.0, deadline - time.monotonic())))
        if not entry.ended.is_set() or any(alive(p) for p in self._tree(entry)):
            self._sweep(entry, _signal.SIGKILL)
            entry.last_signal = "SIGKILL"
        self._check_unwatched(entry)
        if not entry.ended.wait(5.0):
            log.warning("process %r (pid %s) did not end after SIGKILL", id, info.pid)
        entry.swept.wait(5.0)
        if threading.current_thread() is not self._thread:
            entry.reported.wait(5.0)  # process_exit delivered before kill() answers
        final = entry.info
        return KillResult(
            success=True, id=id, pid=info.pid, signal=entry.last_signal, exit_code=final.exit_code,
            message=f"stopped {id!r} (pid {info.pid}) with {entry.last_signal}",
        )

    def kill_all(self) -> list[KillResult]:
        """Kill every running process in parallel."""
        with self._lock:
            ids = [i for i, e in self._entries.items() if not e.ended.is_set()]
        if not ids:
            return []
        with ThreadPoolExecutor(max_workers=min(64, len(ids)), thread_name_prefix="procsync-kill") as pool:
            return list(pool.map(self.kill, ids))

    def _check_unwatched(self, entry: _Entry) -> None:
        """After close() nobody watches adopted processes: notice their end here."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        if not entry.ended.is_set() and not self._still_alive(entry):
            self._mark_ended(entry, entry.popen.returncode if entry.popen is not None else None)
            entry.swept.set()
            entry.reported.set()

    def _verify(self, entry: _Entry) -> bool:
        """True when the recorded pid is still the process we recorded."""
        if entry.popen is not None and entry.popen.returncode is None:
            return True  # our unreaped child: its pid cannot have been reused
        try:
            return same_identity(entry.info.create_time, psutil.Process(entry.info.pid).create_time())
        except psutil.Error:
            return False

    def _tree(self, entry: _Entry, *, group: bool = True, tokens: bool = True) -> list[psutil.Process]:
        """What a stop or a cleanup of `entry` may signal (protected pids are never in it).

        A process spawned here: its descendants, group, session and token. An
        adopted one: only what provably is that server's, its token and, when
        it leads them, its group and (with a token: a procsync spawn) session;
        never a walk of the descendants of a pid someone else started.
        """
        if entry.popen is not None:
            return process_tree(entry.info, entry.token, group=group, tokens=tokens, session=group)
        return process_tree(entry.info, entry.token, group=group, tokens=tokens, descendants=False,
                            session=group and entry.token is not None)

    def _signal_all(self, entry: _Entry, targets: list[psutil.Process], sig: int) -> None:
        info = entry.info
        if (info.pgid == info.pid and not entry.ended.is_set() and self._verify(entry)
                and protected_reason(info.pgid) is None and info.pgid != os.getpgid(0)):
            try:
                os.killpg(info.pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for proc in targets:
            try:
                proc.send_signal(sig)  # psutil refuses a pid that was reused
            except psutil.Error:
                pass

    def _sweep(self, entry: _Entry, sig: int, rounds: int = 5) -> None:
        """Signal the whole tree until none of it is left alive (zombies count as dead)."""
        for _ in range(rounds):
            targets = [p for p in self._tree(entry) if alive(p)]
            if not targets:
                return
            self._signal_all(entry, targets, sig)
            wait_gone(targets, 1.0)

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
        with self._lock:
            self._closed = True
            live_children = any(e.popen is not None and not e.ended.is_set() for e in self._entries.values())
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
        """Open a pidfd for `entry` and hand it to the watcher thread."""
        try:
            entry.pidfd = os.pidfd_open(entry.info.pid)
        except ProcessLookupError:
            entry.pidfd = None  # already gone: the poll path reports it at once
        except (AttributeError, OSError):
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
            return any(e.popen is not None and not e.ended.is_set() for e in self._entries.values())

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
        if entry.popen is not None:
            return entry.popen.poll() is None
        return process_alive(entry.info.pid, entry.info.create_time)

    def _exited(self, entry: _Entry) -> None:
        """A pidfd became readable: the process ended."""
        if entry.popen is not None and entry.popen.poll() is None:
            try:  # readable pidfd but not yet waitable: wait briefly (never blocks long)
                entry.popen.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                return
        if entry.popen is None and self._still_alive(entry):
            return
        assert entry.pidfd is not None
        self._selector.unregister(entry.pidfd)
        os.close(entry.pidfd)
        entry.pidfd = None
        self._finish(entry)

    def _finish(self, entry: _Entry) -> None:
        code = entry.popen.returncode if entry.popen is not None else None
        info = self._mark_ended(entry, code)
        sig = _signal.Signals(-code).name if code is not None and code < 0 else None
        if self._closed:
            entry.swept.set()
            entry.reported.set()
            return
        threading.Thread(target=self._sweep_after_exit, args=(entry,), name="procsync-sweep",
                         daemon=True).start()
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
            return entry.info

    def _sweep_after_exit(self, entry: _Entry) -> None:
        """After the leader ends, stop what it left behind: no stray grandchild keeps a port.

        The group is checked first with one killpg(0), the common case, and
        `swept` is set as soon as the group is empty so that a restart need not
        wait; processes that left the group but carry the spawn's token are
        stopped next.
        """
        try:
            if entry.stop_requested:
                return  # kill() escalates itself
            if entry.popen is None and not entry.token:
                return  # adopted, not a procsync spawn: with its process gone, nothing is provably its
            info = entry.info
            group_left = info.pgid == info.pid and group_exists(info.pgid)
            if group_left:
                self._stop_leftovers(entry, self._tree(entry, tokens=False))
            entry.swept.set()
            if entry.token:
                self._stop_leftovers(entry, self._tree(entry, group=False))
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
        """The logs of live processes, for the rotator; warns once about a log deleted under one."""
        with self._lock:
            entries = [e for e in self._entries.values() if not e.ended.is_set()]
        targets, live = [], set()
        for e in entries:
            path, config, key = e.info.log_file, e.config, (e.info.id, e.info.pid)
            if not path or config is None:
                continue
            targets.append((path, config.log_max_bytes, config.log_backups))
            live.add(key)
            if key not in self._missing_logs and not os.path.lexists(path):
                self._missing_logs.add(key)
                log.warning("server %r (pid %s) keeps running, but its log file %s was deleted: "
                            "its output is lost until it is restarted (a start creates the file "
                            "and its folder again)", key[0], key[1], path)
        self._missing_logs &= live
        return targets

    def __del__(self) -> None:  # pragma: no cover - best effort
        for fd in (getattr(self, "_wake_r", None), getattr(self, "_wake_w", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass


__all__ = ["ID_VAR", "TOKEN_VAR", "ProcessManager", "default_log_dir", "same_identity"]
