"""The `procsync` command: serve, talk to a running serve, check and export configs.

- `main`: the click group `procsync_cli` and the console entry point `main`;
- `commands`: the commands;
- `client`: the HTTP client of a running ``procsync serve``;
- `serve`: ``procsync serve`` (an orchestrator and its dashboard on a WSGI server);
- `export`: systemd units and supervisord configs from a config file.

The top layer of procsync: nothing else in the package imports it.
"""

from __future__ import annotations

from .main import main, procsync_cli

__all__ = ["main", "procsync_cli"]
