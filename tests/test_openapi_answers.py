"""Every answer of the JSON API conforms to the OpenAPI document it serves.

conftest.py checks every answer that any test gets through a Flask test
client (tests/openapi_check.py); this file proves that the check catches
what it must (a missing property, a wrong type, an undocumented property,
status, path or content type), and drives every documented operation once
against a real orchestrator with real servers, so an operation added to the
document without a test of its answers fails here.
"""

from __future__ import annotations

import json
from collections import Counter

import openapi_check
import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient
from helpers import free_port, hup_counter_code, listener_code, python_cmd, wait_until
from openapi_check import AnswerMismatch, check_answer
from werkzeug.test import Client

from procsync.flask_ext import ProcSync
from procsync.flask_ext.openapi import openapi_document
from procsync.health import port_open

pytest.importorskip("jsonschema_rs")

P = "/procsync/api"
JSON = "application/json"
DOC = openapi_document(P, token=False, server_ids=["web"])
FAILER = "import sys\nprint('boom: bad thing', flush=True)\nsys.exit(3)\n"


def status_body(**changes):
    body = {"id": "web", "name": "web", "color": None, "command": "python -c x", "cwd": None,
            "ports": [8080], "status": "running", "running": True, "pid": 42, "health": "healthy",
            "uptime": 1.5, "restarts": 0, "last_exit_code": None, "cpu_percent": 0.0,
            "memory_rss": 1024, "orphaned": False, "orphaned_pid": None, "log_file": None,
            "kind": "server", "group": None, "depends_on": {}, "reload_signal": None,
            "started_at": "2026-01-02T03:04:05.123456+00:00", "autorestart": "no",
            "message": None, "env_keys": ["API_KEY"], "listening": [8080],
            "ports_required": True}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


# -- the check catches what it must ------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "status", "content_type", "body"), [
    ("GET", f"{P}/servers/web", 200, JSON, status_body()),
    ("GET", f"{P}/servers/web", 200, "application/json; charset=utf-8", json.dumps(status_body())),
    ("HEAD", f"{P}/servers/web", 200, JSON, b""),
    ("HEAD", f"{P}/nothing/here", 404, JSON, b""),
    ("GET", f"{P}/servers", 200, JSON, {"servers": [status_body(started_at=None)]}),
    ("GET", f"{P}/servers/web", 404, JSON, {"error": "unknown", "message": "unknown server"}),
    ("POST", f"{P}/servers/web/start", 500, JSON,
     {"error": "start_failed", "message": "exit 3", "success": False, "pid": 7, "log_tail": ["x"]}),
    ("GET", f"{P}/events", 200, "text/event-stream; charset=utf-8", b""),
    ("GET", f"{P}/metrics", 200, "text/plain; version=0.0.4; charset=utf-8", b"# HELP x\n"),
    ("GET", f"{P}/nothing/here", 404, JSON, {"error": "not_found", "message": "no route"}),
    ("DELETE", f"{P}/servers/web", 405, JSON, {"error": "method_not_allowed", "message": "GET"}),
    ("OPTIONS", f"{P}/servers/web/start", 200, "text/html; charset=utf-8", b""),
    ("OPTIONS", f"{P}/servers", 401, JSON, {"error": "unauthorized", "message": "no token"}),
])
def test_a_conforming_answer_passes(method, path, status, content_type, body):
    check_answer(DOC, method, path, status, content_type, body)


@pytest.mark.parametrize(("method", "path", "status", "content_type", "body", "says"), [
    ("GET", f"{P}/servers/web", 200, JSON, status_body(pid=...), '"pid" is a required property'),
    ("GET", f"{P}/servers/web", 200, JSON, status_body(pid="42"), 'is not of type'),
    ("GET", f"{P}/servers/web", 200, JSON, status_body(restarts=-1), "minimum"),
    ("GET", f"{P}/servers/web", 200, JSON, status_body(status="sleeping"), "sleeping"),
    ("GET", f"{P}/servers/web", 200, JSON, status_body(health="fine"), "fine"),
    ("GET", f"{P}/servers/web", 200, JSON, status_body(memory_rss=None), "memory_rss"),
    ("GET", f"{P}/servers/web", 200, JSON, status_body(started_at="yesterday"), "date-time"),
    ("GET", f"{P}/servers/web", 200, JSON, status_body(secret="x"), "secret"),
    ("GET", f"{P}/servers", 200, JSON, {"servers": [status_body(ports=["80"])]}, "/servers/0/ports/0"),
    ("GET", f"{P}/servers/web", 404, JSON, {"error": "unknown"}, '"message" is a required'),
    ("GET", f"{P}/servers/web", 200, JSON, b"<html>", "not JSON"),
    ("GET", f"{P}/servers/web", 200, "text/html", b"<html>", "content type"),
    ("GET", f"{P}/servers", 404, JSON, {"error": "x", "message": "y"}, "status 404 is not documented"),
    ("POST", f"{P}/servers/web/stop", 424, JSON, {"error": "x", "message": "y"}, "424"),
    ("GET", f"{P}/nothing/here", 200, JSON, {}, "undocumented path"),
    ("DELETE", f"{P}/servers/web", 200, JSON, {}, "undocumented method"),
    ("GET", f"{P}/nothing/here", 404, "text/html", b"<h1>Not Found</h1>", "JSON is documented"),
    ("GET", "/elsewhere/servers", 200, JSON, {}, "not under the API root"),
    ("GET", f"{P}/events", 200, JSON, {}, "content type"),
    ("OPTIONS", f"{P}/servers", 200, "text/html", b"<p>", "OPTIONS answered with a body"),
    ("OPTIONS", f"{P}/nothing/here", 200, "text/html", b"", "undocumented path"),
])
def test_a_non_conforming_answer_is_caught(method, path, status, content_type, body, says):
    with pytest.raises(AnswerMismatch, match=says.replace("(", r"\(")) as caught:
        check_answer(DOC, method, path, status, content_type, body)
    assert f"{method} {path} -> {status}" in str(caught.value)


def test_conftest_watches_every_test_client(request):
    assert "api_answers_conform" in request.fixturenames
    assert Client.open.__name__ == "open_and_check"  # FlaskClient.open calls it


def test_the_watch_reports_every_wrong_answer_of_a_real_app(orch, monkeypatch):
    monkeypatch.undo()  # conftest's watch off: this test makes wrong answers on purpose
    problems = openapi_check.watch_test_clients(monkeypatch)
    orch.register_server("web", {"command": python_cmd(FAILER)})
    app = Flask("wrong")
    ProcSync(app, orch)
    app.view_functions["procsync.api_server"] = lambda server_id: jsonify({"id": server_id})
    app.view_functions["procsync.api_groups"] = lambda: (jsonify({"groups": {}}), 418)
    app.add_url_rule(f"{P}/extra", "extra", lambda: jsonify({"ok": True}))
    client = app.test_client()
    assert client.get(f"{P}/servers").status_code == 200  # conforms: not reported
    assert client.get(f"{P}/nothing").status_code == 404  # the API's own 404: not reported
    client.get(f"{P}/servers/web")
    client.get(f"{P}/groups")
    client.get(f"{P}/extra")
    client.get("/elsewhere")  # not under the API: not checked
    assert problems is not None and len(problems) == 3, problems
    assert problems[0].startswith(f"GET {P}/servers/web -> 200") and '"name"' in problems[0]
    assert problems[1].startswith(f"GET {P}/groups -> 418") and "not documented" in problems[1]
    assert problems[2].startswith(f"GET {P}/extra -> 200") and "undocumented path" in problems[2]


def test_the_watch_finds_a_nested_mount_and_its_token(orch, monkeypatch):
    from flask import Blueprint

    from procsync.flask_ext import create_blueprint

    monkeypatch.undo()
    problems = openapi_check.watch_test_clients(monkeypatch)
    orch.register_server("web", {"command": python_cmd(FAILER)})
    app = Flask("nested")
    admin = Blueprint("admin", __name__)
    admin.register_blueprint(create_blueprint(orch, token="tok"), url_prefix="/ops")
    app.register_blueprint(admin, url_prefix="/admin")
    app.view_functions["admin.procsync.api_servers"] = lambda: jsonify({"servers": 1})
    client = app.test_client()
    assert client.get("/admin/ops/api/servers").status_code == 401
    assert client.get("/admin/ops/api/servers",
                      headers={"Authorization": "Bearer tok"}).status_code == 200
    assert openapi_check.api_roots(app) == [("/admin/ops/api", True)]
    assert len(problems) == 1 and problems[0].startswith("GET /admin/ops/api/servers -> 200")


# -- every documented operation, answered by a real orchestrator -------------------------


class Api:
    """A test client that checks each answer against `doc` and counts the operations called."""

    def __init__(self, client: FlaskClient, doc: dict) -> None:
        self.client, self.doc = client, doc
        self.calls: Counter[tuple[str, str]] = Counter()
        self.statuses: Counter[tuple[str, str, int]] = Counter()

    def __call__(self, method: str, path: str, expect: int, **kw):
        resp = self.client.open(P + path, method=method, **kw)
        try:
            if resp.mimetype == "text/event-stream":
                body = next(iter(resp.response))  # the first chunk; the stream never ends
                assert body.startswith(b"retry: "), body
            else:
                body = resp.get_data()
            assert resp.status_code == expect, (method, path, resp.status_code, body[:500])
            check_answer(self.doc, method, P + path, resp.status_code,
                         resp.headers.get("Content-Type", ""), body)
        finally:
            if resp.mimetype == "text/event-stream":
                resp.close()
        found = openapi_check.checker_for(self.doc).operation(path.split("?", 1)[0])
        assert found is not None, path
        self.calls[(method.lower(), found[0])] += 1
        self.statuses[(method.lower(), found[0], resp.status_code)] += 1
        return resp

    def post(self, path: str, expect: int, body: dict | None = None):
        return self(method="POST", path=path, expect=expect, json={} if body is None else body)


def test_every_documented_operation_answers_as_documented(orch, tmp_path, outsider):
    web_port = free_port()
    hups = {"count": tmp_path / "hups.txt", "ready": tmp_path / "hup-ready.txt"}
    orch.register_servers({
        "web": {"command": python_cmd(listener_code(web_port)), "ports": [web_port],
                "group": "backend", "stop_timeout": 2, "color": "#2f9e44",
                "env": {"API_KEY": "x"}},
        "worker": {"command": python_cmd(hup_counter_code(hups["count"], hups["ready"])),
                   "group": "backend", "depends_on": {"web": "healthy"},
                   "reload_signal": "SIGHUP", "stop_timeout": 2},
        "failer": {"command": python_cmd(FAILER), "ports": [free_port()], "start_timeout": 10},
    })
    app = Flask("answers")
    app.config["PROCSYNC_EVENTS_HEARTBEAT"] = 0.2
    ProcSync(app, orch)
    client = app.test_client()
    doc = client.get(f"{P}/openapi.json").get_json()
    api = Api(client, doc)

    api("GET", "/openapi.json", 200)
    api("GET", "/servers", 200)
    api("GET", "/servers/web", 200)
    api("GET", "/servers/nobody", 404)
    api("GET", "/groups", 200)
    api("GET", "/servers/web/logs", 200)
    api("GET", "/servers/web/logs?lines=0", 400)
    api("GET", "/servers/web/history?limit=5", 200)
    api("POST", "/reload", 501, json={})

    # the group starts in dependency order; its servers then answer with pids and figures
    started = api.post("/groups/backend/start", 200).get_json()
    assert list(started["results"]) == ["web", "worker"]
    api.post("/groups/nobody/start", 404)
    api.post("/servers/web/start", 409)
    wait_until(lambda: hups["ready"].exists(), 10, "the worker's SIGHUP handler")
    api.post("/servers/worker/reload", 200)
    api.post("/servers/web/reload", 409)
    wait_until(lambda: api("GET", "/servers/web/metrics", 200).get_json()["times"], 10,
               "a sample of web")
    api("GET", "/servers/web/metrics?since=yesterday", 400)
    body = api("GET", "/servers", 200).get_json()
    assert all(s["pid"] for s in body["servers"] if s["id"] != "failer")
    api("GET", "/metrics", 200 if prometheus_installed() else 501)
    api("GET", "/servers/web/logs/stream?lines=5", 200)
    api("GET", "/events", 200)
    web_pid = api("GET", "/servers/web", 200).get_json()["pid"]
    api.post("/servers/web/kill-orphan", 403, {"pid": web_pid})  # tracked, not an orphan
    api.post("/servers/web/kill-orphan", 400, {"pid": "x"})
    api.post("/servers/worker/restart", 200)
    api.post("/groups/backend/restart", 200)
    api.post("/servers/worker/stop", 200)
    api.post("/groups/backend/stop", 409)  # worker was stopped already; web stops
    api.post("/servers/web/stop", 409)
    api.post("/servers/failer/start", 500)
    api("GET", "/servers/failer/history", 200)

    # an outsider holds web's port: web is orphaned, and kill-orphan kills exactly it
    stray = outsider(listener_code(web_port), web_port)
    orphaned = wait_until(lambda: api("GET", "/servers/web", 200).get_json()["orphaned_pid"],
                          10, "web to be marked orphaned")
    assert orphaned == stray.pid
    api.post("/servers/web/start", 409)  # port_in_use
    api.post("/groups/backend/start", 409)
    killed = api.post("/servers/web/kill-orphan", 200, {"pid": stray.pid}).get_json()
    assert killed["success"] is True and killed["pid"] == stray.pid
    wait_until(lambda: not port_open(web_port), 5, "web's port to be free")
    api.post("/servers/web/start", 200, {"wait": True})
    api.post("/servers/web/stop", 200)
    api.post("/groups/backend/start", 200)
    api.post("/groups/backend/stop", 200)

    app.config["PROCSYNC_RELOAD"] = lambda: {"web": "unchanged"}  # what `procsync serve` sets
    assert api.post("/reload", 200).get_json() == {"changes": {"web": "unchanged"}}

    tokened = Flask("answers-token")
    tokened.config["PROCSYNC_AUTH_TOKEN"] = "tok"
    ProcSync(tokened, orch)
    Api(tokened.test_client(), doc)("GET", "/servers", 401)

    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert set(api.calls) == documented, sorted(documented - set(api.calls))
    succeeded = {(method, path) for method, path, status in api.statuses if status == 200}
    without_extra = set() if prometheus_installed() else {("get", "/metrics")}  # 501 then
    assert succeeded == documented - without_extra, sorted(documented - succeeded)


def prometheus_installed() -> bool:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True
