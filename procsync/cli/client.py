"""A small client of the procsync JSON API (stdlib http.client only), used by the CLI.

``ApiClient("http://127.0.0.1:8420/procsync", token)`` talks to a running
``procsync serve`` or to any Flask app with the ProcSync extension. Failures
are `ClientError`s whose `exit_code` is the CLI's: 1 the API refused or the
action failed, 2 authentication, 3 nothing (procsync) answers at the URL.
"""

from __future__ import annotations

import http.client
import json
import math
import os
from collections.abc import Iterator
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit

from ..errors import ProcSyncError

READ_TIMEOUT = 10.0
#: Environment variables the client (and `procsync serve`) read.
TOKEN_ENV = "PROCSYNC_AUTH_TOKEN"
TIMEOUT_ENV = "PROCSYNC_TIMEOUT"


def auth_token(configured: str | None) -> str | None:
    """The API token: ``PROCSYNC_AUTH_TOKEN`` if set and not empty, else the config's `auth_token`."""
    return os.environ.get(TOKEN_ENV) or configured


def read_timeout() -> float:
    """Seconds to wait for an answer: ``PROCSYNC_TIMEOUT`` (a positive number) or 10."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return READ_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (0 < value < math.inf):
        raise ValueError(f"{TIMEOUT_ENV}: must be a positive number of seconds, not {raw!r}")
    return value


class ClientError(ProcSyncError):
    """A request to the procsync API failed."""

    exit_code = 1


class ApiFailure(ClientError):
    """The API answered with an error status."""

    def __init__(self, message: str, status: int, body: Any = None) -> None:
        super().__init__(message)
        self.status, self.body = status, body


class AuthError(ClientError):
    """The API refused the token (or its absence)."""

    exit_code = 2


class ServerUnreachable(ClientError):
    """Nothing answers at the URL, or what answers is not procsync."""

    exit_code = 3


class ApiClient:
    """Speaks to the JSON API of a running `procsync serve` (or any app with the extension)."""

    def __init__(self, base_url: str, token: str | None = None, *, hint: str | None = None,
                 timeout: float = READ_TIMEOUT) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{base_url!r} is not an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.parts = parts
        self.token = token
        self.hint = hint  # how to start a server, added to ServerUnreachable messages
        self.timeout = timeout  # connect and read, for calls and for a stream's first answer

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self.parts.scheme == "https" else http.client.HTTPConnection
        return kind(self.parts.hostname or "127.0.0.1", self.parts.port, timeout=timeout)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "procsync-cli", **(extra or {})}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def unreachable(self, reason: str) -> ServerUnreachable:
        hint = f"\nStart it with: {self.hint}" if self.hint else ""
        return ServerUnreachable(f"cannot reach procsync at {self.base_url}: {reason}{hint}")

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             timeout: float | None = None) -> tuple[int, Any]:
        """(HTTP status, decoded JSON) for `path` under <prefix>/api (`timeout`: default self.timeout)."""
        data = None
        headers = self._headers()
        if method == "POST":
            data = json.dumps(body or {}).encode()
            headers["Content-Type"] = "application/json"
        status, raw, kind = self._send(method, self._target(path), data, headers,
                                       self.timeout if timeout is None else timeout)
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            raise self.unreachable(
                f"it answered HTTP {status} ({kind}), not procsync's JSON API; check --url"
            ) from None
        if status == 401:
            raise AuthError(f"{decoded.get('message', 'unauthorized')}: set PROCSYNC_AUTH_TOKEN "
                            "or auth_token in the config to the token procsync serve uses")
        return status, decoded

    def _target(self, path: str) -> str:
        return f"{self.parts.path.rstrip('/')}/api{path}"

    def _send(self, method: str, target: str, data: bytes | None, headers: dict[str, str],
              timeout: float | None) -> tuple[int, bytes, str]:
        """One request over HTTP: (status, body, content type); ServerUnreachable if it fails."""
        conn = self._connection(timeout)
        try:
            conn.request(method, target, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as err:
            raise self.unreachable(getattr(err, "strerror", None) or str(err) or type(err).__name__) from None
        finally:
            conn.close()
        return response.status, raw, response.getheader("Content-Type", "no content type")

    def get(self, path: str) -> Any:
        """The decoded JSON of GET `path`; ApiFailure on an error status."""
        status, data = self.call("GET", path)
        if status >= 400:
            raise ApiFailure(error_text(data, status), status, data)
        return data

    def server_action(self, server_id: str, action: str, body: dict[str, Any] | None = None,
                      timeout: float | None = None) -> tuple[int, Any]:
        """(status, JSON) of POST /servers/<id>/<action>: start, stop, restart, reload..."""
        return self.call("POST", server_path(server_id, f"/{action}"), body, timeout)

    def group_action(self, group: str, action: str, timeout: float | None = None,
                     ) -> tuple[int, Any]:
        """(status, JSON) of POST /groups/<group>/<action> (start, stop or restart).

        The JSON has ``results``: server id -> ``{success, message, pid, code}``, in
        dependency order, whether the status says success or not.
        """
        return self.call("POST", group_path(group, f"/{action}"), None, timeout)

    def groups(self) -> dict[str, list[str]]:
        """Every group of the running server: name -> server ids."""
        groups = self.get("/groups").get("groups", {})
        return groups if isinstance(groups, dict) else {}

    def stream(self, path: str) -> Iterator[tuple[str, str]]:
        """(event, data) pairs of an SSE stream, until the server closes it.

        The timeout covers connecting and the first answer only: once the stream is
        open, a quiet log is not an error and the stream is read until it ends.
        """
        event = "message"
        data_lines: list[str] = []
        for line in self._stream_lines(self._target(path)):
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if not text:
                if data_lines:
                    yield event, "\n".join(data_lines)
                event, data_lines = "message", []
            elif text.startswith(":"):
                continue
            else:
                name, _, value = text.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    event = value
                elif name == "data":
                    data_lines.append(value)

    def _stream_lines(self, target: str) -> Iterator[bytes]:
        """The lines of an SSE answer over HTTP; ApiFailure or AuthError if it is not 200."""
        conn = self._connection(self.timeout)
        try:
            conn.request("GET", target, headers=self._headers({"Accept": "text/event-stream"}))
            sock = conn.sock  # getresponse() drops conn.sock when the response owns the connection
            response = conn.getresponse()
            if response.status != 200:
                stream_refused(response.status, response.read())
            if sock is not None:
                sock.settimeout(None)  # a quiet log is not an error: wait for lines until Ctrl-C
            while line := response.readline():
                yield line
        except (OSError, http.client.HTTPException) as err:
            raise self.unreachable(getattr(err, "strerror", None) or str(err) or type(err).__name__) from None
        finally:
            conn.close()


class WsgiClient(ApiClient):
    """An ApiClient whose calls a WSGI app answers in this process, with no socket.

    For a host that has the procsync app at hand (a Django project's management
    command, say): the commands of `procsync.cli.commands` run unchanged on it.
    `environ` is added to every request's WSGI environ.
    """

    def __init__(self, app: Any, prefix: str = "", token: str | None = None, *,
                 environ: dict[str, Any] | None = None, hint: str | None = None) -> None:
        super().__init__(f"http://localhost{prefix}", token, hint=hint)
        self.app = app
        self.environ = dict(environ or {})

    def _open(self, method: str, target: str, data: bytes | None, headers: dict[str, str]) -> Any:
        from werkzeug.test import Client  # werkzeug comes with Flask

        return Client(self.app).open(target, method=method, data=data, headers=headers,
                                     environ_overrides=self.environ, buffered=False)

    def _send(self, method: str, target: str, data: bytes | None, headers: dict[str, str],
              timeout: float | None) -> tuple[int, bytes, str]:
        response = self._open(method, target, data, headers)
        try:
            return response.status_code, response.get_data(), response.content_type or "no content type"
        finally:
            response.close()

    def _stream_lines(self, target: str) -> Iterator[bytes]:
        response = self._open("GET", target, None, self._headers({"Accept": "text/event-stream"}))
        try:
            if response.status_code != 200:
                stream_refused(response.status_code, response.get_data())
            pending = b""
            for chunk in response.response:
                pending += chunk if isinstance(chunk, bytes) else str(chunk).encode()
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line + b"\n"
            if pending:
                yield pending
        finally:
            response.close()


def stream_refused(status: int, raw: bytes) -> NoReturn:
    """Raise the error for a stream answered with `status` instead of 200."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = {}
    if status == 401:
        raise AuthError(f"{data.get('message', 'unauthorized')}: set PROCSYNC_AUTH_TOKEN")
    raise ApiFailure(error_text(data, status), status, data)


def server_path(server_id: str, action: str = "") -> str:
    """The API path of a server (`action`: "/start", "/logs"... or "")."""
    return f"/servers/{quote(server_id, safe='')}{action}"


def group_path(group: str, action: str = "") -> str:
    """The API path of a group (`action`: "/start", "/stop" or "/restart")."""
    return f"/groups/{quote(group, safe='')}{action}"


def connect_host(host: str) -> str:
    """Where a client connects to reach a server bound to `host`."""
    if host in ("", "0.0.0.0", "*"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def error_text(data: Any, status: int) -> str:
    """The API's error message, or the bare status."""
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])
    return f"HTTP {status}"


__all__ = ["TIMEOUT_ENV", "TOKEN_ENV", "ApiClient", "ApiFailure", "AuthError", "ClientError",
           "ServerUnreachable", "WsgiClient", "auth_token", "connect_host", "error_text", "group_path", "read_timeout",
           "server_path", "stream_refused"]
