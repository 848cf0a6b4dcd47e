"""The ProcSync Flask extension: mounts the procsync API, events and dashboard on an app."""

from __future__ import annotations

from typing import Any

from flask import Flask

from ..configfile import url_prefix_problem
from .guard import AuthCallable
from .views import create_blueprint

DEFAULTS: dict[str, Any] = {
    "PROCSYNC_URL_PREFIX": "/procsync",
    "PROCSYNC_AUTH_TOKEN": None,
    "PROCSYNC_DASHBOARD": True,
    "PROCSYNC_EVENTS_HEARTBEAT": 15.0,
    "PROCSYNC_ALLOWED_HOSTS": (),
}


def check_config(config: Any) -> None:
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


class ProcSync:
    """Flask extension serving one orchestrator's API and page.

    ``ProcSync(app, orchestrator)`` or, with an app factory,
    ``ext = ProcSync(); ext.init_app(app, orchestrator)``. One ProcSync may be
    initialised on several apps, each with its own orchestrator or a shared one.
    """

    def __init__(
        self,
        app: Flask | None = None,
        orchestrator: Any = None,
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

    def init_app(self, app: Flask, orchestrator: Any = None) -> None:
        """Register the blueprint on `app`; keeps no reference to `app`, starts no thread."""
        orchestrator = orchestrator if orchestrator is not None else self.orchestrator
        if orchestrator is None:
            raise TypeError("ProcSync.init_app needs an orchestrator (a ServerOrchestrator)")
        if "procsync" in app.extensions:
            raise RuntimeError("procsync is already registered on this app")
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        check_config(app.config)
        prefix = self.url_prefix if self.url_prefix is not None else app.config["PROCSYNC_URL_PREFIX"]
        prefix = "/" + str(prefix).strip("/") if str(prefix).strip("/") else ""
        if prefix and (problem := url_prefix_problem(prefix)):
            raise ValueError(f"url_prefix: {problem}")
        app.extensions["procsync"] = orchestrator
        app.register_blueprint(create_blueprint(orchestrator, auth=self.auth), url_prefix=prefix)
        from ..cli import procsync_cli  # `flask procsync ...`; cli.py does not import Flask

        if "procsync" not in app.cli.commands:
            app.cli.add_command(procsync_cli)


__all__ = ["DEFAULTS", "ProcSync", "check_config"]
