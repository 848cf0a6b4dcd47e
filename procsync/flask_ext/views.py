"""The views of the procsync blueprint: JSON API under ``<prefix>/api``, events and the page.

Each view is a module-level function that finds its orchestrator, hub and
options through the app's state (`state.current_orchestrator()` and
friends), so it can be read and tested alone. `ROUTES` lists them in the
order `blueprint.create_blueprint` registers them; the endpoint is the
function's name, and the request guard treats every ``api_*`` one as API.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import current_app, jsonify, render_template_string, request, url_for
from werkzeug.wrappers import Response

from ..config.units import whole_number
from ..errors import ProcSyncError
from ..records import ActionResult
from . import prometheus
from .events import jsonable
from .guard import ApiError, error_response, json_body, settings
from .logstream import stream_log
from .openapi import openapi_document
from .state import current_hub, current_mount, current_orchestrator

if TYPE_CHECKING:
    from ..orchestrator import ServerOrchestrator

log = logging.getLogger("procsync.flask_ext")

#: ActionResult.code -> HTTP status
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
    "not_supported": 409,  # reload: the server has no reload_signal
    "dependency_failed": 424,  # start skipped: a dependency can no longer meet its condition
}
LOG_TAIL_LINES = 20
MAX_PID = 2**31 - 1  # larger cannot be a pid (and would overflow the kernel's pid_t)
MAX_LINES = 10_000
MAX_EVENT_ID_DIGITS = 18  # Last-Event-ID: anything longer (or not ASCII digits) is ignored
SSE_HEADERS = {
    "Cache-Control": "no-cache, no-store",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}
#: The WSGI environ key of a host's (CSRF header name, token) for the dashboard page.
CSRF_ENVIRON = "procsync.csrf"
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


# -- the page ----------------------------------------------------------------------------


def index() -> Response:
    """The dashboard page: a shell that reads everything from the API."""
    if not settings(current_mount().options).dashboard:
        raise ApiError(404, "not_found", "the dashboard page is turned off (PROCSYNC_DASHBOARD)")
    base = url_for(".index").rstrip("/")
    # a host framework that mounts this app (procsync.django_ext) may hand over its CSRF
    # header and token: the page sends them back with every call
    csrf = request.environ.get(CSRF_ENVIRON)
    page = render_template_string(
        _page_source(), base=base, static=lambda f: url_for(".static", filename=f),
        csrf=csrf if isinstance(csrf, tuple) and len(csrf) == 2 else None,
    )
    return Response(page, mimetype="text/html", headers=PAGE_HEADERS)


@functools.cache
def _page_source() -> str:
    # Read from the package directly: a host app's own "dashboard.html" must not shadow it.
    return (Path(__file__).parent / "templates" / "dashboard.html").read_text(encoding="utf-8")


# -- reading -----------------------------------------------------------------------------


def api_servers() -> Response:
    """Every server's status (and which instance answered)."""
    hub = current_hub()
    body: dict[str, Any] = {"servers": hub.server_status()}
    instance = hub.instance()  # which instance answered, which one leads
    if instance is not None:
        body["instance"] = instance
    return jsonable_response(body)


def api_server(server_id: str) -> Response:
    """One server's status; ProcessNotFound becomes 404."""
    return jsonable_response(current_orchestrator().get_server(server_id))


def api_logs(server_id: str) -> Response:
    """The last `lines` lines of the server's log."""
    lines = int_arg("lines", 100, 1, MAX_LINES)
    return jsonable_response({"lines": known(server_id).tail_log(server_id, lines)})


def api_history(server_id: str) -> Response:
    """The server's stored history, newest first."""
    limit = int_arg("limit", 50, 1, 1000)
    return jsonable_response({"history": known(server_id).history(server_id, limit)})


def api_server_metrics(server_id: str) -> Response:
    """The server's resource history (samples since `since`, unix seconds), oldest first."""
    since = float_arg("since")
    return jsonable_response(known(server_id).get_metrics(server_id, since))


def api_metrics() -> Response:
    """Every server's figures and procsync's own in the Prometheus text format (501 without the extra)."""
    try:
        body, content_type = prometheus.render(current_orchestrator(), current_hub())
    except prometheus.NotInstalled as err:
        raise ApiError(501, "not_installed", str(err)) from None
    return Response(body, status=200, content_type=content_type)


def api_groups() -> Response:
    """Every group: its name -> its server ids, in registration order."""
    return jsonable_response({"groups": current_orchestrator().groups()})


def api_openapi() -> Response:
    """The OpenAPI document of this very mount."""
    base = url_for(".index").rstrip("/") + "/api"
    token = settings(current_mount().options).token is not None
    orchestrator = current_orchestrator()
    return jsonable_response(openapi_document(base, token=token,
                                              server_ids=list(orchestrator.configs),
                                              groups=list(orchestrator.groups())))


# -- control -----------------------------------------------------------------------------


def api_start(server_id: str) -> Response:
    """Start a server; body ``{}`` or ``{"wait": false}``."""
    orchestrator, body = control_request(server_id, ("wait",))
    wait = body.get("wait", True)
    if not isinstance(wait, bool):
        raise ApiError(400, "bad_field", f"wait: must be true or false, not {describe(wait)}")
    return action_response(orchestrator, server_id, orchestrator.start_server(server_id, wait=wait))


def api_stop(server_id: str) -> Response:
    """Stop a server."""
    orchestrator, _ = control_request(server_id, ())
    return action_response(orchestrator, server_id, orchestrator.stop_server(server_id))


def api_restart(server_id: str) -> Response:
    """Restart a server."""
    orchestrator, _ = control_request(server_id, ())
    return action_response(orchestrator, server_id, orchestrator.restart_server(server_id))


def api_reload_server(server_id: str) -> Response:
    """Send the server its reload_signal (the process keeps running); 409 without one."""
    orchestrator, _ = control_request(server_id, ())
    return action_response(orchestrator, server_id, orchestrator.reload_server(server_id))


def api_group_start(group: str) -> Response:
    """Start every server of a group, in dependency order."""
    orchestrator = group_request(group)
    return group_response(group, orchestrator.start_group(group))


def api_group_stop(group: str) -> Response:
    """Stop every server of a group, dependents first."""
    orchestrator = group_request(group)
    return group_response(group, orchestrator.stop_group(group))


def api_group_restart(group: str) -> Response:
    """Restart every server of a group, in dependency order."""
    orchestrator = group_request(group)
    return group_response(group, orchestrator.restart_group(group))


def api_kill_orphan(server_id: str) -> Response:
    """Kill ``{"pid": N}`` if it is that server's orphan right now; 403 otherwise."""
    orchestrator, body = control_request(server_id, ("pid",))
    pid = body.get("pid")
    if isinstance(pid, float) and pid.is_integer():  # JSON has one number type: 42.0 is 42
        pid = int(pid)
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid <= MAX_PID:
        raise ApiError(400, "bad_field", f"pid: must be a positive whole number, not {describe(pid)}")
    result = orchestrator.kill_orphaned_process(server_id, pid)
    if not result.success:
        return error_response(403, "not_orphan", result.message, extra={"success": False})
    return jsonable_response(result)


def api_reload() -> Response:
    """Apply the config file again, through the PROCSYNC_RELOAD callable `procsync serve` sets."""
    no_extra_fields(json_body(request), ())
    reload = current_app.config.get("PROCSYNC_RELOAD")
    if reload is None:
        raise ApiError(501, "not_supported",
                       "this app has no config file to reload (PROCSYNC_RELOAD is not set)")
    return jsonable_response({"changes": reload()})  # ConfigError -> 400 via its handler


# -- streams -----------------------------------------------------------------------------


def api_events() -> Response:
    """SSE: every signal of the orchestrator, replayed from ``Last-Event-ID``."""
    hub = current_hub()
    raw = request.headers.get("Last-Event-ID", "").strip()
    # ASCII digits only, and short: int() of "²" or of 5,000 digits raises
    last_id = whole_number(raw) if len(raw) <= MAX_EVENT_ID_DIGITS else None
    heartbeat = settings(current_mount().options).heartbeat
    return sse_response(hub.stream(last_id, heartbeat=heartbeat))


def api_log_stream(server_id: str) -> Response:
    """SSE: the last `lines` lines of the log, then every new one, across rotation."""
    orchestrator = known(server_id)
    backlog = int_arg("lines", 0, 0, MAX_LINES)

    def path() -> str | None:
        try:
            return orchestrator.log_path(server_id)
        except ProcSyncError:  # unregistered while someone follows it
            return None

    heartbeat = settings(current_mount().options).heartbeat
    return sse_response(stream_log(path, backlog, heartbeat=heartbeat))


# -- the table ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """One URL rule of the blueprint; the endpoint is the view's name."""

    rule: str
    view: Callable[..., Response]
    methods: tuple[str, ...]


ROUTES: tuple[Route, ...] = (
    Route("/", index, ("GET",)),
    Route("/api/servers", api_servers, ("GET",)),
    Route("/api/servers/<server_id>", api_server, ("GET",)),
    Route("/api/servers/<server_id>/start", api_start, ("POST",)),
    Route("/api/servers/<server_id>/stop", api_stop, ("POST",)),
    Route("/api/servers/<server_id>/restart", api_restart, ("POST",)),
    Route("/api/servers/<server_id>/reload", api_reload_server, ("POST",)),
    Route("/api/servers/<server_id>/kill-orphan", api_kill_orphan, ("POST",)),
    Route("/api/servers/<server_id>/logs", api_logs, ("GET",)),
    Route("/api/servers/<server_id>/history", api_history, ("GET",)),
    Route("/api/servers/<server_id>/logs/stream", api_log_stream, ("GET",)),
    Route("/api/servers/<server_id>/metrics", api_server_metrics, ("GET",)),
    Route("/api/metrics", api_metrics, ("GET",)),
    Route("/api/groups", api_groups, ("GET",)),
    Route("/api/groups/<group>/start", api_group_start, ("POST",)),
    Route("/api/groups/<group>/stop", api_group_stop, ("POST",)),
    Route("/api/groups/<group>/restart", api_group_restart, ("POST",)),
    Route("/api/reload", api_reload, ("POST",)),
    Route("/api/openapi.json", api_openapi, ("GET",)),
    Route("/api/events", api_events, ("GET",)),
)


# -- helpers -----------------------------------------------------------------------------


def known(server_id: str) -> ServerOrchestrator:
    """The current orchestrator, if it has `server_id`; 404 otherwise."""
    orchestrator = current_orchestrator()
    if server_id not in orchestrator.configs:
        raise ApiError(404, "unknown", f"unknown server {server_id!r}")
    return orchestrator


def control_request(server_id: str, fields: tuple[str, ...]) -> tuple[ServerOrchestrator, dict[str, Any]]:
    """The orchestrator and the JSON body of a POST on `server_id`; unknown ids first, then the body."""
    orchestrator = known(server_id)  # an unknown id is a 404 whatever the body says
    body = json_body(request)
    no_extra_fields(body, fields)
    return orchestrator, body


def group_request(group: str) -> ServerOrchestrator:
    """The orchestrator, if it has the group `group` (404 otherwise), after the body checks."""
    orchestrator = current_orchestrator()
    if group not in orchestrator.groups():  # an unknown group is a 404 whatever the body says
        raise ApiError(404, "unknown", f"unknown group {group!r}")
    no_extra_fields(json_body(request), ())
    return orchestrator


def group_response(group: str, results: Mapping[str, ActionResult]) -> Response:
    """200 when every server's action succeeded, else the status of the first failure's code.

    The body lists every server's result either way, in the order the orchestrator
    gave them (dependency order: the JSON keeps it, unlike jsonify's sorted keys); a
    failure adds ``error`` (that first failure's code) and ``message`` like every
    error answer.
    """
    body: dict[str, Any] = {
        "success": all(r.success for r in results.values()),
        "group": group,
        "results": {sid: r.to_dict() for sid, r in results.items()},
    }
    failed = [(sid, r) for sid, r in results.items() if not r.success]
    if not failed:
        return ordered_json_response(body)
    sid, first = failed[0]
    code = first.code or "failed"
    message = f"group {group!r}: {len(failed)} of {len(results)} failed; {sid}: {first.message}"
    return ordered_json_response({"error": code, "message": message, **body},
                                 STATUS_FOR_CODE.get(code, 500))


def action_response(orchestrator: ServerOrchestrator, server_id: str, result: ActionResult) -> Response:
    """200 with the ActionResult, or its error code's status (a failed start adds the log tail)."""
    body = {"success": bool(result.success), "message": result.message, "pid": result.pid}
    if result.success:
        return jsonable_response(body)
    code = result.code or "failed"
    status = STATUS_FOR_CODE.get(code, 500)
    extra: dict[str, Any] = {"success": False, "pid": result.pid}
    if code in ("start_failed", "start_timeout"):
        try:
            extra["log_tail"] = orchestrator.tail_log(server_id, LOG_TAIL_LINES)
        except Exception:
            log.debug("no log tail for %s", server_id, exc_info=True)
    return error_response(status, code, result.message, extra=extra)


def _query_value(key: str, convert: Callable[[str], Any], noun: str) -> Any:
    """The query argument `key` converted, or None when absent; 400 `bad_field` if it does not convert."""
    raw = request.args.get(key)
    if raw is None:
        return None
    try:
        return convert(raw)
    except ValueError:
        raise ApiError(400, "bad_field", f"{key}: {describe(raw)} is not {noun}") from None


def int_arg(key: str, default: int, low: int, high: int) -> int:
    """The whole-number query argument `key` in low..high; 400 `bad_field` otherwise."""
    value = _query_value(key, int, "a whole number")
    if value is None:
        return default
    if not low <= value <= high:
        raise ApiError(400, "bad_field", f"{key}: must be between {low} and {high}, not {value}")
    return int(value)


def float_arg(key: str) -> float | None:
    """The optional finite-number query argument `key`; 400 `bad_field` otherwise."""
    value = _query_value(key, float, "a number")
    if value is not None and not math.isfinite(value):
        raise ApiError(400, "bad_field", f"{key}: must be a finite number, not {value!r}")
    return value


def no_extra_fields(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """400 `bad_field` naming the first field of `body` not in `allowed`."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        accepted = ", ".join(allowed) or "no fields"
        raise ApiError(400, "bad_field", f"unknown field {describe(unknown[0])} (accepted: {accepted})")


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


def jsonable_response(value: Any, status: int = 200) -> Response:
    """`value` as JSON (records, datetimes... converted), never cached."""
    resp = jsonify(jsonable(value))
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


def ordered_json_response(value: Any, status: int = 200) -> Response:
    """`value` as JSON with its keys in their own order (jsonify sorts them), never cached."""
    text = json.dumps(jsonable(value), separators=(",", ":"), allow_nan=False)
    resp = current_app.response_class(text + "\n", status=status, mimetype="application/json")
    resp.headers["Cache-Control"] = "no-store"
    return resp


def sse_response(stream: Iterator[bytes]) -> Response:
    """A text/event-stream response handing each chunk to the server as it comes."""
    resp = Response(stream, mimetype="text/event-stream", headers=SSE_HEADERS)
    resp.direct_passthrough = True
    return resp


__all__ = ["ROUTES", "STATUS_FOR_CODE", "Route", "describe", "jsonable_response", "sse_response"]
