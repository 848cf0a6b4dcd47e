"""The OpenAPI 3.1 document of the JSON API, served at ``<prefix>/api/openapi.json``.

Written by hand (the API is small and fixed) so it says exactly what the
views answer; tests/test_openapi_fuzz.py checks it against the registered
routes and fuzzes the API with it, and every answer the test suite gets
through a Flask test client is validated against it (tests/openapi_check.py).
"""

from __future__ import annotations

import copy
from typing import Any

from ..config import AUTORESTART_POLICIES
from ..monitor import HEALTH_STATES
from ..version import __version__

STATUSES = ["stopped", "waiting", "starting", "running", "stopping", "backoff", "fatal", "exited",
            "crashed", "completed", "skipped"]
RELOAD_CHANGES = ["added", "removed", "changed", "unchanged"]
CONDITIONS = ["started", "healthy", "completed", "completed_successfully", "log_ready"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _sse(description: str) -> dict[str, Any]:
    # Before 3.2 (itemSchema), a text/event-stream schema describes one event, as tools read it.
    return {"description": description,
            "content": {"text/event-stream": {"schema": _ref("Event")}}}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "Every error: a stable code and a sentence for people.",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string"},
            "message": {"type": "string"},
            "success": {"const": False},
            "pid": _nullable("integer"),
            "log_tail": {"type": "array", "items": {"type": "string"}},
            "group": {"type": "string"},
            "results": {"type": "object", "additionalProperties": _ref("GroupMemberResult")},
        },
    },
    "Event": {
        "type": "object",
        "description": "One server-sent event; `data` is one line of JSON.",
        "properties": {
            "event": {"type": "string"},
            "data": {"type": "string", "contentMediaType": "application/json"},
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "retry": {"type": "integer"},
        },
    },
    "ServerStatus": {
        "type": "object",
        "required": ["id", "name", "color", "command", "cwd", "ports", "status", "running", "pid",
                     "health", "uptime", "restarts", "last_exit_code", "cpu_percent",
                     "memory_rss", "orphaned", "orphaned_pid", "log_file", "started_at",
                     "autorestart", "message", "env_keys", "kind", "group", "depends_on",
                     "reload_signal", "listening", "ports_required"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "color": _nullable("string"),
            "command": {"type": "string"},
            "cwd": _nullable("string"),
            "ports": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 65535}},
            "status": {"enum": STATUSES},
            "running": {"type": "boolean"},
            "pid": _nullable("integer"),
            "health": {"enum": list(HEALTH_STATES)},
            "uptime": _nullable("number"),
            "restarts": {"type": "integer", "minimum": 0},
            "last_exit_code": _nullable("integer"),
            "cpu_percent": _nullable("number"),
            "memory_rss": {"type": "integer", "minimum": 0, "description": "bytes, the whole tree"},
            "orphaned": {"type": "boolean"},
            "orphaned_pid": _nullable("integer"),
            "log_file": _nullable("string"),
            "started_at": {"type": ["string", "null"], "format": "date-time"},
            "autorestart": {"enum": list(AUTORESTART_POLICIES)},
            "message": _nullable("string"),
            "env_keys": {"type": "array", "items": {"type": "string"}},
            "kind": {"enum": ["server", "job"]},
            "group": _nullable("string"),
            "depends_on": {"type": "object", "description": "dependency id -> condition",
                           "additionalProperties": {"enum": CONDITIONS}},
            "reload_signal": _nullable("string"),
            "listening": {"type": "array", "description": "the ports of `ports` its process tree "
                          "listens on now (empty when not running)",
                          "items": {"type": "integer", "minimum": 1, "maximum": 65535}},
            "ports_required": {"type": "boolean", "description": "false: `ports` are offered to "
                               "the server (a Procfile's PORT), not waited for by readiness "
                               "or health"},
        },
    },
    "Instance": {
        "type": "object",
        "description": "the instance that answered, and the one that leads (its name, or null "
                       "when none does)",
        "required": ["name", "pid", "is_leader", "leader"],
        "properties": {
            "name": {"type": "string"},
            "pid": {"type": "integer"},
            "is_leader": {"type": "boolean"},
            "leader": _nullable("string"),
        },
    },
    "ServerList": {
        "type": "object",
        "required": ["servers"],
        "properties": {"servers": {"type": "array", "items": _ref("ServerStatus")},
                       "instance": _ref("Instance")},
    },
    "ActionResult": {
        "type": "object",
        "required": ["success", "message", "pid"],
        "properties": {"success": {"const": True}, "message": {"type": "string"},
                       "pid": _nullable("integer")},
    },
    "GroupMemberResult": {
        "type": "object",
        "required": ["success", "message", "pid", "code"],
        "properties": {"success": {"type": "boolean"}, "message": {"type": "string"},
                       "pid": _nullable("integer"), "code": _nullable("string")},
    },
    "GroupResult": {
        "type": "object",
        "required": ["success", "group", "results"],
        "properties": {"success": {"const": True}, "group": {"type": "string"},
                       "results": {"type": "object",
                                   "description": "server id -> its result, in dependency order",
                                   "additionalProperties": _ref("GroupMemberResult")}},
    },
    "GroupList": {
        "type": "object",
        "required": ["groups"],
        "properties": {"groups": {"type": "object",
                                  "description": "group name -> its server ids",
                                  "additionalProperties": {"type": "array",
                                                           "items": {"type": "string"}}}},
    },
    "KillResult": {
        "type": "object",
        "required": ["success", "id", "pid", "signal", "exit_code", "message"],
        "properties": {"success": {"const": True}, "id": {"type": "string"},
                       "pid": _nullable("integer"), "signal": _nullable("string"),
                       "exit_code": _nullable("integer"), "message": {"type": "string"}},
    },
    "Logs": {
        "type": "object",
        "required": ["lines"],
        "properties": {"lines": {"type": "array", "items": {"type": "string"}}},
    },
    "HistoryEntry": {
        "type": "object",
        "required": ["id", "event", "at", "pid", "exit_code", "reason", "log_tail"],
        "properties": {
            "id": {"type": "string"},
            "event": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
            "pid": _nullable("integer"),
            "exit_code": _nullable("integer"),
            "reason": _nullable("string"),
            "log_tail": {"type": "array", "items": {"type": "string"}},
        },
    },
    "History": {
        "type": "object",
        "required": ["history"],
        "properties": {"history": {"type": "array", "items": _ref("HistoryEntry")}},
    },
    "ResourceHistory": {
        "type": "object",
        "description": "A server's monitor samples, oldest first, as parallel columns; marks "
                       "are its starts (a new pid), exits and health changes.",
        "required": ["id", "interval", "window", "times", "cpu_percent", "memory_rss", "health",
                     "ports_up", "ports_total", "pids", "marks"],
        "properties": {
            "id": {"type": "string"},
            "interval": {"type": "number", "description": "the monitor's tick, seconds"},
            "window": {"type": "number", "description": "seconds of samples kept"},
            "times": {"type": "array", "items": {"type": "number"},
                      "description": "unix seconds"},
            "cpu_percent": {"type": "array", "items": {"type": "number"}},
            "memory_rss": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "health": {"type": "array", "items": {"enum": list(HEALTH_STATES)}},
            "ports_up": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "ports_total": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "pids": {"type": "array", "items": _nullable("integer")},
            "marks": {"type": "array", "items": {
                "type": "object", "required": ["time", "kind", "pid", "detail"],
                "properties": {"time": {"type": "number"},
                               "kind": {"enum": ["start", "exit", "health"]},
                               "pid": _nullable("integer"), "detail": {"type": "string"}}}},
        },
    },
    "ReloadResult": {
        "type": "object",
        "required": ["changes"],
        "properties": {"changes": {"type": "object", "description": "server id -> change",
                                   "additionalProperties": {"enum": list(RELOAD_CHANGES)}}},
    },
    "OpenAPI": {
        "type": "object",
        "description": "An OpenAPI 3.1 document: this one.",
        "required": ["openapi", "info", "servers", "paths", "components"],
        "properties": {
            "openapi": {"type": "string", "pattern": "^3\\.1\\."},
            "info": {"type": "object", "required": ["title", "version"]},
            "servers": {"type": "array", "items": {"type": "object", "required": ["url"]}},
            "paths": {"type": "object"},
            "components": {"type": "object"},
            "security": {"type": "array", "items": {"type": "object"}},
        },
    },
    "StartBody": {
        "type": "object",
        "properties": {"wait": {"type": "boolean", "default": True}},
        "additionalProperties": False,
    },
    "EmptyBody": {"type": "object", "additionalProperties": False},
    "KillOrphanBody": {
        "type": "object",
        "required": ["pid"],
        "properties": {"pid": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}},
        "additionalProperties": False,
    },
}



def _query_int(name: str, low: int, high: int, default: int, what: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": what,
            "schema": {"type": "integer", "minimum": low, "maximum": high, "default": default}}


# Any route: an exception the view did not expect (logged with its traceback, never sent), or
# a procsync error; not_configured when the app has no orchestrator.
UNEXPECTED = "internal_error, error or not_configured: an unexpected failure, logged by the app"


def _common_errors(*, unknown: bool = False, body: bool = False, query: bool = False,
                   what: str = "server id") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if body:
        out["400"] = _error("bad_json, bad_field or bad_content_type")
    if query:
        out["400"] = _error("bad_field: a query argument that is not a number or out of range")
    out["401"] = _error("token configured and missing or wrong")
    out["403"] = _error("refused: forbidden, cross_origin, bad_host, remote_refused")
    if unknown:
        out["404"] = _error(f"unknown {what}")
    out["500"] = _error(UNEXPECTED)
    return out


def _examples(name: str, description: str, values: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if values:
        schema["examples"] = values  # the registered names (clients and fuzzers start there)
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema}


def _body(schema: str, required: bool) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(schema)}}}


def _action(summary: str, body: dict[str, Any], server_id: dict[str, Any], *,
            starts: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": _json(_ref("ActionResult"), "done"),
                                 **_common_errors(unknown=True, body=True)}
    responses["409"] = _error("already_running, already_stopped, port_in_use, start_cancelled")
    if starts:
        responses["424"] = _error("dependency_failed: a dependency can no longer meet its "
                                  "condition; the server is skipped")
    responses["500"] = _error(("start_failed, start_timeout, stop_failed; " if starts
                               else "stop_failed; ") + UNEXPECTED)
    return {
        "summary": summary,
        "parameters": [server_id],
        "requestBody": body,
        "responses": responses,
    }


def _group_action(summary: str, body: dict[str, Any], group: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": [group],
        "requestBody": body,
        "responses": {
            "200": _json(_ref("GroupResult"), "every server's action succeeded"),
            **_common_errors(unknown=True, body=True, what="group"),
            "409": _error("a server's action was refused (already_running, already_stopped, "
                          "port_in_use, start_cancelled); `results` has every server's"),
            "424": _error("dependency_failed: a server was skipped; `results` has every server's"),
            "500": _error("start_failed, start_timeout, stop_failed (`results` has every "
                          "server's); " + UNEXPECTED),
        },
    }


def _paths(ids: list[str], groups: list[str], token: bool) -> dict[str, Any]:
    server_id = _examples("server_id", "a registered server id", ids)
    group = _examples("group", "a group name (`group` of at least one server)", groups)
    # Without a token, a POST needs Content-Type: application/json (the CSRF guard), so a
    # body (`{}` will do) is required; with a token, no body is fine.
    empty = _body("EmptyBody", required=not token)
    return {
        "/openapi.json": {"get": {
            "summary": "this document",
            "responses": {"200": _json(_ref("OpenAPI"), "the OpenAPI document"),
                          **_common_errors()}}},
        "/servers": {"get": {
            "summary": "every registered server's status",
            "responses": {"200": _json(_ref("ServerList"), "the servers"), **_common_errors()}}},
        "/servers/{server_id}": {"get": {
            "summary": "one server's status",
            "parameters": [server_id],
            "responses": {"200": _json(_ref("ServerStatus"), "the status"),
                          **_common_errors(unknown=True)}}},
        "/servers/{server_id}/start": {"post": _action(
            "start a server after its dependencies (waits for readiness unless wait is false)",
            _body("StartBody", required=not token), server_id, starts=True)},
        "/servers/{server_id}/stop": {"post": _action("stop a server", empty, server_id)},
        "/servers/{server_id}/restart": {"post": _action(
            "stop then start a server", empty, server_id, starts=True)},
        "/servers/{server_id}/reload": {"post": {
            "summary": "send the server its reload_signal (it keeps running, same pid)",
            "parameters": [server_id],
            "requestBody": empty,
            "responses": {"200": _json(_ref("ActionResult"), "signal sent"),
                          **_common_errors(unknown=True, body=True),
                          "409": _error("already_stopped (not running), not_supported (no "
                                        "reload_signal configured)"),
                          "500": _error("the signal could not be sent; " + UNEXPECTED)}}},
        "/servers/{server_id}/kill-orphan": {"post": {
            "summary": "kill the untracked process holding this server's port",
            "parameters": [server_id],
            "requestBody": _body("KillOrphanBody", required=True),
            "responses": {"200": _json(_ref("KillResult"), "killed"),
                          **_common_errors(unknown=True, body=True),
                          "403": _error("not_orphan (or refused, as for every route)")}}},
        "/servers/{server_id}/logs": {"get": {
            "summary": "the last lines of the server's log",
            "parameters": [server_id, _query_int("lines", 1, 10_000, 100, "how many lines")],
            "responses": {"200": _json(_ref("Logs"), "the lines"),
                          **_common_errors(unknown=True, query=True)}}},
        "/servers/{server_id}/logs/stream": {"get": {
            "summary": "SSE: the last `lines` lines, then every new line, across rotation",
            "parameters": [server_id, _query_int("lines", 0, 10_000, 0, "backlog lines")],
            "responses": {"200": _sse("`lines` and `rotated` events, heartbeat comments"),
                          **_common_errors(unknown=True, query=True)}}},
        "/servers/{server_id}/history": {"get": {
            "summary": "what happened to the server, newest first",
            "parameters": [server_id, _query_int("limit", 1, 1000, 50, "how many entries")],
            "responses": {"200": _json(_ref("History"), "the history"),
                          **_common_errors(unknown=True, query=True)}}},
        "/servers/{server_id}/metrics": {"get": {
            "summary": "the server's resource history: CPU, memory, health, ports per tick",
            "parameters": [server_id, {"name": "since", "in": "query", "required": False,
                                       "description": "only samples at or after this unix time",
                                       "schema": {"type": "number"}}],
            "responses": {"200": _json(_ref("ResourceHistory"), "the samples"),
                          **_common_errors(unknown=True, query=True)}}},
        "/metrics": {"get": {
            "summary": "every server's figures and procsync's own, in the Prometheus text format",
            "responses": {"200": {"description": "the Prometheus text exposition format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **_common_errors(),
                          "501": _error("not_installed: install the `metrics` extra")}}},
        "/groups": {"get": {
            "summary": "every group: name -> server ids, in registration order",
            "responses": {"200": _json(_ref("GroupList"), "the groups"), **_common_errors()}}},
        "/groups/{group}/start": {"post": _group_action(
            "start a group's servers in dependency order", empty, group)},
        "/groups/{group}/stop": {"post": _group_action(
            "stop a group's servers, dependents first", empty, group)},
        "/groups/{group}/restart": {"post": _group_action(
            "restart a group's servers in dependency order", empty, group)},
        "/reload": {"post": {
            "summary": "re-read the config file (`procsync serve` only)",
            "requestBody": empty,
            "responses": {"200": _json(_ref("ReloadResult"), "what changed, id -> change"),
                          **_common_errors(body=True),
                          "501": _error("not_supported: the app has no config file")}}},
        "/events": {"get": {
            "summary": "SSE: every orchestrator signal, a snapshot on connect, periodic status",
            "parameters": [{"name": "Last-Event-ID", "in": "header", "required": False,
                            "description": "replay buffered events after this id (ASCII "
                                           "digits; anything else is ignored)",
                            "schema": {"type": "string"}}],
            "responses": {"200": _sse("one event per signal: id, event name, JSON data"),
                          **_common_errors()}}},
    }


def openapi_document(api_url: str, *, token: bool, server_ids: list[str] | None = None,
                     groups: list[str] | None = None) -> dict[str, Any]:
    """The document for an API mounted at `api_url` (e.g. "/procsync/api").

    `token`: whether PROCSYNC_AUTH_TOKEN is set (adds the bearer security scheme);
    `server_ids` and `groups`: the registered ids and group names, given as examples of
    the `server_id` and `group` parameters.
    """
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "procsync",
            "version": __version__,
            "description": "Start, stop and watch the registered servers. Every error is "
                           "{\"error\": CODE, \"message\": TEXT}. See docs/flask.md.",
        },
        "servers": [{"url": api_url or "/"}],
        "paths": _paths(list(server_ids or ()), list(groups or ()), token),
        "components": {"schemas": copy.deepcopy(SCHEMAS)},
    }
    if token:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc


__all__ = ["openapi_document"]
