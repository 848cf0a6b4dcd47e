"""Log files never follow symbolic links: spawning, rotating and reading (issue 11, defect 3)."""

from __future__ import annotations

import os
import stat
import threading

import pytest
from flask import Flask
from helpers import python_cmd, wait_until

from procsync import ProcessManager, SpawnConfig, SpawnError
from procsync.flask_ext import ProcSync
from procsync.flask_ext.logstream import LogFollower, stream_log
from procsync.logs import LogRotator, rotate, tail_lines

SECRET = "TOP-SECRET-CONTENT"


@pytest.fixture
def victim(tmp_path):
    """A file some attacker wants procsync to overwrite or show."""
    path = tmp_path / "victim.txt"
    path.write_text(SECRET + "\n")
    return path


def test_spawn_refuses_a_log_path_that_is_a_symlink(manager, tmp_path, victim):
    (tmp_path / "logs").mkdir()
    link = tmp_path / "logs" / "web.log"
    link.symlink_to(victim)
    errors = []
    with pytest.raises(SpawnError) as caught:
        manager.spawn(SpawnConfig(id="web", command=python_cmd("print('written through the link')")))
    errors.append(str(caught.value))
    assert str(link) in errors[0] and "symbolic link" in errors[0]
    assert victim.read_text() == SECRET + "\n"  # nothing written through it
    assert manager.get_process("web") is None  # no record, no process

    # the same for an explicit log_file
    explicit = tmp_path / "explicit.log"
    explicit.symlink_to(victim)
    with pytest.raises(SpawnError, match="symbolic link"):
        manager.spawn(SpawnConfig(id="api", command=python_cmd("print('x')"), log_file=str(explicit)))
    assert victim.read_text() == SECRET + "\n"


def test_orchestrator_start_names_the_symlinked_log(orch, tmp_path, victim):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "web.log").symlink_to(victim)
    orch.register_server("web", {"command": python_cmd("import time; time.sleep(60)")})
    result = orch.start_server("web")
    assert not result.success
    assert str(logs / "web.log") in result.message and "symbolic link" in result.message
    assert orch.get_server("web").status != "starting"
    assert victim.read_text() == SECRET + "\n"


def test_log_dir_created_0700_existing_left_alone(tmp_path):
    made = tmp_path / "fresh" / "logs"
    m = ProcessManager(log_dir=made)
    try:
        info = m.spawn(SpawnConfig(id="one", command=python_cmd("print('hi')")))
        m.wait("one", timeout=10)
        assert stat.S_IMODE(os.stat(made).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(made.parent).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(info.log_file).st_mode) == 0o600
    finally:
        m.close()
    existing = tmp_path / "shared"
    existing.mkdir()
    os.chmod(existing, 0o755)
    m = ProcessManager(log_dir=existing)
    try:
        m.spawn(SpawnConfig(id="two", command=python_cmd("print('hi')")))
        m.wait("two", timeout=10)
        assert stat.S_IMODE(os.stat(existing).st_mode) == 0o755
    finally:
        m.close()


def test_rotation_never_writes_through_links(tmp_path, victim):
    log = tmp_path / "web.log"
    log.write_text("line one\nline two\n")
    other = tmp_path / "other.txt"
    other.write_text("OTHER\n")
    (tmp_path / "web.log.1").symlink_to(victim)  # would be overwritten by the copy
    (tmp_path / "web.log.2").symlink_to(other)  # would be shifted onto
    assert rotate(log, 3)
    assert victim.read_text() == SECRET + "\n" and other.read_text() == "OTHER\n"
    first = tmp_path / "web.log.1"
    assert not first.is_symlink() and first.read_text() == "line one\nline two\n"
    assert log.read_text() == ""
    # with one backup the old `.1` (a link) is replaced, not written through
    log.write_text("again\n")
    first.unlink()
    first.symlink_to(victim)
    assert rotate(log, 1)
    assert victim.read_text() == SECRET + "\n"
    assert not first.is_symlink() and first.read_text() == "again\n"


def test_a_log_that_is_a_link_is_not_truncated_by_rotation(tmp_path, victim, caplog):
    log = tmp_path / "web.log"
    log.symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link"):
        rotate(log, 2)
    with pytest.raises(OSError):
        rotate(log, 0)
    rotator = LogRotator(lambda: [(str(log), 1, 2)])
    assert rotator.check_now() == 0
    assert rotator.check_now() == 0
    assert victim.read_text() == SECRET + "\n"
    assert not (tmp_path / "web.log.1").exists()
    warned = [r for r in caplog.records if "symbolic link" in r.getMessage()]
    assert len(warned) == 1  # once, not every second


def test_readers_do_not_follow_a_link(tmp_path, victim):
    log = tmp_path / "web.log"
    log.symlink_to(victim)
    assert tail_lines(log, 10) == []
    follower = LogFollower(lambda: str(log))
    try:
        assert follower.start_at_end(backlog=10) == []
        assert follower.poll() == ([], False)
    finally:
        follower.close()
    # a `.1` that is a link is not read either
    log.unlink()
    log.write_text("fresh\n")
    (tmp_path / "web.log.1").symlink_to(victim)
    assert tail_lines(log, 10) == ["fresh"]


def test_stream_does_not_show_a_link_target(tmp_path, victim):
    log = tmp_path / "web.log"
    log.symlink_to(victim)
    stop = threading.Event()
    chunks = stream_log(lambda: str(log), backlog=10, heartbeat=0.05, stop=stop)
    got = b""
    for chunk in chunks:
        got += chunk
        if b"heartbeat" in got:
            stop.set()
    assert SECRET.encode() not in got


def test_log_swapped_for_a_link_is_not_shown(orch, tmp_path, victim):
    """A log replaced by a link while the server runs: tail_log and the API show nothing of it."""
    orch.register_server("web", {"command": python_cmd("print('hello', flush=True)\nimport time\ntime.sleep(60)")})
    assert orch.start_server("web").success
    wait_until(lambda: orch.tail_log("web") == ["hello"], 10, "the log line")
    path = orch.log_path("web")
    os.unlink(path)
    os.symlink(victim, path)
    assert orch.tail_log("web") == []
    app = Flask(__name__)
    ProcSync(app, orch)
    resp = app.test_client().get("/procsync/api/servers/web/logs")
    assert resp.status_code == 200
    assert SECRET not in resp.get_data(as_text=True)
    assert resp.get_json()["lines"] == []
