"""The configs of docs/migrating.md load, and they run: their servers reach "running" and stop."""

from __future__ import annotations

import configparser
import dataclasses
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from helpers import PY, free_port, is_gone, wait_until

from procsync import ServerOrchestrator
from procsync.config import load_config

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MIGRATING = EXAMPLES / "migrating"
CONFIGS = sorted(p for p in MIGRATING.iterdir() if p.suffix == ".toml" or p.name.startswith("Procfile"))


def test_every_config_of_the_folder_is_tested():
    names = {p.name for p in MIGRATING.iterdir()}
    assert names - {p.name for p in CONFIGS} == {".env"}, "a new file here needs a test"
    assert {"from-supervisord.toml", "from-pm2.toml", "Procfile", "from-procfile.toml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_passes_check(path):
    proc = subprocess.run([PY, "-m", "procsync", "check", "-c", str(path)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHON": PY})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{path.name}: OK" in proc.stdout
    assert "warning" not in proc.stderr, proc.stderr  # every command and cwd exists


def test_procfile_takes_the_env_file_beside_it():
    loaded = load_config(MIGRATING / "Procfile")
    base = int(dict(line.split("=", 1) for line in (MIGRATING / ".env").read_text().splitlines()
                    if "=" in line and not line.startswith("#"))["PORT"])
    assert list(loaded.registry) == ["web", "api"]
    assert [c.ports for c in loaded.registry.values()] == [(base,), (base + 100,)]
    assert all(c.env["APP_ENV"] == "development" and c.autostart for c in loaded.registry.values())


def _run(loaded, tmp_path) -> dict[str, int]:
    """Start every server of `loaded` with state and logs in tmp_path; their pids once running."""
    orch = ServerOrchestrator(tmp_path / "state.json", interval=0.2, log_dir=tmp_path / "logs")
    pids: dict[str, int] = {}
    try:
        orch.register_servers(loaded.registry)
        orch.initialize()
        results = orch.start_all()
        assert all(r.success for r in results.values()), results
        statuses = wait_until(lambda: (s := orch.get_server_status())
                              and all(x.status == "running" and x.listening == x.ports for x in s) and s,
                              timeout=30, what="every server running and listening on its ports")
        pids = {s.id: s.pid for s in statuses}
        for config in loaded.registry.values():
            for port in config.ports:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
                    assert answer.status == 200
    finally:
        orch.shutdown(stop_servers=True)
    assert all(is_gone(pid) for pid in pids.values()), pids
    return pids


def test_procfile_runs_as_is(tmp_path):
    folder = tmp_path / "app"
    folder.mkdir()
    shutil.copy(MIGRATING / "Procfile", folder / "Procfile")
    base = free_port()
    (folder / ".env").write_text(f"PORT={base}\nAPP_ENV=development\n")
    loaded = load_config(folder / "Procfile")
    if any(p > 65535 for c in loaded.registry.values() for p in c.ports):
        pytest.skip("the free port leaves no room for the second process")
    pids = _run(loaded, tmp_path)
    assert set(pids) == {"web", "api"}


def test_supervisord_config_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHON", PY)
    loaded = load_config(MIGRATING / "from-supervisord.toml")
    # the file's own state and logs would land in examples/: keep them here
    loaded.registry["web"] = _with_log(loaded.registry["web"], tmp_path / "web.log")
    pids = _run(loaded, tmp_path)
    assert set(pids) == {"web", "worker"}
    assert "tick 1" in (tmp_path / "logs" / "worker.log").read_text()


def _with_log(config, path):
    return dataclasses.replace(config, log_file=str(path))


def test_systemd_unit_signals_procsync_alone():
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read(EXAMPLES / "systemd" / "procsync.service")
    service = unit["Service"]
    assert service["ExecStart"].split()[1:3] == ["serve", "-c"]
    assert service["KillMode"] == "process"
    assert service["RestartPreventExitStatus"] == "2"
