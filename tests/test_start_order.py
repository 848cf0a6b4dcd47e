"""Start order with real processes: each depends_on condition, "skipped", cycles, waves, cancellation."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
from helpers import Recorder, free_port, listener_code, python_cmd, wait_until

from procsync import ConfigError
from procsync.config import load_config

SLEEP = python_cmd("import time; time.sleep(60)")


def listener(port: int, delay: float = 0.0) -> list[str]:
    return python_cmd(listener_code(port, delay))


# ------------------------------------------------------------ each condition is waited for


def test_started_waits_for_the_process_only(orch):
    rec = Recorder(orch, "process_started")
    port = free_port()
    orch.register_servers({
        "api": {"command": SLEEP, "depends_on": ["db"]},
        "db": {"command": listener(port, delay=0.5), "ports": [port]},
    })
    result = orch.start_server("api")
    assert result.success, result.message
    assert orch.get_server("db").running and orch.get_server("api").running
    assert rec.first("process_started", "db") < rec.first("process_started", "api")


def test_healthy_waits_until_the_dependency_is_ready(orch):
    rec = Recorder(orch, "process_started", "server_started")
    port = free_port()
    orch.register_servers({
        "api": {"command": SLEEP, "depends_on": {"db": "healthy"}},
        "db": {"command": listener(port, delay=0.6), "ports": [port]},
    })
    assert orch.start_server("api").success
    assert rec.first("server_started", "db", ready=True) < rec.first("process_started", "api")


def test_completed_and_completed_successfully_wait_for_the_end(orch):
    rec = Recorder(orch, "process_exit", "process_started")
    orch.register_servers({
        "web": {"command": SLEEP, "depends_on": {"migrate": "completed_successfully", "seed": "completed"}},
        "migrate": {"command": python_cmd("import time; time.sleep(0.4)"), "kind": "job"},
        "seed": {"command": python_cmd("import time, sys; time.sleep(0.2); sys.exit(4)"), "kind": "job"},
    })
    result = orch.start_server("web")
    assert result.success, result.message
    started = rec.first("process_started", "web")
    assert rec.first("process_exit", "migrate") < started and rec.first("process_exit", "seed") < started
    assert orch.get_server("migrate").status == "completed"
    assert orch.get_server("migrate").last_exit_code == 0
    seed = orch.get_server("seed")
    assert (seed.status, seed.last_exit_code) == ("crashed", 4)  # "completed" takes any exit code


def test_log_ready_waits_for_the_line(orch):
    rec = Recorder(orch, "process_started")
    orch.register_servers({
        "worker": {"command": SLEEP, "depends_on": {"queue": "log_ready"}},
        "queue": {"command": python_cmd("import time; print('booting', flush=True); time.sleep(0.5); "
                                        "print('queue accepting jobs', flush=True); time.sleep(60)"),
                  "ready_log_line": r"accepting\s+jobs"},
    })
    assert orch.start_server("worker").success
    assert "queue accepting jobs" in orch.tail_log("queue")
    started = rec.first("process_started", "worker")
    assert started - rec.first("process_started", "queue") >= 0.4


# ------------------------------------------------------------ a dependency that fails: "skipped"


@pytest.mark.parametrize("dep, condition, why", [
    ({"command": ["/nonexistent/procsync-no-such-program"]}, "started", "could not start"),
    ({"command": python_cmd("import sys; sys.exit(3)"), "kind": "job"}, "completed_successfully",
     "crashed with exit code 3"),
    ({"command": python_cmd("import sys; sys.exit(3)"), "autorestart": "on-failure", "max_restarts": 1,
      "backoff_initial": 0.05}, "completed_successfully", "turned fatal"),
    ({"command": python_cmd("import sys; sys.exit(0)"), "ports": [free_port()]}, "healthy",
     "exited with code 0 before it was ready"),
    ({"command": SLEEP, "ports": [1], "start_timeout": 0.3}, "healthy", "was not ready within 0.3 s"),
])
def test_a_dependency_that_cannot_meet_its_condition_skips_the_server(orch, dep, condition, why):
    rec = Recorder(orch, "server_skipped")
    orch.register_servers({"app": {"command": SLEEP, "depends_on": {"dep": condition}}, "dep": dep})
    result = orch.start_server("app")
    assert not result.success and result.code == "dependency_failed"
    assert "'dep'" in result.message and why in result.message, result.message
    status = orch.get_server("app")
    assert status.status == "skipped" and not status.running and why in status.message
    entry = orch.history("app")[0]
    assert entry.event == "skipped" and why in entry.reason
    rec.first("server_skipped", "app", dependency="dep")
    # skipped until it is started again: with the dependency fixed, it starts
    orch.register_server("dep", {"command": SLEEP})
    orch.register_server("app", {"command": SLEEP, "depends_on": ["dep"]})
    assert orch.start_server("app").success
    assert orch.get_server("app").status == "running"


def test_a_skip_passes_down_the_chain(orch):
    orch.register_servers({
        "c": {"command": SLEEP, "depends_on": ["b"]},
        "b": {"command": SLEEP, "depends_on": {"a": "completed_successfully"}},
        "a": {"command": python_cmd("import sys; sys.exit(2)"), "kind": "job"},
    })
    result = orch.start_server("c")
    assert result.code == "dependency_failed" and "dependency 'b' was skipped" in result.message
    assert [orch.get_server(s).status for s in "abc"] == ["crashed", "skipped", "skipped"]


# ------------------------------------------------------------ the graph


def test_cycles_are_refused_with_the_cycle_printed_and_nothing_registered(orch):
    with pytest.raises(ConfigError, match=r"dependency cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)"):
        orch.register_servers({
            "a": {"command": SLEEP, "depends_on": ["b"]},
            "b": {"command": SLEEP, "depends_on": ["c"]},
            "c": {"command": SLEEP, "depends_on": ["a"]},
        })
    assert orch.configs == {}
    with pytest.raises(ConfigError, match="depends on 'ghost', which is not a registered server"):
        orch.register_servers({"a": {"command": SLEEP, "depends_on": ["ghost"]}})
    with pytest.raises(ConfigError, match="cannot depend on itself"):
        orch.register_server("a", {"command": SLEEP, "depends_on": ["a"]})
    with pytest.raises(ConfigError, match="depends_on.b: 'ready' is not one of"):
        orch.register_servers({"a": {"command": SLEEP, "depends_on": {"b": "ready"}}})
    # any order within one mapping
    orch.register_servers({"web": {"command": SLEEP, "depends_on": ["db"]}, "db": {"command": SLEEP}})
    assert list(orch.configs) == ["web", "db"]


def test_a_config_file_with_a_cycle_names_the_cycle(tmp_path):
    path = tmp_path / "procsync.toml"
    path.write_text('[servers.a]\ncommand = "true"\ndepends_on = ["b"]\n'
                    '[servers.b]\ncommand = "true"\ndepends_on = { a = "healthy" }\n')
    with pytest.raises(ConfigError, match=r"depends_on: dependency cycle: a -> b -> a"):
        load_config(path)


def test_the_diamond_starts_in_three_waves_and_stops_in_reverse(orch):
    rec = Recorder(orch, "process_started", "server_started", "process_exit", "server_stopped")
    pb, pc, pd = free_port(), free_port(), free_port()
    orch.register_servers({
        "d": {"command": listener(pd), "ports": [pd], "depends_on": {"b": "healthy", "c": "healthy"}},
        "b": {"command": listener(pb, delay=0.5), "ports": [pb], "depends_on": {"a": "healthy"}},
        "c": {"command": listener(pc, delay=0.5), "ports": [pc], "depends_on": {"a": "healthy"}},
        "a": {"command": SLEEP},
    })
    results = orch.start_all()
    assert all(r.success for r in results.values()), results
    spawned = {s: rec.first("process_started", s) for s in "abcd"}
    ready = {s: rec.first("server_started", s, ready=True) for s in "abcd"}
    assert ready["a"] <= spawned["b"] and ready["a"] <= spawned["c"]  # wave 1, then wave 2
    assert spawned["b"] < ready["c"] and spawned["c"] < ready["b"]  # b and c start together
    assert spawned["d"] >= max(ready["b"], ready["c"])  # wave 3
    results = orch.stop_all()
    assert all(r.success for r in results.values()), results
    gone = {s: rec.first("server_stopped", s) for s in "abcd"}
    exited = {s: rec.first("process_exit", s) for s in "abcd"}
    assert gone["d"] < min(exited["b"], exited["c"])  # d gone before b and c are signalled
    assert max(gone["b"], gone["c"]) < exited["a"]


# ------------------------------------------------------------ a stop ends a pending wait


@contextlib.contextmanager
def app_waiting_for_db(orch):
    """"app" waits (on a thread of its own) for "db", whose port never opens; yields its answers."""
    orch.register_servers({
        "app": {"command": SLEEP, "depends_on": {"db": "healthy"}},
        "db": {"command": SLEEP, "ports": [free_port()], "start_timeout": 60},
    })
    answers = []
    thread = threading.Thread(target=lambda: answers.append(orch.start_server("app")))
    thread.start()
    try:
        wait_until(lambda: orch.get_server("db").status == "starting", 5, "db starting")
        wait_until(lambda: orch.get_server("app").status == "waiting", 5, "app waiting")
        yield answers, thread
    finally:
        orch.stop_all()
        thread.join(10)


def test_a_stop_cancels_a_pending_wait_at_once(orch):
    with app_waiting_for_db(orch) as (answers, thread):
        assert "waiting for db (healthy)" in orch.get_server("app").message
        assert orch.stop_server("app").success
        thread.join(5)  # not db's 60 s start_timeout
        assert not thread.is_alive()
        assert answers[0].code == "start_cancelled" and not answers[0].success
        assert orch.get_server("app").status == "stopped"
        assert "wait for its dependencies cancelled" in orch.history("app")[0].reason
        assert orch.get_server("db").status == "starting"  # the dependency carries on


def test_stopping_the_dependency_skips_the_waiting_server(orch):
    with app_waiting_for_db(orch) as (answers, thread):
        assert orch.stop_server("db").success
        thread.join(5)
        assert answers and answers[0].code == "dependency_failed"
        assert "dependency 'db' was stopped" in answers[0].message
        assert orch.get_server("app").status == "skipped"


def test_a_stop_cancels_a_backoff_sleep_at_once(orch):
    orch.register_server("crashy", {"command": python_cmd("import sys; sys.exit(1)"),
                                    "autorestart": "always", "backoff_initial": 30, "max_restarts": 5})
    orch.start_server("crashy")
    wait_until(lambda: orch.get_server("crashy").restarts == 2, 10, "the long backoff")
    assert orch.get_server("crashy").status == "backoff"
    assert orch.stop_server("crashy").success
    assert orch.get_server("crashy").status == "stopped"


# ------------------------------------------------------------ restart_dependents


def test_restart_dependents_restarts_them_after_the_dependency_is_ready(orch):
    rec = Recorder(orch, "server_started")
    port = free_port()
    orch.register_servers({
        "db": {"command": listener(port, delay=0.3), "ports": [port], "restart_dependents": True},
        "api": {"command": SLEEP, "depends_on": {"db": "healthy"}},
        "other": {"command": SLEEP},
    })
    assert all(r.success for r in orch.start_all().values())
    api_pid, other_pid = orch.get_server("api").pid, orch.get_server("other").pid
    assert orch.restart_server("db").success
    db_ready = time.monotonic()
    wait_until(lambda: orch.get_server("api").pid not in (None, api_pid)
               and orch.get_server("api").status == "running", 10, "api restarted")
    with rec.lock:
        api_again = [t for t, n, p in rec.events if n == "server_started" and p["id"] == "api"][-1]
    assert api_again >= db_ready - 0.01
    assert orch.get_server("other").pid == other_pid  # not a dependent
    assert any(e.event == "restarting" for e in orch.history("api"))


# ------------------------------------------------------------ groups from Python


def test_groups_start_stop_and_restart_in_order(orch):
    rec = Recorder(orch, "process_started", "process_exit")
    orch.register_servers({
        "api": {"command": SLEEP, "group": "backend", "depends_on": ["db"]},
        "db": {"command": SLEEP, "group": "backend"},
        "web": {"command": SLEEP, "group": "frontend"},
    })
    assert orch.groups() == {"backend": ["api", "db"], "frontend": ["web"]}
    results = orch.start_group("backend")
    assert set(results) == {"api", "db"} and all(r.success for r in results.values())
    assert rec.first("process_started", "db") < rec.first("process_started", "api")
    assert orch.get_server("web").status == "stopped"
    pids = {s: orch.get_server(s).pid for s in ("api", "db")}
    assert all(r.success for r in orch.restart_group("backend").values())
    assert all(orch.get_server(s).pid not in (None, pids[s]) for s in pids)
    assert all(r.success for r in orch.stop_group("backend").values())
    assert [orch.get_server(s).status for s in ("api", "db")] == ["stopped", "stopped"]
    with pytest.raises(KeyError, match="unknown group 'nope'"):
        orch.start_group("nope")


# ------------------------------------------------------------ procsync's own restart


def test_a_wait_does_not_outlive_its_instance(make_orch):
    first = make_orch()
    config = {
        "app": {"command": SLEEP, "depends_on": {"db": "healthy"}},
        "db": {"command": SLEEP, "ports": [free_port()], "start_timeout": 60},
    }
    first.register_servers(config)
    answer = first.start_server("app", wait=False)
    assert answer.success and answer.message == "starting 'app' after db"
    wait_until(lambda: first.get_server("app").status == "waiting", 5, "app waiting")
    db_pid = wait_until(lambda: first.get_server("db").pid, 5, "db spawned")
    first.shutdown()  # servers keep running; the wait ends with the instance
    second = make_orch()
    second.register_servers(config)
    second.initialize()
    assert second.get_server("app").status == "stopped"
    db = second.get_server("db")
    assert (db.status, db.pid) == ("running", db_pid)  # adopted, not started twice
