"""procsync's JSON API, live events and dashboard inside a Django project, behind its login.

There is one implementation of the API: the Flask extension's. A Django view
hands each request under its URL prefix to a small Flask app through WSGI,
after deciding who asks:

- a request with ``Authorization: Bearer ...`` when a token is set
  (``PROCSYNC_AUTH_TOKEN`` or ``auth_token``) goes to an app that checks the
  token exactly as ``procsync serve`` does (401 when wrong);
- any other request is authorised by Django's own login: the user's rights
  (``PROCSYNC["view"]`` and ``["control"]``, staff by default) travel in the
  WSGI environ to the app's `auth` callable. A request that changes something
  must pass Django's CSRF check (403 ``csrf_failed``); the dashboard page is
  given the CSRF token and sends it back. Someone not logged in who opens the
  page is sent to ``settings.LOGIN_URL``.
"""

from __future__ import annotations

import io
import sys
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.middleware.csrf import CsrfViewMiddleware, get_token
from django.views.decorators.csrf import csrf_exempt
from flask import Flask
from flask import request as flask_request

from ..cli.client import auth_token
from ..flask_ext import ProcSync
from ..flask_ext.views import CSRF_ENVIRON
from .conf import allows
from .host import Held, current

#: The WSGI environ key this view sets for the Flask app's auth callable (the dashboard page's
#: CSRF header and token go under flask_ext.views.CSRF_ENVIRON).
ALLOWED_KEY = "procsync.allowed"  # the actions the Django user may take: ("view", "control")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "te", "trailers", "transfer-encoding", "upgrade"})


def environ_auth(action: str) -> bool:
    """The Flask app's auth callable: what the Django view decided for this request."""
    return action in flask_request.environ.get(ALLOWED_KEY, ())


def user_actions(request: HttpRequest, held: Held) -> tuple[str, ...]:
    """What the logged-in user of `request` may do: ("view", "control"), ("view",) or ()."""
    user = getattr(request, "user", None)
    if allows(held.conf.control, user):
        return ("view", "control")
    return ("view",) if allows(held.conf.view, user) else ()


def app_for(held: Held, kind: str) -> Flask:
    """The Flask app serving `held`'s orchestrator: "session" (Django login) or "token"."""
    app = held.apps.get(kind)
    if app is None:
        app = Flask("procsync.django_ext", static_folder=None)  # the blueprint serves its own
        if kind == "token":
            app.config["PROCSYNC_AUTH_TOKEN"] = token_of(held)
            ProcSync(app, held.orchestrator, url_prefix="")
        else:
            ProcSync(app, held.orchestrator, auth=environ_auth, url_prefix="")
        app = held.apps.setdefault(kind, app)  # two first requests at once: one app kept
    return app


def token_of(held: Held) -> str | None:
    return auth_token(held.conf.loaded.settings.auth_token)


class _CsrfCheck(CsrfViewMiddleware):
    """Django's CSRF check, giving the reason of a refusal instead of its HTML page."""

    def _reject(self, request: HttpRequest, reason: str) -> Any:
        return reason


def csrf_refusal(request: HttpRequest) -> str | None:
    """Why Django's CSRF protection refuses `request`, or None when it passes."""
    check = _CsrfCheck(lambda req: HttpResponse())
    check.process_request(request)
    reason = check.process_view(request, lambda req: None, (), {})
    return reason if isinstance(reason, str) else None


def csrf_header() -> str:
    """The header Django reads the CSRF token from (``CSRF_HEADER_NAME``), as sent."""
    name = getattr(settings, "CSRF_HEADER_NAME", "HTTP_X_CSRFTOKEN")
    return name.removeprefix("HTTP_").replace("_", "-")  # header names are case-insensitive


@csrf_exempt  # checked below, for session-authenticated requests only (as a bearer token
def procsync_view(request: HttpRequest, path: str = "") -> HttpResponse:  # cannot be forged)
    """Answer `request` (for ``<prefix>/<path>``) with procsync's API, events or dashboard."""
    held = current()
    extra: dict[str, Any] = {}
    if token_of(held) and "Authorization" in request.headers:
        app = app_for(held, "token")
    else:
        actions = user_actions(request, held)
        user = getattr(request, "user", None)
        if not actions and path in ("", "/") and request.method == "GET" and not (
                user is not None and user.is_authenticated):
            return redirect_to_login(request.get_full_path())
        if request.method not in SAFE_METHODS and (reason := csrf_refusal(request)):
            return JsonResponse({"error": "csrf_failed", "message": f"CSRF check failed: {reason}"},
                                status=403, headers={"Cache-Control": "no-store"})
        extra[ALLOWED_KEY] = actions
        if actions and path in ("", "/"):
            extra[CSRF_ENVIRON] = (csrf_header(), get_token(request))  # the page sends it back
        app = app_for(held, "session")
    return call_app(app, request, path, extra)


def call_app(app: Any, request: HttpRequest, path: str, extra: dict[str, Any]) -> HttpResponse:
    """Run WSGI `app` for `request` as if mounted where `path` starts; its answer for Django."""
    prefix = request.path_info[: len(request.path_info) - len(path)].rstrip("/")
    body = request.body  # Django may have read the stream already: give the app the bytes
    environ = {
        **{k: v for k, v in request.META.items() if isinstance(k, str)},
        "wsgi.version": (1, 0), "wsgi.url_scheme": request.scheme, "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
        "SCRIPT_NAME": _wsgi_text(request.META.get("SCRIPT_NAME", "") + prefix),
        "PATH_INFO": _wsgi_text("/" + path.lstrip("/")),
        **extra,
    }
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started[:] = [status, headers]
        return None

    chunks = app(environ, start_response)
    status, headers = started
    code = int(status.split(" ", 1)[0])
    kind = next((v for k, v in headers if k.lower() == "content-type"), "")
    response: HttpResponse | StreamingHttpResponse
    if kind.startswith("text/event-stream"):
        response = StreamingHttpResponse(chunks, status=code)  # closes `chunks` when done
    else:
        try:
            response = HttpResponse(b"".join(chunks), status=code)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
    for key, value in headers:
        if key.lower() not in HOP_BY_HOP:
            response[key] = value
    return response  # type: ignore[return-value]


def _wsgi_text(path: str) -> str:
    """A path as WSGI carries it: its UTF-8 bytes as latin-1 text."""
    return path.encode("utf-8").decode("latin-1")


__all__ = ["ALLOWED_KEY", "app_for", "call_app", "csrf_refusal", "environ_auth",
           "procsync_view", "user_actions"]
