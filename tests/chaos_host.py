"""One ServerOrchestrator hosted in its own process, for the chaos suite (test_chaos.py).

Run as a script: ``python chaos_host.py STATE LOG_DIR REGISTRY_JSON``. It
prints ``{"ready": true, "pid": ...}`` once initialized, then answers one
JSON line per request line: ``{"op": "start"|"stop"|"restart", "id": ...}``,
``{"op": "status"}``, ``{"op": "kill_orphan", "id": ..., "pid": ...}`` and
``{"op": "quit", "stop": bool}``. procsync's warnings go to stderr, which the
test sends to a file it shows on failure. The test kills it with SIGKILL, as a
crash would, and starts a new one on the same state file.

Imported, it offers `Host`, the parent's side: `instance_driver.Instance`
with this script and a log file for stderr.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from instance_driver import Instance, answer_requests

HOST = str(Path(__file__).resolve())


def _serve(argv: list[str]) -> None:
    sys.path.insert(0, str(Path(HOST).parent.parent))  # procsync from this checkout, like the tests
    from procsync import ServerOrchestrator

    state, logs, registry = argv[:3]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format=f"host {os.getpid()}: %(levelname)s %(name)s: %(message)s")
    orch = ServerOrchestrator(state, interval=0.3, log_dir=logs)
    orch.register_servers(json.loads(registry))
    orch.initialize()
    out = sys.stdout

    def answer(value: Any) -> None:
        out.write(json.dumps(value) + "\n")
        out.flush()

    answer({"ready": True, "pid": os.getpid()})
    answer_requests(orch, answer)


class Host(Instance):
    """The test's handle on one chaos host process (see the module docstring)."""

    def __init__(self, state: Path, logs: Path, registry: dict[str, Any], stderr: Path) -> None:
        self.name = "host"
        with open(stderr, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, HOST, str(state), str(logs), json.dumps(registry)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, bufsize=0,
                start_new_session=True,
            )
        self._buffer = b""
        try:
            hello = self.read(60.0)
        except BaseException:
            self.close()
            raise
        if not hello.get("ready"):
            self.close()
            raise AssertionError(f"chaos host did not start: {hello}")
        self.pid: int = hello["pid"]


if __name__ == "__main__":
    _serve(sys.argv[1:])
