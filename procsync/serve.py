"""`procsync serve`: an orchestrator and its dashboard on a threaded WSGI server.

The HTTP server is werkzeug's threaded server (``make_server(threaded=True)``):
it comes with Flask (no new dependency), gives each connection its own
daemon thread (so the dashboard's and ``logs -f``'s long-lived SSE streams
never starve the API, as a fixed worker pool would), and hands back a server
object this module can shut down from its signal handlers. procsync serves
one local admin user, so a production-grade server would buy nothing here.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click

from .client import connect_host
from .configfile import LoadedConfig, load_config

log = logging.getLogger("procsync.serve")

#: Signals printed on the console while serving, with how to describe them.
EVENT_LINES = {
    "server_started": lambda p: f"started (pid {p.get('pid')})",
    "server_stopped": lambda p: "stopped" + (f" (exit code {p['exit_code']})"
                                             if p.get("exit_code") is not None else ""),
    "server_restarting": lambda p: f"restarting in {p.get('delay', 0):g}s (attempt {p.get('attempt')}"
                                   f"{', ' + str(p['reason']) if p.get('reason') else ''})",
    "server_fatal": lambda p: f"FATAL after {p.get('restarts')} restarts (exit code {p.get('exit_code')})",
    "process_died": lambda p: f"died (pid {p.get('pid')}"
                              + (f", exit code {p['exit_code']})" if p.get("exit_code") is not None else ")"),
    "orphan_killed": lambda p: f"killed orphan pid {p.get('pid')}",
}


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def build_app(orchestrator: Any, loaded: LoadedConfig, reload: Any, host: str = "127.0.0.1") -> Any:
    """A Flask app with the ProcSync extension, `/` redirecting to the dashboard, and reload."""
    from flask import Flask, redirect

    from .flask_ext import ProcSync

    settings = loaded.settings
    app = Flask("procsync.serve")
    app.config["PROCSYNC_URL_PREFIX"] = settings.url_prefix or "/"
    app.config["PROCSYNC_AUTH_TOKEN"] = settings.auth_token
    app.config["PROCSYNC_RELOAD"] = reload
    ext_log = logging.getLogger("procsync.flask_ext")
    level = ext_log.level
    if not settings.auth_token and _is_loopback(host):
        ext_log.setLevel(logging.ERROR)  # its "unauthenticated" warning: serve says it more precisely
    try:
        ProcSync(app, orchestrator)
    finally:
        ext_log.setLevel(level)
    prefix = settings.url_prefix
    if prefix:
        app.add_url_rule("/", "procsync_root", lambda: redirect(prefix + "/"))
    return app


def run_serve(loaded: LoadedConfig, *, host: str | None = None, port: int | None = None,
              stop_on_exit: bool = False, quiet: bool = False) -> int:
    """Serve until SIGINT/SIGTERM; the exit code."""
    from werkzeug.serving import make_server

    from .orchestrator import ServerOrchestrator

    settings = loaded.settings
    host = host or settings.host
    port = settings.port if port is None else port
    _console_logging()
    orchestrator = ServerOrchestrator(settings.state_file, interval=settings.interval,
                                      log_dir=settings.log_dir)

    def reload() -> dict[str, str]:
        fresh = load_config(loaded.path)
        changes = orchestrator.apply(fresh.registry)
        added = [sid for sid, change in changes.items()
                 if change == "added" and fresh.registry[sid].autostart]
        for sid in added:
            orchestrator.start_server(sid, wait=False)
        return changes

    app = build_app(orchestrator, loaded, reload, host)
    try:
        server = make_server(host, port, app, threaded=True)
    except (OSError, SystemExit) as err:
        reason = getattr(err, "strerror", None) or str(err)
        click.echo(f"Error: cannot listen on {host}:{port}: {reason}"
                   " (another procsync serve? check with: procsync status)", err=True)
        return 1
    stop = threading.Event()
    hangup = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        (hangup if signum == signal.SIGHUP else stop).set()

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, on_signal) for sig in handled}
    printer = _EventPrinter(quiet)
    try:
        orchestrator.register_servers(loaded.registry)
        orchestrator.initialize()
        for hook in settings.webhooks:
            orchestrator.add_webhook(hook.url, events=hook.events, secret=hook.secret)
        for name in EVENT_LINES:
            orchestrator.on(name, printer.receiver(name))
        url = f"http://{connect_host(host)}:{server.server_port}{settings.url_prefix}/"
        click.echo(f"procsync: dashboard at {url}")
        if not settings.auth_token and _is_loopback(host):
            click.echo("procsync: no auth_token set: the API answers this machine only")
        n = len(loaded.registry)
        click.echo(f"procsync: {n} server{'s' if n != 1 else ''} from {loaded.path}; "
                   f"Ctrl-C stops procsync{' and the servers' if stop_on_exit else ' (servers keep running)'}")
        web = threading.Thread(target=server.serve_forever, name="procsync-http", daemon=True)
        web.start()
        threading.Thread(target=_autostart, args=(orchestrator, loaded), name="procsync-autostart",
                         daemon=True).start()
        while not stop.wait(0.2):
            if hangup.is_set():
                hangup.clear()
                _reload_now(reload)
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # a second Ctrl-C interrupts the shutdown
        click.echo("procsync: shutting down" + (", stopping the servers" if stop_on_exit else ""))
        server.shutdown()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.server_close()
        orchestrator.shutdown(stop_servers=stop_on_exit)
    running = [s.id for s in orchestrator.get_server_status() if s.running] if not stop_on_exit else []
    if running:
        click.echo(f"procsync: left running: {', '.join(running)} "
                   f"(the next procsync serve -c {loaded.path} takes them back)")
    return 0


def _reload_now(reload: Any) -> None:
    from .errors import ConfigError

    try:
        changes = reload()
    except ConfigError as err:
        click.echo(f"procsync: reload refused: {err}", err=True)
        return
    changed = {sid: c for sid, c in changes.items() if c != "unchanged"}
    click.echo("procsync: reloaded: " + (", ".join(f"{k} {v}" for k, v in changed.items()) or "no changes"))


def _autostart(orchestrator: Any, loaded: LoadedConfig) -> None:
    ids = [sid for sid, config in loaded.registry.items() if config.autostart]
    if not ids:
        return
    with ThreadPoolExecutor(max_workers=min(16, len(ids))) as pool:
        results = list(pool.map(lambda sid: orchestrator.start_server(sid, wait=True), ids))
    for sid, result in zip(ids, results, strict=True):
        if not result.success and getattr(result, "code", None) != "already_running":
            click.echo(f"{sid}: start failed: {result.message}", err=True)
        elif getattr(result, "code", None) == "already_running":
            click.echo(f"{sid}: {result.message}")


class _EventPrinter:
    """Prints one line per lifecycle signal on the console."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.receivers: dict[str, Any] = {}  # strong references: blinker holds receivers weakly

    def receiver(self, name: str) -> Any:
        describe = EVENT_LINES[name]

        def receive(sender: Any, **payload: Any) -> None:
            if self.quiet:
                return
            line = f"{payload.get('id')}: {describe(payload)}"
            click.echo(line, err=name in ("server_fatal", "process_died"))

        self.receivers[name] = receive
        return receive


def _console_logging() -> None:
    """Warnings of procsync on stderr; werkzeug's per-request lines off."""
    logger = logging.getLogger("procsync")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("procsync: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


__all__ = ["build_app", "run_serve"]
