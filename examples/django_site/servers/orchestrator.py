"""One procsync ServerOrchestrator per process, built from ``settings.PROCSYNC["CONFIG"]``.

- `wants_orchestrator(argv, environ)`: should `AppConfig.ready()` create it right away?
- `get_orchestrator()`: this process's orchestrator, created and initialized on first use,
  and created again in a forked child (gunicorn ``--preload``, uWSGI without ``lazy-apps``).
- `close_orchestrator()`: shut it down; the servers keep running unless ``stop_servers``.

Nothing here starts a server: that is the job of a view, a command or a person.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from django.conf import settings

from procsync import ServerOrchestrator
from procsync.config import load_config

#: argv[0] of a management command: ./manage.py, django-admin, python -m django
MANAGEMENT_SCRIPTS = ("manage.py", "django-admin", "__main__.py")

_lock = threading.Lock()
_orchestrator: ServerOrchestrator | None = None
_created_in: int | None = None  # pid of the process that created _orchestrator


def wants_orchestrator(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """True only in the process that serves ``manage.py runserver``.

    - runserver with the autoreloader runs two processes that both call ready():
      the watcher (never serves a request) and the serving child, which Django
      starts with RUN_MAIN=true and replaces on every code change;
    - ``runserver --noreload`` is one process, the serving one;
    - other commands (migrate, check, shell, test, ...) get none: each would
      start a monitor and compete for the leader lock for nothing. A command
      that needs servers calls get_orchestrator() itself;
    - under a WSGI server (gunicorn, uWSGI) the app may be imported in the
      master before the workers are forked: the worker creates its own on first
      use, or in a post-fork hook (see gunicorn.conf.py).
    """
    if len(argv) < 2 or Path(argv[0]).name not in MANAGEMENT_SCRIPTS:
        return False
    if argv[1] != "runserver":
        return False
    return "--noreload" in argv[2:] or environ.get("RUN_MAIN") == "true"


def build_orchestrator() -> ServerOrchestrator:
    """A new orchestrator with the servers and [procsync] settings of the config file, initialized."""
    loaded = load_config(settings.PROCSYNC["CONFIG"])
    conf = loaded.settings
    orchestrator = ServerOrchestrator(conf.state_file, interval=conf.interval,
                                      log_dir=conf.log_dir, history=conf.history)
    orchestrator.register_servers(loaded.registry)
    for hook in conf.webhooks:
        orchestrator.add_webhook(hook.url, events=hook.events, secret=hook.secret)
    orchestrator.initialize()  # adopts what still runs from last time; starts nothing
    return orchestrator


def get_orchestrator() -> ServerOrchestrator:
    """This process's orchestrator; the first call creates it (thread-safe)."""
    global _orchestrator, _created_in
    with _lock:
        if _orchestrator is None or _created_in != os.getpid():
            # none yet, or one inherited from the parent of a fork: that one refuses
            # every call here (ForkedOrchestratorError), so this process makes its own
            _orchestrator, _created_in = build_orchestrator(), os.getpid()
        return _orchestrator


def close_orchestrator(stop_servers: bool = False) -> None:
    """Shut this process's orchestrator down (at exit too); servers keep running by default."""
    global _orchestrator
    with _lock:
        orchestrator, _orchestrator = _orchestrator, None
        ours = _created_in == os.getpid()
    if orchestrator is not None and ours:
        orchestrator.shutdown(stop_servers=stop_servers)


def _new_lock_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a thread of the parent may have held the old one at the fork


os.register_at_fork(after_in_child=_new_lock_in_child)
atexit.register(close_orchestrator)
