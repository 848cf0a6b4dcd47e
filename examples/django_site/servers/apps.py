import os
import sys

from django.apps import AppConfig


class ServersConfig(AppConfig):
    name = "servers"

    def ready(self) -> None:
        from .orchestrator import get_orchestrator, wants_orchestrator

        # ready() runs in every process that sets Django up: runserver's watcher and
        # its serving child, migrate, shell, test, each gunicorn worker (or the master,
        # with --preload). Create the orchestrator now only where it serves requests
        # under runserver; everywhere else the first get_orchestrator() call does.
        # Never start servers here.
        if wants_orchestrator(sys.argv, os.environ):
            get_orchestrator()
