"""The timed policies with real processes: `restart_schedule` and `memory_limit` / `memory_action`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from helpers import python_cmd, wait_until

SLEEPER = "import time\nwhile True: time.sleep(1)\n"
LIMIT = "40MiB"  # an idle interpreter is about 10 MiB of RSS; the hog grows to about 80 MiB
LIMIT_BYTES = 40 * 1024 * 1024


def hog_code(flag: str) -> str:
    """A child that, on its first run only (no `flag` file yet), grows by 2 MiB a step to about
    80 MiB and then holds it; later runs stay small. It prints nothing."""
    return (
        "import os, time\n"
        f"first = not os.path.exists({flag!r})\n"
        f"open({flag!r}, 'a').close()\n"
        "blocks = []\n"
        "while True:\n"
        "    if first and len(blocks) < 40:\n"
        "        blocks.append(bytearray(b'x' * (2 * 1024 * 1024)))\n"
        "    time.sleep(0.02)\n"
    )


def running_clock(start: datetime) -> Callable[[], datetime]:
    """A wall clock that reads `start` now and runs on from there at the real pace."""
    origin = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - origin)


def count_ticks(orch) -> Callable[[], int]:
    """The number of monitor ticks (`health_check`) since this call."""
    seen = [0]
    lock = threading.Lock()

    def on_tick(sender, **extra):
        with lock:
            seen[0] += 1

    orch.on("health_check", on_tick)
    return lambda: seen[0]


def events(orch, sid: str, name: str) -> list:
    return [e for e in orch.history(sid, limit=200) if e.event == name]


def running_pid(orch, sid: str) -> int | None:
    status = orch.get_server(sid)
    return status.pid if status.status == "running" else None


# ---------------------------------------------------------------- restart_schedule


def test_daily_schedule_restarts_the_server_when_the_clock_reaches_it_and_not_again(make_orch):
    orch = make_orch(clock=running_clock(datetime(2025, 1, 1, 2, 59, 58, tzinfo=UTC)))
    orch.register_server("nightly", {"command": python_cmd(SLEEPER), "restart_schedule": "03:00"})
    first = orch.start_server("nightly")
    assert first.success, first.message

    new_pid = wait_until(lambda: (p := running_pid(orch, "nightly")) not in (None, first.pid) and p,
                         timeout=20, what="the 03:00 restart")
    restarting = events(orch, "nightly", "restarting")
    assert len(restarting) == 1
    assert restarting[0].pid == first.pid
    assert restarting[0].reason == "scheduled restart (daily at 03:00)"

    # the next one is due tomorrow: a few seconds on, still the same process, one restart
    ticks = count_ticks(orch)
    wait_until(lambda: ticks() >= 10, timeout=20, what="ten monitor ticks")
    assert running_pid(orch, "nightly") == new_pid
    assert len(events(orch, "nightly", "restarting")) == 1


def test_interval_schedule_restarts_again_and_lapses_after_a_stop(make_orch):
    orch = make_orch(clock=running_clock(datetime(2025, 6, 1, 12, 0, tzinfo=UTC)))
    orch.register_server("tick", {"command": python_cmd(SLEEPER), "restart_schedule": "every 2s"})
    pids = [orch.start_server("tick").pid]
    for _ in range(2):  # each restart's start arms the next one
        pids.append(wait_until(lambda: (p := running_pid(orch, "tick")) not in (None, *pids) and p,
                               timeout=20, what="an interval restart"))
    reasons = {e.reason for e in events(orch, "tick", "restarting")}
    assert reasons == {"scheduled restart (every 2s)"}

    assert orch.stop_server("tick").success
    restarts = len(events(orch, "tick", "restarting"))
    ticks = count_ticks(orch)
    wait_until(lambda: ticks() >= 20, timeout=30, what="twenty monitor ticks (4 s, two intervals)")
    status = orch.get_server("tick")
    assert status.status == "stopped" and status.pid is None
    assert len(events(orch, "tick", "restarting")) == restarts


def test_a_server_adopted_after_procsync_restarts_keeps_its_timetable(make_orch):
    config = {"command": python_cmd(SLEEPER), "restart_schedule": "every 3s"}
    first = make_orch(clock=running_clock(datetime(2025, 6, 1, 12, 0, tzinfo=UTC)))
    first.register_server("kept", config)
    pid = first.start_server("kept").pid
    first.shutdown()  # the server keeps running, recorded for the next initialize()

    second = make_orch(clock=running_clock(datetime(2025, 6, 1, 12, 0, 1, tzinfo=UTC)))
    second.register_server("kept", config)
    second.initialize()
    assert running_pid(second, "kept") == pid  # adopted, not restarted
    wait_until(lambda: running_pid(second, "kept") not in (None, pid), timeout=20,
               what="the timetabled restart of the adopted server")
    reasons = [e.reason for e in events(second, "kept", "restarting")]
    assert reasons == ["scheduled restart (every 3s)"]


# ---------------------------------------------------------------- memory_limit


def memory_server(orch, tmp_path, action: str) -> tuple[int, list[dict]]:
    """Register and start a hog with memory_limit LIMIT and `action`; its first pid, and the
    payloads of `memory_limit_exceeded` as they come."""
    received: list[dict] = []
    orch.on("memory_limit_exceeded", lambda sender, **payload: received.append(payload))
    orch.register_server("hog", {"command": python_cmd(hog_code(str(tmp_path / "grown"))),
                                 "memory_limit": LIMIT, "memory_action": action})
    result = orch.start_server("hog")
    assert result.success, result.message
    return result.pid, received


def check_payload(payload: dict, pid: int, action: str) -> None:
    assert payload["id"] == "hog" and payload["pid"] == pid and payload["action"] == action
    assert payload["limit"] == LIMIT_BYTES
    assert payload["rss"] > LIMIT_BYTES


def breach_entry(orch, pid: int, verb: str):
    entries = events(orch, "hog", "memory_limit")
    assert len(entries) == 1, entries
    entry = entries[0]
    assert entry.pid == pid
    assert entry.reason.startswith("memory ") and entry.reason.endswith(
        f"is over the limit of 40.0 MiB; {verb}")
    return entry


def test_memory_limit_restart_replaces_the_process(make_orch, tmp_path):
    orch = make_orch()
    pid, received = memory_server(orch, tmp_path, "restart")
    new_pid = wait_until(lambda: (p := running_pid(orch, "hog")) not in (None, pid) and p,
                         timeout=30, what="the restart over the memory limit")
    assert len(received) == 1
    check_payload(received[0], pid, "restart")
    entry = breach_entry(orch, pid, "restarting")
    restarting = events(orch, "hog", "restarting")
    assert [(e.pid, e.reason) for e in restarting] == [(pid, entry.reason)]
    assert new_pid != pid


def test_memory_limit_stop_stops_the_server(make_orch, tmp_path):
    orch = make_orch()
    pid, received = memory_server(orch, tmp_path, "stop")
    wait_until(lambda: orch.get_server("hog").status == "stopped", timeout=30,
               what="the stop over the memory limit")
    assert orch.get_server("hog").pid is None
    assert len(received) == 1
    check_payload(received[0], pid, "stop")
    entry = breach_entry(orch, pid, "stopping")
    stopped = events(orch, "hog", "stopped")
    assert [(e.pid, e.reason) for e in stopped] == [(pid, entry.reason)]


def test_memory_limit_alert_reports_once_and_leaves_the_server_running(make_orch, tmp_path):
    orch = make_orch()
    pid, received = memory_server(orch, tmp_path, "alert")
    wait_until(lambda: received, timeout=30, what="the memory alert")
    check_payload(received[0], pid, "alert")
    breach_entry(orch, pid, "alert only")

    ticks = count_ticks(orch)  # it stays over the limit: later ticks send nothing more
    wait_until(lambda: ticks() >= 10, timeout=20, what="ten more monitor ticks")
    assert len(received) == 1
    assert len(events(orch, "hog", "memory_limit")) == 1
    status = orch.get_server("hog")
    assert status.status == "running" and status.pid == pid
    assert status.memory_rss > LIMIT_BYTES
    assert not events(orch, "hog", "restarting") and not events(orch, "hog", "stopped")


def test_memory_alert_fires_again_after_the_tree_went_back_under_the_limit(make_orch, tmp_path):
    grow = tmp_path / "grow"
    code = (  # holds about 80 MiB while `grow` exists, frees it while it does not
        "import os, time\n"
        "blocks = []\n"
        "while True:\n"
        f"    if not os.path.exists({str(grow)!r}):\n"
        "        blocks.clear()\n"
        "    elif len(blocks) < 40:\n"
        "        blocks.append(bytearray(b'x' * (2 * 1024 * 1024)))\n"
        "    time.sleep(0.02)\n"
    )
    orch = make_orch()
    received: list[dict] = []
    orch.on("memory_limit_exceeded", lambda sender, **payload: received.append(payload))
    orch.register_server("hog", {"command": python_cmd(code), "memory_limit": LIMIT,
                                 "memory_action": "alert"})
    pid = orch.start_server("hog").pid
    grow.touch()
    wait_until(lambda: received, timeout=30, what="the first alert")
    grow.unlink()
    wait_until(lambda: 0 < orch.get_server("hog").memory_rss < LIMIT_BYTES, timeout=30,
               what="the tree back under the limit")
    ticks = count_ticks(orch)  # a whole tick under the limit has been checked
    wait_until(lambda: ticks() >= 2, timeout=20, what="two more monitor ticks")
    assert len(received) == 1
    grow.touch()
    wait_until(lambda: len(received) == 2, timeout=30, what="the second alert")
    check_payload(received[1], pid, "alert")
    assert len(events(orch, "hog", "memory_limit")) == 2
    assert orch.get_server("hog").pid == pid
