"""Leader election (procsync.leader) and fork detection (procsync.forks), with real processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import textwrap

import pytest
from helpers import PY, is_gone, kill_marked, wait_until
from instance_driver import Instance

from procsync import ServerOrchestrator
from procsync.instances.leader import InstanceId, LeaderLock, leader_path, owner_alive, owner_name
from procsync.store import open_store

SLEEP = shutil.which("sleep") or "/bin/sleep"


def test_one_holder_at_a_time_and_its_name_is_readable(tmp_path):
    path = leader_path(tmp_path / "state.json")
    assert path.name == "state.json.leader"
    first, second = LeaderLock(path), LeaderLock(path)
    assert first.holder() is None
    assert first.try_acquire("one") and first.is_leader
    assert first.try_acquire("one")  # idempotent
    assert not second.try_acquire("two") and not second.is_leader
    assert second.holder() == "one"
    first.release()
    first.release()  # safe twice
    assert second.holder() is None
    assert second.try_acquire("two") and second.holder() == "two" and first.holder() == "two"
    second.release()


def test_the_lock_dies_with_its_process_even_on_sigkill(tmp_path):
    path = leader_path(tmp_path / "state.json")
    code = textwrap.dedent(f"""
        import sys, time
        from procsync.instances.leader import LeaderLock
        lock = LeaderLock({str(path)!r})
        assert lock.try_acquire("holder")
        print("held", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        mine = LeaderLock(path)
        assert not mine.try_acquire("me") and mine.holder() == "holder"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=5)
        assert mine.try_acquire("me") and mine.holder() == "me"
        mine.release()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def test_owner_tokens_name_a_live_or_a_gone_instance():
    me = InstanceId.current("web-1")
    assert me.token.startswith("web-1 [pid ") and owner_name(me.token) == "web-1"
    assert owner_alive(me.token)
    assert owner_alive(f"pid {os.getpid()}")  # the form written before instances had names
    dead = subprocess.Popen([PY, "-c", "pass"])
    dead.wait()
    gone = InstanceId("old", dead.pid, me.create_time)
    assert not owner_alive(gone.token)
    assert not owner_alive(None) and not owner_alive("") and not owner_alive("garbage")
    assert owner_name(None) is None and owner_name("garbage") == "garbage"
    assert InstanceId.current().name.endswith(f":{os.getpid()}")
    for bad in ("", "  ", "a\nb", 3):
        with pytest.raises(ValueError, match="instance_name"):
            InstanceId.current(bad)


def test_first_instance_leads_and_the_next_takes_over_when_it_shuts_down(tmp_path):
    kw = {"interval": 0.2, "log_dir": tmp_path / "logs"}
    one = ServerOrchestrator(tmp_path / "state.json", instance_name="one", **kw)
    two = ServerOrchestrator(tmp_path / "state.json", instance_name="two", **kw)
    try:
        assert not one.is_leader  # nothing is tried before initialize()
        one.initialize()
        two.initialize()
        assert one.is_leader and not two.is_leader
        assert two.instance_info() == {"name": "two", "pid": os.getpid(), "is_leader": False,
                                       "leader": "one"}
        one.shutdown()
        wait_until(lambda: two.is_leader, 2, "two leads")
        assert two.instance_info()["leader"] == "two"
    finally:
        one.shutdown()
        two.shutdown(stop_servers=True)


def test_a_killed_leaders_servers_are_adopted_same_pid_by_the_new_leader(tmp_path):
    state, logs = tmp_path / "state.json", tmp_path / "logs"
    registry = {"w": {"command": [SLEEP, "600"]}}
    a = Instance(state, logs, "A", registry, interval=0.2)
    b = Instance(state, logs, "B", registry, interval=0.2)
    try:
        pid = a.call("start", id="w")["pid"]
        assert a.call("leader")["is_leader"] and not b.call("leader")["is_leader"]
        a.kill()
        wait_until(lambda: b.call("leader")["is_leader"], 1.5, "B leads within a few ticks")
        store = open_store(state)
        wait_until(lambda: owner_name(store.get_process("w").owner) == "B", 2, "B owns w")
        assert store.get_process("w").pid == pid and not is_gone(pid)
        assert b.call("status")["w"]["pid"] == pid
        wait_until(lambda: [e.event for e in store.history("w", 2)] == ["adopted", "started"], 2,
                   "the adoption in the history")
        assert b.call("stop", id="w")["success"] and is_gone(pid)
    finally:
        a.close()
        b.close()
        kill_marked()


@pytest.fixture
def pair(tmp_path):
    """Orchestrators "one" (the leader) and "two" on one state file, each with server "w"."""
    kw = {"interval": 0.2, "log_dir": tmp_path / "logs"}
    made = [ServerOrchestrator(tmp_path / "state.json", instance_name=name, **kw)
            for name in ("one", "two")]
    try:
        for orch in made:
            orch.register_server("w", {"command": [SLEEP, "600"]})
            orch.initialize()
        yield made
    finally:
        for orch in reversed(made):
            orch.shutdown(stop_servers=True)
        kill_marked()


def test_the_leader_records_a_death_its_living_owner_failed_to_record(pair):
    one, two = pair
    pid = two.start_server("w").pid
    wait_until(lambda: one.get_server("w").pid == pid, 2, "one sees w")
    two.manager.close()  # two still lives but no longer hears about exits
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: one.get_server("w").status == "crashed", 5, "the leader records it")
    record = wait_until(lambda: (r := one.store.get_process("w")).status == "crashed" and r, 2,
                        "the crash in the store")
    assert (record.status, record.exit_code, owner_name(record.owner)) == ("crashed", None, "one")
    wait_until(lambda: one.history("w", 1)[0].event == "crashed", 2, "the crash in the history")


FORK_STARTED = """
import json, os, sys
from procsync import ServerOrchestrator
orch = ServerOrchestrator(sys.argv[1], interval=0.2, log_dir=sys.argv[2])
orch.register_server("w", {"command": [sys.argv[3], "600"]})
orch.initialize()
pid = orch.start_server("w").pid
child = os.fork()
if child == 0:
    try:
        orch.get_server_status()
        out = "no error"
    except Exception as err:
        out = type(err).__name__ + ": " + str(err)
    orch.shutdown(stop_servers=True)  # must not touch the parent's servers
    print(json.dumps({"child": out}), flush=True)
    os._exit(0)
os.waitpid(child, 0)
print(json.dumps({"parent": orch.get_server("w").pid == pid, "leader": orch.is_leader}), flush=True)
orch.shutdown(stop_servers=True)
"""

FORK_FRESH = """
import json, os, sys
from procsync import ServerOrchestrator
orch = ServerOrchestrator(sys.argv[1], interval=0.2, log_dir=sys.argv[2])
orch.register_server("w", {"command": [sys.argv[3], "600"]})
child = os.fork()
if child == 0:
    orch.initialize()
    started = orch.start_server("w")
    print(json.dumps({"child": started.success, "leader": orch.is_leader,
                      "pid": started.pid, "me": os.getpid()}), flush=True)
    orch.shutdown(stop_servers=True)
    os._exit(0)
os.waitpid(child, 0)
orch.initialize()
print(json.dumps({"parent": orch.get_server("w").status, "leader": orch.is_leader}), flush=True)
orch.shutdown(stop_servers=True)
"""


def run_script(code: str, tmp_path) -> list[dict]:
    done = subprocess.run([PY, "-c", code, str(tmp_path / "state.json"), str(tmp_path / "logs"), SLEEP],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_a_fork_of_a_started_orchestrator_refuses_with_a_clear_error(tmp_path):
    child, parent = run_script(FORK_STARTED, tmp_path)
    assert child["child"].startswith("ForkedOrchestratorError: this ServerOrchestrator was started")
    assert "post_fork" in child["child"] and "--preload" in child["child"]
    assert parent == {"parent": True, "leader": True}  # the child's shutdown left it all alone


def test_a_fork_of_an_orchestrator_that_never_started_works_as_a_fresh_instance(tmp_path):
    child, parent = run_script(FORK_FRESH, tmp_path)
    assert child["child"] and child["leader"] and child["pid"] != child["me"]
    assert parent == {"parent": "stopped", "leader": True}


def test_a_look_at_the_store_applied_late_never_undoes_a_newer_one(pair, tmp_path):
    """A sync pass that read the records before a request's own look applied a newer one
    (its thread was slow, busy watching another server) must not bring the older record
    back: it once turned this instance's own fresh start into "cancelled" and killed it."""
    one, two = pair
    old_pid = two.start_server("w").pid
    assert one.get_server("w").pid == old_pid  # one has seen two's running record
    store = open_store(tmp_path / "state.json")
    stale = store.get_process("w")  # what a slow sync pass of one read, back then
    assert two.stop_server("w").success
    assert one.get_server("w").status == "stopped"
    new_pid = one.start_server("w").pid
    assert new_pid and new_pid != old_pid

    one._ctx.sync._observe("w", stale)  # the slow pass applies what it read

    status = one.get_server("w")
    assert (status.status, status.pid) == ("running", new_pid)
    assert owner_name(store.get_process("w").owner) == "one"
    assert one.stop_server("w").success and is_gone(new_pid)
