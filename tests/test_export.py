"""procsync export: systemd units and a supervisord config, read back with configparser."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
import textwrap

import pytest
from helpers import SUPERVISORD, is_gone, supervisord, wait_until

from procsync.config import load_config

PROCSYNC = [sys.executable, "-m", "procsync"]


@pytest.fixture
def config(tmp_path):
    (tmp_path / "app").mkdir()
    path = tmp_path / "procsync.toml"
    path.write_text(textwrap.dedent(f"""
        [procsync]
        log_dir = "logs"

        [servers.web]
        command = ["{sys.executable}", "-c", "print('hello %s from $HOME', flush=True); import time; time.sleep(60)"]
        cwd = "app"
        env = {{GREETING = "say \\"hi\\" 100%", MODE = "prod"}}
        ports = [8123]
        autostart = true
        autorestart = "on-failure"
        max_restarts = 3
        stop_signal = "SIGINT"
        stop_timeout = 7.5

        [servers.job]
        command = "echo $HOME && sleep 1"
        shell = true
        log_file = "job.out"
        """))
    return path


def export(config, kind, out):
    return subprocess.run([*PROCSYNC, "export", kind, "-c", str(config), "-o", str(out)],
                          capture_output=True, text=True, timeout=30)


def ini(path):
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep key case
    parser.read(path)
    return parser


def systemd_split(line):
    """ExecStart/Environment words as systemd reads them: quotes, backslash escapes, $$ and %%."""
    words = re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)', line)
    out = []
    for quoted, bare in words:
        word = re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), quoted) if quoted else bare
        out.append(word.replace("$$", "$").replace("%%", "%"))
    return out


def test_systemd_units(config, tmp_path):
    out = tmp_path / "units"
    result = export(config, "systemd", out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["procsync-job.service", "procsync-web.service"]
    assert f"wrote {out / 'procsync-web.service'}" in result.stdout
    web = ini(out / "procsync-web.service")
    assert web["Unit"]["Description"] == "web (procsync server web)"
    service = web["Service"]
    assert systemd_split(service["ExecStart"]) == [
        sys.executable, "-c", "print('hello %s from $HOME', flush=True); import time; time.sleep(60)"]
    assert service["WorkingDirectory"] == str(tmp_path / "app")
    assert systemd_split(service["Environment"]) == [
        "PROCSYNC_ID=web", 'GREETING=say "hi" 100%', "MODE=prod"]
    assert service["KillSignal"] == "SIGINT" and service["TimeoutStopSec"] == "7.5"
    assert service["KillMode"] == "control-group"
    assert service["Restart"] == "on-failure" and web["Unit"]["StartLimitBurst"] == "4"
    assert service["StandardOutput"] == f"append:{tmp_path / 'logs' / 'web.log'}"
    assert web["Install"]["WantedBy"] == "multi-user.target"
    job = ini(out / "procsync-job.service")["Service"]
    assert systemd_split(job["ExecStart"]) == ["/bin/sh", "-c", "echo $HOME && sleep 1"]
    assert job["Restart"] == "no" and job["StandardOutput"] == f"append:{tmp_path / 'job.out'}"


def test_systemd_user_units(config, tmp_path):
    result = subprocess.run([*PROCSYNC, "export", "systemd", "--user", "-c", str(config), "-o", str(tmp_path / "u")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert ini(tmp_path / "u" / "procsync-web.service")["Install"]["WantedBy"] == "default.target"


def test_supervisord_config(config, tmp_path):
    out = tmp_path / "sv"
    result = export(config, "supervisord", out)
    assert result.returncode == 0, result.stderr
    main = ini(out / "supervisord.conf")
    assert main["include"]["files"] == "procsync-programs.conf"
    assert main["supervisord"]["pidfile"] == str(out / "supervisord.pid")
    programs = ini(out / "procsync-programs.conf")
    assert programs.sections() == ["program:web", "program:job"]
    web = programs["program:web"]
    # supervisord expands %(name)s itself: a literal % is written %%
    assert web["command"].replace("%%", "%").startswith(f"{sys.executable} -c 'print(")
    assert web["directory"] == str(tmp_path / "app")
    assert web["environment"] == 'PROCSYNC_ID="web",GREETING=\'say "hi" 100%%\',MODE="prod"'
    assert (web["autostart"], web["autorestart"], web["startretries"]) == ("true", "unexpected", "3")
    assert (web["stopsignal"], web["stopwaitsecs"]) == ("INT", "8")
    assert web["stopasgroup"] == web["killasgroup"] == "true"
    assert web["stdout_logfile"] == str(tmp_path / "logs" / "web.log")
    job = programs["program:job"]
    assert job["command"] == "/bin/sh -c 'echo $HOME && sleep 1'"
    assert (job["autostart"], job["autorestart"]) == ("false", "false")


@pytest.mark.skipif(not SUPERVISORD.exists(), reason="supervisord is not installed")
def test_supervisord_runs_the_exported_config(config, tmp_path):
    out = tmp_path / "sv"
    assert export(config, "supervisord", out).returncode == 0
    (tmp_path / "logs").mkdir()
    with supervisord(out / "supervisord.conf") as proc:
        log = tmp_path / "logs" / "web.log"
        wait_until(lambda: log.exists() and "hello %s from $HOME" in log.read_text(), 20,
                   "supervisord's web program to print")
    assert is_gone(proc.pid)


def test_export_errors(tmp_path):
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    result = export(empty, "systemd", tmp_path / "o")
    assert result.returncode == 2 and f"Error: {empty}: defines no servers" in result.stderr
    result = subprocess.run([*PROCSYNC, "export", "launchd", "-c", str(empty), "-o", "x"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "'launchd' is not one of 'systemd', 'supervisord'" in result.stderr
    afile = tmp_path / "afile"
    afile.write_text("")
    good = tmp_path / "p.toml"
    good.write_text("[servers.a]\ncommand = 'x'\n")
    result = export(good, "systemd", afile / "sub")
    assert result.returncode == 1 and f"Error: cannot write to {afile / 'sub'}" in result.stderr


def test_procfile_exports_too(tmp_path):
    (tmp_path / "Procfile").write_text("web: python -m http.server $PORT\n")
    result = export(tmp_path / "Procfile", "systemd", tmp_path / "o")
    assert result.returncode == 0, result.stderr
    service = ini(tmp_path / "o" / "procsync-web.service")["Service"]
    assert systemd_split(service["ExecStart"]) == ["/bin/sh", "-c", "python -m http.server $PORT"]
    assert "PORT=5000" in systemd_split(service["Environment"])
    assert load_config(tmp_path / "Procfile").registry["web"].ports == (5000,)
