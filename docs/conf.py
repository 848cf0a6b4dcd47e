"""Sphinx configuration of procsync's documentation site.

Build it with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``
(``pip install -e '.[docs]'`` first). The pages are the Markdown files of
docs/ (myst-parser); the references are generated from the code by the
extension in docs/_ext/procsync_docs.py and by autodoc and sphinx-click.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))  # the checkout's procsync, installed or not

from procsync import __version__  # noqa: E402

project = "procsync"
author = "the procsync authors"
copyright = "procsync authors"  # noqa: A001 - Sphinx's name
release = version = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx_click",
    "procsync_docs",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "bench/*.md", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 4

default_role = "code"  # `name` in a docstring is code, as in the Markdown pages
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = f"procsync {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
