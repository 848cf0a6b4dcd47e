"""The dashboard page in headless Chromium: log in, start a server by clicking, watch it run, stop it;
start and stop a group with its own buttons; reload a server; the resource sparklines and chart,
live from the event stream."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from flask import Flask
from helpers import free_port, listener_code, python_cmd, serving, wait_until

from procsync import ServerOrchestrator
from procsync.flask_ext import ProcSync
from procsync.flask_ext.events import hub_for

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

# Some work for the charts to show: CPU that rises and falls, memory that grows and is let go.
WORKER = (
    "import math, signal, time\n"
    "signal.signal(signal.SIGHUP, lambda *_: print('worker: config reloaded', flush=True))\n"
    "print('worker: connected to queue', flush=True)\n"
    "n, held = 0, []\n"
    "while True:\n"
    "    n += 1\n"
    "    busy = 0.1 * (0.05 + 0.12 * (1 + math.sin(n / 12)))\n"
    "    end = time.perf_counter() + busy\n"
    "    while time.perf_counter() < end:\n"
    "        pass\n"
    "    if n % 4 == 0:\n"
    "        if len(held) < 24:\n"
    "            held.append(b'x' * (1 << 20))\n"
    "        else:\n"
    "            held.clear()\n"
    "    if n % 5 == 0:\n"
    "        print(f'worker: job {n // 5} done in {busy * 1000:.0f} ms', flush=True)\n"
    "    time.sleep(0.1 - busy)\n"
)

MIGRATE = "print('migrate: 3 migrations applied', flush=True)\n"


@pytest.fixture
def site(tmp_path):
    orch = ServerOrchestrator(tmp_path / "state.json", interval=0.2, log_dir=tmp_path / "logs")
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
                   "stop_timeout": 2, "autorestart": "on-failure", "reload_signal": "SIGHUP",
                   "ports": [free_port()], "ports_required": False},  # offered, never listened on
    })
    app = Flask("browser")
    app.config.update(PROCSYNC_AUTH_TOKEN=TOKEN, PROCSYNC_EVENTS_HEARTBEAT=1.0)
    ProcSync(app, orch)
    with serving(app, "browser-http") as port:
        try:
            yield orch, f"http://127.0.0.1:{port}/procsync/"
        finally:
            orch.shutdown(stop_servers=True)


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

    # A port is a link once the server listens on it; an offered port it ignores is marked idle.
    worker_port = orch.get_server("worker").ports[0]
    web_link = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, 'tr.server[data-id="web"] .ports a'))
    assert web_link[0].text == f":{orch.get_server('web').ports[0]}"
    idle = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, 'tr.server[data-id="worker"] .ports .port-idle'))
    assert idle[0].text == f":{worker_port}" and "need not" in idle[0].get_attribute("title")
    wait.until(lambda d: orch.get_server("worker").health == "healthy")

    # The log panel follows the selected server live; its history is listed.
    browser.find_element(By.CSS_SELECTOR, 'tr.server[data-id="worker"] .name-btn').click()
    wait.until(lambda d: "job 2 done" in d.find_element(By.ID, "log").text)
    wait.until(lambda d: "started" in d.find_element(By.ID, "history").text)
    wait.until(lambda d: d.find_element(
        By.CSS_SELECTOR, 'tr.server[data-id="web"] .cell-pid').text.isdigit())

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


def points(driver, css: str) -> int:
    """How many points the SVG path `css` draws (one M or L command each)."""
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return len(re.findall(r"[ML]", found[0].get_attribute("d") or "")) if found else 0


def metrics_requests(driver, server_id: str) -> int:
    """How many times the page has asked for `server_id`'s resource history."""
    return driver.execute_script(
        "return performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('/servers/' + arguments[0] + '/metrics')).length;", server_id)


def test_dashboard_charts_cpu_and_memory_live(site, browser):
    orch, url = site
    wait = WebDriverWait(browser, 30)
    browser.get(url)
    log_in(browser, wait)
    browser.execute_script("performance.setResourceTimingBufferSize(100000);")
    orch.start_group("app")
    orch.start_server("worker")
    wait.until(lambda d: all(state_of(d, s) == "running" for s in ("web", "api", "worker")))

    # Each row: two sparklines, filled from the history route and then from health_check events.
    worker = 'tr.server[data-id="worker"] '
    cpu_spark, mem_spark = worker + ".spark-cpu", worker + ".spark-mem"
    wait.until(lambda d: points(d, cpu_spark + " .spark-line") > 2 and points(d, mem_spark + " .spark-line") > 2)
    spark = browser.find_element(By.CSS_SELECTOR, cpu_spark)
    assert spark.get_attribute("role") == "img"
    assert re.match(r"CPU, last \d+ s: now [\d.]+%, peak [\d.]+%$", spark.get_attribute("aria-label"))
    assert "Memory, last" in browser.find_element(By.CSS_SELECTOR, mem_spark).get_attribute("aria-label")

    # The detail panel: a chart of the history with CPU and memory lines.
    browser.find_element(By.CSS_SELECTOR, worker + ".name-btn").click()
    chart = "#res-chart svg.chart"
    wait.until(lambda d: points(d, chart + " .chart-line.cpu") > 2 and points(d, chart + " .chart-line.mem") > 2)
    label = browser.find_element(By.CSS_SELECTOR, chart).get_attribute("aria-label")
    assert label.startswith("CPU and memory of Job worker, last ") and "marked: 1 start, 0 exits" in label, label
    first_pid = orch.get_server("worker").pid
    assert len(browser.find_elements(By.CSS_SELECTOR, chart + f' .mark-start[data-pid="{first_pid}"]')) == 1

    # A new tick adds a point to the chart and the sparkline, from the event stream alone.
    asked = metrics_requests(browser, "worker")
    assert asked >= 1
    before, spark_before = points(browser, chart + " .chart-line.cpu"), points(browser, cpu_spark + " .spark-line")
    wait.until(lambda d: points(d, chart + " .chart-line.cpu") > before)
    wait.until(lambda d: points(d, cpu_spark + " .spark-line") > spark_before)
    assert metrics_requests(browser, "worker") == asked

    # Events lost while the stream was down come back from the route (?since=), leaving no gap.
    hub = hub_for(orch)
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/api/events*"]})
    hub.close()  # ends every stream; no event is kept for a replay until it connects again
    wait.until(lambda d: d.find_element(By.ID, "conn").get_attribute("data-state") == "down")
    missed = len(orch.get_metrics("worker").times) + 5
    wait_until(lambda: len(orch.get_metrics("worker").times) >= missed, 30, "ticks while disconnected")
    hub.connect()
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    wait.until(lambda d: d.find_element(By.ID, "conn").get_attribute("data-state") == "live")
    wait.until(lambda d: metrics_requests(d, "worker") == asked + 1)
    assert "?since=" in browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => n.includes('/servers/worker/metrics')).pop();")
    wait.until(lambda d: points(d, chart + " .chart-line.cpu") >= len(orch.get_metrics("worker").times))
    asked += 1

    # A restart: the old pid's exit and the new pid's start are marked on the time axis.
    wait_until(lambda: len(orch.get_metrics("worker").times) >= 40, 60, "worker history before the restart")
    old_pid = orch.get_server("worker").pid
    browser.find_element(By.CSS_SELECTOR, worker + 'button[data-action="restart"]').click()
    def restarted(_):  # one status: two calls could see the old run, then the stop's pid None
        status = orch.get_server("worker")
        return status.running and status.pid not in (None, old_pid) and status.pid

    new_pid = wait.until(restarted)
    start_mark = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, chart + f' .mark-start[data-pid="{new_pid}"]'))
    assert start_mark[0].find_element(By.CSS_SELECTOR, "title").get_attribute(
        "textContent").endswith(f"start: pid {new_pid} running")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, chart + f' .mark-exit[data-pid="{old_pid}"]'))
    assert metrics_requests(browser, "worker") == asked  # marks came with the events too

    # What the page holds matches the route: a reload of the page draws the same marks from it.
    marks = orch.get_metrics("worker").marks
    assert [(m.kind, m.pid) for m in marks if m.kind in ("start", "exit")] == [
        ("start", old_pid), ("exit", old_pid), ("start", new_pid)]

    # The picture for docs/: some history, the sparklines and the open chart.
    wait_until(lambda: len(orch.get_metrics("worker").times) >= 120, 60, "worker history to build up")
    browser.refresh()
    wait.until(lambda d: d.find_element(By.ID, "conn").get_attribute("data-state") == "live")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.server")) == 4)
    browser.find_element(By.CSS_SELECTOR, worker + ".name-btn").click()
    wait.until(lambda d: points(d, chart + " .chart-line.cpu") >= 80)
    reloaded = [(e.get_attribute("data-kind"), e.get_attribute("data-pid"))
                for e in browser.find_elements(By.CSS_SELECTOR, chart + " .mark")]
    assert [m for m in reloaded if m[0] != "health"] == [
        ("start", str(old_pid)), ("exit", str(old_pid)), ("start", str(new_pid))]
    browser.set_window_size(1280, 1040)
    browser.execute_script("document.querySelectorAll('.toast').forEach(t => t.remove()); window.scrollTo(0, 0);")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000
