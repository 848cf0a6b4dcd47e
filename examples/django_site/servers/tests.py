"""Tests of the example, with real processes: ``python manage.py test``.

Under a test run, procsync's app keeps the state file and logs in a temporary
folder (the site's own .procsync/ is never read or written), and
``close_orchestrator(stop_servers=True)`` stops what a test started. The
tests that run the site in a process of its own (runserver, gunicorn) point
it at a procsync.toml in a temporary folder through PROCSYNC_CONFIG, and
stop every server of that file in their cleanup.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client, SimpleTestCase, TestCase

from procsync import ServerOrchestrator
from procsync.config import load_config
from procsync.django_ext import close_orchestrator, get_orchestrator

SITE = Path(__file__).resolve().parent.parent  # the folder of manage.py
TIMEOUT = 30.0
TOKEN = "example-test-token"


def wait_until(predicate, timeout=TIMEOUT, what="condition"):
    """Poll `predicate` every 10 ms until it is truthy; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)
    return result


def is_gone(pid: int) -> bool:
    """True when `pid` no longer runs (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class ProcsyncInTestsTests(TestCase):
    """procsync's API, dashboard and command inside the test run, on a temporary state file."""

    @classmethod
    def setUpTestData(cls):
        cls.staff = User.objects.create_user("staff", password="pw", is_staff=True)
        cls.visitor = User.objects.create_user("visitor", password="pw")

    def setUp(self):
        self.addCleanup(close_orchestrator, stop_servers=True)  # stops what the test started
        self.client = Client(enforce_csrf_checks=True)  # the CSRF check a browser gets

    def csrf_token(self) -> str:
        """Open the dashboard page, as a browser would; Django's CSRF cookie comes with it."""
        page = self.client.get("/procsync/")
        self.assertEqual(page.status_code, 200)
        return self.client.cookies["csrftoken"].value

    def test_state_is_temporary(self):
        state = Path(get_orchestrator().store.path)
        self.assertNotEqual(state, SITE / ".procsync" / "state.json")
        self.assertFalse(state.is_relative_to(SITE))
        self.assertEqual(list(get_orchestrator().configs), ["web", "worker"])  # the site's servers

    def test_staff_starts_a_server(self):
        self.client.force_login(self.staff)
        answer = self.client.post("/procsync/api/servers/worker/start", {},
                                  content_type="application/json",
                                  HTTP_X_CSRFTOKEN=self.csrf_token())
        self.assertEqual(answer.status_code, 200, answer.content)
        pid = answer.json()["pid"]
        self.assertFalse(is_gone(pid))
        server = self.client.get("/procsync/api/servers/worker").json()
        self.assertEqual((server["status"], server["pid"]), ("running", pid))
        self.assertEqual(get_orchestrator().get_server("worker").pid, pid)

    def test_a_post_without_the_csrf_token_is_refused(self):
        self.client.force_login(self.staff)
        answer = self.client.post("/procsync/api/servers/worker/start", {},
                                  content_type="application/json")
        self.assertEqual(answer.status_code, 403)
        self.assertEqual(answer.json()["error"], "csrf_failed")
        self.assertEqual(get_orchestrator().get_server("worker").status, "stopped")

    def test_others_may_not_view_nor_control(self):
        self.client.force_login(self.visitor)  # logged in, not staff
        self.assertEqual(self.client.get("/procsync/api/servers").status_code, 403)
        self.client.get("/admin/login/")  # any page with a form sets the CSRF cookie
        answer = self.client.post("/procsync/api/servers/worker/start", {},
                                  content_type="application/json",
                                  HTTP_X_CSRFTOKEN=self.client.cookies["csrftoken"].value)
        self.assertEqual(answer.status_code, 403)
        self.assertEqual(answer.json()["error"], "forbidden")
        self.assertEqual(get_orchestrator().get_server("worker").status, "stopped")

    def test_anonymous_users_are_sent_to_log_in(self):
        page = self.client.get("/procsync/")
        self.assertEqual(page.status_code, 302)
        self.assertTrue(page["Location"].startswith("/admin/login/?next=/procsync/"))

    def test_management_command(self):
        out = io.StringIO()
        call_command("procsync", "start", "worker", stdout=out)
        pid = get_orchestrator().get_server("worker").pid
        self.assertIn(f"started 'worker' (pid {pid})", out.getvalue())
        out = io.StringIO()
        call_command("procsync", "status", stdout=out)
        rows = {line.split()[0]: line.split()[1:3] for line in out.getvalue().splitlines()[1:]}
        self.assertEqual(rows, {"web": ["stopped", "-"], "worker": ["running", str(pid)]})

    def test_the_sites_own_page(self):
        pid = get_orchestrator().start_server("worker").pid
        self.client.force_login(self.staff)
        page = self.client.get("/servers/")
        rows = {server.id: server for server in page.context["servers"]}
        self.assertEqual((rows["worker"].status, rows["worker"].pid), ("running", pid))
        self.assertContains(page, f"<td>{pid}</td>")
        self.assertContains(page, 'href="/procsync/"')


class TempSite:
    """A procsync.toml in a temporary folder for the site run as a process of its own:
    `web` (an HTTP server on a free port) and `worker`, the state file beside them.

    `env` runs the site on it, with a database of its own and an API token.
    `cleanup()` stops every server of the file, whichever process started it.
    """

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="procsync-django-")
        self.folder = Path(self._dir.name)
        self.port = free_port()
        python = json.dumps(sys.executable)
        self.config = self.folder / "procsync.toml"
        self.config.write_text(
            '[procsync]\nstate_file = "state.json"\nlog_dir = "logs"\ninterval = 0.5\n'
            "[servers.web]\n"
            f'command = [{python}, "-m", "http.server", "{self.port}", "--bind", "127.0.0.1"]\n'
            f"ports = [{self.port}]\n"
            "[servers.worker]\n"
            f'command = [{python}, "-c", "import time\\nwhile True: time.sleep(1)"]\n',
            encoding="utf-8")
        self.env = {**os.environ, "PROCSYNC_CONFIG": str(self.config), "PROCSYNC_AUTH_TOKEN": TOKEN,
                    "DJANGO_DATABASE": str(self.folder / "db.sqlite3")}
        self.env.pop("RUN_MAIN", None)

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        """``python manage.py ARGS`` on this config; its output as text."""
        return subprocess.run([sys.executable, "manage.py", *args], cwd=SITE, env=self.env,
                              capture_output=True, text=True, timeout=60)

    def cleanup(self) -> None:
        try:
            orchestrator = ServerOrchestrator.from_config(load_config(self.config), interval=0)
            orchestrator.initialize()  # adopts what any process left running
            orchestrator.shutdown(stop_servers=True)
        finally:
            self._dir.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port: int, path: str, token: str | None = TOKEN) -> dict:
    """GET procsync's API of the site on `port`, with the bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/procsync/api/{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def stop_group(proc: subprocess.Popen) -> str:
    """SIGTERM the process group of `proc` (SIGKILL if it lingers); what it wrote."""
    if proc.stdout is None or proc.stdout.closed:  # stopped already
        return ""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return out


class SiteProcessTests(SimpleTestCase):
    """The site under runserver and gunicorn: which process makes the orchestrator that leads,
    and the API answering the bearer token."""

    def setUp(self):
        self.site = TempSite()
        self.addCleanup(self.site.cleanup)  # runs last: stops whatever is left

    def spawn(self, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, *args], cwd=SITE, env=self.site.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        self.addCleanup(stop_group, proc)
        return proc

    def answering(self, proc: subprocess.Popen, port: int) -> dict:
        """Wait until the site on `port` answers GET /procsync/api/servers; the answer."""
        def answer():
            if proc.poll() is not None:
                raise AssertionError(f"exited with {proc.returncode}:\n{proc.stdout.read()}")
            try:
                return api(port, "servers")
            except OSError:  # not listening yet (URLError is an OSError)
                return None
        return wait_until(answer, what=f"the site to answer on port {port}")

    def leader_pid(self, proc: subprocess.Popen, port: int) -> int:
        """The pid of the instance that leads, as the API of the site names it."""
        def leader():
            instance = self.answering(proc, port).get("instance", {})
            return instance.get("leader")
        return int(wait_until(leader, what="an instance to lead").rsplit(":", 1)[1])

    def test_runserver_adopts_what_a_command_started(self):
        started = self.site.manage("procsync", "start", "web")
        self.assertEqual(started.returncode, 0, started.stdout + started.stderr)
        port = free_port()
        watcher = self.spawn("manage.py", "runserver", f"127.0.0.1:{port}")
        leader = self.leader_pid(watcher, port)
        self.assertNotEqual(leader, watcher.pid)  # the autoreloader's watcher makes none
        self.assertIn(leader, [c.pid for c in psutil.Process(watcher.pid).children()])
        web = api(port, "servers/web")
        self.assertEqual(web["status"], "running")
        self.assertIn(f"started 'web' (pid {web['pid']})", started.stdout)

    def test_runserver_noreload(self):
        port = free_port()
        server = self.spawn("manage.py", "runserver", "--noreload", f"127.0.0.1:{port}")
        self.assertEqual(self.leader_pid(server, port), server.pid)

    def test_gunicorn_with_and_without_preload(self):
        try:
            import gunicorn  # noqa: F401
        except ImportError:
            self.skipTest("gunicorn is not installed")
        for preload in ([], ["--preload"]):
            with self.subTest(preload=preload):
                port = free_port()
                master = self.spawn("-m", "gunicorn", "-c", "gunicorn.conf.py", *preload,
                                    "-b", f"127.0.0.1:{port}", "mysite.wsgi")
                leader = self.leader_pid(master, port)
                self.assertNotEqual(leader, master.pid)  # a worker leads, never the master
                self.assertIn(leader, [c.pid for c in psutil.Process(master.pid).children()])
                with self.assertRaises(urllib.error.HTTPError) as caught:
                    api(port, "servers", token=None)  # not logged in, no token
                self.assertEqual(caught.exception.code, 403)
                self.assertNotIn("Traceback", stop_group(master))
