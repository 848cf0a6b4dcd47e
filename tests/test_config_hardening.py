"""Issue 11, defects 5 and 8: config values that passed `check` and failed at run time,
and a start that raised leaving its server "starting" for good."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import PY, is_gone, python_cmd, wait_until

from procsync import ServerConfig, SpawnConfig
from procsync.cli import procsync_cli
from procsync.config import ConfigFileError, HealthCheck, load_config
from procsync.errors import ConfigError

MAX_LOG_BACKUPS = 100  # documented in docs/config.md

SLEEPER = python_cmd("import time; time.sleep(60)")


def check(path: Path) -> tuple[int, str]:
    """`procsync check -c path` in this process: (exit code, stderr)."""
    result = CliRunner().invoke(procsync_cli, ["check", "-c", str(path)])
    return result.exit_code, result.stderr


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "procsync.toml"
    path.write_text(text, encoding="utf-8")
    return path


def refused(data: dict, field: str, problem: str = "") -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        ServerConfig.from_dict(data, "web")
    err = caught.value
    assert (err.server_id, err.field) == ("web", field), str(err)
    assert str(err).startswith(f"server 'web': {field}: "), str(err)
    assert problem in err.problem
    return err


# ------------------------------------------------------------------ defect 5: NUL and friends


@pytest.mark.parametrize(("data", "field"), [
    ({"command": "python -c x\0y"}, "command"),
    ({"command": [PY, "-c", "print(1)\0"]}, "command"),
    ({"command": "x", "shell": True, "env": {}}, None),  # control: valid
    ({"command": "x", "env": {"A": "b\0c"}}, "env.A"),
    ({"command": "x", "env": {"A\0B": "c"}}, "env"),
    ({"command": "x", "env": {"": "c"}}, "env"),
    ({"command": "x", "env": {"A=B": "c"}}, "env"),
    ({"command": "x", "env": {"A": "\ud800"}}, "env.A"),  # a lone surrogate cannot be exec'd
    ({"command": ["x", "\ud800"]}, "command"),
    ({"command": "x", "cwd": "/tmp\0/x"}, "cwd"),
    ({"command": "x", "log_file": "a\0.log"}, "log_file"),
    ({"command": "x", "health": {"command": ["true\0"]}}, "health.command"),
    ({"command": "x", "health": {"http": "http://127.0.0.1:80/\0"}}, "health.http"),
    ({"command": "x", "health": {"http": "http://127.0.0.1:80/a b"}}, "health.http"),
    ({"command": "x", "health": {"http": "http://127.0.0.1:99999/"}}, "health.http"),
])
def test_values_that_cannot_reach_exec_are_config_errors(data, field):
    if field is None:
        assert ServerConfig.from_dict(data, "web").shell is True
        return
    refused(data, field)


def test_nul_is_refused_by_spawn_config_too():
    with pytest.raises(ConfigError, match=r"^server 'w': env\.A: contains a NUL byte"):
        SpawnConfig(id="w", command="x", env={"A": "\0"})
    with pytest.raises(ConfigError, match=r"^server 'w': command: contains a NUL byte"):
        SpawnConfig(id="w", command=["x\0"])


def test_check_reports_a_nul_byte_with_file_table_and_key(tmp_path):
    path = write(tmp_path, '[servers.web]\ncommand = "run\\u0000 it"\n')
    code, err = check(path)
    assert code == 2
    assert err == f"Error: {path}:2: [servers.web] command: contains a NUL byte (at character 4)\n"
    path = write(tmp_path, '[servers.web]\ncommand = "x"\nenv = {TOKEN = "a\\u0000b"}\n')
    code, err = check(path)
    assert (code, err) == (2, f"Error: {path}:3: [servers.web] env.TOKEN: contains a NUL byte (at character 2)\n")
    assert "a\x00b" not in err and "a\\x00b" not in err  # the value may be a secret: not shown


def test_procfile_with_nul_is_refused(tmp_path):
    path = tmp_path / "Procfile"
    path.write_text("web: echo a\0b\n")
    with pytest.raises(ConfigFileError, match="command: contains a NUL byte"):
        load_config(path)
    path.write_text("web: echo ok\n")
    (tmp_path / ".env").write_text('SECRET="x\\0y"\nNUL=a\0b\n')
    with pytest.raises(ConfigFileError, match=r"env\.NUL: contains a NUL byte"):
        load_config(path)


# ------------------------------------------------------------------ defect 5: a start that raises


def broken_spawn(error: Exception):
    def spawn(config, **kwargs):
        raise error
    return spawn


@pytest.mark.parametrize("error", [ValueError("embedded null byte"), TypeError("expected str"),
                                   OSError(7, "Argument list too long")])
def test_a_start_that_raises_leaves_the_server_crashed_and_startable(orch, monkeypatch, error):
    orch.register_server("web", {"command": SLEEPER})
    orch.initialize()
    monkeypatch.setattr(orch.manager, "spawn", broken_spawn(error))
    result = orch.start_server("web")
    assert not result.success
    assert type(error).__name__ in result.message and str(error) in result.message
    status = orch.get_server("web")
    assert status.status == "crashed"
    assert not status.running and status.pid is None
    events = orch.history("web")
    assert events and events[0].event == "crashed" and str(error) in (events[0].reason or "")
    # the user can act on it: stop says it is not running, start works once spawning does
    assert orch.stop_server("web").code == "already_stopped"
    monkeypatch.undo()
    started = orch.start_server("web")
    assert started.success, started.message
    assert orch.get_server("web").status == "running"
    assert orch.stop_server("web").success


def test_a_start_that_raises_after_spawning_stops_what_it_spawned(orch, monkeypatch):
    orch.register_server("web", {"command": SLEEPER})
    orch.initialize()

    def watch(*args, **kwargs):
        raise RuntimeError("monitor refused")

    monkeypatch.setattr(orch.monitor, "watch", watch)
    result = orch.start_server("web")
    assert not result.success and "RuntimeError: monitor refused" in result.message
    status = orch.get_server("web")
    assert status.status == "crashed"
    spawned = orch.manager.get_process("web")
    assert spawned is not None
    wait_until(lambda: is_gone(spawned.pid), 10, "the process of the failed start to end")
    assert orch.get_server("web").status == "crashed"  # its exit is not reported as a new crash
    monkeypatch.undo()
    assert orch.start_server("web").success
    assert orch.stop_server("web").success


def test_a_start_without_wait_that_raises_is_not_stuck(orch, monkeypatch):
    orch.register_server("web", {"command": SLEEPER, "ports": [1]})
    orch.initialize()
    monkeypatch.setattr(orch.manager, "spawn", broken_spawn(ValueError("boom")))
    result = orch.start_server("web", wait=False)
    assert not result.success
    assert orch.get_server("web").status == "crashed"


def test_a_readiness_probe_that_raises_is_a_failing_probe(orch, monkeypatch):
    import procsync.orchestrator.starter as starting

    def probe(*args, **kwargs):
        raise ValueError("probe exploded")

    monkeypatch.setattr(starting, "port_open", probe)
    orch.register_server("web", {"command": SLEEPER, "ports": [1], "start_timeout": 0.3})
    orch.initialize()
    result = orch.start_server("web")
    assert not result.success and result.code == "start_timeout"
    assert "probe exploded" in result.message
    assert orch.get_server("web").status == "running"  # left running, as after any start timeout
    assert orch.stop_server("web").success


def test_an_automatic_restart_that_raises_goes_on_to_fatal(orch, monkeypatch):
    orch.register_server("web", {"command": python_cmd("import sys; sys.exit(3)"), "autorestart": "always",
                                 "max_restarts": 2, "backoff_initial": 0.01, "backoff_max": 0.01})
    orch.initialize()
    real = orch.manager.spawn
    calls = []

    def spawn(config, **kwargs):
        calls.append(config.id)
        if len(calls) == 1:
            return real(config, **kwargs)
        raise ValueError("embedded null byte")

    monkeypatch.setattr(orch.manager, "spawn", spawn)
    orch.start_server("web")
    wait_until(lambda: orch.get_server("web").status == "fatal", 15, "the server to become fatal")
    assert len(calls) == 3  # the first start and two restarts that raised


# ------------------------------------------------------------------ defect 8: numbers

DURATIONS = ["stop_timeout", "start_timeout", "backoff_initial", "backoff_max", "stable_after"]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("field", DURATIONS)
def test_nan_and_infinity_are_refused(field, value):
    refused({"command": "x", field: value}, field, "must be a finite number")


@pytest.mark.parametrize("value", [math.nan, math.inf, 1e300])
def test_health_timeout_must_be_finite_and_sane(value):
    refused({"command": "x", "health": {"tcp": 80, "timeout": value}}, "health.timeout")
    with pytest.raises(ConfigError):
        HealthCheck(tcp=80, timeout=value)


@pytest.mark.parametrize(("field", "value"), [
    ("stop_timeout", 1e300), ("start_timeout", 10**30), ("stable_after", 366 * 86400),
    ("log_backups", MAX_LOG_BACKUPS + 1), ("log_backups", 1_000_000_000), ("log_max_bytes", 1 << 41),
    ("log_max_bytes", math.inf), ("log_backups", math.nan),
])
def test_out_of_range_values_are_refused(field, value):
    refused({"command": "x", field: value}, field)


def test_sane_values_still_pass():
    config = ServerConfig.from_dict({"command": "x", "log_backups": 0, "stop_timeout": 0,
                                     "start_timeout": 3600.5, "log_max_bytes": 1}, "web")
    assert (config.log_backups, config.stop_timeout) == (0, 0)
    assert ServerConfig.from_dict({"command": "x", "log_backups": MAX_LOG_BACKUPS}, "web").log_backups == 100


def test_spawn_config_checks_rotation_and_timeout():
    for kwargs in ({"stop_timeout": math.nan}, {"log_backups": 10**9}, {"log_max_bytes": 0}):
        with pytest.raises(ConfigError):
            SpawnConfig(id="w", command="x", **kwargs)


# ------------------------------------------------------------------ defect 8: commands


@pytest.mark.parametrize("command", ["python -c 'print(1)", 'echo "unclosed', "echo trailing\\"])
def test_an_unsplittable_command_is_an_error(command):
    refused({"command": command}, "command", "cannot be split")
    assert ServerConfig.from_dict({"command": command, "shell": True}, "web").shell  # the shell parses it


def test_an_unsplittable_health_command_is_an_error():
    refused({"command": "x", "health": {"command": "curl 'http://x"}}, "health.command", "cannot be split")


# ------------------------------------------------------------------ defect 8: `procsync check`

SERVER_ERRORS = [
    ("stop_timeout = nan", "stop_timeout: must be a finite number, not nan"),
    ("start_timeout = inf", "start_timeout: must be a finite number, not inf"),
    ("backoff_initial = -inf", "backoff_initial: must be a finite number, not -inf"),
    ("backoff_max = nan", "backoff_max: must be a finite number, not nan"),
    ("stable_after = +inf", "stable_after: must be a finite number, not inf"),
    ("health = {tcp = 80, timeout = nan}", "health.timeout: must be a finite number, not nan"),
    ("log_max_bytes = inf", "log_max_bytes: must be a whole number, not inf"),
    ("log_backups = 1000000000", "log_backups: must be at most 100, not 1000000000"),
    ("max_restarts = nan", "max_restarts: must be a whole number, not nan"),
    ("command = \"python -c 'print(1)\"", "command: cannot be split: No closing quotation"),
]


@pytest.mark.parametrize(("line", "message"), SERVER_ERRORS)
def test_check_refuses_bad_server_values_naming_file_table_and_key(tmp_path, line, message):
    body = line if line.startswith("command") else f"command = 'x'\n{line}"
    path = write(tmp_path, f"[servers.web]\n{body}\n")
    number = 2 if line.startswith("command") else 3
    assert check(path) == (2, f"Error: {path}:{number}: [servers.web] {message}\n")


SETTINGS_ERRORS = [
    ("interval = nan", "interval: must be a number of seconds above 0, not nan"),
    ("interval = inf", "interval: must be at most 3.1536e+07 seconds, not inf"),
    ("interval = -inf", "interval: must be a number of seconds above 0, not -inf"),
    ("port = nan", "port: nan is not a port number (1..65535)"),
    ("port = inf", "port: inf is not a port number (1..65535)"),
    ("host = '127.0.0.1 x'", "host: must be a host name or address, not '127.0.0.1 x'"),
    ('state_file = "a\\u0000b"', "state_file: contains a NUL byte (at character 2)"),
    ("auth_token = 'to ken'", "auth_token: must be printable ASCII without spaces (it is sent in an HTTP header)"),
    ("webhooks = [{url = 'http://x/a b'}]", "webhooks[0].url: 'http://x/a b' is not an http(s) URL"),
]


@pytest.mark.parametrize(("line", "message"), SETTINGS_ERRORS)
def test_check_refuses_bad_settings(tmp_path, line, message):
    path = write(tmp_path, f"[procsync]\n{line}\n")
    assert check(path) == (2, f"Error: {path}:2: [procsync] {message}\n")


@pytest.mark.parametrize("prefix", ["/a b", "/a'b", '/a"b', "/<x>", "/a?b", "/a#b", "/caf\u00e9", "/a//b",
                                    "/..", "/a/./b", "/%2e", "/a\\b", "/a\u0000"])
def test_url_prefix_must_be_a_plain_url_path(tmp_path, prefix):
    path = write(tmp_path, f"[procsync]\nurl_prefix = {json.dumps(prefix)}\n")
    code, err = check(path)
    assert code == 2
    assert err.startswith(f"Error: {path}:2: [procsync] url_prefix: {prefix!r} may only hold"), err


@pytest.mark.parametrize(("prefix", "mounted"), [("/", ""), ("/admin", "/admin"), ("/a/b-c_d.e~f/", "/a/b-c_d.e~f"),
                                                 ("/procsync", "/procsync")])
def test_plain_url_prefixes_load(tmp_path, prefix, mounted):
    path = write(tmp_path, f"[procsync]\nurl_prefix = {json.dumps(prefix)}\n")
    assert load_config(path).settings.url_prefix == mounted


def test_the_real_command_exits_2(tmp_path):
    path = write(tmp_path, "[procsync]\ninterval = inf\n[servers.web]\ncommand = 'x'\n")
    result = subprocess.run([sys.executable, "-m", "procsync", "check", "-c", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == f"Error: {path}:2: [procsync] interval: must be at most 3.1536e+07 seconds, not inf\n"
    assert result.stdout == ""
