"""Hiding secrets in command lines before procsync shows or stores them.

procsync runs a server's real command, but everything it shows or keeps
(``ProcessInfo.command``, ``ServerStatus.command``, the state file, events,
``procsync check``) goes through `shown_command`, which replaces with ``***``:

- the value of an option or ``NAME=value`` word whose name looks secret
  (it contains one of SECRET_WORDS, or one of its parts is in SECRET_PARTS):
  ``--password=x``, ``--api-key x``, ``API_TOKEN=x``,
  ``-Djavax.net.ssl.keyStorePassword=x``;
- the password of a URL, and its query parameters with secret-looking names:
  ``postgres://user:***@host/db``, ``https://api/x?api_key=***``;
- every part of a command that came from a ``${VAR}`` expanded by the config
  file loader (it calls `remember_expansion` with the masked template).

Single-letter options (``-p x``) are left alone: their meaning depends on the
program. Over-redaction is harmless, since the shown text is never run.
"""

from __future__ import annotations

import re
import shlex
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from functools import lru_cache

from .locks import ordered_lock

MASK = "***"
SECRET_WORDS = ("password", "passwd", "passphrase", "token", "secret", "credential", "cookie",
                "apikey", "authorization")  # anywhere in a name
SECRET_PARTS = ("key", "pwd", "pass", "auth")  # as one part of a name: api-key, --pass, auth_user
MAX_REMEMBERED = 10_000  # masked commands kept from config expansion (oldest dropped)

# One shell word: quoted chunks and unquoted characters with no blank between them.
_WORD = re.compile(r"""(?:"(?:[^"\\]|\\.)*"?|'[^']*'?|\\.|[^\s'"\\])+""", re.S)
_ASSIGN = re.compile(r"""^(["']?)(-{0,2}[A-Za-z_][\w.:-]*)=""")
_OPTION = re.compile(r"""^(["']?)(-{1,2}[A-Za-z][\w.-]+)\1$""")
_URL_PASSWORD = re.compile(r"""(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'"]*:)[^\s@/'"]+@""")
_QUERY_PARAM = re.compile(r"""([?&;])([A-Za-z0-9_.-]+)=([^&;#\s'"]*)""")

_PLACEHOLDER = "PROCSYNCMASKED"  # shell-safe stand-in for MASK while quoting
_lock = ordered_lock("redact")
_remembered: OrderedDict[str, str] = OrderedDict()


def secret_name(name: str) -> bool:
    """True when an option or variable name looks like it holds a secret."""
    parts = [p.lower() for p in re.split(r"[-_.:]+|(?<=[a-z0-9])(?=[A-Z])", name) if p]
    flat = "".join(parts)
    return len(flat) > 1 and (any(word in flat for word in SECRET_WORDS)
                              or any(part in SECRET_PARTS for part in parts))


def command_words(command: str | Sequence[str]) -> str:
    """A command as one line (a list is joined with shell quoting)."""
    return command if isinstance(command, str) else shlex.join(command)


def redact_command(command: str | Sequence[str], secrets: Iterable[str] = ()) -> str:
    """`command` as one line with secret values replaced by ``***`` (see the module docstring).

    `secrets` are literal values to hide wherever they appear. Pure: the same
    input gives the same output, and redacting twice changes nothing more.
    """
    if isinstance(command, str):
        text = _redact_text(command)
    else:
        text = " ".join(_quote(part) for part in _redact_argv(tuple(str(p) for p in command)))
    for value in sorted({s for s in secrets if s and s != MASK}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def shown_command(command: str | Sequence[str]) -> str:
    """`command` as procsync shows and stores it: expanded ``${VAR}`` values and secrets masked."""
    text = command_words(command)
    with _lock:
        masked = _remembered.get(text)
    if masked is not None:
        return redact_command(masked)
    return redact_command(command)


def remember_expansion(command: str | Sequence[str], masked: str | Sequence[str]) -> None:
    """Record that `command` (after ``${VAR}`` expansion) is shown as `masked` (``***`` per value).

    The config loader calls this; `shown_command` then shows `masked` for it.
    """
    text = command_words(command)
    shown = masked if isinstance(masked, str) else " ".join(_quote(part) for part in masked)
    if text == shown:
        return
    with _lock:
        _remembered[text] = shown
        _remembered.move_to_end(text)
        while len(_remembered) > MAX_REMEMBERED:
            _remembered.popitem(last=False)


def redact_text(text: str | None) -> str | None:
    """Free text (a history reason, a message) with option-style secrets masked."""
    return None if text is None else _redact_text(text)


@lru_cache(maxsize=1024)
def _redact_text(text: str) -> str:
    out: list[str] = []
    pos = 0
    hide_next = False
    for match in _WORD.finditer(text):
        word = match.group(0)
        shown, hide_next = _redact_word(word, hide_next)
        out.append(text[pos:match.start()])
        out.append(shown)
        pos = match.end()
    out.append(text[pos:])
    return "".join(out)


def _quote(part: str) -> str:
    """shlex.quote, leaving ``***`` unquoted so that it reads as a mask."""
    return shlex.quote(part.replace(MASK, _PLACEHOLDER)).replace(_PLACEHOLDER, MASK)


def _redact_argv(argv: tuple[str, ...]) -> list[str]:
    out = []
    hide_next = False
    for part in argv:
        if hide_next and not part.startswith("-"):
            out.append(MASK)
            hide_next = False
            continue
        hide_next = False
        match = re.match(r"^(-{0,2}[A-Za-z_][\w.:-]*)=", part)
        if match and secret_name(match.group(1)):
            out.append(match.group(0) + MASK)
        elif re.fullmatch(r"-{1,2}[A-Za-z][\w.-]+", part) and secret_name(part):
            out.append(part)
            hide_next = True
        else:
            out.append(_in_urls(part))
    return out


def _redact_word(word: str, hide: bool) -> tuple[str, bool]:
    """One shell word of a command string, and whether the next word is a secret value."""
    if hide and not word.lstrip("'\"").startswith("-"):
        return MASK, False
    match = _ASSIGN.match(word)
    if match and secret_name(match.group(2)):
        quote = match.group(1)
        closing = quote if quote and word.endswith(quote) and len(word) > len(match.group(0)) else ""
        return match.group(0) + MASK + closing, False
    option = _OPTION.match(word)
    if option and secret_name(option.group(2)):
        return word, True
    return _in_urls(word), False


def _in_urls(word: str) -> str:
    """`word` with URL passwords and secret-looking query parameters masked."""
    word = _URL_PASSWORD.sub(r"\1" + MASK + "@", word)
    if "=" not in word or not any(c in word for c in "?&;"):
        return word

    def param(match: re.Match[str]) -> str:
        sep, name, value = match.groups()
        return f"{sep}{name}={MASK}" if value and secret_name(name) else match.group(0)

    return _QUERY_PARAM.sub(param, word)


__all__ = ["MASK", "redact_command", "redact_text", "remember_expansion", "secret_name",
           "shown_command"]
