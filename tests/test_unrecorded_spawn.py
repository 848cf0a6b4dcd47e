"""A host killed between spawning a server and recording it: the next host finds the process.

The host below dies with os._exit() inside the store's update, right after the
spawn and before the write, which is the window a kill -9 can hit (found by the
chaos suite). The spawn carries the state file, its id and its token, so the
next orchestrator on that state file proves it is ours and adopts it, or stops
it when the server already runs elsewhere or only leftovers remain.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import psutil
import pytest
from helpers import PY, free_port, is_gone, listener_code, python_cmd, running_counts, wait_until

from procsync import ServerOrchestrator
from procsync.proctree import STATE_VAR

HOST = textwrap.dedent("""
    import json, os, sys
    from procsync import ServerOrchestrator
    state, logs, server = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    orch = ServerOrchestrator(state, log_dir=logs, interval=60)
    orch.register_server("web", server)
    orch.initialize()
    update = orch.store.update_process

    def dying_update(sid, fn):
        def spawn_then_die(old):
            fn(old)          # spawns the server
            os._exit(9)      # ... and the host dies before the record is written
        return update(sid, spawn_then_die)

    orch.store.update_process = dying_update
    batch = orch.store.write_batch  # a start's claim is a batch of one

    def dying_batch(updates, events=()):
        return batch({sid: dying(fn) for sid, fn in updates.items()}, events)

    def dying(fn):
        def spawn_then_die(old):
            fn(old)
            os._exit(9)
        return spawn_then_die

    orch.store.write_batch = dying_batch
    orch.start_server("web", wait=False)
""")


def spawn_and_die(tmp_path, server: dict) -> None:
    """Run a host that spawns `web` and dies before recording it."""
    result = subprocess.run([PY, "-c", HOST, str(tmp_path / "state.json"), str(tmp_path / "logs"),
                             json.dumps(server)], timeout=60, capture_output=True, text=True)
    assert result.returncode == 9, result.stderr


def web_pids(tmp_path) -> list[int]:
    """Live processes of server "web" spawned for this test's state file (not another test's)."""
    state = os.path.realpath(tmp_path / "state.json")
    return [p.pid for p in psutil.process_iter() if _is_web(p, state)]


def _is_web(proc: psutil.Process, state: str) -> bool:
    try:
        env = proc.environ()
        return (env.get("PROCSYNC_ID") == "web" and env.get(STATE_VAR) == state
                and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


@pytest.fixture
def new_host(tmp_path):
    hosts: list[ServerOrchestrator] = []

    def make(server: dict) -> ServerOrchestrator:
        orch = ServerOrchestrator(tmp_path / "state.json", log_dir=tmp_path / "logs", interval=0.2)
        hosts.append(orch)
        orch.register_server("web", server)
        return orch

    yield make
    for orch in hosts:
        orch.shutdown(stop_servers=True)


def test_a_spawn_the_dead_host_never_recorded_is_adopted(tmp_path, new_host):
    port = free_port()
    server = {"command": python_cmd(listener_code(port)), "ports": [port]}
    spawn_and_die(tmp_path, server)
    pid = wait_until(lambda: web_pids(tmp_path), 10, "the unrecorded server process")[0]
    assert not (tmp_path / "state.json").exists() or "web" not in (tmp_path / "state.json").read_text()

    orch = new_host(server)
    orch.initialize()
    status = orch.get_server("web")
    assert (status.status, status.pid, status.orphaned) == ("running", pid, False)
    assert json.loads((tmp_path / "state.json").read_text())["web"]["pid"] == pid
    assert orch.start_server("web").success is False  # already running: never a second copy
    assert running_counts()["web"] == 1
    assert orch.stop_server("web").success
    wait_until(lambda: is_gone(pid), 10, "the adopted process to stop")


def test_an_unrecorded_second_copy_is_stopped(tmp_path, new_host, monkeypatch):
    server = {"command": python_cmd("import time; time.sleep(120)")}
    spawn_and_die(tmp_path, server)
    unrecorded = wait_until(lambda: web_pids(tmp_path), 10, "the unrecorded copy")[0]
    # a host that does not look for unrecorded spawns starts a second, recorded copy
    with monkeypatch.context() as patch:
        patch.setattr("procsync.orchestrator.recovery.spawns_for_state", lambda state: [])
        orch = new_host(server)
        assert orch.start_server("web").success
        recorded = orch.get_server("web").pid
        orch.shutdown()  # leaves it running, recorded
    assert sorted(web_pids(tmp_path)) == sorted([unrecorded, recorded])

    orch = new_host(server)
    orch.initialize()
    wait_until(lambda: is_gone(unrecorded), 10, "the unrecorded second copy to be stopped")
    status = orch.get_server("web")
    assert (status.status, status.pid) == ("running", recorded)
    assert not is_gone(recorded)


def test_leftovers_of_an_unrecorded_spawn_are_stopped(tmp_path, new_host):
    ready = tmp_path / "child.pid"
    code = ("import subprocess, sys, time, pathlib\n"
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
            f"pathlib.Path({str(ready)!r}).write_text(str(c.pid))\n"
            "time.sleep(120)\n")
    server = {"command": python_cmd(code)}
    spawn_and_die(tmp_path, server)
    child = int(wait_until(lambda: ready.exists() and ready.read_text(), 10, "the child's pid"))
    top = next(pid for pid in web_pids(tmp_path) if pid != child)
    psutil.Process(top).kill()
    wait_until(lambda: is_gone(top), 10, "the top process to die")

    orch = new_host(server)
    orch.initialize()
    wait_until(lambda: is_gone(child), 10, "the leftover child to be stopped")
    assert orch.get_server("web").status == "stopped"
