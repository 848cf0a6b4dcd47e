"""Server status, for staff only: an HTML table and the same data as JSON."""

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from .orchestrator import get_orchestrator


@staff_member_required  # anyone else is sent to the admin login page
def status(request: HttpRequest) -> HttpResponse:
    servers = get_orchestrator().get_server_status()
    return render(request, "servers/status.html", {"servers": servers})


def status_json(request: HttpRequest) -> JsonResponse:
    if not (request.user.is_active and request.user.is_staff):
        return JsonResponse({"error": "forbidden", "message": "staff only"}, status=403)
    servers = get_orchestrator().get_server_status()
    return JsonResponse({"servers": [server.to_dict() for server in servers]})
