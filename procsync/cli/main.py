"""The `procsync` click group and the console entry point.

`procsync_cli` is the group of every command in `commands.py`; a Flask app
with the ProcSync extension can mount it as ``flask procsync ...``. `main`
is the ``procsync`` console script and ``python -m procsync``.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ..config import ConfigFileError
from .client import ClientError
from .commands import COMMANDS


class ClientFailed(click.ClickException):
    """A ClientError, with its exit code (1, 2 or 3)."""

    def __init__(self, err: ClientError) -> None:
        super().__init__(str(err))
        self.exit_code = err.exit_code  # type: ignore[misc]


class ProcSyncGroup(click.Group):
    """Turns a ClientError raised by any command into its message and exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClientError as err:
            raise ClientFailed(err) from None


@click.group(name="procsync", cls=ProcSyncGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="procsync", prog_name="procsync")
def procsync_cli() -> None:
    """Run and control the servers of a procsync.toml (or Procfile).

    Start with: procsync serve -c procsync.toml. Every command takes -c FILE.
    Exit codes: 0 done, 1 the action failed, 2 usage or config error,
    3 no procsync server reachable.
    """


for _command in COMMANDS:
    procsync_cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    try:
        procsync_cli.main(args=argv, prog_name="procsync")
    except ConfigFileError as err:  # a config error escaping a command is still exit 2
        click.echo(f"Error: {err}", err=True)
        sys.exit(2)


__all__ = ["ClientFailed", "ProcSyncGroup", "main", "procsync_cli"]
