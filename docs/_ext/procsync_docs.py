"""procsync's own Sphinx extension: references generated from the code, links to the repository.

Directives (used from the Markdown pages as ```{name}``` fences):

- ``procsync-config server|health|settings|webhook``: every field of
  ServerConfig, of its health table, of the ``[procsync]`` table or of a
  webhook entry, with its TOML type, default, meaning and a checked example,
  read from the records' field metadata (procsync.config.fielddoc);
- ``procsync-signals``: every signal of procsync.signals with its sender and
  payload keys;
- ``procsync-http-api``: every route of the OpenAPI document the Flask
  extension serves, with its parameters and answers.

A link from a page to a file of the repository outside the site
(``[the chaos test](../tests/test_chaos.py)``) resolves to a copy of that
file under ``_repo/`` in the built site, so the site holds what it cites;
a link to a file that does not exist stays a warning (an error under -W).
```mermaid fences are shown as plain text.
"""

from __future__ import annotations

import posixpath
import shutil
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive
from procsync_reference import config_table, http_api_markdown, signals_table
from pygments.lexers.special import TextLexer
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform

REPO = Path(__file__).resolve().parents[2]
COPY_DIR = "_repo"


class _Markdown(Directive):
    """A directive whose body is Markdown generated at build time."""

    def markdown(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        container = nodes.container()
        self.state.nested_parse(self.markdown().splitlines(), self.content_offset, container,
                                match_titles=True)
        return container.children


class ConfigTable(_Markdown):
    required_arguments = 1

    def markdown(self) -> str:
        return config_table(self.arguments[0])


class SignalsTable(_Markdown):
    def markdown(self) -> str:
        return signals_table()


class HttpApi(_Markdown):
    def markdown(self) -> str:
        return http_api_markdown()


def repo_file(node: addnodes.pending_xref, srcdir: Path) -> tuple[Path, str] | None:
    """The repository file outside the site that a page's link names, and its fragment.

    myst leaves such a link as a "doc" reference to an absolute path without
    its suffix (``../SECURITY.md`` → ``/repo/SECURITY``); links to other files
    myst already turns into downloads.
    """
    if node.get("refdomain") != "doc":
        return None
    target = node.get("reftarget", "")
    if not target.startswith("/"):
        return None
    found = Path(target + ".md")
    if not found.is_file() or not found.is_relative_to(REPO) or found.is_relative_to(srcdir):
        return None
    return found, node.get("reftargetid") or ""


class RepoLinks(SphinxPostTransform):
    """Turn links to repository files into links to their copies in the built site."""

    default_priority = 8  # before myst's resolver (9) warns about them

    def run(self, **kwargs: Any) -> None:
        srcdir = Path(self.env.srcdir)
        copies: set[str] = self.env.procsync_repo_files  # type: ignore[attr-defined]
        for node in list(self.document.findall(addnodes.pending_xref)):
            if node.get("reftype") != "myst":
                continue
            resolved = repo_file(node, srcdir)
            if resolved is None:
                continue
            found, fragment = resolved
            rel = found.relative_to(REPO).as_posix()
            copies.add(rel)
            here = posixpath.dirname(self.app.builder.get_target_uri(self.env.docname))
            uri = posixpath.relpath(f"{COPY_DIR}/{rel}", here or ".")
            ref = nodes.reference("", "", internal=False,
                                  refuri=uri + (f"#{fragment}" if fragment else ""))
            ref += node.children
            node.replace_self(ref)


def _init_env(app: Sphinx, env: Any, docnames: Any) -> None:
    if not hasattr(env, "procsync_repo_files"):
        env.procsync_repo_files = set()


def _copy_repo_files(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir) / COPY_DIR
    for rel in sorted(getattr(app.env, "procsync_repo_files", ())):
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, dest)


def _merge(app: Sphinx, env: Any, docnames: Any, other: Any) -> None:
    env.procsync_repo_files |= getattr(other, "procsync_repo_files", set())


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_lexer("mermaid", TextLexer)
    app.add_directive("procsync-config", ConfigTable)
    app.add_directive("procsync-signals", SignalsTable)
    app.add_directive("procsync-http-api", HttpApi)
    app.add_post_transform(RepoLinks)
    app.connect("env-before-read-docs", _init_env)
    app.connect("env-merge-info", _merge)
    app.connect("build-finished", _copy_repo_files)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
