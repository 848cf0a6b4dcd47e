"""`.env` files as foreman and honcho read them: KEY=VALUE lines, `export`, quotes, # comments.

Used for a Procfile's neighbouring `.env` and for a server's `env_file`.
Unlike honcho, a line that cannot be parsed is refused with its line
number, not skipped.
"""

from __future__ import annotations

import os
import re

_ENV_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


class DotenvError(ValueError):
    """A line of a `.env` file that is not KEY=VALUE."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.problem = message


def parse_dotenv_text(text: str) -> dict[str, str]:
    """The variables of a `.env` file's text; DotenvError names the line that is wrong."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if match is None:
            raise DotenvError(number, f"cannot parse {raw!r} (expected KEY=VALUE)")
        key, value = match.group(1), match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            quote, value = value[0], value[1:-1]
            if quote == '"':
                value = (value.replace("\\n", "\n").replace("\\t", "\t")
                         .replace('\\"', '"').replace("\\\\", "\\"))
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def read_dotenv(path: str | os.PathLike[str]) -> dict[str, str]:
    """The variables of the `.env` file at `path` (OSError if it cannot be read)."""
    with open(path, encoding="utf-8") as f:
        return parse_dotenv_text(f.read())


__all__ = ["DotenvError", "parse_dotenv_text", "read_dotenv"]
