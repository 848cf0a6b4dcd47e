"""Remember processes across restarts: a JSON state file (default) or an SQLite database.

Both stores offer the same methods (see `StateStore`). The JSON file is an
object keyed by id in the seed's camelCase shape; its event history lives in a
sibling `<state>.history.json`. Every write is atomic and made under a lock
file (`<state>.lock`, `fcntl.flock`), so threads and processes can share one
file. Bad content never makes `load()` raise: the file is copied aside as
`<state>.corrupt-<UTC time>`, a warning is logged, and the valid entries are
kept. See docs/state-file.md.

Reads never wait behind a write: they are served from a snapshot of the last
commit (re-read without the writer lock when another process committed).
`write_batch` applies many updates and events in one locked write.

This package's public names are here. The records and the shared surface
live in `base`, the JSON store in `jsonfile`, the SQLite store in `sqlite`,
and the file helpers they share in `atomic`. It imports only procsync's
leaves (errors, records, redact, locks).
"""

from __future__ import annotations

import os
from pathlib import Path

# Constants are re-exported for callers and tests; __all__ lists the public surface.
from .base import (
    EVENTS,
    EventSpec,
    HistoryEntry,
    StateStore,
    StoredProcessInfo,
)
from .base import HISTORY_PER_ID as HISTORY_PER_ID
from .base import LOG_LINE_CHARS as LOG_LINE_CHARS
from .base import LOG_TAIL_LINES as LOG_TAIL_LINES
from .base import Updater as Updater
from .jsonfile import ProcessStateStore
from .sqlite import BUSY_TIMEOUT as BUSY_TIMEOUT
from .sqlite import MIGRATIONS as MIGRATIONS
from .sqlite import SCHEMA_VERSION as SCHEMA_VERSION
from .sqlite import SQLiteStateStore

SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def open_store(path: str | os.PathLike[str]) -> ProcessStateStore | SQLiteStateStore:
    """SQLiteStateStore for a path ending in .db, .sqlite or .sqlite3; else ProcessStateStore."""
    if Path(os.fspath(path)).suffix.lower() in SQLITE_SUFFIXES:
        return SQLiteStateStore(path)
    return ProcessStateStore(path)


__all__ = [
    "EVENTS",
    "EventSpec",
    "HistoryEntry",
    "ProcessStateStore",
    "SQLiteStateStore",
    "StateStore",
    "StoredProcessInfo",
    "open_store",
]
