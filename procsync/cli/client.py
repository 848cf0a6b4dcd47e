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
from typing import Any
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
        conn = self._connection(self.timeout if timeout is None else timeout)
        try:
            conn.request(method, f"{self.parts.path.rstrip('/')}/api{path}", body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as err:
            raise self.unreachable(getattr(err, "strerror", None) or str(err) or type(err).__name__) from None
        finally:
            conn.close()
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            kind = response.getheader("Content-Type", "no content type")
            raise self.unreachable(
                f"it answered HTTP {response.status} ({kind}), not procsync's JSON API; check --url"
            ) from None
        if response.status == 401:
            raise AuthError(f"{decoded.get('message', 'unauthorized')}: set PROCSYNC_AUTH_TOKEN "
                            "or auth_token in the config to the token procsync serve uses")
        return response.status, decoded

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
        conn = self._connection(self.timeout)
        try:
            conn.request("GET", f"{self.parts.path.rstrip('/')}/api{path}",
                         headers=self._headers({"Accept": "text/event-stream"}))
            sock = conn.sock  # getresponse() drops conn.sock when the response owns the connection
            response = conn.getresponse()
            if response.status != 200:
                raw = response.read()
                try:
                    data = json.loads(raw)
                except ValueError:
                    data = {}
                if response.status == 401:
                    raise AuthError(f"{data.get('message', 'unauthorized')}: set PROCSYNC_AUTH_TOKEN")
                raise ApiFailure(error_text(data, response.status), response.status, data)
            if sock is not None:
                sock.settimeout(None)  # a quiet log is not an error: wait for lines until Ctrl-C
            event = "message"
            data_lines: list[str] = []
            while True:
                line = response.readline()
                if not line:
                    return
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
        except (OSError, http.client.HTTPException) as err:
            raise self.unreachable(getattr(err, "strerror", None) or str(err) or type(err).__name__) from None
        finally:
            conn.close()


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
           "ServerUnreachable", "auth_token", "connect_host", "error_text", "group_path", "read_timeout",
           "server_path"]
