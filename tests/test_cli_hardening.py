"""`procsync serve` and the client under hostile input and careless setups (issue 11).

Remote binding without a token, werkzeug's own error answers, broken lock
files, listen errors in words, `logs -f` on a quiet server, the token from the
environment, and the token kept out of the servers' environments.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from helpers import PY, free_port, wait_until
from test_cli import (
    BASE_ENV,
    PROCSYNC,
    SLEEPER,
    run,
    serve_factory,
    server_table,
    toml,
    write_config,
)

import procsync.cli.client
from procsync.cli.client import ApiClient
from procsync.instances.leader import LeaderLock

__all__ = ["serve_factory"]  # the fixture, imported from test_cli

TOKEN_VAR = "PROCSYNC_AUTH_TOKEN"


def serve_refused(folder: Path, config: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run `procsync serve` expecting it to refuse to start: (exit code, stderr).

    If it starts instead (prints its URL), it is stopped and the test fails.
    """
    out, err = folder / "refused.out", folder / "refused.err"
    with open(out, "w") as out_f, open(err, "w") as err_f:
        proc = subprocess.Popen([*PROCSYNC, "serve", "-c", str(config), "--stop-on-exit", *args],
                                stdout=out_f, stderr=err_f, start_new_session=True, env={**BASE_ENV, **(env or {})})
    try:
        wait_until(lambda: proc.poll() is not None or "dashboard at" in out.read_text(), 30,
                   "serve to exit or to start")
        if proc.poll() is None:
            pytest.fail(f"serve started instead of refusing: {out.read_text()}{err.read_text()}")
        return proc.returncode, err.read_text()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


# -- 4: no token, no remote listening ------------------------------------------------------------

@pytest.mark.parametrize("where", ["option", "config"])
def test_serve_refuses_a_non_loopback_host_without_a_token(tmp_path, where):
    settings = 'host = "0.0.0.0"\n' if where == "config" else ""
    config = write_config(tmp_path, free_port(), server_table("a", SLEEPER, autostart=False), settings)
    args = ("--host", "0.0.0.0") if where == "option" else ()
    code, stderr = serve_refused(tmp_path, config, *args)
    assert code == 2, stderr
    assert "refusing to listen on 0.0.0.0" in stderr and "without an auth token" in stderr
    assert "auth_token" in stderr and TOKEN_VAR in stderr and "--allow-remote-without-token" in stderr
    assert "Traceback" not in stderr


def test_serve_binds_remote_with_a_token_or_the_explicit_flag(tmp_path, serve_factory):
    config = write_config(tmp_path, free_port(), server_table("a", SLEEPER, autostart=False))
    forced = serve_factory(config, "--host", "0.0.0.0", "--allow-remote-without-token")
    assert "WARNING" in forced.stderr() and "NO auth token" in forced.stderr()
    assert run("status", "-c", str(config)).returncode == 0
    forced.close()
    token = serve_factory(config, "--host", "0.0.0.0", env={TOKEN_VAR: "s3cret"})
    assert "WARNING" not in token.stderr()
    assert run("status", "-c", str(config), env={TOKEN_VAR: "s3cret"}).returncode == 0


# -- 6: werkzeug's own errors are JSON -------------------------------------------------------------

def raw_request(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the answer to the end: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3}) ", lines[0])
    assert match, f"no status line in {lines[0]!r}"
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(match.group(1)), headers, body


MALFORMED = [
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(150)) + b"\r\n", 431),
    (b"GET /procsync/api/servers HTTP/3.0\r\nHost: 127.0.0.1\r\n\r\n", 505),
    (b"GET /procsync/api/servers HTTQ/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400),
    (b"GET\r\n\r\n", 400),
]


def test_http_layer_errors_are_json(tmp_path, serve_factory):
    config = write_config(tmp_path, free_port(), server_table("a", SLEEPER, autostart=False))
    serve = serve_factory(config)
    port = int(re.search(r":(\d+)/", serve.url).group(1))
    for data, expected in MALFORMED:
        status, headers, body = raw_request(port, data)
        assert status == expected, (data[:40], status, body[:200])
        assert headers.get("content-type") == "application/json", (expected, headers, body[:200])
        answer = json.loads(body)
        assert set(answer) == {"error", "message"} and answer["error"] and answer["message"], answer
    status, _, body = raw_request(port, b"GET /procsync/api/servers HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                        b"Connection: close\r\n\r\n")
    assert status == 200 and json.loads(body)["servers"][0]["id"] == "a"  # still serving


# -- 8: lock files and listen errors ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["state.json.leader", "state.json.lock", "state.json"])
def test_a_directory_where_a_state_or_lock_file_goes_is_a_clear_error(tmp_path, name):
    config = write_config(tmp_path, free_port(), server_table("a", SLEEPER, autostart=False))
    blocker = tmp_path / ".procsync" / name
    blocker.mkdir(parents=True)
    code, stderr = serve_refused(tmp_path, config)
    assert code == 2, stderr
    assert f"{blocker} is a directory" in stderr and "Traceback" not in stderr


def test_a_leader_lock_that_cannot_be_opened_is_reported_once(tmp_path, caplog):
    path = tmp_path / "state.json.leader"
    path.mkdir()
    lock = LeaderLock(path)
    with caplog.at_level("WARNING", logger="procsync.leader"):
        assert not lock.try_acquire("me") and not lock.try_acquire("me")
    warnings = [r.getMessage() for r in caplog.records if r.name == "procsync.leader"]
    assert len(warnings) == 1 and str(path) in warnings[0] and "Is a directory" in warnings[0]
    path.rmdir()
    assert lock.try_acquire("me") and lock.holder() == "me"
    lock.release()


def test_busy_port_says_why(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        config = write_config(tmp_path, port, server_table("a", SLEEPER, autostart=False))
        result = run("serve", "-c", str(config), timeout=60)
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use (EADDRINUSE)" in result.stderr
    assert ": 1 " not in result.stderr and "Traceback" not in result.stderr


def test_address_not_of_this_machine_says_why(tmp_path):
    config = write_config(tmp_path, free_port(), server_table("a", SLEEPER, autostart=False))
    host = "192.0.2.1"  # TEST-NET-1: documentation only, never a local address
    code, stderr = serve_refused(tmp_path, config, "--host", host, env={TOKEN_VAR: "s3cret"})
    assert code == 1, stderr
    assert f"cannot listen on {host}:" in stderr and "(EADDRNOTAVAIL)" in stderr
    assert f"{host} is not an address of this machine" in stderr and "Traceback" not in stderr


# -- 9: logs -f on a quiet server -------------------------------------------------------------------

def quiet_code(trigger: Path) -> str:
    """A server that prints once, stays quiet until `trigger` exists, then prints again."""
    return ("import os, time\nprint('first line', flush=True)\n"
            f"while not os.path.exists({str(trigger)!r}):\n    time.sleep(0.05)\n"
            "print('second line', flush=True)\ntime.sleep(600)\n")


def quiet_serve(tmp_path: Path, serve_factory) -> tuple[object, Path, Path]:
    trigger = tmp_path / "speak"
    config = write_config(tmp_path, free_port(), server_table("quiet", quiet_code(trigger)))
    serve = serve_factory(config)
    wait_until(lambda: "first line" in run("logs", "quiet", "-c", str(config)).stdout, 30,
               "the quiet server's first line")
    return serve, config, trigger


def test_following_a_quiet_log_outlives_the_read_timeout(tmp_path, serve_factory, monkeypatch):
    serve, _, trigger = quiet_serve(tmp_path, serve_factory)
    timeout = 0.5
    monkeypatch.setattr(procsync.cli.client, "READ_TIMEOUT", timeout)
    stream = ApiClient(serve.url.rstrip("/")).stream("/servers/quiet/logs/stream?lines=10")
    seen: list[str] = []
    outcome: list[BaseException | None] = []

    def follow() -> None:
        try:
            for _, data in stream:
                seen.extend(json.loads(data).get("lines", []))
                if "second line" in seen:
                    break
            outcome.append(None)
        except BaseException as err:  # noqa: BLE001 - reported by the test thread
            outcome.append(err)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        wait_until(lambda: "first line" in seen or outcome, 15, "the first line on the stream")
        quiet_since = time.monotonic()
        # the stream stays quiet for several read timeouts; a timeout would end it with an error
        wait_until(lambda: outcome or time.monotonic() - quiet_since > 4 * timeout, 15, "a quiet spell")
        assert not outcome, f"the log stream ended while quiet: {outcome[0]!r}"
        trigger.touch()
        wait_until(lambda: outcome, 15, "the second line on the stream")
        assert outcome == [None] and "second line" in seen
    finally:
        trigger.touch()
        thread.join(timeout=15)
        stream.close()


def test_logs_follow_runs_until_ctrl_c(tmp_path, serve_factory):
    _, config, trigger = quiet_serve(tmp_path, serve_factory)
    out, err = tmp_path / "follow.out", tmp_path / "follow.err"
    with open(out, "w") as out_f, open(err, "w") as err_f:
        follow = subprocess.Popen([*PROCSYNC, "logs", "-f", "quiet", "-c", str(config)], stdout=out_f, stderr=err_f,
                                  env={**BASE_ENV, "PROCSYNC_TIMEOUT": "0.5"}, start_new_session=True)
    try:
        wait_until(lambda: "first line" in out.read_text() or follow.poll() is not None, 30, "logs -f's first line")
        quiet_since = time.monotonic()
        wait_until(lambda: follow.poll() is not None or time.monotonic() - quiet_since > 2.0, 15, "a quiet spell")
        assert follow.poll() is None, f"logs -f gave up on a quiet log: {err.read_text()}"
        trigger.touch()
        wait_until(lambda: "second line" in out.read_text(), 15, "logs -f's second line")
        follow.send_signal(signal.SIGINT)
        assert follow.wait(timeout=15) == 0
        assert "Traceback" not in err.read_text() and "Aborted" not in err.read_text()
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait(timeout=5)


def test_a_bad_client_timeout_is_a_usage_error(tmp_path):
    result = run("status", "--url", f"http://127.0.0.1:{free_port()}", env={"PROCSYNC_TIMEOUT": "soon"},
                 cwd=tmp_path)
    assert result.returncode == 2 and "PROCSYNC_TIMEOUT: must be a positive number of seconds" in result.stderr


# -- 10c, 10d: the token from the environment, and kept from the servers ---------------------------

def test_serve_reads_the_token_from_the_environment(tmp_path, serve_factory):
    config = write_config(tmp_path, free_port(), server_table("a", SLEEPER, autostart=False))
    serve_factory(config, env={TOKEN_VAR: "from-env"})
    result = run("status", "-c", str(config))
    assert result.returncode == 2 and "missing 'Authorization: Bearer <token>' header" in result.stderr
    assert run("status", "-c", str(config), env={TOKEN_VAR: "from-env"}).returncode == 0


def test_the_environment_token_wins_over_the_config_file(tmp_path, serve_factory):
    config = write_config(tmp_path, free_port(), server_table("a", SLEEPER, autostart=False),
                          'auth_token = "from-file"\n')
    serve_factory(config, env={TOKEN_VAR: "from-env"})
    result = run("status", "-c", str(config))  # the client sends the file's token
    assert result.returncode == 2 and "bad token" in result.stderr
    assert run("status", "-c", str(config), env={TOKEN_VAR: "from-env"}).returncode == 0


ENV_DUMP = ("import json, os, sys, time\n"
            "open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))\n"
            "time.sleep(600)\n")


def test_servers_do_not_inherit_the_token_of_serve(tmp_path, serve_factory):
    plain, explicit = tmp_path / "plain.json", tmp_path / "explicit.json"
    servers = (f"[servers.plain]\ncommand = {toml([PY, '-c', ENV_DUMP, str(plain)])}\nautostart = true\n"
               f"[servers.explicit]\ncommand = {toml([PY, '-c', ENV_DUMP, str(explicit)])}\nautostart = true\n"
               f"env = {{{TOKEN_VAR} = \"given\", OTHER = \"kept\"}}\n")
    config = write_config(tmp_path, free_port(), servers)
    serve_factory(config, env={TOKEN_VAR: "s3cret", "UNRELATED_VAR": "inherited"})
    wait_until(lambda: plain.exists() and explicit.exists() and plain.stat().st_size and explicit.stat().st_size,
               30, "both servers to write their environment")
    plain_env, explicit_env = json.loads(plain.read_text()), json.loads(explicit.read_text())
    assert TOKEN_VAR not in plain_env and plain_env["UNRELATED_VAR"] == "inherited"
    assert explicit_env[TOKEN_VAR] == "given" and explicit_env["OTHER"] == "kept"
    assert "s3cret" not in plain.read_text() + explicit.read_text()


def test_library_children_do_not_inherit_the_token(orch, tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_VAR, "s3cret")
    dump = tmp_path / "env.json"
    orch.register_server("dump", {"command": [PY, "-c", ENV_DUMP, str(dump)]})
    assert orch.start_server("dump").success
    wait_until(lambda: dump.exists() and dump.stat().st_size, 15, "the child to write its environment")
    env = json.loads(dump.read_text())
    assert TOKEN_VAR not in env and env.get("PROCSYNC_ID") == "dump"
    assert os.environ[TOKEN_VAR] == "s3cret"  # procsync's own environment is untouched


def test_check_masks_secrets_in_commands(tmp_path):
    servers = (f"[servers.db]\ncommand = {toml([PY, '-c', 'pass', '--password=hunter2', '--api-key', 'k3y'])}\n"
               f"health = {{command = {toml([PY, '-c', 'pass', '--token=t0k'])}}}\n")
    config = write_config(tmp_path, free_port(), servers)
    result = run("check", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert "--password=***" in result.stdout and "--api-key ***" in result.stdout
    assert not any(secret in result.stdout + result.stderr for secret in ("hunter2", "k3y", "t0k"))
