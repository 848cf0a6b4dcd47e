"""procsync.health: TCP probes, HTTP GETs and check commands against real sockets and processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import pytest
from helpers import HTTP_SERVER, PY, free_port, is_gone, python_cmd, wait_until

from procsync import health
from procsync.config import HealthCheck


@pytest.fixture
def children():
    """Start real child processes in their own groups; every group is killed afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


@pytest.fixture
def listener():
    """A port that accepts connections (the kernel completes them; nobody reads)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.fixture
def http_server(children):
    port = free_port()
    children(python_cmd(HTTP_SERVER) + [str(port)])
    wait_until(lambda: health.port_open(port, timeout=0.2), 10, "the http server")
    return f"http://127.0.0.1:{port}"


# ------------------------------------------------------------------ ports


def test_port_open_on_listening_and_closed_ports(listener):
    assert health.port_open(listener) is True
    assert health.port_open(free_port(), timeout=0.5) is False


def test_port_on_a_live_child_process(children):
    port = free_port()
    children(python_cmd(HTTP_SERVER) + [str(port)])
    assert wait_until(lambda: health.port_open(port, timeout=0.2), 10, "child listening")


def test_check_ports_mixes_open_closed_and_hanging(listener, hanging_port):
    closed = free_port()
    result = health.check_ports([listener, closed, hanging_port, listener], timeout=0.3)
    assert result == {listener: True, closed: False, hanging_port: False}


def test_probe_tcp_gives_reasons(listener, hanging_port):
    closed = free_port()
    reasons = health.probe_tcp(
        [("127.0.0.1", listener, 1.0), ("127.0.0.1", closed, 1.0), ("127.0.0.1", hanging_port, 0.2)]
    )
    assert reasons[0] is None
    assert reasons[1] == "refused"
    assert reasons[2] == "timed out after 0.2s"


def test_probe_tcp_stops_when_asked(hanging_port):
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 1

    reasons = health.probe_tcp([("127.0.0.1", hanging_port, 30.0)], should_stop)
    assert reasons == ["aborted"]


def test_probe_tcp_resolves_host_names(listener):
    family = socket.getaddrinfo("localhost", listener, type=socket.SOCK_STREAM)[0][0]
    expected = None if family == socket.AF_INET else "refused"  # the listener is IPv4 only
    assert health.probe_tcp([("localhost", listener, 1.0)]) == [expected]
    assert health.probe_tcp([("no-such-host.invalid", 80, 1.0)])[0].startswith("cannot resolve")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: health.port_open(0), "port: 0 is not a port number"),
        (lambda: health.port_open(70000), "port: 70000"),
        (lambda: health.port_open("80"), "port: '80'"),
        (lambda: health.port_open(80, timeout=0), "timeout: must be a number"),
        (lambda: health.check_ports([80, True]), "port: True"),
        (lambda: health.check_ports([80], timeout=-1), "timeout"),
    ],
)
def test_bad_port_arguments_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------ http


def test_http_2xx_and_3xx_are_healthy(http_server):
    assert health.run_health_check(HealthCheck(http=http_server + "/")) == (True, None)
    assert health.run_health_check(HealthCheck(http=http_server + "/created")) == (True, None)
    # 302 to /bad: healthy, because the redirect is not followed
    assert health.run_health_check(HealthCheck(http=http_server + "/redirect")) == (True, None)


def test_http_error_status_is_unhealthy(http_server):
    ok, error = health.run_health_check(HealthCheck(http=http_server + "/bad"))
    assert not ok
    assert error == f"GET {http_server}/bad: status 500"


def test_http_expect_status(http_server):
    check = HealthCheck(http=http_server + "/missing", expect_status=404)
    assert health.run_health_check(check) == (True, None)
    ok, error = health.run_health_check(HealthCheck(http=http_server + "/redirect", expect_status=200))
    assert not ok and "status 302, expected 200" in error


def test_http_refused_and_silent_servers(listener):
    url = f"http://127.0.0.1:{free_port()}/"
    ok, error = health.run_health_check(HealthCheck(http=url))
    assert not ok and error == f"GET {url}: connection refused"
    silent = f"http://127.0.0.1:{listener}/health"  # accepts, never answers
    ok, error = health.run_health_check(HealthCheck(http=silent, timeout=0.3))
    assert not ok and "timed out after 0.3s" in error


def test_http_hanging_connect_times_out(hanging_port):
    check = HealthCheck(http=f"http://127.0.0.1:{hanging_port}/", timeout=5.0)
    ok, error = health.run_health_check(check, timeout=0.2)
    assert not ok and "timed out after 0.2s" in error


# ------------------------------------------------------------------ tcp


def test_tcp_check(listener):
    assert health.run_health_check(HealthCheck(tcp=listener)) == (True, None)
    closed = free_port()
    assert health.run_health_check(HealthCheck(tcp=closed)) == (False, f"tcp port {closed}: refused")


def test_tcp_check_on_hanging_port(hanging_port):
    ok, error = health.run_health_check(HealthCheck(tcp=hanging_port, timeout=0.2))
    assert not ok and error == f"tcp port {hanging_port}: timed out after 0.2s"


# ------------------------------------------------------------------ command


def test_command_exit_zero_is_healthy():
    assert health.run_health_check(HealthCheck(command=[PY, "-c", "pass"])) == (True, None)


def test_command_string_is_split_without_a_shell(tmp_path):
    marker = tmp_path / "argv"
    code = f"import sys; open({str(marker)!r}, 'w').write(repr(sys.argv[1:]))"
    check = HealthCheck(command=f"{PY} -c \"{code}\" '$HOME' 'two words'")
    assert health.run_health_check(check, timeout=5) == (True, None)
    assert marker.read_text() == repr(["$HOME", "two words"])


def test_command_failure_reports_code_and_last_line():
    code = "import sys; print('first'); print('database unreachable'); sys.exit(3)"
    ok, error = health.run_health_check(HealthCheck(command=python_cmd(code), timeout=5))
    assert not ok
    assert error == f"command {PY!r} exited with 3: database unreachable"


def test_command_killed_by_signal():
    code = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    ok, error = health.run_health_check(HealthCheck(command=python_cmd(code), timeout=5))
    assert not ok and error.endswith("was killed by SIGTERM")


def test_missing_command():
    ok, error = health.run_health_check(HealthCheck(command=["/no/such/check-tool"]))
    assert (ok, error) == (False, "command '/no/such/check-tool': not found")


def test_command_timeout_kills_its_group_and_leaves_no_zombie(tmp_path):
    pids_file = tmp_path / "pids"
    code = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pids_file)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(60)\n"
    )
    ok, error = health.check_command(python_cmd(code), timeout=2.0)
    assert not ok and error == f"command {PY!r}: timed out after 2s"
    leader, grandchild = (int(p) for p in pids_file.read_text().split())
    with pytest.raises(ChildProcessError):  # already reaped by check_command: no zombie
        os.waitpid(leader, os.WNOHANG)
    wait_until(lambda: is_gone(grandchild), 5, "the grandchild to die with its group")


def test_command_leftovers_are_swept_after_exit(tmp_path):
    pid_file = tmp_path / "pid"
    code = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
    )
    assert health.check_command(python_cmd(code), timeout=5) == (True, None)
    wait_until(lambda: is_gone(int(pid_file.read_text())), 5, "the leftover to be killed")


def test_run_health_check_rejects_other_objects():
    with pytest.raises(TypeError, match="check: expected a HealthCheck"):
        health.run_health_check({"tcp": 80})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        health.run_health_check(HealthCheck(tcp=80), timeout=0)


def test_command_check_does_not_inherit_the_api_token(monkeypatch):
    """procsync's own secret (the API token) never reaches a health-check command."""
    monkeypatch.setenv("PROCSYNC_AUTH_TOKEN", "s3cret")
    monkeypatch.setenv("PROCSYNC_VISIBLE", "yes")
    code = ("import os, sys; "
            "sys.exit(0 if 'PROCSYNC_AUTH_TOKEN' not in os.environ "
            "and os.environ.get('PROCSYNC_VISIBLE') == 'yes' else 3)")
    assert health.check_command(python_cmd(code), timeout=5) == (True, None)
