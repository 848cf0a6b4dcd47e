"""DurationMeter: how long something took, counted and summed, for procsync's own metrics.

The monitor times its ticks and each state store its commits with one; the
metrics route reads them as Prometheus summaries (count and sum) and the
last and longest values. Observing is a few additions under a lock held
for nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .locks import ordered_lock


@dataclass(frozen=True, slots=True)
class DurationStats:
    """What a DurationMeter has seen: how many, their sum, the last and the longest (seconds)."""

    count: int = 0
    total: float = 0.0
    last: float = 0.0
    longest: float = 0.0


class DurationMeter:
    """Counts and sums durations. Thread-safe."""

    def __init__(self) -> None:
        self._lock = ordered_lock("timing")
        self._count = 0
        self._total = 0.0
        self._last = 0.0
        self._longest = 0.0

    def observe(self, seconds: float) -> None:
        """Add one duration."""
        with self._lock:
            self._count += 1
            self._total += seconds
            self._last = seconds
            if seconds > self._longest:
                self._longest = seconds

    @contextmanager
    def time(self) -> Iterator[None]:
        """Observe how long the block took (also when it raises)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.observe(time.perf_counter() - started)

    def snapshot(self) -> DurationStats:
        """The figures so far."""
        with self._lock:
            return DurationStats(self._count, self._total, self._last, self._longest)


__all__ = ["DurationMeter", "DurationStats"]
