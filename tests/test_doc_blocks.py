"""Every code block of README.md and docs/**/*.md that claims to work, works.

The rules (the parsing is in docblocks.py):

- ```python blocks: all the runnable ones of a page run in order, in ONE fresh
  interpreter (`sys.executable`, with its bin folder first on PATH), in one
  namespace whose `__name__` is "docs", with a fresh empty temp folder as cwd,
  within 60 s; it must exit 0, and the conftest check fails the test if a
  process is left running (every child inherits PROCSYNC_TEST_RUN). A traceback
  names the page and the page's own line numbers.
- A block whose line directly above the fence is `<!-- excerpt: PATH -->` is not
  run: its non-blank lines must appear in the repository file PATH, in order and
  verbatim (after removing an indentation common to the whole block).
- Shell blocks (```sh, ```bash, ```shell, ```console; in ```console only `$ `
  lines are commands) with a `procsync` command line either run here or are
  marked `<!-- illustrative -->` on the line directly above the fence. Blocks
  that cannot run (they use `serve`, `logs -f`, `top` without `--once`,
  `--watch`) and are not marked fail `test_unrunnable_shell_blocks_are_marked`;
  every other unmarked block runs, so an unknown id or file fails when it runs.
- A shell block runs its `procsync` lines only, one `sh -c` each, in a temp
  folder that holds a copy of examples/ and the procsync.toml of
  tests/data/docs-shell.toml (servers `api` and `web`: HTTP servers, `worker`:
  no port, `migrate`: a job that exits 0; groups `backend` = api + worker and
  `site` = migrate + web, web depending on migrate; all autostart), with a
  `procsync serve` of it running and PROCSYNC_URL pointing at it. Each line
  must exit 0, or N when it ends with a comment that starts `# exit N`
  (`procsync start nope   # exit 1: no such server`).
- The servers' state carries over from block to block and page to page (a
  block may stop `web`); before each page's blocks every server is started
  again. `start` of a running server and `stop` of a stopped one exit 0, so
  most blocks do not depend on the ones before.
- The serve and everything it starts carry their own PROCSYNC_TEST_RUN token
  (the per-test leak check would otherwise kill the module's serve after the
  first test); at the end of the module every server is stopped, the serve is
  stopped, and any process left with that token is killed and fails the last test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import urllib.request
import uuid
from pathlib import Path

import pytest
from docblocks import (
    ROOT,
    Block,
    FenceError,
    excerpt_problem,
    page_blocks,
    pages,
    parse_blocks,
    procsync_commands,
    shell_commands,
    why_not_runnable,
)
from helpers import RUN_MARKER, free_port, kill_marked_after_grace, wait_until

PYTHON_TIMEOUT = 60.0
LINE_TIMEOUT = 60.0

ALL_BLOCKS: dict[str, list[Block]] = {}
PARSE_ERRORS: list[str] = []
for _page in pages():
    try:
        ALL_BLOCKS[_page] = page_blocks(_page)
    except FenceError as _err:
        PARSE_ERRORS.append(str(_err))


def runnable_python(blocks: list[Block]) -> list[Block]:
    return [b for b in blocks if b.is_python and b.excerpt is None]


def runnable_shell(blocks: list[Block]) -> list[Block]:
    return [b for b in blocks
            if b.is_shell and not b.illustrative and b.excerpt is None and procsync_commands(b)]


PYTHON_PAGES = [page for page, blocks in ALL_BLOCKS.items() if runnable_python(blocks)]
SHELL_PAGES = [page for page, blocks in ALL_BLOCKS.items() if runnable_shell(blocks)]

# Runs the blocks given as JSON on stdin, [[path, fence line, code], ...], in one namespace;
# each block is compiled under the page's path with the page's line numbers.
RUNNER = textwrap.dedent("""\
    import json, sys
    blocks = json.load(sys.stdin)
    namespace = {"__name__": "docs"}
    for n, (path, line, code) in enumerate(blocks, 1):
        print(f"--- block {n} of {len(blocks)}: {path}, fence at line {line}", flush=True)
        exec(compile("\\n" * line + code, path, "exec"), namespace)
        sys.stdout.flush()
        sys.stderr.flush()
    print("--- every block ran", flush=True)
""")


# -- the parser, on samples ------------------------------------------------------------------

SAMPLE = """\
# A page

```python
a = 1
```

Some prose with ```inline``` code.

<!-- excerpt: examples/basic.py -->
```python
from procsync import ServerOrchestrator
```

````markdown
```python
not_a_block = True
```
````

```{literalinclude} ../examples/basic.py
:language: python
```

:::{note}
inside a colon fence
:::

````{note}
A note holding a block:

   ```py
   b = 2
   ```
````

~~~console
$ procsync status
ID  STATUS
$ procsync start nope \\
>   --all   # exit 2: ids and --all together
~~~

<!-- illustrative -->
```sh
procsync serve -c procsync.toml
pip install procsync && procsync logs -f web
```

```
no info string
```
"""


def test_parser_finds_the_blocks_of_a_sample():
    blocks = parse_blocks(SAMPLE, "sample.md")
    assert [(b.lang, b.line) for b in blocks] == [
        ("python", 3), ("python", 10), ("markdown", 14), ("py", 31), ("console", 36),
        ("sh", 44), ("", 49)]
    assert [b.code for b in blocks if b.is_python] == [
        "a = 1\n", "from procsync import ServerOrchestrator\n", "b = 2\n"]
    assert len(runnable_python(blocks)) == 2
    assert blocks[1].excerpt == "examples/basic.py" and not blocks[1].illustrative
    assert blocks[5].illustrative and blocks[5].excerpt is None
    assert blocks[0].above == "" and blocks[4].excerpt is None and not blocks[4].illustrative


def test_parser_reads_shell_commands():
    blocks = parse_blocks(SAMPLE, "sample.md")
    console, sh = blocks[4], blocks[5]
    assert [(c.line, c.text, c.expected_exit) for c in shell_commands(console)] == [
        (37, "procsync status", 0),
        (39, "procsync start nope --all   # exit 2: ids and --all together", 2)]
    assert [c.text for c in procsync_commands(sh)] == [
        "procsync serve -c procsync.toml", "pip install procsync && procsync logs -f web"]
    reasons = [why_not_runnable(c) for c in procsync_commands(sh)]
    assert "serve" in reasons[0] and "logs -f" in reasons[1]
    assert [why_not_runnable(c) for c in shell_commands(console)] == [None, None]


@pytest.mark.parametrize(("line", "is_procsync", "reason"), [
    ("procsync status", True, None),
    ("PROCSYNC_URL=http://127.0.0.1:8420 procsync status", True, None),
    ("python -m procsync check -c procsync.toml", True, None),
    ("cd app && procsync top", True, "top"),
    ("procsync top --once", True, None),
    ("procsync status --watch -n 1", True, "--watch"),
    ("procsync logs web -n 20", True, None),
    ("procsync logs --follow web", True, "logs -f"),
    ("cat procsync.toml", False, None),
    ("flask procsync status", False, None),
    ("pip install 'procsync[metrics]'", False, None),
    ("echo '# exit 1' && procsync status", True, None),
])
def test_parser_recognises_procsync_lines(line, is_procsync, reason):
    (command,) = shell_commands(Block("x.md", 1, "sh", line + "\n", ""))
    assert command.is_procsync is is_procsync
    got = why_not_runnable(command)
    assert (got is None) if reason is None else (reason in got)
    assert command.expected_exit == 0


def test_an_unclosed_fence_is_an_error():
    with pytest.raises(FenceError, match=r"x\.md:3: "):
        parse_blocks("text\n\n```python\nx = 1\n", "x.md")


def test_excerpts_are_checked_against_the_file(tmp_path):
    source = (ROOT / "examples" / "basic.py").read_text().splitlines()
    body = [line for line in source if line.strip()][2:5]
    good = Block("x.md", 1, "python", "\n".join(body) + "\n", "<!-- excerpt: examples/basic.py -->")
    assert excerpt_problem(good) is None
    swapped = Block("x.md", 1, "python", "\n".join(reversed(body)) + "\n", good.above)
    assert "is not in examples/basic.py" in excerpt_problem(swapped)
    missing = Block("x.md", 1, "python", "x = 1\n", "<!-- excerpt: examples/nope.py -->")
    assert "does not exist" in excerpt_problem(missing)


def test_every_page_parses():
    assert not PARSE_ERRORS, "\n".join(PARSE_ERRORS)


def test_the_docs_have_blocks_to_check():
    assert "README.md" in ALL_BLOCKS and "docs/cli.md" in ALL_BLOCKS
    assert not any("_build" in page for page in ALL_BLOCKS)
    python = [b for blocks in ALL_BLOCKS.values() for b in runnable_python(blocks)]
    assert len(python) >= 15, f"only {len(python)} runnable python blocks found"
    assert SHELL_PAGES, "no runnable shell block found"


# -- the rules, over every page --------------------------------------------------------------

def test_excerpts_match_their_files():
    problems = [f"{b.where}: {problem}" for blocks in ALL_BLOCKS.values() for b in blocks
                if b.excerpt is not None and (problem := excerpt_problem(b))]
    assert not problems, "\n".join(problems)


def test_python_blocks_are_not_marked_illustrative():
    marked = [b.where for blocks in ALL_BLOCKS.values() for b in blocks if b.is_python and b.illustrative]
    assert not marked, ("every python block runs (or is an <!-- excerpt: PATH --> of a tested file); "
                        "marked illustrative: " + ", ".join(marked))


def test_markers_are_spelled_right():
    wrong = [f"{b.where}: {b.above}" for blocks in ALL_BLOCKS.values() for b in blocks
             if b.above.startswith("<!--") and re.search(r"illustrative|excerpt", b.above)
             and not b.illustrative and b.excerpt is None]
    assert not wrong, "write <!-- illustrative --> or <!-- excerpt: PATH -->:\n" + "\n".join(wrong)


def test_unrunnable_shell_blocks_are_marked():
    unmarked = [f"{b.page}:{c.line}: {c.text}\n    {reason}"
                for blocks in ALL_BLOCKS.values() for b in runnable_shell(blocks)
                for c in procsync_commands(b) if (reason := why_not_runnable(c))]
    assert not unmarked, ("shell blocks that cannot run here; put <!-- illustrative --> on the line "
                          "directly above their fence:\n" + "\n".join(unmarked))


# -- python blocks ---------------------------------------------------------------------------

@pytest.mark.parametrize("page", PYTHON_PAGES)
def test_python_blocks(page, tmp_path):
    blocks = runnable_python(ALL_BLOCKS[page])
    payload = json.dumps([[str(ROOT / b.page), b.line, b.code] for b in blocks])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-c", RUNNER], cwd=tmp_path, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(payload, timeout=PYTHON_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{page}: the python blocks did not finish within {PYTHON_TIMEOUT:.0f} s:\n{out}",
                    pytrace=False)
    if proc.returncode != 0:
        pytest.fail(f"{page}: the python blocks exited {proc.returncode}:\n{out}", pytrace=False)
    assert out.rstrip().endswith("--- every block ran")


# -- shell blocks ----------------------------------------------------------------------------

class DocsShell:
    """A temp folder with examples/ and a procsync.toml, and a `procsync serve` of it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.token = uuid.uuid4().hex  # the serve's own run marker: see the module docstring
        shutil.copytree(ROOT / "examples", folder / "examples",
                        ignore=shutil.ignore_patterns(".procsync", "__pycache__", "*.sqlite3", "*.db"))
        serve_port, api_port, web_port = free_port(), free_port(), free_port()
        while len({serve_port, api_port, web_port}) < 3:
            web_port = free_port()
        text = (ROOT / "tests" / "data" / "docs-shell.toml").read_text()
        for name, value in [("@PYTHON@", sys.executable), ("@SERVE_PORT@", str(serve_port)),
                            ("@API_PORT@", str(api_port)), ("@WEB_PORT@", str(web_port))]:
            text = text.replace(name, value)
        (folder / "procsync.toml").write_text(text)
        self.url = f"http://127.0.0.1:{serve_port}/procsync"
        base = {k: v for k, v in os.environ.items() if not k.startswith("PROCSYNC_") or k == RUN_MARKER}
        base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        base.pop("VIRTUAL_ENV", None)
        self.env = {**base, "PROCSYNC_URL": self.url}
        self.out, self.err = folder / "serve.out", folder / "serve.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.serve = subprocess.Popen(
                [sys.executable, "-m", "procsync", "serve", "-c", "procsync.toml", "--stop-on-exit"],
                cwd=folder, stdout=out, stderr=err, start_new_session=True,
                env={**base, "PROCSYNC_LOCK_ORDER": "1", RUN_MARKER: self.token})

    def servers(self) -> dict[str, str] | None:
        """id -> status from the API, or None while nothing answers."""
        if self.serve.poll() is not None:
            raise AssertionError(f"procsync serve exited {self.serve.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(self.url + "/api/servers", timeout=5) as answer:
                return {s["id"]: s["status"] for s in json.load(answer)["servers"]}
        except OSError:
            return None

    def wait_all_up(self) -> None:
        """Start every server (a no-op for running ones) and wait until all are up."""
        self.sh("procsync start --all", 0, "starting every server")
        wait_until(lambda: self.servers() == {"api": "running", "worker": "running",
                                              "migrate": "completed", "web": "running"},
                   30, "every server of the docs' procsync.toml to be up")

    def sh(self, command: str, expected: int, where: str) -> str:
        try:
            done = subprocess.run(["sh", "-c", command], cwd=self.folder, env=self.env, text=True,
                                  stdin=subprocess.DEVNULL, capture_output=True, timeout=LINE_TIMEOUT)
        except subprocess.TimeoutExpired as err:
            raise AssertionError(f"{where}: `{command}` did not finish within {LINE_TIMEOUT:.0f} s:\n"
                                 f"{err.stdout or ''}{err.stderr or ''}") from None
        output = f"stdout:\n{done.stdout}stderr:\n{done.stderr}"
        assert done.returncode == expected, (f"{where}: `{command}` exited {done.returncode}, "
                                             f"expected {expected}\n{output}")
        return output

    def log(self) -> str:
        return f"serve stdout:\n{self.out.read_text()}serve stderr:\n{self.err.read_text()}"

    def close(self) -> list[str]:
        """Stop every server and the serve; kill and describe what is left."""
        try:
            if self.serve.poll() is None and self.servers() is not None:
                self.sh("procsync stop --all", 0, "stopping every server")
        finally:
            if self.serve.poll() is None:
                os.killpg(self.serve.pid, signal.SIGTERM)
                try:
                    self.serve.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(self.serve.pid, signal.SIGKILL)
                    self.serve.wait(timeout=10)
        return kill_marked_after_grace(token=self.token)  # what is left carrying our token


@pytest.fixture(scope="module")
def docs_shell(tmp_path_factory):
    shell = DocsShell(tmp_path_factory.mktemp("docs-shell"))
    try:
        wait_until(shell.servers, 30, "procsync serve to answer")
        yield shell
    finally:
        leaked = shell.close()
    assert not leaked, "the docs' shell blocks leaked processes:\n  " + "\n  ".join(leaked)


@pytest.mark.parametrize("page", SHELL_PAGES)
def test_shell_blocks(page, docs_shell):
    docs_shell.wait_all_up()
    ran = 0
    for block in runnable_shell(ALL_BLOCKS[page]):
        commands = procsync_commands(block)
        if any(why_not_runnable(c) for c in commands):
            continue  # test_unrunnable_shell_blocks_are_marked reports it
        for command in commands:
            docs_shell.sh(command.text, command.expected_exit, f"{page}:{command.line}")
            ran += 1
    if not ran:
        pytest.fail(f"{page}: no shell block could run (see test_unrunnable_shell_blocks_are_marked)",
                    pytrace=False)


def test_the_docs_shell_checks_exit_codes(docs_shell):
    docs_shell.wait_all_up()
    (command,) = procsync_commands(Block("x.md", 1, "console", "$ procsync start nope   # exit 1: unknown\n", ""))
    assert command.expected_exit == 1
    docs_shell.sh(command.text, command.expected_exit, "x.md:2")
    with pytest.raises(AssertionError, match=r"exited 1, expected 0"):
        docs_shell.sh(command.text, 0, "x.md:2")
    docs_shell.sh("procsync reload api", 0, "reload")
    wait_until(lambda: "reloaded" in docs_shell.sh("procsync logs api -n 50", 0, "logs"), 10,
               "api to print that it got SIGHUP")
