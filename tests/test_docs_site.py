"""The documentation site's references cannot drift from the code.

- every name of `procsync.__all__` and `procsync.flask_ext.__all__` is
  documented by autodoc in docs/api.md and has a docstring;
- every field of the config records carries its reference entry, and every
  example in it loads through the real config reader and sets that key;
- every signal's documented payload keys are the keys real runs send;
- the HTTP reference lists every route of the OpenAPI document.

The site itself is built with warnings as errors by .ci/run.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import threading
from collections import defaultdict
from pathlib import Path

import pytest
from helpers import PY, python_cmd, wait_until

import procsync
import procsync.django_ext
import procsync.flask_ext
from procsync import ServerOrchestrator, signals
from procsync.config import load_config
from procsync.config.fielddoc import field_docs
from procsync.config.files import Settings, Webhook
from procsync.config.records import HealthCheck, ServerConfig
from procsync.config.toml import SETTINGS_KEYS, WEBHOOK_KEYS

DOCS = Path(__file__).resolve().parent.parent / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
import procsync_reference  # noqa: E402  (lives beside the Sphinx extension)

AUTODOC = re.compile(r"^\.\. auto(?:class|function|data|exception):: ([\w.]+)$", re.M)


# -- the Python API ---------------------------------------------------------------------


def exported_names() -> set[str]:
    return ({f"procsync.{n}" for n in procsync.__all__}
            | {f"procsync.flask_ext.{n}" for n in procsync.flask_ext.__all__}
            | {f"procsync.django_ext.{n}" for n in procsync.django_ext.__all__})


def documented_names(text: str | None = None) -> set[str]:
    """The names the autodoc directives of docs/api.md (or of `text`) document."""
    return set(AUTODOC.findall((DOCS / "api.md").read_text() if text is None else text))


@pytest.mark.parametrize("module", [procsync, procsync.flask_ext, procsync.django_ext],
                         ids=lambda m: m.__name__)
def test_every_exported_name_is_documented_with_a_docstring(module):
    exported = {f"{module.__name__}.{name}" for name in module.__all__}
    missing = exported - documented_names()
    assert not missing, f"add these to docs/api.md: {sorted(missing)}"
    for name in module.__all__:
        obj = getattr(module, name)
        if isinstance(obj, str):  # __version__: documented by the page's text
            continue
        assert inspect.getdoc(obj), f"{module.__name__}.{name} has no docstring"


def test_the_api_page_documents_only_exported_names():
    assert documented_names() == exported_names()


def test_a_name_missing_from_the_page_is_noticed():
    text = (DOCS / "api.md").read_text()
    cut = text.replace(".. autoclass:: procsync.ServerOrchestrator\n", "")
    assert cut != text
    assert exported_names() - documented_names(cut) == {"procsync.ServerOrchestrator"}


# -- the configuration reference --------------------------------------------------------


def load(tmp_path, text: str, monkeypatch):
    """Load `text` as a procsync.toml in tmp_path (where a `backend` folder exists)."""
    monkeypatch.setenv("PROCSYNC_TOKEN", "a-token")
    monkeypatch.setenv("HOOK_SECRET", "a-secret")
    (tmp_path / "backend").mkdir(exist_ok=True)
    path = tmp_path / "procsync.toml"
    path.write_text(text)
    return load_config(path)


def example_key(example: str) -> str:
    return example.split("=", 1)[0].strip()


def test_the_records_document_exactly_the_keys_the_reader_accepts():
    assert [d.name for d in field_docs(Settings)] == list(SETTINGS_KEYS)
    assert [d.name for d in field_docs(Webhook)] == list(WEBHOOK_KEYS)
    assert [d.name for d in field_docs(ServerConfig)] == [f.name for f in dataclasses.fields(ServerConfig)]


def test_an_undocumented_field_is_refused():
    @dataclasses.dataclass
    class Bare:
        plain: int = 1

    with pytest.raises(ValueError, match=r"Bare\.plain has no reference entry"):
        field_docs(Bare)


DEPENDENCIES = '[servers.migrate]\ncommand = "true"\nkind = "job"\n[servers.db]\ncommand = "true"\n'


@pytest.mark.parametrize("doc", field_docs(ServerConfig), ids=lambda d: d.name)
def test_every_server_example_loads_and_sets_its_key(tmp_path, monkeypatch, doc):
    assert doc.doc and doc.toml and doc.example
    assert example_key(doc.example) == doc.name
    base = "" if doc.name == "command" else 'command = "true"\n'
    loaded = load(tmp_path, f"[servers.x]\n{base}{doc.example}\n{DEPENDENCIES}", monkeypatch)
    value = getattr(loaded.registry["x"], doc.name)
    default = next(f.default for f in dataclasses.fields(ServerConfig) if f.name == doc.name)
    assert value != default, f"the example of {doc.name} leaves it at its default"


@pytest.mark.parametrize("doc", field_docs(HealthCheck), ids=lambda d: d.name)
def test_every_health_example_loads_and_sets_its_key(tmp_path, monkeypatch, doc):
    assert example_key(doc.example) == "health"
    loaded = load(tmp_path, f'[servers.x]\ncommand = "true"\n{doc.example}\n', monkeypatch)
    health = loaded.registry["x"].health
    default = next(f.default for f in dataclasses.fields(HealthCheck) if f.name == doc.name)
    assert getattr(health, doc.name) != default


@pytest.mark.parametrize("doc", [*field_docs(Settings), *field_docs(Webhook)],
                         ids=lambda d: d.name)
def test_every_settings_example_loads(tmp_path, monkeypatch, doc):
    assert doc.doc and doc.toml and doc.example
    loaded = load(tmp_path, f"[procsync]\n{doc.example}\n", monkeypatch)
    defaults = Settings.defaults(tmp_path)
    key = example_key(doc.example)
    assert getattr(loaded.settings, key) != getattr(defaults, key), doc.example
    if doc in field_docs(Webhook) and doc.name != "url":
        assert getattr(loaded.settings.webhooks[0], doc.name) is not None


def test_the_generated_tables_hold_every_field():
    for which, record in procsync_reference.RECORDS.items():
        text = procsync_reference.config_table(which)
        anchors = re.findall(rf"^\(config-{which}-(\w+)\)=$", text, re.M)
        assert anchors == [d.name for d in field_docs(record)]
        for doc in field_docs(record):
            assert f"Example: `{doc.example}`" in text or f"Example: `` {doc.example} ``" in text
    assert "**`command`** · string or list of strings · required" in (
        procsync_reference.config_table("server"))


def test_the_config_page_uses_the_generated_tables():
    text = (DOCS / "config.md").read_text()
    for which in procsync_reference.RECORDS:
        assert f"```{{procsync-config}} {which}\n```" in text
    assert "| `stop_timeout` |" not in text  # no hand-kept copy beside the generated one


# -- signals ----------------------------------------------------------------------------


def test_every_signal_has_a_reference_entry():
    assert list(signals.DOCS) == list(signals.ALL)
    table = procsync_reference.signals_table()
    for name, doc in signals.DOCS.items():
        assert f"| `{name}` | {doc.sender} |" in table
        assert all(f"`{key}`" in table for key in doc.keys)


SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"
HOG = "import time\nblock = bytearray(64 * 1024 * 1024)\nprint('up', flush=True)\ntime.sleep(60)\n"


def test_real_payloads_carry_exactly_the_documented_keys(tmp_path):
    seen: dict[str, list[set[str]]] = defaultdict(list)
    lock = threading.Lock()

    def recorder(name):
        def receive(sender, **payload):
            with lock:
                seen[name].append(set(payload))
        return receive

    orch = ServerOrchestrator(tmp_path / "state.json", interval=0.2, log_dir=tmp_path / "logs")
    try:
        for name in signals.ALL:
            orch.on(name, recorder(name))
        orch.register_servers({
            "web": {"command": python_cmd(SLEEPER), "reload_signal": "HUP", "stop_timeout": 2},
            "crasher": {"command": [PY, "-c", "raise SystemExit(3)"], "autorestart": "on-failure",
                        "max_restarts": 1, "backoff_initial": 0.05},
            "broken": {"command": [str(tmp_path / "no-such-program")]},
            "job": {"command": [PY, "-c", "raise SystemExit(1)"], "kind": "job"},
            "after": {"command": python_cmd(SLEEPER), "depends_on": {"job": "completed_successfully"}},
            "hog": {"command": python_cmd(HOG), "memory_limit": "16MiB", "memory_action": "alert",
                    "stop_timeout": 2},
        })
        orch.initialize()
        assert orch.start_server("web").success
        assert orch.reload_server("web").success
        assert orch.stop_server("web").success
        orch.start_server("crasher")
        orch.start_server("broken")
        orch.start_server("after")
        assert orch.start_server("hog").success
        wanted = set(signals.ALL) - {"process_died", "orphan_killed"}  # need another instance / an orphan
        try:
            wait_until(lambda: wanted <= set(seen), 20, "every signal")
        except AssertionError:
            raise AssertionError(f"signals never sent: {sorted(wanted - set(seen))}") from None
    finally:
        orch.shutdown(stop_servers=True)
    with lock:
        observed = dict(seen)
    for name, payloads in observed.items():
        doc = signals.DOCS[name]
        for keys in payloads:
            assert set(doc.keys) <= keys <= set(doc.keys) | set(doc.optional), (name, keys, doc)


# -- the HTTP API -----------------------------------------------------------------------


def test_the_http_reference_lists_every_route():
    text = procsync_reference.http_api_markdown()
    doc = procsync_reference.document()
    for path, ops in doc["paths"].items():
        for method in ops:
            assert f"### {method.upper()} {path}\n" in text
    for name in doc["components"]["schemas"]:
        assert f"(schema-{name.lower()})=\n### {name}\n" in text
