"""Three orchestrator processes on one state file: each a real subprocess (instance_driver.py)."""

from __future__ import annotations

import collections
import random
import shutil
import threading

import psutil
import pytest
from helpers import is_gone, kill_marked, running_counts, wait_until
from instance_driver import Instance

from procsync import ServerOrchestrator
from procsync.instances.leader import owner_name
from procsync.instances.sync import DEAD_GRACE, SYNC_INTERVAL
from procsync.store import open_store

SLEEP = shutil.which("sleep") or "/bin/sleep"
SEEN_WITHIN = 1.5  # the promise is one second; a little slack for a loaded machine


def sleeper(**extra):
    return {"command": [SLEEP, "600"], "stop_timeout": 5, **extra}



@pytest.fixture
def trio(tmp_path):
    """make(registry) -> three driver instances A, B, C on one state file; all cleaned up."""
    made: list[Instance] = []
    registries: list[dict] = []
    state, logs = tmp_path / "state.json", tmp_path / "logs"

    def make(registry: dict, interval: float = 0.5) -> list[Instance]:
        registries.append(registry)
        for name in ("A", "B", "C"):
            made.append(Instance(state, logs, name, registry, interval))
        return made[-3:]

    try:
        yield make
    finally:
        for inst in made:
            inst.close()
        if registries:  # stop what they left running, through a fresh (leading) instance
            try:
                orch = ServerOrchestrator(state, interval=0.2, log_dir=logs)
                orch.register_servers(registries[-1])
                orch.initialize()
                orch.shutdown(stop_servers=True)
            finally:
                kill_marked()


BASICS = ("status", "pid", "running", "restarts", "last_exit_code")


def basics(status: dict) -> dict:
    """The fields of one server's status these tests compare whole."""
    return {key: status[key] for key in BASICS}


def a_state(inst: Instance) -> str:
    """The state file an instance was started on."""
    return inst.proc.args[2]


def drain(inst: Instance, into: list) -> list:
    into.extend(inst.call("events"))
    return into


def wait_for_event(inst: Instance, name: str) -> list:
    """Every event `inst` received until (and a moment after) the first called `name`."""
    got: list = []
    wait_until(lambda: any(e["event"] == name for e in drain(inst, got)), SEEN_WITHIN,
               f"{name} reaches {inst.name}")
    return drain(inst, got)


def test_start_through_one_is_seen_by_the_others_once_and_marked(trio):
    a, b, c = trio({"w": sleeper()})
    assert a.call("leader")["is_leader"] and not b.call("leader")["is_leader"]
    assert b.call("leader")["leader"] == "A"
    started = a.call("start", id="w")
    assert started["success"], started
    pid = started["pid"]
    for other in (b, c):
        wait_until(lambda o=other: basics(o.call("status")["w"]) == {
            "status": "running", "pid": pid, "running": True, "restarts": 0, "last_exit_code": None},
            SEEN_WITHIN, f"{other.name} sees w running")
    events = {inst.name: [] for inst in (a, b, c)}
    for inst in (a, b, c):
        wait_until(lambda i=inst: any(e["event"] == "server_started" for e in drain(i, events[i.name])),
                   SEEN_WITHIN, f"server_started reaches {inst.name}")
    for inst in (a, b, c):
        drain(inst, events[inst.name])
        starts = [{k: v for k, v in e.items() if k != "at"}
                  for e in events[inst.name] if e["event"] == "server_started"]
        assert starts == [{"event": "server_started", "id": "w", "pid": pid, "instance": "A"}]
    assert running_counts()["w"] == 1


def test_concurrent_starts_through_all_three_start_one_process(trio):
    ids = [f"w{i}" for i in range(5)]
    instances = trio({sid: sleeper() for sid in ids})
    for sid in ids:
        for inst in instances:
            inst.send("start", id=sid)
        answers = [inst.read() for inst in instances]
        winners = [ans for ans in answers if ans["success"]]
        assert len(winners) == 1, answers
        losers = [ans for ans in answers if not ans["success"]]
        assert all(ans["code"] == "already_running" for ans in losers), answers
        assert all(ans["pid"] == winners[0]["pid"] for ans in losers), answers
    counts = running_counts()
    assert {sid: counts[sid] for sid in ids} == {sid: 1 for sid in ids}


def test_stop_through_a_non_owner_adopts_then_stops_and_nobody_restarts(trio, tmp_path):
    runs = tmp_path / "runs"
    cmd = ["sh", "-c", f"echo $$ >> {runs}; exec {SLEEP} 600"]
    a, b, c = trio({"w": {"command": cmd, "autorestart": "always"}})
    pid = a.call("start", id="w")["pid"]
    for inst in (b, c):
        wait_until(lambda i=inst: i.call("status")["w"]["pid"] == pid, SEEN_WITHIN, f"{inst.name} sees w")
    stopped = b.call("stop", id="w")
    assert stopped["success"], stopped
    assert is_gone(pid)
    for inst in (a, b, c):  # A spawned it, so A knows the exit code and records it for all
        wait_until(lambda i=inst: basics(i.call("status")["w"]) == {
            "status": "stopped", "pid": None, "running": False, "restarts": 0, "last_exit_code": -15},
            SEEN_WITHIN, f"{inst.name} sees w stopped with -15")
    events: list = []
    for inst in (a, c):
        seen = wait_for_event(inst, "server_stopped")
        events += seen
    assert [e["instance"] for e in events if e["event"] == "server_stopped"] == ["B", "B"], events
    assert not [e for e in events if e["event"] == "server_restarting"]
    assert runs.read_text().split() == [str(pid)]
    assert running_counts()["w"] == 0


def test_leader_killed_in_backoff_restart_happens_once_through_the_new_leader(trio, tmp_path):
    runs = tmp_path / "runs"
    crasher = {"command": ["sh", "-c", f"echo $$ >> {runs}; exit 3"], "autorestart": "always",
               "max_restarts": 2, "backoff_initial": 2.0}
    a, b, c = trio({"crashy": crasher}, interval=0.2)
    assert a.call("leader")["is_leader"]
    a.call("start", id="crashy")
    # run 1 crashes, run 2 follows at once, crashes too: the 2nd restart waits 2 s in backoff
    wait_until(lambda: b.call("status")["crashy"]["status"] == "backoff"
               and b.call("status")["crashy"]["restarts"] == 2, 5, "crashy in its second backoff")
    assert len(runs.read_text().split()) == 2
    a.kill()
    wait_until(lambda: b.call("leader")["is_leader"] or c.call("leader")["is_leader"], 2,
               "a new leader")
    for inst in (b, c):
        wait_until(lambda i=inst: i.call("status")["crashy"]["status"] == "fatal", 10,
                   f"{inst.name} sees crashy fatal after the third run")
    assert len(runs.read_text().split()) == 3
    leader = b if b.call("leader")["is_leader"] else c
    other = c if leader is b else b
    events = wait_for_event(other, "server_fatal")
    assert [e["instance"] for e in events if e["event"] == "server_fatal"] == [leader.name]


def test_a_death_after_its_spawner_is_gone_is_seen_and_recorded_as_exit_code_unknown(trio):
    a, b, c = trio({"w": sleeper(), "v": sleeper()}, interval=0.2)
    w = b.call("start", id="w")["pid"]  # spawned by B, which does not lead
    v = a.call("start", id="v")["pid"]  # spawned by the leader
    for inst in (a, c):
        wait_until(lambda i=inst: i.call("status")["w"]["pid"] == w, SEEN_WITHIN, f"{inst.name} sees w")
    b.kill()
    psutil.Process(w).kill()  # nobody who could reap it and read its code is left
    for inst in (a, c):
        wait_until(lambda i=inst: basics(i.call("status")["w"]) == {
            "status": "crashed", "pid": None, "running": False, "restarts": 0, "last_exit_code": None},
            SEEN_WITHIN, f"{inst.name} sees w crashed, exit code unknown")
    # the status changes first, the history entry is written right after it
    history = wait_until(lambda: [e for e in open_store(a_state(a)).history("w", 1) if e.event == "crashed"],
                         SEEN_WITHIN, "the crash in the history")[0]
    assert history.pid == w and history.exit_code is None
    died = wait_for_event(c, "process_died")
    assert [e["instance"] for e in died if e["event"] == "process_died"] == ["A"]
    a.kill()  # now the leader goes too: C takes over v, same pid
    wait_until(lambda: c.call("leader")["is_leader"], SEEN_WITHIN, "C leads")
    wait_until(lambda: owner_name(open_store(a_state(a)).get_process("v").owner) == "C", 2, "C owns v")
    assert c.call("status")["v"]["pid"] == v and running_counts()["v"] == 1


def test_no_server_ever_runs_twice_across_200_random_actions(trio):
    ids = [f"s{i}" for i in range(4)]
    instances = trio({sid: sleeper() for sid in ids}, interval=0.2)
    rng = random.Random(8)
    ops = ("start", "start", "stop", "restart")
    answered = collections.Counter()
    twice: list[collections.Counter[str]] = []
    stop = threading.Event()

    def watch() -> None:  # look all the time, not only between batches
        while not stop.wait(0.02):
            counts = running_counts()
            if any(counts[sid] > 1 for sid in ids):
                twice.append(counts)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    done = 0
    while done < 200:
        batch = []
        for inst in instances:  # one action per instance, all in flight at once
            if done == 200:
                break
            op, sid = rng.choice(ops), rng.choice(ids)
            inst.send(op, id=sid)
            batch.append(inst)
            done += 1
        for inst in batch:
            ans = inst.read()
            answered[(ans["success"], ans["code"])] += 1
            assert ans["success"] or ans["code"] in ("already_running", "already_stopped") or (
                ans["code"] == "start_cancelled" and "cancelled" in ans["message"]), ans  # a concurrent stop won
        counts = running_counts()
        assert all(counts[sid] <= 1 for sid in ids), counts
    stop.set()
    watcher.join()
    assert not twice, twice
    assert answered[(True, None)] > 50  # the sequence did real work
    a = instances[0]

    last: dict[str, object] = {}

    def settled():
        # all three agree, and on what really runs: a stop that raced another stop can
        # leave a "stopping" record until the leader records the death (DEAD_GRACE)
        views = [inst.call("status") for inst in instances]
        counts = running_counts()
        last.update(views=views, counts=dict(counts))
        if not all(v == views[0] for v in views):
            return None
        return views if all(counts[sid] == (1 if views[0][sid]["running"] else 0) for sid in ids) else None

    try:
        # a generous bound: on a loaded machine the leader's sync pass that records a death
        # can itself come late; a record left "stopping" for good still fails here
        final = wait_until(settled, SEEN_WITHIN + 2 * DEAD_GRACE + 8 * SYNC_INTERVAL,
                           "all three agree on what runs")[0]
    except AssertionError as err:  # say what disagreed, and who owns each record
        store = open_store(a_state(a))
        records = {sid: (r.status, r.pid, owner_name(r.owner), psutil.pid_exists(r.pid or 0))
                   for sid in ids if (r := store.get_process(sid)) is not None}
        leaders = [inst.name for inst in instances if inst.call("leader")["is_leader"]]
        raise AssertionError(f"{err}; last views {last['views']}, processes {last['counts']}, "
                             f"records (status, pid, owner, pid exists) {records}, "
                             f"leader {leaders}") from None
    counts = running_counts()
    for sid in ids:
        view = final[sid]
        assert counts[sid] == (1 if view["running"] else 0), (sid, view, counts)
        if view["running"]:
            assert psutil.Process(view["pid"]).environ()["PROCSYNC_ID"] == sid
    a.call("quit", stop=True)  # one instance stops them all
    wait_until(lambda: not any(running_counts()[sid] for sid in ids), 5, "all servers stopped")
