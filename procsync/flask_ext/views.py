"""The blueprint: JSON API under ``<prefix>/api``, live events, and the dashboard page."""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from flask import Blueprint, Flask, current_app, render_template_string, request, url_for
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.wrappers import Response

from ..errors import ConfigError, ProcessNotFound, ProcSyncError
from .events import hub_for, jsonable
from .guard import ApiError, AuthCallable, check_access, error_response, json_body, settings
from .logstream import stream_log
from .openapi import openapi_document

log = logging.getLogger("procsync.flask_ext")

#: ActionResult.code -> (HTTP status)
STATUS_FOR_CODE = {
    "unknown": 404,
    "already_running": 409,
    "already_stopped": 409,
    "port_in_use": 409,
    "start_cancelled": 409,  # a concurrent stop (or unregister) won the race
    "start_failed": 500,
    "start_timeout": 500,
    "stop_failed": 500,
    "bad_config": 400,
}
LOG_TAIL_LINES = 20
MAX_PID = 2**31 - 1  # larger cannot be a pid (and would overflow the kernel's pid_t)
MAX_LINES = 10_000
MAX_EVENT_ID_DIGITS = 18  # Last-Event-ID: anything longer (or not ASCII digits) is ignored
SSE_HEADERS = {
    "Cache-Control": "no-cache, no-store",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}


def create_blueprint(
    orchestrator: Any = None,
    *,
    auth: AuthCallable | None = None,
    token: str | None = None,
    allowed_hosts: list[str] | tuple[str, ...] | None = None,
    dashboard: bool | None = None,
    heartbeat: float | None = None,
    name: str = "procsync",
) -> Blueprint:
    """A blueprint serving the procsync API and page; register it with any url_prefix.

    `orchestrator` defaults to ``current_app.extensions["procsync"]``. `token`,
    `allowed_hosts`, `dashboard` and `heartbeat` default to the app's
    PROCSYNC_AUTH_TOKEN, PROCSYNC_ALLOWED_HOSTS, PROCSYNC_DASHBOARD and
    PROCSYNC_EVENTS_HEARTBEAT. `auth(action)` ("view" or "control") returning
    True allows a request; it can replace or complement the token.
    """
    if auth is not None and not callable(auth):
        raise TypeError(f"auth must be a callable taking 'view' or 'control', not {auth!r}")
    bp = Blueprint(name, __name__, static_folder="static", static_url_path="/static")
    options: dict[str, Any] = {
        "auth": auth,
        "token": token,
        "allowed_hosts": allowed_hosts,
        "dashboard": dashboard,
        "heartbeat": heartbeat,
    }
    if orchestrator is not None:
        hub_for(orchestrator)  # connect now so events sent before the first client are buffered

    def orch() -> Any:
        if orchestrator is not None:
            return orchestrator
        found = current_app.extensions.get("procsync")
        if found is None:
            raise ApiError(500, "not_configured", "no orchestrator: call ProcSync.init_app first")
        return found

    # Each registration's full endpoint prefix per app ("admin.procsync" when nested).
    mounts: weakref.WeakKeyDictionary[Flask, list[str]] = weakref.WeakKeyDictionary()

    @bp.record
    def _on_register(state: BlueprintSetupState) -> None:
        app = cast(Flask, state.app)
        full = f"{state.name_prefix}.{state.name}".lstrip(".")
        mounts.setdefault(app, []).append(full)
        if orchestrator is not None:
            app.extensions.setdefault("procsync", orchestrator)
        if auth is None and not (token or app.config.get("PROCSYNC_AUTH_TOKEN")):
            log.warning(
                "procsync API at %s on app %r is unauthenticated: set PROCSYNC_AUTH_TOKEN "
                "or pass auth=; only loopback clients may use it", state.url_prefix or "/",
                app.name,
            )

    # -- request checks and errors -------------------------------------------------------

    @bp.before_request
    def _guard() -> None:
        endpoint = (request.endpoint or "").rsplit(".", 1)[-1]
        if not endpoint.startswith("api_"):
            return
        action = "view" if request.method in ("GET", "HEAD", "OPTIONS") else "control"
        check_access(request, settings(options), action)

    @bp.before_app_request
    def _routing_errors() -> Response | None:
        # 404/405 under our prefix never reach the blueprint's handlers: answer them here.
        exc = request.routing_exception
        if exc is None or not isinstance(exc, HTTPException) or exc.code not in (404, 405):
            return None
        path = request.script_root + request.path
        for full in mounts.get(current_app._get_current_object(), ()):  # type: ignore[attr-defined]
            try:
                root = url_for(f"{full}.index")
            except Exception:
                continue
            if path == root.rstrip("/") or path.startswith(root):
                break
        else:
            return None
        if isinstance(exc, MethodNotAllowed):
            allowed = ", ".join(sorted(exc.valid_methods or ()))
            return error_response(405, "method_not_allowed",
                                  f"{request.method} is not allowed on {request.path}; use {allowed}",
                                  {"Allow": allowed})
        return error_response(404, "not_found", f"no route {request.path}")

    @bp.errorhandler(ApiError)
    def _api_error(err: ApiError) -> Response:
        return err.response()

    @bp.errorhandler(ProcessNotFound)
    def _unknown(err: ProcessNotFound) -> Response:
        return error_response(404, "unknown", str(err))

    @bp.errorhandler(ConfigError)
    def _bad_config(err: ConfigError) -> Response:
        return error_response(400, "bad_config", str(err))

    @bp.errorhandler(HTTPException)
    def _http(err: HTTPException) -> Response:
        code = (err.name or "error").lower().replace(" ", "_")
        headers = {}
        if isinstance(err, MethodNotAllowed) and err.valid_methods:
            headers["Allow"] = ", ".join(sorted(err.valid_methods))
        return error_response(err.code or 500, code, err.description or err.name, headers)

    @bp.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        log.error("procsync API %s %s failed", request.method, request.path, exc_info=err)
        if isinstance(err, ProcSyncError):
            return error_response(500, "error", str(err))
        return error_response(500, "internal_error",
                              f"unexpected {type(err).__name__}; see the server log")

    # -- helpers -----------------------------------------------------------------------

    def known(server_id: str) -> Any:
        o = orch()
        if server_id not in o.configs:
            raise ApiError(404, "unknown", f"unknown server {server_id!r}")
        return o

    def int_arg(key: str, default: int, low: int, high: int) -> int:
        raw = request.args.get(key)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(400, "bad_field", f"{key}: {raw!r} is not a whole number") from None
        if not low <= value <= high:
            raise ApiError(400, "bad_field", f"{key}: must be between {low} and {high}, not {value}")
        return value

    def action_response(server_id: str, result: Any) -> Response:
        body = {"success": bool(result.success), "message": result.message, "pid": result.pid}
        if result.success:
            return jsonable_response(body)
        code = getattr(result, "code", None) or "failed"
        status = STATUS_FOR_CODE.get(code, 500)
        extra = {"success": False, "pid": result.pid}
        if code in ("start_failed", "start_timeout"):
            try:
                extra["log_tail"] = orch().tail_log(server_id, LOG_TAIL_LINES)
            except Exception:
                log.debug("no log tail for %s", server_id, exc_info=True)
        return error_response(status, code, result.message, extra=extra)

    def no_extra_fields(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            accepted = ", ".join(allowed) or "no fields"
            raise ApiError(400, "bad_field",
                           f"unknown field {describe(unknown[0])} (accepted: {accepted})")

    # -- page --------------------------------------------------------------------------

    @bp.get("/")
    def index() -> Any:
        if not settings(options).dashboard:
            raise ApiError(404, "not_found", "the dashboard page is turned off (PROCSYNC_DASHBOARD)")
        base = url_for(".index").rstrip("/")
        page = render_template_string(
            _page_source(), base=base, static=lambda f: url_for(".static", filename=f)
        )
        resp = Response(page, mimetype="text/html")
        resp.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
        )
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        return resp

    # -- JSON API ----------------------------------------------------------------------

    @bp.get("/api/servers")
    def api_servers() -> Response:
        hub = hub_for(orch())
        body: dict[str, Any] = {"servers": hub.server_status()}
        instance = hub.instance()  # which instance answered, which one leads
        if instance is not None:
            body["instance"] = instance
        return jsonable_response(body)

    @bp.get("/api/servers/<server_id>")
    def api_server(server_id: str) -> Response:
        return jsonable_response(orch().get_server(server_id))

    def control(server_id: str, act: Callable[[Any, dict[str, Any]], Any],
                fields: tuple[str, ...] = ()) -> Response:
        o = known(server_id)  # an unknown id is a 404 whatever the body says
        body = json_body(request)
        no_extra_fields(body, fields)
        return action_response(server_id, act(o, body))

    @bp.post("/api/servers/<server_id>/start")
    def api_start(server_id: str) -> Response:
        def act(o: Any, body: dict[str, Any]) -> Any:
            wait = body.get("wait", True)
            if not isinstance(wait, bool):
                raise ApiError(400, "bad_field",
                               f"wait: must be true or false, not {describe(wait)}")
            return o.start_server(server_id, wait=wait)

        return control(server_id, act, ("wait",))

    @bp.post("/api/servers/<server_id>/stop")
    def api_stop(server_id: str) -> Response:
        return control(server_id, lambda o, body: o.stop_server(server_id))

    @bp.post("/api/servers/<server_id>/restart")
    def api_restart(server_id: str) -> Response:
        return control(server_id, lambda o, body: o.restart_server(server_id))

    @bp.post("/api/servers/<server_id>/kill-orphan")
    def api_kill_orphan(server_id: str) -> Response:
        o = known(server_id)  # an unknown id is a 404 whatever the body says
        body = json_body(request)
        no_extra_fields(body, ("pid",))
        pid = body.get("pid")
        if isinstance(pid, float) and pid.is_integer():  # JSON has one number type: 42.0 is 42
            pid = int(pid)
        if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid <= MAX_PID:
            raise ApiError(400, "bad_field",
                           f"pid: must be a positive whole number, not {describe(pid)}")
        result = o.kill_orphaned_process(server_id, pid)
        body_out = jsonable(result)
        if not result.success:
            return error_response(403, "not_orphan", result.message, extra={"success": False})
        return jsonable_response(body_out)

    @bp.get("/api/servers/<server_id>/logs")
    def api_logs(server_id: str) -> Response:
        lines = int_arg("lines", 100, 1, MAX_LINES)
        return jsonable_response({"lines": known(server_id).tail_log(server_id, lines)})

    @bp.get("/api/servers/<server_id>/history")
    def api_history(server_id: str) -> Response:
        limit = int_arg("limit", 50, 1, 1000)
        return jsonable_response({"history": known(server_id).history(server_id, limit)})

    @bp.get("/api/servers/<server_id>/logs/stream")
    def api_log_stream(server_id: str) -> Response:
        o = known(server_id)
        backlog = int_arg("lines", 0, 0, MAX_LINES)
        def path() -> str | None:
            try:
                return o.log_path(server_id)
            except ProcSyncError:  # unregistered while someone follows it
                return None

        stream = stream_log(path, backlog,
                            heartbeat=settings(options).heartbeat)
        return sse_response(stream)

    @bp.post("/api/reload")
    def api_reload() -> Response:
        no_extra_fields(json_body(request), ())
        reload = current_app.config.get("PROCSYNC_RELOAD")  # `procsync serve` sets it
        if reload is None:
            raise ApiError(501, "not_supported",
                           "this app has no config file to reload (PROCSYNC_RELOAD is not set)")
        return jsonable_response({"changes": reload()})  # ConfigError -> 400 via its handler

    @bp.get("/api/openapi.json")
    def api_openapi() -> Response:
        base = url_for(".index").rstrip("/") + "/api"
        return jsonable_response(openapi_document(base, token=settings(options).token is not None,
                                                  server_ids=list(orch().configs)))

    @bp.get("/api/events")
    def api_events() -> Response:
        hub = hub_for(orch())
        raw = request.headers.get("Last-Event-ID", "").strip()
        # ASCII digits only, and short: int() of "²" or of 5,000 digits raises
        ok = raw.isascii() and raw.isdigit() and len(raw) <= MAX_EVENT_ID_DIGITS
        last_id = int(raw) if ok else None
        return sse_response(hub.stream(last_id, heartbeat=settings(options).heartbeat))

    return bp


def describe(value: Any) -> str:
    """A short description of a bad field value for an error message (never a huge repr)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "a number too large"
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40]) + "..."
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, dict):
        return "a JSON object"
    return f"a {type(value).__name__}"


@functools.cache
def _page_source() -> str:
    # Read from the package directly: a host app's own "dashboard.html" must not shadow it.
    return (Path(__file__).parent / "templates" / "dashboard.html").read_text(encoding="utf-8")


def jsonable_response(value: Any, status: int = 200) -> Response:
    from flask import jsonify

    resp = jsonify(jsonable(value))
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


def sse_response(stream: Any) -> Response:
    resp = Response(stream, mimetype="text/event-stream", headers=SSE_HEADERS)
    resp.direct_passthrough = True  # hand each chunk to the server as it comes
    return resp


__all__ = ["STATUS_FOR_CODE", "create_blueprint"]
