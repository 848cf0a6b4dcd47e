"""Reading a Procfile (foreman/honcho format) and the .env file beside it.

Each ``name: command`` line becomes a server run through the shell, in the
Procfile's folder, with the .env variables and its own ``PORT``: like
foreman, the first process gets the base port (5000, or PORT from .env or
the environment) and each next one 100 more. That port is the server's
configured port.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import ConfigError
from .dotenv import DotenvError, parse_dotenv_text
from .files import ConfigFileError, LoadedConfig, Settings, read_text
from .records import ServerConfig, check_id

BASE_PORT = 5000
PORT_STEP = 100

_LINE = re.compile(r"^([A-Za-z0-9_.-]+)\s*:\s*(.*)$")


def parse_dotenv(path: str | os.PathLike[str]) -> dict[str, str]:
    """KEY=VALUE lines ('export ', quotes and # comments allowed); {} when the file is missing."""
    if not Path(path).exists():
        return {}
    try:
        return parse_dotenv_text(read_text(path))
    except DotenvError as err:
        raise ConfigFileError(path, None, None, err.problem, err.line) from None


def load_procfile(path: str | os.PathLike[str]) -> LoadedConfig:
    """One autostarted shell server per Procfile line, with .env and a foreman-style PORT."""
    text = read_text(path)
    folder = Path(path).resolve().parent
    dotenv = parse_dotenv(folder / ".env")
    base = dotenv.get("PORT") or os.environ.get("PORT") or str(BASE_PORT)
    if not base.isdigit() or not 1 <= int(base) <= 65535:
        raise ConfigFileError(path, None, "PORT", f"base port {base!r} is not a port number (1..65535)")
    registry: dict[str, ServerConfig] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise ConfigFileError(path, None, None, f"cannot parse {raw!r} (expected 'name: command')", number)
        sid, command = match.group(1), match.group(2).strip()
        try:
            check_id(sid)
        except ConfigError as err:
            raise ConfigFileError(path, None, sid, f"process name {err.problem}", number) from None
        if sid in registry:
            raise ConfigFileError(path, None, sid, "process name used twice", number)
        if not command:
            raise ConfigFileError(path, None, sid, "has no command", number)
        port = int(base) + PORT_STEP * len(registry)
        if port > 65535:
            raise ConfigFileError(path, None, sid, f"its port {port} is above 65535", number)
        try:
            registry[sid] = ServerConfig(
                command=command, name=sid, cwd=str(folder), shell=True, autostart=True,
                env={**dotenv, "PORT": str(port)}, ports=[port],
            )
        except ConfigError as err:
            raise ConfigFileError(path, None, sid, f"{err.field}: {err.problem}", number) from None
    return LoadedConfig(Path(path), Settings.defaults(folder), registry, "procfile")


__all__ = ["BASE_PORT", "PORT_STEP", "load_procfile", "parse_dotenv"]
