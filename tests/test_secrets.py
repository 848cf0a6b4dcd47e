"""Secrets in command lines are masked in everything procsync shows or stores (issue 11, item 10).

The real argv runs unchanged; the state file (and its history, lock and the
SQLite database) is readable by its owner only.
"""

from __future__ import annotations

import json
import os
import queue
import stat
from datetime import UTC, datetime

import psutil
import pytest
from helpers import PY, wait_until

from procsync import ServerOrchestrator, SQLiteStateStore, open_store
from procsync.store import StoredProcessInfo

SLEEP = "import time; time.sleep(60)"


@pytest.mark.parametrize(("command", "shown"), [
    ("srv --password=hunter2 --port 80", "srv --password=*** --port 80"),
    ("srv --token abc123 -v", "srv --token *** -v"),
    ("API_KEY=abc ./run --db postgres://me:pw@db/app", "API_KEY=*** ./run --db postgres://me:***@db/app"),
    ("java -Djavax.net.ssl.keyStorePassword=s3 -jar app.jar",
     "java -Djavax.net.ssl.keyStorePassword=*** -jar app.jar"),
    ("srv --client-secret 'a b c' --port 80", "srv --client-secret *** --port 80"),
    ("srv --api-key=\"a b\" x", "srv --api-key=*** x"),
    ("curl https://api/x?api_key=abc&page=2", "curl https://api/x?api_key=***&page=2"),
    ("srv --verbose --port 8000 -p 5", "srv --verbose --port 8000 -p 5"),  # nothing secret
    (["srv", "--passwd", "a b", "--credentials=x y", "MY_TOKEN=z", "plain arg"],
     "srv --passwd *** --credentials=*** MY_TOKEN=*** 'plain arg'"),
])
def test_redact_command_masks_values_of_secret_looking_names(command, shown):
    from procsync.redact import redact_command

    assert redact_command(command) == shown
    assert redact_command(shown) == shown  # redacting twice changes nothing more


def test_redact_command_masks_given_values():
    from procsync.redact import redact_command

    assert redact_command(["run", "--db", "xyzzy-42"], secrets=["xyzzy-42", ""]) == "run --db ***"


def _secret_server(tmp_path):
    code = SLEEP
    return {"command": [PY, "-c", code, "--password=hunter2", "--token", "tok-SECRET-9",
                        "postgres://app:dbpass77@localhost/db"]}


SECRETS = ("hunter2", "tok-SECRET-9", "dbpass77")


def _no_secret(text: str) -> bool:
    return not any(secret in text for secret in SECRETS)


def test_orchestrator_shows_and_stores_commands_without_secrets(tmp_path):
    from procsync.flask_ext.events import EventHub

    state = tmp_path / "state.json"
    orch = ServerOrchestrator(state, interval=0.2, log_dir=tmp_path / "logs")
    hub = EventHub(orch)
    sub, _ = hub.subscribe()
    started = []
    orch.on("process_started", lambda sender, **payload: started.append(payload))
    try:
        orch.register_server("db", _secret_server(tmp_path))
        result = orch.start_server("db")
        assert result.success, result.message
        # the real process runs with its real arguments
        argv = psutil.Process(result.pid).cmdline()
        assert "--password=hunter2" in argv and "tok-SECRET-9" in argv
        # what procsync shows
        status = orch.get_server("db")
        assert "--password=***" in status.command and _no_secret(status.command)
        assert _no_secret(json.dumps([s.to_dict() for s in orch.get_server_status()]))
        assert _no_secret(orch.manager.get_process("db").command)
        wait_until(lambda: started, 5, "process_started")
        assert _no_secret(started[0]["info"].command)
        events = []

        def seen_start() -> bool:
            try:
                events.append(sub.queue.get_nowait())
            except queue.Empty:
                pass
            return any(b"process_started" in e for e in events)

        wait_until(seen_start, 10, "the process_started event")
        assert _no_secret(b"".join(events).decode())
        # what procsync stores
        wait_until(lambda: state.exists() and "db" in state.read_text(), 5, "the state file")
        assert _no_secret(state.read_text())
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(f"{state}.lock").st_mode) == 0o600
        history = tmp_path / "state.json.history.json"
        wait_until(history.exists, 5, "the history file")
        assert stat.S_IMODE(os.stat(history).st_mode) == 0o600
    finally:
        hub.close()
        orch.shutdown(stop_servers=True)
    assert _no_secret(state.read_text())


def test_expanded_config_variables_are_masked(tmp_path, monkeypatch):
    from procsync.config import load_config

    monkeypatch.setenv("PROCSYNC_TEST_DB_URL", "mysql-host-Q7Z")
    monkeypatch.setenv("PROCSYNC_TEST_WORD", "plainword-K3J")
    config = tmp_path / "procsync.toml"
    config.write_text(
        "[servers.web]\n"
        f"command = [{json.dumps(PY)}, '-c', {json.dumps(SLEEP)}, '--db', '${{PROCSYNC_TEST_DB_URL}}']\n"
        "[servers.api]\n"
        f"command = '{PY} -c \"{SLEEP}\" at=${{PROCSYNC_TEST_WORD}} $${{LITERAL}}'\n"
    )
    loaded = load_config(config)
    assert "mysql-host-Q7Z" in loaded.registry["web"].command  # what runs is expanded
    orch = ServerOrchestrator(tmp_path / "state.json", interval=0.2, log_dir=tmp_path / "logs")
    try:
        orch.register_servers(loaded.registry)
        shown = {s.id: s.command for s in orch.get_server_status()}
        assert "mysql-host-Q7Z" not in shown["web"] and shown["web"].endswith("--db ***")
        assert "plainword-K3J" not in shown["api"] and "at=*** ${LITERAL}" in shown["api"]
        result = orch.start_server("web")
        assert result.success, result.message
        assert "mysql-host-Q7Z" in psutil.Process(result.pid).cmdline()
        assert "mysql-host-Q7Z" not in orch.manager.get_process("web").command
        wait_until(lambda: "web" in (tmp_path / "state.json").read_text(), 5, "the state file")
        assert "mysql-host-Q7Z" not in (tmp_path / "state.json").read_text()
    finally:
        orch.shutdown(stop_servers=True)


def test_stored_records_mask_secrets_and_keep_0600(tmp_path):
    state = tmp_path / "old.json"
    state.write_text("{}\n")
    os.chmod(state, 0o644)  # written by an older procsync
    store = open_store(state)
    record = StoredProcessInfo(id="w", pid=os.getpid(), command="srv --token=abc --port 1", cwd=None,
                               start_time=datetime.now(UTC), status="running", ports=())
    store.save_process(record)
    assert "abc" not in state.read_text() and "--token=***" in state.read_text()
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600
    store.close()

    db = tmp_path / "state.db"
    sqlite = SQLiteStateStore(db)
    try:
        sqlite.save_process(record)
        assert sqlite.get_process("w").command == "srv --token=*** --port 1"
        for path in (db, f"{db}-wal"):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
        assert b"abc" not in db.read_bytes() + (tmp_path / "state.db-wal").read_bytes()
    finally:
        sqlite.close()
