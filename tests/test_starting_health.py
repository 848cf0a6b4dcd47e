"""While a server is "starting", its health shows what the checks see (issue 11, item 10)."""

from __future__ import annotations

import pytest
from helpers import free_port, python_cmd, wait_until

from procsync import ServerOrchestrator


def gated_listener(port: int, gate: str) -> str:
    """A server that opens `port` only once the file `gate` exists."""
    return (
        "import os, socket, time\n"
        f"while not os.path.exists({gate!r}):\n"
        "    time.sleep(0.01)\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen(16)\n"
        "while True:\n"
        "    c, _ = s.accept(); c.close()\n"
    )


@pytest.mark.parametrize("check", ["ports", "tcp"])
def test_health_while_starting_shows_the_failing_check(tmp_path, check):
    port = free_port()
    gate = tmp_path / "open-now"
    config = {"command": python_cmd(gated_listener(port, str(gate))), "ports": [port],
              "start_timeout": 60}
    if check == "tcp":
        config["health"] = {"tcp": port, "timeout": 0.5}
    # a long interval: the first check of a new process must not wait for the next tick
    orch = ServerOrchestrator(tmp_path / "state.json", interval=30, log_dir=tmp_path / "logs")
    try:
        orch.initialize()
        orch.register_server("web", config)
        assert orch.start_server("web", wait=False).success

        def seen() -> bool:
            status = orch.get_server("web")
            return status.status == "starting" and status.health == "unhealthy"

        wait_until(seen, 10, "health 'unhealthy' while starting")
        status = orch.get_server("web")
        assert status.status == "starting"
        assert status.message and str(port) in status.message and "not ready" in status.message
        mon = orch.monitor.get_status("web")
        assert mon is not None and mon.health == "unhealthy" and str(port) in (mon.error or "")
        assert status.to_dict()["health"] == "unhealthy"

        gate.write_text("go")
        wait_until(lambda: orch.get_server("web").status == "running", 20, "ready")
        status = orch.get_server("web")
        assert status.health == "healthy"
        assert not status.message or "not ready" not in status.message
    finally:
        orch.shutdown(stop_servers=True)
