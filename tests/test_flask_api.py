"""The Flask extension's JSON API through app.test_client(), with a real orchestrator and children."""

from __future__ import annotations

import logging
import os
import subprocess

import pytest
from flask import Blueprint, Flask
from helpers import free_port, is_gone, listener_code, python_cmd, wait_until

from procsync import ServerOrchestrator
from procsync.flask_ext import ProcSync, create_blueprint

P = "/procsync/api"
JSON = {"Content-Type": "application/json"}

SLEEPER = "import sys, time\nprint('hello from sleeper', flush=True)\ntime.sleep(60)\n"
FAILER = "import sys\nprint('about to fail', flush=True)\nprint('boom: bad thing', flush=True)\nsys.exit(3)\n"


def make_orchestrator(tmp_path, name="o"):
    return ServerOrchestrator(tmp_path / f"{name}-state.json", interval=0.2,
                              log_dir=tmp_path / f"{name}-logs")


@pytest.fixture
def orch(tmp_path):
    o = make_orchestrator(tmp_path)
    port = free_port()
    o.register_servers({
        "web": {"command": python_cmd(listener_code(port)), "ports": [port], "stop_timeout": 2,
                "color": "#2f9e44", "env": {"SECRET_TOKEN": "hunter2-value"}},
        "sleeper": {"command": python_cmd(SLEEPER), "stop_timeout": 2},
        "failer": {"command": python_cmd(FAILER), "ports": [free_port()], "start_timeout": 10},
    })
    o.web_port = port
    try:
        yield o
    finally:
        o.shutdown(stop_servers=True)


@pytest.fixture
def app(orch):
    app = Flask("api-test")
    ProcSync(app, orch)
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def static_text(client, path):
    with client.get(path) as resp:
        assert resp.status_code == 200, path
        return resp.get_data(as_text=True)


def post(client, path, body=None, **kw):
    return client.post(path, json={} if body is None else body, **kw)


def assert_error(resp, status, code=None):
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.is_json, resp.get_data(as_text=True)[:200]
    body = resp.get_json()
    assert set(body) >= {"error", "message"} and body["message"], body
    if code is not None:
        assert body["error"] == code, body
    assert "Traceback" not in resp.get_data(as_text=True)
    return body


# -- reading -------------------------------------------------------------------------


def test_list_and_get_servers_without_env_values(client):
    resp = client.get(f"{P}/servers")
    assert resp.status_code == 200
    servers = resp.get_json()["servers"]
    assert [s["id"] for s in servers] == ["web", "sleeper", "failer"]
    web = servers[0]
    assert web["status"] == "stopped" and web["running"] is False and web["color"] == "#2f9e44"
    assert web["env_keys"] == ["SECRET_TOKEN"]
    assert "hunter2-value" not in resp.get_data(as_text=True)

    one = client.get(f"{P}/servers/web")
    assert one.status_code == 200
    assert one.get_json()["id"] == "web" and "hunter2-value" not in one.get_data(as_text=True)
    assert_error(client.get(f"{P}/servers/nope"), 404, "unknown")


def test_logs_and_history(client, orch):
    assert_error(client.get(f"{P}/servers/nope/logs"), 404, "unknown")
    assert_error(client.get(f"{P}/servers/nope/history"), 404, "unknown")
    assert client.get(f"{P}/servers/sleeper/logs").get_json() == {"lines": []}
    assert post(client, f"{P}/servers/sleeper/start").status_code == 200
    wait_until(lambda: "hello from sleeper" in client.get(f"{P}/servers/sleeper/logs?lines=5")
               .get_json()["lines"], 5, "the sleeper's log line")
    assert_error(client.get(f"{P}/servers/sleeper/logs?lines=0"), 400, "bad_field")
    body = assert_error(client.get(f"{P}/servers/sleeper/logs?lines=abc"), 400, "bad_field")
    assert "lines" in body["message"]
    assert post(client, f"{P}/servers/sleeper/stop").status_code == 200
    history = client.get(f"{P}/servers/sleeper/history?limit=10").get_json()["history"]
    events = [h["event"] for h in history]
    assert "started" in events and "stopped" in events
    assert all(isinstance(h["at"], str) and "T" in h["at"] for h in history)
    assert_error(client.get(f"{P}/servers/sleeper/history?limit=-1"), 400, "bad_field")


# -- control -------------------------------------------------------------------------


def test_start_stop_restart_and_conflicts(client, orch):
    resp = post(client, f"{P}/servers/web/start")
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["success"] is True and body["pid"] > 0 and body["message"]
    first_pid = body["pid"]
    assert client.get(f"{P}/servers/web").get_json()["status"] == "running"

    assert_error(post(client, f"{P}/servers/web/start"), 409, "already_running")

    resp = post(client, f"{P}/servers/web/restart")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["pid"] not in (None, first_pid)
    assert is_gone(first_pid)

    resp = post(client, f"{P}/servers/web/stop")
    assert resp.status_code == 200 and resp.get_json()["success"] is True
    assert_error(post(client, f"{P}/servers/web/stop"), 409, "already_stopped")
    for action in ("start", "stop", "restart"):
        assert_error(post(client, f"{P}/servers/ghost/{action}"), 404, "unknown")


def test_start_without_waiting_and_empty_json_body(client, orch):
    resp = client.post(f"{P}/servers/sleeper/start", data=b"", headers=JSON)
    assert resp.status_code == 200, resp.get_json()
    assert post(client, f"{P}/servers/sleeper/stop").status_code == 200
    resp = post(client, f"{P}/servers/sleeper/start", {"wait": False})
    assert resp.status_code == 200, resp.get_json()
    wait_until(lambda: orch.get_server("sleeper").running, 5, "sleeper running")


def test_failed_start_is_500_with_message_and_log_tail(client):
    body = assert_error(post(client, f"{P}/servers/failer/start"), 500, "start_failed")
    assert body["success"] is False
    assert "3" in body["message"]  # the exit code
    assert any("boom: bad thing" in line for line in body["log_tail"])


def test_start_timeout_is_500_and_a_vanished_cwd_is_400(client, orch, tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    orch.register_servers({
        "mute": {"command": python_cmd(SLEEPER), "ports": [free_port()], "start_timeout": 0.3,
                 "stop_timeout": 1},
        "lost": {"command": python_cmd(SLEEPER), "cwd": str(gone)},
    })
    body = assert_error(post(client, f"{P}/servers/mute/start"), 500, "start_timeout")
    assert body["pid"] > 0 and "left running" in body["message"]
    assert "hello from sleeper" in body["log_tail"]
    gone.rmdir()
    body = assert_error(post(client, f"{P}/servers/lost/start"), 400, "bad_config")
    assert "cwd" in body["message"]


def test_port_held_by_orphan_409_then_kill_orphan(client, orch, outsider):
    holder = outsider(listener_code(orch.web_port), orch.web_port)
    body = assert_error(post(client, f"{P}/servers/web/start"), 409, "port_in_use")
    assert str(holder.pid) in body["message"]
    status = wait_until(lambda: (s := client.get(f"{P}/servers/web").get_json())["orphaned"] and s,
                        5, "web orphaned")
    assert status["orphaned_pid"] == holder.pid

    # Refused: not that server's orphan, bad bodies, unknown server.
    assert_error(post(client, f"{P}/servers/web/kill-orphan", {"pid": os.getpid()}), 403, "not_orphan")
    assert_error(post(client, f"{P}/servers/sleeper/kill-orphan", {"pid": holder.pid}), 403)
    assert_error(post(client, f"{P}/servers/web/kill-orphan", {"pid": "12"}), 400, "bad_field")
    assert_error(post(client, f"{P}/servers/web/kill-orphan", {}), 400, "bad_field")
    assert_error(post(client, f"{P}/servers/web/kill-orphan", {"pid": 1, "x": 2}), 400, "bad_field")
    assert_error(post(client, f"{P}/servers/ghost/kill-orphan", {"pid": holder.pid}), 404, "unknown")
    assert holder.poll() is None

    resp = post(client, f"{P}/servers/web/kill-orphan", {"pid": holder.pid})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["success"] is True
    holder.wait(5)
    assert post(client, f"{P}/servers/web/start").status_code == 200


# -- errors --------------------------------------------------------------------------


def test_405_and_404_inside_the_prefix_are_json(client):
    body = assert_error(client.get(f"{P}/servers/web/start"), 405, "method_not_allowed")
    resp = client.get(f"{P}/servers/web/start")
    assert "POST" in resp.headers["Allow"] and "POST" in body["message"]
    assert_error(client.delete(f"{P}/servers"), 405)
    assert_error(client.put(f"{P}/servers/web"), 405)
    assert_error(client.get(f"{P}/nothing/here"), 404, "not_found")
    assert_error(client.get("/procsync/nothing"), 404, "not_found")
    outside = client.get("/not-procsync")
    assert outside.status_code == 404 and not outside.is_json  # the host app's own 404 page


def test_bad_json_and_bad_fields_are_400(client):
    bad = client.post(f"{P}/servers/web/start", data=b"{nope", headers=JSON)
    assert "not valid JSON" in assert_error(bad, 400, "bad_json")["message"]
    assert_error(client.post(f"{P}/servers/web/start", data=b"[1, 2]", headers=JSON), 400, "bad_json")
    body = assert_error(post(client, f"{P}/servers/web/start", {"wiat": True}), 400, "bad_field")
    assert "wiat" in body["message"]
    assert "wait" in assert_error(post(client, f"{P}/servers/web/start", {"wait": "yes"}), 400)["message"]
    assert_error(post(client, f"{P}/servers/web/stop", {"force": True}), 400, "bad_field")


def test_unexpected_exception_is_logged_and_answered_as_json(client, orch, monkeypatch, caplog):
    def broken(*a, **kw):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(orch, "get_server", broken)
    with caplog.at_level(logging.ERROR, logger="procsync.flask_ext"):
        body = assert_error(client.get(f"{P}/servers/web"), 500, "internal_error")
    assert "secret internals" not in body["message"]
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)


# -- CSRF, host and origin -----------------------------------------------------------


def test_csrf_guard_refuses_form_posts_and_foreign_origins(client, orch):
    form = client.post(f"{P}/servers/sleeper/start", data={"a": "1"})
    assert "application/json" in assert_error(form, 400, "bad_content_type")["message"]
    plain = client.post(f"{P}/servers/sleeper/start", data="{}", content_type="text/plain")
    assert_error(plain, 400, "bad_content_type")
    evil = post(client, f"{P}/servers/sleeper/start", headers={"Origin": "http://evil.example"})
    assert_error(evil, 403, "cross_origin")
    assert_error(post(client, f"{P}/servers/sleeper/start", headers={"Origin": "null"}), 403)
    assert_error(post(client, f"{P}/servers/sleeper/start",
                      headers={"Sec-Fetch-Site": "cross-site"}), 403, "cross_origin")
    assert orch.get_server("sleeper").status == "stopped"  # nothing above started it
    same = post(client, f"{P}/servers/sleeper/start", headers={"Origin": "http://localhost"})
    assert same.status_code == 200, same.get_json()


def test_dns_rebinding_host_check_and_allow_list(app, orch):
    client = app.test_client()
    rebound = client.get(f"{P}/servers", headers={"Host": "attacker.example:5000"})
    assert "attacker.example" in assert_error(rebound, 403, "bad_host")["message"]
    for host in ("localhost:5000", "127.0.0.1:8080", "[::1]:9000", "app.localhost"):
        assert client.get(f"{P}/servers", headers={"Host": host}).status_code == 200, host
    app.config["PROCSYNC_ALLOWED_HOSTS"] = ["dash.internal"]
    assert client.get(f"{P}/servers", headers={"Host": "dash.internal:5000"}).status_code == 200
    assert_error(client.get(f"{P}/servers", headers={"Host": "other.internal"}), 403, "bad_host")


def test_without_auth_remote_addresses_cannot_control(client, orch):
    remote = {"REMOTE_ADDR": "192.0.2.7"}
    assert_error(client.get(f"{P}/servers", environ_base=remote), 403, "remote_refused")  # issue 11
    body = assert_error(post(client, f"{P}/servers/sleeper/start", environ_base=remote), 403,
                        "remote_refused")
    assert "192.0.2.7" in body["message"]
    assert orch.get_server("sleeper").status == "stopped"
    ok = post(client, f"{P}/servers/sleeper/start", environ_base={"REMOTE_ADDR": "::1"})
    assert ok.status_code == 200


def test_unauthenticated_api_logs_a_warning(orch, caplog):
    with caplog.at_level(logging.WARNING, logger="procsync.flask_ext"):
        ProcSync(Flask("warned"), orch)
    assert any("unauthenticated" in r.getMessage() for r in caplog.records)
    caplog.clear()
    app = Flask("quiet")
    app.config["PROCSYNC_AUTH_TOKEN"] = "t0ken"
    with caplog.at_level(logging.WARNING, logger="procsync.flask_ext"):
        ProcSync(app, orch)
    assert not any("unauthenticated" in r.getMessage() for r in caplog.records)


# -- auth ----------------------------------------------------------------------------


def test_token_auth_on_every_api_route(orch):
    app = Flask("token-app")
    app.config["PROCSYNC_AUTH_TOKEN"] = "s3cret-token"
    ProcSync(app, orch)
    client = app.test_client()
    good = {"Authorization": "Bearer s3cret-token"}
    routes = [("get", f"{P}/servers"), ("get", f"{P}/servers/sleeper"),
              ("get", f"{P}/servers/sleeper/logs"), ("get", f"{P}/servers/sleeper/history"),
              ("get", f"{P}/servers/sleeper/logs/stream"), ("get", f"{P}/events"),
              ("post", f"{P}/servers/sleeper/start"), ("post", f"{P}/servers/sleeper/stop"),
              ("post", f"{P}/servers/sleeper/restart"), ("post", f"{P}/servers/web/kill-orphan")]
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic czNjcmV0"},
                        {"Authorization": "s3cret-token"}):
            resp = getattr(client, method)(path, headers=headers, json={} if method == "post" else None)
            assert_error(resp, 401, "unauthorized")
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert orch.get_server("sleeper").status == "stopped"

    assert client.get(f"{P}/servers", headers=good).status_code == 200
    # With a token, a non-loopback Host and remote address are fine (the token is the guard).
    far = client.get(f"{P}/servers", headers={**good, "Host": "dash.example.com"},
                     environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert far.status_code == 200
    resp = post(client, f"{P}/servers/sleeper/start", headers=good,
                environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert resp.status_code == 200, resp.get_json()
    # The page shell holds no data and needs no token.
    page = client.get("/procsync/")
    assert page.status_code == 200 and b"<table" in page.data


def test_auth_callable_decides_view_and_control(orch):
    asked = []
    allowed = {"view"}

    def auth(action):
        asked.append(action)
        return action in allowed

    app = Flask("callable-app")
    ProcSync(app, orch, auth=auth)
    client = app.test_client()
    assert client.get(f"{P}/servers").status_code == 200
    assert asked == ["view"]
    body = assert_error(post(client, f"{P}/servers/sleeper/start"), 403, "forbidden")
    assert "control" in body["message"] and asked[-1] == "control"
    assert orch.get_server("sleeper").status == "stopped"
    allowed.add("control")
    assert post(client, f"{P}/servers/sleeper/start").status_code == 200
    allowed.clear()
    assert_error(client.get(f"{P}/servers/sleeper"), 403, "forbidden")
    assert_error(client.get(f"{P}/events"), 403, "forbidden")
    # The callable replaces the loopback-only host rule.
    allowed.add("view")
    assert client.get(f"{P}/servers", headers={"Host": "dash.example.com"}).status_code == 200
    with pytest.raises(TypeError, match="auth"):
        ProcSync(Flask("x"), orch, auth="yes")


# -- mounting ------------------------------------------------------------------------


def test_app_factory_and_several_apps(tmp_path):
    ext = ProcSync(url_prefix="/ops")
    one, two = make_orchestrator(tmp_path, "one"), make_orchestrator(tmp_path, "two")
    try:
        one.register_server("alpha", {"command": python_cmd(SLEEPER)})
        two.register_server("beta", {"command": python_cmd(SLEEPER)})

        def create_app(orchestrator, token=None):
            app = Flask(f"factory-{id(orchestrator)}")
            app.config["PROCSYNC_AUTH_TOKEN"] = token
            ext.init_app(app, orchestrator)
            return app

        app1, app2 = create_app(one), create_app(two, token="tok-two")
        assert app1.extensions["procsync"] is one and app2.extensions["procsync"] is two
        assert not hasattr(ext, "app")
        c1, c2 = app1.test_client(), app2.test_client()
        ids1 = [s["id"] for s in c1.get("/ops/api/servers").get_json()["servers"]]
        assert ids1 == ["alpha"]
        assert_error(c2.get("/ops/api/servers"), 401)
        ids2 = [s["id"] for s in c2.get("/ops/api/servers", headers={"Authorization": "Bearer tok-two"})
                .get_json()["servers"]]
        assert ids2 == ["beta"]
        assert_error(c1.get("/ops/api/servers/beta"), 404, "unknown")
        assert c1.get("/procsync/api/servers").status_code == 404
        with pytest.raises(RuntimeError, match="already registered"):
            ext.init_app(app1, one)
        with pytest.raises(TypeError, match="orchestrator"):
            ProcSync().init_app(Flask("none"))
    finally:
        one.shutdown(stop_servers=True)
        two.shutdown(stop_servers=True)


def test_config_prefix_and_dashboard_switch(orch):
    app = Flask("prefixed")
    app.config.update(PROCSYNC_URL_PREFIX="/admin/processes/", PROCSYNC_DASHBOARD=False)
    ProcSync(app, orch)
    client = app.test_client()
    assert client.get("/admin/processes/api/servers").status_code == 200
    assert_error(client.get("/admin/processes/"), 404, "not_found")
    assert app.config["PROCSYNC_EVENTS_HEARTBEAT"] > 0


@pytest.mark.parametrize("key, value", [
    ("PROCSYNC_EVENTS_HEARTBEAT", 0), ("PROCSYNC_EVENTS_HEARTBEAT", "15"),
    ("PROCSYNC_URL_PREFIX", "procsync"), ("PROCSYNC_ALLOWED_HOSTS", [1]),
    ("PROCSYNC_AUTH_TOKEN", 1234),
])
def test_bad_config_values_are_named(orch, key, value):
    app = Flask("bad-config")
    app.config[key] = value
    with pytest.raises(ValueError, match=key):
        ProcSync(app, orch)
    assert "procsync" not in app.extensions


def test_create_blueprint_under_a_parent_and_own_prefix(orch):
    app = Flask("blueprinted")
    parent = Blueprint("admin", __name__)
    parent.register_blueprint(create_blueprint(orch, token="bp-token"), url_prefix="/ps")
    app.register_blueprint(parent, url_prefix="/admin")
    client = app.test_client()
    auth = {"Authorization": "Bearer bp-token"}
    resp = client.get("/admin/ps/api/servers", headers=auth)
    assert resp.status_code == 200 and len(resp.get_json()["servers"]) == 3
    assert_error(client.get("/admin/ps/api/servers"), 401)
    assert_error(client.get("/admin/ps/api/zzz", headers=auth), 404, "not_found")
    page = client.get("/admin/ps/")
    assert page.status_code == 200
    assert b'data-base="/admin/ps"' in page.data
    assert b"/admin/ps/static/dashboard.js" in page.data
    assert "--accent" in static_text(client, "/admin/ps/static/dashboard.css")


def test_dashboard_page_is_self_contained(client):
    page = client.get("/procsync/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    html = page.get_data(as_text=True)
    js, css = static_text(client, "/procsync/static/dashboard.js"), static_text(client, "/procsync/static/dashboard.css")
    for text in (html, js, css):
        assert "https://" not in text and "http://" not in text  # no CDN, works offline
    assert "sessionStorage" in js and "Authorization" in js and "getReader" in js
    assert "EventSource" not in js  # fetch() streams, so a token header can be sent
    assert "localStorage" not in js


def test_reload_route_applies_the_callback_or_says_it_is_not_supported(app, client):
    assert_error(post(client, f"{P}/reload"), 501, "not_supported")
    calls = []
    app.config["PROCSYNC_RELOAD"] = lambda: calls.append(1) or {"web": "unchanged"}
    resp = post(client, f"{P}/reload")
    assert resp.status_code == 200 and resp.get_json() == {"changes": {"web": "unchanged"}}
    assert calls == [1]
    assert_error(client.get(f"{P}/reload"), 405)


def test_the_flask_cli_gets_the_procsync_group(app):
    result = app.test_cli_runner().invoke(args=["procsync", "--help"])
    assert result.exit_code == 0, result.output
    assert "status" in result.output and "serve" in result.output


# -- how the extension sits in the host app ---------------------------------------------


def test_host_routes_outside_the_prefix_never_run_procsync_code(orch, monkeypatch):
    import procsync.flask_ext.blueprint as blueprint_module

    checks = []
    real_check = blueprint_module.check_access
    monkeypatch.setattr(blueprint_module, "check_access",
                        lambda *args: checks.append(args) or real_check(*args))
    app = Flask("host")
    app.add_url_rule("/hello", "hello", lambda: "hi from the host")
    app.add_url_rule("/procsync-stats", "stats", lambda: "stats")  # shares the prefix's letters
    ProcSync(app, orch)  # no token, no auth: procsync answers loopback clients only
    assert not app.before_request_funcs.get(None)  # no hook on the whole app
    client = app.test_client()
    remote = {"environ_base": {"REMOTE_ADDR": "203.0.113.9"}, "headers": {"Host": "evil.example"}}
    resp = client.get("/hello", **remote)
    assert resp.status_code == 200 and resp.get_data(as_text=True) == "hi from the host"
    assert client.get("/procsync-stats", **remote).status_code == 200
    missing = client.post("/nothing/here", **remote)  # the host's own 404 page, not procsync's JSON
    assert missing.status_code == 404 and not missing.is_json
    assert checks == []
    # The same client under the prefix meets the guard (so the counter does count).
    assert_error(client.get(f"{P}/servers", **remote), 403, "bad_host")
    assert len(checks) == 1
    assert_error(client.post("/procsync/nothing", **remote), 404, "not_found")  # JSON under the prefix


def test_two_blueprints_on_one_app_keep_their_own_orchestrator_and_token(orch, tmp_path):
    other = make_orchestrator(tmp_path, "other")
    try:
        other.register_server("solo", {"command": python_cmd(SLEEPER)})
        app = Flask("two-mounts")
        ProcSync(app, orch)
        app.register_blueprint(create_blueprint(other, token="tok-b", name="second"), url_prefix="/b")
        assert app.extensions["procsync"] is orch  # the documented key keeps the app's orchestrator
        client = app.test_client()
        ids = [s["id"] for s in client.get(f"{P}/servers").get_json()["servers"]]
        assert ids == ["web", "sleeper", "failer"]
        assert_error(client.get("/b/api/servers"), 401)
        resp = client.get("/b/api/servers", headers={"Authorization": "Bearer tok-b"})
        assert [s["id"] for s in resp.get_json()["servers"]] == ["solo"]
        assert_error(client.get("/b/api/servers/web", headers={"Authorization": "Bearer tok-b"}),
                     404, "unknown")
    finally:
        other.shutdown(stop_servers=True)


def test_the_flask_command_finds_the_procsync_group_through_its_entry_point():
    from click.testing import CliRunner
    from flask.cli import FlaskGroup

    cli = FlaskGroup(create_app=lambda: Flask("without-procsync"), load_dotenv=False)
    result = CliRunner().invoke(cli, ["procsync", "--help"])
    assert result.exit_code == 0, result.output
    assert "status" in result.output and "serve" in result.output


def test_importing_the_extension_does_not_import_the_cli():
    import sys

    code = "import sys, procsync.flask_ext; print(sorted(m for m in sys.modules if m.startswith('procsync.cli')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
