"""The dashboard inside a Django project, in headless Chromium: logged in by Django's session,
a click starts and stops a real server; the page sends Django's CSRF token with each POST."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import free_port, is_gone, listener_code, python_cmd, stop_group, wait_until
from test_browser import browser, state_of  # noqa: F401  (a fixture)

from procsync.health import port_open

pytest.importorskip("django", reason="procsync.django_ext needs django (the test extra has it)")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

__all__ = ["browser"]

PROJECT = Path(__file__).resolve().parent / "django_project"

LOGGED_IN = textwrap.dedent("""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    print(session.session_key)
""")


@pytest.fixture
def project(tmp_path):
    """The test project under runserver on its own servers; yields (url, web's port, the env)."""
    web_port = free_port()
    setting = {"servers": {"web": {"command": python_cmd(listener_code(web_port)),
                                   "ports": [web_port], "stop_timeout": 2},
                           "worker": {"command": python_cmd("import time\nwhile True: time.sleep(1)")}},
               "state_file": str(tmp_path / "state.json"), "log_dir": str(tmp_path / "logs"),
               "interval": 0.2}
    env = {**os.environ, "DJPROJECT_PROCSYNC": json.dumps(setting),
           "DJPROJECT_DB": str(tmp_path / "db.sqlite3")}

    def manage(*args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    manage("migrate", "-v", "0")
    session = manage("shell", "-c", LOGGED_IN).strip().splitlines()[-1]
    port = free_port()
    server = subprocess.Popen([sys.executable, "manage.py", "runserver", "--noreload",
                               f"127.0.0.1:{port}"], cwd=PROJECT, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open(port), 60, "runserver to listen")
        yield f"http://127.0.0.1:{port}", session, web_port
    finally:
        stop_group(server)
        manage("procsync", "stop", "--all")


def test_a_staff_user_starts_and_stops_a_server_from_the_dashboard(project, browser):  # noqa: F811
    url, session, web_port = project
    browser.get(f"{url}/login/")  # a page of the site, so the cookie is for its host
    browser.add_cookie({"name": "sessionid", "value": session, "path": "/"})
    browser.get(f"{url}/procsync/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.server")) == 2)
    wait.until(lambda d: d.find_element(By.ID, "conn").get_attribute("data-state") == "live")
    assert not browser.find_element(By.ID, "token").is_displayed()  # Django's login, no token
    browser.find_element(By.CSS_SELECTOR, 'tr.server[data-id="web"] button[data-action="start"]').click()
    wait.until(lambda d: state_of(d, "web") == "running")
    assert port_open(web_port)
    pid = int(browser.find_element(By.CSS_SELECTOR, 'tr.server[data-id="web"] td.cell-pid').text)
    browser.find_element(By.CSS_SELECTOR, 'tr.server[data-id="web"] button[data-action="stop"]').click()
    wait.until(lambda d: state_of(d, "web") == "stopped")
    wait_until(lambda: is_gone(pid), 10, f"web (pid {pid}) to end")
