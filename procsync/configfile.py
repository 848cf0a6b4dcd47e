"""Loading a procsync.toml (or a Procfile) into settings and a server registry.

`load_config(path)` reads the file, validates every table and key, and
returns a `LoadedConfig`: the `[procsync]` settings and the servers in file
order. Every error is a `ConfigFileError` (a `ConfigError`) whose message
names the file, the line when known, the table and the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import signals
from .config import MAX_SECONDS, ServerConfig, check_id, check_url, text_problem
from .errors import ConfigError, ProcSyncError
from .redact import MASK, remember_expansion

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8420
DEFAULT_INTERVAL = 3.0
DEFAULT_URL_PREFIX = "/procsync"
STATE_DIR = ".procsync"  # beside the config file: default home of the state file and logs

SETTINGS_KEYS = ("state_file", "log_dir", "interval", "host", "port", "auth_token", "url_prefix", "webhooks")
WEBHOOK_KEYS = ("url", "events", "secret")
#: Signals a webhook receives when it names no events: all but the periodic health_check.
DEFAULT_WEBHOOK_EVENTS = tuple(name for name in signals.ALL if name != "health_check")

_VAR = re.compile(r"\$\$\{|\$\{([^}:]*)(?::-([^}]*))?\}")
#: A url_prefix: '/'-separated segments of URL-safe characters (RFC 3986 "unreserved").
_PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")


def url_prefix_problem(prefix: Any) -> str | None:
    """Why `prefix` cannot be a URL prefix, or None: '/' or '/a/b' of URL-safe names only."""
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        return f"must be a path starting with '/', not {prefix!r}"
    segments = prefix.strip("/").split("/")
    if prefix != "/" and ("//" in prefix or not all(
            _PREFIX_SEGMENT.fullmatch(part) and part not in (".", "..") for part in segments)):
        return (f"{prefix[:80]!r} may only hold '/'-separated names of ASCII letters, digits, "
                "'-', '_', '.' and '~'")
    return None


class ConfigFileError(ConfigError):
    """A config file is invalid: names the file, the line (when known), the table and the key."""

    def __init__(self, path: str | os.PathLike[str], table: str | None, key: str | None,
                 problem: str, line: int | None = None) -> None:
        where = f"{os.fspath(path)}:{line}" if line else os.fspath(path)
        if table and not key:
            message = f"{where}: [{table}] {problem}"
        else:
            place = " ".join(part for part in (f"[{table}]" if table else "", key or "") if part)
            message = f"{where}: {place}: {problem}" if place else f"{where}: {problem}"
        ProcSyncError.__init__(self, message)
        server_id = table.split(".", 1)[1] if table and table.startswith("servers.") else ""
        self.server_id, self.field, self.problem = server_id, key or "", problem
        self.path, self.table, self.key, self.line = os.fspath(path), table, key, line


@dataclass(frozen=True, slots=True)
class Webhook:
    """One `[procsync] webhooks` entry: where to POST which signals, signed with `secret`."""

    url: str
    events: tuple[str, ...] | None = None  # None: DEFAULT_WEBHOOK_EVENTS
    secret: str | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """The `[procsync]` table, paths already absolute."""

    state_file: str
    log_dir: str
    interval: float = DEFAULT_INTERVAL
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    auth_token: str | None = None
    url_prefix: str = DEFAULT_URL_PREFIX
    webhooks: tuple[Webhook, ...] = ()

    @classmethod
    def defaults(cls, folder: str | os.PathLike[str]) -> Settings:
        """The settings of a file with no `[procsync]` table in `folder`."""
        base = Path(folder).resolve() / STATE_DIR
        return cls(state_file=str(base / "state.json"), log_dir=str(base / "logs"))


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A loaded config file: its settings and its servers (id -> ServerConfig, in file order)."""

    path: Path
    settings: Settings
    registry: dict[str, ServerConfig] = field(default_factory=dict)
    format: str = "toml"  # "toml" | "procfile"


def is_procfile(path: str | os.PathLike[str]) -> bool:
    """True for 'Procfile', 'Procfile.dev', 'x.procfile'; everything else is read as TOML."""
    p = Path(path)
    return p.name.lower().startswith("procfile") or p.suffix.lower() == ".procfile"


def load_config(path: str | os.PathLike[str]) -> LoadedConfig:
    """Read a procsync.toml or a Procfile (chosen by file name); ConfigFileError if invalid."""
    if is_procfile(path):
        from .procfile import load_procfile

        return load_procfile(path)
    return load_toml(path)


def read_text(path: str | os.PathLike[str]) -> str:
    """The file's text, or ConfigFileError naming it."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(path, None, None, "no such file") from None
    except IsADirectoryError:
        raise ConfigFileError(path, None, None, "is a directory, not a config file") from None
    except UnicodeDecodeError as err:
        raise ConfigFileError(path, None, None, f"is not UTF-8 text ({err.reason})") from None
    except OSError as err:
        raise ConfigFileError(path, None, None, f"cannot be read: {err.strerror}") from None


def load_toml(path: str | os.PathLike[str]) -> LoadedConfig:
    """Read a procsync.toml; ConfigFileError naming file, line, table and key if invalid."""
    text = read_text(path)
    import tomllib  # only when a file is read

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        found = re.search(r"\(at line (\d+), column (\d+)\)", message)
        line = int(found.group(1)) if found else None
        problem = re.sub(r"\s*\(at line \d+, column \d+\)|\s*\(at end of document\)", "", message)
        if found:
            problem += f" (column {found.group(2)})"
        raise ConfigFileError(path, None, None, f"invalid TOML: {problem}", line) from None
    return _TomlReader(path, text).read(data)


def expand_vars(value: str, what: str = "value") -> str:
    """Replace ${NAME} (or ${NAME:-default}) with the environment's value; '$${' is a literal '${'.

    An unset NAME without a default raises KeyError(NAME).
    """
    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"${{{name}}} is not a valid variable name")
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise KeyError(name)

    return _VAR.sub(substitute, value)


def mask_vars(value: str | list[str]) -> str | list[str]:
    """`value` with each ${NAME} (or ${NAME:-default}) as ``***``: how procsync shows it expanded."""
    def mask(match: re.Match[str]) -> str:
        return "${" if match.group(0) == "$${" else MASK

    if isinstance(value, str):
        return _VAR.sub(mask, value)
    return [_VAR.sub(mask, part) for part in value]


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """' (did you mean 'x'?)' when `word` is close to one of `choices`, else ''."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def find_line(text: str, table: Sequence[str], key: str | None = None) -> int | None:
    """Best-effort line number of `key` in `[table]` (or of the header itself)."""
    lines = text.splitlines()
    parts = [rf"\s*(?:{re.escape(p)}|\"{re.escape(p)}\"|'{re.escape(p)}')\s*" for p in table]
    header = re.compile(r"^\s*\[" + r"\.".join(parts) + r"\]\s*(#.*)?$")
    start = None
    for number, line in enumerate(lines, 1):
        if header.match(line):
            start = number
            break
    if start is None:
        return None
    if key is None:
        return start
    key_re = re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')\s*[=.]")
    for number in range(start, len(lines)):
        line = lines[number]
        if re.match(r"^\s*\[", line):
            break
        if key_re.match(line):
            return number + 1
    return start


class _TomlReader:
    """Validates the parsed TOML document, turning every problem into a ConfigFileError."""

    def __init__(self, path: str | os.PathLike[str], text: str) -> None:
        self.path = path
        self.text = text
        self.folder = Path(path).resolve().parent

    def error(self, table: str | None, key: str | None, problem: str) -> ConfigFileError:
        parts = table.split(".", 1) if table else []
        line = find_line(self.text, parts, key.split(".")[0].split("[")[0] if key else None) if parts else None
        if line is None and len(parts) == 2:
            line = find_line(self.text, parts[:1], parts[1])  # [servers] web = ...
        if table is None and key is not None:
            line = find_line_top(self.text, key)
        return ConfigFileError(self.path, table, key, problem, line)

    def read(self, data: dict[str, Any]) -> LoadedConfig:
        for key in data:
            if key not in ("procsync", "servers"):
                raise self.error(None, key, f"unknown table{did_you_mean(key, ['procsync', 'servers'])}")
        settings = self.read_settings(data.get("procsync", {}))
        servers = data.get("servers", {})
        if not isinstance(servers, dict):
            raise self.error(None, "servers", "must be a table of [servers.<id>] tables")
        registry = {sid: self.read_server(sid, table) for sid, table in servers.items()}
        return LoadedConfig(Path(self.path), settings, registry, "toml")

    def path_value(self, table: str, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(table, key, f"must be a path (a non-empty string), not {value!r}")
        problem = text_problem(value)
        if problem:
            raise self.error(table, key, problem)
        return str(self.folder / Path(value).expanduser())

    def read_settings(self, table: Any) -> Settings:
        if not isinstance(table, dict):
            raise self.error(None, "procsync", "must be a table")
        for key in table:
            if key not in SETTINGS_KEYS:
                raise self.error("procsync", key, f"unknown key{did_you_mean(key, SETTINGS_KEYS)}")
        base = Settings.defaults(self.folder)
        values: dict[str, Any] = {}
        for key in ("state_file", "log_dir"):
            if key in table:
                values[key] = self.path_value("procsync", key, table[key])
        if "interval" in table:
            interval = table["interval"]
            if (isinstance(interval, bool) or not isinstance(interval, int | float)
                    or not interval > 0):  # NaN is not above 0 either
                raise self.error("procsync", "interval", f"must be a number of seconds above 0, not {interval!r}")
            if interval > MAX_SECONDS:  # infinity too
                raise self.error("procsync", "interval", f"must be at most {MAX_SECONDS:g} seconds, not {interval!r}")
            values["interval"] = float(interval)
        if "host" in table:
            host = table["host"]
            if (not isinstance(host, str) or not host.strip()
                    or any(c.isspace() or not c.isprintable() for c in host.strip())):
                raise self.error("procsync", "host", f"must be a host name or address, not {host!r}")
            values["host"] = host.strip()
        if "port" in table:
            port = table["port"]
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise self.error("procsync", "port", f"{port!r} is not a port number (1..65535)")
            values["port"] = port
        if "auth_token" in table:
            token = self.secret_value("procsync", "auth_token", table["auth_token"])
            if not all(33 <= ord(c) <= 126 for c in token):  # it travels in an HTTP header
                raise self.error("procsync", "auth_token",
                                 "must be printable ASCII without spaces (it is sent in an HTTP header)")
            values["auth_token"] = token
        if "url_prefix" in table:
            values["url_prefix"] = self.url_prefix(table["url_prefix"])
        if "webhooks" in table:
            values["webhooks"] = self.read_webhooks(table["webhooks"])
        return Settings(**{**_fields_of(base), **values})

    def url_prefix(self, prefix: Any) -> str:
        """'/' or '/a/b': segments of letters, digits, '-', '_', '.', '~' (no '.' or '..')."""
        problem = url_prefix_problem(prefix)
        if problem:
            raise self.error("procsync", "url_prefix", problem)
        return prefix.rstrip("/")

    def secret_value(self, table: str, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(table, key, f"must be a non-empty string, not {value!r}")
        return self.expand(table, key, value)

    def expand(self, table: str, key: str, value: str) -> str:
        try:
            return expand_vars(value)
        except KeyError as err:
            name = err.args[0]
            raise self.error(table, key, f"${{{name}}} is not set in the environment") from None
        except ValueError as err:
            raise self.error(table, key, str(err)) from None

    def read_webhooks(self, hooks: Any) -> tuple[Webhook, ...]:
        if not isinstance(hooks, list):
            raise self.error("procsync", "webhooks", "must be a list of tables like {url = \"...\"}")
        out = []
        known_events = list(signals.ALL)
        for index, hook in enumerate(hooks):
            key = f"webhooks[{index}]"
            if not isinstance(hook, dict):
                raise self.error("procsync", key, f"must be a table like {{url = \"...\"}}, not {hook!r}")
            for name in hook:
                if name not in WEBHOOK_KEYS:
                    raise self.error("procsync", f"{key}.{name}", f"unknown key{did_you_mean(name, WEBHOOK_KEYS)}")
            if "url" not in hook:
                raise self.error("procsync", f"{key}.url", "is required")
            url = hook["url"]
            if isinstance(url, str):
                url = self.expand("procsync", f"{key}.url", url)
            try:
                check_url("", f"{key}.url", url)
            except ConfigError:
                raise self.error("procsync", f"{key}.url", f"{hook['url']!r} is not an http(s) URL") from None
            events = hook.get("events")
            if events is not None:
                if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
                    raise self.error("procsync", f"{key}.events", f"must be a list of signal names, not {events!r}")
                for event in events:
                    if event not in known_events:
                        raise self.error("procsync", f"{key}.events",
                                         f"unknown event {event!r}{did_you_mean(event, known_events)}")
                events = tuple(events)
            secret = hook.get("secret")
            if secret is not None:
                secret = self.secret_value("procsync", f"{key}.secret", secret)
            out.append(Webhook(url, events, secret))
        return tuple(out)

    def read_server(self, sid: str, table: Any) -> ServerConfig:
        name = f"servers.{sid}"
        try:
            check_id(sid)
        except ConfigError as err:
            raise self.error(name, None, f"server id {err.problem}") from None
        if not isinstance(table, dict):
            raise self.error(name, None, f"must be a table, not {table!r}")
        values = dict(table)
        if isinstance(values.get("command"), str):
            values["command"] = self.expand(name, "command", values["command"])
        elif isinstance(values.get("command"), list):
            values["command"] = [
                self.expand(name, "command", part) if isinstance(part, str) else part
                for part in values["command"]
            ]
        command = table.get("command")
        if isinstance(command, str) or (isinstance(command, list) and all(isinstance(c, str) for c in command)):
            remember_expansion(values["command"], mask_vars(command))  # shown with each ${VAR} as ***
        if isinstance(values.get("env"), dict):
            values["env"] = {
                key: self.expand(name, f"env.{key}", value) if isinstance(value, str) else value
                for key, value in values["env"].items()
            }
        health = values.get("health")
        if isinstance(health, dict) and isinstance(health.get("command"), str | list):
            command = health["command"]
            values["health"] = {**health, "command": (
                self.expand(name, "health.command", command) if isinstance(command, str)
                else [self.expand(name, "health.command", c) if isinstance(c, str) else c for c in command]
            )}
        for key in ("cwd", "log_file"):
            if isinstance(values.get(key), str) and values[key].strip():
                values[key] = str(self.folder / Path(values[key]).expanduser())
        values.setdefault("cwd", str(self.folder))  # a config file runs its servers beside it
        try:
            return ServerConfig.from_dict(values, sid)
        except ConfigError as err:
            raise self.error(name, err.field, err.problem) from None


def find_line_top(text: str, key: str) -> int | None:
    """Line of a top-level `[key]`/`[key.x]` header or `key =` assignment."""
    pattern = re.compile(rf"^\s*(\[\s*{re.escape(key)}\s*[\].]|{re.escape(key)}\s*=)")
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.match(line):
            return number
    return None


def _fields_of(settings: Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in Settings.__dataclass_fields__}


def settings_summary(settings: Settings) -> Mapping[str, Any]:
    """The settings as plain values, the token hidden."""
    values = _fields_of(settings)
    values["auth_token"] = "(set)" if settings.auth_token else None
    values["webhooks"] = [hook.url for hook in settings.webhooks]
    return values


__all__ = [
    "ConfigFileError",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_URL_PREFIX",
    "url_prefix_problem",
    "LoadedConfig",
    "Settings",
    "Webhook",
    "expand_vars",
    "is_procfile",
    "load_config",
    "load_toml",
]
