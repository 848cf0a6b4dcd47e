"""ProcessMonitor: a daemon thread that checks every tracked process on a fixed interval.

One tick looks at every process the manager tracks: is it alive (pid and
create_time; a zombie or a reused pid is dead), do its ports accept a TCP
connect, does its HealthCheck pass, and how much CPU and memory does its
whole process tree use. Port and tcp probes share one selector and
http/command checks run on a small pool, all at once, so a tick costs about
one timeout however many ports hang. Results become `ProcessStatus`
records; changes are announced with `status_change` and `process_died`,
and every tick with `health_check`. Each tick's figures also go into
`series`, the bounded in-memory resource history of every server
(procsync.series), and each tick's duration into `tick_time`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import signals
from .config import HealthCheck, check_id
from .errors import ConfigError
from .health import DEFAULT_HOST, STOP_SLICE, probe_tcp, run_health_check
from .locks import ordered_lock
from .proctree import ParentLinks, Usage, clock_ticks, same_identity, ticks_to_time, usage_of
from .records import HEALTH_STATES, ProcessInfo, ProcessStatus, ResourceHistory
from .series import DEFAULT_WINDOW, Sample, SeriesBook
from .timing import DurationMeter

log = logging.getLogger(__name__)

POOL_SIZE = 16  # threads for http and command checks in one tick
STOP_JOIN = 0.1  # seconds stop() waits for the thread
MANAGER_GRACE = 0.1  # seconds a death may wait for the manager to record it


def _positive(name: str, value: Any) -> float:
    if (isinstance(value, bool) or not isinstance(value, int | float) or not value > 0
            or not math.isfinite(value)):
        raise ValueError(f"{name}: must be a finite number of seconds greater than 0, not {value!r}")
    return float(value)


def _interval(value: Any) -> float:
    """A tick interval: finite seconds > 0, or 0 for "no periodic checks"."""
    if (isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0
            or not math.isfinite(value)):
        raise ValueError(f"interval: must be a finite number of seconds greater than 0 (or 0: no "
                         f"periodic checks), not {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class _Watch:
    health: HealthCheck | None = None
    start_timeout: float = 0.0
    ports_required: bool = True


@dataclass(slots=True)
class _Look:
    """What one tick learned about one process (private, mutable while the tick runs)."""

    info: ProcessInfo
    alive: bool = False
    error: str | None = None  # an internal error: health "unknown"
    cpu_percent: float = 0.0
    memory_rss: int = 0
    ports: dict[int, bool] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


class ProcessMonitor:
    """Checks liveness, ports, health and resources of every process `manager` tracks.

    `manager` needs `get_all_processes()` and `get_process(id)`; its
    `process_exit` signal tells the monitor about exits it has already
    reported, so `process_died` only announces deaths nobody else saw.
    `history` is how many seconds of samples `series` keeps per server (0:
    none).
    """

    def __init__(
        self,
        manager: Any,
        interval: float = 3.0,
        port_timeout: float = 1.0,
        unresponsive_after: int = 3,
        history: float = DEFAULT_WINDOW,
    ) -> None:
        if not callable(getattr(manager, "get_all_processes", None)):
            raise TypeError("manager: needs get_all_processes() and get_process(id)")
        if (
            isinstance(unresponsive_after, bool)
            or not isinstance(unresponsive_after, int)
            or unresponsive_after < 1
        ):
            raise ValueError(
                f"unresponsive_after: must be a whole number of ticks >= 1, not {unresponsive_after!r}"
            )
        self._manager = manager
        self.interval = _interval(interval)
        self.port_timeout = _positive("port_timeout", port_timeout)
        self.unresponsive_after = unresponsive_after
        self.series = SeriesBook(history, self.interval)  # what the ticks saw, per server
        self.tick_time = DurationMeter()  # how long each periodic tick took
        self._lock = ordered_lock("monitor")
        self._watches: dict[str, _Watch] = {}
        self._ignored: set[str] = set()
        self._statuses: dict[str, ProcessStatus] = {}
        self._versions: dict[str, int] = {}  # id -> sequence number of the update that set it
        self._seq = 0
        self._reported: dict[str, int] = {}  # id -> pid whose exit the manager reported
        self._cpu: dict[tuple[int, int], tuple[int, float]] = {}  # (pid, start) -> (cpu, when)
        self._links = ParentLinks()  # who is whose child, for the trees' CPU and memory
        self._thread: threading.Thread | None = None
        self._stop_event: threading.Event | None = None
        self._wake = threading.Event()  # set by watch(): check a new process now, not next interval
        signals.process_exit.connect(self._on_process_exit, sender=manager)

    # ------------------------------------------------------------ config

    def watch(self, id: str, *, health: HealthCheck | Mapping[str, Any] | None = None,
              start_timeout: float = 0.0, ports_required: bool = True) -> None:
        """Check `id` (again), with an optional HealthCheck and a start-up grace period.

        Ports come from the manager's ProcessInfo; with `ports_required`
        false they are probed and reported but a closed one is no failure
        (a process offered a port it need not use). For `start_timeout`
        seconds after the process started, failing checks make it
        "unhealthy" but never "unresponsive". A running monitor thread checks
        at once (not at its next interval), so a server that is still starting
        shows what its checks see, with their error. A running process with
        no health check and no port it must listen on is "healthy" at once.
        """
        check_id(id)
        if isinstance(health, Mapping):
            health = HealthCheck.from_dict(health, id)
        elif health is not None and not isinstance(health, HealthCheck):
            raise ConfigError(id, "health", f"must be a HealthCheck or a table, not {health!r}")
        if (
            isinstance(start_timeout, bool)
            or not isinstance(start_timeout, int | float)
            or start_timeout < 0
        ):
            raise ConfigError(id, "start_timeout", f"must be a number >= 0, not {start_timeout!r}")
        watch = _Watch(health, float(start_timeout), bool(ports_required))
        with self._lock:
            self._watches[id] = watch
            self._ignored.discard(id)
        self._healthy_when_nothing_to_check(id, watch)
        self._wake.set()

    def _healthy_when_nothing_to_check(self, id: str, watch: _Watch) -> None:
        """A running process with no health check and no port it must listen on is healthy now.

        Alive is all its health means, and the manager says it is alive, so it
        does not read "unknown" until the next tick (which may be `interval`
        seconds away, or never with interval 0). The tick then measures it.
        """
        if watch.health is not None:
            return
        info = self._manager.get_process(id)
        if info is None or info.status != "running" or (info.ports and watch.ports_required):
            return
        with self._lock:
            previous = self._statuses.get(id)
            if (self._watches.get(id) is not watch or id in self._ignored
                    or (previous is not None and previous.pid == info.pid)  # a tick saw it
                    or self._reported.get(id) == info.pid):  # it has ended meanwhile
                return
            self._seq += 1
            status = ProcessStatus(id, info.pid, True, "healthy", last_check=datetime.now(UTC))
            self._statuses[id] = status
            self._versions[id] = self._seq
        before = previous.health if previous is not None else "unknown"
        if before != "healthy":
            signals.send(signals.status_change, self, id=id, pid=info.pid, previous=before,
                         current="healthy", status=status)

    def unwatch(self, id: str) -> None:
        """Stop checking `id` and forget its status, until `watch(id)` is called again."""
        with self._lock:
            self._watches.pop(id, None)
            self._ignored.add(id)
            self._statuses.pop(id, None)
            self._versions.pop(id, None)
        self.series.forget(id)

    # ------------------------------------------------------------ reading

    def get_status(self, id: str) -> ProcessStatus | None:
        """The last status of `id`; "unknown" (or "dead") if the manager has it but no tick has yet."""
        with self._lock:
            status = self._statuses.get(id)
            if status is not None or id in self._ignored:
                return status
        info = self._manager.get_process(id)
        if info is None:
            return None
        running = info.status == "running"
        return ProcessStatus(id=id, pid=info.pid, alive=running,
                             health="unknown" if running else "dead")

    def get_all_statuses(self) -> list[ProcessStatus]:
        """The status of every process as of the last tick."""
        with self._lock:
            return list(self._statuses.values())

    def get_history(self, id: str, since: float | None = None) -> ResourceHistory:
        """`id`'s resource samples since `since` (unix seconds; default: the whole window)."""
        return self.series.history(id, since)

    # ------------------------------------------------------------ thread

    def start(self, interval: float | None = None) -> None:
        """Start the daemon thread (a first tick at once, then every `interval` s). Idempotent.

        An interval of 0 means no periodic checks: no thread runs (one that
        runs is stopped). Exits are still noticed at once (the manager's
        watcher sends `process_exit`, which marks the process dead here), and
        `check_now()` still checks everything on demand.
        """
        with self._lock:
            if interval is not None:
                self.interval = _interval(interval)
            off = self.interval == 0
            self.series.configure(interval=self.interval)
            if self._thread is not None and not off:
                return
        if off:
            self.stop()
            return
        with self._lock:
            if self._thread is not None:
                return
            stop = threading.Event()
            self._stop_event = stop
            self._thread = threading.Thread(
                target=self._run, args=(stop,), name="procsync-monitor", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread, mid-tick or mid-interval, within about 0.1 s. Safe to call twice."""
        with self._lock:
            stop, self._stop_event = self._stop_event, None
            thread, self._thread = self._thread, None
        if stop is not None:
            stop.set()
            self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=STOP_JOIN)

    @property
    def running(self) -> bool:
        """True while the thread runs."""
        with self._lock:
            return self._thread is not None

    def _run(self, stop: threading.Event) -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0:
                self._wake.wait(delay)  # woken early when a process is watched: check it now
            if stop.is_set():
                return
            self._wake.clear()
            started = time.monotonic()
            try:
                with self.tick_time.time():
                    self._tick(stop)
            except Exception:
                log.exception("monitor tick failed")
            next_at = started + self.interval

    def check_now(self) -> list[ProcessStatus]:
        """Run one tick in the caller's thread (it counts as a tick) and return the statuses."""
        return self._tick(None)

    # ------------------------------------------------------------ a tick

    def _tick(self, stop: threading.Event | None) -> list[ProcessStatus]:
        with self._lock:
            self._seq += 1
            seq = self._seq
            watches = dict(self._watches)
            ignored = set(self._ignored)
        looks = {
            info.id: _Look(info)
            for info in self._manager.get_all_processes()
            if info.id not in ignored
        }
        self._look_at_processes(looks, stop)
        if stop is not None and stop.is_set():
            return []
        self._probe(looks, watches, stop)
        if stop is not None and stop.is_set():
            return []
        self._await_exit_reports(looks, stop)
        statuses, changes, deaths, samples = self._apply(seq, looks, watches)
        self.series.record(samples)
        for previous, status in changes:
            signals.send(signals.status_change, self, id=status.id, pid=status.pid,
                         previous=previous, current=status.health, status=status)
        for status, exit_code in deaths:
            signals.send(signals.process_died, self, id=status.id, pid=status.pid,
                         exit_code=exit_code)
        signals.send(signals.health_check, self, statuses=statuses)
        return statuses

    def _look_at_processes(self, looks: dict[str, _Look], stop: threading.Event | None) -> None:
        """Liveness (pid + create_time, zombies dead) and resources of each process tree.

        One read of /proc/<pid>/stat per process gives its identity, state,
        CPU time and RSS; CPU percent is the CPU time used since the last
        tick over the wall time between them (of one core, as psutil's).
        """
        roots: list[tuple[_Look, Usage]] = []
        for look in looks.values():
            if stop is not None and stop.is_set():
                return
            info = look.info
            if info.status != "running":
                continue  # the manager saw it end
            try:
                usage = self._live_usage(info)
            except Exception as err:
                look.error = f"liveness check failed: {type(err).__name__}: {err}"
                continue
            if usage is not None:
                look.alive = True
                roots.append((look, usage))
        kept: dict[tuple[int, int], tuple[int, float]] = {}
        if roots:
            try:
                children = self._links.children()
            except Exception as err:
                log.warning("cannot list processes for resource use: %s", err)
                children = {}
            now = time.monotonic()
            for look, usage in roots:
                try:
                    self._measure(look, usage, children, kept, now)
                except Exception as err:
                    look.error = f"resource check failed: {type(err).__name__}: {err}"
        self._cpu = kept

    @staticmethod
    def _live_usage(info: ProcessInfo) -> Usage | None:
        """The stat of `info`'s process if it still runs as that same process, else None."""
        usage = usage_of(info.pid)
        if usage is None or usage.zombie:
            return None
        if info.create_time is not None and not same_identity(info.create_time,
                                                              ticks_to_time(usage.start)):
            return None  # the pid now belongs to another process
        return usage

    def _measure(self, look: _Look, root: Usage, children: dict[int, list[int]],
                 kept: dict[tuple[int, int], tuple[int, float]], now: float) -> None:
        """Sum CPU percent and RSS over the root process and all its descendants."""
        ticks = clock_ticks()
        cpu, rss = 0.0, 0
        todo = [look.info.pid]
        seen: set[int] = set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            todo.extend(children.get(pid, ()))
            usage = root if pid == look.info.pid else usage_of(pid)
            if usage is None or usage.zombie:
                continue
            key = (pid, usage.start)
            before = self._cpu.get(key)
            if before is not None and now > before[1]:  # first sight: the baseline, 0 %
                cpu += max(0.0, (usage.cpu - before[0]) / ticks / (now - before[1]) * 100)
            kept[key] = (usage.cpu, now)
            rss += usage.rss
        look.cpu_percent = round(cpu, 1)
        look.memory_rss = rss

    def _probe(self, looks: dict[str, _Look], watches: dict[str, _Watch],
               stop: threading.Event | None) -> None:
        """Ports and health checks of every live process, all at once."""
        targets: list[tuple[str, int, float]] = []
        owners: list[tuple[_Look, str, int]] = []
        checks: list[tuple[_Look, HealthCheck]] = []
        for look in looks.values():
            if not look.alive or look.error:
                continue
            watch = watches.get(look.info.id, _Watch())
            check = watch.health
            # a port is a health check only without another check and when the server must listen
            kind = "port" if check is None and watch.ports_required else "seen"
            for port in look.info.ports:
                targets.append((DEFAULT_HOST, port, self.port_timeout))
                owners.append((look, kind, port))
            if check is None:
                continue
            if check.tcp is not None:
                targets.append((DEFAULT_HOST, check.tcp, check.timeout))
                owners.append((look, "tcp", check.tcp))
            else:
                checks.append((look, check))
        pool = None
        futures: dict[concurrent.futures.Future[tuple[bool, str | None]], tuple[_Look, HealthCheck]] = {}
        if checks:
            pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=min(POOL_SIZE, len(checks)), thread_name_prefix="procsync-check"
            )
            futures = {pool.submit(run_health_check, check): (look, check) for look, check in checks}
        try:
            should_stop = stop.is_set if stop is not None else None
            results = probe_tcp(targets, should_stop) if targets else []
            for (look, kind, port), reason in zip(owners, results, strict=True):
                if kind in ("port", "seen"):
                    look.ports[port] = reason is None
                    if reason is not None and kind == "port":
                        look.failures.append(f"port {port}: {reason}")
                elif reason is not None:
                    look.failures.append(f"tcp port {port}: {reason}")
            if futures:
                self._collect(futures, checks, stop)
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def _collect(self, futures: dict[concurrent.futures.Future[tuple[bool, str | None]],
                                     tuple[_Look, HealthCheck]],
                 checks: list[tuple[_Look, HealthCheck]], stop: threading.Event | None) -> None:
        """Wait for http/command checks (each bounded by its own timeout), abortable by `stop`."""
        longest = max(check.timeout for _look, check in checks)
        rounds = -(-len(checks) // POOL_SIZE)
        deadline = time.monotonic() + 2 * longest * rounds + 1.0
        pending = set(futures)
        while pending:
            if stop is not None and stop.is_set():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                break
            _done, pending = concurrent.futures.wait(pending, timeout=min(left, STOP_SLICE))
        for future, (look, check) in futures.items():
            if future in pending:
                look.failures.append(f"health check did not finish within {check.timeout:g}s")
                continue
            try:
                ok, reason = future.result()
            except Exception as err:
                log.warning("health check of %r raised", look.info.id, exc_info=True)
                look.error = f"health check failed: {type(err).__name__}: {err}"
                continue
            if not ok:
                look.failures.append(reason or "health check failed")

    def _await_exit_reports(self, looks: dict[str, _Look], stop: threading.Event | None) -> None:
        """Give the manager a moment to report a death this tick found first.

        The manager sees exits within milliseconds and reports them with
        `process_exit`; a death it reports is not ours to report again. Only
        processes the last tick saw alive are waited for, at most
        MANAGER_GRACE seconds per tick.
        """
        with self._lock:
            waiting = [
                look for look in looks.values()
                if not look.alive and look.error is None
                and (previous := self._statuses.get(look.info.id)) is not None
                and previous.alive and previous.pid == look.info.pid
            ]
        deadline = time.monotonic() + MANAGER_GRACE
        while waiting:
            with self._lock:
                waiting = [look for look in waiting
                           if self._reported.get(look.info.id) != look.info.pid]
            if not waiting or time.monotonic() >= deadline:
                break
            if stop is not None:
                if stop.wait(0.01):
                    return
            else:
                time.sleep(0.01)
        for look in waiting:  # ours to report: take the exit code if the manager has one
            latest = self._manager.get_process(look.info.id)
            if latest is not None and latest.pid == look.info.pid:
                look.info = latest

    def _apply(
        self, seq: int, looks: dict[str, _Look], watches: dict[str, _Watch]
    ) -> tuple[list[ProcessStatus], list[tuple[str, ProcessStatus]],
               list[tuple[ProcessStatus, int | None]], list[Sample]]:
        """Turn the tick's looks into statuses under the lock; collect what changed and the samples."""
        now = datetime.now(UTC)
        wall = time.time()
        changes: list[tuple[str, ProcessStatus]] = []
        deaths: list[tuple[ProcessStatus, int | None]] = []
        samples: list[Sample] = []
        with self._lock:
            fresh: dict[str, ProcessStatus] = {}
            for id, look in looks.items():
                if id in self._ignored:
                    continue
                previous = self._statuses.get(id)
                if self._versions.get(id, 0) > seq and previous is not None:
                    fresh[id] = previous  # a newer update (a later tick, an exit) wins
                    continue
                status = self._status(look, previous, watches.get(id, _Watch()), now, wall)
                fresh[id] = status
                self._versions[id] = seq
                samples.append((id, status.pid if status.alive else None, status.cpu_percent,
                                status.memory_rss, status.health, sum(status.ports.values()),
                                len(look.info.ports)))
                before = previous.health if previous is not None else "unknown"
                if status.health != before:
                    changes.append((before, status))
                if (
                    previous is not None
                    and previous.alive
                    and previous.pid == status.pid
                    and not status.alive
                    and status.health == "dead"
                    and self._reported.get(id) != status.pid
                ):
                    deaths.append((status, look.info.exit_code))
            for id in list(self._statuses):
                if id not in fresh and self._versions.get(id, 0) <= seq:
                    self._versions.pop(id, None)
                elif id not in fresh:
                    fresh[id] = self._statuses[id]
            self._statuses = fresh
            for id in [i for i in self._reported if i not in looks]:
                del self._reported[id]
            return list(fresh.values()), changes, deaths, samples

    def _status(self, look: _Look, previous: ProcessStatus | None, watch: _Watch,
                now: datetime, wall: float) -> ProcessStatus:
        info = look.info
        failures_before = 0
        if previous is not None and previous.pid == info.pid:
            failures_before = previous.consecutive_failures
        if look.error is not None:
            # liveness unreadable: keep what the last tick knew about this pid
            alive = look.alive or (previous is not None and previous.pid == info.pid
                                   and previous.alive)
            return ProcessStatus(info.id, info.pid, alive, "unknown", look.ports,
                                 failures_before, now, look.cpu_percent, look.memory_rss,
                                 look.error)
        if not look.alive:
            return ProcessStatus(info.id, info.pid, False, "dead", last_check=now)
        if not look.failures:
            return ProcessStatus(info.id, info.pid, True, "healthy", look.ports, 0, now,
                                 look.cpu_percent, look.memory_rss)
        failures = failures_before + 1
        starting = info.create_time is not None and wall - info.create_time < watch.start_timeout
        health = "unresponsive" if failures >= self.unresponsive_after and not starting else "unhealthy"
        return ProcessStatus(info.id, info.pid, True, health, look.ports, failures, now,
                             look.cpu_percent, look.memory_rss, "; ".join(look.failures))

    # ------------------------------------------------------------ manager events

    def _on_process_exit(self, sender: Any, *, id: str, pid: int, exit_code: int | None = None,
                         signal: str | None = None, expected: bool = False, **extra: Any) -> None:
        """The manager saw `id` end: mark it dead now (it reports the exit itself)."""
        if expected:
            detail = f"pid {pid} stopped"
        elif signal:
            detail = f"pid {pid} was killed by {signal}"
        else:
            detail = f"pid {pid} exited with code {exit_code}"
        self.series.mark(id, "exit", pid, detail)
        with self._lock:
            self._reported[id] = pid
            previous = self._statuses.get(id)
            if previous is None or previous.pid != pid or not previous.alive:
                return
            self._seq += 1
            status = dataclasses.replace(
                previous, alive=False, health="dead", ports={}, consecutive_failures=0,
                cpu_percent=0.0, memory_rss=0, error=None, last_check=datetime.now(UTC),
            )
            self._statuses[id] = status
            self._versions[id] = self._seq
        if previous.health != "dead":
            signals.send(signals.status_change, self, id=id, pid=pid,
                         previous=previous.health, current="dead", status=status)


__all__ = ["HEALTH_STATES", "ProcessMonitor"]
