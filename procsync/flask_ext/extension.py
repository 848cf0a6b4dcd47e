"""The ProcSync Flask extension: mounts the procsync API, events and dashboard on an app."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import click
from flask import Flask

from ..config import url_prefix_problem
from .blueprint import create_blueprint
from .guard import AuthCallable
from .state import ORCHESTRATOR_KEY

if TYPE_CHECKING:
    from ..orchestrator import ServerOrchestrator

log = logging.getLogger("procsync.flask_ext")

DEFAULTS: dict[str, Any] = {
    "PROCSYNC_URL_PREFIX": "/procsync",
    "PROCSYNC_AUTH_TOKEN": None,
    "PROCSYNC_DASHBOARD": True,
    "PROCSYNC_EVENTS_HEARTBEAT": 15.0,
    "PROCSYNC_ALLOWED_HOSTS": (),
}
COMMAND = "procsync"  # the `flask.commands` entry point naming procsync's click group


def check_config(config: Mapping[str, Any]) -> None:
    """Raise ValueError naming the PROCSYNC_* key whose value cannot work."""
    heartbeat = config.get("PROCSYNC_EVENTS_HEARTBEAT")
    if isinstance(heartbeat, bool) or not isinstance(heartbeat, int | float) or heartbeat <= 0:
        raise ValueError(f"PROCSYNC_EVENTS_HEARTBEAT must be a positive number of seconds, "
                         f"not {heartbeat!r}")
    prefix = config.get("PROCSYNC_URL_PREFIX")
    problem = url_prefix_problem(prefix) if prefix != "" else None
    if problem:
        raise ValueError(f"PROCSYNC_URL_PREFIX: {problem}")
    hosts = config.get("PROCSYNC_ALLOWED_HOSTS")
    if hosts is not None and (not isinstance(hosts, str | list | tuple | set | frozenset)
                              or not all(isinstance(h, str) for h in hosts)):
        raise ValueError(f"PROCSYNC_ALLOWED_HOSTS must be a list of host names, not {hosts!r}")
    token = config.get("PROCSYNC_AUTH_TOKEN")
    if token is not None and not isinstance(token, str):
        raise ValueError("PROCSYNC_AUTH_TOKEN must be a string")


def flask_command(name: str = COMMAND) -> click.Command | None:
    """The click command that the installed `flask.commands` entry point `name` names.

    procsync declares its CLI group there (setup.cfg), so the `flask` command
    finds it with no help from us; init_app also adds it to ``app.cli``, which
    is what ``app.test_cli_runner()`` invokes. Found by name, not imported:
    the CLI is a layer above this package.
    """
    for entry in entry_points(group="flask.commands", name=name):
        try:
            command = entry.load()
        except Exception:
            log.warning("cannot load the %r flask command (%s)", name, entry.value, exc_info=True)
            continue
        if isinstance(command, click.Command):
            return command
    return None


class ProcSync:
    """Flask extension serving one orchestrator's API and page.

    ``ProcSync(app, orchestrator)`` or, with an app factory,
    ``ext = ProcSync(); ext.init_app(app, orchestrator)``. One ProcSync may be
    initialised on several apps, each with its own orchestrator or a shared one.
    """

    def __init__(
        self,
        app: Flask | None = None,
        orchestrator: ServerOrchestrator | None = None,
        *,
        auth: AuthCallable | None = None,
        url_prefix: str | None = None,
    ) -> None:
        if auth is not None and not callable(auth):
            raise TypeError(f"auth must be a callable taking 'view' or 'control', not {auth!r}")
        self.orchestrator = orchestrator
        self.auth = auth
        self.url_prefix = url_prefix
        if app is not None:
            self.init_app(app, orchestrator)

    def init_app(self, app: Flask, orchestrator: ServerOrchestrator | None = None) -> None:
        """Register the blueprint on `app`; keeps no reference to `app`, starts no thread.

        The orchestrator goes to ``app.extensions["procsync"]``; the blueprint's
        own state to ``app.extensions["procsync.state"]`` (see `state`).
        """
        orchestrator = orchestrator if orchestrator is not None else self.orchestrator
        if orchestrator is None:
            raise TypeError("ProcSync.init_app needs an orchestrator (a ServerOrchestrator)")
        if ORCHESTRATOR_KEY in app.extensions:
            raise RuntimeError("procsync is already registered on this app")
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        check_config(app.config)
        prefix = self.url_prefix if self.url_prefix is not None else app.config["PROCSYNC_URL_PREFIX"]
        prefix = "/" + str(prefix).strip("/") if str(prefix).strip("/") else ""
        if prefix and (problem := url_prefix_problem(prefix)):
            raise ValueError(f"url_prefix: {problem}")
        app.extensions[ORCHESTRATOR_KEY] = orchestrator
        app.register_blueprint(create_blueprint(orchestrator, auth=self.auth), url_prefix=prefix)
        if COMMAND not in app.cli.commands and (command := flask_command()) is not None:
            app.cli.add_command(command, COMMAND)


__all__ = ["COMMAND", "DEFAULTS", "ProcSync", "check_config", "flask_command"]
