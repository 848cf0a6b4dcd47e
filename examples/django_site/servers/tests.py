"""Tests of the example, with real processes: ``python manage.py test``.

Every test that touches procsync points PROCSYNC["CONFIG"] (settings, or the
PROCSYNC_CONFIG variable for child processes) at a procsync.toml in a temp
directory, whose state file and logs live there too: the developer's own
state file is never read or written. Whatever a test starts is stopped in its
cleanup, also when it fails.
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
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import SimpleTestCase, TestCase, override_settings
from django.urls import reverse

from procsync import ServerOrchestrator
from procsync.config import load_config

from .orchestrator import close_orchestrator, get_orchestrator, wants_orchestrator

SITE = Path(__file__).resolve().parent.parent  # the folder of manage.py
TIMEOUT = 30.0


def wait_until(predicate, timeout=TIMEOUT, what="condition"):
    """Poll `predicate` every 10 ms until it is truthy; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_gone(pid: int) -> bool:
    """True when `pid` no longer runs (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class TempServers:
    """A procsync.toml in a temp dir: `web` (an HTTP server on a free port) and `worker`.

    `cleanup()` stops every server of the file, whichever process started it, and
    removes the directory.
    """

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="procsync-django-")
        self.folder = Path(self._dir.name)
        self.port = free_port()
        py = json.dumps(sys.executable)
        self.config = self.folder / "procsync.toml"
        self.config.write_text(
            "[procsync]\n"
            'state_file = "state/state.json"\n'
            'log_dir = "logs"\n'
            "interval = 0.5\n"
            "[servers.web]\n"
            f"command = [{py}, \"-m\", \"http.server\", \"{self.port}\", \"--bind\", \"127.0.0.1\"]\n"
            f"ports = [{self.port}]\n"
            "[servers.worker]\n"
            f"command = [{py}, \"-c\", \"import time\\nwhile True: time.sleep(1)\"]\n",
            encoding="utf-8")
        self.state_file = self.folder / "state" / "state.json"
        self.leader_file = self.folder / "state" / "state.json.leader"
        self.env = {**os.environ, "PROCSYNC_CONFIG": str(self.config),
                    "DJANGO_DATABASE": str(self.folder / "db.sqlite3")}
        self.env.pop("RUN_MAIN", None)

    def settings(self) -> dict[str, str]:
        return {"CONFIG": str(self.config)}

    def leader(self) -> str | None:
        """The name the leading instance wrote into the leader lock file, if any."""
        try:
            return self.leader_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def cleanup(self) -> None:
        try:
            if self.state_file.exists():
                loaded = load_config(self.config)
                orchestrator = ServerOrchestrator(self.state_file, interval=0,
                                                  log_dir=self.folder / "logs")
                orchestrator.register_servers(loaded.registry)
                orchestrator.initialize()  # adopts what any process left running
                orchestrator.shutdown(stop_servers=True)
        finally:
            self._dir.cleanup()


def manage(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``python manage.py ARGS`` in the site's folder; its output as text."""
    return subprocess.run([sys.executable, "manage.py", *args], cwd=SITE, env=env,
                          capture_output=True, text=True, timeout=timeout)


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


class GuardTests(SimpleTestCase):
    """Which processes create an orchestrator in AppConfig.ready()."""

    def test_runserver_serving_process_only(self):
        self.assertTrue(wants_orchestrator(["manage.py", "runserver"], {"RUN_MAIN": "true"}))
        self.assertFalse(wants_orchestrator(["manage.py", "runserver"], {}))  # the watcher
        self.assertTrue(wants_orchestrator(["manage.py", "runserver", "--noreload"], {}))
        self.assertTrue(wants_orchestrator(["./manage.py", "runserver", "0:8000"], {"RUN_MAIN": "true"}))
        self.assertTrue(wants_orchestrator(["/usr/bin/django-admin", "runserver", "--noreload"], {}))
        self.assertTrue(wants_orchestrator(
            ["/venv/lib/python3.11/site-packages/django/__main__.py", "runserver"], {"RUN_MAIN": "true"}))

    def test_other_commands_get_none(self):
        for command in ("migrate", "check", "shell", "test", "makemigrations", "servers", "createsuperuser"):
            with self.subTest(command=command):
                self.assertFalse(wants_orchestrator(["manage.py", command], {"RUN_MAIN": "true"}))
        self.assertFalse(wants_orchestrator(["manage.py"], {}))

    def test_wsgi_servers_get_none_at_import(self):
        for argv in (["/venv/bin/gunicorn", "mysite.wsgi"], ["uwsgi", "--ini", "site.ini"],
                     ["/venv/bin/python", "-c", "import mysite.wsgi"]):
            with self.subTest(argv=argv):
                self.assertFalse(wants_orchestrator(argv, {"RUN_MAIN": "true"}))


class ServersTestCase(TestCase):
    """Points PROCSYNC at a temp procsync.toml; closes the orchestrator and stops its servers after."""

    def setUp(self):
        self.servers = TempServers()
        self.addCleanup(self.servers.cleanup)  # runs last: stops whatever is left
        self.addCleanup(close_orchestrator, stop_servers=True)
        close_orchestrator()  # none left from another test
        overrider = override_settings(PROCSYNC=self.servers.settings())
        overrider.enable()
        self.addCleanup(overrider.disable)


class GetOrchestratorTests(ServersTestCase):
    def test_uses_the_temp_state_file_only(self):
        orchestrator = get_orchestrator()
        self.assertEqual(Path(orchestrator.store.path), self.servers.state_file)
        self.assertNotEqual(settings.PROCSYNC["CONFIG"], str(SITE / "procsync.toml"))

    def test_one_per_process_initialized_and_nothing_started(self):
        first = get_orchestrator()
        self.assertIs(get_orchestrator(), first)
        self.assertEqual(list(first.configs), ["web", "worker"])
        self.assertTrue(self.servers.leader())  # initialized: it took the leader lock
        self.assertEqual([s.status for s in first.get_server_status()], ["stopped", "stopped"])
        self.assertFalse(port_open(self.servers.port))

    def test_forked_child_makes_its_own(self):
        parent = get_orchestrator()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report whether it got a new, working orchestrator
            code = 1
            try:
                child = get_orchestrator()
                ok = child is not parent and [s.id for s in child.get_server_status()] == ["web", "worker"]
                os.write(write, b"new" if ok else b"same")
                close_orchestrator()
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            answer = pipe.read()
        _, status = os.waitpid(pid, 0)
        self.assertEqual(answer, b"new")
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertIs(get_orchestrator(), parent)


class StatusViewTests(ServersTestCase):
    def setUp(self):
        super().setUp()
        self.staff = User.objects.create_user("admin", password="pw", is_staff=True)
        self.user = User.objects.create_user("visitor", password="pw")

    def test_lists_the_servers_with_a_running_one(self):
        result = get_orchestrator().start_server("web")
        self.assertTrue(result.success, result.message)
        self.client.force_login(self.staff)
        page = self.client.get(reverse("servers:status"))
        self.assertEqual(page.status_code, 200)
        rows = {s.id: s for s in page.context["servers"]}
        self.assertEqual(list(rows), ["web", "worker"])
        self.assertEqual(rows["web"].status, "running")
        self.assertEqual(rows["web"].pid, result.pid)
        self.assertContains(page, '<tr id="server-web">')
        self.assertContains(page, f"<td>{result.pid}</td>")
        self.assertContains(page, '<tr id="server-worker">')

        data = self.client.get(reverse("servers:status_json")).json()
        by_id = {s["id"]: s for s in data["servers"]}
        self.assertEqual(list(by_id), ["web", "worker"])
        self.assertEqual((by_id["web"]["status"], by_id["web"]["pid"]), ("running", result.pid))
        self.assertEqual(by_id["web"]["ports"], [self.servers.port])
        self.assertEqual((by_id["worker"]["status"], by_id["worker"]["pid"]), ("stopped", None))

    def test_staff_only(self):
        for who in (None, self.user):
            with self.subTest(who=who and who.username):
                if who is not None:
                    self.client.force_login(who)
                page = self.client.get(reverse("servers:status"))
                self.assertEqual(page.status_code, 302)
                self.assertIn(reverse("admin:login"), page["Location"])
                answer = self.client.get(reverse("servers:status_json"))
                self.assertEqual(answer.status_code, 403)
                self.assertEqual(answer.json()["error"], "forbidden")


class ServersCommandTests(ServersTestCase):
    """``manage.py servers``: in this process, and as a process of its own."""

    def test_start_status_stop_in_separate_processes(self):
        env = self.servers.env
        started = manage("servers", "start", "web", env=env)
        self.assertEqual(started.returncode, 0, started.stdout + started.stderr)
        self.assertIn("started 'web'", started.stdout)
        pid = get_orchestrator().get_server("web").pid  # another instance on the same state file
        self.assertIsNotNone(pid)
        self.assertIn(f"pid {pid}", started.stdout)
        # the command has exited; its server runs on, in a session of its own
        self.assertFalse(is_gone(pid))
        self.assertTrue(port_open(self.servers.port))

        status = manage("servers", "status", env=env)
        self.assertEqual(status.returncode, 0, status.stdout + status.stderr)
        lines = dict(line.split(None, 1) for line in status.stdout.splitlines())
        self.assertEqual(lines["web"].split()[:2], ["running", str(pid)])
        self.assertEqual(lines["worker"].split()[:2], ["stopped", "-"])

        stopped = manage("servers", "stop", "web", env=env)
        self.assertEqual(stopped.returncode, 0, stopped.stdout + stopped.stderr)
        self.assertIn("stopped", stopped.stdout)
        wait_until(lambda: is_gone(pid), what=f"pid {pid} to end")
        self.assertFalse(port_open(self.servers.port))
        wait_until(lambda: get_orchestrator().get_server("web").status == "stopped",
                   what="this process's instance to see the stop")

    def test_failures_exit_1_with_procsync_message(self):
        env = self.servers.env
        unknown = manage("servers", "start", "nope", env=env)
        self.assertEqual(unknown.returncode, 1)
        self.assertIn("unknown server 'nope'", unknown.stderr)
        not_running = manage("servers", "stop", "web", env=env)
        self.assertEqual(not_running.returncode, 1)
        self.assertIn("is not running", not_running.stderr)
        no_id = manage("servers", "start", env=env)
        self.assertEqual(no_id.returncode, 1)
        self.assertIn("needs a server id", no_id.stderr)

    def test_call_command_in_process(self):
        with self.assertRaisesMessage(CommandError, "unknown server 'nope'"):
            call_command("servers", "status", "nope")
        out = io.StringIO()
        call_command("servers", "start", "worker", stdout=out)
        pid = get_orchestrator().get_server("worker").pid
        self.assertIn(f"started 'worker' (pid {pid})", out.getvalue())
        self.assertFalse(is_gone(pid))
        call_command("servers", "stop", "worker", stdout=out)
        self.assertIn(f"stopped 'worker' (pid {pid})", out.getvalue())
        wait_until(lambda: is_gone(pid), what=f"worker pid {pid} to end")


class ProcessGuardTests(SimpleTestCase):
    """The guards end to end: which real processes make an orchestrator.

    An initialized orchestrator takes the leader lock when it is free and writes
    its name, ``<host>:<pid>``, into ``<state file>.leader``: the first process
    that initializes one is named there.
    """

    def setUp(self):
        self.servers = TempServers()
        self.addCleanup(self.servers.cleanup)

    def spawn(self, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, *args], cwd=SITE, env=self.servers.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        self.addCleanup(stop_group, proc)
        return proc

    def leader_pid(self, proc: subprocess.Popen) -> int:
        def named():
            if proc.poll() is not None:
                raise AssertionError(f"exited with {proc.returncode}:\n{proc.stdout.read()}")
            return self.servers.leader()
        return int(wait_until(named, what="an orchestrator to lead").rsplit(":", 1)[1])

    def test_other_commands_make_none(self):
        for command in (["check"], ["migrate"], ["shell", "-c", "print('hi')"]):
            with self.subTest(command=command):
                done = manage(*command, env=self.servers.env)
                self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
                self.assertFalse(self.servers.state_file.parent.exists())

    def test_runserver_with_autoreloader_only_in_the_serving_child(self):
        port = free_port()
        watcher = self.spawn("manage.py", "runserver", f"127.0.0.1:{port}")
        leader = self.leader_pid(watcher)
        self.assertNotEqual(leader, watcher.pid)  # the watcher made none: it would lead
        self.assertIn(leader, [c.pid for c in psutil.Process(watcher.pid).children()])

    def test_runserver_noreload(self):
        port = free_port()
        server = self.spawn("manage.py", "runserver", "--noreload", f"127.0.0.1:{port}")
        self.assertEqual(self.leader_pid(server), server.pid)

    def test_gunicorn_workers_with_and_without_preload(self):
        try:
            import gunicorn  # noqa: F401
        except ImportError:
            self.skipTest("gunicorn is not installed")
        for preload in ([], ["--preload"]):
            with self.subTest(preload=preload):
                port = free_port()
                master = self.spawn("-m", "gunicorn", "-c", "gunicorn.conf.py", *preload,
                                    "-b", f"127.0.0.1:{port}", "mysite.wsgi")
                leader = self.leader_pid(master)
                self.assertNotEqual(leader, master.pid)
                self.assertIn(leader, [c.pid for c in psutil.Process(master.pid).children()])
                # the workers answer; the view is staff only, so an anonymous client gets 403
                url = f"http://127.0.0.1:{port}/servers/status.json"
                wait_until(lambda p=port: port_open(p), what="gunicorn to listen")
                with self.assertRaises(urllib.error.HTTPError) as caught:
                    urllib.request.urlopen(url, timeout=10)
                self.assertEqual(caught.exception.code, 403)
                output = stop_group(master)
                self.assertNotIn("Traceback", output)
                wait_until(lambda: self.servers.leader() is None, what="the leader to let go")
