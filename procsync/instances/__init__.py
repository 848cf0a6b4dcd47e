"""Several orchestrators on one state file: who leads, keeping in step, and forks.

`leader` says which instance leads and who the others are; `sync` keeps one
orchestrator in step with the rest through the store; `forks` makes sure a
forked child never inherits a half-working orchestrator. The package works
on its orchestrator through the narrow `Host` interface (`host.py`), which
the orchestrator implements; it imports nothing above the store.
"""

from .host import Host, ServerView

__all__ = ["Host", "ServerView"]
