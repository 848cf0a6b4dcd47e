"""Where the comparison benchmarks find the other supervisors, and a free port for them.

supervisord and circus come from $BENCH_VENV/bin, PM2 from $PM2_BIN; by
default both from bench/.tools, which `bash bench/setup-tools.sh` fills.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent / ".tools"
BENCH_VENV = Path(os.environ.get("BENCH_VENV", TOOLS_DIR / "venv"))
PM2 = Path(os.environ.get("PM2_BIN", TOOLS_DIR / "node_modules" / ".bin" / "pm2"))
SUPERVISORD = BENCH_VENV / "bin" / "supervisord"
CIRCUSD = BENCH_VENV / "bin" / "circusd"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
