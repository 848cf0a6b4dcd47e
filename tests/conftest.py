"""pytest fixtures shared by every test file: see helpers.py for the helpers."""

from __future__ import annotations

import pytest
from helpers import kill_marked_after_grace


@pytest.fixture(autouse=True)
def no_leaked_processes(request):
    """Fail any test that leaves a process of ours running."""
    yield
    leaked = kill_marked_after_grace()
    if leaked:
        pytest.fail("test leaked processes:\n  " + "\n  ".join(leaked), pytrace=False)


@pytest.fixture
def tmp_logs(tmp_path):
    path = tmp_path / "logs"
    path.mkdir()
    return path


