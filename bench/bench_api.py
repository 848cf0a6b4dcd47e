"""Benchmark the Flask extension: GET /api/servers latency and /events fan-out.

    python bench/bench_api.py [--servers 50] [--seconds 5] [--subscribers 50,100,200,400]

Registers and starts N real small processes (each listening on a loopback
port), serves the extension with werkzeug's threaded server on 127.0.0.1,
then measures:

1. GET <prefix>/api/servers: requests/s and p50/p99 latency, with 1 and with
   8 concurrent keep-alive clients;
2. /events: for each subscriber count, opens that many streams, sends a burst
   of signals through the orchestrator, and checks every subscriber received
   every event id, in order, none missing.

Loopback traffic only; bounded in time (about a minute on a small machine).
"""

from __future__ import annotations

import argparse
import http.client
import logging
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from procsync import ServerOrchestrator, signals  # noqa: E402
from procsync.flask_ext import ProcSync  # noqa: E402

LISTENER = (
    "import socket, time\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', {port})); s.listen(8)\n"
    "while True: time.sleep(3600)\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def load(port: int, clients: int, seconds: float) -> tuple[int, list[float], int]:
    """`clients` threads doing GET /api/servers on keep-alive connections for `seconds`."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    deadline = time.monotonic() + seconds

    def run(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = latencies[n]
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                conn.request("GET", "/procsync/api/servers")
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200 or b'"servers"' not in body:
                    errors[n] += 1
            except (OSError, http.client.HTTPException):
                errors[n] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            mine.append(time.perf_counter() - t0)
        conn.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    flat = [x for per in latencies for x in per]
    return int(len(flat) / elapsed), flat, sum(errors)


class Subscriber(threading.Thread):
    """Reads one /events stream, collecting event ids after the snapshot."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.ready = threading.Event()
        self.ids: list[int] = []
        self.error: str | None = None
        self.sock: socket.socket | None = None

    def run(self) -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            conn.request("GET", "/procsync/api/events", headers={"Accept": "text/event-stream"})
            self.sock = conn.sock  # before getresponse(), which may let go of it
            resp = conn.getresponse()
            if resp.status != 200:
                self.error = f"HTTP {resp.status}"
                return
            event = None
            while True:
                line = resp.readline()
                if not line:
                    return
                line = line.rstrip(b"\n")
                if line.startswith(b"event: "):
                    event = line[7:]
                elif line.startswith(b"id: "):
                    self.ids.append(int(line[4:]))
                elif line.startswith(b"data: ") and event == b"snapshot":
                    self.ready.set()
        except (OSError, http.client.HTTPException, ValueError) as err:
            if self.error is None and not isinstance(err, ConnectionResetError):
                self.error = repr(err)
        finally:
            self.ready.set()

    def stop(self) -> None:
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def fan_out(orch: ServerOrchestrator, port: int, count: int, burst: int) -> tuple[int, int, float, int]:
    """(subscribers that got every event, connected, seconds to deliver the burst, dropped)."""
    subs = [Subscriber(port) for _ in range(count)]
    for sub in subs:
        sub.start()
    for sub in subs:
        sub.ready.wait(30)
    connected = sum(1 for s in subs if s.ready.is_set() and s.error is None)
    from procsync.flask_ext.events import hub_for

    hub = hub_for(orch)
    dropped_before = hub.dropped
    first = hub.last_id + 1
    t0 = time.perf_counter()
    for n in range(burst):  # a burst through the real signal path, as fast as it can go
        signals.send(signals.server_restarting, orch, id=f"s{n % 50:02d}", pid=None,
                     attempt=n, delay=0.0, reason="benchmark")
    last = hub.last_id
    deadline = time.monotonic() + 30
    want = list(range(first, last + 1))

    def complete(sub: Subscriber) -> bool:
        got = [i for i in sub.ids if first <= i <= last]  # the monitor's events come and go too
        return got == want

    while time.monotonic() < deadline and not all(complete(s) or s.error for s in subs):
        time.sleep(0.02)
    took = time.perf_counter() - t0
    ok = sum(1 for s in subs if complete(s))
    for sub in subs:
        sub.stop()
    for sub in subs:
        sub.join(5)
    return ok, connected, took, hub.dropped - dropped_before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--subscribers", default="50,100,200,400")
    parser.add_argument("--burst", type=int, default=200, help="events per fan-out round")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="procsync-bench-"))
    orch = ServerOrchestrator(tmp / "state.json", interval=3.0, log_dir=tmp / "logs")
    registry = {}
    for n in range(args.servers):
        port = free_port()
        registry[f"s{n:02d}"] = {"command": [sys.executable, "-S", "-c", LISTENER.format(port=port)],
                                 "ports": [port], "stop_timeout": 2}
    orch.register_servers(registry)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    logging.getLogger("procsync.flask_ext").setLevel(logging.ERROR)
    app = Flask("bench")
    app.config["PROCSYNC_EVENTS_HEARTBEAT"] = 5.0
    ProcSync(app, orch)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    server.socket.listen(1024)  # room for hundreds of concurrent stream connections
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_port
    print(f"procsync bench_api: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"werkzeug threaded server on 127.0.0.1:{port}")
    try:
        t0 = time.perf_counter()
        results = orch.start_all()
        failed = [sid for sid, r in results.items() if not r.success]
        print(f"started {len(results) - len(failed)}/{len(results)} servers "
              f"in {time.perf_counter() - t0:.2f} s" + (f" (failed: {failed})" if failed else ""))
        load(port, 1, 0.5)  # warm up

        print()
        print("GET /procsync/api/servers with", args.servers, "running servers")
        print(f"{'clients':>8} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        for clients in (1, 8):
            rate, lat, errors = load(port, clients, args.seconds)
            print(f"{clients:>8} {len(lat):>9} {rate:>8} {statistics.median(lat) * 1000:>8.2f} "
                  f"{percentile(lat, 99) * 1000:>8.2f} {errors:>7}")

        print()
        print(f"/procsync/api/events fan-out: a burst of {args.burst} signals per round")
        print(f"{'subscribers':>12} {'connected':>10} {'got every event':>16} {'dropped':>8} "
              f"{'delivered in s':>15}")
        for count in (int(x) for x in args.subscribers.split(",") if x):
            ok, connected, took, dropped = fan_out(orch, port, count, args.burst)
            print(f"{count:>12} {connected:>10} {ok:>16} {dropped:>8} {took:>15.2f}")
    finally:
        orch.shutdown(stop_servers=True)
        server.shutdown()
        thread.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
