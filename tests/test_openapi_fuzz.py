"""The OpenAPI document of the JSON API, checked against the routes and used to fuzz the API.

schemathesis generates requests from ``<prefix>/api/openapi.json`` (valid and
invalid ones) against an app with a real orchestrator and registered servers:
no answer may be a 5xx (except a start that failed because the managed
process did: 500 `start_failed`, as documented), every error is JSON ``{"error", "message"}``, and
every answer conforms to the document. Bounded for CI (about 350 cases, 20 s);
set PROCSYNC_FUZZ_EXAMPLES (default 12: examples per operation in the fuzzing
phase; the examples and coverage phases add theirs) for a longer run, and
PROCSYNC_FUZZ_SEED for another seed.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter

import pytest
from flask import Flask
from helpers import python_cmd

from procsync import ServerOrchestrator
from procsync.flask_ext import ProcSync
from procsync.flask_ext.openapi import openapi_document

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402  (schemathesis brings hypothesis)
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402  (after the importorskip)

P = "/procsync/api"
EXAMPLES = int(os.environ.get("PROCSYNC_FUZZ_EXAMPLES", "12"))
SEED = int(os.environ.get("PROCSYNC_FUZZ_SEED", "20251111"))
SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"
SHORT = "print('short and done', flush=True)\n"
STREAM_EVENTS = 2
# 500s that report a managed server's own failure ("short" may exit before it is marked
# ready), as the contract says; any other 5xx is an API bug.
MANAGED_FAILURES = {"start_failed", "start_timeout", "stop_failed"}
STREAMS = r"/(events|servers/\{server_id\}/logs/stream)$"

CASES: Counter[str] = Counter()  # operation -> cases run (reported at the end of the module)


def make_app(tmp_path, **config):
    orch = ServerOrchestrator(tmp_path / "state.json", interval=0.5, log_dir=tmp_path / "logs")
    orch.register_servers({
        "sleeper": {"command": python_cmd(SLEEPER), "stop_timeout": 2},
        "short": {"command": python_cmd(SHORT), "stop_timeout": 2},
    })
    app = Flask("fuzzed")
    app.config.update(PROCSYNC_EVENTS_HEARTBEAT=0.2, **config)
    app.config["PROCSYNC_RELOAD"] = lambda: {"sleeper": "unchanged", "short": "unchanged"}
    ProcSync(app, orch)
    inner = app.wsgi_app

    def from_loopback(environ, start_response):  # werkzeug's bare Client sets no REMOTE_ADDR
        environ.setdefault("REMOTE_ADDR", "127.0.0.1")
        return inner(environ, start_response)

    app.wsgi_app = from_loopback  # type: ignore[method-assign]
    return app, orch


@pytest.fixture
def fuzz_app(tmp_path):
    app, orch = make_app(tmp_path)
    try:
        yield app
    finally:
        orch.shutdown(stop_servers=True)  # stops whatever the fuzzer started


# -- the document matches the routes ----------------------------------------------------


def api_rules(app):
    """`{path in OpenAPI form relative to the API root: methods}` of every registered /api rule."""
    out: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(P + "/"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule[len(P):])
        out.setdefault(path, set()).update(
            m.lower() for m in rule.methods or () if m not in ("HEAD", "OPTIONS"))
    return out


def test_document_covers_every_api_route_and_nothing_else(tmp_path):
    app, orch = make_app(tmp_path)
    try:
        doc = app.test_client().get(f"{P}/openapi.json").get_json()
    finally:
        orch.shutdown(stop_servers=True)
    assert doc["openapi"].startswith("3.1")
    assert doc["servers"] == [{"url": P}]
    documented = {path: {m for m in ops if m in ("get", "post", "put", "patch", "delete")}
                  for path, ops in doc["paths"].items()}
    assert documented == api_rules(app)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "200" in op["responses"], (method, path)
            for status, answer in op["responses"].items():
                if status >= "400":
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)


def test_document_follows_the_prefix_and_token(tmp_path):
    app, orch = make_app(tmp_path, PROCSYNC_URL_PREFIX="/ops/ps", PROCSYNC_AUTH_TOKEN="tok")
    try:
        client = app.test_client()
        assert client.get("/ops/ps/api/openapi.json").status_code == 401
        doc = client.get("/ops/ps/api/openapi.json",
                         headers={"Authorization": "Bearer tok"}).get_json()
    finally:
        orch.shutdown(stop_servers=True)
    assert doc["servers"] == [{"url": "/ops/ps/api"}]
    assert doc["security"] == [{"bearer": []}]
    assert "sleeper" in doc["paths"]["/servers/{server_id}"]["get"]["parameters"][0]["schema"]["examples"]


@pytest.mark.parametrize("token", [False, True])
def test_document_is_valid_openapi_3_1(token):
    definitions = pytest.importorskip("schemathesis.specs.openapi.definitions")
    doc = openapi_document("/procsync/api", token=token, server_ids=["web", "__proto__"])
    definitions.OPENAPI_31_VALIDATOR.validate(doc)  # the 3.1 meta-schema schemathesis ships


def test_the_app_serves_the_fuzzed_document(fuzz_app):
    served = fuzz_app.test_client().get(f"{P}/openapi.json").get_json()
    assert served == DOCUMENT


# -- fuzzing ----------------------------------------------------------------------------

# Loaded at import (schemathesis parametrizes at collection), called against a fresh app per
# operation (fuzz_app). The app serves this very document: see the test above.
DOCUMENT = openapi_document(P, token=False, server_ids=["sleeper", "short"])
schema = schemathesis.openapi.from_dict(DOCUMENT, config=SchemathesisConfig.from_dict({
    "seed": SEED,
    "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
    "phases": {"stateful": {"enabled": False}},
    "request-timeout": 0.5,
    "max-stream-events": STREAM_EVENTS,
}))


def check_error_shape(response) -> None:
    """Every 4xx/5xx is JSON with string "error" and "message"; never a traceback."""
    if response.status_code < 400:
        return
    assert response.headers.get("content-type", [""])[0].startswith("application/json"), (
        response.status_code, response.text[:200])
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    assert "Traceback" not in response.text


# One app per operation, shared by that operation's examples (on purpose: state carries over).
FUZZ_SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                              HealthCheck.too_slow])


@schema.exclude(path_regex=STREAMS).parametrize()
@FUZZ_SETTINGS
def test_api_answers_conform_and_never_fail(case, fuzz_app):
    CASES[case.operation.label] += 1
    response = case.call_and_validate(app=fuzz_app, excluded_checks=[not_a_server_error])
    check_error_shape(response)
    if response.status_code >= 500:  # only the managed process may fail, never the API
        assert case.operation.method.upper() == "POST", response.text[:300]
        assert response.json()["error"] in MANAGED_FAILURES, response.text[:300]


@schema.include(path_regex=STREAMS).parametrize()
@FUZZ_SETTINGS
def test_event_streams_answer_a_stream_or_a_json_error(case, fuzz_app):
    """SSE routes never end: schemathesis reads at most STREAM_EVENTS events or 0.5 s of one."""
    CASES[case.operation.label] += 1
    response = case.call_and_validate(app=fuzz_app)
    assert response.status_code < 500, (response.status_code, response.text[:300])
    check_error_shape(response)
    if response.status_code == 200 and response.request.method == "GET":  # not Flask's OPTIONS
        assert response.headers["content-type"][0].startswith("text/event-stream")
        assert response.text.startswith("retry: ")


@pytest.fixture(scope="module", autouse=True)
def fuzz_summary(pytestconfig):
    """Report how many cases ran and how long it took (for docs/reliability.md)."""
    started = time.monotonic()
    yield
    reporter = pytestconfig.pluginmanager.getplugin("terminalreporter")
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    if reporter is None or capture is None or not CASES:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"\nOpenAPI fuzz: {sum(CASES.values())} cases over {len(CASES)} "
                            f"operations in {time.monotonic() - started:.1f} s "
                            f"(PROCSYNC_FUZZ_EXAMPLES={EXAMPLES}, seed {SEED})")
