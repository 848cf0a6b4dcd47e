"""Issue 11, the Flask extension's HTTP layer: auth callable, loopback clients, bad input,
token-authenticated POSTs, 404 before body checks, and server ids that are JS property names."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from flask import Flask, redirect
from helpers import free_port, listener_code, python_cmd, serving, wait_until

from procsync.flask_ext import ProcSync

P = "/procsync/api"
TOKEN = "hardening-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"
REMOTE = {"REMOTE_ADDR": "10.1.2.3"}

READ_ROUTES = [
    f"{P}/servers", f"{P}/servers/sleeper", f"{P}/servers/sleeper/logs",
    f"{P}/servers/sleeper/history", f"{P}/servers/sleeper/logs/stream", f"{P}/events",
]


def assert_error(resp, status, code=None):
    text = resp.get_data(as_text=True)
    assert resp.status_code == status, text[:300]
    assert resp.is_json, text[:200]
    body = resp.get_json()
    assert isinstance(body["error"], str) and isinstance(body["message"], str), body
    if code is not None:
        assert body["error"] == code, body
    assert "Traceback" not in text
    return body


@pytest.fixture
def registered(orch):
    orch.register_servers({"sleeper": {"command": python_cmd(SLEEPER), "stop_timeout": 2}})
    return orch


def make_app(orch, *, token=None, auth=None, name="hardening"):
    app = Flask(name)
    if token:
        app.config["PROCSYNC_AUTH_TOKEN"] = token
    ProcSync(app, orch, auth=auth)
    return app


# -- defect 2: only `True` from the auth callable allows --------------------------------


@pytest.mark.parametrize("answer", ["no", 1, "yes", [1], 1.0, "redirect"],
                         ids=["no", "one", "yes", "list", "float", "response"])
def test_auth_callable_must_return_exactly_true(registered, answer):
    app = Flask("auth-truthy")

    def auth(action):
        return redirect("/login") if answer == "redirect" else answer

    ProcSync(app, registered, auth=auth)
    client = app.test_client()
    assert_error(client.get(f"{P}/servers"), 403, "forbidden")
    assert_error(client.post(f"{P}/servers/sleeper/start", json={}), 403, "forbidden")
    assert registered.get_server("sleeper").status == "stopped"


def test_auth_callable_returning_true_allows(registered):
    app = Flask("auth-true")
    ProcSync(app, registered, auth=lambda action: True)
    client = app.test_client()
    assert client.get(f"{P}/servers").status_code == 200
    resp = client.post(f"{P}/servers/sleeper/start", json={})
    assert resp.status_code == 200, resp.get_json()


# -- defect 4: without a token, every /api route needs a loopback client ----------------


@pytest.mark.parametrize("path", READ_ROUTES)
def test_without_token_a_remote_client_with_a_loopback_host_cannot_read(registered, path):
    client = make_app(registered).test_client()
    resp = client.get(path, environ_base=REMOTE, headers={"Host": "127.0.0.1"})
    try:
        body = assert_error(resp, 403, "remote_refused")
    finally:
        resp.close()
    assert "10.1.2.3" in body["message"]


def test_without_token_remote_clients_cannot_read_the_openapi_document(registered):
    client = make_app(registered).test_client()
    assert_error(client.get(f"{P}/openapi.json", environ_base=REMOTE,
                            headers={"Host": "localhost"}), 403, "remote_refused")


@pytest.mark.parametrize("addr", ["127.0.0.1", "127.5.6.7", "::1", "::ffff:127.0.0.1"])
def test_without_token_loopback_clients_read_and_host_checks_stay(registered, addr):
    client = make_app(registered).test_client()
    env = {"REMOTE_ADDR": addr}
    assert client.get(f"{P}/servers", environ_base=env).status_code == 200
    rebound = client.get(f"{P}/servers", environ_base=env, headers={"Host": "evil.example"})
    assert_error(rebound, 403, "bad_host")


def test_with_a_token_remote_clients_read(registered):
    client = make_app(registered, token=TOKEN).test_client()
    resp = client.get(f"{P}/servers", environ_base=REMOTE, headers=BEARER)
    assert resp.status_code == 200


# -- defect 6: bad input answers 4xx, never 500 -----------------------------------------


def test_deeply_nested_json_is_bad_json(registered):
    client = make_app(registered).test_client()
    for raw in ("[" * 60_000, '{"wait": ' + "[" * 60_000):
        resp = client.post(f"{P}/servers/sleeper/start", data=raw,
                           content_type="application/json")
        assert_error(resp, 400, "bad_json")
    assert registered.get_server("sleeper").status == "stopped"


@pytest.mark.parametrize("value", ["\u00b2", "\u00b2\u00b3", "9" * 5000, "12x", "-3"])
def test_odd_last_event_id_is_ignored(registered, value):
    client = make_app(registered).test_client()
    resp = client.get(f"{P}/events", headers={"Last-Event-ID": value})
    try:
        assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
        assert resp.mimetype == "text/event-stream"
        first = next(iter(resp.response))
        assert first.startswith(b"retry:")
    finally:
        resp.close()


def test_start_cancelled_by_a_concurrent_stop_is_409(orch):
    port = free_port()
    orch.register_server("slow", {"command": python_cmd(listener_code(port, delay=60)),
                                  "ports": [port], "start_timeout": 90, "stop_timeout": 2})
    app = make_app(orch)
    answers = {}

    def start():
        answers["start"] = app.test_client().post(f"{P}/servers/slow/start", json={})

    starter = threading.Thread(target=start, name="test-start", daemon=True)
    starter.start()
    try:
        wait_until(lambda: orch.get_server("slow").pid is not None, 20, "the slow server spawned")
        assert orch.get_server("slow").status == "starting"
        stop = app.test_client().post(f"{P}/servers/slow/stop", json={})
        assert stop.status_code == 200, stop.get_json()
    finally:
        starter.join(30)
    assert not starter.is_alive()
    body = assert_error(answers["start"], 409, "start_cancelled")
    assert "cancelled" in body["message"] and body["success"] is False
    assert orch.get_server("slow").status == "stopped"


# -- defect 10a: a token-authenticated POST needs no Content-Type -----------------------


def test_token_post_without_body_or_content_type_is_accepted(registered):
    client = make_app(registered, token=TOKEN).test_client()
    resp = client.post(f"{P}/servers/sleeper/start", headers=BEARER)  # curl -X POST -H ...
    assert resp.status_code == 200, resp.get_json()
    assert registered.get_server("sleeper").running
    # curl -d '{}' sends a form content type: the JSON body is still read
    stop = client.post(f"{P}/servers/sleeper/stop", headers=BEARER, data="{}",
                       content_type="application/x-www-form-urlencoded")
    assert stop.status_code == 200, stop.get_json()
    bad = client.post(f"{P}/servers/sleeper/start", headers=BEARER, data="a=1",
                      content_type="application/x-www-form-urlencoded")
    assert_error(bad, 400, "bad_json")
    # without the token, nothing changes: 401 first
    assert_error(client.post(f"{P}/servers/sleeper/start"), 401, "unauthorized")
    assert registered.get_server("sleeper").status == "stopped"


def test_csrf_checks_stay_for_loopback_trust_and_the_auth_callable(registered):
    for app in (make_app(registered, name="loopback"),
                make_app(registered, auth=lambda action: True, name="cookie")):
        client = app.test_client()
        assert_error(client.post(f"{P}/servers/sleeper/start"), 400, "bad_content_type")
        assert_error(client.post(f"{P}/servers/sleeper/start", data="{}",
                                 content_type="text/plain"), 400, "bad_content_type")
        assert_error(client.post(f"{P}/servers/sleeper/start", json={},
                                 headers={"Origin": "http://evil.example"}), 403, "cross_origin")
        assert_error(client.post(f"{P}/servers/sleeper/start", json={},
                                 headers={"Sec-Fetch-Site": "cross-site"}), 403, "cross_origin")
    assert registered.get_server("sleeper").status == "stopped"


# -- defect 10b: an unknown id is a 404 whatever the body -------------------------------


@pytest.mark.parametrize("action, body", [
    ("kill-orphan", {"pid": "x"}), ("kill-orphan", {"nope": 1}), ("kill-orphan", {}),
    ("start", {"wait": "x"}), ("start", {"bogus": True}), ("stop", {"bogus": True}),
    ("restart", {"bogus": True}),
])
def test_unknown_id_is_404_before_the_body_is_checked(registered, action, body):
    client = make_app(registered).test_client()
    resp = client.post(f"{P}/servers/no-such-server/{action}", json=body)
    assert "no-such-server" in assert_error(resp, 404, "unknown")["message"]


# -- defect 7: ids that are Object.prototype property names, in a real browser ----------

CHROMIUM = os.environ.get("PROCSYNC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PROCSYNC_CHROMEDRIVER", "/usr/bin/chromedriver")
HAVE_BROWSER = Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()
PROTO_IDS = ["constructor", "__proto__", "toString", "hasOwnProperty"]


@pytest.fixture
def proto_site(orch):
    orch.register_servers({sid: {"command": python_cmd(SLEEPER), "stop_timeout": 2}
                           for sid in PROTO_IDS})
    app = Flask("proto-ids")
    app.config["PROCSYNC_EVENTS_HEARTBEAT"] = 1.0
    ProcSync(app, orch)  # no token: the browser is a loopback client
    with serving(app, "proto-http") as port:
        try:
            yield orch, f"http://127.0.0.1:{port}/procsync/"
        finally:
            orch.stop_all()


@pytest.fixture
def browser(tmp_path):
    if not HAVE_BROWSER and not os.environ.get("CI"):
        pytest.skip("chromium and chromedriver are not installed (the test runs in CI)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_dashboard_handles_ids_named_like_object_properties(proto_site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    orch, url = proto_site
    wait = WebDriverWait(browser, 30)

    def state(d, sid):
        found = d.find_elements(By.CSS_SELECTOR, f'tr.server[data-id="{sid}"] [data-role="state"]')
        return found[0].text if found else None

    browser.get(url)
    try:
        wait.until(lambda d: all(state(d, sid) == "stopped" for sid in PROTO_IDS))
        wait.until(lambda d: d.find_element(By.ID, "conn").get_attribute("data-state") == "live")
        # A click goes through the row's own handlers; the result arrives by /events.
        browser.find_element(
            By.CSS_SELECTOR, 'tr.server[data-id="__proto__"] button[data-action="start"]').click()
        wait.until(lambda d: state(d, "__proto__") == "running")
        orch.start_server("constructor")
        wait.until(lambda d: state(d, "constructor") == "running")
        browser.find_element(
            By.CSS_SELECTOR, 'tr.server[data-id="__proto__"] .name-btn').click()
        wait.until(lambda d: "up" in d.find_element(By.ID, "log").text)
        browser.find_element(
            By.CSS_SELECTOR, 'tr.server[data-id="constructor"] button[data-action="stop"]').click()
        wait.until(lambda d: state(d, "constructor") == "stopped")
        summary = browser.find_element(By.ID, "summary").text
        assert summary.startswith("1 of 4 running"), summary
        assert [r.get_attribute("data-id") for r in
                browser.find_elements(By.CSS_SELECTOR, "tr.server")] == PROTO_IDS
    finally:
        errors = [e["message"] for e in browser.get_log("browser")
                  if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    assert not errors, errors


@pytest.mark.parametrize("prefix", ["/pro sync", "/a?b", "/a#b", "/ünï", "/a/../b", '/x"y'])
def test_url_prefix_that_cannot_be_in_a_url_is_refused(tmp_path, prefix):
    """PROCSYNC_URL_PREFIX (and the url_prefix option) get the same rule as the config file's."""
    from flask import Flask

    from procsync import ServerOrchestrator
    from procsync.flask_ext import ProcSync

    orch = ServerOrchestrator(tmp_path / "state.json", log_dir=tmp_path / "logs")
    try:
        app = Flask(__name__)
        app.config["PROCSYNC_URL_PREFIX"] = prefix
        with pytest.raises(ValueError, match="PROCSYNC_URL_PREFIX"):
            ProcSync(app, orch)
        with pytest.raises(ValueError, match="url_prefix"):
            ProcSync(Flask(__name__), orch, url_prefix=prefix)
    finally:
        orch.shutdown()
