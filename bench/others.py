"""Where the comparison benchmarks find the other supervisors, and how they write results.

supervisord and circus come from $BENCH_VENV/bin, PM2 from $PM2_BIN; by
default both from bench/.tools, which `bash bench/setup-tools.sh` fills.
Each comparison bench writes its figures as plain JSON into bench/results/
(`write_results`), which `python bench/plot.py` draws into docs/bench/.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
TOOLS_DIR = BENCH_DIR / ".tools"
RESULTS_DIR = BENCH_DIR / "results"
BENCH_VENV = Path(os.environ.get("BENCH_VENV", TOOLS_DIR / "venv"))
PM2 = Path(os.environ.get("PM2_BIN", TOOLS_DIR / "node_modules" / ".bin" / "pm2"))
SUPERVISORD = BENCH_VENV / "bin" / "supervisord"
CIRCUSD = BENCH_VENV / "bin" / "circusd"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tool_version(tool: str) -> str | None:
    """The installed version of `tool` (procsync..., supervisord, circus, pm2), or None."""
    try:
        if tool.startswith("procsync"):
            import procsync

            return procsync.__version__
        if tool == "pm2":
            package = PM2.resolve().parent.parent / "package.json"  # node_modules/pm2/bin/pm2
            return str(json.loads(package.read_text())["version"])
        dist = {"supervisord": "supervisor", "circus": "circus"}[tool]
        out = subprocess.run(
            [str(BENCH_VENV / "bin" / "python"), "-c",
             f"import importlib.metadata as m; print(m.version({dist!r}))"],
            capture_output=True, text=True, timeout=30, check=True)
        return out.stdout.strip() or None
    except (ImportError, KeyError, OSError, ValueError, subprocess.SubprocessError):
        return None


def machine() -> dict[str, Any]:
    """What the figures were measured on: cores, Python, kernel, load average."""
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def default_json(name: str) -> Path:
    """Where bench `name` writes its results unless --json says otherwise."""
    return RESULTS_DIR / f"{name}.json"


def write_results(path: Path, bench: str, settings: dict[str, Any],
                  results: list[dict[str, Any]]) -> None:
    """Write one bench run as plain JSON: what ran, on what, when, and its figures."""
    doc = {
        "bench": bench,
        "command": shlex.join(["python", f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": settings,
        "results": results,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)
    print(f"results written to {path}", file=sys.stderr)


def plot_now() -> None:
    """Redraw docs/bench/*.png from bench/results (the benches' --plot)."""
    import plot  # bench/plot.py: the only module that imports matplotlib

    plot.main([])
