"""What every config-file reader returns and raises: settings, the loaded file, its errors.

Both readers (the procsync.toml one in `toml.py`, the Procfile one in
`procfile.py`) build a `LoadedConfig` of `Settings` and `ServerConfig`s
and report every problem as a `ConfigFileError` naming the file, the line
when known, the table and the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import signals
from ..errors import ConfigError, ProcSyncError
from .fielddoc import documented
from .records import ServerConfig

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8420
DEFAULT_INTERVAL = 3.0
DEFAULT_HISTORY = 3600.0  # one hour of resource samples per server
DEFAULT_URL_PREFIX = "/procsync"
STATE_DIR = ".procsync"  # beside the config file: default home of the state file and logs

#: Signals a webhook receives when it names no events: all but the periodic health_check.
DEFAULT_WEBHOOK_EVENTS = tuple(name for name in signals.ALL if name != "health_check")

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

    url: str = documented(toml="http(s) URL", doc="where each event is POSTed as JSON",
                          example='webhooks = [{url = "https://hooks.example.com/procsync"}]')
    events: tuple[str, ...] | None = documented(  # None: DEFAULT_WEBHOOK_EVENTS
        None, toml="list of signal names", default_text="every signal but `health_check`",
        doc="which signals to send; the names are in the [signals reference](signals.md)",
        example='webhooks = [{url = "https://hooks.example.com/p", events = ["server_fatal"]}]')
    secret: str | None = documented(
        None, toml="string",
        doc="signs the body: header `X-Procsync-Signature: sha256=<hex HMAC-SHA256>`",
        example='webhooks = [{url = "https://hooks.example.com/p", secret = "${HOOK_SECRET}"}]')


@dataclass(frozen=True, slots=True)
class Settings:
    """The `[procsync]` table, paths already absolute."""

    state_file: str = documented(
        toml="path", default_text=f"`{STATE_DIR}/state.json`",
        doc="where the orchestrator remembers its processes; a `.db`, `.sqlite` or `.sqlite3` "
            "name selects SQLite ([the state file](state-file.md))",
        example='state_file = "/var/lib/procsync/state.db"')
    log_dir: str = documented(
        toml="path", default_text=f"`{STATE_DIR}/logs`",
        doc="where server output goes (`<id>.log`) unless a server sets `log_file`",
        example='log_dir = "logs"')
    interval: float = documented(
        DEFAULT_INTERVAL, toml="number (s), above 0 and at most 31536000",
        doc="health-check period of the monitor", example="interval = 1.5")
    host: str = documented(
        DEFAULT_HOST, toml="string (no spaces)",
        doc="address `serve` listens on (`--host` overrides); clients connect here (`0.0.0.0` → "
            "`127.0.0.1`). Without a token, `serve` refuses an address that is not loopback "
            "(exit 2) unless given `--allow-remote-without-token`",
        example='host = "0.0.0.0"')
    port: int = documented(
        DEFAULT_PORT, toml="integer (1..65535)",
        doc="port `serve` listens on (`--port` overrides) and clients connect to",
        example="port = 9000")
    auth_token: str | None = documented(
        None, toml="string of printable ASCII, no spaces",
        doc="when set, every API call needs `Authorization: Bearer <token>`; clients send it. "
            "`PROCSYNC_AUTH_TOKEN` in the environment wins over this key, for `serve` and "
            "clients alike, and is never passed on to servers or health-check commands",
        example='auth_token = "${PROCSYNC_TOKEN}"')
    url_prefix: str = documented(
        DEFAULT_URL_PREFIX, toml="URL path",
        doc="where the dashboard and API are mounted; `/` redirects there. `/` or `/`-separated "
            "names of ASCII letters, digits, `-`, `_`, `.`, `~` (no spaces, quotes, `%`, `?`, "
            "`#`, `<`, non-ASCII, empty, `.` or `..` segments); a trailing `/` is dropped",
        example='url_prefix = "/ops/procsync"')
    webhooks: tuple[Webhook, ...] = documented(
        (), toml="list of tables", doc="where to POST events; the keys are in the `webhooks` "
        "table below", example='webhooks = [{url = "https://hooks.example.com/procsync"}]')
    history: float = documented(  # seconds of resource samples kept per server (0: none)
        DEFAULT_HISTORY, toml="number (s), 0..31536000",
        doc="seconds of resource samples (CPU, memory, health, ports) kept in memory per server "
            "for the dashboard's charts and `GET .../metrics`; `0` keeps none "
            "([the resource history](monitoring.md#resource-history))",
        example="history = 600")

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
    formation: Mapping[str, int] | None = None  # a Procfile's -m counts, kept for a reload


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


def settings_fields(settings: Settings) -> dict[str, Any]:
    """The settings as a dict of field name to value."""
    return {name: getattr(settings, name) for name in Settings.__dataclass_fields__}


def settings_summary(settings: Settings) -> Mapping[str, Any]:
    """The settings as plain values, the token hidden."""
    values = settings_fields(settings)
    values["auth_token"] = "(set)" if settings.auth_token else None
    values["webhooks"] = [hook.url for hook in settings.webhooks]
    return values


__all__ = [
    "ConfigFileError",
    "DEFAULT_HOST",
    "DEFAULT_HISTORY",
    "DEFAULT_INTERVAL",
    "DEFAULT_PORT",
    "DEFAULT_URL_PREFIX",
    "DEFAULT_WEBHOOK_EVENTS",
    "LoadedConfig",
    "STATE_DIR",
    "Settings",
    "Webhook",
    "read_text",
    "settings_fields",
    "settings_summary",
    "url_prefix_problem",
]
