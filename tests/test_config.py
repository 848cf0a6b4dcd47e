"""ServerConfig, HealthCheck and SpawnConfig validation: every bad field names the id and the field."""

from __future__ import annotations

import pytest

from procsync.config import HealthCheck, ServerConfig, SpawnConfig, as_server_config, load_config
from procsync.errors import ConfigError

# (extra keys over {"command": "x"}, field, exact message after "server 'web': ")
SERVER_CASES = [
    ({"command": None}, "command", "command: is required"),
    ({"command": ""}, "command", "command: is empty"),
    ({"command": []}, "command", "command: is empty"),
    ({"command": 5}, "command", "command: must be a string or a list of strings, not int"),
    ({"command": ["a", 1]}, "command", "command: argument 1 is not a string"),
    ({"ports": [0]}, "ports", "ports: 0 is not a port number (1..65535)"),
    ({"ports": [70000]}, "ports", "ports: 70000 is not a port number (1..65535)"),
    ({"ports": ["80"]}, "ports", "ports: '80' is not a port number (1..65535)"),
    ({"ports": [True]}, "ports", "ports: True is not a port number (1..65535)"),
    ({"ports": [80, 80]}, "ports", "ports: lists a port twice"),
    ({"ports": "80"}, "ports", "ports: must be a list of port numbers, not '80'"),
    ({"env": []}, "env", "env: must be a table of names to values, not []"),
    ({"env": {"A=B": "1"}}, "env", "env: 'A=B' is not a valid variable name"),
    ({"env": {"A": None}}, "env.A", "env.A: must be a string or number, not None"),
    ({"cwd": 5}, "cwd", "cwd: must be a path, not 5"),
    ({"color": 1}, "color", "color: must be a string, not 1"),
    ({"shell": "yes"}, "shell", "shell: must be true or false, not 'yes'"),
    ({"autostart": 1}, "autostart", "autostart: must be true or false, not 1"),
    ({"stop_signal": "SIGNOPE"}, "stop_signal", "stop_signal: unknown signal 'SIGNOPE'"),
    ({"stop_timeout": -1}, "stop_timeout", "stop_timeout: must be at least 0, not -1"),
    ({"start_timeout": "5"}, "start_timeout", "start_timeout: must be a number, not '5'"),
    ({"autorestart": "sometimes"}, "autorestart",
     "autorestart: 'sometimes' is not one of no, on-failure, always"),
    ({"max_restarts": 1.5}, "max_restarts", "max_restarts: must be a whole number, not 1.5"),
    ({"max_restarts": -1}, "max_restarts", "max_restarts: must be at least 0, not -1"),
    ({"backoff_initial": -0.5}, "backoff_initial", "backoff_initial: must be at least 0, not -0.5"),
    ({"backoff_max": None}, "backoff_max", "backoff_max: must be a number, not None"),
    ({"stable_after": -2}, "stable_after", "stable_after: must be at least 0, not -2"),
    ({"health": {}}, "health", "health: needs exactly one of http, tcp or command"),
    ({"health": {"http": "http://x", "tcp": 80}}, "health",
     "health: needs exactly one of http, tcp or command"),
    ({"health": {"http": "ftp://x"}}, "health.http", "health.http: 'ftp://x' is not an http(s) URL"),
    ({"health": {"tcp": 0}}, "health.tcp", "health.tcp: 0 is not a port number (1..65535)"),
    ({"health": {"http": "http://x", "expect_status": 700}}, "health.expect_status",
     "health.expect_status: 700 is not an HTTP status"),
    ({"health": {"tcp": 80, "timeout": 0}}, "health.timeout",
     "health.timeout: must be greater than 0, not 0"),
    ({"health": {"tcp": 80, "verb": "GET"}}, "health.verb",
     "health.verb: unknown key (known: command, expect_status, http, tcp, timeout)"),
    ({"health": "http://x"}, "health", "health: must be a table or a HealthCheck, not 'http://x'"),
    ({"health": {"command": []}}, "health.command", "health.command: is empty"),
    ({"log_file": ""}, "log_file", "log_file: must be a path, not ''"),
    ({"log_max_bytes": 0}, "log_max_bytes", "log_max_bytes: must be at least 1, not 0"),
    ({"log_backups": -1}, "log_backups", "log_backups: must be at least 0, not -1"),
    ({"prots": [1]}, "prots", "prots: unknown key (did you mean 'ports'?)"),
    ({"autorestart_policy": "no"}, "autorestart_policy",
     "autorestart_policy: unknown key (did you mean 'autorestart'?)"),
]


@pytest.mark.parametrize(("extra", "field", "message"), SERVER_CASES)
def test_bad_server_field_names_id_and_field(extra, field, message):
    data = {"command": "x", **extra}
    if data["command"] is None:
        del data["command"]
    with pytest.raises(ConfigError) as caught:
        as_server_config("web", data)
    assert caught.value.server_id == "web"
    assert caught.value.field == field
    assert str(caught.value) == f"server 'web': {message}"


def _has_none(case):
    extra = case.values[0] if hasattr(case, "values") else case[0]
    return any(v is None or (isinstance(v, dict) and None in v.values()) for v in extra.values()) and (
        extra.get("command", "x") is not None)


# TOML has no null: the cases built on None cannot be written in a file.
FILE_CASES = [case for case in SERVER_CASES if not _has_none(case)]


@pytest.mark.parametrize(("extra", "field", "message"), FILE_CASES)
def test_same_errors_from_a_config_file_name_the_file_table_and_key(tmp_path, extra, field, message):
    data = {"command": "x", **extra}
    if data["command"] is None:
        del data["command"]
    path = tmp_path / "procsync.toml"
    path.write_text("[servers.web]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in data.items()))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert text.startswith(f"{path}:")
    assert f"[servers.web] {message}" in text
    assert caught.value.server_id == "web" and caught.value.field == field


def _toml(value):
    """Just enough TOML for the table above (None is left out by the caller)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + "}"
    return repr(value)


SPAWN_CASES = [
    ({"stop_timeout": -1}, "stop_timeout", "stop_timeout: must be at least 0, not -1"),
    ({"ports": [0]}, "ports", "ports: 0 is not a port number (1..65535)"),
    ({"stop_signal": "FOO"}, "stop_signal", "stop_signal: unknown signal 'FOO'"),
    ({"env": {"": "1"}}, "env", "env: '' is not a valid variable name"),
    ({"command": ""}, "command", "command: is empty"),
    ({"cwd": ""}, "cwd", "cwd: must be a path, not ''"),
]


@pytest.mark.parametrize(("extra", "field", "message"), SPAWN_CASES)
def test_bad_spawn_field_names_id_and_field(extra, field, message):
    with pytest.raises(ConfigError) as caught:
        SpawnConfig(**{"id": "w", "command": "x", **extra})
    assert (caught.value.server_id, caught.value.field) == ("w", field)
    assert str(caught.value) == f"server 'w': {message}"


def test_unsplittable_command_is_reported_when_argv_is_built():
    with pytest.raises(ConfigError, match=r"^server 'w': command: cannot be split: No closing quotation$"):
        SpawnConfig(id="w", command="echo 'unclosed").argv()


def test_bad_id_and_bad_config_type():
    with pytest.raises(ConfigError, match=r"^server 'bad id': id: must be 1-64 letters"):
        as_server_config("bad id", {"command": "x"})
    with pytest.raises(ConfigError, match=r"^server 'w': config: must be a ServerConfig or a dict, not int$"):
        as_server_config("w", 5)


def test_missing_cwd_is_a_runtime_check():
    config = ServerConfig("x", cwd="/nonexistent/procsync")
    with pytest.raises(ConfigError, match=r"^server 'w': cwd: directory '/nonexistent/procsync' does not exist$"):
        config.check_runtime("w")


def test_health_check_alone_and_valid_configs_round_trip():
    with pytest.raises(ConfigError, match="needs exactly one of http, tcp or command"):
        HealthCheck()
    config = as_server_config("web", {
        "command": ["python", "-m", "http.server"], "ports": [8000], "autorestart": True,
        "health": {"http": "http://127.0.0.1:8000/", "expect_status": 200},
    })
    assert config.name == "web" and config.autorestart == "always" and config.ports == (8000,)
    assert isinstance(config.health, HealthCheck)
    assert ServerConfig.from_dict(config.to_dict(), "web") == config
