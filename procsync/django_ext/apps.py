"""The Django app: ``INSTALLED_APPS += ["procsync.django_ext"]``."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_started
from django.test.signals import setting_changed

AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"


class ProcSyncConfig(AppConfig):
    """Checks ``settings.PROCSYNC``; makes the orchestrator where requests are served.

    ``ready()`` runs in every process that sets Django up, so it starts no
    server and makes no orchestrator, except in the process that serves
    ``runserver`` (so the monitor and automatic restarts run before the first
    request). Any other process that serves requests (a gunicorn or uWSGI
    worker) makes it at its first request; a management command, the shell
    or a test when it first calls `get_orchestrator()`.
    """

    name = "procsync.django_ext"
    label = "procsync"
    verbose_name = "procsync"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from .host import on_setting_changed, serves_runserver, testing

        checks.register(check_setting)
        setting_changed.connect(on_setting_changed, dispatch_uid="procsync.setting_changed")
        if testing():
            return  # tests make theirs when they need it, in a temporary folder
        request_started.connect(on_request, dispatch_uid="procsync.request_started")
        if serves_runserver(sys.argv, os.environ):
            on_request()


_made_in: int | None = None  # the pid that has made its orchestrator through on_request


def on_request(**kwargs: Any) -> None:
    """The first request of a process (or runserver's start) makes its orchestrator."""
    global _made_in
    if _made_in == os.getpid():
        return
    from .host import get_orchestrator

    get_orchestrator()
    _made_in = os.getpid()


def check_setting(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``manage.py check``: the PROCSYNC setting reads, and the login middleware is there."""
    from .conf import SETTING, read_conf
    from .host import base_dir

    problems: list[checks.CheckMessage] = []
    try:
        read_conf(getattr(settings, SETTING, None), base_dir())
    except ImproperlyConfigured as err:
        problems.append(checks.Error(str(err), id="procsync.E001"))
    if AUTH_MIDDLEWARE not in getattr(settings, "MIDDLEWARE", ()):
        problems.append(checks.Warning(
            f"{AUTH_MIDDLEWARE} is not in MIDDLEWARE: nobody can log in to procsync's pages",
            hint="the API still answers a bearer token (PROCSYNC_AUTH_TOKEN or auth_token)",
            id="procsync.W001"))
    return problems
