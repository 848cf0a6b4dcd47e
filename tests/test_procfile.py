"""Procfiles as foreman and honcho run them: offered ports, formation, .env, export; real processes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import PY, SUPERVISORD, is_gone, supervisord, wait_until
from test_cli import run, serve_factory, status_json

from procsync import ServerOrchestrator
from procsync.config import ConfigFileError, load_config
from procsync.health import port_open

__all__ = ["serve_factory"]  # the fixture, imported from test_cli

PROCSYNC = [sys.executable, "-m", "procsync"]

# The most common Procfile there is: a web that listens on $PORT and a worker that never listens.
LISTEN = ("import os, socket, time; s = socket.socket(); "
          "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
          "s.bind(('127.0.0.1', int(os.environ['PORT']))); s.listen(); time.sleep(600)")
WORK = ("import os, time; open('worker-' + os.environ['PS'] + '.env', 'w').write(os.environ['PORT']); "
        "[time.sleep(0.1) for _ in range(6000)]")


def free_block(*offsets: int) -> int:
    """A base port B such that B + each offset is free on 127.0.0.1 right now."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + max(offsets) > 65535:
            continue
        try:
            for offset in offsets:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise AssertionError("no free block of ports")


def procfile(folder: Path, base: int) -> Path:
    (folder / "Procfile").write_text(f'web: {PY} -c "{LISTEN}"\nworker: {PY} -u -c "{WORK}"\n')
    (folder / ".env").write_text(f"PORT={base}\n")
    return folder / "Procfile"


# ------------------------------------------------------------ a worker needs no port


def test_a_procfile_worker_is_running_at_once_and_never_unhealthy(tmp_path):
    base = free_block(0, 100)
    loaded = load_config(procfile(tmp_path, base))
    worker = loaded.registry["worker"]
    assert (worker.ports, worker.ports_required, worker.env["PORT"], worker.env["PS"]) == (
        (base + 100,), False, str(base + 100), "worker.1")
    orch = ServerOrchestrator(tmp_path / "state.json", interval=0.2, log_dir=tmp_path / "logs")
    try:
        orch.register_servers(loaded.registry)
        began = time.monotonic()
        result = orch.start_server("worker")
        assert result.success, result.message
        assert orch.get_server("worker").status == "running"
        assert time.monotonic() - began < 1.0  # ready when it runs: not held in "starting"
        assert orch.start_server("web").success
        # with its port offered, web too is healthy while it runs; the status says once it listens
        web = wait_until(lambda: (s := orch.get_server("web")).listening and s, 10, "web to listen")
        assert web.listening == (base,) and web.health == "healthy" and port_open(base)

        # several monitor ticks while the worker does not listen: never unhealthy or unresponsive
        seen: list[str] = []
        checks: set[object] = set()

        def ticks() -> bool:
            seen.append(orch.get_server("worker").health)
            mon = orch.monitor.get_status("worker")
            if mon is not None:
                checks.add(mon.last_check)
            return len(checks) >= 8

        wait_until(ticks, 15, "eight monitor ticks")
        assert not {"unhealthy", "unresponsive"} & set(seen), seen
        status = orch.get_server("worker")
        assert (status.status, status.health, status.listening, status.ports_required) == (
            "running", "healthy", (), False)
        assert not port_open(base + 100)
        assert (tmp_path / "worker-worker.1.env").read_text() == str(base + 100)
        assert orch.history("worker")[0].event == "started"
    finally:
        orch.shutdown(stop_servers=True)


def test_a_required_port_still_holds_a_server_in_starting(tmp_path):
    """The control: the same worker with its port required waits for a listener that never comes."""
    base = free_block(0)
    orch = ServerOrchestrator(tmp_path / "state.json", interval=0.2, log_dir=tmp_path / "logs")
    try:
        orch.register_server("worker", {"command": [PY, "-c", "import time; time.sleep(600)"],
                                        "ports": [base], "start_timeout": 30})
        assert orch.start_server("worker", wait=False).success
        status = wait_until(lambda: (s := orch.get_server("worker")).health == "unhealthy" and s, 10,
                            "the closed port to be seen")
        assert status.status == "starting" and status.listening == () and status.ports_required
    finally:
        orch.shutdown(stop_servers=True)


# ------------------------------------------------------------ formation


def test_formation_names_ports_groups_and_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("PORT", raising=False)
    (tmp_path / "Procfile").write_text("web: serve\nworker: work\nclock: tick\n")
    loaded = load_config(tmp_path / "Procfile", "web=2,worker=3")
    assert loaded.formation == {"web": 2, "worker": 3}
    shape = {sid: (c.ports, c.group, c.env["PORT"], c.env["PS"]) for sid, c in loaded.registry.items()}
    assert shape == {
        "web.1": ((5000,), "web", "5000", "web.1"),
        "web.2": ((5001,), "web", "5001", "web.2"),
        "worker.1": ((5100,), "worker", "5100", "worker.1"),
        "worker.2": ((5101,), "worker", "5101", "worker.2"),
        "worker.3": ((5102,), "worker", "5102", "worker.3"),
        "clock": ((5200,), None, "5200", "clock.1"),
    }
    # all= sets every count; a process left at 0 keeps its port block (foreman numbers by position)
    loaded = load_config(tmp_path / "Procfile", {"all": 0, "clock": 2})
    assert {sid: c.ports for sid, c in loaded.registry.items()} == {"clock.1": (5200,), "clock.2": (5201,)}
    assert load_config(tmp_path / "Procfile").formation is None


@pytest.mark.parametrize(("formation", "problem"), [
    ("wrker=2", "'wrker' is not a process of the Procfile (it has web, worker)"),
    ("web=x", "'web=x': the count must be a whole number 0..100"),
    ("web=101", "'web=101': the count must be a whole number 0..100"),
    ("web", "'web' is not NAME=COUNT (e.g. web=2)"),
    ("web=1,web=2", "'web' is given twice"),
    ("web=\u00b2", "'web=\u00b2': the count must be a whole number 0..100"),  # isdigit() but not int()
])
def test_a_bad_formation_is_named(tmp_path, formation, problem):
    path = tmp_path / "Procfile"
    path.write_text("web: serve\nworker: work\n")
    with pytest.raises(ConfigFileError) as caught:
        load_config(path, formation)
    assert str(caught.value) == f"{path}: formation: {problem}"
    result = run("check", "-c", str(path), "-m", formation)
    assert result.returncode == 2 and problem in result.stderr


def test_formation_copies_that_clash_or_pass_the_last_port_are_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("PORT", raising=False)
    path = tmp_path / "Procfile"
    path.write_text("web: a\nweb.1: b\n")
    with pytest.raises(ConfigFileError, match="'web.1' is both a process of the Procfile and a copy of 'web'"):
        load_config(path, "web=2")
    (tmp_path / ".env").write_text("PORT=65500\n")
    path.write_text("web: a\nworker: b\n")
    with pytest.raises(ConfigFileError) as caught:
        load_config(path, "web=2")
    assert str(caught.value) == f"{path}:2: worker: its port 65600 is above 65535"
    (tmp_path / ".env").write_text("PORT=65435\n")
    with pytest.raises(ConfigFileError) as caught:
        load_config(path, "worker=2")
    assert str(caught.value) == f"{path}:2: worker.2: its port 65536 is above 65535"


def test_a_formation_is_for_procfiles_only(tmp_path):
    path = tmp_path / "procsync.toml"
    path.write_text("[servers.web]\ncommand = 'serve'\n")
    with pytest.raises(ConfigFileError, match="a formation applies to a Procfile, not to a procsync.toml"):
        load_config(path, "web=2")


def test_serve_runs_a_formation_and_keeps_it_across_a_reload(tmp_path, serve_factory):
    base = free_block(0, 1, 100, 101)
    path = procfile(tmp_path, base)
    check = run("check", "-c", str(path), "-m", "web=2,worker=2")
    assert check.returncode == 0, check.stderr
    assert "(procfile, 4 servers, formation web=2,worker=2)" in check.stdout
    assert f"ports        {base + 100} (offered: it need not listen there; ready once it runs)" in check.stdout
    assert "health       process alive" in check.stdout
    api = free_block(0)
    serve_factory(path, "-m", "web=2,worker=2", "--port", str(api))
    via = {"PROCSYNC_URL": f"http://127.0.0.1:{api}"}

    def settled() -> dict[str, dict] | None:
        servers = status_json(path, env=via)
        ready = len(servers) == 4 and all(s["health"] == "healthy" for s in servers.values())
        return servers if ready and servers["web.2"]["listening"] else None

    servers = wait_until(settled, 20, "the four copies to be healthy")
    assert {sid: (s["ports"], s["group"], s["listening"]) for sid, s in servers.items()} == {
        "web.1": ([base], "web", [base]),
        "web.2": ([base + 1], "web", [base + 1]),
        "worker.1": ([base + 100], "worker", []),
        "worker.2": ([base + 101], "worker", []),
    }
    assert port_open(base) and port_open(base + 1)
    assert (tmp_path / "worker-worker.2.env").read_text() == str(base + 101)
    table = run("status", "-c", str(path), env=via)
    assert f"not listening on {base + 101} (not required)" in table.stdout

    # a reload reads the Procfile again with the same formation: nothing changes
    reload = run("reload", "-c", str(path), env=via)
    assert reload.returncode == 0 and "no changes" in reload.stdout, reload.stdout + reload.stderr

    # the copies of one process are a group
    pids = [servers["web.1"]["pid"], servers["web.2"]["pid"]]
    stop = run("stop", "--group", "web", "-c", str(path), env=via)
    assert stop.returncode == 0, stop.stderr
    assert all(is_gone(pid) for pid in pids) and not port_open(base) and not port_open(base + 1)
    after = status_json(path, env=via)
    assert [after[s]["status"] for s in ("web.1", "web.2", "worker.1", "worker.2")] == [
        "stopped", "stopped", "running", "running"]


# ------------------------------------------------------------ export


def test_export_writes_one_unit_or_program_per_copy(tmp_path, monkeypatch):
    monkeypatch.delenv("PORT", raising=False)
    path = tmp_path / "Procfile"
    path.write_text("web: python -m http.server $PORT\nworker: python worker.py\n")
    result = subprocess.run([*PROCSYNC, "export", "systemd", "-c", str(path), "-m", "web=2",
                             "-o", str(tmp_path / "units")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    units = sorted(p.name for p in (tmp_path / "units").iterdir())
    assert units == ["procsync-web.1.service", "procsync-web.2.service", "procsync-worker.service"]
    web2 = (tmp_path / "units" / "procsync-web.2.service").read_text()
    assert '"PORT=5001"' in web2 or " PORT=5001" in web2
    assert "PS=web.2" in web2
    result = subprocess.run([*PROCSYNC, "export", "supervisord", "-c", str(path), "-m", "web=2,worker=0",
                             "-o", str(tmp_path / "sv")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    programs = (tmp_path / "sv" / "procsync-programs.conf").read_text()
    assert "[program:web.1]" in programs and "[program:web.2]" in programs
    assert "program:worker" not in programs
    assert 'PORT="5000"' in programs and 'PORT="5001"' in programs
    # a worker's offered port does not make supervisord wait for a listener either
    assert programs.count("startsecs=0") == 2


@pytest.mark.skipif(not SUPERVISORD.exists(), reason="supervisord is not installed")
def test_supervisord_runs_an_exported_formation(tmp_path):
    base = free_block(0, 1, 100)
    path = procfile(tmp_path, base)
    result = subprocess.run([*PROCSYNC, "export", "supervisord", "-c", str(path), "-m", "web=2,worker=0",
                             "-o", str(tmp_path / "sv")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    (tmp_path / ".procsync" / "logs").mkdir(parents=True)
    with supervisord(tmp_path / "sv" / "supervisord.conf") as proc:
        wait_until(lambda: port_open(base) and port_open(base + 1), 20, "both web copies to listen")
        assert not port_open(base + 100)
    assert is_gone(proc.pid)
    wait_until(lambda: not port_open(base) and not port_open(base + 1), 10, "the copies to be gone")


# ------------------------------------------------------------ .env as honcho reads it

# honcho's own test cases of its .env parser, with the values honcho gives
HONCHO_ENV_CASES = [
    ("FOO=bar\n", {"FOO": "bar"}),
    ("FOO=bar\nBAZ=qux\n", {"FOO": "bar", "BAZ": "qux"}),
    ("FOO=bar", {"FOO": "bar"}),  # no newline at the end
    ("#commented: command\n", {}),
    ("MYVAR='hello\"world'\n", {"MYVAR": 'hello"world'}),
    ("MYVAR=\"hello'world\"\n", {"MYVAR": "hello'world"}),
    ("MYVAR='\"surrounded\"'\n", {"MYVAR": '"surrounded"'}),
    ('MYVAR=\\"escaped\\"\n', {"MYVAR": '"escaped"'}),
    ("MYVAR=user@domain.com\n", {"MYVAR": "user@domain.com"}),
    ("MYVAR=~pun|u@|0n$=\n", {"MYVAR": "~pun|u@|0n$="}),
    ("MYVAR=\u22c3\u00f1\u1d09\u2014\u262a\u00f3\u2202\u01dd\n",
     {"MYVAR": "\u22c3\u00f1\u1d09\u2014\u262a\u00f3\u2202\u01dd"}),
    ("MYVAR='sp ace'\n", {"MYVAR": "sp ace"}),
    ("TABS='foo\\tbar'\nNEWLINES='foo\\nbar'\nDOLLAR='foo\\$bar'\n",
     {"TABS": "foo\tbar", "NEWLINES": "foo\nbar", "DOLLAR": "foo\\$bar"}),
]

# where procsync reads a line on purpose otherwise than honcho (docs/config.md says why)
PROCSYNC_ENV_CASES = [
    ("export QUEUE=emails\n", {"QUEUE": "emails"}),
    ("A=two words\n", {"A": "two words"}),  # honcho: "twowords"
    ("A=bar#baz\n", {"A": "bar#baz"}),  # honcho: "bar"
    ("A=http://x/#top\n", {"A": "http://x/#top"}),
    ("A=bar # a comment\nB=\"quoted\"  # too\n", {"A": "bar", "B": "quoted"}),
    ("A=\n", {"A": ""}),  # honcho: no A at all
    ("A=it's\n", {"A": "it's"}),  # honcho: a traceback
    ("A=\"a\"'b'c\n", {"A": "abc"}),
    ('A="say \\"hi\\" \\\\ \\$x"\n', {"A": 'say "hi" \\ \\$x'}),
    ("A = spaced\n", {"A": "spaced"}),
    ('A="  kept  "\n', {"A": "  kept  "}),
]


@pytest.mark.parametrize(("text", "values"), HONCHO_ENV_CASES + PROCSYNC_ENV_CASES)
def test_dotenv_values(tmp_path, monkeypatch, text, values):
    monkeypatch.delenv("PORT", raising=False)
    (tmp_path / "Procfile").write_text("web: serve\n")
    (tmp_path / ".env").write_bytes(text.encode())
    env = load_config(tmp_path / "Procfile").registry["web"].env
    assert {k: v for k, v in env.items() if k not in ("PORT", "PS")} == values


@pytest.mark.parametrize("line", ["-foo=command", "\u1e40\u1e8e\u1e7e\u1ea0\u1e5a=value", "not an assignment"])
def test_dotenv_refuses_a_line_honcho_would_skip(tmp_path, line):
    (tmp_path / "Procfile").write_text("web: serve\n")
    (tmp_path / ".env").write_text(f"GOOD=1\n{line}\n")
    with pytest.raises(ConfigFileError) as caught:
        load_config(tmp_path / "Procfile")
    assert str(caught.value) == f"{tmp_path / '.env'}:2: cannot parse {line!r} (expected KEY=VALUE)"


def test_env_file_of_a_server_is_read_the_same_way(tmp_path):
    """The honcho regression through a real process: MYVAR=\\"escaped\\" reaches it as "escaped"."""
    (tmp_path / "app.env").write_text('MYVAR=\\"escaped\\"\nOTHER=\'a\\tb\'\n')
    orch = ServerOrchestrator(tmp_path / "state.json", interval=0.2, log_dir=tmp_path / "logs")
    try:
        code = ("import os, json; open('seen.json', 'w').write(json.dumps("
                "[os.environ['MYVAR'], os.environ['OTHER']]))")
        orch.register_server("env", {"command": [PY, "-c", code], "cwd": str(tmp_path),
                                     "env_file": "app.env", "kind": "job"})
        assert orch.start_server("env").success
        wait_until(lambda: orch.get_server("env").status == "completed", 10, "the job to finish")
        assert json.loads((tmp_path / "seen.json").read_text()) == ['"escaped"', "a\tb"]
    finally:
        orch.shutdown(stop_servers=True)


# ------------------------------------------------------------ Procfile lines as honcho reads them

@pytest.mark.parametrize(("text", "processes"), [
    ("web: command\n", {"web": "command"}),
    ("foo: python foo.py\nbar: python bar.py\n", {"foo": "python foo.py", "bar": "python bar.py"}),
    ("web: command", {"web": "command"}),
    ("#commented: command\n", {}),
    ("-foo_bar: command\n", {"-foo_bar": "command"}),
    ('web: sh -c "echo $FOOBAR" >/dev/null 2>&1\n', {"web": 'sh -c "echo $FOOBAR" >/dev/null 2>&1'}),
    ("one: a\ntwo: b\nthree: b\nfour: d\n", {"one": "a", "two": "b", "three": "b", "four": "d"}),
])
def test_procfile_lines(tmp_path, text, processes):
    (tmp_path / "Procfile").write_text(textwrap.dedent(text))
    registry = load_config(tmp_path / "Procfile").registry
    assert {sid: c.command for sid, c in registry.items()} == processes
    assert list(registry) == list(processes)  # file order


def test_procfile_refuses_a_name_honcho_would_skip(tmp_path):
    (tmp_path / "Procfile").write_text("web: a\n+foo: command\n")
    with pytest.raises(ConfigFileError) as caught:
        load_config(tmp_path / "Procfile")
    assert str(caught.value) == f"{tmp_path / 'Procfile'}:2: cannot parse '+foo: command' (expected 'name: command')"


def test_a_base_port_of_digits_int_cannot_read_is_named(tmp_path):
    (tmp_path / "Procfile").write_text("web: serve\n")
    (tmp_path / ".env").write_text("PORT=\u00b2\n")
    with pytest.raises(ConfigFileError) as caught:
        load_config(tmp_path / "Procfile")
    assert str(caught.value) == f"{tmp_path / 'Procfile'}: PORT: base port '\u00b2' is not a port number (1..65535)"
