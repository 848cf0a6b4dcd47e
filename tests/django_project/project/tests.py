"""procsync.django_ext in a fresh Django project, with real processes: ``python manage.py test``.

Every test points PROCSYNC at servers of its own (free ports); under this
test run the app keeps their state in a temporary folder. Whatever a test
starts is stopped in its cleanup, also when it fails; child processes
(runserver, gunicorn, ``manage.py procsync``) are stopped with their group.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.checks import Error
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client, SimpleTestCase, TestCase, override_settings
from helpers import PY, free_port, is_gone, stop_group, wait_until

from procsync.django_ext import close_orchestrator, get_orchestrator
from procsync.django_ext.apps import check_setting
from procsync.django_ext.conf import read_conf
from procsync.django_ext.host import serves_runserver, testing
from procsync.health import port_open
from procsync.proctree import ID_VAR, STATE_VAR
from procsync.store import open_store

SITE = Path(__file__).resolve().parent.parent  # the folder of manage.py
TOKEN = "test-token-123"
SLEEPER = [PY, "-c", "import time\nwhile True: time.sleep(1)"]


def http_server(port: int) -> list[str]:
    return [PY, "-u", "-m", "http.server", str(port), "--bind", "127.0.0.1"]  # -u: log lines at once


def servers_setting(port: int, **extra) -> dict:
    """An inline PROCSYNC: `web` (HTTP on `port`) and `worker`; token TOKEN; interval 0.2 s."""
    return {"servers": {"web": {"command": http_server(port), "ports": [port]},
                        "worker": {"command": SLEEPER}},
            "interval": 0.2, "auth_token": TOKEN, **extra}


class ProcsyncTestCase(TestCase):
    """PROCSYNC set to servers on a free port; this process's orchestrator closed after (which,
    under a test run, stops what the test started and removes the temporary state)."""

    extra: dict = {}

    def setUp(self):
        self.port = free_port()
        overrider = override_settings(PROCSYNC=servers_setting(self.port, **self.extra))
        overrider.enable()
        self.addCleanup(overrider.disable)  # after it: closing the orchestrator
        self.addCleanup(close_orchestrator)


# -- the setting -------------------------------------------------------------------------------


class SettingTests(SimpleTestCase):
    def refused(self, value) -> str:
        with self.assertRaises(ImproperlyConfigured) as caught:
            read_conf(value, SITE)
        return str(caught.exception)

    def test_bad_values_are_named(self):
        self.assertIn("settings.PROCSYNC is not set", self.refused(None))
        self.assertIn("unknown key 'sever' (did you mean 'servers'?)",
                      self.refused({"sever": {}}))
        self.assertIn("settings.PROCSYNC: [servers.web] comand: unknown key (did you mean 'command'?)",
                      self.refused({"servers": {"web": {"comand": "x"}}}))
        self.assertIn("give 'config' or 'servers', not both",
                      self.refused({"config": "procsync.toml", "servers": {}}))
        self.assertIn("[procsync] interval: must be a number of seconds above 0",
                      self.refused({"servers": {}, "interval": 0}))
        self.assertIn("settings.PROCSYNC['view'] must be one of 'staff'",
                      self.refused({"servers": {}, "view": "everyone"}))
        self.assertIn("procsync.toml", self.refused({"config": "missing/procsync.toml"}))

    def test_config_file_and_inline_read_the_same(self):
        from_file = read_conf({"config": "procsync.toml"}, SITE).loaded
        self.assertEqual(list(from_file.registry), ["web"])
        self.assertEqual(from_file.settings.state_file, str(SITE / ".procsync" / "state.json"))
        inline = read_conf({"servers": {"web": {"command": "python3 -m http.server 8097",
                                                "ports": [8097]}},
                            "state_file": "s/state.json"}, SITE).loaded
        self.assertEqual(inline.registry["web"].ports, (8097,))
        self.assertEqual(inline.settings.state_file, str(SITE / "s" / "state.json"))

    def test_manage_py_check_reports_a_bad_setting(self):
        with override_settings(PROCSYNC={"servers": {"web": {"ports": [80]}}}):
            problems = check_setting()
            self.assertEqual([p.id for p in problems], ["procsync.E001"])
            self.assertIsInstance(problems[0], Error)
            self.assertIn("[servers.web]", problems[0].msg)
            with self.assertRaises(SystemCheckError):
                call_command("check")
        self.assertEqual(check_setting(), [])


# -- where orchestrators exist -------------------------------------------------------------------


class GuardTests(SimpleTestCase):
    def test_runserver_serving_process_only(self):
        self.assertTrue(serves_runserver(["manage.py", "runserver"], {"RUN_MAIN": "true"}))
        self.assertFalse(serves_runserver(["manage.py", "runserver"], {}))  # the watcher
        self.assertTrue(serves_runserver(["manage.py", "runserver", "--noreload"], {}))
        for command in ("migrate", "check", "shell", "test", "procsync"):
            self.assertFalse(serves_runserver(["manage.py", command], {"RUN_MAIN": "true"}))
        self.assertFalse(serves_runserver(["/venv/bin/gunicorn", "project.wsgi"], {}))

    def test_this_is_a_test_run(self):
        self.assertTrue(testing())


class TestRunTests(ProcsyncTestCase):
    def test_state_lives_in_a_temporary_folder(self):
        orchestrator = get_orchestrator()
        state = Path(orchestrator.store.path)
        self.assertTrue(str(state).startswith(tempfile.gettempdir()), state)
        self.assertNotIn(str(SITE), str(state))
        result = orchestrator.start_server("worker")
        self.assertTrue(result.success, result.message)
        close_orchestrator()  # as at the end of a test: stops what it started, removes the folder
        wait_until(lambda: is_gone(result.pid), 10, "the worker to be stopped")
        self.assertFalse(state.parent.exists())
        self.assertIsNot(get_orchestrator(), orchestrator)

    def test_the_test_key_names_the_state_file(self):
        folder = Path(tempfile.mkdtemp(prefix="procsync-named-"))
        self.addCleanup(shutil.rmtree, folder, ignore_errors=True)
        with override_settings(PROCSYNC=servers_setting(self.port, test={"state_file": str(folder / "t.json")})):
            orchestrator = get_orchestrator()
            self.assertEqual(Path(orchestrator.store.path), folder / "t.json")
            result = orchestrator.start_server("worker")
            self.assertTrue(result.success, result.message)
            close_orchestrator()  # a test run leaves no process behind, whatever its state file
            wait_until(lambda: is_gone(result.pid), 10, "the worker to be stopped")
        self.assertTrue((folder / "t.json").exists())  # named by the settings: kept

    def test_one_per_process_across_threads_and_initialized(self):
        close_orchestrator()
        barrier = threading.Barrier(8)

        def first_use(_):
            barrier.wait()
            orchestrator = get_orchestrator()
            return orchestrator, [s.status for s in orchestrator.get_server_status()]

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(first_use, range(8)))
        self.assertEqual(len({id(o) for o, _ in answers}), 1)
        self.assertEqual({tuple(s) for _, s in answers}, {("stopped", "stopped")})
        self.assertTrue(answers[0][0].is_leader)

    def test_a_forked_child_makes_its_own_on_the_same_state_file(self):
        parent = get_orchestrator()
        started = parent.start_server("worker")
        self.assertTrue(started.success, started.message)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                child = get_orchestrator()
                answer = {"new": child is not parent, "state": str(child.store.path),
                          "worker": child.get_server("worker").pid}
                os.write(write, json.dumps(answer).encode())
                close_orchestrator()
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            answer = json.loads(pipe.read() or b"{}")
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertEqual(answer, {"new": True, "state": str(parent.store.path),
                                  "worker": started.pid})
        self.assertIs(get_orchestrator(), parent)
        self.assertFalse(is_gone(started.pid))  # the child's close left the parent's server alone


# -- the API, events and page behind Django's login -----------------------------------------------


class ApiTests(ProcsyncTestCase):
    def setUp(self):
        super().setUp()
        self.staff = User.objects.create_user("admin", password="pw", is_staff=True)
        self.user = User.objects.create_user("visitor", password="pw")
        self.client = Client(enforce_csrf_checks=True)

    def csrf_token(self) -> str:
        page = self.client.get("/procsync/")
        self.assertEqual(page.status_code, 200)
        token = re.search(r'data-csrf-token="([^"]+)"', page.content.decode())
        self.assertIsNotNone(token, "the page carries the CSRF token")
        self.assertIn('data-csrf-header="X-CSRFTOKEN"', page.content.decode())
        return token.group(1)

    def post(self, path: str, token: str | None = None, **headers):
        if token:
            headers["HTTP_X_CSRFTOKEN"] = token
        return self.client.post(path, data="{}", content_type="application/json", **headers)

    def test_staff_starts_and_stops_a_server(self):
        self.client.force_login(self.staff)
        token = self.csrf_token()
        started = self.post("/procsync/api/servers/web/start", token)
        self.assertEqual(started.status_code, 200, started.content)
        pid = started.json()["pid"]
        self.assertTrue(port_open(self.port))
        listed = self.client.get("/procsync/api/servers").json()["servers"]
        self.assertEqual([(s["id"], s["status"], s["pid"]) for s in listed],
                         [("web", "running", pid), ("worker", "stopped", None)])
        stopped = self.post("/procsync/api/servers/web/stop", token)
        self.assertEqual(stopped.status_code, 200, stopped.content)
        wait_until(lambda: is_gone(pid), 10, "web to end")

    def test_a_post_without_the_csrf_token_is_refused(self):
        self.client.force_login(self.staff)
        refused = self.post("/procsync/api/servers/web/start")
        self.assertEqual(refused.status_code, 403)
        self.assertEqual(refused.json()["error"], "csrf_failed")
        self.assertIn("CSRF", refused.json()["message"])
        self.assertFalse(port_open(self.port))

    def test_a_cross_site_post_is_refused_even_with_the_token(self):
        self.client.force_login(self.staff)
        token = self.csrf_token()
        refused = self.post("/procsync/api/servers/web/start", token,
                            HTTP_ORIGIN="https://evil.example")
        self.assertEqual(refused.status_code, 403)
        self.assertEqual(refused.json()["error"], "csrf_failed")
        self.assertFalse(port_open(self.port))

    def test_a_user_who_is_not_staff_sees_nothing_by_default(self):
        self.client.force_login(self.user)
        self.assertEqual(self.client.get("/procsync/api/servers").status_code, 403)

    def test_the_view_rule_lets_a_user_view_but_not_control(self):
        with override_settings(PROCSYNC=servers_setting(self.port, view="authenticated")):
            self.client.force_login(self.user)
            self.assertEqual(self.client.get("/procsync/api/servers").status_code, 200)
            refused = self.post("/procsync/api/servers/web/start", self.csrf_token())
            self.assertEqual(refused.status_code, 403)
            self.assertEqual(refused.json()["error"], "forbidden")
            self.assertFalse(port_open(self.port))
            close_orchestrator()

    def test_a_permission_rule(self):
        with override_settings(PROCSYNC=servers_setting(self.port, control="auth.change_user")):
            self.client.force_login(self.user)
            self.assertEqual(self.client.get("/procsync/api/servers").status_code, 403)
            self.user.user_permissions.add(Permission.objects.get(codename="change_user"))
            self.client.force_login(User.objects.get(pk=self.user.pk))  # permissions are cached
            self.assertEqual(self.client.get("/procsync/api/servers").status_code, 200)
            close_orchestrator()

    def test_someone_not_logged_in_is_sent_to_the_login_page(self):
        page = self.client.get("/procsync/")
        self.assertEqual(page.status_code, 302)
        self.assertEqual(page["Location"], "/login/?next=/procsync/")
        api = self.client.get("/procsync/api/servers")
        self.assertEqual(api.status_code, 403)
        self.assertEqual(api.json()["error"], "forbidden")

    def test_the_bearer_token_still_works_without_csrf(self):
        anonymous = Client(enforce_csrf_checks=True)
        auth = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
        started = anonymous.post("/procsync/api/servers/worker/start", data="{}",
                                 content_type="application/json", **auth)
        self.assertEqual(started.status_code, 200, started.content)
        self.assertFalse(is_gone(started.json()["pid"]))
        wrong = anonymous.get("/procsync/api/servers", HTTP_AUTHORIZATION="Bearer nope")
        self.assertEqual(wrong.status_code, 401)

    def test_the_page_its_files_and_the_event_stream(self):
        self.client.force_login(self.staff)
        page = self.client.get("/procsync/")
        self.assertContains(page, 'data-base="/procsync"')
        script = self.client.get("/procsync/static/dashboard.js")
        self.assertEqual(script.status_code, 200)
        self.assertIn(b"data-csrf-token", b"".join(script.streaming_content)
                      if script.streaming else script.content)
        events = self.client.get("/procsync/api/events")
        self.assertEqual(events.status_code, 200)
        self.assertTrue(events.streaming)
        self.assertTrue(events["Content-Type"].startswith("text/event-stream"))
        first = next(iter(events.streaming_content))
        self.assertTrue(first)
        events.close()


# -- manage.py procsync ---------------------------------------------------------------------------


class CommandTests(ProcsyncTestCase):
    def run_command(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        try:
            call_command("procsync", *args, stdout=out, stderr=err)
            code = 0
        except SystemExit as exit_:
            code = exit_.code
        return code, out.getvalue(), err.getvalue()

    def test_status_start_stop_history_as_the_procsync_command(self):
        code, out, _ = self.run_command("status")
        self.assertEqual(code, 0)
        header, *rows = out.splitlines()
        self.assertEqual(header.split(), ["ID", "STATUS", "PID", "HEALTH", "UPTIME", "PORTS",
                                          "RESTARTS", "CPU", "MEM", "NOTE"])
        self.assertEqual([r.split()[:2] for r in rows], [["web", "stopped"], ["worker", "stopped"]])
        code, out, _ = self.run_command("start", "web")
        pid = get_orchestrator().get_server("web").pid
        self.assertEqual((code, out.strip()), (0, f"web: started 'web' (pid {pid})"
                                               + out.strip().split(f"(pid {pid})", 1)[1]))
        self.assertTrue(port_open(self.port))
        code, out, _ = self.run_command("status", "--json", "web")
        self.assertEqual(json.loads(out)["servers"][0]["pid"], pid)
        code, out, _ = self.run_command("stop", "web")
        self.assertEqual(code, 0)
        self.assertIn(f"web: stopped 'web' (pid {pid})", out)
        code, out, _ = self.run_command("history")
        self.assertEqual(code, 0)
        self.assertEqual([line.split()[0] for line in out.splitlines()][:3], ["SERVER", "web", "web"])
        self.assertEqual([line.split()[3] for line in out.splitlines()[1:3]], ["stopped", "started"])

    def test_failures_exit_as_the_procsync_command(self):
        code, _, err = self.run_command("start", "nope")
        self.assertEqual(code, 1)
        self.assertIn("unknown server 'nope'", err)
        code, _, err = self.run_command("start")
        self.assertEqual(code, 2)
        self.assertIn("give at least one server ID", err)
        code, out, _ = self.run_command("stop", "web")  # already stopped: done, as systemctl
        self.assertEqual(code, 0)

    def test_logs(self):
        code, out, _ = self.run_command("logs", "-n", "5", "web")
        self.assertEqual((code, out), (0, ""))  # never ran: no log yet
        self.assertEqual(self.run_command("start", "web")[0], 0)
        serving = f"Serving HTTP on 127.0.0.1 port {self.port}"
        out = wait_until(lambda: (o := self.run_command("logs", "-n", "5", "web"))[0] == 0
                         and serving in o[1] and o[1], 10, "web's first log line")
        self.assertTrue(out.splitlines()[-1].startswith(serving), out)


# -- real processes: runserver, gunicorn, management commands -------------------------------------


class Project:
    """Child processes of this project on their own servers; every group stopped in cleanup."""

    def __init__(self, test: SimpleTestCase, setting: dict) -> None:
        self.test = test
        folder = Path(tempfile.mkdtemp(prefix="procsync-django-"))
        test.addCleanup(shutil.rmtree, folder, ignore_errors=True)
        setting = {"state_file": str(folder / "state.json"), "log_dir": str(folder / "logs"),
                   **setting}
        self.state_file = folder / "state.json"
        self.env = {**os.environ, "DJPROJECT_PROCSYNC": json.dumps(setting),
                    "DJPROJECT_DB": str(folder / "db.sqlite3"), "PYTHONPATH": str(SITE.parent)}
        for name in ("RUN_MAIN", "DJANGO_SETTINGS_MODULE"):
            self.env.pop(name, None)
        test.addCleanup(self.stop_servers)

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([PY, "manage.py", *args], cwd=SITE, env=self.env, text=True,
                              capture_output=True, timeout=timeout)

    def spawn(self, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen([PY, *args], cwd=SITE, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.test.addCleanup(stop_group, proc)
        return proc

    def leader(self) -> int | None:
        try:
            text = (self.state_file.parent / "state.json.leader").read_text().strip()
        except FileNotFoundError:
            return None
        return int(text.rsplit(":", 1)[1]) if text else None

    def stop_servers(self) -> None:
        """Stop whatever any process left running on this state file."""
        if self.state_file.exists():
            done = self.manage("procsync", "stop", "--all")
            if done.returncode != 0:
                print(done.stdout, done.stderr, file=sys.stderr)


def spawned_for(state_file: Path, sid: str) -> list[int]:
    """The live processes procsync spawned for server `sid` of `state_file` (none is forgotten)."""
    key = os.path.realpath(state_file)
    found = []
    for proc in psutil.process_iter(["environ"]):
        env = proc.info["environ"] or {}
        if env.get(ID_VAR) == sid and env.get(STATE_VAR) == key and not is_gone(proc.pid):
            found.append(proc.pid)
    return sorted(found)


def api(port: int, path: str, method: str = "GET", token: str = TOKEN) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/procsync/api{path}", method=method,
                                     data=b"{}" if method == "POST" else None,
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def answers(port: int) -> bool:
    try:
        return api(port, "/servers")[0] == 200
    except OSError:
        return False


class ProcessTests(SimpleTestCase):
    def setUp(self):
        self.port = free_port()
        self.project = Project(self, servers_setting(self.port))

    def test_commands_make_no_orchestrator_and_procsync_start_outlives_its_command(self):
        for command in (["check"], ["migrate", "-v", "0"], ["shell", "-c", "print('hi')"]):
            done = self.project.manage(*command)
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            self.assertFalse(self.project.state_file.exists(), command)
        started = self.project.manage("procsync", "start", "web")
        self.assertEqual(started.returncode, 0, started.stdout + started.stderr)
        pid = int(re.search(r"\(pid (\d+)\)", started.stdout).group(1))
        self.assertFalse(is_gone(pid))
        self.assertTrue(port_open(self.port))
        status = self.project.manage("procsync", "status", "web")
        self.assertEqual(status.stdout.splitlines()[1].split()[:3], ["web", "running", str(pid)])
        history = open_store(self.project.state_file).history("web", 10)
        self.assertEqual([e.event for e in history], ["started"])  # no adoption per command

    def test_runserver_sees_the_server_a_command_started_across_a_reload(self):
        started = self.project.manage("procsync", "start", "web")
        self.assertEqual(started.returncode, 0, started.stdout + started.stderr)
        pid = int(re.search(r"\(pid (\d+)\)", started.stdout).group(1))
        port = free_port()
        watcher = self.project.spawn("manage.py", "runserver", f"127.0.0.1:{port}")
        wait_until(lambda: answers(port), 60, "runserver to answer")
        child = wait_until(lambda: self.project.leader(), 30, "the serving child to lead")
        self.assertNotEqual(child, watcher.pid)
        self.assertIn(child, [c.pid for c in psutil.Process(watcher.pid).children()])
        servers = {s["id"]: s for s in api(port, "/servers")[1]["servers"]}
        self.assertEqual((servers["web"]["status"], servers["web"]["pid"]), ("running", pid))
        # a code change: the autoreloader replaces its child, which adopts web again. The
        # reloader compares each file's mtime with the one it saw at its last look (every
        # second): the file is touched again until the child changes, so a first look taken
        # after the first touch cannot hide it
        urls = SITE / "project" / "urls.py"
        stat = urls.stat()
        self.addCleanup(os.utime, urls, (stat.st_atime, stat.st_mtime))
        touches = []

        def reloaded() -> int | None:
            leader = self.project.leader()
            if leader not in (None, child):
                return leader
            if not touches or time.monotonic() - touches[-1] > 1.0:
                touches.append(time.monotonic())
                os.utime(urls, (stat.st_atime, stat.st_mtime + 2 * len(touches)))
            return None

        new = wait_until(reloaded, 60, "a new serving child to lead")
        self.assertFalse(psutil.pid_exists(child) and not is_gone(child))
        wait_until(lambda: answers(port), 60, "the new child to answer")
        status, body = api(port, "/servers/web/start", "POST")
        self.assertEqual((status, body.get("error")), (409, "already_running"))
        servers = {s["id"]: s for s in api(port, "/servers")[1]["servers"]}
        self.assertEqual((servers["web"]["status"], servers["web"]["pid"]), ("running", pid))
        history = open_store(self.project.state_file).history("web", 10)
        self.assertEqual([e.event for e in history], ["started"])  # nothing twice, no flood
        self.assertNotEqual(new, child)
        self.assertNotIn("Traceback", stop_group(watcher))

    def test_runserver_noreload_makes_one(self):
        port = free_port()
        server = self.project.spawn("manage.py", "runserver", "--noreload", f"127.0.0.1:{port}")
        self.assertEqual(wait_until(lambda: self.project.leader(), 60, "runserver to lead"),
                         server.pid)  # before any request: the monitor runs from the start
        wait_until(lambda: answers(port), 60, "runserver to answer")

    def test_gunicorn_two_workers_start_one_process_with_and_without_preload(self):
        try:
            import gunicorn  # noqa: F401
        except ImportError:
            self.skipTest("gunicorn is not installed")
        for preload in ([], ["--preload"]):
            with self.subTest(preload=preload):
                port = free_port()
                master = self.project.spawn(
                    "-m", "gunicorn", "-w", "2", "-k", "gthread", "--threads", "4", *preload,
                    "-b", f"127.0.0.1:{port}", "project.wsgi")
                wait_until(lambda p=port: answers(p), 60, "gunicorn to answer")
                with ThreadPoolExecutor(8) as pool:
                    results = list(pool.map(lambda _, p=port: api(p, "/servers/web/start", "POST"),
                                            range(8)))
                pids = {body.get("pid") for status, body in results if status == 200}
                self.assertEqual(len(pids), 1, results)
                for status, body in results:
                    self.assertIn(status, (200, 409), body)
                    if status == 409:
                        self.assertEqual(body["error"], "already_running")
                try:
                    self.assertEqual(spawned_for(self.project.state_file, "web"), sorted(pids))
                    self.assertNotEqual(self.project.leader(), master.pid)  # a worker leads
                finally:
                    status, body = api(port, "/servers/web/stop", "POST")
                    self.assertEqual(status, 200, body)
                    wait_until(lambda: not port_open(self.port), 10, "web to free its port")
                self.assertNotIn("Traceback", stop_group(master))


class DeveloperServersTests(SimpleTestCase):
    """Under this test run, the project's own PROCSYNC (no override) is not the developer's state."""

    def test_the_developers_state_is_never_used(self):
        self.addCleanup(close_orchestrator)
        orchestrator = get_orchestrator()
        own = read_conf(settings.PROCSYNC, SITE).loaded.settings.state_file
        self.assertNotEqual(str(orchestrator.store.path), own)
        web = orchestrator.get_server("web")
        self.assertEqual(web.status, "stopped")  # whatever the developer runs, it is not here
        port = web.ports[0]
        if port_open(port):  # the developer's web runs: a start here never touches it
            result = orchestrator.start_server("web")
            self.assertFalse(result.success)
            self.assertEqual(result.code, "port_in_use", result.message)
