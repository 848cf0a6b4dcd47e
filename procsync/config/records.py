"""Server configuration records and their validation.

`ServerConfig` is what a user registers; `SpawnConfig` is the part the
manager needs to run one process; `HealthCheck` says how to tell that a
server is ready and well. Every invalid value raises `ConfigError` naming
the server id and the field.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shlex
import signal as _signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from .dotenv import DotenvError, read_dotenv
from .fielddoc import documented
from .schedule import parse_schedule
from .units import parse_size

AUTORESTART_POLICIES = ("no", "on-failure", "always")
#: What a server waits for in a dependency (`depends_on`), as process-compose names them.
CONDITIONS = ("started", "healthy", "completed", "completed_successfully", "log_ready")
KINDS = ("server", "job")
MEMORY_ACTIONS = ("restart", "stop", "alert")
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MiB = 1024 * 1024
#: Longest duration any seconds field accepts (a year): longer ones overflow timers and dates.
MAX_SECONDS = 365 * 24 * 3600.0
#: Bounds of the log rotation settings: more backups than this only burn time renaming.
MAX_LOG_BACKUPS = 100
MAX_LOG_BYTES = 1 << 40  # 1 TiB


def _shown(value: Any) -> str:
    """str(value) for an error message, even for an int too long for str()."""
    try:
        return str(value)
    except ValueError:
        return f"<{type(value).__name__}>"


def _repr(value: Any, limit: int = 200) -> str:
    """repr(value) for an error message, cut to `limit` characters, never raising."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int too long for str(), a list nested too deep
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_id(server_id: Any) -> str:
    """Validate a server id: letters, digits, '-', '_', '.', 1 to 64 characters, not '.' or '..'.

    Such an id needs no escaping as a URL path segment, and no client rewrites it.
    """
    if not isinstance(server_id, str) or not ID_PATTERN.fullmatch(server_id):
        raise ConfigError(
            _shown(server_id), "id", "must be 1-64 letters, digits, '-', '_' or '.'"
        )
    if server_id in (".", ".."):  # a URL path step: clients would resolve it away
        raise ConfigError(server_id, "id", "must not be '.' or '..' (they are not names in a URL path)")
    return server_id


def signal_name(value: Any, server_id: str = "?", field_name: str = "stop_signal") -> str:
    """Normalise "TERM", "SIGTERM", 15 or signal.SIGTERM to "SIGTERM"."""
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return _signal.Signals(value).name
        if isinstance(value, str):
            name = value.strip().upper()
            if not name.startswith("SIG"):
                name = "SIG" + name
            return _signal.Signals[name].name
    except (KeyError, ValueError):
        pass
    raise ConfigError(server_id, field_name, f"unknown signal {_repr(value)}")


#: procsync's own secrets: never inherited by a server or a health-check command.
PRIVATE_ENV = frozenset({"PROCSYNC_AUTH_TOKEN"})


def child_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a child starts with: ours without PRIVATE_ENV, then `extra` over it.

    A server gets a private variable only when its own `env` sets it.
    """
    env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
    if extra:
        env.update(extra)
    return env


def command_text(command: str | Sequence[str]) -> str:
    """A command as one line for people and for the state file."""
    return command if isinstance(command, str) else shlex.join(command)


def text_problem(value: str) -> str | None:
    """Why `value` cannot be an argument, a variable or a path (a NUL byte, not encodable for
    the OS), or None. It gives the position, not the value: the value may be a secret."""
    if "\0" in value:
        return f"contains a NUL byte (at character {value.index(chr(0)) + 1})"
    try:
        os.fsencode(value)
    except UnicodeEncodeError as err:  # a lone surrogate: nothing can pass it to exec()
        return f"cannot be encoded for the operating system (character {err.start + 1} is a lone surrogate)"
    return None


def _check_text(server_id: str, name: str, value: str) -> str:
    """`value` if it can be an argument, a variable or a path (see `text_problem`)."""
    problem = text_problem(value)
    if problem:
        raise ConfigError(server_id, name, problem)
    return value


def _check_command(server_id: str, command: Any, *, split: bool = False) -> str | tuple[str, ...]:
    """A command string or argument list; with `split`, a string must split like a shell would."""
    if isinstance(command, str):
        if not command.strip():
            raise ConfigError(server_id, "command", "is empty")
        _check_text(server_id, "command", command)
        if split:
            try:
                words = shlex.split(command)
            except ValueError as err:  # "No closing quotation", "No escaped character"
                raise ConfigError(server_id, "command", f"cannot be split: {err}") from None
            if not words:
                raise ConfigError(server_id, "command", "has no program to run")
        return command
    if isinstance(command, Sequence) and not isinstance(command, bytes | bytearray):
        parts = tuple(command)
        if not parts:
            raise ConfigError(server_id, "command", "is empty")
        for part in parts:
            if not isinstance(part, str | os.PathLike):
                raise ConfigError(server_id, "command", f"argument {_repr(part)} is not a string")
        checked = []
        for part in parts:
            text = os.fspath(part)
            if not isinstance(text, str):
                raise ConfigError(server_id, "command", f"argument {_repr(part)} is not a string")
            checked.append(_check_text(server_id, "command", text))
        return tuple(checked)
    if command is None:
        raise ConfigError(server_id, "command", "is required")
    raise ConfigError(server_id, "command", f"must be a string or a list of strings, not {type(command).__name__}")


def _check_number(server_id: str, name: str, value: Any, *, integer: bool = False,
                  minimum: float = 0.0, exclusive: bool = False, maximum: float | None = None) -> Any:
    """A finite int (or float) in [minimum, maximum]; NaN and infinity are refused."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "a whole number" if integer else "a number"
        raise ConfigError(server_id, name, f"must be {kind}, not {_repr(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(server_id, name, f"must be a finite number, not {_repr(value)}")
    if value < minimum or (exclusive and value == minimum):
        bound = "greater than" if exclusive else "at least"
        raise ConfigError(server_id, name, f"must be {bound} {minimum:g}, not {_repr(value)}")
    if maximum is not None and value > maximum:
        raise ConfigError(server_id, name, f"must be at most {maximum:g}, not {_repr(value)}")
    return value


def _check_seconds(server_id: str, name: str, value: Any, *, exclusive: bool = False) -> Any:
    """A duration in seconds: finite, not negative (or above 0), at most MAX_SECONDS."""
    return _check_number(server_id, name, value, exclusive=exclusive, maximum=MAX_SECONDS)


def _check_log_rotation(server_id: str, max_bytes: Any, backups: Any) -> None:
    _check_number(server_id, "log_max_bytes", max_bytes, integer=True, minimum=1, maximum=MAX_LOG_BYTES)
    _check_number(server_id, "log_backups", backups, integer=True, maximum=MAX_LOG_BACKUPS)


def check_url(server_id: str, name: str, value: Any) -> str:
    """An http(s) URL with a host and nothing that cannot go in a request line."""
    if isinstance(value, str) and not any(c.isspace() or not c.isprintable() for c in value):
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
            if parts.scheme in ("http", "https") and parts.hostname:
                return value
        except ValueError:  # a bad IPv6 literal, a port out of range
            pass
    raise ConfigError(server_id, name, f"{_repr(value)} is not an http(s) URL")


def _check_port(server_id: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(server_id, name, f"{_repr(value)} is not a port number (1..65535)")
    return value


def _check_ports(server_id: str, ports: Any) -> tuple[int, ...]:
    if ports is None:
        return ()
    if isinstance(ports, int) and not isinstance(ports, bool):
        ports = [ports]
    if isinstance(ports, str | bytes) or not isinstance(ports, Sequence):
        raise ConfigError(server_id, "ports", f"must be a list of port numbers, not {_repr(ports)}")
    checked = tuple(_check_port(server_id, "ports", p) for p in ports)
    if len(set(checked)) != len(checked):
        raise ConfigError(server_id, "ports", "lists a port twice")
    return checked


def _check_env(server_id: str, env: Any) -> dict[str, str] | None:
    if env is None:
        return None
    if not isinstance(env, Mapping):
        raise ConfigError(server_id, "env", f"must be a table of names to values, not {_repr(env)}")
    out: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key:
            raise ConfigError(server_id, "env", f"{_repr(key)} is not a valid variable name")
        _check_text(server_id, "env", key)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(server_id, f"env.{key}", f"must be a string or number, not {_repr(value)}")
        try:
            text = str(value)
        except ValueError as err:  # an int of more digits than str() allows
            raise ConfigError(server_id, f"env.{key}", "is too long a number") from err
        out[key] = _check_text(server_id, f"env.{key}", text)
    return out


def _check_path(server_id: str, name: str, value: Any) -> str | None:
    if value is None:
        return None
    text = os.fspath(value) if isinstance(value, str | os.PathLike) else None
    if not isinstance(text, str) or not text:
        raise ConfigError(server_id, name, f"must be a path, not {_repr(value)}")
    return _check_text(server_id, name, text)


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """How to tell a server is healthy: exactly one of `http`, `tcp`, `command`."""

    http: str | None = documented(
        None, toml="http(s) URL",
        doc="healthy when a GET answers `expect_status` (any 2xx or 3xx without it); no spaces "
            "or control characters",
        example='health = {http = "http://127.0.0.1:8000/healthz"}')
    tcp: int | None = documented(None, toml="port (1..65535)",
                                 doc="healthy when a TCP connection to this loopback port opens",
                                 example="health = {tcp = 6379}")
    command: tuple[str, ...] | str | None = documented(
        None, toml="string or list of strings", doc="healthy when the command exits 0",
        example='health = {command = ["pg_isready", "-q"]}')
    expect_status: int | None = documented(
        None, toml="integer 100..599", default_text="any 2xx or 3xx",
        doc="the HTTP status an `http` check wants",
        example='health = {http = "http://127.0.0.1:8000/", expect_status = 204}')
    timeout: float = documented(
        1.0, toml="number (s), above 0", doc="how long one check may take",
        example='health = {tcp = 5432, timeout = 2.5}')

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, server_id: str = "?") -> None:
        """Raise ConfigError (naming `server_id`) unless this check is well formed."""
        given = [k for k in ("http", "tcp", "command") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(server_id, "health", "needs exactly one of http, tcp or command")
        if self.http is not None:
            check_url(server_id, "health.http", self.http)
        if self.tcp is not None:
            _check_port(server_id, "health.tcp", self.tcp)
        if self.command is not None:
            try:
                checked = _check_command(server_id, self.command, split=True)
            except ConfigError as err:
                raise ConfigError(server_id, "health.command", err.problem) from None
            object.__setattr__(self, "command", checked)
        if self.expect_status is not None:
            _check_number(server_id, "health.expect_status", self.expect_status, integer=True, minimum=100)
            if self.expect_status > 599:
                raise ConfigError(server_id, "health.expect_status", f"{self.expect_status} is not an HTTP status")
        _check_seconds(server_id, "health.timeout", self.timeout, exclusive=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], server_id: str = "?") -> HealthCheck:
        """Build from the config-file form, e.g. {"http": URL, "expect_status": 200}."""
        if not isinstance(data, Mapping):
            raise ConfigError(server_id, "health", f"must be a table, not {_repr(data)}")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(server_id, f"health.{key}", f"unknown key (known: {', '.join(sorted(known))})")
        try:
            return cls(**dict(data))
        except ConfigError as err:
            raise ConfigError(server_id, err.field, err.problem) from None

    def to_dict(self) -> dict[str, Any]:
        """The config-file form, without unset keys."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True, slots=True)
class SpawnConfig:
    """What the manager needs to run one process."""

    id: str
    command: str | tuple[str, ...] | list[str]
    cwd: str | None = None
    env: Mapping[str, str] | None = None  # merged over os.environ
    shell: bool = False
    ports: tuple[int, ...] = ()
    log_file: str | None = None
    stop_signal: str = "SIGTERM"
    stop_timeout: float = 10.0
    log_max_bytes: int = 10 * MiB
    log_backups: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "command", _check_command(self.id, self.command, split=not self.shell))
        object.__setattr__(self, "ports", _check_ports(self.id, self.ports))
        object.__setattr__(self, "stop_signal", signal_name(self.stop_signal, self.id))
        _check_seconds(self.id, "stop_timeout", self.stop_timeout)
        _check_log_rotation(self.id, self.log_max_bytes, self.log_backups)
        object.__setattr__(self, "env", _check_env(self.id, self.env))
        object.__setattr__(self, "cwd", _check_path(self.id, "cwd", self.cwd))
        object.__setattr__(self, "log_file", _check_path(self.id, "log_file", self.log_file))

    def argv(self) -> list[str]:
        """The argument vector to exec: shlex-split unless run through the shell."""
        if self.shell:
            return ["/bin/sh", "-c", command_text(self.command)]
        if isinstance(self.command, str):
            try:
                return shlex.split(self.command)
            except ValueError as err:
                raise ConfigError(self.id, "command", f"cannot be split: {err}") from None
        return list(self.command)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """A registered server: its command and how to run, stop, check and restart it."""

    command: str | tuple[str, ...] | list[str] = documented(
        toml="string or list of strings",
        doc="what to run. A string is split like a shell would (no shell runs unless `shell = true`); "
            "a string that cannot be split (an unclosed quote, a trailing `\\`) is an error unless "
            "`shell = true`",
        example='command = "gunicorn app:app -b 127.0.0.1:8000"')
    name: str | None = documented(
        None, toml="string", default_text="the id", doc="display name",
        example='name = "Web frontend"')
    cwd: str | None = documented(
        None, toml="path", default_text="the config file's folder",
        doc="working directory; must exist at start", example='cwd = "backend"')
    env: Mapping[str, str] | None = documented(
        None, toml="table of string/number", default_text="`{}`",
        doc="merged over the environment; every server also gets `PROCSYNC_ID=<id>`",
        example='env = {DATABASE_URL = "postgres://localhost/app", WORKERS = 4}')
    ports: tuple[int, ...] | list[int] = documented(
        (), toml="list of integers (1..65535)",
        doc="ports the server listens on: readiness, health, and orphan detection",
        example="ports = [8000]")
    ports_required: bool = documented(
        True, toml="bool",
        doc="`false`: the ports are the server's to use if it wants (a Procfile's `PORT`), not "
            "a promise to listen: it is ready when it runs and healthy while it lives, and the "
            "status still shows which of them it listens on. A port held by another process "
            "still refuses the start and shows that process as an orphan",
        example="ports_required = false")
    color: str | None = documented(None, toml="string", doc="for the dashboard",
                                   example='color = "#2a7ae2"')
    shell: bool = documented(False, toml="bool", doc="run `command` with `/bin/sh -c`",
                             example="shell = true")
    stop_signal: str = documented(
        "SIGTERM", toml="signal name or number",
        doc='sent to the process group to stop it (`"INT"`, `"SIGINT"`, `2` all work)',
        example='stop_signal = "SIGINT"')
    stop_timeout: float = documented(10.0, toml="number (s), 0..31536000",
                                     doc="wait before SIGKILL", example="stop_timeout = 20")
    start_timeout: float = documented(30.0, toml="number (s), 0..31536000",
                                      doc="readiness wait of a start", example="start_timeout = 60")
    autorestart: str = documented(
        "no", toml='`"no"`, `"on-failure"`, `"always"` (or bool)',
        doc="restart policy after an exit nobody asked for; see [restarts](restarts.md)",
        example='autorestart = "on-failure"')
    max_restarts: int = documented(5, toml="integer",
                                   doc='consecutive automatic restarts before "fatal"',
                                   example="max_restarts = 10")
    backoff_initial: float = documented(
        1.0, toml="number (s), 0..31536000",
        doc="delay of the 2nd consecutive restart (the 1st is immediate); doubles each time",
        example="backoff_initial = 0.5")
    backoff_max: float = documented(60.0, toml="number (s), 0..31536000",
                                    doc="longest delay between restarts", example="backoff_max = 30")
    stable_after: float = documented(10.0, toml="number (s), 0..31536000",
                                     doc="uptime after which the restart count resets",
                                     example="stable_after = 30")
    health: HealthCheck | Mapping[str, Any] | None = documented(
        None, toml="inline table",
        doc='how to tell the server is well: `{http = URL, expect_status = 200, timeout = 1.0}`, '
            '`{tcp = PORT}` or `{command = [...]}` (exit 0 = healthy); the keys are in the '
            '`health` table below. Without it, health is "every port open" (or "alive" with '
            'no ports)',
        example='health = {http = "http://127.0.0.1:8000/healthz"}')
    autostart: bool = documented(False, toml="bool", doc="started by `procsync serve`",
                                 example="autostart = true")
    log_file: str | None = documented(None, toml="path", default_text="`<log_dir>/<id>.log`",
                                      doc="where stdout and stderr go",
                                      example='log_file = "logs/web.log"')
    log_max_bytes: int = documented(10 * MiB, toml="integer, 1..2^40 (1 TiB)",
                                    default_text="10485760 (10 MiB)",
                                    doc="rotate the log at this size",
                                    example="log_max_bytes = 52428800")
    log_backups: int = documented(5, toml="integer, 0..100",
                                  doc="rotated logs kept (0: the log is emptied when it rotates)",
                                  example="log_backups = 2")
    kind: str = documented(
        "server", toml='`"server"` or `"job"`',
        doc='a job is meant to finish (migrations, a build step): after an exit with a success '
            'code it reads "completed" and is never restarted; a failing job reads "crashed" and '
            '`autorestart = "on-failure"` retries it',
        example='kind = "job"')
    depends_on: Mapping[str, str] | Sequence[str] | None = documented(
        None, toml="list of ids, or table of id = condition",
        doc='start these first and wait for each condition: `"started"`, `"healthy"`, '
            '`"completed"`, `"completed_successfully"`, `"log_ready"`; a list means `"started"` '
            "for each. Unknown ids and cycles are refused when the file is read",
        example='depends_on = {migrate = "completed_successfully", db = "healthy"}')
    restart_dependents: bool = documented(
        False, toml="bool",
        doc="set on a dependency: when it is restarted, the running servers that depend on it "
            "are restarted after it is ready again",
        example="restart_dependents = true")
    group: str | None = documented(
        None, toml="name (like an id)",
        doc="for `start_group`/`stop_group`/`restart_group`, `procsync start --group NAME` and "
            "the dashboard's group sections",
        example='group = "backend"')
    ready_log_line: str | None = documented(
        None, toml="regular expression",
        doc="the server is ready when a new line of its log matches (read as it is written, "
            "from where the log ended at the start); with ports or a health check, those must "
            "pass too",
        example='ready_log_line = "Listening on .*:8000"')
    memory_limit: int | str | None = documented(
        None, toml="integer bytes, or a string with a unit",
        doc="limit on the RSS of the server's whole process tree, checked each monitor tick; "
            '`"512MB"` (powers of 1000: kB, MB, GB), `"1GiB"` (powers of 1024: KiB, MiB, GiB) '
            'and `"512M"` (a bare K, M, G counts in powers of 1024, as PM2 and Docker do)',
        example='memory_limit = "512MiB"')
    memory_action: str = documented(
        "restart", toml='`"restart"`, `"stop"`, `"alert"`',
        doc="what a breach of `memory_limit` does; each records a `memory_limit` history entry "
            "and sends `memory_limit_exceeded`",
        example='memory_action = "alert"')
    restart_schedule: str | None = documented(
        None, toml="string",
        doc='a graceful restart on a timetable: a daily time `"03:00"`, an interval '
            '`"every 6h"` (also `m`, `s`, and `"every 1h30m"`), or a five-field cron line '
            '`"0 4 * * sun"`; see [policies](policies.md)',
        example='restart_schedule = "03:00"')
    reload_signal: str | None = documented(
        None, toml="signal name or number",
        doc="sent to the process group by `reload_server(id)`, `POST …/reload` and "
            '`procsync reload ID` instead of a restart (gunicorn and nginx reload on `"SIGHUP"`)',
        example='reload_signal = "HUP"')
    success_exit_codes: tuple[int, ...] | list[int] = documented(
        (0,), toml="list of integers 0..255",
        doc='exits that count as success: "exited" (or "completed" for a job) rather than '
            '"crashed", not restarted by `"on-failure"`, and what `completed_successfully` '
            "waits for",
        example="success_exit_codes = [0, 3]")
    env_file: str | None = documented(
        None, toml="path",
        doc="a `.env` file (`KEY=VALUE` lines, `export`, quotes, `#` comments, read as a "
            "Procfile's `.env` is: see `.env` files below) merged under `env` (`env` wins); read "
            "again at each start; a "
            "missing or unparseable file refuses the start and names the file and line. "
            "Relative to the config file's folder (from Python: to `cwd`)",
        example='env_file = ".env.local"')

    def __post_init__(self) -> None:
        self._normalise(self.name or "?")

    def _normalise(self, sid: str) -> None:
        put = object.__setattr__
        if not isinstance(self.shell, bool):
            raise ConfigError(sid, "shell", f"must be true or false, not {_repr(self.shell)}")
        put(self, "command", _check_command(sid, self.command, split=not self.shell))
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise ConfigError(sid, "name", f"must be a non-empty string, not {_repr(self.name)}")
        put(self, "cwd", _check_path(sid, "cwd", self.cwd))
        put(self, "env", _check_env(sid, self.env))
        put(self, "ports", _check_ports(sid, self.ports))
        if not isinstance(self.ports_required, bool):
            raise ConfigError(sid, "ports_required", f"must be true or false, not {_repr(self.ports_required)}")
        if self.color is not None and not isinstance(self.color, str):
            raise ConfigError(sid, "color", f"must be a string, not {_repr(self.color)}")
        if not isinstance(self.autostart, bool):
            raise ConfigError(sid, "autostart", f"must be true or false, not {_repr(self.autostart)}")
        put(self, "stop_signal", signal_name(self.stop_signal, sid))
        for name in ("stop_timeout", "start_timeout", "backoff_initial", "backoff_max", "stable_after"):
            _check_seconds(sid, name, getattr(self, name))
        autorestart = self.autorestart
        if autorestart is True:
            autorestart = "always"
        elif autorestart is False:
            autorestart = "no"
        if autorestart not in AUTORESTART_POLICIES:
            raise ConfigError(sid, "autorestart", f"{_repr(self.autorestart)} is not one of {', '.join(AUTORESTART_POLICIES)}")
        put(self, "autorestart", autorestart)
        _check_number(sid, "max_restarts", self.max_restarts, integer=True)
        health = self.health
        if isinstance(health, Mapping):
            health = HealthCheck.from_dict(health, sid)
        elif isinstance(health, HealthCheck):
            health.validate(sid)
        elif health is not None:
            raise ConfigError(sid, "health", f"must be a table or a HealthCheck, not {_repr(health)}")
        put(self, "health", health)
        put(self, "log_file", _check_path(sid, "log_file", self.log_file))
        _check_log_rotation(sid, self.log_max_bytes, self.log_backups)
        self._normalise_policies(sid)

    def _normalise_policies(self, sid: str) -> None:
        put = object.__setattr__
        if self.kind not in KINDS:
            raise ConfigError(sid, "kind", f"{_repr(self.kind)} is not one of {', '.join(KINDS)}")
        put(self, "depends_on", _check_depends_on(sid, self.depends_on))
        if not isinstance(self.restart_dependents, bool):
            raise ConfigError(sid, "restart_dependents",
                              f"must be true or false, not {_repr(self.restart_dependents)}")
        if self.group is not None and (not isinstance(self.group, str)
                                       or not ID_PATTERN.fullmatch(self.group)):
            raise ConfigError(sid, "group", f"{_repr(self.group)} is not a group name "
                              "(1-64 letters, digits, '-', '_' or '.')")
        if self.ready_log_line is not None:
            if not isinstance(self.ready_log_line, str) or not self.ready_log_line:
                raise ConfigError(sid, "ready_log_line",
                                  f"must be a regular expression, not {_repr(self.ready_log_line)}")
            try:
                re.compile(self.ready_log_line)
            except (re.error, OverflowError, RecursionError) as err:  # "a{99999999999}": OverflowError
                raise ConfigError(sid, "ready_log_line", f"is not a valid regular expression: {err}") from None
        if self.memory_limit is not None:
            try:
                put(self, "memory_limit", parse_size(self.memory_limit))
            except ValueError as err:
                raise ConfigError(sid, "memory_limit", str(err)) from None
        if self.memory_action not in MEMORY_ACTIONS:
            raise ConfigError(sid, "memory_action",
                              f"{_repr(self.memory_action)} is not one of {', '.join(MEMORY_ACTIONS)}")
        if self.restart_schedule is not None:
            try:
                parse_schedule(self.restart_schedule)
            except ValueError as err:
                raise ConfigError(sid, "restart_schedule", str(err)) from None
        if self.reload_signal is not None:
            put(self, "reload_signal", signal_name(self.reload_signal, sid, "reload_signal"))
        put(self, "success_exit_codes", _check_exit_codes(sid, self.success_exit_codes))
        put(self, "env_file", _check_path(sid, "env_file", self.env_file))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], server_id: str | None = None) -> ServerConfig:
        """Build from the plain-dict form used in config files; unknown keys are errors."""
        name = data.get("name") if isinstance(data, Mapping) else None
        sid = _shown(server_id or name or "?")
        if not isinstance(data, Mapping):
            raise ConfigError(sid, "config", f"must be a table, not {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                text = _shown(key)
                raise ConfigError(sid, text or repr(key), f"unknown key{did_you_mean(text, known)}")
        if "command" not in data:
            raise ConfigError(sid, "command", "is required")
        values = dict(data)
        if server_id is not None and not values.get("name"):
            values["name"] = server_id
        try:
            config = cls(**values)
        except ConfigError as err:
            raise ConfigError(sid, err.field, err.problem) from None
        return config

    def for_id(self, server_id: str) -> ServerConfig:
        """This config validated for `server_id`, with `name` defaulting to the id."""
        check_id(server_id)
        try:
            config = dataclasses.replace(self, name=self.name or server_id)
        except ConfigError as err:
            raise ConfigError(server_id, err.field, err.problem) from None
        return config

    def awaited_ports(self) -> tuple[int, ...]:
        """The ports readiness and health wait for: `ports`, unless `ports_required` is false."""
        return tuple(self.ports) if self.ports_required else ()

    def check_runtime(self, server_id: str) -> None:
        """Checks that depend on the machine now: the cwd must exist."""
        if self.cwd is not None and not Path(self.cwd).is_dir():
            raise ConfigError(server_id, "cwd", f"directory {self.cwd!r} does not exist")

    def env_file_path(self) -> str | None:
        """Where `env_file` is: a relative path is taken from `cwd` (or the current directory)."""
        if self.env_file is None:
            return None
        return os.path.join(self.cwd or os.getcwd(), self.env_file)

    def read_env_file(self, server_id: str) -> dict[str, str]:
        """The variables of `env_file` now ({} without one); ConfigError names the file's problem."""
        path = self.env_file_path()
        if path is None:
            return {}
        try:
            values = read_dotenv(path)
        except DotenvError as err:
            raise ConfigError(server_id, "env_file", f"{path}: {err}") from None
        except OSError as err:
            raise ConfigError(server_id, "env_file", f"cannot read {path}: {err.strerror or err}") from None
        checked = _check_env(server_id, values)
        return checked or {}

    def to_spawn(self, server_id: str, log_file: str | None = None,
                 extra_env: Mapping[str, str] | None = None) -> SpawnConfig:
        """The SpawnConfig for running this server under `server_id`.

        The environment is `env_file` (read now), then `env` over it, then `extra_env`.
        """
        env = self.env
        if self.env_file is not None or extra_env:
            env = {**self.read_env_file(server_id), **(self.env or {}), **(extra_env or {})}
        return SpawnConfig(
            id=server_id,
            command=self.command,
            cwd=self.cwd,
            env=env,
            shell=self.shell,
            ports=tuple(self.ports),
            log_file=self.log_file or log_file,
            stop_signal=self.stop_signal,
            stop_timeout=self.stop_timeout,
            log_max_bytes=self.log_max_bytes,
            log_backups=self.log_backups,
        )

    def to_dict(self) -> dict[str, Any]:
        """The config-file form (only values that differ from the defaults)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            default = f.default if f.default is not dataclasses.MISSING else None
            if f.name != "command" and value == default:
                continue
            if isinstance(value, HealthCheck):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out


def _check_depends_on(sid: str, value: Any) -> dict[str, str] | None:
    """`depends_on` as id -> condition; a list of ids means "started" for each."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Mapping | Sequence):
        raise ConfigError(sid, "depends_on", "must be a list of server ids or a table of "
                          f"id = condition, not {_repr(value)}")
    pairs = value.items() if isinstance(value, Mapping) else ((dep, "started") for dep in value)
    out: dict[str, str] = {}
    for dep, condition in pairs:
        if not isinstance(dep, str) or not ID_PATTERN.fullmatch(dep):
            raise ConfigError(sid, "depends_on", f"{_repr(dep)} is not a server id")
        if dep in out:
            raise ConfigError(sid, "depends_on", f"names {dep!r} twice")
        if dep == sid:
            raise ConfigError(sid, "depends_on", f"{sid!r} cannot depend on itself")
        if condition not in CONDITIONS:
            raise ConfigError(sid, f"depends_on.{dep}",
                              f"{_repr(condition)} is not one of {', '.join(CONDITIONS)}")
        out[dep] = condition
    return out or None


def _check_exit_codes(sid: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise ConfigError(sid, "success_exit_codes", f"must be a list of exit codes, not {_repr(value)}")
    codes = []
    for code in value:
        if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 255:
            raise ConfigError(sid, "success_exit_codes", f"{_repr(code)} is not an exit code (0..255)")
        codes.append(code)
    return tuple(dict.fromkeys(codes))


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """' (did you mean 'x'?)' when `word` is close to one of `choices`, else ''."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def as_server_config(server_id: str, config: ServerConfig | Mapping[str, Any]) -> ServerConfig:
    """Accept a ServerConfig or its dict form; validate it for `server_id`."""
    check_id(server_id)
    if isinstance(config, ServerConfig):
        return config.for_id(server_id)
    if isinstance(config, Mapping):
        return ServerConfig.from_dict(config, server_id)
    raise ConfigError(server_id, "config", f"must be a ServerConfig or a dict, not {type(config).__name__}")


__all__ = [
    "AUTORESTART_POLICIES",
    "CONDITIONS",
    "KINDS",
    "MEMORY_ACTIONS",
    "HealthCheck",
    "ID_PATTERN",
    "MAX_LOG_BACKUPS",
    "MAX_LOG_BYTES",
    "MAX_SECONDS",
    "MiB",
    "PRIVATE_ENV",
    "ServerConfig",
    "SpawnConfig",
    "as_server_config",
    "check_id",
    "check_url",
    "child_environ",
    "command_text",
    "did_you_mean",
    "signal_name",
    "text_problem",
]
