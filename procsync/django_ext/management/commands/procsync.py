"""``manage.py procsync status|start|stop|restart|logs [-f]|history [ID...]``.

The ``procsync`` command's own commands, run in this process on
`get_orchestrator()` through the API's WSGI app (no socket, no running
``procsync serve`` needed): the same output and exit codes (0 done, 1 the
action failed, 2 usage error). Servers it starts keep running after it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
from typing import Any

import click
from django.core.management.base import BaseCommand, CommandParser

from ....cli.client import WsgiClient
from ....cli.commands import history, logs, restart, start, status, stop
from ....cli.main import ProcSyncGroup
from ...host import current
from ...mount import ALLOWED_KEY, app_for

PROG = "manage.py procsync"
#: The procsync commands that act on servers; -c/--url are hidden (the project's settings say).
COMMANDS = (status, start, stop, restart, logs, history)
HIDDEN = ("config", "url")


def management_group() -> click.Group:
    """A `procsync` click group of COMMANDS whose -c and --url options are hidden."""
    group = ProcSyncGroup(name="procsync", help="Act on the servers of settings.PROCSYNC.",
                          context_settings={"help_option_names": ["-h", "--help"]})
    for command in COMMANDS:
        own = copy.copy(command)
        own.params = [_hidden(p) if p.name in HIDDEN else p for p in command.params]
        group.add_command(own)
    return group


def _hidden(param: click.Parameter) -> click.Parameter:
    hidden = copy.copy(param)
    hidden.hidden = True  # type: ignore[attr-defined]
    return hidden


def local_client() -> WsgiClient:
    """A client of this process's orchestrator, allowed to view and control (it is the shell)."""
    held = current()
    return WsgiClient(app_for(held, "session"),
                      environ={ALLOWED_KEY: ("view", "control"), "REMOTE_ADDR": "127.0.0.1"})


class Command(BaseCommand):
    help = ("Show, start, stop, restart servers of settings.PROCSYNC, print their logs (-f follows) "
            "or history: status [ID...] | start|stop|restart ID...|--all|--group NAME | "
            "logs [-n N] [-f] ID | history [ID...]. 'manage.py procsync -- --help' lists them.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("args", nargs=argparse.REMAINDER, metavar="COMMAND [ARGS]")

    def handle(self, *args: str, **options: Any) -> None:
        argv = list(args)
        if argv[:1] == ["--"]:
            argv = argv[1:]
        out = getattr(self.stdout, "_out", self.stdout)
        err = getattr(self.stderr, "_out", self.stderr)
        code: Any = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                management_group().main(args=argv, prog_name=PROG, obj=local_client())
            except SystemExit as exit_:
                code = exit_.code
        if code:
            raise SystemExit(code)
