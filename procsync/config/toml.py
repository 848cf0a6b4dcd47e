"""Reading a procsync.toml into settings and a server registry.

`load_toml(path)` parses the file, validates every table and key, expands
``${VAR}`` in commands, env values and secrets, and returns a
`LoadedConfig`. Every problem is a `ConfigFileError` naming the file, the
line when known, the table and the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import signals
from ..errors import ConfigError
from ..redact import MASK, remember_expansion
from .files import (
    ConfigFileError,
    LoadedConfig,
    Settings,
    Webhook,
    read_text,
    settings_fields,
    url_prefix_problem,
)
from .graph import check_graph
from .records import MAX_SECONDS, ServerConfig, check_id, check_url, did_you_mean, text_problem

SETTINGS_KEYS = ("state_file", "log_dir", "interval", "host", "port", "auth_token", "url_prefix", "webhooks",
                 "history")
WEBHOOK_KEYS = ("url", "events", "secret")

_VAR = re.compile(r"\$\$\{|\$\{([^}:]*)(?::-([^}]*))?\}")


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


def load_mapping(data: Mapping[str, Any], *, source: str,
                 folder: str | os.PathLike[str]) -> LoadedConfig:
    """A procsync.toml's content given as a mapping (``{"procsync": {...}, "servers": {...}}``).

    Validated as the file is, each problem a ConfigFileError naming `source`
    (e.g. ``settings.PROCSYNC``) instead of a file; relative paths are relative
    to `folder`.
    """
    if not isinstance(data, Mapping):
        raise ConfigFileError(source, None, None, f"must be a mapping, not {type(data).__name__}")
    return _TomlReader(source, "", folder=folder).read(dict(data))


class _TomlReader:
    """Validates the parsed TOML document, turning every problem into a ConfigFileError."""

    def __init__(self, path: str | os.PathLike[str], text: str,
                 folder: str | os.PathLike[str] | None = None) -> None:
        self.path = path
        self.text = text
        self.folder = Path(folder if folder is not None else Path(path).resolve().parent).resolve()

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
        try:
            check_graph(registry)
        except ConfigError as err:
            raise self.error(f"servers.{err.server_id}", err.field, err.problem) from None
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
        if "history" in table:
            history = table["history"]
            if (isinstance(history, bool) or not isinstance(history, int | float)
                    or not 0 <= history <= MAX_SECONDS):  # NaN and infinity too
                raise self.error("procsync", "history",
                                 f"must be a number of seconds from 0 (keep none) to "
                                 f"{MAX_SECONDS:g}, not {history!r}")
            values["history"] = float(history)
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
        return Settings(**{**settings_fields(base), **values})

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
        for key in ("cwd", "log_file", "env_file"):
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


__all__ = [
    "SETTINGS_KEYS",
    "WEBHOOK_KEYS",
    "expand_vars",
    "load_mapping",
    "find_line",
    "find_line_top",
    "load_toml",
    "mask_vars",
]
