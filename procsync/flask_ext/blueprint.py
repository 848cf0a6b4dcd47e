"""The procsync blueprint: its routes, its request guard, its JSON errors, and its state.

`create_blueprint` wires module-level pieces onto a new Blueprint; nothing
is a closure. Every hook is the blueprint's own (``bp.before_request``,
``bp.errorhandler``): a request the host app answers outside the prefix
never runs procsync's code. For JSON 404/405 anywhere under the prefix
(which no blueprint hook sees, since no rule of the blueprint matched), the
blueprint adds fallback rules under its prefix that match any method and
lose to every other rule; `answer_unrouted` then answers what the routing
would have (404, 405 with ``Allow``, or the trailing-slash redirect), as JSON.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, cast
from urllib.parse import quote

from flask import Blueprint, Flask, current_app, request
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import MapAdapter, RequestRedirect, RoutingException
from werkzeug.wrappers import Response

from ..errors import ConfigError, ProcessNotFound, ProcSyncError
from .events import hub_for
from .guard import ApiError, AuthCallable, Options, check_access, error_response, settings
from .state import ORCHESTRATOR_KEY, Mount, app_state, current_mount
from .views import ROUTES

if TYPE_CHECKING:
    from ..orchestrator import ServerOrchestrator

log = logging.getLogger("procsync.flask_ext")

URL_SAFE = "!$&'()*+,/:;=@"  # what werkzeug leaves unquoted in its slash redirects


def create_blueprint(
    orchestrator: ServerOrchestrator | None = None,
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
    mount = Mount(orchestrator, Options(auth=auth, token=token, allowed_hosts=allowed_hosts,
                                        dashboard=dashboard, heartbeat=heartbeat))
    bp = Blueprint(name, __name__, static_folder="static", static_url_path="/static")
    for route in ROUTES:
        bp.add_url_rule(route.rule, route.view.__name__, route.view, methods=route.methods)
    bp.before_request(guard_request)
    bp.register_error_handler(ApiError, answer_api_error)
    bp.register_error_handler(ProcessNotFound, answer_unknown)
    bp.register_error_handler(ConfigError, answer_bad_config)
    bp.register_error_handler(HTTPException, answer_http_error)
    bp.register_error_handler(Exception, answer_unexpected)
    bp.record(partial(on_register, mount))  # after the routes: the fallback rules must come last
    if orchestrator is not None:
        hub_for(orchestrator)  # connect now so events sent before the first client are buffered
    return bp


def on_register(mount: Mount, state: BlueprintSetupState) -> None:
    """Record `mount` in the app's state under the blueprint's full name; add the fallback rules."""
    app = cast(Flask, state.app)
    full_name = f"{state.name_prefix}.{state.name}".lstrip(".")
    app_state(app).mounts[full_name] = mount
    if mount.orchestrator is not None:
        app.extensions.setdefault(ORCHESTRATOR_KEY, mount.orchestrator)
    prefix = (state.url_prefix or "").rstrip("/")
    endpoint = f"{full_name}.unrouted"
    for path in ([prefix] if prefix else []) + [prefix + "/", prefix + "/<path:rest>"]:
        rule = app.url_rule_class(path, endpoint=endpoint, subdomain=state.subdomain)
        rule.methods = AnyMethod()
        app.url_map.add(rule)
    app.view_functions[endpoint] = answer_unrouted
    if mount.options.auth is None and not (mount.options.token
                                           or app.config.get("PROCSYNC_AUTH_TOKEN")):
        log.warning(
            "procsync API at %s on app %r is unauthenticated: set PROCSYNC_AUTH_TOKEN "
            "or pass auth=; only loopback clients may use it", state.url_prefix or "/", app.name,
        )


class AnyMethod(set[str]):
    """The methods of a fallback rule: it accepts every request method and lists none.

    werkzeug finds a path's allowed methods (the ``Allow`` of OPTIONS and 405
    answers) by matching the path with the pseudo-method "--" and collecting
    the methods of the rules that refused it. This set refuses only "--" and
    lists nothing, so a fallback never changes what other rules' answers say.
    """

    def __contains__(self, method: object) -> bool:
        return method != "--"


# -- the request guard -------------------------------------------------------------------


def guard_request() -> None:
    """Token, host, client and CSRF checks for every ``api_*`` endpoint of the blueprint."""
    endpoint = (request.endpoint or "").rsplit(".", 1)[-1]
    if not endpoint.startswith("api_"):
        return
    action = "view" if request.method in ("GET", "HEAD", "OPTIONS") else "control"
    check_access(request, settings(current_mount().options), action)


# -- paths under the prefix that no rule answers -----------------------------------------


def answer_unrouted(rest: str = "") -> Response:
    """What the routing would answer without the fallback rules, as JSON: 404 or 405.

    The bare prefix (no trailing slash) is redirected to ``<prefix>/`` when
    that answers the method, as werkzeug does.
    """
    adapter = current_app.create_url_adapter(request)
    if adapter is None:  # cannot happen inside a request
        return error_response(404, "not_found", f"no route {request.path}")
    path, method = request.path, request.method
    if not rest and not path.endswith("/"):
        if routed(adapter, path + "/", method):
            raise RequestRedirect(adapter.make_redirect_url(quote(path + "/", safe=URL_SAFE)))
        return error_response(404, "not_found", f"no route {path}")
    methods = {m for rule in current_app.url_map.iter_rules() for m in rule.methods or ()}
    allowed = sorted(m for m in methods - {method} if routed(adapter, path, m))
    if allowed:
        allow = ", ".join(allowed)
        return error_response(405, "method_not_allowed",
                              f"{method} is not allowed on {path}; use {allow}", {"Allow": allow})
    return error_response(404, "not_found", f"no route {path}")


def routed(adapter: MapAdapter, path: str, method: str) -> bool:
    """Whether a rule other than procsync's fallbacks answers `method` on `path`."""
    try:
        rule, _ = adapter.match(path, method=method, return_rule=True)
    except (HTTPException, RoutingException):
        return False
    return current_app.view_functions.get(rule.endpoint) is not answer_unrouted


# -- errors as JSON ----------------------------------------------------------------------


def answer_api_error(err: ApiError) -> Response:
    return err.response()


def answer_unknown(err: ProcessNotFound) -> Response:
    return error_response(404, "unknown", str(err))


def answer_bad_config(err: ConfigError) -> Response:
    return error_response(400, "bad_config", str(err))


def answer_http_error(err: HTTPException) -> Response:
    code = (err.name or "error").lower().replace(" ", "_")
    headers = {}
    if isinstance(err, MethodNotAllowed) and err.valid_methods:
        headers["Allow"] = ", ".join(sorted(err.valid_methods))
    return error_response(err.code or 500, code, err.description or err.name, headers)


def answer_unexpected(err: Exception) -> Response:
    log.error("procsync API %s %s failed", request.method, request.path, exc_info=err)
    if isinstance(err, ProcSyncError):
        return error_response(500, "error", str(err))
    return error_response(500, "internal_error", f"unexpected {type(err).__name__}; see the server log")


__all__ = ["create_blueprint", "guard_request", "on_register"]
