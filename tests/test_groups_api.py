"""Issue 13 through the JSON API: group routes, the reload route, their auth and their document.

Real processes throughout: a group of two listening servers started, refused,
restarted and stopped through ``/api/groups/<name>/...``; a child that counts
the SIGHUPs it receives for ``/api/servers/<id>/reload``; the Flask test client
and a real threaded werkzeug server.
"""

from __future__ import annotations

import http.client
import json

import pytest
from flask import Flask
from helpers import (
    free_port,
    hup_counter_code,
    hups,
    is_gone,
    listener_code,
    python_cmd,
    serving,
    wait_until,
)

from procsync.flask_ext import ProcSync
from procsync.flask_ext.views import STATUS_FOR_CODE

P = "/procsync/api"
TOKEN = "groups-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"


@pytest.fixture
def site(orch, tmp_path):
    """`orch` with group "app" (web then api, api needing web healthy), a SIGHUP counter and a
    plain sleeper; returns (orch, paths) where paths has the counter's files."""
    web_port, api_port = free_port(), free_port()
    files = {"count": tmp_path / "hups.txt", "ready": tmp_path / "hup-ready.txt"}
    orch.register_servers({
        "web": {"command": python_cmd(listener_code(web_port)), "ports": [web_port],
                "group": "app", "stop_timeout": 2},
        "api": {"command": python_cmd(listener_code(api_port)), "ports": [api_port],
                "group": "app", "depends_on": {"web": "healthy"}, "stop_timeout": 2},
        "hup": {"command": python_cmd(hup_counter_code(files["count"], files["ready"])),
                "reload_signal": "SIGHUP", "stop_timeout": 2},
        "plain": {"command": python_cmd(SLEEPER), "stop_timeout": 2},
    })
    return orch, files


def make_app(orch, **config):
    app = Flask("groups")
    app.config.update(config)
    ProcSync(app, orch)
    return app


def post(client, path, body=None, **kw):
    return client.post(path, data=json.dumps(body if body is not None else {}),
                       content_type="application/json", **kw)


def assert_error(resp, status, code):
    body = resp.get_json()
    assert resp.status_code == status, resp.get_data(as_text=True)[:400]
    assert body["error"] == code and isinstance(body["message"], str), body
    return body


def schema_validator(doc, name):
    """A JSON Schema validator for the document's component `name` (refs resolved in `doc`)."""
    jsonschema_rs = pytest.importorskip("jsonschema_rs")  # comes with schemathesis
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return jsonschema_rs.Draft202012Validator(schema)


# -- the group routes --------------------------------------------------------------------


def test_group_start_refuse_restart_stop_through_the_routes(site):
    orch, _ = site
    client = make_app(orch).test_client()
    doc = client.get(f"{P}/openapi.json").get_json()
    group_result = schema_validator(doc, "GroupResult")
    error = schema_validator(doc, "Error")

    listed = client.get(f"{P}/groups")
    assert listed.status_code == 200
    assert listed.get_json() == {"groups": {"app": ["web", "api"]}}

    started = post(client, f"{P}/groups/app/start")
    body = started.get_json()
    assert started.status_code == 200, body
    group_result.validate(body)
    assert body["success"] is True and body["group"] == "app"
    assert list(body["results"]) == ["web", "api"]  # dependency order: api needs web
    pids = {sid: r["pid"] for sid, r in body["results"].items()}
    for sid in ("web", "api"):
        assert body["results"][sid]["success"] is True and body["results"][sid]["code"] is None
        status = orch.get_server(sid)
        assert status.running and status.pid == pids[sid]
    assert not orch.get_server("plain").running  # only the group

    again = post(client, f"{P}/groups/app/start")
    refused = assert_error(again, STATUS_FOR_CODE["already_running"], "already_running")
    error.validate(refused)
    assert refused["success"] is False and refused["group"] == "app"
    assert {sid: r["code"] for sid, r in refused["results"].items()} == {
        "web": "already_running", "api": "already_running"}
    assert "web" in refused["message"]  # names the first failure
    assert {sid: orch.get_server(sid).pid for sid in ("web", "api")} == pids  # untouched

    restarted = post(client, f"{P}/groups/app/restart")
    body = restarted.get_json()
    assert restarted.status_code == 200, body
    group_result.validate(body)
    for sid in ("web", "api"):
        assert body["results"][sid]["pid"] not in (None, pids[sid])
        assert is_gone(pids[sid])
        assert orch.get_server(sid).running

    new_pids = {sid: r["pid"] for sid, r in body["results"].items()}
    stopped = post(client, f"{P}/groups/app/stop")
    body = stopped.get_json()
    assert stopped.status_code == 200, body
    assert body["success"] is True and set(body["results"]) == {"web", "api"}
    for sid, pid in new_pids.items():
        assert is_gone(pid)
        assert orch.get_server(sid).status == "stopped"


def test_unknown_group_is_a_json_404_before_the_body_is_read(site):
    orch, _ = site
    client = make_app(orch).test_client()
    for action in ("start", "stop", "restart"):
        resp = post(client, f"{P}/groups/nope/{action}")
        body = assert_error(resp, 404, "unknown")
        assert body["message"] == "unknown group 'nope'"
    # a bad body does not hide the unknown group; on a known group it is a 400
    assert_error(post(client, f"{P}/groups/nope/start", {"wait": 1}), 404, "unknown")
    assert_error(post(client, f"{P}/groups/app/start", {"wait": 1}), 400, "bad_field")
    assert_error(client.get(f"{P}/groups/app/start"), 405, "method_not_allowed")
    assert not orch.get_server("web").running


def test_group_routes_need_control_and_pass_the_csrf_checks(site):
    orch, _ = site
    asked: list[str] = []

    def view_only(action: str) -> bool:
        asked.append(action)
        return action == "view"

    app = Flask("groups-auth")
    ProcSync(app, orch, auth=view_only)
    client = app.test_client()
    assert client.get(f"{P}/groups").status_code == 200
    assert_error(post(client, f"{P}/groups/app/start"), 403, "forbidden")
    assert_error(post(client, f"{P}/servers/hup/reload"), 403, "forbidden")
    assert asked == ["view", "control", "control"]
    assert not orch.get_server("web").running and not orch.get_server("api").running

    tokened = make_app(orch, PROCSYNC_AUTH_TOKEN=TOKEN).test_client()
    assert_error(tokened.get(f"{P}/groups"), 401, "unauthorized")
    assert_error(post(tokened, f"{P}/groups/app/start"), 401, "unauthorized")

    # no token: loopback only, JSON content type only, same-origin only
    loopback = make_app(orch).test_client()
    form = loopback.post(f"{P}/groups/app/start", data="x=1",
                         content_type="application/x-www-form-urlencoded")
    assert_error(form, 400, "bad_content_type")
    cross = post(loopback, f"{P}/groups/app/start", headers={"Origin": "http://evil.example"})
    assert_error(cross, 403, "cross_origin")
    remote = post(loopback, f"{P}/groups/app/start", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert_error(remote, 403, "remote_refused")
    assert not orch.get_server("web").running


# -- the reload route --------------------------------------------------------------------


def test_reload_sends_one_sighup_and_keeps_the_process(site):
    orch, files = site
    client = make_app(orch).test_client()
    assert_error(post(client, f"{P}/servers/hup/reload"), 409, "already_stopped")

    started = orch.start_server("hup")
    assert started.success, started.message
    wait_until(lambda: files["ready"].exists(), 10, "the SIGHUP handler to be installed")
    pid = started.pid

    resp = post(client, f"{P}/servers/hup/reload")
    body = resp.get_json()
    assert resp.status_code == 200, body
    assert body["success"] is True and body["pid"] == pid
    wait_until(lambda: hups(files["count"]) == [str(pid)], 10, "one SIGHUP to be counted")

    second = post(client, f"{P}/servers/hup/reload")
    assert second.status_code == 200, second.get_json()
    wait_until(lambda: len(hups(files["count"])) >= 2, 10, "the second SIGHUP")
    assert hups(files["count"]) == [str(pid), str(pid)]  # one per reload, same process
    status = orch.get_server("hup")
    assert status.running and status.pid == pid and status.restarts == 0
    assert status.reload_signal == "SIGHUP"
    events = [e.event for e in orch.history("hup", 10)]
    assert "reloaded" in events


def test_reload_without_a_reload_signal_is_409_not_supported(site):
    orch, _ = site
    client = make_app(orch).test_client()
    started = orch.start_server("plain")
    assert started.success, started.message
    body = assert_error(post(client, f"{P}/servers/plain/reload"), 409, "not_supported")
    assert "reload_signal" in body["message"]
    assert orch.get_server("plain").pid == started.pid  # untouched
    assert_error(post(client, f"{P}/servers/nope/reload"), 404, "unknown")
    assert_error(post(client, f"{P}/servers/plain/reload", {"x": 1}), 400, "bad_field")


def test_status_codes_of_the_new_failures():
    assert STATUS_FOR_CODE["dependency_failed"] == 424
    assert STATUS_FOR_CODE["not_supported"] == 409


# -- the document --------------------------------------------------------------------------


def test_document_lists_the_group_names_and_server_fields(site):
    orch, _ = site
    client = make_app(orch).test_client()
    doc = client.get(f"{P}/openapi.json").get_json()
    for action in ("start", "stop", "restart"):
        op = doc["paths"][f"/groups/{{group}}/{action}"]["post"]
        assert op["parameters"][0]["schema"]["examples"] == ["app"]
        assert {"200", "404", "409", "424"} <= set(op["responses"])
    assert "409" in doc["paths"]["/servers/{server_id}/reload"]["post"]["responses"]
    assert "424" in doc["paths"]["/servers/{server_id}/start"]["post"]["responses"]
    servers = client.get(f"{P}/servers").get_json()
    status = schema_validator(doc, "ServerList")
    status.validate(servers)
    api = next(s for s in servers["servers"] if s["id"] == "api")
    assert api["group"] == "app" and api["kind"] == "server"
    assert api["depends_on"] == {"web": "healthy"}


# -- a real HTTP server ----------------------------------------------------------------------


@pytest.fixture
def live(site):
    orch, files = site
    app = make_app(orch, PROCSYNC_AUTH_TOKEN=TOKEN)
    with serving(app, "groups-http") as port:
        yield orch, files, port


def http_post(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, headers=headers or {})  # token-authenticated: no body needed
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_groups_and_reload_over_real_http(live):
    orch, files, port = live
    status, body = http_post(port, f"{P}/groups/app/start")
    assert status == 401 and body["error"] == "unauthorized"
    status, body = http_post(port, f"{P}/groups/app/start", BEARER)
    assert status == 200, body
    assert all(r["success"] for r in body["results"].values())
    assert orch.get_server("web").running and orch.get_server("api").running

    assert orch.start_server("hup").success
    wait_until(lambda: files["ready"].exists(), 10, "the SIGHUP handler to be installed")
    pid = orch.get_server("hup").pid
    status, body = http_post(port, f"{P}/servers/hup/reload", BEARER)
    assert status == 200 and body["pid"] == pid, body
    wait_until(lambda: hups(files["count"]) == [str(pid)], 10, "the SIGHUP to be counted")

    status, body = http_post(port, f"{P}/groups/app/stop", BEARER)
    assert status == 200, body
    assert not orch.get_server("web").running and not orch.get_server("api").running
    status, body = http_post(port, f"{P}/groups/none/stop", BEARER)
    assert status == 404 and body["error"] == "unknown"
