"""procsync.django_ext: its suite through Django's test runner, and a test run beside real servers.

`tests/django_project` is a fresh Django project with the app; its suite
(``python manage.py test``, `tests/django_project/project/tests.py`) drives
real processes: runserver with and without the autoreloader, gunicorn with
two workers, ``manage.py procsync``, the API behind Django's login. Its
processes carry this session's marker, so the leak check covers them too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import free_port, is_gone, wait_until

from procsync.health import port_open
from procsync.store import open_store

pytest.importorskip("django", reason="procsync.django_ext needs django (the test extra has it)")

PROJECT = Path(__file__).resolve().parent / "django_project"


def manage(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def passed(proc: subprocess.CompletedProcess) -> int:
    """How many tests a `manage.py test` ran, asserting that all passed."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    ran = re.search(r"^Ran (\d+) tests? in ", output, re.M)
    assert ran and int(ran.group(1)) > 0 and re.search(r"^OK\b", output, re.M), output
    return int(ran.group(1))


@pytest.mark.timeout(600)
def test_the_django_suite_passes(tmp_path):
    env = {**os.environ, "DJPROJECT_DB": str(tmp_path / "db.sqlite3")}
    env.pop("DJPROJECT_PROCSYNC", None)
    own_state = PROJECT / ".procsync"
    existed = own_state.exists()
    assert passed(manage("test", "--noinput", "-v", "2", env=env, timeout=540)) >= 25
    assert own_state.exists() == existed, "the suite used the project's own state"


@pytest.mark.timeout(300)
def test_a_test_run_leaves_the_developers_running_servers_alone(tmp_path):
    port = free_port()
    config = tmp_path / "procsync.toml"
    config.write_text(
        "[procsync]\n"
        f'state_file = "{tmp_path}/dev/state.json"\n'
        f'log_dir = "{tmp_path}/dev/logs"\n'
        "[servers.web]\n"
        f'command = "{sys.executable} -m http.server {port} --bind 127.0.0.1"\n'
        f"ports = [{port}]\n", encoding="utf-8")
    env = {**os.environ, "DJPROJECT_PROCSYNC": json.dumps({"config": str(config)}),
           "DJPROJECT_DB": str(tmp_path / "db.sqlite3")}
    started = manage("procsync", "start", "web", env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    pid = int(re.search(r"\(pid (\d+)\)", started.stdout).group(1))
    state = open_store(tmp_path / "dev" / "state.json")
    try:
        before = [(e.event, e.pid) for e in state.history("web", 50)]
        record = state.get_process("web")
        # the developer's servers run; the project's tests run on the same settings
        assert passed(manage("test", "--noinput", "project.tests.DeveloperServersTests",
                             "project.tests.CommandTests", env=env)) >= 4
        assert not is_gone(pid) and port_open(port)
        assert [(e.event, e.pid) for e in state.history("web", 50)] == before
        after = state.get_process("web")
        assert (after.pid, after.status, after.create_time) == (record.pid, record.status,
                                                                record.create_time)
    finally:
        stopped = manage("procsync", "stop", "web", env=env)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        wait_until(lambda: is_gone(pid), 10, f"the developer's web (pid {pid}) to stop")
