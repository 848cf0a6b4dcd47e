"""A real gunicorn (gthread, 3 workers) serving a Flask app with the procsync extension.

Each worker has its own ServerOrchestrator on one state file; requests land on
whichever worker accepts them.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
from helpers import free_port, kill_marked, running_counts, wait_until

from procsync import ServerOrchestrator

GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
SLEEP = shutil.which("sleep") or "/bin/sleep"
IDS = [f"s{i}" for i in range(5)]
REGISTRY = {sid: {"command": [SLEEP, "600"], "stop_timeout": 5} for sid in IDS}

APP = textwrap.dedent("""
    import json, os
    from flask import Flask, jsonify
    from procsync import ServerOrchestrator
    from procsync.flask_ext import ProcSync

    app = Flask(__name__)
    orch = ServerOrchestrator(os.environ["PS_STATE"], interval=0.5, log_dir=os.environ["PS_LOGS"],
                              instance_name="worker-%d" % os.getpid())
    orch.register_servers(json.loads(os.environ["PS_REGISTRY"]))
    orch.initialize()
    ProcSync(app, orch)

    @app.get("/whoami")
    def whoami():
        return jsonify(pid=os.getpid(), leader=orch.is_leader)
""")

PRELOAD_CONF = """
def post_fork(server, worker):
    import psapp
    psapp.orch.initialize()
"""

pytestmark = pytest.mark.skipif(not os.path.exists(GUNICORN), reason="gunicorn is not installed")


def call_api(port: int, method: str, path: str) -> tuple[int, dict]:
    """One request on a fresh connection, so the kernel hands it to any worker."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=b"{}" if method == "POST" else None,
                     headers={"Content-Type": "application/json", "Connection": "close"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()



@pytest.fixture
def gunicorn(request, tmp_path):
    """A gunicorn serving APP; `@pytest.mark.parametrize("gunicorn", [(app, [args])], indirect=True)`."""
    app, extra = getattr(request, "param", (APP, []))
    (tmp_path / "psapp.py").write_text(app)
    (tmp_path / "psconf.py").write_text(PRELOAD_CONF)
    extra = [arg.format(tmp=tmp_path) for arg in extra]
    state, logs = tmp_path / "state.json", tmp_path / "logs"
    port = free_port()
    env = dict(os.environ, PS_STATE=str(state), PS_LOGS=str(logs), PS_REGISTRY=json.dumps(REGISTRY))
    log = open(tmp_path / "gunicorn.log", "wb")
    master = subprocess.Popen(
        [GUNICORN, "-w", "3", "-k", "gthread", "--threads", "4", "-b", f"127.0.0.1:{port}",
         "--chdir", str(tmp_path), "--graceful-timeout", "5", *extra, "psapp:app"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        def up() -> bool:
            try:
                return call_api(port, "GET", "/whoami")[0] == 200
            except OSError:
                return False

        wait_until(up, 30, "gunicorn answers")
        wait_until(lambda: len(psutil.Process(master.pid).children()) == 3, 30, "three workers")
        yield port
    finally:
        if master.poll() is None:
            master.send_signal(signal.SIGTERM)
            try:
                master.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(master.pid, signal.SIGKILL)
                master.wait()
        log.close()
        try:  # the servers outlive the workers by design: stop them through a fresh instance
            orch = ServerOrchestrator(state, interval=0.2, log_dir=logs)
            orch.register_servers(REGISTRY)
            orch.initialize()
            orch.shutdown(stop_servers=True)
        finally:
            kill_marked()


def test_thirty_starts_and_stops_over_three_workers_leave_exactly_the_expected_processes(gunicorn):
    port = gunicorn
    rng = random.Random(5)
    running: set[str] = set()
    served_by: set[int] = set()
    actions = 0
    # thirty actions, and on until two workers have answered: the kernel hands each accept
    # to whichever worker it likes, and a run of sequential requests can all go to one
    while actions < 30 or (len(served_by) < 2 and actions < 300):
        actions += 1
        sid, op = rng.choice(IDS), rng.choice(("start", "stop"))
        status, body = call_api(port, "POST", f"/procsync/api/servers/{sid}/{op}")
        if op == "start":
            expected = 409 if sid in running else 200
            running.add(sid)
        else:
            expected = 200 if sid in running else 409
            running.discard(sid)
        assert status == expected, (sid, op, status, body)
        served_by.add(call_api(port, "GET", "/whoami")[1]["pid"])
    counts = running_counts()
    assert {sid: counts[sid] for sid in IDS} == {sid: int(sid in running) for sid in IDS}
    assert len(served_by) >= 2, "the kernel gave every request to one worker"

    answers: dict[int, dict] = {}
    instances: dict[int, dict] = {}

    def every_worker_answered() -> bool:
        status, body = call_api(port, "GET", "/procsync/api/servers")
        assert status == 200
        servers = {s["id"]: (s["status"], s["pid"]) for s in body["servers"]}
        answers[body["instance"]["pid"]] = servers
        instances[body["instance"]["pid"]] = body["instance"]
        return len(answers) == 3

    wait_until(every_worker_answered, 30, "status from all three workers")
    leaders = [info["name"] for info in instances.values() if info["is_leader"]]
    assert len(leaders) == 1, instances
    assert all(info["leader"] == leaders[0] for info in instances.values()), instances
    views = list(answers.values())
    assert all(view == views[0] for view in views), answers
    for sid in IDS:
        status, pid = views[0][sid]
        assert (status == "running") == (sid in running)
        if pid is not None:
            assert psutil.Process(pid).environ()["PROCSYNC_ID"] == sid
    leading: dict[int, bool] = {}

    def every_worker_said_whether_it_leads() -> bool:
        who = call_api(port, "GET", "/whoami")[1]
        leading[who["pid"]] = who["leader"]
        return len(leading) == 3

    wait_until(every_worker_said_whether_it_leads, 30, "all three workers on /whoami")
    assert sorted(leading.values()) == [False, False, True], leading



@pytest.mark.parametrize("gunicorn", [(APP, ["--preload"])], indirect=True)
def test_preload_with_an_orchestrator_started_in_the_master_refuses_clearly(gunicorn):
    status, body = call_api(gunicorn, "POST", "/procsync/api/servers/s0/start")
    assert status == 500
    assert "ForkedOrchestratorError" not in body["message"]  # plain words, not a class name
    assert "post_fork" in body["message"] and "--preload" in body["message"]
    assert running_counts()["s0"] == 0


@pytest.mark.parametrize("gunicorn", [(APP.replace("orch.initialize()\n", ""), [
    "--preload", "-c", "{tmp}/psconf.py"])], indirect=True)
def test_preload_with_initialize_in_post_fork_works(gunicorn, tmp_path):
    status, body = call_api(gunicorn, "POST", "/procsync/api/servers/s0/start")
    assert status == 200, body
    assert running_counts()["s0"] == 1
    status, body = call_api(gunicorn, "POST", "/procsync/api/servers/s0/start")
    assert status == 409 and body["error"] == "already_running"
