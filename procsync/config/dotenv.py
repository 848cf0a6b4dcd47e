"""`.env` files as honcho reads them: KEY=VALUE lines, `export`, quotes, # comments.

Used for a Procfile's neighbouring `.env` and for a server's `env_file`.
Every case of honcho's own tests reads the same. Unlike honcho, a line that
cannot be parsed is refused with its line number, not skipped; the other
deliberate differences are listed in docs/config.md.
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
        values[match.group(1)] = _value(match.group(2).strip())
    return values


#: What a backslash and the next character mean inside double quotes; any other pair stays.
_DOUBLE_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def _value(raw: str) -> str:
    """One value, read as a shell word the way honcho reads it.

    Unquoted, a backslash takes the next character as it is (``\\"`` is
    ``"``) and `` #`` starts a comment; inside double quotes ``\\"`` and
    ``\\\\`` are escapes; inside either quotes ``\\n`` and ``\\t`` are a
    newline and a tab. Pieces next to each other join (``"a"'b'c`` is ``abc``),
    and a quote that is never closed is an ordinary character (``it's``).
    """
    out: list[str] = []
    run: list[str] = []  # unquoted characters not yet known to be more than trailing blanks
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c in "'\"":
            end = raw.find(c, i + 1) if c == "'" else _closing_quote(raw, i + 1)
            if end < 0:
                run.append(c)
                i += 1
                continue
            out.append("".join(run))
            run = []
            out.append(_single(raw[i + 1:end]) if c == "'" else _double(raw[i + 1:end]))
            i = end + 1
        elif c == "\\" and i + 1 < n:
            out.append("".join(run))
            run = []
            out.append(raw[i + 1])
            i += 2
        elif c == "#" and (i == 0 or raw[i - 1] in " \t"):
            run = list("".join(run).rstrip())
            break
        else:
            run.append(c)
            i += 1
    out.append("".join(run))
    return "".join(out)


def _closing_quote(raw: str, start: int) -> int:
    i = start
    while i < len(raw):
        if raw[i] == "\\":
            i += 2
        elif raw[i] == '"':
            return i
        else:
            i += 1
    return -1


def _single(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\t", "\t")


def _double(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append(_DOUBLE_ESCAPES.get(nxt, c + nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def read_dotenv(path: str | os.PathLike[str]) -> dict[str, str]:
    """The variables of the `.env` file at `path` (OSError if it cannot be read)."""
    with open(path, encoding="utf-8") as f:
        return parse_dotenv_text(f.read())


__all__ = ["DotenvError", "parse_dotenv_text", "read_dotenv"]
