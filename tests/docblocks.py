"""The fenced code blocks of the Markdown docs, and what tests/test_doc_blocks.py does with them.

A fence is a line of three or more backticks (or tildes), at any indentation,
followed by an info string; it ends at a line of the same character, at least
as long, with nothing after it. Inside a fence nothing is parsed, so a longer
fence can show shorter ones. A myst directive fence (```{literalinclude},
```{note} ...) is not a code block; the Markdown inside it is parsed, except
inside {code-block}, {code}, {sourcecode} and {eval-rst}.

The line directly above a fence may mark the block:
`<!-- illustrative -->` (a shell block that is shown, not run) or
`<!-- excerpt: PATH -->` (lines of the repository file PATH, checked, not run).
"""

from __future__ import annotations

import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PYTHON_LANGS = frozenset({"python", "py", "python3"})
SHELL_LANGS = frozenset({"sh", "bash", "shell", "console", "zsh", "shell-session"})
VERBATIM_DIRECTIVES = frozenset({"code-block", "code", "sourcecode", "eval-rst"})

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_ILLUSTRATIVE = re.compile(r"^\s*<!--\s*illustrative\s*-->\s*$")
_EXCERPT = re.compile(r"^\s*<!--\s*excerpt:\s*(?P<path>\S+)\s*-->\s*$")
# `procsync` in command position: at the start, or after ; & | ( and optional VAR=value words
_PROCSYNC = re.compile(r"(?:^|[;&|(]\s*)(?:[A-Za-z_]\w*=\S*\s+)*(?:python3?\s+-m\s+)?procsync(?![\w./-])")
_EXPECTED_EXIT = re.compile(r"#\s*exit\s+(?P<code>\d+)\b")


class FenceError(ValueError):
    """A fence that is never closed."""


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str                 # the page, relative to the repository root ("docs/cli.md")
    line: int                 # 1-based line of the opening fence
    lang: str                 # first word of the info string, lower case ("" when none)
    code: str                 # the lines between the fences, the fence's indentation removed
    above: str                # the line directly above the opening fence, stripped

    @property
    def illustrative(self) -> bool:
        return bool(_ILLUSTRATIVE.match(self.above))

    @property
    def excerpt(self) -> str | None:
        """The repository path this block is an excerpt of, or None."""
        match = _EXCERPT.match(self.above)
        return match.group("path") if match else None

    @property
    def is_python(self) -> bool:
        return self.lang in PYTHON_LANGS

    @property
    def is_shell(self) -> bool:
        return self.lang in SHELL_LANGS

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass(frozen=True)
class Command:
    """One command line of a shell block."""

    line: int                 # 1-based line in the page where the command starts
    text: str                 # the command, `$ ` prompt and `\\` continuations removed
    expected_exit: int        # 0, or N from a trailing `# exit N` comment

    @property
    def is_procsync(self) -> bool:
        return bool(_PROCSYNC.search(self.text))


def parse_blocks(text: str, page: str) -> list[Block]:
    """Every fenced code block of Markdown `text`, in order (directive fences excluded)."""
    return _parse(text.splitlines(), page, 0)


def _parse(lines: list[str], page: str, offset: int) -> list[Block]:
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match or (match["fence"][0] == "`" and "`" in match["info"]):
            i += 1
            continue
        indent, fence, info = len(match["indent"]), match["fence"], match["info"].strip()
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        end = next((j for j in range(i + 1, len(lines)) if closing.match(lines[j])), None)
        if end is None:
            raise FenceError(f"{page}:{offset + i + 1}: the fence {fence}{info} is never closed")
        body = [_unindent(line, indent) for line in lines[i + 1:end]]
        if info.startswith("{"):
            directive = info[1:].split("}", 1)[0].strip()
            if directive not in VERBATIM_DIRECTIVES:
                blocks.extend(_parse(body, page, offset + i + 1))
        else:
            blocks.append(Block(
                page=page, line=offset + i + 1, lang=(info.split() or [""])[0].lower(),
                code="\n".join(body) + ("\n" if body else ""),
                above=lines[i - 1].strip() if i > 0 else "",
            ))
        i = end + 1
    return blocks


def _unindent(line: str, indent: int) -> str:
    """`line` with up to `indent` leading spaces removed (the fence's own indentation)."""
    stripped = len(line) - len(line.lstrip(" "))
    return line[min(stripped, indent):]


def shell_commands(block: Block) -> list[Command]:
    """The command lines of a shell block: in ```console only the `$ ` lines, else every line
    that is not blank or a comment; a line ending in `\\` goes on with the next one."""
    commands: list[Command] = []
    lines = block.code.splitlines()
    i = 0
    while i < len(lines):
        raw, start = lines[i], block.line + 1 + i
        i += 1
        if block.lang in ("console", "shell-session"):
            if not raw.startswith("$ "):
                continue
            raw = raw[2:]
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = [stripped]
        while parts[-1].endswith("\\") and i < len(lines):
            parts[-1] = parts[-1][:-1].rstrip()
            nxt = lines[i].strip()
            parts.append(nxt[2:].lstrip() if nxt.startswith("> ") else nxt)
            i += 1
        text = " ".join(parts)
        match = _EXPECTED_EXIT.search(_comment(text))
        commands.append(Command(start, text, int(match["code"]) if match else 0))
    return commands


def _comment(command: str) -> str:
    """The trailing `# ...` comment of a command line ("" when none): a `#` outside quotes
    that starts a word, as the shell reads it."""
    quote = ""
    for n, char in enumerate(command):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (n == 0 or command[n - 1].isspace()):
            return command[n:]
    return ""


def procsync_commands(block: Block) -> list[Command]:
    """The command lines of a shell block that run `procsync`."""
    return [command for command in shell_commands(block) if command.is_procsync]


def why_not_runnable(command: Command) -> str | None:
    """Why a procsync command line cannot run to its end in a test, or None when it can."""
    try:
        words = shlex.split(command.text[:len(command.text) - len(_comment(command.text))])
    except ValueError as err:
        return f"cannot be split like a shell would: {err}"
    calls: list[list[str]] = []
    for n, word in enumerate(words):
        if word == "procsync" or (word.endswith("python3") or word.endswith("python")) \
                and words[n + 1:n + 3] == ["-m", "procsync"]:
            rest = words[n + 1:] if word == "procsync" else words[n + 3:]
            cut = next((k for k, w in enumerate(rest) if w in ("&&", "||", ";", "|", "&")), len(rest))
            calls.append(rest[:cut])
    for args in calls:
        sub = next((w for w in args if not w.startswith("-")), "")
        if sub == "serve":
            return "`procsync serve` runs until it is stopped"
        if sub == "top" and "--once" not in args:
            return "`procsync top` redraws until Ctrl-C (add --once to print one frame)"
        if "--watch" in args or (sub == "status" and "-w" in args):
            return "`--watch` redraws until Ctrl-C"
        if sub == "logs" and ("-f" in args or "--follow" in args):
            return "`logs -f` follows the log until Ctrl-C"
    return None


def excerpt_problem(block: Block) -> str | None:
    """Why an excerpt block is not lines of its file in order, or None when it is."""
    path = ROOT / (block.excerpt or "")
    if not block.excerpt or not path.is_file():
        return f"the excerpted file {block.excerpt!r} does not exist"
    wanted = [line.rstrip() for line in textwrap.dedent(block.code).splitlines() if line.strip()]
    if not wanted:
        return "the excerpt is empty"
    have = [line.rstrip() for line in path.read_text(encoding="utf-8").splitlines()]
    first = wanted[0].lstrip()
    indents = {len(line) - len(line.lstrip()) for line in have if line.lstrip() == first}
    best = 0
    for indent in indents:
        pad, k = " " * indent, 0
        for line in have:
            if k < len(wanted) and line == pad + wanted[k]:
                k += 1
        if k == len(wanted):
            return None
        best = max(best, k)
    return (f"line {best + 1} of the excerpt is not in {block.excerpt} "
            f"after the lines before it: {wanted[best]!r}")


def pages(root: Path = ROOT) -> list[str]:
    """README.md and every docs/**/*.md except the built site, relative to `root`."""
    found = [root / "README.md"] if (root / "README.md").is_file() else []
    found += sorted(p for p in (root / "docs").rglob("*.md")
                    if "_build" not in p.relative_to(root / "docs").parts)
    return [p.relative_to(root).as_posix() for p in found]


def page_blocks(page: str, root: Path = ROOT) -> list[Block]:
    return parse_blocks((root / page).read_text(encoding="utf-8"), page)
