"""The Prometheus exposition of ``<prefix>/api/metrics`` (needs the ``metrics`` extra).

`render` builds a fresh `CollectorRegistry` with one `ProcSyncCollector` on
each call and encodes it with prometheus_client. Building one costs a few
microseconds, holds no reference to the orchestrator between scrapes and
needs no lock; the global ``prometheus_client.REGISTRY`` is never touched,
so a host app's own metrics (and other orchestrators) stay apart.

prometheus_client is imported inside the functions: ``import
procsync.flask_ext`` works without it, and the route then answers 501.
docs/monitoring.md ("Prometheus") lists every metric.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..monitor import HEALTH_STATES

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..records import ServerStatus

EXTRA = "pip install 'procsync[metrics]'"
SECRET_SEGMENT = 16  # a URL path segment this long may be a token (Slack, Discord): shown as ***


class NotInstalled(Exception):
    """prometheus_client is not installed: the message says which extra to install."""


def render(orchestrator: Any, hub: Any) -> tuple[bytes, str]:
    """(body, content type) of every metric, from a collector on a registry of its own."""
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    except ImportError as err:
        raise NotInstalled(f"the metrics route needs prometheus_client: {EXTRA}") from err
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProcSyncCollector(orchestrator, hub))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class ProcSyncCollector:
    """A prometheus_client collector of one orchestrator's servers and procsync's own health.

    Everything is read at collect time (a scrape), from `hub.server_status()`
    (which reuses the hub's port scan) and the orchestrator's meters.
    """

    def __init__(self, orchestrator: Any, hub: Any) -> None:
        self.orchestrator = orchestrator
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        """The metric families, one scrape's worth."""
        yield from self._servers()
        yield from self._own()

    def _statuses(self) -> list[ServerStatus]:
        if self.hub is not None:
            return list(self.hub.server_status())
        return list(self.orchestrator.get_server_status())

    def _servers(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        statuses = self._statuses()
        server = ["server"]
        info = GaugeMetricFamily("procsync_server_info",
                                 "A registered server (always 1): its display name, kind and group.",
                                 labels=["server", "name", "kind", "group"])
        up = GaugeMetricFamily("procsync_server_up",
                               "1 while the server's process is running (starting, running or "
                               "stopping), else 0.", labels=server)
        restarts = CounterMetricFamily(
            "procsync_server_restarts",
            "Consecutive automatic restarts of the server; back to 0 when the count resets "
            "(stable, or started by hand).", labels=server)
        cpu = GaugeMetricFamily("procsync_server_cpu_percent",
                                "CPU use of the server's process tree at the last monitor tick, "
                                "in percent of one core.", labels=server)
        rss = GaugeMetricFamily("procsync_server_memory_rss_bytes",
                                "Resident memory of the server's process tree at the last monitor "
                                "tick.", labels=server)
        health = GaugeMetricFamily("procsync_server_health",
                                   "The server's health, one-hot: 1 for its current state.",
                                   labels=["server", "state"])
        uptime = GaugeMetricFamily("procsync_server_uptime_seconds",
                                   "Seconds since the server's process started; 0 when not running.",
                                   labels=server)
        exit_code = GaugeMetricFamily("procsync_server_last_exit_code",
                                      "Exit code of the server's last process (-N: killed by "
                                      "signal N); no sample before its first exit.", labels=server)
        for s in statuses:
            sid = [s.id]
            info.add_metric([s.id, s.name, s.kind, s.group or ""], 1)
            up.add_metric(sid, 1 if s.running else 0)
            restarts.add_metric(sid, s.restarts)
            cpu.add_metric(sid, _finite(s.cpu_percent))
            rss.add_metric(sid, _finite(s.memory_rss))
            state = s.health if s.health in HEALTH_STATES else "unknown"
            for name in HEALTH_STATES:
                health.add_metric([s.id, name], 1 if name == state else 0)
            uptime.add_metric(sid, _finite(s.uptime) if s.running and s.uptime else 0.0)
            if s.last_exit_code is not None:
                exit_code.add_metric(sid, s.last_exit_code)
        yield from (info, up, restarts, cpu, rss, health, uptime, exit_code)

    def _own(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        orch = self.orchestrator
        monitor = getattr(orch, "monitor", None)
        yield from _durations("procsync_monitor_tick", "monitor tick (one check of every server)",
                              getattr(monitor, "tick_time", None))
        yield from _durations("procsync_store_write", "state store commit (a write and its fsync)",
                              getattr(getattr(orch, "store", None), "write_time", None))
        if self.hub is not None:
            yield GaugeMetricFamily("procsync_sse_subscribers",
                                    "Clients connected to the live event stream now.",
                                    value=self.hub.subscriber_count)
            yield CounterMetricFamily("procsync_sse_subscribers_dropped",
                                      "Event stream clients cut off for falling behind (they "
                                      "reconnect and replay what they missed).",
                                      value=self.hub.dropped)
        yield from _webhooks(getattr(orch, "webhooks", None) or ())
        leader = GaugeMetricFamily("procsync_leader",
                                   "1 while this procsync instance holds the leader lock of its "
                                   "state file, else 0.", labels=["instance"])
        leader.add_metric([str(orch.instance_name)], 1 if orch.is_leader else 0)
        yield leader


def _durations(name: str, what: str, meter: Any) -> Iterator[Metric]:
    """A summary (count, sum), the last and the longest of a DurationMeter; nothing without one."""
    from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily

    if meter is None:
        return
    stats = meter.snapshot()
    yield SummaryMetricFamily(f"{name}_seconds", f"Duration of each {what}, in seconds.",
                              count_value=stats.count, sum_value=_finite(stats.total))
    yield GaugeMetricFamily(f"{name}_last_seconds", f"Duration of the last {what}, in seconds.",
                            value=_finite(stats.last))
    yield GaugeMetricFamily(f"{name}_longest_seconds", f"Longest {what} so far, in seconds.",
                            value=_finite(stats.longest))


def _webhooks(hooks: Iterable[Any]) -> Iterator[Metric]:
    """Per webhook URL (secrets removed, see webhook_label): deliveries dropped and failed."""
    from prometheus_client.core import CounterMetricFamily

    dropped: dict[str, int] = {}
    failed: dict[str, int] = {}
    for hook in hooks:
        label = webhook_label(str(hook.url))
        dropped[label] = dropped.get(label, 0) + int(getattr(hook, "dropped", 0))
        failed[label] = failed.get(label, 0) + int(getattr(hook, "failed", 0))
    drops = CounterMetricFamily("procsync_webhook_dropped",
                                "Webhook deliveries dropped because the webhook's queue was full.",
                                labels=["url"])
    fails = CounterMetricFamily("procsync_webhook_failed",
                                "Webhook deliveries given up after their retries.", labels=["url"])
    for label in dropped:
        drops.add_metric([label], dropped[label])
        fails.add_metric([label], failed[label])
    yield drops
    yield fails


def webhook_label(url: str) -> str:
    """`url` fit for a metric label: no userinfo, query or fragment, long path segments as ***.

    Webhook services put their token in the query (``?token=``), the
    userinfo, or a long path segment (Slack's ``/services/T../B../<token>``),
    and metrics are read by more people than the admin API.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    segments = ["***" if len(seg) >= SECRET_SEGMENT else seg for seg in parts.path.split("/")]
    return f"{parts.scheme}://{netloc}{'/'.join(segments)}"


def _finite(value: float | int | None) -> float:
    """`value` as a float, 0.0 for None, NaN or infinity (a gauge must not read NaN by accident)."""
    if value is None:
        return 0.0
    number = float(value)
    return number if math.isfinite(number) else 0.0


__all__ = ["EXTRA", "HEALTH_STATES", "NotInstalled", "ProcSyncCollector", "render", "webhook_label"]
