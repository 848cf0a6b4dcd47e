"""procsync in a Django project: ``INSTALLED_APPS += ["procsync.django_ext"]``.

- ``settings.PROCSYNC``: ``{"config": "procsync.toml"}`` or the servers inline
  (`procsync.django_ext.conf`);
- `get_orchestrator()`: this process's orchestrator, made and initialized on
  first use, thread-, fork- and test-safe (`procsync.django_ext.host`);
- ``manage.py procsync status|start|stop|restart|logs|history``, the
  ``procsync`` command's output and exit codes, run in-process;
- ``path("procsync/", include("procsync.django_ext.urls"))``: the JSON API,
  live events and dashboard behind Django's login (`procsync.django_ext.mount`).

Django is imported only by those who import this package.
"""

from .host import close_orchestrator, get_orchestrator

__all__ = ["close_orchestrator", "get_orchestrator"]
