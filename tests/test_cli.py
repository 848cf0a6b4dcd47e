"""The real `procsync` executable: serve, every client command, exit codes, config errors, Procfiles."""

from __future__ import annotations

import http.client
import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
from helpers import PY, RUN_MARKER, free_port, is_gone, listener_code, wait_until

from procsync.cli import procsync_cli

EXE = Path(sys.executable).with_name("procsync")
PROCSYNC = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "procsync"]
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith("PROCSYNC_") or k == RUN_MARKER}
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

TICKER = "import itertools, time\nfor n in itertools.count():\n    print(f'line {n}', flush=True)\n    time.sleep(0.05)\n"
SLEEPER = "import time\ntime.sleep(600)\n"


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PROCSYNC, *args], capture_output=True, text=True, timeout=timeout,
                          env={**BASE_ENV, **(env or {})}, cwd=cwd)


def on_a_terminal(*args: str) -> str:
    """What the command prints when its stdout is a terminal."""
    master, slave = pty.openpty()
    try:
        subprocess.run([*PROCSYNC, *args], stdout=slave, stderr=subprocess.DEVNULL, env=BASE_ENV, timeout=60)
        return os.read(master, 1 << 16).decode()
    finally:
        os.close(slave)
        os.close(master)


def toml(value: object) -> str:
    return json.dumps(value)  # a JSON string or list of strings is a TOML basic string / array


def server_table(sid: str, code: str, *, ports: tuple[int, ...] = (), autostart: bool = True,
                 extra: str = "") -> str:
    return (f"[servers.{sid}]\ncommand = {toml([PY, '-c', code])}\nports = {list(ports)}\n"
            f"autostart = {'true' if autostart else 'false'}\nstop_timeout = 3\nstart_timeout = 15\n{extra}\n")


def write_config(folder: Path, port: int, servers: str, settings: str = "", name: str = "procsync.toml") -> Path:
    path = folder / name
    path.write_text(f"[procsync]\nport = {port}\ninterval = 0.3\n{settings}\n{servers}")
    return path


class Serve:
    """A `procsync serve` subprocess; `close()` ends it and every process it started."""

    def __init__(self, folder: Path, config: Path, *args: str, stop_on_exit: bool = True,
                 env: dict[str, str] | None = None) -> None:
        self.folder, self.config = folder, config
        self.out, self.err = folder / "serve.out", folder / "serve.err"
        argv = [*PROCSYNC, "serve", "-c", str(config), *args]
        if stop_on_exit:
            argv.append("--stop-on-exit")
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, start_new_session=True,
                                         env={**BASE_ENV, **(env or {})})
        self.seen: set[int] = set()
        try:
            wait_until(lambda: "dashboard at" in self.stdout() or self.proc.poll() is not None, 20,
                       "procsync serve to print its URL")
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {self.stderr()}")
            self.url = re.search(r"dashboard at (\S+)", self.stdout()).group(1)
        except BaseException:
            self.close()
            raise

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def remember_children(self) -> None:
        try:
            self.seen.update(p.pid for p in psutil.Process(self.proc.pid).children(recursive=True))
        except psutil.Error:
            pass
        # servers adopted from an earlier serve are not its children: take them from the state file
        try:
            state = json.loads((self.config.parent / ".procsync" / "state.json").read_text())
        except (OSError, ValueError):
            return
        for record in state.values() if isinstance(state, dict) else ():
            pid = record.get("pid") if isinstance(record, dict) else None
            try:
                if isinstance(pid, int) and psutil.Process(pid).environ().get(RUN_MARKER) == BASE_ENV[RUN_MARKER]:
                    self.seen.add(pid)
            except psutil.Error:
                pass

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.remember_children()
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def close(self) -> None:
        """Stop serve if still running, then SIGKILL the process group of everything it started."""
        self.remember_children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for pid in self.seen | {self.proc.pid}:
            try:
                os.killpg(pid, signal.SIGKILL)  # every server leads its own process group
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture
def serve_factory(tmp_path):
    started: list[Serve] = []

    def start(config: Path, *args: str, **kwargs: object) -> Serve:
        serve = Serve(tmp_path, config, *args, **kwargs)
        started.append(serve)
        return serve

    yield start
    for serve in started:
        serve.close()


def status_json(config: Path, **kwargs: object) -> dict[str, dict]:
    result = run("status", "--json", "-c", str(config), **kwargs)
    assert result.returncode == 0, result.stderr
    return {s["id"]: s for s in json.loads(result.stdout)["servers"]}


def wait_status(config: Path, sid: str, status: str, timeout: float = 15) -> dict:
    return wait_until(lambda: (s := status_json(config).get(sid)) and s["status"] == status and s,
                      timeout, f"{sid} to be {status}")


# -- serve and the client commands -------------------------------------------------------------

def test_serve_and_control_commands(tmp_path, serve_factory):
    web_port = free_port()
    config = write_config(tmp_path, free_port(), (
        server_table("web", listener_code(web_port), ports=(web_port,))
        + server_table("worker", TICKER)
        + server_table("idle", SLEEPER, autostart=False)
    ))
    serve = serve_factory(config)
    port = int(re.search(r":(\d+)/", serve.url).group(1))
    assert serve.url == f"http://127.0.0.1:{port}/procsync/"
    web = wait_status(config, "web", "running")
    worker = wait_status(config, "worker", "running")
    assert status_json(config)["idle"]["status"] == "stopped"  # not autostart: not started

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/")
    response = conn.getresponse()
    assert (response.status, response.getheader("Location")) == (302, "/procsync/")
    conn.close()

    result = run("status", "-c", str(config))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "PID", "HEALTH", "UPTIME", "PORTS", "RESTARTS", "CPU", "MEM", "NOTE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["web"][1:3] == ["running", str(web["pid"])] and rows["web"][5] == str(web_port)
    assert rows["idle"][1:3] == ["stopped", "-"]
    assert "\x1b[" not in result.stdout  # piped: no colors
    column = lines[0].index("STATUS")
    assert all(line[column - 2:column] == "  " and line[column] != " " for line in lines)  # aligned
    assert "\x1b[32mrunning" in on_a_terminal("status", "-c", str(config))  # colored on a terminal
    only = run("status", "idle", "-c", str(config))
    assert [line.split()[0] for line in only.stdout.splitlines()] == ["ID", "idle"]

    result = run("stop", "worker", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("worker: ")
    wait_until(lambda: is_gone(worker["pid"]), 10, "the worker to end")
    again = run("stop", "worker", "-c", str(config))
    assert again.returncode == 0 and "worker: " in again.stdout + again.stderr  # already stopped: fine

    result = run("start", "idle", "worker", "-c", str(config))
    assert result.returncode == 0, result.stderr + result.stdout
    assert {line.split(":")[0] for line in result.stdout.splitlines()} == {"idle", "worker"}
    servers = status_json(config)
    assert servers["idle"]["running"] and servers["worker"]["running"]

    result = run("restart", "web", "-c", str(config))
    assert result.returncode == 0, result.stderr
    new_web = wait_status(config, "web", "running")
    assert new_web["pid"] != web["pid"] and is_gone(web["pid"])

    result = run("start", "nope", "-c", str(config))
    assert result.returncode == 1 and "nope: unknown server 'nope'" in result.stderr
    result = run("start", "-c", str(config))
    assert result.returncode == 2 and "give at least one server ID" in result.stderr

    pids = [s["pid"] for s in status_json(config).values()]
    assert serve.stop(signal.SIGINT) == 0
    assert "shutting down, stopping the servers" in serve.stdout()
    for pid in pids:
        wait_until(lambda pid=pid: is_gone(pid), 10, f"server pid {pid} to be stopped on exit")


class HookReceiver:
    def __init__(self) -> None:
        self.events: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.events.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_logs_history_kill_orphan_reload_and_webhooks(tmp_path, serve_factory):
    hooks = HookReceiver()
    try:
        dead = f"http://127.0.0.1:{free_port()}/nobody"
        settings = (f'webhooks = [{{url = "{hooks.url}", events = ["server_started", "server_stopped"]}},'
                    f' {{url = "{dead}"}}]\n')
        servers = server_table("worker", TICKER) + server_table("idle", SLEEPER, autostart=False)
        config = write_config(tmp_path, free_port(), servers, settings)
        serve = serve_factory(config)
        wait_status(config, "worker", "running")
        wait_until(lambda: len(run("logs", "worker", "-n", "3", "-c", str(config)).stdout.splitlines()) == 3,
                   10, "three log lines")
        result = run("logs", "worker", "-n", "3", "-c", str(config))
        numbers = [int(line.split()[1]) for line in result.stdout.splitlines()]
        assert result.returncode == 0 and numbers == sorted(numbers) and len(numbers) == 3

        follow = subprocess.Popen([*PROCSYNC, "logs", "-f", "worker", "-n", "1", "-c", str(config)],
                                  stdout=subprocess.PIPE, text=True, env=BASE_ENV)
        try:
            seen = [follow.stdout.readline() for _ in range(6)]
            followed = [int(line.split()[1]) for line in seen]
            assert followed == list(range(followed[0], followed[0] + 6)), seen  # backlog then live, no gap
            follow.send_signal(signal.SIGINT)
            assert follow.wait(timeout=10) == 0
        finally:
            if follow.poll() is None:
                follow.kill()
                follow.wait()
            follow.stdout.close()

        result = run("history", "worker", "-c", str(config))
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0].split()[:3] == ["AT", "(UTC)", "EVENT"]
        assert "started" in result.stdout
        history = json.loads(run("history", "worker", "--json", "-c", str(config)).stdout)["history"]
        assert history[0]["event"] == "started" and history[0]["id"] == "worker"

        result = run("kill-orphan", "worker", "1", "-c", str(config))
        assert result.returncode == 1 and result.stderr.startswith("Error: ")

        # reload: add "extra" (autostart), drop "idle", keep "worker" as it is
        config.write_text(config.read_text().replace(server_table("idle", SLEEPER, autostart=False),
                                                     server_table("extra", SLEEPER)))
        worker_pid = status_json(config)["worker"]["pid"]
        result = run("reload", "-c", str(config))
        assert result.returncode == 0, result.stderr
        assert sorted(result.stdout.splitlines()) == ["extra: added", "idle: removed"]
        extra = wait_status(config, "extra", "running")
        servers = status_json(config)
        assert "idle" not in servers and servers["worker"]["pid"] == worker_pid
        assert run("reload", "-c", str(config)).stdout.strip() == "no changes"

        good = config.read_text()
        config.write_text(good + "\n[servers.broken]\ncommand = 'x'\nportz = [1]\n")
        result = run("reload", "-c", str(config), "--url", f"http://127.0.0.1:{_port_of(config)}")
        assert result.returncode == 2
        assert "[servers.broken] portz: unknown key (did you mean 'ports'?)" in result.stderr
        assert run("status", "-c", str(config)).returncode == 2  # clients read the same file
        config.write_text(good)

        config.write_text(good.replace(server_table("extra", SLEEPER), ""))
        serve.proc.send_signal(signal.SIGHUP)  # the same reload, asked by signal
        wait_until(lambda: "procsync: reloaded: extra removed" in serve.stdout(), 10, "the SIGHUP reload")
        wait_until(lambda: is_gone(extra["pid"]), 10, "the removed server to stop")
        assert list(status_json(config)) == ["worker"]
        wait_until(lambda: {(e["event"], e["data"]["id"]) for e in hooks.events}
                   >= {("server_started", "worker"), ("server_started", "extra"), ("server_stopped", "extra")},
                   10, "the webhook deliveries")
        assert all(e["event"] in ("server_started", "server_stopped") for e in hooks.events)
    finally:
        hooks.close()


def _port_of(config: Path) -> int:
    return int(re.search(r"^port = (\d+)$", config.read_text(), re.M).group(1))


def test_orphan_is_shown_and_killed(tmp_path, serve_factory):
    port = free_port()
    orphan = subprocess.Popen([PY, "-c", listener_code(port)], start_new_session=True)
    try:
        wait_until(lambda: _listening(port), 10, "the orphan to listen")
        config = write_config(tmp_path, free_port(), server_table("web", listener_code(port), ports=(port,),
                                                                   autostart=False))
        serve_factory(config)
        web = wait_until(lambda: (s := status_json(config)["web"])["orphaned"] and s, 15, "the orphan to be seen")
        assert web["orphaned_pid"] == orphan.pid
        result = run("status", "-c", str(config))
        assert f"port held by orphan pid {orphan.pid}" in result.stdout
        result = run("start", "web", "-c", str(config))
        assert result.returncode == 1 and str(orphan.pid) in result.stderr
        result = run("kill-orphan", "web", str(orphan.pid), "-c", str(config))
        assert result.returncode == 0, result.stderr
        assert orphan.wait(timeout=10) is not None
    finally:
        if orphan.poll() is None:
            orphan.kill()
        orphan.wait()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_servers_outlive_serve_and_are_adopted_again(tmp_path, serve_factory):
    config = write_config(tmp_path, free_port(), server_table("sleeper", SLEEPER))
    first = serve_factory(config, stop_on_exit=False)
    pid = wait_status(config, "sleeper", "running")["pid"]
    assert first.stop(signal.SIGTERM) == 0
    assert "left running: sleeper" in first.stdout()
    assert not is_gone(pid)
    second = serve_factory(config)  # --stop-on-exit this time
    try:
        again = wait_status(config, "sleeper", "running")
        assert again["pid"] == pid  # adopted, not restarted
    finally:
        assert second.stop() == 0
    wait_until(lambda: is_gone(pid), 10, "the adopted sleeper to be stopped")


def test_auth_token(tmp_path, serve_factory):
    config = write_config(tmp_path, free_port(), server_table("sleeper", SLEEPER, autostart=False),
                          'auth_token = "${TEST_TOKEN}"\n')
    env = {"TEST_TOKEN": "s3cret"}
    serve_factory(config, env=env)
    assert run("status", "-c", str(config), env=env).returncode == 0
    result = run("status", "-c", str(config), env={**env, "PROCSYNC_AUTH_TOKEN": "wrong"})
    assert result.returncode == 2 and "bad token" in result.stderr
    result = run("status", "--url", f"http://127.0.0.1:{_port_of(config)}", cwd=tmp_path / "..")
    assert result.returncode == 2 and "missing 'Authorization: Bearer <token>' header" in result.stderr
    result = run("status", "--url", f"http://127.0.0.1:{_port_of(config)}", cwd=tmp_path / "..",
                 env={"PROCSYNC_AUTH_TOKEN": "s3cret"})
    assert result.returncode == 0 and "sleeper" in result.stdout


def test_serve_a_procfile(tmp_path, serve_factory):
    port = free_port()
    (tmp_path / "listen.py").write_text("import os\n" + listener_code(0).replace("0))", "int(os.environ['PORT'])))"))
    (tmp_path / "Procfile").write_text(f"web: {PY} listen.py\n")
    (tmp_path / ".env").write_text(f"PORT={port}\n")
    result = run("check", "-c", str(tmp_path / "Procfile"))
    assert result.returncode == 0, result.stderr
    assert "(procfile, 1 server)" in result.stdout and f"ports        {port}" in result.stdout
    api_port = free_port()
    serve = serve_factory(tmp_path / "Procfile", "--port", str(api_port))
    assert serve.url == f"http://127.0.0.1:{api_port}/procsync/"
    url = ["--url", f"http://127.0.0.1:{api_port}"]
    web = wait_until(lambda: (s := json.loads(run("status", "--json", *url).stdout)["servers"][0])["running"]
                     and s["health"] == "healthy" and s, 15, "the Procfile web to be healthy")
    assert web["ports"] == [port] and _listening(port)


# -- exit codes without a server -------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["status"], ["status", "--json"], ["start", "web"], ["stop", "web"], ["restart", "web"],
    ["logs", "web"], ["logs", "-f", "web"], ["history", "web"], ["kill-orphan", "web", "123"], ["reload"],
])
def test_exit_3_when_no_server_answers(tmp_path, args):
    port = free_port()
    result = run(*args, cwd=tmp_path, env={"PROCSYNC_URL": f"http://127.0.0.1:{port}"})
    assert result.returncode == 3, result.stderr
    assert result.stderr == (f"Error: cannot reach procsync at http://127.0.0.1:{port}/procsync: "
                             "Connection refused\nStart it with: procsync serve -c procsync.toml\n")


def test_exit_3_when_something_else_answers(tmp_path):
    class Other(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<h1>nope</h1>")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        config = write_config(tmp_path, server.server_port, "")
        result = run("status", "-c", str(config))
        assert result.returncode == 3
        assert "it answered HTTP 404 (text/html), not procsync's JSON API" in result.stderr
        assert f"Start it with: procsync serve -c {config}" in result.stderr
    finally:
        server.shutdown()
        server.server_close()


BAD_CONFIGS = [
    ("[procsync]\nprot = 80\n", "{path}:2: [procsync] prot: unknown key (did you mean 'port'?)"),
    ("[servers.web]\ncommand = 'x'\nprots = [80]\n", "{path}:3: [servers.web] prots: unknown key (did you mean 'ports'?)"),
    ("[servers.web]\ncommand = 'x'\nports = [80, 99999]\n",
     "{path}:3: [servers.web] ports: 99999 is not a port number (1..65535)"),
    ("[servers.web]\ncwd = '.'\n", "{path}:1: [servers.web] command: is required"),
    ("[servers.web]\ncommand = '${NOT_SET_ANYWHERE}'\n",
     "{path}:2: [servers.web] command: ${NOT_SET_ANYWHERE} is not set in the environment"),
    ("[servers.web]\ncommand = 'x'\nhealth = {tcp = 80, http = 'http://x'}\n",
     "{path}:3: [servers.web] health: needs exactly one of http, tcp or command"),
    ("[servers.web]\ncommand = 'x'\nautorestart = 'never'\n",
     "{path}:3: [servers.web] autorestart: 'never' is not one of no, on-failure, always"),
    ("[servers]\nweb = 'x'\n", "{path}:2: [servers.web] must be a table, not 'x'"),
    ("[procsync]\nport = 80 80\n",
     "{path}:2: invalid TOML: Expected newline or end of document after a statement (column 11)"),
    ("[procsync]\nwebhooks = [{url = 'http://x', events = ['died']}]\n",
     "{path}:2: [procsync] webhooks[0].events: unknown event 'died'"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
@pytest.mark.parametrize("command", [["check"], ["serve"], ["status"], ["export", "systemd", "-o", "out"]])
def test_config_errors_exit_2_with_the_exact_message(tmp_path, text, message, command):
    path = tmp_path / "procsync.toml"
    path.write_text(text)
    result = run(*command, "-c", str(path))
    assert result.returncode == 2
    assert result.stderr == f"Error: {message.replace('{path}', str(path))}\n"
    assert result.stdout == ""


def test_missing_config(tmp_path):
    result = run("check", "-c", str(tmp_path / "nope.toml"))
    assert (result.returncode, result.stderr) == (2, f"Error: {tmp_path / 'nope.toml'}: no such file\n")
    result = run("status", "-c", "nope.toml", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, "Error: nope.toml: no such file\n")
    result = run("serve", cwd=tmp_path)  # default ./procsync.toml
    assert (result.returncode, result.stderr) == (2, "Error: procsync.toml: no such file\n")


def test_check_prints_what_would_run(tmp_path):
    result = run("check", "-c", str(EXAMPLES / "demo.toml"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "(toml, 4 servers)" in out
    assert "dashboard   http://127.0.0.1:8420/procsync/" in out
    for sid in ("migrate", "web", "ticker", "crasher"):
        assert f"[{sid}] autostart" in out
    assert "health       http http://127.0.0.1:8431/" in out
    assert "autorestart  on-failure (max 5, backoff 1s..8s)" in out
    config = write_config(tmp_path, 9999, "[servers.gone]\ncommand = 'no-such-program-here --x'\ncwd = 'missing'\n")
    result = run("check", "-c", str(config))
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        f"warning: server 'gone': cwd: directory '{tmp_path / 'missing'}' does not exist",
        "warning: server 'gone': command: 'no-such-program-here' is not found on PATH",
    ]


def test_serve_refuses_a_busy_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        config = write_config(tmp_path, port, server_table("a", SLEEPER))
        result = run("serve", "-c", str(config), timeout=30)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert not (tmp_path / ".procsync" / "logs" / "a.log").exists()  # nothing was started


def test_usage_errors_and_entry_points(tmp_path):
    assert run("status", "--bogus").returncode == 2
    assert run("frobnicate").returncode == 2
    assert run("kill-orphan", "web", "notapid").returncode == 2
    for argv in ([sys.executable, "-m", "procsync", "--version"], [sys.executable, "-m", "procsync.cli", "--version"]):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0 and result.stdout.startswith("procsync, version ")
    result = run("--help")
    for command in ("serve", "status", "start", "stop", "restart", "logs", "history", "kill-orphan",
                    "reload", "check", "export"):
        assert f"  {command} " in result.stdout


def test_mounted_as_flask_command(tmp_path):
    from flask import Flask

    app = Flask(__name__)
    app.cli.add_command(procsync_cli)
    config = write_config(tmp_path, 9999, server_table("a", SLEEPER))
    result = app.test_cli_runner().invoke(args=["procsync", "check", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "(toml, 1 server)" in result.output
