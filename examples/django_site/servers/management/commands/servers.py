"""``manage.py servers start|stop|status [ID]``: act on the servers of procsync.toml."""

from django.core.management.base import BaseCommand, CommandError

from procsync import ProcessNotFound

from ...orchestrator import get_orchestrator


class Command(BaseCommand):
    help = "Start or stop a server of procsync.toml, or show their status."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["start", "stop", "status"])
        parser.add_argument("server_id", nargs="?", metavar="ID",
                            help="the server (status: every server when left out)")

    def handle(self, *args, action: str, server_id: str | None, **options) -> None:
        orchestrator = get_orchestrator()  # this process's own; its servers outlive the command
        if action == "status":
            try:
                servers = ([orchestrator.get_server(server_id)] if server_id
                           else orchestrator.get_server_status())
            except ProcessNotFound as err:
                raise CommandError(str(err)) from err
            for server in servers:
                self.stdout.write(f"{server.id:<16} {server.status:<9} "
                                  f"{server.pid or '-':>7}  {server.health}")
            return
        if server_id is None:
            raise CommandError(f"'servers {action}' needs a server id")
        if action == "start":
            result = orchestrator.start_server(server_id)  # waits until the server is ready
        else:
            result = orchestrator.stop_server(server_id)
        if not result.success:
            raise CommandError(result.message)  # exit code 1
        self.stdout.write(result.message)
