"""How a child starts: default signal dispositions, an empty signal mask, only its own descriptors.

A process keeps the ignored signals and the signal mask of the process that
exec'd it. A host started with SIGINT ignored (a job started with `&` from a
script, nohup for SIGHUP, many service managers) must still give servers
that die of SIGINT; and nothing of the host but stdin, stdout and stderr
reaches the child.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess

import psutil
import pytest
from helpers import PY, wait_until

import procsync.spawn
from procsync import SpawnConfig, SpawnError
from procsync.logs import tail_lines

# The host: ignores SIGINT and SIGHUP, blocks SIGUSR1 and SIGTERM, as a job started by a shell
# or a service manager may, then starts a child through procsync.
HOST_PREAMBLE = (
    "import json, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
    "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})\n"
    "def masks():\n"
    "    fields = dict(line.split(':\\t') for line in open('/proc/self/status').read().splitlines())\n"
    "    return {k: int(fields[k], 16) for k in ('SigIgn', 'SigBlk')}\n"
)

HOST_MANAGER = HOST_PREAMBLE + (
    "from procsync import ProcessManager, SpawnConfig\n"
    "from procsync.logs import tail_lines\n"
    "m = ProcessManager(log_dir=sys.argv[1])\n"
    "info = m.spawn(SpawnConfig(id='probe', command=['cat', '/proc/self/status']))\n"
    "ended = m.wait('probe', timeout=20)\n"
    "m.close()\n"
    "child = dict(line.split(':\\t') for line in tail_lines(info.log_file, 200) if ':\\t' in line)\n"
    "print(json.dumps({'host': masks(), 'exit_code': ended and ended.exit_code,\n"
    "                  'child': {k: int(child[k], 16) for k in ('SigIgn', 'SigBlk')}}))\n"
)

HOST_ORCHESTRATOR = HOST_PREAMBLE + (
    "from procsync import ServerOrchestrator\n"
    "orch = ServerOrchestrator(sys.argv[1] + '/state.json', interval=30, log_dir=sys.argv[1] + '/logs')\n"
    "serve = 'import time; print(\"up\", flush=True); time.sleep(60)'  # 'up': past its start-up\n"
    "orch.register_server('srv', {'command': [sys.executable, '-c', serve], 'ready_log_line': 'up',\n"
    "                             'stop_signal': 'SIGINT', 'stop_timeout': 15})\n"
    "try:\n"
    "    started = orch.start_server('srv')\n"
    "    stopped = orch.stop_server('srv')\n"
    "    code = orch.get_server('srv').last_exit_code\n"
    "finally:\n"
    "    orch.shutdown(stop_servers=True)\n"
    "print(json.dumps({'host': masks(), 'started': started.success, 'stopped': stopped.message,\n"
    "                  'exit_code': code}))\n"
)


def run_host(code: str, tmp_path) -> dict:
    done = subprocess.run([PY, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    host = out["host"]  # the premise: the host really ignores SIGINT and blocks SIGUSR1
    assert host["SigIgn"] & (1 << (signal.SIGINT - 1)) and host["SigBlk"] & (1 << (signal.SIGUSR1 - 1))
    return out


def test_child_of_a_host_ignoring_signals_starts_with_defaults_and_no_mask(tmp_path):
    out = run_host(HOST_MANAGER, tmp_path)
    assert out["exit_code"] == 0
    assert out["child"] == {"SigIgn": 0, "SigBlk": 0}


def test_stop_signal_sigint_stops_a_server_of_a_host_ignoring_sigint(tmp_path):
    out = run_host(HOST_ORCHESTRATOR, tmp_path)
    assert out["started"] is True
    assert "with SIGINT" in out["stopped"], out["stopped"]  # not SIGKILL after stop_timeout
    assert out["exit_code"] == -signal.SIGINT


# ------------------------------------------------- what the spawn must keep doing


def test_child_gets_no_descriptor_of_the_parent(manager, tmp_path):
    read_end, write_end = os.pipe()
    os.set_inheritable(read_end, True)  # inheritable on purpose: close_fds must still close it
    os.set_inheritable(write_end, True)
    try:
        info = manager.spawn(SpawnConfig(
            id="fds", command=[PY, "-c", "import os; print(sorted(os.listdir('/proc/self/fd'), key=int))"]))
        ended = manager.wait("fds", timeout=10)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert ended is not None and ended.exit_code == 0
    # 0, 1 and 2, and the descriptor listdir() opened for the listing (the lowest free one)
    assert tail_lines(info.log_file) == ["['0', '1', '2', '3']"]


def test_cwd_relative_executable_and_the_childs_path(manager, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "procsync-test-tool"
    tool.write_text('#!/bin/sh\necho "ran in $PWD"\n')
    tool.chmod(0o755)
    configs = [  # relative to cwd, as subprocess does; a bare name through the child's own PATH
        SpawnConfig(id="relative", command=["./procsync-test-tool"], cwd=str(bin_dir)),
        SpawnConfig(id="path", command=["procsync-test-tool"], cwd=str(tmp_path),
                    env={"PATH": f"{bin_dir}:/usr/bin:/bin"}),
    ]
    for config in configs:
        manager.spawn(config)
    wait_until(lambda: not manager.is_running("relative") and not manager.is_running("path"),
               what="both tools to end")
    assert tail_lines(manager.log_path("relative")) == [f"ran in {bin_dir}"]
    assert tail_lines(manager.log_path("path")) == [f"ran in {tmp_path}"]
    assert manager.get_process("path").exit_code == 0


def test_not_an_executable_program(manager, tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF\x00not really")
    junk.chmod(junk.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(SpawnError) as caught:
        manager.spawn(SpawnConfig(id="junk", command=[str(junk)]))
    assert str(caught.value) == f"cannot start 'junk': {str(junk)!r} is not an executable program (exec format error)"
    assert manager.get_process("junk") is None


def test_signal_and_exit_code_of_a_child_are_seen(manager, tmp_path):
    manager.spawn(SpawnConfig(id="code", command=[PY, "-c", "raise SystemExit(7)"]))
    manager.spawn(SpawnConfig(id="killed", command=[PY, "-c", "import time; time.sleep(60)"]))
    wait_until(lambda: manager.get_process("code").status != "running", what="exit 7")
    result = manager.kill("killed")
    assert manager.get_process("code").exit_code == 7
    assert result.signal == "SIGTERM" and result.exit_code == -signal.SIGTERM
    assert not [c for c in psutil.Process().children() if c.status() == psutil.STATUS_ZOMBIE]


def test_without_the_c_librarys_extensions_subprocess_starts_the_child(manager, monkeypatch):
    monkeypatch.setattr(procsync.spawn, "_load", lambda: None)  # a C library without addchdir_np
    info = manager.spawn(SpawnConfig(id="old", command=[PY, "-c", "import os; print(os.getcwd())"], cwd="/"))
    ended = manager.wait("old", timeout=10)
    assert ended is not None and ended.exit_code == 0 and ended.pgid == info.pid
    assert tail_lines(info.log_file) == ["/"]
    with pytest.raises(SpawnError, match="executable 'procsync-no-such-program' not found"):
        manager.spawn(SpawnConfig(id="missing", command=["procsync-no-such-program"]))
