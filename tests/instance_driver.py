"""One ServerOrchestrator in a subprocess, driven over JSON lines on stdin/stdout.

Run as a script: ``python instance_driver.py STATE LOG_DIR NAME REGISTRY_JSON [INTERVAL]``.
It prints ``{"ready": true, ...}`` once initialized, then answers one JSON
line per request line: ``{"op": "start"|"stop"|"restart", "id": ...}``,
``{"op": "status"}``, ``{"op": "kill_orphan", "id": ..., "pid": ...}``, ``{"op": "leader"}``, ``{"op": "events"}`` (the
server_* and process_died signals received since the last call, each with
the wall-clock time it arrived), ``{"op": "time"}``, and
``{"op": "quit"}``. Imported, it offers `Instance`, the parent's side.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DRIVER = str(Path(__file__).resolve())
EVENTS = ("server_started", "server_stopped", "server_restarting", "server_fatal", "process_died")


def _serve(argv: list[str]) -> None:
    from procsync import ServerOrchestrator

    state, logs, name, registry = argv[:4]
    interval = float(argv[4]) if len(argv) > 4 else 0.5
    orch = ServerOrchestrator(state, interval=interval, log_dir=logs, instance_name=name)
    orch.register_servers(json.loads(registry))
    events: list[dict[str, Any]] = []
    lock = threading.Lock()

    def receiver(event: str):
        def receive(sender: Any, **payload: Any) -> None:
            with lock:
                events.append({"event": event, "id": payload.get("id"), "pid": payload.get("pid"),
                               "instance": payload.get("instance"), "at": time.time()})
        return receive

    for event in EVENTS:
        orch.on(event, receiver(event))
    orch.initialize()
    out = sys.stdout

    def answer(value: Any) -> None:
        out.write(json.dumps(value) + "\n")
        out.flush()

    def take_events(request: dict[str, Any]) -> list[dict[str, Any]]:
        with lock:
            taken = list(events)
            events.clear()
        return taken

    answer({"ready": True, "pid": os.getpid(), "leader": orch.is_leader})
    answer_requests(orch, answer, {"leader": lambda request: orch.instance_info(),
                                   "events": take_events,
                                   "time": lambda request: {"at": time.time()}})


def answer_requests(orch: Any, answer: Callable[[Any], None],
                    extra: dict[str, Callable[[dict[str, Any]], Any]] | None = None) -> None:
    """Answer one JSON line per request line on stdin until "quit" (or stdin closes).

    Every driver knows start/stop/restart, status, kill_orphan and quit; `extra`
    maps further op names to their answer.
    """
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        if op in ("start", "stop", "restart"):
            action = {"start": orch.start_server, "stop": orch.stop_server,
                      "restart": orch.restart_server}[op]
            result = action(request["id"])
            answer({"success": result.success, "message": result.message, "pid": result.pid,
                    "code": result.code})
        elif op == "status":
            answer({s.id: {"status": s.status, "pid": s.pid, "running": s.running,
                           "restarts": s.restarts, "last_exit_code": s.last_exit_code,
                           "orphaned_pid": s.orphaned_pid, "message": s.message}
                    for s in orch.get_server_status()})
        elif op == "kill_orphan":
            killed = orch.kill_orphaned_process(request["id"], request["pid"])
            answer({"success": killed.success, "message": killed.message})
        elif op == "quit":
            orch.shutdown(stop_servers=bool(request.get("stop")))
            answer({"done": True})
            return
        elif extra and op in extra:
            answer(extra[op](request))
        else:
            answer({"error": f"unknown op {op!r}"})


class Instance:
    """The parent's handle on one driver subprocess."""

    def __init__(self, state: Path, logs: Path, name: str, registry: dict[str, Any],
                 interval: float = 0.5) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, DRIVER, str(state), str(logs), name, json.dumps(registry), str(interval)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
        )
        self._buffer = b""
        hello = self.read(30.0)
        if not hello.get("ready"):
            raise AssertionError(f"instance {name} did not start: {hello}")
        self.pid: int = hello["pid"]

    def send(self, op: str, **fields: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())

    def read(self, timeout: float = 30.0) -> Any:
        """The next answer line; AssertionError after `timeout` s or if the driver died."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"instance {self.name}: no answer within {timeout}s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError(f"instance {self.name} exited ({self.proc.poll()})")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def call(self, op: str, timeout: float = 30.0, **fields: Any) -> Any:
        self.send(op, **fields)
        return self.read(timeout)

    def kill(self) -> None:
        """SIGKILL the driver (its servers keep running) and reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self) -> None:
        """Ask it to shut down (servers keep running), else kill it; close the pipes."""
        try:
            if self.proc.poll() is None:
                self.call("quit", timeout=10)
        except (AssertionError, OSError, ValueError):
            pass
        finally:
            self.kill()
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()


if __name__ == "__main__":
    _serve(sys.argv[1:])
