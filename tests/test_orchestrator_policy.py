"""The restart policy as pure logic, the port scan, and registry validation."""

from __future__ import annotations

import subprocess

import pytest
from helpers import free_port, listener_code, python_cmd, wait_until

from procsync import ConfigError, ServerConfig
from procsync.orchestrator.policy import (
    FATAL,
    NONE,
    RESTART,
    backoff_delay,
    decide,
    describe_exit,
    exit_event,
    wants_restart,
)
from procsync.ports import describe_pid, listening_ports, port_holder, port_holders

# ------------------------------------------------------------------ backoff


def test_backoff_first_restart_is_immediate_then_doubles_up_to_the_cap():
    delays = [backoff_delay(k, 1.0, 60.0) for k in range(1, 10)]
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert backoff_delay(3, 0.1, 0.15) == 0.15
    assert backoff_delay(5000, 1.0, 60.0) == 60.0  # no overflow for huge attempt numbers


def test_backoff_rejects_attempt_zero():
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(0, 1.0, 60.0)


@pytest.mark.parametrize(
    ("policy", "code", "expected"),
    [
        ("no", 1, False), ("no", 0, False),
        ("on-failure", 1, True), ("on-failure", -9, True), ("on-failure", None, True),
        ("on-failure", 0, False),
        ("always", 0, True), ("always", 2, True),
    ],
)
def test_wants_restart(policy, code, expected):
    assert wants_restart(policy, code) is expected


def test_describe_exit_in_plain_words():
    assert describe_exit(3) == "crashed with exit code 3"
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(None) == "ended (exit code unknown)"
    assert exit_event(0) == "exited" and exit_event(1) == "crashed" and exit_event(None) == "crashed"


def _cfg(**kw):
    return ServerConfig(command="true", **kw)


def test_decide_counts_consecutive_restarts_then_goes_fatal():
    config = _cfg(autorestart="on-failure", max_restarts=3, backoff_initial=1.0, backoff_max=60.0)
    restarts = 0
    delays = []
    for _ in range(3):
        d = decide(config, restarts, 1, uptime=0.1)
        assert d.action == RESTART and d.status == "backoff"
        delays.append(d.delay)
        restarts = d.restarts
    assert delays == [0.0, 1.0, 2.0]
    d = decide(config, restarts, 1, uptime=0.1)
    assert d.action == FATAL and d.status == "fatal"
    assert d.message == "fatal: crashed 4 times in a row, last exit code 1"


def test_decide_message_names_the_attempt_and_delay():
    config = _cfg(autorestart="always", max_restarts=5, backoff_initial=1.0)
    d = decide(config, 2, 3)
    assert d.message == "crashed with exit code 3; restarting in 2.0 s (attempt 3 of 5)"


def test_decide_resets_the_count_after_a_stable_run():
    config = _cfg(autorestart="always", max_restarts=2, stable_after=5.0)
    d = decide(config, 2, 1, uptime=6.0)
    assert d.action == RESTART and d.restarts == 1 and d.delay == 0.0


def test_decide_policy_no_and_clean_exit_under_on_failure_do_not_restart():
    assert decide(_cfg(autorestart="no"), 0, 1).action == NONE
    d = decide(_cfg(autorestart="on-failure"), 0, 0)
    assert d.action == NONE and d.status == "exited"
    d = decide(_cfg(autorestart="no"), 0, -9)
    assert d.status == "crashed" and d.message == "was killed by SIGKILL"


def test_decide_health_failure_counts_as_a_failure():
    d = decide(_cfg(autorestart="on-failure"), 0, -15, reason="health check failed")
    assert d.action == RESTART and d.reason == "health check failed"


def test_max_restarts_zero_is_fatal_at_once():
    d = decide(_cfg(autorestart="always", max_restarts=0), 0, 1)
    assert d.action == FATAL and "1 time in a row" in d.message


# -------------------------------------------------------------------- ports


@pytest.fixture
def listener():
    port = free_port()
    proc = subprocess.Popen(python_cmd(listener_code(port)))
    try:
        from procsync.health import port_open

        wait_until(lambda: port_open(port, timeout=0.2), 5, "listener up")
        yield port, proc
    finally:
        proc.kill()
        proc.wait()


def test_listening_ports_maps_port_to_pid(listener):
    port, proc = listener
    assert listening_ports()[port] == proc.pid
    assert port_holders([port, free_port()]) == {port: proc.pid}
    assert port_holders([]) == {}


def test_port_holder_names_pid_and_process_name(listener):
    port, proc = listener
    text = port_holder(port)
    assert text is not None and f"pid {proc.pid}" in text and "python" in text
    assert port_holder(port, current={}) is None
    assert port_holder(port, current={port: proc.pid}) == describe_pid(proc.pid)


# ----------------------------------------------------------------- registry


def test_register_accepts_config_and_dict_in_order(orch):
    orch.register_server("b", ServerConfig(command="sleep 1"))
    orch.register_servers({"a": {"command": ["sleep", "1"], "ports": [free_port()]}})
    assert list(orch.configs) == ["b", "a"]
    assert orch.configs["a"].name == "a"
    assert [s.id for s in orch.get_server_status()] == ["b", "a"]


@pytest.mark.parametrize(
    ("sid", "config", "field"),
    [
        ("bad id!", {"command": "x"}, "id"),
        ("web", {"command": "x", "ports": [70000]}, "ports"),
        ("web", {"command": "x", "autorestart": "sometimes"}, "autorestart"),
        ("web", {"command": "x", "bogus": 1}, "bogus"),
        ("web", {"ports": [1]}, "command"),
        ("web", {"command": "x", "stop_timeout": -1}, "stop_timeout"),
        ("web", 42, "config"),
    ],
)
def test_register_rejects_bad_config_naming_id_and_field(orch, sid, config, field):
    with pytest.raises(ConfigError) as info:
        orch.register_server(sid, config)
    assert info.value.field == field
    assert repr(sid) in str(info.value)


def test_register_servers_validates_all_before_registering_any(orch):
    with pytest.raises(ConfigError, match="'bad'"):
        orch.register_servers({"good": {"command": "true"}, "bad": {"command": ""}})
    assert orch.configs == {}


def test_on_rejects_unknown_signal_listing_valid_ones(orch):
    with pytest.raises(ValueError, match="server_started"):
        orch.on("no_such_signal", lambda *a, **k: None)


def test_unknown_server_answers(orch):
    result = orch.start_server("ghost")
    assert not result.success and result.code == "unknown" and "ghost" in result.message
    assert orch.stop_server("ghost").code == "unknown"
    assert orch.restart_server("ghost").code == "unknown"
    kill = orch.kill_orphaned_process("ghost", 1234)
    assert not kill.success and "unknown server" in kill.message
    from procsync import ProcessNotFound

    with pytest.raises(ProcessNotFound):
        orch.get_server("ghost")
    with pytest.raises(ProcessNotFound):
        orch.tail_log("ghost")


def test_no_process_is_left_by_registration(orch):
    orch.register_server("idle", {"command": python_cmd("import time; time.sleep(30)")})
    assert orch.get_server("idle").status == "stopped"
    assert not orch.get_server("idle").running
    assert orch.manager.get_all_processes() == []
