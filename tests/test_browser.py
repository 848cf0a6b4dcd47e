"""The dashboard page in headless Chromium: log in, start a server by clicking, watch it run, stop it;
start and stop a group with its own buttons; reload a server."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from flask import Flask
from helpers import free_port, listener_code, python_cmd
from werkzeug.serving import make_server

from procsync import ServerOrchestrator
from procsync.flask_ext import ProcSync

CHROMIUM = os.environ.get("PROCSYNC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PROCSYNC_CHROMEDRIVER", "/usr/bin/chromedriver")
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "dashboard.png"
TOKEN = "browser-token"

HAVE_BROWSER = Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()
if not HAVE_BROWSER and not os.environ.get("CI"):
    pytest.skip("chromium and chromedriver are not installed (the test runs in CI)",
                allow_module_level=True)

if not os.environ.get("CI"):
    pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402  (after the skip: CI must have selenium)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WORKER = (
    "import signal, time\n"
    "signal.signal(signal.SIGHUP, lambda *_: print('worker: config reloaded', flush=True))\n"
    "print('worker: connected to queue', flush=True)\n"
    "n = 0\n"
    "while True:\n"
    "    n += 1\n"
    "    print(f'worker: job {n} done in 12 ms', flush=True)\n"
    "    time.sleep(0.5)\n"
)
MIGRATE = "print('migrate: 3 migrations applied', flush=True)\n"


@pytest.fixture
def site(tmp_path):
    orch = ServerOrchestrator(tmp_path / "state.json", interval=0.5, log_dir=tmp_path / "logs")
    web_port, api_port = free_port(), free_port()
    orch.register_servers({
        "migrate": {"name": "Migrations", "command": python_cmd(MIGRATE), "kind": "job",
                    "group": "app", "color": "#8e4ec6"},
        "web": {"name": "Web frontend", "command": python_cmd(listener_code(web_port)),
                "ports": [web_port], "color": "#3e63dd", "stop_timeout": 2, "group": "app"},
        "api": {"name": "API server", "command": python_cmd(listener_code(api_port)),
                "ports": [api_port], "color": "#12a594", "stop_timeout": 2, "group": "app",
                "depends_on": {"migrate": "completed_successfully", "web": "healthy"}},
        "worker": {"name": "Job worker", "command": python_cmd(WORKER), "color": "#e5484d",
                   "stop_timeout": 2, "autorestart": "on-failure", "reload_signal": "SIGHUP"},
    })
    app = Flask("browser")
    app.config.update(PROCSYNC_AUTH_TOKEN=TOKEN, PROCSYNC_EVENTS_HEARTBEAT=1.0)
    ProcSync(app, orch)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="browser-http", daemon=True)
    thread.start()
    try:
        yield orch, f"http://127.0.0.1:{server.server_port}/procsync/"
    finally:
        orch.shutdown(stop_servers=True)
        server.shutdown()
        thread.join(5)
        server.server_close()


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def state_of(driver, server_id: str) -> str:
    return driver.find_element(
        By.CSS_SELECTOR, f'tr.server[data-id="{server_id}"] [data-role="state"]').text


def log_in(driver, wait) -> None:
    """Give the token and wait for the four rows and the live stream."""
    token_input = wait.until(ec.visibility_of_element_located((By.ID, "token")))
    token_input.send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.server")) == 4)
    wait.until(lambda d: d.find_element(By.ID, "conn").get_attribute("data-state") == "live")


def test_dashboard_starts_and_stops_a_server_live(site, browser):
    orch, url = site
    wait = WebDriverWait(browser, 30)  # generous: CI machines can be busy
    browser.get(url)

    # The shell holds no data: it asks for the token once, then reads the API with it.
    log_in(browser, wait)
    assert state_of(browser, "web") == "stopped"
    assert TOKEN not in browser.current_url
    marker = browser.execute_script("window.__noReload = 1; return window.__noReload;")
    assert marker == 1

    # Start by clicking; the row turns "running" from /events, without a reload.
    browser.find_element(By.CSS_SELECTOR, 'tr.server[data-id="web"] button[data-action="start"]').click()
    wait.until(lambda d: state_of(d, "web") == "running")
    assert orch.get_server("web").running
    browser.find_element(By.CSS_SELECTOR, 'tr.server[data-id="worker"] button[data-action="start"]').click()
    browser.find_element(By.CSS_SELECTOR, 'tr.server[data-id="api"] button[data-action="start"]').click()
    wait.until(lambda d: state_of(d, "worker") == "running" and state_of(d, "api") == "running")
    wait.until(lambda d: state_of(d, "migrate") == "completed")  # api waited for it
    assert browser.execute_script("return window.__noReload;") == 1

    # The log panel follows the selected server live; its history is listed.
    browser.find_element(By.CSS_SELECTOR, 'tr.server[data-id="worker"] .name-btn').click()
    wait.until(lambda d: "job 2 done" in d.find_element(By.ID, "log").text)
    wait.until(lambda d: "started" in d.find_element(By.ID, "history").text)
    wait.until(lambda d: d.find_element(
        By.CSS_SELECTOR, 'tr.server[data-id="web"] .cell-pid').text.isdigit())
    browser.execute_script("document.querySelectorAll('.toast').forEach(t => t.remove());")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))

    # An error from the API is shown as a toast with its message.
    # (enable and click in one script: a live update between the two would disable it again)
    browser.execute_script(
        "const b = document.querySelector('tr.server[data-id=\"web\"] button[data-action=\"start\"]');"
        " b.disabled = false; b.click();")
    wait.until(lambda d: "already running" in d.find_element(By.ID, "toasts").text)

    # Stop by clicking.
    browser.find_element(By.CSS_SELECTOR, 'tr.server[data-id="web"] button[data-action="stop"]').click()
    wait.until(lambda d: state_of(d, "web") == "stopped")
    assert not orch.get_server("web").running
    assert browser.execute_script("return window.__noReload;") == 1
    assert SCREENSHOT.stat().st_size > 10_000


def test_dashboard_groups_servers_and_starts_a_group(site, browser):
    orch, url = site
    wait = WebDriverWait(browser, 30)
    browser.get(url)
    log_in(browser, wait)

    # One section per group, in the order of its first server, then the servers in no group.
    sections = browser.find_elements(By.CSS_SELECTOR, "#servers tbody")
    assert [s.get_attribute("data-group") for s in sections] == ["app", ""]
    app = sections[0]
    assert [r.get_attribute("data-id") for r in app.find_elements(By.CSS_SELECTOR, "tr.server")] == [
        "migrate", "web", "api"]
    assert app.find_element(By.CSS_SELECTOR, "tr.group-head .group-name").text == "app"
    buttons = {b.get_attribute("data-group-action"): b
               for b in app.find_elements(By.CSS_SELECTOR, "tr.group-head button")}
    assert sorted(buttons) == ["restart", "start", "stop"]
    assert buttons["start"].is_enabled() and not buttons["stop"].is_enabled()
    ungrouped = sections[1]
    assert ungrouped.find_element(By.CSS_SELECTOR, "tr.group-head").is_displayed()
    assert not ungrouped.find_elements(By.CSS_SELECTOR, "tr.group-head button")
    assert [r.get_attribute("data-id") for r in ungrouped.find_elements(By.CSS_SELECTOR, "tr.server")] == [
        "worker"]

    # What a row says about jobs and dependencies; Reload only where a reload_signal is set.
    row = 'tr.server[data-id="{}"] '.format
    assert browser.find_element(By.CSS_SELECTOR, row("migrate") + '[data-role="kind"]').is_displayed()
    assert not browser.find_element(By.CSS_SELECTOR, row("web") + '[data-role="kind"]').is_displayed()
    assert "depends on: migrate (completed_successfully), web (healthy)" in browser.find_element(
        By.CSS_SELECTOR, row("api") + ".sub").text
    assert not browser.find_element(By.CSS_SELECTOR, row("web") + '[data-action="reload"]').is_displayed()
    reload_button = browser.find_element(By.CSS_SELECTOR, row("worker") + '[data-action="reload"]')
    assert reload_button.is_displayed() and not reload_button.is_enabled()  # not running yet

    # The group's Start starts its servers in dependency order.
    buttons["start"].click()
    wait.until(lambda d: state_of(d, "web") == "running" and state_of(d, "api") == "running")
    wait.until(lambda d: state_of(d, "migrate") == "completed")
    assert orch.get_server("web").running and orch.get_server("api").running
    assert orch.get_server("migrate").status == "completed"
    wait.until(lambda d: "exit code 0" in d.find_element(By.CSS_SELECTOR, row("migrate") + ".sub").text)
    assert not orch.get_server("worker").running  # not in the group
    wait.until(lambda d: "app: start done" in d.find_element(By.ID, "toasts").text)
    wait.until(lambda d: d.find_element(
        By.CSS_SELECTOR, 'tbody[data-group="app"] .group-count').text == "3 servers · 2 running")
    wait.until(lambda d: d.find_element(
        By.CSS_SELECTOR, 'tbody[data-group="app"] button[data-group-action="stop"]').is_enabled())

    # Reload: the worker gets its SIGHUP and keeps its pid.
    browser.find_element(By.CSS_SELECTOR, row("worker") + '[data-action="start"]').click()
    wait.until(lambda d: state_of(d, "worker") == "running")
    pid = orch.get_server("worker").pid
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, row("worker") + '[data-action="reload"]').is_enabled())
    browser.find_element(By.CSS_SELECTOR, row("worker") + '[data-action="reload"]').click()
    wait.until(lambda d: "reload done" in d.find_element(By.ID, "toasts").text)
    wait.until(lambda d: any("config reloaded" in line for line in orch.tail_log("worker", 50)))
    assert orch.get_server("worker").pid == pid

    # The group's Stop stops them all.
    browser.find_element(By.CSS_SELECTOR, 'tbody[data-group="app"] button[data-group-action="stop"]').click()
    wait.until(lambda d: state_of(d, "web") == "stopped" and state_of(d, "api") == "stopped")
    assert not orch.get_server("web").running and not orch.get_server("api").running
    assert orch.get_server("worker").running
