"""The resource history with real servers: the monitor fills it, restarts mark it, the API serves it."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
from click.testing import CliRunner
from flask import Flask
from helpers import free_port, listener_code, python_cmd, wait_until

from procsync import ProcessNotFound, ServerOrchestrator
from procsync.cli import procsync_cli
from procsync.config import load_config
from procsync.flask_ext import ProcSync

SLEEP = python_cmd("import time; time.sleep(60)")
# about 20 MB of RSS that stays: the memory column must see it
HOLDER = python_cmd("import time; block = bytearray(20 * 1024 * 1024); block[::4096] = b'x' * "
                    "len(block[::4096]); time.sleep(60)")


def test_the_monitor_fills_a_servers_history_with_what_each_tick_saw(orch):
    port = free_port()
    orch.register_server("web", {"command": python_cmd(listener_code(port)), "ports": [port]})
    assert orch.start_server("web").success
    pid = orch.get_server("web").pid
    history = wait_until(lambda: h if len(h := orch.get_metrics("web")) >= 3 else None, 10,
                         "three samples")
    assert list(history.times) == sorted(history.times)
    assert time.time() - 60 < history.times[0] <= history.times[-1] <= time.time()
    assert history.pids[-1] == pid and history.health[-1] == "healthy"
    assert (history.ports_up[-1], history.ports_total[-1]) == (1, 1)
    assert all(rss > 1_000_000 for rss in history.memory_rss)  # a python interpreter's tree
    assert [m.kind for m in history.marks][:1] == ["start"] and history.marks[0].pid == pid
    assert history.interval == orch.interval and history.window == 3600
    later = orch.get_metrics("web", since=history.times[-1])
    assert later.times[0] == history.times[-1]


def test_memory_of_the_whole_tree_shows_in_the_samples(orch):
    orch.register_server("holder", {"command": HOLDER})
    orch.start_server("holder")
    wait_until(lambda: any(rss > 20 * 1024 * 1024 for rss in orch.get_metrics("holder").memory_rss),
               10, "a sample with the 20 MB block")


def test_the_series_runs_on_across_a_crash_and_restart_with_both_marked(orch):
    orch.register_server("worker", {"command": SLEEP, "autorestart": "always",
                                    "backoff_initial": 0.05})
    orch.start_server("worker")
    first = orch.get_server("worker").pid
    wait_until(lambda: len(orch.get_metrics("worker")) >= 2, 10, "samples of the first run")
    os.kill(first, signal.SIGKILL)
    second = wait_until(lambda: (p := orch.get_server("worker").pid) not in (None, first) and p, 10,
                        "the restart")
    wait_until(lambda: second in orch.get_metrics("worker").pids, 10, "a sample of the second run")
    history = orch.get_metrics("worker")
    assert first in history.pids and history.pids.index(first) < history.pids.index(second)
    marks = [(m.kind, m.pid) for m in history.marks]
    assert ("start", first) in marks and ("exit", first) in marks and ("start", second) in marks
    assert marks.index(("exit", first)) < marks.index(("start", second))
    exit_mark = next(m for m in history.marks if m.kind == "exit")
    assert exit_mark.detail == f"pid {first} was killed by SIGKILL"


def test_a_stop_by_request_is_marked_as_a_stop(orch):
    orch.register_server("web", {"command": SLEEP})
    orch.start_server("web")
    pid = orch.get_server("web").pid
    wait_until(lambda: len(orch.get_metrics("web")) >= 1, 10, "a sample")
    assert orch.stop_server("web").success
    assert ("exit", f"pid {pid} stopped") in [(m.kind, m.detail) for m in orch.get_metrics("web").marks]


def test_unknown_ids_raise_and_unregistering_forgets_the_history(orch):
    with pytest.raises(ProcessNotFound):
        orch.get_metrics("nobody")
    orch.register_server("web", {"command": SLEEP})
    orch.start_server("web")
    wait_until(lambda: len(orch.get_metrics("web")) >= 1, 10, "a sample")
    orch.stop_server("web")
    orch.unregister_server("web")
    orch.register_server("web", {"command": SLEEP})
    assert len(orch.get_metrics("web")) == 0


def test_history_zero_keeps_nothing(tmp_path):
    orch = ServerOrchestrator(tmp_path / "state.json", interval=0.1, log_dir=tmp_path / "logs",
                              history=0)
    try:
        orch.register_server("web", {"command": SLEEP})
        orch.start_server("web")
        ticks = orch.monitor.tick_time.snapshot().count
        wait_until(lambda: orch.monitor.tick_time.snapshot().count >= ticks + 3, 10, "three ticks")
        assert len(orch.get_metrics("web")) == 0
    finally:
        orch.shutdown(stop_servers=True)


def test_the_history_setting_of_a_config_file_reaches_the_monitor(tmp_path):
    path = tmp_path / "procsync.toml"
    path.write_text("[procsync]\nhistory = 600\n\n[servers.web]\ncommand = 'sleep 1'\n")
    assert load_config(path).settings.history == 600
    shown = CliRunner().invoke(procsync_cli, ["check", "-c", str(path)])
    assert shown.exit_code == 0 and re.search(r"^history\s+600s$", shown.output, re.M), shown.output
    path.write_text("[procsync]\nhistory = -5\n")
    with pytest.raises(ValueError, match="history"):
        load_config(path)


def test_the_metrics_route_serves_the_history_and_refuses_a_bad_since(orch):
    app = Flask("history")
    ProcSync(app, orchestrator=orch)
    client = app.test_client()
    orch.register_server("web", {"command": SLEEP})
    orch.start_server("web")
    pid = orch.get_server("web").pid
    wait_until(lambda: len(orch.get_metrics("web")) >= 2, 10, "two samples")
    body = client.get("/procsync/api/servers/web/metrics").get_json()
    assert pid in body["pids"] and len(body["times"]) == len(body["cpu_percent"]) >= 2
    assert body["marks"][0] == {"time": body["marks"][0]["time"], "kind": "start", "pid": pid,
                                "detail": f"pid {pid} running"}
    newest = body["times"][-1]
    since = client.get(f"/procsync/api/servers/web/metrics?since={newest}").get_json()
    assert since["times"][0] == newest and len(since["times"]) < len(body["times"]) + 2
    bad = client.get("/procsync/api/servers/web/metrics?since=yesterday")
    assert bad.status_code == 400 and bad.get_json()["error"] == "bad_field"
    assert "since" in bad.get_json()["message"]
    assert client.get("/procsync/api/servers/web/metrics?since=inf").status_code == 400
    assert client.get("/procsync/api/servers/nobody/metrics").status_code == 404


def test_the_monitor_times_its_ticks_and_the_store_its_writes(orch):
    orch.register_server("web", {"command": SLEEP})
    orch.start_server("web")
    wait_until(lambda: orch.monitor.tick_time.snapshot().count >= 2, 10, "two timed ticks")
    ticks = orch.monitor.tick_time.snapshot()
    assert 0 < ticks.last <= ticks.longest <= ticks.total
    writes = orch.store.write_time.snapshot()
    assert writes.count >= 1 and writes.total > 0  # the claim of "web" was committed
