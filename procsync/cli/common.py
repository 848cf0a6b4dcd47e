"""What every `procsync` command that talks to a serve shares: options, the client, formatting.

`commands.py` and `top.py` both build on it, so neither imports the other's
helpers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from ..config import FormationError, LoadedConfig, Settings, load_config, parse_formation
from ..errors import ConfigError
from .client import ApiClient, auth_token, connect_host, read_timeout

DEFAULT_CONFIG = "procsync.toml"

STATE_COLORS = {
    "running": "green", "starting": "yellow", "stopping": "yellow", "backoff": "yellow",
    "waiting": "cyan", "completed": "green", "skipped": "magenta",
    "fatal": "red", "crashed": "red", "stopped": None, "exited": None,
}
HEALTH_COLORS = {"healthy": "green", "unhealthy": "yellow", "unresponsive": "red", "dead": "red"}


class Failed(click.ClickException):
    """The action failed (exit 1)."""

    exit_code = 1


class BadConfig(click.ClickException):
    """Usage or config error (exit 2)."""

    exit_code = 2


# -- options shared by every command ---------------------------------------------------------

def config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-c", "--config", "config", default=DEFAULT_CONFIG, show_default=True, envvar="PROCSYNC_CONFIG",
        type=click.Path(dir_okay=False, path_type=str),
        help="procsync.toml or Procfile (env PROCSYNC_CONFIG).",
    )(f)


def url_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--url", envvar="PROCSYNC_URL", metavar="URL",
        help="Where procsync serve answers, e.g. http://127.0.0.1:8420 (env PROCSYNC_URL).",
    )(f)


def _formation(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, int] | None:
    if not value:
        return None
    try:
        return parse_formation(value)
    except FormationError as err:
        raise click.BadParameter(err.problem) from None


def formation_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-m", "--formation", "formation", metavar="all=N,NAME=N", callback=_formation,
        help="Procfile only: how many copies of each process, as foreman's -m "
             "(e.g. web=2,worker=3); copies are NAME.1, NAME.2, ... with ports one apart.",
    )(f)


def load_or_fail(path: str, formation: dict[str, int] | None = None) -> LoadedConfig:
    """load_config, a config error becoming exit code 2."""
    try:
        return load_config(path, formation)
    except ConfigError as err:
        raise BadConfig(str(err)) from None


def config_given(name: str = "config") -> bool:
    source = click.get_current_context().get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def make_client(config: str, url: str | None) -> ApiClient:
    """The client for this command line: URL from --url/PROCSYNC_URL or the config's host/port.

    A host that runs the commands in its own process (``manage.py procsync``)
    passes its client as the click context's object, and that one is used.
    """
    given = click.get_current_context().find_object(ApiClient)
    if given is not None:
        return given
    settings = None
    if config_given() or Path(config).exists():
        settings = load_or_fail(config).settings
    if settings is None:
        settings = Settings.defaults(".")
    token = auth_token(settings.auth_token)
    try:
        timeout = read_timeout()
    except ValueError as err:
        raise BadConfig(str(err)) from None
    if url:
        parts = urlsplit(url)
        if parts.path in ("", "/"):
            url = url.rstrip("/") + settings.url_prefix
    else:
        url = f"http://{connect_host(settings.host)}:{settings.port}{settings.url_prefix}"
    try:
        return ApiClient(url, token, hint=f"procsync serve -c {config}", timeout=timeout)
    except ValueError as err:
        raise BadConfig(f"--url: {err}") from None


# -- formatting ------------------------------------------------------------------------------

def fmt_uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def fmt_bytes(n: int | None) -> str:
    if not n:
        return "-"
    value = float(n)
    for unit in ("B", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}G"


def table(headers: list[str], rows: list[list[str]], colors: list[list[str | None]] | None = None) -> str:
    """Columns padded to their widest cell; colors (per cell) applied after padding."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for n, row in enumerate(rows):
        cells = []
        for i, (cell, width) in enumerate(zip(row, widths, strict=True)):
            padded = cell.ljust(width) if i < len(row) - 1 else cell
            color = colors[n][i] if colors else None
            cells.append(click.style(padded, fg=color) if color else padded)
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def server_cells(s: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """The columns `status` and `top` both show for one server of GET /servers: header -> (text, colour)."""
    running = bool(s.get("running"))
    status, health = str(s.get("status")), str(s.get("health"))
    return {
        "ID": (str(s.get("id")), None),
        "STATUS": (status, STATE_COLORS.get(status)),
        "PID": (str(s.get("pid") or "-"), None),
        "HEALTH": (str(s.get("health") or "-"), HEALTH_COLORS.get(health)),
        "UPTIME": (fmt_uptime(s.get("uptime")), None),
        "RESTARTS": (str(s.get("restarts", 0)), None),
        "CPU": (f"{s.get('cpu_percent') or 0:.0f}%" if running else "-", None),
        "MEM": (fmt_bytes(s.get("memory_rss")) if running else "-", None),
    }
