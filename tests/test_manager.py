"""ProcessManager with real processes: spawn, exits, kill escalation, adoption, logs."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from helpers import PY, ignore_term_code, is_gone, python_cmd, wait_until

from procsync import (
    DuplicateProcessError,
    IdentityMismatch,
    ProcessManager,
    ProcessNotFound,
    SpawnConfig,
    SpawnError,
    signals,
)
from procsync.logs import tail_lines

SLEEP = python_cmd("import time; time.sleep(60)")


class Recorder:
    """Collects the payloads of one signal sent by one sender."""

    def __init__(self, sig, sender):
        self.events: list[dict] = []
        self._lock = threading.Lock()
        self.sig = sig
        sig.connect(self.receive, sender=sender)

    def receive(self, sender, **payload):
        with self._lock:
            self.events.append(payload)

    def for_id(self, id):
        with self._lock:
            return [e for e in self.events if e["id"] == id]

    def close(self):
        self.sig.disconnect(self.receive)


@pytest.fixture
def exits(manager):
    rec = Recorder(signals.process_exit, manager)
    yield rec
    rec.close()


def start_detached(code: str) -> tuple[int, float]:
    """Start `code` in its own session through a parent that exits at once; (pid, create_time).

    The process is then not our child (PID 1 adopts it), like a server left
    running by an earlier procsync that crashed.
    """
    out = subprocess.run(
        [PY, "-c",
         "import subprocess, sys\n"
         f"p = subprocess.Popen([sys.executable, '-c', {code!r}], start_new_session=True,\n"
         "    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
         "print(p.pid)"],
        capture_output=True, text=True, check=True, timeout=10,
    )
    pid = int(out.stdout.strip())
    return pid, psutil.Process(pid).create_time()


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ------------------------------------------------------------------ spawning


def test_spawn_runs_in_own_session_with_log_and_marker(manager, tmp_path):
    code = (
        "import os, sys, json\n"
        "print(json.dumps({'sid': os.getsid(0), 'pgid': os.getpgid(0), 'id': os.environ.get('PROCSYNC_ID'),"
        " 'extra': os.environ.get('EXTRA'), 'stdin': os.readlink('/proc/self/fd/0')}), flush=True)\n"
        "print('to stderr', file=sys.stderr, flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    info = manager.spawn(SpawnConfig(id="web", command=python_cmd(code), env={"EXTRA": "yes"}, ports=(8123,)))
    assert info.pid > 0 and info.pgid == info.pid and info.status == "running"
    assert info.start_time.tzinfo is not None and info.ports == (8123,)
    assert info.create_time == psutil.Process(info.pid).create_time()
    log_file = Path(info.log_file)
    assert log_file.parent == tmp_path / "logs"
    lines = wait_until(lambda: len(tail_lines(log_file)) >= 2 and tail_lines(log_file), what="log lines")
    seen = json.loads(lines[0])
    assert seen == {"sid": info.pid, "pgid": info.pid, "id": "web", "extra": "yes", "stdin": "/dev/null"}
    assert lines[1] == "to stderr"
    assert manager.is_running("web")
    assert [p.id for p in manager.get_all_processes()] == ["web"]


def test_string_command_runs_without_shell_unless_asked(manager, exits, tmp_path):
    os.environ["PROCSYNC_TEST_WORD"] = "expanded"
    try:
        manager.spawn(SpawnConfig(id="plain", command="echo $PROCSYNC_TEST_WORD 'two words'"))
        manager.spawn(SpawnConfig(id="shell", command="echo $PROCSYNC_TEST_WORD", shell=True))
        wait_until(lambda: exits.for_id("plain") and exits.for_id("shell"), what="both exits")
    finally:
        del os.environ["PROCSYNC_TEST_WORD"]
    assert tail_lines(manager.log_path("plain")) == ["$PROCSYNC_TEST_WORD two words"]
    assert tail_lines(manager.log_path("shell")) == ["expanded"]


@pytest.mark.parametrize("how", ["exits", "is killed"])
def test_child_survives_the_python_process_that_spawned_it(tmp_path, how):
    script = (
        "import json, os, sys, time\n"
        "from procsync import ProcessManager, SpawnConfig\n"
        f"m = ProcessManager(log_dir={str(tmp_path / 'logs')!r})\n"
        "info = m.spawn(SpawnConfig(id='srv', command=[sys.executable, '-c', 'import time; time.sleep(60)']))\n"
        "print(json.dumps([info.pid, info.create_time]), flush=True)\n"
        + ("time.sleep(60)\n" if how == "is killed" else "")
    )
    parent = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True)
    pid = None
    try:
        pid, create_time = json.loads(parent.stdout.readline())
        if how == "is killed":
            parent.kill()
        assert parent.wait(timeout=10) in (0, -signal.SIGKILL)
        proc = psutil.Process(pid)
        assert proc.create_time() == create_time
        assert proc.status() != psutil.STATUS_ZOMBIE
        assert proc.ppid() != parent.pid
        survivor = ProcessManager(log_dir=tmp_path / "logs2")
        try:
            survivor.adopt("srv", pid, create_time)
            assert survivor.kill("srv", timeout=5).success
        finally:
            survivor.close()
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        if pid:
            kill_group(pid)


def test_duplicate_id_while_running_is_refused(manager):
    first = manager.spawn(SpawnConfig(id="a", command=SLEEP))
    with pytest.raises(DuplicateProcessError, match="'a' is already running"):
        manager.spawn(SpawnConfig(id="a", command=SLEEP))
    assert manager.get_process("a").pid == first.pid


def test_many_threads_spawning_one_id_start_one_process(manager):
    barrier = threading.Barrier(20)
    outcomes: list[object] = []

    def attempt():
        barrier.wait()
        try:
            outcomes.append(manager.spawn(SpawnConfig(id="one", command=SLEEP)))
        except DuplicateProcessError as err:
            outcomes.append(err)

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    started = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(started) == 1 and len(outcomes) == 20
    children = [p for p in psutil.Process().children() if p.status() != psutil.STATUS_ZOMBIE]
    assert [c.pid for c in children] == [started[0].pid]


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (SpawnConfig(id="bad", command="procsync-no-such-program --flag"), "executable 'procsync-no-such-program' not found"),
        (SpawnConfig(id="bad", command=SLEEP, cwd="/no/such/dir"), "working directory '/no/such/dir' does not exist"),
        (SpawnConfig(id="bad", command="/dev/null"), "permission denied running '/dev/null'"),
    ],
)
def test_spawn_failure_raises_reports_and_leaves_nothing(manager, config, reason):
    errors = Recorder(signals.process_error, manager)
    try:
        with pytest.raises(SpawnError) as caught:
            manager.spawn(config)
    finally:
        errors.close()
    assert str(caught.value) == f"cannot start 'bad': {reason}"
    assert errors.events == [{"id": "bad", "pid": None, "error": str(caught.value), "command": errors.events[0]["command"]}]
    assert manager.get_process("bad") is None and not manager.is_running("bad")
    assert not [p for p in psutil.Process().children() if p.status() != psutil.STATUS_ZOMBIE]


# ------------------------------------------------------------------ exits


@pytest.mark.parametrize(("code", "status", "exit_code", "sig"), [
    ("raise SystemExit(0)", "exited", 0, None),
    ("raise SystemExit(3)", "crashed", 3, None),
    ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "crashed", -signal.SIGSEGV, "SIGSEGV"),
])
def test_exit_is_reported_with_code_and_reaped(manager, exits, code, status, exit_code, sig):
    info = manager.spawn(SpawnConfig(id="job", command=python_cmd(code)))
    event = wait_until(lambda: exits.for_id("job"), what="process_exit")[0]
    assert event["pid"] == info.pid and event["exit_code"] == exit_code
    assert event["signal"] == sig and event["expected"] is False
    final = manager.get_process("job")
    assert (final.status, final.exit_code) == (status, exit_code)
    assert event["info"] == final
    assert not manager.is_running("job")
    assert not psutil.pid_exists(info.pid) or psutil.Process(info.pid).create_time() != info.create_time


def test_outside_kill_is_noticed_and_id_can_be_spawned_again(manager, exits):
    info = manager.spawn(SpawnConfig(id="srv", command=SLEEP))
    os.kill(info.pid, signal.SIGKILL)
    event = wait_until(lambda: exits.for_id("srv"), what="process_exit")[0]
    assert (event["exit_code"], event["signal"]) == (-9, "SIGKILL")
    assert manager.get_process("srv").status == "crashed"
    again = manager.spawn(SpawnConfig(id="srv", command=SLEEP))
    assert again.pid != info.pid and manager.get_process("srv").status == "running"


def test_crashed_leader_does_not_leave_its_children_behind(manager, exits, tmp_path):
    ready = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, pathlib, os\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"pathlib.Path({str(ready)!r}).write_text(str(c.pid))\n"
        "os._exit(7)\n"
    )
    manager.spawn(SpawnConfig(id="npm", command=python_cmd(code), stop_timeout=2))
    wait_until(lambda: exits.for_id("npm"), what="leader exit")
    child = int(wait_until(ready.read_text, what="child pid"))
    assert manager.wait("npm", timeout=10) is not None
    assert is_gone(child)


# ------------------------------------------------------------------ kill


def test_kill_stops_group_including_shell_background_jobs(manager, exits):
    info = manager.spawn(SpawnConfig(id="sh", command="sleep 60 & sleep 61 & wait", shell=True))
    kids = wait_until(lambda: len(psutil.Process(info.pid).children()) == 2 and psutil.Process(info.pid).children(),
                      what="two background sleeps")
    result = manager.kill("sh")
    assert result.success and result.signal == "SIGTERM" and result.pid == info.pid
    assert result.exit_code == -signal.SIGTERM
    for kid in kids:
        wait_until(lambda kid=kid: is_gone(kid.pid), what=f"sleep {kid.pid} gone")
    event = exits.for_id("sh")[0]
    assert event["expected"] is True


def test_kill_escalates_to_sigkill_for_a_child_ignoring_sigterm(manager, tmp_path):
    ready = tmp_path / "ready"
    info = manager.spawn(SpawnConfig(id="stubborn", command=python_cmd(ignore_term_code(str(ready))), stop_timeout=0.3))
    wait_until(ready.exists, what="handler installed")
    result = manager.kill("stubborn")
    assert result.success and result.signal == "SIGKILL" and result.exit_code == -signal.SIGKILL
    assert is_gone(info.pid)
    assert manager.get_process("stubborn").status == "crashed"


def test_kill_reaches_a_grandchild_that_left_the_group(manager, tmp_path):
    pidfile = tmp_path / "escapee"
    escapee_script = tmp_path / "escapee.py"
    escapee_script.write_text(
        "import os, signal, time, pathlib\n"
        "os.setsid()\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(pidfile)!r}).write_text(str(os.getpid()))\n"
        "time.sleep(60)\n"
    )
    code = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, {str(escapee_script)!r}])\n"
        "time.sleep(60)\n"
    )
    info = manager.spawn(SpawnConfig(id="escaper", command=python_cmd(code), stop_timeout=0.5))
    escapee = int(wait_until(lambda: pidfile.exists() and pidfile.read_text(), what="escapee pid"))
    assert os.getpgid(escapee) != info.pgid
    result = manager.kill("escaper")
    assert result.success and result.signal == "SIGKILL"
    wait_until(lambda: is_gone(escapee), what="setsid grandchild gone")


def test_kill_unknown_or_ended_id_is_a_failed_result(manager, exits):
    assert not manager.kill("ghost").success
    manager.spawn(SpawnConfig(id="quick", command=python_cmd("pass")))
    wait_until(lambda: exits.for_id("quick"), what="exit")
    result = manager.kill("quick")
    assert not result.success and "not running" in result.message and result.exit_code == 0


def test_kill_all_stops_processes_in_parallel(manager, tmp_path):
    code = (
        "import signal, time, sys, pathlib\n"
        "signal.signal(signal.SIGTERM, lambda *a: (time.sleep(1), sys.exit(0)))\n"
        "pathlib.Path(sys.argv[1]).write_text('ready')\n"
        "while True: time.sleep(1)\n"
    )
    for n in range(8):
        manager.spawn(SpawnConfig(id=f"slow{n}", command=[PY, "-c", code, str(tmp_path / f"r{n}")]))
    wait_until(lambda: all((tmp_path / f"r{n}").exists() for n in range(8)), what="handlers ready")
    started = time.monotonic()
    results = manager.kill_all()
    elapsed = time.monotonic() - started
    assert sorted(r.id for r in results) == [f"slow{n}" for n in range(8)]
    assert all(r.success and r.exit_code == 0 and r.signal == "SIGTERM" for r in results)
    assert elapsed < 6, f"8 processes that take 1 s each took {elapsed:.1f}s to stop: not in parallel"


# ------------------------------------------------------------------ adopt


def test_adopted_process_death_is_seen_and_it_can_be_killed(manager, exits):
    pid, create_time = start_detached("import time; time.sleep(60)")
    try:
        info = manager.adopt("old", pid, create_time, ports=[9001])
        assert info.adopted and info.pid == pid and info.ports == (9001,)
        os.kill(pid, signal.SIGKILL)
        event = wait_until(lambda: exits.for_id("old"), what="adopted exit")[0]
        assert event["pid"] == pid and event["exit_code"] is None
        assert manager.get_process("old").status == "crashed"
    finally:
        kill_group(pid)
    pid2, ct2 = start_detached("import time; time.sleep(60)")
    try:
        manager.adopt("old", pid2, ct2)
        result = manager.kill("old")
        assert result.success and result.signal == "SIGTERM"
        wait_until(lambda: is_gone(pid2), what="adopted process gone")
    finally:
        kill_group(pid2)


def test_adopt_refuses_dead_pids_and_other_identities(manager):
    pid, create_time = start_detached("import time; time.sleep(60)")
    try:
        with pytest.raises(IdentityMismatch):
            manager.adopt("x", pid, create_time - 100)
        assert manager.get_process("x") is None
        assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    finally:
        kill_group(pid)
    wait_until(lambda: is_gone(pid), what="detached process gone")
    if not psutil.pid_exists(pid):
        with pytest.raises(ProcessNotFound):
            manager.adopt("x", pid, create_time)


def test_a_reused_pid_is_never_signalled(manager):
    pid, create_time = start_detached("import time; time.sleep(60)")
    try:
        manager.adopt("srv", pid, create_time)
        # Make the record claim another identity, as if the pid had been reused.
        entry = manager._entries["srv"]
        entry.info = dataclasses.replace(entry.info, create_time=create_time - 50)
        result = manager.kill("srv")
        assert not result.success and "no longer the process" in result.message
        assert result.signal is None
        assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    finally:
        kill_group(pid)


# ------------------------------------------------------------------ logs


def test_log_rotation_keeps_every_line(manager, tmp_path):
    code = (
        "import time, sys\n"
        "for i in range(600):\n"
        "    print(f'line {i:05d} ' + 'x' * 80, flush=True)\n"
        "    time.sleep(0.002)\n"
    )
    log_file = tmp_path / "logs" / "chatty.log"
    manager.spawn(SpawnConfig(id="chatty", command=python_cmd(code), log_file=str(log_file),
                              log_max_bytes=8000, log_backups=20))
    rotations = 0
    while manager.is_running("chatty"):
        rotations += manager._rotator.check_now()
        time.sleep(0.01)
    assert rotations >= 3
    parts = sorted(log_file.parent.glob("chatty.log.*"), key=lambda p: -int(p.suffix[1:])) + [log_file]
    # Copy-then-truncate can lose only a write that lands in the microseconds between the
    # last copy and the truncate (docs/manager.md): at most one line per rotation, and
    # none of the rest, in order.
    data = b"".join(part.read_bytes() for part in parts).replace(b"\0", b"")
    numbers = [int(m) for m in re.findall(rb"^line (\d{5}) x{80}$", data, re.MULTILINE)]
    assert numbers == sorted(set(numbers)), "lines out of order or repeated"
    assert numbers[-1] == 599
    assert len(numbers) >= 600 - rotations, f"lost {600 - len(numbers)} lines in {rotations} rotations"
    assert tail_lines(log_file, 3)[-1].startswith("line 00599")


def test_tail_lines_reads_across_rotation(tmp_path):
    log = tmp_path / "a.log"
    (tmp_path / "a.log.1").write_text("".join(f"old {i}\n" for i in range(5)))
    log.write_text("new 0\nnew 1\n")
    assert tail_lines(log, 4) == ["old 3", "old 4", "new 0", "new 1"]
    assert tail_lines(tmp_path / "missing.log") == []


def test_close_leaves_processes_running(tmp_path):
    mgr = ProcessManager(log_dir=tmp_path)
    info = mgr.spawn(SpawnConfig(id="keep", command=SLEEP))
    mgr.close()
    mgr.close()
    try:
        assert psutil.Process(info.pid).status() != psutil.STATUS_ZOMBIE
    finally:
        os.killpg(info.pid, signal.SIGKILL)
    # still reaped after close: the pid disappears instead of staying a zombie
    wait_until(lambda: not psutil.pid_exists(info.pid), what="child reaped after close")


def test_spawn_is_usable_from_plain_scripts_without_threads_left_blocking(tmp_path):
    script = (
        "import sys\n"
        "from procsync import ProcessManager, SpawnConfig\n"
        f"m = ProcessManager(log_dir={str(tmp_path)!r})\n"
        "m.spawn(SpawnConfig(id='a', command=[sys.executable, '-c', 'print(42)']))\n"
        "print(m.wait('a', timeout=10).exit_code)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"


def test_kill_after_close_still_stops_an_adopted_process(tmp_path):
    pid, create_time = start_detached("import time; time.sleep(60)")
    mgr = ProcessManager(log_dir=tmp_path)
    try:
        mgr.adopt("late", pid, create_time)
        mgr.close()
        started = time.monotonic()
        result = mgr.kill("late", timeout=5)
        assert result.success and result.signal == "SIGTERM"
        assert time.monotonic() - started < 4, "kill after close waited for a watcher that is gone"
        assert is_gone(pid)
    finally:
        kill_group(pid)


def test_exits_are_still_seen_without_pidfd(tmp_path, monkeypatch):
    def no_pidfd(pid, flags=0):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    mgr = ProcessManager(log_dir=tmp_path)
    rec = Recorder(signals.process_exit, mgr)
    try:
        info = mgr.spawn(SpawnConfig(id="polled", command=SLEEP))
        os.kill(info.pid, signal.SIGKILL)
        event = wait_until(lambda: rec.for_id("polled"), what="exit seen by polling")[0]
        assert event["exit_code"] == -signal.SIGKILL
        assert not psutil.pid_exists(info.pid) or is_gone(info.pid)
    finally:
        rec.close()
        mgr.kill_all()
        mgr.close()


# ------------------------------------------------------------------ kill_many

GROUP_KEEPER = (  # a child that leaves two SIGTERM-deaf grandchildren in its own group
    "import subprocess, sys, pathlib\n"
    "deaf = 'import signal, time, pathlib, os, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "pathlib.Path(sys.argv[1]).write_text(str(os.getpid())); time.sleep(60)'\n"
    "for n in range(2):\n"
    "    subprocess.Popen([sys.executable, '-c', deaf, sys.argv[1] + str(n)])\n"
    "import time; time.sleep(60)\n"
)

SESSION_LEAVER = (  # a child whose grandchild calls setsid(): outside its group and session
    "import subprocess, sys\n"
    "escapee = 'import os, signal, time, pathlib, sys; os.setsid(); "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "pathlib.Path(sys.argv[1]).write_text(str(os.getpid())); time.sleep(60)'\n"
    "subprocess.Popen([sys.executable, '-c', escapee, sys.argv[1]])\n"
    "import time; time.sleep(60)\n"
)


def read_pid(path: Path) -> int:
    return int(wait_until(lambda: path.exists() and path.read_text(), what=f"pid in {path.name}"))


def test_kill_many_stops_a_batch_with_everything_it_left_and_nothing_else(manager, tmp_path):
    # an unrelated process in a session of its own, started after the batch: its environment is
    # read (it could carry a token) but it carries none, so it must survive
    infos = {
        "keeper": manager.spawn(SpawnConfig(id="keeper", command=[PY, "-c", GROUP_KEEPER,
                                                                  str(tmp_path / "g")],
                                            stop_timeout=0.5)),
        "leaver": manager.spawn(SpawnConfig(id="leaver", command=[PY, "-c", SESSION_LEAVER,
                                                                  str(tmp_path / "e")],
                                            stop_timeout=0.5)),
        "plain": manager.spawn(SpawnConfig(id="plain", command=SLEEP)),
    }
    grandchildren = [read_pid(tmp_path / "g0"), read_pid(tmp_path / "g1")]
    escapee = read_pid(tmp_path / "e")
    assert all(os.getpgid(pid) == infos["keeper"].pgid for pid in grandchildren)
    assert os.getsid(escapee) == escapee != infos["leaver"].pid
    bystander = subprocess.Popen(SLEEP, start_new_session=True)
    try:
        results = manager.kill_many(["keeper", "leaver", "plain", "ghost", "plain"])
        assert list(results) == ["keeper", "leaver", "plain", "ghost"]
        assert not results["ghost"].success and "unknown" in results["ghost"].message
        for id in ("keeper", "leaver", "plain"):
            assert results[id].success, results[id].message
            assert results[id].pid == infos[id].pid
            assert not manager.is_running(id)
        assert results["plain"].signal == "SIGTERM"
        assert results["plain"].exit_code == -signal.SIGTERM
        assert results["keeper"].signal == "SIGKILL"  # its deaf grandchildren needed it
        assert results["leaver"].signal == "SIGKILL"  # so did the escapee
        leftovers = [pid for pid in [*grandchildren, escapee] if not is_gone(pid)]
        assert leftovers == [], "kill_many left processes of the batch running"
        assert all(is_gone(info.pid) for info in infos.values())
        assert bystander.poll() is None and not is_gone(bystander.pid), "an unrelated process was hit"
    finally:
        bystander.kill()
        bystander.wait()


def test_kill_many_of_nothing_and_of_ended_ids(manager, exits):
    assert manager.kill_many([]) == {}
    manager.spawn(SpawnConfig(id="quick", command=python_cmd("pass")))
    wait_until(lambda: exits.for_id("quick"), what="exit")
    result = manager.kill_many(["quick"])["quick"]
    assert not result.success and "not running" in result.message


def test_a_requested_stop_reports_its_exit_on_the_watcher_before_kill_returns(manager, exits):
    seen: list[str] = []

    def on_exit(sender, **payload):
        seen.append(threading.current_thread().name)

    signals.process_exit.connect(on_exit, sender=manager)
    try:
        manager.spawn(SpawnConfig(id="w", command=SLEEP))
        result = manager.kill("w")
        assert result.success and exits.for_id("w")[0]["expected"] is True
        assert seen == ["procsync-watcher"]
    finally:
        signals.process_exit.disconnect(on_exit)


def test_log_deleted_under_a_running_process_is_reported_once(manager, tmp_path, caplog):
    info = manager.spawn(SpawnConfig(id="quiet", command=SLEEP))
    Path(info.log_file).unlink()
    with caplog.at_level("WARNING", logger="procsync.manager"):
        manager._rotator.check_now()
        manager._rotator.check_now()
    warnings = [r.getMessage() for r in caplog.records if "was deleted" in r.getMessage()]
    assert len(warnings) == 1 and "'quiet'" in warnings[0] and str(info.pid) in warnings[0]
