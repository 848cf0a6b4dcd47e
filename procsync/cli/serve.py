"""`procsync serve`: an orchestrator and its dashboard on a threaded WSGI server.

The HTTP server is werkzeug's threaded server (``make_server(threaded=True)``):
it comes with Flask (no new dependency), gives each connection its own
daemon thread (so the dashboard's and ``logs -f``'s long-lived SSE streams
never starve the API, as a fixed worker pool would), and hands back a server
object this module can shut down from its signal handlers. procsync serves
one local admin user, so a production-grade server would buy nothing here.

Two things are added to werkzeug's server: the errors it answers itself,
before the request reaches Flask (a malformed request line, a line or header
block too long, an unsupported HTTP version), are JSON like the API's, and a
failed bind says why in words instead of werkzeug's ``sys.exit(1)``.
"""

from __future__ import annotations

import errno
import http
import ipaddress
import json
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from ..config import LoadedConfig, Settings, load_config
from ..instances.leader import leader_path
from .client import TOKEN_ENV, auth_token, connect_host

log = logging.getLogger("procsync.serve")  # the logger name it had before the cli package

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
    "server_skipped": lambda p: f"skipped: {p.get('reason') or 'a dependency failed'}",
    "server_reloaded": lambda p: f"reloaded ({p.get('signal')} to pid {p.get('pid')})",
    "memory_limit_exceeded": lambda p: f"memory {p.get('rss')} bytes over its limit of "
                                       f"{p.get('limit')} bytes: {p.get('action')}",
}
#: Events printed on stderr: something went wrong.
ERROR_EVENTS = ("server_fatal", "process_died", "server_skipped", "memory_limit_exceeded")


#: The flag that lets `serve` listen on a non-loopback address without a token.
INSECURE_FLAG = "--allow-remote-without-token"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


class JsonErrorHandler(WSGIRequestHandler):
    """werkzeug's request handler, answering its own errors (400, 414, 431, 505) in the API's JSON shape."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        try:
            status = http.HTTPStatus(code)
            phrase, description = status.phrase, status.description
        except ValueError:
            phrase, description = "Error", ""
        error = phrase.lower().replace("-", "_").replace(" ", "_")
        text = message or description or phrase
        body = json.dumps({"error": error, "message": text}).encode()
        self.log_message("refused a malformed request: %d %s", code, text)  # info: not printed by serve
        if self.request_version in ("", "HTTP/0.9"):
            self.request_version = "HTTP/1.0"  # so a status line and headers are written
        self.close_connection = True
        self.send_response(code, phrase)  # the fixed phrase: `message` may quote the client's bytes
        self.send_header("Connection", "close")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()
        self._discard_input()

    def _discard_input(self, limit: int = 1 << 20, seconds: float = 1.0) -> None:
        """Read (up to `limit` bytes, for up to `seconds`) what the client already sent: closing a
        socket with unread input resets the connection, and the client could lose the answer."""
        total = 0
        deadline = time.monotonic() + seconds
        with selectors.DefaultSelector() as selector:
            selector.register(self.connection, selectors.EVENT_READ)
            while total < limit and time.monotonic() < deadline and selector.select(timeout=0.01):
                try:
                    data = self.connection.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                total += len(data)


class ListenError(Exception):
    """The HTTP server could not bind or listen (wraps the OSError)."""

    def __init__(self, err: OSError) -> None:
        super().__init__(str(err))
        self.err = err


class ApiServer(ThreadedWSGIServer):
    """werkzeug's threaded server, raising ListenError where werkzeug would print and sys.exit(1)."""

    def server_bind(self) -> None:
        try:
            super().server_bind()
        except OSError as err:
            raise ListenError(err) from err

    def server_activate(self) -> None:
        try:
            super().server_activate()
        except OSError as err:
            raise ListenError(err) from err


def listen_problem(host: str, port: int, err: OSError) -> str:
    """Why `serve` cannot listen on host:port, in words (the errno's meaning and what to do)."""
    where = f"cannot listen on {host}:{port}"
    if isinstance(err, socket.gaierror):
        return f"{where}: cannot resolve host {host!r} ({err.strerror or err}); use an IP address or a known name"
    number = err.errno or 0
    name = errno.errorcode.get(number, "")
    meaning = err.strerror or (os.strerror(number) if number else str(err))
    reason = f"{meaning} ({name})" if name else meaning
    hints = {
        errno.EADDRINUSE: f"another program listens on port {port} (another procsync serve? "
                          "check with: procsync status); pick another with --port",
        errno.EACCES: "ports below 1024 need root (or CAP_NET_BIND_SERVICE); pick a port above 1023",
        errno.EADDRNOTAVAIL: f"{host} is not an address of this machine",
    }
    hint = hints.get(number)
    return f"{where}: {reason}" + (f": {hint}" if hint else "")


def state_files_problem(state_file: str) -> str | None:
    """A state, store-lock or leader-lock path that exists but is not a file (procsync can't use it)."""
    state = Path(state_file)
    for what, path in (("state_file", state), ("lock file", state.with_name(state.name + ".lock")),
                       ("leader lock file", leader_path(state))):
        if path.exists() and not path.is_file():
            kind = "a directory" if path.is_dir() else "not a regular file"
            return (f"{what} {path} is {kind}: procsync keeps a file there; "
                    "remove it or set another state_file in [procsync]")
    return None


def build_app(orchestrator: Any, loaded: LoadedConfig, reload: Any, host: str = "127.0.0.1",
              token: str | None = None) -> Any:
    """A Flask app with the ProcSync extension, `/` redirecting to the dashboard, and reload.

    `token` is the API token (default: the config's `auth_token`).
    """
    from flask import Flask, redirect

    from ..flask_ext import ProcSync

    settings = loaded.settings
    token = token or settings.auth_token
    app = Flask("procsync.serve")
    app.config["PROCSYNC_URL_PREFIX"] = settings.url_prefix or "/"
    app.config["PROCSYNC_AUTH_TOKEN"] = token
    app.config["PROCSYNC_RELOAD"] = reload
    ext_log = logging.getLogger("procsync.flask_ext")
    level = ext_log.level
    if not token and _is_loopback(host):
        ext_log.setLevel(logging.ERROR)  # its "unauthenticated" warning: serve says it more precisely
    try:
        ProcSync(app, orchestrator)
    finally:
        ext_log.setLevel(level)
    prefix = settings.url_prefix
    if prefix:
        app.add_url_rule("/", "procsync_root", lambda: redirect(prefix + "/"))
    return app


def _refusal(settings: Settings, host: str, port: int, token: str | None, allow_remote: bool) -> str | None:
    """Why serve must not start with these settings (exit 2), or None; warns when forced."""
    if not token and not _is_loopback(host):
        if not allow_remote:
            return (f"refusing to listen on {host}:{port} without an auth token: anyone who can reach "
                    "that address could be let into the API. Set auth_token in [procsync] or "
                    f"{TOKEN_ENV} in the environment, or listen on 127.0.0.1 (--host), or pass "
                    f"{INSECURE_FLAG} to listen there anyway")
        click.echo(f"procsync: WARNING: listening on {host}:{port} with NO auth token "
                   f"({INSECURE_FLAG}); the API has no password: set auth_token or {TOKEN_ENV}",
                   err=True)
    return state_files_problem(settings.state_file)


def run_serve(loaded: LoadedConfig, *, host: str | None = None, port: int | None = None,
              stop_on_exit: bool = False, quiet: bool = False,
              allow_remote_without_token: bool = False) -> int:
    """Serve until SIGINT/SIGTERM; the exit code.

    The token is ``PROCSYNC_AUTH_TOKEN`` when set, else the config's `auth_token`
    (as for the client commands). Without one, a non-loopback `host` is refused
    (exit 2) unless `allow_remote_without_token`.
    """
    from ..orchestrator import ServerOrchestrator

    settings = loaded.settings
    host = host or settings.host
    port = settings.port if port is None else port
    token = auth_token(settings.auth_token)
    _console_logging()
    refusal = _refusal(settings, host, port, token, allow_remote_without_token)
    if refusal:
        click.echo(f"Error: {refusal}", err=True)
        return 2
    orchestrator = ServerOrchestrator.from_config(loaded)  # registered, webhooks added

    def reload() -> dict[str, str]:
        fresh = load_config(loaded.path, loaded.formation)
        changes = orchestrator.apply(fresh.registry)
        added = [sid for sid, change in changes.items()
                 if change == "added" and fresh.registry[sid].autostart]
        if added:
            orchestrator.start_servers(added, wait=False)
        return changes

    try:
        app = build_app(orchestrator, loaded, reload, host, token)
    except ValueError as err:  # e.g. a url_prefix Flask cannot route
        click.echo(f"Error: {loaded.path}: [procsync] url_prefix: {err}", err=True)
        return 2
    try:
        server = ApiServer(host, port, app, JsonErrorHandler)
    except ListenError as err:
        click.echo(f"Error: {listen_problem(host, port, err.err)}", err=True)
        return 1
    except OverflowError as err:  # a port outside 0..65535 from a caller that skipped validation
        click.echo(f"Error: cannot listen on {host}:{port}: {err}", err=True)
        return 2
    stop = threading.Event()
    hangup = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        (hangup if signum == signal.SIGHUP else stop).set()

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, on_signal) for sig in handled}
    printer = _EventPrinter(quiet)
    try:
        try:
            orchestrator.initialize()
        except OSError as err:
            where = f" {err.filename}" if err.filename else ""
            click.echo(f"Error: cannot use the state file {settings.state_file}:{where} "
                       f"{err.strerror or err}", err=True)
            return 1
        for name in EVENT_LINES:
            orchestrator.on(name, printer.receiver(name))
        url = f"http://{connect_host(host)}:{server.server_port}{settings.url_prefix}/"
        click.echo(f"procsync: dashboard at {url}")
        if not token and _is_loopback(host):
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
    from ..errors import ConfigError

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
    answers = orchestrator.start_servers(ids)  # one plan: in dependency order, the rest together
    for sid in ids:
        result = answers[sid]
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
            click.echo(line, err=name in ERROR_EVENTS)

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


__all__ = ["INSECURE_FLAG", "ApiServer", "JsonErrorHandler", "ListenError", "build_app", "listen_problem",
           "run_serve", "state_files_problem"]
