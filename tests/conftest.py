"""pytest fixtures shared by every test file: see helpers.py for the helpers."""

from __future__ import annotations

import os
import socket
import subprocess

# every lock procsync makes checks the documented order (procsync.locks.ORDER) in the tests,
# and raises LockOrderError when it is broken; children started by the tests inherit it
os.environ["PROCSYNC_LOCK_ORDER"] = "1"

import openapi_check
import pytest
from helpers import fill_backlog, kill_marked_after_grace, python_cmd, wait_until

from procsync import ProcessManager, ServerOrchestrator
from procsync.health import port_open


@pytest.fixture(autouse=True)
def no_leaked_processes(request):
    """Fail any test that leaves a process of ours running."""
    yield
    leaked = kill_marked_after_grace()
    if leaked:
        pytest.fail("test leaked processes:\n  " + "\n  ".join(leaked), pytrace=False)


@pytest.fixture(autouse=True)
def api_answers_conform(monkeypatch):
    """Fail a test that got an answer from a procsync API that its OpenAPI document does not describe."""
    problems = openapi_check.watch_test_clients(monkeypatch)
    yield
    if problems:
        pytest.fail("API answers not in the OpenAPI document:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def tmp_logs(tmp_path):
    path = tmp_path / "logs"
    path.mkdir()
    return path


@pytest.fixture
def orch(tmp_path):
    """An orchestrator on a fresh state file, with a fast monitor; stops its servers after."""
    o = ServerOrchestrator(tmp_path / "state.json", interval=0.2, log_dir=tmp_path / "logs")
    try:
        yield o
    finally:
        o.shutdown(stop_servers=True)


@pytest.fixture
def hanging_port():
    """A loopback port whose SYNs are dropped (listen(0), accept queue full, never accepted)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    clients = fill_backlog(server)
    try:
        yield server.getsockname()[1]
    finally:
        for client in clients:
            client.close()
        server.close()


@pytest.fixture
def manager(tmp_path):
    """A ProcessManager logging under tmp_path; kills what it runs and closes after the test."""
    mgr = ProcessManager(log_dir=tmp_path / "logs")
    try:
        yield mgr
    finally:
        mgr.kill_all()
        mgr.close()


@pytest.fixture
def make_orch(tmp_path):
    """Makes orchestrators on one fresh state file (fast monitor); stops their servers after."""
    made: list[ServerOrchestrator] = []

    def make(**kw) -> ServerOrchestrator:
        kw.setdefault("log_dir", tmp_path / "logs")
        orch = ServerOrchestrator(tmp_path / "state.json", interval=0.2, **kw)
        made.append(orch)
        return orch

    try:
        yield make
    finally:
        for orch in made:
            orch.shutdown(stop_servers=True)


@pytest.fixture
def outsider():
    """Starts processes procsync does not manage (`outsider(code, port)` waits until `port`
    listens: an orphan for the server on that port); kills them all after."""
    procs: list[subprocess.Popen] = []

    def start(code: str, port: int | None = None) -> subprocess.Popen:
        proc = subprocess.Popen(python_cmd(code), start_new_session=True)
        procs.append(proc)
        if port is not None:
            wait_until(lambda: port_open(port, timeout=0.2), 5, f"outsider on port {port}")
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
