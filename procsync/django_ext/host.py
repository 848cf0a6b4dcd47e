"""This process's ServerOrchestrator for a Django project: `get_orchestrator()`.

One per process, made from ``settings.PROCSYNC`` on first use and
initialized (it adopts what still runs; it starts nothing):

- thread-safe: two first requests on two threads get one orchestrator;
- fork-safe: a process forked after one was made (a gunicorn or uWSGI worker
  after ``--preload``) makes its own, on the same state file;
- test-safe: under a test run (Django's runner or pytest-django, which call
  ``setup_test_environment()``, or ``manage.py test``) the state file and
  logs live in a temporary folder, unless ``PROCSYNC["test"]`` names them, so
  tests never see nor touch the developer's servers; webhooks are not sent,
  and what the tests left running is stopped when the orchestrator closes.

`close_orchestrator()` runs at exit and when a test overrides the setting:
the servers keep running (recorded with no owner, so the next process
adopts them) unless asked, or under a test run.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings

from ..locks import ordered_lock
from ..orchestrator import ServerOrchestrator
from .conf import SETTING, Conf, read_conf

#: argv[0] of a management command: ./manage.py, django-admin, python -m django
MANAGEMENT_SCRIPTS = ("manage.py", "django-admin", "__main__.py")


@dataclasses.dataclass(slots=True)
class Held:
    """The orchestrator of this process, what it was made from, and the apps serving it."""

    orchestrator: ServerOrchestrator
    conf: Conf
    pid: int
    state_file: str
    log_dir: str
    temp: str | None = None  # a test run's folder, removed at close by the process that made it
    testing: bool = False  # made by a test run's own process (not a fork): stops its servers at close
    apps: dict[str, Any] = dataclasses.field(default_factory=dict)  # see mount.py


_lock = ordered_lock("django.host")  # held while one is made: reading settings, no I/O wait
_held: Held | None = None


def base_dir() -> Path:
    """What relative paths in ``PROCSYNC`` are relative to: ``settings.BASE_DIR``, else the
    current directory."""
    return Path(getattr(settings, "BASE_DIR", None) or os.getcwd())


def testing(argv: Sequence[str] | None = None) -> bool:
    """True under a test run: ``setup_test_environment()`` has run, or this is ``manage.py test``."""
    from django.core import mail

    if hasattr(mail, "outbox"):  # made by setup_test_environment(), removed by its teardown
        return True
    argv = sys.argv if argv is None else argv
    return len(argv) > 1 and Path(argv[0]).name in MANAGEMENT_SCRIPTS and argv[1] == "test"


def serves_runserver(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """True in the process that serves ``manage.py runserver``: the autoreloader's child
    (``RUN_MAIN=true``), or the one process of ``runserver --noreload``; not the watcher."""
    if len(argv) < 2 or Path(argv[0]).name not in MANAGEMENT_SCRIPTS or argv[1] != "runserver":
        return False
    return environ.get("RUN_MAIN") == "true" or "--noreload" in argv[2:]


def current() -> Held:
    """This process's Held, made on first use (and again in a forked child); initialized."""
    global _held
    with _lock:
        held, made = _held, False
        if held is None or held.pid != os.getpid():
            held = _held = _make(inherited=held)
            made = True
    if made:  # outside the lock: another thread's calls on it wait until it has read the store
        held.orchestrator.initialize()
    return held


def get_orchestrator() -> ServerOrchestrator:
    """This process's orchestrator, made from ``settings.PROCSYNC`` and initialized on first use.

    Never starts a server. ImproperlyConfigured names what is wrong with the setting.
    """
    return current().orchestrator


def close_orchestrator(stop_servers: bool | None = None) -> None:
    """Shut this process's orchestrator down; the next `get_orchestrator()` makes a new one.

    The servers keep running unless `stop_servers` (default: only under a test run,
    which must leave no process behind; its temporary folder is removed).
    """
    global _held
    with _lock:
        held, _held = _held, None
    if held is None or held.pid != os.getpid():
        return  # the parent's, before a fork: not ours to shut down
    stop = held.testing if stop_servers is None else stop_servers
    held.orchestrator.shutdown(stop_servers=stop)
    if held.temp is not None:
        shutil.rmtree(held.temp, ignore_errors=True)


def _make(inherited: Held | None) -> Held:
    conf = read_conf(getattr(settings, SETTING, None), base_dir())
    loaded = conf.loaded
    state_file, log_dir, temp = loaded.settings.state_file, loaded.settings.log_dir, None
    under_test = testing()
    if inherited is not None:  # forked: the parent's state file, never its temporary folder
        state_file, log_dir = inherited.state_file, inherited.log_dir
    elif under_test:
        if conf.test_state_file:
            state_file = conf.test_state_file
            log_dir = conf.test_log_dir or str(Path(state_file).parent / "logs")
        else:
            temp = tempfile.mkdtemp(prefix="procsync-test-")
            state_file, log_dir = str(Path(temp) / "state.json"), str(Path(temp) / "logs")
    if under_test:  # no webhook is sent from a test run
        loaded = dataclasses.replace(loaded, settings=dataclasses.replace(loaded.settings, webhooks=()))
    orchestrator = ServerOrchestrator.from_config(loaded, state_path=state_file, log_dir=log_dir)
    # a forked child leaves the stopping to the test run's own process, which stops every
    # server of the state file, whichever process started it
    return Held(orchestrator, conf, os.getpid(), state_file, log_dir, temp,
                under_test and inherited is None)


def _new_lock_in_child() -> None:
    global _lock
    _lock = ordered_lock("django.host")  # a thread of the parent may have held the old one


def on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    """A test's override_settings(PROCSYNC=...): the next call makes one from the new value."""
    if setting == SETTING:
        close_orchestrator()


os.register_at_fork(after_in_child=_new_lock_in_child)
atexit.register(close_orchestrator)

__all__ = ["MANAGEMENT_SCRIPTS", "Held", "base_dir", "close_orchestrator", "current",
           "get_orchestrator", "on_setting_changed", "serves_runserver", "testing"]
