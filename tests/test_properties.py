"""Property tests (hypothesis): config parsing, state-file loading and id validation raise
nothing but their documented errors, whatever they are given.

Bounded for CI (a fixed, derandomized set of examples); set PROCSYNC_PROPERTY_EXAMPLES=2000
(say) for a longer run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote, urljoin, urlsplit

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from procsync import ProcessStateStore, ServerConfig, SQLiteStateStore
from procsync.config import SETTINGS_KEYS, ConfigFileError, HealthCheck, check_id, load_config
from procsync.config.records import CONDITIONS, MEMORY_ACTIONS
from procsync.errors import ConfigError

EXAMPLES = int(os.environ.get("PROCSYNC_PROPERTY_EXAMPLES", "150"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)

SERVER_FIELDS = [name for name in ServerConfig.__dataclass_fields__]
DURATIONS = ("stop_timeout", "start_timeout", "backoff_initial", "backoff_max", "stable_after")


@contextmanager
def folder() -> Iterator[Path]:
    """A fresh temporary folder per example (pytest's tmp_path is one per test)."""
    path = Path(tempfile.mkdtemp(prefix="procsync-prop-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ strategies

ODD_TEXT = st.sampled_from([
    "", " ", "\0", "a\0b", "\ud800", "\udc80", "caf\u00e9", "\U0001f642", "'", '"', "\\", "a b 'c",
    "${HOME}", "${PROCSYNC_PROP_UNSET}", "$${x}", "${1x}", "-", "\n", "\t", "x" * 300, "..", "/",
    "nan", "inf", "1e999", "http://127.0.0.1:1/", "http://[::1", "http://x:99999/", "SIGTERM",
])
TEXT = st.one_of(
    st.text(max_size=16),
    ODD_TEXT,
    st.text(st.characters(categories=["Cs", "Cc", "Zs"]), max_size=4),  # surrogates, controls, spaces
)
FLOATS = st.one_of(st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e300, 5e-324]))
INTS = st.one_of(st.integers(-5, 70000), st.sampled_from([2 ** 31, 2 ** 63, -2 ** 63, 10 ** 30, 10 ** 400]))
SCALAR = st.one_of(st.none(), st.booleans(), INTS, FLOATS, TEXT)
JSONISH = st.recursive(SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)), max_leaves=8)
NUMBER = st.one_of(INTS, FLOATS)

COMMAND = st.one_of(TEXT, st.lists(TEXT, max_size=3), st.just([sys.executable, "-c", "pass"]),
                    st.sampled_from(["python -c 'print(1)", "echo ok", "echo \"a b\" c\\", "''"]))
HEALTH = st.one_of(
    st.fixed_dictionaries({"http": st.one_of(TEXT, st.just("http://127.0.0.1:8000/health"))},
                          optional={"expect_status": INTS, "timeout": NUMBER}),
    st.fixed_dictionaries({"tcp": INTS}, optional={"timeout": NUMBER}),
    st.fixed_dictionaries({"command": COMMAND}, optional={"timeout": NUMBER}),
    st.dictionaries(st.sampled_from(["http", "tcp", "command", "timeout", "expect_status", "zzz"]),
                    JSONISH, max_size=3),
)
VALUES = {
    "command": COMMAND,
    "name": TEXT,
    "cwd": st.one_of(TEXT, st.just("/tmp")),
    "env": st.dictionaries(TEXT, st.one_of(TEXT, NUMBER, st.booleans(), st.none()), max_size=3),
    "ports": st.one_of(st.lists(INTS, max_size=3), INTS),
    "color": TEXT,
    "shell": st.booleans(),
    "stop_signal": st.one_of(st.sampled_from(["TERM", "SIGINT", "kill", 9, 15, 0, 999, "SIGWHAT"]), TEXT),
    "autorestart": st.sampled_from(["no", "on-failure", "always", True, False, "never", None]),
    "max_restarts": NUMBER,
    "health": HEALTH,
    "autostart": st.booleans(),
    "log_file": TEXT,
    "log_max_bytes": NUMBER,
    "log_backups": NUMBER,
    "kind": st.one_of(st.sampled_from(["server", "job", "daemon"]), TEXT),
    "depends_on": st.one_of(st.lists(TEXT, max_size=3), st.dictionaries(TEXT, TEXT, max_size=3), TEXT),
    "restart_dependents": SCALAR,
    "group": TEXT,
    "ready_log_line": st.one_of(TEXT, st.sampled_from(["(", "a{99999999999}", "x" * 5000])),
    "memory_limit": st.one_of(INTS, FLOATS, TEXT, st.sampled_from(["512MB", "9" * 400 + "GB", "1.5 GiB"])),
    "memory_action": TEXT,
    "restart_schedule": st.one_of(TEXT, st.sampled_from(["03:00", "25:00", "every 0s", "* * * * *",
                                                         "61 * * * *", "every 99999999999d"])),
    "reload_signal": st.one_of(TEXT, INTS),
    "ports_required": SCALAR,
    "success_exit_codes": st.one_of(st.lists(INTS, max_size=3), INTS),
    "env_file": TEXT,
    **{name: NUMBER for name in DURATIONS},
}
PORT = st.integers(1, 65535)
SECONDS = st.one_of(st.integers(0, 1000), st.floats(0, 1e5))
NICE_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), min_size=1, max_size=10)
GOOD = {
    "command": st.one_of(st.just([sys.executable, "-c", "pass"]), st.lists(NICE_TEXT, min_size=1, max_size=3),
                         st.sampled_from(["echo ok", "python -c 'print(1)'", 'run --flag="a b" x\\ y'])),
    "name": NICE_TEXT,
    "cwd": st.just("/tmp"),
    "env": st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,5}", fullmatch=True),
                           st.one_of(NICE_TEXT, st.integers(-5, 5)), max_size=3),
    "ports": st.lists(PORT, max_size=3, unique=True),
    "color": NICE_TEXT,
    "shell": st.booleans(),
    "stop_signal": st.sampled_from(["TERM", "SIGINT", "kill", 15, "HUP"]),
    "autorestart": st.sampled_from(["no", "on-failure", "always", True, False]),
    "max_restarts": st.integers(0, 10),
    "health": st.one_of(st.builds(lambda p: {"tcp": p}, PORT),
                        st.builds(lambda p, t: {"http": f"http://127.0.0.1:{p}/", "timeout": t}, PORT,
                                  st.floats(0.01, 10)),
                        st.just({"command": ["true"], "timeout": 2})),
    "autostart": st.booleans(),
    "log_file": st.just("logs/x.log"),
    "log_max_bytes": st.integers(1, 1 << 30),
    "log_backups": st.integers(0, 100),
    "kind": st.sampled_from(["server", "job"]),
    "depends_on": st.one_of(st.lists(st.sampled_from(["db", "cache"]), max_size=2, unique=True),
                            st.dictionaries(st.sampled_from(["db", "cache"]), st.sampled_from(CONDITIONS),
                                            max_size=2)),
    "restart_dependents": st.booleans(),
    "group": st.sampled_from(["backend", "a.b-c_1"]),
    "ready_log_line": st.sampled_from(["ready", r"Listening on \d+"]),
    "memory_limit": st.one_of(st.integers(1, 1 << 40), st.sampled_from(["512MB", "1GiB", "512M", "1.5G"])),
    "memory_action": st.sampled_from(MEMORY_ACTIONS),
    "restart_schedule": st.sampled_from(["03:00", "every 6h", "0 4 * * sun", "*/15 * * * *"]),
    "reload_signal": st.sampled_from(["HUP", "SIGUSR1", 10]),
    "ports_required": st.booleans(),
    "success_exit_codes": st.lists(st.integers(0, 255), min_size=1, max_size=3),
    "env_file": st.just(".env"),
    **{name: SECONDS for name in DURATIONS},
}
MOSTLY_GOOD = st.tuples(
    st.fixed_dictionaries({"command": GOOD["command"]},
                          optional={name: GOOD[name] for name in SERVER_FIELDS if name != "command"}),
    st.sampled_from(SERVER_FIELDS),
    st.one_of(st.none(), st.builds(lambda v: (v,), st.one_of(SCALAR, JSONISH))),
).map(lambda t: {**t[0], t[1]: t[2][0]} if t[2] is not None else t[0])  # at most one field spoilt
CONFIG_DICTS = st.one_of(
    MOSTLY_GOOD,
    st.fixed_dictionaries({"command": COMMAND},
                          optional={name: st.one_of(VALUES[name], JSONISH) for name in SERVER_FIELDS
                                    if name != "command"}),
    st.fixed_dictionaries({}, optional={**{name: VALUES[name] for name in SERVER_FIELDS},
                                        "zzz": JSONISH, "": JSONISH}),
    JSONISH,
)


def assert_runnable(config: ServerConfig, sid: str) -> None:
    """A config that validated can be exec'd as it is: the promise `check` makes."""
    if config.env_file is not None:  # read at each start: a missing file refuses the start
        try:
            config.read_env_file(sid)
        except ConfigError as err:
            assert err.field == "env_file"
        config = dataclasses.replace(config, env_file=None)
    spawn = config.to_spawn(sid)
    argv = spawn.argv()
    assert argv and all(isinstance(a, str) and "\0" not in a for a in argv)
    for word in argv:
        os.fsencode(word)
    for key, value in (config.env or {}).items():
        assert key and "=" not in key and "\0" not in key + value
        os.fsencode(key), os.fsencode(value)
    for name in DURATIONS:
        value = getattr(config, name)
        assert math.isfinite(value) and 0 <= value <= 366 * 86400, (name, value)
    assert 0 <= config.log_backups <= 100 and 1 <= config.log_max_bytes
    if isinstance(config.health, HealthCheck):
        assert math.isfinite(config.health.timeout) and config.health.timeout > 0
    # what to_dict gives back validates to the same config
    again = ServerConfig.from_dict(config.to_dict())
    assert again == config, [(name, getattr(config, name), getattr(again, name)) for name in SERVER_FIELDS
                             if getattr(config, name) != getattr(again, name)]


# ------------------------------------------------------------------ ServerConfig.from_dict


@PROPERTY
@given(data=CONFIG_DICTS, sid=st.sampled_from([None, "web"]))
@example(data={"command": "x", "stop_timeout": math.nan}, sid="web")
@example(data={"command": ["x"], "env": {"A": 10 ** 400}}, sid="web")
@example(data={"command": "echo 'a", "shell": True}, sid="web")
def test_server_config_from_dict_raises_only_config_error(data, sid):
    try:
        config = ServerConfig.from_dict(data, sid)
    except ConfigError as err:
        assert str(err).startswith("server ") and isinstance(err.field, str) and err.field
        if sid is not None:
            assert err.server_id == sid
        field = err.field.split(".")[0]
        event(f"refused: {field if field in SERVER_FIELDS else 'other'}")
        return
    event("accepted")
    assert_runnable(config, sid or "web")


# ------------------------------------------------------------------ load_config


def toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a TOML basic string (a lone surrogate is not: an error)


TOML_SCALAR = st.one_of(
    INTS.filter(lambda n: abs(n) < 2 ** 63).map(str),
    st.sampled_from(["nan", "inf", "-inf", "+inf", "+nan", "1e999", "0x10", "true", "false", "1.5",
                     "1979-05-27T07:32:00Z", "'literal'", "\"\"\"multi\nline\"\"\"", "1_000"]),
    TEXT.map(toml_string),
    TEXT.map(lambda s: f"'{s}'"),
)
TOML_VALUE = st.one_of(
    TOML_SCALAR,
    st.lists(TOML_SCALAR, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
    st.lists(st.tuples(st.sampled_from(["http", "tcp", "command", "timeout", "url", "events", "x"]),
                       TOML_SCALAR), max_size=2)
      .map(lambda kvs: "{" + ", ".join(f"{k} = {v}" for k, v in kvs) + "}"),
)
KEYS = st.sampled_from([*SERVER_FIELDS, *SETTINGS_KEYS, "zzz", "'quoted key'", "a.b"])
HEADERS = st.sampled_from(["[procsync]", "[servers.web]", "[servers.api]", "[servers]", "[servers.'bad id']",
                           "[servers.\"a\\u0000\"]", "[other]", "[[servers]]", "[servers.web.health]"])
TOML_LINE = st.one_of(
    HEADERS,
    st.tuples(KEYS, TOML_VALUE).map(lambda kv: f"{kv[0]} = {kv[1]}"),
    st.text(max_size=12),
)
TOML_TEXT = st.lists(TOML_LINE, max_size=12).map("\n".join)


def toml_of(value: object) -> str:
    """`value` written as a TOML value (None, which TOML lacks, as a bare word: an error)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value == math.inf else "-inf" if value == -math.inf
                                             else repr(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_of(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_of(v)}" for k, v in value.items()) + "}"
    return "null"


SERVER_TABLE = st.tuples(st.one_of(st.sampled_from(["web", "api", "w.1"]), TEXT), MOSTLY_GOOD).map(
    lambda t: f"[servers.{json.dumps(t[0])}]\n" + "".join(
        f"{k} = {toml_of(v)}\n" for k, v in t[1].items() if k != "cwd"))
SETTINGS_TABLE = st.fixed_dictionaries({}, optional={
    "interval": st.one_of(SECONDS, FLOATS), "history": st.one_of(SECONDS, FLOATS), "port": st.one_of(PORT, INTS), "host": st.one_of(st.just("127.0.0.1"), TEXT),
    "url_prefix": st.one_of(st.sampled_from(["/", "/admin", "/a/b"]), TEXT), "auth_token": st.one_of(NICE_TEXT, TEXT),
    "state_file": st.one_of(st.just("state.json"), TEXT),
}).map(lambda d: "[procsync]\n" + "".join(f"{k} = {toml_of(v)}\n" for k, v in d.items()))
TOML_DOC = st.tuples(st.one_of(st.just(""), SETTINGS_TABLE), st.lists(SERVER_TABLE, max_size=3),
                     st.one_of(st.just(""), TOML_LINE)).map(lambda t: t[0] + "".join(t[1]) + t[2])


@PROPERTY
@given(text=st.one_of(TOML_DOC, TOML_TEXT))
@example(text="[procsync]\ninterval = inf\n")
@example(text="[procsync]\nhistory = -1\n")
@example(text="[servers.web]\ncommand = \"a\\u0000\"\n")
@example(text="[procsync]\nurl_prefix = \"/a b\"\n")
@example(text="[servers.web]\ncommand = 'x'\nlog_backups = 1000000000\n")
def test_load_config_raises_only_config_file_error(text):
    with folder() as where:
        path = where / "procsync.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            loaded = load_config(path)
        except ConfigFileError as err:
            assert str(err).startswith(str(path)) and err.path == str(path)
            event("refused")
            return
        event(f"accepted, {len(loaded.registry)} server(s)")
        for sid, config in loaded.registry.items():
            check_id(sid)
            assert_runnable(config, sid)
        settings_ = loaded.settings
        assert math.isfinite(settings_.interval) and settings_.interval > 0
        assert math.isfinite(settings_.history) and settings_.history >= 0
        assert 1 <= settings_.port <= 65535
        prefix = settings_.url_prefix
        assert prefix == "" or (prefix.startswith("/") and quote(prefix) == prefix and "//" not in prefix)


PROCFILE_LINE = st.one_of(
    st.tuples(st.one_of(st.from_regex(r"[a-z]{1,8}", fullmatch=True), TEXT), TEXT)
      .map(lambda nc: f"{nc[0]}: {nc[1]}"),
    st.text(max_size=12),
)


@PROPERTY
@given(lines=st.lists(PROCFILE_LINE, max_size=6), dotenv=st.one_of(st.none(), st.text(max_size=40)))
@example(lines=["web: echo a\0b"], dotenv=None)
@example(lines=["web: echo ok"], dotenv="PORT=99999\n")
def test_load_procfile_raises_only_config_file_error(lines, dotenv):
    with folder() as where:
        path = where / "Procfile"
        path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
        if dotenv is not None:
            (where / ".env").write_text(dotenv, encoding="utf-8", errors="surrogatepass")
        try:
            loaded = load_config(path)
        except ConfigFileError:
            return
        for sid, config in loaded.registry.items():
            check_id(sid)
            assert_runnable(config, sid)


# ------------------------------------------------------------------ state files

SERVER_ID = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,15}", fullmatch=True)
TIMES = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))
VALID_ENTRY = st.fixed_dictionaries({
    "pid": st.integers(1, 4_194_304),
    "command": st.text(max_size=20),
    "cwd": st.one_of(st.none(), st.text(max_size=10)),
    "startTime": TIMES.map(lambda t: t.isoformat().replace("+00:00", "Z")),
    "status": st.sampled_from(["running", "stopped", "crashed", "exited", "starting", "backoff", "fatal"]),
    "ports": st.lists(st.integers(1, 65535), max_size=3),
}, optional={
    "createTime": st.floats(0, 4e9),
    "restarts": st.integers(0, 100),
    "exitCode": st.one_of(st.none(), st.integers(-64, 255)),
})


def asides(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".corrupt-*"))


def same_entry(stored, entry: dict) -> bool:
    return (stored.pid == entry["pid"] and list(stored.ports) == entry["ports"]
            and stored.status == entry["status"] and stored.cwd == entry["cwd"]
            and stored.start_time == datetime.fromisoformat(entry["startTime"]))


STATE_BYTES = st.one_of(
    st.binary(max_size=200),
    JSONISH.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=60).map(str.encode),
    st.dictionaries(SERVER_ID, VALID_ENTRY, max_size=3).flatmap(
        lambda doc: st.integers(0, 400).map(
            lambda cut: json.dumps({k: {"id": k, **v} for k, v in doc.items()}).encode()[:cut])),
)


@PROPERTY
@given(raw=STATE_BYTES)
@example(raw=b"[" * 100_000)
@example(raw=b'{"web": ' + b"[" * 100_000)
@example(raw=b"\xff\xfe{}")
def test_json_state_file_never_raises_and_keeps_bad_content_aside(raw):
    with folder() as where:
        path = where / "state.json"
        path.write_bytes(raw)
        entries = ProcessStateStore(path).load()
        assert isinstance(entries, dict)
        moved = asides(path)
        if moved:  # bad content: kept byte for byte, and the file rewritten with the valid part
            assert len(moved) == 1 and moved[0].read_bytes() == raw
            assert set(json.loads(path.read_bytes())) == set(entries)
        else:
            assert path.read_bytes() == raw  # nothing was wrong: nothing rewritten
        again = ProcessStateStore(path).load()  # a repaired file reads clean
        assert again.keys() == entries.keys() and asides(path) == moved


@PROPERTY
@given(valid=st.dictionaries(SERVER_ID, VALID_ENTRY, max_size=3),
       garbage=st.dictionaries(st.text(max_size=8), JSONISH, max_size=3))
@example(valid={"web": {"pid": 1, "command": "x", "cwd": None, "startTime": "2025-11-04T12:00:00.000Z",
                        "status": "running", "ports": [3000]}},
         garbage={"bad": {"id": "bad", "pid": "12"}})
def test_json_state_file_keeps_every_valid_entry(valid, garbage):
    doc = {**{k: v for k, v in garbage.items() if k not in valid}, **{k: {"id": k, **v} for k, v in valid.items()}}
    raw = json.dumps(doc).encode()
    with folder() as where:
        path = where / "state.json"
        path.write_bytes(raw)
        entries = ProcessStateStore(path).load()
        for key in valid:
            assert key in entries and same_entry(entries[key], doc[key])
        if set(entries) != set(doc):
            assert [p.read_bytes() for p in asides(path)] == [raw]


@PROPERTY
@given(raw=st.one_of(st.binary(min_size=2, max_size=600),
                     JSONISH.map(lambda v: json.dumps(v).encode()).filter(lambda b: len(b) >= 2)))
@example(raw=b"SQLite format 3\0" + b"\0" * 84)
def test_sqlite_state_file_never_raises_and_moves_a_non_database_aside(raw):
    # (a 1-byte file is treated by SQLite itself as an empty database, so sizes start at 2)
    with folder() as where:
        path = where / "state.db"
        path.write_bytes(raw)
        store = SQLiteStateStore(path)
        try:
            assert store.load() == {}
        finally:
            store.close()
        moved = asides(path)
        assert [p.read_bytes() for p in moved] == [raw]


SQL_VALUE = st.one_of(st.none(), st.integers(-2 ** 63, 2 ** 63 - 1), st.floats(), st.text(max_size=10),
                      st.binary(max_size=6), JSONISH.map(json.dumps), st.just("[" * 10_000))


@PROPERTY
@given(valid=st.dictionaries(SERVER_ID, VALID_ENTRY, min_size=1, max_size=2),
       rows=st.lists(st.tuples(st.text(min_size=1, max_size=6), *[SQL_VALUE] * 13), max_size=3))
def test_sqlite_state_file_keeps_valid_rows_and_moves_bad_ones_aside(valid, rows):
    from procsync.store.base import StoredProcessInfo

    with folder() as where:
        path = where / "state.db"
        store = SQLiteStateStore(path)
        try:
            for key, entry in valid.items():
                info = StoredProcessInfo.from_state_dict({"id": key, **entry}, key)
                store.update_process(key, lambda old, info=info: info)
            conn = sqlite3.connect(path)
            try:
                for row in rows:
                    if row[0] in valid:
                        continue
                    try:
                        conn.execute("INSERT INTO processes VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
                    except sqlite3.IntegrityError:
                        pass  # a NOT NULL or duplicate id: SQLite itself refuses it
                conn.commit()
            finally:
                conn.close()
            entries = store.load()
            for key, entry in valid.items():
                assert key in entries and same_entry(entries[key], {"id": key, **entry})
            assert store.load() == entries  # bad rows were removed once, not on every read
        finally:
            store.close()


# ------------------------------------------------------------------ ids


@PROPERTY
@given(candidate=st.one_of(TEXT, SERVER_ID, JSONISH, st.sampled_from([".", "..", "...", "a\n", "a/b", "-", "_",
                                                                     "a" * 64, "a" * 65, "web-1.2_x"])))
def test_check_id_raises_only_config_error_and_accepted_ids_survive_url_paths(candidate):
    try:
        accepted = check_id(candidate)
    except ConfigError as err:
        assert err.field == "id"
        return
    assert accepted is candidate
    assert 1 <= len(accepted) <= 64 and accepted.isascii()
    # as a path segment it needs no escaping, and no client or proxy rewrites it
    assert quote(accepted, safe="") == accepted
    base = "http://127.0.0.1:8420/procsync/api/servers/"
    url = urljoin(base, f"{quote(accepted, safe='')}/start")
    path = urlsplit(url).path
    assert path == f"/procsync/api/servers/{accepted}/start"
    assert unquote(path.split("/")[-2]) == accepted
    assert ServerConfig(command="x").for_id(accepted).name == accepted


def test_property_settings_are_bounded():
    assert PROPERTY.max_examples == EXAMPLES and PROPERTY.deadline is None and PROPERTY.derandomize


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
