"""The examples run as scripts and leave nothing behind."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from helpers import PY, is_gone

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_basic_example_runs_and_cleans_up(tmp_path):
    proc = subprocess.run([PY, str(EXAMPLES / "basic.py")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert re.search(r"start web: ok - started 'web' \(pid \d+\), ready after", out)
    assert "start worker: ok" in out
    rows = dict(re.findall(r"^(web|worker)\s+running\s+(\d+) ", out, re.M))
    assert set(rows) == {"web", "worker"}
    assert re.search(r"^web\s+running\s+\d+ healthy", out, re.M)
    assert "worker tick 2" in out
    assert "event from ServerOrchestrator: {'recovered': [], 'ended': [], 'orphaned': []}" in out
    assert "event from ProcessManager" in out  # forwarded from the orchestrator's manager
    assert out.rstrip().endswith("stopped: web, worker")
    assert all(is_gone(int(pid)) for pid in rows.values())
    assert list(tmp_path.iterdir()) == []  # state and logs lived in a removed temp dir
