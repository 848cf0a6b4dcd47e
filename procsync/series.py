"""The resource history: a bounded ring of monitor samples per server, kept in memory.

Each server gets one ring of parallel `array.array` columns (time, CPU %,
RSS, health, ports up, ports configured, pid): 27 bytes a sample (about 32
with the arrays' spare room), so 200 servers x one hour at a 3 s tick hold
about 7.3 MiB, and appending a sample is a few array stores. The ring is per server id, not per process,
so it runs on across restarts; a new pid leaves a "start" mark, an exit an
"exit" mark and a health change a "health" mark. Nothing is written to
disk: a restart of procsync starts every ring empty.
"""

from __future__ import annotations

import math
import time
from array import array
from collections import deque
from collections.abc import Callable

from .locks import ordered_lock
from .records import HEALTH_STATES, ResourceHistory, ResourceMark

#: one server's sample of one tick: (id, pid or None, cpu %, rss, health, ports up, ports total)
Sample = tuple[str, int | None, float, int, str, int, int]
_CODE = {name: code for code, name in enumerate(HEALTH_STATES)}
_UNKNOWN = _CODE["unknown"]
DEFAULT_WINDOW = 3600.0  # seconds of samples kept per server
MAX_SAMPLES = 86_400  # per server, whatever window / interval says
MAX_MARKS = 256  # per server
_RSS_MAX = 2**64 - 1
_PORTS_MAX = 2**16 - 1


def check_window(value: object) -> float:
    """A history window: finite seconds >= 0 (0 keeps no history). ValueError otherwise."""
    if (isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0
            or not math.isfinite(value)):
        raise ValueError(f"history: must be a finite number of seconds >= 0 (0: keep none), "
                         f"not {value!r}")
    return float(value)


def capacity_for(window: float, interval: float) -> int:
    """How many samples cover `window` seconds at one per `interval` (0 when either is 0)."""
    if window <= 0 or interval <= 0:
        return 0
    return max(1, min(MAX_SAMPLES, math.ceil(window / interval)))


class Ring:
    """One server's samples: parallel columns, oldest overwritten once `capacity` is reached.

    Not thread-safe by itself: `SeriesBook` holds its lock around every call.
    """

    __slots__ = ("capacity", "_next", "_times", "_cpu", "_rss", "_health", "_up", "_total",
                 "_pids", "marks", "_last_pid", "_last_health")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._next = 0  # where the next sample goes once the ring is full
        self._times = array("d")
        self._cpu = array("f")
        self._rss = array("Q")
        self._health = array("B")
        self._up = array("H")
        self._total = array("H")
        self._pids = array("i")  # 0: no process
        self.marks: deque[ResourceMark] = deque(maxlen=MAX_MARKS)
        self._last_pid = 0
        self._last_health = -1

    def __len__(self) -> int:
        return len(self._times)

    def _columns(self) -> tuple[array, ...]:  # type: ignore[type-arg]
        return (self._times, self._cpu, self._rss, self._health, self._up, self._total, self._pids)

    def append(self, at: float, pid: int | None, cpu: float, rss: int, health: str,
               ports_up: int, ports_total: int) -> None:
        """Add one sample (and the marks it implies: a new pid, a health change)."""
        code = _CODE.get(health, _UNKNOWN)
        if pid is None or not 0 < pid < 2**31:
            pid = 0
        if pid and pid != self._last_pid:
            self.marks.append(ResourceMark(at, "start", pid, f"pid {pid} running"))
            self._last_pid = pid
        if code != self._last_health:
            if self._last_health >= 0:
                self.marks.append(ResourceMark(at, "health", pid or None,
                                               f"{HEALTH_STATES[self._last_health]} -> {health}"))
            self._last_health = code
        if not cpu < math.inf or cpu < 0:  # NaN or infinity: unknown
            cpu = 0.0
        if not 0 <= rss <= _RSS_MAX:
            rss = 0 if rss < 0 else _RSS_MAX
        if not 0 <= ports_up <= _PORTS_MAX:
            ports_up = 0 if ports_up < 0 else _PORTS_MAX
        if not 0 <= ports_total <= _PORTS_MAX:
            ports_total = 0 if ports_total < 0 else _PORTS_MAX
        if len(self._times) < self.capacity:
            self._times.append(at)
            self._cpu.append(cpu)
            self._rss.append(rss)
            self._health.append(code)
            self._up.append(ports_up)
            self._total.append(ports_total)
            self._pids.append(pid)
            return
        i = self._next
        self._times[i] = at
        self._cpu[i] = cpu
        self._rss[i] = rss
        self._health[i] = code
        self._up[i] = ports_up
        self._total[i] = ports_total
        self._pids[i] = pid
        self._next = i + 1 if i + 1 < self.capacity else 0

    def mark(self, at: float, kind: str, pid: int | None, detail: str) -> None:
        """Add a mark that no sample implies (an exit seen between two ticks)."""
        self.marks.append(ResourceMark(at, kind, pid, detail))

    def resize(self, capacity: int) -> None:
        """Keep the newest `capacity` samples, in order, and grow or shrink to that size."""
        if capacity == self.capacity:
            return
        columns = [self._ordered(column) for column in self._columns()]
        keep = min(capacity, len(self._times))
        start = len(self._times) - keep
        (self._times, self._cpu, self._rss, self._health, self._up, self._total,
         self._pids) = (column[start:] for column in columns)
        self.capacity = capacity
        self._next = 0

    def _ordered(self, column: array) -> array:  # type: ignore[type-arg]
        if len(column) < self.capacity or self._next == 0:
            return column[:]
        return column[self._next:] + column[:self._next]

    def read(self, id: str, since: float, interval: float, window: float) -> ResourceHistory:
        """The samples and marks at or after `since`, oldest first."""
        times, cpu, rss, health, up, total, pids = (self._ordered(c) for c in self._columns())
        keep = [i for i, t in enumerate(times) if t >= since]  # the clock may have jumped

        def pick(column: array, cast: Callable[[float], object] = float) -> tuple:  # type: ignore[type-arg]
            return tuple(cast(column[i]) for i in keep)

        return ResourceHistory(
            id=id, interval=interval, window=window,
            times=pick(times),
            cpu_percent=tuple(round(cpu[i], 1) for i in keep),
            memory_rss=pick(rss, int),
            health=tuple(HEALTH_STATES[health[i]] for i in keep),
            ports_up=pick(up, int),
            ports_total=pick(total, int),
            pids=tuple(pids[i] or None for i in keep),
            marks=tuple(m for m in self.marks if m.time >= since),
        )

    def nbytes(self) -> int:
        """Bytes held by the sample columns (allocated, not just used)."""
        return sum(c.buffer_info()[1] * c.itemsize for c in self._columns())


class SeriesBook:
    """Every server's ring, by id. Thread-safe; each call holds the lock only briefly."""

    def __init__(self, window: float = DEFAULT_WINDOW, interval: float = 3.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.window = check_window(window)
        self.interval = interval
        self._capacity = capacity_for(self.window, interval)
        self._clock = clock
        self._lock = ordered_lock("series")
        self._rings: dict[str, Ring] = {}

    @property
    def capacity(self) -> int:
        """Samples kept per server (0: history off)."""
        return self._capacity

    def configure(self, *, window: float | None = None, interval: float | None = None) -> None:
        """Change the window or the tick interval; rings resize on their next sample."""
        with self._lock:
            if window is not None:
                self.window = check_window(window)
            if interval is not None:
                self.interval = interval
            self._capacity = capacity_for(self.window, self.interval)
            if self._capacity == 0:
                self._rings.clear()

    def record(self, samples: list[Sample], at: float | None = None) -> None:
        """Append one tick's samples: (id, pid, cpu %, rss, health, ports up, ports total)."""
        if not samples:
            return
        when = self._clock() if at is None else at
        with self._lock:
            capacity = self._capacity
            if capacity == 0:
                return
            rings = self._rings
            for id, pid, cpu, rss, health, up, total in samples:
                ring = rings.get(id)
                if ring is None:
                    ring = rings[id] = Ring(capacity)
                elif ring.capacity != capacity:
                    ring.resize(capacity)
                ring.append(when, pid, cpu, rss, health, up, total)

    def mark(self, id: str, kind: str, pid: int | None, detail: str, at: float | None = None) -> None:
        """Mark a moment on `id`'s time axis (only for a server that has a ring)."""
        when = self._clock() if at is None else at
        with self._lock:
            ring = self._rings.get(id)
            if ring is not None:
                ring.mark(when, kind, pid, detail)

    def history(self, id: str, since: float | None = None) -> ResourceHistory:
        """`id`'s samples within the window (and at or after `since`), oldest first."""
        now = self._clock()
        with self._lock:
            window, interval = self.window, self.interval
            oldest = now - window
            since = oldest if since is None or not math.isfinite(since) else max(since, oldest)
            ring = self._rings.get(id)
            if ring is None:
                return ResourceHistory(id=id, interval=interval, window=window)
            return ring.read(id, since, interval, window)

    def forget(self, id: str) -> None:
        """Drop `id`'s ring (the server was unregistered)."""
        with self._lock:
            self._rings.pop(id, None)

    def nbytes(self) -> int:
        """Bytes held by every ring's sample columns."""
        with self._lock:
            return sum(ring.nbytes() for ring in self._rings.values())


__all__ = ["DEFAULT_WINDOW", "MAX_SAMPLES", "Ring", "Sample", "SeriesBook", "capacity_for",
           "check_window"]
