"""procsync: start, stop, watch and remember the local server processes behind an admin dashboard."""

from __future__ import annotations

from .config import HealthCheck, ServerConfig, SpawnConfig
from .errors import (
    ConfigError,
    DuplicateProcessError,
    ForkedOrchestratorError,
    IdentityMismatch,
    ProcessNotFound,
    ProcSyncError,
    ProtectedProcessError,
    SpawnError,
    StateStoreError,
)
from .manager import ProcessManager
from .monitor import ProcessMonitor
from .orchestrator import ServerOrchestrator
from .records import (
    ActionResult,
    KillResult,
    ProcessInfo,
    ProcessStatus,
    ResourceHistory,
    ResourceMark,
    ServerStatus,
)
from .store import (
    HistoryEntry,
    ProcessStateStore,
    SQLiteStateStore,
    StateStore,
    StoredProcessInfo,
    open_store,
)
from .version import __version__

__all__ = [
    "ActionResult",
    "ConfigError",
    "DuplicateProcessError",
    "ForkedOrchestratorError",
    "HealthCheck",
    "HistoryEntry",
    "IdentityMismatch",
    "KillResult",
    "ProcSyncError",
    "ProcessInfo",
    "ProcessManager",
    "ProcessMonitor",
    "ProcessNotFound",
    "ProcessStateStore",
    "ProcessStatus",
    "ProtectedProcessError",
    "ResourceHistory",
    "ResourceMark",
    "SQLiteStateStore",
    "ServerConfig",
    "ServerOrchestrator",
    "ServerStatus",
    "SpawnConfig",
    "SpawnError",
    "StateStore",
    "StateStoreError",
    "StoredProcessInfo",
    "__version__",
    "open_store",
]
