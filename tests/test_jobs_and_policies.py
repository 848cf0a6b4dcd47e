"""One-shot jobs, success_exit_codes, ready_log_line, reload_signal and env_file, with real processes."""

from __future__ import annotations

import os

import pytest
from helpers import free_port, hup_counter_code, hups, listener_code, python_cmd, wait_until

from procsync import ConfigError, ServerOrchestrator
from procsync.config.units import parse_size
from procsync.logs import LineWatch

SLEEP = python_cmd("import time; time.sleep(60)")


def events(orch: ServerOrchestrator, sid: str) -> list[str]:
    return [e.event for e in reversed(orch.history(sid))]


# ------------------------------------------------------------ jobs


def test_a_job_that_succeeds_reads_completed_and_is_never_restarted(orch):
    started = []
    orch.on("process_started", lambda sender, **p: started.append(p["id"]))
    orch.register_server("migrate", {"command": python_cmd("print('migrated', flush=True)"),
                                     "kind": "job", "autorestart": "always"})
    assert orch.start_server("migrate").success
    wait_until(lambda: orch.get_server("migrate").status == "completed", 5, "completed")
    status = orch.get_server("migrate")
    assert (status.last_exit_code, status.restarts, status.running, status.kind) == (0, 0, False, "job")
    assert events(orch, "migrate") == ["started", "completed"]
    assert orch.history("migrate")[0].log_tail == ["migrated"]
    assert orch.store.get_process("migrate").status == "completed"
    assert started == ["migrate"]  # "always" does not restart a job that finished


def test_a_failing_job_is_retried_with_backoff_until_it_completes(orch, tmp_path):
    counter = tmp_path / "attempts"
    code = (f"import pathlib, sys; p = pathlib.Path({str(counter)!r}); "
            "n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); "
            "sys.exit(0 if n >= 3 else 5)")
    orch.register_server("seed", {"command": python_cmd(code), "kind": "job", "autorestart": "on-failure",
                                  "backoff_initial": 0.05, "max_restarts": 5})
    orch.start_server("seed")
    wait_until(lambda: orch.get_server("seed").status == "completed", 10, "completed on the 3rd try")
    assert counter.read_text() == "3"
    assert events(orch, "seed") == ["started", "crashed", "restarting", "started", "crashed",
                                    "restarting", "started", "completed"]


def test_a_failing_job_without_a_restart_policy_reads_crashed(orch):
    orch.register_server("build", {"command": python_cmd("import sys; sys.exit(2)"), "kind": "job"})
    orch.start_server("build")
    wait_until(lambda: orch.get_server("build").status == "crashed", 5, "crashed")
    assert orch.get_server("build").last_exit_code == 2


# ------------------------------------------------------------ success_exit_codes


def test_success_exit_codes_decide_the_restart_policy_and_the_conditions(orch):
    orch.register_servers({
        "tool": {"command": python_cmd("import sys; sys.exit(3)"), "autorestart": "on-failure",
                 "success_exit_codes": [0, 3], "backoff_initial": 0.05},
        "check": {"command": python_cmd("import sys; sys.exit(2)"), "kind": "job", "success_exit_codes": [2]},
        "app": {"command": SLEEP, "depends_on": {"check": "completed_successfully"}},
    })
    orch.start_server("tool")
    wait_until(lambda: orch.get_server("tool").status == "exited", 5, "exited, not crashed")
    assert orch.get_server("tool").restarts == 0
    assert orch.history("tool")[0].reason == "exited with code 3"
    assert orch.start_server("app").success
    assert (orch.get_server("check").status, orch.get_server("check").last_exit_code) == ("completed", 2)
    # a code outside the list is a failure
    orch.register_server("tool", {"command": python_cmd("import sys; sys.exit(4)"), "autorestart": "on-failure",
                                  "success_exit_codes": [0, 3], "max_restarts": 0})
    orch.start_server("tool")
    wait_until(lambda: orch.get_server("tool").status == "fatal", 5, "fatal")


# ------------------------------------------------------------ ready_log_line


def test_ready_log_line_holds_the_start_until_the_line_appears(orch):
    states = []
    orch.register_server("worker", {
        "command": python_cmd("import time; print('loading', flush=True); time.sleep(0.5); "
                              "print('worker ready: 4 threads', flush=True); time.sleep(60)"),
        "ready_log_line": r"ready: \d+ threads",
    })
    orch.on("process_started", lambda sender, **p: states.append(orch.get_server("worker").status))
    result = orch.start_server("worker")
    assert result.success and "ready after" in result.message
    assert states == ["starting"]
    assert orch.get_server("worker").status == "running"


def test_ready_log_line_only_counts_lines_of_this_run(orch, tmp_path):
    code = "import time; time.sleep(60)"
    orch.register_server("w", {"command": python_cmd("print('up and ready', flush=True); " + code),
                               "ready_log_line": "up and ready"})
    assert orch.start_server("w").success
    assert orch.stop_server("w").success
    # the old line is still in the log: a run that never prints it is not ready
    orch.register_server("w", {"command": python_cmd(code), "ready_log_line": "up and ready",
                               "start_timeout": 0.5})
    result = orch.start_server("w")
    assert result.code == "start_timeout"
    assert "no line matching 'up and ready' in its log yet" in result.message


@pytest.mark.parametrize("text, size", [
    (536870912, 536870912), ("512MB", 512 * 10**6), ("1GiB", 1 << 30), ("512M", 512 << 20),
    ("1.5 G", 3 << 29), ("64kB", 64000), ("64k", 65536), ("100", 100),
])
def test_memory_sizes_with_units(text, size):
    assert parse_size(text) == size


def test_line_watch_reads_only_what_is_new(tmp_path):
    log = tmp_path / "x.log"
    log.write_bytes(b"old ready line\n" + b"x" * 1_000_000 + b"\n")
    watch = LineWatch(log, "ready", LineWatch.size_of(log))
    try:
        assert not watch.poll()
        assert watch.offset == log.stat().st_size
        with open(log, "ab") as f:
            f.write(b"still booting\nnow rea")
        assert not watch.poll()
        with open(log, "ab") as f:
            f.write(b"dy\n")
        assert watch.poll() and watch.seen
        os.truncate(log, 0)  # a rotation's truncate: the watch starts again at 0
        fresh = LineWatch(log, "again", 10_000)
        with open(log, "ab") as f:
            f.write(b"ready again\n")
        assert fresh.poll()
        fresh.close()
    finally:
        watch.close()


# ------------------------------------------------------------ reload_signal


def test_reload_sends_the_reload_signal_instead_of_a_restart(orch, tmp_path):
    count = tmp_path / "hups"
    seen = []
    orch.on("server_reloaded", lambda sender, **p: seen.append(p))
    orch.register_server("gunicorn", {"command": python_cmd(hup_counter_code(count)),
                                      "reload_signal": "HUP"})
    assert orch.start_server("gunicorn").success
    wait_until(lambda: "handler installed" in orch.tail_log("gunicorn"), 5, "handler installed")
    pid = orch.get_server("gunicorn").pid
    result = orch.reload_server("gunicorn")
    assert result.success and result.message == f"sent SIGHUP to 'gunicorn' (pid {pid})"
    wait_until(lambda: hups(count) == [str(pid)], 5, "one SIGHUP counted")
    assert orch.reload_server("gunicorn").success
    wait_until(lambda: hups(count) == [str(pid)] * 2, 5, "two SIGHUPs counted")
    status = orch.get_server("gunicorn")
    assert (status.pid, status.status, status.reload_signal) == (pid, "running", "SIGHUP")
    assert orch.history("gunicorn")[0].event == "reloaded"
    assert seen[0]["id"] == "gunicorn" and seen[0]["pid"] == pid and seen[0]["signal"] == "SIGHUP"


def test_reload_refusals(orch):
    orch.register_servers({"plain": {"command": SLEEP}, "hup": {"command": SLEEP, "reload_signal": "SIGHUP"}})
    assert orch.reload_server("nope").code == "unknown"
    assert orch.reload_server("hup").code == "already_stopped"
    orch.start_server("plain")
    result = orch.reload_server("plain")
    assert result.code == "not_supported" and "no reload_signal" in result.message
    assert orch.get_server("plain").running


# ------------------------------------------------------------ env_file


def test_env_file_is_merged_under_env_and_read_at_each_start(orch, tmp_path):
    env_file = tmp_path / "app.env"
    env_file.write_text("# settings\nexport GREETING=hello\nTARGET='world'\nLEVEL=1\n")
    out = tmp_path / "seen"
    code = (f"import os, pathlib; pathlib.Path({str(out)!r}).write_text("
            "os.environ['GREETING'] + ' ' + os.environ['TARGET'] + ' ' + os.environ['LEVEL'])")
    orch.register_server("app", {"command": python_cmd(code), "cwd": str(tmp_path),
                                 "env_file": "app.env", "env": {"LEVEL": "2"}})
    orch.start_server("app")
    wait_until(lambda: out.exists() and out.read_text(), 5, "the child wrote its environment")
    assert out.read_text() == "hello world 2"  # env wins over env_file
    out.unlink()
    env_file.write_text("GREETING=hi\nTARGET=there\n")
    wait_until(lambda: orch.get_server("app").status == "exited", 5, "exited")
    orch.start_server("app")
    wait_until(lambda: out.exists() and out.read_text(), 5, "the child wrote its environment again")
    assert out.read_text() == "hi there 2"


def test_a_missing_or_broken_env_file_refuses_the_start_and_names_it(orch, tmp_path):
    orch.register_server("app", {"command": SLEEP, "env_file": str(tmp_path / "missing.env")})
    result = orch.start_server("app")
    assert result.code == "bad_config" and "env_file" in result.message and "missing.env" in result.message
    (tmp_path / "bad.env").write_text("OK=1\nthis is not a variable\n")
    orch.register_server("app", {"command": SLEEP, "env_file": str(tmp_path / "bad.env")})
    result = orch.start_server("app")
    assert result.code == "bad_config" and "line 2" in result.message
    assert not orch.get_server("app").running


@pytest.mark.parametrize("field, value, problem", [
    ("kind", "daemon", "'daemon' is not one of server, job"),
    ("memory_limit", "12 parsecs", "is not a size"),
    ("memory_action", "panic", "'panic' is not one of restart, stop, alert"),
    ("reload_signal", "SIGNOPE", "unknown signal"),
    ("success_exit_codes", [0, 300], "300 is not an exit code"),
    ("ready_log_line", "([", "is not a valid regular expression"),
    ("group", "a b", "is not a group name"),
    ("depends_on", "db", "must be a list of server ids"),
    # an OverflowError inside re and float() once escaped validation as a non-ConfigError
    ("ready_log_line", "a{99999999999}", "is not a valid regular expression"),
    ("memory_limit", "9" * 400 + "GB", "must be at most 1 PiB"),
    ("memory_limit", 10 ** 400, "must be at most 1 PiB"),
])
def test_bad_policy_values_name_the_field(orch, field, value, problem):
    with pytest.raises(ConfigError) as info:
        orch.register_server("x", {"command": SLEEP, field: value})
    assert f"server 'x': {field}" in str(info.value) and problem in str(info.value)


def test_a_port_server_with_ready_log_line_needs_both(orch):
    port = free_port()
    orch.register_server("both", {"command": python_cmd(listener_code(port)), "ports": [port],
                                  "ready_log_line": "never printed", "start_timeout": 0.5})
    result = orch.start_server("both")
    assert result.code == "start_timeout" and "no line matching" in result.message
    status = orch.get_server("both")
    assert status.running and status.status == "running" and status.health != "healthy"
