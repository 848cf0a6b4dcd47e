"""The basic procsync setup as a script: two servers, events, status, shutdown.

    python examples/basic.py

Registers a static file server (``python -m http.server`` on a free port)
and a worker that prints a line every 0.2 s, starts both, prints the events
it receives and a status table, then shuts down, stopping both servers.
State and logs go to a temporary directory that is removed at the end.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from pathlib import Path

from procsync import ServerOrchestrator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def on_event(sender: object, **payload: object) -> None:
    """Print the signal's payload; `sender` is the orchestrator, its manager or its monitor."""
    shown = {k: v for k, v in payload.items() if k in ("id", "pid", "exit_code", "attempt", "delay",
                                                           "recovered", "ended", "orphaned")}
    print(f"  event from {type(sender).__name__}: {shown}", flush=True)


def main() -> int:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="procsync-basic-") as tmp:
        root = Path(tmp)
        (root / "site").mkdir()
        (root / "site" / "index.html").write_text("<h1>hello from procsync</h1>\n")

        orch = ServerOrchestrator(root / "process-state.json", interval=1.0, log_dir=root / "logs")
        orch.register_servers({
            "web": {
                "command": [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                "cwd": str(root / "site"),
                "ports": [port],
                "health": {"http": f"http://127.0.0.1:{port}/"},
                "color": "green",
            },
            "worker": {
                "command": [sys.executable, "-u", "-c",
                            "import itertools, time\n"
                            "for n in itertools.count():\n"
                            "    print('worker tick', n)\n"
                            "    time.sleep(0.2)\n"],
                "autorestart": "on-failure",
                "env": {"WORKER_MODE": "demo"},
            },
        })
        for name in ("initialized", "server_started", "server_stopped", "process_exit"):
            orch.on(name, on_event)

        orch.initialize()
        for sid in ("web", "worker"):
            result = orch.start_server(sid)
            print(f"start {sid}: {'ok' if result.success else 'FAILED'} - {result.message}", flush=True)
            if not result.success:
                orch.shutdown(stop_servers=True)
                return 1

        deadline = time.monotonic() + 5
        while len(orch.tail_log("worker", 3)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)

        print(f"{'id':8} {'status':8} {'pid':>7} {'health':9} {'ports':12} uptime", flush=True)
        for status in orch.get_server_status():
            ports = ",".join(map(str, status.ports)) or "-"
            uptime = f"{status.uptime:.1f}s" if status.uptime is not None else "-"
            print(f"{status.id:8} {status.status:8} {status.pid or '-':>7} {status.health:9} "
                  f"{ports:12} {uptime}", flush=True)
        print("worker log:", orch.tail_log("worker", 3), flush=True)

        orch.shutdown(stop_servers=True)
        stopped = [s.id for s in orch.get_server_status() if s.status == "stopped"]
        print(f"stopped: {', '.join(stopped)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
