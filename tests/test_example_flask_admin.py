"""examples/flask_admin: a login, two roles and CSRF protection in front of real servers."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from helpers import PY, free_port, is_gone, running_counts, serving, wait_until

from procsync.health import port_open

APP_FILE = Path(__file__).resolve().parent.parent / "examples" / "flask_admin" / "app.py"
API = "/procsync/api"


def load_example():
    """The example's module, imported from its file under a name of its own."""
    spec = importlib.util.spec_from_file_location("flask_admin_example", APP_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = load_example()


@pytest.fixture
def port():
    return free_port()


@pytest.fixture
def app(tmp_path, port):
    """The example app on a temp state file, with one server `web` on a free port."""
    app = example.create_app({
        "SECRET_KEY": "test-secret",
        "STATE_FILE": str(tmp_path / "state.json"),
        "LOG_DIR": str(tmp_path / "logs"),
        "SERVERS": {"web": {
            "command": [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
            "ports": [port],
        }},
    })
    try:
        yield app
    finally:
        app.extensions["procsync"].shutdown(stop_servers=True)


def client_as(app, user=None):
    """A test client whose session cookie belongs to `user` (None: anonymous)."""
    client = app.test_client()
    if user is not None:
        resp = client.post("/login", data={"username": user, "password": user})
        assert resp.status_code == 302, resp.data
    return client


def assert_nothing_started(app, port):
    status = app.extensions["procsync"].get_server("web")
    assert (status.status, status.pid) == ("stopped", None)
    assert not port_open(port, timeout=0.2)
    assert running_counts()["web"] == 0


def test_anonymous_gets_403_from_the_api_and_the_login_form_for_the_page(app, port):
    client = client_as(app)
    resp = client.get(f"{API}/servers")
    assert (resp.status_code, resp.json["error"]) == (403, "forbidden")
    resp = client.post(f"{API}/servers/web/start", json={})
    assert (resp.status_code, resp.json["error"]) == (403, "forbidden")
    resp = client.get("/procsync/")
    assert (resp.status_code, resp.location) == (302, "/login?next=/procsync/")
    assert_nothing_started(app, port)


def test_a_wrong_password_logs_nobody_in(app):
    client = app.test_client()
    resp = client.post("/login", data={"username": "operator", "password": "viewer"})
    assert resp.status_code == 401
    assert b"Wrong user name or password." in resp.data
    assert client.get(f"{API}/servers").status_code == 403


def test_login_goes_back_to_the_page_asked_for_but_never_to_another_site(app):
    client = app.test_client()
    login = {"username": "viewer", "password": "viewer"}
    assert client.post("/login?next=/procsync/", data=login).location == "/procsync/"
    assert client.post("/login?next=//evil.example/", data=login).location == "/"
    assert client.post("/login?next=https://evil.example/", data=login).location == "/"
    assert client.get("/procsync/").status_code == 200


def test_viewer_can_read_but_not_start(app, port):
    client = client_as(app, "viewer")
    resp = client.get(f"{API}/servers")
    assert resp.status_code == 200
    assert [(s["id"], s["status"]) for s in resp.json["servers"]] == [("web", "stopped")]
    resp = client.post(f"{API}/servers/web/start", json={})
    assert resp.status_code == 403
    assert resp.json == {"error": "forbidden", "message": "not allowed to control"}
    assert_nothing_started(app, port)


def test_operator_starts_and_stops_a_real_server(app, port):
    client = client_as(app, "operator")
    resp = client.post(f"{API}/servers/web/start", json={})
    assert resp.status_code == 200, resp.json
    pid = resp.json["pid"]
    assert psutil.Process(pid).is_running()
    assert port_open(port, timeout=1.0)
    assert client.get(f"{API}/servers/web").json["status"] == "running"

    resp = client.post(f"{API}/servers/web/stop", json={})
    assert resp.status_code == 200, resp.json
    wait_until(lambda: is_gone(pid), 10, "the stopped server's pid to be gone")
    assert not port_open(port, timeout=0.2)
    assert client.get(f"{API}/servers/web").json["status"] == "stopped"


@pytest.mark.parametrize(("headers", "content_type", "status", "error"), [
    ({"Origin": "https://evil.example"}, "application/json", 403, "cross_origin"),
    ({"Sec-Fetch-Site": "cross-site"}, "application/json", 403, "cross_origin"),
    ({}, "application/x-www-form-urlencoded", 400, "bad_content_type"),  # an HTML form's POST
], ids=["foreign-origin", "cross-site-fetch", "form-post"])
def test_cross_site_requests_with_the_operators_cookie_start_nothing(
        app, port, headers, content_type, status, error):
    client = client_as(app, "operator")
    body = "{}" if content_type == "application/json" else "wait=1"
    resp = client.post(f"{API}/servers/web/start", data=body, content_type=content_type,
                       headers=headers)
    assert (resp.status_code, resp.json["error"]) == (status, error)
    assert_nothing_started(app, port)

    # the same cookie from the app's own page (same Origin) is accepted
    resp = client.post(f"{API}/servers/web/start", json={},
                       headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"})
    assert resp.status_code == 200, resp.json
    assert client.post(f"{API}/servers/web/stop", json={}).status_code == 200


def test_logging_out_removes_access(app, port):
    client = client_as(app, "operator")
    assert client.get(f"{API}/servers").status_code == 200
    resp = client.post("/logout")
    assert (resp.status_code, resp.location) == (302, "/login")
    assert client.get(f"{API}/servers").status_code == 403
    assert client.post(f"{API}/servers/web/start", json={}).status_code == 403
    assert_nothing_started(app, port)


class Browser:
    """Requests over a real loopback connection, carrying the session cookie as a browser does."""

    def __init__(self, port: int) -> None:
        self.port, self.cookie = port, None

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = dict(headers or {})
        if self.cookie:
            headers["Cookie"] = self.cookie
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if set_cookie := resp.getheader("Set-Cookie"):
            self.cookie = set_cookie.split(";", 1)[0]
        return resp, set_cookie, data


def test_the_session_cookie_over_real_http(app, port):
    with serving(app, "flask-admin-test") as http_port:
        browser = Browser(http_port)
        origin = f"http://127.0.0.1:{http_port}"
        json_post = {"Content-Type": "application/json", "Origin": origin}

        resp, set_cookie, _ = browser.request(
            "POST", "/login", "username=operator&password=operator",
            {"Content-Type": "application/x-www-form-urlencoded"})
        assert resp.status == 302
        assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie

        resp, _, data = browser.request("GET", f"{API}/servers")
        assert resp.status == 200 and json.loads(data)["servers"][0]["id"] == "web"

        resp, _, data = browser.request("POST", f"{API}/servers/web/start", "{}",
                                        {**json_post, "Origin": "https://evil.example"})
        assert (resp.status, json.loads(data)["error"]) == (403, "cross_origin")
        assert_nothing_started(app, port)

        resp, _, data = browser.request("POST", f"{API}/servers/web/start", "{}", json_post)
        assert resp.status == 200, data
        pid = json.loads(data)["pid"]
        assert port_open(port, timeout=1.0)
        resp, _, data = browser.request("POST", f"{API}/servers/web/stop", "{}", json_post)
        assert resp.status == 200, data
        wait_until(lambda: is_gone(pid), 10, "the stopped server's pid to be gone")

        resp, _, _ = browser.request("POST", "/logout")
        assert resp.status == 302
        resp, _, data = browser.request("GET", f"{API}/servers")
        assert (resp.status, json.loads(data)["error"]) == (403, "forbidden")


def test_flask_app_option_finds_the_factory(tmp_path):
    env = {**os.environ, "FLASK_STATE_FILE": str(tmp_path / "state.json"),
           "FLASK_LOG_DIR": str(tmp_path / "logs"), "FLASK_SECRET_KEY": "test-secret"}
    proc = subprocess.run([PY, "-m", "flask", "--app", str(APP_FILE), "routes"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for rule in ("/login", "/logout", "/procsync/", f"{API}/servers/<server_id>/start"):
        assert rule in proc.stdout
    # the factory's orchestrator opened the state file that FLASK_STATE_FILE names
    assert list(tmp_path.glob("state.json*"))
