"""Notice when the process forks, so no child inherits a half-working orchestrator.

A forked child keeps copies of the parent's objects but none of its
threads, and any lock a thread held at the fork stays held forever. So in
the child (``os.register_at_fork(after_in_child=...)``) every live
ServerOrchestrator is told: one that never started anything (no thread, no
leader lock, no process) quietly rebuilds its manager and monitor and works
as a fresh instance; one that had started refuses every call with
`ForkedOrchestratorError`, which says to create the orchestrator after the
fork (gunicorn: without ``--preload``, or in a ``post_fork`` hook).
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import Any

from ..errors import ForkedOrchestratorError
from ..locks import ordered_lock

log = logging.getLogger(__name__)

_live: weakref.WeakSet[Any] = weakref.WeakSet()
_registered = False
_guard = ordered_lock("forks")


def track(orchestrator: Any) -> None:
    """Call `orchestrator._after_fork_in_child()` in every child forked from now on."""
    global _registered
    with _guard:
        if not _registered:
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _registered = True
        _live.add(orchestrator)


def _after_fork_in_child() -> None:
    global _guard
    _guard = ordered_lock("forks")
    for orchestrator in list(_live):
        try:
            orchestrator._after_fork_in_child()
        except Exception:  # never break the host's fork
            log.exception("resetting %r after fork failed", orchestrator)


__all__ = ["ForkedOrchestratorError", "track"]
