"""Reading a Procfile (foreman/honcho format) and the .env file beside it.

Each ``name: command`` line becomes a server run through the shell, in the
Procfile's folder, with the .env variables, its own ``PORT`` and ``PS``
(``web.1``), as foreman runs it. The formation (`formation.py`) says how
many copies of each to run and gives each copy foreman's port: 5000 (or
PORT from .env or the environment) for the first process, 100 more for
each next one, one more for each next copy. That port is offered, not
required (``ports_required=False``): a worker that never listens is ready
when it runs and healthy while it lives.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError
from .dotenv import DotenvError, parse_dotenv_text
from .files import ConfigFileError, LoadedConfig, Settings, read_text
from .formation import PORT_STEP, FormationError, expand, parse_formation
from .records import ServerConfig, check_id
from .units import whole_number

BASE_PORT = 5000

_LINE = re.compile(r"^([A-Za-z0-9_.-]+)\s*:\s*(.*)$")


def parse_dotenv(path: str | os.PathLike[str]) -> dict[str, str]:
    """KEY=VALUE lines ('export ', quotes and # comments allowed); {} when the file is missing."""
    if not Path(path).exists():
        return {}
    try:
        return parse_dotenv_text(read_text(path))
    except DotenvError as err:
        raise ConfigFileError(path, None, None, err.problem, err.line) from None


def load_procfile(path: str | os.PathLike[str],
                 formation: Mapping[str, int] | str | None = None) -> LoadedConfig:
    """One autostarted shell server per Procfile process and copy, with .env, PORT and PS.

    `formation` is foreman's ``-m`` (``"web=2,worker=3"`` or a mapping); a
    bad one raises ConfigFileError naming ``formation``.
    """
    text = read_text(path)
    folder = Path(path).resolve().parent
    dotenv = parse_dotenv(folder / ".env")
    base = dotenv.get("PORT") or os.environ.get("PORT") or str(BASE_PORT)
    base_port = whole_number(base)
    if base_port is None or not 1 <= base_port <= 65535:
        raise ConfigFileError(path, None, "PORT", f"base port {base!r} is not a port number (1..65535)")
    commands: dict[str, tuple[str, int]] = {}
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
        if sid in commands:
            raise ConfigFileError(path, None, sid, "process name used twice", number)
        if not command:
            raise ConfigFileError(path, None, sid, "has no command", number)
        commands[sid] = (command, number)
    try:
        counts = parse_formation(formation) if isinstance(formation, str) else formation
        copies = expand(list(commands), counts, base_port)
    except FormationError as err:
        raise ConfigFileError(path, None, "formation", err.problem) from None
    registry: dict[str, ServerConfig] = {}
    for copy in copies:
        command, number = commands[copy.process]
        if copy.port > 65535:
            raise ConfigFileError(path, None, copy.id, f"its port {copy.port} is above 65535", number)
        try:
            registry[copy.id] = ServerConfig(
                command=command, name=copy.id, cwd=str(folder), shell=True, autostart=True,
                env={**dotenv, "PORT": str(copy.port), "PS": f"{copy.process}.{copy.number}"},
                ports=[copy.port], ports_required=False, group=copy.group,
            )
        except ConfigError as err:
            raise ConfigFileError(path, None, copy.id, f"{err.field}: {err.problem}", number) from None
    return LoadedConfig(Path(path), Settings.defaults(folder), registry, "procfile",
                        dict(counts) if counts else None)


__all__ = ["BASE_PORT", "PORT_STEP", "load_procfile", "parse_dotenv"]
