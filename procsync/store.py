"""Remember processes across restarts: a JSON state file (default) or an SQLite database.

Both stores offer the same methods (see `StateStore`). The JSON file is an
object keyed by id in the seed's camelCase shape; its event history lives in a
sibling `<state>.history.json`. Every write is atomic and made under a lock
file (`<state>.lock`, `fcntl.flock`), so threads and processes can share one
file. Bad content never makes `load()` raise: the file is copied aside as
`<state>.corrupt-<UTC time>`, a warning is logged, and the valid entries are
kept. See docs/state-file.md.

This is the public module. The records and the shared surface live in
`store_base`, the JSON store in `store_json`, the SQLite store in
`store_sqlite`, and the file helpers they share in `atomic`.
"""

from __future__ import annotations

import os
from pathlib import Path

# Constants are re-exported for callers and tests; __all__ lists the public surface.
from .store_base import (
    EVENTS,
    HistoryEntry,
    StateStore,
    StoredProcessInfo,
)
from .store_base import HISTORY_PER_ID as HISTORY_PER_ID
from .store_base import LOG_LINE_CHARS as LOG_LINE_CHARS
from .store_base import LOG_TAIL_LINES as LOG_TAIL_LINES
from .store_base import Updater as Updater
from .store_json import ProcessStateStore
from .store_sqlite import BUSY_TIMEOUT as BUSY_TIMEOUT
from .store_sqlite import MIGRATIONS as MIGRATIONS
from .store_sqlite import SCHEMA_VERSION as SCHEMA_VERSION
from .store_sqlite import SQLiteStateStore

SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def open_store(path: str | os.PathLike[str]) -> ProcessStateStore | SQLiteStateStore:
    """SQLiteStateStore for a path ending in .db, .sqlite or .sqlite3; else ProcessStateStore."""
    if Path(os.fspath(path)).suffix.lower() in SQLITE_SUFFIXES:
        return SQLiteStateStore(path)
    return ProcessStateStore(path)


__all__ = [
    "EVENTS",
    "HistoryEntry",
    "ProcessStateStore",
    "SQLiteStateStore",
    "StateStore",
    "StoredProcessInfo",
    "open_store",
]
