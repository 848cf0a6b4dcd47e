"""An orchestrator made but not initialized, and what a hand-over writes to the history.

A Django or gunicorn host makes its orchestrator in one place and uses it in
another (a management command, the shell, a test, a worker after a fork):
every call must read the store first, as `start_server` always did, never
answer from an empty registry. And a server handed from one instance to the
next at a clean shutdown (every runserver reload, every management command)
is not a lifecycle event of the server: its history stays free for crashes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap

import pytest
from helpers import PY, free_port, is_gone, listener_code, python_cmd, wait_until

from procsync import ServerOrchestrator
from procsync.health import port_open
from procsync.instances.leader import owner_name
from procsync.store import open_store


@pytest.fixture
def setup(tmp_path):
    """A state file with server `web` (a listener) started by an instance that then shut down
    cleanly: the record is released, the process runs on. Yields (make, pid, port)."""
    port = free_port()
    servers = {"web": {"command": python_cmd(listener_code(port)), "ports": [port]}}
    made: list[ServerOrchestrator] = []

    def make(**kw) -> ServerOrchestrator:
        orch = ServerOrchestrator(tmp_path / "state.json", interval=0.2,
                                  log_dir=tmp_path / "logs", **kw)
        orch.register_servers(servers)
        made.append(orch)
        return orch

    first = make()
    result = first.start_server("web")
    assert result.success, result.message
    first.shutdown()
    assert not is_gone(result.pid) and port_open(port)
    try:
        yield make, result.pid, port
    finally:
        for orch in made:
            orch.shutdown()
        last = make()
        last.initialize()  # adopts it from whichever instance had it last
        last.shutdown(stop_servers=True)
        wait_until(lambda: is_gone(result.pid), 10, f"pid {result.pid} to end")


def test_status_of_an_orchestrator_never_initialized_shows_the_running_server(setup):
    make, pid, _ = setup
    status = make().get_server("web")
    assert (status.status, status.pid, status.running) == ("running", pid, True)
    listed = make().get_server_status()
    assert [(s.id, s.status, s.pid) for s in listed] == [("web", "running", pid)]


def test_stop_on_an_orchestrator_never_initialized_stops_the_process(setup):
    make, pid, port = setup
    result = make().stop_server("web")
    assert result.success, result.message
    assert result.code is None
    wait_until(lambda: is_gone(pid), 10, f"pid {pid} to end")
    assert not port_open(port)


def test_stop_all_logs_and_history_read_the_store_first(setup):
    make, pid, _ = setup
    assert make().log_path("web") is not None
    assert make().tail_log("web") is not None
    assert [e.event for e in make().history("web")] == ["started"]
    results = make().stop_all()
    assert results["web"].success, results["web"].message
    wait_until(lambda: is_gone(pid), 10, f"pid {pid} to end")


def test_a_clean_hand_over_writes_no_history_entry(setup, tmp_path):
    make, pid, _ = setup
    second = make()
    second.initialize()  # takes the released record over
    third = make()
    third.initialize()  # another instance while the second one owns it
    assert second.is_leader and not third.is_leader
    second.shutdown()  # released again: the third, leading now, takes it over
    store = open_store(tmp_path / "state.json")
    wait_until(lambda: owner_name(store.get_process("web").owner) == third.instance_name, 5,
               "the third instance to own web")
    for _ in range(3):  # the leader's sync looks again: nothing more to adopt
        third._ctx.sync.tick()
    third.journal.flush()
    assert [e.event for e in third.history("web")] == ["started"]
    assert third.get_server("web").pid == pid


HOST = textwrap.dedent("""
    import json, sys, time
    from procsync import ServerOrchestrator
    orch = ServerOrchestrator(sys.argv[1], interval=0.2, log_dir=sys.argv[2])
    orch.register_servers(json.loads(sys.argv[3]))
    result = orch.start_server("web")
    print(result.pid, flush=True)
    time.sleep(120)
""")


def test_a_host_killed_gives_one_adopted_entry_not_two(tmp_path):
    port = free_port()
    servers = {"web": {"command": python_cmd(listener_code(port)), "ports": [port]}}
    state, logs = tmp_path / "state.json", tmp_path / "logs"
    host = subprocess.Popen([PY, "-c", HOST, str(state), str(logs), json.dumps(servers)],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    orch = None
    try:
        pid = int(host.stdout.readline())
        host.send_signal(signal.SIGKILL)
        host.wait()
        orch = ServerOrchestrator(state, interval=0.2, log_dir=logs)
        orch.register_servers(servers)
        orch.initialize()
        assert orch.get_server("web").pid == pid
        for _ in range(3):  # the leader's sync looks again: adopted once already
            orch._ctx.sync.tick()
        assert [(e.event, e.pid) for e in orch.history("web")] == [("adopted", pid), ("started", pid)]
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
        host.stdout.close()
        if orch is None:
            orch = ServerOrchestrator(state, interval=0.2, log_dir=logs)
            orch.register_servers(servers)
            orch.initialize()
        orch.shutdown(stop_servers=True)
