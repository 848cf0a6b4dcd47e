"""Draw docs/pictures/restart-timeline.svg from a real run of a crashing server.

A server that exits with code 1 a moment after each start runs under a real
ServerOrchestrator with ``autorestart = "on-failure"``, ``max_restarts = 4``,
``backoff_initial = 0.5`` and ``backoff_max = 2.0``. The script records when
each signal arrives (process_started, process_exit, server_restarting,
server_fatal and the monitor's status_change), prints them as a table, and
writes the timeline as SVG text (no plotting library needed).

    python docs/pictures/restart_timeline.py                # writes docs/pictures/restart-timeline.svg
    python docs/pictures/restart_timeline.py -o /tmp/t.svg  # somewhere else
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from procsync import ServerOrchestrator

RUN_FOR = 0.3  # seconds each process lives before it exits with code 1
POLICY = {"autorestart": "on-failure", "max_restarts": 4, "backoff_initial": 0.5,
          "backoff_max": 2.0, "stable_after": 10.0}
SIGNALS = ("process_started", "process_exit", "server_restarting", "server_fatal", "status_change")
OUT = Path(__file__).with_name("restart-timeline.svg")


@dataclass
class Recorder:
    """Every signal about the server, with its time in seconds since the first start."""

    t0: float = field(default_factory=time.monotonic)
    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    fatal: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def receiver(self, name: str):
        def receive(sender: Any, **payload: Any) -> None:
            if payload.get("id") not in (None, "crasher"):
                return
            with self.lock:
                self.events.append((time.monotonic() - self.t0, name, payload))
            if name == "server_fatal":
                self.fatal.set()
        return receive


def record() -> list[tuple[float, str, dict[str, Any]]]:
    """Run the crashing server until it turns fatal; return the events, oldest first."""
    command = [sys.executable, "-c", f"import time; time.sleep({RUN_FOR}); raise SystemExit(1)"]
    with tempfile.TemporaryDirectory() as tmp:
        orch = ServerOrchestrator(Path(tmp, "state.json"), interval=0.2, log_dir=Path(tmp, "logs"))
        rec = Recorder()
        for name in SIGNALS:
            orch.on(name, rec.receiver(name))
        try:
            orch.initialize()
            orch.register_server("crasher", {"command": command, **POLICY})
            rec.t0 = time.monotonic()
            orch.start_server("crasher")
            if not rec.fatal.wait(60):
                raise SystemExit("the server did not turn fatal within 60 s")
        finally:
            orch.shutdown(stop_servers=True)
    return sorted(rec.events, key=lambda e: e[0])


def describe(name: str, payload: dict[str, Any]) -> str:
    if name == "process_started":
        return f"pid {payload['pid']}"
    if name == "process_exit":
        return f"pid {payload['pid']}, exit code {payload['exit_code']}"
    if name == "server_restarting":
        return f"attempt {payload['attempt']}, delay {payload['delay']:.1f} s"
    if name == "server_fatal":
        return f"after {payload['restarts']} restarts, exit code {payload['exit_code']}"
    if name == "status_change":
        return f"health {payload['previous']} -> {payload['current']}"
    return ""


def svg(events: list[tuple[float, str, dict[str, Any]]]) -> str:
    """The timeline: one bar per process run, the backoff gaps, the exits and the fatal end."""
    end = max(t for t, _, _ in events)
    width, left, right = 900, 30, 30
    scale = (width - left - right) / (end + 0.2)

    def x(t: float) -> float:
        return left + t * scale

    bar_y, bar_h, axis_y, health_y = 124, 36, 214, 240
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} 290" width="{width}" height="290"'
        ' font-family="sans-serif" font-size="13">',
        "<title>A crashing server under autorestart = on-failure: runs, backoff gaps, fatal</title>",
        f'<rect x="0" y="0" width="{width}" height="290" fill="#ffffff"/>',
        f'<text x="{left}" y="26" font-size="15" font-weight="bold" fill="#222">'
        f"A real run: the server exits with code 1 after {RUN_FOR} s, every time</text>",
        f'<text x="{left}" y="46" fill="#222">autorestart = "on-failure", '
        f'max_restarts = {POLICY["max_restarts"]}, backoff_initial = {POLICY["backoff_initial"]}, '
        f'backoff_max = {POLICY["backoff_max"]}</text>',
        f'<rect x="{left}" y="58" width="14" height="12" fill="#27ae60"/>'
        f'<text x="{left + 20}" y="69" fill="#222">process running</text>',
        f'<rect x="{left + 150}" y="58" width="14" height="12" fill="#f2c94c"/>'
        f'<text x="{left + 170}" y="69" fill="#222">backoff (status "backoff")</text>',
        f'<line x1="{left + 370}" y1="56" x2="{left + 370}" y2="72" stroke="#c0392b" stroke-width="3"/>'
        f'<text x="{left + 378}" y="69" fill="#222">exit code 1</text>',
    ]
    started = None
    exits: list[float] = []
    health: list[tuple[float, str]] = []
    for t, name, payload in events:
        if name == "process_started":
            if exits and t - exits[-1] > 0.005:  # a visible backoff gap
                out.append(f'<rect x="{x(exits[-1]):.1f}" y="{bar_y + 8}" width="{(t - exits[-1]) * scale:.1f}"'
                           f' height="{bar_h - 16}" fill="#f2c94c"/>')
            started = t
        elif name == "process_exit" and started is not None:
            out.append(f'<rect x="{x(started):.1f}" y="{bar_y}" width="{(t - started) * scale:.1f}"'
                       f' height="{bar_h}" fill="#27ae60"/>')
            out.append(f'<line x1="{x(t):.1f}" y1="{bar_y - 6}" x2="{x(t):.1f}" y2="{bar_y + bar_h + 6}"'
                       ' stroke="#c0392b" stroke-width="3"/>')
            exits.append(t)
            started = None
        elif name == "server_restarting":
            label = f'#{payload["attempt"]}: {payload["delay"]:g} s'
            out.append(f'<text x="{x(t) + 3:.1f}" y="{bar_y - 12}" fill="#222">{escape(label)}</text>')
        elif name == "server_fatal":
            out.append(f'<text x="{x(t) - 4:.1f}" y="{bar_y + bar_h + 30}" text-anchor="end" fill="#c0392b"'
                       f' font-weight="bold">fatal after {payload["restarts"]} restarts</text>')
        elif name == "status_change":
            health.append((t, str(payload["current"])))
    colors = {"healthy": "#2f80ed", "dead": "#bdbdbd"}
    for (t, state), (t_next, _) in zip(health, [*health[1:], (end, "")], strict=True):
        out.append(f'<rect x="{x(t):.1f}" y="{health_y}" width="{max((t_next - t) * scale, 1):.1f}" height="12"'
                   f' fill="{colors.get(state, "#f2994a")}"/>')
    out.append(f'<text x="{left}" y="{bar_y - 32}" font-size="12" fill="#555">'
               "server_restarting: attempt and its delay</text>")
    out.append(f'<line x1="{left}" y1="{axis_y}" x2="{x(end + 0.1):.1f}" y2="{axis_y}" stroke="#555"/>')
    for second in range(int(end) + 1):
        out.append(f'<line x1="{x(second):.1f}" y1="{axis_y}" x2="{x(second):.1f}" y2="{axis_y + 6}" stroke="#555"/>')
        out.append(f'<text x="{x(second):.1f}" y="{axis_y - 6}" text-anchor="middle" font-size="11"'
                   f' fill="#555">{second} s</text>')
    out.append(f'<text x="{left}" y="{health_y + 32}" font-size="12" fill="#222">'
               "health from status_change: blue healthy, grey dead</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=OUT, help=f"SVG file to write (default {OUT})")
    args = parser.parse_args(argv)
    events = record()
    for t, name, payload in events:
        print(f"{t:7.3f} s  {name:<18} {describe(name, payload)}")
    args.output.write_text(svg(events), encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
