"""The resource-history ring (procsync.series): bounded, ordered, marked, resizable."""

from __future__ import annotations

import math

import pytest

from procsync.series import MAX_SAMPLES, Ring, SeriesBook, capacity_for, check_window


class Clock:
    def __init__(self, now: float = 10_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sample(id: str, n: int, pid: int | None = 100, health: str = "healthy"):
    return (id, pid, float(n % 50), 1000 + n, health, 1, 2)


def fill(book: SeriesBook, clock: Clock, id: str, count: int, step: float = 3.0, **kw) -> None:
    for n in range(count):
        clock.now += step
        book.record([sample(id, n, **kw)])


def test_capacity_is_window_over_interval_capped_and_zero_when_off():
    assert capacity_for(3600, 3.0) == 1200
    assert capacity_for(10, 3.0) == 4  # rounded up: the window is covered
    assert capacity_for(0, 3.0) == 0 and capacity_for(3600, 0) == 0
    assert capacity_for(1e9, 0.01) == MAX_SAMPLES


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, True, "1h", None])
def test_a_bad_window_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="history"):
        check_window(bad)


def test_the_ring_keeps_the_newest_samples_in_order_and_never_grows_past_its_capacity():
    clock = Clock()
    book = SeriesBook(window=30, interval=3.0, clock=clock)  # 10 samples
    fill(book, clock, "web", 25)
    history = book.history("web")
    assert len(history) == 10
    assert list(history.times) == sorted(history.times)
    assert history.times[-1] == clock.now
    assert list(history.memory_rss) == [1000 + n for n in range(15, 25)]
    assert book.nbytes() < 10 * 64  # a few dozen bytes a sample, whatever was appended


def test_since_filters_samples_and_marks_and_the_window_hides_old_ones():
    clock = Clock()
    book = SeriesBook(window=3600, interval=3.0, clock=clock)
    fill(book, clock, "web", 10)
    cut = clock.now - 3 * 3.0
    assert len(book.history("web", since=cut)) == 4
    clock.now = book.history("web").times[5] + 3600  # the oldest 5 fall out of the window
    assert len(book.history("web")) == 5
    assert book.history("web", since=math.nan).times == book.history("web").times


def test_the_series_survives_a_restart_with_start_exit_and_health_marks():
    clock = Clock()
    book = SeriesBook(window=3600, interval=3.0, clock=clock)
    fill(book, clock, "web", 3, pid=100)
    clock.now += 1
    book.mark("web", "exit", 100, "pid 100 exited with code 3")
    fill(book, clock, "web", 1, pid=None, health="dead")
    fill(book, clock, "web", 2, pid=200)
    history = book.history("web")
    assert history.pids == (100, 100, 100, None, 200, 200)
    assert history.health == ("healthy",) * 3 + ("dead",) + ("healthy",) * 2
    kinds = [(m.kind, m.pid) for m in history.marks]
    assert kinds == [("start", 100), ("exit", 100), ("health", None), ("start", 200),
                     ("health", 200)]
    assert history.marks[2].detail == "healthy -> dead"


def test_resizing_keeps_the_newest_samples_in_order():
    ring = Ring(5)
    for n in range(8):  # wraps: holds 3..7, the next write at index 3
        ring.append(float(n), 1, 0.0, n, "healthy", 0, 0)
    ring.resize(3)
    assert ring.read("x", 0.0, 1.0, 10.0).memory_rss == (5, 6, 7)
    ring.resize(6)
    for n in range(8, 12):
        ring.append(float(n), 1, 0.0, n, "healthy", 0, 0)
    assert ring.read("x", 0.0, 1.0, 10.0).memory_rss == (6, 7, 8, 9, 10, 11)


def test_a_new_interval_resizes_rings_and_zero_window_drops_everything():
    clock = Clock()
    book = SeriesBook(window=3000, interval=300.0, clock=clock)  # 10 samples
    fill(book, clock, "web", 10)
    book.configure(interval=100.0)  # 30 samples now
    fill(book, clock, "web", 25, step=1.0)
    assert len(book.history("web")) == 30
    book.configure(window=0)
    fill(book, clock, "web", 3)
    assert len(book.history("web")) == 0 and book.nbytes() == 0


def test_odd_values_are_clamped_not_raised():
    clock = Clock()
    book = SeriesBook(window=30, interval=3.0, clock=clock)
    book.record([("web", 2**40, math.nan, -5, "no-such-state", -1, 10**6)])
    history = book.history("web")
    assert history.pids == (None,) and history.cpu_percent == (0.0,)
    assert history.memory_rss == (0,) and history.health == ("unknown",)
    assert (history.ports_up, history.ports_total) == ((0,), (65535,))


def test_forget_drops_one_server_and_unknown_ids_read_empty():
    clock = Clock()
    book = SeriesBook(window=30, interval=3.0, clock=clock)
    fill(book, clock, "web", 3)
    fill(book, clock, "api", 3)
    book.forget("web")
    assert len(book.history("web")) == 0 and len(book.history("api")) == 3
    book.mark("nobody", "exit", 1, "ignored")  # no ring, no mark
    assert book.history("nobody").to_dict()["marks"] == []
