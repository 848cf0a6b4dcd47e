"""GET <prefix>/api/metrics: the Prometheus exposition of real servers, parsed with prometheus_client."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
from flask import Flask
from helpers import PY, free_port, listener_code, python_cmd, wait_until
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from procsync.flask_ext import ProcSync
from procsync.flask_ext.events import hub_for
from procsync.flask_ext.prometheus import HEALTH_STATES, NotInstalled, render, webhook_label
from procsync.timing import DurationMeter

URL = "/procsync/api/metrics"
SLEEPER = "import time\ntime.sleep(60)\n"
PER_SERVER = {
    "procsync_server_info": "gauge",
    "procsync_server_up": "gauge",
    "procsync_server_restarts": "counter",
    "procsync_server_cpu_percent": "gauge",
    "procsync_server_memory_rss_bytes": "gauge",
    "procsync_server_health": "gauge",
    "procsync_server_uptime_seconds": "gauge",
    "procsync_server_last_exit_code": "gauge",
}
OWN = {
    "procsync_monitor_tick_seconds": "summary",
    "procsync_monitor_tick_last_seconds": "gauge",
    "procsync_monitor_tick_longest_seconds": "gauge",
    "procsync_store_write_seconds": "summary",
    "procsync_store_write_last_seconds": "gauge",
    "procsync_store_write_longest_seconds": "gauge",
    "procsync_sse_subscribers": "gauge",
    "procsync_sse_subscribers_dropped": "counter",
    "procsync_webhook_dropped": "counter",
    "procsync_webhook_failed": "counter",
    "procsync_leader": "gauge",
}


def crash_once_code(flag: str) -> str:
    """A child that exits 1 the first time (leaving `flag`), and sleeps on every later run."""
    return (
        "import pathlib, sys, time\n"
        f"flag = pathlib.Path({flag!r})\n"
        "if not flag.exists():\n"
        "    flag.write_text('crashed once')\n"
        "    sys.exit(1)\n"
        "time.sleep(60)\n"
    )


def parse(text: str) -> dict:
    """name -> metric family, every family parsed by prometheus_client's own parser."""
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families, text
    return families


def values(family, sample: str | None = None) -> dict[tuple, float]:
    """(label items, sorted) -> value of the family's samples named `sample` (default: its name)."""
    name = sample or family.name
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples if s.name == name}


def scrape(client, **kw) -> str:
    resp = client.get(URL, **kw)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "text/plain", resp.content_type
    return resp.get_data(as_text=True)


@pytest.fixture
def servers(orch, tmp_path):
    """web (listening, running), flaky (crashed once, restarted, running), sleeper (started, stopped)."""
    port = free_port()
    orch.register_servers({
        "web": {"name": "Web front", "command": python_cmd(listener_code(port)), "ports": [port],
                "stop_timeout": 2},
        "flaky": {"command": python_cmd(crash_once_code(str(tmp_path / "crashed"))),
                  "autorestart": "on-failure", "backoff_initial": 0.05, "stable_after": 600,
                  "stop_timeout": 2},
        "sleeper": {"command": python_cmd(SLEEPER), "stop_timeout": 2},
    })
    for sid in ("web", "flaky", "sleeper"):
        orch.start_server(sid)
    assert orch.stop_server("sleeper").success

    def settled() -> bool:
        by_id = {s.id: s for s in orch.get_server_status()}
        return (by_id["flaky"].restarts == 1 and by_id["flaky"].status == "running"
                and all(by_id[i].health == "healthy" and by_id[i].memory_rss > 0
                        for i in ("web", "flaky"))
                and by_id["sleeper"].status == "stopped")

    wait_until(settled, 20, "web and flaky running and healthy, flaky restarted once")
    wait_until(lambda: orch.monitor.tick_time.snapshot().count > 0, 10, "a monitor tick")
    return orch


@pytest.fixture
def client(orch):
    app = Flask("prometheus-test")
    ProcSync(app, orch)
    return app.test_client()


def test_scrape_matches_the_orchestrator(servers, client):
    orch = servers
    ticks_before = orch.monitor.tick_time.snapshot().count
    writes_before = orch.store.write_time.snapshot().count
    families = parse(scrape(client))
    by_id = {s.id: s for s in orch.get_server_status()}
    ids = set(by_id)
    assert ids == {"web", "flaky", "sleeper"}

    for name, kind in {**PER_SERVER, **OWN}.items():
        assert name in families, f"{name} missing from the scrape"
        assert families[name].type == kind, (name, families[name].type)
        assert families[name].documentation.strip(), f"{name} has no HELP text"
    assert {n for n in families if n.startswith("procsync_")} == set(PER_SERVER) | set(OWN)

    def per_server(name: str, sample: str | None = None) -> dict[str, float]:
        got = values(families[name], sample)
        assert all(dict(k).keys() == {"server"} for k in got), got
        return {dict(k)["server"]: v for k, v in got.items()}

    info = values(families["procsync_server_info"])
    assert {dict(k)["server"]: dict(k)["name"] for k in info} == {i: by_id[i].name for i in ids}
    assert dict(next(k for k in info if dict(k)["server"] == "web"))["name"] == "Web front"

    assert per_server("procsync_server_up") == {"web": 1, "flaky": 1, "sleeper": 0}
    restarts = per_server("procsync_server_restarts", "procsync_server_restarts_total")
    assert restarts == {i: by_id[i].restarts for i in ids} == {"web": 0, "flaky": 1, "sleeper": 0}

    health = values(families["procsync_server_health"])
    for sid in ids:
        states = {dict(k)["state"]: v for k, v in health.items() if dict(k)["server"] == sid}
        assert set(states) == set(HEALTH_STATES), states
        assert sum(states.values()) == 1, (sid, states)
        assert states[by_id[sid].health] == 1, (sid, states, by_id[sid].health)
    assert by_id["web"].health == by_id["flaky"].health == "healthy"

    uptime = per_server("procsync_server_uptime_seconds")
    assert uptime["sleeper"] == 0
    for sid in ("web", "flaky"):
        assert 0 < uptime[sid] <= by_id[sid].uptime, (sid, uptime[sid], by_id[sid].uptime)

    assert per_server("procsync_server_cpu_percent")["sleeper"] == 0
    rss = per_server("procsync_server_memory_rss_bytes")
    assert rss["sleeper"] == 0 and rss["web"] > 0 and rss["flaky"] > 0

    exit_codes = per_server("procsync_server_last_exit_code")
    assert exit_codes == {i: by_id[i].last_exit_code for i in ids
                          if by_id[i].last_exit_code is not None}
    # running (flaky was restarted after exit code 1): no code of an earlier run
    assert "flaky" not in exit_codes and "web" not in exit_codes and "sleeper" in exit_codes

    ticks = families["procsync_monitor_tick_seconds"]
    assert values(ticks, "procsync_monitor_tick_seconds_count")[()] >= ticks_before > 0
    assert values(ticks, "procsync_monitor_tick_seconds_sum")[()] > 0
    last = values(families["procsync_monitor_tick_last_seconds"])[()]
    assert 0 < last <= values(families["procsync_monitor_tick_longest_seconds"])[()]
    writes = families["procsync_store_write_seconds"]
    assert values(writes, "procsync_store_write_seconds_count")[()] >= writes_before > 0

    hub = hub_for(orch)
    assert values(families["procsync_sse_subscribers"])[()] == hub.subscriber_count
    assert values(families["procsync_sse_subscribers_dropped"],
                  "procsync_sse_subscribers_dropped_total")[()] == hub.dropped
    leader = values(families["procsync_leader"])
    assert leader == {(("instance", orch.instance_name),): 1 if orch.is_leader else 0}
    assert orch.is_leader  # the only instance on its state file


def test_webhook_urls_lose_their_secrets(orch, client):
    orch.add_webhook("https://bot:pa55word@127.0.0.1:9/services/T01/B02/abcdefghijklmnop0123?token=qs-secret",
                     events=["server_fatal"])
    text = scrape(client)
    for secret in ("pa55word", "bot", "abcdefghijklmnop0123", "qs-secret", "token"):
        assert secret not in text, secret
    dropped = values(parse(text)["procsync_webhook_dropped"], "procsync_webhook_dropped_total")
    assert dropped == {(("url", "https://127.0.0.1:9/services/T01/B02/***"),): 0}


def test_a_bearer_token_lets_the_scraper_in(orch):
    app = Flask("prometheus-token")
    app.config["PROCSYNC_AUTH_TOKEN"] = "scrape-t0ken"
    ProcSync(app, orch)
    client = app.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic scrape-t0ken"}):
        resp = client.get(URL, headers=headers)
        assert resp.status_code == 401, (headers, resp.status_code)
        assert resp.get_json()["error"] == "unauthorized"
    text = scrape(client, headers={"Authorization": "Bearer scrape-t0ken"})
    assert "procsync_leader" in parse(text)


def test_without_the_extra_the_route_answers_501(orch, client, monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # `import` now raises ImportError
    resp = client.get(URL)
    assert resp.status_code == 501, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["error"] == "not_installed"
    assert "pip install 'procsync[metrics]'" in body["message"]
    with pytest.raises(NotInstalled, match=r"procsync\[metrics\]"):
        render(orch, None)


def test_the_extension_imports_without_prometheus_client():
    code = ("import sys; sys.modules['prometheus_client'] = None\n"
            "import procsync.flask_ext\n"
            "from procsync.flask_ext import prometheus\n"
            "try:\n    prometheus.render(None, None)\n"
            "except prometheus.NotInstalled as err:\n    print('not installed:', err)\n")
    done = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "not installed:" in done.stdout and "procsync[metrics]" in done.stdout


def test_the_global_registry_is_left_alone(servers, client):
    before = {m.name for m in REGISTRY.collect()}
    assert "procsync_server_up" in parse(scrape(client))
    assert "procsync_server_up" in parse(scrape(client))  # twice: no duplicate registration
    after = {m.name for m in REGISTRY.collect()}
    assert after == before
    assert not [n for n in after if n.startswith("procsync")]


# -- the collector alone, on stand-ins ---------------------------------------------------


def fake_status(sid: str, **kw):
    fields = {"id": sid, "name": sid, "kind": "server", "group": None, "running": False,
              "restarts": 0, "cpu_percent": 0.0, "memory_rss": 0, "health": "unknown",
              "uptime": None, "last_exit_code": None}
    return SimpleNamespace(**{**fields, **kw})


def test_the_collector_on_stand_ins():
    """Odd inputs: a store without write_time, duplicate webhook URLs, an unexpected health value."""
    tick = DurationMeter()
    tick.observe(0.25)
    tick.observe(0.5)
    hooks = [SimpleNamespace(url="http://a.example/hook?k=1", dropped=2, failed=1),
             SimpleNamespace(url="http://user@a.example/hook?k=2", dropped=3)]  # no `failed`
    orch = SimpleNamespace(monitor=SimpleNamespace(tick_time=tick), store=object(), webhooks=hooks,
                           instance_name="box:42", is_leader=False)
    hub = SimpleNamespace(subscriber_count=2, dropped=5, server_status=lambda: [
        fake_status("a", running=True, uptime=None, health="starting-ish", cpu_percent=float("nan")),
        fake_status("b", last_exit_code=-9, health="dead")])
    body, content_type = render(orch, hub)
    assert content_type.startswith("text/plain")
    families = parse(body.decode())

    assert "procsync_store_write_seconds" not in families  # the store has no write_time
    ticks = families["procsync_monitor_tick_seconds"]
    assert values(ticks, "procsync_monitor_tick_seconds_count")[()] == 2
    assert values(ticks, "procsync_monitor_tick_seconds_sum")[()] == 0.75
    assert values(families["procsync_monitor_tick_last_seconds"])[()] == 0.5
    url = (("url", "http://a.example/hook"),)
    assert values(families["procsync_webhook_dropped"], "procsync_webhook_dropped_total") == {url: 5}
    assert values(families["procsync_webhook_failed"], "procsync_webhook_failed_total") == {url: 1}
    assert values(families["procsync_sse_subscribers"])[()] == 2
    assert values(families["procsync_leader"]) == {(("instance", "box:42"),): 0}

    health = values(families["procsync_server_health"])
    assert health[(("server", "a"), ("state", "unknown"))] == 1  # an unexpected value reads unknown
    assert health[(("server", "b"), ("state", "dead"))] == 1
    assert values(families["procsync_server_uptime_seconds"])[(("server", "a"),)] == 0
    assert values(families["procsync_server_cpu_percent"])[(("server", "a"),)] == 0  # not NaN
    assert values(families["procsync_server_last_exit_code"]) == {(("server", "b"),): -9}


@pytest.mark.parametrize(("url", "label"), [
    ("https://user:pw@hooks.example:8443/a/b?token=x#frag", "https://hooks.example:8443/a/b"),
    ("https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX",
     "https://hooks.slack.com/services/T0000/B0000/***"),
    ("http://[::1]:9000/", "http://[::1]:9000/"),
    ("http://example.org", "http://example.org"),
])
def test_webhook_label(url, label):
    assert webhook_label(url) == label
