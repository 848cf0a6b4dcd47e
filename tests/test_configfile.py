"""load_config: procsync.toml and Procfile into settings + registry; errors name file, line, table, key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from procsync.config import (
    ConfigFileError,
    HealthCheck,
    LoadedConfig,
    ServerConfig,
    Settings,
    Webhook,
    expand_vars,
    load_config,
)
from procsync.errors import ConfigError


def write(folder: Path, text: str, name: str = "procsync.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_full_file_loads_settings_and_servers_in_file_order(tmp_path, monkeypatch):
    monkeypatch.setenv("APP_PORT", "9001")
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    (tmp_path / "app").mkdir()
    path = write(tmp_path, """
        [procsync]
        state_file = "state/procsync.db"
        log_dir = "logs"
        interval = 2
        host = "0.0.0.0"
        port = 9400
        auth_token = "tok"
        webhooks = [{url = "http://127.0.0.1:9/hook", events = ["server_fatal"], secret = "${HOOK_SECRET}"}]

        [servers.zeta]
        command = ["python", "-m", "http.server", "${APP_PORT}"]
        cwd = "app"
        env = {MODE = "${MODE:-dev}", LEVEL = 3}
        ports = [9001]
        health = {http = "http://127.0.0.1:9001/", expect_status = 200}
        autostart = true
        log_file = "logs/zeta.out"

        [servers.alpha]
        command = "echo $$HOME ${APP_PORT} $${LITERAL}"
        autorestart = "on-failure"
        """)
    loaded = load_config(path)
    assert isinstance(loaded, LoadedConfig) and loaded.format == "toml"
    assert loaded.settings == Settings(
        state_file=str(tmp_path / "state/procsync.db"), log_dir=str(tmp_path / "logs"), interval=2.0,
        host="0.0.0.0", port=9400, auth_token="tok", url_prefix="/procsync",
        webhooks=(Webhook("http://127.0.0.1:9/hook", ("server_fatal",), "s3cret"),),
    )
    assert list(loaded.registry) == ["zeta", "alpha"]
    zeta = loaded.registry["zeta"]
    assert zeta == ServerConfig(
        command=("python", "-m", "http.server", "9001"), name="zeta", cwd=str(tmp_path / "app"),
        env={"MODE": "dev", "LEVEL": "3"}, ports=(9001,),
        health=HealthCheck(http="http://127.0.0.1:9001/", expect_status=200), autostart=True,
        log_file=str(tmp_path / "logs/zeta.out"),
    )
    assert loaded.registry["alpha"].command == "echo $$HOME 9001 ${LITERAL}"


def test_defaults_live_beside_the_config_file(tmp_path):
    loaded = load_config(write(tmp_path, '[servers.a]\ncommand = "true"\n'))
    assert loaded.settings == Settings(
        state_file=str(tmp_path / ".procsync" / "state.json"), log_dir=str(tmp_path / ".procsync" / "logs"),
        interval=3.0, host="127.0.0.1", port=8420, auth_token=None, url_prefix="/procsync", webhooks=(),
    )
    assert loaded.registry["a"].name == "a" and loaded.registry["a"].autostart is False
    assert loaded.registry["a"].cwd == str(tmp_path)  # servers run beside their config file
    assert load_config(write(tmp_path, "", "empty.toml")).registry == {}


def test_expand_vars(monkeypatch):
    monkeypatch.setenv("A", "1")
    monkeypatch.delenv("NOPE", raising=False)
    assert expand_vars("${A}-${NOPE:-x}-$${A}-$A-$$") == "1-x-${A}-$A-$$"
    with pytest.raises(KeyError):
        expand_vars("${NOPE}")


# (file text, expected message with {path}); each names file, line, table and key.
BAD_FILES = [
    ("[procsync]\nport = \n", "{path}:2: invalid TOML: Invalid value (column 8)"),
    ("[servers.a]\ncommand = 'x'\n[servers.a]\n", "{path}:3: invalid TOML: Cannot declare ('servers', 'a') twice (column 11)"),
    ("[procsinc]\n", "{path}:1: procsinc: unknown table (did you mean 'procsync'?)"),
    ("[server.web]\ncommand = 'x'\n", "{path}:1: server: unknown table (did you mean 'servers'?)"),
    ("servers = 5\n", "{path}:1: servers: must be a table of [servers.<id>] tables"),
    ("[procsync]\nprot = 80\n", "{path}:2: [procsync] prot: unknown key (did you mean 'port'?)"),
    ("[procsync]\nzzz = 1\n", "{path}:2: [procsync] zzz: unknown key"),
    ("[procsync]\nport = 70000\n", "{path}:2: [procsync] port: 70000 is not a port number (1..65535)"),
    ("[procsync]\nport = '80'\n", "{path}:2: [procsync] port: '80' is not a port number (1..65535)"),
    ("[procsync]\ninterval = 0\n", "{path}:2: [procsync] interval: must be a number of seconds above 0, not 0"),
    ("[procsync]\nhost = ''\n", "{path}:2: [procsync] host: must be a host name or address, not ''"),
    ("[procsync]\nstate_file = 3\n", "{path}:2: [procsync] state_file: must be a path (a non-empty string), not 3"),
    ("[procsync]\nauth_token = ''\n", "{path}:2: [procsync] auth_token: must be a non-empty string, not ''"),
    ("[procsync]\nauth_token = '${PROCSYNC_TEST_UNSET}'\n",
     "{path}:2: [procsync] auth_token: ${PROCSYNC_TEST_UNSET} is not set in the environment"),
    ("[procsync]\nurl_prefix = 'admin'\n", "{path}:2: [procsync] url_prefix: must be a path starting with '/', not 'admin'"),
    ("[procsync]\nwebhooks = {url = 'http://x'}\n",
     "{path}:2: [procsync] webhooks: must be a list of tables like {url = \"...\"}"),
    ("[procsync]\nwebhooks = [{}]\n", "{path}:2: [procsync] webhooks[0].url: is required"),
    ("[procsync]\nwebhooks = [{url = 'ftp://x'}]\n", "{path}:2: [procsync] webhooks[0].url: 'ftp://x' is not an http(s) URL"),
    ("[procsync]\nwebhooks = [{url = 'http://x', event = []}]\n",
     "{path}:2: [procsync] webhooks[0].event: unknown key (did you mean 'events'?)"),
    ("[procsync]\nwebhooks = [{url = 'http://x', events = ['server_fatl']}]\n",
     "{path}:2: [procsync] webhooks[0].events: unknown event 'server_fatl' (did you mean 'server_fatal'?)"),
    ("[procsync]\nwebhooks = [{url = 'http://x', secret = 5}]\n",
     "{path}:2: [procsync] webhooks[0].secret: must be a non-empty string, not 5"),
    ("[servers.'bad id']\ncommand = 'x'\n",
     "{path}:1: [servers.bad id] server id must be 1-64 letters, digits, '-', '_' or '.'"),
    ("[servers]\nweb = 'python app.py'\n", "{path}:2: [servers.web] must be a table, not 'python app.py'"),
    ("[servers.web]\nports = [80]\n", "{path}:1: [servers.web] command: is required"),
    ("[servers.web]\ncommand = 'x'\n\nports = [80, 0]\n",
     "{path}:4: [servers.web] ports: 0 is not a port number (1..65535)"),
    ("[servers.web]\ncommand = 'x'\nautorestart = 'sometimes'\n",
     "{path}:3: [servers.web] autorestart: 'sometimes' is not one of no, on-failure, always"),
    ("[servers.web]\ncommand = 'x'\nstrat_timeout = 5\n",
     "{path}:3: [servers.web] strat_timeout: unknown key (did you mean 'start_timeout'?)"),
    ("[servers.web]\ncommand = 'x'\nhealth = {http = 'localhost:80'}\n",
     "{path}:3: [servers.web] health.http: 'localhost:80' is not an http(s) URL"),
    ("[servers.web]\ncommand = 'run ${PROCSYNC_TEST_UNSET}'\n",
     "{path}:2: [servers.web] command: ${PROCSYNC_TEST_UNSET} is not set in the environment"),
    ("[servers.web]\ncommand = ['run', '${PROCSYNC_TEST_UNSET}']\n",
     "{path}:2: [servers.web] command: ${PROCSYNC_TEST_UNSET} is not set in the environment"),
    ("[servers.web]\ncommand = 'x'\nenv = {KEY = '${PROCSYNC_TEST_UNSET}'}\n",
     "{path}:3: [servers.web] env.KEY: ${PROCSYNC_TEST_UNSET} is not set in the environment"),
    ("[servers.web]\ncommand = 'x ${1BAD}'\n", "{path}:2: [servers.web] command: ${1BAD} is not a valid variable name"),
    ("[servers.web]\ncommand = 'x'\nstop_signal = 'SIGWHAT'\n",
     "{path}:3: [servers.web] stop_signal: unknown signal 'SIGWHAT'"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_bad_config_files(tmp_path, monkeypatch, text, expected):
    monkeypatch.delenv("PROCSYNC_TEST_UNSET", raising=False)
    path = write(tmp_path, text)
    with pytest.raises(ConfigFileError) as caught:
        load_config(path)
    assert str(caught.value) == expected.replace("{path}", str(path))
    assert isinstance(caught.value, ConfigError)


def test_server_errors_keep_the_server_id_and_field(tmp_path):
    path = write(tmp_path, "[servers.web]\ncommand = 'x'\nports = [0]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    err = caught.value
    assert (err.server_id, err.field, err.line, err.table, err.path) == ("web", "ports", 3, "servers.web", str(path))


@pytest.mark.parametrize(("name", "problem"), [
    ("missing.toml", "no such file"),
    ("folder.toml", "is a directory, not a config file"),
    ("latin1.toml", "is not UTF-8 text (invalid continuation byte)"),
])
def test_unreadable_files(tmp_path, name, problem):
    (tmp_path / "folder.toml").mkdir()
    (tmp_path / "latin1.toml").write_bytes(b"[servers.caf\xe9]\n")
    with pytest.raises(ConfigFileError) as caught:
        load_config(tmp_path / name)
    assert str(caught.value) == f"{tmp_path / name}: {problem}"


def test_procfile_with_dotenv_gets_foreman_ports(tmp_path, monkeypatch):
    monkeypatch.delenv("PORT", raising=False)
    write(tmp_path, """\
        # a comment
        web: python -m http.server $PORT

        worker:python worker.py --queue "$QUEUE"
        clock: ./clock
        """, "Procfile")
    write(tmp_path, """\
        export QUEUE=emails
        SECRET='a b'
        GREETING="hi\\nthere"
        EMPTY=
        # ignored
        """, ".env")
    loaded = load_config(tmp_path / "Procfile")
    assert loaded.format == "procfile"
    assert list(loaded.registry) == ["web", "worker", "clock"]
    assert [c.ports for c in loaded.registry.values()] == [(5000,), (5100,), (5200,)]
    worker = loaded.registry["worker"]
    assert worker.command == 'python worker.py --queue "$QUEUE"'
    assert worker.shell is True and worker.autostart is True and worker.cwd == str(tmp_path)
    assert worker.env == {"QUEUE": "emails", "SECRET": "a b", "GREETING": "hi\nthere", "EMPTY": "", "PORT": "5100",
                          "PS": "worker.1"}
    assert worker.ports_required is False and worker.group is None
    assert loaded.settings == Settings.defaults(tmp_path)


def test_procfile_base_port_from_dotenv_or_environment(tmp_path, monkeypatch):
    write(tmp_path, "web: serve\nworker: work\n", "Procfile.dev")
    monkeypatch.setenv("PORT", "7000")
    assert [c.ports for c in load_config(tmp_path / "Procfile.dev").registry.values()] == [(7000,), (7100,)]
    write(tmp_path, "PORT=8000\n", ".env")
    assert [c.ports for c in load_config(tmp_path / "Procfile.dev").registry.values()] == [(8000,), (8100,)]


@pytest.mark.parametrize(("procfile", "dotenv", "expected"), [
    ("web serve\n", "", "{path}:1: cannot parse 'web serve' (expected 'name: command')"),
    ("web: a\nweb: b\n", "", "{path}:2: web: process name used twice"),
    ("web:\n", "", "{path}:1: web: has no command"),
    ("web: a\n", "PORT=http\n", "{path}: PORT: base port 'http' is not a port number (1..65535)"),
    ("web: a\n", "not an assignment\n", "{env}:1: cannot parse 'not an assignment' (expected KEY=VALUE)"),
    ("a: x\nb: x\n", "PORT=65500\n", "{path}:2: b: its port 65600 is above 65535"),
])
def test_bad_procfiles(tmp_path, monkeypatch, procfile, dotenv, expected):
    monkeypatch.delenv("PORT", raising=False)
    path = write(tmp_path, procfile, "Procfile")
    if dotenv:
        write(tmp_path, dotenv, ".env")
    with pytest.raises(ConfigFileError) as caught:
        load_config(path)
    assert str(caught.value) == expected.format(path=path, env=tmp_path / ".env")
