"""Request checks for the JSON API: errors as JSON, origin, host, token, auth callable, CSRF."""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Request, current_app, jsonify
from werkzeug.wrappers import Response

AuthCallable = Callable[[str], bool]

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
MAX_BODY = 64 * 1024


class ApiError(Exception):
    """An API failure answered as ``{"error": code, "message": message}`` with `status`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.extra = extra or {}

    def response(self) -> Response:
        return error_response(self.status, self.code, self.message, self.headers, self.extra)


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """The JSON error body every failure uses."""
    body = {"error": code, "message": message, **(extra or {})}
    resp = jsonify(body)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


@dataclass(frozen=True, slots=True)
class Options:
    """What `create_blueprint` was given; None means "read the app's PROCSYNC_* key"."""

    auth: AuthCallable | None = None
    token: str | None = None
    allowed_hosts: Sequence[str] | None = None
    dashboard: bool | None = None
    heartbeat: float | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """The effective settings for one request: explicit options over the app's config."""

    token: str | None
    auth: AuthCallable | None
    allowed_hosts: tuple[str, ...]
    heartbeat: float
    dashboard: bool


def settings(options: Options) -> Settings:
    """`options` completed from the current app's PROCSYNC_* config keys."""
    cfg = current_app.config

    def pick(value: Any, key: str, default: Any) -> Any:
        return value if value is not None else cfg.get(key, default)

    token = pick(options.token, "PROCSYNC_AUTH_TOKEN", None) or None
    hosts = pick(options.allowed_hosts, "PROCSYNC_ALLOWED_HOSTS", ())
    if isinstance(hosts, str):
        hosts = [h for h in hosts.replace(",", " ").split() if h]
    heartbeat = float(pick(options.heartbeat, "PROCSYNC_EVENTS_HEARTBEAT", 15.0))
    return Settings(
        token=str(token) if token else None,
        auth=options.auth,
        allowed_hosts=tuple(str(h).lower() for h in hosts),
        heartbeat=heartbeat if heartbeat > 0 else 15.0,
        dashboard=bool(pick(options.dashboard, "PROCSYNC_DASHBOARD", True)),
    )


def host_name(host: str) -> str:
    """The name part of a Host header value: no port, no IPv6 brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host.rstrip(".")


def is_loopback_name(name: str) -> bool:
    """localhost, *.localhost, 127.0.0.0/8 or ::1."""
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    return is_loopback_address(name)


def is_loopback_address(addr: str | None) -> bool:
    if not addr:
        return False
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


def host_allowed(name: str, allowed: Iterable[str]) -> bool:
    """`name` is loopback or matches an allow-list entry ("*", "name", or ".suffix")."""
    if is_loopback_name(name):
        return True
    for entry in allowed:
        entry = host_name(entry) if not entry.startswith(".") else entry
        if entry == "*" or entry == name or (entry.startswith(".") and name.endswith(entry)):
            return True
    return False


def check_origin(request: Request) -> None:
    """Refuse cross-site requests: an Origin header must name this very host."""
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        raise ApiError(403, "cross_origin", "cross-site requests are refused")
    origin = request.headers.get("Origin")
    if origin is None:
        return
    parts = urlsplit(origin)
    if origin == "null" or not parts.netloc or parts.netloc.lower() != request.host.lower():
        raise ApiError(
            403, "cross_origin", f"origin {origin!r} does not match host {request.host!r}"
        )


def check_token(request: Request, token: str) -> None:
    """Require ``Authorization: Bearer <token>`` (compared in constant time); 401 otherwise."""
    given = request.headers.get("Authorization", "")
    scheme, _, credentials = given.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="procsync"'}
    if scheme.lower() != "bearer" or not credentials.strip():
        raise ApiError(401, "unauthorized", "missing 'Authorization: Bearer <token>' header",
                       headers=challenge)
    if not hmac.compare_digest(credentials.strip().encode(), token.encode()):
        raise ApiError(401, "unauthorized", "bad token", headers=challenge)


def check_content_type(request: Request) -> None:
    """A mutating request must say ``Content-Type: application/json``.

    An HTML form cannot send that cross-site without a CORS preflight, so this
    is the CSRF guard for requests a browser authenticates on its own
    (cookies behind the auth callable, or loopback trust).
    """
    mimetype = request.mimetype
    if mimetype != "application/json":
        raise ApiError(
            400,
            "bad_content_type",
            f"POST needs Content-Type: application/json, not {mimetype or 'none'!r}",
        )


def check_access(request: Request, opts: Settings, action: str) -> None:
    """Token, host, client address, auth-callable and CSRF checks; raises ApiError when refused.

    - With a token, a request must carry it. A request that does cannot be forged
      cross-site (a page cannot add the header without a CORS preflight, which is
      never granted), so it skips the CSRF checks: ``curl -X POST`` just works.
    - With neither token nor callable, only loopback clients (by address, not by
      Host header) may use the API, and the Host must be loopback or allowed
      (DNS rebinding).
    - The callable must return exactly True.
    - Every request not authenticated by the token passes the CSRF checks:
      Origin / Sec-Fetch-Site, and a JSON Content-Type on mutating requests.
    """
    if opts.token is not None:
        check_token(request, opts.token)
    else:
        check_origin(request)
    if opts.token is None and opts.auth is None:
        name = host_name(request.host)
        if not host_allowed(name, opts.allowed_hosts):
            raise ApiError(
                403,
                "bad_host",
                f"host {name!r} is not allowed; without PROCSYNC_AUTH_TOKEN only loopback "
                "names and PROCSYNC_ALLOWED_HOSTS are answered",
            )
        if not is_loopback_address(request.remote_addr):
            raise ApiError(
                403,
                "remote_refused",
                f"request from {request.remote_addr} refused: without PROCSYNC_AUTH_TOKEN or an "
                "auth callable only loopback clients may use the API",
            )
    if opts.auth is not None:
        allowed = opts.auth(action)
        if allowed is not True:  # "no", 1, a redirect response... are not a yes
            raise ApiError(403, "forbidden", f"not allowed to {action}")
    if opts.token is None and action == "control":
        check_content_type(request)


def json_body(request: Request) -> dict[str, Any]:
    """The JSON object a mutating request carries ({} when empty); 400 `bad_json` otherwise.

    The Content-Type is checked by check_access (a CSRF guard), not here: a
    token-authenticated ``curl -X POST -d '{...}'`` may send any type.
    """
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(400, "bad_json", f"body larger than {MAX_BODY} bytes")
    raw = request.get_data(cache=True)
    if len(raw) > MAX_BODY:
        raise ApiError(400, "bad_json", f"body larger than {MAX_BODY} bytes")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except RecursionError:
        raise ApiError(400, "bad_json", "body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise ApiError(400, "bad_json", f"body is not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_json", f"body must be a JSON object, not {type(body).__name__}")
    return body


__all__ = [
    "ApiError",
    "Options",
    "Settings",
    "check_access",
    "check_content_type",
    "check_origin",
    "check_token",
    "error_response",
    "host_allowed",
    "host_name",
    "is_loopback_address",
    "is_loopback_name",
    "json_body",
    "settings",
]
